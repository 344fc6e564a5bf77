"""Atomic file writes: a crash or a full disk never leaves a half-written file behind."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from netcut.errors import NetcutError


def write_atomic(path: str | Path, data: bytes | str) -> Path:
    """Write to a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise NetcutError(f"cannot write {str(path)!r}: {exc.strerror or exc}",
                          "choose a writable location (check permissions and free space)") from exc
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; results are meant to be shared like any file
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise NetcutError(f"cannot write {str(path)!r}: {exc.strerror or exc}",
                          "free some disk space or choose another location; nothing was half-written") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: object) -> Path:
    """Atomically write pretty JSON."""
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str) -> object:
    """Read JSON with clear errors for a missing, unreadable or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise NetcutError(f"{what} {str(path)!r} does not exist", "check the path")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise NetcutError(f"cannot read {what} {str(path)!r}: {exc}", "check the file's permissions") from exc
    except json.JSONDecodeError as exc:
        raise NetcutError(f"{what} {str(path)!r} is not valid JSON (line {exc.lineno}: {exc.msg}); it may be "
                          "truncated", "regenerate it (e.g. with `netcut profile ... --out`)") from exc

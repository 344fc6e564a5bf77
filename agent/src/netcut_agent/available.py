"""Which runtimes import and start here, with their versions: each is tried in a process of its own, so one that is
missing, fails or crashes on start (a wheel built for another CPU, a system library too old) is named with the reason
and the extra that installs it, and the others are still found.

    python -m netcut_agent.available onnxruntime litert    # one JSON line per runtime
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from netcut_agent.runtimes import RUNTIMES, RuntimeMissing, get_runtime

PROBE_TIMEOUT_S = 120.0  # an import under emulation can take a minute


@dataclass(frozen=True)
class RuntimeStatus:
    """One runtime here: its versions where it starts, else why not and how to install it."""

    name: str
    versions: dict[str, str] = field(default_factory=dict)
    problem: str | None = None

    @property
    def available(self) -> bool:
        """Whether it imported and started."""
        return self.problem is None

    @property
    def install(self) -> str:
        """The command that installs it into the agent's environment."""
        return f"pip install 'netcut-agent[{self.name}]'"

    def to_json(self) -> dict[str, Any]:
        """{"name", "available", "versions"} or, where it does not start, {"problem", "install"} too."""
        out: dict[str, Any] = {"name": self.name, "available": self.available, "versions": self.versions}
        if self.problem is not None:
            out.update(problem=self.problem, install=self.install)
        return out

    def text(self) -> str:
        """"onnxruntime 1.32.0", or "litert: not installed (pip install 'netcut-agent[litert]')"."""
        if self.available:
            main = self.versions.get(next(iter(self.versions), ""), "")
            return f"{self.name} {main}".strip()
        hint = f" ({self.install})" if self.problem == "not installed" else ""
        return f"{self.name}: {self.problem}{hint}"


def _start(name: str) -> dict[str, Any]:
    """Import and start one runtime in this process."""
    try:
        return {"name": name, "versions": get_runtime(name, 1).versions()}
    except RuntimeMissing:
        return {"name": name, "problem": "not installed"}
    except Exception as exc:  # a runtime that imports but cannot start: its own message says why
        return {"name": name, "problem": f"does not start: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                if str(exc) else f"does not start: {type(exc).__name__}"}


def probe_runtimes(names: list[str] | None = None, timeout_s: float = PROBE_TIMEOUT_S) -> list[RuntimeStatus]:
    """Every runtime tried at once, each in a fresh process of this Python."""
    names = sorted(RUNTIMES) if names is None else names
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    children = {n: subprocess.Popen([sys.executable, "-m", "netcut_agent.available", n], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env) for n in names}
    found = []
    for name, child in children.items():
        try:
            out, err = child.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            found.append(RuntimeStatus(name, problem=f"did not start within {timeout_s:.0f} s"))
            continue
        if child.returncode < 0:
            found.append(RuntimeStatus(name, problem=f"crashed on start (signal {-child.returncode})"))
            continue
        try:
            reply = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            last = (err.strip().splitlines() or ["no output"])[-1][:200]
            found.append(RuntimeStatus(name, problem=f"failed on start (exit {child.returncode}): {last}"))
            continue
        found.append(RuntimeStatus(name, dict(reply.get("versions", {})), reply.get("problem")))
    return found


def main(argv: list[str]) -> int:
    """Try each named runtime here; one JSON line each."""
    for name in argv:
        print(json.dumps(_start(name)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`netcut-agent run BUNDLE --out TABLE`: time every TRN of a bundle written by `netcut profile --bundle`, offline.

The bundle is a tar of plan.json and the model files it lists. Members are read by the names the plan gives, never
extracted, so no name in a bundle can write anywhere. The result is a latency table in netcut's format: the
bundle's skeleton with every row's latency measured here and this device's environment.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from netcut_agent import __version__
from netcut_agent.timing import TimingConfig
from netcut_agent.worker import WorkerFailure, WorkerProcess

BUNDLE_KIND = "netcut-bundle"
BUNDLE_VERSION = 1
PLAN = "plan.json"
MAX_MEMBER = 2**31  # a model file larger than 2 GB is not a TRN


class BundleError(Exception):
    """A bundle that is not one, is damaged, or cannot be measured here (the message says why)."""


def _member(tar: tarfile.TarFile, name: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BundleError(f"the bundle lacks {name!r}") from None
    handle = tar.extractfile(member) if member.isfile() and member.size < MAX_MEMBER else None
    if handle is None:
        raise BundleError(f"{name!r} in the bundle is not a regular file")
    return handle.read()


def read_bundle(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The plan and the model files (by cut), checked."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            try:
                plan = json.loads(_member(tar, PLAN))
            except ValueError as exc:
                raise BundleError(f"its plan is not JSON ({exc})") from exc
            if not isinstance(plan, dict) or plan.get("kind") != BUNDLE_KIND:
                raise BundleError("it is not a netcut bundle (no netcut-bundle plan)")
            if plan.get("version") != BUNDLE_VERSION:
                raise BundleError(f"bundle version {plan.get('version')}; this agent reads version {BUNDLE_VERSION}")
            models = {m["cut"]: _member(tar, m["file"]) for m in plan["models"]}
    except (tarfile.TarError, OSError) as exc:
        raise BundleError(f"cannot read it as a bundle: {exc}") from exc
    except (KeyError, TypeError) as exc:
        raise BundleError(f"its plan is incomplete ({exc})") from exc
    return plan, models


def run_bundle(path: Path, threads: int | None = None) -> dict[str, Any]:
    """Time every model of the bundle interleaved, in its runtime's own process, and measure each one's peak memory
    (a fresh process of the runtime per model); the filled latency table."""
    plan, models = read_bundle(path)
    threads = threads or plan.get("threads") or os.cpu_count() or 1
    timing = TimingConfig(int(plan["timing"]["warmup"]), int(plan["timing"]["repeats"]))
    shapes = {m["cut"]: tuple(m["shape"]) for m in plan["models"]}
    started = time.perf_counter()
    try:
        worker = WorkerProcess(plan["runtime"], threads)
    except WorkerFailure as exc:
        raise BundleError(f"its runtime {plan['runtime']} cannot start here: {exc.message}") from exc
    try:
        for cut, payload in models.items():
            worker.load(cut, payload, shapes[cut])
        stats = worker.time(list(models), timing).stats
        memory = {cut: worker.memory(payload, shapes[cut]) for cut, payload in models.items()}
    except WorkerFailure as exc:
        raise BundleError(f"the {plan['runtime']} runtime failed on it: {exc.message}") from exc
    finally:
        worker.close()
    table = plan["table"]
    try:
        for row in table["cuts"]:
            s = stats[row["name"]]
            for prefix in ("estimated", "measured"):
                row.update({f"{prefix}_ms": s.p50, f"{prefix}_p90_ms": s.p90, f"{prefix}_p99_ms": s.p99})
            row.update({"ram_bytes": memory[row["name"]].peak_bytes, "memory": memory[row["name"]].to_json()})
    except (KeyError, TypeError) as exc:
        raise BundleError(f"its table does not match its models ({exc})") from exc
    seconds = time.perf_counter() - started
    table["environment"] = {**table.get("environment", {}), "backend": table["backend"], **worker.machine,
                            "threads": threads, **worker.versions, "precision": table["precision"],
                            "measured_by": f"netcut-agent {__version__} run (offline bundle)",
                            "batch": table["batch"], "repeats": timing.repeats, "warmup": timing.warmup}
    table["cost_s"] = {"measured": seconds, "total": seconds}
    return dict(table)


def write_table(table: dict[str, Any], out: Path) -> None:
    """Write the table atomically (a temporary file renamed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".table-", dir=out.parent)
    with os.fdopen(handle, "w") as f:
        json.dump(table, f, indent=2)
    os.replace(temporary, out)

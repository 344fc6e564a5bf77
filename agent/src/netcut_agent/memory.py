"""What a model costs in memory and in start-up time where it runs: a fresh process of its runtime loads it and runs it,
recording its resident memory's high-water mark over the idle runtime, the load time and the first (cold) inference.

    python -m netcut_agent.memory --runtime onnxruntime --threads 2    (a framed {"payload", "shape"} on stdin)

A process of its own because a long-lived worker keeps what earlier models left (allocator caches, thread buffers,
code pages already touched): measured there after the shallower cuts, the deepest Lite0 cut seemed to need 44 MB, in a
process of its own 66 MB, which is where a deployment starts. On Linux the high-water mark is reset just before the
model is loaded (/proc/self/clear_refs), so it is the model's alone; elsewhere it is read from getrusage, over the
process's resident size just before loading.
"""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RUNS_AFTER_FIRST = 3  # runtimes plan or grow their buffers over the first runs; the peak is read after these
_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass(frozen=True)
class MemoryRecord:
    """A model's peak memory over its idle runtime, how long it took to load and to run once cold."""

    peak_bytes: int  # high-water mark of resident memory while loading and running, less the idle runtime's
    resident_bytes: int  # still resident after the runs (what the loaded model keeps)
    load_ms: float
    first_ms: float  # the first inference after loading (cold: buffers allocated, weights packed)
    method: str  # "VmHWM" (reset before loading) or "ru_maxrss" (process peak over the size before loading)
    reported: dict[str, int] = field(default_factory=dict)  # what the runtime itself reports, where it does

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemoryRecord:
        """Inverse of to_json."""
        return cls(int(d["peak_bytes"]), int(d["resident_bytes"]), float(d["load_ms"]), float(d["first_ms"]),
                   str(d["method"]), {str(k): int(v) for k, v in (d.get("reported") or {}).items()})


def _status() -> dict[str, int]:
    """VmRSS and VmHWM of this process in bytes (empty where /proc is not there)."""
    values: dict[str, int] = {}
    try:
        for line in _STATUS.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM") and rest.split():
                values[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return values


def _reset_peak() -> bool:
    """Reset this process's high-water mark to its current size (Linux 4.0+); False where it cannot be."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _ru_maxrss() -> int:
    """The process's peak resident size in bytes from getrusage (kB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


def _release_free_memory() -> None:
    """Hand memory freed so far back to the OS, so the baseline is what is really in use."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measure(runtime: Any, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
    """Load `payload` in `runtime` and run it 1 + RUNS_AFTER_FIRST times: its peak memory, load and first times."""
    import numpy as np

    from netcut_agent.runtimes import ModelError, input_shape

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32) if shape else None
    _release_free_memory()
    exact = _reset_peak() and "VmHWM" in _status()
    before = _status().get("VmRSS", 0) if exact else _ru_maxrss()
    start = time.perf_counter()
    run = runtime.load(payload)
    loaded = time.perf_counter()
    if x is None:  # the model's own input shape (allocated after the baseline: an image's worth, no more)
        fixed = input_shape(run)
        if not fixed:
            raise ModelError("the model's input shape is not fixed: give the input shape")
        x = np.random.default_rng(0).standard_normal(fixed).astype(np.float32)
        loaded = time.perf_counter()
    run(x)
    first = time.perf_counter()
    for _ in range(RUNS_AFTER_FIRST):
        run(x)
    after = _status()
    peak = after["VmHWM"] if exact else _ru_maxrss()
    resident = after.get("VmRSS", peak)
    reported = {}
    method = getattr(runtime, "reported_memory", None)
    if method is not None:  # a second, instrumented session, after the peak was read
        reported = method(payload, x)
    return MemoryRecord(max(0, peak - before), max(0, resident - before), 1e3 * (loaded - start),
                        1e3 * (first - loaded), "VmHWM" if exact else "ru_maxrss", reported)


def probe(runtime: str, threads: int, payload: bytes, shape: tuple[int, ...], timeout_s: float = 600.0
          ) -> MemoryRecord:
    """Measure a model in a fresh process of its runtime at a thread count (ModelError if it cannot be loaded)."""
    from netcut_agent.runtimes import ModelError
    from netcut_agent.worker import receive, runtime_env, send

    process = subprocess.Popen([sys.executable, "-m", "netcut_agent.memory", "--runtime", runtime,
                                "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=runtime_env(threads))
    assert process.stdin is not None and process.stdout is not None
    try:
        send(process.stdin, {"payload": payload, "shape": list(shape)})
        process.stdin.close()
        reply = receive(process.stdout)
    except (EOFError, BrokenPipeError, OSError) as exc:
        process.kill()
        tail = (process.stderr.read() if process.stderr else b"").decode(errors="replace").strip().splitlines()
        raise ModelError(f"the memory probe ended unexpectedly: {' | '.join(tail[-3:]) or type(exc).__name__}"
                         ) from exc
    finally:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
    if not reply.get("ok"):
        raise ModelError(str(reply.get("message", "the memory probe failed")))
    return MemoryRecord.from_json(reply["record"])


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m netcut_agent.memory`: one model in, one record out."""
    from netcut_agent.runtimes import get_runtime
    from netcut_agent.worker import process_start, receive, send

    args, replies = process_start("netcut's memory probe (started by netcut's worker, not by hand)", argv)
    try:
        request = receive(sys.stdin.buffer)
        runtime = get_runtime(args.runtime, args.threads)
        record = measure(runtime, request["payload"], tuple(request["shape"]))
    except Exception as exc:  # say why on the reply stream (a model the runtime refuses, a missing runtime)
        send(replies, {"ok": False, "message": str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__})
        return 1
    send(replies, {"ok": True, "record": record.to_json()})
    return 0


if __name__ == "__main__":
    sys.exit(main())

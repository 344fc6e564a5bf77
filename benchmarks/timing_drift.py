"""Does a real slowdown of the machine in the middle of a timing session show, and is it repeated and reported?

A busy process pinned to the worker's core starts halfway through a session of ONNX Runtime rounds of netcut's
reference network (the worker pinned to that core too). What the busy process does to the worker depends on the
host: whether it honours CPU affinity and how its scheduler shares a core (on one 2-core Intel Xeon the worker did
not slow at all). So this is a benchmark, not a test: the tests hold the detection logic to a worker whose speed
they set (tests/integration/test_timing_drift.py).

Usage: python benchmarks/timing_drift.py [--tries 3] [--repeats 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.latency.backends import get_backend  # noqa: E402
from netcut.latency.harness import HarnessConfig  # noqa: E402
from netcut.latency.session import RuntimeSession  # noqa: E402
from netcut.latency.steadiness import TimingLog  # noqa: E402
from netcut.latency.workers import WorkerPool  # noqa: E402


class Notes:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def one_try(repeats: int) -> dict:
    """A steady session, then one with a busy process on the worker's core from halfway through."""
    backend = get_backend("onnxruntime")
    notes = Notes()
    core = sorted(os.sched_getaffinity(0))[0]
    with WorkerPool() as pool:
        worker = pool.get(backend.runtime, 1, backend.name)
        os.sched_setaffinity(worker.process.pid, {core})
        session = RuntimeSession(backend, worker, log=TimingLog(reporter=notes, device_levels=None))
        harness = HarnessConfig(warmup=5, repeats=repeats, threads=1)
        session.time([], harness)
        before = session.last_timing
        assert before is not None
        hog: list[subprocess.Popen] = []

        def start_hog() -> None:
            hog.append(subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\n"
                                         "while True: pass"]))

        timer = threading.Timer(before.reference_ms * 2 * repeats / 2 / 1e3, start_hog)  # halfway (settled rounds)
        timer.start()
        try:
            session.time([], harness)
        finally:
            timer.cancel()
            for p in hog:
                p.kill()
                p.wait()
    during = session.last_timing
    assert during is not None
    return {"before": before.to_json(), "during": during.to_json(), "detected": not during.steady or
            during.attempts > 1, "warned": any("not steady" in w for w in notes.warnings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    if not hasattr(os, "sched_setaffinity"):
        sys.exit("needs CPU affinity (Linux)")
    tries = []
    for i in range(args.tries):
        tries.append(one_try(args.repeats))
        d = tries[-1]["during"]
        print(f"try {i + 1}: worst {d['spread_pct']:.0f}% spread, {d['drift_pct']:+.0f}% drift, {d['level_pct']:+.0f}% "
              f"level, {d['attempts']} attempt(s), steady={d['steady']}", flush=True)
    data = {"machine": machine(), "repeats": args.repeats, "tries": tries,
            "detected": sum(t["detected"] for t in tries)}
    rows = ["| try | reference before (ms) | spread | drift | level | attempts | steady | reported |",
            "|---|---|---|---|---|---|---|---|"]
    for i, t in enumerate(tries, 1):
        d = t["during"]
        rows.append(f"| {i} | {t['before']['reference_ms']:.2f} | {d['spread_pct']:.0f}% | {d['drift_pct']:+.0f}% | "
                    f"{d['level_pct']:+.0f}% | {d['attempts']} | {d['steady']} | {t['warned']} |")
    markdown = "\n".join([
        "# A real slowdown mid-session", "", "{header}",
        "A busy process pinned to the timing worker's core starts halfway through a session of the reference "
        f"network ({args.repeats} rounds, ONNX Runtime, 1 thread). Detected: the session was repeated or "
        f"reported unsteady. **Detected in {data['detected']} of {len(tries)} tries.** How far the busy process "
        "slows the worker depends on the host's scheduler and whether it honours CPU affinity; the detection logic "
        "itself is tested on a worker whose speed the test sets.", "", *rows, ""])
    write("timing_drift", data, markdown)


if __name__ == "__main__":
    main()

"""A real slowdown of the machine in the middle of a timing session: a busy process pinned to the worker's core
starts while the reference network is being timed. The session must notice (drift, then level) and say so."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from netcut.latency.backends import RuntimeSession, get_backend
from netcut.latency.harness import HarnessConfig
from netcut.latency.steadiness import TimingLog
from netcut.latency.workers import WorkerPool

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")


class Notes:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_a_slowdown_mid_session_is_detected_repeated_and_reported():
    backend = get_backend("onnxruntime")
    notes = Notes()
    core = sorted(os.sched_getaffinity(0))[0]
    with WorkerPool() as pool:
        worker = pool.get(backend.runtime, 1, backend.name)
        os.sched_setaffinity(worker.process.pid, {core})
        session = RuntimeSession(backend, worker, log=TimingLog(reporter=notes))  # type: ignore[arg-type]
        harness = HarnessConfig(warmup=5, repeats=300, threads=1)  # about 1 s of reference rounds
        session.time([], harness)
        before = session.last_timing
        # A shared CI machine may itself be unsteady here; what must hold is that the hog shows far beyond that.
        assert before is not None, before
        hog: list[subprocess.Popen] = []

        def start_hog() -> None:  # shares the worker's only core from now on: about half its speed
            hog.append(subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\n"
                                         "while True: pass"]))

        timer = threading.Timer(before.reference_ms * 2 * 150 / 1e3, start_hog)  # halfway through the rounds
        timer.start()
        try:
            session.time([], harness)
        finally:
            timer.cancel()
            for p in hog:
                p.kill()
                p.wait()
    during = session.last_timing
    assert during is not None and not during.steady and during.attempts == 3, during
    # spread, drift or level: how a shared core shows varies; it halves the worker's speed, so far beyond the baseline
    assert during.worst_pct() > before.worst_pct() + 20, (before, during)
    assert notes.warnings and "not steady" in notes.warnings[-1]
    assert session.log.summary()["unsteady"] == (0 if before.steady else 1) + 1

"""A slowdown of the machine in the middle of a timing session, on a real worker process whose speed the test sets
(tests/paced_runtime.py): the session must notice (drift, then level), repeat, and say so. The verdict depends on
no property of the host; the real slowdown by a competing process is a benchmark (benchmarks/timing_drift.py)."""

from __future__ import annotations

import json

import pytest

from netcut.latency.harness import HarnessConfig
from netcut.latency.session import RuntimeSession
from netcut.latency.steadiness import TimingLog
from netcut.latency.workers import WorkerPool

pytestmark = [pytest.mark.runtime]


class Notes:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


def test_a_slowdown_mid_session_is_detected_repeated_and_reported(paced):
    backend, schedule = paced
    notes = Notes()
    harness = HarnessConfig(warmup=2, repeats=60, threads=1)
    with WorkerPool() as pool:
        session = RuntimeSession(backend, pool.get(backend.runtime, 1, backend.name),  # type: ignore[arg-type]
                                 log=TimingLog(reporter=notes, device_levels=None))
        session.time([], harness)
        before = session.last_timing
        assert before is not None and before.steady and before.attempts == 1, before
        # from the reference's 40th call on (past the warmup), every call takes twice as long: the first try drifts,
        # the later ones run at another level than the first session
        schedule.write_text(json.dumps({"after_calls": 40, "factor": 2.0}))
        session.time([], harness)
    during = session.last_timing
    assert during is not None and not during.steady and during.attempts == 3, during
    assert during.level_pct > 50 and during.worst_pct() > before.worst_pct() + 50, (before, during)
    assert notes.warnings and "not steady after 3 tries" in notes.warnings[-1]
    assert session.log.summary()["unsteady"] == 1 and session.log.summary()["sessions"] == 2


def test_a_steady_worker_is_timed_once_at_its_own_speed(paced):
    backend, schedule = paced
    schedule.write_text(json.dumps({"factor": 3.0}))  # three times slower from the first call, throughout
    with WorkerPool() as pool:
        session = RuntimeSession(backend, pool.get(backend.runtime, 1, backend.name),  # type: ignore[arg-type]
                                 log=TimingLog(device_levels=None))
        session.time([], HarnessConfig(warmup=2, repeats=30, threads=1))
    timing = session.last_timing
    assert timing is not None and timing.steady and timing.attempts == 1, timing
    assert 2.9 < timing.reference_ms < 4.5, timing  # sleeping 3 ms a call: never faster, a little slower at most

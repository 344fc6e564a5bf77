"""Timing sessions held to a tolerance by the reference network: repeated when the machine's speed moved, kept
comparable with the earlier sessions, and reported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netcut.latency.backends import get_backend
from netcut.latency.harness import HarnessConfig
from netcut.latency.session import RuntimeSession
from netcut.latency.steadiness import (
    REFERENCE,
    REFERENCE_SHAPE,
    DeviceLevels,
    TimingLog,
    reference_network,
    time_steadily,
)
from netcut.latency.workers import WorkerPool
from netcut.report.text import timing_text
from netcut_agent.bench import TimingResult
from netcut_agent.stability import stability
from netcut_agent.stats import summarize
from netcut_agent.timing import TimingConfig

pytestmark = [pytest.mark.runtime]


class ScriptedWorker:
    """A unit-test stand-in: each time() call returns the next scripted reference series (a fake beside the real
    worker tests below)."""

    label, threads = "fake", 1

    def __init__(self, series: list[np.ndarray]) -> None:
        self.series, self.calls = list(series), 0

    def time(self, timed: list[str], config: TimingConfig, chains: dict | None = None) -> TimingResult:
        reference = self.series[min(self.calls, len(self.series) - 1)]
        self.calls += 1
        stats = {name: summarize(reference * 2) for name in timed if name != REFERENCE}
        stats[REFERENCE] = summarize(reference)
        return TimingResult(stats, {}, {n: stability(s.samples) for n, s in stats.items()})


class Notes:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        self.warnings.append(message)


STEADY = np.full(30, 2.0)
SLOWING = np.r_[np.full(15, 2.0), np.full(15, 3.0)]  # the machine got 50% slower halfway through the session


def test_a_steady_session_is_timed_once_and_the_reference_is_left_out():
    worker, log = ScriptedWorker([STEADY]), TimingLog(device_levels=None)
    result, timing = time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    assert worker.calls == 1 and list(result.stats) == ["m"] and REFERENCE not in result.stability
    assert timing is not None and timing.steady and timing.attempts == 1 and timing.reference_ms == 2.0


def test_a_slowdown_mid_session_is_detected_and_the_session_repeated():
    worker, log = ScriptedWorker([SLOWING, STEADY]), TimingLog(device_levels=None)
    _, timing = time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    assert worker.calls == 2 and timing is not None and timing.steady and timing.attempts == 2


def test_a_session_that_never_settles_keeps_the_steadiest_try_and_warns():
    notes = Notes()
    worker, log = ScriptedWorker([SLOWING * 1.0, np.r_[np.full(15, 2.0), np.full(15, 2.4)], SLOWING]), \
        TimingLog(reporter=notes, device_levels=None)  # type: ignore[arg-type]
    _, timing = time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 1), 10.0)
    assert worker.calls == 3 and timing is not None and not timing.steady and timing.attempts == 3
    assert timing.drift_pct == pytest.approx(20.0)  # the second try moved least
    assert len(notes.warnings) == 1 and "not steady after 3 tries" in notes.warnings[0]
    assert log.summary()["unsteady"] == 1


def test_several_threads_that_keep_timing_unsteadily_are_called_out():
    notes = Notes()
    log = TimingLog(reporter=notes, device_levels=None)  # type: ignore[arg-type]
    for _ in range(3):
        worker = ScriptedWorker([SLOWING])
        worker.threads = 2
        time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 2))
    advice = [w for w in notes.warnings if "--threads 1" in w]
    assert len(advice) == 1 and "3 of 3 timing sessions with 2 threads" in advice[0]


def test_a_session_at_another_speed_than_the_earlier_ones_is_repeated():
    log = TimingLog(device_levels=None)
    time_steadily(ScriptedWorker([STEADY]), ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    worker = ScriptedWorker([STEADY * 1.3, STEADY * 1.02])  # steady within itself, but 30% slower than before
    _, timing = time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    assert worker.calls == 2 and timing is not None and timing.level_pct == pytest.approx(2.0)
    summary = log.summary()
    assert summary["sessions"] == 2 and summary["repeated"] == 1 and summary["reference_ms_max"] == pytest.approx(2.04)
    assert "2 sessions" in (timing_text(summary) or "")


def test_another_worker_starts_its_own_level():
    log = TimingLog(device_levels=None)
    time_steadily(ScriptedWorker([STEADY]), ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    worker = ScriptedWorker([STEADY * 3])
    _, timing = time_steadily(worker, ["m"], TimingConfig(), None, log, ("local", "fake", 2))
    assert worker.calls == 1 and timing is not None and timing.level_pct == 0.0


def test_sessions_are_scaled_to_the_devices_recorded_level(tmp_path):
    levels = DeviceLevels(tmp_path / "levels.json")
    log = TimingLog(device_levels=levels)
    first, _ = time_steadily(ScriptedWorker([STEADY]), ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    assert first.stats["m"].p50 == pytest.approx(4.0)  # the first steady session records the level: unscaled
    # a later run (a new log), with the machine 5% slower: its timings are brought back to the recorded level
    later, timing = time_steadily(ScriptedWorker([STEADY * 1.05]), ["m"], TimingConfig(), None,
                                  TimingLog(device_levels=DeviceLevels(tmp_path / "levels.json")), ("local", "fake", 1))
    assert timing is not None and timing.scale == pytest.approx(1 / 1.05)
    assert later.stats["m"].p50 == pytest.approx(4.0) and later.stats["m"].samples[0] == pytest.approx(4.0)
    assert "scaled" in (timing_text(log.summary()) or "")


def test_a_device_far_from_its_recorded_level_is_not_scaled_but_reported(tmp_path):
    DeviceLevels(tmp_path / "levels.json").record("x", 1.0, {})  # another key: ignored
    log = TimingLog(device_levels=DeviceLevels(tmp_path / "levels.json"))
    time_steadily(ScriptedWorker([STEADY]), ["m"], TimingConfig(), None, log, ("local", "fake", 1))
    notes = Notes()
    log = TimingLog(reporter=notes, device_levels=DeviceLevels(tmp_path / "levels.json"))  # type: ignore[arg-type]
    result, timing = time_steadily(ScriptedWorker([STEADY * 1.5]), ["m"], TimingConfig(), None, log,
                                   ("local", "fake", 1))
    assert timing is not None and timing.scale == 1.0 and result.stats["m"].p50 == pytest.approx(6.0)
    assert notes.warnings and "+50% from its recorded level" in notes.warnings[0]


def test_an_unreadable_levels_file_starts_afresh(tmp_path):
    path = tmp_path / "levels.json"
    path.write_text("{not json")
    levels = DeviceLevels(path)
    assert levels.level("k") is None
    levels.record("k", 2.0, {"backend": "fake"})
    assert DeviceLevels(path).level("k") == 2.0


def test_the_reference_network_is_fixed():
    x = torch.linspace(-1, 1, int(np.prod(REFERENCE_SHAPE))).reshape(REFERENCE_SHAPE)
    with torch.inference_mode():
        a, b = reference_network()(x), reference_network()(x)
    assert torch.equal(a, b) and a.shape == (1, 10)
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    reference_network()
    assert torch.equal(torch.rand(2), expected)


def test_a_real_session_times_the_reference_beside_the_models_and_records_it():
    backend = get_backend("onnxruntime")
    with WorkerPool() as pool:
        session = RuntimeSession(backend, pool.get(backend.runtime, 1, backend.name))
        session.add("m", torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval(),
                    torch.zeros(1, 3, 32, 32))
        result = session.time(["m"], HarnessConfig(warmup=1, repeats=10, threads=1))
        assert list(result.stats) == ["m"] and REFERENCE in session.names
        timing = session.last_timing
        assert timing is not None and timing.reference_ms > 0 and timing.threads == 1
        assert session.log.sessions == [timing]
        session.clear()
        assert session.names == []

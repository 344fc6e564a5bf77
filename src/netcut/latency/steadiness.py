"""Latencies comparable across time: a fixed reference network timed in every session, sessions repeated when the
machine's speed moved during them or since the earlier sessions, and the thread count that times steadily here.

Measured on a shared 2-core machine (docs/benchmarks/repeatability.md): with both cores, ONNX Runtime's window
medians of one network ranged over 2.5x between sessions and two threads were slower than one; with one thread they
stayed within a few percent. Within one interleaved session every model sees the same bursts, so ratios hold; the
reference tells a session that saw a burst (spread, drift: repeated) and one run at another speed than the others
(level: repeated), and its level recorded once per device lets every session be scaled to that device's usual speed:
two runs of one command, minutes or days apart, then estimate alike (docs/benchmarks/repeatability.md).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netcut.paths import cache_dir
from netcut_agent.bench import TimingResult
from netcut_agent.stability import Stability
from netcut_agent.stats import LatencyStats
from netcut_agent.timing import TimingConfig

if TYPE_CHECKING:
    from torch import nn

    from netcut.latency.backends import Backend
    from netcut.latency.workers import Worker
    from netcut.progress import Reporter

REFERENCE = "__reference__"
REFERENCE_SHAPE = (1, 3, 128, 128)
REFERENCE_VERSION = 1  # bump when reference_network changes
DEFAULT_TOLERANCE_PCT = 10.0
DEFAULT_RETRIES = 2
MIN_WINDOWS = 3
UNSTEADY_BEFORE_ADVICE = 3  # unsteady sessions with several threads before the thread count itself is blamed


def reference_network() -> nn.Module:
    """A fixed small MobileNet-like network with seeded weights: the same work in every session of every run."""
    import torch
    from torch import nn
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cin, 3, stride, 1, groups=cin), nn.ReLU6(), nn.Conv2d(cin, cout, 1), nn.ReLU6()]

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20210201)
        layers: list[nn.Module] = [nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU6()]
        for cin, cout, stride in ((32, 64, 1), (64, 128, 2), (128, 128, 1), (128, 256, 2), (256, 256, 1),
                                  (256, 512, 2), (512, 512, 1)):
            layers += block(cin, cout, stride)
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 10)]
        return nn.Sequential(*layers).eval()


@cache
def _reference_payload(backend_name: str) -> bytes:
    """The reference converted for a backend: once per machine and converter version (kept in the cache folder;
    LiteRT's conversion takes seconds)."""
    import torch

    from netcut.latency.backends import converted, get_backend

    path = cache_dir() / f"reference-{REFERENCE_VERSION}-{backend_name}-{_converter_versions()}.bin"
    if path.is_file():
        return path.read_bytes()
    payload = converted(get_backend(backend_name), reference_network(), torch.zeros(REFERENCE_SHAPE), "fp32", None)
    from netcut.errors import NetcutError
    from netcut.fsutil import write_atomic

    try:
        write_atomic(path, payload)
    except NetcutError:
        pass  # an unwritable cache costs a conversion per process, nothing else
    return payload


def _converter_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("torch", "onnx", "litert-torch", "openvino"):
        try:
            found.append(version(package))
        except PackageNotFoundError:
            found.append("-")
    return hashlib.sha256("|".join(found).encode()).hexdigest()[:10]


def load_reference(backend: Backend, worker: Worker) -> None:
    """Load the reference network (fp32, converted once per backend) into a worker."""
    worker.load(REFERENCE, _reference_payload(backend.name), REFERENCE_SHAPE)


@dataclass(frozen=True)
class SessionTiming:
    """How steady one timing session was, read from the reference network timed in it."""

    target: str
    backend: str
    threads: int
    reference_ms: float
    spread_pct: float  # of the reference's window medians (p90 - p10 over their median)
    drift_pct: float  # last third of the session against its first third
    level_pct: float  # the reference against the earlier sessions on this worker (positive: slower now)
    attempts: int
    steady: bool
    tolerance_pct: float
    windows: int = MIN_WINDOWS  # of the reference's rounds; fewer than MIN_WINDOWS: too short to judge or scale
    scale: float = 1.0  # timings were multiplied by this: the device's recorded reference level over this session's

    def worst_pct(self) -> float:
        """The largest of spread, drift and level change: what must stay within the tolerance."""
        return max(self.spread_pct, abs(self.drift_pct), abs(self.level_pct))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


_RECORDING = threading.Lock()


class DeviceLevels:
    """The reference network's speed recorded once per device × runtime × threads (the first steady session there):
    every later session's timings are scaled to it, so runs at different times compare as if the device's speed had
    not moved. A session further than MAX_SHIFT_PCT from it is not scaled (the device changed): it is reported."""

    MAX_SHIFT_PCT = 25.0

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else cache_dir() / "reference-levels.json"

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}  # none yet, or unreadable: sessions start a new record rather than fail
        return data if isinstance(data, dict) else {}

    def level(self, key: str) -> float | None:
        """The recorded reference latency (ms) of a device key, if any."""
        entry = self._read().get(key)
        return float(entry["reference_ms"]) if isinstance(entry, dict) and "reference_ms" in entry else None

    def record(self, key: str, reference_ms: float, where: dict[str, Any]) -> None:
        """Record a device key's reference level (kept: the first one stays)."""
        from netcut.fsutil import write_json

        with _RECORDING:  # devices timed side by side record into one file
            data = self._read()
            if key not in data:
                data[key] = {"reference_ms": reference_ms, "recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                             **where}
                write_json(self.path, data)


def level_key(worker: Worker, backend: str) -> str:
    """The device, runtime (and its version) and thread count a reference level belongs to."""
    info = getattr(worker, "machine", {}) or {}
    versions = getattr(worker, "versions", {}) or {}
    text = json.dumps([info.get("cpu"), info.get("cores"), info.get("device"), backend, worker.threads,
                       sorted(versions.items())])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class TimingLog:
    """The timing sessions of one run, with each worker's reference levels in this run (what a new session is
    compared with) and the devices' recorded levels (what timings are scaled to; None: not scaled)."""

    retries: int = DEFAULT_RETRIES
    sessions: list[SessionTiming] = field(default_factory=list)
    levels: dict[tuple[str, str, int], list[float]] = field(default_factory=dict)
    reporter: Reporter | None = None
    device_levels: DeviceLevels | None = field(default_factory=DeviceLevels)
    _warned: set[str] = field(default_factory=set)

    def scale_for(self, worker: Worker, timing: SessionTiming) -> float:
        """The factor that brings this session to the device's recorded reference level (recording it if new)."""
        if self.device_levels is None or timing.windows < MIN_WINDOWS:
            return 1.0
        key = level_key(worker, timing.backend)
        recorded = self.device_levels.level(key)
        if recorded is None:
            if timing.steady:
                self.device_levels.record(key, timing.reference_ms, {"target": timing.target,
                                                                     "backend": timing.backend,
                                                                     "threads": timing.threads})
            return 1.0
        shift = 100 * (timing.reference_ms / recorded - 1)
        if abs(shift) > DeviceLevels.MAX_SHIFT_PCT:
            if key not in self._warned and self.reporter is not None:
                self._warned.add(key)
                self.reporter.warn(f"{timing.target}/{timing.backend} with {timing.threads} thread(s) runs the "
                                   f"reference network {shift:+.0f}% from its recorded level ({recorded:.2f} ms in "
                                   f"{self.device_levels.path}): timings are not scaled; if the device changed, "
                                   "delete that entry")
            return 1.0
        return recorded / timing.reference_ms

    def judge(self, where: tuple[str, str, int], reference: Stability, attempts: int, tolerance_pct: float
              ) -> SessionTiming:
        """A session's figures against the tolerance and the earlier sessions' reference level."""
        earlier = self.levels.get(where, [])
        level = 100 * (reference.median_ms / statistics.median(earlier) - 1) if earlier else 0.0
        # a session of fewer than three windows is too short to judge (a quick check, a test): it is kept as it is
        judged = reference.windows >= MIN_WINDOWS
        within = not judged or (reference.steady(tolerance_pct) and abs(level) <= tolerance_pct)
        return SessionTiming(*where, reference.median_ms, reference.spread_pct, reference.drift_pct, level, attempts,
                             within, tolerance_pct, reference.windows)

    def record(self, timing: SessionTiming) -> None:
        """Keep a finished session (its level joins the reference levels when it was steady, or was the first)."""
        self.sessions.append(timing)
        where = (timing.target, timing.backend, timing.threads)
        if timing.steady or where not in self.levels:
            self.levels.setdefault(where, []).append(timing.reference_ms)
        unsteady = [s for s in self.sessions if not s.steady and s.threads == timing.threads]
        if (timing.threads > 1 and len(unsteady) == UNSTEADY_BEFORE_ADVICE and self.reporter is not None):
            self.reporter.warn(f"{len(unsteady)} of {len(self.sessions)} timing sessions with {timing.threads} "
                               "threads were unsteady on this machine: the runtime's threads compete with other "
                               "work for its cores. A device that runs only this network may well be steadier; to "
                               "compare networks reliably here, time with --threads 1, or on the device itself "
                               "(--device)")
        if not timing.steady and self.reporter is not None:
            self.reporter.warn(f"timing on {timing.target}/{timing.backend} with {timing.threads} thread(s) was not "
                               f"steady after {timing.attempts} tries: reference spread {timing.spread_pct:.0f}%, "
                               f"drift {timing.drift_pct:+.0f}%, level {timing.level_pct:+.0f}% against earlier "
                               f"sessions (tolerance {timing.tolerance_pct:g}%); the steadiest try is kept")

    def summary(self) -> dict[str, Any]:
        """What the report shows: sessions, repeats, unsteady ones, and the reference's range across sessions."""
        if not self.sessions:
            return {}
        refs = [s.reference_ms for s in self.sessions]
        return {"sessions": len(self.sessions), "repeated": sum(s.attempts > 1 for s in self.sessions),
                "unsteady": sum(not s.steady for s in self.sessions),
                "tolerance_pct": max(s.tolerance_pct for s in self.sessions),
                "reference_ms_min": min(refs), "reference_ms_max": max(refs),
                "max_spread_pct": max(s.spread_pct for s in self.sessions),
                "max_drift_pct": max((s.drift_pct for s in self.sessions), key=abs),
                "threads": sorted({s.threads for s in self.sessions}),
                "scale_min": min(s.scale for s in self.sessions), "scale_max": max(s.scale for s in self.sessions),
                "session_list": [s.to_json() for s in self.sessions]}


def time_steadily(worker: Worker, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None,
                  log: TimingLog, where: tuple[str, str, int], tolerance_pct: float = DEFAULT_TOLERANCE_PCT
                  ) -> tuple[TimingResult, SessionTiming | None]:
    """Time with the reference interleaved; repeat (up to `log.retries` times) while the reference says the machine's
    speed moved, and keep the steadiest try. The reference is left out of the returned result."""
    best: tuple[TimingResult, SessionTiming] | None = None
    for attempt in range(1, log.retries + 2):
        result = worker.time([*timed, REFERENCE], config, chains)
        reference = result.stability.get(REFERENCE)
        if reference is None:  # an agent too old to say: nothing to judge
            return _without_reference(result), None
        timing = log.judge(where, reference, attempt, tolerance_pct)
        if best is None or timing.worst_pct() < best[1].worst_pct():
            best = (result, timing)
        if timing.steady:
            break
    assert best is not None
    result, timing = best
    timing = replace(timing, attempts=attempt)
    timing = replace(timing, scale=log.scale_for(worker, timing))
    log.record(timing)
    return scaled(_without_reference(result), timing.scale), timing


def _without_reference(result: TimingResult) -> TimingResult:
    return TimingResult({k: v for k, v in result.stats.items() if k != REFERENCE}, result.stages,
                        {k: v for k, v in result.stability.items() if k != REFERENCE})


def _scaled_stats(s: LatencyStats, factor: float) -> LatencyStats:
    return LatencyStats(s.p50 * factor, s.p90 * factor, s.p99 * factor, s.mean * factor, s.std * factor,
                        s.min * factor, s.n, tuple(x * factor for x in s.samples))


def scaled(result: TimingResult, factor: float) -> TimingResult:
    """Every latency of a result multiplied by a factor (stability figures are relative: unchanged)."""
    if factor == 1.0:
        return result
    return TimingResult({k: _scaled_stats(v, factor) for k, v in result.stats.items()},
                        {k: [_scaled_stats(s, factor) for s in v] for k, v in result.stages.items()},
                        result.stability)

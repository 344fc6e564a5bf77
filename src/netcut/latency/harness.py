"""Measurement harness: warm-up, fixed threads, interleaved repeats, robust statistics, environment record."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from netcut.errors import NetcutError
from netcut.types import LatencyStats


@dataclass(frozen=True)
class HarnessConfig:
    """How to time things. Defaults suit a few-ms CPU model on a shared machine."""

    batch: int = 1
    warmup: int = 5  # rounds discarded before timing
    repeats: int = 30  # timed rounds
    threads: int | None = None  # None: all cores
    min_round_s: float = 0.0  # keep repeating a round's call until this much time has passed (tiny models)

    def resolved_threads(self) -> int:
        """The thread count to use."""
        threads = self.threads if self.threads is not None else (os.cpu_count() or 1)
        if threads <= 0:
            raise NetcutError(f"threads must be ≥ 1, got {threads}", "pass --threads 1 or more (default: all cores)")
        return threads

    def validate(self) -> HarnessConfig:
        """Raise a clear error for impossible settings."""
        self.resolved_threads()
        for name in ("batch", "repeats"):
            if getattr(self, name) <= 0:
                raise NetcutError(f"{name} must be ≥ 1, got {getattr(self, name)}", f"pass --{name} 1 or more")
        if self.warmup < 0:
            raise NetcutError(f"warmup must be ≥ 0, got {self.warmup}", "pass --warmup 0 or more")
        return self


def summarize(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    """Percentiles, mean, spread and minimum of latency samples in ms."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(a.mean()), float(a.std()), float(a.min()),
                        int(a.size), tuple(float(x) for x in a))


def _orders(names: list[str], rounds: int) -> Iterator[list[str]]:
    """A B C, C B A, A B C, ...: every item sees every position, so drifts hit all alike."""
    for r in range(rounds):
        yield names if r % 2 == 0 else names[::-1]


def measure_interleaved(
    calls: dict[str, Callable[[], object]],
    config: HarnessConfig,
    progress: Callable[[int, int], None] | None = None,
    sync: Callable[[], None] | None = None,
) -> dict[str, LatencyStats]:
    """Time each call `config.repeats` times, interleaved round by round, after `config.warmup` rounds.

    `sync` (e.g. torch.cuda.synchronize) is called before reading the clock, so asynchronous devices are timed
    honestly.
    """
    config.validate()
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    total = config.warmup + config.repeats
    for r, order in enumerate(_orders(names, total)):
        for name in order:
            call = calls[name]
            count = 0
            start = time.perf_counter()
            while True:
                call()
                count += 1
                if sync is not None:
                    sync()
                elapsed = time.perf_counter() - start
                if elapsed >= config.min_round_s:
                    break
            if r >= config.warmup:
                samples[name].append(1e3 * elapsed / count)
        if progress is not None:
            progress(r + 1, total)
    return {n: summarize(s) for n, s in samples.items()}


class ChainCall:
    """One call that runs runners in sequence on the real data flow, timing each stage.

    Timing stages inside one pass keeps each stage in its real context (caches, thread pools), which isolated
    timing of the same stage does not.
    """

    def __init__(self, runners: list[Callable], first_input: object, sync: Callable[[], None] | None = None) -> None:
        self.runners, self.first_input, self.sync = runners, first_input, sync
        self.stage_ms: list[list[float]] = [[] for _ in runners]

    def __call__(self) -> None:
        value = self.first_input
        t = time.perf_counter()
        for i, run in enumerate(self.runners):
            value = run(value)
            if self.sync is not None:
                self.sync()
            now = time.perf_counter()
            self.stage_ms[i].append(1e3 * (now - t))
            t = now

    def stats(self, skip: int) -> list[LatencyStats]:
        """Per-stage statistics, dropping the first `skip` (warm-up) passes."""
        return [summarize(s[skip:]) for s in self.stage_ms]


def cpu_model() -> str:
    """The CPU's marketing name, as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(backend: str, threads: int, extra: dict | None = None) -> dict:
    """What a latency number depends on, recorded with every table."""
    import torch

    env = {
        "backend": backend,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    env.update(extra or {})
    return env


def device_key(env: dict) -> str:
    """A short key naming the device+backend+threads a latency belongs to."""
    import hashlib

    text = f"{env.get('cpu')}|{env.get('cores')}|{env.get('backend')}|{env.get('threads')}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]

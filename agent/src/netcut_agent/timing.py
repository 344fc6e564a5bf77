"""The timing rules netcut and its agent share: warm-up, interleaved rounds, per-stage chains, the environment."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from netcut_agent.identity import device_identity, read_text
from netcut_agent.stats import LatencyStats, summarize


@dataclass(frozen=True)
class TimingConfig:
    """How to time: discarded warm-up rounds, timed rounds, a minimum duration per call for tiny models, and untimed
    calls that settle each model before its timed call in a round."""

    warmup: int = 5
    repeats: int = 30
    min_round_s: float = 0.0  # keep repeating a round's call until this much time has passed
    # Interleaving leaves each model's weights out of cache when its turn comes: measured, 5-25% slower than the
    # same model run back to back as deployed. One untimed call first restores that state and keeps the
    # interleaving (drift hits every model alike).
    settle: int = 1

    def check(self) -> TimingConfig:
        """Raise ValueError for impossible settings."""
        if self.repeats < 1 or self.warmup < 0 or self.min_round_s < 0 or self.settle < 0:
            raise ValueError(f"impossible timing settings: {self}")
        return self


def _orders(names: list[str], rounds: int) -> Iterator[list[str]]:
    """A B C, C B A, A B C, ...: every item sees every position, so drifts hit all alike."""
    for r in range(rounds):
        yield names if r % 2 == 0 else names[::-1]


def measure_interleaved(calls: dict[str, Callable[[], object]], config: TimingConfig,
                        progress: Callable[[int, int], None] | None = None,
                        sync: Callable[[], None] | None = None) -> dict[str, LatencyStats]:
    """Time each call `config.repeats` times, interleaved round by round, after `config.warmup` rounds.

    `sync` (e.g. a device barrier) is called before reading the clock, so asynchronous devices are timed honestly.
    """
    config.check()
    names = list(calls)
    samples: dict[str, list[float]] = {n: [] for n in names}
    total = config.warmup + config.repeats
    for r, order in enumerate(_orders(names, total)):
        for name in order:
            call = calls[name]
            for _ in range(config.settle):
                getattr(call, "settle", call)()
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

    def __init__(self, runners: list[Callable[[Any], Any]], first_input: object,
                 sync: Callable[[], None] | None = None) -> None:
        self.runners, self.first_input, self.sync = runners, first_input, sync
        self.stage_ms: list[list[float]] = [[] for _ in runners]

    def settle(self) -> None:
        """One pass on the real data flow, not recorded."""
        value = self.first_input
        for run in self.runners:
            value = run(value)
        if self.sync is not None:
            self.sync()

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


def machine() -> dict[str, Any]:
    """What a latency depends on besides the model: CPU, cores, OS, Python, governor and temperature if readable."""
    env: dict[str, Any] = {"cpu": device_identity(), "cores": os.cpu_count(), "machine": platform.machine(),
                           "os": platform.platform(), "python": platform.python_version(),
                           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    governor = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    if governor:
        env["governor"] = governor
    frequency = read_text("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    if frequency and frequency.isdigit():
        env["frequency_mhz"] = int(frequency) // 1000
    temperature = read_text("/sys/class/thermal/thermal_zone0/temp")
    if temperature and temperature.lstrip("-").isdigit():
        env["temperature_c"] = int(temperature) / 1000
    return env

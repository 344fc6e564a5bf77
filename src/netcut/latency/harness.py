"""Measurement settings and the environment record. The timing itself is netcut_agent's (one copy for netcut and
the device agent): warm-up, interleaved rounds, chains of stages, statistics."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from netcut.errors import NetcutError
from netcut_agent.stats import summarize
from netcut_agent.timing import ChainCall, TimingConfig, machine, measure_interleaved

__all__ = ["ChainCall", "HarnessConfig", "device_key", "environment", "machine", "measure_interleaved", "summarize"]


@dataclass(frozen=True)
class HarnessConfig:
    """How to time things. Defaults suit a few-ms CPU model on a shared machine."""

    batch: int = 1
    warmup: int = 5  # rounds discarded before timing
    repeats: int = 30  # timed rounds
    threads: int | None = None  # None: all cores
    min_round_s: float = 0.0  # keep repeating a round's call until this much time has passed (tiny models)
    timing_tolerance_pct: float = 10.0  # a session whose reference network moved more than this is repeated

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
        if not 0 < self.timing_tolerance_pct < 100:
            raise NetcutError(f"timing tolerance must be between 0 and 100 %, got {self.timing_tolerance_pct}",
                              "pass e.g. --timing-tolerance 10")
        if self.warmup < 0:
            raise NetcutError(f"warmup must be ≥ 0, got {self.warmup}", "pass --warmup 0 or more")
        return self

    def timing(self) -> TimingConfig:
        """The agent's timing rules for these settings."""
        return TimingConfig(self.warmup, self.repeats, self.min_round_s)


def environment(backend: str, threads: int, extra: dict[str, Any] | None = None,
                machine_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a latency number depends on (the machine, backend, threads, versions), recorded with every table;
    `machine_info` describes a remote device (default: this machine)."""
    import torch

    return {"backend": backend, **(machine_info or machine()), "threads": threads, "torch": torch.__version__,
            **(extra or {})}


def device_key(env: dict[str, Any]) -> str:
    """A short key naming the device+backend+threads a latency belongs to."""
    text = f"{env.get('cpu')}|{env.get('cores')}|{env.get('backend')}|{env.get('threads')}"
    if env.get("device"):  # a remote device: its own latencies, even with this machine's CPU
        text += f"|{env['device']}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]

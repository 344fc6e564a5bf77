"""Latency values shared by netcut and its agent: percentiles and the summary of repeated measurements."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PERCENTILES = ("p50", "p90", "p99")


@dataclass(frozen=True)
class Percentiles:
    """A latency at the three deadline percentiles, in ms: measured, estimated or read from a table."""

    p50: float
    p90: float
    p99: float

    def percentile(self, name: str) -> float:
        """The value at p50, p90 or p99."""
        if name not in PERCENTILES:
            raise KeyError(name)
        return float(getattr(self, name))

    def only(self) -> Percentiles:
        """Just the three percentiles (drops the extra fields of a subclass)."""
        return Percentiles(self.p50, self.p90, self.p99)

    def to_json(self) -> dict[str, Any]:
        """{"p50": .., "p90": .., "p99": ..}."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Percentiles:
        """Inverse of to_json."""
        return cls(float(d["p50"]), float(d["p90"]), float(d["p99"]))


@dataclass(frozen=True)
class LatencyStats(Percentiles):
    """Summary of repeated latency measurements, in ms: the percentiles plus spread."""

    mean: float = 0.0
    std: float = 0.0
    min: float = 0.0
    n: int = 0
    samples: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (without raw samples)."""
        d = asdict(self)
        d.pop("samples")
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LatencyStats:
        """Inverse of to_json (samples, if present, are kept)."""
        return cls(float(d["p50"]), float(d["p90"]), float(d["p99"]), float(d.get("mean", 0.0)),
                   float(d.get("std", 0.0)), float(d.get("min", 0.0)), int(d.get("n", 0)),
                   tuple(float(x) for x in d.get("samples", ())))


def summarize(samples_ms: list[float] | np.ndarray) -> LatencyStats:
    """Percentiles, mean, spread and minimum of latency samples in ms."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return LatencyStats(float(p50), float(p90), float(p99), float(a.mean()), float(a.std()), float(a.min()),
                        int(a.size), tuple(float(x) for x in a))

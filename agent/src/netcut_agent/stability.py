"""How steady a timing session was: the medians of short windows of rounds, their spread and their drift.

A shared or throttling machine changes speed in bursts. Within one interleaved session every model sees the same
bursts (ratios stay right); between sessions absolute levels move. A fixed reference model timed in every session
measures both: its window medians say how stable the session was, and its level lets sessions be compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Stability:
    """Window medians of one model's per-round latencies."""

    median_ms: float  # the median over all rounds
    windows: int
    spread_pct: float  # (p90 - p10) of the window medians, relative to their median
    drift_pct: float  # last third of the windows against the first third (positive: got slower)

    def steady(self, tolerance_pct: float) -> bool:
        """Whether both the spread and the drift stay within the tolerance."""
        return self.spread_pct <= tolerance_pct and abs(self.drift_pct) <= tolerance_pct

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Stability:
        """Inverse of to_json."""
        return cls(float(d["median_ms"]), int(d["windows"]), float(d["spread_pct"]), float(d["drift_pct"]))


def stability(samples_ms: Sequence[float], window: int = 5) -> Stability:
    """Split the rounds into windows of `window` rounds and summarise the windows' medians."""
    a = np.asarray(samples_ms, dtype=float)
    if a.size == 0:
        raise ValueError("no samples")
    count = max(1, a.size // window)
    medians = np.array([np.median(part) for part in np.array_split(a[:count * window] if count > 1 else a, count)])
    center = float(np.median(medians))
    p10, p90 = np.percentile(medians, [10, 90])
    third = max(1, len(medians) // 3)
    drift = float(np.median(medians[-third:]) / np.median(medians[:third]) - 1.0) if len(medians) >= 3 else 0.0
    return Stability(float(np.median(a)), int(len(medians)), float(100 * (p90 - p10) / center), 100 * drift)

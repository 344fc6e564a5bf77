"""Session stability from a reference's per-round latencies: steady, bursty, and a slowdown mid-session."""

from __future__ import annotations

import numpy as np
import pytest

from netcut_agent.stability import Stability, stability


def test_a_steady_series_is_steady():
    rng = np.random.default_rng(0)
    s = stability(2.0 + 0.02 * rng.standard_normal(60))
    assert s.windows == 12 and s.median_ms == pytest.approx(2.0, abs=0.02)
    assert s.spread_pct < 3 and abs(s.drift_pct) < 3 and s.steady(5.0)


def test_a_slowdown_in_the_middle_of_a_session_is_detected():
    series = np.r_[np.full(30, 2.0), np.full(30, 3.0)]  # the machine got 50% slower halfway through
    s = stability(series)
    assert s.drift_pct == pytest.approx(50.0) and not s.steady(10.0)


def test_bursts_show_as_spread_not_drift():
    series = np.tile(np.r_[np.full(5, 2.0), np.full(5, 4.0)], 6)  # the second core comes and goes
    s = stability(series)
    assert s.spread_pct > 50 and abs(s.drift_pct) < 1 and not s.steady(10.0)
    assert Stability.from_json(s.to_json()) == s


def test_short_series_still_summarise():
    s = stability([1.0, 1.1, 0.9])
    assert s.windows == 1 and s.drift_pct == 0.0 and s.median_ms == pytest.approx(1.0)

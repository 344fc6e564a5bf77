"""Short texts for people that several renderers share."""

from __future__ import annotations

from typing import Any


def timing_text(summary: dict[str, Any]) -> str | None:
    """One line for reports: how many sessions, how many were repeated or stayed unsteady, how far they moved."""
    if not summary:
        return None
    threads = "/".join(str(t) for t in summary["threads"])
    text = (f"timing: {summary['sessions']} sessions with the reference network ({threads} thread(s)), "
            f"{summary['repeated']} repeated, {summary['unsteady']} unsteady at ±{summary['tolerance_pct']:g}%; "
            f"reference {summary['reference_ms_min']:.2f}–{summary['reference_ms_max']:.2f} ms across sessions, "
            f"largest spread within one {summary['max_spread_pct']:.0f}%, largest drift "
            f"{summary['max_drift_pct']:+.0f}%")
    if "scale_min" in summary:
        text += (f"; timings scaled to the device's recorded reference level by "
                 f"{summary['scale_min']:.3f}–{summary['scale_max']:.3f}")
    return text

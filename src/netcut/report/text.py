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


def ram_text(ram_bytes: int | None, measured: bool) -> str:
    """A peak memory for people: "31.2 MB" measured, "≈31 MB" estimated, "–" unknown."""
    if ram_bytes is None:
        return "–"
    return f"{ram_bytes / 1e6:.1f} MB" if measured else f"≈{ram_bytes / 1e6:.0f} MB"


def chosen_ram_text(candidate: Any, memory: Any) -> str:
    """A chosen network's memory: measured peak with its load and first-run times, else the candidate's estimate."""
    if memory is not None:
        return (f"RAM {ram_text(memory.peak_bytes, True)} (load {memory.load_ms:.0f} ms, first run "
                f"{memory.first_ms:.1f} ms)")
    return f"RAM {ram_text(candidate.ram_bytes, candidate.ram_source == 'measured')}"

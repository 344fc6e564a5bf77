"""Stage: which candidates meet a deadline, and which of them to retrain (NetCut's proposals or everything)."""

from __future__ import annotations

from netcut.errors import NetcutError
from netcut.results import STRATEGIES, Candidate, Deadline


def parse_deadlines(text: str) -> list[float]:
    """'8,12,20' -> [8.0, 12.0, 20.0], with clear errors for anything that is not a positive number."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise NetcutError(f"deadline {part!r} is not a number", "pass milliseconds, e.g. --deadline 12 or "
                              "--deadline 8,12,20") from None
        if not value > 0 or value != value or value == float("inf"):
            raise NetcutError(f"deadline must be a positive number of milliseconds, got {part}",
                              "pass e.g. --deadline 12")
        values.append(value)
    if not values:
        raise NetcutError("no deadline given", "pass e.g. --deadline 12")
    return sorted(set(values))


def propose(candidates: list[Candidate], deadline: Deadline, strategy: str, top_k: int) -> list[Candidate]:
    """netcut: per backbone (and runtime, precision and head) the top_k deepest cuts that meet the deadline;
    exhaustive: every candidate."""
    if strategy == "exhaustive":
        return list(candidates)
    if strategy != "netcut":
        raise NetcutError(f"unknown strategy {strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
    def group(c: Candidate) -> tuple[str, str, str, str]:
        return c.model, c.id.backend, c.id.precision, c.id.head

    proposals = []
    for key in dict.fromkeys(group(c) for c in candidates):
        feasible = [c for c in candidates if group(c) == key and deadline.admits(c)]
        feasible.sort(key=lambda c: c.cut.index, reverse=True)
        proposals += feasible[:top_k]
    return proposals


def union(proposals: list[list[Candidate]]) -> list[Candidate]:
    """Every candidate proposed for some deadline, once, in first-seen order."""
    return list({c.id: c for group in proposals for c in group}.values())

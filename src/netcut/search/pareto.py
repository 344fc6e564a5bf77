"""The latency-accuracy Pareto frontier."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from netcut.results import Candidate, TrainingRecord


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by any other (lower latency and higher score), by latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def deployed(candidate: Candidate, records: list[TrainingRecord]) -> TrainingRecord | None:
    """The record a candidate would be deployed with: its best validated one, probe or fine-tuned (on a tie, the
    frozen trunk, as the decision breaks ties)."""
    mine = [r for r in records if r.matches(candidate)]
    return max(mine, key=lambda r: (r.val_score, r.finetune_blocks == 0), default=None)


def frontier(candidates: list[Candidate], records: list[TrainingRecord]) -> list[tuple[Candidate, TrainingRecord]]:
    """The trained candidates, each with the record it would be deployed with (probe or fine-tuned), on the
    estimated-latency vs test-score Pareto frontier."""
    points = [(c, r) for c in candidates if (r := deployed(c, records)) is not None]
    return [points[i] for i in pareto_front([(c.estimate.p50, r.test_score) for c, r in points])]


def frontiers(candidates: list[Candidate], records: list[TrainingRecord]
              ) -> dict[tuple[str, str], list[tuple[Candidate, TrainingRecord]]]:
    """One frontier per (backend, precision): each runtime and precision is a deployment of its own."""
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.id.backend, c.id.precision), []).append(c)
    return {key: frontier(group, records) for key, group in groups.items()}


def device_frontiers(candidates: list[Candidate], records: list[TrainingRecord]
                     ) -> dict[str, dict[tuple[str, str], list[tuple[Candidate, TrainingRecord]]]]:
    """With several devices: each device's frontiers, drawn from that device's own estimates."""
    devices = sorted({d for c in candidates for d in c.per_device})
    return {d: frontiers([replace(c, estimate=c.per_device[d]) for c in candidates if d in c.per_device], records)
            for d in devices}

"""The decision as a function of the deadline: a step function, computed by decide() once per step.

A deadline's outcome can only change where a candidate's estimate with the margin, or a measured latency, crosses it
(admits() and met_by() compare with <=), and its close calls where a latency comes within CLOSE_CALL_PCT of it. So
between consecutive breakpoints everything is constant: deciding once at each breakpoint and once inside each interval
gives the choice at every deadline, without a second implementation of the rule (the interactive report looks the
table up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from netcut.results import Candidate, Deadline, Decision, ExploreResult, LatencyRecord, TrainingRecord
from netcut.search.decide import CLOSE_CALL_PCT, CloseCall, close_calls, decide
from netcut.search.proposals import propose
from netcut.types import CandidateId, Percentiles, slowest
from netcut_agent.memory import MemoryRecord


@dataclass(frozen=True)
class Step:
    """The decision for the deadlines from low to high (each end included where it says so; high may be inf)."""

    low: float
    high: float
    low_included: bool
    high_included: bool
    decision: Decision
    calls: tuple[CloseCall, ...]
    untrained: tuple[CandidateId, ...]  # proposals at these deadlines that were never trained (explore would)

    def holds(self, ms: float) -> bool:
        """Whether the deadline ms falls in this step."""
        return (self.low < ms or (self.low_included and ms == self.low)) and \
            (ms < self.high or (self.high_included and ms == self.high))


def known_measurements(result: ExploreResult, verified: list[LatencyRecord]
                       ) -> tuple[dict[CandidateId, Percentiles], dict[CandidateId, MemoryRecord | None]]:
    """What a rerun of the result's exploration would reuse instead of measuring: each candidate's stored
    verification (its network's fingerprint, its runtime and precision) on every device it is estimated for (the
    slowest counts, and the largest memory where every device measured it). Only where the run verifies."""
    if not result.config.get("verify", True):
        return {}, {}
    fingerprints = {name: info.fingerprint for name, info in result.models.items()}
    stored = {(r.candidate.backbone, r.candidate.cut, r.candidate.backend, r.candidate.precision, r.candidate.device,
               r.fingerprint): r for r in verified}
    measured: dict[CandidateId, Percentiles] = {}
    memory: dict[CandidateId, MemoryRecord | None] = {}
    for c in result.candidates:
        found = [stored.get((c.model, c.cut.name, c.id.backend, c.id.precision, device, fingerprints.get(c.model, "")))
                 for device in (sorted(c.per_device) or [c.id.device])]
        mine = [r for r in found if r is not None]
        if mine and len(mine) == len(found):
            measured[c.id] = slowest([r.latency for r in mine])
            peaks = [r.memory for r in mine if r.memory is not None]
            memory[c.id] = max(peaks, key=lambda m: m.peak_bytes) if len(peaks) == len(mine) else None
    return measured, memory


def breakpoints(template: Deadline, candidates: list[Candidate], measured: dict[CandidateId, Percentiles]
                ) -> list[float]:
    """Every deadline at which a decision, or its close calls, can change: each candidate's estimate with the margin
    and each measurement, and where each comes within CLOSE_CALL_PCT of the deadline, ascending."""
    latencies = [template.admission_ms(c) for c in candidates]
    latencies += [m.percentile(template.percentile) for m in measured.values()]
    edges = {ms * factor for ms in latencies for factor in (1.0, 1 / (1 + CLOSE_CALL_PCT / 100),
                                                           1 / (1 - CLOSE_CALL_PCT / 100))}
    return sorted(ms for ms in edges if ms > 0 and math.isfinite(ms))


def decision_steps(template: Deadline, candidates: list[Candidate], records: list[TrainingRecord], strategy: str,
                   top_k: int, measured: dict[CandidateId, Percentiles],
                   memory: dict[CandidateId, MemoryRecord | None]) -> list[Step]:
    """The decision at every deadline above 0 (template: percentile, margin, budgets), as steps in order; what was
    measured counts as it would in a rerun (stored measurements are reused), nothing new is measured. Neighbouring
    steps with the same outcome are merged."""
    points = breakpoints(template, candidates, measured)
    trained = {c.id for c in candidates if any(r.matches(c) for r in records)}

    def step(at: float, low: float, high: float, included: bool) -> Step:
        return _step(replace(template, ms=at), low, high, included, candidates, records, strategy, top_k, measured,
                     memory, trained)

    if not points:
        return []
    steps = [step(points[0] / 2, 0.0, points[0], False)]
    for i, edge in enumerate(points):
        nxt = points[i + 1] if i + 1 < len(points) else math.inf
        inside = math.sqrt(edge * nxt) if math.isfinite(nxt) else edge * 2  # decides as any deadline inside does
        steps += [step(edge, edge, edge, True), step(inside, edge, nxt, False)]
    return _merged(steps)


def _step(deadline: Deadline, low: float, high: float, included: bool, candidates: list[Candidate],
          records: list[TrainingRecord], strategy: str, top_k: int, measured: dict[CandidateId, Percentiles],
          memory: dict[CandidateId, MemoryRecord | None], trained: set[CandidateId]) -> Step:
    proposals = propose(candidates, deadline, strategy, top_k)
    decision = decide(deadline, candidates, proposals, records, measured, verify=False, memory=memory)
    if decision.chosen is not None and decision.chosen.candidate.id in measured:
        chosen = decision.chosen
        decision = replace(decision, chosen=replace(chosen, measured=measured[chosen.candidate.id],
                                                    memory=memory.get(chosen.candidate.id)))
    calls = tuple(close_calls(decision, candidates, records))
    return Step(low, high, included, included, decision, calls, tuple(p.id for p in proposals if p.id not in trained))


def _same(a: Step, b: Step) -> bool:
    """Whether two neighbouring steps have the same outcome (choice, baseline, rejections, close calls, untrained)."""
    def outcome(s: Step) -> tuple[object, ...]:
        d = s.decision
        return (d.chosen.candidate.id if d.chosen else None, d.chosen.record.key if d.chosen else None,
                d.best_off_the_shelf.candidate.id if d.best_off_the_shelf else None,
                tuple(r.candidate for r in d.rejected), tuple((c.candidate, c.kind) for c in s.calls), s.untrained,
                d.reason)
    return outcome(a) == outcome(b)


def _merged(steps: list[Step]) -> list[Step]:
    merged: list[Step] = []
    for step in steps:
        if merged and _same(merged[-1], step):
            merged[-1] = replace(merged[-1], high=step.high, high_included=step.high_included)
        else:
            merged.append(step)
    return merged

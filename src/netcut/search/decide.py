"""Stage: the decision per deadline. Pure functions of typed values: no torch, no store, no measurement.

decide() ranks the feasible trained candidates by validation score; where the winner's latency must be verified
and is not known yet, it returns a decision `pending` on that candidate: the caller measures it and decides again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from netcut.results import Candidate, Choice, Deadline, Decision, Rejection, TrainingRecord
from netcut.types import CandidateId, Percentiles
from netcut_agent.memory import MemoryRecord


def relative_gain(score: float, baseline: float) -> float:
    """Relative improvement in percent: 100·(score − baseline)/baseline (NetCut's headline figure)."""
    return 100.0 * (score - baseline) / baseline


# estimates closer than this are one speed for breaking exact ties: the timing tolerance (timings of one network in two
# runs differ by up to about this much), so noise does not decide between equally accurate networks
TIE_SPEED_PCT = 10.0

Ranked = tuple[TrainingRecord, Candidate]


def score_noise(record: TrainingRecord) -> float:
    """How far apart two validation accuracies must be to differ beyond the validation set's noise: one standard
    error of the accuracy, at least one image (90 images at 0.92: 0.029, about 3 images). 0 where the record
    does not say how many images it was scored on, or for soft-label scores."""
    val = record.metrics.get("val", {})
    n = float(val.get("count", 0.0))
    if n < 1 or "accuracy" not in val:
        return 0.0
    p = record.val_score
    return max(math.sqrt(max(p * (1 - p), 0.0) / n), 1.0 / n) + 1e-9


def val_loss(record: TrainingRecord) -> float:
    """The validation cross-entropy (inf where the record has none): among accuracies within the noise, the lower loss
    predicts the higher test accuracy better (docs/benchmarks/small_data.md measures it)."""
    return float(record.metrics.get("val", {}).get("loss", math.inf))


def _pairs(candidates: list[Candidate], records: list[TrainingRecord]) -> list[Ranked]:
    """Every (record, candidate) that matches, candidates in order and each one's records in order; records are
    looked up by network, cut, precision and head (the report decides at hundreds of deadlines)."""
    by_key: dict[tuple[str, str, str, str], list[TrainingRecord]] = {}
    for r in records:
        by_key.setdefault((r.backbone, r.cut, r.precision, r.head), []).append(r)
    return [(r, c) for c in candidates for r in by_key.get((c.id.backbone, c.id.cut, c.id.precision, c.id.head), ())
            if r.matches(c)]


def _ranked(candidates: list[Candidate], records: list[TrainingRecord]) -> list[Ranked]:
    """(record, candidate) pairs, most accurate first. Scores within the validation set's noise of the best one left
    (score_noise) are a tie, won by the lower validation loss. Exact ties (equal scores, equal or unknown losses) go to
    the clearly faster (estimates more than TIE_SPEED_PCT apart); among equally fast ones to the frozen trunk, fewer
    MACs, then by name: two runs whose timings differ a little break a tie alike."""
    pairs = sorted(_pairs(candidates, records), key=lambda rc: (-rc[0].val_score, rc[1].estimate.p50))
    ranked: list[Ranked] = []
    while pairs:
        top = pairs[0][0]
        floor = top.val_score - score_noise(top)
        band: list[Ranked] = []
        for rc in pairs:  # pairs stay sorted by score: the band is their head
            if rc[0].val_score < floor:
                break
            band.append(rc)
        first = min(band, key=lambda rc: (val_loss(rc[0]), -rc[0].val_score))
        exact = [rc for rc in band if (rc[0].val_score, val_loss(rc[0])) == (first[0].val_score, val_loss(first[0]))]
        ranked.extend(_exact_ties(exact))
        taken = {id(rc) for rc in exact}
        pairs = [rc for rc in pairs if id(rc) not in taken]
    return ranked


def _exact_ties(tied: list[Ranked]) -> list[Ranked]:
    """Equal scores: the clearly faster first, then the frozen trunk, fewer MACs, the name."""
    tied = sorted(tied, key=lambda rc: rc[1].estimate.p50)
    ordered: list[Ranked] = []
    group: list[Ranked] = []
    for rc in tied:
        if group and rc[1].estimate.p50 > group[-1][1].estimate.p50 * (1 + TIE_SPEED_PCT / 100):
            ordered.extend(sorted(group, key=lambda g: (g[0].finetune_blocks, g[1].cut.macs, str(g[1].id))))
            group = []
        group.append(rc)
    ordered.extend(sorted(group, key=lambda g: (g[0].finetune_blocks, g[1].cut.macs, str(g[1].id))))
    return ordered


def feasible(deadline: Deadline, candidates: list[Candidate]) -> list[Candidate]:
    """The candidates whose estimate (with the margin) meets the deadline."""
    return [c for c in candidates if deadline.admits(c)]


def best_off_the_shelf(deadline: Deadline, candidates: list[Candidate], records: list[TrainingRecord]
                       ) -> Choice | None:
    """The best full backbone (new head, frozen trunk) whose estimate meets the deadline, by validation score."""
    full = [c for c in feasible(deadline, candidates) if c.is_full]
    probes = [r for r in records if r.finetune_blocks == 0]
    ranked = _ranked(full, probes)
    return Choice(ranked[0][1], ranked[0][0]) if ranked else None


def fine_tune_plan(deadline: Deadline, candidates: list[Candidate], records: list[TrainingRecord], top: int
                   ) -> tuple[list[tuple[Candidate, TrainingRecord]], tuple[Candidate, TrainingRecord] | None]:
    """What to fine-tune for a deadline: the `top` feasible fp32 candidates with a single-cut head and the best
    probes (one per network and cut, whatever the backend), and the fair baseline: the best off-the-shelf network
    meeting the deadline, which gets the same protocol and as many epochs as the survivors."""
    probes = [r for r in records if r.finetune_blocks == 0]
    fp32 = [c for c in feasible(deadline, candidates) if c.id.precision == "fp32" and not c.id.multi]
    picks: dict[str, tuple[Candidate, TrainingRecord]] = {}
    for r, c in _ranked(fp32, probes):
        picks.setdefault(r.key, (c, r))
    pool = list(picks.values())[:top]
    full = [(r, c) for r, c in _ranked([c for c in fp32 if c.is_full], probes)]
    return pool, ((full[0][1], full[0][0]) if full else None)


def best_probe(deadline: Deadline, candidates: list[Candidate], records: list[TrainingRecord]) -> Choice | None:
    """The best frozen-trunk candidate meeting the deadline (by validation): what NetCut chooses without
    fine-tuning, reported beside the fine-tuned choice."""
    ranked = _ranked(feasible(deadline, candidates), [r for r in records if r.finetune_blocks == 0])
    return Choice(ranked[0][1], ranked[0][0]) if ranked else None


def best_fine_tuned_off_the_shelf(deadline: Deadline, candidates: list[Candidate], records: list[TrainingRecord]
                                  ) -> Choice | None:
    """The best fine-tuned full backbone meeting the deadline: the baseline a fine-tuned choice is compared with."""
    tuned = [r for r in records if r.finetune_blocks != 0]
    ranked = _ranked([c for c in feasible(deadline, candidates) if c.is_full], tuned)
    return Choice(ranked[0][1], ranked[0][0]) if ranked else None


def decide(deadline: Deadline, candidates: list[Candidate], proposals: list[Candidate],
           records: list[TrainingRecord], measured: dict[CandidateId, Percentiles], verify: bool = True,
           memory: dict[CandidateId, MemoryRecord | None] | None = None) -> Decision:
    """Choose the most accurate feasible candidate whose measured latency (when verifying) meets the deadline and
    whose measured peak memory (where it was measured) fits the memory budget."""
    memory = memory or {}
    admitted = feasible(deadline, candidates)
    fastest = min(candidates, key=lambda c: c.estimate.percentile(deadline.percentile))

    def outcome(chosen: Choice | None, rejected: list[Rejection], reason: str | None,
                pending: CandidateId | None = None) -> Decision:
        final = bool(admitted) and pending is None
        best = best_off_the_shelf(deadline, candidates, records) if final else None
        tuned = best_fine_tuned_off_the_shelf(deadline, candidates, records) if final else None
        return Decision(deadline, tuple(c.id for c in proposals), tuple(c.id for c in admitted), chosen, best,
                        tuple(rejected), fastest.id, fastest.estimate.percentile(deadline.percentile), reason, pending,
                        tuned)

    if not admitted:
        return outcome(None, [], "no candidate's estimated latency meets the deadline")
    rejected: list[Rejection] = []
    ranked = _ranked(admitted, records)
    for record, candidate in ranked:
        latency = measured.get(candidate.id)
        if verify and latency is None:
            return outcome(None, rejected, None, pending=candidate.id)
        if latency is not None and not deadline.met_by(latency):
            rejected.append(Rejection(candidate.id, latency.percentile(deadline.percentile),
                                      candidate.estimate.percentile(deadline.percentile)))
            continue
        ram = memory.get(candidate.id)
        if latency is not None and ram is not None and not deadline.ram_fits(ram.peak_bytes):
            rejected.append(Rejection(candidate.id, latency.percentile(deadline.percentile),
                                      candidate.estimate.percentile(deadline.percentile), ram.peak_bytes))
            continue
        return outcome(Choice(candidate, record, latency if verify else None, ram if verify else None), rejected,
                       None)
    budgets = "the deadline" if deadline.max_ram_mb is None else "the deadline or the memory budget"
    return outcome(None, rejected, f"every proposal missed {budgets} when measured" if ranked
                   else "no candidate that meets the deadline was trained")


# how far a latency may lie from the deadline for a second run to decide otherwise: one candidate's estimate moved by
# up to about this much between two fresh runs of one command on this project's machine
# (docs/benchmarks/repeatability.md)
CLOSE_CALL_PCT = 5.0


@dataclass(frozen=True)
class CloseCall:
    """A latency that decided a deadline's outcome by less than CLOSE_CALL_PCT: a second run may decide otherwise."""

    candidate: CandidateId
    kind: str  # admitted (estimate only just meets), excluded (only just misses), verified, rejected (measured)
    latency_ms: float  # the estimate (with the margin) or the measurement it was judged by
    distance_pct: float  # against the deadline: negative under it, positive over it

    @property
    def what(self) -> str:
        """What happened, in words."""
        return {"admitted": "estimate with the margin only just meets it",
                "excluded": "estimate with the margin only just misses it",
                "verified": "measured latency only just meets it",
                "rejected": "measured latency only just missed it"}[self.kind]

    def text(self) -> str:
        """One phrase for consoles and reports."""
        return f"{self.candidate.label} ({self.what}: {self.distance_pct:+.1f}%)"


def close_calls(decision: Decision, candidates: list[Candidate], records: list[TrainingRecord],
                within_pct: float = CLOSE_CALL_PCT) -> list[CloseCall]:
    """What a deadline's choice hung on by less than `within_pct`: the chosen network's estimate (with the margin)
    or measurement just under the deadline, a more accurate trained candidate's estimate just over it, a proposal
    rejected by a measurement just over it; where nothing was chosen, the fastest candidate just over it.
    Timings of one network in two runs differ by a few percent, so these are where two runs may choose apart."""
    deadline = decision.deadline

    def distance(ms: float) -> float:
        return 100.0 * (ms / deadline.ms - 1.0)

    def near(ms: float) -> bool:
        return abs(distance(ms)) <= within_pct

    calls: list[CloseCall] = []
    chosen = decision.chosen
    if chosen is None:
        sized = [c for c in candidates if deadline.fits(c)]
        if sized:
            fastest = min(sized, key=deadline.admission_ms)
            admission = deadline.admission_ms(fastest)
            if near(admission):
                calls.append(CloseCall(fastest.id, "excluded", admission, distance(admission)))
    else:
        admission = deadline.admission_ms(chosen.candidate)
        if near(admission):
            calls.append(CloseCall(chosen.candidate.id, "admitted", admission, distance(admission)))
        if chosen.measured is not None:
            measured = chosen.measured.percentile(deadline.percentile)
            if near(measured):
                calls.append(CloseCall(chosen.candidate.id, "verified", measured, distance(measured)))
        for _, candidate in _ranked(candidates, records):
            if candidate.id == chosen.candidate.id:
                break  # those after it are less accurate: they could not have been chosen instead
            if deadline.admits(candidate) or candidate.id in {c.candidate for c in calls}:
                continue
            estimate = deadline.admission_ms(candidate)
            if deadline.fits(candidate) and near(estimate):
                calls.append(CloseCall(candidate.id, "excluded", estimate, distance(estimate)))
    for rejection in decision.rejected:
        if near(rejection.measured_ms):
            calls.append(CloseCall(rejection.candidate, "rejected", rejection.measured_ms,
                                   distance(rejection.measured_ms)))
    return calls

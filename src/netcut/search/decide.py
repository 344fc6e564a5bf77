"""Stage: the decision per deadline. Pure functions of typed values: no torch, no store, no measurement.

decide() ranks the feasible trained candidates by validation score; where the winner's latency must be verified
and is not known yet, it returns a decision `pending` on that candidate: the caller measures it and decides again.
"""

from __future__ import annotations

from netcut.search.results import Candidate, Choice, Deadline, Decision, Rejection, TrainingRecord
from netcut.types import CandidateId, Percentiles


def relative_gain(score: float, baseline: float) -> float:
    """Relative improvement in percent: 100·(score − baseline)/baseline (NetCut's headline figure)."""
    return 100.0 * (score - baseline) / baseline


# estimates closer than this are one speed for breaking ties: the timing tolerance (timings of one network in two runs
# differ by up to about this much), so noise does not decide between equally accurate networks
TIE_SPEED_PCT = 10.0

Ranked = tuple[TrainingRecord, Candidate]


def _ranked(candidates: list[Candidate], records: list[TrainingRecord]) -> list[Ranked]:
    """(record, candidate) pairs, best validation score first. Ties go to the clearly faster (estimates more than
    TIE_SPEED_PCT apart); among equally fast ones to the frozen trunk, fewer MACs, then by name: two runs whose
    timings differ a little break a tie alike (the stems of two backbones are the same network)."""
    pairs = sorted(((r, c) for c in candidates for r in records if r.matches(c)),
                   key=lambda rc: (-rc[0].val_score, rc[1].estimate.p50))
    ranked: list[Ranked] = []
    tied: list[Ranked] = []  # equal score, each within TIE_SPEED_PCT of the one before

    def flush() -> None:
        ranked.extend(sorted(tied, key=lambda rc: (rc[0].finetune_blocks, rc[1].cut.macs, str(rc[1].id))))
        tied.clear()

    for r, c in pairs:
        if tied and (r.val_score != tied[-1][0].val_score
                     or c.estimate.p50 > tied[-1][1].estimate.p50 * (1 + TIE_SPEED_PCT / 100)):
            flush()
        tied.append((r, c))
    flush()
    return ranked


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
           records: list[TrainingRecord], measured: dict[CandidateId, Percentiles], verify: bool = True) -> Decision:
    """Choose the most accurate feasible candidate whose measured latency (when verifying) meets the deadline."""
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
        return outcome(Choice(candidate, record, latency if verify else None), rejected, None)
    return outcome(None, rejected, "every proposal missed the deadline when measured" if ranked
                   else "no candidate that meets the deadline was trained")

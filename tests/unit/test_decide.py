"""The pure stages: deadline filter, proposals, the decision (ties, fine-tuning, verification), the frontier."""

from __future__ import annotations

import pytest

from netcut.errors import NetcutError
from netcut.report.view import close_call_json
from netcut.results import Deadline
from netcut.search.decide import (
    best_fine_tuned_off_the_shelf,
    best_off_the_shelf,
    best_probe,
    close_calls,
    decide,
    fine_tune_plan,
    relative_gain,
)
from netcut.search.pareto import frontier, pareto_front
from netcut.search.proposals import parse_deadlines, propose, union
from netcut.types import Percentiles
from synthetic import candidate, probe

# two backbones: "a" with cuts at 1..5 ms, "b" (bigger) with cuts at 2..10 ms; the last cut of each is the full one
A = [candidate("a", i, 1.0 + i) for i in range(5)]
B = [candidate("b", i, 2.0 * (i + 1)) for i in range(5)]
ALL = A + B


def measured(ms: float) -> Percentiles:
    return Percentiles(ms, ms * 1.1, ms * 1.2)


def test_deadline_admits_with_margin_at_the_chosen_percentile():
    c = candidate("a", 0, 10.0)  # p50 10, p90 11, p99 12
    assert Deadline(10.5, "p50", 0.05).admits(c) and not Deadline(10.4, "p50", 0.05).admits(c)
    assert not Deadline(11.0, "p90", 0.05).admits(c) and Deadline(11.55, "p90", 0.05).admits(c)
    assert Deadline(12.0, "p99", 0.0).admits(c)
    assert Deadline(10.0).met_by(measured(10.0)) and not Deadline(10.0).met_by(measured(10.01))


def test_netcut_proposes_the_top_k_deepest_feasible_cuts_per_backbone():
    deadline = Deadline(6.5, margin=0.0)  # a: cuts 0..4 (1..5 ms) all fit; b: cuts 0..2 (2, 4, 6 ms)
    proposals = propose(ALL, deadline, "netcut", top_k=2)
    assert [c.label for c in proposals] == ["a@blocks.4", "a@blocks.3", "b@blocks.2", "b@blocks.1"]
    assert propose(ALL, deadline, "exhaustive", top_k=2) == ALL
    assert propose(ALL, Deadline(0.5), "netcut", 3) == []
    with pytest.raises(NetcutError, match="unknown strategy"):
        propose(ALL, deadline, "random", 2)
    assert union([proposals, proposals[:1], [B[4]]]) == [*proposals, B[4]]


@pytest.mark.parametrize("text, expected", [("12", [12.0]), ("20, 8,12,8", [8.0, 12.0, 20.0]), ("0.5", [0.5])])
def test_parse_deadlines(text, expected):
    assert parse_deadlines(text) == expected


@pytest.mark.parametrize("text, message", [("fast", "is not a number"), ("-1", "positive"), ("0", "positive"),
                                           ("nan", "positive"), ("inf", "positive"), ("8,,12", "is not a number")])
def test_parse_deadlines_refuses_what_is_not_a_positive_number(text, message):
    with pytest.raises(NetcutError, match=message):
        parse_deadlines(text)


def test_infeasible_deadline_names_the_fastest_candidate():
    decision = decide(Deadline(0.5), ALL, [], [], {})
    assert decision.chosen is None and decision.pending is None and decision.feasible == ()
    assert decision.fastest == A[0].id and decision.fastest_ms == 1.0
    assert "estimated latency" in decision.reason


def test_the_best_validation_score_wins_and_must_be_verified_first():
    records = [probe(A[3], 0.80), probe(A[4], 0.85), probe(B[1], 0.90)]
    deadline = Deadline(6.0, margin=0.0)
    pending = decide(deadline, ALL, [A[3], A[4], B[1]], records, {})
    assert pending.pending == B[1].id and pending.chosen is None
    final = decide(deadline, ALL, [A[3], A[4], B[1]], records, {B[1].id: measured(3.9)})
    assert final.pending is None and final.chosen.candidate == B[1] and final.chosen.measured == measured(3.9)
    assert final.best_off_the_shelf.candidate == A[4]  # the only full network that meets 6 ms
    assert final.proposals == (A[3].id, A[4].id, B[1].id)


def test_a_proposal_that_misses_the_deadline_when_measured_is_rejected_and_the_next_is_taken():
    records = [probe(A[3], 0.80), probe(B[1], 0.90)]
    deadline = Deadline(6.0, margin=0.0)
    step = decide(deadline, ALL, [A[3], B[1]], records, {B[1].id: measured(6.4)})
    assert step.pending == A[3].id and [r.candidate for r in step.rejected] == [B[1].id]
    final = decide(deadline, ALL, [A[3], B[1]], records, {B[1].id: measured(6.4), A[3].id: measured(4.1)})
    assert final.chosen.candidate == A[3]
    assert final.rejected[0].measured_ms == 6.4 and final.rejected[0].estimated_ms == B[1].estimate.p50


def test_when_every_proposal_misses_on_measurement_nothing_is_chosen():
    records = [probe(A[3], 0.80)]
    final = decide(Deadline(6.0, margin=0.0), ALL, [A[3]], records, {A[3].id: measured(7.0)})
    assert final.chosen is None and final.pending is None and "missed the deadline when measured" in final.reason


def test_without_verification_no_measurement_is_needed():
    final = decide(Deadline(6.0, margin=0.0), ALL, [A[3]], [probe(A[3], 0.8)], {}, verify=False)
    assert final.pending is None and final.chosen.candidate == A[3] and final.chosen.measured is None


def test_ties_go_to_the_faster_candidate_then_to_the_frozen_trunk():
    deadline = Deadline(20.0)
    tie = decide(deadline, ALL, [A[2], B[2]], [probe(B[2], 0.9), probe(A[2], 0.9)], {}, verify=False)
    assert tie.chosen.candidate == A[2]  # 3 ms beats 6 ms at equal validation score
    frozen, tuned = probe(A[2], 0.9), probe(A[2], 0.9, blocks=2)
    same = decide(deadline, ALL, [A[2]], [tuned, frozen], {}, verify=False)
    assert same.chosen.record == frozen


def test_a_tie_between_equally_fast_networks_does_not_follow_timing_noise():
    # the stems of two backbones: the same network, equally accurate, timed 3% apart in one run and the other way in
    # the next; either run must choose alike
    chosen = set()
    for a_ms, b_ms in ((2.0, 2.06), (2.06, 2.0)):
        a, b = candidate("a", 0, a_ms), candidate("b", 0, b_ms)
        decision = decide(Deadline(20.0), [a, b], [a, b], [probe(a, 0.9), probe(b, 0.9)], {}, verify=False)
        chosen.add(decision.chosen.candidate.model)
    assert chosen == {"a"}  # the same MACs: by name
    # fewer MACs wins among equally fast ones; a clearly faster one (more than 10%) wins whatever its MACs
    small, big = candidate("b", 0, 2.06), candidate("a", 3, 2.0)
    assert decide(Deadline(20.0), [small, big], [small, big], [probe(small, 0.9), probe(big, 0.9)], {},
                  verify=False).chosen.candidate == small
    fast = candidate("a", 3, 1.5)
    assert decide(Deadline(20.0), [small, fast], [small, fast], [probe(small, 0.9), probe(fast, 0.9)], {},
                  verify=False).chosen.candidate == fast


def test_a_fine_tuned_record_beats_its_probe_when_it_validates_better():
    frozen, tuned = probe(A[2], 0.80), probe(A[2], 0.86, blocks=2)
    decision = decide(Deadline(20.0), ALL, [A[2]], [frozen, tuned], {}, verify=False)
    assert decision.chosen.record == tuned and decision.chosen.record.finetune_blocks == 2
    # the off-the-shelf baseline is judged by its frozen-trunk record only
    base = best_off_the_shelf(Deadline(20.0), ALL, [probe(A[4], 0.7), probe(A[4], 0.99, blocks=1), probe(B[4], 0.8)])
    assert base.candidate == B[4] and base.record.finetune_blocks == 0


def test_scores_within_the_validation_noise_tie_and_the_lower_loss_wins():
    """On 90 validation images one or two images are noise: a fine-tuned network one image behind its probe, with the
    lower validation loss, is chosen; far beyond the noise the higher accuracy wins whatever the losses; on a large
    validation set the same gap is no tie."""
    frozen = probe(A[2], 83 / 90, loss=0.40, count=90)
    tuned = probe(A[2], 82 / 90, blocks=-1, loss=0.25, count=90)
    assert decide(Deadline(20.0), ALL, [A[2]], [frozen, tuned], {}, verify=False).chosen.record == tuned
    behind = probe(A[2], 75 / 90, blocks=-1, loss=0.10, count=90)
    assert decide(Deadline(20.0), ALL, [A[2]], [frozen, behind], {}, verify=False).chosen.record == frozen
    big_frozen = probe(A[2], 0.922, loss=0.40, count=20_000)
    big_tuned = probe(A[2], 0.911, blocks=-1, loss=0.25, count=20_000)
    assert decide(Deadline(20.0), ALL, [A[2]], [big_frozen, big_tuned], {}, verify=False).chosen.record == big_frozen
    # the band is the best score's: a third record within it of the second but not of the first does not tie
    other = probe(A[3], 80 / 90, loss=0.05, count=90)
    ranked = decide(Deadline(20.0), ALL, [A[2], A[3]], [frozen, tuned, other], {}, verify=False)
    assert ranked.chosen.record == tuned


def test_the_fine_tuning_plan_takes_the_best_feasible_probes_and_the_fair_baseline():
    records = [probe(A[1], 0.6), probe(A[4], 0.9), probe(B[3], 0.95), probe(B[1], 0.7), probe(A[3], 0.92)]
    pool, baseline = fine_tune_plan(Deadline(6.0, margin=0.0), ALL, records, top=2)
    assert [c for c, _ in pool] == [A[3], A[4]]  # B[3] (8 ms) does not meet 6 ms
    assert baseline is not None and baseline[0] == A[4]  # the only full network meeting 6 ms
    pool, baseline = fine_tune_plan(Deadline(2.5, margin=0.0), ALL, records, top=2)
    assert [c for c, _ in pool] == [A[1]] and baseline is None  # no full network meets 2.5 ms


def test_fine_tuned_baseline_and_best_probe():
    records = [probe(A[3], 0.80), probe(A[4], 0.75), probe(A[4], 0.85, blocks=-1), probe(A[2], 0.88, blocks=-1)]
    deadline = Deadline(20.0)
    assert best_probe(deadline, ALL, records).candidate == A[3]
    tuned = best_fine_tuned_off_the_shelf(deadline, ALL, records)
    assert tuned.candidate == A[4] and tuned.record.finetune_blocks == -1
    decision = decide(deadline, ALL, [A[2], A[3], A[4]], records, {}, verify=False)
    assert decision.chosen.candidate == A[2] and decision.best_off_the_shelf_fine_tuned == tuned
    assert decision.best_off_the_shelf.record.finetune_blocks == 0


def test_relative_gain():
    assert relative_gain(0.9, 0.8) == pytest.approx(12.5)
    assert relative_gain(0.8, 0.8) == 0.0 and relative_gain(0.7, 0.8) == pytest.approx(-12.5)


def test_pareto_front_keeps_only_undominated_points_in_latency_order():
    points = [(3.0, 0.8), (1.0, 0.5), (2.0, 0.5), (4.0, 0.7), (5.0, 0.9), (1.0, 0.6)]
    assert pareto_front(points) == [5, 0, 4]
    assert pareto_front([]) == []
    records = [probe(A[0], 0.5), probe(A[1], 0.7), probe(A[2], 0.6), probe(A[2], 0.99, blocks=1)]
    # each candidate with the record it would be deployed with: A[2] fine-tuned validates best and joins the frontier
    front = frontier(ALL, records)
    assert [c for c, _ in front] == [A[0], A[1], A[2]] and front[-1][1].finetune_blocks == 1


def test_each_runtime_and_precision_gets_its_own_proposals_and_the_size_budget_filters():
    int8 = [candidate("a", i, 0.5 + i, precision="int8") for i in range(5)]
    proposals = propose(A + int8, Deadline(4.2, margin=0.0), "netcut", top_k=1)
    assert [(c.label, c.id.precision) for c in proposals] == [("a@blocks.3", "fp32"), ("a@blocks.3", "int8")]
    budget = Deadline(20.0, margin=0.0, max_model_mb=0.004)  # fp32 cut 0 holds 4 kB; int8 cuts up to 3 fit
    assert [c.label for c in A if budget.admits(c)] == ["a@blocks.0"]
    assert [c.label for c in int8 if budget.admits(c)] == [f"a@blocks.{i}" for i in range(4)]
    # a fine-tuned fp32 record is picked once per network and cut, whichever backends share it
    twin = candidate("a", 4, 5.0, backend="openvino")
    pool, _ = fine_tune_plan(Deadline(20.0), A + [twin], [probe(A[4], 0.9), probe(A[2], 0.7)], top=2)
    assert [c.cut.name for c, _ in pool] == ["blocks.4", "blocks.2"]


def test_heads_are_a_dimension_of_their_own():
    multi = [candidate("a", i, 1.5 + i) for i in range(5)]
    multi = [type(c)(type(c.id)(c.id.backbone, c.id.cut, c.id.backend, c.id.precision, head="multi512"), c.cut,
                     c.estimate, c.latency_source, c.size_bytes) for c in multi]
    proposals = propose(A + multi, Deadline(4.6, margin=0.0), "netcut", top_k=1)
    assert [c.label for c in proposals] == ["a@blocks.3", "a@blocks.3+multi512"]
    records = [probe(A[3], 0.80), probe(multi[3], 0.85)]
    decision = decide(Deadline(4.6, margin=0.0), A + multi, proposals, records, {}, verify=False)
    assert decision.chosen.candidate == multi[3] and decision.chosen.record.head == "multi512"
    pool, _ = fine_tune_plan(Deadline(20.0), A + multi, records, top=4)
    assert [c for c, _ in pool] == [A[3]]  # Head2Toe heads compete as probes; fine-tuning takes single-cut heads


def test_close_calls_name_what_the_choice_hung_on_by_a_few_percent():
    # a@blocks.3 (4 ms) validates best, a@blocks.2 (3 ms) second; with no margin a deadline of 3.9 ms excludes the
    # best one by 2.6% of its estimate: a second run whose estimate is 3% lower would choose it
    records = [probe(A[3], 0.90), probe(A[2], 0.85), probe(A[1], 0.80)]
    deadline = Deadline(3.9, margin=0.0)
    decision = decide(deadline, ALL, [A[2], A[1]], records, {A[2].id: measured(3.0)})
    assert decision.chosen.candidate == A[2]
    calls = close_calls(decision, ALL, records)
    assert [(c.candidate, c.kind) for c in calls] == [(A[3].id, "excluded")]
    assert calls[0].distance_pct == pytest.approx(100 * (4.0 / 3.9 - 1))
    assert "estimate with the margin only just misses it: +2.6%" in calls[0].text()
    assert close_call_json(calls[0])["cut"] == "blocks.3"
    # far from every edge: nothing to flag (the more accurate one is 25% over, the chosen one 25% under)
    far = Deadline(3.2, margin=0.0)
    assert close_calls(decide(far, ALL, [A[2]], records, {A[2].id: measured(2.4)}), ALL, records) == []
    # the chosen one's estimate (with the margin) and its measurement only just under the deadline
    tight = Deadline(3.1, margin=0.0)
    chosen = decide(tight, ALL, [A[2]], records, {A[2].id: measured(3.05)})
    assert [(c.candidate, c.kind) for c in close_calls(chosen, ALL, records)] == [(A[2].id, "admitted"),
                                                                                   (A[2].id, "verified")]
    # a narrower band leaves out what lies 3% away
    assert [c.kind for c in close_calls(chosen, ALL, records, within_pct=2.0)] == ["verified"]


def test_close_calls_of_a_rejection_and_of_an_infeasible_deadline():
    records = [probe(A[3], 0.90), probe(A[2], 0.85)]
    deadline = Deadline(4.5, margin=0.0)  # a@blocks.3 (4 ms) admitted, measured 4.6: rejected by 2.2%
    decision = decide(deadline, ALL, [A[3], A[2]], records, {A[3].id: measured(4.6), A[2].id: measured(3.0)})
    assert decision.chosen.candidate == A[2]
    assert [(c.candidate, c.kind) for c in close_calls(decision, ALL, records)] == [(A[3].id, "rejected")]
    none = decide(Deadline(0.97, margin=0.0), ALL, [], [], {})  # the fastest (1 ms) misses it by 3%
    assert [(c.candidate, c.kind) for c in close_calls(none, ALL, [])] == [(A[0].id, "excluded")]
    assert close_calls(decide(Deadline(0.5, margin=0.0), ALL, [], [], {}), ALL, []) == []

"""The decision as a step function of the deadline: every step decides as decide() does at any deadline in it."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from netcut.results import Deadline, LatencyRecord
from netcut.search.decide import close_calls, decide
from netcut.search.proposals import propose
from netcut.search.steps import Step, breakpoints, decision_steps, known_measurements
from netcut.types import Percentiles
from netcut_agent.memory import MemoryRecord
from synthetic import candidate, probe, result

# two backbones whose estimates interleave; b's deeper cuts are more accurate, a is faster
A = [candidate("a", i, 1.0 + i) for i in range(5)]
B = [candidate("b", i, 1.5 * (i + 1)) for i in range(5)]
ALL = A + B
RECORDS = [probe(c, 0.5 + 0.05 * c.cut.index + (0.08 if c.model == "b" else 0.0)) for c in ALL if c.cut.index != 2]
# b@blocks.3 was measured slower than its estimate (a rerun would reject it between 6.3 ms and 7.5 ms)
MEASURED = {B[3].id: Percentiles(7.5, 8.0, 8.5), A[4].id: Percentiles(4.8, 5.0, 5.2)}
TEMPLATE = Deadline(1.0, "p50", 0.05)


def step_at(steps: list[Step], ms: float) -> Step:
    held = [s for s in steps if s.holds(ms)]
    assert len(held) == 1, (ms, held)
    return held[0]


def probes(steps: list[Step]) -> list[float]:
    """Deadlines to check: every breakpoint, just either side of each, and a log-spaced sweep."""
    edges = breakpoints(TEMPLATE, ALL, MEASURED)
    sweep = [0.3 * 1.07 ** i for i in range(80)]
    return sorted({*edges, *(e * (1 + 1e-9) for e in edges), *(e * (1 - 1e-9) for e in edges), *sweep})


def test_steps_cover_every_deadline_once_and_decide_as_decide_does():
    steps = decision_steps(TEMPLATE, ALL, RECORDS, "netcut", 2, MEASURED, {})
    assert steps[0].low == 0.0 and steps[-1].high == math.inf
    for before, after in zip(steps, steps[1:]):
        assert before.high == after.low and before.high_included != after.low_included
    for ms in probes(steps):
        step = step_at(steps, ms)
        deadline = replace(TEMPLATE, ms=ms)
        direct = decide(deadline, ALL, propose(ALL, deadline, "netcut", 2), RECORDS, MEASURED, verify=False)
        if direct.chosen is not None and direct.chosen.candidate.id in MEASURED:  # as a verifying rerun holds it
            direct = replace(direct, chosen=replace(direct.chosen, measured=MEASURED[direct.chosen.candidate.id]))
        assert (step.decision.chosen.candidate.id if step.decision.chosen else None) == \
            (direct.chosen.candidate.id if direct.chosen else None), ms
        assert [r.candidate for r in step.decision.rejected] == [r.candidate for r in direct.rejected], ms
        assert {(c.candidate, c.kind) for c in step.calls} == \
            {(c.candidate, c.kind) for c in close_calls(direct, ALL, RECORDS)}, ms


def test_a_measurement_over_the_deadline_rejects_where_a_rerun_would():
    steps = decision_steps(TEMPLATE, ALL, RECORDS, "exhaustive", 3, MEASURED, {})
    inside = step_at(steps, 7.0)  # b@blocks.3 admitted (6.0 · 1.05 = 6.3) but measured 7.5
    assert [r.candidate for r in inside.decision.rejected] == [B[3].id]
    assert inside.decision.chosen is not None and inside.decision.chosen.candidate.id != B[3].id
    after = step_at(steps, 7.5)
    assert after.decision.chosen.candidate.id == B[3].id and after.decision.chosen.measured == MEASURED[B[3].id]
    assert step_at(steps, 5.3).decision.chosen.candidate.id == A[4].id  # 5.0 · 1.05 = 5.25: the full a is admitted


def test_untrained_proposals_are_named_and_nothing_before_the_fastest():
    steps = decision_steps(TEMPLATE, ALL, RECORDS, "netcut", 3, {}, {})
    first = step_at(steps, 0.5)
    assert first.decision.chosen is None and first.untrained == ()
    at = step_at(steps, 3.2)  # a@blocks.2 (3.0 ms · 1.05) is proposed and was never trained
    assert A[2].id in at.untrained and B[2].id not in at.untrained
    assert at.decision.chosen is not None and at.decision.chosen.candidate.id != A[2].id


def test_neighbouring_steps_that_decide_alike_are_merged():
    steps = decision_steps(TEMPLATE, ALL, RECORDS, "exhaustive", 3, {}, {})
    assert len(steps) < 2 * len(breakpoints(TEMPLATE, ALL, {})) + 1
    for before, after in zip(steps, steps[1:]):
        same = (before.decision.chosen and after.decision.chosen and
                before.decision.chosen.candidate.id == after.decision.chosen.candidate.id and
                before.calls == after.calls and before.untrained == after.untrained and
                before.decision.best_off_the_shelf == after.decision.best_off_the_shelf)
        assert not same


def verified(c, ms: float, device: str = "local", fingerprint: str = "fp", peak: int | None = 10**7) -> LatencyRecord:
    memory = None if peak is None else MemoryRecord(peak, peak, 1.0, 1.0, "test")
    return LatencyRecord("k", replace(c.id, device=device), fingerprint, "verified", Percentiles(ms, ms, ms),
                         memory=memory)


def test_known_measurements_are_what_a_rerun_would_reuse():
    run = result(ALL, RECORDS)
    measured, memory = known_measurements(run, [verified(A[1], 2.5), verified(B[1], 9.0, fingerprint="other")])
    assert measured == {A[1].id: Percentiles(2.5, 2.5, 2.5)} and memory[A[1].id].peak_bytes == 10**7
    assert known_measurements(replace(run, config={**run.config, "verify": False}), [verified(A[1], 2.5)]) == ({}, {})
    # with two devices: the slowest, and only where both measured it
    two = replace(A[1], per_device={"pi": Percentiles(2, 2, 2), "nuc": Percentiles(1, 1, 1)})
    run = result([two, A[2]], RECORDS)
    both, _ = known_measurements(run, [verified(two, 3.0, "pi"), verified(two, 1.0, "nuc", peak=None)])
    assert both == {two.id: Percentiles(3.0, 3.0, 3.0)}
    one, _ = known_measurements(run, [verified(two, 3.0, "pi")])
    assert one == {}


def test_breakpoints_are_the_admissions_the_measurements_and_the_close_call_edges():
    edges = breakpoints(TEMPLATE, [A[0]], {A[0].id: Percentiles(1.2, 1.3, 1.4)})
    assert edges == pytest.approx(sorted([1.05, 1.05 / 1.05, 1.05 / 0.95, 1.2, 1.2 / 1.05, 1.2 / 0.95]))

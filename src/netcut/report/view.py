"""The documented JSON view of an exploration (what `explore --json` prints), built from the typed result."""

from __future__ import annotations

from typing import Any

from netcut.codec import encode
from netcut.results import Candidate, Choice, Deadline, Decision, ExploreResult, TrainingRecord
from netcut.search.decide import CloseCall, best_probe, close_calls, relative_gain
from netcut.search.pareto import frontiers
from netcut.types import CandidateId
from netcut_agent.memory import MemoryRecord


def deadline_json(deadline: Deadline) -> dict[str, Any]:
    """A deadline's fields as documented for --json."""
    return {"deadline_ms": deadline.ms, "percentile": deadline.percentile, "margin": deadline.margin,
            "max_model_mb": deadline.max_model_mb, "max_ram_mb": deadline.max_ram_mb}


def close_call_json(call: CloseCall) -> dict[str, Any]:
    """A close call as documented for --json."""
    c = call.candidate
    return {"model": c.backbone, "cut": c.cut, "backend": c.backend, "precision": c.precision, "kind": call.kind,
            "latency_ms": call.latency_ms, "distance_pct": call.distance_pct}


def choice_json(choice: Choice) -> dict[str, Any]:
    """A chosen network (or the best off-the-shelf one) as documented for --json."""
    c, r, m = choice.candidate, choice.record, choice.measured
    return {"model": c.model, "cut": c.cut.name, "is_full": c.is_full, "backend": c.id.backend,
            "precision": c.id.precision, "head": c.id.head, "accuracy": r.accuracy, "metric": r.metric,
            "score": r.test_score,
            "val_score": r.val_score, "val_loss": r.metrics.get("val", {}).get("loss"),
            "metrics": r.metrics.get("test", {}), "fine_tune_blocks": r.finetune_blocks,
            "fine_tune_epochs": r.metrics.get("epochs", 0), "distilled": bool(r.metrics.get("distilled", False)),
            "estimated_ms": c.estimate.p50, "estimated_p90_ms": c.estimate.p90, "estimated_p99_ms": c.estimate.p99,
            "latency_ms": None if m is None else m.p50, "latency_p90_ms": None if m is None else m.p90,
            "latency_p99_ms": None if m is None else m.p99, "macs": c.cut.macs, "params": c.cut.params,
            "latency_source": c.latency_source, "size_mb": c.size_bytes / 1e6, **ram_json(c, choice.memory),
            "memory": encode(choice.memory) if choice.memory else None, "record": r.key}


def ram_json(candidate: Candidate, memory: MemoryRecord | None = None) -> dict[str, Any]:
    """A candidate's peak memory as documented for --json: MB, and whether it was measured or estimated (a
    verification's measurement first)."""
    if memory is not None:
        return {"ram_mb": memory.peak_bytes / 1e6, "ram_source": "measured"}
    ram = candidate.ram_bytes
    return {"ram_mb": None if ram is None else ram / 1e6, "ram_source": candidate.ram_source or None}


def candidate_json(result: ExploreResult, candidate: Candidate, decision: Decision) -> dict[str, Any]:
    """One candidate's row for a deadline."""
    c, probe = candidate, result.probe_of(candidate)
    row = {"model": c.model, "cut": c.cut.name, "cut_index": c.cut.index, "is_full": c.is_full,
           "backend": c.id.backend, "precision": c.id.precision, "head": c.id.head, "estimated_ms": c.estimate.p50,
           "estimated_p90_ms": c.estimate.p90, "estimated_p99_ms": c.estimate.p99,
           "feasible": c.id in decision.feasible, "macs": c.cut.macs, "params": c.cut.params,
           "trained": probe is not None}
    row["size_mb"] = c.size_bytes / 1e6
    row.update(ram_json(c))
    if c.per_device:  # several devices: each one's estimate (estimated_ms is the slowest)
        row["estimated_ms_by_device"] = {name: e.p50 for name, e in c.per_device.items()}
    if probe is not None:
        row.update({"accuracy": probe.accuracy, "score": probe.test_score, "val_score": probe.val_score})
        twin = result.fp32_twin(c) if c.id.precision != "fp32" else None
        reference = result.probe_of(twin) if twin is not None else None
        if twin is not None and reference is not None:
            row.update({"fp32_accuracy": reference.accuracy, "accuracy_change_vs_fp32": probe.accuracy -
                        reference.accuracy, "fp32_estimated_ms": twin.estimate.p50})
    return row


def beaten_on_test(result: ExploreResult, decision: Decision) -> list[tuple[Candidate, TrainingRecord]]:
    """The candidates meeting the deadline (by estimate) whose best record scores higher on test than the choice,
    best first: the choice is made on validation, so on a small test split some do, by noise."""
    if decision.chosen is None:
        return []
    feasible = set(decision.feasible)
    best: dict[CandidateId, tuple[Candidate, TrainingRecord]] = {}
    for c in result.candidates:
        if c.id not in feasible or c.id == decision.chosen.candidate.id:
            continue
        for r in result.records:
            if r.matches(c) and r.test_score > decision.chosen.score and (
                    c.id not in best or r.test_score > best[c.id][1].test_score):
                best[c.id] = (c, r)
    return sorted(best.values(), key=lambda pair: -pair[1].test_score)


def gains(result: ExploreResult, decision: Decision) -> dict[str, float | None]:
    """Relative gains over the best off-the-shelf network meeting the deadline, like with like: the best frozen-trunk
    candidate against the frozen-trunk baseline, and the (fine-tuned) choice against the equally fine-tuned
    baseline."""
    probe = best_probe(decision.deadline, list(result.candidates), list(result.records))
    base, tuned, chosen = decision.best_off_the_shelf, decision.best_off_the_shelf_fine_tuned, decision.chosen
    return {"gain_probe_pct": relative_gain(probe.score, base.score) if probe and base else None,
            "gain_fine_tuned_pct": relative_gain(chosen.score, tuned.score) if chosen and tuned else None,
            "gain_pct": relative_gain(chosen.score, base.score) if chosen and base else None}


def decision_json(result: ExploreResult, decision: Decision) -> dict[str, Any]:
    """One deadline's outcome."""
    by_id = {c.id: c for c in result.candidates}
    out: dict[str, Any] = {
        **deadline_json(decision.deadline), "proposals": [p.label for p in decision.proposals],
        "candidates": [candidate_json(result, c, decision) for c in result.candidates],
        "rejected_on_verification": [{"model": r.candidate.backbone, "cut": r.candidate.cut,
                                      "measured_ms": r.measured_ms, "estimated_ms": r.estimated_ms,
                                      "ram_mb": None if r.ram_bytes is None else r.ram_bytes / 1e6}
                                     for r in decision.rejected],
        "chosen": None if decision.chosen is None else choice_json(decision.chosen),
        "best_off_the_shelf": None if decision.best_off_the_shelf is None else
        choice_json(decision.best_off_the_shelf),
        "best_off_the_shelf_fine_tuned": None if decision.best_off_the_shelf_fine_tuned is None else
        choice_json(decision.best_off_the_shelf_fine_tuned), **gains(result, decision),
        "close_calls": [close_call_json(c) for c in close_calls(decision, list(result.candidates),
                                                                 list(result.records))]}
    if decision.chosen is None and decision.fastest is not None:
        out.update({"fastest_ms": decision.fastest_ms, "fastest": by_id[decision.fastest].label,
                    "reason": decision.reason})
    return out


def explore_json(result: ExploreResult) -> dict[str, Any]:
    """The --json form: flat for one deadline, a `deadlines` list for several."""
    data: dict[str, Any] = {
        "deadlines": [decision_json(result, d) for d in result.decisions],
        "trained": result.trained, "newly_trained": result.newly_trained,
        "candidates_total": len(result.candidates), "exploration_s": result.exploration_s,
        "stage_seconds": result.stage_seconds,
        "strategy": result.strategy,
        "frontier": [{"model": c.model, "cut": c.cut.name, "is_full": c.is_full, "backend": c.id.backend,
                      "precision": c.id.precision, "estimated_ms": c.estimate.p50, "score": r.test_score}
                     for group in frontiers(list(result.candidates), list(result.records)).values()
                     for c, r in group],
        "dataset": encode(result.dataset),
        "models": encode(result.models),
        "config": result.config, "environment": result.environment, "netcut_version": result.netcut_version,
    }
    if len(result.decisions) == 1:
        first = data.pop("deadlines")[0]
        return {**first, **data}
    return data

"""The interactive report: one self-contained HTML page (Plotly's JavaScript and the run's data inlined) with the
frontiers, a deadline slider that looks the choice up in a table computed by search/decide.py, the depth and int8
charts, and the static tables for readers without JavaScript."""

from __future__ import annotations

import html
import json
from importlib import resources
from typing import Any

from netcut.report.markdown import markdown, tuned_label
from netcut.report.text import ram_text
from netcut.report.view import choice_json, close_call_json
from netcut.results import Candidate, Deadline, Decision, ExploreResult, LatencyRecord, TrainingRecord
from netcut.search.decide import CloseCall, close_calls, relative_gain
from netcut.search.pareto import deployed, device_frontiers, frontiers
from netcut.search.steps import Step, decision_steps, known_measurements
from netcut.types import CandidateId, Percentiles


def plotly_js() -> str:
    """Plotly's bundled JavaScript, from its Python package (no network)."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _asset(name: str) -> str:
    return resources.files("netcut.report").joinpath("assets", name).read_text(encoding="utf-8")


def _kind(record: TrainingRecord) -> str:
    return "fine-tuned" if record.finetune_blocks else "probe"


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g} ms"


def hover_text(result: ExploreResult, candidate: Candidate, record: TrainingRecord,
               measured: Percentiles | None) -> str:
    """What hovering a point says: the network, its scores, its latency (estimated, and measured where it was),
    size and memory, how it was trained and what int8 changed."""
    c, metric = candidate, result.dataset.metric.replace("_", " ")
    lines = [f"<b>{html.escape(c.model)}</b> @ {html.escape(c.cut.name)}{' (off-the-shelf)' if c.is_full else ''}",
             f"{c.id.backend} {c.id.precision}, head {html.escape(c.id.head)}",
             f"{_kind(record)}{html.escape(tuned_label(record))}",
             f"validation {metric} {record.val_score:.4f}, test {record.test_score:.4f}",
             f"estimated p50 {_ms(c.estimate.p50)}, p90 {_ms(c.estimate.p90)}"]
    if measured is not None:
        lines.append(f"measured p50 {_ms(measured.p50)}, p90 {_ms(measured.p90)}")
    for device, estimate in sorted(c.per_device.items()):
        lines.append(f"on {html.escape(device)}: estimated p50 {_ms(estimate.p50)}")
    lines.append(f"size {c.size_bytes / 1e6:.2f} MB, RAM {ram_text(c.ram_bytes, c.ram_source == 'measured')}")
    twin = result.fp32_twin(c) if c.id.precision != "fp32" else None
    reference = result.probe_of(twin) if twin is not None else None
    if reference is not None and record.finetune_blocks == 0:
        lines.append(f"int8 changes accuracy by {record.accuracy - reference.accuracy:+.4f} "
                     f"(fp32 {reference.accuracy:.4f})")
    return "<br>".join(lines)


def _points(result: ExploreResult, measured: dict[CandidateId, Percentiles]) -> list[dict[str, Any]]:
    """Every trained (candidate, record) pair as a chart point."""
    points = []
    for c in result.candidates:
        for r in result.records:
            if r.matches(c):
                points.append({"key": f"{_candidate_key(c.id)}|{r.key}", "candidate": _candidate_key(c.id),
                               "model": c.model, "cut": c.cut.name,
                               "cut_index": c.cut.index, "is_full": c.is_full, "backend": c.id.backend,
                               "precision": c.id.precision, "head": c.id.head, "kind": _kind(r),
                               "x": c.estimate.p50, "x_by_device": {d: e.p50 for d, e in c.per_device.items()},
                               "y": r.test_score, "val": r.val_score,
                               "hover": hover_text(result, c, r, measured.get(c.id))})
    return points


def _candidate_key(c: CandidateId) -> str:
    return f"{c.backbone}|{c.cut}|{c.backend}|{c.precision}|{c.head}"


def _groups(result: ExploreResult) -> list[dict[str, Any]]:
    """One frontier per runtime × precision (× device with several devices): the keys of its points."""
    records = list(result.records)

    def keys(front: list[tuple[Candidate, TrainingRecord]]) -> list[str]:
        return [_candidate_key(c.id) + "|" + r.key for c, r in front]

    groups = [{"name": f"{backend} {precision}", "backend": backend, "precision": precision, "device": None,
               "frontier": keys(front)} for (backend, precision), front in frontiers(list(result.candidates),
                                                                                    records).items()]
    for device, fronts in device_frontiers(list(result.candidates), records).items():
        groups += [{"name": f"{backend} {precision} on {device}", "backend": backend, "precision": precision,
                    "device": device, "frontier": keys(front)} for (backend, precision), front in fronts.items()]
    return groups


def _outcome(decision: Decision, calls: list[CloseCall] | tuple[CloseCall, ...], untrained: tuple[CandidateId, ...],
             explored: bool) -> dict[str, Any]:
    """One deadline's outcome as the page shows it (the documented --json fields of the choices)."""
    chosen, base = decision.chosen, decision.best_off_the_shelf
    status = "none"
    if chosen is not None:
        status = ("verified" if explored and chosen.measured is not None else
                  "measured" if chosen.measured is not None else "estimated")
    return {"chosen": None if chosen is None else {**choice_json(chosen), "label": chosen.candidate.label,
                                                    "admission_ms": decision.deadline.admission_ms(chosen.candidate),
                                                    "key": _candidate_key(chosen.candidate.id)},
            "status": status,
            "best_off_the_shelf": None if base is None else {**choice_json(base), "label": base.candidate.label},
            "gain_pct": relative_gain(chosen.score, base.score) if chosen and base else None,
            "rejected": [{"label": r.candidate.label, "backend": r.candidate.backend,
                          "precision": r.candidate.precision, "measured_ms": r.measured_ms,
                          "ram_mb": None if r.ram_bytes is None else r.ram_bytes / 1e6} for r in decision.rejected],
            "close_calls": [{**close_call_json(c), "label": c.candidate.label, "what": c.what} for c in calls],
            "untrained": [p.label + f" ({p.backend} {p.precision})" for p in untrained],
            "reason": decision.reason, "explored": explored}


def _step_json(step: Step) -> dict[str, Any]:
    return {"low": step.low, "high": None if step.high == float("inf") else step.high,
            "low_included": step.low_included, "high_included": step.high_included,
            **_outcome(step.decision, step.calls, step.untrained, False)}


def _depth(result: ExploreResult) -> list[dict[str, Any]]:
    """Per backbone, runtime and precision (plain heads): each cut's estimated latency and deployed accuracy."""
    lines: dict[tuple[str, str, str], dict[str, Any]] = {}
    records = list(result.records)
    for c in sorted(result.candidates, key=lambda c: c.cut.index):
        if c.id.multi:
            continue
        line = lines.setdefault((c.model, c.id.backend, c.id.precision),
                                {"model": c.model, "backend": c.id.backend, "precision": c.id.precision,
                                 "cuts": [], "latency": [], "score": [], "full": []})
        record = deployed(c, records)
        line["cuts"].append(c.cut.name)
        line["latency"].append(c.estimate.p50)
        line["score"].append(None if record is None else record.test_score)
        line["full"].append(c.is_full)
    return list(lines.values())


def _int8(result: ExploreResult) -> list[dict[str, Any]]:
    """int8 against fp32, per trained pair: estimated speed-up and accuracy change."""
    pairs = []
    for q in result.candidates:
        f = result.fp32_twin(q) if q.id.precision == "int8" else None
        pq, pf = result.probe_of(q), (result.probe_of(f) if f is not None else None)
        if f is None or pq is None or pf is None:
            continue
        pairs.append({"model": q.model, "cut": q.cut.name, "backend": q.id.backend, "is_full": q.is_full,
                      "speedup": f.estimate.p50 / q.estimate.p50, "change": pq.accuracy - pf.accuracy,
                      "hover": f"<b>{html.escape(q.model)}</b> @ {html.escape(q.cut.name)} ({q.id.backend})<br>"
                               f"fp32 {_ms(f.estimate.p50)}, int8 {_ms(q.estimate.p50)} "
                               f"({f.estimate.p50 / q.estimate.p50:.2f}x)<br>accuracy fp32 {pf.accuracy:.4f}, "
                               f"int8 {pq.accuracy:.4f} ({pq.accuracy - pf.accuracy:+.4f})"})
    return pairs


def page_data(result: ExploreResult, verified: list[LatencyRecord]) -> dict[str, Any]:
    """Everything the page shows, decided here: points, frontiers, the choice at every deadline, the depth and int8
    charts' series."""
    cfg = result.config
    measured, memory = known_measurements(result, verified)
    template = Deadline(1.0, cfg["percentile"], cfg["margin"], cfg.get("max_model_mb"), cfg.get("max_ram_mb"))
    steps = decision_steps(template, list(result.candidates), list(result.records), cfg["strategy"], cfg["top_k"],
                           measured, memory)
    explored = [{"deadline_ms": d.deadline.ms,
                 **_outcome(d, close_calls(d, list(result.candidates), list(result.records)), (), True)}
                for d in result.decisions]
    latencies = [c.estimate.p50 for c in result.candidates] + [d.deadline.ms for d in result.decisions]
    chosen = next((d.chosen.candidate.id for d in result.decisions if d.chosen), None)
    return {"title": f"{', '.join(result.models)} on {result.dataset.name}", "metric": result.dataset.metric,
            "percentile": cfg["percentile"], "margin": cfg["margin"],
            "fine_tunes": any(r.finetune_blocks for r in result.records),
            "strategy": cfg["strategy"], "points": _points(result, measured), "groups": _groups(result),
            "steps": [_step_json(s) for s in steps], "explored": explored,
            "slider": {"low": min(latencies) / 2, "high": max(latencies) * 2,
                       "start": result.decisions[0].deadline.ms if result.decisions else max(latencies)},
            "first_group": None if chosen is None else f"{chosen.backend} {chosen.precision}",
            "depth": _depth(result), "int8": _int8(result)}


def _script_json(data: dict[str, Any]) -> str:
    """JSON safe inside a <script> element: no "<" at all (no closing tag, no comment or script opener)."""
    return json.dumps(data, allow_nan=False).replace("<", "\\u003c")


def interactive_html(result: ExploreResult, verified: list[LatencyRecord]) -> str:
    """The report as one self-contained interactive page (works from file:// with no network)."""
    from markdown_it import MarkdownIt

    render = MarkdownIt("commonmark", {"html": False}).enable("table").render
    md = markdown(result, plot_name=None, depth_name=None)
    head, _, tables = md.partition("\n## ")  # the title and summary above the interactive part, the tables below
    data = page_data(result, verified)
    title = f"netcut report: {data['title']}"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{_asset('page.css')}</style></head><body><section id='summary'>{render(head)}</section>"
            f"{_asset('page.html')}"
            f"<noscript><p class='note'>The charts and the deadline slider need JavaScript; the tables below hold the "
            f"same results.</p></noscript><section id='static'>{render('## ' + tables)}</section>"
            f"<script>{plotly_js()}</script>"
            f"<script type='application/json' id='netcut-data'>{_script_json(data)}</script>"
            f"<script>{_asset('page.js')}</script></body></html>\n")


"""The exploration report as markdown (the interactive page renders it as its static tables)."""

from __future__ import annotations

from netcut.report.text import chosen_ram_text, ram_text, timing_text
from netcut.report.view import beaten_on_test
from netcut.results import Choice, Decision, ExploreResult, TrainingRecord
from netcut.search.decide import CLOSE_CALL_PCT, CloseCall, best_probe, close_calls, relative_gain
from netcut.search.pareto import frontiers


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _chosen_row(result: ExploreResult, d: Decision, calls: list[CloseCall]) -> list[str]:
    c, b = d.chosen, d.best_off_the_shelf
    if c is None:
        fastest = next((x.label for x in result.candidates if x.id == d.fastest), "?")
        return [f"| {d.deadline.ms:g} ms | none: {d.reason or ''} (fastest {fastest}: {_fmt(d.fastest_ms)} ms) "
                "| | | | | | | | | | | |"]
    base = f"{b.model} {b.score:.4f}" if b else "none"
    gain = f"{relative_gain(c.score, b.score):+.2f}%" if b else "n/a (none meets it)"
    m = c.measured
    lines = [f"| {d.deadline.ms:g} ms | {c.model} | {c.cut}{' (full)' if c.candidate.is_full else ''}"
             f"{tuned_label(c.record)} | "
             f"{c.candidate.id.backend} {c.candidate.id.precision} | {c.score:.4f} | {c.record.val_score:.4f} | "
             f"{_fmt(m.p50 if m else None)} ms | {_fmt(m.p90 if m else None)} ms | "
             f"{_fmt(c.candidate.estimate.p50)} ms | {c.candidate.size_bytes / 1e6:.2f} MB | "
             f"{chosen_ram_text(c.candidate, c.memory)[4:]} | {base} | {gain} |"]
    for r in d.rejected:
        missed = (f"peak memory {r.ram_bytes / 1e6:.1f} MB over the budget" if r.ram_bytes is not None else
                  f"measured {r.measured_ms:.2f} ms (estimated {r.estimated_ms:.2f})")
        lines.append(f"|  | rejected: {r.candidate.label} ({r.candidate.backend} {r.candidate.precision}) {missed} "
                     "| | | | | | | | | | | |")
    for call in calls:
        lines.append(f"|  | close call: {call.text()} | | | | | | | | | | | |")
    for cand, record in beaten_on_test(result, d)[:3]:
        lines.append(f"|  | beats it on test, not on validation: {cand.label} ({record.test_score:.4f} test, "
                     f"{record.val_score:.4f} validation) | | | | | | | | | | | |")
    return lines


def run_time(result: ExploreResult) -> str:
    """What this run took, and apart what the records it reused from earlier runs took to train (their stored
    times): a resumed run does little itself."""
    reused = [r for r in result.records if r.created_run != result.run_id]
    if not reused:
        return f"exploration: {result.exploration_s:.1f} s"
    return (f"exploration: this run {result.exploration_s:.1f} s; it reused {len(reused)} of {len(result.records)} "
            f"trained networks from earlier runs of this run directory, whose training took "
            f"{sum(r.seconds for r in reused):.1f} s")


def markdown(result: ExploreResult, plot_name: str | None = "frontier.png", depth_name: str | None = "depth.png"
             ) -> str:
    """The report as markdown."""
    metric = result.dataset.metric
    cfg = result.config
    lines = [f"# netcut report: {', '.join(result.models)} on {result.dataset.name}", ""]
    sizes = "/".join(str(result.dataset.sizes[k]) for k in ("train", "val", "test"))
    deadlines = ", ".join(f"{d.deadline.ms:g} ms" for d in result.decisions)
    total = len(result.candidates)
    size_budget = f", model files ≤ {cfg['max_model_mb']:g} MB" if cfg.get("max_model_mb") else ""
    size_budget += f", peak memory ≤ {cfg['max_ram_mb']:g} MB" if cfg.get("max_ram_mb") else ""
    lines += [f"- deadlines: {deadlines} at {cfg['percentile']} (margin {cfg['margin']:.0%}){size_budget}; "
              f"backends {', '.join(cfg['backends'])}, precisions {', '.join(cfg['precisions'])}; estimator "
              f"{cfg['estimator']}, strategy {cfg['strategy']}",
              f"- data: {sizes} images (train/val/test); chosen by validation {metric} ({result.dataset.sizes['val']} "
              f"images: a candidate may beat the choice on test by chance), reported on test",
              f"- {run_time(result)}; retrained {result.trained} of {total} candidates (exhaustive would retrain all "
              f"{total})",
              f"- machine: {result.environment['cpu']}, {result.environment['threads']} threads, torch "
              f"{result.environment['torch']}"]
    timing = timing_text(result.environment.get("timing", {}))
    lines += ([f"- {timing}"] if timing else []) + [""]
    if plot_name:
        lines += [f"![accuracy against latency]({plot_name})", ""]
    if depth_name:
        lines += ["Along the depth of each backbone: estimated latency, peak memory and accuracy at every cut.", "",
                  f"![latency, memory and accuracy along the depth]({depth_name})", ""]
    lines += ["## Chosen network per deadline", "",
              f"| deadline | chosen | cut | runtime | test {metric} | validation {metric} | measured p50 | measured p90"
              " | estimated | size | RAM | best off-the-shelf meeting it | relative gain |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    calls = [close_calls(d, list(result.candidates), list(result.records)) for d in result.decisions]
    for d, decision_calls in zip(result.decisions, calls):
        lines += _chosen_row(result, d, decision_calls)
    if any(calls):
        lines += ["", f"A close call is a latency within {CLOSE_CALL_PCT:g}% of the deadline that decided the choice: "
                  "timings of one network in two runs differ by a few percent, so a second run may choose otherwise "
                  "there."]
    lines += ["", "## Pareto frontiers (trained candidates), one per runtime and precision", ""]
    for (backend, precision), front in frontiers(list(result.candidates), list(result.records)).items():
        lines += [f"### {backend}, {precision}", "",
                  f"| model | cut | estimated p50 | size | RAM | test {metric} |", "|---|---|---|---|---|---|"]
        for c, r in front:
            lines.append(f"| {c.model}{' (off-the-shelf)' if c.is_full else ''} | {c.cut.name} | "
                         f"{c.estimate.p50:.2f} ms | {c.size_bytes / 1e6:.2f} MB | "
                         f"{ram_text(c.ram_bytes, c.ram_source == 'measured')} | {r.test_score:.4f} |")
        lines.append("")
    lines += fine_tuning_section(result)
    lines += int8_section(result)
    lines += ["## Proposals", ""]
    for d in result.decisions:
        lines.append(f"- {d.deadline.ms:g} ms: {', '.join(p.label for p in d.proposals) or 'none'}")
    lines += ["", "## All candidates", "",
              "| model | cut | runtime | estimated p50 | size | RAM | trained | test score |",
              "|---|---|---|---|---|---|---|---|"]
    for c in result.candidates:
        probe = result.probe_of(c)
        lines.append(f"| {c.model} | {c.cut.name}{' (full)' if c.is_full else ''} | {c.id.backend} {c.id.precision} "
                     f"| {c.estimate.p50:.2f} ms | {c.size_bytes / 1e6:.2f} MB | "
                     f"{ram_text(c.ram_bytes, c.ram_source == 'measured')} | {'yes' if probe else 'no'} | "
                     f"{_fmt(probe.test_score, 4) if probe else '–'} |")
    return "\n".join(lines) + "\n"


def tuned_label(record: TrainingRecord) -> str:
    """' (fine-tuned: all layers, 6 epochs)' for a fine-tuned record, '' for a probe."""
    if not record.finetune_blocks:
        return ""
    layers = "all layers" if record.finetune_blocks < 0 else f"last {record.finetune_blocks} blocks"
    return f" (fine-tuned: {layers}, {record.metrics.get('epochs', '?')} epochs)"


def fine_tuning_section(result: ExploreResult) -> list[str]:
    """Per deadline, frozen trunk against frozen trunk and fine-tuned against equally fine-tuned: the two gains."""
    if not any(r.finetune_blocks for r in result.records):
        return []
    lines = ["## Fine-tuning, like with like", "",
             "The baseline is the best off-the-shelf network (full backbone, new head) meeting the deadline; when "
             "fine-tuning, it gets the same protocol and as many epochs as the candidates that survive successive "
             "halving.", "",
             "| deadline | best frozen-trunk TRN | frozen baseline | gain | fine-tuned choice | fine-tuned baseline "
             "| gain |", "|---|---|---|---|---|---|---|"]
    for d in result.decisions:
        probe = best_probe(d.deadline, list(result.candidates), list(result.records))
        base, tuned, chosen = d.best_off_the_shelf, d.best_off_the_shelf_fine_tuned, d.chosen

        def cell(choice: Choice | None) -> str:
            return "–" if choice is None else f"{choice.candidate.label} {choice.score:.4f}"

        probe_gain = f"{relative_gain(probe.score, base.score):+.2f}%" if probe and base else "–"
        tuned_gain = f"{relative_gain(chosen.score, tuned.score):+.2f}%" if chosen and tuned else "–"
        lines.append(f"| {d.deadline.ms:g} ms | {cell(probe)} | {cell(base)} | {probe_gain} | "
                     f"{cell(chosen)}{tuned_label(chosen.record) if chosen else ''} | {cell(tuned)} | {tuned_gain} |")
    return lines + [""]


def int8_section(result: ExploreResult) -> list[str]:
    """int8 against fp32, network by network: speed (estimated), accuracy (measured in the runtime), size."""
    pairs = [(f, c) for c in result.candidates if c.id.precision == "int8" and (f := result.fp32_twin(c)) is not None]
    if not pairs:
        return []
    slower = [(f, q) for f, q in pairs if q.estimate.p50 > f.estimate.p50]
    lines = ["## int8 against fp32", "",
             f"int8 is estimated slower than fp32 for {len(slower)} of {len(pairs)} candidates"
             + (": on a CPU without int8 dot-product instructions it often is, so netcut measures it." if slower
                else "."), "",
             "| model | cut | runtime | fp32 p50 | int8 p50 | int8 speed-up | fp32 size | int8 size | fp32 acc "
             "| int8 acc |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for f, q in pairs:
        pf, pq = result.probe_of(f), result.probe_of(q)
        if pf is None and pq is None and not q.is_full:
            continue
        lines.append(f"| {q.model} | {q.cut.name}{' (full)' if q.is_full else ''} | {q.id.backend} | "
                     f"{f.estimate.p50:.2f} ms | {q.estimate.p50:.2f} ms | {f.estimate.p50 / q.estimate.p50:.2f}x | "
                     f"{f.size_bytes / 1e6:.2f} MB | {q.size_bytes / 1e6:.2f} MB | "
                     f"{_fmt(pf.accuracy if pf else None, 4)} | {_fmt(pq.accuracy if pq else None, 4)} |")
    return lines + [""]

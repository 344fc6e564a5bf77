"""The exploration report as markdown, and the same as a self-contained HTML page."""

from __future__ import annotations

import html

from netcut.search.decide import relative_gain
from netcut.search.pareto import frontier
from netcut.search.results import Decision, ExploreResult


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _chosen_row(result: ExploreResult, d: Decision) -> list[str]:
    c, b = d.chosen, d.best_off_the_shelf
    if c is None:
        fastest = next((x.label for x in result.candidates if x.id == d.fastest), "?")
        return [f"| {d.deadline.ms:g} ms | none: {d.reason or ''} (fastest {fastest}: {_fmt(d.fastest_ms)} ms) "
                "| | | | | | | |"]
    base = f"{b.model} {b.score:.4f}" if b else "none"
    gain = f"{relative_gain(c.score, b.score):+.2f}%" if b else "n/a (none meets it)"
    m = c.measured
    lines = [f"| {d.deadline.ms:g} ms | {c.model} | {c.cut}{' (full)' if c.candidate.is_full else ''}"
             f"{' ft' + str(c.record.finetune_blocks) if c.record.finetune_blocks else ''} | {c.score:.4f} | "
             f"{_fmt(m.p50 if m else None)} ms | {_fmt(m.p90 if m else None)} ms | "
             f"{_fmt(c.candidate.estimate.p50)} ms | {base} | {gain} |"]
    for r in d.rejected:
        lines.append(f"|  | rejected: {r.candidate.label} measured {r.measured_ms:.2f} ms "
                     f"(estimated {r.estimated_ms:.2f}) | | | | | | | |")
    return lines


def markdown(result: ExploreResult, plot_name: str | None = "frontier.png") -> str:
    """The report as markdown."""
    metric = result.dataset.metric
    cfg = result.config
    lines = [f"# netcut report: {', '.join(result.models)} on {result.dataset.name}", ""]
    sizes = "/".join(str(result.dataset.sizes[k]) for k in ("train", "val", "test"))
    deadlines = ", ".join(f"{d.deadline.ms:g} ms" for d in result.decisions)
    total = len(result.candidates)
    lines += [f"- deadlines: {deadlines} at {cfg['percentile']} (margin {cfg['margin']:.0%}), backend "
              f"{cfg['backend']}, estimator {cfg['estimator']}, strategy {cfg['strategy']}",
              f"- data: {sizes} images (train/val/test); chosen by validation {metric}, reported on test",
              f"- exploration: {result.exploration_s:.1f} s; retrained {result.trained} of {total} candidates "
              f"(exhaustive would retrain all {total})",
              f"- machine: {result.environment['cpu']}, {result.environment['threads']} threads, torch "
              f"{result.environment['torch']}", ""]
    if plot_name:
        lines += [f"![accuracy against latency]({plot_name})", ""]
    lines += ["## Chosen network per deadline", "",
              f"| deadline | chosen | cut | test {metric} | measured p50 | measured p90 | estimated "
              "| best off-the-shelf meeting it | relative gain |", "|---|---|---|---|---|---|---|---|---|"]
    for d in result.decisions:
        lines += _chosen_row(result, d)
    lines += ["", "## Pareto frontier (trained candidates)", "", f"| model | cut | estimated p50 | test {metric} |",
              "|---|---|---|---|"]
    for c, r in frontier(list(result.candidates), list(result.records)):
        lines.append(f"| {c.model}{' (off-the-shelf)' if c.is_full else ''} | {c.cut.name} | "
                     f"{c.estimate.p50:.2f} ms | {r.test_score:.4f} |")
    lines += ["", "## Proposals", ""]
    for d in result.decisions:
        lines.append(f"- {d.deadline.ms:g} ms: {', '.join(p.label for p in d.proposals) or 'none'}")
    lines += ["", "## All candidates", "", "| model | cut | estimated p50 | trained | test score |",
              "|---|---|---|---|---|"]
    for c in result.candidates:
        probe = result.probe_of(c)
        lines.append(f"| {c.model} | {c.cut.name}{' (full)' if c.is_full else ''} | {c.estimate.p50:.2f} ms | "
                     f"{'yes' if probe else 'no'} | {_fmt(probe.test_score, 4) if probe else '–'} |")
    return "\n".join(lines) + "\n"


def to_html(md: str, title: str) -> str:
    """A self-contained HTML page from the report's markdown (tables, headings, lists, the image)."""
    body: list[str] = []
    table: list[str] = []

    def flush() -> None:
        if table:
            rows = [r for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            cells = [[html.escape(c.strip()) for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{c}</th>" for c in cells[0])
            rest = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in cells[1:])
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rest}</tbody></table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:line.rindex(")")]
            body.append(f'<img src="{html.escape(src)}" alt="accuracy against latency" style="max-width:100%">')
    flush()
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}"
            f"</style></head><body>{''.join(body)}</body></html>\n")

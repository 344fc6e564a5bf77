"""The exploration report: Pareto frontier table, proposals, chosen network per deadline, costs, and a plot."""

from __future__ import annotations

import html
from pathlib import Path

from netcut.fsutil import write_atomic
from netcut.search.pareto import pareto_front


def _points(result: dict) -> list[dict]:
    """Every trained candidate (union over deadlines), with latency and score."""
    seen: dict[tuple, dict] = {}
    for d in result["deadlines"]:
        for row in d["candidates"]:
            if row.get("trained"):
                seen[(row["model"], row["cut"])] = row
    return list(seen.values())


def plot(result: dict, path: Path) -> Path:
    """accuracy vs latency: every trained TRN, the frontier, off-the-shelf networks marked, deadline lines."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    points = _points(result)
    metric = result["dataset"]["metric"].replace("_", " ")
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    models = sorted({p["model"] for p in points})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for model in models:
        trns = [p for p in points if p["model"] == model and not p["is_full"]]
        ax.scatter([p["estimated_ms"] for p in trns], [p["score"] for p in trns], s=22, alpha=0.75,
                   color=colors[model], label=f"{model} TRNs")
        for p in points:
            if p["model"] == model and p["is_full"]:
                ax.scatter([p["estimated_ms"]], [p["score"]], marker="*", s=220, color=colors[model],
                           edgecolor="black", zorder=5, label=f"{model} off-the-shelf")
    front = [points[i] for i in pareto_front([(p["estimated_ms"], p["score"]) for p in points])]
    if front:
        ax.step([p["estimated_ms"] for p in front], [p["score"] for p in front], where="post", color="black",
                linewidth=1.2, label="Pareto frontier")
    for d in result["deadlines"]:
        ax.axvline(d["deadline_ms"], color="red", linestyle="--", linewidth=0.9)
        ax.text(d["deadline_ms"], 1.0, f" {d['deadline_ms']:g} ms", color="red", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
        if d["chosen"]:
            c = d["chosen"]
            ax.scatter([c["estimated_ms"]], [c["score"]], s=140, facecolors="none", edgecolors="red", linewidths=1.5,
                       zorder=6)
    ax.set_xlabel(f"latency, estimated p50 (ms, {result['config']['backend']})")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"NetCut on {result['dataset']['name']}: trimmed networks fill the frontier", pad=14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def _fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(result: dict, plot_name: str | None = "frontier.png") -> str:
    """The report as markdown."""
    metric = result["dataset"]["metric"]
    cfg = result["config"]
    lines = [f"# netcut report: {', '.join(result['models'])} on {result['dataset']['name']}", ""]
    sizes = "/".join(str(result["dataset"]["sizes"][k]) for k in ("train", "val", "test"))
    deadlines = ", ".join(f"{d['deadline_ms']:g} ms" for d in result["deadlines"])
    lines += [f"- deadlines: {deadlines} at "
              f"{cfg['percentile']} (margin {cfg['margin']:.0%}), backend {cfg['backend']}, estimator "
              f"{cfg['estimator']}, strategy {cfg['strategy']}",
              f"- data: {sizes} images (train/val/test); chosen by validation {metric}, "
              "reported on test",
              f"- exploration: {result['exploration_s']:.1f} s; retrained {result['trained']} of "
              f"{result['candidates_total']} candidates (exhaustive would retrain all {result['candidates_total']})",
              f"- machine: {result['environment']['cpu']}, {result['environment']['threads']} threads, torch "
              f"{result['environment']['torch']}", ""]
    if plot_name:
        lines += [f"![accuracy against latency]({plot_name})", ""]
    lines += ["## Chosen network per deadline", "",
              f"| deadline | chosen | cut | test {metric} | measured p50 | measured p90 | estimated | best off-the-shelf"
              " meeting it | relative gain |", "|---|---|---|---|---|---|---|---|---|"]
    for d in result["deadlines"]:
        c, b = d["chosen"], d["best_off_the_shelf"]
        if c is None:
            lines.append(f"| {d['deadline_ms']:g} ms | none: {d.get('reason', '')} (fastest {d.get('fastest')}: "
                         f"{_fmt(d.get('fastest_ms'))} ms) | | | | | | | |")
            continue
        base = f"{b['model']} {b['score']:.4f}" if b else "none"
        gain = f"{100 * (c['score'] - b['score']) / b['score']:+.2f}%" if b else "n/a (none meets it)"
        lines.append(f"| {d['deadline_ms']:g} ms | {c['model']} | {c['cut']}{' (full)' if c['is_full'] else ''}"
                     f"{' ft' + str(c['fine_tune_blocks']) if c['fine_tune_blocks'] else ''} | {c['score']:.4f} | "
                     f"{_fmt(c['latency_ms'])} ms | {_fmt(c['latency_p90_ms'])} ms | {_fmt(c['estimated_ms'])} ms | "
                     f"{base} | {gain} |")
        for r in d["rejected_on_verification"]:
            lines.append(f"|  | rejected: {r['model']} @ {r['cut']} measured {r['measured_ms']:.2f} ms "
                         f"(estimated {r['estimated_ms']:.2f}) | | | | | | | |")
    lines += ["", "## Pareto frontier (trained candidates)", "", f"| model | cut | estimated p50 | test {metric} |",
              "|---|---|---|---|"]
    for p in result["frontier"]:
        lines.append(f"| {p['model']}{' (off-the-shelf)' if p['is_full'] else ''} | {p['cut']} | "
                     f"{p['estimated_ms']:.2f} ms | {p['score']:.4f} |")
    lines += ["", "## Proposals", ""]
    for d in result["deadlines"]:
        lines.append(f"- {d['deadline_ms']:g} ms: {', '.join(d['proposals']) or 'none'}")
    lines += ["", "## All candidates", "", "| model | cut | estimated p50 | trained | test score |", "|---|---|---|---|---|"]
    for row in result["deadlines"][0]["candidates"]:
        trained = {(r["model"], r["cut"]): r for d in result["deadlines"] for r in d["candidates"] if r["trained"]}
        t = trained.get((row["model"], row["cut"]))
        lines.append(f"| {row['model']} | {row['cut']}{' (full)' if row['is_full'] else ''} | "
                     f"{row['estimated_ms']:.2f} ms | {'yes' if t else 'no'} | {_fmt(t['score'], 4) if t else '–'} |")
    return "\n".join(lines) + "\n"


def to_html(md: str, title: str) -> str:
    """A self-contained HTML page from the report's markdown (tables, headings, lists, the image)."""
    body, table = [], []

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


def write_report(result: dict, out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.html and frontier.png into out_dir (atomically)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot(result, out_dir / "frontier.png")
    md = markdown(result)
    return {"markdown": write_atomic(out_dir / "report.md", md),
            "html": write_atomic(out_dir / "report.html", to_html(md, "netcut report")), "plot": png}

"""The report's figures: the frontier (every trained TRN, the Pareto frontier, off-the-shelf networks, deadlines and
choices) and, per backbone, latency, peak memory and accuracy along the depth of the network."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from netcut.fsutil import write_atomic
from netcut.results import ExploreResult
from netcut.search.pareto import device_frontiers, frontiers


def x_range(result: ExploreResult) -> tuple[float, float]:
    """The latency axis: the trained candidates' estimates (and deadlines near them) with a margin;
    deadlines far outside are marked at the edge rather than stretching it."""
    xs = [c.estimate.p50 for c in result.candidates if result.probe_of(c) is not None] or \
        [c.estimate.p50 for c in result.candidates]
    low, high = min(xs), max(xs)
    near = [d.deadline.ms for d in result.decisions if low / 2 <= d.deadline.ms <= high * 2]
    low, high = min([low, *near]), max([high, *near])
    return low * 0.85, high * 1.15


def figure(result: ExploreResult) -> Any:
    """accuracy vs latency: probes, fine-tuned and int8 networks with distinct markers, a frontier per runtime and
    precision, off-the-shelf networks, deadlines (at the edge when out of range) and the chosen networks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result.dataset.metric.replace("_", " ")
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    trained = [(c, r) for c in result.candidates for r in result.records if r.matches(c)]
    models = sorted({c.model for c, _ in trained})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    groups = frontiers(list(result.candidates), list(result.records))
    styles = dict(zip(groups, ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)), (0, (8, 2))]))
    several = len(groups) > 1
    for model in models:
        for kind, marker in (("probe", "o"), ("fine-tuned", "D")):
            for precision in sorted({c.id.precision for c, _ in trained}):
                pts = [(c, r) for c, r in trained if c.model == model and c.id.precision == precision
                       and (r.finetune_blocks != 0) == (kind == "fine-tuned") and not c.is_full]
                if pts:
                    hollow = precision != "fp32"  # int8 hollow, fp32 filled
                    ax.scatter([c.estimate.p50 for c, _ in pts], [r.test_score for _, r in pts], s=26, alpha=0.8,
                               marker=marker, facecolors="none" if hollow else colors[model],
                               edgecolors=colors[model], label=f"{model} {kind} {precision}")
        for c, r in trained:
            if c.model == model and c.is_full:
                tuned = " fine-tuned" if r.finetune_blocks else ""
                tag = f" ({c.id.backend} {c.id.precision})" if several else ""
                ax.scatter([c.estimate.p50], [r.test_score], marker="*", s=220 if not tuned else 160,
                           color=colors[model], edgecolor="black", zorder=5,
                           label=f"{model} off-the-shelf{tuned}{tag}")
    for key, front in groups.items():
        if front:
            ax.step([c.estimate.p50 for c, _ in front], [r.test_score for _, r in front], where="post",
                    color="black", linestyle=styles[key], linewidth=1.2,
                    label="Pareto frontier" + (f" {key[0]} {key[1]}" if several else ""))
    for i, (device, fronts) in enumerate(device_frontiers(list(result.candidates), list(result.records)).items()):
        for key, front in fronts.items():  # several devices: each one's frontier (the one above is the slowest's)
            if front:
                ax.step([c.estimate.p50 for c, _ in front], [r.test_score for _, r in front], where="post",
                        color=f"C{(i + len(models)) % 10}", linestyle=styles[key], linewidth=1.0, alpha=0.8,
                        label=f"frontier on {device}" + (f" {key[0]} {key[1]}" if several else ""))
    low, high = x_range(result)
    ax.set_xlim(low, high)
    for d in result.decisions:
        if low <= d.deadline.ms <= high:
            ax.axvline(d.deadline.ms, color="red", linestyle="--", linewidth=0.9)
            ax.text(d.deadline.ms, 1.0, f" {d.deadline.ms:g} ms", color="red", va="bottom", fontsize=8,
                    transform=ax.get_xaxis_transform())
        else:  # far outside the candidates' range: an arrow at the edge, the axis stays on the data
            right = d.deadline.ms > high
            ax.annotate(f"{d.deadline.ms:g} ms " + ("→" if right else "←"), xy=(1.0 if right else 0.0, 1.0),
                        xycoords="axes fraction", ha="right" if right else "left", va="bottom", color="red",
                        fontsize=8)
        if d.chosen:
            ax.scatter([d.chosen.candidate.estimate.p50], [d.chosen.score], s=160, facecolors="none",
                       edgecolors="red", linewidths=1.5, zorder=6)
    ax.scatter([], [], s=160, facecolors="none", edgecolors="red", linewidths=1.5, label="chosen")
    ax.set_xlabel(f"latency, estimated p50 (ms; {', '.join(sorted({c.id.backend for c in result.candidates}))})")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"NetCut on {result.dataset.name}: trimmed networks fill the frontier", pad=14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def depth_figure(result: ExploreResult) -> Any:
    """Per backbone (a column each), along its cuts in network order: estimated latency, peak memory and the probe's
    (and fine-tuned) test score, in the runtime and precision of the first deadline's choice (else the first
    explored); the chosen cuts marked. How much each further block costs and how much it gives."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen_ids = [d.chosen.candidate.id for d in result.decisions if d.chosen]
    shown = chosen_ids[0] if chosen_ids else result.candidates[0].id  # the runtime and precision that won
    backend, precision = shown.backend, shown.precision
    models = list(dict.fromkeys(c.model for c in result.candidates))
    fig, axes = plt.subplots(3, len(models), figsize=(max(6.0, 4.5 * len(models)), 7.5), dpi=110, sharex="col",
                             squeeze=False)
    chosen = {(c.backbone, c.cut) for c in chosen_ids if (c.backend, c.precision) == (backend, precision)}
    for column, model in enumerate(models):
        line = sorted((c for c in result.candidates if c.model == model and c.id.backend == backend
                       and c.id.precision == precision and not c.id.multi), key=lambda c: c.cut.index)
        xs = list(range(len(line)))
        latency, ram, score = axes[0][column], axes[1][column], axes[2][column]
        latency.plot(xs, [c.estimate.p50 for c in line], marker=".", color="C0")
        latency.set_title(model, fontsize=9)
        rams = [(x, c) for x, c in zip(xs, line) if c.ram_bytes is not None]
        ram.plot([x for x, _ in rams], [c.ram_bytes / 1e6 for _, c in rams if c.ram_bytes is not None], marker=".",
                 color="C1")
        measured = [(x, c) for x, c in rams if c.ram_source == "measured"]
        ram.scatter([x for x, _ in measured], [c.ram_bytes / 1e6 for _, c in measured if c.ram_bytes is not None],
                    s=28, facecolors="none", edgecolors="C1", label="measured")
        for kind, marker, tuned in (("probe", "o", False), ("fine-tuned", "D", True)):
            points = [(x, r.test_score) for x, c in zip(xs, line) for r in result.records
                      if r.matches(c) and bool(r.finetune_blocks) == tuned]
            if points:
                score.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, s=22, label=kind,
                              color="C2" if not tuned else "C3")
        for x, c in zip(xs, line):
            if (c.model, c.cut.name) in chosen:
                for ax in (latency, ram, score):
                    ax.axvline(x, color="red", linestyle=":", linewidth=0.9)
        score.set_xticks(xs)
        score.set_xticklabels([c.cut.name for c in line], rotation=70, fontsize=6, ha="right")
        if column == 0:
            latency.set_ylabel(f"latency, est. p50 (ms)\n{backend} {precision}", fontsize=8)
            ram.set_ylabel("peak memory (MB)", fontsize=8)
            score.set_ylabel(f"test {result.dataset.metric.replace('_', ' ')}", fontsize=8)
        for ax in (latency, ram, score):
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7)
        if measured:
            ram.legend(fontsize=7)
        if score.get_legend_handles_labels()[0]:
            score.legend(fontsize=7)
    fig.suptitle("Along the depth: what each further block costs and gives (red: chosen cuts)", fontsize=10)
    fig.tight_layout()
    return fig


def _png(fig: Any, path: Path) -> Path:
    """A figure as a PNG, written atomically."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())


def plot(result: ExploreResult, path: Path) -> Path:
    """The frontier figure as a PNG, written atomically."""
    return _png(figure(result), path)


def plot_depth(result: ExploreResult, path: Path) -> Path:
    """The along-the-depth figure as a PNG, written atomically."""
    return _png(depth_figure(result), path)

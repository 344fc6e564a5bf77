"""The frontier plot: every trained TRN, the Pareto frontier, off-the-shelf networks, deadlines and choices."""

from __future__ import annotations

import io
from pathlib import Path

from netcut.fsutil import write_atomic
from netcut.results import ExploreResult
from netcut.search.pareto import device_frontiers, frontiers


def plot(result: ExploreResult, path: Path) -> Path:
    """accuracy vs latency as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(c, r) for c in result.candidates if (r := result.probe_of(c)) is not None]
    metric = result.dataset.metric.replace("_", " ")
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    models = sorted({c.model for c, _ in points})
    colors = dict(zip(models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    groups = frontiers(list(result.candidates), list(result.records))
    markers = dict(zip(groups, ["o", "^", "s", "D", "v", "P", "X", "<"]))
    styles = dict(zip(groups, ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3)), (0, (3, 1, 1, 1)), (0, (8, 2))]))
    several = len(groups) > 1
    for model in models:
        for key in groups:
            trns = [(c, r) for c, r in points if c.model == model and not c.is_full
                    and (c.id.backend, c.id.precision) == key]
            label = f"{model} TRNs" + (f" ({key[0]} {key[1]})" if several else "")
            if trns:
                ax.scatter([c.estimate.p50 for c, _ in trns], [r.test_score for _, r in trns], s=22, alpha=0.75,
                           color=colors[model], marker=markers[key], label=label)
        for c, r in points:
            if c.model == model and c.is_full:
                tag = f" ({c.id.backend} {c.id.precision})" if several else ""
                ax.scatter([c.estimate.p50], [r.test_score], marker="*", s=220, color=colors[model],
                           edgecolor="black", zorder=5, label=f"{model} off-the-shelf{tag}")
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
    for d in result.decisions:
        ax.axvline(d.deadline.ms, color="red", linestyle="--", linewidth=0.9)
        ax.text(d.deadline.ms, 1.0, f" {d.deadline.ms:g} ms", color="red", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
        if d.chosen:
            ax.scatter([d.chosen.candidate.estimate.p50], [d.chosen.score], s=140, facecolors="none",
                       edgecolors="red", linewidths=1.5, zorder=6)
    ax.set_xlabel(f"latency, estimated p50 (ms; {', '.join(result.config['backends'])})")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(f"NetCut on {result.dataset.name}: trimmed networks fill the frontier", pad=14)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())

"""Head2Toe heads against single-cut heads at every cut: accuracy, latency, and what each choice gains at a deadline.

Real Fashion-MNIST (3,000 training, 1,000 test images, 96 px), EfficientNet-Lite0/1/2, ONNX Runtime fp32, frozen
trunk. One exhaustive exploration with `--head linear,multi`: every cut gets a linear head on its own pooled
features and a multi head (Head2Toe: the best --head-features pooled features of every cut up to it). Per deadline
of a grid, the choice with linear heads only is compared with the choice when both kinds compete (each the best
validation score among feasible candidates, reported on test).

Usage: python benchmarks/head2toe.py [--size 96] [--train 3000] [--features 512] [--deadlines 6]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import DOCS, machine, write  # noqa: E402
from netcut.progress import Reporter  # noqa: E402
from netcut.results import Candidate, ExploreResult  # noqa: E402
from netcut.search.config import ExploreConfig  # noqa: E402
from netcut.search.explore import Explorer  # noqa: E402

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def best_choice(result: ExploreResult, candidates: list[Candidate], deadline_ms: float) -> dict | None:
    """The feasible candidate with the best validation score (among `candidates`)."""
    options = []
    for c in candidates:
        probe = result.probe_of(c)
        if probe is not None and c.estimate.p50 * (1 + result.config["margin"]) <= deadline_ms:
            options.append({"candidate": c.id.label, "val": probe.val_score, "test": probe.accuracy,
                            "estimated_ms": c.estimate.p50})
    return max(options, key=lambda o: o["val"], default=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--features", type=int, default=512)
    parser.add_argument("--deadlines", type=int, default=6)
    parser.add_argument("--work", default=None, help="a directory to keep (and reuse) the run in")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="netcut-head2toe-"))
    config = ExploreConfig(models=MODELS, data="fashion-mnist", input_size=args.size, limit_train=args.train,
                           limit_test=args.test, run_dir=str(work / "run"), strategy="exhaustive",
                           heads=("linear", "multi"), head_features=args.features)
    candidates = Explorer(config, Reporter()).candidates()
    latencies = sorted(c.estimate.p50 for c in candidates)
    deadlines = [round(float(d), 3) for d in np.geomspace(latencies[0] * 1.3, latencies[-1] * 1.1, args.deadlines)]
    result = Explorer(replace(config, deadlines=tuple(deadlines)), Reporter()).run()
    linear = [c for c in result.candidates if not c.id.multi]
    full_macs = {c.model: c.cut.macs for c in linear if c.is_full}
    rows = []
    for c in linear:
        twin = next((m for m in result.candidates if m.id.multi and (m.model, m.cut.name) == (c.model, c.cut.name)),
                    None)
        lp, mp = result.probe_of(c), twin and result.probe_of(twin)
        if lp is None or twin is None or mp is None:
            continue
        rows.append({"model": c.model, "cut": c.cut.name, "index": c.cut.index,
                     "macs_pct": 100 * c.cut.macs / full_macs[c.model],
                     "linear_ms": c.estimate.p50, "multi_ms": twin.estimate.p50, "linear_val": lp.val_score,
                     "linear_test": lp.accuracy, "multi_val": mp.val_score, "multi_test": mp.accuracy,
                     "multi_reads": mp.metrics.get("multi_cuts")})
    choices = [{"deadline_ms": d, "linear_only": best_choice(result, linear, d),
                "both": best_choice(result, result.candidates, d)} for d in deadlines]
    plot_accuracy(rows, DOCS / "head2toe.png")
    data = {"machine": machine(), "size": args.size, "train_images": args.train, "test_images": args.test,
            "val_images": result.dataset.sizes["val"], "features": args.features, "cuts": rows, "choices": choices,
            "exploration_s": result.exploration_s, "stage_seconds": result.stage_seconds}
    write("head2toe", data, markdown(data))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)


def plot_accuracy(rows: list[dict], path: Path) -> None:
    """Test accuracy against the cut's share of MACs, one line per backbone and head kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, model in enumerate(MODELS):
        mine = sorted((r for r in rows if r["model"] == model), key=lambda r: r["index"])
        x = [r["macs_pct"] for r in mine]
        ax.plot(x, [r["linear_test"] for r in mine], "-o", color=f"C{i}", ms=3, label=f"{model} linear")
        ax.plot(x, [r["multi_test"] for r in mine], "--s", color=f"C{i}", ms=3, label=f"{model} Head2Toe")
    ax.set_xlabel("cut depth (% of the full network's MACs)")
    ax.set_ylabel("test accuracy (frozen trunk)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(d: dict) -> str:
    def choice(c: dict | None) -> str:
        return "none" if c is None else f"{c['candidate']} {c['test']:.4f} ({c['estimated_ms']:.2f} ms)"

    rows = d["cuts"]
    wins = sum(r["multi_test"] > r["linear_test"] for r in rows)
    gains = [r["multi_test"] - r["linear_test"] for r in rows]
    lines = ["# Head2Toe heads against single-cut heads", "", "{header}",
             f"EfficientNet-Lite0/1/2 on real Fashion-MNIST ({d['train_images']} training, {d['val_images']} "
             f"validation, {d['test_images']} test images, {d['size']} px), frozen trunk, ONNX Runtime fp32 latency "
             f"(empirical estimator). A multi head keeps the {d['features']} most informative pooled features of "
             "every cut up to its own (ranked by a linear probe on all of them) and is trained again on those.", "",
             f"Over {len(rows)} cuts the multi head is more accurate at {wins} (test accuracy change: median "
             f"{np.median(gains) * 100:+.1f} points, range {min(gains) * 100:+.1f} to {max(gains) * 100:+.1f}).", "",
             "![accuracy per cut](head2toe.png)", "", "## The choice at each deadline", "",
             "| deadline | linear heads only | linear and Head2Toe heads compete |", "|---|---|---|"]
    for c in d["choices"]:
        lines.append(f"| {c['deadline_ms']:g} ms | {choice(c['linear_only'])} | {choice(c['both'])} |")
    lines += ["", "## Every cut", "", "| model | cut | % MACs | linear | Head2Toe | latency linear | latency Head2Toe |"
              " cuts read |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['cut']} | {r['macs_pct']:.0f}% | {r['linear_test']:.4f} | "
                     f"{r['multi_test']:.4f} | {r['linear_ms']:.2f} ms | {r['multi_ms']:.2f} ms | "
                     f"{len(r['multi_reads'] or [])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

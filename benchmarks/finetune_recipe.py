"""The fine-tuning recipe on small data: the trunk's learning rate (and distillation) against the probe it starts from.

For each labelled-set size (images per class, a fifth of them for validation), seed and cut of EfficientNet-Lite0,
a probe is trained on cached features, then one TRN is fine-tuned over the planned horizon (plan_epochs) with each
trunk learning-rate factor. Reported: the probe's and the fine-tuned network's validation and test accuracy (the
fine-tuned one at its best validation epoch), medians over seeds and cuts; written to docs/benchmarks/.

Usage: python benchmarks/finetune_recipe.py [--data fashion-mnist] [--per-class 30,100,300] [--seeds 2]
       [--factors 1,0.3,0.1,0.03] [--size 64] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_row_files, machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.data.datasets import SplitConfig, load_dataset  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.train.cache import extract_features  # noqa: E402
from netcut.train.finetune import FineTuneConfig, FineTuner, evaluate_images  # noqa: E402
from netcut.train.probe import TrainConfig, fit_head  # noqa: E402

CUT_SHARES = (0.5, 0.75)  # where along Lite0's block cuts the TRNs end


def labelled_set(name: str, per_class: int, seed: int):
    """`per_class` labelled images per class (a fifth of them validate) and 1,000 test images."""
    labelled = per_class * 10
    return load_dataset(name, SplitConfig(seed=seed, limit_train=labelled * 4 // 5, limit_val=labelled // 5,
                                          limit_test=1000))


def run_one(data, traced, cuts, cut, config: FineTuneConfig, teacher_logits=None, keep: bool = False) -> dict:
    """Probe, then fine-tune one TRN (with soft targets where given); their scores, and the fine-tuned network
    itself with `keep`."""
    features = {s: extract_features(traced, [cut.name], data, s, device=config.device)
                for s in ("train", "val", "test")}
    (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))
    probe = fit_head(tx[cut.name], ty, vx[cut.name], vy, data.num_classes, TrainConfig(seed=config.seed),
                     sx[cut.name], sy)
    start = time.perf_counter()
    tuner = FineTuner(traced, cut, cuts, probe.classifier, data, config, teacher_logits=teacher_logits)
    while tuner.epoch < tuner.rungs[-1]:
        tuner.train_epoch()
    b = traced.backbone
    best = tuner.best()
    test = evaluate_images(best.to(config.device), data, "test", traced.input_size, b.mean, b.std,
                           device=config.device)["score"]
    row = {"cut": cut.name, "probe_val": probe.val["score"], "probe_test": probe.test["score"],
           "tuned_val": tuner.best_score, "tuned_test": test, "best_epoch": tuner.best_epoch,
           "epochs": tuner.epoch, "seconds": time.perf_counter() - start}
    return {**row, "network": best} if keep else row


def report(rows: list[dict], args: dict, name: str, where: dict) -> None:
    """Medians per size and factor, written to docs/benchmarks/<name>.json and .md."""
    summary = []
    for per_class in sorted({r["per_class"] for r in rows}):
        for factor in sorted({r["factor"] for r in rows}, reverse=True):
            group = [r for r in rows if r["per_class"] == per_class and r["factor"] == factor]
            summary.append({"per_class": per_class, "factor": factor, "runs": len(group),
                            "probe_test": statistics.median(r["probe_test"] for r in group),
                            "tuned_test": statistics.median(r["tuned_test"] for r in group),
                            "gain_points": statistics.median(100 * (r["tuned_test"] - r["probe_test"]) for r in group),
                            "below_probe_val": sum(r["tuned_val"] < r["probe_val"] - 1e-9 for r in group),
                            "epochs": statistics.median(r["epochs"] for r in group),
                            "seconds": statistics.median(r["seconds"] for r in group)})
    data = {"machine": where, "args": args, "rows": rows, "summary": summary}
    lines = [f"# Fine-tuning recipe on small data ({args['data']}, EfficientNet-Lite0 at {args['size']} px)", "",
             "{header}Each row: medians over seeds and the two cuts (half and three quarters of the way through "
             "Lite0's block cuts). The probe is the frozen trunk with a trained head; the fine-tuned network starts "
             "from it and is kept at its best validation epoch.", "",
             "| images/class | trunk LR factor | probe test | fine-tuned test | gain (points) | runs | epochs "
             "| s/run |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['per_class']} | {s['factor']:g} | {s['probe_test']:.3f} | {s['tuned_test']:.3f} | "
                     f"{s['gain_points']:+.1f} | {s['runs']} | {s['epochs']:g} | {s['seconds']:.0f} |")
    write(name, data, "\n".join(lines) + "\n")


def merge(paths: list[str], name: str) -> None:
    """One page from the row files of several runs (e.g. one per factor, side by side on one GPU)."""
    parts = load_row_files(paths)
    args = dict(parts[0]["args"], factors=",".join(str(p["args"]["factors"]) for p in parts))
    where = dict(parts[0]["machine"], command="bash benchmarks/finetune_recipe_gpu.sh (one process per size and "
                 "factor, merged with --merge)")
    report([r for p in parts for r in p["rows"]], args, name, where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--per-class", default="30,100,300")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--factors", default="1,0.3,0.1,0.03")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default="finetune_recipe")
    parser.add_argument("--rows", help="write the rows here (JSON) instead of the docs page")
    parser.add_argument("--merge", nargs="+", help="row files to merge into the docs page")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.name)
        return
    traced = trace(load_backbone("efficientnet_lite0"), args.size)
    cuts = find_cuts(traced)
    picked = [cuts[min(len(cuts) - 1, int(share * len(cuts)))] for share in CUT_SHARES]
    rows = []
    for per_class in (int(v) for v in args.per_class.split(",")):
        for seed in range(args.seeds):
            data = labelled_set(args.data, per_class, seed)
            for cut in picked:
                for factor in (float(v) for v in args.factors.split(",")):
                    config = replace(FineTuneConfig(seed=seed, device=args.device), trunk_lr_factor=factor)
                    row = {"per_class": per_class, "seed": seed, "factor": factor,
                           **run_one(data, traced, cuts, cut, config)}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.rows:
        Path(args.rows).write_text(json.dumps({"machine": machine(), "args": vars(args), "rows": rows}))
    else:
        report(rows, vars(args), args.name, machine())


if __name__ == "__main__":
    main()

"""Distillation on small data: a TRN fine-tuned with and without the soft targets of its fine-tuned full network.

For each labelled-set size (images per class, a fifth validate) and seed: the full EfficientNet-Lite0 is fine-tuned
from its probe over the planned horizon (the teacher); then one TRN (three quarters of the way through Lite0's
block cuts) is fine-tuned twice from its probe, on the labels alone and with the teacher's soft targets at the
given weight. Test accuracy of each at its best validation epoch; written to docs/benchmarks/finetune_distill.md.

Usage: python benchmarks/finetune_distill.py [--per-class 30,100] [--seeds 2] [--weight 0.5] [--size 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from finetune_recipe import labelled_set, run_one  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.train.finetune import FineTuneConfig, predict_images  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--per-class", default="30,100")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    traced = trace(load_backbone("efficientnet_lite0"), args.size)
    cuts = find_cuts(traced)
    student_cut = cuts[int(0.75 * len(cuts))]
    b = traced.backbone
    rows = []
    for per_class in (int(v) for v in args.per_class.split(",")):
        for seed in range(args.seeds):
            data = labelled_set(args.data, per_class, seed)
            config = FineTuneConfig(seed=seed)
            teacher = run_one(data, traced, cuts, cuts[-1], config, keep=True)
            logits, _ = predict_images(teacher.pop("network"), data, "train", args.size, b.mean, b.std)
            plain = run_one(data, traced, cuts, student_cut, config)
            distilled = run_one(data, traced, cuts, student_cut, replace(config, distill_weight=args.weight),
                                teacher_logits=logits.numpy())
            row = {"per_class": per_class, "seed": seed, "teacher_test": teacher["tuned_test"],
                   "probe_test": plain["probe_test"], "tuned_test": plain["tuned_test"],
                   "distilled_test": distilled["tuned_test"], "tuned_val": plain["tuned_val"],
                   "distilled_val": distilled["tuned_val"], "seconds": plain["seconds"] + distilled["seconds"]}
            rows.append(row)
            print(row, flush=True)
    lines = [f"# Distillation on small data ({args.data}, EfficientNet-Lite0 at {args.size} px)", "", "{header}",
             f"Teacher: the full Lite0 fine-tuned from its probe. Student: Lite0 cut at `{student_cut.name}`, "
             f"fine-tuned from its probe on the labels alone, and with the teacher's soft targets at weight "
             f"{args.weight:g} (temperature 2). Test accuracy at the best validation epoch; medians over "
             f"{args.seeds} seeds.", "",
             "| images/class | teacher | student probe | fine-tuned | distilled | distilled − fine-tuned (points) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for per_class in sorted({r["per_class"] for r in rows}):
        g = [r for r in rows if r["per_class"] == per_class]

        def med(key: str, group: list[dict] = g) -> float:
            return statistics.median(r[key] for r in group)
        gain = statistics.median(100 * (r["distilled_test"] - r["tuned_test"]) for r in g)
        lines.append(f"| {per_class} | {med('teacher_test'):.3f} | {med('probe_test'):.3f} | {med('tuned_test'):.3f} "
                     f"| {med('distilled_test'):.3f} | {gain:+.1f} |")
    write("finetune_distill", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

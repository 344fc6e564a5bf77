"""Cached retraining vs naive retraining of every block TRN of EfficientNet-Lite0 on real Fashion-MNIST.

cached: one forward pass of the backbone over the training (and val/test) images caches pooled features at
every cut; every TRN's head then trains from the cache (10 epochs, no early stopping, for a like-for-like count).
naive: as a Keras/PyTorch user would: each TRN trained on its own from the images, frozen trunk, 10 epochs (each
epoch runs the prefix over all training images again). Same head, optimiser, learning rate and epochs.
Also: one forward pass of the full backbone over the training set (the floor: one pass is needed anyway), and the
same cached retraining with random weights (does ImageNet pretraining transfer?).

Usage: python benchmarks/retraining.py [--size 96] [--train 2000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import machine, write  # noqa: E402
from naive import naive_retrain  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.data.datasets import SplitConfig, load_dataset  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.train.cache import extract_features  # noqa: E402
from netcut.train.probe import TrainConfig, fit_head  # noqa: E402


def cached_all(traced, cuts, dataset, config: TrainConfig) -> tuple[dict, dict]:
    """(accuracy per cut, seconds per phase)."""
    names = [c.name for c in cuts]
    t = time.perf_counter()
    train = extract_features(traced, names, dataset, "train")
    t_train = time.perf_counter() - t
    t = time.perf_counter()
    val, test = (extract_features(traced, names, dataset, s) for s in ("val", "test"))
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    accuracy = {}
    for c in cuts:
        fit = fit_head(train[0][c.name], train[1], val[0][c.name], val[1], 10, config, test[0][c.name], test[1])
        accuracy[c.name] = fit.test["accuracy"]
    t_heads = time.perf_counter() - t
    return accuracy, {"cache_train_pass_s": t_train, "cache_val_test_s": t_eval, "heads_s": t_heads}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    dataset = load_dataset("fashion-mnist", SplitConfig(limit_train=args.train, limit_test=args.test))
    config = TrainConfig(epochs=args.epochs, patience=args.epochs + 1, batch_size=64)
    traced = trace(load_backbone("efficientnet_lite0"), args.size)
    cuts = find_cuts(traced, "block")
    full = traced.graph_module.eval()
    b = traced.backbone

    t = time.perf_counter()
    with torch.inference_mode():
        for x, _ in dataset.batches("train", args.size, b.mean, b.std, 64):
            full(x)
    one_pass = time.perf_counter() - t
    print(f"one forward pass over {args.train} images: {one_pass:.1f} s", flush=True)

    cached_acc, phases = cached_all(traced, cuts, dataset, config)
    cached_s = phases["cache_train_pass_s"] + phases["heads_s"]
    print(f"cached: {cached_s:.1f} s (+{phases['cache_val_test_s']:.1f} s val/test features)", flush=True)

    naive_acc, naive_s = {}, 0.0
    for c in cuts:
        metrics, seconds = naive_retrain(traced, c, dataset, config, 10)
        naive_acc[c.name], naive_s = metrics["accuracy"], naive_s + seconds
        print(f"naive {c.name}: {seconds:.1f} s, accuracy {metrics['accuracy']:.3f} (cached "
              f"{cached_acc[c.name]:.3f})", flush=True)

    random_traced = trace(load_backbone("efficientnet_lite0", "none"), args.size)
    random_acc, _ = cached_all(random_traced, cuts, dataset, config)

    diffs = [naive_acc[c.name] - cached_acc[c.name] for c in cuts]
    best = max(cuts, key=lambda c: cached_acc[c.name])
    data = {
        "machine": machine(), "size": args.size, "train_images": args.train, "test_images": args.test,
        "epochs": args.epochs, "cuts": [c.name for c in cuts],
        "one_forward_pass_s": one_pass, "cached": {"total_s": cached_s, **phases, "accuracy": cached_acc},
        "naive": {"total_s": naive_s, "accuracy": naive_acc},
        "ratio_cached_to_one_pass": cached_s / one_pass, "speedup_vs_naive": naive_s / cached_s,
        "speedup_vs_naive_incl_val_test": naive_s / (cached_s + phases["cache_val_test_s"]),
        "accuracy_difference_naive_minus_cached": {"mean": sum(diffs) / len(diffs), "max_abs": max(map(abs, diffs))},
        "transfer": {"best_cut": best.name, "pretrained": cached_acc[best.name], "random": random_acc[best.name],
                     "pretrained_mean_over_cuts": sum(cached_acc.values()) / len(cuts),
                     "random_mean_over_cuts": sum(random_acc.values()) / len(cuts)},
        "random_accuracy": random_acc,
    }
    lines = ["# Retraining: one-pass feature cache vs naive per-TRN retraining", "", "{header}",
             f"EfficientNet-Lite0, all {len(cuts)} block-granularity TRNs, real Fashion-MNIST ({args.train} training, "
             f"{args.test} test images) at {args.size} px, frozen trunk, linear head, {args.epochs} epochs each, same "
             "optimiser and learning rate on both sides.", "",
             "| | seconds | vs one forward pass |", "|---|---|---|",
             f"| one forward pass of the full backbone over the training set | {one_pass:.1f} | 1.00x |",
             f"| cached: one multi-cut pass + all {len(cuts)} heads | {cached_s:.1f} | "
             f"{cached_s / one_pass:.2f}x |",
             f"| (val/test features for evaluation, both sides evaluate) | {phases['cache_val_test_s']:.1f} | |",
             f"| naive: each TRN from images | {naive_s:.1f} | {naive_s / one_pass:.1f}x |", "",
             f"**Speedup of cached over naive: {naive_s / cached_s:.1f}x** "
             f"({naive_s / (cached_s + phases['cache_val_test_s']):.1f}x counting the val/test feature pass too). "
             f"Test accuracy, naive minus cached: mean {data['accuracy_difference_naive_minus_cached']['mean']:+.3f}, "
             f"largest gap {data['accuracy_difference_naive_minus_cached']['max_abs']:.3f}.", "",
             f"**Transfer**: at the best cut ({best.name}) pretrained ImageNet weights give "
             f"{cached_acc[best.name]:.3f} test accuracy, random weights {random_acc[best.name]:.3f} (means over all "
             f"cuts {data['transfer']['pretrained_mean_over_cuts']:.3f} vs "
             f"{data['transfer']['random_mean_over_cuts']:.3f}).",
             "", "| cut | cached | naive | random weights (cached) |", "|---|---|---|---|"]
    for c in cuts:
        lines.append(f"| {c.name} | {cached_acc[c.name]:.3f} | {naive_acc[c.name]:.3f} | {random_acc[c.name]:.3f} |")
    write("retraining", data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

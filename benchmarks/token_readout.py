"""How should a head read a transformer's tokens at a cut? With or without the backbone's final LayerNorm; the class
token or the mean of the patch tokens. Probe accuracy (netcut's own head training) at every block cut.

No pretrained transformer weights install offline here, so the backbones have timm's random initialisation: this
measures what the readout does to random features, not what it does to pretrained ones (run it with
--weights DEFAULT where timm's hub is reachable).

Usage: python benchmarks/token_readout.py [--models timm:vit_tiny_patch16_224,timm:deit_tiny_patch16_224]
       [--data digits] [--size 64] [--weights none] [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.data.datasets import SplitConfig, load_dataset  # noqa: E402
from netcut.graph import build_extractor, find_cuts, trace  # noqa: E402
from netcut.model.readout import Readout, readout, readout_plan  # noqa: E402
from netcut.train.probe import TrainConfig, fit_head  # noqa: E402

VARIANTS = ("norm + class token", "norm + token mean", "class token", "token mean")


def variants(traced, cut: str) -> dict[str, Readout]:
    """The four readouts of one token cut (a cut before the class token joins has no class token to read)."""
    default = readout(traced, cut)
    norm = default.norm
    plan = readout_plan(traced)
    has_class = default.token is not None
    out = {"norm + token mean": Readout("tokens", None, plan.prefix if has_class else 0, norm),
           "token mean": Readout("tokens", None, plan.prefix if has_class else 0)}
    if has_class:
        out["norm + class token"] = Readout("tokens", default.token, 0, norm)
        out["class token"] = Readout("tokens", default.token, 0)
    return out


def features(traced, cuts: list[str], dataset, split: str) -> dict[str, dict[str, np.ndarray]]:
    """Every variant's features at every cut for one split."""
    extractor = build_extractor(traced, cuts).eval()
    readouts = {c: variants(traced, c) for c in cuts}
    chunks: dict[str, dict[str, list[np.ndarray]]] = {c: {v: [] for v in readouts[c]} for c in cuts}
    indices = dataset.splits[split]
    b = traced.backbone
    with torch.inference_mode():
        for start in range(0, len(indices), 64):
            x = dataset.loader(indices[start:start + 64], traced.input_size, b.mean, b.std)
            for cut, activation in zip(cuts, extractor(x)):
                for name, module in readouts[cut].items():
                    chunks[cut][name].append(module.eval()(activation).numpy())
    return {c: {v: np.concatenate(a) for v, a in per.items()} for c, per in chunks.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="timm:vit_tiny_patch16_224,timm:deit_tiny_patch16_224")
    parser.add_argument("--data", default="digits")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    dataset = load_dataset(args.data, SplitConfig())
    rows = []
    for spec in args.models.split(","):
        traced = trace(load_backbone(spec, args.weights), args.size)
        cuts = [c.name for c in find_cuts(traced, "block") if c.layout == "tokens" and not c.is_full]
        split_features = {s: features(traced, cuts, dataset, s) for s in ("train", "val", "test")}
        targets = {s: dataset.targets[dataset.splits[s]] for s in ("train", "val", "test")}
        for cut in cuts:
            for variant in split_features["train"][cut]:
                scores = [fit_head(split_features["train"][cut][variant], targets["train"],
                                   split_features["val"][cut][variant], targets["val"], dataset.num_classes,
                                   TrainConfig(seed=seed), split_features["test"][cut][variant],
                                   targets["test"]).test["score"] for seed in range(args.seeds)]
                rows.append({"model": spec, "cut": cut, "variant": variant, "test": float(np.median(scores))})
                print(f"{spec} {cut} {variant}: {rows[-1]['test']:.4f}", flush=True)
    data = {"machine": machine(), "args": vars(args), "rows": rows}
    write("token_readout", data, markdown(data))


def markdown(data: dict) -> str:
    """Per model: the median over its block cuts of each variant's test accuracy, and how often each variant won."""
    a = data["args"]
    lines = ["# Reading tokens: the final norm, the class token or the token mean", "", "{header}",
             f"Probe (netcut's head training, {a['seeds']} seeds, median) at every block token cut but the last, "
             f"{a['data']}, {a['size']} px, weights: {a['weights']} "
             + ("(random: what the readout does to random features, not to pretrained ones)." if a["weights"] in
                ("none", "random") else "."), "",
             "| model | variant | median test accuracy over cuts | cuts where it is best |", "|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in data["rows"]):
        mine = [r for r in data["rows"] if r["model"] == model]
        cuts = list(dict.fromkeys(r["cut"] for r in mine))
        best = {c: max((r for r in mine if r["cut"] == c), key=lambda r: r["test"])["variant"] for c in cuts}
        for variant in VARIANTS:
            scores = [r["test"] for r in mine if r["variant"] == variant]
            if scores:
                wins = sum(v == variant for v in best.values())
                lines.append(f"| {model} | {variant} | {np.median(scores):.4f} | {wins} of {len(cuts)} |")
    return "\n".join(lines + [""])


if __name__ == "__main__":
    main()

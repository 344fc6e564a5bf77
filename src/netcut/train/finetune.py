"""Fine-tune the last k blocks of a TRN from images (no cache), starting from its cache-trained head."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork, build_segment
from netcut.model import HeadSpec, TrimmedNetwork, build_trn
from netcut.progress import QUIET, Reporter
from netcut.train.loop import EarlyStopping, augment, loss_fn
from netcut.train.metrics import evaluate
from netcut.types import CutPoint


@dataclass(frozen=True)
class FineTuneConfig:
    """How the last blocks are fine-tuned."""

    blocks: int = 1  # how many block segments before the cut become trainable (0: frozen trunk)
    epochs: int = 3
    batch_size: int = 32
    lr_trunk: float = 1e-4
    lr_head: float = 1e-3
    patience: int = 2
    seed: int = 0
    augment: bool = True


def trainable_parameter_names(traced: TracedNetwork, block_cuts: list[CutPoint], cut: CutPoint, blocks: int
                              ) -> set[str]:
    """Names of the prefix parameters inside the last `blocks` block segments that end at or before `cut`."""
    if blocks <= 0:
        return set()
    ends = [c for c in block_cuts if c.index <= cut.index]
    if not ends or ends[-1].name != cut.name:
        ends.append(cut)
    names: set[str] = set()
    for i in range(max(0, len(ends) - blocks), len(ends)):
        start = ends[i - 1].name if i > 0 else None
        names |= {n for n, _ in build_segment(traced, start, ends[i].name).named_parameters()}
    return names


def evaluate_images(model: nn.Module, dataset: Dataset, split: str, size: int, mean: tuple[float, ...],
                    std: tuple[float, ...], batch_size: int = 64) -> dict[str, float]:
    """Metrics of a TRN run on images of one split."""
    model.eval()
    logits, targets = [], []
    with torch.inference_mode():
        for x, y in dataset.batches(split, size, mean, std, batch_size):
            logits.append(model(x))
            targets.append(y)
    return evaluate(torch.cat(logits), torch.cat(targets))


def fine_tune(traced: TracedNetwork, cut: CutPoint, block_cuts: list[CutPoint], trained_classifier: nn.Module,
              dataset: Dataset, config: FineTuneConfig = FineTuneConfig(), reporter: Reporter = QUIET,
              head: HeadSpec = HeadSpec()) -> tuple[TrimmedNetwork, dict[str, float], dict[str, float], float]:
    """Fine-tune the last k blocks and the head; returns (TRN, val metrics, test metrics, seconds)."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    b = traced.backbone
    trn = build_trn(traced, cut, dataset.num_classes, head, trained_classifier)
    trainable = trainable_parameter_names(traced, block_cuts, cut, config.blocks)
    trunk_params = []
    for name, p in trn.prefix.named_parameters():
        p.requires_grad_(name in trainable)
        if name in trainable:
            trunk_params.append(p)
    groups = [{"params": list(trn.head.parameters()), "lr": config.lr_head}]
    if trunk_params:
        groups.append({"params": trunk_params, "lr": config.lr_trunk})
    optimizer = torch.optim.AdamW(groups, weight_decay=1e-4)
    best = evaluate_images(trn, dataset, "val", traced.input_size, b.mean, b.std)
    stopper = EarlyStopping(trn, best["score"], config.patience)
    n = len(dataset.splits["train"])
    steps = config.epochs * ((n + config.batch_size - 1) // config.batch_size)
    with torch.inference_mode(False), reporter.bar(f"fine-tuning {b.name} @ {cut.name} ({config.blocks} blocks)",
                                                   steps) as advance:
        for _ in range(config.epochs):
            trn.prefix.eval()  # keep BatchNorm statistics frozen: small data would ruin them
            trn.head.train()
            for x, y in dataset.batches("train", traced.input_size, b.mean, b.std, config.batch_size):
                if config.augment:
                    x = augment(x, generator)
                optimizer.zero_grad(set_to_none=True)
                loss_fn(trn(x.clone()), y).backward()
                optimizer.step()
                advance()
            score = evaluate_images(trn, dataset, "val", traced.input_size, b.mean, b.std)
            improved = score["score"] > stopper.best + 1e-9
            best = score if improved else best
            if stopper.update(trn, score["score"]):
                break
    trn.load_state_dict(stopper.state)
    for p in trn.parameters():
        p.requires_grad_(False)
    test = evaluate_images(trn, dataset, "test", traced.input_size, b.mean, b.std)
    return trn.eval(), best, test, time.perf_counter() - start

"""Naive retraining, as a Keras or PyTorch user would do it: each TRN trained on its own, from images.

This is the baseline the feature cache is measured against (benchmarks), not what netcut uses.
"""

from __future__ import annotations

import time

import torch

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork
from netcut.model import build_trn
from netcut.train.loop import loss_fn
from netcut.train.metrics import evaluate
from netcut.train.probe import TrainConfig
from netcut.types import CutPoint


def naive_retrain(traced: TracedNetwork, cut: CutPoint, dataset: Dataset, config: TrainConfig, num_classes: int
                  ) -> tuple[dict[str, float], float]:
    """Frozen trunk, new head, `config.epochs` epochs over the images (every epoch runs the prefix again)."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    b = traced.backbone
    trn = build_trn(traced, cut, num_classes, config.head, own_weights=False)  # the trunk stays frozen
    prefix, head = trn.prefix, trn.head
    optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    for _ in range(config.epochs):
        head.train()
        for x, y in dataset.batches("train", traced.input_size, b.mean, b.std, config.batch_size):
            with torch.no_grad():
                features = prefix(x)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(features), y).backward()
            optimizer.step()
    head.eval()
    logits, targets = [], []
    with torch.inference_mode():
        for x, y in dataset.batches("test", traced.input_size, b.mean, b.std, 64):
            logits.append(head(prefix(x)))
            targets.append(y)
    return evaluate(torch.cat(logits), torch.cat(targets)), time.perf_counter() - start

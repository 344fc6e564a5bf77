"""Probes: TRN heads trained on cached features (frozen trunk); seeded, early-stopped, hard or soft labels."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import nn

from netcut.model.head import HeadSpec, MultiHead, classifier
from netcut.train.loop import EarlyStopping, loss_fn
from netcut.train.metrics import evaluate


@dataclass(frozen=True)
class TrainConfig:
    """How heads are trained (recorded with every result)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 5  # epochs without validation improvement before stopping
    seed: int = 0
    head: HeadSpec = field(default_factory=HeadSpec)
    augment_views: int = 0  # extra augmented views of the training set in the cache

    def digest(self) -> str:
        """A short hash identifying this configuration."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class HeadResult:
    """A trained classifier (on pooled features) and how it did."""

    classifier: nn.Module  # nn.Sequential on one cut's features; a MultiHead for Head2Toe
    val: dict[str, float]
    test: dict[str, float]
    epochs_run: int
    seconds: float


def standardization(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(mean, std, alive): features (nearly) constant over the training set are dead: they carry nothing, and
    dividing by their tiny spread would make weights explode on the first value that differs (int8 features of
    a wide layer are often exactly constant)."""
    mean, std = x.mean(0), x.std(0)
    spread = std[std > 1e-6]
    floor = max(1e-6, 1e-3 * float(spread.median())) if spread.numel() else 1e-6
    alive = std > floor
    return mean, torch.where(alive, std, torch.ones_like(std)), alive


def _fold_standardization(model: nn.Sequential, mean: torch.Tensor, std: torch.Tensor, alive: torch.Tensor) -> None:
    """Make the first Linear accept raw features: W' = W/σ (0 for dead features), b' = b − W'·μ (exact at eval)."""
    first = next(m for m in model if isinstance(m, nn.Linear))
    with torch.no_grad():
        first.weight.div_(std)
        first.weight[:, ~alive] = 0.0
        first.bias.sub_(first.weight @ mean)


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, num_classes: int,
             config: TrainConfig = TrainConfig(), test_x: np.ndarray | None = None,
             test_y: np.ndarray | None = None) -> HeadResult:
    """Train a head on features, keep the epoch with the best validation score, evaluate on test."""
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.from_numpy(np.ascontiguousarray(train_x, dtype=np.float32))
    y = torch.from_numpy(train_y)
    mean, std, alive = standardization(x)
    xs = ((x - mean) / std) * alive
    vx = ((torch.from_numpy(np.ascontiguousarray(val_x, dtype=np.float32)) - mean) / std) * alive
    vy = torch.from_numpy(val_y)
    model = classifier(x.shape[1], num_classes, config.head)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    stopper, epochs = EarlyStopping(model, -np.inf, config.patience), 0
    with torch.inference_mode(False):
        for epoch in range(config.epochs):
            model.train()
            order = torch.randperm(len(xs), generator=generator)
            for i in range(0, len(xs), config.batch_size):
                batch = order[i:i + config.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xs[batch]), y[batch]).backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                score = evaluate(model(vx), vy)["score"]
            epochs = epoch + 1
            if stopper.update(model, score):
                break
    model.load_state_dict(stopper.state)
    _fold_standardization(model, mean, std, alive)
    model.eval()
    with torch.no_grad():
        val = evaluate(model(torch.from_numpy(np.ascontiguousarray(val_x, dtype=np.float32))), vy)
        test = {}
        if test_x is not None and test_y is not None:
            test = evaluate(model(torch.from_numpy(np.ascontiguousarray(test_x, dtype=np.float32))),
                            torch.from_numpy(test_y))
    return HeadResult(model, val, test, epochs, time.perf_counter() - start)


Features = dict[str, np.ndarray]  # cut name -> (N, C) pooled features


def fit_multi_head(train: Features, train_y: np.ndarray, val: Features, val_y: np.ndarray, reads: list[str],
                   num_classes: int, config: TrainConfig, test: Features | None = None,
                   test_y: np.ndarray | None = None) -> HeadResult:
    """Head2Toe (Evci et al., ICML 2022): a linear probe on the pooled features of every cut in `reads` ranks the
    features by the norm of their (standardised) weights; the best `config.head.features` of them are kept and the
    head is trained again on those alone. Returns a MultiHead that reads only the cuts it kept features of."""
    start = time.perf_counter()

    def joined(features: Features) -> np.ndarray:
        return np.concatenate([np.asarray(features[c], dtype=np.float32) for c in reads], 1)

    x, vx = joined(train), joined(val)
    linear = replace(config, head=HeadSpec(dropout=config.head.dropout))
    ranking = fit_head(x, train_y, vx, val_y, num_classes, linear)
    weight = next(m for m in ranking.classifier.modules() if isinstance(m, nn.Linear)).weight.detach()
    spread = standardization(torch.from_numpy(x))[1]
    importance = (weight * spread).norm(dim=0)  # the folded weight times the spread: the weight of a standard unit
    keep = np.sort(importance.argsort(descending=True)[:config.head.features].numpy())
    fit = fit_head(x[:, keep], train_y, vx[:, keep], val_y, num_classes, linear,
                   None if test is None else joined(test)[:, keep], test_y)
    bounds = np.cumsum([0] + [train[c].shape[1] for c in reads])
    cuts, indices = [], []
    for name, lo, hi in zip(reads, bounds[:-1], bounds[1:]):
        chosen = keep[(keep >= lo) & (keep < hi)] - lo
        if len(chosen):
            cuts.append(name)
            indices.append(torch.from_numpy(chosen.astype(np.int64)))
    head = MultiHead(cuts, indices, fit.classifier)
    return HeadResult(head, fit.val, fit.test, fit.epochs_run, time.perf_counter() - start)

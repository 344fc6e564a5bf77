"""Training-loop helpers shared by probes and fine-tuning: early stopping, the loss, augmentation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn


class EarlyStopping:
    """Keeps the best state seen on validation; says when `patience` evaluations brought nothing better."""

    def __init__(self, model: nn.Module, score: float, patience: int) -> None:
        self.best, self.state, self.stale, self.patience = score, copy.deepcopy(model.state_dict()), 0, patience

    def update(self, model: nn.Module, score: float) -> bool:
        """Record a validation score; True when training should stop."""
        if score > self.best + 1e-9:
            self.best, self.state, self.stale = score, copy.deepcopy(model.state_dict()), 0
            return False
        self.stale += 1
        return self.stale >= self.patience


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy to a class index (optionally label-smoothed), or to a target distribution (soft labels; KL up
    to a constant)."""
    if targets.dim() == 1:
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def augment(x: torch.Tensor, generator: torch.Generator, shift: float = 1 / 8, flip: bool = True) -> torch.Tensor:
    """A random horizontal flip (if the labels allow it) and a shift of up to `shift` of the side (reflect-padded)."""
    n, _, h, w = x.shape
    if flip:
        mirrored = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mirrored.view(n, 1, 1, 1), x.flip(3), x)
    pad = max(1, round(h * shift))
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = torch.empty_like(x)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    for i in range(n):
        dy, dx = int(offsets[i, 0]), int(offsets[i, 1])
        out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out

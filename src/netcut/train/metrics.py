"""Task metrics: top-1 accuracy for hard labels; angular similarity and top-1 agreement for soft labels."""

from __future__ import annotations

import numpy as np
import torch


def top1_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of samples whose highest logit is the true class."""
    return float((logits.argmax(1) == targets).float().mean())


def angular_similarity(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Mean of 1 − 2θ/π, θ = arccos(cosine similarity); in [0, 1] for non-negative vectors (1: same direction)."""
    cosine = torch.nn.functional.cosine_similarity(predicted.double(), target.double(), dim=1).clamp(-1.0, 1.0)
    return float((1.0 - 2.0 * torch.arccos(cosine) / np.pi).mean())


def top1_agreement(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """Share of samples whose most probable predicted class is the target's most probable class."""
    return float((predicted.argmax(1) == target.argmax(1)).float().mean())


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean cross-entropy (no label smoothing) to class indices or to target distributions."""
    log_probs = torch.log_softmax(logits.double(), 1)
    if targets.dim() == 1:
        return float(-log_probs.gather(1, targets.long().view(-1, 1)).mean())
    return float(-(targets.double() * log_probs).sum(1).mean())


def evaluate(logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """All metrics for the label kind; 'score' is the one to maximise (accuracy or angular similarity); 'loss'
    (cross-entropy) breaks ties between scores within a validation set's noise; 'count' is the number of samples."""
    common = {"loss": cross_entropy(logits, targets), "count": float(len(targets))}
    if targets.dim() == 1:
        accuracy = top1_accuracy(logits, targets)
        return {"score": accuracy, "accuracy": accuracy, **common}
    probs = logits.softmax(1)
    angular = angular_similarity(probs, targets)
    return {"score": angular, "angular_similarity": angular, "top1_agreement": top1_agreement(probs, targets),
            **common}


def metric_name(soft: bool) -> str:
    """The name of the score for hard or soft labels."""
    return "angular_similarity" if soft else "accuracy"

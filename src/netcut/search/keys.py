"""Store keys: what a stored latency or training result depends on. Same key, same result, no recomputation."""

from __future__ import annotations

import hashlib
import json

from netcut.types import CandidateId

# how int8 networks are quantized: part of every int8 key, so that results of an earlier recipe (ONNX weights per
# tensor) are not reused for networks quantized another way
INT8_RECIPE = "weights-per-channel"


def _precision(precision: str) -> str:
    return precision if precision == "fp32" else f"{precision}/{INT8_RECIPE}"


def _digest(parts: list[object]) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:24]


def backbone_identity(name: str, fingerprint: str, weights_hash: str) -> str:
    """Name, architecture at its input size, and weights: what a stored result belongs to."""
    return f"{name}|{fingerprint}|{weights_hash}"


def training_key(identity: str, cut: str, head: str, dataset: str, train_config: str, finetune_blocks: int = 0,
                 finetune_config: str = "", precision: str = "fp32", backend: str = "") -> str:
    """The key of a trained candidate (frozen trunk, or fine-tuned: every layer (-1) or the last blocks, with the
    fine-tuning configuration's digest); int8 records also name the backend whose runtime computed their
    features."""
    config = train_config + (f"|ft:{finetune_config}" if finetune_blocks else "")
    return _digest([identity, cut, head, dataset, config, finetune_blocks, _precision(precision), backend])


def latency_key(candidate: CandidateId, fingerprint: str, estimator: str, device_key: str, batch: int,
                num_classes: int) -> str:
    """The key of a candidate's latency from one estimator (or "verified") on one device."""
    return _digest([fingerprint, candidate.cut, candidate.backend, _precision(candidate.precision), candidate.device,
                    estimator, device_key, batch, num_classes])

"""One-pass multi-cut feature caching: one forward pass of the backbone yields pooled features at every cut."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netcut.data.datasets import Dataset
from netcut.fsutil import write_atomic
from netcut.graph import TracedNetwork, build_extractor
from netcut.progress import QUIET, Reporter
from netcut.train.loop import augment

Features = tuple[dict[str, np.ndarray], np.ndarray]  # cut name -> (N, C) pooled features, and the targets


def cache_key(traced: TracedNetwork, weights_hash: str, cut_names: list[str], dataset: Dataset,
              views: int, seed: int, runtime: dict[str, Any] | None = None) -> str:
    """Everything the cached numbers depend on: architecture, weights, cuts, data, transform, augmentation, and
    for quantized features the runtime, its version and the precision."""
    b = traced.backbone
    parts = {"arch": traced.fingerprint(), "weights": weights_hash, "cuts": cut_names, "data": dataset.fingerprint(),
             "transform": [traced.input_size, list(b.mean), list(b.std)], "views": views, "seed": seed, "v": 1,
             "runtime": runtime}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def load_cached(path: Path, cut_names: list[str], reporter: Reporter = QUIET) -> Features | None:
    """Features saved by save_cached, or None if missing or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            return {c: data[f"cut:{_safe(c)}"] for c in cut_names}, data["targets"]
    except (OSError, KeyError, ValueError):
        reporter.note(f"feature cache {path} is unreadable; recomputing it")
        return None


def save_cached(path: Path, features: Features) -> None:
    """Save features atomically."""
    buffer = io.BytesIO()
    arrays: dict[str, Any] = {f"cut:{_safe(c)}": v for c, v in features[0].items()}
    np.savez(buffer, targets=features[1], **arrays)
    write_atomic(path, buffer.getvalue())


def extract_features(traced: TracedNetwork, cut_names: list[str], dataset: Dataset, split: str,
                     batch_size: int = 64, views: int = 0, seed: int = 0, reporter: Reporter = QUIET,
                     device: str = "cpu") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Pooled (N, C) features at every cut from one pass per view (on `device`); returns (features, targets)."""
    extractor = build_extractor(traced, cut_names).eval()
    if device != "cpu":  # the extractor shares the backbone's parameters: move a copy, not the backbone
        extractor = copy.deepcopy(extractor).to(device)
    b = traced.backbone
    n = len(dataset.splits[split])
    passes = 1 + (views if split == "train" else 0)
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in cut_names}
    targets = []
    generator = torch.Generator().manual_seed(seed)
    steps = passes * ((n + batch_size - 1) // batch_size)
    with reporter.bar(f"caching features at {len(cut_names)} cuts ({split}, {b.name})", steps) as advance, \
            torch.inference_mode():
        for view in range(passes):
            for x, y in dataset.batches(split, traced.input_size, b.mean, b.std, batch_size):
                if view > 0:
                    x = augment(x, generator)
                for name, activation in zip(cut_names, extractor(x.to(device))):
                    chunks[name].append(activation.mean(dim=(2, 3)).float().cpu().numpy())
                targets.append(y.numpy())
                advance()
    return {c: np.concatenate(v) for c, v in chunks.items()}, np.concatenate(targets)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def cached_features(cache_dir: Path, traced: TracedNetwork, cut_names: list[str], dataset: Dataset, split: str,
                    weights_hash: str, views: int = 0, seed: int = 0, batch_size: int = 64,
                    reporter: Reporter = QUIET, device: str = "cpu") -> Features:
    """Features from the on-disk cache, computing (one pass, on `device`) and saving them atomically when missing
    (a GPU's float results differ in the last bits from the CPU's: the device is part of the key)."""
    runtime = None if device == "cpu" else {"device": device}
    key = cache_key(traced, weights_hash, cut_names, dataset, views if split == "train" else 0, seed, runtime)
    path = Path(cache_dir) / key / f"{split}.npz"
    cached = load_cached(path, cut_names, reporter)
    if cached is not None:
        return cached
    features = extract_features(traced, cut_names, dataset, split, batch_size, views, seed, reporter, device)
    save_cached(path, features)
    return features

"""One-pass multi-cut feature caching: one forward pass of the backbone yields pooled features at every cut."""

from __future__ import annotations

import copy
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netcut.data.datasets import Dataset
from netcut.fsutil import write_atomic
from netcut.graph import TracedNetwork
from netcut.model.readout import pooled_features, readout_key
from netcut.progress import QUIET, Reporter
from netcut.train.loop import augment

Features = tuple[dict[str, np.ndarray], np.ndarray]  # cut name -> (N, C) pooled features, and the targets


def cache_key(traced: TracedNetwork, weights_hash: str, cut_names: list[str], dataset: Dataset,
              views: int, seed: int, runtime: dict[str, Any] | None = None) -> str:
    """Everything the cached numbers depend on: architecture, weights, cuts, data, transform, augmentation, and
    for quantized features the runtime, its version and the precision."""
    b = traced.backbone
    parts = {"arch": traced.fingerprint(), "weights": weights_hash, "cuts": cut_names, "data": dataset.fingerprint(),
             "transform": [traced.input_size, list(b.mean), list(b.std)], "views": views, "seed": seed, "v": 2,
             "runtime": runtime}
    readouts = readout_key(traced, cut_names)
    if readouts is not None:  # token cuts: how they are read (feature-map keys stay as they were)
        parts["readouts"] = readouts
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


@dataclass(frozen=True)
class Shard:
    """Batches [first, last) of one pass over a split (view 0: the images as they are; view k: the k-th augmented
    pass). Shards are the unit an executor spreads: their features, put together in order, are one pass's."""

    split: str
    view: int
    first: int
    last: int


def plan_shards(dataset: Dataset, split: str, views: int = 0, batch_size: int = 64,
                shard_batches: int | None = None) -> list[Shard]:
    """The shards of a split's passes, in order: `shard_batches` batches each (default: one shard per pass)."""
    batches = (len(dataset.splits[split]) + batch_size - 1) // batch_size
    step = shard_batches or max(batches, 1)
    passes = 1 + (views if split == "train" else 0)
    return [Shard(split, view, first, min(first + step, batches)) for view in range(passes)
            for first in range(0, batches, step)]


def batch_generator(seed: int, view: int, batch: int) -> torch.Generator:
    """The augmentation randomness of one batch of one view: the same wherever and in whatever order it runs."""
    state = np.random.SeedSequence([seed, view, batch]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


def extract_shard(traced: TracedNetwork, cut_names: list[str], dataset: Dataset, shard: Shard,
                  batch_size: int = 64, seed: int = 0, device: str = "cpu",
                  advance: Callable[[], None] | None = None) -> Features:
    """Pooled (N, C) features at every cut for one shard (on `device`), and its targets."""
    extractor = pooled_features(traced, cut_names)
    if device != "cpu":  # the extractor shares the backbone's parameters: move a copy, not the backbone
        extractor = copy.deepcopy(extractor).to(device)
    b = traced.backbone
    indices = dataset.splits[shard.split][shard.first * batch_size:shard.last * batch_size]
    chunks: dict[str, list[np.ndarray]] = {c: [] for c in cut_names}
    targets = []
    with torch.inference_mode():
        for batch in range(shard.first, shard.last):
            chunk = indices[(batch - shard.first) * batch_size:(batch - shard.first + 1) * batch_size]
            x = dataset.loader(chunk, traced.input_size, b.mean, b.std)
            if shard.view > 0:
                x = augment(x, batch_generator(seed, shard.view, batch))
            for name, activation in zip(cut_names, extractor(x.to(device))):
                chunks[name].append(activation.float().cpu().numpy())
            targets.append(dataset.targets[chunk])
            if advance is not None:
                advance()
    return {c: np.concatenate(v) for c, v in chunks.items()}, np.concatenate(targets)


def join_shards(parts: list[Features]) -> Features:
    """The features of a split from its shards' (in plan order)."""
    names = list(parts[0][0])
    return {c: np.concatenate([p[0][c] for p in parts]) for c in names}, np.concatenate([p[1] for p in parts])


def extract_features(traced: TracedNetwork, cut_names: list[str], dataset: Dataset, split: str,
                     batch_size: int = 64, views: int = 0, seed: int = 0, reporter: Reporter = QUIET,
                     device: str = "cpu") -> Features:
    """Pooled (N, C) features at every cut from one pass per view (on `device`), here; returns (features, targets)."""
    shards = plan_shards(dataset, split, views, batch_size)
    steps = sum(s.last - s.first for s in shards)
    with reporter.bar(f"caching features at {len(cut_names)} cuts ({split}, {traced.backbone.name})",
                      steps) as advance:
        return join_shards([extract_shard(traced, cut_names, dataset, s, batch_size, seed, device, advance)
                            for s in shards])


def cache_path(cache_dir: Path, traced: TracedNetwork, cut_names: list[str], dataset: Dataset, split: str,
               weights_hash: str, views: int = 0, seed: int = 0, device: str = "cpu") -> Path:
    """Where a split's features are cached (a GPU's float results differ in the last bits from the CPU's: the
    device is part of the key)."""
    runtime = None if device == "cpu" else {"device": device}
    key = cache_key(traced, weights_hash, cut_names, dataset, views if split == "train" else 0, seed, runtime)
    return Path(cache_dir) / key / f"{split}.npz"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def cached_features(cache_dir: Path, traced: TracedNetwork, cut_names: list[str], dataset: Dataset, split: str,
                    weights_hash: str, views: int = 0, seed: int = 0, batch_size: int = 64,
                    reporter: Reporter = QUIET, device: str = "cpu") -> Features:
    """Features from the on-disk cache, computing (one pass, on `device`) and saving them atomically when missing."""
    path = cache_path(cache_dir, traced, cut_names, dataset, split, weights_hash, views, seed, device)
    cached = load_cached(path, cut_names, reporter)
    if cached is not None:
        return cached
    features = extract_features(traced, cut_names, dataset, split, batch_size, views, seed, reporter, device)
    save_cached(path, features)
    return features

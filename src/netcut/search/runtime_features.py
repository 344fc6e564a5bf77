"""Quantized networks in their runtime: features for the heads, and the score of the whole TRN as it deploys.

The backbone with a pooled output at every cut is converted once (so one calibration serves all cuts), loaded in
the backend's worker and run on the images; heads are trained on these features. A TRN made of a quantized trunk
and its trained head is then converted whole (its head quantized too) and scored in the runtime: that score, not
the features', ranks int8 candidates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork
from netcut.latency.calibration import as_batches
from netcut.latency.session import RuntimeSession
from netcut.model.readout import pooled_features
from netcut.progress import QUIET, Reporter
from netcut.train.cache import Features, cache_key, load_cached, save_cached
from netcut.train.metrics import evaluate

BATCH = 32  # the converted extractor's fixed batch


def runtime_features(cache_dir: Path, traced: TracedNetwork, cut_names: list[str], dataset: Dataset,
                     weights_hash: str, session: RuntimeSession, seed: int = 0, reporter: Reporter = QUIET
                     ) -> dict[str, Features]:
    """Per split, the features the session's runtime computes at its precision (cached on disk)."""
    runtime = {"backend": session.name, "precision": session.precision, **session.worker.versions}
    key = cache_key(traced, weights_hash, cut_names, dataset, 0, seed, runtime)
    paths = {s: Path(cache_dir) / key / f"{s}.npz" for s in ("train", "val", "test")}
    found = {s: load_cached(p, cut_names, reporter) for s, p in paths.items()}
    if all(v is not None for v in found.values()):
        return {s: v for s, v in found.items() if v is not None}
    if session.images is None:
        raise ValueError("quantized features need calibration images")
    example = torch.zeros(BATCH, 3, traced.input_size, traced.input_size)
    reporter.note(f"converting {traced.backbone.name} with {len(cut_names)} outputs to {session.name} "
                  f"{session.precision} (calibrated on {len(session.images)} training images)")
    session.add("features", pooled_features(traced, cut_names), example,
                as_batches(session.images, BATCH))
    b = traced.backbone
    try:
        for split, path in paths.items():
            cached = found[split]
            if cached is None:
                cached = _extract(session, dataset, split, traced.input_size, b.mean, b.std, cut_names, reporter)
                save_cached(path, cached)
            found[split] = cached
    finally:
        session.clear()
    return {s: v for s, v in found.items() if v is not None}


def _run_split(session: RuntimeSession, model: str, dataset: Dataset, split: str, size: int,
               mean: tuple[float, ...], std: tuple[float, ...], what: str, reporter: Reporter, batch_size: int = BATCH
               ) -> tuple[list[np.ndarray], np.ndarray]:
    """Every output of a loaded model over one split (in fixed batches), and the targets."""
    n = len(dataset.splits[split])
    chunks: list[list[np.ndarray]] = []
    targets = []
    with reporter.bar(f"{what} in {session.name} {session.precision} ({split})",
                      (n + batch_size - 1) // batch_size) as advance:
        for x, y in dataset.batches(split, size, mean, std, batch_size):
            count = len(x)
            batch = x.numpy()
            if count < batch_size:  # the converted model has a fixed batch: pad with the last image, drop the padding
                batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - count, axis=0)])
            outputs = session.run(model, batch)
            if not chunks:
                chunks = [[] for _ in outputs]
            for i, out in enumerate(outputs):
                chunks[i].append(np.asarray(out, dtype=np.float32)[:count])
            targets.append(y.numpy())
            advance()
    return [np.concatenate(c) for c in chunks], np.concatenate(targets)


def _extract(session: RuntimeSession, dataset: Dataset, split: str, size: int, mean: tuple[float, ...],
             std: tuple[float, ...], cut_names: list[str], reporter: Reporter) -> Features:
    outputs, targets = _run_split(session, "features", dataset, split, size, mean, std, "features", reporter)
    return dict(zip(cut_names, outputs)), targets


def evaluate_in_runtime(session: RuntimeSession, trn: nn.Module, dataset: Dataset, size: int,
                        mean: tuple[float, ...], std: tuple[float, ...], reporter: Reporter = QUIET
                        ) -> dict[str, dict[str, float]]:
    """Validation and test metrics of a whole TRN (trunk and trained head) converted at the session's precision
    and run in its runtime: what deploys, scored as deployed (batch 1, calibrated one image at a time, as
    `netcut export` converts it: some quantizers' scales depend on how calibration is batched)."""
    if session.images is None:
        raise ValueError("a quantized network needs calibration images")
    example = torch.zeros(1, 3, size, size)
    session.add("trn", trn, example, as_batches(session.images, 1))
    try:
        scores = {}
        for split in ("val", "test"):
            (logits,), targets = _run_split(session, "trn", dataset, split, size, mean, std, "scoring", reporter,
                                            batch_size=1)
            scores[split] = evaluate(torch.from_numpy(logits), torch.from_numpy(targets))
    finally:
        session.clear()
    return scores

"""Typed exploration values built by hand, for testing the pure stages and the renderers without torch."""

from __future__ import annotations

from netcut.results import Candidate, DatasetInfo, ExploreResult, ModelInfo, TrainingRecord
from netcut.types import CandidateId, CutPoint, Percentiles


def candidate(model: str, index: int, ms: float, full: bool = False, depth: int = 5, precision: str = "fp32",
              backend: str = "onnxruntime") -> Candidate:
    """A candidate of `model` cut at block `index` with an estimated p50 of `ms` (p90, p99 a little higher)."""
    cut = CutPoint(f"blocks.{index}", index, (16, 4, 4), 1000 * (index + 1), 10**6 * (index + 1), "add",
                   True, full or index == depth - 1)
    size = cut.params * (4 if precision == "fp32" else 1)
    return Candidate(CandidateId(model, cut.name, backend, precision), cut, Percentiles(ms, ms * 1.1, ms * 1.2),
                     "empirical", size)


def probe(c: Candidate, val: float, test: float | None = None, blocks: int = 0, run: int = 1,
          loss: float | None = None, count: int | None = None) -> TrainingRecord:
    """A training record of candidate `c` with validation score `val` (int8 records belong to their backend); with
    `loss` and `count`, the validation loss and the number of images it was scored on."""
    test = val if test is None else test
    precision = c.id.precision
    scored = {"score": val, "accuracy": val}
    if loss is not None and count is not None:
        scored.update(loss=loss, count=float(count))
    return TrainingRecord(f"{c.label}#{blocks}#{precision}", c.model, c.cut.name, c.cut.index, c.id.head, "data",
                          "cfg", blocks, "accuracy", val, test, {"val": scored, "test": {"score": test,
                                                                                          "accuracy": test}}, 1.0,
                          precision, run, "" if precision == "fp32" else c.id.backend)


def result(candidates: list[Candidate], records: list[TrainingRecord], decisions: tuple = (),
           run_id: int = 1) -> ExploreResult:
    """An exploration result around the given values."""
    models = {c.model: ModelInfo(c.model, 32, (0.5,) * 3, (0.5,) * 3, "imagenet", "fp", "w") for c in candidates}
    config = {"strategy": "netcut", "percentile": "p50", "margin": 0.05, "backends": ["onnxruntime"],
              "precisions": ["fp32"], "max_model_mb": None, "estimator": "empirical", "head_hidden": None,
              "top_k": 3, "verify": True}
    return ExploreResult(config, tuple(candidates), tuple(records), tuple(decisions),
                         DatasetInfo("digits", [str(i) for i in range(10)], False, "accuracy", "data",
                                     {"train": 300, "val": 75, "test": 150}),
                         models, run_id, 12.5, {"cpu": "test cpu", "threads": 1, "torch": "2"}, "0.1.0")

"""Rebuild the chosen TRN from the run's stored typed record, write it in a deployment format, check it in its
runtime on the run's test images, and describe it in a manifest."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netcut.backbones import Backbone, load_backbone, reload_option
from netcut.codec import decode
from netcut.data.snapshot import load_snapshot
from netcut.errors import NetcutError
from netcut.export.formats import FORMAT_OF_BACKEND, FORMATS, PRECISIONS_OF_FORMAT, WRITERS
from netcut.fsutil import write_atomic, write_json
from netcut.graph import trace
from netcut.latency.backends import get_backend
from netcut.latency.harness import HarnessConfig
from netcut.latency.session import RuntimeSession
from netcut.latency.workers import WorkerPool
from netcut.model import HeadSpec, TrimmedNetwork, build_trn, load_head
from netcut.results import Choice, Decision, ExploreResult
from netcut.store import ResultStore, load_result
from netcut.train.metrics import evaluate


def pick_deadline(result: ExploreResult, deadline: float | None) -> Decision:
    """The decision to export (default: the loosest deadline with a chosen network)."""
    if deadline is not None:
        options = [d for d in result.decisions if abs(d.deadline.ms - deadline) < 1e-9]
        if not options:
            known = ", ".join(f"{d.deadline.ms:g}" for d in result.decisions)
            raise NetcutError(f"the run explored no {deadline:g} ms deadline", f"pass one of: {known}")
        if options[0].chosen is None:
            raise NetcutError(f"no network met the {deadline:g} ms deadline in this run",
                              "export another deadline or explore a looser one")
        return options[0]
    met = [d for d in result.decisions if d.chosen is not None]
    if not met:
        raise NetcutError("no deadline of this run has a chosen network", "explore a looser deadline")
    return met[-1]


def _backbone(result: ExploreResult, name: str, given: dict[str, Backbone]) -> Backbone:
    readout = str(result.config.get("token_readout", "auto"))  # as the run read tokens
    if name in given:
        return replace(given[name], token_readout=readout)
    info = result.models[name]
    if info.weights == "user":
        raise NetcutError(f"{name} was passed to the Python API as a module; the run directory cannot rebuild it",
                          f"export through the API with the module again: export(run_dir, out, backbones="
                          f"{{{name!r}: module}})")
    return replace(load_backbone(name, reload_option(info.weights)), token_readout=readout)


def head_spec(result: ExploreResult, label: str) -> HeadSpec:
    """The head a stored record was trained with, as the run recorded it."""
    if label not in result.heads:
        raise NetcutError(f"the run recorded no head {label!r}", "explore again with this netcut version")
    return decode(HeadSpec, result.heads[label])


def rebuild(run_dir: Path, result: ExploreResult, choice: Choice,
            backbones: dict[str, Backbone] | None = None) -> TrimmedNetwork:
    """The chosen TRN with its trained weights, from the stored record (nothing re-derived by hand)."""
    info = result.models[choice.model]
    backbone = _backbone(result, choice.model, backbones or {})
    traced = trace(backbone, info.input_size)
    if traced.fingerprint() != info.fingerprint:
        raise NetcutError(f"{choice.model} no longer matches the run (architecture changed)",
                          "export with the netcut and model versions that ran the exploration")
    if info.weights_hash and backbone.weights_hash() != info.weights_hash:
        raise NetcutError(f"the weights of {choice.model} differ from those the run explored",
                          "pass the same weights (--weights) the exploration used")
    with ResultStore(run_dir) as store:
        weights = store.get_artifact(choice.record.key)
    if weights is None:
        raise NetcutError("the chosen network's weights are missing from the store", "rerun the exploration")
    spec = head_spec(result, choice.record.head)
    cut, num_classes = choice.candidate.cut, len(result.dataset.classes)
    if choice.record.finetune_blocks:
        trn = build_trn(traced, cut, num_classes, spec)
        trn.load_state_dict(weights)
        return trn.eval()
    return build_trn(traced, cut, num_classes, spec, load_head(choice.record, weights, cut.channels, num_classes, spec))


def _runtime_outputs(session: RuntimeSession, images: np.ndarray) -> np.ndarray:
    """The exported file's outputs on every image, one at a time (it takes a batch of one, as deployed)."""
    return np.concatenate([session.run("export", images[i:i + 1])[0] for i in range(len(images))])


def _reference(trn: TrimmedNetwork, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return np.concatenate([trn(torch.from_numpy(images[i:i + 64])).numpy() for i in range(0, len(images), 64)])


def export(run_dir: str | Path, out: str | Path, fmt: str | None = None, deadline: float | None = None,
           backbones: dict[str, Backbone] | None = None, threads: int | None = None) -> dict[str, Any]:
    """Write the chosen TRN in a deployment format, check it in its runtime on the run's test images, and write
    `<out>.json`, the manifest; returns the manifest. The format defaults to the one of the backend measured."""
    run_dir, out = Path(run_dir), Path(out)
    result = load_result(run_dir)
    decision = pick_deadline(result, deadline)
    choice = decision.chosen
    assert choice is not None  # pick_deadline returns decisions with a choice
    candidate = choice.candidate.id
    fmt = fmt or FORMAT_OF_BACKEND.get(candidate.backend, "onnx")
    if fmt not in FORMATS:
        raise NetcutError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    if candidate.precision not in PRECISIONS_OF_FORMAT[fmt]:
        others = [f for f, p in PRECISIONS_OF_FORMAT.items() if candidate.precision in p]
        raise NetcutError(f"the chosen network is {candidate.precision}, which {fmt} cannot hold",
                          f"use --format {'|'.join(others)}")
    info = result.models[choice.model]
    snapshot = load_snapshot(run_dir, info.mean, info.std)
    if snapshot is None:
        raise NetcutError(f"{str(run_dir)!r} holds no test images to check an export on",
                          "rerun the exploration with this netcut version")
    images, targets, calibration_images = snapshot
    trn = rebuild(run_dir, result, choice, backbones)
    example = torch.from_numpy(images[:1])
    calibration = [calibration_images[i:i + 1] for i in range(len(calibration_images))] \
        if candidate.precision != "fp32" else None
    exported = WRITERS[fmt](trn, example, candidate.precision, calibration)
    harness = HarnessConfig(threads=threads or result.environment.get("threads"))
    with WorkerPool() as pool:
        backend = get_backend(exported.backend)
        session = RuntimeSession(backend, pool.get(backend.runtime, harness.resolved_threads(), backend.name),
                                 "fp32" if fmt == "torchscript" else candidate.precision)
        session.add_payload("export", exported.payload, tuple(example.shape))
        outputs = _runtime_outputs(session, images)
        latency = session.time(["export"], harness).stats["export"]
        versions = session.versions()
    reference = _reference(trn, images)
    metrics = evaluate(torch.from_numpy(outputs), torch.from_numpy(targets))
    agreement = float((outputs.argmax(1) == reference.argmax(1)).mean())
    max_diff = float(np.abs(outputs - reference).max())
    if candidate.precision == "fp32" and max_diff > 1e-3:
        raise NetcutError(f"the {fmt} export differs from PyTorch by {max_diff:.2e}", "report this as a bug")
    for suffix, data in exported.files.items():
        write_atomic(out.with_suffix(suffix) if suffix else out, data)
    head = head_spec(result, choice.record.head)
    manifest = {
        "format": fmt, "files": [(out.with_suffix(s) if s else out).name for s in exported.files],
        "backbone": choice.model, "cut": choice.cut, "is_full_backbone": choice.candidate.is_full,
        "fine_tune_blocks": choice.record.finetune_blocks, "precision": candidate.precision,
        "runtime": exported.backend, "runtime_versions": versions, "size_bytes": exported.size_bytes,
        "head": {"kind": head.describe(), "num_classes": len(result.dataset.classes)},
        "classes": result.dataset.classes,
        "input": {"shape": list(example.shape), "dtype": "float32", "layout": "NCHW RGB",
                  "preprocessing": result.dataset.preprocessing or "see the dataset", "scale": "x/255",
                  "mean": list(info.mean), "std": list(info.std)},
        "output": {"shape": [1, len(result.dataset.classes)], "meaning": "logits"},
        **({"io_quantization": exported.io_quantization} if exported.io_quantization else {}),
        "deadline_ms": decision.deadline.ms, "percentile": decision.deadline.percentile,
        "latency": {"measured_in_runtime": {**latency.only().to_json(), "threads": harness.resolved_threads()},
                    "explored": {"backend": candidate.backend, "estimated_p50_ms": choice.candidate.estimate.p50,
                                 "measured_p50_ms": choice.latency_ms}},
        "accuracy_in_runtime": {"test_images": int(len(images)), **metrics},
        "agreement_with_pytorch_fp32": {"max_abs_diff": max_diff, "top1_agreement": agreement},
        "explored_score": {"metric": choice.record.metric, "test_score": choice.score, "accuracy": choice.accuracy},
        "environment": result.environment, "netcut_version": result.netcut_version,
    }
    write_json(Path(str(out) + ".json"), manifest)
    return manifest

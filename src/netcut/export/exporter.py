"""Rebuild the chosen TRN from the run's stored typed record and write it with its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from netcut.backbones import Backbone, load_backbone
from netcut.errors import NetcutError
from netcut.export.formats import FORMATS, WRITERS
from netcut.fsutil import write_atomic, write_json
from netcut.graph import trace
from netcut.model import TrimmedNetwork, build_trn, classifier
from netcut.search.config import ExploreConfig
from netcut.search.results import Choice, Decision, ExploreResult
from netcut.store import ResultStore, load_result


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
    if name in given:
        return given[name]
    info = result.models[name]
    if info.weights == "user":
        raise NetcutError(f"{name} was passed to the Python API as a module; the run directory cannot rebuild it",
                          f"export through the API with the module again: export(run_dir, out, backbones="
                          f"{{{name!r}: module}})")
    return load_backbone(name, result.config["weights"])


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
    head = ExploreConfig.from_json(result.config).train_config().head
    cut, num_classes = choice.candidate.cut, len(result.dataset.classes)
    if choice.record.finetune_blocks:
        trn = build_trn(traced, cut, num_classes, head)
        trn.load_state_dict(weights)
        return trn.eval()
    trained = classifier(cut.shape[0], num_classes, head)
    trained.load_state_dict(weights)
    return build_trn(traced, cut, num_classes, head, trained)


def export(run_dir: str | Path, out: str | Path, fmt: str = "onnx", deadline: float | None = None,
           backbones: dict[str, Backbone] | None = None) -> dict[str, Any]:
    """Write the chosen TRN and `<out>.json` manifest; returns the manifest."""
    if fmt not in FORMATS:
        raise NetcutError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    result = load_result(run_dir)
    decision = pick_deadline(result, deadline)
    choice = decision.chosen
    assert choice is not None  # pick_deadline returns decisions with a choice
    trn = rebuild(run_dir, result, choice, backbones)
    info = result.models[choice.model]
    size = info.input_size
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = trn(example).numpy()
    payload, parity = WRITERS[fmt](trn, example, expected, f"{choice.model} @ {choice.cut}")
    if parity > 1e-3:
        raise NetcutError(f"the {fmt} export differs from PyTorch by {parity:.2e}", "report this as a bug")
    write_atomic(out, payload)
    head = ExploreConfig.from_json(result.config).train_config().head
    measured = choice.measured
    manifest = {
        "format": fmt, "file": out.name, "backbone": choice.model, "cut": choice.cut,
        "is_full_backbone": choice.candidate.is_full, "fine_tune_blocks": choice.record.finetune_blocks,
        "head": {"kind": head.describe(), "num_classes": len(result.dataset.classes)},
        "classes": result.dataset.classes,
        "input": {"shape": [1, 3, size, size], "layout": "NCHW RGB", "scale": "x/255 then (x - mean)/std",
                  "mean": list(info.mean), "std": list(info.std)},
        "deadline_ms": decision.deadline.ms, "percentile": decision.deadline.percentile,
        "latency": {"measured_p50_ms": measured.p50 if measured else None,
                    "measured_p90_ms": measured.p90 if measured else None,
                    "estimated_p50_ms": choice.candidate.estimate.p50, "backend": choice.candidate.id.backend},
        "metric": choice.record.metric, "test_score": choice.score, "accuracy": choice.accuracy,
        "parity_max_abs_diff": parity, "environment": result.environment, "netcut_version": result.netcut_version,
    }
    write_json(Path(str(out) + ".json"), manifest)
    return manifest

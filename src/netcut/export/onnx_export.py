"""Export the chosen TRN (ONNX or TorchScript) with a JSON manifest; ONNX is checked against PyTorch."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch

from netcut.backbones import load_backbone
from netcut.errors import NetcutError
from netcut.fsutil import write_atomic, write_json
from netcut.graph import find_cuts, trace
from netcut.heads import classifier
from netcut.search.explore import backbone_identity, trained_candidate_key
from netcut.store import ResultStore
from netcut.train.finetune import assemble
from netcut.train.heads import TrainConfig
from netcut.types import HeadSpec

FORMATS = ("onnx", "torchscript")


def load_result(run_dir: Path) -> dict:
    """The last finished exploration of a run directory."""
    if not (run_dir / "netcut.sqlite").is_file():
        raise NetcutError(f"{str(run_dir)!r} holds no netcut run", "pass the --run-dir of a finished `netcut explore`")
    store = ResultStore(run_dir)
    last = store.last_result()
    store.close()
    if last is None:
        raise NetcutError(f"{str(run_dir)!r} has no finished exploration", "run `netcut explore` to completion first")
    return last[1]


def pick_deadline(result: dict, deadline: float | None) -> dict:
    """The per-deadline result to export (default: the loosest deadline with a chosen network)."""
    options = [d for d in result["deadlines"] if d["chosen"] is not None]
    if deadline is not None:
        options = [d for d in result["deadlines"] if abs(d["deadline_ms"] - deadline) < 1e-9]
        if not options:
            known = ", ".join(f"{d['deadline_ms']:g}" for d in result["deadlines"])
            raise NetcutError(f"the run explored no {deadline:g} ms deadline", f"pass one of: {known}")
        if options[0]["chosen"] is None:
            raise NetcutError(f"no network met the {deadline:g} ms deadline in this run",
                              "export another deadline or explore a looser one")
    if not options:
        raise NetcutError("no deadline of this run has a chosen network", "explore a looser deadline")
    return options[-1]


def rebuild(run_dir: Path, result: dict, chosen: dict) -> tuple[torch.nn.Module, dict]:
    """The chosen TRN with its trained weights, rebuilt from the run's configuration and store."""
    cfg = result["config"]
    model_info = result["models"][chosen["model"]]
    backbone = load_backbone(chosen["model"], cfg["weights"])
    traced = trace(backbone, model_info["input_size"])
    if traced.fingerprint() != model_info["fingerprint"]:
        raise NetcutError(f"{chosen['model']} no longer matches the run (architecture changed)",
                          "export with the netcut and model versions that ran the exploration")
    cuts = find_cuts(traced, cfg["granularity"])
    cut = next(c for c in cuts if c.name == chosen["cut"])
    train = TrainConfig(epochs=cfg["epochs"], seed=cfg["seed"], head=HeadSpec(hidden=cfg["head_hidden"]))
    blocks = chosen["fine_tune_blocks"]
    key = trained_candidate_key(backbone_identity(backbone, traced, backbone.weights_hash()), cut.name, train,
                                result["dataset"]["fingerprint"], blocks, cfg["fine_tune_epochs"])
    store = ResultStore(run_dir)
    weights = store.get_artifact(key)
    store.close()
    if weights is None:
        raise NetcutError("the chosen network's weights are missing from the store", "rerun the exploration")
    num_classes = len(result["dataset"]["classes"])
    head = classifier(cut.shape[0], num_classes, train.head)
    if blocks:
        trn = assemble(traced, cut, head)
        trn.load_state_dict(weights)
    else:
        head.load_state_dict(weights)
        trn = assemble(traced, cut, head)
    return trn.eval(), {"input_size": traced.input_size, "mean": list(backbone.mean), "std": list(backbone.std)}


def export(run_dir: str | Path, out: str | Path, fmt: str = "onnx", deadline: float | None = None) -> dict:
    """Write the chosen TRN and `<out>.json` manifest; returns the manifest."""
    if fmt not in FORMATS:
        raise NetcutError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
    run_dir, out = Path(run_dir), Path(out)
    result = load_result(run_dir)
    per_deadline = pick_deadline(result, deadline)
    chosen = per_deadline["chosen"]
    trn, io_info = rebuild(run_dir, result, chosen)
    size = io_info["input_size"]
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = trn(example).numpy()
    parity = None
    if fmt == "onnx":
        from netcut.latency.ort_backend import export_onnx

        onnx_bytes = export_onnx(trn, example[:1], f"{chosen['model']} @ {chosen['cut']}")
        write_atomic(out, onnx_bytes)
        import onnxruntime

        sess = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
        got = np.concatenate([sess.run(None, {sess.get_inputs()[0].name: example[i:i + 1].numpy()})[0]
                              for i in range(len(example))])
        parity = float(np.abs(got - expected).max())
        if parity > 1e-3:
            raise NetcutError(f"the ONNX export differs from PyTorch by {parity:.2e}", "report this as a bug")
    else:
        with torch.inference_mode(False), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still deployed
            scripted = torch.jit.trace(trn, example[:1].clone(), check_trace=False)
            buffer = io.BytesIO()
            torch.jit.save(scripted, buffer)
        write_atomic(out, buffer.getvalue())
        parity = float(np.abs(scripted(example).detach().numpy() - expected).max())
    manifest = {
        "format": fmt, "file": out.name, "backbone": chosen["model"], "cut": chosen["cut"],
        "is_full_backbone": chosen["is_full"], "fine_tune_blocks": chosen["fine_tune_blocks"],
        "head": {"kind": "global average pool + " + ("linear" if result["config"]["head_hidden"] is None else
                                                    f"mlp {result['config']['head_hidden']}"),
                 "num_classes": len(result["dataset"]["classes"])},
        "classes": result["dataset"]["classes"], "input": {"shape": [1, 3, size, size], "layout": "NCHW RGB",
                                                           "scale": "x/255 then (x - mean)/std",
                                                           "mean": io_info["mean"], "std": io_info["std"]},
        "deadline_ms": per_deadline["deadline_ms"], "percentile": per_deadline["percentile"],
        "latency": {"measured_p50_ms": chosen["latency_ms"], "measured_p90_ms": chosen["latency_p90_ms"],
                    "estimated_p50_ms": chosen["estimated_ms"], "backend": result["config"]["backend"]},
        "metric": chosen["metric"], "test_score": chosen["score"], "accuracy": chosen["accuracy"],
        "parity_max_abs_diff": parity, "environment": result["environment"],
        "netcut_version": result["netcut_version"],
    }
    write_json(Path(str(out) + ".json"), manifest)
    return manifest

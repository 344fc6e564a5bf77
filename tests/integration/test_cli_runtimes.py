"""`explore` across runtimes and precisions, int8 accuracy measured in the runtime, int8 export read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

SMALL = ["--models", "efficientnet_lite0", "--data", "digits", "--input-size", "32", "--limit-train", "300",
         "--limit-test", "150", "--repeats", "5", "--warmup", "2", "--threads", "1", "--epochs", "15",
         "--deadline", "1000", "--top-k", "1", "--json"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """ONNX Runtime and OpenVINO, fp32 and int8, in one exploration."""
    from helpers import run_cli

    run_dir = tmp_path_factory.mktemp("runtimes")
    result = run_cli("explore", *SMALL, "--backend", "onnxruntime,openvino", "--precision", "fp32,int8",
                     "--run-dir", str(run_dir), timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout)


def test_every_candidate_carries_its_runtime_precision_and_size(both):
    _, data = both
    groups = {(r["backend"], r["precision"]) for r in data["candidates"]}
    assert groups == {("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"), ("openvino", "int8")}
    rows = {(r["backend"], r["precision"], r["cut"]): r for r in data["candidates"]}
    for (backend, precision, cut), row in rows.items():
        assert row["size_mb"] > 0 and row["estimated_ms"] > 0
        if precision == "int8":
            fp32 = rows[(backend, "fp32", cut)]["size_mb"]
            assert row["size_mb"] < fp32
            if row["params"] > 100_000:  # where weights outweigh the file's structure, int8 is ~4x smaller
                assert row["size_mb"] < 0.5 * fp32
    assert data["chosen"]["backend"] in ("onnxruntime", "openvino") and data["chosen"]["precision"] in (
        "fp32", "int8")
    assert {(f["backend"], f["precision"]) for f in data["frontier"]} == groups


def test_int8_accuracy_is_measured_in_the_runtime_and_compared_with_fp32(both):
    run_dir, data = both
    int8 = [r for r in data["candidates"] if r["precision"] == "int8" and r["trained"]]
    assert len(int8) == 2  # top-1 per backend
    for row in int8:
        assert 0.3 < row["accuracy"] <= 1.0 and "fp32_accuracy" in row
        assert row["accuracy_change_vs_fp32"] == pytest.approx(row["accuracy"] - row["fp32_accuracy"])
    # the two runtimes quantize the same QDQ file but run it themselves: their features are their own
    caches = list((run_dir / "cache").iterdir())
    assert len(caches) == 3  # fp32 (PyTorch) + int8 onnxruntime + int8 openvino
    report = (run_dir / "report" / "report.md").read_text()
    assert "## int8 against fp32" in report and "### openvino, int8" in report


def test_litert_int8_explore_and_export_read_back(tmp_path, cli):
    run = cli("explore", *SMALL, "--backend", "litert", "--precision", "int8", "--run-dir", str(tmp_path),
              timeout=900)
    assert run.returncode == 0, run.stderr
    chosen = json.loads(run.stdout)["chosen"]
    assert (chosen["backend"], chosen["precision"]) == ("litert", "int8")
    out = tmp_path / "winner.tflite"
    exported = cli("export", str(tmp_path), "--out", str(out))  # the format follows the backend measured
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((tmp_path / "winner.tflite.json").read_text())
    assert manifest["format"] == "tflite" and manifest["precision"] == "int8"
    # int8 in LiteRT against the fp32 network in PyTorch: the same top class on most test images
    assert manifest["agreement_with_pytorch_fp32"]["top1_agreement"] >= 0.7
    # the exploration scored the whole int8 TRN in LiteRT: the exported file (batch 1) scores alike
    assert manifest["accuracy_in_runtime"]["accuracy"] == pytest.approx(chosen["accuracy"], abs=0.1)
    assert "probe_accuracy" in chosen["metrics"]  # the head's score on the int8 features, kept beside
    quant = manifest["io_quantization"]
    assert quant["input"]["dtype"] == "int8" and quant["input"]["scale"] > 0
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    x = np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(1, 3, 32, 32)
    q = np.clip(np.round(x / quant["input"]["scale"]) + quant["input"]["zero_point"], -128, 127).astype(np.int8)
    interpreter.set_tensor(source["index"], q)
    interpreter.invoke()
    assert interpreter.get_tensor(target["index"]).shape == (1, 10)
    refused = cli("export", str(tmp_path), "--format", "torchscript", "--out", str(tmp_path / "x.pt"))
    assert refused.returncode == 2 and "int8, which torchscript cannot hold" in refused.stderr

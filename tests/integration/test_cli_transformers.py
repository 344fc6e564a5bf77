"""`explore` end to end on a vision transformer: token cuts timed in ONNX Runtime and OpenVINO at fp32 and int8,
heads on tokens trained and fine-tuned, the winner exported to LiteRT and read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

VIT = ["--models", "py:tests/tiny_models.py:tiny_vit", "--data", "digits", "--input-size", "32", "--limit-train",
       "300", "--limit-test", "150", "--repeats", "5", "--warmup", "2", "--threads", "1", "--epochs", "15",
       "--top-k", "1", "--json"]


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """A tiny ViT explored in two runtimes at two precisions, with a short fine-tuning budget."""
    from helpers import run_cli

    run_dir = tmp_path_factory.mktemp("vit")
    result = run_cli("explore", *VIT, "--deadline", "1000", "--backend", "onnxruntime,openvino",
                     "--precision", "fp32,int8", "--budget", "20s", "--run-dir", str(run_dir), timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout)


def test_token_cuts_are_candidates_in_every_runtime_and_precision(vit_run):
    _, data = vit_run
    groups: dict[tuple[str, str], list[str]] = {}
    for row in data["candidates"]:
        groups.setdefault((row["backend"], row["precision"]), []).append(row["cut"])
    assert set(groups) == {(b, p) for b in ("onnxruntime", "openvino") for p in ("fp32", "int8")}
    for cuts in groups.values():
        assert cuts == ["patch_embed.norm", "norm_pre", "blocks.0.add_1", "blocks.1.add_1", "blocks.2.add_1",
                        "norm.layer_norm"]
    for row in data["candidates"]:
        assert row["estimated_ms"] > 0 and row["size_mb"] > 0


def test_heads_on_tokens_learn_and_int8_keeps_their_accuracy(vit_run):
    _, data = vit_run
    trained = [r for r in data["candidates"] if r["trained"]]
    assert trained and all(r["accuracy"] > 0.2 for r in trained)  # ten classes: chance is 0.1
    for row in (r for r in trained if r["precision"] == "int8"):
        # int8 covers the matrix products only: LayerNorm, softmax and the residual adds stay float
        assert abs(row["accuracy_change_vs_fp32"]) < 0.1
    chosen = data["chosen"]  # fine-tuned on tokens within the budget: the prefix and the head's copy of the norm
    assert chosen["fine_tune_epochs"] > 0 and chosen["fine_tune_blocks"] == -1 and chosen["accuracy"] > 0.2


def test_the_transformer_winner_exports_to_litert_and_runs(vit_run, tmp_path, cli):
    run_dir, data = vit_run
    out = tmp_path / "vit.tflite"
    exported = cli("export", str(run_dir), "--format", "tflite", "--out", str(out), timeout=600)
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((tmp_path / "vit.tflite.json").read_text())
    if manifest["precision"] == "fp32":
        assert manifest["agreement_with_pytorch_fp32"]["top1_agreement"] >= 0.95
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert data["chosen"]["model"].endswith("tiny_vit")
    if source["dtype"] == np.float32:
        interpreter.set_tensor(source["index"], np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(1, 3, 32, 32))
        interpreter.invoke()
        assert interpreter.get_tensor(target["index"]).shape == (1, 10)

"""`netcut-agent measure` times the model files netcut converts, without PyTorch, and refuses bad input clearly."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from agents import agent_python
from netcut.latency.backends import get_backend
from tiny_models import Chain

pytestmark = [pytest.mark.agent, pytest.mark.runtime]

SHAPE = "1,3,32,32"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Chain converted by netcut to an ONNX file and a TFLite file."""
    folder = tmp_path_factory.mktemp("agent")
    torch.manual_seed(0)
    traced = torch.fx.symbolic_trace(Chain(num_classes=2).eval())
    example = torch.zeros(1, 3, 32, 32)
    paths = {}
    for backend, suffix in (("onnxruntime", ".onnx"), ("litert", ".tflite")):
        paths[backend] = folder / f"chain{suffix}"
        paths[backend].write_bytes(get_backend(backend).convert(traced, example))
    return paths


def agent(*args: str) -> subprocess.CompletedProcess:
    """The agent's CLI from its own environment (no PyTorch, no netcut)."""
    return subprocess.run([agent_python(), "-m", "netcut_agent.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_the_agent_environment_has_neither_torch_nor_netcut():
    for module in ("torch", "netcut"):
        result = subprocess.run([agent_python(), "-c", f"import {module}"], capture_output=True, text=True)
        assert result.returncode != 0 and "No module named" in result.stderr


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_measures_netcut_model_files_without_torch(models, backend):
    result = agent("measure", str(models[backend]), "--input-shape", SHAPE, "--threads", "1", "--repeats", "5",
                   "--warmup", "1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    stats = report["models"][str(models[backend])]
    assert 0 < stats["p50"] <= stats["p90"] <= stats["p99"] and stats["n"] == 5
    env = report["environment"]
    assert env["runtime"] == backend and env["threads"] == 1 and env["cpu"]
    assert "torch" not in " ".join(env)


def test_several_models_are_timed_in_one_job(models):
    onnx = models["onnxruntime"]
    copy = onnx.with_name("copy.onnx")
    copy.write_bytes(onnx.read_bytes())
    result = agent("measure", str(onnx), str(copy), "--input-shape", SHAPE, "--threads", "1", "--repeats", "3")
    assert result.returncode == 0, result.stderr
    assert "interleaved rounds" in result.stdout and str(copy) in result.stdout and str(onnx) in result.stdout


@pytest.mark.parametrize("case, expected", [
    ("garbage", "cannot load this model"),
    ("missing", "does not exist"),
    ("shape", "does not run with input"),
    ("mixed", "cannot tell the runtime"),
    ("threads", "threads must be"),
])
def test_bad_input_is_one_clear_message_and_exit_2(models, tmp_path, case, expected):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    args = {"garbage": [str(garbage), "--input-shape", SHAPE],
            "missing": [str(tmp_path / "nope.onnx"), "--input-shape", SHAPE],
            "shape": [str(models["onnxruntime"]), "--input-shape", "1,5,32,32"],
            "mixed": [str(models["onnxruntime"]), str(models["litert"]), "--input-shape", SHAPE],
            "threads": [str(models["onnxruntime"]), "--input-shape", SHAPE, "--threads", "0"]}[case]
    result = agent("measure", *args, "--repeats", "2")
    assert result.returncode == 2
    assert expected in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr


def test_device_names_this_machine_and_each_runtime_as_it_is_here():
    from netcut_agent.identity import device_identity

    shown = agent("device", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["device"] == data["environment"]["cpu"] == device_identity()
    found = {r["name"]: r for r in data["runtimes"]}
    # the agent's own environment: ONNX Runtime and LiteRT start, OpenVINO is not installed (its extra is named)
    assert found["onnxruntime"]["available"] and found["litert"]["available"]
    assert found["openvino"] == {"name": "openvino", "available": False, "versions": {}, "problem": "not installed",
                                 "install": "pip install 'netcut-agent[openvino]'"}
    text = agent("device").stdout
    assert f"device: {device_identity()}" in text and "missing  openvino: not installed" in text

"""The real `netcut profile` and `netcut calibrate` commands."""

from __future__ import annotations

import json

import pytest

from helpers import UNEXPORTABLE_NET
from netcut.latency.table import LatencyTable

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

TINY_NET = UNEXPORTABLE_NET + """

class Net(torch.nn.Sequential):
    input_size = 32

    def __init__(self):
        layers = [torch.nn.Conv2d(3, 8, 3, 1, 1), torch.nn.ReLU()]
        for _ in range(4):
            layers += [torch.nn.Conv2d(8, 8, 3, 1, 1), torch.nn.ReLU()]
        super().__init__(*layers)
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY_NET)
    return path


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_profile_measure_all_json_and_table_file(cli, tiny, tmp_path, backend):
    out = tmp_path / "table.json"
    result = cli("profile", f"py:{tiny}:Net", "--backend", backend, "--threads", "1", "--repeats", "5",
                 "--measure-all", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # progress never pollutes stdout
    assert len(data["cuts"]) >= 4
    for row in data["cuts"]:
        assert row["estimated_ms"] > 0 and row["measured_ms"] > 0 and row["measured_p90_ms"] >= row["measured_ms"]
    assert data["environment"]["threads"] == 1
    # the figure counts the cuts the estimator estimated; those it measured as anchors are counted apart
    accuracy = data["accuracy"]["empirical"]
    assert accuracy["anchors"] >= 1 and accuracy["n"] + accuracy["anchors"] == len(data["cuts"])
    assert data["environment"]["backend"] == backend and data["environment"]["cpu"]
    table = LatencyTable.load(out)
    assert table.fingerprint == data["fingerprint"] and table.backend == backend


def test_profile_table_output_reports_estimator_error(cli, tiny):
    result = cli("profile", f"py:{tiny}:Net", "--threads", "1", "--repeats", "5", "--measure-all")
    assert result.returncode == 0, result.stderr
    assert ("empirical: MAPE" in result.stdout and "estimated TRNs within ±10%" in result.stdout
            and "measured as anchors, not counted" in result.stdout) or "nothing was estimated" in result.stdout


def test_unexportable_op_is_named(cli, tiny):
    result = cli("profile", f"py:{tiny}:Unexportable", "--backend", "onnxruntime", "--repeats", "2", "--quiet")
    assert result.returncode == 2
    assert "aten::cummax" in result.stderr and "Traceback" not in result.stderr
    assert "Torch IR graph" not in result.stdout + result.stderr


@pytest.mark.parametrize("args, message", [
    (["--backend", "tflite"], "unknown backend 'tflite'"),
    (["--threads", "0"], "threads must be ≥ 1"),
    (["--threads", "-3"], "threads must be ≥ 1"),
    (["--estimator", "guess"], "invalid choice"),
    (["--input-size", "2"], "cannot take a 2x2 input"),
    (["--analytical-model", "/nonexistent/model.json", "--estimator", "analytical"], "does not exist"),
    # no calibration for this device yet: an error naming the command and its duration, not a silent calibration
    (["--estimator", "analytical", "--threads", "1"], "calibrate one first: `netcut calibrate --backend onnxruntime "
                                                     "--precision fp32 --threads 1` (about 5-15 min"),
])
def test_profile_bad_input(cli, tiny, args, message):
    model = "torchvision:alexnet" if "--input-size" in args else f"py:{tiny}:Net"
    result = cli("profile", model, "--repeats", "2", "--quiet", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_calibrate_then_profile_analytical(cli, tmp_path):
    model = tmp_path / "model.json"
    result = cli("calibrate", "--threads", "1", "--repeats", "3", "--warmup", "1", "--quick", "--quiet",
                 "--out", str(model))
    assert result.returncode == 0, result.stderr
    assert "kernels timed" in result.stdout and "dwconv" in result.stdout and model.is_file()
    stored = json.loads(model.read_text())
    assert stored["backend"] == "onnxruntime" and stored["threads"] == 1 and len(stored["samples"]["conv"]) >= 12
    assert stored["fit"]["kernel_timing"] == "runtime profiler, own nodes"
    profiled = cli("profile", "torchvision:resnet18", "--input-size", "32", "--estimator", "analytical",
                   "--analytical-model", str(model), "--threads", "1", "--json")
    assert profiled.returncode == 0, profiled.stderr
    rows = json.loads(profiled.stdout)["cuts"]
    assert all(r["estimated_ms"] > 0 and r["measured_ms"] is None for r in rows)
    assert [r["estimated_ms"] for r in rows] == sorted(r["estimated_ms"] for r in rows)
    elsewhere = cli("profile", "torchvision:resnet18", "--input-size", "32", "--estimator", "analytical",
                    "--analytical-model", str(model), "--threads", "2", "--json")
    assert elsewhere.returncode == 2 and "another device or thread count" in elsewhere.stderr

"""`netcut explore`, `report` and `export` end to end on real (small) inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from helpers import uniform_similarity, verified_latencies

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

MODELS = "efficientnet_lite0,torchvision:mobilenet_v3_small"
SMALL = ["--data", "digits", "--input-size", "32", "--limit-train", "300", "--limit-test", "150", "--repeats", "5",
         "--warmup", "2", "--threads", "1", "--epochs", "15"]


def explore(cli, run_dir, *extra, models=MODELS):
    return cli("explore", "--models", models, "--run-dir", str(run_dir), *SMALL, *extra)


@pytest.fixture(scope="module")
def latencies(tmp_path_factory):
    """Profile once to pick deadlines that leave room to win."""
    from helpers import run_cli

    run_dir = tmp_path_factory.mktemp("probe")
    result = run_cli("explore", "--models", MODELS, "--run-dir", str(run_dir), *SMALL, "--deadline", "1000",
                     "--json", "--no-report")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return {(c["model"], c["cut"]): c["estimated_ms"] for c in data["candidates"]}, data


def test_explore_json_has_the_documented_fields(latencies):
    _, data = latencies
    assert {"deadline_ms", "chosen", "candidates", "trained", "exploration_s"} <= set(data)
    chosen = data["chosen"]
    assert {"model", "cut", "accuracy", "latency_ms", "latency_p90_ms", "estimated_ms"} <= set(chosen)
    assert chosen["latency_ms"] <= data["deadline_ms"]
    for row in data["candidates"]:
        assert {"model", "cut", "estimated_ms", "trained"} <= set(row)
        assert ("accuracy" in row) == row["trained"]
    assert data["trained"] == sum(r["trained"] for r in data["candidates"])
    # netcut proposes the top-3 deepest feasible cuts per backbone: 6 of all candidates
    assert data["trained"] == 6 < len(data["candidates"])
    assert data["chosen"]["accuracy"] > 0.5  # digits; chance is 0.1


def test_tight_deadline_picks_a_trn_that_meets_it_and_rerun_reuses_everything(cli, tmp_path, latencies):
    estimates, probe = latencies
    slowest_full = max(r["estimated_ms"] for r in probe["candidates"] if r["is_full"])
    # room above the median TRN for measurement noise, but too tight for the slower full network
    deadline = min(1.5 * sorted(estimates.values())[len(estimates) // 2], 0.9 * slowest_full)
    first = explore(cli, tmp_path, "--deadline", f"{deadline:.4f}", "--json")
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    chosen = data["chosen"]
    assert chosen is not None and chosen["latency_ms"] <= deadline and chosen["estimated_ms"] * 1.05 <= deadline
    proposals = set(data["proposals"])
    assert proposals and all(r["estimated_ms"] * 1.05 <= deadline for r in data["candidates"]
                             if f"{r['model']}@{r['cut']}" in proposals)
    feasible = {f"{r['model']}@{r['cut']}" for r in data["candidates"] if r["feasible"]}
    assert proposals <= feasible < {f"{r['model']}@{r['cut']}" for r in data["candidates"]}
    again = explore(cli, tmp_path, "--deadline", f"{deadline:.4f}", "--json")
    redo = json.loads(again.stdout)
    assert redo["newly_trained"] == 0 and redo["chosen"] == data["chosen"]


def test_a_memory_budget_drops_what_does_not_fit_and_the_winner_is_measured_within_it(cli, tmp_path, latencies):
    _, probe = latencies
    first = probe["chosen"]
    assert first["ram_source"] == "measured" and first["memory"]["peak_bytes"] == pytest.approx(first["ram_mb"] * 1e6)
    assert first["memory"]["load_ms"] > 0 and first["memory"]["first_ms"] > 0
    assert all(r["ram_mb"] > 0 for r in probe["candidates"])
    assert {r["ram_source"] for r in probe["candidates"]} == {"measured", "estimated"}  # anchors measured
    budget = 0.7 * first["ram_mb"]
    result = explore(cli, tmp_path, "--deadline", "1000", "--max-ram-mb", f"{budget:.3f}", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["max_ram_mb"] == pytest.approx(budget, abs=1e-3)
    for row in data["candidates"]:
        if row["ram_mb"] > budget:
            assert not row["feasible"]
    chosen = data["chosen"]
    assert chosen["ram_source"] == "measured" and chosen["ram_mb"] <= budget
    assert (chosen["model"], chosen["cut"]) != (first["model"], first["cut"])
    assert f"peak memory ≤ {float(f'{budget:.3f}'):g} MB" in (tmp_path / "report" / "report.md").read_text()


def test_several_deadlines_and_report_and_export(cli, tmp_path, latencies):
    estimates, _ = latencies
    values = sorted(estimates.values())
    deadlines = f"{values[len(values) // 3]:.3f},{values[-1] * 2:.3f}"
    result = explore(cli, tmp_path, "--deadline", deadlines, "--json")
    assert result.returncode in (0, 3), result.stderr
    data = json.loads(result.stdout)
    assert [d["deadline_ms"] for d in data["deadlines"]] == sorted(float(x) for x in deadlines.split(","))
    loose = data["deadlines"][-1]
    assert loose["chosen"] is not None and loose["best_off_the_shelf"] is not None
    for name in ("report.md", "report.html", "frontier.png", "depth.png"):
        assert (tmp_path / "report" / name).stat().st_size > 500
    assert "Pareto frontier" in (tmp_path / "report" / "report.md").read_text()
    report = cli("report", str(tmp_path), "--out", str(tmp_path / "again"))
    assert report.returncode == 0 and (tmp_path / "again" / "report.html").is_file()

    x = np.stack([np.linspace(-1, 1, 3 * 32 * 32, dtype=np.float32).reshape(3, 32, 32)])
    read_back = {}
    for fmt, name in (("onnx", "winner.onnx"), ("tflite", "winner.tflite"), ("openvino", "winner.xml"),
                      ("torchscript", "winner.pt")):
        out = tmp_path / name
        exported = cli("export", str(tmp_path), "--format", fmt, "--out", str(out))
        assert exported.returncode == 0, exported.stderr
        manifest = json.loads((tmp_path / f"{name}.json").read_text())
        assert manifest["backbone"] == loose["chosen"]["model"] and manifest["cut"] == loose["chosen"]["cut"]
        assert manifest["format"] == fmt and manifest["precision"] == "fp32" and manifest["size_bytes"] > 0
        assert manifest["agreement_with_pytorch_fp32"]["max_abs_diff"] < 1e-4
        assert manifest["agreement_with_pytorch_fp32"]["top1_agreement"] == 1.0
        # the accuracy measured in the runtime is the explored network's (same weights, same test images)
        assert manifest["accuracy_in_runtime"]["accuracy"] == pytest.approx(loose["chosen"]["accuracy"], abs=0.02)
        assert manifest["classes"] == [str(i) for i in range(10)] and manifest["input"]["shape"] == [1, 3, 32, 32]
        assert manifest["latency"]["measured_in_runtime"]["p50"] > 0 and "bilinear" in manifest["input"][
            "preprocessing"]
        read_back[fmt] = _run_file(fmt, out, x)
    assert all(v.shape == (1, 10) for v in read_back.values())
    assert all(np.abs(v - read_back["onnx"]).max() < 1e-4 for v in read_back.values())
    assert (tmp_path / "winner.bin").stat().st_size > 1000  # the IR's weights beside its xml
    bad = cli("export", str(tmp_path), "--deadline", "123456", "--out", str(tmp_path / "x.onnx"))
    assert bad.returncode == 2 and "explored no 123456 ms deadline" in bad.stderr


def test_exhaustive_trains_every_candidate(cli, tmp_path, latencies):
    _, probe = latencies
    result = explore(cli, tmp_path, "--deadline", "1000", "--strategy", "exhaustive", "--json", "--no-report")
    data = json.loads(result.stdout)
    assert data["trained"] == len(data["candidates"]) == len(probe["candidates"])
    # it trains what netcut trains and more: its best validation score is netcut's or better (the choice itself may
    # be another network within the validation noise, one with a lower validation loss)

    def best(run: dict) -> float:
        return max(row["val_score"] for row in run["candidates"] if row["trained"])

    widest_band = 0.5 / math.sqrt(data["dataset"]["sizes"]["val"])  # one standard error at an accuracy of 0.5
    assert best(data) >= best(probe) and data["chosen"]["val_score"] >= best(data) - widest_band


def test_infeasible_deadline_exits_3_with_the_fastest_latency(cli, tmp_path):
    result = explore(cli, tmp_path, "--deadline", "0.0001", "--json", "--no-report")
    assert result.returncode == 3
    data = json.loads(result.stdout)
    assert data["chosen"] is None and data["fastest_ms"] > 0.0001
    assert "no candidate meets" in result.stderr and "fastest" in result.stderr


def test_latency_table_from_the_target_is_used_and_a_foreign_one_refused(cli, tmp_path):
    table = tmp_path / "lite0.json"
    profiled = cli("profile", "efficientnet_lite0", "--input-size", "32", "--threads", "1", "--repeats", "5",
                   "--out", str(table), "--quiet")
    assert profiled.returncode == 0, profiled.stderr
    result = explore(cli, tmp_path / "run", "--deadline", "1000", "--latency-table", str(table), "--json",
                     "--no-report", models="efficientnet_lite0")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["chosen"]["latency_source"] == f"table:{table}"
    foreign = explore(cli, tmp_path / "run2", "--deadline", "1000", "--latency-table", str(table), "--no-report",
                      "--input-size", "48", models="efficientnet_lite0")
    assert foreign.returncode == 2 and "was made for efficientnet_lite0 at 32px" in foreign.stderr


def test_soft_labels_explore_with_angular_similarity(cli, tmp_path, soft_labels):
    csv = soft_labels
    result = cli("explore", "--models", "efficientnet_lite0", "--data", str(csv), "--deadline", "1000",
                 "--input-size", "32", "--repeats", "3", "--threads", "1", "--run-dir", str(tmp_path), "--json",
                 "--no-report", "--epochs", "5")
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)["chosen"]
    assert chosen["metric"] == "angular_similarity"
    assert chosen["score"] == chosen["metrics"]["angular_similarity"] > uniform_similarity(soft_labels)
    assert "top1_agreement" in chosen["metrics"]


def test_fine_tuning_the_last_block_of_the_top_proposals(cli, tmp_path):
    result = explore(cli, tmp_path, "--deadline", "1000", "--fine-tune-blocks", "1", "--fine-tune-top", "2",
                     "--fine-tune-epochs", "2", "--json", "--no-report", models="efficientnet_lite0")
    assert result.returncode == 0, result.stderr
    import sqlite3

    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    tuned = db.execute("SELECT cut FROM training_records WHERE finetune_blocks=1").fetchall()
    assert 2 <= len(tuned) <= 3 and ("bn2",) in tuned  # the top 2, and the full network as the baseline
    data = json.loads(result.stdout)
    assert not math.isnan(data["chosen"]["score"]) and data["best_off_the_shelf_fine_tuned"]["cut"] == "bn2"


def test_python_api_with_a_user_module_and_dataset(tmp_path):
    from netcut.data.datasets import SplitConfig, from_torch_dataset
    from netcut.search.explore import explore as api_explore
    from tiny_models import Chain, Stripes

    data = from_torch_dataset(Stripes(), ["rows", "columns"], SplitConfig(val_fraction=0.25, test_fraction=0.25))
    result = api_explore([Chain()], data, [1000.0], input_size=32, run_dir=str(tmp_path), repeats=3, threads=1)
    chosen = result.chosen()
    assert chosen.model == "module0" and chosen.accuracy > 0.9
    # the winner's latency is the one its verification measured and stored
    assert verified_latencies(tmp_path)[(chosen.model, chosen.cut, "local")] == chosen.latency_ms


def test_explore_on_onnxruntime_verifies_with_onnxruntime(cli, tmp_path):
    result = explore(cli, tmp_path, "--deadline", "1000", "--backend", "onnxruntime", "--json", "--no-report",
                     models="efficientnet_lite0")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    chosen = data["chosen"]
    assert data["environment"]["backend"] == "onnxruntime" and chosen["backend"] == "onnxruntime"
    assert verified_latencies(tmp_path)[(chosen["model"], chosen["cut"], "local")] == chosen["latency_ms"]


def _run_file(fmt: str, path, x: np.ndarray) -> np.ndarray:
    """Read an exported file back with its own runtime, as a user would."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path))
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    if fmt == "openvino":
        import openvino

        core = openvino.Core()
        compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.asarray(compiled.create_infer_request().infer({0: x})[compiled.outputs[0]])
    import torch

    return torch.jit.load(str(path))(torch.from_numpy(x)).detach().numpy()

"""Fine-tuning as a budgeted stage, end to end on a few hundred real images: the budget is kept, a kill
mid-fine-tuning loses at most an epoch, the baseline gets the same protocol, no fine-tuned network ends below its
probe, distillation from the full network, soft labels fine-tune too."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import uniform_similarity

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

EXE = str(Path(sys.executable).with_name("netcut"))
BASE = ["explore", "--models", "efficientnet_lite0", "--data", "digits", "--input-size", "32", "--limit-train",
        "300", "--limit-test", "150", "--repeats", "3", "--warmup", "1", "--threads", "1", "--epochs", "15",
        "--deadline", "1000", "--json", "--no-report", "--fine-tune-epochs", "4", "--fine-tune-top", "2"]


def records(run_dir: Path) -> list[dict]:
    db = sqlite3.connect(run_dir / "netcut.sqlite")
    rows = db.execute("SELECT cut, finetune_blocks, metrics, val_score, seconds FROM training_records").fetchall()
    db.close()
    return [{"cut": c, "blocks": b, "metrics": json.loads(m), "val": v, "seconds": t} for c, b, m, v, t in rows]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """An exploration that fine-tunes with room for the whole schedule."""
    from helpers import run_cli

    run_dir = tmp_path_factory.mktemp("tuned")
    # 12 epochs of 5 steps: the first rung lasts 10 (50 steps), the survivor goes on to 12
    argv = [*BASE[:BASE.index("--fine-tune-epochs") + 1], "12", *BASE[BASE.index("--fine-tune-epochs") + 2:]]
    result = run_cli(*argv, "--budget", "10m", "--distill", "0.5", "--run-dir", str(run_dir), timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout), result.stderr


def test_successive_halving_and_a_fair_baseline(tuned):
    run_dir, data, _ = tuned
    tuned_records = [r for r in records(run_dir) if r["blocks"] == -1]
    epochs = sorted(r["metrics"]["epochs"] for r in tuned_records)
    # 2 candidates start (the first rung: 10 epochs), the better one continues to 12; the baseline (the full
    # network) follows the survivor to 12 epochs with the same protocol
    assert epochs[-1] == 12 and 10 in epochs and len(tuned_records) >= 3
    base = data["best_off_the_shelf_fine_tuned"]
    assert base is not None and base["fine_tune_epochs"] == 12 and base["fine_tune_blocks"] == -1
    assert {r["metrics"]["fine_tune"] for r in tuned_records} == {"all"}
    assert data["gain_fine_tuned_pct"] is not None and data["gain_probe_pct"] is not None
    for r in tuned_records:
        assert len(r["metrics"]["val"]["history"]) == r["metrics"]["epochs"]
    assert data["stage_seconds"]["fine_tuning"] > 0


def test_a_budget_mostly_unused_is_reported(tuned):
    *_, stderr = tuned
    assert "of its 600 s budget" in stderr and "12-epoch schedule" in stderr


def test_the_choice_is_the_best_validated_within_the_validation_noise(tuned):
    """Scores within one standard error of the best (75 validation images: about 3) are a tie, won by the lower
    validation loss."""
    run_dir, data, _ = tuned
    every = records(run_dir)
    best = max(every, key=lambda r: r["val"])
    count = best["metrics"]["val"]["count"]
    noise = max(math.sqrt(best["val"] * (1 - best["val"]) / count), 1 / count)
    band = [r for r in every if r["val"] >= best["val"] - noise - 1e-9]
    chosen = data["chosen"]
    assert chosen["val_score"] >= best["val"] - noise - 1e-9
    assert chosen["val_loss"] == pytest.approx(min(r["metrics"]["val"]["loss"] for r in band))


def test_on_a_few_hundred_images_no_fine_tuned_network_ends_below_its_probe(tuned):
    run_dir, _, _ = tuned
    every = records(run_dir)
    probes = {r["cut"]: r["val"] for r in every if r["blocks"] == 0}
    tuned_records = [r for r in every if r["blocks"] == -1]
    assert tuned_records and all(r["val"] >= probes[r["cut"]] - 1e-9 for r in tuned_records)


def test_the_students_learn_from_the_fine_tuned_full_network(tuned):
    """--distill: the full network is fine-tuned once on the labels (the teacher); every other fine-tuned network
    learns from its soft targets too."""
    run_dir, _, _ = tuned
    tuned_records = [r for r in records(run_dir) if r["blocks"] == -1]
    teachers = [r for r in tuned_records if not r["metrics"]["distilled"]]
    assert len(teachers) == 1 and teachers[0]["cut"] == "bn2"
    assert len(tuned_records) > 1 and all(r["metrics"]["distilled"] for r in tuned_records if r not in teachers)
    db = sqlite3.connect(run_dir / "netcut.sqlite")
    assert db.execute("SELECT count(*) FROM artifacts WHERE key LIKE '%#teacher-logits'").fetchone()[0] == 1
    db.close()


def test_a_tiny_budget_stops_on_time_with_the_best_so_far(tmp_path, cli):
    result = cli(*BASE, "--budget", "2s", "--run-dir", str(tmp_path), timeout=900)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tuned = [r for r in records(tmp_path) if r["blocks"] == -1]
    per_epoch = max((r["seconds"] / max(1, r["metrics"]["epochs"]) for r in tuned), default=0.0)
    # an epoch starts only when its predicted time fits; the stage's very first epoch has no prediction yet, and
    # the candidates trained are tested at the end
    assert data["stage_seconds"]["fine_tuning"] <= 2 + 2 * per_epoch + 5
    assert all(r["metrics"]["epochs"] < 4 for r in tuned)  # 2 s cannot hold the whole schedule
    assert data["chosen"] is not None  # the best so far: a probe, or a partly fine-tuned network
    assert "stopped at the budget" in result.stderr


def test_a_kill_mid_fine_tuning_loses_at_most_one_epoch(tmp_path):
    argv = [EXE, *BASE, "--budget", "10m", "--run-dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            db = sqlite3.connect(f"file:{tmp_path / 'netcut.sqlite'}?mode=ro", uri=True, timeout=1)
            count = db.execute("SELECT COUNT(*) FROM artifacts WHERE kind='checkpoint'").fetchone()[0]
            db.close()
        except sqlite3.Error:
            count = 0
        if count >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before any checkpoint was written"
    from netcut.store import ResultStore

    with ResultStore(tmp_path) as store:
        keys = [r[0] for r in store.db.execute("SELECT key FROM artifacts WHERE kind='checkpoint'")]
        done_before = {k: int(store.get_artifact(k)["epoch"]) for k in keys}
    assert sum(done_before.values()) >= 2
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    with ResultStore(tmp_path) as store:
        for key, epochs in done_before.items():
            after = int(store.get_artifact(key)["epoch"])
            assert after >= epochs  # continued from the checkpoint, not from scratch
    assert json.loads(result.stdout)["chosen"]["fine_tune_blocks"] in (-1, 0)


def test_soft_labels_fine_tune_end_to_end(tmp_path, cli, soft_labels):
    csv = soft_labels
    result = cli("explore", "--models", "efficientnet_lite0", "--data", str(csv), "--deadline", "1000",
                 "--input-size", "32", "--repeats", "3", "--threads", "1", "--run-dir", str(tmp_path), "--json",
                 "--no-report", "--epochs", "5", "--budget", "2m", "--fine-tune-epochs", "2", "--fine-tune-top", "1")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tuned = [r for r in records(tmp_path) if r["blocks"] == -1]
    assert tuned and all("angular_similarity" in r["metrics"]["test"] for r in tuned)
    chosen = data["chosen"]
    assert chosen["metric"] == "angular_similarity"
    assert chosen["score"] == chosen["metrics"]["angular_similarity"] > uniform_similarity(soft_labels)


def test_cuda_without_a_gpu_is_a_clear_error(cli, tmp_path):
    # hide any GPU this machine has: the refusal is what a machine without one shows
    result = cli(*BASE, "--train-device", "cuda", "--run-dir", str(tmp_path), env={"CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 2 and "no CUDA GPU is visible" in result.stderr and "Traceback" not in result.stderr

"""A killed run loses nothing, results are reproducible, runs do not collide, and output stays machine-readable."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import run_cli

pytestmark = [pytest.mark.slow, pytest.mark.runtime]

EXE = str(Path(sys.executable).with_name("netcut"))
ARGS = ["explore", "--models", "efficientnet_lite0,torchvision:mobilenet_v3_small", "--data", "digits",
        "--deadline", "1000", "--input-size", "32", "--limit-train", "300", "--limit-test", "150", "--repeats", "3",
        "--warmup", "1", "--threads", "1", "--epochs", "8", "--strategy", "exhaustive", "--no-report", "--json"]


def count(run_dir: Path, sql: str) -> int:
    """A read from the live store (WAL lets readers in while the run writes)."""
    try:
        db = sqlite3.connect(f"file:{run_dir / 'netcut.sqlite'}?mode=ro", uri=True, timeout=1)
        value = db.execute(sql).fetchone()[0]
        db.close()
        return int(value)
    except sqlite3.Error:
        return 0


def kill_when(run_dir: Path, condition, timeout: float = 240) -> None:
    """Start the run and SIGKILL it as soon as `condition(run_dir)` holds."""
    proc = subprocess.Popen([EXE, *ARGS, "--run-dir", str(run_dir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if condition(run_dir):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before the kill point was reached"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run to compare against."""
    run_dir = tmp_path_factory.mktemp("reference")
    result = run_cli(*ARGS, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def scores(result: dict) -> dict:
    return {(c["model"], c["cut"]): c.get("score") for c in result["candidates"]}


KILL_POINTS = {
    "during latency estimation": lambda d: count(d, "SELECT COUNT(*) FROM latencies") > 0
    and count(d, "SELECT COUNT(DISTINCT backbone) FROM latencies") < 2,
    "during feature caching": lambda d: any((d / "cache").rglob("train.npz")) if (d / "cache").exists() else False,
    "during head training": lambda d: count(d, "SELECT COUNT(*) FROM training_records") >= 4,
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_sigkill_then_rerun_gives_the_same_result_without_retraining(point, tmp_path, reference):
    kill_when(tmp_path, KILL_POINTS[point])
    stored = count(tmp_path, "SELECT COUNT(*) FROM training_records")
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert not list(tmp_path.rglob("*.tmp")), "a half-written file was left behind"
    result = run_cli(*ARGS, "--run-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["newly_trained"] == data["trained"] - stored  # finished candidates were not retrained
    # the same network, trained alike; what was measured again (its latency, its memory) may differ a little
    measured = {"latency_ms", "latency_p90_ms", "latency_p99_ms", "estimated_ms", "estimated_p90_ms",
                "estimated_p99_ms", "ram_mb", "memory"}
    assert {k: v for k, v in data["chosen"].items() if k not in measured} == \
        {k: v for k, v in reference["chosen"].items() if k not in measured}
    assert data["chosen"]["ram_source"] == "measured" and data["chosen"]["memory"]["peak_bytes"] > 0
    assert scores(data) == scores(reference)


def test_same_seed_same_accuracies_and_choice_and_config_is_recorded(tmp_path, reference):
    result = run_cli(*ARGS, "--run-dir", str(tmp_path))
    data = json.loads(result.stdout)
    assert scores(data) == scores(reference)
    assert (data["chosen"]["model"], data["chosen"]["cut"], data["chosen"]["score"]) == \
        (reference["chosen"]["model"], reference["chosen"]["cut"], reference["chosen"]["score"])
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    config = json.loads(db.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()[0])
    assert config["seed"] == 0 and config["models"] == ["efficientnet_lite0", "torchvision:mobilenet_v3_small"]
    assert config["limit_train"] == 300 and config["strategy"] == "exhaustive"
    other_seed = run_cli(*ARGS, "--run-dir", str(tmp_path / "seed1"), "--seed", "1")
    assert scores(json.loads(other_seed.stdout)) != scores(reference)


def test_a_second_exploration_of_the_same_run_directory_is_refused(tmp_path):
    proc = subprocess.Popen([EXE, *ARGS, "--run-dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.time() + 60
        while time.time() < end and not (tmp_path / "netcut.sqlite").exists():
            time.sleep(0.05)
        second = run_cli(*ARGS, "--run-dir", str(tmp_path))
        assert second.returncode == 2
        assert f"another netcut process (pid {proc.pid})" in second.stderr and "Traceback" not in second.stderr
    finally:
        proc.wait(timeout=240)
    assert proc.returncode == 0
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_quiet_prints_no_progress(tmp_path):
    quiet = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "2", "--threads", "1",
                    "--quiet")
    assert quiet.returncode == 0 and "ETA" not in quiet.stderr


def test_progress_in_a_log_is_plain_lines_on_stderr(tmp_path):
    result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "2", "--threads", "1")
    assert result.returncode == 0
    assert re.search(r"converting the profile \(onnxruntime, fp32\): \d+ steps\n", result.stderr)
    assert "converting the profile (onnxruntime, fp32): done in" in result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr and "…" not in result.stderr
    assert "converting" not in result.stdout


def test_progress_on_a_terminal_is_a_bar_with_an_eta(tmp_path):
    import os
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([EXE, "profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "2",
                             "--threads", "1"], stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        chunks.append(chunk)
    out, _ = proc.communicate(timeout=120)
    os.close(leader)
    terminal = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0 and "ETA" in terminal and b"ETA" not in out


@pytest.mark.parametrize("command", ["models", "cuts", "profile", "calibrate", "explore", "report", "export",
                                     "demo"])
def test_every_help_has_examples(command):
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "example" in result.stdout


def test_top_level_help_lists_examples_and_exit_codes():
    result = run_cli("--help")
    assert "examples:" in result.stdout and "exit codes" in result.stdout

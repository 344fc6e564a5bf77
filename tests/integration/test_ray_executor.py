"""The Ray executor on a real local cluster: a head and a second worker node started with `ray start` on 127.0.0.1,
token authentication on (a token of the test's own, not the user's). An exploration through it gives the local
executor's choices and accuracies; a Ray worker killed during feature extraction is retried and the run completes
with the same result, nothing written twice; a cluster that is not there is a clear error. Latency sessions on a
device its node hosts (`--device ray:NAME`) run there, one run at a time."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netcut.search.ray_local import LocalRayCluster, free_port, processes_mentioning

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.runtime]

pytest.importorskip("ray", reason="netcut[ray] is installed by `make test`")

RAY = str(Path(sys.executable).with_name("ray"))
EXE = str(Path(sys.executable).with_name("netcut"))
# fine-tuning included (two epochs of the two best probes and the baseline): every stage that runs jobs is compared
BASE = ["explore", "--models", "efficientnet_lite0,efficientnet_lite1", "--data", "digits", "--input-size", "32",
        "--limit-train", "300", "--limit-test", "150", "--repeats", "3", "--warmup", "1", "--threads", "1",
        "--epochs", "15", "--deadline", "1000", "--json", "--no-report", "--fine-tune-epochs", "2",
        "--fine-tune-top", "2", "--budget", "10m", "--train-threads", "1"]  # the nodes have one CPU each


@pytest.fixture(scope="module")
def cluster():
    """A two-node Ray cluster on loopback, the second node hosting device "bench": (address, environment to reach
    it)."""
    with LocalRayCluster(nodes=2, devices=("bench",)) as c:
        yield c.address, c.env


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local")
    result = subprocess.run([EXE, *BASE, "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return run_dir, json.loads(result.stdout)


def stored(run_dir: Path) -> list[tuple]:
    """Every trained record of a run: what, and how well (sorted)."""
    db = sqlite3.connect(run_dir / "netcut.sqlite")
    rows = db.execute("SELECT key, backbone, cut, finetune_blocks, val_score, test_score FROM training_records"
                      ).fetchall()
    db.close()
    return sorted(rows)


def choices(result: dict) -> dict:
    """What was chosen and the baselines, with their accuracies."""
    fields = ("model", "cut", "accuracy", "val_score", "fine_tune_epochs")
    return {k: {f: result[k][f] for f in fields} if result[k] else None
            for k in ("chosen", "best_off_the_shelf", "best_off_the_shelf_fine_tuned")}


def test_an_exploration_on_the_cluster_equals_the_local_one(cluster, local_run, tmp_path):
    address, env = cluster
    local_dir, local = local_run
    result = subprocess.run([EXE, *BASE, "--run-dir", str(tmp_path), "--executor", "ray", "--ray-address", address],
                            capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr
    on_ray = json.loads(result.stdout)
    assert on_ray["environment"]["executor"]["nodes"] == 2
    assert choices(on_ray) == choices(local)
    records = stored(tmp_path)
    assert records == stored(local_dir)  # every probe and fine-tuned record, bit for bit
    assert any(r[3] != 0 for r in records)  # fine-tuned ones among them


def test_a_worker_killed_during_feature_extraction_is_retried(cluster, local_run, tmp_path):
    address, env = cluster
    local_dir, local = local_run
    run = subprocess.Popen([EXE, *BASE, "--run-dir", str(tmp_path), "--executor", "ray", "--ray-address", address],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        # a Ray worker running one of netcut's jobs is titled after the task; the first jobs are feature shards
        busy = processes_mentioning("ray::_call")
        if busy:
            os.kill(busy[0], 9)
            killed = busy[0]
        time.sleep(0.02)
    out, err = run.communicate(timeout=900)
    assert killed is not None, "no task was seen running"
    assert run.returncode == 0, err
    assert "while executing a task" in err  # Ray saw the task's worker die (and ran the task again)
    assert choices(json.loads(out)) == choices(local)
    records = stored(tmp_path)
    assert records == stored(local_dir)
    assert len({r[0] for r in records}) == len(records)  # nothing written twice


def test_more_threads_per_job_than_any_node_has_is_a_clear_error(cluster, tmp_path):
    address, env = cluster
    assert BASE[-2:] == ["--train-threads", "1"]
    argv = BASE[:-2] + ["--train-threads", "2"]
    result = subprocess.run([EXE, *argv, "--run-dir", str(tmp_path), "--executor", "ray", "--ray-address", address],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 2, result.stderr
    assert "largest node has 1 CPUs" in result.stderr and "--train-threads 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_cluster_at_the_address_is_a_clear_error(tmp_path):
    result = subprocess.run([EXE, *BASE, "--run-dir", str(tmp_path), "--executor", "ray", "--ray-address",
                             f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no Ray cluster answers" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "netcut.sqlite").exists()


def test_a_ray_address_without_the_ray_executor_is_refused(tmp_path):
    result = subprocess.run([EXE, *BASE, "--run-dir", str(tmp_path), "--ray-address", "127.0.0.1:6379"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--ray-address needs --executor ray" in result.stderr
    profile = subprocess.run([EXE, "profile", "efficientnet_lite0", "--ray-address", "127.0.0.1:6379"],
                             capture_output=True, text=True, timeout=120)
    assert profile.returncode == 2 and "--ray-address needs --executor ray" in profile.stderr


# one backbone, no fine-tuning: the latency stage and verification are what these runs are about
DEVICE_RUN = BASE[:2] + ["efficientnet_lite0"] + BASE[3:BASE.index("--fine-tune-epochs")] + ["--train-threads", "1"]


def test_an_exploration_times_on_the_clusters_device(cluster, tmp_path):
    address, env = cluster
    result = subprocess.run([EXE, *DEVICE_RUN, "--run-dir", str(tmp_path), "--executor", "ray", "--ray-address",
                             address, "--device", "ray:bench"], capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["environment"]["device"] == "ray:bench" and out["environment"]["node_ip"]
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    rows = db.execute("SELECT device, estimator, COUNT(*) FROM latencies GROUP BY 1, 2").fetchall()
    db.close()
    cuts = out["candidates_total"]
    # every estimate and the winner's verification were taken on the device, none on this machine
    assert {d for d, _, _ in rows} == {"ray:bench"}
    counts = {e: n for _, e, n in rows}
    assert counts["empirical"] == cuts and counts["verified"] >= 1


def test_profile_on_the_clusters_device_and_an_unknown_device(cluster, tmp_path):
    address, env = cluster
    profile = ["profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "3", "--warmup", "1", "--threads",
               "1", "--executor", "ray", "--ray-address", address]
    made = subprocess.run([EXE, *profile, "--device", "ray:bench", "--out", str(tmp_path / "t.json"), "--json"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert made.returncode == 0, made.stderr
    table = json.loads((tmp_path / "t.json").read_text())
    assert table["environment"]["device"] == "ray:bench" and table["environment"]["timing"]["sessions"] >= 1
    assert all(c["estimated_ms"] > 0 for c in table["cuts"])
    unknown = subprocess.run([EXE, *profile, "--device", "ray:nosuch"], capture_output=True, text=True, timeout=300,
                             env=env)
    assert unknown.returncode == 2 and "Traceback" not in unknown.stderr
    assert "no node of the Ray cluster offers device 'nosuch' (offered: bench)" in unknown.stderr


BUSY_DEVICE = """
import sys
from netcut.errors import NetcutError
from netcut.latency.ray_device import connect
from netcut.ray_cluster import RayCluster


cluster = RayCluster(sys.argv[1])
first = connect("ray:bench", cluster)
assert first.worker("onnxruntime", 1, "onnxruntime").versions
try:
    connect("ray:bench", cluster, wait_s=2)
    print("second run got the device")
except NetcutError as e:
    print("refused:", e.message)
first.close()  # the device is free again
connect("ray:bench", cluster, wait_s=60).close()
print("free again")
"""


def test_a_device_times_for_one_run_at_a_time(cluster):
    address, env = cluster  # a driver of its own: Ray reads the cluster's token when it is imported
    result = subprocess.run([sys.executable, "-c", BUSY_DEVICE, address], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 0, result.stderr
    assert "refused: device ray:bench stayed busy" in result.stdout and "free again" in result.stdout


def test_a_ray_device_without_a_cluster_is_refused(tmp_path):
    result = subprocess.run([EXE, *DEVICE_RUN, "--run-dir", str(tmp_path), "--device", "ray:bench"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--device ray:bench is a device of a Ray cluster, and this command has joined none" in result.stderr

"""The SQLite results store: round trips, versions, integrity after SIGKILL, and the run lock."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from netcut.errors import NetcutError
from netcut.store import ResultStore, candidate_key, run_lock


def record(cut: str = "blocks.1", score: float = 0.5) -> dict:
    return {"backbone": "lite0", "cut": cut, "cut_index": 3, "head": "linear", "dataset": "d1", "train_config": "c1",
            "finetune_blocks": 0, "metric": "accuracy", "val_score": score, "test_score": score,
            "metrics": {"accuracy": score}, "seconds": 1.5}


def test_candidate_and_artifact_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    key = candidate_key("lite0", "blocks.1", "linear", "d1", "c1", 0)
    assert store.get_candidate(key) is None
    weights = {"w": torch.arange(6.0).view(2, 3)}
    store.put_candidate(key, record(), weights)
    again = ResultStore(tmp_path)
    got = again.get_candidate(key)
    assert got["val_score"] == 0.5 and got["metrics"] == {"accuracy": 0.5}
    assert torch.equal(again.get_artifact(key)["w"], weights["w"])
    assert again.count_candidates() == 1 and again.integrity_ok()


def test_keys_separate_what_differs():
    base = candidate_key("lite0", "blocks.1", "linear", "d1", "c1", 0)
    assert base != candidate_key("lite0", "blocks.1", "linear", "d2", "c1", 0)
    assert base != candidate_key("lite0", "blocks.1", "linear", "d1", "c1", 1)
    assert base == candidate_key("lite0", "blocks.1", "linear", "d1", "c1", 0)


def test_store_from_another_version_is_refused(tmp_path):
    ResultStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(NetcutError, match="schema 99"):
        ResultStore(tmp_path)


def test_unwritable_run_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NetcutError, match="not writable"):
        ResultStore(blocker / "run")


def test_sigkill_during_writes_leaves_a_consistent_store(tmp_path):
    script = textwrap.dedent(f"""
        from netcut.store import ResultStore, candidate_key
        import torch
        store = ResultStore({str(tmp_path)!r})
        for i in range(100000):
            rec = {{"backbone": "b", "cut": f"c{{i}}", "cut_index": i, "head": "linear", "dataset": "d",
                    "train_config": "t", "finetune_blocks": 0, "metric": "accuracy", "val_score": 0.1,
                    "test_score": 0.1, "metrics": {{}}, "seconds": 0.0}}
            store.put_candidate(candidate_key("b", f"c{{i}}", "linear", "d", "t", 0), rec, {{"w": torch.zeros(512)}})
            if i == 20:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    store = ResultStore(tmp_path)
    assert store.integrity_ok()
    n = store.count_candidates()
    assert n > 20
    artifacts = store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
    assert artifacts == n  # candidate and weights were written together or not at all


def test_second_process_is_refused_while_the_lock_is_held(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from netcut.errors import NetcutError
        from netcut.store import run_lock
        try:
            with run_lock({str(tmp_path)!r}):
                pass
        except NetcutError as e:
            print(e.message)
            sys.exit(2)
    """)
    with run_lock(tmp_path):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert result.returncode == 2 and f"pid {os.getpid()}" in result.stdout
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # released

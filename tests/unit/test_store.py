"""The SQLite results store: typed round trips, columns by name, versions, integrity after SIGKILL, the run lock."""

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
from netcut.results import LatencyRecord, TrainingRecord
from netcut.search.keys import latency_key, training_key
from netcut.store import ResultStore, run_lock
from netcut.types import CandidateId, Percentiles


def record(cut: str = "blocks.1", score: float = 0.5, key: str | None = None) -> TrainingRecord:
    return TrainingRecord(key or training_key("lite0", cut, "linear", "d1", "c1"), "lite0", cut, 3, "linear", "d1",
                          "c1", 0, "accuracy", score, score, {"val": {"accuracy": score}, "test": {"accuracy": score}},
                          1.5, "fp32", 7)


def test_record_and_artifact_round_trip(tmp_path):
    with ResultStore(tmp_path) as store:
        assert store.get_record(record().key) is None
        weights = {"w": torch.arange(6.0).view(2, 3)}
        store.put_record(record(), weights)
    with ResultStore(tmp_path) as again:
        got = again.get_record(record().key)
        assert got == record() and got.accuracy == 0.5 and got.created_run == 7
        assert torch.equal(again.get_artifact(record().key)["w"], weights["w"])
        assert again.count_records() == 1 and again.integrity_ok()


def test_columns_are_bound_by_name_not_position(tmp_path):
    """A store whose columns sit in another order still reads and writes correctly."""
    with ResultStore(tmp_path) as store:
        store.db.execute("DROP TABLE training_records")
        store.db.execute("""CREATE TABLE training_records (created_run INTEGER NOT NULL, created TEXT NOT NULL,
            seconds REAL NOT NULL, metrics TEXT NOT NULL, test_score REAL NOT NULL, val_score REAL NOT NULL,
            backend TEXT NOT NULL, metric TEXT NOT NULL, precision TEXT NOT NULL, finetune_blocks INTEGER NOT NULL,
            train_config TEXT NOT NULL, dataset TEXT NOT NULL, head TEXT NOT NULL, cut_index INTEGER NOT NULL,
            cut TEXT NOT NULL, backbone TEXT NOT NULL, key TEXT PRIMARY KEY)""")
        store.put_record(record(score=0.75))
        assert store.get_record(record().key) == record(score=0.75)


def test_latency_round_trip(tmp_path):
    candidate = CandidateId("lite0", "blocks.1", "onnxruntime")
    key = latency_key(candidate, "fp", "empirical", "dev", 1, 10)
    with ResultStore(tmp_path) as store:
        store.put_latencies([LatencyRecord(key, candidate, "fp", "empirical", Percentiles(1.0, 1.5, 2.0),
                                           {"cpu": "x"})])
        got = store.get_latency(key)
    assert got is not None and got.candidate == candidate and got.latency == Percentiles(1.0, 1.5, 2.0)
    assert got.environment == {"cpu": "x"}


def test_keys_separate_what_differs():
    base = training_key("lite0", "blocks.1", "linear", "d1", "c1", 0)
    assert base != training_key("lite0", "blocks.1", "linear", "d2", "c1", 0)
    assert base != training_key("lite0", "blocks.1", "linear", "d1", "c1", 1)
    assert base != training_key("lite0", "blocks.1", "linear", "d1", "c1", 0, precision="int8")
    assert base == training_key("lite0", "blocks.1", "linear", "d1", "c1", 0)
    a = CandidateId("lite0", "blocks.1", "onnxruntime")
    assert latency_key(a, "fp", "empirical", "dev", 1, 10) != latency_key(a, "fp", "empirical", "dev", 1, 3)
    assert latency_key(a, "fp", "empirical", "dev", 1, 10) != latency_key(
        CandidateId("lite0", "blocks.1", "torch"), "fp", "empirical", "dev", 1, 10)


def test_the_store_closes_when_its_block_fails(tmp_path):
    with pytest.raises(RuntimeError), ResultStore(tmp_path) as store:
        raise RuntimeError("boom")
    with pytest.raises(sqlite3.ProgrammingError):
        store.db.execute("SELECT 1")


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
        import torch
        from netcut.results import TrainingRecord
        from netcut.store import ResultStore
        store = ResultStore({str(tmp_path)!r})
        for i in range(100000):
            rec = TrainingRecord(f"k{{i}}", "b", f"c{{i}}", i, "linear", "d", "t", 0, "accuracy", 0.1, 0.1, {{}},
                                 0.0)
            store.put_record(rec, {{"w": torch.zeros(512)}})
            if i == 20:
                print("ready", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ResultStore(tmp_path) as store:
        assert store.integrity_ok()
        n = store.count_records()
        assert n > 20
        artifacts = store.db.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0]
        assert artifacts == n  # record and weights were written together or not at all


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

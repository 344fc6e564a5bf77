"""The run directory's SQLite store: every trained candidate and every latency, atomic and resumable."""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from netcut._version import __version__
from netcut.errors import NetcutError

SCHEMA_VERSION = 1
STORE_NAME = "netcut.sqlite"
LOCK_NAME = ".netcut.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS candidates (
    key TEXT PRIMARY KEY, backbone TEXT NOT NULL, cut TEXT NOT NULL, cut_index INTEGER NOT NULL,
    head TEXT NOT NULL, dataset TEXT NOT NULL, train_config TEXT NOT NULL, finetune_blocks INTEGER NOT NULL,
    metric TEXT NOT NULL, val_score REAL NOT NULL, test_score REAL NOT NULL, metrics TEXT NOT NULL,
    seconds REAL NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (key TEXT PRIMARY KEY, kind TEXT NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS latencies (
    key TEXT PRIMARY KEY, backbone TEXT NOT NULL, fingerprint TEXT NOT NULL, cut TEXT NOT NULL,
    backend TEXT NOT NULL, estimator TEXT NOT NULL, p50 REAL NOT NULL, p90 REAL NOT NULL, p99 REAL NOT NULL,
    measured_p50 REAL, measured_p90 REAL, measured_p99 REAL, environment TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
    config TEXT NOT NULL, result TEXT);
"""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def candidate_key(backbone_id: str, cut: str, head: str, dataset: str, train_config: str, finetune_blocks: int
                  ) -> str:
    """The identity of a trained candidate: same key, same result, no retraining."""
    text = json.dumps([backbone_id, cut, head, dataset, train_config, finetune_blocks])
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class ResultStore:
    """SQLite in WAL mode; each write is one transaction, so a crash loses at most the candidate in progress."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".netcut-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise NetcutError(f"run directory {str(self.run_dir)!r} is not writable: {exc.strerror or exc}",
                              "pass --run-dir with a writable location") from exc
        self.path = self.run_dir / STORE_NAME
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise NetcutError(f"the store {str(self.path)!r} is unreadable: {exc}",
                              "move the run directory away and start a fresh one") from exc

    def _migrate(self) -> None:
        row = None
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and int(row[0]) != SCHEMA_VERSION:
            written_by = self.db.execute("SELECT value FROM meta WHERE key='netcut'").fetchone()
            raise NetcutError(
                f"run directory {str(self.run_dir)!r} was written by netcut {written_by[0] if written_by else '?'} "
                f"(store schema {row[0]}); this netcut {__version__} uses schema {SCHEMA_VERSION}",
                "use a new --run-dir, or the netcut version that wrote it")
        if row is None and tables - {"meta"}:
            raise NetcutError(f"{str(self.path)!r} is not a netcut store", "use a new --run-dir")
        with self.transaction():
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self.db.execute(statement)
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('netcut', ?)", (__version__,))
            self.db.execute("INSERT OR IGNORE INTO meta VALUES ('created', ?)", (_now(),))

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise NetcutError(f"the store {str(self.path)!r} is busy or unwritable: {exc}",
                              "wait for the other netcut process, or free disk space") from exc
        try:
            yield self.db
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:  # disk full, I/O error, file size limit: nothing half-written stays
            self._rollback()
            raise NetcutError(f"could not save to {str(self.path)!r}: {exc}", "free some disk space and rerun; "
                              "finished work is kept") from exc
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        try:
            self.db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # the transaction is already gone

    # candidates ----------------------------------------------------------------------------------------------
    def get_candidate(self, key: str) -> dict | None:
        """A stored candidate's row, or None."""
        cur = self.db.execute("SELECT * FROM candidates WHERE key=?", (key,))
        row = cur.fetchone()
        if row is None:
            return None
        record = dict(zip([d[0] for d in cur.description], row))
        record["metrics"] = json.loads(record["metrics"])
        return record

    def put_candidate(self, key: str, record: dict, artifact: dict[str, torch.Tensor] | None = None,
                      artifact_kind: str = "classifier") -> None:
        """Save a trained candidate (and its weights) in one transaction."""
        blob = None
        if artifact is not None:
            buffer = io.BytesIO()
            torch.save(artifact, buffer)
            blob = buffer.getvalue()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO candidates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (key, record["backbone"], record["cut"], record["cut_index"], record["head"], record["dataset"],
                 record["train_config"], record["finetune_blocks"], record["metric"], record["val_score"],
                 record["test_score"], json.dumps(record["metrics"]), record["seconds"], _now()))
            if blob is not None:
                db.execute("INSERT OR REPLACE INTO artifacts VALUES (?,?,?)", (key, artifact_kind, blob))

    def get_artifact(self, key: str) -> dict[str, torch.Tensor] | None:
        """The stored weights of a candidate."""
        row = self.db.execute("SELECT blob FROM artifacts WHERE key=?", (key,)).fetchone()
        return None if row is None else torch.load(io.BytesIO(row[0]), map_location="cpu", weights_only=True)

    def count_candidates(self) -> int:
        """How many trained candidates are stored."""
        return int(self.db.execute("SELECT COUNT(*) FROM candidates").fetchone()[0])

    # latencies -----------------------------------------------------------------------------------------------
    def get_latency(self, key: str) -> dict | None:
        """A stored latency row."""
        cur = self.db.execute("SELECT * FROM latencies WHERE key=?", (key,))
        row = cur.fetchone()
        return None if row is None else dict(zip([d[0] for d in cur.description], row))

    def put_latencies(self, rows: list[dict]) -> None:
        """Save latency rows together."""
        with self.transaction() as db:
            for r in rows:
                db.execute("INSERT OR REPLACE INTO latencies VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (r["key"], r["backbone"], r["fingerprint"], r["cut"], r["backend"], r["estimator"],
                            r["p50"], r["p90"], r["p99"], r.get("measured_p50"), r.get("measured_p90"),
                            r.get("measured_p99"), json.dumps(r.get("environment", {})), _now()))

    # runs ----------------------------------------------------------------------------------------------------
    def start_run(self, config: dict) -> int:
        """Record that a run started with this configuration."""
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (started, status, config) VALUES (?, 'running', ?)",
                             (_now(), json.dumps(config, sort_keys=True)))
            return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str, result: dict | None = None) -> None:
        """Record how a run ended, and its result."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished=?, status=?, result=? WHERE id=?",
                       (_now(), status, json.dumps(result) if result is not None else None, run_id))

    def last_result(self) -> tuple[dict, dict] | None:
        """(config, result) of the most recent finished run."""
        row = self.db.execute("SELECT config, result FROM runs WHERE status='done' ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else (json.loads(row[0]), json.loads(row[1]))

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check."""
        return self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Exclusive use of a run directory; a second netcut process is refused with a clear message."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(run_dir / LOCK_NAME, "a+")
    except OSError as exc:
        raise NetcutError(f"run directory {str(run_dir)!r} is not writable: {exc.strerror or exc}",
                          "pass --run-dir with a writable location") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise NetcutError(f"another netcut process (pid {holder}) is using run directory {str(run_dir)!r}",
                          "wait for it to finish, or pass a different --run-dir") from None
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()

"""The run directory's SQLite store: every trained candidate and every latency, atomic and resumable."""

from __future__ import annotations

import fcntl
import io
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from netcut._version import __version__
from netcut.codec import encode
from netcut.errors import NetcutError
from netcut.paths import lock_path, store_path
from netcut.results import ExploreResult, LatencyRecord, TrainingRecord
from netcut.types import CandidateId, Percentiles
from netcut_agent.memory import MemoryRecord

SCHEMA_VERSION = 5  # stores of another schema are refused with a clear message (no silent misreading)
# what turns a store of an older schema into this one (5: latencies carry peak memory)
_MIGRATIONS = {4: ("ALTER TABLE latencies ADD COLUMN ram_bytes INTEGER",
                   "ALTER TABLE latencies ADD COLUMN memory TEXT")}

# Columns are bound by name everywhere below (INSERT ... (cols) VALUES (:cols), rows read as sqlite3.Row).
_RECORD_COLUMNS = ("key", "backbone", "cut", "cut_index", "head", "dataset", "train_config", "finetune_blocks",
                   "precision", "metric", "val_score", "test_score", "metrics", "seconds", "created_run", "backend")
_LATENCY_COLUMNS = ("key", "backbone", "cut", "backend", "precision", "device", "fingerprint", "estimator", "p50",
                    "p90", "p99", "environment", "size_bytes", "ram_bytes", "memory")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS training_records (
    key TEXT PRIMARY KEY, backbone TEXT NOT NULL, cut TEXT NOT NULL, cut_index INTEGER NOT NULL,
    head TEXT NOT NULL, dataset TEXT NOT NULL, train_config TEXT NOT NULL, finetune_blocks INTEGER NOT NULL,
    precision TEXT NOT NULL, metric TEXT NOT NULL, val_score REAL NOT NULL, test_score REAL NOT NULL,
    metrics TEXT NOT NULL, seconds REAL NOT NULL, created_run INTEGER NOT NULL, backend TEXT NOT NULL,
    created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (key TEXT PRIMARY KEY, kind TEXT NOT NULL, blob BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS latencies (
    key TEXT PRIMARY KEY, backbone TEXT NOT NULL, cut TEXT NOT NULL, backend TEXT NOT NULL, precision TEXT NOT NULL,
    device TEXT NOT NULL, fingerprint TEXT NOT NULL, estimator TEXT NOT NULL, p50 REAL NOT NULL, p90 REAL NOT NULL,
    p99 REAL NOT NULL, environment TEXT NOT NULL, size_bytes INTEGER NOT NULL, created TEXT NOT NULL,
    ram_bytes INTEGER, memory TEXT);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started TEXT NOT NULL, finished TEXT, status TEXT NOT NULL,
    config TEXT NOT NULL, result TEXT);
"""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    names = ", ".join(columns + ("created",))
    values = ", ".join(f":{c}" for c in columns + ("created",))
    return f"INSERT OR REPLACE INTO {table} ({names}) VALUES ({values})"


class ResultStore:
    """SQLite in WAL mode; each write is one transaction, so a crash loses at most the candidate in progress.

    Use it as a context manager: the connection closes however the block ends.
    """

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
        self.path = store_path(self.run_dir)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise NetcutError(f"the store {str(self.path)!r} is unreadable: {exc}",
                              "move the run directory away and start a fresh one") from exc

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _migrate(self) -> None:
        row = None
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        if row is not None and int(row[0]) in _MIGRATIONS:
            with self.transaction():
                for statement in _MIGRATIONS[int(row[0])]:
                    self.db.execute(statement)
                self.db.execute("UPDATE meta SET value=? WHERE key='schema'", (str(SCHEMA_VERSION),))
            row = (str(SCHEMA_VERSION),)
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

    # training records ----------------------------------------------------------------------------------------
    def get_record(self, key: str) -> TrainingRecord | None:
        """A stored training record, or None."""
        row = self.db.execute(f"SELECT {', '.join(_RECORD_COLUMNS)} FROM training_records WHERE key=?",
                              (key,)).fetchone()
        if row is None:
            return None
        values = {c: row[c] for c in _RECORD_COLUMNS}
        values["metrics"] = json.loads(values["metrics"])
        return TrainingRecord(**values)

    def put_record(self, record: TrainingRecord, artifact: dict[str, torch.Tensor] | None = None,
                   artifact_kind: str = "classifier") -> None:
        """Save a training record (and its weights) in one transaction."""
        blob = None
        if artifact is not None:
            buffer = io.BytesIO()
            torch.save(artifact, buffer)
            blob = buffer.getvalue()
        values = {**encode(record), "metrics": json.dumps(record.metrics), "created": _now()}
        with self.transaction() as db:
            db.execute(_insert("training_records", _RECORD_COLUMNS), values)
            if blob is not None:
                db.execute("INSERT OR REPLACE INTO artifacts (key, kind, blob) VALUES (:key, :kind, :blob)",
                           {"key": record.key, "kind": artifact_kind, "blob": blob})

    def put_artifact(self, key: str, artifact: dict[str, Any], kind: str) -> None:
        """Save (or replace) an artifact alone, e.g. a fine-tuning checkpoint after every epoch."""
        buffer = io.BytesIO()
        torch.save(artifact, buffer)
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO artifacts (key, kind, blob) VALUES (:key, :kind, :blob)",
                       {"key": key, "kind": kind, "blob": buffer.getvalue()})

    def get_artifact(self, key: str) -> dict[str, Any] | None:
        """The stored weights of a training record (or another artifact: tensors, numbers, nested dicts)."""
        row = self.db.execute("SELECT blob FROM artifacts WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(row["blob"]), map_location="cpu", weights_only=True)
        return state

    def count_records(self) -> int:
        """How many training records are stored."""
        return int(self.db.execute("SELECT COUNT(*) FROM training_records").fetchone()[0])

    # latencies -----------------------------------------------------------------------------------------------
    def get_latency(self, key: str) -> LatencyRecord | None:
        """A stored latency."""
        row = self.db.execute(f"SELECT {', '.join(_LATENCY_COLUMNS)} FROM latencies WHERE key=?", (key,)).fetchone()
        return None if row is None else _latency(row)

    def latencies_of(self, estimator: str) -> list[LatencyRecord]:
        """Every stored latency of one estimator ("verified": the measurements of would-be winners)."""
        rows = self.db.execute(f"SELECT {', '.join(_LATENCY_COLUMNS)} FROM latencies WHERE estimator=? ORDER BY key",
                               (estimator,)).fetchall()
        return [_latency(row) for row in rows]

    def put_latencies(self, records: list[LatencyRecord]) -> None:
        """Save latencies together."""
        with self.transaction() as db:
            for r in records:
                c = r.candidate
                db.execute(_insert("latencies", _LATENCY_COLUMNS), {
                    "key": r.key, "backbone": c.backbone, "cut": c.cut, "backend": c.backend,
                    "precision": c.precision, "device": c.device, "fingerprint": r.fingerprint,
                    "estimator": r.estimator, **r.latency.to_json(), "environment": json.dumps(r.environment),
                    "size_bytes": r.size_bytes, "ram_bytes": r.ram_bytes,
                    "memory": json.dumps(r.memory.to_json()) if r.memory else None, "created": _now()})

    # runs ----------------------------------------------------------------------------------------------------
    def start_run(self, config: dict[str, Any]) -> int:
        """Record that a run started with this configuration; returns its id."""
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs (started, status, config) VALUES (:started, 'running', :config)",
                             {"started": _now(), "config": json.dumps(config, sort_keys=True)})
            return int(cur.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, result: ExploreResult | None = None) -> None:
        """Record how a run ended, and its result."""
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished=:finished, status=:status, result=:result WHERE id=:id",
                       {"finished": _now(), "status": status, "id": run_id,
                        "result": None if result is None else json.dumps(result.to_json())})

    def last_result(self) -> ExploreResult | None:
        """The result of the most recent finished run."""
        row = self.db.execute("SELECT result FROM runs WHERE status='done' ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else ExploreResult.from_json(json.loads(row["result"]))

    def integrity_ok(self) -> bool:
        """SQLite's own integrity check."""
        return bool(self.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")

    def close(self) -> None:
        """Close the connection."""
        self.db.close()


def _latency(row: sqlite3.Row) -> LatencyRecord:
    """A latencies row as a record."""
    return LatencyRecord(row["key"], CandidateId(row["backbone"], row["cut"], row["backend"], row["precision"],
                                                 row["device"]), row["fingerprint"], row["estimator"],
                         Percentiles(row["p50"], row["p90"], row["p99"]), json.loads(row["environment"]),
                         int(row["size_bytes"]), row["ram_bytes"],
                         MemoryRecord.from_json(json.loads(row["memory"])) if row["memory"] else None)


def load_result(run_dir: str | Path) -> ExploreResult:
    """The last finished exploration of a run directory, with clear errors when there is none."""
    run_dir = Path(run_dir)
    if not store_path(run_dir).is_file():
        raise NetcutError(f"{str(run_dir)!r} holds no netcut run", "pass the --run-dir of a finished `netcut explore`")
    with ResultStore(run_dir) as store:
        result = store.last_result()
    if result is None:
        raise NetcutError(f"{str(run_dir)!r} has no finished exploration", "run `netcut explore` to completion first")
    return result


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Exclusive use of a run directory; a second netcut process is refused with a clear message."""
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path(run_dir), "a+")
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

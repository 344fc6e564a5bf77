"""Runtime worker processes: each backend is timed in a process of its own, started once and reused for a run.

The worker is `python -m netcut_agent.worker` (the agent's timing core): it loads model files into its runtime,
times them interleaved and runs them on data. netcut converts models here and sends the files over a pipe.
"""

from __future__ import annotations

from typing import Any

from netcut.errors import NetcutError
from netcut_agent.worker import WorkerFailure, WorkerProcess


class WorkerError(NetcutError):
    """The worker could not do what was asked (a model it cannot load, a runtime that is missing)."""


class RuntimeWorker(WorkerProcess):
    """A live worker process owning one runtime at a fixed thread count; its failures are netcut errors."""

    def __init__(self, runtime: str, threads: int, label: str) -> None:
        self.label = label
        super().__init__(runtime, threads)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        try:
            return super().call(request)
        except WorkerFailure as exc:
            raise worker_error(self.label, exc) from exc


def worker_error(label: str, failure: WorkerFailure) -> WorkerError:
    """The netcut error for a worker's failure (local process or remote device)."""
    if failure.kind == "ended":
        return WorkerError(f"backend {label}: {failure.message}", "rerun with --debug; if it persists, report it")
    if failure.kind == "RuntimeMissing":
        return WorkerError(f"backend {label}: {failure.message}", "install it (`make test` installs every runtime), "
                           "or choose another --backend")
    return WorkerError(f"the {label} runtime failed: {failure.message}",
                       "choose another --backend, or report the model that fails")


class WorkerPool:
    """The workers of one run, one per runtime and thread count, started on first use; closes them all on exit."""

    def __init__(self) -> None:
        self.workers: dict[tuple[str, int], RuntimeWorker] = {}

    def get(self, runtime: str, threads: int, label: str) -> RuntimeWorker:
        """The live worker of a runtime at a thread count."""
        key = (runtime, threads)
        worker = self.workers.get(key)
        if worker is None or not worker.alive:
            worker = self.workers[key] = RuntimeWorker(runtime, threads, label)
        return worker

    def close(self) -> None:
        """Stop every worker."""
        while self.workers:
            self.workers.popitem()[1].close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

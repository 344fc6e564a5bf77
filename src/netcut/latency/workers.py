"""Runtime worker processes: each backend is timed in a process of its own, started once and reused for a run.

The worker is `python -m netcut_agent.worker` (the agent's timing core): it loads model files into its runtime,
times them interleaved and runs them on data. netcut converts models here and sends the files over a pipe.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from netcut.errors import NetcutError
from netcut_agent.bench import TimingResult
from netcut_agent.memory import MemoryRecord
from netcut_agent.timing import TimingConfig
from netcut_agent.worker import WorkerFailure, WorkerProcess


class Worker(Protocol):
    """One runtime at a fixed thread count, here (a worker process) or on a device (an agent's session)."""

    label: str
    threads: int
    versions: dict[str, str]
    machine: dict[str, Any]

    @property
    def alive(self) -> bool:
        """Whether it can still take requests."""
        ...

    def load(self, name: str, payload: bytes, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Load a model file under a name."""
        ...

    def unload(self, names: list[str] | None = None) -> None:
        """Forget loaded models."""
        ...

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model."""
        ...

    def time(self, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models and chains, interleaved."""
        ...

    def memory(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
        """A model file's peak memory, load and first-inference times, in a fresh process of the runtime."""
        ...

    def close(self) -> None:
        """Stop."""
        ...


class DeviceLink(Protocol):
    """A target device: an agent over HTTP (netcut.latency.remote) or a Ray node (netcut.latency.ray_device)."""

    @property
    def name(self) -> str:
        """How results name the device."""
        ...

    @property
    def host(self) -> str:
        """The machine it runs on: devices on one host are timed one after another."""
        ...

    def machine(self) -> dict[str, Any]:
        """Its environment (CPU, cores, OS, ...), with its name under "device"."""
        ...

    def worker(self, runtime: str, threads: int, label: str) -> Worker:
        """A runtime's worker on the device at a thread count."""
        ...

    def close(self) -> None:
        """Release what the connection holds."""
        ...


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
    """The workers of one run, one per runtime and thread count, started on first use; closes them all (and the
    device's connection) on exit. With a device, the workers are sessions on that device."""

    def __init__(self, device: DeviceLink | None = None) -> None:
        self.device = device
        self.workers: dict[tuple[str, int], Worker] = {}

    def get(self, runtime: str, threads: int, label: str) -> Worker:
        """The live worker of a runtime at a thread count."""
        key = (runtime, threads)
        worker = self.workers.get(key)
        if worker is None or not worker.alive:
            worker = (RuntimeWorker(runtime, threads, label) if self.device is None
                      else self.device.worker(runtime, threads, label))
            self.workers[key] = worker
        return worker

    def close(self) -> None:
        """Stop every worker."""
        while self.workers:
            self.workers.popitem()[1].close()
        if self.device is not None:
            self.device.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""Runtime worker processes: each backend is timed in a process of its own, started once and reused for a run.

The worker is `python -m netcut_agent.worker` (the agent's timing core): it loads model files into its runtime,
times them interleaved and runs them on data. netcut converts models here and sends the files over a pipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import numpy as np

from netcut.errors import NetcutError
from netcut_agent.bench import TimingResult
from netcut_agent.timing import TimingConfig
from netcut_agent.worker import receive, send


class WorkerError(NetcutError):
    """The worker could not do what was asked (a model it cannot load, a runtime that is missing)."""


class RuntimeWorker:
    """A live worker process owning one runtime at a fixed thread count."""

    def __init__(self, runtime: str, threads: int, label: str) -> None:
        self.runtime, self.threads, self.label = runtime, threads, label
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # the worker's own thread pools are the runtime's; keep BLAS/OpenMP from adding more
        env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "netcut_agent.worker", "--runtime", runtime, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self._stderr: list[bytes] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.lock = threading.Lock()
        hello = self.call({"op": "hello"})
        self.versions: dict[str, str] = hello["versions"]
        self.machine: dict[str, Any] = hello["machine"]
        self.pid: int = hello["pid"]

    def _drain(self) -> None:
        """Keep the worker's stderr flowing (runtimes log there) and remember its tail for errors."""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr = (self._stderr + [line])[-40:]

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                send(self.process.stdin, request)
                reply: dict[str, Any] = receive(self.process.stdout)
            except (EOFError, BrokenPipeError, OSError) as exc:
                tail = b"".join(self._stderr).decode(errors="replace").strip().splitlines()[-3:]
                raise WorkerError(f"the {self.label} worker process ended unexpectedly ({type(exc).__name__}); "
                                  f"its last words: {' | '.join(tail) or 'none'}",
                                  "rerun with --debug; if it persists, report it") from exc
        if not reply.get("ok"):
            kind, message = reply.get("kind"), reply.get("message", "")
            if kind == "RuntimeMissing":
                raise WorkerError(f"backend {self.label}: {message}", "install it (`make test` installs every "
                                  "runtime), or choose another --backend")
            raise WorkerError(f"the {self.label} runtime failed: {message}",
                              "choose another --backend, or report the model that fails")
        return reply

    def load(self, name: str, payload: bytes, shape: tuple[int, ...]) -> None:
        """Load a model file under a name, with an input of the given shape for timing."""
        self.call({"op": "load", "name": name, "payload": payload, "shape": list(shape)})

    def unload(self, names: list[str] | None = None) -> None:
        """Forget loaded models (all by default)."""
        self.call({"op": "unload", "names": names})

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on an input batch."""
        outputs: list[np.ndarray] = self.call({"op": "run", "name": name, "x": x})["outputs"]
        return outputs

    def time(self, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models and chains, interleaved, in the worker."""
        reply = self.call({"op": "time", "timed": timed, "chains": chains or {},
                           "config": {"warmup": config.warmup, "repeats": config.repeats,
                                      "min_round_s": config.min_round_s}})
        return TimingResult.from_json(reply["result"])

    def close(self) -> None:
        """Stop the worker (politely, then firmly)."""
        if self.process.poll() is None:
            try:
                self.call({"op": "close"})
            except NetcutError:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class WorkerPool:
    """The workers of one run, one per runtime and thread count, started on first use; closes them all on exit."""

    def __init__(self) -> None:
        self.workers: dict[tuple[str, int], RuntimeWorker] = {}

    def get(self, runtime: str, threads: int, label: str) -> RuntimeWorker:
        """The live worker of a runtime at a thread count."""
        key = (runtime, threads)
        worker = self.workers.get(key)
        if worker is None or worker.process.poll() is not None:
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

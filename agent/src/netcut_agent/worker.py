"""A long-lived worker process that owns one runtime: netcut starts one per runtime, so that runtimes never share
a process (or its thread pools) while one is timed.

    python -m netcut_agent.worker --runtime onnxruntime --threads 2

Requests and replies are length-prefixed pickles on stdin/stdout between netcut and the worker it started itself
(never from a network: the remote agent speaks JSON). Anything a runtime prints goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import pickle
import struct
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict
from typing import IO, Any

import numpy as np

from netcut_agent.bench import Bench, NodeProfile, TimingResult
from netcut_agent.memory import MemoryRecord
from netcut_agent.runtimes import ModelError, get_runtime
from netcut_agent.timing import TimingConfig, machine

_HEADER = struct.Struct("!Q")


def send(stream: IO[bytes], message: Any) -> None:
    """Write one framed message."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    """Read one framed message (EOFError when the other side is gone)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)


def handle(bench: Bench, request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request."""
    op = request["op"]
    if op == "load":
        shape = bench.load(request["name"], request["payload"], tuple(request.get("shape") or ()))
        return {"shape": list(shape)}
    if op == "unload":
        bench.unload(request.get("names"))
        return {}
    if op == "run":
        return {"outputs": bench.run(request["name"], request["x"])}
    if op == "time":
        config = TimingConfig(**request["config"])
        return {"result": bench.time(request["timed"], config, request.get("chains")).to_json()}
    if op == "memory":
        return {"memory": bench.memory(request["payload"], tuple(request["shape"])).to_json()}
    if op == "profile":
        profile = bench.profile(request["payload"], tuple(request["shape"]), int(request["runs"]))
        return {"profile": None if profile is None else profile.to_json()}
    if op == "hello":
        return {"versions": bench.runtime.versions(), "machine": machine(), "pid": os.getpid()}
    raise ValueError(f"unknown request {op!r}")


def serve(runtime: str, threads: int, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the other side closes the stream or says close."""
    bench = Bench(get_runtime(runtime, threads), runtime, threads)
    while True:
        try:
            request = receive(requests)
        except EOFError:
            return
        if request.get("op") == "close":
            send(replies, {"ok": True})
            return
        try:
            send(replies, {"ok": True, **handle(bench, request)})
        except ModelError as exc:
            send(replies, {"ok": False, "kind": "model", "message": str(exc)})
        except Exception as exc:  # report, keep serving: one bad request must not end the worker
            send(replies, {"ok": False, "kind": type(exc).__name__, "message": str(exc)[:2000],
                           "traceback": traceback.format_exc()[-4000:]})


class WorkerFailure(Exception):
    """A request the worker refused (kind: "model", "RuntimeMissing", ...) or a worker that ended ("ended")."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


class WorkerProcess:
    """The client side: starts a worker process owning one runtime at a fixed thread count and talks to it."""

    def __init__(self, runtime: str, threads: int) -> None:
        self.runtime, self.threads = runtime, threads
        self.process = subprocess.Popen(
            [sys.executable, "-m", "netcut_agent.worker", "--runtime", runtime, "--threads", str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=runtime_env(threads))
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

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.poll() is None

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its reply; WorkerFailure if refused or if the worker ended."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                send(self.process.stdin, request)
                reply: dict[str, Any] = receive(self.process.stdout)
            except (EOFError, BrokenPipeError, OSError) as exc:
                tail = b"".join(self._stderr).decode(errors="replace").strip().splitlines()[-3:]
                raise WorkerFailure("ended", f"the worker process ended unexpectedly ({type(exc).__name__}); its "
                                    f"last words: {' | '.join(tail) or 'none'}") from exc
        if not reply.get("ok"):
            raise WorkerFailure(str(reply.get("kind")), str(reply.get("message", "")))
        return reply

    def load(self, name: str, payload: bytes, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Load a model file under a name, with an input of the given shape (default: the model's) for timing."""
        reply = self.call({"op": "load", "name": name, "payload": payload, "shape": list(shape or ())})
        return tuple(reply["shape"])

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
        reply = self.call({"op": "time", "timed": timed, "chains": chains or {}, "config": asdict(config)})
        return TimingResult.from_json(reply["result"])

    def memory(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
        """A model file's peak memory, load and first-inference times, measured by the worker in a fresh process of
        its runtime."""
        return MemoryRecord.from_json(self.call({"op": "memory", "payload": payload, "shape": list(shape)})["memory"])

    def profile(self, payload: bytes, shape: tuple[int, ...], runs: int) -> NodeProfile | None:
        """Run a model file under the runtime's per-node profiler (None where the runtime has none)."""
        reply = self.call({"op": "profile", "payload": payload, "shape": list(shape), "runs": runs})
        return None if reply["profile"] is None else NodeProfile.from_json(reply["profile"])

    def close(self) -> None:
        """Stop the worker (politely, then firmly)."""
        if self.alive:
            try:
                self.call({"op": "close"})
            except WorkerFailure:
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def runtime_env(threads: int) -> dict[str, str]:
    """The environment of a process owning a runtime: its own thread pools only, output unbuffered."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # the worker's own thread pools are the runtime's; keep BLAS/OpenMP from adding more
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def process_start(description: str, argv: list[str] | None) -> tuple[argparse.Namespace, IO[bytes]]:
    """The --runtime and --threads of a runtime process netcut started, and its reply stream: the real stdout, while
    whatever a runtime prints goes to stderr (it must not corrupt the replies)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return args, replies


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m netcut_agent.worker`."""
    args, replies = process_start("netcut's runtime worker (started by netcut, not by hand)", argv)
    try:
        serve(args.runtime, args.threads, sys.stdin.buffer, replies)
    except Exception as exc:  # the runtime could not start: say why on the reply stream, then exit
        send(replies, {"ok": False, "kind": type(exc).__name__, "message": str(exc)[:2000]})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

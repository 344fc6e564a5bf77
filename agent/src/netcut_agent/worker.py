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
import sys
import traceback
from typing import IO, Any

from netcut_agent.bench import Bench
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
        bench.load(request["name"], request["payload"], tuple(request["shape"]))
        return {}
    if op == "unload":
        bench.unload(request.get("names"))
        return {}
    if op == "run":
        return {"outputs": bench.run(request["name"], request["x"])}
    if op == "time":
        config = TimingConfig(**request["config"])
        return {"result": bench.time(request["timed"], config, request.get("chains")).to_json()}
    if op == "hello":
        return {"versions": bench.runtime.versions(), "machine": machine(), "pid": os.getpid()}
    raise ValueError(f"unknown request {op!r}")


def serve(runtime: str, threads: int, requests: IO[bytes], replies: IO[bytes]) -> None:
    """Answer requests until the other side closes the stream or says close."""
    bench = Bench(get_runtime(runtime, threads))
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


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m netcut_agent.worker`."""
    parser = argparse.ArgumentParser(description="netcut's runtime worker (started by netcut, not by hand)")
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever a runtime prints must not corrupt the reply stream
    sys.stdout = sys.stderr
    try:
        serve(args.runtime, args.threads, sys.stdin.buffer, replies)
    except Exception as exc:  # the runtime could not start: say why on the reply stream, then exit
        send(replies, {"ok": False, "kind": type(exc).__name__, "message": str(exc)[:2000]})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`netcut-agent serve`: the device side of remote profiling, over HTTP, one measurement at a time.

Routes (JSON replies; every route but /v1/health needs `Authorization: Bearer TOKEN`):

    GET    /v1/health                                    up or not (no token)
    GET    /v1/device                                    the device's identity and environment, the runtimes
                                                         that start here (versions) and those that do not (why)
    POST   /v1/measure?format=onnx|tflite|openvino[&runtime=R][&threads=N][&repeats=R][&warmup=W][&shape=1,3,H,W]
                                                         body: one model file; p50/p90/p99/mean/std (ms), peak
                                                         memory, load and first-inference times, environment
    POST   /v1/sessions?runtime=R&threads=N              a session: one runtime process keeping models loaded
    POST   /v1/sessions/ID/models?name=NAME[&shape=...]  body: a model file, loaded under NAME
    POST   /v1/sessions/ID/time                          body: {"timed": [...], "chains": {...}, "config": {...}}
    POST   /v1/sessions/ID/run?name=NAME                 body: an .npy input; reply: an .npz of the outputs
    POST   /v1/sessions/ID/memory[?shape=...]            body: a model file; its peak memory over the idle runtime,
                                                         load and first-inference times (a fresh runtime process)
    POST   /v1/sessions/ID/unload                        body: {"names": [...] or null}
    DELETE /v1/sessions/ID

Bodies are size-limited (413), model files are checked before a runtime sees them (pickles, archives of code and
anything that is not ONNX, TFLite or OpenVINO IR: 400), and each runtime runs in a worker process of its own, so a
model that crashes its runtime costs that process, not the server (400, and the next job gets a fresh process).
A connection that sends nothing for `idle_timeout_s` is closed, and at most `max_connections` are served at once
(503 beyond): a slow or idle client cannot hold the agent.
"""

from __future__ import annotations

import hmac
import io
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

from netcut_agent import __version__
from netcut_agent.available import RuntimeStatus, probe_runtimes
from netcut_agent.runtimes import RUNTIMES
from netcut_agent.timing import TimingConfig, machine
from netcut_agent.worker import WorkerFailure, WorkerProcess

RUNTIME_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert", "openvino": "openvino"}
FORMATS_OF_RUNTIME = {"onnxruntime": ("onnx",), "litert": ("tflite",), "openvino": ("onnx", "openvino")}
MAX_SESSIONS = 8
IDLE_TIMEOUT_S = 60.0  # a connection that sends nothing for this long is closed
MAX_CONNECTIONS = 16  # served at once; beyond, 503
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class HttpError(Exception):
    """A refusal with its status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def check_model(body: bytes, fmt: str) -> None:
    """Refuse anything that is not a model file of the format named (never pickles, archives or code)."""
    if not body:
        raise HttpError(400, "empty body: send the model file as the raw request body")
    if body[:1] == b"\x80" or body[:2] == b"PK" or body[:2] == b"#!" or body.lstrip()[:1] in (b"{", b"["):
        raise HttpError(400, f"not a {fmt} model file (pickles, zip archives, scripts and JSON are refused)")
    if fmt == "tflite" and body[4:8] != b"TFL3":
        raise HttpError(400, "not a TFLite model file (no TFL3 identifier)")
    if fmt == "openvino" and body[257:262] != b"ustar":
        raise HttpError(400, "an OpenVINO IR is sent as a tar of model.xml and model.bin (netcut packs it)")
    if fmt == "onnx" and body[:1] != b"\x08":  # an ONNX ModelProto starts with its ir_version field
        raise HttpError(400, "not an ONNX model file (it does not start with an ONNX ir_version)")


def _int(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    text = query.get(name, [str(default)])[0]
    try:
        value = int(text)
    except ValueError:
        raise HttpError(400, f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise HttpError(400, f"{name} must be between {low} and {high}, got {value}")
    return value


def _shape(query: dict[str, list[str]]) -> tuple[int, ...] | None:
    text = query.get("shape", [""])[0]
    if not text:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1 or len(shape) > 8:
        raise HttpError(400, f"shape must be positive integers separated by commas, got {text!r}")
    return shape


class Agent:
    """The server's state: runtime worker processes, sessions, and the one lock every measurement takes."""

    def __init__(self, token: str, max_body: int, default_threads: int, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 runtimes: list[RuntimeStatus] | None = None) -> None:
        self.token, self.max_body, self.default_threads = token, max_body, default_threads
        self.idle_timeout_s = idle_timeout_s
        self._runtimes = runtimes  # which runtimes import and start here: probed once, when first asked
        self.job = threading.Lock()  # one job at a time: measurements never overlap
        self.workers: dict[tuple[str, int], WorkerProcess] = {}
        self.sessions: dict[str, tuple[WorkerProcess, float]] = {}

    def runtimes(self) -> list[RuntimeStatus]:
        """The runtimes as they are here (each tried in a process of its own, once)."""
        if self._runtimes is None:
            self._runtimes = probe_runtimes()
        return self._runtimes

    def refuse_unavailable(self, runtime: str) -> None:
        """A 400 naming why a runtime does not start here and what installs it."""
        for status in self.runtimes():
            if status.name == runtime and not status.available:
                raise HttpError(400, f"runtime {runtime} is not available on this device: {status.problem}; fix: "
                                f"{status.install} in the agent's environment")

    def authorized(self, header: str | None) -> bool:
        """Whether the Authorization header carries the token (compared in constant time)."""
        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())

    def worker(self, runtime: str, threads: int) -> WorkerProcess:
        """A live worker for /v1/measure (a crashed one is replaced)."""
        key = (runtime, threads)
        worker = self.workers.get(key)
        if worker is None or not worker.alive:
            worker = self.workers[key] = start_worker(runtime, threads)
        return worker

    def measure(self, body: bytes, query: dict[str, list[str]]) -> dict[str, Any]:
        """Load one model and time it."""
        fmt = query.get("format", [""])[0]
        if fmt not in RUNTIME_OF_FORMAT:
            raise HttpError(400, f"format must be one of {', '.join(RUNTIME_OF_FORMAT)}, got {fmt!r}")
        runtime = query.get("runtime", [RUNTIME_OF_FORMAT[fmt]])[0]
        if fmt not in FORMATS_OF_RUNTIME.get(runtime, ()):
            raise HttpError(400, f"runtime {runtime!r} does not load {fmt} files")
        self.refuse_unavailable(runtime)
        check_model(body, fmt)
        threads = _int(query, "threads", self.default_threads, 1, 1024)
        config = TimingConfig(_int(query, "warmup", 5, 0, 10_000), _int(query, "repeats", 30, 1, 100_000))
        shape = _shape(query)
        with self.job:
            started = time.time()
            worker = self.worker(runtime, threads)
            try:
                shape = worker.load("model", body, shape)
                stats = worker.time(["model"], config).stats["model"]
                memory = worker.memory(body, shape)
            except WorkerFailure as exc:
                raise refusal(exc) from exc
            finally:
                if worker.alive:
                    worker.unload()
            env = {**worker.machine, **worker.versions, "runtime": runtime, "threads": threads,
                   "agent": __version__}
            finished = time.time()
        return {"p50_ms": stats.p50, "p90_ms": stats.p90, "p99_ms": stats.p99, "mean_ms": stats.mean,
                "std_ms": stats.std, "min_ms": stats.min, "n": stats.n, "input_shape": list(shape),
                "format": fmt, "memory": memory.to_json(), "environment": env,
                "job": {"started_unix": started, "finished_unix": finished}}

    def open_session(self, query: dict[str, list[str]]) -> dict[str, Any]:
        """Start a runtime process that keeps models loaded between requests."""
        runtime = query.get("runtime", [""])[0]
        if runtime not in RUNTIMES:
            raise HttpError(400, f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        self.refuse_unavailable(runtime)
        threads = _int(query, "threads", self.default_threads, 1, 1024)
        with self.job:
            if len(self.sessions) >= MAX_SESSIONS:  # the least recently used one goes
                oldest = min(self.sessions, key=lambda k: self.sessions[k][1])
                self.sessions.pop(oldest)[0].close()
            worker = start_worker(runtime, threads)
            session = uuid.uuid4().hex
            self.sessions[session] = (worker, time.monotonic())
        return {"session": session, "runtime": runtime, "threads": threads, "versions": worker.versions,
                "machine": worker.machine, "agent": __version__}

    def in_session(self, session: str, action: str, body: bytes, query: dict[str, list[str]]
                   ) -> tuple[dict[str, Any] | bytes, str]:
        """One request on a session: (reply, content type)."""
        with self.job:
            if session not in self.sessions:
                raise HttpError(404, f"no session {session!r} (it was closed, evicted or its runtime crashed)")
            worker = self.sessions[session][0]
            self.sessions[session] = (worker, time.monotonic())
            try:
                return self._session_action(worker, action, body, query)
            except WorkerFailure as exc:
                if not worker.alive:
                    self.sessions.pop(session, None)
                raise refusal(exc) from exc

    def _session_action(self, worker: WorkerProcess, action: str, body: bytes, query: dict[str, list[str]]
                        ) -> tuple[dict[str, Any] | bytes, str]:
        fmt = "tflite" if worker.runtime == "litert" else ("openvino" if body[257:262] == b"ustar" else "onnx")
        if action == "models":
            name = query.get("name", [""])[0]
            if not name:
                raise HttpError(400, "name is required: /v1/sessions/ID/models?name=NAME")
            check_model(body, fmt)
            return {"shape": list(worker.load(name, body, _shape(query)))}, "application/json"
        if action == "memory":
            check_model(body, fmt)
            return {"memory": worker.memory(body, _shape(query) or ()).to_json()}, "application/json"
        if action == "run":
            try:
                x = np.load(io.BytesIO(body), allow_pickle=False)
            except (ValueError, OSError, EOFError) as exc:
                raise HttpError(400, f"the body is not an .npy array: {exc}") from exc
            outputs = worker.run(query.get("name", [""])[0], np.ascontiguousarray(x, dtype=np.float32))
            buffer = io.BytesIO()
            np.savez(buffer, *outputs)
            return buffer.getvalue(), "application/octet-stream"
        request = parse_json(body)
        if action == "time":
            timed, chains, config = request.get("timed"), request.get("chains") or {}, request.get("config") or {}
            if not isinstance(timed, list) or not all(isinstance(t, str) for t in timed) or not timed:
                raise HttpError(400, "timed must be a list of loaded model names")
            try:
                timing = TimingConfig(int(config.get("warmup", 5)), int(config.get("repeats", 30)),
                                      float(config.get("min_round_s", 0.0)), int(config.get("settle", 1))).check()
            except (TypeError, ValueError) as exc:
                raise HttpError(400, f"bad timing config: {exc}") from exc
            return worker.time(timed, timing, chains).to_json(), "application/json"
        if action == "unload":
            worker.unload(request.get("names"))
            return {}, "application/json"
        raise HttpError(404, f"no route /v1/sessions/ID/{action}")

    def close_session(self, session: str) -> None:
        """Stop a session's runtime process."""
        with self.job:
            entry = self.sessions.pop(session, None)
        if entry is None:
            raise HttpError(404, f"no session {session!r}")
        entry[0].close()

    def shutdown(self) -> None:
        """Stop every runtime process."""
        for worker in [*self.workers.values(), *(w for w, _ in self.sessions.values())]:
            worker.close()


def start_worker(runtime: str, threads: int) -> WorkerProcess:
    """A runtime's worker process, or a refusal saying the runtime is not installed here."""
    try:
        return WorkerProcess(runtime, threads)
    except WorkerFailure as exc:
        raise HttpError(400, f"runtime {runtime} cannot start here: {exc.message}") from exc


def refusal(failure: WorkerFailure) -> HttpError:
    """A worker's failure as the client sees it: the model's fault (400) unless the request was bad otherwise."""
    if failure.kind == "ended":
        return HttpError(400, "the runtime crashed on this model (its process was replaced; the agent keeps serving)")
    if failure.kind in ("model", "KeyError", "ValueError", "RuntimeMissing"):
        return HttpError(400, failure.message)
    return HttpError(400, f"the runtime failed: {failure.message}")


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object body."""
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise HttpError(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise HttpError(400, "the body must be a JSON object")
    return value


Reply = tuple[dict[str, Any] | bytes, str]
Route = Callable[[Agent, list[str], bytes, dict[str, list[str]]], Reply]
JSON = "application/json"


def _device(agent: Agent, args: list[str], body: bytes, query: dict[str, list[str]]) -> Reply:
    found = agent.runtimes()
    return {"environment": machine(), "runtimes": [r.name for r in found if r.available],
            "runtime_status": [r.to_json() for r in found], "agent": __version__}, JSON


def _close(agent: Agent, args: list[str], body: bytes, query: dict[str, list[str]]) -> Reply:
    agent.close_session(args[0])
    return {}, JSON


# (method, path with * for a variable segment) -> handler(agent, the * segments, body, query); /v1/health needs no
# token and is answered before this table is looked at
ROUTES: dict[tuple[str, tuple[str, ...]], Route] = {
    ("GET", ("v1", "device")): _device,
    ("POST", ("v1", "measure")): lambda agent, args, body, query: (agent.measure(body, query), JSON),
    ("POST", ("v1", "sessions")): lambda agent, args, body, query: (agent.open_session(query), JSON),
    ("POST", ("v1", "sessions", "*", "*")): lambda agent, args, body, query: agent.in_session(args[0], args[1], body,
                                                                                              query),
    ("DELETE", ("v1", "sessions", "*")): _close,
}


def route(method: str, parts: list[str]) -> tuple[Route, list[str]] | None:
    """The handler of a request and its variable segments, or None."""
    for (verb, pattern), handler in ROUTES.items():
        if verb == method and len(pattern) == len(parts) and all(p in ("*", q) for p, q in zip(pattern, parts)):
            return handler, [q for p, q in zip(pattern, parts) if p == "*"]
    return None


def make_handler(agent: Agent) -> type[BaseHTTPRequestHandler]:
    """The request handler bound to one agent."""

    class Handler(BaseHTTPRequestHandler):
        server_version = f"netcut-agent/{__version__}"
        protocol_version = "HTTP/1.1"
        timeout = agent.idle_timeout_s  # the socket's: a client that stops sending is dropped, its thread freed

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # one line per job is printed by the caller's wrapper instead

        def _reply(self, status: int, body: dict[str, Any] | bytes, content_type: str = "application/json"
                   ) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="netcut-agent"')
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = self.headers.get("Content-Length")
            if length is None:
                if self.command == "POST":
                    raise HttpError(411, "Content-Length is required")
                return b""
            try:
                size = int(length)
            except ValueError:
                raise HttpError(400, "Content-Length is not a number") from None
            if size > agent.max_body:
                self.close_connection = True  # the unread body must not be parsed as the next request
                raise HttpError(413, f"the body is {size} bytes; this agent accepts at most {agent.max_body}")
            return self.rfile.read(size)

        def _handle(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            parts = [p for p in url.path.split("/") if p]
            try:
                if self.command == "GET" and parts == ["v1", "health"]:
                    self._reply(200, {"status": "up"})
                    return
                if not agent.authorized(self.headers.get("Authorization")):
                    self.close_connection = True
                    raise HttpError(401, "missing or wrong token (Authorization: Bearer TOKEN)")
                found = route(self.command, parts)
                if found is None:
                    raise HttpError(404, f"no route {self.command} {url.path}")
                handler, args = found
                reply, content_type = handler(agent, args, self._body(), query)
                self._reply(200, reply, content_type)
            except HttpError as exc:
                self._reply(exc.status, {"error": exc.message})
            except Exception as exc:  # noqa: BLE001 - a bug must cost one request, never the server
                self._reply(500, {"error": f"internal error: {type(exc).__name__}: {exc}"})

        do_GET = do_POST = do_DELETE = _handle

    return Handler


class BoundedServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once: one more is answered 503 and closed at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_connections: int
                 ) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection in a thread of its own if a slot is free, else refuse it."""
        if not self.slots.acquire(blocking=False):
            busy = json.dumps({"error": "the agent is serving as many connections as it allows; retry"}).encode()
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Connection: close\r\nContent-Length: " + str(len(busy)).encode() + b"\r\n\r\n"
                                + busy)
            except OSError:
                pass  # the client is gone: nothing to tell it
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection, then free its slot."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def create_server(host: str, port: int, token: str | None = None, max_body: int = 256 * 2**20,
                  threads: int = 1, allow_remote: bool = False, idle_timeout_s: float = IDLE_TIMEOUT_S,
                  max_connections: int = MAX_CONNECTIONS) -> tuple[ThreadingHTTPServer, Agent]:
    """A server ready to serve_forever() (a token is generated unless given); non-loopback hosts need allow_remote."""
    if host not in LOOPBACK and not allow_remote:
        raise ValueError(f"binding to {host} exposes the agent beyond this machine: pass --allow-remote (and put "
                         "TLS in front of it: a reverse proxy or an SSH tunnel)")
    agent = Agent(token or secrets.token_urlsafe(24), max_body, threads, idle_timeout_s, probe_runtimes())
    return BoundedServer((host, port), make_handler(agent), max_connections), agent

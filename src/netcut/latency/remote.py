"""A target device reached through `netcut-agent serve`: a worker whose runtime runs on the device (and
`connect_device`, which also reaches devices on a Ray cluster's nodes: netcut.latency.ray_device).

The workstation converts models and sends the files; the device loads, times and runs them. A `RemoteWorker` has the
interface of a local `RuntimeWorker`, so every estimator, the verification and the export check use it unchanged.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlparse

import numpy as np

from netcut.errors import NetcutError
from netcut.latency.workers import DeviceLink, WorkerError
from netcut.ray_cluster import RayCluster
from netcut_agent.bench import TimingResult
from netcut_agent.memory import MemoryRecord
from netcut_agent.runtimes import RUNTIMES
from netcut_agent.timing import TimingConfig

TOKEN_ENV = "NETCUT_DEVICE_TOKEN"
RESUME = "what was measured is kept: rerun the same command to resume"


@dataclass(frozen=True)
class Device:
    """A device's agent: its URL and the token it expects (never stored in a run or a table)."""

    url: str
    token: str

    @property
    def name(self) -> str:
        """host:port, how results name the device."""
        parsed = urlparse(self.url)
        return f"{parsed.hostname}:{parsed.port or 80}"

    @property
    def host(self) -> str:
        """The agent's host: devices on different hosts are timed side by side."""
        return urlparse(self.url).hostname or self.url

    def machine(self) -> dict[str, Any]:
        """The device's environment, as its agent reports it."""
        return {**device_machine(self), "device": self.name}

    def worker(self, runtime: str, threads: int, label: str) -> RemoteWorker:
        """A session of a runtime on the device's agent."""
        return RemoteWorker(self, runtime, threads, label)

    def close(self) -> None:
        """Nothing to release: each session ends with its worker."""


def connect(url: str, token_file: str | None = None) -> Device:
    """A device from its URL and a token (from token_file, else $NETCUT_DEVICE_TOKEN); its agent must answer."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise NetcutError(f"device URL {url!r} is not an http(s) URL", "pass e.g. --device http://127.0.0.1:8765")
    if token_file:
        try:
            lines = Path(token_file).read_text().strip().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise NetcutError(f"cannot read the device token file {token_file!r}: {exc}",
                              "pass the file the agent's token is in") from exc
        token = lines[0].strip() if lines else ""
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        raise NetcutError(f"no token for device {url}", f"pass --device-token-file FILE or set {TOKEN_ENV} to the "
                          "token `netcut-agent serve` printed")
    device = Device(url.rstrip("/"), token)
    call(device, "GET", "/v1/device")  # fails clearly now rather than in the middle of a run
    return device


def connect_device(spec: str, token_file: str | None = None, reporter: Any = None,
                   cluster: RayCluster | None = None) -> DeviceLink:
    """A device from `--device`: an agent's URL, or `ray:NAME` on the joined Ray cluster `cluster`."""
    from netcut.latency.ray_device import PREFIX

    if spec.startswith(PREFIX):
        from netcut.latency.ray_device import connect as connect_ray

        return connect_ray(spec, cluster, reporter)
    return connect(spec, token_file)


def call(device: Device, method: str, path: str, body: bytes | None = None, timeout: float = 600.0
         ) -> bytes:
    """One request to the device's agent; its refusals become netcut errors naming the fix."""
    request = urllib.request.Request(device.url + path, data=body, method=method,
                                     headers={"Authorization": f"Bearer {device.token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", "")
        except ValueError:
            message = exc.reason
        if exc.code == 401:
            raise NetcutError(f"device {device.name} refused the token", "pass the token its `netcut-agent serve` "
                              f"printed (--device-token-file or {TOKEN_ENV})") from None
        if exc.code == 413:
            raise NetcutError(f"device {device.name} refused a model file as too large: {message}",
                              "start the agent with a larger --max-body-mb") from None
        if exc.code == 404 and "session" in message:
            raise NetcutError(f"device {device.name} lost the session ({message})", RESUME) from None
        raise WorkerError(f"device {device.name}: {message}", "choose another --backend, or report the model that "
                          "fails") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:  # refused, reset, cut mid-reply
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise NetcutError(f"device {device.name} does not answer ({reason})",
                          f"start `netcut-agent serve` there and check the URL or SSH tunnel; {RESUME}") from None


def device_machine(device: Device) -> dict[str, Any]:
    """The device's environment as its agent reports it."""
    info: dict[str, Any] = json.loads(call(device, "GET", "/v1/device"))["environment"]
    return info


class RemoteWorker:
    """A session on the device's agent: one runtime process there, keeping models loaded."""

    def __init__(self, device: Device, runtime: str, threads: int, label: str) -> None:
        if runtime not in RUNTIMES:
            raise NetcutError(f"backend {label} cannot run on a device agent",
                              f"use --backend {', '.join(RUNTIMES)} with --device")
        self.device, self.runtime, self.threads, self.label = device, runtime, threads, label
        reply = json.loads(call(device, "POST", "/v1/sessions?" + urlencode({"runtime": runtime, "threads": threads}),
                                b""))
        self.session: str = reply["session"]
        self.versions: dict[str, str] = reply["versions"]
        self.machine: dict[str, Any] = {**reply["machine"], "device": device.name}
        self.pid: int | None = None
        self._open = True

    @property
    def alive(self) -> bool:
        """Whether the session is open (a lost one says so on its next request)."""
        return self._open

    def _post(self, action: str, body: bytes, **query: Any) -> bytes:
        suffix = f"?{urlencode(query)}" if query else ""
        return call(self.device, "POST", f"/v1/sessions/{self.session}/{action}{suffix}", body)

    def load(self, name: str, payload: bytes, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Send a model file to the device and load it there."""
        query = {"name": name, **({"shape": ",".join(map(str, shape))} if shape else {})}
        return tuple(json.loads(self._post("models", payload, **query))["shape"])

    def unload(self, names: list[str] | None = None) -> None:
        """Forget models on the device (all by default)."""
        self._post("unload", json.dumps({"names": names}).encode())

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on the device."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(x, dtype=np.float32), allow_pickle=False)
        with np.load(io.BytesIO(self._post("run", buffer.getvalue(), name=name)), allow_pickle=False) as outputs:
            return [outputs[f"arr_{i}"] for i in range(len(outputs.files))]

    def time(self, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models and chains, interleaved, on the device."""
        request = {"timed": timed, "chains": chains or {}, "config": asdict(config)}
        return TimingResult.from_json(json.loads(self._post("time", json.dumps(request).encode())))

    def memory(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
        """A model file's peak memory, load and first-inference times, measured on the device."""
        query = {"shape": ",".join(map(str, shape))} if shape else {}
        return MemoryRecord.from_json(json.loads(self._post("memory", payload, **query))["memory"])

    def close(self) -> None:
        """End the session on the device (quietly if the device is gone)."""
        if self._open:
            self._open = False
            try:
                call(self.device, "DELETE", f"/v1/sessions/{self.session}", timeout=30)
            except NetcutError:
                pass

"""A target device hosted by a node of a Ray cluster (`--device ray:NAME`): latency sessions pinned to that node.

The device's host joins the cluster with a custom resource, `ray start --address HEAD:PORT --num-cpus 0
--resources='{"device:NAME": 1}'`. netcut then starts one actor there that asks for that resource (so one run at a
time times on the device) and keeps the device's runtime workers: each runtime in a process of its own on that node,
as on this machine. The driver converts models and sends the files; the actor loads, times and runs them. A
`RayDeviceWorker` has the interface of a local `RuntimeWorker`, so every estimator, the verification and the timing
log use it unchanged (as they use an agent's `RemoteWorker`).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from netcut.errors import NetcutError
from netcut.latency.workers import WorkerPool
from netcut.ray_cluster import RayCluster
from netcut_agent.bench import TimingResult
from netcut_agent.memory import MemoryRecord
from netcut_agent.timing import TimingConfig

PREFIX = "ray:"
RESOURCE = "device:"
WAIT_NOTE_S = 30.0  # how often a run waiting for a busy device says so
RESUME = "what was measured is kept: rerun the same command to resume"


class DeviceHost:
    """The Ray actor on the device's node: its runtime workers, one per runtime and thread count."""

    def __init__(self) -> None:
        self.pool = WorkerPool()

    def machine(self) -> dict[str, Any]:
        """The node's environment and its address in the cluster."""
        import ray

        from netcut_agent.timing import machine

        node = ray.get_runtime_context().get_node_id()
        address = next((n["NodeManagerAddress"] for n in ray.nodes() if n.get("NodeID") == node), None)
        return {**machine(), "node_ip": address or ray.util.get_node_ip_address()}

    def open(self, runtime: str, threads: int, label: str) -> dict[str, Any]:
        """Start (or reuse) a runtime's worker; its versions and the process id."""
        worker = self.pool.get(runtime, threads, label)
        return {"versions": worker.versions, "pid": getattr(worker, "pid", None)}

    def load(self, runtime: str, threads: int, label: str, name: str, payload: bytes,
             shape: tuple[int, ...] | None) -> tuple[int, ...]:
        """Load a model file in a runtime's worker."""
        return self.pool.get(runtime, threads, label).load(name, payload, shape)

    def unload(self, runtime: str, threads: int, label: str, names: list[str] | None) -> None:
        """Forget models."""
        self.pool.get(runtime, threads, label).unload(names)

    def run(self, runtime: str, threads: int, label: str, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model."""
        return self.pool.get(runtime, threads, label).run(name, x)

    def time(self, runtime: str, threads: int, label: str, timed: list[str], config: TimingConfig,
             chains: dict[str, list[str]] | None) -> TimingResult:
        """Time loaded models and chains, interleaved."""
        return self.pool.get(runtime, threads, label).time(timed, config, chains)

    def memory(self, runtime: str, threads: int, label: str, payload: bytes, shape: tuple[int, ...]
               ) -> MemoryRecord:
        """A model file's peak memory, load and first-inference times, in a fresh process of the runtime."""
        return self.pool.get(runtime, threads, label).memory(payload, shape)

    def close(self, runtime: str, threads: int) -> None:
        """Stop a runtime's worker."""
        worker = self.pool.workers.pop((runtime, threads), None)
        if worker is not None:
            worker.close()


class RayDevice:
    """A device on a Ray node: how results name it (`ray:NAME`), its node's address, and the actor on it."""

    def __init__(self, device: str, actor: Any, info: dict[str, Any]) -> None:
        self.device = device
        self.actor = actor
        self.info = info

    @property
    def name(self) -> str:
        """ray:NAME, how results name the device."""
        return PREFIX + self.device

    @property
    def host(self) -> str:
        """The node's IP address: devices on different hosts are timed side by side."""
        return str(self.info.get("node_ip", self.name))

    def machine(self) -> dict[str, Any]:
        """The device's environment, as its node reports it."""
        return {**self.info, "device": self.name}

    def worker(self, runtime: str, threads: int, label: str) -> RayDeviceWorker:
        """A runtime's worker on the device's node."""
        return RayDeviceWorker(self, runtime, threads, label)

    def call(self, method: str, *args: Any) -> Any:
        """One call to the actor; its errors become netcut errors naming the device."""
        import ray

        try:
            return ray.get(getattr(self.actor, method).remote(*args))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, NetcutError):
                raise type(cause)(f"{self.name}: {cause.message}", cause.hint) from None
            raise NetcutError(f"device {self.name} failed: {cause!r}", "rerun with --debug; if it persists, "
                              "report it") from None
        except ray.exceptions.RayActorError as exc:
            raise NetcutError(f"device {self.name}'s Ray node is gone ({type(exc).__name__})",
                              f"check the node (`ray status`); {RESUME}") from None

    def close(self) -> None:
        """Stop the actor: its runtime workers end and the device is free for another run."""
        import ray

        try:
            ray.kill(self.actor)
        except Exception:  # noqa: BLE001 - already gone with its node, or the cluster left first
            pass


class RayDeviceWorker:
    """One runtime at a fixed thread count on a Ray device's node (the Worker interface)."""

    def __init__(self, device: RayDevice, runtime: str, threads: int, label: str) -> None:
        self.device, self.runtime, self.threads, self.label = device, runtime, threads, label
        reply = device.call("open", runtime, threads, label)
        self.versions: dict[str, str] = reply["versions"]
        self.machine: dict[str, Any] = device.machine()
        self.pid: int | None = reply["pid"]
        self._open = True

    @property
    def alive(self) -> bool:
        """Whether it can still take requests (a lost node says so on the next one)."""
        return self._open

    def _args(self) -> tuple[str, int, str]:
        return self.runtime, self.threads, self.label

    def load(self, name: str, payload: bytes, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Send a model file to the device's node and load it there."""
        return tuple(self.device.call("load", *self._args(), name, payload, shape))

    def unload(self, names: list[str] | None = None) -> None:
        """Forget models on the device (all by default)."""
        self.device.call("unload", *self._args(), names)

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on the device."""
        return list(self.device.call("run", *self._args(), name, np.ascontiguousarray(x, dtype=np.float32)))

    def time(self, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models and chains, interleaved, on the device."""
        result: TimingResult = self.device.call("time", *self._args(), timed, config, chains)
        return result

    def memory(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
        """A model file's peak memory, load and first-inference times, measured on the device's node."""
        record: MemoryRecord = self.device.call("memory", *self._args(), payload, shape)
        return record

    def close(self) -> None:
        """Stop the runtime's worker on the device (quietly if the node is gone)."""
        if self._open:
            self._open = False
            try:
                self.device.call("close", self.runtime, self.threads)
            except NetcutError:
                pass


def offered_devices(cluster: RayCluster) -> list[str]:
    """The device names the cluster's nodes offer (their `device:NAME` resources)."""
    return sorted(k.removeprefix(RESOURCE) for k in cluster.ray.cluster_resources() if k.startswith(RESOURCE))


def connect(spec: str, cluster: RayCluster | None, reporter: Any = None, wait_s: float | None = None) -> RayDevice:
    """The device `ray:NAME` of a joined Ray cluster: its actor started on the node holding `device:NAME`
    (waiting while another run holds it; `wait_s` None: as long as it takes)."""
    device = spec.removeprefix(PREFIX)
    if not device:
        raise NetcutError(f"--device {spec!r} names no device", "pass --device ray:NAME, NAME as in the node's "
                          "resource device:NAME")
    if cluster is None:
        raise NetcutError(f"--device {spec} is a device of a Ray cluster, and this command has joined none",
                          "add --executor ray --ray-address HEAD:PORT (the cluster whose node offers it)")
    ray = cluster.ray
    offered = offered_devices(cluster)
    if device not in offered:
        raise NetcutError(f"no node of the Ray cluster offers device {device!r} (offered: "
                          f"{', '.join(offered) or 'none'})", "start the device's host with `ray start --address "
                          f"HEAD:PORT --num-cpus 0 --resources='{{\"{RESOURCE}{device}\": 1}}'`, or fix the name")
    actor: Any = ray.remote(DeviceHost).options(num_cpus=0, resources={RESOURCE + device: 1},
                                                max_restarts=0).remote()
    ready = actor.machine.remote()
    started = time.monotonic()
    while True:
        left = WAIT_NOTE_S if wait_s is None else max(0.0, min(WAIT_NOTE_S, wait_s - (time.monotonic() - started)))
        done, _ = ray.wait([ready], timeout=left)
        if done:
            break
        waited = time.monotonic() - started
        if wait_s is not None and waited >= wait_s:
            ray.kill(actor)
            raise NetcutError(f"device {spec} stayed busy for {waited:.0f} s (another run is timing on it)",
                              "wait for that run to finish, then rerun")
        if reporter is not None:
            reporter.note(f"waiting for device {spec}: another run is timing on it ({waited:.0f} s so far)")
    return RayDevice(device, actor, ray.get(ready))

"""Executors run the independent jobs of a stage. Local runs them here, one after the other; Ray spreads them over a
cluster's nodes as Ray tasks. Either way the driver alone writes the run's store: jobs return their results, they
never touch it."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from netcut.errors import NetcutError

J = TypeVar("J")
R = TypeVar("R")

# What a local Ray instance may reserve for its object store: Ray's default is 30% of the memory, far more than
# shards of features need, and it is taken from what training has.
LOCAL_OBJECT_STORE_BYTES = 500_000_000
TASK_RETRIES = 3  # a task whose worker process or node died runs again (an error raised by the job does not)


@dataclass(frozen=True)
class Resources:
    """What each job of a stage asks the cluster for: a GPU for feature extraction and fine-tuning on CUDA."""

    gpus: float = 0.0


class Executor(Protocol):
    """Runs fn over the independent jobs of a stage."""

    name: str

    def run(self, fn: Callable[[J], R], jobs: Sequence[J], resources: Resources = Resources()
            ) -> Iterator[tuple[J, R]]:
        """(job, fn(job)) for every job, as each completes, so the caller can store each result at once."""
        ...

    def slots(self) -> int:
        """How many jobs run at once (a budget divides by it)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Where the jobs ran, for the result's environment."""
        ...


class LocalExecutor:
    """In this process, in order: what a single machine does."""

    name = "local"

    def run(self, fn: Callable[[J], R], jobs: Sequence[J], resources: Resources = Resources()
            ) -> Iterator[tuple[J, R]]:
        """(job, fn(job)) for every job, one after the other."""
        for job in jobs:
            yield job, fn(job)

    def slots(self) -> int:
        """One job at a time."""
        return 1

    def describe(self) -> dict[str, Any]:
        """This process."""
        return {"executor": "local"}

    def close(self) -> None:
        """Nothing to release."""


def side_by_side(fn: Callable[[J], R], jobs: Sequence[J], group_of: Callable[[J], str]) -> Iterator[tuple[J, R]]:
    """(job, fn(job)) as each completes: the jobs of one group one after another, the groups side by side (a thread
    each). Latency sessions on different hosts overlap; two on one host would compete for its cores. The caller
    (the driver's thread) keeps the store: fn must not touch it. The first error stops every group after its
    current job and is raised."""
    groups: dict[str, list[J]] = {}
    for job in jobs:
        groups.setdefault(group_of(job), []).append(job)
    if len(groups) <= 1:
        yield from LocalExecutor().run(fn, jobs)
        return
    results: queue.Queue[tuple[J, R] | BaseException] = queue.Queue()
    stop = threading.Event()

    def work(group: list[J]) -> None:
        for job in group:
            if stop.is_set():
                return
            try:
                results.put((job, fn(job)))
            except BaseException as e:  # noqa: BLE001 - handed to the driver's thread, which raises it
                results.put(e)
                return

    threads = [threading.Thread(target=work, args=(g,), daemon=True) for g in groups.values()]
    for t in threads:
        t.start()
    try:
        for _ in range(len(jobs)):
            item = results.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # on an error or Ctrl-C the other groups stop after their current job, without holding the caller up
        stop.set()


_STAGE_FUNCTION: dict[str, Callable[[Any], Any]] = {}  # in a Ray worker: the current stage's fn, by object id


def _call(fn_box: list[Any], job: Any, threads: int) -> Any:
    """A job in a Ray worker, with the driver's torch thread count: float results depend on it, and the same
    count everywhere makes a cluster's features and heads bitwise those of a local run. The stage's fn (backbones,
    data, features: up to hundreds of MB) is fetched and unpickled once per worker and stage, not once per job:
    it comes as an object reference in a list, which Ray leaves unresolved."""
    import ray
    import torch

    ref = fn_box[0]
    fn = _STAGE_FUNCTION.get(ref.hex())
    if fn is None:
        _STAGE_FUNCTION.clear()  # the previous stage's is done with
        fn = _STAGE_FUNCTION[ref.hex()] = ray.get(ref)
    torch.set_num_threads(threads)
    return fn(job)


class RayExecutor:
    """Jobs as Ray tasks on a cluster (`address`), or on a Ray instance started here for this run (None)."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int | None = None, temp_dir: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise NetcutError("--executor ray needs Ray, which is not installed",
                              "pip install 'netcut[ray]' (or use --executor local)") from e
        self.address = address
        self.threads = threads
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "ignore_reinit_error": True, "logging_level": logging.ERROR}
        if address is None:  # a private instance on loopback, sized for this machine
            options.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                           _node_ip_address="127.0.0.1")
            if temp_dir:
                options["_temp_dir"] = temp_dir
        if address not in (None, "auto"):
            reachable(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise NetcutError(f"cannot reach the Ray cluster at {address!r}: {str(e).splitlines()[0]}",
                              "start it (`ray start --head`), check the address (host:port of the head's GCS) "
                              "and that RAY_AUTH_MODE/RAY_AUTH_TOKEN match the cluster's") from e
        self._ray = ray
        self._remote = ray.remote(_call)
        _messages_to_stderr()

    def run(self, fn: Callable[[J], R], jobs: Sequence[J], resources: Resources = Resources()
            ) -> Iterator[tuple[J, R]]:
        """(job, fn(job)) as each task completes; fn goes to the object store once, not once per job."""
        import torch

        if not jobs:
            return
        ray = self._ray
        threads = self.threads or torch.get_num_threads()
        self._check_fits(threads)
        fn_ref = ray.put(fn)
        # a job asks for as many CPUs as it runs threads: more jobs than cores on a node would share them
        remote = self._remote.options(num_cpus=threads, num_gpus=resources.gpus,
                                      max_retries=TASK_RETRIES, retry_exceptions=False)
        pending = {remote.remote([fn_ref], job, threads): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    yield job, ray.get(ref)
        finally:
            for ref in pending:  # the caller stopped early (an error, Ctrl-C): nothing keeps running for it
                ray.cancel(ref, force=True)

    def _node_cpus(self) -> list[int]:
        return [int(n.get("Resources", {}).get("CPU", 0)) for n in self._ray.nodes() if n.get("Alive")]

    def _check_fits(self, threads: int) -> None:
        """Refuse a thread count no node can give a job (Ray would wait for such a node forever)."""
        largest = max(self._node_cpus(), default=0)
        if largest < threads:
            raise NetcutError(f"each job runs {threads} torch threads (--train-threads) but the Ray cluster's "
                              f"largest node has {largest} CPUs",
                              f"use --train-threads {max(largest, 1)} (results are identical to a local run with "
                              "the same --train-threads), or add larger nodes")

    def slots(self) -> int:
        """How many jobs run at once: per node, its CPUs over the jobs' threads."""
        import torch

        threads = self.threads or torch.get_num_threads()
        return max(1, sum(cpus // threads for cpus in self._node_cpus()))

    def describe(self) -> dict[str, Any]:
        """The cluster: its address, nodes and resources."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        return {"executor": "ray", "address": self.address or "local instance", "ray": self._ray.__version__,
                "nodes": len(nodes), "resources": {k: v for k, v in self._ray.cluster_resources().items()
                                                   if not k.startswith("node:")}}

    def close(self) -> None:
        """Leave the cluster (a local instance stops with it)."""
        self._ray.shutdown()


def _messages_to_stderr() -> None:
    """Ray prints its cluster's messages to the driver (such as "a worker died ... while executing a task", after
    which the task is retried) on stdout, where `--json` writes: send them to stderr. Ray 2.60 looks the printer up
    in its worker module at each message, so replacing it there takes effect."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "netcut", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.netcut = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def reachable(address: str, timeout_s: float = 3.0) -> None:
    """Refuse an address nothing answers at, at once (Ray itself waits minutes for a head that is not there)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise NetcutError(f"--ray-address {address!r} is not HOST:PORT", "give the head's address, e.g. "
                          "127.0.0.1:6379 (as `ray start --head` printed it), or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise NetcutError(f"no Ray cluster answers at {address} ({e.strerror or e})",
                          "start one with `ray start --head --port PORT`, or check the address") from e


def create_executor(name: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor `--executor` names."""
    if name == "local":
        if address:
            raise NetcutError("--ray-address needs --executor ray", "add --executor ray, or drop --ray-address")
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise NetcutError(f"unknown executor {name!r}", "use --executor local or --executor ray")

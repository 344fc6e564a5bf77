"""Executors run the independent jobs of a stage. Local runs them here, one after the other; Ray spreads them over a
cluster's nodes as Ray tasks. Either way the driver alone writes the run's store: jobs return their results, they
never touch it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from netcut.errors import NetcutError
from netcut.ray_cluster import RayCluster

J = TypeVar("J")
R = TypeVar("R")

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
    """Jobs as Ray tasks on a joined cluster: the one given, or one joined at `address` (None: a private instance
    started here for this run), left by close() when this executor joined it."""

    name = "ray"

    def __init__(self, address: str | None = None, threads: int | None = None, temp_dir: str | None = None,
                 cluster: RayCluster | None = None) -> None:
        self.owns_cluster = cluster is None
        self.cluster = cluster if cluster is not None else RayCluster(address, temp_dir)
        self.address = self.cluster.address
        self.threads = threads
        self._ray = self.cluster.ray
        self._remote = self._ray.remote(_call)

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

    def _check_fits(self, threads: int) -> None:
        """Refuse a thread count no node can give a job (Ray would wait for such a node forever)."""
        largest = max(self.cluster.node_cpus(), default=0)
        if largest < threads:
            raise NetcutError(f"each job runs {threads} torch threads (--train-threads) but the Ray cluster's "
                              f"largest node has {largest} CPUs",
                              f"use --train-threads {max(largest, 1)} (results are identical to a local run with "
                              "the same --train-threads), or add larger nodes")

    def slots(self) -> int:
        """How many jobs run at once: per node, its CPUs over the jobs' threads."""
        import torch

        threads = self.threads or torch.get_num_threads()
        return max(1, sum(cpus // threads for cpus in self.cluster.node_cpus()))

    def describe(self) -> dict[str, Any]:
        """The cluster: its address, nodes and resources."""
        return {"executor": "ray", **self.cluster.describe()}

    def close(self) -> None:
        """Leave the cluster if this executor joined it (a local instance stops with it)."""
        if self.owns_cluster:
            self.cluster.close()


def check_executor_args(name: str, address: str | None) -> None:
    """A Ray address only makes sense with the Ray executor."""
    if address and name != "ray":
        raise NetcutError("--ray-address needs --executor ray", "add --executor ray, or drop --ray-address")


def create_executor(name: str, address: str | None = None) -> LocalExecutor | RayExecutor:
    """The executor `--executor` names (a Ray one joins the cluster at `address`; its `cluster` serves Ray
    devices too)."""
    check_executor_args(name, address)
    if name == "local":
        return LocalExecutor()
    if name == "ray":
        return RayExecutor(address)
    raise NetcutError(f"unknown executor {name!r}", "use --executor local or --executor ray")

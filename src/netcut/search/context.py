"""What the stages of an exploration share: the networks, the data, the store, where progress goes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from netcut.backbones import Backbone, load_backbone
from netcut.data.datasets import Dataset, load_dataset
from netcut.errors import NetcutError
from netcut.graph import TracedNetwork, find_cuts, trace
from netcut.latency.backends import MIN_CALIBRATION, get_backend
from netcut.latency.harness import device_key, environment, machine
from netcut.latency.session import RuntimeSession
from netcut.latency.steadiness import TimingLog
from netcut.latency.workers import WorkerPool
from netcut.progress import QUIET, Reporter
from netcut.results import DatasetInfo, ModelInfo
from netcut.search.config import ExploreConfig
from netcut.search.executors import Executor, LocalExecutor
from netcut.search.keys import backbone_identity
from netcut.store import ResultStore
from netcut.train.metrics import metric_name
from netcut.types import CutPoint


@dataclass
class Network:
    """A backbone being explored: traced at the run's input size, with its cut points."""

    backbone: Backbone
    traced: TracedNetwork
    cuts: list[CutPoint]
    weights_hash: str
    identity: str  # architecture + input size + weights: keys stored results

    @property
    def name(self) -> str:
        """The backbone's name."""
        return self.backbone.name

    def info(self, granularity: str) -> ModelInfo:
        """How a result describes this network."""
        b = self.backbone
        return ModelInfo(b.name, self.traced.input_size, tuple(b.mean), tuple(b.std), b.weights,
                         self.traced.fingerprint(), self.weights_hash, granularity)


def load_network(backbone: Backbone, input_size: int | None, granularity: str) -> Network:
    """Trace a backbone and find its cut points."""
    traced = trace(backbone, input_size)
    weights = backbone.weights_hash()
    return Network(backbone, traced, find_cuts(traced, granularity), weights,
                   backbone_identity(backbone.name, traced.fingerprint(), weights))


def load_networks(config: ExploreConfig, given: list[Backbone] | None = None) -> dict[str, Network]:
    """Every backbone of the exploration, by name, in the order given."""
    backbones = given or [load_backbone(m, config.weights) for m in config.models]
    if config.token_readout != "auto":
        backbones = [replace(b, token_readout=config.token_readout) for b in backbones]
    names = [b.name for b in backbones]
    if len(set(names)) != len(names):
        raise NetcutError(f"a model is listed twice in {', '.join(names)}", "list each model once")
    return {b.name: load_network(b, config.input_size, config.granularity) for b in backbones}


def load_data(config: ExploreConfig, reporter: Reporter = QUIET) -> Dataset:
    """The exploration's dataset, split and limited as configured."""
    dataset = load_dataset(config.data, config.split_config(), probe_size=config.input_size or 224)
    for note in dataset.notes:
        reporter.warn(note)
    return dataset


def dataset_info(dataset: Dataset) -> DatasetInfo:
    """How a result describes its data."""
    return DatasetInfo(dataset.name, list(dataset.classes), dataset.soft, metric_name(dataset.soft),
                       dataset.fingerprint(), {k: int(len(v)) for k, v in dataset.splits.items()}, dataset.skipped,
                       dataset.preprocessing)


def calibration_images(dataset: Dataset, network: Network, count: int) -> np.ndarray:
    """The first `count` training images, as the network is fed them: int8 is calibrated on the user's data."""
    indices = dataset.splits["train"][:count]
    if len(indices) < MIN_CALIBRATION:
        raise NetcutError(f"int8 needs at least {MIN_CALIBRATION} training images to calibrate, the data has "
                          f"{len(indices)}", "use more training images (--limit-train) or --precision fp32")
    b = network.backbone
    images = dataset.loader(indices, network.traced.input_size, b.mean, b.std)
    return images.numpy().astype(np.float32)


@dataclass(frozen=True)
class Target:
    """Where latency is measured: this machine, or a device through its agent or its Ray node (its own pool of
    sessions)."""

    name: str  # CandidateId.device: "local", the agent's host:port, or ray:NAME
    pool: WorkerPool
    threads: int
    machine_info: dict[str, Any]
    device_keys: dict[str, str]  # backend -> key of this device/backend/threads
    host: str = "local"  # targets on different hosts are timed side by side

    @classmethod
    def create(cls, pool: WorkerPool, config: ExploreConfig) -> Target:
        """The target of a pool: its device's environment and cores are read once."""
        if pool.device is None:
            name, host, info, threads = "local", "local", machine(), config.harness().resolved_threads()
        else:
            name, host, info = pool.device.name, pool.device.host, pool.device.machine()
            threads = config.threads if config.threads is not None else int(info.get("cores") or 1)
        keys = {b: device_key(environment(b, threads, machine_info=info)) for b in config.backends}
        return cls(name, pool, threads, info, keys, host)

    def environment(self, backend: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The environment a latency measured here was taken in."""
        return environment(backend, self.threads, extra, self.machine_info)


@dataclass
class RunContext:
    """Shared by the stages of one exploration (the driver's side: it alone writes the store). Accuracy work runs
    in this machine's pool; latency on each target (this machine, or the devices given)."""

    config: ExploreConfig
    store: ResultStore
    dataset: Dataset
    networks: dict[str, Network]
    run_id: int
    pool: WorkerPool
    reporter: Reporter = QUIET
    executor: Executor = field(default_factory=LocalExecutor)
    threads: int = 1
    targets: list[Target] = field(default_factory=list)
    timing: TimingLog = field(default_factory=TimingLog)
    _calibration: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def create(cls, config: ExploreConfig, store: ResultStore, dataset: Dataset, networks: dict[str, Network],
               run_id: int, pool: WorkerPool, reporter: Reporter = QUIET, executor: Executor | None = None,
               device_pools: list[WorkerPool] | tuple[WorkerPool, ...] = ()) -> RunContext:
        """A context with the thread count resolved and every target's environment read once; int8 without enough
        training images to calibrate is refused before any work."""
        if "int8" in config.precisions and networks:
            calibration_images(dataset, next(iter(networks.values())), config.calibration_images)
        targets = [Target.create(p, config) for p in device_pools] or [Target.create(pool, config)]
        return cls(config, store, dataset, networks, run_id, pool, reporter, executor or LocalExecutor(),
                   config.harness().resolved_threads(), targets,
                   TimingLog(reporter=reporter))

    def environment(self, backend: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The environment of the run's latencies: the target's, and every device's when there are several."""
        env = self.targets[0].environment(backend, extra)
        if len(self.targets) > 1:
            env["devices"] = {t.name: t.machine_info for t in self.targets}
        return env

    def calibration(self, network: Network) -> np.ndarray:
        """The network's int8 calibration images (read once)."""
        if network.name not in self._calibration:
            self._calibration[network.name] = calibration_images(self.dataset, network,
                                                                 self.config.calibration_images)
        return self._calibration[network.name]

    def session(self, network: Network, backend: str, precision: str, target: Target | None = None
                ) -> RuntimeSession:
        """A backend's worker (started on first use) at a precision, calibrated on this network's images: on a
        latency target, or (by default) in this machine's pool for accuracy work."""
        images = self.calibration(network) if precision != "fp32" else None
        engine = get_backend(backend)
        pool, threads = (self.pool, self.threads) if target is None else (target.pool, target.threads)
        return RuntimeSession(engine, pool.get(engine.runtime, threads, engine.name), precision, images, self.timing,
                              "local" if target is None else target.name)

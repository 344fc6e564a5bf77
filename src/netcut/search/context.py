"""What the stages of an exploration share: the networks, the data, the store, where progress goes."""

from __future__ import annotations

from dataclasses import dataclass, field

from netcut.backbones import Backbone, load_backbone
from netcut.data.datasets import Dataset, load_dataset
from netcut.errors import NetcutError
from netcut.graph import TracedNetwork, find_cuts, trace
from netcut.latency.harness import device_key, environment
from netcut.progress import QUIET, Reporter
from netcut.search.config import ExploreConfig
from netcut.search.executors import Executor, LocalExecutor
from netcut.search.keys import backbone_identity
from netcut.search.results import DatasetInfo, ModelInfo
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
                       dataset.fingerprint(), {k: int(len(v)) for k, v in dataset.splits.items()}, dataset.skipped)


@dataclass
class RunContext:
    """Shared by the stages of one exploration (the driver's side: it alone writes the store)."""

    config: ExploreConfig
    store: ResultStore
    dataset: Dataset
    networks: dict[str, Network]
    run_id: int
    reporter: Reporter = QUIET
    executor: Executor = field(default_factory=LocalExecutor)
    threads: int = 1
    device_key: str = ""

    @classmethod
    def create(cls, config: ExploreConfig, store: ResultStore, dataset: Dataset, networks: dict[str, Network],
               run_id: int, reporter: Reporter = QUIET, executor: Executor | None = None) -> RunContext:
        """A context with the thread count resolved and the device key read once."""
        threads = config.harness().resolved_threads()
        return cls(config, store, dataset, networks, run_id, reporter, executor or LocalExecutor(), threads,
                   device_key(environment(config.backend, threads)))

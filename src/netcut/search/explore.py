"""NetCut exploration: the stages in order, against a run directory (resumable: stored work is reused).

candidates → latency → proposals → training (probes, fine-tuning) → decision ⇄ verification → result.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn

from netcut._version import __version__
from netcut.backbones import Backbone, from_module, load_backbone
from netcut.codec import encode
from netcut.data.datasets import Dataset
from netcut.data.snapshot import save_snapshot
from netcut.latency.remote import connect_device
from netcut.latency.workers import WorkerPool
from netcut.progress import QUIET, Reporter
from netcut.results import Candidate, Deadline, Decision, ExploreResult, TrainingRecord
from netcut.search.config import ExploreConfig
from netcut.search.context import Network, RunContext, dataset_info, load_data, load_networks
from netcut.search.decide import decide
from netcut.search.executors import Executor
from netcut.search.finetuning import FineTuning
from netcut.search.latency import estimate_latencies
from netcut.search.proposals import propose, union
from netcut.search.training import prepare_probe_features, train_probes
from netcut.search.verify import measure_candidate
from netcut.store import ResultStore, run_lock
from netcut.types import CandidateId, Percentiles
from netcut_agent.memory import MemoryRecord


class StageClock:
    """Wall time per stage: `with clock("probes"): ...`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def decide_deadline(ctx: RunContext, deadline: Deadline, candidates: list[Candidate], proposals: list[Candidate],
                    records: list[TrainingRecord]) -> Decision:
    """Decide, measuring each would-be winner until one holds."""
    by_id = {c.id: c for c in candidates}
    measured: dict[CandidateId, Percentiles] = {}
    memory: dict[CandidateId, MemoryRecord | None] = {}
    while True:
        decision = decide(deadline, candidates, proposals, records, measured, ctx.config.verify, memory)
        if decision.pending is None:
            return decision
        measured[decision.pending], memory[decision.pending] = measure_candidate(ctx, by_id[decision.pending])


def run_stages(ctx: RunContext, started: float) -> ExploreResult:
    """Every stage for every deadline; each stage stores what it finishes."""
    config = ctx.config
    clock = StageClock()
    with clock("latency"):
        candidates = estimate_latencies(ctx)
    deadlines = [Deadline(d, config.percentile, config.margin, config.max_model_mb, config.max_ram_mb)
                 for d in config.deadlines]
    proposals = [propose(candidates, d, config.strategy, config.top_k) for d in deadlines]
    with clock("features"):
        prepare_probe_features(ctx, union(proposals))
    with clock("probes"):
        probes = train_probes(ctx, union(proposals))
    records = {r.key: r for r in probes}
    if config.fine_tunes:
        with clock("fine_tuning"):
            records.update({r.key: r for r in FineTuning(ctx, candidates, probes).run(deadlines)})
    with clock("decision"):
        decisions = [decide_deadline(ctx, d, candidates, proposed, list(records.values()))
                     for d, proposed in zip(deadlines, proposals)]
    save_snapshot(config.run_dir, ctx.dataset, next(iter(ctx.networks.values())).traced.input_size,
                  config.calibration_images)
    runtimes = {w.label: w.versions for t in ctx.targets for w in t.pool.workers.values()}
    return ExploreResult(config.to_json(), tuple(candidates), tuple(records.values()), tuple(decisions),
                         dataset_info(ctx.dataset),
                         {n.name: n.info(config.granularity) for n in ctx.networks.values()}, ctx.run_id,
                         time.perf_counter() - started,
                         ctx.environment(",".join(config.backends),
                                         {"runtimes": runtimes, "timing": ctx.timing.summary(),
                                          "executor": ctx.executor.describe()}), __version__,
                         clock.seconds, {spec.label(): encode(spec) for spec in map(config.head_spec, config.heads)})


class Explorer:
    """Runs one exploration against a run directory."""

    def __init__(self, config: ExploreConfig, reporter: Reporter = QUIET, backbones: list[Backbone] | None = None,
                 dataset: Dataset | None = None, executor: Executor | None = None) -> None:
        self.config = config.validate()
        self.reporter = reporter
        self.backbones = backbones
        self.dataset = dataset
        self.executor = executor

    def _inputs(self) -> tuple[Dataset, dict[str, Network]]:
        """The data and the networks, loaded (and so checked) before the run directory is touched."""
        return self.dataset or load_data(self.config, self.reporter), load_networks(self.config, self.backbones)

    def _device_pools(self, stack: ExitStack) -> list[WorkerPool]:
        """One pool of sessions per device given (each checked to answer first), closed with the stack."""
        cluster = getattr(self.executor, "cluster", None)  # a Ray executor's cluster also serves its devices
        devices = [connect_device(spec, self.config.device_token_file, self.reporter, cluster)
                   for spec in self.config.devices]
        return [stack.enter_context(WorkerPool(device)) for device in devices]

    def run(self) -> ExploreResult:
        """Explore every deadline; everything is stored in the run directory as it completes."""
        started = time.perf_counter()
        # training runs on every core of this machine (or --train-threads) whatever --threads says (that is the
        # deployment's, timed in the runtime workers); one fixed count, whichever steps a resumed run skips and
        # wherever a job runs (Ray tasks take the driver's), keeps features and heads bitwise reproducible
        torch.set_num_threads(self.config.train_threads or os.cpu_count() or 1)
        dataset, networks = self._inputs()
        with ExitStack() as stack:
            devices = self._device_pools(stack)
            stack.enter_context(run_lock(self.config.run_dir))
            store = stack.enter_context(ResultStore(self.config.run_dir))
            pool = stack.enter_context(WorkerPool())
            run_id = store.start_run(self.config.to_json())
            try:
                context = RunContext.create(self.config, store, dataset, networks, run_id, pool, self.reporter,
                                            self.executor, devices)
                result = run_stages(context, started)
            except BaseException:
                store.finish_run(run_id, "failed")
                raise
            store.finish_run(run_id, "done", result)
        return result

    def candidates(self) -> list[Candidate]:
        """Only the latency stage: every candidate with its estimate (stored; a later run reuses it)."""
        dataset, networks = self._inputs()
        with ExitStack() as stack:
            devices = self._device_pools(stack)
            stack.enter_context(run_lock(self.config.run_dir))
            store = stack.enter_context(ResultStore(self.config.run_dir))
            pool = stack.enter_context(WorkerPool())
            return estimate_latencies(RunContext.create(self.config, store, dataset, networks, 0, pool,
                                                        self.reporter, self.executor, devices))


def explore(models: list[Any] | tuple[Any, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
            data: str | Dataset = "fashion-mnist", deadline: float | list[float] = 12.0, reporter: Reporter = QUIET,
            executor: Executor | None = None, **options: Any) -> ExploreResult:
    """Python API: models are names or nn.Modules/Backbones, data a name/path or a netcut Dataset; executor: where
    the jobs run (default here; `RayExecutor(address)` for a Ray cluster)."""
    deadlines = tuple(sorted(deadline if isinstance(deadline, (list, tuple)) else [deadline]))
    backbones = None
    if any(not isinstance(m, str) for m in models):
        backbones = [m if isinstance(m, Backbone) else from_module(m, name=f"module{i}") if isinstance(m, nn.Module)
                     else load_backbone(m, options.get("weights")) for i, m in enumerate(models)]
    names = tuple(b.name for b in backbones) if backbones else tuple(models)
    dataset = data if isinstance(data, Dataset) else None
    config = ExploreConfig(models=names, data=data if isinstance(data, str) else data.name, deadlines=deadlines,
                           **options)
    return Explorer(config, reporter, backbones, dataset, executor).run()

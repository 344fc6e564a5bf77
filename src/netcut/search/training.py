"""Stage: train the proposals (probes on cached features, one pass per backbone: PyTorch's for fp32, the runtime's
for int8) and fine-tune the best ones."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork
from netcut.model import HeadSpec, MultiHead, build_trn, load_head
from netcut.paths import feature_cache_dir
from netcut.results import Candidate, TrainingRecord
from netcut.search.context import Network, RunContext
from netcut.search.executors import Resources
from netcut.search.keys import training_key
from netcut.search.runtime_features import evaluate_in_runtime, runtime_features
from netcut.train.cache import Features as CutFeatures
from netcut.train.cache import Shard, cache_path, cached_features, extract_shard, join_shards, plan_shards, save_cached
from netcut.train.finetune import FineTuneConfig, resolve_device
from netcut.train.metrics import metric_name
from netcut.train.probe import HeadResult, TrainConfig, fit_head, fit_multi_head

Features = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]  # split -> (cut name -> (N, C) features, targets)
BATCH = 64  # images per forward pass when caching features
MAX_SHARD_BATCHES = 16  # batches per shard: about 1,000 images, a job of seconds to a minute


def feature_source(candidate: Candidate) -> str:
    """Whose features train this candidate: "" (torch, fp32: the same for every backend) or its int8 runtime."""
    return "" if candidate.id.precision == "fp32" else candidate.id.backend


def head_of(ctx: RunContext, candidate: Candidate) -> HeadSpec:
    """The candidate's head."""
    return ctx.config.head_spec(ctx.config.head_kind(candidate.id.head))


def record_key(ctx: RunContext, candidate: Candidate, finetune: FineTuneConfig | None = None) -> str:
    """The store key of a candidate's probe, or of its fine-tuned TRN."""
    train = ctx.config.train_config(ctx.config.head_kind(candidate.id.head))
    return training_key(ctx.networks[candidate.model].identity, candidate.cut.name, train.head.label(),
                        ctx.dataset.fingerprint(), train.digest(), finetune.blocks if finetune else 0,
                        finetune.digest() if finetune else "", candidate.id.precision, feature_source(candidate))


def make_record(ctx: RunContext, candidate: Candidate, val: dict[str, Any], test: dict[str, Any], seconds: float,
                finetune: FineTuneConfig | None = None) -> TrainingRecord:
    """A training record of this run (probe, or fine-tuned with `finetune`)."""
    train = ctx.config.train_config(ctx.config.head_kind(candidate.id.head))
    blocks = finetune.blocks if finetune else 0
    return TrainingRecord(record_key(ctx, candidate, finetune), candidate.model, candidate.cut.name,
                          candidate.cut.index, train.head.label(), ctx.dataset.fingerprint(), train.digest(), blocks,
                          metric_name(ctx.dataset.soft), val["score"], test["score"], {"val": val, "test": test},
                          seconds, candidate.id.precision, ctx.run_id, feature_source(candidate))


def features(ctx: RunContext, net: Network, backend: str = "", precision: str = "fp32") -> Features:
    """Pooled features at every cut of a backbone for each split (cached on disk; prepare_features computes fp32
    ones through the executor): PyTorch's for fp32, the backend's runtime's for int8."""
    names = [c.name for c in net.cuts]
    cache = feature_cache_dir(ctx.config.run_dir)
    if precision != "fp32":
        return runtime_features(cache, net.traced, names, ctx.dataset, net.weights_hash,
                                ctx.session(net, backend, precision), ctx.config.seed, ctx.reporter)
    device = resolve_device(ctx.config.train_device)
    return {s: cached_features(cache, net.traced, names, ctx.dataset, s, net.weights_hash,
                               ctx.config.train_config().augment_views, ctx.config.seed, reporter=ctx.reporter,
                               device=device)
            for s in ("train", "val", "test")}


@dataclass(frozen=True)
class ShardJob:
    """The features of one backbone on one shard of a split."""

    model: str
    shard: Shard


def run_shard_job(extractors: dict[str, tuple[TracedNetwork, list[str]]], dataset: Dataset, seed: int,
                  device: str, job: ShardJob) -> CutFeatures:
    """One shard's pooled features at every cut of its backbone."""
    traced, names = extractors[job.model]
    return extract_shard(traced, names, dataset, job.shard, seed=seed, device=device)


def shard_batches(batches: int, slots: int) -> int:
    """Batches per shard: a few shards per job slot so a cluster stays busy, at most MAX_SHARD_BATCHES (here: one
    slot, whole passes up to that size)."""
    return max(1, min(MAX_SHARD_BATCHES, -(-batches // (2 * slots)) if slots > 1 else MAX_SHARD_BATCHES))


def prepare_features(ctx: RunContext, models: list[str]) -> None:
    """Cache the fp32 features of every split of these backbones: the missing ones as backbone x shard jobs of the
    executor, each split saved as soon as its last shard is in (shards are computed batch by batch, so their
    features are bitwise those of one pass)."""
    cache = feature_cache_dir(ctx.config.run_dir)
    views, seed = ctx.config.train_config().augment_views, ctx.config.seed
    device = resolve_device(ctx.config.train_device)
    plans: dict[tuple[str, str], list[Shard]] = {}
    paths: dict[tuple[str, str], Path] = {}
    for model in models:
        net = ctx.networks[model]
        names = [c.name for c in net.cuts]
        for split in ("train", "val", "test"):
            path = cache_path(cache, net.traced, names, ctx.dataset, split, net.weights_hash, views, seed, device)
            if not path.is_file():
                batches = -(-len(ctx.dataset.splits[split]) // BATCH)
                plans[model, split] = plan_shards(ctx.dataset, split, views, BATCH,
                                                  shard_batches(batches, ctx.executor.slots()))
                paths[model, split] = path
    jobs = [ShardJob(model, shard) for (model, _), shards in plans.items() for shard in shards]
    if not jobs:
        return
    extractors = {m: (ctx.networks[m].traced, [c.name for c in ctx.networks[m].cuts]) for m, _ in plans}
    fn = partial(run_shard_job, extractors, ctx.dataset, seed, device)
    done: dict[tuple[str, str], dict[Shard, CutFeatures]] = {}
    models_todo = len({m for m, _ in plans})
    with ctx.reporter.bar(f"caching features: {len(jobs)} shards of {models_todo} backbones "
                          f"({ctx.executor.name})", len(jobs)) as advance:
        for job, part in ctx.executor.run(fn, jobs, Resources(gpus=1.0 if device.startswith("cuda") else 0.0)):
            key = (job.model, job.shard.split)
            done.setdefault(key, {})[job.shard] = part
            if len(done[key]) == len(plans[key]):
                parts = done.pop(key)
                save_cached(paths[key], join_shards([parts[s] for s in plans[key]]))
            advance()


@dataclass(frozen=True)
class ProbeJob:
    """Train one candidate's head on its backbone's cached features."""

    candidate: Candidate
    config: TrainConfig
    reads: tuple[str, ...] = ()  # Head2Toe: the cuts its head reads (every cut up to the candidate's)


def run_probe_job(cached: Features, num_classes: int, job: ProbeJob) -> HeadResult:
    """The trained head of one candidate and its validation/test metrics."""
    (tx, ty), (vx, vy), (sx, sy) = cached["train"], cached["val"], cached["test"]
    if job.candidate.id.multi:
        return fit_multi_head(tx, ty, vx, vy, list(job.reads), num_classes, job.config, sx, sy)
    cut = job.candidate.cut.name
    return fit_head(tx[cut], ty, vx[cut], vy, num_classes, job.config, sx[cut], sy)


def probe_job(ctx: RunContext, candidate: Candidate) -> ProbeJob:
    """A candidate's probe job: its head's training settings, and the cuts a Head2Toe head reads."""
    reads = tuple(cut.name for cut in ctx.networks[candidate.model].cuts if cut.index <= candidate.cut.index) \
        if candidate.id.multi else ()
    return ProbeJob(candidate, ctx.config.train_config(ctx.config.head_kind(candidate.id.head)), reads)


def _score_quantized(ctx: RunContext, candidate: Candidate, fit: HeadResult
                     ) -> tuple[dict[str, float], dict[str, float], float]:
    """Score the whole quantized TRN (trunk and trained head) in its runtime; the scores of the head on the
    quantized features are kept beside, as probe_val/probe_test."""
    start = time.perf_counter()
    net = ctx.networks[candidate.model]
    trn = build_trn(net.traced, candidate.cut, ctx.dataset.num_classes, head_of(ctx, candidate), fit.classifier)
    b = net.backbone
    scores = evaluate_in_runtime(ctx.session(net, candidate.id.backend, candidate.id.precision), trn, ctx.dataset,
                                 net.traced.input_size, b.mean, b.std)
    val = {**scores["val"], **{f"probe_{k}": v for k, v in fit.val.items()}}
    test = {**scores["test"], **{f"probe_{k}": v for k, v in fit.test.items()}}
    return val, test, fit.seconds + time.perf_counter() - start


Untrained = dict[tuple[str, str, str], dict[str, Candidate]]  # (model, feature source, precision) -> by key


def untrained(ctx: RunContext, proposals: list[Candidate]) -> tuple[dict[str, TrainingRecord], Untrained]:
    """The proposals' stored probe records (fp32 records serve every backend), and the proposals still to train."""
    records: dict[str, TrainingRecord] = {}
    todo: Untrained = {}
    for c in proposals:
        key = record_key(ctx, c)
        stored = records.get(key) or ctx.store.get_record(key)
        if stored is not None:
            records[key] = stored
        else:
            todo.setdefault((c.model, feature_source(c), c.id.precision), {})[key] = c
    return records, todo


def prepare_probe_features(ctx: RunContext, proposals: list[Candidate]) -> None:
    """Cache the fp32 features the untrained proposals need (the executor's first stage)."""
    _prepare(ctx, untrained(ctx, proposals)[1])


def _prepare(ctx: RunContext, todo: Untrained) -> None:
    prepare_features(ctx, list(dict.fromkeys(model for model, _, precision in todo if precision == "fp32")))


def train_probes(ctx: RunContext, proposals: list[Candidate]) -> list[TrainingRecord]:
    """The probe records of the proposals: from the store, or trained now and stored one by one."""
    records, todo = untrained(ctx, proposals)
    _prepare(ctx, todo)  # nothing left to do after prepare_probe_features
    for (model, source, precision), candidates in todo.items():
        cached = features(ctx, ctx.networks[model], source, precision)
        jobs = [probe_job(ctx, c) for c in candidates.values()]
        label = model + (f" ({precision}, {source})" if source else "")
        with ctx.reporter.bar(f"training {len(jobs)} heads of {label}", len(jobs)) as advance:
            for job, fit in ctx.executor.run(partial(run_probe_job, cached, ctx.dataset.num_classes), jobs):
                val, test, seconds = fit.val, fit.test, fit.seconds
                if precision != "fp32":
                    val, test, seconds = _score_quantized(ctx, job.candidate, fit)
                record = make_record(ctx, job.candidate, val, test, seconds)
                if isinstance(fit.classifier, MultiHead):
                    record.metrics["multi_cuts"] = list(fit.classifier.cuts)  # with the state: the whole head
                ctx.store.put_record(record, fit.classifier.state_dict())
                records[record.key] = record
                advance()
    return list(records.values())


def trained_classifier(ctx: RunContext, record: TrainingRecord, in_features: int) -> nn.Module:
    """A probe's classifier (a MultiHead for Head2Toe records) with its stored weights."""
    state = ctx.store.get_artifact(record.key)
    if state is None:
        raise KeyError(record.key)
    return load_head(record, state, in_features, ctx.dataset.num_classes, ctx.config.head_spec(
        ctx.config.head_kind(record.head)))

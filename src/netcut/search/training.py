"""Stage: train the proposals (probes on cached features, one pass per backbone) and fine-tune the best ones."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from torch import nn

from netcut.model import classifier
from netcut.search.context import Network, RunContext
from netcut.search.keys import training_key
from netcut.search.results import Candidate, TrainingRecord
from netcut.train.cache import cached_features
from netcut.train.finetune import fine_tune
from netcut.train.metrics import metric_name
from netcut.train.probe import HeadResult, fit_head

Features = dict[str, tuple[dict[str, np.ndarray], np.ndarray]]  # split -> (cut name -> (N, C) features, targets)


def record_key(ctx: RunContext, candidate: Candidate, finetune_blocks: int = 0) -> str:
    """The store key of a candidate's probe (0 blocks) or fine-tuned TRN."""
    train = ctx.config.train_config()
    return training_key(ctx.networks[candidate.model].identity, candidate.cut.name, train.head.label(),
                        ctx.dataset.fingerprint(), train.digest(), finetune_blocks, ctx.config.fine_tune_epochs,
                        candidate.id.precision)


def _record(ctx: RunContext, candidate: Candidate, blocks: int, val: dict[str, float], test: dict[str, float],
            seconds: float) -> TrainingRecord:
    train = ctx.config.train_config()
    return TrainingRecord(record_key(ctx, candidate, blocks), candidate.model, candidate.cut.name,
                          candidate.cut.index, train.head.label(), ctx.dataset.fingerprint(), train.digest(), blocks,
                          metric_name(ctx.dataset.soft), val["score"], test["score"], {"val": val, "test": test},
                          seconds, candidate.id.precision, ctx.run_id)


def features(ctx: RunContext, net: Network) -> Features:
    """Pooled features at every cut of a backbone for each split (one pass each, cached on disk)."""
    names = [c.name for c in net.cuts]
    cache = Path(ctx.config.run_dir) / "cache"
    return {s: cached_features(cache, net.traced, names, ctx.dataset, s, net.weights_hash,
                               ctx.config.train_config().augment_views, ctx.config.seed, reporter=ctx.reporter)
            for s in ("train", "val", "test")}


@dataclass(frozen=True)
class ProbeJob:
    """Train one candidate's head on its backbone's cached features."""

    candidate: Candidate


def run_probe_job(ctx: RunContext, cached: Features, job: ProbeJob) -> HeadResult:
    """The trained head of one candidate and its validation/test metrics."""
    cut = job.candidate.cut.name
    (tx, ty), (vx, vy), (sx, sy) = cached["train"], cached["val"], cached["test"]
    return fit_head(tx[cut], ty, vx[cut], vy, ctx.dataset.num_classes, ctx.config.train_config(), sx[cut], sy)


def train_probes(ctx: RunContext, proposals: list[Candidate]) -> list[TrainingRecord]:
    """A probe record for every proposal: from the store, or trained now (and stored one by one)."""
    records: dict[str, TrainingRecord] = {}
    todo: dict[str, list[Candidate]] = {}
    for c in proposals:
        stored = ctx.store.get_record(record_key(ctx, c))
        if stored is not None:
            records[c.label] = stored
        else:
            todo.setdefault(c.model, []).append(c)
    for model, candidates in todo.items():
        cached = features(ctx, ctx.networks[model])
        jobs = [ProbeJob(c) for c in candidates]
        with ctx.reporter.bar(f"training {len(jobs)} heads of {model}", len(jobs)) as advance:
            for job, fit in ctx.executor.run(partial(run_probe_job, ctx, cached), jobs):
                record = _record(ctx, job.candidate, 0, fit.val, fit.test, fit.seconds)
                ctx.store.put_record(record, fit.classifier.state_dict())
                records[job.candidate.label] = record
                advance()
    return [records[c.label] for c in proposals]


def trained_classifier(ctx: RunContext, record: TrainingRecord, in_features: int) -> nn.Module:
    """A probe's classifier with its stored weights."""
    model = classifier(in_features, ctx.dataset.num_classes, ctx.config.train_config().head)
    state = ctx.store.get_artifact(record.key)
    if state is None:
        raise KeyError(record.key)
    model.load_state_dict(state)
    return model.eval()


def fine_tune_candidate(ctx: RunContext, candidate: Candidate, probe: TrainingRecord) -> TrainingRecord:
    """Fine-tune the last blocks of a candidate from its probe's head (or reuse the stored result)."""
    config = ctx.config.fine_tune_config()
    stored = ctx.store.get_record(record_key(ctx, candidate, config.blocks))
    if stored is not None:
        return stored
    net = ctx.networks[candidate.model]
    head = trained_classifier(ctx, probe, candidate.cut.shape[0])
    trn, val, test, seconds = fine_tune(net.traced, candidate.cut, net.cuts, head, ctx.dataset, config,
                                        ctx.reporter, ctx.config.train_config().head)
    record = _record(ctx, candidate, config.blocks, val, test, seconds)
    ctx.store.put_record(record, trn.state_dict(), artifact_kind="trn")
    return record

"""Stage: fine-tune the promising candidates of each deadline under a wall-time budget, by successive halving.

Per deadline, the best probes (the `fine_tune_top`) start; after each rung (plan_epochs: doubling) the better half
continues. The best off-the-shelf network meeting the deadline is the fair baseline: it gets the same protocol and
always as many epochs as the survivors. The budget is shared by the deadlines; an epoch starts only if it (and the
final test evaluation) fits. Every epoch is checkpointed in the store, so a killed run loses at most one epoch of
one candidate, and a rerun continues where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
from torch import nn

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork
from netcut.model import HeadSpec
from netcut.progress import QUIET, Reporter
from netcut.results import Candidate, Deadline, TrainingRecord
from netcut.search.context import RunContext
from netcut.search.decide import fine_tune_plan
from netcut.search.executors import Resources
from netcut.search.training import make_record, record_key, trained_classifier
from netcut.train.finetune import FineTuneConfig, FineTuner, evaluate_images, plan_epochs, predict_images
from netcut.types import CutPoint

CHECKPOINT = "#checkpoint"
TEACHER = "#teacher-logits"
KEPT_TUNERS = 8  # tuners a process keeps to continue without a rebuild (a rung's entrants of a deadline or two)
_TUNERS: dict[str, FineTuner] = {}  # record key -> tuner after its last epoch in this process, oldest first


@dataclass
class Budget:
    """Wall time for fine-tuning; None: unlimited."""

    seconds: float | None
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        """Seconds left (inf when unlimited)."""
        if self.seconds is None:
            return math.inf
        return self.seconds - (time.perf_counter() - self.start)


@dataclass(frozen=True)
class EpochJob:
    """One more epoch of one candidate, from its last checkpoint (None: from its probe)."""

    key: str
    candidate: Candidate
    classifier: nn.Module  # the probe's trained head
    checkpoint: dict[str, Any] | None
    config: FineTuneConfig
    teacher: np.ndarray | None = None  # the teacher's logits on the training images, where the config distils


def tuner_for(network: tuple[TracedNetwork, list[CutPoint]], dataset: Dataset, head: HeadSpec, job: EpochJob
              ) -> FineTuner:
    """A candidate's fine-tuning state as its checkpoint left it (every epoch's randomness follows from the seed and
    the epoch, so a tuner rebuilt anywhere continues exactly)."""
    traced, cuts = network
    tuner = FineTuner(traced, job.candidate.cut, cuts, job.classifier, dataset, job.config, head, job.teacher)
    if job.checkpoint is not None:
        tuner.restore(job.checkpoint)
    return tuner


def run_epoch_job(networks: dict[str, tuple[TracedNetwork, list[CutPoint]]], dataset: Dataset, head: HeadSpec,
                  job: EpochJob, reporter: Reporter = QUIET) -> tuple[dict[str, Any], float]:
    """Train one epoch; the checkpoint after it and the epoch's seconds. The process keeps the tuner: when its next
    epoch runs here too (always with the local executor), it continues without being rebuilt from the checkpoint."""
    epoch = int(job.checkpoint["epoch"]) if job.checkpoint else 0
    kept = _TUNERS.pop(job.key, None)
    tuner = kept if kept is not None and kept.epoch == epoch else tuner_for(networks[job.candidate.model], dataset,
                                                                           head, job)
    start = time.perf_counter()
    tuner.train_epoch(reporter)
    _TUNERS[job.key] = tuner
    while len(_TUNERS) > KEPT_TUNERS:
        _TUNERS.pop(next(iter(_TUNERS)))
    return tuner.checkpoint(), time.perf_counter() - start


class FineTuning:
    """The fine-tuning stage of one exploration: each candidate's latest checkpoint by record key, resumed from the
    store; epochs run as executor jobs (all entrants of a rung side by side), checkpoints stored by the driver."""

    def __init__(self, ctx: RunContext, candidates: list[Candidate], probes: list[TrainingRecord]) -> None:
        self.ctx, self.candidates, self.probes = ctx, candidates, probes
        self.config: FineTuneConfig = ctx.config.fine_tune_config(flip=ctx.dataset.flip_invariant)
        self.head: HeadSpec = ctx.config.train_config().head
        self.states: dict[str, dict[str, Any] | None] = {}  # latest checkpoint by key (None: not started)
        self.started: dict[str, tuple[Candidate, TrainingRecord, FineTuneConfig]] = {}  # what each key fine-tunes
        self.teacher: np.ndarray | None = None  # the teacher's logits on the training images (distillation)
        self.done: dict[str, TrainingRecord] = {}  # finished records (stored), by key
        self.epoch_s: dict[str, float] = {}  # measured seconds per epoch, by key
        self.finish_s: dict[str, float] = {}  # measured seconds of the final test evaluation, by key
        # the epoch's progress bar only where the epoch runs in this process
        reporter = ctx.reporter if ctx.executor.name == "local" else QUIET
        self.networks = {n.name: (n.traced, n.cuts) for n in ctx.networks.values()}
        self.epoch_fn = partial(run_epoch_job, self.networks, ctx.dataset, self.head, reporter=reporter)

    # ---- one candidate --------------------------------------------------------------------------------------
    def _state(self, key: str) -> dict[str, Any] | None:
        if key not in self.states:
            self.states[key] = self.ctx.store.get_artifact(key + CHECKPOINT)
        return self.states[key]

    def _epochs(self, key: str) -> int:
        state = self._state(key)
        return int(state["epoch"]) if state else 0

    def _predicted_epoch(self, candidate: Candidate, key: str) -> float:
        """Seconds one more epoch of this candidate should take: its own pace, or another's scaled by MACs."""
        if key in self.epoch_s:
            return self.epoch_s[key]
        measured = [(self.epoch_s[k], c.cut.macs) for k, (c, _, _) in self.started.items() if k in self.epoch_s]
        if not measured:
            return 0.0
        seconds, macs = max(measured, key=lambda m: m[0] / max(m[1], 1))
        return seconds * candidate.cut.macs / max(macs, 1)

    def _finished(self, key: str, epochs: int) -> TrainingRecord | None:
        """The stored record of a candidate already fine-tuned for `epochs` epochs (by this run or an earlier one)."""
        stored = self.done.get(key) or self.ctx.store.get_record(key)
        if stored is not None and int(stored.metrics.get("epochs", 0)) >= epochs:
            self.done[key] = stored
            return stored
        return None

    def train_to(self, entrants: list[tuple[Candidate, TrainingRecord]], epochs: int, budget: Budget,
                 config: FineTuneConfig | None = None) -> dict[str, float] | str:
        """Train every entrant until `epochs` epochs are done, one epoch of each at a time side by side; their best
        validation scores by probe key, or the label of the first the budget left short."""
        config = config or self.config
        keys = {probe.key: record_key(self.ctx, c, config) for c, probe in entrants}
        for c, p in entrants:  # finish() tests each of them, even one a killed run took to `epochs` already
            if self._finished(keys[p.key], epochs) is None:
                self.started.setdefault(keys[p.key], (c, p, config))
        while True:
            todo = [(c, p) for c, p in entrants if self._finished(keys[p.key], epochs) is None
                    and self._epochs(keys[p.key]) < epochs]
            if not todo:
                break
            fits, cost, slots = [], 0.0, self.ctx.executor.slots()
            for c, p in todo:  # in order, as many as the budget allows (side by side they share the slots)
                key = keys[p.key]
                cost += self._predicted_epoch(c, key) / slots
                if cost + self.finish_s.get(key, self._predicted_epoch(c, key) * 0.5) > budget.left():
                    break
                fits.append((c, p))
            jobs = [self._job(c, p, keys[p.key], config) for c, p in fits]
            for job, (checkpoint, seconds) in self.ctx.executor.run(self.epoch_fn, jobs, self._resources()):
                self.states[job.key] = checkpoint
                self.epoch_s[job.key] = seconds
                self.done.pop(job.key, None)
                # after every epoch: the state to continue from (kept in the store under the record's key)
                self.ctx.store.put_artifact(job.key + CHECKPOINT, checkpoint, "checkpoint")
            if len(fits) < len(todo):
                return todo[len(fits)][0].label
        scores = {}
        for _, p in entrants:
            finished = self._finished(keys[p.key], epochs)
            state = self._state(keys[p.key])
            scores[p.key] = finished.val_score if finished else float(state["best_score"]) if state else -math.inf
        return scores

    def _job(self, candidate: Candidate, probe: TrainingRecord, key: str, config: FineTuneConfig) -> EpochJob:
        head = trained_classifier(self.ctx, probe, candidate.cut.channels)
        teacher = self.teacher if config.distill_weight > 0 else None
        return EpochJob(key, candidate, head, self._state(key), config, teacher)

    def _resources(self) -> Resources:
        """A GPU per epoch when fine-tuning on CUDA."""
        return Resources(gpus=1.0 if self.config.device.startswith("cuda") else 0.0)

    def _record(self, candidate: Candidate, tuner: FineTuner, test: dict[str, float]) -> TrainingRecord:
        config = tuner.config
        val = {**tuner.best_metrics, "history": list(tuner.history)}
        record = make_record(self.ctx, candidate, val, test, tuner.seconds, config)
        record.metrics.update({"epochs": tuner.epoch, "best_epoch": tuner.best_epoch, "device": config.device,
                               "fine_tune": config.label(), "distilled": tuner.teacher is not None})
        return record

    def finish(self) -> list[TrainingRecord]:
        """Test every candidate trained in this run at its best epoch, store its record and TRN; all records."""
        for key, (candidate, probe, config) in self.started.items():
            if key in self.done or not self._epochs(key):
                continue
            start = time.perf_counter()
            job = self._job(candidate, probe, key, config)
            tuner = tuner_for(self.networks[candidate.model], self.ctx.dataset, self.head, job)
            trn = tuner.best()
            b = tuner.traced.backbone
            test = evaluate_images(trn, self.ctx.dataset, "test", tuner.traced.input_size, b.mean, b.std)
            tuner.seconds += time.perf_counter() - start
            self.finish_s[key] = time.perf_counter() - start
            record = self._record(candidate, tuner, test)
            self.ctx.store.put_record(record, trn.state_dict(), artifact_kind="trn")
            self.done[key] = record
        return list(self.done.values())

    # ---- the stage ------------------------------------------------------------------------------------------
    def run(self, deadlines: list[Deadline]) -> list[TrainingRecord]:
        """Successive halving per deadline within the budget (shared equally by the deadlines still to come)."""
        total = Budget(self.ctx.config.budget_s)
        if self.config.distill_weight > 0:
            share = total.left() / (len(deadlines) + 1) if total.seconds is not None else None
            self.prepare_teacher(Budget(share))
        for i, deadline in enumerate(deadlines):
            share = total.left() / (len(deadlines) - i) if total.seconds is not None else None
            self.halve(deadline, Budget(share))
        records = self.finish()
        if total.seconds is not None and total.left() > total.seconds / 2:
            horizon = plan_epochs(len(self.ctx.dataset.splits["train"]), self.config)[-1]
            self.ctx.reporter.warn(
                f"fine-tuning used {total.seconds - total.left():.0f} s of its {total.seconds:.0f} s budget: every "
                f"candidate it kept ran its whole {horizon}-epoch schedule (more --fine-tune-top or "
                "--fine-tune-epochs would use more of it)")
        return records

    def prepare_teacher(self, budget: Budget) -> None:
        """Distillation's teacher: the most accurate full network (by its probe), fine-tuned once on the labels alone
        within `budget`; the logits of its best state (its probe where no epoch beat it) on the training images, kept
        in the store, are the students' soft targets."""
        full = [(c, r) for c in self.candidates if c.is_full and c.id.precision == "fp32" and not c.id.multi
                for r in self.probes if r.finetune_blocks == 0 and r.matches(c)]
        if not full:
            return
        candidate, probe = max(full, key=lambda cr: cr[1].val_score)
        config = replace(self.config, distill_weight=0.0)
        horizon = plan_epochs(len(self.ctx.dataset.splits["train"]), config)[-1]
        key = record_key(self.ctx, candidate, config)
        stored = self.ctx.store.get_artifact(key + TEACHER)
        if stored is None:
            finished = not isinstance(self.train_to([(candidate, probe)], horizon, budget, config), str)
            tuner = tuner_for(self.networks[candidate.model], self.ctx.dataset, self.head,
                              self._job(candidate, probe, key, config))
            if not finished or tuner.best_epoch == 0:  # its best state teaches: fine-tuned, or the probe itself
                self.ctx.reporter.warn(f"the teacher ({candidate.label}) teaches from its best state: epoch "
                                       f"{tuner.best_epoch} of {horizon} (0: its probe)"
                                       + ("; the budget stopped it" if not finished else ""))
            b = tuner.traced.backbone
            logits, _ = predict_images(tuner.best().to(config.device), self.ctx.dataset, "train",
                                       tuner.traced.input_size, b.mean, b.std, device=config.device)
            stored = {"logits": logits}
            self.ctx.store.put_artifact(key + TEACHER, stored, "teacher")
        self.teacher = stored["logits"].numpy()

    def halve(self, deadline: Deadline, budget: Budget) -> None:
        """Successive halving over epochs for one deadline, the baseline trained alongside."""
        pool, baseline = fine_tune_plan(deadline, self.candidates, self.probes, self.ctx.config.fine_tune_top)
        survivors = list(pool)
        for target in plan_epochs(len(self.ctx.dataset.splits["train"]), self.config):
            scores: dict[str, float] = {}
            # the baseline first: where the budget runs short it is a candidate that waits, never the comparison
            entrants = ([baseline] if baseline and baseline[1].key not in {r.key for _, r in survivors} else []) + \
                survivors
            trained = self.train_to(entrants, target, budget)
            if isinstance(trained, str):
                self.ctx.reporter.warn(f"fine-tuning for {deadline.ms:g} ms stopped at the budget "
                                       f"({target} epochs not reached by {trained}); the best so far "
                                       "is chosen (a larger --budget may find a better network)")
                return
            scores.update(trained)
            keep = max(1, math.ceil(len(survivors) / 2))
            survivors = sorted(survivors, key=lambda cr: -scores[cr[1].key])[:keep]

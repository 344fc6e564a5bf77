"""Stage: fine-tune the promising candidates of each deadline under a wall-time budget, by successive halving.

Per deadline, the best probes (the `fine_tune_top`) start; after each rung (1, 2, 4, ... epochs) the better half
continues. The best off-the-shelf network meeting the deadline is the fair baseline: it gets the same protocol and
always as many epochs as the survivors. The budget is shared by the deadlines; an epoch starts only if it (and the
final test evaluation) fits. Every epoch is checkpointed in the store, so a killed run loses at most one epoch of
one candidate, and a rerun continues where it stopped.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

from netcut.search.context import RunContext
from netcut.search.decide import fine_tune_plan
from netcut.search.results import Candidate, Deadline, TrainingRecord
from netcut.search.training import make_record, record_key, trained_classifier
from netcut.train.finetune import FineTuneConfig, FineTuner, evaluate_images

CHECKPOINT = "#checkpoint"


def rungs(max_epochs: int) -> list[int]:
    """Epoch targets of successive halving: 1, 2, 4, ... and max_epochs last."""
    targets, e = [], 1
    while e < max_epochs:
        targets.append(e)
        e *= 2
    return targets + [max_epochs]


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


class FineTuning:
    """The fine-tuning stage of one exploration: FineTuners by record key, resumed from the store."""

    def __init__(self, ctx: RunContext, candidates: list[Candidate], probes: list[TrainingRecord]) -> None:
        self.ctx, self.candidates, self.probes = ctx, candidates, probes
        self.config: FineTuneConfig = ctx.config.fine_tune_config(flip=ctx.dataset.flip_invariant)
        self.tuners: dict[str, FineTuner] = {}
        self.done: dict[str, TrainingRecord] = {}  # finished records (stored), by key
        self.epoch_s: dict[str, float] = {}  # measured seconds per epoch, by key
        self.finish_s: dict[str, float] = {}  # measured seconds of the final test evaluation, by key

    # ---- one candidate --------------------------------------------------------------------------------------
    def _tuner(self, candidate: Candidate, probe: TrainingRecord) -> FineTuner:
        key = record_key(self.ctx, candidate, self.config)
        if key not in self.tuners:
            net = self.ctx.networks[candidate.model]
            head = trained_classifier(self.ctx, probe, candidate.cut.shape[0])
            tuner = FineTuner(net.traced, candidate.cut, net.cuts, head, self.ctx.dataset, self.config,
                              self.ctx.config.train_config().head)
            checkpoint = self.ctx.store.get_artifact(key + CHECKPOINT)
            if checkpoint is not None:
                tuner.restore(checkpoint)
            self.tuners[key] = tuner
        return self.tuners[key]

    def _predicted_epoch(self, candidate: Candidate, key: str) -> float:
        """Seconds one more epoch of this candidate should take: its own pace, or another's scaled by MACs."""
        if key in self.epoch_s:
            return self.epoch_s[key]
        measured = [(self.epoch_s[k], t.cut.macs) for k, t in self.tuners.items() if k in self.epoch_s]
        if not measured:
            return 0.0
        seconds, macs = max(measured, key=lambda m: m[0] / max(m[1], 1))
        return seconds * candidate.cut.macs / max(macs, 1)

    def train_to(self, candidate: Candidate, probe: TrainingRecord, epochs: int, budget: Budget) -> float | None:
        """Train until `epochs` epochs are done; the best validation score, or None if the budget ran out."""
        key = record_key(self.ctx, candidate, self.config)
        stored = self.done.get(key) or self.ctx.store.get_record(key)
        if stored is not None and int(stored.metrics.get("epochs", 0)) >= epochs:
            self.done[key] = stored
            return stored.val_score
        tuner = self._tuner(candidate, probe)
        while tuner.epoch < epochs:
            reserve = self.finish_s.get(key, self._predicted_epoch(candidate, key) * 0.5)
            if self._predicted_epoch(candidate, key) + reserve > budget.left():
                return None
            start = time.perf_counter()
            tuner.train_epoch(self.ctx.reporter)
            self.epoch_s[key] = time.perf_counter() - start
            self._checkpoint(key, tuner)
        self.done.pop(key, None)
        return tuner.best_score

    def _checkpoint(self, key: str, tuner: FineTuner) -> None:
        """After every epoch: the state to continue from (kept in the store under the record's key)."""
        self.ctx.store.put_artifact(key + CHECKPOINT, tuner.checkpoint(), "checkpoint")

    def _record(self, candidate: Candidate, tuner: FineTuner, test: dict[str, float]) -> TrainingRecord:
        val = {"score": tuner.best_score, "history": list(tuner.history)}
        if not self.ctx.dataset.soft:
            val["accuracy"] = tuner.best_score
        record = make_record(self.ctx, candidate, val, test, tuner.seconds, self.config)
        record.metrics.update({"epochs": tuner.epoch, "best_epoch": tuner.best_epoch, "device": self.config.device,
                               "fine_tune": self.config.label()})
        return record

    def finish(self) -> list[TrainingRecord]:
        """Test every candidate trained in this run at its best epoch, store its record and TRN; all records."""
        for key, tuner in self.tuners.items():
            if key in self.done or tuner.epoch == 0:
                continue
            candidate = next(c for c in self.candidates if record_key(self.ctx, c, self.config) == key
                             and c.cut.name == tuner.cut.name)
            start = time.perf_counter()
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
        for i, deadline in enumerate(deadlines):
            share = total.left() / (len(deadlines) - i) if total.seconds is not None else None
            self.halve(deadline, Budget(share))
        return self.finish()

    def halve(self, deadline: Deadline, budget: Budget) -> None:
        """Successive halving over epochs for one deadline, the baseline trained alongside."""
        pool, baseline = fine_tune_plan(deadline, self.candidates, self.probes, self.ctx.config.fine_tune_top)
        survivors = list(pool)
        for target in rungs(self.config.max_epochs):
            scores: dict[str, float] = {}
            entrants = survivors + ([baseline] if baseline and baseline[1].key not in {r.key for _, r in survivors}
                                    else [])
            for candidate, probe in entrants:
                score = self.train_to(candidate, probe, target, budget)
                if score is None:
                    self.ctx.reporter.warn(f"fine-tuning for {deadline.ms:g} ms stopped at the budget "
                                           f"({target} epochs not reached by {candidate.label}); the best so far "
                                           "is chosen (a larger --budget may find a better network)")
                    return
                scores[probe.key] = score
            keep = max(1, math.ceil(len(survivors) / 2))
            survivors = sorted(survivors, key=lambda cr: -scores[cr[1].key])[:keep]

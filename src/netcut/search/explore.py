"""NetCut exploration: estimate latencies, propose TRNs that meet each deadline, retrain only those, verify, choose."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from netcut._version import __version__
from netcut.backbones import Backbone, load_backbone
from netcut.data.datasets import Dataset, SplitConfig, load_dataset
from netcut.errors import NetcutError
from netcut.graph import TracedNetwork, find_cuts, trace
from netcut.latency.backends import bind, get_backend
from netcut.latency.estimators import Estimate, trn_for_latency
from netcut.latency.harness import HarnessConfig, device_key, environment, measure_interleaved
from netcut.latency.profile import ProfileSettings, run_estimator
from netcut.latency.table import LatencyTable
from netcut.progress import QUIET, Reporter
from netcut.search.pareto import pareto_front
from netcut.search.strategy import PERCENTILES, STRATEGIES, Candidate, Deadline, propose
from netcut.store import ResultStore, candidate_key, run_lock
from netcut.train.cache import cached_features
from netcut.train.finetune import FineTuneConfig, assemble, fine_tune
from netcut.train.heads import TrainConfig, fit_head
from netcut.train.metrics import metric_name
from netcut.types import CutPoint, HeadSpec

FINE_TUNE_TOP = 2  # per deadline, how many of the best frozen-trunk candidates are fine-tuned


@dataclass(frozen=True)
class ExploreConfig:
    """Everything an exploration depends on; recorded in the run directory."""

    models: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    data: str = "fashion-mnist"
    deadlines: tuple[float, ...] = (12.0,)
    percentile: str = "p50"
    margin: float = 0.05
    estimator: str = "empirical"
    latency_tables: tuple[str, ...] = ()
    backend: str = "torch"
    strategy: str = "netcut"
    granularity: str = "block"
    fine_tune_blocks: int = 0
    fine_tune_epochs: int = 2
    top_k: int = 3
    input_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    run_dir: str = "runs/latest"
    threads: int | None = None
    weights: str | None = None
    head_hidden: int | None = None
    epochs: int = 30
    repeats: int = 30
    warmup: int = 5
    batch: int = 1
    verify: bool = True

    def validate(self) -> "ExploreConfig":
        """Clear errors for impossible settings."""
        if not self.models:
            raise NetcutError("no models given", "pass --models efficientnet_lite0,efficientnet_lite1")
        if self.percentile not in PERCENTILES:
            raise NetcutError(f"unknown percentile {self.percentile!r}", f"use one of: {', '.join(PERCENTILES)}")
        if self.strategy not in STRATEGIES:
            raise NetcutError(f"unknown strategy {self.strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
        if not (0 <= self.margin < 1) or self.margin != self.margin:
            raise NetcutError(f"margin must be in [0, 1), got {self.margin}", "pass e.g. --margin 0.05")
        for name in ("top_k", "epochs", "repeats"):
            if getattr(self, name) < 1:
                raise NetcutError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}",
                                  f"pass --{name.replace('_', '-')} 1 or more")
        if self.fine_tune_blocks < 0:
            raise NetcutError(f"fine-tune-blocks must be ≥ 0, got {self.fine_tune_blocks}", "pass 0 (frozen) or more")
        if not self.deadlines or any(not d > 0 for d in self.deadlines):
            raise NetcutError("deadlines must be positive numbers of milliseconds", "pass e.g. --deadline 12")
        if self.estimator == "analytical" and self.latency_tables:
            raise NetcutError("--estimator analytical and --latency-table conflict",
                              "pass one: a measured table, or the analytical estimator")
        HarnessConfig(self.batch, self.warmup, self.repeats, self.threads).validate()
        return self

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def backbone_identity(backbone: Backbone, traced: TracedNetwork, weights_hash: str) -> str:
    """Name, architecture at its input size, and weights: what a stored result belongs to."""
    return f"{backbone.name}|{traced.fingerprint()}|{weights_hash}"


def trained_candidate_key(identity: str, cut: str, train: TrainConfig, dataset_fingerprint: str, blocks: int,
                          fine_tune_epochs: int) -> str:
    """The store key of a trained candidate (frozen trunk, or fine-tuned last `blocks` blocks)."""
    config = train.digest() + (f"|ft{fine_tune_epochs}" if blocks else "")
    return candidate_key(identity, cut, train.head.label(), dataset_fingerprint, config, blocks)


@dataclass
class _Net:
    """A backbone being explored."""

    backbone: Backbone
    traced: TracedNetwork
    cuts: list[CutPoint]
    weights_hash: str
    identity: str  # architecture + input size + weights: keys stored results


@dataclass
class ExploreResult:
    """The outcome: per deadline the chosen network, the proposals, and every candidate."""

    data: dict

    @property
    def deadlines(self) -> list[dict]:
        """Per-deadline results."""
        return self.data["deadlines"]

    def chosen(self, deadline_ms: float | None = None) -> dict | None:
        """The chosen network for a deadline (the first deadline by default)."""
        for d in self.deadlines:
            if deadline_ms is None or abs(d["deadline_ms"] - deadline_ms) < 1e-9:
                return d["chosen"]
        raise KeyError(deadline_ms)

    @property
    def infeasible(self) -> bool:
        """Whether some deadline could not be met."""
        return any(d["chosen"] is None for d in self.deadlines)

    def to_json(self) -> dict:
        """The --json form: flat for one deadline, a list for several."""
        if len(self.deadlines) == 1:
            return {**self.deadlines[0], **{k: v for k, v in self.data.items() if k != "deadlines"}}
        return self.data


class Explorer:
    """Runs one exploration against a run directory (resumable: stored work is reused)."""

    def __init__(self, config: ExploreConfig, reporter: Reporter = QUIET, backbones: list[Backbone] | None = None,
                 dataset: Dataset | None = None) -> None:
        self.config = config.validate()
        self.reporter = reporter
        self.given_backbones = backbones
        self.given_dataset = dataset
        self.threads = HarnessConfig(threads=config.threads).resolved_threads()
        self.harness = HarnessConfig(config.batch, config.warmup, config.repeats, config.threads)
        self.train_config = TrainConfig(epochs=config.epochs, seed=config.seed,
                                        head=HeadSpec(hidden=config.head_hidden))
        self.newly_trained = 0
        # which machine/backend/threads a stored latency belongs to; read once, not per cut
        self.device_key = device_key(environment(config.backend, self.threads))

    # ---- setup --------------------------------------------------------------------------------------------
    def _load_dataset(self) -> Dataset:
        if self.given_dataset is not None:
            return self.given_dataset
        split = SplitConfig(seed=self.config.seed, limit_train=self.config.limit_train,
                            limit_test=self.config.limit_test)
        dataset = load_dataset(self.config.data, split, probe_size=self.config.input_size or 224)
        for note in dataset.notes:
            self.reporter.warn(note)
        return dataset

    def _load_nets(self) -> list[_Net]:
        backbones = self.given_backbones or [load_backbone(m, self.config.weights) for m in self.config.models]
        names = [b.name for b in backbones]
        if len(set(names)) != len(names):
            raise NetcutError(f"a model is listed twice in {', '.join(names)}", "list each model once")
        nets = []
        for b in backbones:
            traced = trace(b, self.config.input_size)
            cuts = find_cuts(traced, self.config.granularity)
            weights = b.weights_hash()
            nets.append(_Net(b, traced, cuts, weights, backbone_identity(b, traced, weights)))
        return nets

    def _tables(self, nets: list[_Net]) -> dict[str, tuple[LatencyTable, str]]:
        """Latency tables by fingerprint; each given table must belong to one of the models."""
        tables: dict[str, tuple[LatencyTable, str]] = {}
        fingerprints = {n.traced.fingerprint(): n for n in nets}
        for path in self.config.latency_tables:
            table = LatencyTable.load(path)
            if table.fingerprint not in fingerprints:
                models = ", ".join(f"{n.backbone.name} @ {n.traced.input_size}px" for n in nets)
                raise NetcutError(f"latency table {path!r} was made for {table.model} at {table.input_size}px, which "
                                  f"is none of the models explored ({models})",
                                  "pass tables profiled for these models at the same --input-size")
            net = fingerprints[table.fingerprint]
            table.check_matches(net.traced.fingerprint(), net.backbone.name, self.config.backend, path)
            if table.granularity != self.config.granularity:
                raise NetcutError(f"latency table {path!r} has {table.granularity} cuts, the exploration uses "
                                  f"{self.config.granularity}", f"pass --granularity {table.granularity}")
            tables[table.fingerprint] = (table, path)
        return tables

    # ---- latency ------------------------------------------------------------------------------------------
    def _latency_key(self, net: _Net, cut: str, estimator: str) -> str:
        text = json.dumps([net.traced.fingerprint(), cut, self.config.backend, estimator, self.device_key,
                           self.config.batch])
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _estimates(self, net: _Net, store: ResultStore, tables: dict) -> tuple[dict[str, Estimate], str]:
        fingerprint = net.traced.fingerprint()
        if fingerprint in tables:
            table, path = tables[fingerprint]
            rows = {r.name: r for r in table.cuts}
            missing = [c.name for c in net.cuts if c.name not in rows]
            if missing:
                raise NetcutError(f"latency table {path!r} lacks cut {missing[0]!r}", "re-profile the model")
            return {c.name: Estimate(rows[c.name].latency("p50"), rows[c.name].latency("p90"),
                                     rows[c.name].latency("p99")) for c in net.cuts}, f"table:{path}"
        estimator = self.config.estimator
        stored = {c.name: store.get_latency(self._latency_key(net, c.name, estimator)) for c in net.cuts}
        if all(stored.values()):
            return {n: Estimate(r["p50"], r["p90"], r["p99"]) for n, r in stored.items()}, estimator  # type: ignore
        self.reporter.note(f"estimating latencies of {len(net.cuts)} candidates of {net.backbone.name} "
                           f"({estimator}, {self.config.backend})")
        backend = get_backend(self.config.backend, self.threads)
        settings = ProfileSettings(self.config.backend, estimator, self.config.granularity, harness=self.harness)
        run = run_estimator(net.traced, net.cuts, backend, settings, estimator, self.reporter)
        env = environment(backend.name, self.threads, backend.versions())
        store.put_latencies([{"key": self._latency_key(net, c.name, estimator), "backbone": net.backbone.name,
                              "fingerprint": fingerprint, "cut": c.name, "backend": backend.name,
                              "estimator": estimator, "p50": run.estimates[c.name].p50,
                              "p90": run.estimates[c.name].p90, "p99": run.estimates[c.name].p99,
                              "environment": env} for c in net.cuts])
        return run.estimates, estimator

    def _verify(self, net: _Net, cut: CutPoint, store: ResultStore) -> dict:
        """Measure a TRN's latency with the harness (stored, so a rerun decides the same way)."""
        key = self._latency_key(net, cut.name, "verified")
        row = store.get_latency(key)
        if row is None:
            backend = get_backend(self.config.backend, self.threads)
            model = trn_for_latency(net.traced, cut, 10)
            x = torch.randn(self.config.batch, 3, net.traced.input_size, net.traced.input_size)
            stats = measure_interleaved({"trn": bind(backend, model, x)}, self.harness, sync=backend.sync())["trn"]
            row = {"key": key, "backbone": net.backbone.name, "fingerprint": net.traced.fingerprint(),
                   "cut": cut.name, "backend": backend.name, "estimator": "verified", "p50": stats.p50,
                   "p90": stats.p90, "p99": stats.p99, "measured_p50": stats.p50, "measured_p90": stats.p90,
                   "measured_p99": stats.p99, "environment": environment(backend.name, self.threads)}
            store.put_latencies([row])
        return {"p50": row["p50"], "p90": row["p90"], "p99": row["p99"]}

    # ---- training -----------------------------------------------------------------------------------------
    def _train(self, proposals: list[Candidate], nets: dict[str, _Net], dataset: Dataset, store: ResultStore
               ) -> dict[str, dict]:
        """Train every proposal from the feature cache, reusing what the store already holds."""
        results: dict[str, dict] = {}
        todo: dict[str, list[Candidate]] = {}
        for c in proposals:
            key = self._key(nets[c.model], c.cut, 0, dataset)
            record = store.get_candidate(key)
            if record is not None:
                results[c.id] = record
            else:
                todo.setdefault(c.model, []).append(c)
        for model, candidates in todo.items():
            net = nets[model]
            names = [c.name for c in net.cuts]
            splits = {s: cached_features(Path(self.config.run_dir) / "cache", net.traced, names, dataset, s,
                                         net.weights_hash, self.train_config.augment_views,
                                         self.config.seed, reporter=self.reporter)
                      for s in ("train", "val", "test")}
            with self.reporter.bar(f"training {len(candidates)} heads of {model}", len(candidates)) as advance:
                for c in candidates:
                    (tx, ty), (vx, vy), (sx, sy) = splits["train"], splits["val"], splits["test"]
                    fit = fit_head(tx[c.cut.name], ty, vx[c.cut.name], vy, dataset.num_classes, self.train_config,
                                   sx[c.cut.name], sy)
                    record = self._record(net, c.cut, 0, dataset, fit.val, fit.test, fit.seconds)
                    store.put_candidate(self._key(net, c.cut, 0, dataset), record, fit.classifier.state_dict())
                    self.newly_trained += 1
                    results[c.id] = record
                    advance()
        return results

    def _fine_tune(self, candidate: Candidate, net: _Net, dataset: Dataset, store: ResultStore) -> dict:
        blocks = self.config.fine_tune_blocks
        key = self._key(net, candidate.cut, blocks, dataset)
        record = store.get_candidate(key)
        if record is not None:
            return record
        frozen_key = self._key(net, candidate.cut, 0, dataset)
        head = self._classifier(frozen_key, candidate.cut, dataset.num_classes, store)
        trn, val, test, seconds = fine_tune(net.traced, candidate.cut, net.cuts, head, dataset,
                                            FineTuneConfig(blocks=blocks, epochs=self.config.fine_tune_epochs,
                                                           seed=self.config.seed), self.reporter)
        record = self._record(net, candidate.cut, blocks, dataset, val, test, seconds)
        store.put_candidate(key, record, trn.state_dict(), artifact_kind="trn")
        self.newly_trained += 1
        return record

    def _classifier(self, key: str, cut: CutPoint, num_classes: int, store: ResultStore) -> torch.nn.Module:
        from netcut.heads import classifier

        model = classifier(cut.shape[0], num_classes, self.train_config.head)
        model.load_state_dict(store.get_artifact(key))  # type: ignore[arg-type]
        return model.eval()

    def _key(self, net: _Net, cut: CutPoint, blocks: int, dataset: Dataset) -> str:
        return trained_candidate_key(net.identity, cut.name, self.train_config, dataset.fingerprint(), blocks,
                                     self.config.fine_tune_epochs)

    def _record(self, net: _Net, cut: CutPoint, blocks: int, dataset: Dataset, val: dict, test: dict,
                seconds: float) -> dict:
        return {"backbone": net.backbone.name, "cut": cut.name, "cut_index": cut.index,
                "head": self.train_config.head.label(), "dataset": dataset.fingerprint(),
                "train_config": self.train_config.digest(), "finetune_blocks": blocks, "metric":
                metric_name(dataset.soft), "val_score": val["score"], "test_score": test["score"],
                "metrics": {"val": val, "test": test}, "seconds": seconds}

    # ---- the run ------------------------------------------------------------------------------------------
    def run(self) -> ExploreResult:
        """Explore every deadline; everything is stored in the run directory as it completes."""
        started = time.perf_counter()
        # one thread count for everything, whichever steps a (resumed) run skips: features are bitwise reproducible
        torch.set_num_threads(self.threads)
        with run_lock(self.config.run_dir):
            store = ResultStore(self.config.run_dir)
            run_id = store.start_run(self.config.to_dict())
            try:
                result = self._run(store, started)
            except BaseException:
                store.finish_run(run_id, "failed")
                raise
            store.finish_run(run_id, "done", result.data)
            store.close()
        return result

    def candidates(self) -> list[Candidate]:
        """Only the first step: every candidate with its latency estimate (stored; a later run reuses it)."""
        with run_lock(self.config.run_dir):
            store = ResultStore(self.config.run_dir)
            _, candidates = self._candidates(store)
            store.close()
        return candidates

    def _candidates(self, store: ResultStore) -> tuple[list[_Net], list[Candidate]]:
        nets = self._load_nets()
        tables = self._tables(nets)
        candidates: list[Candidate] = []
        for net in nets:
            estimates, source = self._estimates(net, store, tables)
            candidates += [Candidate(net.backbone.name, c, estimates[c.name], source) for c in net.cuts]
        return nets, candidates

    def _run(self, store: ResultStore, started: float) -> ExploreResult:
        dataset = self._load_dataset()
        nets, candidates = self._candidates(store)
        by_name = {n.backbone.name: n for n in nets}
        deadlines = [Deadline(d, self.config.percentile, self.config.margin) for d in self.config.deadlines]
        proposals = {d.ms: propose(candidates, d, self.config.strategy, self.config.top_k) for d in deadlines}
        union = list({c.id: c for p in proposals.values() for c in p}.values())
        trained = self._train(union, by_name, dataset, store)
        per_deadline = [self._decide(d, candidates, proposals[d.ms], trained, by_name, dataset, store)
                        for d in deadlines]
        frontier = self._frontier(candidates, trained)
        data = {
            "deadlines": per_deadline,
            "trained": len(trained),
            "newly_trained": self.newly_trained,
            "candidates_total": len(candidates),
            "exploration_s": round(time.perf_counter() - started, 3),
            "strategy": self.config.strategy,
            "frontier": frontier,
            "dataset": {"name": dataset.name, "classes": dataset.classes, "soft": dataset.soft,
                        "metric": metric_name(dataset.soft), "fingerprint": dataset.fingerprint(),
                        "sizes": {k: int(len(v)) for k, v in dataset.splits.items()}, "skipped": dataset.skipped},
            "models": {n.backbone.name: {"input_size": n.traced.input_size, "mean": list(n.backbone.mean),
                                         "std": list(n.backbone.std), "weights": n.backbone.weights,
                                         "fingerprint": n.traced.fingerprint()} for n in nets},
            "config": self.config.to_dict(),
            "environment": environment(self.config.backend, self.threads),
            "netcut_version": __version__,
        }
        return ExploreResult(data)

    def _decide(self, deadline: Deadline, candidates: list[Candidate], proposals: list[Candidate],
                trained: dict[str, dict], nets: dict[str, _Net], dataset: Dataset, store: ResultStore) -> dict:
        feasible = [c for c in candidates if deadline.admits(c)]
        rows = [self._candidate_row(c, deadline, trained) for c in candidates]
        base = {"deadline_ms": deadline.ms, "percentile": deadline.percentile, "margin": deadline.margin,
                "proposals": [c.id for c in proposals], "candidates": rows, "rejected_on_verification": []}
        fastest = min(candidates, key=lambda c: c.estimate.percentile(deadline.percentile))
        if not feasible:
            return {**base, "chosen": None, "best_off_the_shelf": None, "fastest_ms":
                    fastest.estimate.percentile(deadline.percentile), "fastest": fastest.id,
                    "reason": "no candidate's estimated latency meets the deadline"}
        ranked = [(trained[c.id], c) for c in feasible if c.id in trained]
        if self.config.fine_tune_blocks > 0:
            top = sorted(ranked, key=lambda rc: -rc[0]["val_score"])[:FINE_TUNE_TOP]
            ranked += [(self._fine_tune(c, nets[c.model], dataset, store), c) for _, c in top]
        ranked.sort(key=lambda rc: (-rc[0]["val_score"], rc[1].estimate.p50))
        chosen = None
        for record, c in ranked:
            measured = self._verify(nets[c.model], c.cut, store) if self.config.verify else None
            if measured is not None and measured[deadline.percentile] > deadline.ms:
                base["rejected_on_verification"].append({"model": c.model, "cut": c.cut.name,
                                                         "measured_ms": measured[deadline.percentile],
                                                         "estimated_ms": c.estimate.percentile(deadline.percentile)})
                continue
            chosen = self._chosen_row(c, record, measured, dataset)
            break
        full = [(trained[c.id], c) for c in feasible if c.is_full and c.id in trained]
        best_full = max(full, key=lambda rc: rc[0]["val_score"], default=None)
        result = {**base, "chosen": chosen, "best_off_the_shelf": None if best_full is None else
                  self._chosen_row(best_full[1], best_full[0], None, dataset)}
        if chosen is None:
            result.update({"fastest_ms": fastest.estimate.percentile(deadline.percentile), "fastest": fastest.id,
                           "reason": "every proposal missed the deadline when measured"})
        return result

    def _candidate_row(self, c: Candidate, deadline: Deadline, trained: dict[str, dict]) -> dict:
        record = trained.get(c.id)
        row = {"model": c.model, "cut": c.cut.name, "cut_index": c.cut.index, "is_full": c.is_full,
               "estimated_ms": round(c.estimate.p50, 4), "estimated_p90_ms": round(c.estimate.p90, 4),
               "estimated_p99_ms": round(c.estimate.p99, 4), "feasible": deadline.admits(c),
               "macs": c.cut.macs, "params": c.cut.params, "trained": record is not None}
        if record is not None:
            row.update({"accuracy": _accuracy(record), "score": record["test_score"], "val_score": record["val_score"]})
        return row

    def _chosen_row(self, c: Candidate, record: dict, measured: dict | None, dataset: Dataset) -> dict:
        return {"model": c.model, "cut": c.cut.name, "is_full": c.is_full, "accuracy": _accuracy(record),
                "metric": record["metric"], "score": record["test_score"], "val_score": record["val_score"],
                "metrics": record["metrics"]["test"], "fine_tune_blocks": record["finetune_blocks"],
                "estimated_ms": round(c.estimate.p50, 4), "estimated_p90_ms": round(c.estimate.p90, 4),
                "latency_ms": None if measured is None else round(measured["p50"], 4),
                "latency_p90_ms": None if measured is None else round(measured["p90"], 4),
                "latency_p99_ms": None if measured is None else round(measured["p99"], 4),
                "macs": c.cut.macs, "params": c.cut.params, "latency_source": c.latency_source}

    def _frontier(self, candidates: list[Candidate], trained: dict[str, dict]) -> list[dict]:
        points = [(c, trained[c.id]) for c in candidates if c.id in trained]
        front = pareto_front([(c.estimate.p50, r["test_score"]) for c, r in points])
        return [{"model": points[i][0].model, "cut": points[i][0].cut.name, "is_full": points[i][0].is_full,
                 "estimated_ms": round(points[i][0].estimate.p50, 4), "score": points[i][1]["test_score"]}
                for i in front]


def _accuracy(record: dict) -> float:
    """Top-1 accuracy for hard labels; top-1 agreement for soft labels."""
    test = record["metrics"]["test"]
    return float(test.get("accuracy", test.get("top1_agreement", record["test_score"])))


def explore(models: list | tuple = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
            data: str | Dataset = "fashion-mnist", deadline: float | list[float] = 12.0, reporter: Reporter = QUIET,
            **options) -> ExploreResult:
    """Python API: models are names or nn.Modules/Backbones, data a name/path or a netcut Dataset."""
    from torch import nn

    from netcut.backbones import from_module

    deadlines = tuple(sorted(deadline if isinstance(deadline, (list, tuple)) else [deadline]))
    backbones = None
    if any(not isinstance(m, str) for m in models):
        backbones = [m if isinstance(m, Backbone) else from_module(m, name=f"module{i}") if isinstance(m, nn.Module)
                     else load_backbone(m, options.get("weights")) for i, m in enumerate(models)]
    names = tuple(m if isinstance(m, str) else b.name for m, b in zip(models, backbones or [None] * len(models)))
    dataset = data if isinstance(data, Dataset) else None
    config = ExploreConfig(models=names, data=data if isinstance(data, str) else dataset.name,  # type: ignore
                           deadlines=deadlines, **options)
    return Explorer(config, reporter, backbones, dataset).run()

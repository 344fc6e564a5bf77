"""Profile a backbone: estimate (and optionally measure) every TRN's latency, and build a portable table."""

from __future__ import annotations

import time

import numpy as np

from netcut.graph import TracedNetwork, find_cuts
from netcut.latency.backends import get_backend
from netcut.latency.estimators import EstimatorRun, accuracy_metrics, run_estimator
from netcut.latency.estimators.measured import measure_trns
from netcut.latency.harness import environment
from netcut.latency.settings import ProfileSettings
from netcut.latency.table import CutLatency, LatencyTable
from netcut.progress import QUIET, Reporter
from netcut.types import Percentiles


def profile(traced: TracedNetwork, settings: ProfileSettings = ProfileSettings(), measure_all: bool = False,
            reporter: Reporter = QUIET, compare: tuple[str, ...] = ()) -> LatencyTable:
    """Estimate every TRN's latency; with measure_all also measure each one and report every estimator's error."""
    settings.validate()
    threads = settings.harness.resolved_threads()
    backend = get_backend(settings.backend, threads)
    cuts = find_cuts(traced, settings.granularity)
    started = time.perf_counter()
    main = run_estimator(traced, cuts, backend, settings, reporter, ground_truth=measure_all)
    cost = {settings.estimator: main.cost_s}
    measured: dict[str, Percentiles] | None = None
    if measure_all:
        if main.measured:
            measured = {n: s.only() for n, s in main.measured.items()}
        else:
            run = measure_trns(traced, cuts, backend, settings.harness, settings.num_classes, reporter)
            measured = run.estimates
            cost["measured"] = run.cost_s
    accuracy = {}
    if measured is not None:
        truth = np.array([measured[c.name].p50 for c in cuts])
        runs: dict[str, EstimatorRun] = {settings.estimator: main}
        for other in compare:
            if other not in runs and other != "measured":
                runs[other] = run_estimator(traced, cuts, backend, settings, reporter, other)
                cost[other] = runs[other].cost_s
        for name, run in runs.items():
            if name != "measured":
                accuracy[name] = accuracy_metrics(np.array([run.estimates[c.name].p50 for c in cuts]), truth)
    rows = [CutLatency(c.name, main.estimates[c.name], measured[c.name] if measured is not None else None, c.macs,
                       c.params) for c in cuts]
    cost["total"] = time.perf_counter() - started
    env = environment(backend.name, threads, {**backend.versions(), "batch": settings.harness.batch,
                                               "repeats": settings.harness.repeats, "warmup": settings.harness.warmup})
    return LatencyTable(traced.backbone.name, traced.fingerprint(), traced.input_size, settings.granularity,
                        backend.name, settings.estimator, settings.harness.batch, settings.num_classes, env, rows,
                        cost, accuracy)

"""Profile a backbone: estimate (and optionally measure) every TRN's latency, and build a portable table."""

from __future__ import annotations

import time

import numpy as np

from netcut.errors import NetcutError
from netcut.graph import TracedNetwork, find_cuts
from netcut.latency.backends import check_precision, get_backend
from netcut.latency.estimators import EstimatorRun, available_estimators, estimated_accuracy, run_estimator
from netcut.latency.estimators.measured import measure_trns
from netcut.latency.harness import environment
from netcut.latency.memory import session_ram
from netcut.latency.session import RuntimeSession
from netcut.latency.settings import ProfileSettings
from netcut.latency.steadiness import TimingLog
from netcut.latency.table import CutLatency, LatencyTable
from netcut.latency.workers import WorkerPool
from netcut.progress import QUIET, Reporter
from netcut.types import Percentiles


def open_session(pool: WorkerPool, settings: ProfileSettings, images: np.ndarray | None = None,
                 reporter: Reporter | None = None) -> RuntimeSession:
    """The settings' backend in its worker (started on first use), at the settings' precision; unsteady timing
    sessions are reported to `reporter`."""
    backend = get_backend(settings.backend)
    worker = pool.get(backend.runtime, settings.harness.resolved_threads(), backend.name)
    target = pool.device.name if pool.device is not None else "local"
    return RuntimeSession(backend, worker, settings.precision, images, TimingLog(reporter=reporter), target)


def checked(settings: ProfileSettings) -> ProfileSettings:
    """The settings, with clear errors for an unknown estimator or backend, a precision the backend cannot convert
    to, or impossible timing settings."""
    if settings.estimator not in available_estimators():
        raise NetcutError(f"unknown estimator {settings.estimator!r}",
                          f"use one of: {', '.join(available_estimators())}")
    check_precision(get_backend(settings.backend), settings.precision)
    return settings.validate()


def profile(traced: TracedNetwork, settings: ProfileSettings = ProfileSettings(), measure_all: bool = False,
            reporter: Reporter = QUIET, compare: tuple[str, ...] = (), pool: WorkerPool | None = None
            ) -> LatencyTable:
    """Estimate every TRN's latency; with measure_all also measure each one and report every estimator's error.

    int8 is calibrated on synthetic images here (latency alone; the profile has no data): that is said in the
    table's environment.
    """
    checked(settings)
    if pool is not None:
        return _profile(traced, settings, measure_all, reporter, compare, open_session(pool, settings,
                                                                                     reporter=reporter))
    with WorkerPool() as workers:
        return _profile(traced, settings, measure_all, reporter, compare, open_session(workers, settings,
                                                                                     reporter=reporter))


def _profile(traced: TracedNetwork, settings: ProfileSettings, measure_all: bool, reporter: Reporter,
             compare: tuple[str, ...], session: RuntimeSession) -> LatencyTable:
    threads = settings.harness.resolved_threads()
    cuts = find_cuts(traced, settings.granularity)
    started = time.perf_counter()
    main = run_estimator(traced, cuts, session, settings, reporter, ground_truth=measure_all)
    cost = {settings.estimator: main.cost_s}
    measured: dict[str, Percentiles] | None = None
    known = dict(main.memory)
    if measure_all:
        if main.measured:
            measured = {n: s.only() for n, s in main.measured.items()}
        else:
            run = measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter, memory=True)
            measured = run.estimates
            known.update(run.memory)
            cost["measured"] = run.cost_s
    accuracy = {}
    if measured is not None:
        truth = {c.name: measured[c.name].p50 for c in cuts}
        runs: dict[str, EstimatorRun] = {settings.estimator: main}
        for other in compare:
            if other not in runs and other != "measured":
                runs[other] = run_estimator(traced, cuts, session, settings, reporter, other)
                cost[other] = runs[other].cost_s
        for name, run in runs.items():
            if name != "measured":
                accuracy[name] = estimated_accuracy(run, [c.name for c in cuts], truth)
    ram = session_ram(traced, cuts, session, settings.num_classes, settings.harness.batch, known,
                      every=measure_all, reporter=reporter)
    rows = [CutLatency(c.name, main.estimates[c.name], measured[c.name] if measured is not None else None, c.macs,
                       c.params, main.sizes.get(c.name, 0), ram.bytes[c.name], ram.measured.get(c.name))
            for c in cuts]
    cost["total"] = time.perf_counter() - started
    extra = {**session.versions(), "batch": settings.harness.batch, "repeats": settings.harness.repeats,
             "warmup": settings.harness.warmup}
    extra["timing"] = session.log.summary()
    extra["memory"] = {"model": ram.model.to_json(), "measured": len(ram.measured),
                       **({"refused": session.memory_refused} if session.memory_refused else {})}
    if session.precision != "fp32" and session.images is None:
        extra["int8_calibration"] = "synthetic images (latency alone)"
    env = environment(session.name, threads, extra, session.worker.machine)
    return LatencyTable(traced.backbone.name, traced.fingerprint(), traced.input_size, settings.granularity,
                        session.name, session.precision, settings.estimator, settings.harness.batch,
                        settings.num_classes, env, rows, cost, accuracy)

"""Profile a backbone: estimate (and optionally measure) every TRN's latency, and build a portable table."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netcut.errors import NetcutError
from netcut.fsutil import read_json, write_json
from netcut.graph import TracedNetwork, find_cuts
from netcut.latency.backends import Backend, get_backend
from netcut.latency.estimators import (ESTIMATORS, AnalyticalModel, EstimatorRun, accuracy_metrics,
                                       estimate_analytical, estimate_empirical, fit_analytical, measure_trns,
                                       trn_nodes)
from netcut.latency.harness import HarnessConfig, device_key, environment
from netcut.latency.table import CutLatency, LatencyTable
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint

# Networks whose TRNs calibrate the analytical model by default: several families, small enough for a CPU.
DEFAULT_CALIBRATION = ("torchvision:mobilenet_v2", "torchvision:resnet18", "torchvision:squeezenet1_1",
                       "torchvision:shufflenet_v2_x1_0", "torchvision:mnasnet1_0", "torchvision:regnet_x_400mf")


@dataclass(frozen=True)
class ProfileSettings:
    """What a profile depends on (recorded in the table)."""

    backend: str = "torch"
    estimator: str = "empirical"
    granularity: str = "block"
    num_classes: int = 10
    harness: HarnessConfig = HarnessConfig()

    def validate(self) -> "ProfileSettings":
        """Clear errors for impossible settings."""
        if self.estimator not in ESTIMATORS:
            raise NetcutError(f"unknown estimator {self.estimator!r}", f"use one of: {', '.join(ESTIMATORS)}")
        self.harness.validate()
        return self


def analytical_model_path(backend: str, env: dict) -> Path:
    """Where the fitted analytical model of this device/backend/threads is kept."""
    import os

    base = Path(os.environ.get("NETCUT_CACHE", Path.home() / ".cache" / "netcut"))
    return base / f"analytical-{backend}-{device_key(env)}.json"


def calibrate_analytical(backend: Backend, settings: ProfileSettings, input_size: int = 224,
                         networks: tuple[str, ...] = DEFAULT_CALIBRATION, reporter: Reporter = QUIET,
                         save_to: Path | None = None) -> AnalyticalModel:
    """Measure the TRNs of a calibration set of networks on this device and fit the analytical model."""
    from netcut.backbones import load_backbone
    from netcut.graph import trace

    threads = settings.harness.resolved_threads()
    env = environment(backend.name, threads, backend.versions())
    samples, tails = {}, []
    for name in networks:
        reporter.note(f"calibrating the analytical model: {name}")
        traced = trace(load_backbone(name, "none"), input_size)
        cuts = find_cuts(traced, settings.granularity)
        run = measure_trns(traced, cuts, backend, settings.harness, settings.num_classes, reporter)
        samples[name] = ([trn_nodes(traced, c, settings.num_classes) for c in cuts],
                         np.array([run.estimates[c.name].p50 for c in cuts]))
        tails += [(run.estimates[c.name].p90 / run.estimates[c.name].p50,
                   run.estimates[c.name].p99 / run.estimates[c.name].p50) for c in cuts]
    tail = np.median(np.array(tails), axis=0)
    model = fit_analytical(samples, backend.name, threads, env, device_key(env), (float(tail[0]), float(tail[1])))
    if save_to is not None:
        write_json(save_to, model.to_dict())
    return model


def load_analytical(path: Path) -> AnalyticalModel:
    """Read a fitted analytical model."""
    data = read_json(path, "analytical model")
    if not isinstance(data, dict) or data.get("kind") != "netcut-analytical-model":
        raise NetcutError(f"{str(path)!r} is not a netcut analytical model", "refit with `netcut calibrate`")
    try:
        return AnalyticalModel.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise NetcutError(f"analytical model {str(path)!r} is unusable ({exc})", "refit with `netcut calibrate`") \
            from exc


def _analytical_for(backend: Backend, settings: ProfileSettings, model_path: Path | None,
                    reporter: Reporter) -> AnalyticalModel:
    threads = settings.harness.resolved_threads()
    env = environment(backend.name, threads, backend.versions())
    path = model_path or analytical_model_path(backend.name, env)
    if path.is_file():
        model = load_analytical(path)
        if model.backend != backend.name:
            raise NetcutError(f"analytical model {str(path)!r} was fitted for {model.backend}, not {backend.name}",
                              f"run `netcut calibrate --backend {backend.name}`")
        return model
    if model_path is not None:
        raise NetcutError(f"analytical model {str(path)!r} does not exist", "run `netcut calibrate --out PATH` first")
    reporter.note(f"no analytical model for this device and backend yet: fitting one (saved to {path})")
    return calibrate_analytical(backend, settings, reporter=reporter, save_to=path)


def run_estimator(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, settings: ProfileSettings,
                  estimator: str, reporter: Reporter = QUIET, analytical_model: Path | None = None,
                  ground_truth: bool = False) -> EstimatorRun:
    """Run one estimator over the cuts (ground_truth: also measure every TRN side by side where supported)."""
    if estimator == "measured":
        return measure_trns(traced, cuts, backend, settings.harness, settings.num_classes, reporter)
    if estimator == "empirical":
        return estimate_empirical(traced, cuts, backend, settings.harness, settings.num_classes, reporter,
                                  ground_truth=cuts if ground_truth else None)
    model = _analytical_for(backend, settings, analytical_model, reporter)
    return estimate_analytical(traced, cuts, model, settings.num_classes)


def profile(traced: TracedNetwork, settings: ProfileSettings = ProfileSettings(), measure_all: bool = False,
            reporter: Reporter = QUIET, analytical_model: Path | None = None,
            compare: tuple[str, ...] = ()) -> LatencyTable:
    """Estimate every TRN's latency; with measure_all also measure each one and report every estimator's error."""
    settings.validate()
    threads = settings.harness.resolved_threads()
    backend = get_backend(settings.backend, threads)
    cuts = find_cuts(traced, settings.granularity)
    started = time.perf_counter()
    main = run_estimator(traced, cuts, backend, settings, settings.estimator, reporter, analytical_model,
                         ground_truth=measure_all)
    cost = {settings.estimator: round(main.cost_s, 3)}
    measured = None
    if measure_all:
        if settings.estimator == "measured":
            measured = {n: e for n, e in main.estimates.items()}
        elif "measured" in main.details:
            measured = {n: s for n, s in main.details["measured"].items()}
        else:
            run = measure_trns(traced, cuts, backend, settings.harness, settings.num_classes, reporter)
            measured = run.estimates
            cost["measured"] = round(run.cost_s, 3)
    accuracy = {}
    if measured is not None:
        truth = np.array([measured[c.name].p50 for c in cuts])
        runs = {settings.estimator: main}
        for other in compare:
            if other not in runs and other != "measured":
                runs[other] = run_estimator(traced, cuts, backend, settings, other, reporter, analytical_model)
                cost[other] = round(runs[other].cost_s, 3)
        for name, run in runs.items():
            if name != "measured":
                accuracy[name] = accuracy_metrics(np.array([run.estimates[c.name].p50 for c in cuts]), truth)
    rows = []
    for c in cuts:
        e = main.estimates[c.name]
        m = measured[c.name] if measured is not None else None
        rows.append(CutLatency(c.name, round(e.p50, 4), round(e.p90, 4), round(e.p99, 4),
                               None if m is None else round(m.p50, 4), None if m is None else round(m.p90, 4),
                               None if m is None else round(m.p99, 4), c.macs, c.params))
    cost["total"] = round(time.perf_counter() - started, 3)
    env = environment(backend.name, threads, {**backend.versions(), "batch": settings.harness.batch,
                                               "repeats": settings.harness.repeats, "warmup": settings.harness.warmup})
    return LatencyTable(traced.backbone.name, traced.fingerprint(), traced.input_size, settings.granularity,
                        backend.name, settings.estimator, settings.harness.batch, settings.num_classes, env, rows,
                        cost, accuracy)

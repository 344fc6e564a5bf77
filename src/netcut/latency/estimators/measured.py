"""The measured estimator: build and time every TRN, interleaved. The ground truth, and the most expensive."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from netcut.graph import TracedNetwork, example_input
from netcut.latency.backends import Backend, bind
from netcut.latency.estimators import EstimatorRun
from netcut.latency.harness import HarnessConfig, measure_interleaved
from netcut.latency.settings import ProfileSettings
from netcut.model import build_trn
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint


def measure_trns(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, config: HarnessConfig,
                 num_classes: int = 10, reporter: Reporter = QUIET, copies: int = 1) -> EstimatorRun:
    """Build and time every TRN, interleaved.

    copies=2 times two independent sessions of each TRN side by side, to show the measurement's repeatability.
    """
    start = time.perf_counter()
    x = example_input(traced.input_size, config.batch)
    calls: dict[str, Callable[[], Any]] = {}
    with reporter.bar(f"preparing {len(cuts)} TRNs ({backend.name})", len(cuts) * copies) as advance:
        for cut in cuts:
            model = build_trn(traced, cut, num_classes, own_weights=False)
            for copy in range(copies):
                calls[cut.name if copy == 0 else f"{cut.name}#{copy}"] = bind(backend, model, x)
                advance()
    with reporter.bar(f"timing {len(cuts)} TRNs", config.warmup + config.repeats) as advance:
        stats = measure_interleaved(calls, config, progress=lambda done, total: advance(), sync=backend.sync())
    run = EstimatorRun("measured", {c.name: stats[c.name].only() for c in cuts}, time.perf_counter() - start,
                       {"stats": stats})
    run.measured = {c.name: stats[c.name] for c in cuts}
    return run


def estimate(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: every TRN measured (its own ground truth)."""
    return measure_trns(traced, cuts, backend, settings.harness, settings.num_classes, reporter)

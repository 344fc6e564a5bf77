"""The measured estimator: build and time every TRN, interleaved. The ground truth, and the most expensive."""

from __future__ import annotations

import time

from netcut.graph import TracedNetwork, example_input
from netcut.latency.backends import RuntimeSession
from netcut.latency.calibration import as_batches, calibration_images
from netcut.latency.estimators import EstimatorRun
from netcut.latency.harness import HarnessConfig
from netcut.latency.settings import ProfileSettings
from netcut.model import build_trn
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint

LATENCY_CALIBRATION = 16  # int8 scales for latency alone: how many images calibrate a converted model


def measure_trns(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, config: HarnessConfig,
                 num_classes: int = 10, reporter: Reporter = QUIET, copies: int = 1) -> EstimatorRun:
    """Convert and time every TRN, interleaved, in the backend's worker.

    copies=2 times two independent sessions of each TRN side by side, to show the measurement's repeatability.
    """
    start = time.perf_counter()
    x = example_input(traced.input_size, config.batch)
    calibration = None
    if session.precision != "fp32":
        calibration = as_batches(calibration_images(traced, session.images, LATENCY_CALIBRATION), config.batch)
    sizes: dict[str, int] = {}
    names: list[str] = []
    with reporter.bar(f"converting {len(cuts)} TRNs ({session.name}, {session.precision})", len(cuts)) as advance:
        for cut in cuts:
            payload = session.backend.convert(build_trn(traced, cut, num_classes, own_weights=False), x,
                                              session.precision, calibration)
            sizes[cut.name] = len(payload)
            for copy in range(copies):
                name = cut.name if copy == 0 else f"{cut.name}#{copy}"
                session.add_payload(name, payload, tuple(x.shape))
                names.append(name)
            advance()
    reporter.note(f"timing {len(cuts)} TRNs interleaved in the {session.name} worker "
                  f"({config.warmup}+{config.repeats} rounds)")
    stats = session.time(names, config).stats
    session.clear()
    run = EstimatorRun("measured", {c.name: stats[c.name].only() for c in cuts}, time.perf_counter() - start,
                       {"stats": stats}, sizes=sizes)
    run.measured = {c.name: stats[c.name] for c in cuts}
    return run


def estimate(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: every TRN measured (its own ground truth)."""
    return measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter)

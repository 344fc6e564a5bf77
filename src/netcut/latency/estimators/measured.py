"""The measured estimator: build and time every TRN, interleaved. The ground truth, and the most expensive."""

from __future__ import annotations

import time

import numpy as np

from netcut.graph import TracedNetwork, example_input
from netcut.latency.backends import Backend, converted
from netcut.latency.calibration import as_batches, calibration_images
from netcut.latency.estimators import EstimatorRun
from netcut.latency.harness import HarnessConfig
from netcut.latency.session import RuntimeSession
from netcut.latency.settings import ProfileSettings
from netcut.model import build_trn
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint

LATENCY_CALIBRATION = 16  # int8 scales for latency alone: how many images calibrate a converted model


def convert_trns(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, precision: str, batch: int,
                 num_classes: int, images: np.ndarray | None, reporter: Reporter = QUIET
                 ) -> tuple[tuple[int, ...], dict[str, bytes]]:
    """Every TRN's model file in the backend's format and precision (int8 calibrated on `images`, or on synthetic
    images for latency alone), and their input shape."""
    x = example_input(traced.input_size, batch)
    calibration = None
    if precision != "fp32":
        calibration = as_batches(calibration_images(traced, images, LATENCY_CALIBRATION), batch)
    payloads: dict[str, bytes] = {}
    with reporter.bar(f"converting {len(cuts)} TRNs ({backend.name}, {precision})", len(cuts)) as advance:
        for cut in cuts:
            payloads[cut.name] = converted(backend, build_trn(traced, cut, num_classes, own_weights=False), x,
                                           precision, calibration)
            advance()
    return tuple(x.shape), payloads


def measure_trns(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, config: HarnessConfig,
                 num_classes: int = 10, reporter: Reporter = QUIET, copies: int = 1, memory: bool = False
                 ) -> EstimatorRun:
    """Convert and time every TRN, interleaved, in the backend's worker; with `memory`, also measure each one's peak
    memory, load and first-inference times (each in a fresh process of the runtime).

    copies=2 times two independent sessions of each TRN side by side, to show the measurement's repeatability.
    """
    start = time.perf_counter()
    shape, payloads = convert_trns(traced, cuts, session.backend, session.precision, config.batch, num_classes,
                                   session.images, reporter)
    sizes = {name: len(payload) for name, payload in payloads.items()}
    names: list[str] = []
    for cut in cuts:
        for copy in range(copies):
            name = cut.name if copy == 0 else f"{cut.name}#{copy}"
            session.add_payload(name, payloads[cut.name], shape)
            names.append(name)
    reporter.note(f"timing {len(cuts)} TRNs interleaved in the {session.name} worker "
                  f"({config.warmup}+{config.repeats} rounds)")
    stats = session.time(names, config).stats
    records = {}
    if memory:
        with reporter.bar(f"measuring the memory of {len(cuts)} TRNs", len(cuts)) as advance:
            for cut in cuts:
                record = session.memory(cut.name)
                if record is not None:
                    records[cut.name] = record
                advance()
    session.clear()
    run = EstimatorRun("measured", {c.name: stats[c.name].only() for c in cuts}, time.perf_counter() - start,
                       {"stats": stats}, sizes=sizes, memory=records)
    run.measured = {c.name: stats[c.name] for c in cuts}
    return run


def estimate(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: every TRN measured (its own ground truth), its memory too."""
    return measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter, memory=True)

"""NetCut's empirical estimator: profile the backbone once, as a chain of exact segments, and derive every TRN."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from netcut.graph import TracedNetwork, build_segment, example_input
from netcut.latency.calibration import as_batches, calibration_images, segment_inputs
from netcut.latency.estimators import EstimatorRun
from netcut.latency.estimators.measured import LATENCY_CALIBRATION
from netcut.latency.harness import HarnessConfig
from netcut.latency.session import RuntimeSession
from netcut.latency.settings import ProfileSettings
from netcut.model import build_head, build_trn
from netcut.model.readout import readout
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint, Percentiles

ANCHOR_FRACTIONS = (0.0, 0.02, 0.05, 0.12, 0.25, 0.5, 1.0)  # of the full network's MACs


def _calibration_cuts(cuts: list[CutPoint], count: int) -> list[CutPoint]:
    """Up to `count` anchors: the cuts nearest to geometrically spaced shares of the network's work (MACs), the
    shallowest and the full network always among them.

    Relative errors are largest where TRNs are fast, and fast TRNs cost little to measure: anchors crowd there.
    They pin down the correction of the chain's sum where runtimes fuse or lay out across segment boundaries
    differently from whole networks.
    """
    total = max(cuts[-1].macs, 1)
    fractions = ANCHOR_FRACTIONS if count >= len(ANCHOR_FRACTIONS) else \
        tuple(np.geomspace(0.02, 1.0, max(count - 1, 1)).tolist()) + (0.0,)
    picks = {0, len(cuts) - 1} | {min(range(len(cuts)), key=lambda i: abs(cuts[i].macs / total - f)) for f in fractions}
    return [cuts[i] for i in sorted(picks)]


def _anchored(raw: dict[str, float], anchors: dict[str, float], order: list[str]) -> dict[str, float]:
    """Per cut, the ratio measured/chain-sum at the anchors, interpolated linearly in chain time between them (held
    flat beyond the first and last): what the chain gets wrong varies with depth, and anchors pin it down."""
    times = np.array([raw[n] for n in order])
    known = sorted((raw[n], anchors[n] / raw[n]) for n in anchors)
    xs, ys = np.array([k[0] for k in known]), np.array([k[1] for k in known])
    return dict(zip(order, np.interp(times, xs, ys).tolist()))


def _fit_calibration(stage_sum: np.ndarray, boundary_bytes: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """target ≈ α·stage_sum − γ·boundary_bytes, γ ≥ 0 (copying chained outputs out), in relative error."""
    weights = 1.0 / target  # every calibration TRN counts alike, however fast
    if len(target) >= 2:
        design = np.column_stack([stage_sum, -boundary_bytes]) * weights[:, None]
        try:
            alpha, gamma = np.linalg.lstsq(design, target * weights, rcond=None)[0]
            if gamma >= 0 and alpha > 0:
                return float(alpha), float(gamma)
        except np.linalg.LinAlgError:
            pass
    r, t = stage_sum * weights, target * weights
    return float((r * t).sum() / (r * r).sum()), 0.0


class _Tiny(nn.Module):
    """The cheapest possible model: its latency is the backend's per-call overhead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def _size(cut: CutPoint) -> int:
    return math.prod(cut.shape)


def estimate_empirical(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, config: HarnessConfig,
                       num_classes: int = 10, reporter: Reporter = QUIET, calibration_points: int = 7,
                       ground_truth: list[CutPoint] | None = None) -> EstimatorRun:
    """Profile the backbone once as a chain of segments and derive every TRN's latency.

    The network is split at the cuts into segments that compose exactly. Each profiling pass runs the chain on the
    real data flow and timestamps every segment: one pass costs about one full-network inference. A TRN's
    estimate is its segments' sum minus the per-call overhead counted for each extra call, scaled by a factor
    calibrated on a few measured TRNs (for what is not additive), plus its head (pool + linear, linear in the
    activation size, fitted from the smallest and largest heads). Everything is converted for the session's backend
    and precision and timed, interleaved, in its worker.

    ground_truth: TRNs to measure in the same interleaved run (side by side, for judging the estimate); their
    stats land in run.measured and their time is not the estimator's cost.
    """
    start = time.perf_counter()
    x = example_input(traced.input_size, config.batch)
    shapes = {c.name: (config.batch, *c.shape) for c in cuts}
    int8 = session.precision != "fp32"
    images = calibration_images(traced, session.images, LATENCY_CALIBRATION) if int8 else None
    activations = segment_inputs(traced, images, [c.name for c in cuts]) if images is not None else {}

    def calibration(cut: str | None) -> list[np.ndarray] | None:
        if images is None:
            return None
        return as_batches(images if cut is None else activations[cut], config.batch)

    def trn(cut: CutPoint) -> tuple[nn.Module, torch.Tensor, list[np.ndarray] | None]:
        return build_trn(traced, cut, num_classes, own_weights=False), x, calibration(None)

    calibration_cuts = _calibration_cuts(cuts, calibration_points)
    by_size = sorted(range(len(cuts)), key=lambda i: _size(cuts[i]))
    head_cuts = sorted({by_size[0], by_size[-1]})
    sizes: dict[str, int] = {}
    jobs: list[tuple[str, Any]] = []  # (name, () -> (module, example, calibration inputs))
    previous: str | None = None
    for k, cut in enumerate(cuts):
        jobs.append((f"seg:{k}", lambda p=previous, c=cut: (build_segment(traced, p, c.name),
                                                             x if p is None else torch.zeros(shapes[p]),
                                                             calibration(p))))
        previous = cut.name
    for i in head_cuts:
        jobs.append((f"head:{i}", lambda i=i: (build_head(cuts[i].channels, num_classes,
                                                                 readout=readout(traced, cuts[i].name)).eval(),
                                              torch.zeros(shapes[cuts[i].name]), calibration(cuts[i].name))))
    jobs.append(("overhead", lambda: (_Tiny(), torch.zeros(1, 1, 1, 1), calibration_tiny(int8))))
    for cut in calibration_cuts:
        jobs.append((f"trn:{cut.name}", lambda c=cut: trn(c)))
    prepared_jobs = len(jobs)
    for cut in ground_truth or []:
        if f"trn:{cut.name}" not in dict(jobs):
            jobs.append((f"trn:{cut.name}", lambda c=cut: trn(c)))
    convert_s = 0.0
    with reporter.bar(f"converting the profile ({session.name}, {session.precision})", len(jobs)) as advance:
        for index, (name, make) in enumerate(jobs):
            t = time.perf_counter()
            model, example, inputs = make()
            sizes[name] = session.add(name, model, example, inputs)
            if index >= prepared_jobs:
                convert_s += time.perf_counter() - t  # ground truth is not the estimator's cost
            advance()
    chain = [f"seg:{k}" for k in range(len(cuts))]
    timed = ["chain"] + [name for name, _ in jobs if not name.startswith("seg:")]
    reporter.note(f"profiling {len(cuts)} segments and {len(timed) - 1} reference models interleaved in the "
                  f"{session.name} worker ({config.warmup}+{config.repeats} rounds)")
    result = session.time(timed, config, {"chain": chain})
    session.clear()
    stats, stages = result.stats, result.stages["chain"]
    extra = [c for c in (ground_truth or []) if c not in calibration_cuts]
    measured_s = sum(sum(stats[f"trn:{c.name}"].samples) for c in extra) / 1e3 * (1 + config.warmup / config.repeats)
    overhead = stats["overhead"].p50
    # head ≈ a + b·(C·H·W): two points fix the line
    head_sizes = [_size(cuts[i]) for i in head_cuts]
    heads = [stats[f"head:{i}"].p50 for i in head_cuts]
    slope = (heads[-1] - heads[0]) / (head_sizes[-1] - head_sizes[0]) \
        if len(heads) > 1 and head_sizes[-1] != head_sizes[0] else 0.0
    raw, boundary, total, moved = {}, {}, 0.0, 0.0
    for k, cut in enumerate(cuts):
        total += stages[k].p50
        moved += 4.0 * config.batch * _size(cut)
        raw[cut.name] = max(total - k * overhead, 1e-3)  # k+1 stage calls stand for one real call
        boundary[cut.name] = moved / 1e6  # MB returned by the chain's stages, which the real TRN never copies out
    head = {c.name: max(heads[0] + slope * (_size(c) - head_sizes[0]) - overhead, 0.0) for c in cuts}
    names = [c.name for c in calibration_cuts]
    scale, per_mb = _fit_calibration(np.array([raw[n] for n in names]), np.array([boundary[n] for n in names]),
                                     np.array([stats[f"trn:{n}"].p50 - head[n] for n in names]))
    tail90 = float(np.median([stats[f"trn:{n}"].p90 / stats[f"trn:{n}"].p50 for n in names]))
    tail99 = float(np.median([stats[f"trn:{n}"].p99 / stats[f"trn:{n}"].p50 for n in names]))
    fitted = {c.name: max(scale * raw[c.name] - per_mb * boundary[c.name], 0.05 * raw[c.name]) for c in cuts}
    # the fit is global; the anchors' own residuals, interpolated over depth, correct what it misses locally
    ratio = _anchored(fitted, {n: max(stats[f"trn:{n}"].p50 - head[n], 1e-6) for n in names},
                      [c.name for c in cuts])
    estimates = {}
    for cut in cuts:
        p50 = fitted[cut.name] * ratio[cut.name] + head[cut.name]
        estimates[cut.name] = Percentiles(p50, p50 * tail90, p50 * tail99)
    details = {"scale": scale, "boundary_ms_per_mb": per_mb, "overhead_ms": overhead, "calibration_cuts": names,
               "tail_p90": tail90, "tail_p99": tail99, "segments_ms": {c.name: s.p50 for c, s in zip(cuts, stages)}}
    cost = time.perf_counter() - start - convert_s - measured_s
    run = EstimatorRun("empirical", estimates, cost, details, sizes=_trn_sizes(cuts, sizes, head_cuts),
                       anchors=tuple(names))
    run.measured = {c.name: stats[f"trn:{c.name}"] for c in (ground_truth or [])}
    return run


def calibration_tiny(int8: bool) -> list[np.ndarray] | None:
    """Calibration inputs of the overhead model."""
    return [np.random.default_rng(0).standard_normal((1, 1, 1, 1)).astype(np.float32) for _ in range(4)] \
        if int8 else None


def _trn_sizes(cuts: list[CutPoint], files: dict[str, int], head_cuts: list[int]) -> dict[str, int]:
    """Each TRN's model file size from its segments' files, its head's and the empty model's (the per-file cost
    counted once): exact where a TRN was converted whole."""
    empty = files["overhead"]
    heads = [(_size(cuts[i]), files[f"head:{i}"]) for i in head_cuts]
    sizes, prefix = {}, 0
    for k, cut in enumerate(cuts):
        prefix += files[f"seg:{k}"] - empty
        head = heads[0][1] if len(heads) == 1 or heads[-1][0] == heads[0][0] else heads[0][1] + (
            heads[-1][1] - heads[0][1]) * (_size(cut) - heads[0][0]) / (heads[-1][0] - heads[0][0])
        sizes[cut.name] = files.get(f"trn:{cut.name}", int(prefix + head))
    return sizes


def estimate(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: the empirical estimate, every TRN also measured side by side when ground_truth."""
    return estimate_empirical(traced, cuts, session, settings.harness, settings.num_classes, reporter,
                              ground_truth=cuts if ground_truth else None)

"""NetCut's empirical estimator: profile the backbone once, as a chain of exact segments, and derive every TRN."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from netcut.graph import TracedNetwork, build_extractor, build_segment, example_input
from netcut.latency.backends import Backend, bind
from netcut.latency.estimators import EstimatorRun
from netcut.latency.harness import ChainCall, HarnessConfig, measure_interleaved
from netcut.latency.settings import ProfileSettings
from netcut.model import build_head, build_trn
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint, Percentiles


def _calibration_cuts(cuts: list[CutPoint], count: int) -> list[CutPoint]:
    """The full network and, for count ≥ 2, a cut at 30% depth and (count ≥ 3) the shallowest cut.

    Shallow TRNs are cheap to measure and pin down the per-call costs that dominate them.
    """
    picks = [len(cuts) - 1]
    if count >= 2:
        picks.append(round(0.3 * (len(cuts) - 1)))
    if count >= 3:
        picks.append(0)
    return [cuts[i] for i in sorted(set(picks))]


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
    c, h, w = cut.shape
    return c * h * w


def estimate_empirical(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, config: HarnessConfig,
                       num_classes: int = 10, reporter: Reporter = QUIET, calibration_points: int = 3,
                       ground_truth: list[CutPoint] | None = None) -> EstimatorRun:
    """Profile the backbone once as a chain of segments and derive every TRN's latency.

    The network is split at the cuts into segments that compose exactly. Each profiling pass runs the chain on the
    real data flow and timestamps every segment: one pass costs about one full-network inference. A TRN's
    estimate is its segments' sum minus the per-call overhead counted for each extra call, scaled by a factor
    calibrated on a few measured TRNs (for what is not additive), plus its head (pool + linear, linear in the
    activation size, fitted from the smallest and largest heads).

    ground_truth: TRNs to measure in the same interleaved run (side by side, for judging the estimate); their
    stats land in run.measured and their time is not the estimator's cost.
    """
    start = time.perf_counter()
    x = example_input(traced.input_size, config.batch)
    with torch.inference_mode():
        activations = build_extractor(traced, [c.name for c in cuts])(x)
    calibration = _calibration_cuts(cuts, calibration_points)
    by_size = sorted(range(len(cuts)), key=lambda i: _size(cuts[i]))
    head_cuts = sorted({by_size[0], by_size[-1]})
    calls: dict[str, Callable[[], Any]] = {}
    with reporter.bar(f"preparing the profile ({backend.name})", len(cuts) + len(calibration) + len(head_cuts) + 1) \
            as advance:
        runners, previous = [], None
        for cut in cuts:
            runners.append(backend.compile(build_segment(traced, previous, cut.name), x if previous is None
                                           else activations[len(runners) - 1]))
            previous = cut.name
            advance()
        chain = ChainCall(runners, backend.to_native(x), backend.sync())
        calls["chain"] = chain
        for i in head_cuts:
            calls[f"head:{i}"] = bind(backend, build_head(cuts[i].shape[0], num_classes).eval(), activations[i])
            advance()
        calls["overhead"] = bind(backend, _Tiny(), torch.zeros(1, 1, 1, 1))
        advance()
        for cut in calibration:
            calls[f"trn:{cut.name}"] = bind(backend, build_trn(traced, cut, num_classes, own_weights=False), x)
            advance()
    prepared = time.perf_counter()
    extra = [c for c in (ground_truth or []) if f"trn:{c.name}" not in calls]
    for cut in extra:
        calls[f"trn:{cut.name}"] = bind(backend, build_trn(traced, cut, num_classes, own_weights=False), x)
    resumed = time.perf_counter()
    with reporter.bar("profiling", config.warmup + config.repeats) as advance:
        stats = measure_interleaved(calls, config, progress=lambda d, t: advance(), sync=backend.sync())
    measured_s = sum(sum(stats[f"trn:{c.name}"].samples) for c in extra) / 1e3 * (1 + config.warmup / config.repeats)
    stages = chain.stats(config.warmup)
    overhead = stats["overhead"].p50
    # head ≈ a + b·(C·H·W): two points fix the line
    sizes = [_size(cuts[i]) for i in head_cuts]
    heads = [stats[f"head:{i}"].p50 for i in head_cuts]
    slope = (heads[-1] - heads[0]) / (sizes[-1] - sizes[0]) if len(heads) > 1 and sizes[-1] != sizes[0] else 0.0
    raw, boundary, total, moved = {}, {}, 0.0, 0.0
    for k, cut in enumerate(cuts):
        total += stages[k].p50
        moved += 4.0 * config.batch * _size(cut)
        raw[cut.name] = max(total - k * overhead, 1e-3)  # k+1 stage calls stand for one real call
        boundary[cut.name] = moved / 1e6  # MB returned by the chain's stages, which the real TRN never copies out
    head = {c.name: max(heads[0] + slope * (_size(c) - sizes[0]) - overhead, 0.0) for c in cuts}
    names = [c.name for c in calibration]
    scale, per_mb = _fit_calibration(np.array([raw[n] for n in names]), np.array([boundary[n] for n in names]),
                                     np.array([stats[f"trn:{n}"].p50 - head[n] for n in names]))
    tail90 = float(np.median([stats[f"trn:{n}"].p90 / stats[f"trn:{n}"].p50 for n in names]))
    tail99 = float(np.median([stats[f"trn:{n}"].p99 / stats[f"trn:{n}"].p50 for n in names]))
    estimates = {}
    for cut in cuts:
        p50 = max(scale * raw[cut.name] - per_mb * boundary[cut.name], 0.05 * raw[cut.name]) + head[cut.name]
        estimates[cut.name] = Percentiles(p50, p50 * tail90, p50 * tail99)
    details = {"scale": scale, "boundary_ms_per_mb": per_mb, "overhead_ms": overhead, "calibration_cuts": names,
               "tail_p90": tail90, "tail_p99": tail99, "segments_ms": {c.name: s.p50 for c, s in zip(cuts, stages)}}
    cost = time.perf_counter() - start - (resumed - prepared) - measured_s
    run = EstimatorRun("empirical", estimates, cost, details)
    run.measured = {c.name: stats[f"trn:{c.name}"] for c in (ground_truth or [])}
    return run


def estimate(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: the empirical estimate, every TRN also measured side by side when ground_truth."""
    return estimate_empirical(traced, cuts, backend, settings.harness, settings.num_classes, reporter,
                              ground_truth=cuts if ground_truth else None)

"""Latency of every TRN of a backbone: measured (ground truth), empirical (one profile) and analytical (a model)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from netcut.graph import TracedNetwork, build_extractor, build_prefix, build_segment, example_input
from netcut.graph.cuts import _ancestors
from netcut.heads import build_head
from netcut.latency.backends import Backend, bind
from netcut.latency.harness import ChainCall, HarnessConfig, measure_interleaved
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint, LatencyStats

ESTIMATORS = ("empirical", "analytical", "measured")


@dataclass(frozen=True)
class Estimate:
    """A TRN's predicted latency at the three deadline percentiles, in ms."""

    p50: float
    p90: float
    p99: float

    def percentile(self, name: str) -> float:
        """The estimate at p50, p90 or p99."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}[name]


@dataclass
class EstimatorRun:
    """What an estimator produced, and what it cost."""

    estimator: str
    estimates: dict[str, Estimate]
    cost_s: float
    details: dict = field(default_factory=dict)


def trn_for_latency(traced: TracedNetwork, cut: CutPoint, num_classes: int) -> nn.Module:
    """Prefix + a fresh head: what runs on the device (weights do not change latency)."""
    return nn.Sequential(build_prefix(traced, cut.name), build_head(cut.shape[0], num_classes)).eval()


def _example(traced: TracedNetwork, config: HarnessConfig) -> torch.Tensor:
    return example_input(traced.input_size, config.batch)


def measure_trns(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, config: HarnessConfig,
                 num_classes: int = 10, reporter: Reporter = QUIET, copies: int = 1) -> EstimatorRun:
    """Build and time every TRN, interleaved: the ground truth.

    copies=2 times two independent sessions of each TRN side by side, to show the measurement's repeatability.
    """
    start = time.perf_counter()
    x = _example(traced, config)
    calls = {}
    with reporter.bar(f"preparing {len(cuts)} TRNs ({backend.name})", len(cuts) * copies) as advance:
        for cut in cuts:
            model = trn_for_latency(traced, cut, num_classes)
            for copy in range(copies):
                calls[cut.name if copy == 0 else f"{cut.name}#{copy}"] = bind(backend, model, x)
                advance()
    with reporter.bar(f"timing {len(cuts)} TRNs", config.warmup + config.repeats) as advance:
        stats = measure_interleaved(calls, config, progress=lambda done, total: advance(), sync=backend.sync())
    estimates = {c.name: stats_to_estimate(stats[c.name]) for c in cuts}
    return EstimatorRun("measured", estimates, time.perf_counter() - start, {"stats": stats})


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


def estimate_empirical(traced: TracedNetwork, cuts: list[CutPoint], backend: Backend, config: HarnessConfig,
                       num_classes: int = 10, reporter: Reporter = QUIET, calibration_points: int = 3,
                       ground_truth: list[CutPoint] | None = None) -> EstimatorRun:
    """NetCut's empirical estimator: profile the backbone once, as a chain of segments, and derive every TRN.

    The network is split at the cuts into segments that compose exactly. Each profiling pass runs the chain on the
    real data flow and timestamps every segment: one pass costs about one full-network inference. A TRN's
    estimate is its segments' sum minus the per-call overhead counted for each extra call, scaled by a factor
    calibrated on a few measured TRNs (for what is not additive), plus its head (pool + linear, linear in the
    activation size, fitted from the smallest and largest heads).

    ground_truth: TRNs to measure in the same interleaved run (side by side, for judging the estimate); their
    stats land in details["measured"] and their time is not the estimator's cost.
    """
    start = time.perf_counter()
    x = _example(traced, config)
    with torch.inference_mode():
        activations = build_extractor(traced, [c.name for c in cuts])(x)
    calibration = _calibration_cuts(cuts, calibration_points)
    by_size = sorted(range(len(cuts)), key=lambda i: cuts[i].shape[0] * cuts[i].shape[1] * cuts[i].shape[2])
    head_cuts = sorted({by_size[0], by_size[-1]})
    with reporter.bar(f"preparing the profile ({backend.name})", len(cuts) + len(calibration) + len(head_cuts) + 1) \
            as advance:
        runners, previous = [], None
        for cut in cuts:
            runners.append(backend.compile(build_segment(traced, previous, cut.name), x if previous is None
                                           else activations[len(runners) - 1]))
            previous = cut.name
            advance()
        calls: dict[str, Callable] = {"chain": ChainCall(runners, backend.to_native(x), backend.sync())}
        for i in head_cuts:
            calls[f"head:{i}"] = bind(backend, build_head(cuts[i].shape[0], num_classes).eval(), activations[i])
            advance()
        calls["overhead"] = bind(backend, _Tiny(), torch.zeros(1, 1, 1, 1))
        advance()
        for cut in calibration:
            calls[f"trn:{cut.name}"] = bind(backend, trn_for_latency(traced, cut, num_classes), x)
            advance()
    prepared = time.perf_counter()
    extra = [c for c in (ground_truth or []) if f"trn:{c.name}" not in calls]
    for cut in extra:
        calls[f"trn:{cut.name}"] = bind(backend, trn_for_latency(traced, cut, num_classes), x)
    resumed = time.perf_counter()
    with reporter.bar("profiling", config.warmup + config.repeats) as advance:
        stats = measure_interleaved(calls, config, progress=lambda d, t: advance(), sync=backend.sync())
    measured_s = sum(sum(stats[f"trn:{c.name}"].samples) for c in extra) / 1e3 * (1 + config.warmup / config.repeats)
    stages = calls["chain"].stats(config.warmup)  # type: ignore[union-attr]
    overhead = stats["overhead"].p50
    # head ≈ a + b·(C·H·W): two points fix the line
    sizes = [cuts[i].shape[0] * cuts[i].shape[1] * cuts[i].shape[2] for i in head_cuts]
    heads = [stats[f"head:{i}"].p50 for i in head_cuts]
    slope = (heads[-1] - heads[0]) / (sizes[-1] - sizes[0]) if len(heads) > 1 and sizes[-1] != sizes[0] else 0.0
    raw, boundary, total, moved = {}, {}, 0.0, 0.0
    for k, cut in enumerate(cuts):
        total += stages[k].p50
        moved += 4.0 * config.batch * cut.shape[0] * cut.shape[1] * cut.shape[2]
        raw[cut.name] = max(total - k * overhead, 1e-3)  # k+1 stage calls stand for one real call
        boundary[cut.name] = moved / 1e6  # MB returned by the chain's stages, which the real TRN never copies out
    head = {c.name: max(heads[0] + slope * (c.shape[0] * c.shape[1] * c.shape[2] - sizes[0]) - overhead, 0.0)
            for c in cuts}
    names = [c.name for c in calibration]
    scale, per_mb = _fit_calibration(np.array([raw[n] for n in names]), np.array([boundary[n] for n in names]),
                                     np.array([stats[f"trn:{n}"].p50 - head[n] for n in names]))
    tail90 = float(np.median([stats[f"trn:{n}"].p90 / stats[f"trn:{n}"].p50 for n in names]))
    tail99 = float(np.median([stats[f"trn:{n}"].p99 / stats[f"trn:{n}"].p50 for n in names]))
    estimates = {}
    for cut in cuts:
        p50 = max(scale * raw[cut.name] - per_mb * boundary[cut.name], 0.05 * raw[cut.name]) + head[cut.name]
        estimates[cut.name] = Estimate(p50, p50 * tail90, p50 * tail99)
    details = {"scale": scale, "boundary_ms_per_mb": per_mb, "overhead_ms": overhead, "calibration_cuts": names, "tail_p90": tail90,
               "tail_p99": tail99, "segments_ms": {c.name: s.p50 for c, s in zip(cuts, stages)},
               "measured": {c.name: stats[f"trn:{c.name}"] for c in (ground_truth or [])}}
    cost = time.perf_counter() - start - (resumed - prepared) - measured_s
    return EstimatorRun("empirical", estimates, cost, details)



# ---- analytical -------------------------------------------------------------------------------------------------

CATEGORIES = ("conv_kxk", "conv_1x1", "conv_grouped", "linear", "norm_act", "pool", "other")
# Normalisations and activations: runtimes often fuse them into the preceding convolution.
_NORM_ACT_OPS = {"BatchNorm2d", "BatchNormAct2d", "ReLU", "ReLU6", "SiLU", "Hardswish", "Hardsigmoid", "GELU",
                 "Sigmoid", "Tanh", "LeakyReLU", "relu", "relu6", "silu", "hardswish", "hardsigmoid", "gelu",
                 "sigmoid", "batch_norm", "LayerNorm", "LayerNorm2d", "layer_norm", "FrozenBatchNorm2d"}
_POOL_OPS = {"MaxPool2d", "AvgPool2d", "max_pool2d", "avg_pool2d", "AdaptiveAvgPool2d", "adaptive_avg_pool2d",
             "mean", "MaxPool2dSame", "AvgPool2dSame"}
_CONV_OPS = {"Conv2d", "Conv2dSame", "conv2d", "StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "Conv1d"}
_FREE_KINDS = {"placeholder", "output", "get_attr"}
_FREE_OPS = {"flatten", "view", "reshape", "permute", "contiguous", "getitem", "size", "Identity", "Dropout",
             "transpose", "chunk", "split", "getattr"}


def _category(info) -> int | None:
    if info.kind in _FREE_KINDS or info.op in _FREE_OPS:
        return None
    if info.op in _CONV_OPS:
        if info.groups > 1:
            return CATEGORIES.index("conv_grouped")
        return CATEGORIES.index("conv_1x1" if info.kernel <= 1 else "conv_kxk")
    if info.op in ("Linear", "linear"):
        return CATEGORIES.index("linear")
    if info.op in _NORM_ACT_OPS:
        return CATEGORIES.index("norm_act")
    if info.op in _POOL_OPS:
        return CATEGORIES.index("pool")
    return CATEGORIES.index("other")


def trn_nodes(traced: TracedNetwork, cut: CutPoint, num_classes: int = 10) -> np.ndarray:
    """The TRN's compute nodes as rows (category, MMACs, MB moved), the new head's pool and linear included."""
    rows = []
    for node in _ancestors(traced.node(cut.name)):
        info = traced.info[traced.names[node]]
        category = _category(info)
        if category is not None:
            rows.append((category, info.macs / 1e6, (info.in_bytes + info.out_bytes + 4 * info.params) / 1e6))
    c, h, w = cut.shape
    rows.append((CATEGORIES.index("pool"), 0.0, 4.0 * (c * h * w + c) / 1e6))  # global pool
    rows.append((CATEGORIES.index("linear"), c * num_classes / 1e6, 4.0 * (c + c * num_classes) / 1e6))
    return np.array(rows, dtype=float)


FEATURES = tuple(f"{kind}:{c}" for kind in ("mmacs", "mb", "ops") for c in CATEGORIES) + ("call",)


def trn_features(rows: np.ndarray) -> np.ndarray:
    """Per-category totals of a TRN's node table: MMACs, MB moved and op count, plus one call."""
    k = len(CATEGORIES)
    f = np.zeros(3 * k + 1)
    f[-1] = 1.0
    cat = rows[:, 0].astype(int)
    np.add.at(f, cat, rows[:, 1])
    np.add.at(f, k + cat, rows[:, 2])
    np.add.at(f, 2 * k + cat, 1.0)
    return f


def fit_coefficients(trns: list[np.ndarray], measured: np.ndarray) -> list[float]:
    """ms per unit of each feature: non-negative least squares on relative error (convex, deterministic)."""
    from scipy.optimize import nnls

    x = np.array([trn_features(r) for r in trns])
    scale = np.maximum(x.max(axis=0), 1e-12)
    coefficients = nnls((x / scale) / measured[:, None], np.ones_like(measured), maxiter=50 * x.shape[1])[0]
    return (coefficients / scale).tolist()


@dataclass
class AnalyticalModel:
    """latency ≈ Σ over op categories of (ms/MMAC·MMACs + ms/MB·MB moved + ms/op·ops) + per-call overhead.

    Fitted per device/backend from measured calibration networks. Categories separate what runtimes treat
    differently: dense, pointwise and depthwise convolutions, linear layers, fusable norms/activations, pools,
    and the rest (adds, concats, pads, multiplies).
    """

    params: list[float]
    device_key: str
    backend: str
    threads: int
    environment: dict
    fit: dict  # quality: MAPE, within ±10%, per calibration network and leave-one-network-out
    tail_p90: float = 1.05
    tail_p99: float = 1.15

    def predict(self, trns: list[np.ndarray]) -> np.ndarray:
        """Predicted p50 in ms for TRNs given as node tables (see trn_nodes)."""
        return np.array([trn_features(r) for r in trns]) @ np.array(self.params)

    def to_dict(self) -> dict:
        """JSON form."""
        return {"kind": "netcut-analytical-model", "version": 4, "categories": list(CATEGORIES),
                "params": self.params, "device_key": self.device_key, "backend": self.backend,
                "threads": self.threads, "environment": self.environment, "fit": self.fit,
                "tail_p90": self.tail_p90, "tail_p99": self.tail_p99}

    @classmethod
    def from_dict(cls, d: dict) -> "AnalyticalModel":
        """Inverse of to_dict."""
        if d.get("version") != 4 or d.get("categories") != list(CATEGORIES):
            raise ValueError("analytical model from another netcut version")
        return cls(d["params"], d["device_key"], d["backend"], d["threads"], d["environment"], d["fit"],
                   d.get("tail_p90", 1.05), d.get("tail_p99", 1.15))


def accuracy_metrics(estimated: np.ndarray, measured: np.ndarray) -> dict:
    """MAPE (%) and share of estimates within ±10% of measurement (nn-Meter's headline metric)."""
    rel = np.abs(np.asarray(estimated) - np.asarray(measured)) / np.asarray(measured)
    return {"mape_pct": float(100 * rel.mean()), "within10_pct": float(100 * (rel <= 0.10).mean()), "n": int(rel.size)}


def fit_analytical(samples: dict[str, tuple[list[np.ndarray], np.ndarray]], backend: str, threads: int, env: dict,
                   device_key: str, tails: tuple[float, float] = (1.05, 1.15), cross_validate: bool = True,
                   ) -> AnalyticalModel:
    """Fit on {network: (TRN node tables, measured p50)}; report in-sample and leave-one-network-out quality."""
    names = list(samples)
    trns = [t for n in names for t in samples[n][0]]
    y = np.concatenate([samples[n][1] for n in names])
    model = AnalyticalModel(fit_coefficients(trns, y), device_key, backend, threads, env, {}, *tails)
    fit: dict = {"in_sample": accuracy_metrics(model.predict(trns), y), "per_network": {},
                 "leave_one_network_out": {}}
    held_pred, held_true = [], []
    for name in names:
        fit["per_network"][name] = accuracy_metrics(model.predict(samples[name][0]), samples[name][1])
        if cross_validate and len(names) > 1:
            rest = [n for n in names if n != name]
            params = fit_coefficients([t for n in rest for t in samples[n][0]],
                                      np.concatenate([samples[n][1] for n in rest]))
            pred = np.array([trn_features(r) for r in samples[name][0]]) @ np.array(params)
            fit["leave_one_network_out"][name] = accuracy_metrics(pred, samples[name][1])
            held_pred.append(pred)
            held_true.append(samples[name][1])
    if held_pred:
        fit["leave_one_network_out"]["overall"] = accuracy_metrics(np.concatenate(held_pred), np.concatenate(held_true))
    model.fit = fit
    return model


def estimate_analytical(traced: TracedNetwork, cuts: list[CutPoint], model: AnalyticalModel,
                        num_classes: int = 10) -> EstimatorRun:
    """Predict every TRN from its structure alone: nothing is executed."""
    start = time.perf_counter()
    p50 = np.maximum(model.predict([trn_nodes(traced, c, num_classes) for c in cuts]), 1e-3)
    estimates = {c.name: Estimate(float(v), float(v * model.tail_p90), float(v * model.tail_p99))
                 for c, v in zip(cuts, p50)}
    return EstimatorRun("analytical", estimates, time.perf_counter() - start, {"model_fit": model.fit})


def stats_to_estimate(stats: LatencyStats) -> Estimate:
    """A measured latency used as an estimate."""
    return Estimate(stats.p50, stats.p90, stats.p99)

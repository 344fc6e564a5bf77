"""The analytical estimator: a per-device model of a TRN's latency from its structure alone; nothing is executed.

Its parts live together: the features of a TRN, the fit, the fitted model and its storage, and the calibration
that measures networks on this device to fit it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netcut.errors import NetcutError
from netcut.fsutil import read_json, write_json
from netcut.graph import NodeInfo, TracedNetwork, ancestors, find_cuts
from netcut.latency.backends import RuntimeSession
from netcut.latency.estimators import EstimatorRun, accuracy_metrics
from netcut.latency.estimators.measured import measure_trns
from netcut.latency.harness import device_key, environment
from netcut.latency.settings import ProfileSettings
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint, Percentiles

# Networks whose TRNs calibrate the analytical model by default: several families, small enough for a CPU.
DEFAULT_CALIBRATION = ("torchvision:mobilenet_v2", "torchvision:resnet18", "torchvision:squeezenet1_1",
                       "torchvision:shufflenet_v2_x1_0", "torchvision:mnasnet1_0", "torchvision:regnet_x_400mf")

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


def _category(info: NodeInfo) -> int | None:
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
    for node in ancestors(traced.node(cut.name)):
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
    def from_dict(cls, d: dict) -> AnalyticalModel:
        """Inverse of to_dict."""
        if d.get("version") != 4 or d.get("categories") != list(CATEGORIES):
            raise ValueError("analytical model from another netcut version")
        return cls(d["params"], d["device_key"], d["backend"], d["threads"], d["environment"], d["fit"],
                   d.get("tail_p90", 1.05), d.get("tail_p99", 1.15))


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
    estimates = {c.name: Percentiles(float(v), float(v * model.tail_p90), float(v * model.tail_p99))
                 for c, v in zip(cuts, p50)}
    return EstimatorRun("analytical", estimates, time.perf_counter() - start, {"model_fit": model.fit})


def model_path(backend: str, env: dict[str, Any], precision: str = "fp32") -> Path:
    """Where the fitted analytical model of this device/backend/precision/threads is kept by default."""
    base = Path(os.environ.get("NETCUT_CACHE", Path.home() / ".cache" / "netcut"))
    return base / f"analytical-{backend}-{precision}-{device_key(env)}.json"


def calibrate(session: RuntimeSession, settings: ProfileSettings, input_size: int = 224,
              networks: tuple[str, ...] = DEFAULT_CALIBRATION, reporter: Reporter = QUIET,
              save_to: Path | None = None) -> AnalyticalModel:
    """Measure the TRNs of a calibration set of networks on this device and fit the analytical model."""
    from netcut.backbones import load_backbone
    from netcut.graph import trace

    threads = settings.harness.resolved_threads()
    env = environment(session.name, threads, session.versions())
    samples, tails = {}, []
    for name in networks:
        reporter.note(f"calibrating the analytical model: {name}")
        traced = trace(load_backbone(name, "none"), input_size)
        cuts = find_cuts(traced, settings.granularity)
        run = measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter)
        samples[name] = ([trn_nodes(traced, c, settings.num_classes) for c in cuts],
                         np.array([run.estimates[c.name].p50 for c in cuts]))
        tails += [(run.estimates[c.name].p90 / run.estimates[c.name].p50,
                   run.estimates[c.name].p99 / run.estimates[c.name].p50) for c in cuts]
    tail = np.median(np.array(tails), axis=0)
    model = fit_analytical(samples, session.name, threads, env, device_key(env), (float(tail[0]), float(tail[1])))
    if save_to is not None:
        write_json(save_to, model.to_dict())
    return model


def load_model(path: Path) -> AnalyticalModel:
    """Read a fitted analytical model."""
    data = read_json(path, "analytical model")
    if not isinstance(data, dict) or data.get("kind") != "netcut-analytical-model":
        raise NetcutError(f"{str(path)!r} is not a netcut analytical model", "refit with `netcut calibrate`")
    try:
        return AnalyticalModel.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise NetcutError(f"analytical model {str(path)!r} is unusable ({exc})", "refit with `netcut calibrate`") \
            from exc


def model_for(session: RuntimeSession, settings: ProfileSettings, reporter: Reporter = QUIET) -> AnalyticalModel:
    """The model named in the settings, else this device's default one (fitted on first use)."""
    env = environment(session.name, settings.harness.resolved_threads(), session.versions())
    given = Path(settings.analytical_model) if settings.analytical_model else None
    path = given or model_path(session.name, env, session.precision)
    if path.is_file():
        model = load_model(path)
        if model.backend != session.name:
            raise NetcutError(f"analytical model {str(path)!r} was fitted for {model.backend}, not {session.name}",
                              f"run `netcut calibrate --backend {session.name}`")
        return model
    if given is not None:
        raise NetcutError(f"analytical model {str(path)!r} does not exist", "run `netcut calibrate --out PATH` first")
    reporter.note(f"no analytical model for this device and backend yet: fitting one (saved to {path})")
    return calibrate(session, settings, reporter=reporter, save_to=path)


def estimate(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: predictions of this device's fitted model (ground truth is not measured here)."""
    return estimate_analytical(traced, cuts, model_for(session, settings, reporter), settings.num_classes)

"""The analytical estimator at kernel level: a TRN's latency as the sum of its kernels' predicted latencies plus
the runtime's per-call overhead; nothing of the estimated network is executed.

`netcut calibrate` samples kernel configurations of every kind (fused convolutions, depthwise, pointwise, grouped,
elementwise, pools, concatenations, linear), times each alone in the runtime (converted as a one-kernel model; with
the runtime's per-node profiler where it has one, so that the layout conversions around a lone kernel are not
counted), then samples more where its regressors disagree most (adaptive sampling, nn-Meter's idea). One random
forest per kind predicts a kernel's latency from its shapes. The calibration is stored as the measured samples, not as
pickled models: the forests are refitted (deterministically, in about a second) when it is loaded. It belongs to
one device × runtime (and version) × precision × threads and is refused elsewhere.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from netcut.errors import NetcutError
from netcut.fsutil import read_json, write_json
from netcut.graph import TracedNetwork
from netcut.latency.estimators import EstimatorRun, accuracy_metrics
from netcut.latency.harness import HarnessConfig, device_key, environment
from netcut.latency.kernels import KINDS, Kernel, kernel_module, trn_kernels
from netcut.latency.session import RuntimeSession
from netcut.latency.settings import ProfileSettings
from netcut.paths import cache_dir
from netcut.progress import QUIET, Reporter
from netcut.types import CutPoint, Percentiles

VERSION = 9  # 9: transformer kernels (matmul, attention, layernorm) and networks
# First samples per kind, then adaptive rounds; convolutions vary most, so they get more.
INITIAL_SAMPLES = {"conv": 48, "pwconv": 64, "dwconv": 48, "gconv": 24, "linear": 16, "eltwise": 32, "unary": 16,
                   "pool": 16, "gpool": 24, "concat": 16, "matmul": 48, "attention": 24, "layernorm": 16}
ADAPTIVE_ROUNDS = 2
SYNTHETIC_NETWORKS = 20  # random networks whose TRNs fit how kernels combine
# A calibration times DEFAULT_SCALE times the counts above: a quarter of that left most unseen TRNs outside ±10%
# (the pointwise regressor's held-out error was about three times larger); QUICK_SCALE is for trying it out.
DEFAULT_SCALE = 4.0
QUICK_SCALE = 0.25
# How long a calibration takes, as measured on a 2-core x86 machine (docs/benchmarks/analytical_kernels*.md):
# what a user is told before starting one. A slower device takes longer.
CALIBRATION_MINUTES = {DEFAULT_SCALE: "5-15", QUICK_SCALE: "1-2"}
BATCH = 24  # kernels timed together in one session (runtimes without a per-node profiler)
PROFILE_RUNS = 40  # profiled runs per kernel (after the runtime's warm-up runs)
FLOOR_MS = 1e-4


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _channels(rng: np.random.Generator, low: int = 8, high: int = 1280) -> int:
    c = _log_uniform(rng, low, high)
    return int(max(low, round(c / 8) * 8)) if c > 16 else int(round(c))


def sample_kernel(kind: str, rng: np.random.Generator) -> Kernel:
    """A random kernel of a kind, in the ranges image CNNs use at 64–224 px inputs."""
    h = int(round(_log_uniform(rng, 4, 112)))
    # GELU follows the convolutions of hybrids (PoolFormer-style MLPs, FastViT, EfficientFormer)
    act = str(rng.choice(["none", "relu", "relu6", "silu", "hardswish", "gelu"], p=[0.3, 0.25, 0.15, 0.1, 0.1, 0.1]))
    stride = int(rng.choice([1, 2], p=[0.75, 0.25]))
    out = max(1, -(-h // stride))
    if kind == "conv":
        if rng.random() < 0.1:  # a transformer's patch embedding: non-overlapping k x k patches, stride k
            k = int(rng.choice([2, 4, 8, 16]))
            h = int(round(_log_uniform(rng, 4 * k, 256))) if k < 16 else int(rng.choice([64, 96, 128, 160, 224]))
            cin = 3 if rng.random() < 0.6 else _channels(rng, 16, 384)
            return Kernel(kind, cin, _channels(rng, 48, 768), h, h, h // k, h // k, k, k, 1, "none")
        if rng.random() < 0.15:  # a stem: the image at its full size, usually halved
            h = int(round(_log_uniform(rng, 32, 256)))
            stride = int(rng.choice([1, 2], p=[0.2, 0.8]))
            k = int(rng.choice([3, 5, 7], p=[0.7, 0.1, 0.2]))
            out = max(1, -(-h // stride))
            return Kernel(kind, 3, _channels(rng, 8, 96), h, h, out, out, k, stride, 1, act)
        h = min(h, 56)
        out = max(1, -(-h // stride))
        k = int(rng.choice([3, 5, 7], p=[0.8, 0.1, 0.1]))
        return Kernel(kind, _channels(rng, 8, 512), _channels(rng, 8, 512), h, h, out, out, k, stride, 1, act)
    if kind == "pwconv":
        if rng.random() < 0.15:  # squeeze-excitation and classifier-like 1x1 convolutions
            return Kernel(kind, _channels(rng, 8, 1280), _channels(rng, 8, 1280), 1, 1, 1, 1, 1, 1, 1, act)
        stride = 1 if rng.random() < 0.9 else 2
        out = max(1, -(-h // stride))
        return Kernel(kind, _channels(rng), _channels(rng), h, h, out, out, 1, stride, 1, act)
    if kind == "dwconv":
        c = _channels(rng, 8, 1152)
        return Kernel(kind, c, c, h, h, out, out, int(rng.choice([3, 5], p=[0.7, 0.3])), stride, c, act)
    if kind == "gconv":
        groups = int(rng.choice([2, 4, 8, 16]))
        per = int(rng.choice([8, 16, 24, 32, 48, 64]))
        return Kernel(kind, groups * per, groups * per, h, h, out, out, 3, stride, groups, act)
    if kind == "linear":
        return Kernel(kind, _channels(rng, 16, 2560), _channels(rng, 2, 1000))
    if kind == "eltwise":
        c = _channels(rng, 8, 1280)
        return Kernel(kind, c, c, h, h, h, h, act=str(rng.choice(["none", "relu"])), broadcast=bool(rng.random() < 0.3))
    if kind == "unary":
        c = _channels(rng, 8, 1280)
        return Kernel(kind, c, c, h, h, h, h, act=str(rng.choice(["relu", "relu6", "silu", "hardswish", "sigmoid",
                                                                   "other"])))
    if kind == "pool":
        c = _channels(rng, 16, 512)
        h = max(h, 8)
        if rng.random() < 0.3:  # same-size pooling (PoolFormer and EfficientFormer mix tokens with it)
            return Kernel(kind, c, c, h, h, h, h, 3, 1)
        return Kernel(kind, c, c, h, h, -(-h // 2), -(-h // 2), int(rng.choice([2, 3])), 2)
    if kind == "gpool":
        c = _channels(rng, 8, 1280)
        return Kernel(kind, c, c, h, h, 1, 1)
    if kind == "concat":
        c = _channels(rng, 8, 512)
        return Kernel(kind, c, 2 * c, h, h, h, h)
    return _token_kernel(kind, rng)


def _token_kernel(kind: str, rng: np.random.Generator) -> Kernel:
    """A random transformer kernel on `rows` tokens (times heads for products inside attention), in the ranges
    ViTs, Swin windows and hybrids use at 64–224 px."""
    rows = int(round(_log_uniform(rng, 4, 3136)))
    if kind == "matmul":
        if rng.random() < 0.25:  # inside attention: (heads x T) rows of a head's width against T keys
            width = int(rng.choice([16, 32, 48, 64]))
            return Kernel(kind, width, int(round(_log_uniform(rng, 4, 600))), rows, 1, rows, 1)
        return Kernel(kind, _channels(rng, 32, 1536), _channels(rng, 32, 3072), rows, 1, rows, 1)
    if kind == "attention":
        tokens = int(round(_log_uniform(rng, 4, 600)))
        width = int(rng.choice([32, 64]))
        heads = int(rng.choice([1, 2, 3, 4, 6, 8, 12]))
        return Kernel(kind, heads * width, heads * width, tokens, 1, tokens, 1, groups=heads)
    if kind == "layernorm":
        c = _channels(rng, 32, 1536)
        return Kernel(kind, c, c, rows, 1, rows, 1)
    raise ValueError(f"unknown kernel kind {kind!r}")


def _forest(seed: int = 0) -> Any:
    from sklearn.ensemble import RandomForestRegressor

    return RandomForestRegressor(n_estimators=120, min_samples_leaf=2, max_features=0.8, random_state=seed)


def _base_features(k: Kernel) -> list[float]:
    """What a kernel's time grows with: its work, the activations it reads and writes, and a constant."""
    return [k.macs() / 1e6, k.cin * k.hin * k.win / 1e6, k.cout * k.hout * k.wout / 1e6, 1.0]


def _nnls_relative(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares on relative error: every sample counts alike, however fast."""
    from scipy.optimize import nnls

    w = 1.0 / np.maximum(y, FLOOR_MS)
    return np.asarray(nnls(x * w[:, None], y * w, maxiter=50 * x.shape[1])[0])


CONV_KINDS = ("conv", "pwconv", "dwconv", "gconv")
# each kind of convolution gets its own factor: measured alone, pointwise and depthwise ones ran faster than inside
# mobile networks, dense ones slower than inside residual networks (one shared factor left MobileNets ~15% under
# and ResNets ~10% over)
CONV_GROUPS = (("dense and grouped convolutions", ("conv", "gconv")), ("pointwise convolutions", ("pwconv",)),
               ("depthwise convolutions", ("dwconv",)), ("matrix products and attention", ("matmul", "attention")))
COMBINE_TERMS = (*(name for name, _ in CONV_GROUPS), "concatenations", "other kernels",
                 "layout conversions saved (M elements)",
                 "network input layout conversion (M elements)", "per kernel", "per call")


def combine_row(kernels: list[Kernel], predicted: np.ndarray) -> list[float]:
    """A TRN's terms for how its kernels combine in a network: the predicted time of each kind of convolution, of
    concatenations (OpenVINO writes their inputs in place inside a network: a term of their own raised its synthetic
    networks' TRNs within ±10%, each network left out in turn, by 3-5 points in three calibrations), the
    rest, the activations its convolutions read and write (a runtime converts their layout once per network, not
    per kernel: counted negative), the network input's elements (converted to the runtime's layout once per call:
    profiled kernels leave that conversion out; with OpenVINO this term raised the share of synthetic networks'
    TRNs within ±10%, each network left out of the fit in turn, from 74% to 79%), the number of kernels, and one
    call."""
    kinds = np.array([k.kind for k in kernels])
    groups = [float(predicted[np.isin(kinds, members)].sum()) for _, members in CONV_GROUPS]
    boundary = sum(_base_features(k)[1] + _base_features(k)[2] for k in kernels if k.kind in CONV_KINDS)
    network_input = _base_features(kernels[0])[1] if kernels else 0.0
    concat = float(predicted[kinds == "concat"].sum())
    grouped = [kind for _, members in CONV_GROUPS for kind in members]
    other = float(predicted[~np.isin(kinds, (*grouped, "concat"))].sum())
    return [*groups, concat, other, -boundary, network_input, float(len(kernels)), 1.0]


@dataclass
class KernelModel:
    """Per-kind regressors fitted on kernels measured on one device, and that device's per-call overhead."""

    samples: dict[str, list[tuple[Kernel, float]]]  # kind -> (kernel, measured ms minus the call overhead)
    overhead_ms: float
    device_key: str
    backend: str
    precision: str
    threads: int
    environment: dict[str, Any]
    fit: dict[str, Any] = field(default_factory=dict)  # quality per kind, held-out samples; cost
    tail_p90: float = 1.05
    tail_p99: float = 1.15
    combine: list[float] | None = None  # coefficients of combine_row, fitted on synthetic networks; None: a sum
    # the synthetic networks' TRNs (kernels, measured ms) the combination was fitted on: kept in memory only
    synthetic: list[tuple[list[Kernel], float]] = field(default_factory=list, repr=False)
    _linear: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _forests: dict[str, Any] = field(default_factory=dict, repr=False)

    def refit(self) -> KernelModel:
        """Fit every kind's regressor on its samples: a non-negative linear model of work and bytes, and a forest
        on the log of what it gets wrong (the linear part extrapolates; the forest learns shapes it handles
        well or badly)."""
        self._linear, self._forests = {}, {}
        for kind, rows in self.samples.items():
            if len(rows) >= 4:
                y = np.array([max(ms, FLOOR_MS) for _, ms in rows])
                base = np.array([_base_features(k) for k, _ in rows])
                self._linear[kind] = _nnls_relative(base, y)
                forest = _forest()
                forest.fit(np.array([k.features() for k, _ in rows]),
                           np.log(y / np.maximum(base @ self._linear[kind], FLOOR_MS)))
                self._forests[kind] = forest
        return self

    def _kind(self, kernel: Kernel) -> str:
        kind = kernel.kind if kernel.kind in self._forests else "unary"
        if kind not in self._forests:
            raise NetcutError(f"the analytical model has no {kernel.kind} kernels", "recalibrate: `netcut calibrate`")
        return kind

    def predict_kernels(self, kernels: list[Kernel]) -> np.ndarray:
        """Each kernel's predicted latency (ms, call overhead excluded) when run alone."""
        out = np.zeros(len(kernels))
        by_kind: dict[str, list[int]] = {}
        for i, k in enumerate(kernels):
            by_kind.setdefault(self._kind(k), []).append(i)
        for kind, index in by_kind.items():
            chosen = [kernels[i] for i in index]
            base = np.maximum(np.array([_base_features(k) for k in chosen]) @ self._linear[kind], FLOOR_MS)
            out[index] = base * np.exp(self._forests[kind].predict(np.array([k.features() for k in chosen])))
        return out

    def spread(self, kernels: list[Kernel]) -> np.ndarray:
        """How much the trees of each kernel's forest disagree (std of their log predictions): where to sample."""
        forest = self._forests[kernels[0].kind]
        x = np.array([k.features() for k in kernels])
        return np.std([tree.predict(x) for tree in forest.estimators_], axis=0)

    def predict(self, kernel_lists: list[list[Kernel]]) -> np.ndarray:
        """Predicted p50 (ms) of networks given as kernel lists: their kernels combined as fitted on synthetic
        networks (before that fit: call overhead plus the sum)."""
        out = []
        for kernels in kernel_lists:
            predicted = self.predict_kernels(kernels)
            if self.combine is None:
                out.append(self.overhead_ms + float(predicted.sum()))
            else:
                out.append(float(np.dot(combine_row(kernels, predicted), self.combine)))
        return np.array(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the measured samples (the forests are refitted on load)."""
        return {"kind": "netcut-analytical-model", "version": VERSION, "kinds": list(KINDS),
                "samples": {k: [[kernel.to_json(), ms] for kernel, ms in rows] for k, rows in self.samples.items()},
                "overhead_ms": self.overhead_ms, "device_key": self.device_key, "backend": self.backend,
                "precision": self.precision, "threads": self.threads, "environment": self.environment,
                "fit": self.fit, "tail_p90": self.tail_p90, "tail_p99": self.tail_p99, "combine": self.combine}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KernelModel:
        """Inverse of to_dict."""
        if d.get("version") != VERSION:
            raise ValueError(f"made by another netcut version (format {d.get('version')}, this one reads {VERSION})")
        samples = {k: [(Kernel(**kernel), float(ms)) for kernel, ms in rows] for k, rows in d["samples"].items()}
        return cls(samples, float(d["overhead_ms"]), d["device_key"], d["backend"], d["precision"], int(d["threads"]),
                   d["environment"], d.get("fit", {}), float(d.get("tail_p90", 1.05)),
                   float(d.get("tail_p99", 1.15)), d.get("combine")).refit()


def _overhead_module() -> tuple[torch.nn.Module, torch.Tensor]:
    """A call that does next to nothing, shaped like a kernel model: what every call costs before any kernel."""
    return kernel_module(Kernel("unary", 1, 1, 1, 1, 1, 1, act="relu"))


def measure_kernels(session: RuntimeSession, kernels: list[Kernel], harness: HarnessConfig,
                    reporter: Reporter = QUIET) -> tuple[np.ndarray, float, list[tuple[float, float]]]:
    """Time kernels, each alone as a one-kernel model; returns their latencies (ms), the median per-call overhead,
    and each kernel's (p90/p50, p99/p50).

    Where the runtime has a per-node profiler (ONNX Runtime, OpenVINO), a kernel's latency is the time of its own
    nodes: a one-kernel model also converts its input and output to and from the runtime's blocked layout, which a
    kernel inside a network does not (measured with ONNX Runtime: the sum of isolated kernels' whole calls was 7-60%
    above the TRN, the sum of their own nodes within 3% of the TRN's nodes). Elsewhere, whole calls are timed BATCH
    at a time beside a model that does next to nothing, whose time (the call overhead) is subtracted."""
    out = np.zeros(len(kernels))
    overheads: list[float] = []
    tails: list[tuple[float, float]] = []
    with reporter.bar(f"timing {len(kernels)} kernels ({session.name}, {session.precision})", len(kernels)) as advance:
        done = 0
        while done < len(kernels) and session.profiles is not False:
            module, x = kernel_module(kernels[done])
            profile = session.profile(module, x, PROFILE_RUNS, _calibration(x, session.precision))
            if profile is None:
                break
            work = profile.work
            out[done] = max(work.p50, FLOOR_MS)
            tails.append((work.p90 / max(work.p50, FLOOR_MS), work.p99 / max(work.p50, FLOOR_MS)))
            done += 1
            advance()
        for start in range(done, len(kernels), BATCH):
            batch = kernels[start:start + BATCH]
            stats = _time_with_overhead(session, batch, harness)
            overhead = stats["overhead"].p50
            overheads.append(overhead)
            for i in range(len(batch)):
                s = stats[f"k{i}"]
                out[start + i] = max(s.p50 - overhead, FLOOR_MS)
                tails.append((s.p90 / s.p50, s.p99 / s.p50))
                advance()
    if not overheads:  # profiled: the call overhead is timed once, on its own
        overheads.append(_time_with_overhead(session, [], harness)["overhead"].p50)
    return out, float(np.median(overheads)), tails


def _time_with_overhead(session: RuntimeSession, kernels: list[Kernel], harness: HarnessConfig) -> dict[str, Any]:
    """Whole calls of one-kernel models ("k0", "k1", ...) timed interleaved beside the call-overhead model."""
    module, x = _overhead_module()
    session.add("overhead", module, x, _calibration(x, session.precision))
    for i, kernel in enumerate(kernels):
        module, x = kernel_module(kernel)
        session.add(f"k{i}", module, x, _calibration(x, session.precision))
    stats = session.time(["overhead"] + [f"k{i}" for i in range(len(kernels))], harness).stats
    session.clear()
    return stats


def _calibration(x: torch.Tensor, precision: str) -> list[np.ndarray] | None:
    if precision == "fp32":
        return None
    generator = torch.Generator().manual_seed(2)
    return [torch.randn(x.shape, generator=generator).numpy() for _ in range(8)]


def calibrate(session: RuntimeSession, settings: ProfileSettings, reporter: Reporter = QUIET,
              save_to: Path | None = None, scale: float = DEFAULT_SCALE, seed: int = 0) -> KernelModel:
    """Sample kernels of every kind, time them on this device, then sample more where the forests disagree most;
    `scale` multiplies every count (QUICK_SCALE for a quick calibration)."""
    started = time.perf_counter()
    threads = settings.harness.resolved_threads()
    env = environment(session.name, threads, session.versions(), session.worker.machine)
    rng = np.random.default_rng(seed)
    counts = {k: max(4, int(round(n * scale))) for k, n in INITIAL_SAMPLES.items()}
    first = [sample_kernel(kind, rng) for kind, n in counts.items() for _ in range(n)]
    minutes = CALIBRATION_MINUTES.get(scale)
    reporter.note(f"calibrating the analytical model: {len(first)} kernels of {len(counts)} kinds, then "
                  f"{ADAPTIVE_ROUNDS} adaptive rounds"
                  + (f" (about {minutes} min on a 2-core x86 machine)" if minutes else ""))
    measured, overhead, tails = measure_kernels(session, first, settings.harness, reporter)
    samples: dict[str, list[tuple[Kernel, float]]] = {k: [] for k in counts}
    for kernel, ms in zip(first, measured):
        samples[kernel.kind].append((kernel, float(ms)))
    model = KernelModel(samples, overhead, device_key(env), session.name, session.precision, threads, env).refit()
    held_out: dict[str, dict[str, float]] = {}
    for _ in range(ADAPTIVE_ROUNDS):
        chosen: list[Kernel] = []
        for kind, n in counts.items():
            pool = [sample_kernel(kind, rng) for _ in range(6 * max(2, n // 4))]
            order = np.argsort(-model.spread(pool))
            chosen += [pool[i] for i in order[:max(2, n // 4)]]
        ms, _, more_tails = measure_kernels(session, chosen, settings.harness, reporter)
        tails += more_tails
        for kind in counts:
            index = [i for i, k in enumerate(chosen) if k.kind == kind]
            # how well the forests predicted these kernels before they joined them
            held_out[kind] = accuracy_metrics(model.predict_kernels([chosen[i] for i in index]), ms[index])
        for kernel, value in zip(chosen, ms):
            model.samples[kernel.kind].append((kernel, float(value)))
        model.refit()
    tail = np.median(np.array(tails), axis=0)
    model.tail_p90, model.tail_p99 = float(tail[0]), float(tail[1])
    networks = fit_combination(model, session, settings, rng, max(4, int(round(SYNTHETIC_NETWORKS * scale))),
                               reporter)
    model.fit = {"kernels": {k: len(v) for k, v in model.samples.items()},
                 "kernel_timing": "runtime profiler, own nodes" if session.profiles else "whole calls minus overhead",
                 "last_round_before_refit": held_out, "overhead_ms": overhead, "synthetic_networks": networks,
                 "minutes": (time.perf_counter() - started) / 60}
    if save_to is not None:
        write_json(save_to, model.to_dict())
    return model


def fit_combination(model: KernelModel, session: RuntimeSession, settings: ProfileSettings,
                    rng: np.random.Generator, count: int, reporter: Reporter = QUIET) -> dict[str, Any]:
    """Measure every block TRN of `count` random synthetic networks and fit how predicted kernels combine in a
    network (model.combine); returns the fit's quality, in sample and leaving each synthetic network out."""
    from netcut.backbones import from_module
    from netcut.graph import find_cuts, trace
    from netcut.latency.estimators.measured import measure_trns
    from netcut.latency.synthetic_networks import synthetic_network

    rows: list[list[list[float]]] = []
    truth: list[np.ndarray] = []
    all_kernels: list[list[Kernel]] = []
    for i in range(count):
        net = synthetic_network(rng)
        traced = trace(from_module(net, name=f"synthetic{i}", input_size=net.input_size))
        cuts = find_cuts(traced, "block")
        run = measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter)
        kernels = [trn_kernels(traced, c, settings.num_classes) for c in cuts]
        all_kernels += kernels
        rows.append([combine_row(k, model.predict_kernels(k)) for k in kernels])
        truth.append(np.array([run.estimates[c.name].p50 for c in cuts]))
    x, y = np.vstack([np.array(r) for r in rows]), np.concatenate(truth)
    model.synthetic = [(k, float(ms)) for k, ms in zip(all_kernels, y)]
    model.combine = _nnls_relative(x, y).tolist()
    held_pred = []
    for i in range(count):
        rest = [j for j in range(count) if j != i]
        coef = _nnls_relative(np.vstack([np.array(rows[j]) for j in rest]), np.concatenate([truth[j] for j in rest]))
        held_pred.append(np.array(rows[i]) @ coef)
    return {"networks": count, "trns": int(len(y)), "coefficients": dict(zip(COMBINE_TERMS, model.combine)),
            "in_sample": accuracy_metrics(x @ np.array(model.combine), y),
            "leave_one_network_out": accuracy_metrics(np.concatenate(held_pred), y)}


def estimate_analytical(traced: TracedNetwork, cuts: list[CutPoint], model: KernelModel,
                        num_classes: int = 10) -> EstimatorRun:
    """Predict every TRN from its kernels: nothing is executed."""
    start = time.perf_counter()
    p50 = np.maximum(model.predict([trn_kernels(traced, c, num_classes) for c in cuts]), 1e-3)
    estimates = {c.name: Percentiles(float(v), float(v * model.tail_p90), float(v * model.tail_p99))
                 for c, v in zip(cuts, p50)}
    return EstimatorRun("analytical", estimates, time.perf_counter() - start, {"model_fit": model.fit})


def model_path(backend: str, env: dict[str, Any], precision: str = "fp32") -> Path:
    """Where the calibration of this device/backend/precision/threads is kept by default."""
    return cache_dir() / f"analytical-{backend}-{precision}-{device_key(env)}.json"


def load_model(path: Path) -> KernelModel:
    """Read a calibration (and refit its forests)."""
    data = read_json(path, "analytical model")
    if not isinstance(data, dict) or data.get("kind") != "netcut-analytical-model":
        raise NetcutError(f"{str(path)!r} is not a netcut analytical model", "refit with `netcut calibrate`")
    try:
        return KernelModel.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise NetcutError(f"analytical model {str(path)!r} is unusable ({exc})", "refit with `netcut calibrate`") \
            from exc


def check_belongs(model: KernelModel, path: Path, session: RuntimeSession, env: dict[str, Any]) -> None:
    """Refuse a calibration made for another runtime, precision, or device/thread count."""
    if model.backend != session.name or model.precision != session.precision:
        raise NetcutError(f"analytical model {str(path)!r} was calibrated for {model.backend} {model.precision}, not "
                          f"{session.name} {session.precision}",
                          f"run `netcut calibrate --backend {session.name} --precision {session.precision}`")
    if model.device_key != device_key(env):
        raise NetcutError(f"analytical model {str(path)!r} was calibrated on another device or thread count "
                          f"({model.environment.get('cpu')}, {model.threads} threads)",
                          "calibrate on this device: `netcut calibrate`")


def model_for(session: RuntimeSession, settings: ProfileSettings, reporter: Reporter = QUIET) -> KernelModel:
    """The calibration named in the settings, else this device's default one; none is a clear error naming
    `netcut calibrate` and how long it takes (a calibration is never started unasked)."""
    env = environment(session.name, settings.harness.resolved_threads(), session.versions(), session.worker.machine)
    given = Path(settings.analytical_model) if settings.analytical_model else None
    path = given or model_path(session.name, env, session.precision)
    if path.is_file():
        model = load_model(path)
        check_belongs(model, path, session, env)
        return model
    if given is not None:
        raise NetcutError(f"analytical model {str(path)!r} does not exist", "run `netcut calibrate --out PATH` first")
    threads = settings.harness.resolved_threads()
    raise NetcutError(f"no analytical model for this device with {session.name} {session.precision} at {threads} "
                      f"thread(s) yet",
                      f"calibrate one first: `netcut calibrate --backend {session.name} --precision "
                      f"{session.precision} --threads {threads}` (about {CALIBRATION_MINUTES[DEFAULT_SCALE]} min on "
                      f"a 2-core x86 machine, longer on a slower device; --quick: about "
                      f"{CALIBRATION_MINUTES[QUICK_SCALE]} min, less accurate), or use --estimator empirical")


def estimate(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
             reporter: Reporter, ground_truth: bool = False) -> EstimatorRun:
    """Registry entry: predictions of this device's calibration (ground truth is not measured here)."""
    return estimate_analytical(traced, cuts, model_for(session, settings, reporter), settings.num_classes)

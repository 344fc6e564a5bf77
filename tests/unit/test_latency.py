"""Latency: statistics, interleaving, both backends on tiny models, estimators, tables and fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netcut.backbones import from_module
from netcut.errors import NetcutError
from netcut.graph import find_cuts, trace
from netcut.latency.backends import RuntimeSession, get_backend, register_backend
from netcut.latency.estimators import accuracy_metrics, available_estimators, get_estimator, register_estimator
from netcut.latency.estimators.analytical import (
    CATEGORIES,
    FEATURES,
    AnalyticalModel,
    estimate_analytical,
    fit_analytical,
    trn_features,
    trn_nodes,
)
from netcut.latency.estimators.empirical import estimate_empirical
from netcut.latency.estimators.measured import measure_trns
from netcut.latency.harness import ChainCall, HarnessConfig, measure_interleaved, summarize
from netcut.latency.profile import profile
from netcut.latency.settings import ProfileSettings
from netcut.latency.table import LatencyTable
from netcut.latency.workers import WorkerPool
from tiny_models import Chain, Residual

FAST = HarnessConfig(warmup=1, repeats=5, threads=1)


def deep_chain(depth: int = 6, width: int = 16) -> torch.nn.Sequential:
    """A plain chain whose stages cost about the same: latency must grow with depth."""
    layers = [torch.nn.Conv2d(3, width, 3, 1, 1), torch.nn.ReLU()]
    for _ in range(depth):
        layers += [torch.nn.Conv2d(width, width, 3, 1, 1), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def test_summarize_percentiles_and_spread():
    stats = summarize(list(range(1, 101)))
    assert stats.p50 == pytest.approx(50.5) and stats.p90 == pytest.approx(90.1)
    assert stats.p99 == pytest.approx(99.01) and stats.min == 1 and stats.n == 100
    assert stats.mean == pytest.approx(50.5) and stats.std == pytest.approx(np.std(range(1, 101)))
    assert stats.percentile("p90") == stats.p90


def test_interleaving_alternates_order_and_discards_warmup():
    log = []
    calls = {"a": lambda: log.append("a"), "b": lambda: log.append("b")}
    stats = measure_interleaved(calls, HarnessConfig(warmup=2, repeats=3, threads=1).timing())
    assert log == ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"]
    assert stats["a"].n == 3 and stats["b"].n == 3


def test_slower_call_measures_slower():
    import time

    stats = measure_interleaved({"fast": lambda: None, "slow": lambda: time.sleep(0.003)},
                                HarnessConfig(warmup=1, repeats=5, threads=1).timing())
    assert stats["slow"].p50 > 2.5 > stats["fast"].p50


def test_sync_is_called_before_each_clock_read():
    synced = []
    measure_interleaved({"a": lambda: None}, HarnessConfig(warmup=0, repeats=4, threads=1).timing(),
                        sync=lambda: synced.append(1))
    assert len(synced) == 4


def test_chain_call_times_each_stage():
    import time

    chain = ChainCall([lambda v: v + 1, lambda v: (time.sleep(0.002), v)[1]], 0)
    for _ in range(3):
        chain()
    first, second = chain.stats(skip=1)
    assert first.n == 2 and second.p50 > 1.5 > first.p50


@pytest.mark.parametrize("bad", [dict(threads=0), dict(threads=-2), dict(repeats=0), dict(batch=0), dict(warmup=-1)])
def test_bad_harness_settings_are_rejected(bad):
    with pytest.raises(NetcutError):
        HarnessConfig(**bad).validate()


def test_unknown_backend_lists_the_known_ones():
    with pytest.raises(NetcutError, match="litert, onnxruntime, openvino, torch"):
        get_backend("tensorrt-nope")


@pytest.fixture(scope="module")
def pool():
    with WorkerPool() as workers:
        yield workers


def session(pool, backend: str, precision: str = "fp32") -> RuntimeSession:
    engine = get_backend(backend)
    return RuntimeSession(engine, pool.get(engine.runtime, 1, engine.name), precision)


def test_a_new_backend_plugs_in_without_touching_the_core(pool):
    from netcut.latency.backends.onnxruntime_backend import convert_onnx

    class Recording:
        """A backend of its own that converts through ONNX and counts what it converted."""

        name = "recording"
        runtime = "onnxruntime"
        format = "onnx"
        precisions = ("fp32",)

        def __init__(self) -> None:
            self.converted = 0

        def convert(self, model, example, precision="fp32", calibration=None):
            self.converted += 1
            return convert_onnx(model, example)

    instance = Recording()
    register_backend("recording", instance)
    traced = trace(from_module(Chain(), input_size=32))
    run = measure_trns(traced, find_cuts(traced), session(pool, "recording"), FAST)
    assert instance.converted == 3 and set(run.estimates) == {c.name for c in find_cuts(traced)}
    assert all(size > 0 for size in run.sizes.values())


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_empirical_estimates_are_monotone_along_a_chain(pool, backend):
    traced = trace(from_module(deep_chain(), input_size=48))
    cuts = find_cuts(traced, "block")
    assert len(cuts) >= 6
    run = estimate_empirical(traced, cuts, session(pool, backend), HarnessConfig(warmup=2, repeats=9, threads=1))
    p50 = [run.estimates[c.name].p50 for c in cuts]
    # within noise: each estimate at least 85% of the previous one, and the deepest clearly above the shallowest
    assert all(b >= 0.85 * a for a, b in zip(p50, p50[1:])), p50
    assert p50[-1] > 2 * p50[0]
    assert all(run.estimates[c.name].p90 >= run.estimates[c.name].p50 for c in cuts)
    sizes = [run.sizes[c.name] for c in cuts]
    assert sizes == sorted(sizes) and sizes[0] > 0  # deeper TRNs hold more weights


def test_empirical_estimate_is_close_to_measurement_on_a_chain(pool):
    traced = trace(from_module(deep_chain(8, 32), input_size=64))
    cuts = find_cuts(traced, "block")
    run = estimate_empirical(traced, cuts, session(pool, "onnxruntime"),
                             HarnessConfig(warmup=2, repeats=15, threads=1), ground_truth=cuts)
    est = np.array([run.estimates[c.name].p50 for c in cuts])
    truth = np.array([run.measured[c.name].p50 for c in cuts])
    assert accuracy_metrics(est, truth)["mape_pct"] < 30  # generous: a shared CI machine is noisy
    exact = measure_trns(traced, cuts, session(pool, "onnxruntime"), FAST)
    # TRN file sizes derived from the segments' files are close to the files of the whole TRNs
    assert all(abs(run.sizes[c.name] - exact.sizes[c.name]) <= 0.05 * exact.sizes[c.name] for c in cuts)


def _random_trn(rng: np.random.Generator) -> np.ndarray:
    n = int(rng.integers(5, 40))
    return np.column_stack([rng.integers(0, len(CATEGORIES), n), rng.uniform(0, 50, n), rng.uniform(0, 5, n)])


def test_analytical_fit_recovers_a_known_cost_model_and_cross_validates():
    rng = np.random.default_rng(0)
    true = rng.uniform(0.001, 0.05, len(FEATURES))
    samples = {}
    for net in ("a", "b", "c", "d"):
        trns = [_random_trn(rng) for _ in range(15)]
        samples[net] = (trns, np.array([trn_features(t) @ true for t in trns]))
    model = fit_analytical(samples, "torch", 1, {}, "key")
    assert model.fit["in_sample"]["mape_pct"] < 1.0
    assert model.fit["leave_one_network_out"]["overall"]["within10_pct"] == 100.0
    again = AnalyticalModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.predict(samples["a"][0]), samples["a"][1], rtol=1e-3)


def test_analytical_estimator_runs_nothing_and_orders_cuts_by_work(monkeypatch):
    traced = trace(from_module(deep_chain(), input_size=48))
    cuts = find_cuts(traced, "block")
    trns = [trn_nodes(traced, c) for c in cuts]
    measured = np.array([0.1 + 0.01 * trn_features(t)[:len(CATEGORIES)].sum() for t in trns])
    model = fit_analytical({"self": (trns, measured)}, "torch", 1, {}, "key")
    monkeypatch.setattr(torch.nn.Module, "__call__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ran")))
    run = estimate_analytical(traced, cuts, model)
    p50 = [run.estimates[c.name].p50 for c in cuts]
    assert p50 == sorted(p50) and p50[-1] > p50[0]


def test_table_round_trip_and_fingerprint_refusal(tmp_path):
    traced = trace(from_module(Chain(), input_size=32))
    table = profile(traced, ProfileSettings(estimator="measured", harness=FAST), measure_all=True)
    assert all(r.size_bytes > 0 for r in table.cuts) and table.precision == "fp32"
    assert all(r.measured is not None and r.measured == r.estimated for r in table.cuts)
    path = table.save(tmp_path / "t.json")
    again = LatencyTable.load(path)
    assert again == table
    again.check_matches(traced.fingerprint(), "Chain", "onnxruntime")
    other = trace(from_module(Residual(), input_size=32))
    with pytest.raises(NetcutError, match="was made for"):
        again.check_matches(other.fingerprint(), "Residual")
    bigger = trace(from_module(Chain(), input_size=64))
    assert bigger.fingerprint() != traced.fingerprint()
    with pytest.raises(NetcutError, match="backend 'onnxruntime', not 'litert'"):
        again.check_matches(traced.fingerprint(), "Chain", "litert")
    with pytest.raises(NetcutError, match="measured at fp32, not int8"):
        again.check_matches(traced.fingerprint(), "Chain", "onnxruntime", precision="int8")


def test_fingerprint_ignores_weights():
    a, b = Chain(), Chain()
    torch.nn.init.constant_(b.stem[0].weight, 0.5)
    assert trace(from_module(a, input_size=32)).fingerprint() == trace(from_module(b, input_size=32)).fingerprint()


def test_corrupt_and_foreign_tables_are_refused(tmp_path):
    truncated = tmp_path / "truncated.json"
    truncated.write_text('{"kind": "netcut-latency-table", "cuts": [')
    with pytest.raises(NetcutError, match="not valid JSON"):
        LatencyTable.load(truncated)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"hello": 1}))
    with pytest.raises(NetcutError, match="not a netcut latency table"):
        LatencyTable.load(foreign)
    with pytest.raises(NetcutError, match="does not exist"):
        LatencyTable.load(tmp_path / "missing.json")


def test_an_estimator_plugs_in_through_the_registry():
    from netcut.latency.estimators import EstimatorRun
    from netcut.types import Percentiles

    def constant(traced, cuts, session, settings, reporter, ground_truth=False):
        return EstimatorRun("constant", {c.name: Percentiles(1.0, 2.0, 3.0) for c in cuts}, 0.0)

    register_estimator("constant", constant)
    assert "constant" in available_estimators() and get_estimator("constant") is constant
    traced = trace(from_module(Chain(), input_size=32))
    table = profile(traced, ProfileSettings(estimator="constant", harness=FAST))
    assert {r.estimated.p90 for r in table.cuts} == {2.0}
    with pytest.raises(NetcutError, match="unknown estimator 'guess'"):
        get_estimator("guess")

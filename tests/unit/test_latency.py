"""Latency: statistics, interleaving, both backends on tiny models, estimators, tables and fingerprints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from netcut.backbones import from_module
from netcut.errors import NetcutError
from netcut.graph import find_cuts, trace
from netcut.latency.backends import get_backend, register_backend
from netcut.latency.estimators import accuracy_metrics, available_estimators, get_estimator, register_estimator
from netcut.latency.estimators.empirical import estimate_empirical
from netcut.latency.estimators.measured import measure_trns
from netcut.latency.harness import ChainCall, HarnessConfig, measure_interleaved, summarize
from netcut.latency.profile import profile
from netcut.latency.session import RuntimeSession
from netcut.latency.settings import ProfileSettings
from netcut.latency.table import LatencyTable
from netcut.latency.workers import WorkerPool
from netcut_agent.timing import TimingConfig
from tiny_models import Chain, Residual

pytestmark = [pytest.mark.runtime]

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
    # each timed call follows one untimed settling call of the same model
    assert log == ["a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b", "b", "b", "a", "a", "a", "a", "b", "b"]
    assert stats["a"].n == 3 and stats["b"].n == 3


def test_settling_calls_are_not_timed_and_can_be_turned_off():
    import time

    first = [True]

    def slow_once() -> None:  # only the very first call is slow: it is the settling call, never timed
        if first[0]:
            first[0] = False
            time.sleep(0.05)

    stats = measure_interleaved({"a": slow_once}, TimingConfig(warmup=0, repeats=2, settle=1))
    assert stats["a"].n == 2 and max(stats["a"].samples) < 10
    log = []
    calls = {"a": lambda: log.append("a")}
    measure_interleaved(calls, TimingConfig(warmup=0, repeats=3, settle=0))
    assert log == ["a", "a", "a"]


def test_a_chain_settles_without_recording_its_stages():
    chain = ChainCall([lambda v: v + 1, lambda v: v * 2], 0)
    stats = measure_interleaved({"c": chain}, TimingConfig(warmup=1, repeats=3, settle=1))
    assert stats["c"].n == 3 and [s.n for s in chain.stats(skip=1)] == [3, 3]


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
    # three TRNs, and the reference network (converted once per backend)
    assert instance.converted == 3 + 1 and set(run.estimates) == {c.name for c in find_cuts(traced)}
    assert all(size > 0 for size in run.sizes.values())


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_empirical_estimates_cover_every_cut_in_a_real_runtime(pool, backend):
    """The estimator end to end in a real runtime: every cut estimated, tails above medians, file sizes growing
    with depth (how fast this host is decides no verdict here; the paced tests below check the numbers)."""
    traced = trace(from_module(deep_chain(), input_size=48))
    cuts = find_cuts(traced, "block")
    assert len(cuts) >= 6
    run = estimate_empirical(traced, cuts, session(pool, backend), HarnessConfig(warmup=2, repeats=9, threads=1))
    assert set(run.estimates) == {c.name for c in cuts} and set(run.anchors) < set(run.estimates)
    assert all(run.estimates[c.name].p90 >= run.estimates[c.name].p50 > 0 for c in cuts)
    sizes = [run.sizes[c.name] for c in cuts]
    assert sizes == sorted(sizes) and sizes[0] > 0  # deeper TRNs hold more weights
    if backend == "onnxruntime":  # sizes derived from the segments' files are close to the whole TRNs' files
        exact = measure_trns(traced, cuts, session(pool, backend), FAST)
        assert all(abs(run.sizes[c.name] - exact.sizes[c.name]) <= 0.05 * exact.sizes[c.name] for c in cuts)


def test_empirical_estimates_follow_the_cost_of_each_cut(pool, paced, monkeypatch):
    """On a runtime that costs 1 ms a call plus 0.3 ms per MFLOP (whatever the host): estimates grow with depth
    and stay close to each TRN measured whole."""
    monkeypatch.setenv("PACED_MS_PER_MFLOP", "0.3")
    backend, _ = paced
    traced = trace(from_module(deep_chain(8, 16), input_size=48))
    cuts = find_cuts(traced, "block")
    run = estimate_empirical(traced, cuts, RuntimeSession(backend, pool.get(backend.runtime, 1, backend.name)),
                             HarnessConfig(warmup=1, repeats=7, threads=1), ground_truth=cuts)
    est = np.array([run.estimates[c.name].p50 for c in cuts])
    truth = np.array([run.measured[c.name].p50 for c in cuts])
    assert all(b > a for a, b in zip(truth, truth[1:])), truth  # the runtime's own cost model, as set
    assert all(b > a for a, b in zip(est, est[1:])), est
    estimated = [i for i, c in enumerate(cuts) if c.name not in run.anchors]
    assert estimated and accuracy_metrics(est[estimated], truth[estimated])["within10_pct"] == 100, (est, truth)


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


def test_an_estimators_accuracy_counts_only_what_it_estimated():
    from netcut.latency.estimators import EstimatorRun, estimated_accuracy
    from netcut.types import Percentiles

    def at(ms):
        return Percentiles(ms, ms, ms)

    # two anchors measured exactly, two estimates: one 5% off, one 20% off
    run = EstimatorRun("empirical", {"a": at(1.0), "b": at(2.1), "c": at(3.0), "d": at(4.8)}, 0.0, anchors=("a", "c"))
    truth = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    accuracy = estimated_accuracy(run, ["a", "b", "c", "d"], truth)
    assert accuracy["n"] == 2 and accuracy["anchors"] == 2
    assert accuracy["within10_pct"] == 50.0 and accuracy["mape_pct"] == pytest.approx(12.5)
    everything_measured = EstimatorRun("empirical", {"a": at(1.0)}, 0.0, anchors=("a",))
    assert estimated_accuracy(everything_measured, ["a"], truth) == {"mape_pct": None, "within10_pct": None, "n": 0,
                                                                     "anchors": 1}

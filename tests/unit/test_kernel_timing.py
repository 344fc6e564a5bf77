"""Timing a lone kernel for the analytical calibration: its own nodes under the runtime's profiler (ONNX Runtime,
OpenVINO), whole calls minus the call overhead where a runtime has no profiler (PyTorch eager here)."""

from __future__ import annotations

import pytest

from netcut.latency.backends import get_backend
from netcut.latency.estimators.analytical import measure_kernels
from netcut.latency.harness import HarnessConfig
from netcut.latency.kernels import Kernel, kernel_module
from netcut.latency.session import RuntimeSession
from netcut.latency.workers import WorkerPool

pytestmark = [pytest.mark.runtime]

SMALL = Kernel("conv", 16, 16, 16, 16, 16, 16, 3, 1, 1, "relu")
LARGE = Kernel("conv", 16, 16, 64, 64, 64, 64, 3, 1, 1, "relu")  # 16 times the work
HARNESS = HarnessConfig(warmup=2, repeats=8, threads=1)


@pytest.fixture(scope="module")
def pool():
    with WorkerPool() as workers:
        yield workers


def open_session(pool: WorkerPool, backend: str) -> RuntimeSession:
    engine = get_backend(backend)
    return RuntimeSession(engine, pool.get(engine.runtime, 1, engine.name))


@pytest.mark.parametrize(("backend", "op"), [("onnxruntime", "Conv"), ("openvino", "Convolution")])
def test_the_profiler_counts_a_kernels_own_nodes_and_grows_with_its_work(pool, backend, op):
    session = open_session(pool, backend)
    profiles = [session.profile(*kernel_module(kernel), runs=20) for kernel in (SMALL, LARGE)]
    for profile in profiles:
        assert profile is not None and profile.work.n == 20
        types = {key.split(":", 1)[0] for key in profile.nodes}
        assert op in types
        assert types & set(profile.bookkeeping)  # the output slice (and layout conversions) are there, not counted
        own = sum(ms for key, ms in profile.nodes.items() if key.split(":", 1)[0] not in profile.bookkeeping)
        assert profile.work.p50 == pytest.approx(own, rel=0.5)
        assert profile.work.p50 <= sum(profile.nodes.values()) * 1.5
    assert session.profiles is True
    assert profiles[1].work.p50 > 4 * profiles[0].work.p50


def test_calibration_times_profiled_kernels_and_the_call_overhead(pool):
    session = open_session(pool, "onnxruntime")
    ms, overhead, tails = measure_kernels(session, [SMALL, LARGE], HARNESS)
    assert session.profiles is True
    assert ms[1] > 4 * ms[0] > 0 and overhead > 0
    assert len(tails) == 2 and all(p90 >= 1 and p99 >= p90 for p90, p99 in tails)


def test_a_runtime_without_a_profiler_times_whole_calls_minus_the_call_overhead(pool):
    session = open_session(pool, "torch")
    assert session.profile(*kernel_module(SMALL), runs=5) is None and session.profiles is False
    ms, overhead, tails = measure_kernels(session, [SMALL, LARGE], HARNESS)
    assert ms[1] > ms[0] > 0 and overhead > 0 and len(tails) == 2

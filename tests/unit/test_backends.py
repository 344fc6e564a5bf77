"""Every runtime backend on a tiny trained CNN: fp32 parity with PyTorch, int8 that runs and agrees on top-1 with
fp32 on structured images, worker processes that isolate runtimes, keep serving after a bad model, and say clearly
when a runtime is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from netcut.errors import NetcutError
from netcut.latency.backends import check_precision, get_backend
from netcut.latency.session import RuntimeSession
from netcut.latency.workers import RuntimeWorker, WorkerError, WorkerPool
from tiny_models import Chain

pytestmark = [pytest.mark.runtime]

ALL = ["onnxruntime", "openvino", "litert", "torch"]
INT8 = ["onnxruntime", "openvino", "litert"]


@pytest.fixture(scope="module")
def stripes() -> np.ndarray:
    """96 structured images at 32 px: row or column stripes (the label) of varied period, phase and contrast, with
    a little noise, so that a trained network's outputs really differ from image to image."""
    rng = np.random.default_rng(0)
    axis = np.arange(32, dtype=np.float32)
    images = []
    for i in range(96):
        period, phase, contrast = 2 + i % 5, (i // 5) % 4, 0.3 + 0.7 * ((i // 20) % 4) / 3
        wave = contrast * np.sin(2 * np.pi * (axis + phase) / period)
        plane = np.tile(wave[:, None], (1, 32)) if i % 2 else np.tile(wave[None, :], (32, 1))
        images.append(np.repeat(plane[None], 3, axis=0) + 0.1 * rng.standard_normal((3, 32, 32)))
    return np.stack(images).astype(np.float32)


@pytest.fixture(scope="module")
def trained(stripes) -> torch.nn.Module:
    """Chain trained to tell rows from columns: its logits differ from image to image."""
    torch.manual_seed(0)
    model = Chain(num_classes=2)
    labels = torch.tensor([i % 2 for i in range(len(stripes))])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x = torch.from_numpy(stripes)
    for _ in range(40):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    # traced, like every network netcut converts: it then pickles with torch.nn classes only (the torch worker
    # cannot import this test's module)
    return torch.fx.symbolic_trace(model.eval())


@pytest.fixture(scope="module")
def pool():
    with WorkerPool() as workers:
        yield workers


def open_session(pool: WorkerPool, backend: str, precision: str = "fp32", images=None) -> RuntimeSession:
    engine = get_backend(backend)
    return RuntimeSession(engine, pool.get(engine.runtime, 1, engine.name), precision, images)


def outputs(session: RuntimeSession, images: np.ndarray) -> np.ndarray:
    return np.concatenate([session.run("m", images[i:i + 1])[0] for i in range(len(images))])


@pytest.mark.parametrize("backend", ALL)
def test_fp32_conversion_matches_pytorch(pool, trained, stripes, backend):
    session = open_session(pool, backend)
    size = session.add("m", trained, torch.from_numpy(stripes[:1]))
    got = outputs(session, stripes)
    session.clear()
    with torch.inference_mode():
        expected = trained(torch.from_numpy(stripes)).numpy()
    assert size > 0 and got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4
    assert len(set(np.round(expected[:, 0], 3))) > 10  # structured inputs: the outputs really differ


@pytest.mark.parametrize("backend", INT8)
def test_int8_runs_smaller_and_agrees_on_top1_with_fp32(pool, trained, stripes, backend):
    calibration = [stripes[i:i + 1] for i in range(0, len(stripes), 2)]
    fp32, int8 = open_session(pool, backend), open_session(pool, backend, "int8")
    example = torch.from_numpy(stripes[:1])
    fp32_size = fp32.add("m", trained, example)
    expected = outputs(fp32, stripes)
    fp32.clear()
    int8_size = int8.add("m", trained, example, calibration)
    got = outputs(int8, stripes)
    int8.clear()
    assert got.dtype == np.float32 and got.shape == expected.shape  # float in, float out, as deployed
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
    assert np.abs(got - expected).max() > 1e-6  # it really is quantized
    assert int8_size < fp32_size


def test_torch_has_no_int8_and_precisions_are_checked():
    with pytest.raises(NetcutError, match="backend torch does not support int8"):
        check_precision(get_backend("torch"), "int8")
    with pytest.raises(NetcutError, match="unknown precision 'int4'"):
        check_precision(get_backend("onnxruntime"), "int4")


def _maps(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_each_runtime_runs_in_a_process_of_its_own_without_the_others(pool, trained, stripes):
    ort = open_session(pool, "onnxruntime")
    lite = open_session(pool, "litert")
    assert ort.worker.pid != lite.worker.pid
    maps = _maps(ort.worker.pid)
    assert "onnxruntime" in maps and "libtorch" not in maps and "tensorflow" not in maps.lower()
    assert "onnxruntime" not in _maps(lite.worker.pid)


def test_a_bad_model_is_refused_and_the_worker_keeps_serving(pool, trained, stripes):
    ort = open_session(pool, "onnxruntime")
    with pytest.raises(WorkerError, match="ONNX Runtime cannot load this model"):
        ort.add_payload("bad", b"this is not an onnx file", (1, 3, 32, 32))
    ort.add("good", trained, torch.from_numpy(stripes[:1]))
    assert ort.run("good", stripes[:1])[0].shape == (1, 2)
    ort.clear()


def test_a_missing_runtime_is_a_clear_error():
    with pytest.raises(WorkerError, match="not installed"):
        RuntimeWorker("no_such_package.runtime:Runtime", 1, "imaginary")

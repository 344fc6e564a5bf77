"""Runtime backends: where a TRN is converted, timed and deployed.

A backend converts a PyTorch module into the file its runtime loads (here, with torch) and names the runtime that
runs it; the runtime lives in a worker process of its own (netcut_agent's timing core), so runtimes never share a
process while one is timed. Backends are registered by import path and loaded lazily; `register_backend` or an
entry point in the group `netcut.backends` adds one without touching the core.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from netcut.errors import NetcutError
from netcut.latency.steadiness import REFERENCE, SessionTiming, TimingLog, load_reference, time_steadily

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netcut.latency.harness import HarnessConfig
    from netcut.latency.workers import Worker
    from netcut_agent.bench import NodeProfile, TimingResult

PRECISIONS = ("fp32", "int8")
CONVERTING = threading.Lock()  # one conversion at a time in this process
MIN_CALIBRATION = 64  # images to calibrate int8 for accuracy; latency alone may use synthetic ones


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Hide what exporters print (whole IR graphs on failure, from Python and native code alike)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fd in saved:
                os.dup2(devnull.fileno(), fd)
            yield
    finally:
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)


def synthetic(example: torch.Tensor, count: int = 16) -> list[np.ndarray]:
    """Random-normal calibration inputs for latency alone (where no images are at hand)."""
    rng = np.random.default_rng(0)
    return [rng.standard_normal(tuple(example.shape)).astype(np.float32) for _ in range(count)]


class Backend(Protocol):
    """Converts a module into a model file for one runtime, at a precision."""

    name: str
    runtime: str  # what the worker loads: a netcut_agent runtime name, or 'module:Class'
    format: str  # the file format: onnx, tflite, torch
    precisions: tuple[str, ...]

    def convert(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                calibration: list[np.ndarray] | None = None) -> bytes:
        """The model file: float32 input and output; int8 is static PTQ calibrated on `calibration` inputs."""
        ...


_REGISTRY: dict[str, str | Backend] = {
    "onnxruntime": "netcut.latency.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "netcut.latency.backends.openvino_backend:OpenVinoBackend",
    "litert": "netcut.latency.backends.litert_backend:LiteRTBackend",
    "torch": "netcut.latency.backends.torch_backend:TorchBackend",
}
DEFAULT_BACKEND = "onnxruntime"


def register_backend(name: str, target: str | Backend) -> None:
    """Add a backend: an import path 'module:Class' or an instance."""
    _REGISTRY[name] = target


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="netcut.backends")}


def available_backends() -> list[str]:
    """Names of the registered backends (including entry points)."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def get_backend(name: str) -> Backend:
    """A backend by name, with a clear error for an unknown one."""
    target = _REGISTRY.get(name) or _entry_points().get(name)
    if target is None:
        raise NetcutError(f"unknown backend {name!r}", f"use one of: {', '.join(available_backends())}")
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    backend: Backend = getattr(importlib.import_module(module_name), attr)()
    return backend


def check_precision(backend: Backend, precision: str) -> None:
    """Refuse a precision the backend cannot convert to."""
    if precision not in PRECISIONS:
        raise NetcutError(f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISIONS)}")
    if precision not in backend.precisions:
        raise NetcutError(f"backend {backend.name} does not support {precision}",
                          f"use --precision {','.join(backend.precisions)} with it, or another --backend")


def converted(backend: Backend, model: nn.Module, example: torch.Tensor, precision: str,
              calibration: list[np.ndarray] | None) -> bytes:
    """The backend's model file of `model`, one conversion at a time in this process: the sessions of several
    devices run side by side in threads, and torch's exporters keep global state."""
    with CONVERTING:
        return backend.convert(model, example, precision, calibration)


class RuntimeSession:
    """A backend's worker with the models converted for it at one precision: add, time, run."""

    def __init__(self, backend: Backend, worker: Worker, precision: str = "fp32",
                 images: np.ndarray | None = None, log: TimingLog | None = None, target: str = "local") -> None:
        check_precision(backend, precision)
        self.backend, self.worker, self.precision = backend, worker, precision
        self.images = images  # int8 calibration images (N, 3, H, W), normalised; None: synthetic, latency alone
        self.names: list[str] = []
        self.log = log if log is not None else TimingLog()
        self.target = target
        self.last_timing: SessionTiming | None = None
        self.profiles: bool | None = None  # whether the runtime times nodes one by one (None: not asked yet)

    @property
    def name(self) -> str:
        """The backend's name."""
        return self.backend.name

    def versions(self) -> dict[str, Any]:
        """Runtime versions and the precision, recorded with measurements."""
        return {**self.worker.versions, "precision": self.precision, "format": self.backend.format}

    def add(self, name: str, model: nn.Module, example: torch.Tensor,
            calibration: list[np.ndarray] | None = None) -> int:
        """Convert `model` and load it in the worker under `name`; returns the model file's size in bytes."""
        payload = converted(self.backend, model.eval(), example, self.precision, calibration)
        self.add_payload(name, payload, tuple(example.shape))
        return len(payload)

    def add_payload(self, name: str, payload: bytes, shape: tuple[int, ...]) -> None:
        """Load an already converted model file."""
        self.worker.load(name, payload, shape)
        self.names.append(name)

    def time(self, timed: list[str], harness: HarnessConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models (and chains of them) interleaved in the worker, with the reference network: a session
        during which the machine's speed moved is repeated (see netcut.latency.steadiness)."""
        if REFERENCE not in self.names:
            load_reference(self.backend, self.worker)
            self.names.append(REFERENCE)
        result, self.last_timing = time_steadily(self.worker, timed, harness.timing(), chains, self.log,
                                                 (self.target, self.name, self.worker.threads),
                                                 harness.timing_tolerance_pct)
        return result

    def profile(self, model: nn.Module, example: torch.Tensor, runs: int,
                calibration: list[np.ndarray] | None = None) -> NodeProfile | None:
        """Convert `model` and time its own nodes with the runtime's profiler, `runs` times; None where the worker
        or its runtime has no per-node profiler (then only whole calls can be timed)."""
        method = getattr(self.worker, "profile", None)  # workers on a device time whole calls only
        if method is None or self.profiles is False:
            self.profiles = False
            return None
        payload = converted(self.backend, model.eval(), example, self.precision, calibration)
        result: NodeProfile | None = method(payload, tuple(example.shape), runs)
        self.profiles = result is not None
        return result

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on a batch."""
        return self.worker.run(name, x)

    def clear(self) -> None:
        """Unload what this session loaded."""
        if self.names:
            self.worker.unload(self.names)
            self.names = []

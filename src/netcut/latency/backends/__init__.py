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
from typing import TYPE_CHECKING, Protocol

import numpy as np

from netcut.errors import NetcutError

if TYPE_CHECKING:
    import torch
    from torch import nn


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

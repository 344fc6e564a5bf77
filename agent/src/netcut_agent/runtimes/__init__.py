"""Runtimes that load a model file and run it: ONNX Runtime, OpenVINO, LiteRT (and any registered by path).

A runtime is a class built with a thread count, with `load(payload) -> runner` (runner: float32 array -> list of
float32 arrays) and `versions()`. Each is imported only when asked for, so a device installs just the one it uses.
A runtime that can time each node of a model (ONNX Runtime's and OpenVINO's profilers) also has
`profile(payload, x, runs) -> NodeTimes` and names the node types it adds around a model's own work (`BOOKKEEPING`:
layout reorders, the slice that keeps one element of the output).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

Runner = Callable[[np.ndarray], list[np.ndarray]]
# node ("type:name") -> its time (ms) in each profiled run, in run order
NodeTimes = dict[str, list[float]]
PROFILE_WARMUP = 10  # runs before the profiled ones (first runs allocate and pack weights)


class ModelError(ValueError):
    """The model file is malformed, hostile or not runnable by this runtime."""


class RuntimeMissing(RuntimeError):
    """The runtime's package is not installed here."""


class Runtime(Protocol):
    """Loads model files of one format and runs them on the CPU with a fixed thread count."""

    name: str
    format: str  # the file format it loads: onnx, tflite, openvino (IR), torch

    def load(self, payload: bytes) -> Runner:
        """A runner for the model in `payload` (raises ModelError if it cannot be loaded)."""
        ...

    def versions(self) -> dict[str, str]:
        """The runtime's version(s), recorded with every measurement."""
        ...


RUNTIMES: dict[str, str] = {
    "onnxruntime": "netcut_agent.runtimes.onnxruntime:OnnxRuntime",
    "openvino": "netcut_agent.runtimes.openvino:OpenVino",
    "litert": "netcut_agent.runtimes.litert:LiteRT",
}


def get_runtime(name: str, threads: int) -> Runtime:
    """A runtime by name (or by import path 'module:Class'), with its thread count fixed."""
    target = RUNTIMES.get(name, name)
    module_name, _, attr = target.partition(":")
    if not attr:
        raise KeyError(f"unknown runtime {name!r} (known: {', '.join(RUNTIMES)})")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuntimeMissing(f"runtime {name!r} is not installed here ({exc})") from exc
    runtime: Runtime = getattr(module, attr)(threads)
    return runtime


def with_input_shape(run: Runner, shape: Any) -> Runner:
    """The runner, carrying its model's input shape when every dimension is fixed (`input_shape(runner)` reads it)."""
    dims = [] if shape is None else list(shape)
    fixed = bool(dims) and all(isinstance(d, (int, np.integer)) and d > 0 for d in dims)
    run.input_shape = tuple(int(d) for d in dims) if fixed else None  # type: ignore[attr-defined]
    return run


def input_shape(run: Runner) -> tuple[int, ...] | None:
    """The fixed input shape of a loaded model, if its runtime could tell."""
    shape: tuple[int, ...] | None = getattr(run, "input_shape", None)
    return shape


def import_or_missing(module: str, package: str) -> Any:
    """Import a runtime's package, or raise RuntimeMissing naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RuntimeMissing(f"{package} is not installed (pip install {package})") from exc

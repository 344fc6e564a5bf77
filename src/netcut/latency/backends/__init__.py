"""Latency backends behind one small contract: compile(model, example) -> runner; runner(input) -> output.

Backends live in a registry of import paths, loaded lazily (one module each): the core never imports a runtime.
A new backend (TensorRT, a remote device) is added with `register_backend` or an entry point in group
`netcut.backends`, without touching the core.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import nn

from netcut.errors import NetcutError

Runner = Callable[[Any], Any]  # runs one inference on a backend-native input, returns the native output


class Backend(Protocol):
    """Turns a PyTorch module into something timed on some runtime."""

    name: str

    def compile(self, model: nn.Module, example: torch.Tensor) -> Runner:
        """Convert/compile the model for this runtime; the runner maps a native input to a native output."""
        ...

    def to_native(self, x: torch.Tensor) -> Any:
        """The runtime's form of an input tensor."""
        ...

    def versions(self) -> dict:
        """Runtime versions to record with measurements."""
        ...

    def sync(self) -> Callable[[], None] | None:
        """A barrier to call before reading the clock (None on synchronous runtimes)."""
        ...


def bind(backend: Backend, model: nn.Module, example: torch.Tensor) -> Callable[[], Any]:
    """A zero-argument session: the compiled model bound to its input."""
    runner = backend.compile(model, example)
    native = backend.to_native(example)
    return lambda: runner(native)


_REGISTRY: dict[str, str] = {
    "torch": "netcut.latency.backends.torch_backend:TorchBackend",
    "onnxruntime": "netcut.latency.backends.onnxruntime_backend:OnnxRuntimeBackend",
}


def register_backend(name: str, target: str | Callable[[int], Backend]) -> None:
    """Add a backend: an import path 'module:Factory' or a factory taking the thread count."""
    _REGISTRY[name] = target  # type: ignore[assignment]


def available_backends() -> list[str]:
    """Names of the registered backends (including entry points)."""
    return sorted(set(_REGISTRY) | set(_entry_points()))


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group="netcut.backends")}


def get_backend(name: str, threads: int, device: str = "cpu") -> Backend:
    """Instantiate a backend by name."""
    target = _REGISTRY.get(name) or _entry_points().get(name)
    if target is None:
        raise NetcutError(f"unknown backend {name!r}", f"use one of: {', '.join(available_backends())}")
    if callable(target):
        return target(threads)
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)(threads=threads, device=device)

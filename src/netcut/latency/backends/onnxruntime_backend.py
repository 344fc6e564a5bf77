"""ONNX Runtime backend (CPU execution provider). Imported only when asked for."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from netcut.errors import NetcutError


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise NetcutError("onnxruntime is not installed", "pip install onnxruntime onnx (or `make test` sets it up)") \
            from exc
    return onnxruntime


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
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


def export_onnx(model: nn.Module, example: torch.Tensor, what: str = "model") -> bytes:
    """Export to ONNX bytes with torch's exporter (TorchScript-based, falling back to dynamo); name the failing op."""
    model = model.eval()
    with torch.inference_mode(False):
        example = example.detach().clone()  # an inference-mode tensor makes the TorchScript exporter fail
    errors = []
    for dynamo in (False, True):
        buffer = io.BytesIO()
        try:
            with _silenced():
                kwargs: dict[str, Any] = {"dynamo": dynamo, "input_names": ["input"], "output_names": ["output"],
                          "opset_version": 17 if not dynamo else 18}
                if dynamo:
                    kwargs["verbose"] = False
                torch.onnx.export(model, (example,), buffer, **kwargs)  # type: ignore[arg-type]
            return buffer.getvalue()
        except Exception as exc:  # exporters raise many types; the message names the op
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
    raise NetcutError(f"ONNX export of {what} failed: {errors[0]}",
                      "use --backend torch, or replace the unsupported op named above")


# ONNX Runtime's global thread pool belongs to the process and can be sized once; remember its size.
# One shared pool matters: per-session pools spin after each run and steal the cores from the next session,
# which made interleaved measurements up to 5x too slow.
_global_pool_threads: int | None = None


def _shared_pool(ort: Any, threads: int) -> None:
    global _global_pool_threads
    if _global_pool_threads is None:
        ort.set_global_thread_pool_sizes(threads, 1)
        _global_pool_threads = threads
    elif _global_pool_threads != threads:
        raise NetcutError(f"ONNX Runtime already runs with {_global_pool_threads} threads in this process; "
                          f"{threads} were asked for", "use one thread count per process (run netcut again)")


class OnnxRuntimeBackend:
    """Export with torch's ONNX exporter, run with ONNX Runtime's CPU provider at a fixed thread count."""

    name = "onnxruntime"

    def __init__(self, threads: int, device: str = "cpu") -> None:
        self.ort = _import_ort()
        self.threads = threads
        _shared_pool(self.ort, threads)

    def session(self, onnx_bytes: bytes) -> Any:
        """An InferenceSession on the shared thread pool with full graph optimisation."""
        options = self.ort.SessionOptions()
        options.use_per_session_threads = False
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        return self.ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])

    def compile(self, model: nn.Module, example: torch.Tensor) -> Callable[[Any], Any]:
        """Export and build a session; the runner feeds a numpy array and returns the first output."""
        session = self.session(export_onnx(model, example))
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})[0]

    def to_native(self, x: torch.Tensor) -> Any:
        """A contiguous float32 numpy array."""
        return x.detach().cpu().contiguous().numpy()

    def versions(self) -> dict:
        """The onnxruntime version."""
        return {"onnxruntime": self.ort.__version__, "ort_thread_pool": "global, shared by all sessions"}

    def sync(self) -> None:
        """ONNX Runtime's CPU provider is synchronous."""
        return None

"""One writer per export format: the model file's bytes and how far its outputs are from PyTorch's."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads when a file is written: the CLI lists the formats without it
    import torch
    from torch import nn

# format -> writer(model, example batch, expected outputs, what) -> (file bytes, max |export - pytorch|)
Writer = Callable[["nn.Module", "torch.Tensor", np.ndarray, str], tuple[bytes, float]]


def write_onnx(model: nn.Module, example: torch.Tensor, expected: np.ndarray, what: str) -> tuple[bytes, float]:
    """ONNX, checked by running it in ONNX Runtime."""
    import onnxruntime

    from netcut.latency.backends.onnxruntime_backend import export_onnx

    onnx_bytes = export_onnx(model, example[:1], what)
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    got = np.concatenate([session.run(None, {name: example[i:i + 1].numpy()})[0] for i in range(len(example))])
    return onnx_bytes, float(np.abs(got - expected).max())


def write_torchscript(model: nn.Module, example: torch.Tensor, expected: np.ndarray, what: str
                      ) -> tuple[bytes, float]:
    """TorchScript (traced), checked by running the scripted module."""
    import torch

    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still deployed
        scripted = torch.jit.trace(model, example[:1].clone(), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
        got = scripted(example).detach().numpy()
    return buffer.getvalue(), float(np.abs(got - expected).max())


WRITERS: dict[str, Writer] = {"onnx": write_onnx, "torchscript": write_torchscript}
FORMATS = tuple(WRITERS)

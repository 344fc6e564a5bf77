"""OpenVINO backend: the same ONNX files as ONNX Runtime (fp32, or int8 QDQ), compiled by OpenVINO's CPU plugin."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from netcut.latency.backends.onnxruntime_backend import convert_onnx


class OpenVinoBackend:
    """ONNX in, OpenVINO (CPU, latency hint, fixed inference threads) runs it."""

    name = "openvino"
    runtime = "openvino"
    format = "onnx"
    precisions = ("fp32", "int8")

    def convert(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                calibration: list[np.ndarray] | None = None) -> bytes:
        """ONNX (int8: QDQ, which OpenVINO runs as int8)."""
        return convert_onnx(model, example, precision, calibration)

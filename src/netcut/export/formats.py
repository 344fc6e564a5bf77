"""One writer per export format: the file(s) to write, and the payload its runtime loads to check them.

onnx → ONNX Runtime, tflite → LiteRT, openvino → OpenVINO IR (xml + bin), torchscript → PyTorch. int8 is the
static post-training quantization the exploration measured (ONNX QDQ, LiteRT full integer, OpenVINO from QDQ).
"""

from __future__ import annotations

import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch loads when a file is written: the CLI lists the formats without it
    import torch
    from torch import nn


@dataclass(frozen=True)
class Exported:
    """What an export writes: file suffix -> bytes ("" is OUT itself), and the payload its runtime checks."""

    files: dict[str, bytes]
    payload: bytes
    backend: str  # the backend whose worker loads the payload
    io_quantization: dict[str, Any] | None = None  # int8 .tflite: how to quantize the input, dequantize the output

    @property
    def size_bytes(self) -> int:
        """Everything written, in bytes."""
        return sum(len(b) for b in self.files.values())


Writer = Callable[["nn.Module", "torch.Tensor", str, "list[np.ndarray] | None"], Exported]


def write_onnx(model: nn.Module, example: torch.Tensor, precision: str,
               calibration: list[np.ndarray] | None) -> Exported:
    """ONNX (int8: QDQ), checked in ONNX Runtime."""
    from netcut.latency.backends.onnxruntime_backend import convert_onnx

    data = convert_onnx(model, example, precision, calibration)
    return Exported({"": data}, data, "onnxruntime")


def write_tflite(model: nn.Module, example: torch.Tensor, precision: str,
                 calibration: list[np.ndarray] | None) -> Exported:
    """.tflite (int8: full integer), checked in LiteRT."""
    from netcut.latency.backends.litert_backend import LiteRTBackend

    data = LiteRTBackend().convert(model, example, precision, calibration)
    return Exported({"": data}, data, "litert", tflite_io(data) if precision != "fp32" else None)


def tflite_io(data: bytes) -> dict[str, Any]:
    """The int8 input/output tensors' types and (scale, zero point): q = round(x/scale) + zero, x = (q - zero)·scale."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    interpreter.allocate_tensors()

    def describe(d: dict[str, Any]) -> dict[str, Any]:
        scale, zero = d.get("quantization", (0.0, 0))
        return {"dtype": np.dtype(d["dtype"]).name, "scale": float(scale), "zero_point": int(zero)}

    return {"input": describe(interpreter.get_input_details()[0]),
            "output": describe(interpreter.get_output_details()[0])}


def write_openvino(model: nn.Module, example: torch.Tensor, precision: str,
                   calibration: list[np.ndarray] | None) -> Exported:
    """OpenVINO IR (OUT is the .xml, its weights go beside it with the suffix .bin), checked in OpenVINO."""
    from netcut.errors import NetcutError
    from netcut.latency.backends.onnxruntime_backend import convert_onnx
    from netcut_agent.runtimes.openvino import pack_ir

    try:
        import openvino as ov
    except ImportError as exc:
        raise NetcutError("openvino is not installed", "pip install openvino (or `make test`)") from exc
    onnx_bytes = convert_onnx(model, example, precision, calibration)
    with tempfile.TemporaryDirectory(prefix="netcut-ir-") as tmp:
        source, xml = Path(tmp) / "model.onnx", Path(tmp) / "model.xml"
        source.write_bytes(onnx_bytes)
        ov.save_model(ov.convert_model(str(source)), str(xml), compress_to_fp16=False)
        xml_bytes, bin_bytes = xml.read_bytes(), xml.with_suffix(".bin").read_bytes()
    return Exported({"": xml_bytes, ".bin": bin_bytes}, pack_ir(xml_bytes, bin_bytes), "openvino")


def write_torchscript(model: nn.Module, example: torch.Tensor, precision: str,
                      calibration: list[np.ndarray] | None) -> Exported:
    """TorchScript (traced, fp32), checked by the same module in the torch worker."""
    import torch

    from netcut.latency.backends.torch_backend import TorchBackend

    with torch.inference_mode(False), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still deployed
        scripted = torch.jit.trace(model, example.clone(), check_trace=False)
        buffer = io.BytesIO()
        torch.jit.save(scripted, buffer)
    return Exported({"": buffer.getvalue()}, TorchBackend().convert(model, example), "torch")


WRITERS: dict[str, Writer] = {"onnx": write_onnx, "tflite": write_tflite, "openvino": write_openvino,
                              "torchscript": write_torchscript}
FORMATS = tuple(WRITERS)
FORMAT_OF_BACKEND = {"onnxruntime": "onnx", "litert": "tflite", "openvino": "openvino", "torch": "torchscript"}
PRECISIONS_OF_FORMAT = {"onnx": ("fp32", "int8"), "tflite": ("fp32", "int8"), "openvino": ("fp32", "int8"),
                        "torchscript": ("fp32",)}

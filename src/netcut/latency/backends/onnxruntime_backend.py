"""ONNX Runtime backend: torch's ONNX exporter, static int8 as QDQ; the runtime itself runs in a worker."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netcut.errors import NetcutError
from netcut.latency.backends import silenced, synthetic


def export_onnx(model: nn.Module, example: torch.Tensor, what: str = "model") -> bytes:
    """Export to ONNX bytes with torch's exporter (TorchScript-based, falling back to dynamo); name the failing op."""
    model = model.eval()
    with torch.inference_mode(False):
        example = example.detach().clone()  # an inference-mode tensor makes the TorchScript exporter fail
    errors = []
    for dynamo in (False, True):
        buffer = io.BytesIO()
        try:
            with silenced():
                kwargs: dict[str, object] = {"dynamo": dynamo, "input_names": ["input"], "output_names": ["output"],
                          "opset_version": 17 if not dynamo else 18}
                if dynamo:
                    kwargs["verbose"] = False
                torch.onnx.export(model, (example,), buffer, **kwargs)  # type: ignore[arg-type]
            return buffer.getvalue()
        except Exception as exc:  # exporters raise many types; the message names the op
            errors.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}")
    raise NetcutError(f"ONNX export of {what} failed: {errors[0]}",
                      "use another --backend (litert converts without ONNX), or replace the unsupported op")


class _Calibration:
    """Feeds calibration inputs to ONNX Runtime's quantizer, one array at a time."""

    def __init__(self, name: str, inputs: list[np.ndarray]) -> None:
        self.name, self.items = name, iter(inputs)

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self.items, None)
        return None if item is None else {self.name: np.ascontiguousarray(item, dtype=np.float32)}


FLOAT_HEAD_OPS = ("Gemm", "MatMul")  # a TRN's classifier stays float (a few thousand MACs); see quantize_onnx


def head_nodes(onnx_bytes: bytes) -> list[str]:
    """The TRN head's linear layers: their per-feature weight ranges (standardisation folded in) do not survive
    per-tensor int8, and they cost almost nothing in float, so int8 TRNs keep them float."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    return [n.name for n in model.graph.node if n.name.startswith("/head/") and n.op_type in FLOAT_HEAD_OPS]


TRANSFORMER_OPS = {"LayerNormalization", "Softmax"}


def matrix_products_only(onnx_bytes: bytes) -> list[str] | None:
    """Which ops int8 covers: in a transformer, only the matrix products and convolutions (LayerNorm, softmax and the
    residual adds stay float: quantizing them too left a tiny ViT's probe below chance); in a CNN every op ONNX
    Runtime quantizes (None)."""
    import onnx

    ops = {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}
    return ["Conv", "MatMul", "Gemm"] if ops & TRANSFORMER_OPS else None


def quantize_onnx(onnx_bytes: bytes, calibration: list[np.ndarray], per_channel: bool = True) -> bytes:
    """Static int8 QDQ: u8 activations, s8 weights per output channel (per tensor with per_channel=False),
    calibrated with MinMax on the given inputs; float input and output stay, and so does a TRN's classifier
    (head_nodes). Per-channel weights keep EfficientNet-Lite within about a point of fp32 where per-tensor ones lost
    up to 17 points, within 7% of their speed in ONNX Runtime here (docs/benchmarks/int8_recipe.md)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise NetcutError("onnxruntime's quantization tools are not installed",
                          "pip install onnxruntime onnx (or `make test`)") from exc

    class Reader(_Calibration, CalibrationDataReader):
        pass

    with tempfile.TemporaryDirectory(prefix="netcut-quant-") as tmp, silenced():
        source, prepared, target = Path(tmp) / "m.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "q.onnx"
        source.write_bytes(onnx_bytes)
        try:
            quant_pre_process(str(source), str(prepared))
        except Exception:  # symbolic shape inference fails on some graphs; quantizing without it still works
            prepared = source
        quantize_static(str(prepared), str(target), Reader("input", calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
                        nodes_to_exclude=head_nodes(prepared.read_bytes()),
                        op_types_to_quantize=matrix_products_only(prepared.read_bytes()))
        return target.read_bytes()


def convert_onnx(model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                 calibration: list[np.ndarray] | None = None) -> bytes:
    """ONNX fp32, or int8 QDQ calibrated on `calibration` (synthetic inputs of the example's shape if None)."""
    onnx_bytes = export_onnx(model, example)
    if precision == "fp32":
        return onnx_bytes
    return quantize_onnx(onnx_bytes, calibration if calibration is not None else synthetic(example))


class OnnxRuntimeBackend:
    """Export with torch's ONNX exporter; run with ONNX Runtime's CPU provider."""

    name = "onnxruntime"
    runtime = "onnxruntime"
    format = "onnx"
    precisions = ("fp32", "int8")

    def convert(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                calibration: list[np.ndarray] | None = None) -> bytes:
        """ONNX (int8: QDQ)."""
        return convert_onnx(model, example, precision, calibration)

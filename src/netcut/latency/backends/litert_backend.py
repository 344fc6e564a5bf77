"""LiteRT backend: litert-torch converts the module to .tflite; int8 is full-integer static PTQ (ai-edge-quantizer)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netcut.errors import NetcutError
from netcut.latency.backends import silenced, synthetic


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def convert_tflite(model: nn.Module, example: torch.Tensor, what: str = "model") -> bytes:
    """fp32 .tflite straight from the module (NCHW input kept, as the module takes it)."""
    try:
        with silenced():  # its import logs TensorFlow/JAX banners on stderr
            import litert_torch
    except ImportError as exc:
        raise NetcutError("litert-torch is not installed", "pip install litert-torch ai-edge-litert "
                          "ai-edge-quantizer (or `make test`), or choose another --backend") from exc
    with torch.inference_mode(False):
        example = example.detach().clone()
    try:
        with tempfile.TemporaryDirectory(prefix="netcut-tflite-") as tmp, silenced():
            path = Path(tmp) / "model.tflite"
            litert_torch.convert(model.eval(), (example,)).export(str(path))
            return path.read_bytes()
    except NetcutError:
        raise
    except Exception as exc:  # the converter raises many types; the message names the op
        raise NetcutError(f"LiteRT conversion of {what} failed: {type(exc).__name__}: {_first_line(exc)}",
                          "use another --backend (onnxruntime, openvino), or replace the op named above") from exc


# the fully connected ops of a TRN's classifier, matched by their scope (output tensor names joined by ";"):
# litert-torch names a tensor by its module path (Sequential_head), and the last one is the model's output; they
# stay float, like in ONNX int8
FLOAT_HEAD = r"(Sequential_head/.*Linear)|(^serving_default_output_\d+_output;)"


def quantize_tflite(tflite: bytes, calibration: list[np.ndarray]) -> bytes:
    """Full-integer int8 (weights and activations), MinMax-calibrated on the given inputs; a TRN's classifier stays
    float (its folded per-feature weights do not survive int8, and it costs almost nothing)."""
    try:
        with silenced():
            from ai_edge_quantizer import qtyping, quantizer, recipe
            from ai_edge_quantizer.algorithm_manager import AlgorithmName
    except ImportError as exc:
        raise NetcutError("ai-edge-quantizer is not installed", "pip install ai-edge-quantizer (or `make test`)") \
            from exc
    with tempfile.TemporaryDirectory(prefix="netcut-tflite-") as tmp, silenced():
        source = Path(tmp) / "fp32.tflite"
        source.write_bytes(tflite)
        q = quantizer.Quantizer(str(source))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        q.update_quantization_recipe(regex=FLOAT_HEAD, operation_name=qtyping.TFLOperationName.FULLY_CONNECTED,
                                     algorithm_key=AlgorithmName.NO_QUANTIZE)
        signature = "serving_default"
        name = q.get_signature_input_names(signature)[0] if hasattr(q, "get_signature_input_names") else "args_0"
        data = {signature: [{name: np.ascontiguousarray(x, dtype=np.float32)} for x in calibration]}
        result = q.quantize(q.calibrate(data, num_threads=1))
        target = Path(tmp) / "int8.tflite"
        result.export_model(str(target), overwrite=True)
        return target.read_bytes()


class LiteRTBackend:
    """litert-torch conversion; LiteRT's interpreter (XNNPACK) runs it with a fixed thread count."""

    name = "litert"
    runtime = "litert"
    format = "tflite"
    precisions = ("fp32", "int8")

    def convert(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                calibration: list[np.ndarray] | None = None) -> bytes:
        """.tflite (int8: full integer; the runtime quantizes the float input and dequantizes the output)."""
        tflite = convert_tflite(model, example)
        if precision == "fp32":
            return tflite
        return quantize_tflite(tflite, calibration if calibration is not None else synthetic(example))

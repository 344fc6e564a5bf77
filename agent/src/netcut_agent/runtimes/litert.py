"""LiteRT (TFLite) with XNNPACK; int8 models get float input and output, quantized at the boundary as deployed."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from netcut_agent.runtimes import ModelError, Runner, import_or_missing, with_input_shape


def _order(details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Outputs in the model's own order (converters name them ..._N; the interpreter may list them otherwise)."""
    def index(d: dict[str, Any]) -> tuple[int, str]:
        numbers = re.findall(r"(\d+)", str(d.get("name", "")))
        return (int(numbers[-1]) if numbers else 0, str(d.get("name", "")))

    return sorted(details, key=index)


class LiteRT:
    """.tflite files on ai-edge-litert's interpreter with a fixed number of threads."""

    name = "litert"
    format = "tflite"

    def __init__(self, threads: int) -> None:
        self.module: Any = import_or_missing("ai_edge_litert.interpreter", "ai-edge-litert")
        self.threads = threads

    def load(self, payload: bytes) -> Runner:
        """An allocated interpreter; float32 in and out, whatever the model's own tensor types."""
        try:
            interpreter = self.module.Interpreter(model_content=bytes(payload), num_threads=self.threads)
            interpreter.allocate_tensors()
        except Exception as exc:  # the flatbuffer verifier and the allocator raise ValueError/RuntimeError
            raise ModelError(f"LiteRT cannot load this model: {str(exc).splitlines()[0][:300]}") from exc
        source = interpreter.get_input_details()[0]
        outputs = _order(interpreter.get_output_details())
        in_scale, in_zero = source.get("quantization", (0.0, 0))
        quantized_in = np.dtype(source["dtype"]) in (np.dtype(np.int8), np.dtype(np.uint8))
        info = np.iinfo(source["dtype"]) if quantized_in else None

        def run(x: np.ndarray) -> list[np.ndarray]:
            if quantized_in and info is not None:
                x = np.clip(np.round(x / in_scale) + in_zero, info.min, info.max).astype(source["dtype"])
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            results = []
            for d in outputs:
                value = interpreter.get_tensor(d["index"])
                scale, zero = d.get("quantization", (0.0, 0))
                if np.dtype(d["dtype"]) in (np.dtype(np.int8), np.dtype(np.uint8)) and scale:
                    value = (value.astype(np.float32) - zero) * scale
                results.append(value)
            return results

        return with_input_shape(run, source["shape"])

    def versions(self) -> dict[str, str]:
        """The ai-edge-litert version."""
        from importlib.metadata import version

        return {"ai-edge-litert": version("ai-edge-litert")}

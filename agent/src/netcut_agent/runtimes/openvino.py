"""OpenVINO on the CPU with the latency hint, from ONNX (fp32 or QDQ int8) or from IR (xml + bin in one payload)."""

from __future__ import annotations

import io
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from netcut_agent.runtimes import PROFILE_WARMUP, ModelError, NodeTimes, Runner, import_or_missing, with_input_shape

IR_XML, IR_BIN = "model.xml", "model.bin"


def pack_ir(xml: bytes, weights: bytes) -> bytes:
    """One payload for an OpenVINO IR model: a tar of model.xml and model.bin."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in ((IR_XML, xml), (IR_BIN, weights)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unpack_ir(payload: bytes) -> tuple[bytes, bytes]:
    """(xml, bin) from pack_ir's payload; only those two members are read, never extracted to disk."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as tar:
            parts = {}
            for name in (IR_XML, IR_BIN):
                member = tar.getmember(name)
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    raise ModelError(f"{name} in the OpenVINO payload is not a file")
                parts[name] = handle.read()
    except (tarfile.TarError, KeyError) as exc:
        raise ModelError(f"not an OpenVINO IR payload (a tar of {IR_XML} and {IR_BIN}): {exc}") from exc
    return parts[IR_XML], parts[IR_BIN]


class OpenVino:
    """ONNX or IR models compiled for OpenVINO's CPU plugin with a fixed number of inference threads."""

    name = "openvino"
    format = "onnx"
    # what OpenVINO adds around a one-kernel model's work: layout reorders, the output slice, inputs and outputs
    BOOKKEEPING = frozenset({"Reorder", "Slice", "StridedSlice", "Parameter", "Result", "Constant"})

    def __init__(self, threads: int) -> None:
        self.ov: Any = import_or_missing("openvino", "openvino")
        self.core = self.ov.Core()
        self.threads = threads

    def _read(self, payload: bytes) -> Any:
        with tempfile.TemporaryDirectory(prefix="netcut-ov-") as tmp:
            if payload[257:262] == b"ustar":  # a tar: IR packed by pack_ir
                xml, weights = unpack_ir(payload)
                (Path(tmp) / IR_XML).write_bytes(xml)
                (Path(tmp) / IR_BIN).write_bytes(weights)
                return self.core.read_model(str(Path(tmp) / IR_XML))
            path = Path(tmp) / "model.onnx"
            path.write_bytes(payload)
            return self.core.read_model(str(path))

    def _compile(self, payload: bytes, profiled: bool = False) -> Any:
        try:
            # f32 pinned: on CPUs with bf16 support OpenVINO would otherwise run "fp32" models in bf16 (seen here:
            # outputs 3e-3 away from PyTorch); int8 models keep their quantized ops either way
            return self.core.compile_model(self._read(payload), "CPU", {
                "INFERENCE_NUM_THREADS": self.threads, "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32", "PERF_COUNT": profiled})
        except ModelError:
            raise
        except Exception as exc:  # OpenVINO raises RuntimeError with the parser's message
            raise ModelError(f"OpenVINO cannot load this model: {str(exc).splitlines()[0][:300]}") from exc

    def load(self, payload: bytes) -> Runner:
        """A compiled model with one reusable infer request; the runner returns every output in order."""
        compiled = self._compile(payload)
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)

        def run(x: np.ndarray) -> list[np.ndarray]:
            result = request.infer({0: x})
            return [np.asarray(result[o]) for o in outputs]

        shape = compiled.inputs[0].partial_shape
        return with_input_shape(run, list(shape.to_shape()) if shape.is_static else None)

    def profile(self, payload: bytes, x: np.ndarray, runs: int) -> NodeTimes:
        """Each executed node's time in each of `runs` runs, from OpenVINO's performance counters."""
        request = self._compile(payload, profiled=True).create_infer_request()
        for _ in range(PROFILE_WARMUP):
            request.infer({0: x})
        times: NodeTimes = {}
        for _ in range(runs):
            request.infer({0: x})
            for node in request.get_profiling_info():
                times.setdefault(f"{node.node_type}:{node.node_name}", []).append(
                    node.real_time.total_seconds() * 1000)
        return times

    def versions(self) -> dict[str, str]:
        """The openvino version."""
        return {"openvino": str(self.ov.__version__)}

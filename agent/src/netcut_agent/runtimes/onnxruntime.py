"""ONNX Runtime, CPU execution provider, one global thread pool for every session of the process."""

from __future__ import annotations

from typing import Any

import numpy as np

from netcut_agent.runtimes import ModelError, Runner, import_or_missing, with_input_shape


class OnnxRuntime:
    """ONNX files (fp32, or int8 as QDQ) on ONNX Runtime's CPU provider."""

    name = "onnxruntime"
    format = "onnx"

    def __init__(self, threads: int) -> None:
        self.ort: Any = import_or_missing("onnxruntime", "onnxruntime")
        self.threads = threads
        # Per-session pools spin after each run and steal the cores from the next session (interleaved timings
        # came out up to 5x too slow); one global pool per process avoids it.
        self.ort.set_global_thread_pool_sizes(threads, 1)

    def load(self, payload: bytes) -> Runner:
        """A session with full graph optimisation on the shared pool; the runner returns every output."""
        options = self.ort.SessionOptions()
        options.use_per_session_threads = False
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            session = self.ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for every kind of bad file
            raise ModelError(f"ONNX Runtime cannot load this model: {str(exc).splitlines()[0][:300]}") from exc
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> list[np.ndarray]:
            return list(session.run(None, {name: x}))

        return with_input_shape(run, session.get_inputs()[0].shape)

    def versions(self) -> dict[str, str]:
        """The onnxruntime version."""
        return {"onnxruntime": str(self.ort.__version__), "ort_thread_pool": "global, shared by all sessions"}

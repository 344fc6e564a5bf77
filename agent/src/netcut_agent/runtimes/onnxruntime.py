"""ONNX Runtime, CPU execution provider, one global thread pool for every session of the process."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from netcut_agent.runtimes import PROFILE_WARMUP, ModelError, NodeTimes, Runner, import_or_missing, with_input_shape


class OnnxRuntime:
    """ONNX files (fp32, or int8 as QDQ) on ONNX Runtime's CPU provider."""

    name = "onnxruntime"
    format = "onnx"
    # what ONNX Runtime adds around a one-kernel model's work: its blocked-layout conversions, and the output slice
    BOOKKEEPING = frozenset({"ReorderInput", "ReorderOutput", "Slice"})

    def __init__(self, threads: int) -> None:
        self.ort: Any = import_or_missing("onnxruntime", "onnxruntime")
        self.threads = threads
        # Per-session pools spin after each run and steal the cores from the next session (interleaved timings
        # came out up to 5x too slow); one global pool per process avoids it.
        self.ort.set_global_thread_pool_sizes(threads, 1)

    def _session(self, payload: bytes, profile_prefix: str | None = None) -> Any:
        """A session with full graph optimisation on the shared pool (profiling every node when given a prefix)."""
        options = self.ort.SessionOptions()
        options.use_per_session_threads = False
        options.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        try:
            return self.ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own types for every kind of bad file
            raise ModelError(f"ONNX Runtime cannot load this model: {str(exc).splitlines()[0][:300]}") from exc

    def load(self, payload: bytes) -> Runner:
        """A session on the shared pool; the runner returns every output."""
        session = self._session(payload)
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> list[np.ndarray]:
            return list(session.run(None, {name: x}))

        return with_input_shape(run, session.get_inputs()[0].shape)

    def _profiled_events(self, payload: bytes, x: np.ndarray, runs: int) -> list[dict[str, Any]]:
        """The events of ONNX Runtime's profiler over `runs` runs (its trace, read and deleted)."""
        with tempfile.TemporaryDirectory(prefix="netcut-ort-profile-") as tmp:
            session = self._session(payload, str(Path(tmp) / "profile"))
            feed = {session.get_inputs()[0].name: x}
            for _ in range(runs):
                session.run(None, feed)
            events: list[dict[str, Any]] = json.loads(Path(session.end_profiling()).read_text())
        return events

    def profile(self, payload: bytes, x: np.ndarray, runs: int) -> NodeTimes:
        """Each node's time in each of `runs` runs, from ONNX Runtime's profiler."""
        times: NodeTimes = {}
        for event in self._profiled_events(payload, x, PROFILE_WARMUP + runs):
            name = str(event.get("name", ""))
            if event.get("cat") == "Node" and name.endswith("_kernel_time"):
                key = f"{event.get('args', {}).get('op_name', '?')}:{name[:-len('_kernel_time')]}"
                times.setdefault(key, []).append(float(event["dur"]) / 1000)
        return {key: values[-runs:] for key, values in times.items()}

    def reported_memory(self, payload: bytes, x: np.ndarray) -> dict[str, int]:
        """What ONNX Runtime's profiler says of its CPU arena over two runs: the peak in use, the most it held
        (empty for a version that does not report it)."""
        report: dict[str, int] = {}
        for event in self._profiled_events(payload, x, 2):
            args = event.get("args", {})
            for key, field in (("arena_peak_bytes", "mem_in_use_peak"), ("arena_held_bytes", "mem_arena_held")):
                if str(args.get(field, "")).isdigit():
                    report[key] = max(report.get(key, 0), int(args[field]))
        return report

    def versions(self) -> dict[str, str]:
        """The onnxruntime version."""
        return {"onnxruntime": str(self.ort.__version__), "ort_thread_pool": "global, shared by all sessions"}

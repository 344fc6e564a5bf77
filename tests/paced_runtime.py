"""A runtime whose speed the test sets, for testing timing logic on a real worker process whatever the host's speed,
cores or scheduler. A call of a model sleeps PACED_MS milliseconds plus PACED_MS_PER_MFLOP per million FLOPs of the
model (what PacedBackend wrote into its file), times a factor from a given call on, as the JSON file named by
PACED_SCHEDULE says ({"after_calls": N, "factor": F}; rewriting the file restarts the count). Sleeping costs no
CPU, so another process, a second core or its absence changes nothing here."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np


class Paced:
    """Loaded by the worker as 'paced_runtime:Paced' (tests/ on PYTHONPATH); ignores the model file's content."""

    name = "paced"
    format = "onnx"

    def __init__(self, threads: int) -> None:
        self.threads, self.calls, self.seen, self.schedule = threads, 0, None, {}

    def _factor(self) -> float:
        path = os.environ.get("PACED_SCHEDULE")
        try:
            stamp = os.stat(path).st_mtime_ns if path else None
        except OSError:
            stamp = None
        if stamp != self.seen:
            self.seen, self.calls = stamp, 0
            self.schedule = json.loads(open(path).read()) if stamp is not None and path else {}
        self.calls += 1
        return float(self.schedule.get("factor", 1.0)) if self.calls > self.schedule.get("after_calls", 0) else 1.0

    def load(self, payload: bytes) -> Callable[[np.ndarray], list[np.ndarray]]:
        flops = int(payload.removeprefix(b"paced:") or 0)
        ms = float(os.environ.get("PACED_MS", "1.0")) + float(os.environ.get("PACED_MS_PER_MFLOP", "0")) * flops / 1e6

        def run(x: np.ndarray) -> list[np.ndarray]:
            time.sleep(ms * self._factor() / 1e3)
            return [np.zeros((x.shape[0], 10), np.float32)]

        return run

    def versions(self) -> dict[str, str]:
        return {"paced": "1"}


class PacedBackend:
    """The netcut backend of the paced runtime: its "model file" is the model's FLOP count for one input."""

    name = "paced"
    runtime = "paced_runtime:Paced"
    format = "onnx"
    precisions = ("fp32",)

    def convert(self, model, example, precision="fp32", calibration=None) -> bytes:  # noqa: ANN001
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(example)
        return b"paced:%d" % counter.get_total_flops()

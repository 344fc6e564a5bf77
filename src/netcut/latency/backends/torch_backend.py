"""PyTorch eager backend: for debugging; no deployment runtime resembles its per-op overhead.

The module is pickled here and unpickled in a torch worker process of its own (never on a device: the agent
refuses pickles).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from netcut_agent.runtimes import Runner


class TorchBackend:
    """The module itself, run eagerly under inference_mode."""

    name = "torch"
    runtime = "netcut.latency.backends.torch_backend:TorchRuntime"
    format = "torch"
    precisions = ("fp32",)

    def convert(self, model: nn.Module, example: torch.Tensor, precision: str = "fp32",
                calibration: list[np.ndarray] | None = None) -> bytes:
        """The pickled module (weights included)."""
        buffer = io.BytesIO()
        torch.save(model.eval(), buffer)
        return buffer.getvalue()


class TorchRuntime:
    """The worker side: unpickle and run eagerly at a fixed intra-op thread count."""

    name = "torch"
    format = "torch"

    def __init__(self, threads: int) -> None:
        torch.set_num_threads(threads)

    def load(self, payload: bytes) -> Runner:
        """The module from netcut's own pickle (this worker is started by netcut, on its own models only)."""
        model = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=False).eval()

        def run(x: np.ndarray) -> list[np.ndarray]:
            with torch.inference_mode():
                out = model(torch.from_numpy(x))
            outputs = out if isinstance(out, (tuple, list)) else (out,)
            return [o.numpy() for o in outputs]

        return run

    def versions(self) -> dict[str, str]:
        """The torch version."""
        return {"torch": torch.__version__}

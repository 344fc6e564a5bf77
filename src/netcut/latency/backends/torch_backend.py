"""PyTorch eager backend: for debugging; no deployment runtime resembles its per-op overhead."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from netcut.latency.backends import Runner


class TorchBackend:
    """PyTorch eager, inference mode, fixed intra-op threads."""

    name = "torch"

    def __init__(self, threads: int, device: str = "cpu") -> None:
        self.threads = threads
        self.device = torch.device(device)

    def compile(self, model: nn.Module, example: torch.Tensor) -> Runner:
        """The eval-mode model on the device, run under inference_mode."""
        torch.set_num_threads(self.threads)
        model = model.eval().to(self.device)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return model(x)

        return run

    def to_native(self, x: torch.Tensor) -> torch.Tensor:
        """The tensor on the backend's device."""
        return x.to(self.device)

    def versions(self) -> dict:
        """The torch version."""
        return {"torch": torch.__version__, "device": str(self.device)}

    def sync(self) -> Callable[[], None] | None:
        """CUDA work is asynchronous: synchronise before reading the clock."""
        return torch.cuda.synchronize if self.device.type == "cuda" else None

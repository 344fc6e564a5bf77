"""A runtime session: a backend's worker with the models converted for it at one precision, timed with the
reference network (netcut.latency.steadiness) so that sessions stay comparable."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from netcut.errors import NetcutError
from netcut.latency.backends import Backend, check_precision, converted
from netcut.latency.steadiness import REFERENCE, SessionTiming, TimingLog, load_reference, time_steadily

if TYPE_CHECKING:
    import torch
    from torch import nn

    from netcut.latency.harness import HarnessConfig
    from netcut.latency.workers import Worker
    from netcut_agent.bench import NodeProfile, TimingResult
    from netcut_agent.memory import MemoryRecord


class RuntimeSession:
    """A backend's worker with the models converted for it at one precision: add, time, run."""

    def __init__(self, backend: Backend, worker: Worker, precision: str = "fp32",
                 images: np.ndarray | None = None, log: TimingLog | None = None, target: str = "local") -> None:
        check_precision(backend, precision)
        self.backend, self.worker, self.precision = backend, worker, precision
        self.images = images  # int8 calibration images (N, 3, H, W), normalised; None: synthetic, latency alone
        self.names: list[str] = []
        self.log = log if log is not None else TimingLog()
        self.target = target
        self.last_timing: SessionTiming | None = None
        self.profiles: bool | None = None  # whether the runtime times nodes one by one (None: not asked yet)
        self.loaded: dict[str, tuple[bytes, tuple[int, ...]]] = {}  # name -> model file and input shape
        self.memory_refused: str | None = None  # why the worker could not measure memory, once it could not

    @property
    def name(self) -> str:
        """The backend's name."""
        return self.backend.name

    def versions(self) -> dict[str, Any]:
        """Runtime versions and the precision, recorded with measurements."""
        return {**self.worker.versions, "precision": self.precision, "format": self.backend.format}

    def add(self, name: str, model: nn.Module, example: torch.Tensor,
            calibration: list[np.ndarray] | None = None) -> int:
        """Convert `model` and load it in the worker under `name`; returns the model file's size in bytes."""
        payload = converted(self.backend, model.eval(), example, self.precision, calibration)
        self.add_payload(name, payload, tuple(example.shape))
        return len(payload)

    def add_payload(self, name: str, payload: bytes, shape: tuple[int, ...]) -> None:
        """Load an already converted model file."""
        self.worker.load(name, payload, shape)
        self.names.append(name)
        self.loaded[name] = (payload, tuple(shape))

    def memory(self, name: str) -> MemoryRecord | None:
        """A loaded model's peak memory, load and first-inference times (see memory_of)."""
        return self.memory_of(*self.loaded[name])

    def memory_of(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord | None:
        """A model file's peak memory, load and first-inference times, measured by the worker in a fresh process of
        its runtime; None where the worker cannot (an agent older than memory measurement: `memory_refused` says)."""
        if self.memory_refused is not None:
            return None
        try:
            return self.worker.memory(payload, shape)
        except NetcutError as exc:
            self.memory_refused = exc.message
            return None

    def time(self, timed: list[str], harness: HarnessConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time loaded models (and chains of them) interleaved in the worker, with the reference network: a session
        during which the machine's speed moved is repeated (see netcut.latency.steadiness)."""
        if REFERENCE not in self.names:
            load_reference(self.backend, self.worker)
            self.names.append(REFERENCE)
        result, self.last_timing = time_steadily(self.worker, timed, harness.timing(), chains, self.log,
                                                 (self.target, self.name, self.worker.threads),
                                                 harness.timing_tolerance_pct)
        return result

    def profile(self, model: nn.Module, example: torch.Tensor, runs: int,
                calibration: list[np.ndarray] | None = None) -> NodeProfile | None:
        """Convert `model` and time its own nodes with the runtime's profiler, `runs` times; None where the worker
        or its runtime has no per-node profiler (then only whole calls can be timed)."""
        method = getattr(self.worker, "profile", None)  # workers on a device time whole calls only
        if method is None or self.profiles is False:
            self.profiles = False
            return None
        payload = converted(self.backend, model.eval(), example, self.precision, calibration)
        result: NodeProfile | None = method(payload, tuple(example.shape), runs)
        self.profiles = result is not None
        return result

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on a batch."""
        return self.worker.run(name, x)

    def clear(self) -> None:
        """Unload what this session loaded."""
        if self.names:
            self.worker.unload(self.names)
            self.names = []
            self.loaded.clear()

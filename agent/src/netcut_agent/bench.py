"""Models loaded in one runtime, timed together with the shared rules (interleaved rounds, chains of stages)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcut_agent.memory import MemoryRecord, probe
from netcut_agent.runtimes import ModelError, Runner, Runtime, input_shape
from netcut_agent.stability import Stability, stability
from netcut_agent.stats import LatencyStats, summarize
from netcut_agent.timing import ChainCall, TimingConfig, measure_interleaved


def example(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A deterministic float32 input of a given shape (latency does not depend on the values)."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@dataclass
class TimingResult:
    """Stats per timed model or chain, per stage of each chain, and how steady each was over the session."""

    stats: dict[str, LatencyStats]
    stages: dict[str, list[LatencyStats]] = field(default_factory=dict)
    stability: dict[str, Stability] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"stats": {k: v.to_json() for k, v in self.stats.items()},
                "stages": {k: [s.to_json() for s in v] for k, v in self.stages.items()},
                "stability": {k: v.to_json() for k, v in self.stability.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TimingResult:
        """Inverse of to_json (an older agent sends no stability)."""
        return cls({k: LatencyStats.from_json(v) for k, v in d["stats"].items()},
                   {k: [LatencyStats.from_json(s) for s in v] for k, v in d.get("stages", {}).items()},
                   {k: Stability.from_json(v) for k, v in d.get("stability", {}).items()})


@dataclass
class NodeProfile:
    """A model's own work per run (its nodes' times summed, bookkeeping nodes left out) and each node's median."""

    work: LatencyStats
    nodes: dict[str, float]  # "type:name" -> median ms
    bookkeeping: list[str]  # the node types left out of `work`

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return {"work": self.work.to_json(), "nodes": self.nodes, "bookkeeping": self.bookkeeping}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NodeProfile:
        """Inverse of to_json."""
        return cls(LatencyStats.from_json(d["work"]), {k: float(v) for k, v in d["nodes"].items()},
                   list(d["bookkeeping"]))


class Bench:
    """Loaded models of one runtime, by name, each with its input."""

    def __init__(self, runtime: Runtime, spec: str = "", threads: int = 1) -> None:
        self.runtime = runtime
        self.spec, self.threads = spec or runtime.name, threads  # how to start the same runtime in another process
        self.models: dict[str, tuple[Runner, np.ndarray]] = {}

    def load(self, name: str, payload: bytes, shape: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """Load a model (replacing one of the same name) with a deterministic input of its shape (by default the
        model's own fixed input shape); returns the shape."""
        runner = self.runtime.load(payload)
        shape = tuple(shape) if shape else input_shape(runner)
        if not shape:
            raise ModelError("the model's input shape is not fixed: give the input shape")
        self.models[name] = (runner, example(shape))
        return shape

    def unload(self, names: list[str] | None = None) -> None:
        """Forget models (all when names is None)."""
        for name in list(self.models) if names is None else names:
            self.models.pop(name, None)

    def memory(self, payload: bytes, shape: tuple[int, ...]) -> MemoryRecord:
        """A model's peak memory, load and first-inference times, in a fresh process of this runtime."""
        return probe(self.spec, self.threads, payload, tuple(shape))

    def run(self, name: str, x: np.ndarray) -> list[np.ndarray]:
        """Run a loaded model on an input."""
        return self.models[name][0](np.ascontiguousarray(x, dtype=np.float32))

    def time(self, timed: list[str], config: TimingConfig, chains: dict[str, list[str]] | None = None
             ) -> TimingResult:
        """Time models and chains (stages run on the real data flow), interleaved round by round."""
        calls: dict[str, Any] = {}
        chain_calls: dict[str, ChainCall] = {}
        chains = chains or {}
        for name in timed:
            if name in chains:
                stages = chains[name]
                runner_list = [self._first(self.models[s][0]) for s in stages]
                chain_calls[name] = calls[name] = ChainCall(runner_list, self.models[stages[0]][1])
            else:
                runner, x = self.models[name]
                calls[name] = _bound(runner, x)
        stats = measure_interleaved(calls, config)
        return TimingResult(stats, {n: c.stats(config.warmup) for n, c in chain_calls.items()},
                            {n: stability(s.samples) for n, s in stats.items()})

    def profile(self, payload: bytes, shape: tuple[int, ...], runs: int) -> NodeProfile | None:
        """Run a model `runs` times under its runtime's per-node profiler: the time of its own nodes per run
        (without the layout conversions and output slice the runtime adds around a one-kernel model); None where
        the runtime has no such profiler."""
        method = getattr(self.runtime, "profile", None)
        if method is None:
            return None
        times = method(payload, example(tuple(shape)), runs)
        bookkeeping: frozenset[str] = getattr(self.runtime, "BOOKKEEPING", frozenset())
        counted = [values for key, values in times.items() if key.split(":", 1)[0] not in bookkeeping]
        if not counted:
            raise ModelError("the profiler saw no node of the model's own")
        length = min(len(values) for values in counted)
        per_run = np.sum([values[-length:] for values in counted], axis=0)
        return NodeProfile(summarize(per_run), {key: float(np.median(v)) for key, v in times.items()},
                           sorted(bookkeeping))

    @staticmethod
    def _first(runner: Runner) -> Any:
        """A chain stage passes its first output on."""
        return lambda x: runner(x)[0]


def _bound(runner: Runner, x: np.ndarray) -> Any:
    return lambda: runner(x)

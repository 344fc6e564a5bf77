"""The memory a TRN needs where it runs: the graph's own bytes (weights at the precision, and the peak of the
activations alive at once when the network runs in order), a model of how a runtime turns those into resident memory
fitted to a few TRNs measured on the device, and those measurements (netcut_agent.memory: a fresh process of the
runtime per model, its high-water mark over the idle runtime).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from torch import fx

from netcut.graph import TracedNetwork, ancestors
from netcut.types import CutPoint
from netcut_agent.memory import MemoryRecord

if TYPE_CHECKING:
    from netcut.latency.session import RuntimeSession
    from netcut.progress import Reporter

BYTES_PER_ELEMENT = {"fp32": 4, "int8": 1}  # of weights and activations at each precision
# ops whose output is a view of their input in every runtime: they hold no memory of their own
_VIEWS = frozenset({"view", "reshape", "flatten", "squeeze", "unsqueeze", "contiguous", "getitem", "getattr", "size",
                    "Flatten", "Identity", "Dropout", "expand", "type_as", "to"})
ANCHORS = 3  # TRNs measured per backbone, runtime and precision to fit the runtime's model


@dataclass(frozen=True)
class GraphMemory:
    """What a TRN's graph holds, in bytes: its weights and the most activation bytes alive at once."""

    weights: int
    activations: int

    @property
    def total(self) -> int:
        """Weights plus the activation peak: the graph's own estimate, before any runtime's overhead."""
        return self.weights + self.activations


def activation_peak(traced: TracedNetwork, node: fx.Node, bytes_per_element: int, batch: int = 1) -> int:
    """The most activation bytes alive at once when the prefix up to `node` runs in network order: a tensor lives
    from the op that writes it to the last op of the prefix that reads it (the cut's own output to the end). The
    input image is the caller's, views hold nothing."""
    prefix = ancestors(node)
    order = [n for n in traced.nodes if n in prefix]
    last_use = {n: i for i, n in enumerate(order)}
    for i, n in enumerate(order):
        for source in n.all_input_nodes:
            last_use[source] = i
    last_use[node] = len(order)
    held: dict[fx.Node, int] = {}
    live = peak = 0
    for i, n in enumerate(order):
        info = traced.info[traced.names[n]]
        if n.op not in ("placeholder", "get_attr") and info.op not in _VIEWS:
            held[n] = info.out_bytes // 4 * bytes_per_element * batch  # traced in float32
            live += held[n]
            peak = max(peak, live)
        for source in set(n.all_input_nodes):
            if last_use[source] == i:
                live -= held.pop(source, 0)
    return peak


def graph_memory(traced: TracedNetwork, cut: CutPoint, precision: str, num_classes: int = 10, batch: int = 1
                 ) -> GraphMemory:
    """A TRN's weights (its prefix's and its linear head's) and activation peak at a precision."""
    size = BYTES_PER_ELEMENT.get(precision, 4)
    head = (cut.channels + 1) * num_classes * 4
    return GraphMemory(cut.params * size + head, activation_peak(traced, traced.node(cut.name), size, batch))


@dataclass(frozen=True)
class RamModel:
    """Resident memory ≈ overhead + weight_factor × weights + activation_factor × activations: what a runtime adds
    to the graph's bytes (code it touches, packed weight copies, arena rounding). Unfitted: the graph's bytes."""

    overhead: float = 0.0
    weight_factor: float = 1.0
    activation_factor: float = 1.0
    fitted_on: int = 0  # how many measured TRNs fitted it (0: not fitted)

    def predict(self, memory: GraphMemory) -> int:
        """The estimated peak in bytes."""
        return int(round(self.overhead + self.weight_factor * memory.weights
                         + self.activation_factor * memory.activations))

    def to_json(self) -> dict[str, float]:
        """Plain-JSON form."""
        return {"overhead_bytes": self.overhead, "weight_factor": self.weight_factor,
                "activation_factor": self.activation_factor, "fitted_on": self.fitted_on}


def fit_ram_model(points: list[tuple[GraphMemory, int]]) -> RamModel:
    """The model through measured TRNs, in relative error: non-negative overhead and factors. With one point only
    the overhead is fitted (the factors stay 1); with none, the graph's bytes."""
    if not points:
        return RamModel()
    measured = np.array([float(m) for _, m in points])
    weights = np.array([float(g.weights) for g, _ in points])
    acts = np.array([float(g.activations) for g, _ in points])
    if len(points) == 1:
        return RamModel(max(0.0, measured[0] - weights[0] - acts[0]), 1.0, 1.0, 1)
    from scipy.optimize import nnls

    scale = 1.0 / np.maximum(measured, 1.0)
    if len(points) < 3:  # too few to fit the activations too: they are taken at face value
        design = np.column_stack([np.ones_like(measured), weights]) * scale[:, None]
        overhead, weight_factor = nnls(design, (measured - acts) * scale)[0]
        return RamModel(float(overhead), float(weight_factor), 1.0, len(points))
    design = np.column_stack([np.ones_like(measured), weights, acts]) * scale[:, None]
    overhead, weight_factor, activation_factor = nnls(design, measured * scale)[0]
    return RamModel(float(overhead), float(weight_factor), float(activation_factor), len(points))


def anchor_cuts(cuts: list[CutPoint], count: int = ANCHORS) -> list[CutPoint]:
    """The cuts to measure for the fit: the shallowest, the deepest, and those nearest the weights' middle (weights
    dominate deep TRNs, activations shallow ones: the anchors span both)."""
    if len(cuts) <= count:
        return list(cuts)
    total = max(cuts[-1].params, 1)
    picks = {0, len(cuts) - 1}
    for share in np.linspace(0.0, 1.0, count)[1:-1]:
        picks.add(min(range(len(cuts)), key=lambda i: abs(cuts[i].params / total - share)))
    return [cuts[i] for i in sorted(picks)]


@dataclass(frozen=True)
class RamEstimates:
    """Every cut's peak memory (bytes): measured where a TRN was, from the fitted model elsewhere."""

    bytes: dict[str, int]
    measured: dict[str, MemoryRecord]
    model: RamModel

    def source(self, cut: str) -> str:
        """"measured" or "estimated"."""
        return "measured" if cut in self.measured else "estimated"


def estimate_ram(traced: TracedNetwork, cuts: list[CutPoint], precision: str, num_classes: int,
                 measure: Callable[[str], MemoryRecord | None], batch: int = 1,
                 every: bool = False) -> RamEstimates:
    """The measurements of the anchors (or of every cut) that `measure` (cut name -> record or None) gives, the
    runtime's model fitted on them, the rest estimated."""
    graph = {c.name: graph_memory(traced, c, precision, num_classes, batch) for c in cuts}
    measured: dict[str, MemoryRecord] = {}
    for cut in cuts if every else anchor_cuts(cuts):
        record = measure(cut.name)
        if record is not None:
            measured[cut.name] = record
    model = fit_ram_model([(graph[n], r.peak_bytes) for n, r in measured.items()])
    values = {c.name: measured[c.name].peak_bytes if c.name in measured else model.predict(graph[c.name])
              for c in cuts}
    return RamEstimates(values, measured, model)


def session_ram(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, num_classes: int, batch: int,
                known: dict[str, MemoryRecord] | None = None, every: bool = False,
                reporter: Reporter | None = None) -> RamEstimates:
    """Every cut's peak memory in the session's runtime and precision: the anchors (or every cut) measured by its
    worker, where not already `known`, the rest estimated."""
    from netcut.latency.estimators.measured import convert_trns
    from netcut.progress import QUIET

    known = dict(known or {})
    wanted = [c for c in (cuts if every else anchor_cuts(cuts)) if c.name not in known]
    if wanted and session.memory_refused is None:
        shape, payloads = convert_trns(traced, wanted, session.backend, session.precision, batch, num_classes,
                                       session.images, reporter or QUIET)
        for cut in wanted:
            record = session.memory_of(payloads[cut.name], shape)
            if record is not None:
                known[cut.name] = record
    return estimate_ram(traced, cuts, session.precision, num_classes, known.get, batch, every)

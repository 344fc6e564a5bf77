"""Small frozen value objects shared across netcut."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class CutPoint:
    """A legal place to cut a backbone: one 4-D tensor carries everything the rest needs."""

    name: str  # stable node name (module path style, e.g. "blocks.3.1")
    index: int  # position in network order among the layer-granularity cuts
    shape: tuple[int, int, int]  # (C, H, W) of the activation at this node
    params: int  # parameters of the prefix up to and including this node
    macs: int  # multiply-accumulates of the prefix for one image
    op: str  # what produces the tensor (module class or function name)
    is_block_end: bool = False
    is_full: bool = False  # the deepest cut: the whole backbone's features

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class HeadSpec:
    """The new head of a TRN: global average pool, dropout, optional hidden layer, linear."""

    hidden: int | None = None
    dropout: float = 0.2

    def label(self) -> str:
        """A short stable name used in stores and reports."""
        return "linear" if self.hidden is None else f"mlp{self.hidden}"


@dataclass(frozen=True)
class LatencyStats:
    """Summary of repeated latency measurements, in milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    std: float
    min: float
    n: int
    samples: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def percentile(self, name: str) -> float:
        """The statistic named p50, p90 or p99."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}[name]

    def to_dict(self) -> dict:
        """Plain-JSON form (without raw samples)."""
        d = asdict(self)
        d.pop("samples")
        return d

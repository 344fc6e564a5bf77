"""Small frozen value objects shared across netcut: no torch, no I/O."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PERCENTILES = ("p50", "p90", "p99")
GRANULARITIES = ("block", "layer")  # block: ends of blocks and stages; layer: every legal cut point


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

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CutPoint:
        """Inverse of to_json."""
        return cls(**{**d, "shape": tuple(d["shape"])})


@dataclass(frozen=True)
class Percentiles:
    """A latency at the three deadline percentiles, in ms: measured, estimated or read from a table."""

    p50: float
    p90: float
    p99: float

    def percentile(self, name: str) -> float:
        """The value at p50, p90 or p99."""
        if name not in PERCENTILES:
            raise KeyError(name)
        return float(getattr(self, name))

    def only(self) -> Percentiles:
        """Just the three percentiles (drops the extra fields of a subclass)."""
        return Percentiles(self.p50, self.p90, self.p99)

    def to_json(self) -> dict[str, float]:
        """{"p50": .., "p90": .., "p99": ..}."""
        return {"p50": self.p50, "p90": self.p90, "p99": self.p99}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Percentiles:
        """Inverse of to_json."""
        return cls(float(d["p50"]), float(d["p90"]), float(d["p99"]))


@dataclass(frozen=True)
class LatencyStats(Percentiles):
    """Summary of repeated latency measurements, in ms: the percentiles plus spread."""

    mean: float = 0.0
    std: float = 0.0
    min: float = 0.0
    n: int = 0
    samples: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (without raw samples)."""
        d = asdict(self)
        d.pop("samples")
        return d


@dataclass(frozen=True, order=True)
class CandidateId:
    """What a candidate is: a backbone cut at one point, run in one runtime at one precision on one device."""

    backbone: str
    cut: str
    backend: str = "torch"
    precision: str = "fp32"
    device: str = "local"

    @property
    def label(self) -> str:
        """model@cut: how proposals are listed."""
        return f"{self.backbone}@{self.cut}"

    def to_json(self) -> dict[str, str]:
        """Plain-JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CandidateId:
        """Inverse of to_json."""
        return cls(**d)

"""Small frozen value objects shared across netcut: no torch, no I/O. The latency values come from netcut_agent,
so that netcut and its device agent speak one type."""

from __future__ import annotations

from dataclasses import dataclass

from netcut_agent.stats import PERCENTILES, LatencyStats, Percentiles

__all__ = ["GRANULARITIES", "LAYOUTS", "PERCENTILES", "TOKEN_READOUTS", "TRAIN_DEVICES", "CandidateId", "CutPoint",
           "LatencyStats", "Percentiles", "slowest"]

GRANULARITIES = ("block", "layer")  # block: ends of blocks and stages; layer: every legal cut point
TRAIN_DEVICES = ("cpu", "cuda", "auto")  # where features are extracted and networks fine-tuned
# nchw: convolutional feature maps; nhwc: channels-last maps (Swin); tokens: (tokens, channels), class tokens included
LAYOUTS = ("nchw", "nhwc", "tokens")
TOKEN_READOUTS = ("auto", "class", "mean")  # how heads read tokens: as the backbone's own head, class token, mean


@dataclass(frozen=True)
class CutPoint:
    """A legal place to cut a backbone: one tensor (an image-like map, or tokens) carries everything the rest needs."""

    name: str  # stable node name (module path style, e.g. "blocks.3.1")
    index: int  # position in network order among the layer-granularity cuts
    shape: tuple[int, ...]  # the activation at this node without the batch: (C, H, W), (H, W, C) or (tokens, C)
    params: int  # parameters of the prefix up to and including this node
    macs: int  # multiply-accumulates of the prefix for one image
    op: str  # what produces the tensor (module class or function name)
    is_block_end: bool = False
    is_full: bool = False  # the deepest cut: the whole backbone's features
    layout: str = "nchw"  # one of LAYOUTS: how `shape` is ordered

    @property
    def channels(self) -> int:
        """Features per position: what a head reading this cut gets after pooling."""
        return self.shape[0] if self.layout == "nchw" else self.shape[-1]


@dataclass(frozen=True, order=True)
class CandidateId:
    """What a candidate is: a backbone cut at one point, run in one runtime at one precision on one device."""

    backbone: str
    cut: str
    backend: str = "torch"
    precision: str = "fp32"
    device: str = "local"
    head: str = "linear"  # HeadSpec.label(): linear, mlpN, or multiN (Head2Toe)

    @property
    def label(self) -> str:
        """model@cut (with the head when it is not the plain one): how proposals are listed."""
        return f"{self.backbone}@{self.cut}" + (f"+{self.head}" if self.head.startswith("multi") else "")

    @property
    def multi(self) -> bool:
        """Whether its head reads several cuts (Head2Toe)."""
        return self.head.startswith("multi")


def slowest(estimates: list[Percentiles]) -> Percentiles:
    """Each percentile's largest value: what a network must meet on every device."""
    return Percentiles(max(e.p50 for e in estimates), max(e.p90 for e in estimates), max(e.p99 for e in estimates))

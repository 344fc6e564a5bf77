"""How a head reads the activation at a cut: (N, C) features from a feature map (global average), a channels-last
map (its average), or transformer tokens (the class token, or the mean of the patch tokens, after the backbone's
final normalization) — read the way the backbone's own head reads its last activation."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import fx, nn

from netcut.errors import NetcutError
from netcut.graph import TracedNetwork
from netcut.graph.cuts import node_layout

_NORMS = ("LayerNorm", "layer_norm", "LayerNorm2d", "LayerNormAct")


@dataclass(frozen=True)
class ReadoutPlan:
    """What a backbone's own head does with its last activation, found in its traced graph."""

    token: int | None  # the token its head reads (a class token); None: the mean of the tokens after `prefix`
    prefix: int  # tokens before the patch tokens (class, distillation) that a mean leaves out
    norm: str | None  # module path of its final normalization (applied at every token cut of that width)
    norm_node: str | None  # the node that normalization produces (no second normalization there)
    tokens: int = 0  # how many tokens the deepest activation has (fewer: the class token is not there yet)


class Readout(nn.Module):
    """An activation at a cut to (N, C) features (the first stage of every head)."""

    def __init__(self, layout: str, token: int | None = None, prefix: int = 0, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.layout, self.token, self.prefix = layout, token, prefix
        self.norm = norm if norm is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) features."""
        if self.layout == "nchw":
            return x.mean(dim=(2, 3))
        x = self.norm(x)
        if self.layout == "nhwc":
            return x.mean(dim=(1, 2))
        if self.token is not None:
            return x[:, self.token]
        return x[:, self.prefix:].mean(dim=1)

    def describe(self) -> str:
        """How a manifest or a cache key names this readout."""
        if self.layout == "nchw":
            return "global average"
        where = "" if isinstance(self.norm, nn.Identity) else "final norm, "
        if self.layout == "nhwc":
            return f"{where}average over the map"
        return where + (f"token {self.token}" if self.token is not None else f"mean of tokens from {self.prefix}")


def _index(node: fx.Node) -> object:
    return node.args[1] if node.op == "call_function" and getattr(node.target, "__name__", "") == "getitem" else None


def readout_plan(traced: TracedNetwork) -> ReadoutPlan:
    """The class token or token mean, and the final normalization, that the backbone's head uses after its deepest
    token activation (none of these for convolutional networks)."""
    from netcut.graph.cuts import _legal_nodes

    legal = _legal_nodes(traced)
    if not legal or node_layout(traced, traced.names[legal[-1]]) == "nchw":
        return ReadoutPlan(None, 0, None, None)
    deepest = legal[-1]
    info = traced.info[traced.names[deepest]]
    norm = norm_node = None
    if info.op in _NORMS:
        norm = str(deepest.target) if deepest.op == "call_module" else info.scope
        norm_node = traced.names[deepest]
    token: int | None = None
    prefix = int(getattr(traced.backbone.model, "num_prefix_tokens", 0) or 0)
    for user in deepest.users:
        index = _index(user)
        if isinstance(index, tuple) and len(index) == 2 and isinstance(index[1], int):
            token = index[1]
            break
        if isinstance(index, tuple) and len(index) == 2 and isinstance(index[1], slice):
            prefix = int(index[1].start or 0)
    choice = traced.backbone.token_readout
    if choice == "mean" and token is not None:
        prefix, token = max(prefix, token + 1), None  # the mean of the tokens after the class token
    elif choice == "class" and token is None:
        if prefix == 0:
            raise NetcutError(f"{traced.backbone.name} has no class token to read",
                              "use --token-readout mean (or auto: as the backbone's own head reads)")
        token = 0
    return ReadoutPlan(token, prefix, norm, norm_node, (info.shape or (0,))[0])


def readout(traced: TracedNetwork, cut_name: str, plan: ReadoutPlan | None = None) -> Readout:
    """The readout of one cut: its layout, the backbone's token choice, and a copy of the backbone's final
    normalization where the cut's width fits it (fine-tuning trains the copy, never the backbone's)."""
    layout = node_layout(traced, cut_name)
    if layout == "nchw":
        return Readout(layout)
    plan = plan or readout_plan(traced)
    norm = None
    if plan.norm is not None and cut_name != plan.norm_node:
        module = (traced.model or traced.backbone.model).get_submodule(plan.norm)
        shape = tuple(getattr(module, "normalized_shape", ()) or ())
        if shape == (traced.info[cut_name].shape or (0,))[-1:]:
            norm = copy.deepcopy(module)
    if layout == "tokens" and (traced.info[cut_name].shape or (0,))[0] != plan.tokens:
        return Readout(layout, None, 0, norm).eval()  # before the class token joins: the mean of all tokens
    return Readout(layout, plan.token, plan.prefix, norm).eval()


class PooledFeatures(nn.Module):
    """The backbone with (N, C) features at every cut, in one pass: what probes train on and quantized runtimes
    compute."""

    def __init__(self, extractor: nn.Module, readouts: list[nn.Module]) -> None:
        super().__init__()
        self.extractor = extractor
        self.readouts = nn.ModuleList(readouts)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Each cut's features, in cut order."""
        return tuple(r(a) for r, a in zip(self.readouts, self.extractor(x)))


def pooled_features(traced: TracedNetwork, cut_names: list[str]) -> PooledFeatures:
    """The one-pass feature extractor of these cuts (it shares the backbone's parameters)."""
    from netcut.graph import build_extractor

    plan = readout_plan(traced)
    return PooledFeatures(build_extractor(traced, cut_names), [readout(traced, c, plan) for c in cut_names]).eval()


def readout_key(traced: TracedNetwork, cut_names: list[str]) -> list[str] | None:
    """How the cuts are read, for cache keys (None where every cut is a feature map, as before tokens)."""
    if all(node_layout(traced, c) == "nchw" for c in cut_names):
        return None
    plan = readout_plan(traced)
    return [readout(traced, c, plan).describe() for c in cut_names]

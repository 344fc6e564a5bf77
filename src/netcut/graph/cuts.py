"""Legal cut points: nodes where one tensor carries everything the rest of the network needs: a feature map
(batch, C, H, W) or channels-last (batch, H, W, C), or transformer tokens (batch, tokens, C)."""

from __future__ import annotations

import math

from torch import fx, nn

from netcut.errors import NetcutError
from netcut.graph.trace import TracedNetwork
from netcut.types import GRANULARITIES, CutPoint

_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
# Adaptive pools only shape features for the old classifier, and the new head pools globally itself:
# cutting there adds nothing (or, like VGG's 7x7 pool on a small input, up-samples).
_ADAPTIVE_POOLS = {"AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "SelectAdaptivePool2d", "adaptive_avg_pool2d",
                   "adaptive_max_pool2d", "AdaptiveAvgPool"}
_HEAVY = {"Conv2d", "Conv2dSame", "Linear", "conv2d", "linear", "StdConv2d", "StdConv2dSame", "ScaledStdConv2d"}
_FEATURE_END = _ADAPTIVE_POOLS | {"mean", "flatten", "Flatten"}


def layout_of(shape: tuple[int, ...], channels_last: bool = False) -> str:
    """How an activation (without its batch) is ordered: tokens (T, C); a square map is (C, S, S) unless its first
    two sides match and the third differs, (S, S, C); `channels_last` (the model says NHWC) settles (S, S, S)."""
    if len(shape) == 2:
        return "tokens"
    if len(shape) != 3:
        return "nchw"  # not an activation a cut can carry; feature maps are what every other path assumes
    if shape[0] == shape[1] and (shape[1] != shape[2] or channels_last):
        return "nhwc"
    return "nchw"


def spatial_sides(shape: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """The sides of a map (H, W); empty for tokens (the patch grid is not kept in the shape)."""
    return {"nchw": tuple(shape[1:]), "nhwc": tuple(shape[:2])}.get(layout, ())


def channels_last(traced: TracedNetwork) -> bool:
    """Whether the backbone says its maps are channels-last (timm's output_fmt)."""
    return str(getattr(traced.backbone.model, "output_fmt", "")).upper().endswith("NHWC")


def node_layout(traced: TracedNetwork, name: str) -> str:
    """The layout of the activation at a node."""
    info = traced.info.get(name)
    return layout_of(info.shape or () if info is not None else (), channels_last(traced))


def _data_nodes(traced: TracedNetwork) -> set[fx.Node]:
    """Nodes whose value depends on the input image (parameters, constants and optional arguments left at None,
    such as an attention mask, do not)."""
    data: set[fx.Node] = set()
    for node in traced.nodes:
        if node is traced.nodes[0] or any(a in data for a in node.all_input_nodes):
            data.add(node)
    return data


def _legal_nodes(traced: TracedNetwork) -> list[fx.Node]:
    """Sweep the graph once: a node is legal if it is the only data value crossing the boundary after it."""
    nodes = traced.nodes
    position = {n: i for i, n in enumerate(nodes)}
    data = _data_nodes(traced)
    last_use = {n: max((position[u] for u in n.users), default=position[n]) for n in nodes}
    live: set[fx.Node] = set()
    legal = []
    for i, node in enumerate(nodes):
        for source in node.all_input_nodes:
            if last_use[source] <= i:
                live.discard(source)
        if node in data and last_use[node] > i:
            live.add(node)
        info = traced.info[traced.names[node]]
        if node.op in ("placeholder", "output") or live != {node}:
            continue  # (a squeeze-excitation pool lands here: its input is still live)
        if info.op in _ADAPTIVE_POOLS:
            break  # the backbone's own global pool: what follows belongs to its old classifier
        if info.shape is None or len(info.shape) not in (2, 3) or info.batch != 1:
            continue  # (attention windows and patches folded into the batch are not one image's activation)
        if info.op == "mean" and info.shape[1:] == (1, 1):
            continue
        legal.append(node)
    return legal


def _is_container(module: nn.Module | None) -> bool:
    """A list of blocks or layers (a stage, VGG's features), as opposed to a conv-bn-act Sequential (one block)."""
    if not isinstance(module, _CONTAINERS):
        return False
    children = list(module.children())
    composite = any(next(c.children(), None) is not None for c in children)
    weighted = sum(isinstance(c, (nn.modules.conv._ConvNd, nn.Linear)) for c in children)
    return composite or weighted >= 2


def _holds_blocks(module: nn.Module) -> bool:
    """Whether a module wraps a list of blocks (a transformer's encoder around its layers, a stage around its
    blocks): a container among its descendants with two or more children that are not plain Sequentials and hold
    two or more convolutions or linear layers each (an Inception branch's conv-bn modules hold one)."""
    def weighted(block: nn.Module) -> int:
        return sum(isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) for m in block.modules())

    for inner in module.modules():
        if inner is not module and isinstance(inner, _CONTAINERS):
            blocks = [c for c in inner.children() if not isinstance(c, nn.Sequential) and weighted(c) >= 2]
            if len(blocks) >= 2:
                return True
    return False


def _unit_scopes(traced: TracedNetwork) -> set[str]:
    """Scopes that are blocks: non-container modules directly inside a container or the root, spanning ≥2 nodes,
    that do not themselves wrap a list of blocks."""
    modules = dict(traced.backbone.model.named_modules())  # the original: GraphModule loses container types
    counts: dict[str, int] = {}
    for node in traced.nodes:
        parts = _path(traced, node).split(".") if _path(traced, node) else []
        for depth in range(1, len(parts) + 1):
            scope = ".".join(parts[:depth])
            counts[scope] = counts.get(scope, 0) + 1
    units = set()
    for scope, count in counts.items():
        module = modules.get(scope)
        if module is None or count < 2 or _is_container(module):
            continue
        parent_name = scope.rpartition(".")[0]
        if (not parent_name or _is_container(modules.get(parent_name))) and not _holds_blocks(module):
            units.add(scope)
    return units


def _path(traced: TracedNetwork, node: fx.Node) -> str:
    """The module path a node belongs to (the module itself for call_module nodes)."""
    if node.op == "call_module":
        return str(node.target)
    return traced.info[traced.names[node]].scope


def _outermost_unit(path: str, units: set[str]) -> str | None:
    parts = path.split(".") if path else []
    for depth in range(1, len(parts) + 1):
        scope = ".".join(parts[:depth])
        if scope in units:
            return scope
    return None


def _within(path: str, scope: str) -> bool:
    return path == scope or path.startswith(scope + ".")


def _block_ends(traced: TracedNetwork, legal: list[fx.Node]) -> set[fx.Node]:
    """Legal nodes that end a block, or that end a run of plain layers right before a heavy op or a block."""
    units = _unit_scopes(traced)
    data = [n for n in traced.nodes if n.op != "get_attr"]
    following = {n: (data[i + 1] if i + 1 < len(data) else None) for i, n in enumerate(data)}
    ends = set()
    for node in legal:
        path = _path(traced, node)
        unit = _outermost_unit(path, units)
        nxt = following.get(node)
        if unit is not None:
            if nxt is None or nxt.op == "output" or not _within(_path(traced, nxt), unit):
                ends.add(node)
            continue
        if nxt is None or nxt.op == "output":
            ends.add(node)
            continue
        nxt_info = traced.info[traced.names[nxt]]
        if _outermost_unit(_path(traced, nxt), units) is not None or nxt_info.op in _HEAVY | _FEATURE_END:
            ends.add(node)
    return ends


def ancestors(node: fx.Node) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = [node]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(current.all_input_nodes)
    return seen


def _prefix_cost(traced: TracedNetwork, node: fx.Node) -> tuple[int, int]:
    """(parameters, MACs) of everything the node depends on, counting shared parameters once."""
    modules = dict(traced.graph_module.named_modules())
    params: dict[int, int] = {}
    macs = 0
    for ancestor in ancestors(node):
        macs += traced.info[traced.names[ancestor]].macs
        if ancestor.op == "call_module":
            for p in modules[ancestor.target].parameters():
                params[id(p)] = p.numel()
        elif ancestor.op == "get_attr":
            value = traced.graph_module
            for attr in str(ancestor.target).split("."):
                value = getattr(value, attr)
            if isinstance(value, nn.Parameter):
                params[id(value)] = value.numel()
    return sum(params.values()), macs


def total_stride(traced: TracedNetwork) -> int | None:
    """How much the backbone shrinks its input (native side / deepest feature map side), from a trace at the native
    size; None if the network cannot be traced there."""
    from netcut.graph.trace import trace

    native = traced.backbone.input_size
    try:
        at_native = trace(traced.backbone, native)
        deepest = _legal_nodes(at_native)[-1]
    except (NetcutError, IndexError):
        return None
    sides = spatial_sides(at_native.info[at_native.names[deepest]].shape or (), node_layout(at_native,
                                                                                         at_native.names[deepest]))
    return None if not sides else math.ceil(native / max(1, min(sides)))


def _check_resolution(traced: TracedNetwork, legal: list[fx.Node]) -> None:
    """Refuse an input so small that feature maps collapse to 1x1 before the network's last downsampling stage."""
    if traced.resolution_checked:
        return
    traced.resolution_checked = True

    def smallest_side(node: fx.Node) -> int:
        name = traced.names[node]
        return min(spatial_sides(traced.info[name].shape or (), node_layout(traced, name)), default=2)

    smallest = min(smallest_side(n) for n in legal)
    if smallest > 1 or traced.input_size >= traced.backbone.input_size:
        return
    stride = total_stride(traced)
    if stride is None or traced.input_size >= stride:
        return  # 1x1 only where the native network also ends its downsampling
    first = next(traced.names[n] for n in legal if smallest_side(n) == 1)
    raise NetcutError(
        f"{traced.backbone.name} shrinks its input {stride}x: at {traced.input_size}x{traced.input_size} its feature "
        f"maps collapse to 1x1 at {first!r}, before its last stage",
        f"use --input-size {stride} or more (native: {traced.backbone.input_size})")


def find_cuts(traced: TracedNetwork, granularity: str = "block") -> list[CutPoint]:
    """Enumerate the legal cut points of a traced backbone, in network order."""
    if granularity not in GRANULARITIES:
        raise NetcutError(f"unknown granularity {granularity!r}", "use --granularity block or layer")
    legal = _legal_nodes(traced)
    if not legal:
        raise NetcutError(
            f"{traced.backbone.name} has no legal cut point (no node carries one feature map or token tensor "
            "that everything after it needs)",
            "netcut cuts image networks (CNNs, vision transformers, hybrids); check that the model takes an image "
            "batch",
        )
    _check_resolution(traced, legal)
    ends = _block_ends(traced, legal)
    deepest = legal[-1]
    ends.add(deepest)
    cuts = []
    last = channels_last(traced)
    for index, node in enumerate(legal):
        if granularity == "block" and node not in ends:
            continue
        params, macs = _prefix_cost(traced, node)
        info = traced.info[traced.names[node]]
        cuts.append(CutPoint(
            name=traced.names[node], index=index, shape=tuple(info.shape),  # type: ignore[arg-type]
            params=params, macs=macs, op=info.op, is_block_end=node in ends, is_full=node is deepest,
            layout=layout_of(info.shape, last),  # type: ignore[arg-type]
        ))
    return cuts


def resolve_cut(cuts: list[CutPoint], name: str) -> CutPoint:
    """Find a cut by name (or 'full' for the deepest), with a helpful error."""
    if name in ("full", "last"):
        return cuts[-1]
    for cut in cuts:
        if cut.name == name:
            return cut
    names = ", ".join(c.name for c in cuts[:6])
    raise NetcutError(f"{name!r} is not a legal cut point", f"choose one of: {names}, ... (see `netcut cuts MODEL`)")

"""Trace a backbone with torch.fx and record, per node, its stable name, scope, shape and cost."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torchvision.models.feature_extraction import NodePathTracer

from netcut.backbones import Backbone
from netcut.errors import NetcutError

_CONV_FUNCTIONS = {F.conv1d, F.conv2d, F.conv3d, torch.conv2d}
_LINEAR_FUNCTIONS = {F.linear}


@dataclass
class NodeInfo:
    """What one traced node does for a single image."""

    name: str  # stable name, module-path style
    scope: str  # qualified name of the module whose forward created the node
    op: str  # module class or function name
    kind: str  # fx op kind: placeholder, call_module, call_function, call_method, get_attr, output
    shape: tuple[int, ...] | None  # output shape without the batch dimension, None if not a tensor
    macs: int = 0
    params: int = 0  # parameters owned by this node (leaf modules only)
    in_bytes: int = 0  # activation bytes read (tensor inputs)
    out_bytes: int = 0  # activation bytes written
    groups: int = 1  # convolution groups (>1: grouped or depthwise)
    kernel: int = 0  # convolution kernel area (kh*kw); 0 for other ops
    batch: int = 1  # the output's first dimension while tracing one image (windows or patches folded into it: >1)


@dataclass
class TrainingGraph:
    """The backbone traced in training mode: its graph, its nodes by stable name, in network order."""

    graph_module: fx.GraphModule
    by_name: dict[str, fx.Node]
    nodes: list[fx.Node]


@dataclass
class TracedNetwork:
    """A traced backbone plus per-node facts, in network (topological) order."""

    backbone: Backbone
    graph_module: fx.GraphModule
    names: dict[fx.Node, str]
    info: dict[str, NodeInfo]
    input_size: int
    nodes: list[fx.Node] = field(default_factory=list)

    model: nn.Module | None = field(default=None, repr=False)  # what was traced: the backbone's model at this size

    _by_name: dict[str, fx.Node] = field(default_factory=dict, repr=False)
    _fingerprint: str = field(default="", repr=False)
    resolution_checked: bool = field(default=False, repr=False)
    _training: TrainingGraph | None | bool = field(default=False, repr=False)  # False: not traced yet

    def training_graph(self) -> TrainingGraph | None:
        """The backbone traced in training mode, where its forward does something else while training (dropout
        written as a function, stochastic depth): fine-tuning must train that graph. None where both modes trace
        to the same graph, or the training trace fails (then the eval graph serves both)."""
        if self._training is False:
            self._training = None
            try:
                gm, names, _ = symbolic_trace(self.backbone, training=True, model=self.model)
            except NetcutError:
                return None
            if gm.code != self.graph_module.code:
                for node in gm.graph.nodes:
                    names.setdefault(node, node.name)
                self._training = TrainingGraph(gm, {stable: node for node, stable in names.items()},
                                               list(gm.graph.nodes))
        return self._training if isinstance(self._training, TrainingGraph) else None

    def node(self, name: str) -> fx.Node:
        """The fx node with this stable name."""
        if not self._by_name:
            self._by_name = {stable: node for node, stable in self.names.items()}
        if name not in self._by_name:
            raise NetcutError(f"no node named {name!r} in {self.backbone.name}",
                              "run `netcut cuts MODEL --granularity layer`")
        return self._by_name[name]

    def fingerprint(self) -> str:
        """A weights-independent hash of the architecture and input size (computed once)."""
        if not self._fingerprint:
            h = hashlib.sha256()
            h.update(f"{self.input_size}\n".encode())
            if self.backbone.token_readout != "auto":  # the heads read tokens otherwise: other TRNs
                h.update(f"tokens:{self.backbone.token_readout}\n".encode())
            for node in self.nodes:
                i = self.info[self.names[node]]
                h.update(f"{i.name}|{i.op}|{i.shape}|{i.macs}|{i.params}\n".encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint


class _ScopedTracer(NodePathTracer):
    """NodePathTracer that also remembers each node's enclosing module and where tracing failed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.node_scope: dict[fx.Node, str] = {}

    def call_module(self, m: nn.Module, forward: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any]) -> Any:
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception as exc:
            if not hasattr(exc, "_netcut_where"):  # innermost module wins: it is set first
                exc._netcut_where = (self.path_of_module(m), type(m).__name__)  # type: ignore[attr-defined]
            raise

    def create_proxy(self, kind: str, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                     name: str | None = None, type_expr: Any | None = None, *rest: Any) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr)
        self.node_scope[proxy.node] = self.current_module_qualname
        return proxy


def _op_name(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return str(node.target)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def symbolic_trace(backbone: Backbone, training: bool = False, model: nn.Module | None = None
                   ) -> tuple[fx.GraphModule, dict[fx.Node, str], dict[fx.Node, str]]:
    """Trace the backbone's model as it runs in eval mode (or in training: dropout, stochastic depth and whatever
    else a forward does only while training are then in the graph); the model is left in eval mode. A NetcutError
    names the module torch.fx could not trace."""
    tracer = _ScopedTracer(
        leaf_modules=list(backbone.leaf_modules), autowrap_functions=list(backbone.autowrap_functions)
    )
    model = (model if model is not None else backbone.model).train(training)
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        where = getattr(exc, "_netcut_where", None)
        place = f"module {where[0]!r} ({where[1]})" if where and where[0] else "the top-level forward"
        raise NetcutError(
            f"torch.fx cannot trace {backbone.name}: it failed in {place}: {type(exc).__name__}: {_first_line(exc)}",
            "make that forward free of data-dependent Python control flow, or treat the module as a leaf "
            "(Python API: netcut.from_module(model, leaf_modules=(ThatModule,)))",
        ) from exc
    finally:
        model.eval()
    gm = fx.GraphModule(tracer.root, graph, model.__class__.__name__)
    return gm, dict(tracer.node_to_qualname), tracer.node_scope


def _tensor_bytes(value: object) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


class _Recorder(fx.Interpreter):
    """Runs one image through the graph and records shapes, MACs and bytes per node."""

    def __init__(self, gm: fx.GraphModule, names: dict[fx.Node, str], scopes: dict[fx.Node, str]) -> None:
        super().__init__(gm)
        self.names, self.scopes = names, scopes
        self.modules = dict(gm.named_modules())
        self.info: dict[str, NodeInfo] = {}

    def run_node(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        try:
            out = super().run_node(n)
        except Exception as exc:
            exc._netcut_node = self.names.get(n, n.name)  # type: ignore[attr-defined]
            raise
        name = self.names.get(n, n.name)
        shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) and out.dim() > 0 else None
        macs, params, groups, kernel = 0, 0, 1, 0
        # the trace runs one image: everything a node computes is that image's, windows or patches folded into the
        # batch dimension included (Swin's attention runs once per window)
        per_image_out = out.numel() if isinstance(out, torch.Tensor) and out.dim() > 0 else 0
        if n.op == "call_module":
            module = self.modules[n.target]
            params = sum(p.numel() for p in module.parameters())
            if isinstance(module, nn.modules.conv._ConvNd):
                macs = per_image_out * (module.in_channels // module.groups) * math.prod(module.kernel_size)
                groups = module.groups
                kernel = math.prod(module.kernel_size)
            elif isinstance(module, nn.Linear):
                macs = per_image_out * module.in_features
        elif n.op == "call_function" and n.target in _CONV_FUNCTIONS | _LINEAR_FUNCTIONS and len(args) > 1:
            weight = args[1]
            macs = per_image_out * math.prod(weight.shape[1:])
            groups = int(kwargs.get("groups", args[6] if len(args) > 6 else 1))
            kernel = math.prod(weight.shape[2:]) if n.target in _CONV_FUNCTIONS else 0
        self.info[name] = NodeInfo(
            name=name,
            scope=self.scopes.get(n, ""),
            op=_op_name(n, self.modules),
            kind=n.op,
            shape=shape,
            macs=int(macs),
            params=int(params),
            in_bytes=sum(_tensor_bytes(a) for a in args),
            out_bytes=_tensor_bytes(out),
            groups=groups,
            kernel=kernel,
            batch=int(out.shape[0]) if isinstance(out, torch.Tensor) and out.dim() > 0 else 1,
        )
        return out


def example_input(input_size: int, batch: int = 1) -> torch.Tensor:
    """A deterministic image-shaped input."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 3, input_size, input_size, generator=generator)


def trace(backbone: Backbone, input_size: int | None = None) -> TracedNetwork:
    """Trace a backbone and record every node's shape and cost at the given input size."""
    size = int(input_size or backbone.input_size)
    if size <= 0:
        raise NetcutError(f"input size must be positive, got {size}", "pass --input-size 224 (or the native size)")
    model = backbone.model_at(size)
    gm, names, scopes = symbolic_trace(backbone, model=model)
    for node in gm.graph.nodes:  # placeholder/output get plain names
        names.setdefault(node, node.name)
    recorder = _Recorder(gm, names, scopes)
    try:
        with torch.inference_mode():
            recorder.run(example_input(size))
    except Exception as exc:
        where = getattr(exc, "_netcut_node", "?")
        raise NetcutError(
            f"{backbone.name} cannot take a {size}x{size} input: node {where!r} failed: {_first_line(exc)}",
            f"use its native --input-size {backbone.input_size}"
            + (" or a larger one" if size < backbone.input_size else ""),
        ) from exc
    nodes = list(gm.graph.nodes)
    return TracedNetwork(backbone, gm, names, recorder.info, size, nodes, model=model)

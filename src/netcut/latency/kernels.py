"""The kernels a TRN runs, read from its traced graph, and a module that runs one kernel alone (for calibration).

Runtimes fuse a convolution with the batch norm and the activation that follow it (ONNX Runtime's FusedConv,
XNNPACK, OpenVINO): one kernel. An elementwise add or multiply takes the activation after it. Global pooling, the
linear layer, pools, concatenations and standalone activations are kernels of their own; reshapes are free.
A kernel is described by the same numbers whether it was found in a network or sampled for calibration, so one
regressor per kind, trained on sampled kernels timed on the device, predicts any network's kernels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import fx, nn

if TYPE_CHECKING:
    from netcut.graph import TracedNetwork
    from netcut.types import CutPoint

KINDS = ("conv", "pwconv", "dwconv", "gconv", "linear", "eltwise", "unary", "pool", "gpool", "concat", "matmul",
         "attention", "layernorm")
TOKEN_KINDS = ("matmul", "attention", "layernorm")  # on (rows, channels): hin rows, cin channels
ACTIVATIONS = ("none", "relu", "relu6", "silu", "hardswish", "sigmoid", "hardsigmoid", "gelu", "tanh", "other")

_CONV = {"Conv2d", "Conv2dSame", "conv2d", "StdConv2d", "StdConv2dSame", "ScaledStdConv2d"}
_NORM = {"BatchNorm2d", "batch_norm", "FrozenBatchNorm2d", "BatchNormAct2d"}
_ACT = {"ReLU": "relu", "relu": "relu", "relu_": "relu", "ReLU6": "relu6", "relu6": "relu6", "hardtanh": "relu6",
        "Hardtanh": "relu6", "SiLU": "silu", "silu": "silu", "Swish": "silu", "Hardswish": "hardswish",
        "hardswish": "hardswish", "Sigmoid": "sigmoid", "sigmoid": "sigmoid", "Hardsigmoid": "hardsigmoid",
        "hardsigmoid": "hardsigmoid", "GELU": "gelu", "gelu": "gelu", "Tanh": "tanh", "tanh": "tanh",
        "LeakyReLU": "other", "leaky_relu": "other", "ELU": "other", "Mish": "other", "PReLU": "other"}
_BINARY = {"add", "iadd", "mul", "imul", "sub", "truediv", "div"}
_POOL = {"MaxPool2d", "AvgPool2d", "max_pool2d", "avg_pool2d", "MaxPool2dSame", "AvgPool2dSame"}
_GLOBAL_POOL = {"AdaptiveAvgPool2d", "adaptive_avg_pool2d", "mean", "SelectAdaptivePool2d"}
_CONCAT = {"cat", "concat"}
_MATMUL = {"matmul", "bmm", "baddbmm"}
_ATTENTION = {"scaled_dot_product_attention"}
_LAYERNORM = {"LayerNorm", "layer_norm", "LayerNorm2d"}
_FREE = {"flatten", "view", "reshape", "contiguous", "getitem", "size", "Identity", "Dropout", "getattr", "Flatten",
         "chunk", "split", "squeeze", "unsqueeze", "dropout", "unbind", "expand", "reshape_as", "DropPath", "view_as"}


@dataclass(frozen=True)
class Kernel:
    """One kernel: what a runtime launches for a fused group of graph nodes, described by its shapes."""

    kind: str
    cin: int = 1
    cout: int = 1
    hin: int = 1
    win: int = 1
    hout: int = 1
    wout: int = 1
    k: int = 1  # kernel side (convolutions, pools)
    stride: int = 1
    groups: int = 1
    act: str = "none"
    broadcast: bool = False  # eltwise: the second operand is per channel (squeeze-excitation)

    def macs(self) -> int:
        """Multiply-accumulates of the kernel."""
        if self.kind == "matmul":
            return self.hin * self.cin * self.cout
        if self.kind == "attention":  # scores and weighted sum over hin tokens, all heads: 2 T^2 C
            return 2 * self.hin * self.hin * self.cin
        if self.kind in ("conv", "pwconv", "dwconv", "gconv"):
            return self.cout * self.hout * self.wout * (self.cin // max(self.groups, 1)) * self.k * self.k
        if self.kind == "linear":
            return self.cin * self.cout
        return 0

    def features(self) -> list[float]:
        """What a regressor sees: log sizes, the kernel's geometry, its work and bytes, the fused activation, and how
        its channel counts align."""
        elements_in = self.cin * self.hin * self.win
        elements_out = self.cout * self.hout * self.wout
        weights = self.macs() // max(self.hout * self.wout, 1) if self.kind != "linear" else self.macs()
        return [math.log2(self.cin), math.log2(self.cout), math.log2(self.hin), math.log2(self.hout), float(self.k),
                float(self.stride), math.log2(max(self.groups, 1)), math.log2(self.macs() + 1),
                math.log2(elements_in), math.log2(elements_out), math.log2(weights + 1),
                float(ACTIVATIONS.index(self.act)), float(self.broadcast), _alignment(self.cin),
                _alignment(self.cout)]

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def _alignment(channels: int) -> float:
    """How many times 2 divides a channel count (at most 6: blocks up to 64). Runtimes block channels (ONNX
    Runtime by 16 with AVX-512, 8 with AVX2; XNNPACK and OpenVINO alike) and take a slower path for counts that do
    not fill a block (measured with ONNX Runtime: this feature cut the pooling regressor's cross-validated error from
    36% to 12% and the depthwise one's from 17% to 13%)."""
    return float(min((channels & -channels).bit_length() - 1, 6)) if channels > 0 else 0.0


def _act_of(op: str) -> str | None:
    return _ACT.get(op)


def _norm_act(traced: TracedNetwork, node: fx.Node) -> str:
    """The activation inside a norm module (timm's BatchNormAct2d), or none."""
    if node.op != "call_module":
        return "none"
    inner = getattr(traced.graph_module.get_submodule(str(node.target)), "act", None)
    return _act_of(type(inner).__name__) or "none" if inner is not None else "none"


def _only_user(node: fx.Node, members: set[fx.Node]) -> fx.Node | None:
    users = [u for u in node.users if u in members]
    return users[0] if len(users) == 1 and len(node.users) == 1 else None


def _shape(traced: TracedNetwork, node: fx.Node) -> tuple[int, ...]:
    """A node's output shape for one image, with windows or patches folded into the batch unfolded into its first
    dimension (Swin's window attention runs once per window: its work counts that often)."""
    info = traced.info[traced.names[node]]
    if not info.shape:
        return (1,)
    return (info.batch * info.shape[0], *info.shape[1:]) if info.batch > 1 else tuple(info.shape)


def _chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(shape) >= 3:
        return shape[0], shape[1], shape[2]
    return (shape[0] if shape else 1), 1, 1


def detect_kernels(traced: TracedNetwork, members: set[fx.Node]) -> list[Kernel]:
    """The kernels that run the given graph nodes (a TRN's: the ancestors of its cut), in graph order."""
    kernels: list[Kernel] = []
    absorbed: set[fx.Node] = set()
    for node in traced.nodes:
        if node not in members or node in absorbed or node.op in ("placeholder", "output", "get_attr"):
            continue
        info = traced.info[traced.names[node]]
        op = info.op
        if op in _FREE or (info.shape is None and op != "MultiheadAttention"):  # (it returns a tuple)
            continue
        tensor_inputs = [a for a in node.all_input_nodes if traced.info[traced.names[a]].shape is not None]
        source = tensor_inputs[0] if tensor_inputs else None
        shape = _shape(traced, node) if info.shape is not None else None
        cin, hin, win = _chw(_shape(traced, source)) if source is not None else _chw(shape or (1,))
        cout, hout, wout = _chw(shape or (1,))
        token_kernels = _token_kernels(traced, node, op, shape, source, tensor_inputs)
        if token_kernels is not None:
            kernels += token_kernels
        elif op in _CONV:
            last, act = node, "none"
            nxt = _only_user(last, members)
            if nxt is not None and traced.info[traced.names[nxt]].op in _NORM:
                absorbed.add(nxt)
                last = nxt
                act = _norm_act(traced, nxt)  # timm's BatchNormAct2d carries the activation inside
            nxt = _only_user(last, members)
            if nxt is not None and _act_of(traced.info[traced.names[nxt]].op):
                absorbed.add(nxt)
                act = _act_of(traced.info[traced.names[nxt]].op) or "none"
            k = max(1, round(math.sqrt(max(info.kernel, 1))))
            groups = max(info.groups, 1)
            kind = ("dwconv" if groups == cin and groups > 1 else "gconv" if groups > 1 else
                    "pwconv" if k == 1 else "conv")
            kernels.append(Kernel(kind, cin, cout, hin, win, hout, wout, k, max(1, round(hin / max(hout, 1))),
                                  groups, act))
        elif op in ("Linear", "linear"):
            kernels.append(Kernel("linear", int(np.prod(_shape(traced, source))) if source is not None else cout,
                                  cout))
        elif op in _BINARY and len(tensor_inputs) == 2:
            act = "none"
            nxt = _only_user(node, members)
            if nxt is not None and _act_of(traced.info[traced.names[nxt]].op):
                absorbed.add(nxt)
                act = _act_of(traced.info[traced.names[nxt]].op) or "none"
            small = min(int(np.prod(_shape(traced, a))) for a in tensor_inputs)
            kernels.append(Kernel("eltwise", cout, cout, hout, wout, hout, wout, act=act,
                                  broadcast=small < int(np.prod(shape or (1,)))))
        elif op in _GLOBAL_POOL or (op in _POOL and hout == 1 and wout == 1 and hin > 1):
            kernels.append(Kernel("gpool", cin, cin, hin, win, 1, 1))
        elif op in _POOL:
            k = max(1, round(math.sqrt(max(info.kernel, 1)))) if info.kernel else 3
            kernels.append(Kernel("pool", cin, cout, hin, win, hout, wout, k, max(1, round(hin / max(hout, 1)))))
        elif op in _CONCAT:
            kernels.append(Kernel("concat", max(cout // 2, 1), cout, hout, wout, hout, wout))
        elif op in _NORM or _act_of(op) or op in _BINARY or tensor_inputs:
            kernels.append(Kernel("unary", cout, cout, hout, wout, hout, wout, act=_act_of(op) or "other"))
    return kernels


def _rows(shape: tuple[int, ...]) -> int:
    """Rows of a (…, channels) activation: everything but its last dimension."""
    return int(np.prod(shape[:-1])) if len(shape) > 1 else 1


def _token_kernels(traced: TracedNetwork, node: fx.Node, op: str, shape: tuple[int, ...] | None,
                   source: fx.Node | None, tensor_inputs: list[fx.Node]) -> list[Kernel] | None:
    """The kernels of a transformer's ops (None for any other op): a linear layer on tokens or a product of two
    activations (matmul: rows x cin x cout), attention (one fused scaled dot-product attention over T tokens of
    C channels), LayerNorm."""
    shape = shape or (1,)
    src = _shape(traced, source) if source is not None else shape
    if op in ("Linear", "linear") and len(src) >= 2:
        return [Kernel("matmul", src[-1], shape[-1], _rows(src), 1, _rows(shape), 1)]
    if op in _MATMUL or (op == "matmul" and len(tensor_inputs) == 2):
        return [Kernel("matmul", src[-1], shape[-1], _rows(src), 1, _rows(shape), 1)]
    if op in _ATTENTION and len(src) >= 2:
        heads = int(np.prod(src[:-2])) if len(src) > 2 else 1
        channels = heads * src[-1]
        return [Kernel("attention", channels, channels, src[-2], 1, src[-2], 1, groups=heads)]
    if op == "MultiheadAttention" and len(src) >= 2:  # projections in, attention, projection out
        module = traced.graph_module.get_submodule(str(node.target))
        tokens, channels = _rows(src), src[-1]
        return [Kernel("matmul", channels, 3 * channels, tokens, 1, tokens, 1),
                Kernel("attention", channels, channels, tokens, 1, tokens, 1,
                       groups=int(getattr(module, "num_heads", 1))),
                Kernel("matmul", channels, channels, tokens, 1, tokens, 1)]
    if op in _LAYERNORM and len(shape) >= 2:
        channels = shape[0] if op == "LayerNorm2d" else shape[-1]
        rows = int(np.prod(shape)) // max(channels, 1)
        return [Kernel("layernorm", channels, channels, rows, 1, rows, 1)]
    return None


def trn_kernels(traced: TracedNetwork, cut: CutPoint, num_classes: int = 10) -> list[Kernel]:
    """A TRN's kernels: the trunk up to the cut, then the new head's global pooling and linear layer."""
    from netcut.graph import ancestors

    kernels = detect_kernels(traced, ancestors(traced.node(cut.name)))
    c = cut.channels
    h, w = (cut.shape[1], cut.shape[2]) if cut.layout == "nchw" else (cut.shape[0], cut.shape[1]) \
        if cut.layout == "nhwc" else (cut.shape[0], 1)
    return kernels + [Kernel("gpool", c, c, h, w, 1, 1), Kernel("linear", c, num_classes)]


def kernel_module(kernel: Kernel) -> tuple[nn.Module, torch.Tensor]:
    """A module that runs just this kernel, and its input (calibration times these on the device). It returns one
    element of the kernel's output: copying a whole activation out of the runtime on every call is work a kernel
    inside a network never does (measured: it made isolated kernels up to 2x slower than in a network)."""
    return _OneElement(_kernel_body(kernel)).eval(), _kernel_input(kernel)


def _kernel_input(kernel: Kernel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if kernel.kind in TOKEN_KINDS:
        return torch.randn(1, kernel.hin, kernel.cin, generator=generator)
    if kernel.kind == "linear":
        return torch.randn(1, kernel.cin, generator=generator)
    return torch.randn(1, kernel.cin, kernel.hin, kernel.win, generator=generator)


def _kernel_body(kernel: Kernel) -> nn.Module:
    act = _activation_module(kernel.act)
    if kernel.kind in ("conv", "pwconv", "dwconv", "gconv"):
        patches = kernel.k == kernel.stride and kernel.k > 1  # a patch embedding: no padding
        conv = nn.Conv2d(kernel.cin, kernel.cout, kernel.k, kernel.stride, 0 if patches else kernel.k // 2,
                         groups=kernel.groups)
        return nn.Sequential(conv, nn.BatchNorm2d(kernel.cout), act)
    if kernel.kind in ("linear", "matmul"):
        return nn.Linear(kernel.cin, kernel.cout)
    if kernel.kind == "attention":
        return _Attention(kernel.cin, kernel.groups)
    if kernel.kind == "layernorm":
        return nn.LayerNorm(kernel.cin)
    if kernel.kind == "eltwise":
        return _Binary(kernel, act)
    if kernel.kind == "gpool":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if kernel.kind == "pool":
        return nn.MaxPool2d(kernel.k, kernel.stride, (kernel.k - 1) // 2)
    if kernel.kind == "concat":
        return _Concat(kernel)
    return act if kernel.act != "none" else nn.BatchNorm2d(kernel.cin)


class _OneElement(nn.Module):
    """Run a kernel and keep one element of its output (a slice: no copy of the activation)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return y[:, :1, :1, :1] if y.dim() == 4 else y[:, :1, :1] if y.dim() == 3 else y[:, :1]


class _Attention(nn.Module):
    """Scaled dot-product attention of x with itself, split into heads (one fused op in PyTorch; what a runtime
    makes of it is what is timed)."""

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads, self.width = max(heads, 1), channels // max(heads, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.reshape(x.shape[0], -1, self.heads, self.width).transpose(1, 2)
        y = torch.nn.functional.scaled_dot_product_attention(q, q, q)
        return y.transpose(1, 2).reshape(x.shape[0], -1, self.heads * self.width)


def _activation_module(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "silu": nn.SiLU(), "hardswish": nn.Hardswish(),
            "sigmoid": nn.Sigmoid(), "hardsigmoid": nn.Hardsigmoid(), "gelu": nn.GELU(), "tanh": nn.Tanh(),
            "other": nn.LeakyReLU(0.1)}.get(name, nn.Identity())


class _Binary(nn.Module):
    """x (+ or *) a constant of the same shape, or per channel: one elementwise kernel."""

    def __init__(self, kernel: Kernel, act: nn.Module) -> None:
        super().__init__()
        shape = (1, kernel.cin, 1, 1) if kernel.broadcast else (1, kernel.cin, kernel.hin, kernel.win)
        self.other: torch.Tensor
        self.register_buffer("other", torch.rand(shape, generator=torch.Generator().manual_seed(1)) + 0.5)
        self.multiply = kernel.broadcast  # squeeze-excitation scales; residuals add
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x * self.other if self.multiply else x + self.other)


class _Concat(nn.Module):
    """Concatenate x with a constant along channels: one concat kernel writing `cout` channels."""

    def __init__(self, kernel: Kernel) -> None:
        super().__init__()
        extra = max(kernel.cout - kernel.cin, 1)
        self.other: torch.Tensor
        self.register_buffer("other", torch.zeros(1, extra, kernel.hin, kernel.win))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.other], dim=1)

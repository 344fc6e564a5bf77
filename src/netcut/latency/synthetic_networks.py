"""Random networks made of the blocks image networks use (CNNs, vision transformers, hybrids), for calibrating
how kernels combine inside a network.

Kernels timed alone cost more than inside a network (the runtime converts layouts at every model boundary; inside
a network consecutive kernels share one layout and warm caches). The analytical estimator fits that correction on
these networks' TRNs, so it never needs to run a network it will be asked about.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU}


def _act(name: str) -> nn.Module:
    return _ACTS[name]()


class InvertedResidual(nn.Module):
    """MobileNetV2/EfficientNet block: expand 1x1, depthwise kxk, optional squeeze-excitation, project 1x1."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int, act: str, se: bool) -> None:
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand > 1:
            layers += [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), _act(act)]
        layers += [nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), _act(act)]
        self.body = nn.Sequential(*layers)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, max(8, mid // 4), 1), nn.ReLU(),
                                nn.Conv2d(max(8, mid // 4), mid, 1), nn.Hardsigmoid()) if se else None
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        if self.se is not None:
            y = y * self.se(y)
        y = self.project(y)
        return x + y if self.residual else y


class Basic(nn.Module):
    """ResNet basic block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = None if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.down is None else self.down(x)
        return self.relu(self.conv2(self.conv1(x)) + shortcut)


class Fire(nn.Module):
    """SqueezeNet fire module: squeeze 1x1, then 1x1 and 3x3 expands concatenated."""

    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.left = nn.Sequential(nn.Conv2d(squeeze, expand, 1), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(squeeze, expand, 3, 1, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.left(s), self.right(s)], 1)


class TransformerBlock(nn.Module):
    """A pre-norm transformer block: LayerNorm, multi-head self-attention, residual; LayerNorm, GELU MLP,
    residual."""

    def __init__(self, dim: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.fc1, self.act, self.fc2 = nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = self.proj.out_features
        qkv = self.qkv(self.norm1(x)).reshape(x.shape[0], -1, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(y.transpose(1, 2).reshape(x.shape[0], -1, dim))
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class ToTokens(nn.Module):
    """A feature map to tokens (batch, H*W, C), with a class token in front where asked."""

    def __init__(self, dim: int, class_token: bool) -> None:
        super().__init__()
        self.cls = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        return tokens if self.cls is None else torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1)


class TokenMean(nn.Module):
    """A transformer's head pooling: its final LayerNorm, then the mean of the tokens."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x).mean(1)


class SyntheticNet(nn.Module):
    """A stem, a random stack of blocks, a head: a network nobody will ask about, made of the usual parts."""

    def __init__(self, blocks: list[nn.Module], stem: nn.Module, features: int, input_size: int,
                 pool: nn.Module | None = None) -> None:
        super().__init__()
        self.input_size = input_size
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


MAX_MMACS = 800  # larger networks cost more calibration time than they teach


def macs(net: nn.Module, size: int) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one image (counted with hooks)."""
    total = [0]

    def count(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * module.kernel_size[0] ** 2
        elif isinstance(module, nn.Linear):  # on tokens: once per token
            total[0] += output.numel() // output.shape[0] * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        net(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return total[0]


def synthetic_network(rng: np.random.Generator) -> SyntheticNet:
    """One random network of at most MAX_MMACS: mobile (inverted residuals), residual (basic blocks), fire-style,
    a vision transformer or a hybrid, 96–224 px."""
    while True:
        net = _draw(rng)
        if macs(net, net.input_size) <= MAX_MMACS * 1e6:
            return net


def _transformer(rng: np.random.Generator, hybrid: bool) -> SyntheticNet:
    """A ViT (patches embedded by one strided convolution) or a hybrid (convolutional stages, then tokens)."""
    size = int(rng.choice([96, 128, 160, 192, 224]))
    dim = int(rng.choice([64, 96, 128, 192, 256, 320]))
    heads = max(1, dim // int(rng.choice([32, 64])))
    if hybrid:
        act = str(rng.choice(list(_ACTS)))
        c = int(rng.choice([16, 24, 32]))
        layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), _act(act)]
        side = size // 2
        for _ in range(int(rng.integers(2, 5))):
            stride = 2 if side > 8 else 1
            cout = min(dim, c * 2 if stride == 2 else c)
            layers.append(InvertedResidual(c, cout, int(rng.choice([2, 4])), 3, stride, act, False))
            c, side = cout, -(-side // stride)
        layers += [nn.Conv2d(c, dim, 1), ToTokens(dim, False)]
    else:
        patch = 16 if size >= 160 else 8
        layers = [nn.Conv2d(3, dim, patch, patch), ToTokens(dim, bool(rng.random() < 0.5))]
    blocks: list[nn.Module] = [TransformerBlock(dim, heads, int(rng.choice([2, 3, 4])))
                               for _ in range(int(rng.integers(2, 9)))]
    return SyntheticNet(blocks, nn.Sequential(*layers), dim, size, TokenMean(dim))


def _draw(rng: np.random.Generator) -> SyntheticNet:
    family = str(rng.choice(["mobile", "mobile", "residual", "fire", "transformer", "hybrid"]))
    if family in ("transformer", "hybrid"):
        return _transformer(rng, family == "hybrid")
    # dense 3x3 residual blocks cost the most: smaller inputs and widths keep them within MAX_MMACS
    size = int(rng.choice([96, 128, 160] if family == "residual" else [96, 128, 160, 192, 224]))
    act = str(rng.choice(list(_ACTS)))
    c = int(rng.choice([16, 24, 32] if family == "residual" else [16, 24, 32, 48, 64]))
    stem_layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), _act(act)]
    if family != "mobile" and rng.random() < 0.6:
        stem_layers.append(nn.MaxPool2d(3, 2, 1))
    blocks: list[nn.Module] = []
    side = size // (4 if len(stem_layers) == 4 else 2)
    for _ in range(int(rng.integers(4, 13))):
        stride = 2 if side > 7 and rng.random() < 0.3 else 1
        grow = int(rng.choice([1, 1, 2])) if stride == 1 else int(rng.choice([1, 2]))
        cout = min(512, c * grow if grow > 1 else c + 8 * int(rng.integers(0, 3)))
        if family == "mobile":
            blocks.append(InvertedResidual(c, cout, int(rng.choice([1, 3, 4, 6])), int(rng.choice([3, 5])), stride,
                                           act, bool(rng.random() < 0.3)))
        elif family == "residual":
            blocks.append(Basic(c, cout, stride))
        else:
            if stride == 2:
                blocks.append(nn.MaxPool2d(3, 2, 1))
            blocks.append(Fire(c, max(8, cout // 8), cout // 2))
            cout = 2 * (cout // 2)
        c, side = cout, -(-side // stride)
    if rng.random() < 0.5:  # a wide last 1x1 convolution, as mobile networks end
        wide = int(rng.choice([512, 1024, 1280]))
        blocks.append(nn.Sequential(nn.Conv2d(c, wide, 1, bias=False), nn.BatchNorm2d(wide), _act(act)))
        c = wide
    return SyntheticNet(blocks, nn.Sequential(*stem_layers), c, size).eval()

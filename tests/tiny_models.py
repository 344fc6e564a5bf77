"""Tiny hand-built CNNs with known cut structure (chain, residual, concat), an untraceable one, and a structured
image dataset they can learn."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """A conv-bn-act unit."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class Chain(nn.Module):
    """stem -> two stages -> pool -> fc: every layer boundary is a legal cut."""

    input_size = 32

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8, 2)
        self.stages = nn.Sequential(conv_bn_relu(8, 16, 2), conv_bn_relu(16, 16))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class DropBlock(nn.Module):
    """A residual block with stochastic depth written as a function of self.training (as timm's blocks do): a
    trace in eval mode holds none of it."""

    def __init__(self, channels: int, drop: float = 0.5) -> None:
        super().__init__()
        self.conv = conv_bn_relu(channels, channels)
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.nn.functional.dropout(self.conv(x), self.drop, self.training)


class DropChain(nn.Module):
    """stem -> two blocks with train-only dropout -> head."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 8, 2)
        self.blocks = nn.Sequential(DropBlock(8), DropBlock(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class ResidualBlock(nn.Module):
    """x + f(x): nothing inside f is a legal cut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x)))


class Residual(nn.Module):
    """stem -> two residual blocks -> head."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.blocks = nn.Sequential(ResidualBlock(8), ResidualBlock(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


class ConcatBlock(nn.Module):
    """Two branches concatenated: nothing inside a branch is a legal cut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.left = nn.Conv2d(channels, channels, 1)
        self.right = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.left(x), self.right(x)], 1)


class Concat(nn.Module):
    """stem -> concat block -> conv -> head."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, 2, 1)
        self.block = ConcatBlock(4)
        self.conv = nn.Conv2d(8, 8, 3, 1, 1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.conv(self.block(self.stem(x))), 1), 1))


class DataDependent(nn.Module):
    """Branches on the value of a tensor: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if y.sum() > 0:
            return y
        return -y


class Untraceable(nn.Module):
    """A normal stem followed by a module with data-dependent control flow."""

    input_size = 32

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, 1, 1)
        self.gate = DataDependent()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.stem(x))


class Stripes(torch.utils.data.Dataset):
    """Row stripes (label 1) vs column stripes (label 0): structured images a tiny CNN separates."""

    def __len__(self) -> int:
        return 120

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = torch.zeros(3, 16, 16)
        if i % 2:
            image[:, ::2] = 1.0
        else:
            image[:, :, ::2] = 1.0
        return image, i % 2


def tiny_vit() -> nn.Module:
    """A vision transformer of timm's own classes, small enough for tests: 32 px, 16 patches, three blocks."""
    from timm.models.vision_transformer import VisionTransformer

    model = VisionTransformer(img_size=32, patch_size=8, embed_dim=48, depth=3, num_heads=2, num_classes=10)
    model.input_size = 32
    return model

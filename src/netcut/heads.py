"""TRN heads: global average pool, dropout, optional hidden layer, linear."""

from __future__ import annotations

from torch import nn

from netcut.types import HeadSpec


def build_head(in_channels: int, num_classes: int, spec: HeadSpec = HeadSpec()) -> nn.Sequential:
    """A head that maps a (N, C, H, W) activation to (N, num_classes) logits."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), classifier(in_channels, num_classes, spec))


def classifier(in_features: int, num_classes: int, spec: HeadSpec = HeadSpec()) -> nn.Sequential:
    """The trainable part of a head, on already pooled (N, C) features (what the feature cache feeds)."""
    layers: list[nn.Module] = [nn.Dropout(spec.dropout)]
    width = in_features
    if spec.hidden:
        layers += [nn.Linear(in_features, spec.hidden), nn.ReLU(inplace=True), nn.Dropout(spec.dropout)]
        width = spec.hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)

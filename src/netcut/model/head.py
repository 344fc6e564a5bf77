"""TRN heads: global average pool, dropout, optional hidden layer, linear; the spec and its one builder."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class HeadSpec:
    """The new head of a TRN: global average pool, dropout, optional hidden layer, linear."""

    hidden: int | None = None
    dropout: float = 0.2

    def label(self) -> str:
        """A short stable name used in stores and reports."""
        return "linear" if self.hidden is None else f"mlp{self.hidden}"

    def describe(self) -> str:
        """How a manifest describes the head."""
        return "global average pool + " + ("linear" if self.hidden is None else f"mlp {self.hidden}")


def classifier(in_features: int, num_classes: int, spec: HeadSpec = HeadSpec()) -> nn.Sequential:
    """The trainable part of a head, on already pooled (N, C) features (what the feature cache feeds)."""
    layers: list[nn.Module] = [nn.Dropout(spec.dropout)]
    width = in_features
    if spec.hidden:
        layers += [nn.Linear(in_features, spec.hidden), nn.ReLU(inplace=True), nn.Dropout(spec.dropout)]
        width = spec.hidden
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def build_head(in_channels: int, num_classes: int, spec: HeadSpec = HeadSpec(),
               trained: nn.Module | None = None) -> nn.Sequential:
    """A head mapping a (N, C, H, W) activation to (N, num_classes) logits; `trained` replaces the fresh classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
                         trained if trained is not None else classifier(in_channels, num_classes, spec))

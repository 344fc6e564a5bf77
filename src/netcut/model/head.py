"""TRN heads and their one builder: global average pool, dropout, optional hidden layer, linear; or a Head2Toe
head that reads pooled features of every cut up to the TRN's (a selected subset of them) with one linear layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from netcut.results import TrainingRecord

HEAD_KINDS = ("linear", "multi")


@dataclass(frozen=True)
class HeadSpec:
    """The new head of a TRN: global average pool, dropout, optional hidden layer, linear (kind "linear"), or
    pooled features of the cuts up to the TRN's, `features` of them selected, and a linear layer (kind "multi")."""

    hidden: int | None = None
    dropout: float = 0.2
    kind: str = "linear"
    features: int = 512  # multi: how many pooled features the head keeps

    def label(self) -> str:
        """A short stable name used in stores and reports."""
        if self.kind == "multi":
            return f"multi{self.features}"
        return "linear" if self.hidden is None else f"mlp{self.hidden}"

    def describe(self) -> str:
        """How a manifest describes the head."""
        if self.kind == "multi":
            return f"pooled features of several cuts ({self.features} selected) + linear (Head2Toe)"
        return "global average pool + " + ("linear" if self.hidden is None else f"mlp {self.hidden}")


class MultiHead(nn.Module):
    """Head2Toe: the global average of several cuts' activations, a selected subset of their channels, a classifier.

    `cuts` names the activations it reads, in order; the selected channel indices are buffers, so the state dict
    holds the whole head."""

    def __init__(self, cuts: list[str], indices: list[torch.Tensor], head: nn.Module) -> None:
        super().__init__()
        self.cuts = list(cuts)
        for i, index in enumerate(indices):
            self.register_buffer(f"select{i}", index.long())
        self.classifier = head

    def read_with(self, readouts: list[nn.Module]) -> MultiHead:
        """Read each cut with its own readout (token cuts); without, every cut is a feature map and is averaged."""
        self.readouts = nn.ModuleList(readouts)
        return self

    def selections(self) -> list[torch.Tensor]:
        """The selected channels of each cut."""
        return [getattr(self, f"select{i}") for i in range(len(self.cuts))]

    def forward(self, activations: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Logits from the activations at `cuts`."""
        readouts = getattr(self, "readouts", None)
        pooled = [(readouts[i](a) if readouts is not None else a.mean(dim=(2, 3))).index_select(1, index)
                  for i, (a, index) in enumerate(zip(activations, self.selections()))]
        return self.classifier(torch.cat(pooled, 1))

    @classmethod
    def from_state(cls, cuts: list[str], state: dict[str, torch.Tensor], num_classes: int,
                   spec: HeadSpec) -> MultiHead:
        """A trained head from its state dict (the selection sizes come from the stored indices)."""
        indices = [state[f"select{i}"] for i in range(len(cuts))]
        head = cls(cuts, indices, classifier(sum(len(i) for i in indices), num_classes, spec))
        head.load_state_dict(state)
        return head


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
               trained: nn.Module | None = None, readout: nn.Module | None = None) -> nn.Sequential:
    """A head mapping the activation at a cut to (N, num_classes) logits: its readout (default: the global average
    of a (N, C, H, W) map), then the classifier; `trained` replaces the fresh classifier. The classifier is always
    the third module, so stored heads load whatever reads the cut."""
    first: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(1)]
    if readout is not None and getattr(readout, "layout", "nchw") != "nchw":
        first = [readout, nn.Identity()]
    return nn.Sequential(*first, trained if trained is not None else classifier(in_channels, num_classes, spec))


def load_head(record: TrainingRecord, state: dict[str, Any], in_features: int, num_classes: int,
              spec: HeadSpec) -> nn.Module:
    """A probe's trained head from its stored state (a Head2Toe head names its cuts in the record)."""
    if record.head.startswith("multi"):
        return MultiHead.from_state(record.metrics["multi_cuts"], state, num_classes, spec).eval()
    model = classifier(in_features, num_classes, spec)
    model.load_state_dict(state)
    return model.eval()

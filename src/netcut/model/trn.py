"""Trimmed networks (TRNs): a backbone cut at a legal point plus a head. The one place a TRN is assembled."""

from __future__ import annotations

import copy

import torch
from torch import nn

from netcut.backbones import Backbone, from_module, load_backbone
from netcut.errors import NetcutError
from netcut.graph import (
    TracedNetwork,
    build_extractor,
    build_prefix,
    build_training_prefix,
    find_cuts,
    node_layout,
    resolve_cut,
    trace,
)
from netcut.model.head import HeadSpec, MultiHead, build_head, classifier
from netcut.model.readout import readout, readout_plan
from netcut.types import CutPoint


class TrimmedNetwork(nn.Module):
    """prefix (the backbone up to the cut) followed by a head trained for the target task."""

    def __init__(self, prefix: nn.Module, head: nn.Module, backbone: str, cut: CutPoint, input_size: int) -> None:
        super().__init__()
        self.prefix = prefix
        self.head = head
        self.backbone_name = backbone
        self.cut = cut
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.head(self.prefix(x))


def build_trn(traced: TracedNetwork, cut: CutPoint, num_classes: int, head: HeadSpec = HeadSpec(),
              trained_classifier: nn.Module | None = None, own_weights: bool = True,
              reads: list[CutPoint] | None = None, for_training: bool = False) -> TrimmedNetwork:
    """prefix up to `cut` + head (fresh, or around `trained_classifier`), in eval mode.

    own_weights=True gives the TRN copies of the prefix's and classifier's parameters, so training it leaves the
    backbone alone; False shares them (cheap, for timing, where weights do not matter). A multi head reads
    several cuts: a trained MultiHead names them; a fresh one reads every channel of `reads` (the cuts up to `cut`).
    for_training: the prefix runs the backbone's training-mode graph while the TRN is in train mode (dropout,
    stochastic depth), as the backbone itself would; its state dict is a plain prefix's.
    """
    if head.kind == "multi":
        return _multi_trn(traced, cut, num_classes, head, trained_classifier, own_weights, reads or [cut])
    prefix: nn.Module = build_training_prefix(traced, cut.name) if for_training else build_prefix(traced, cut.name)
    trained = trained_classifier
    if own_weights:
        prefix = copy.deepcopy(prefix)
        trained = copy.deepcopy(trained_classifier) if trained_classifier is not None else None
    head_module = build_head(cut.channels, num_classes, head, trained, readout(traced, cut.name))
    return TrimmedNetwork(prefix, head_module, traced.backbone.name, cut, traced.input_size).eval()


def _multi_trn(traced: TracedNetwork, cut: CutPoint, num_classes: int, spec: HeadSpec, trained: nn.Module | None,
               own_weights: bool, reads: list[CutPoint]) -> TrimmedNetwork:
    """The backbone with outputs at the cuts the head reads (it stops at the deepest one), and the head."""
    if isinstance(trained, MultiHead):
        head = trained
    else:  # untrained: every channel of every cut read (the most a trained head can cost)
        indices = [torch.arange(c.channels) for c in reads]
        head = MultiHead([c.name for c in reads], indices,
                         classifier(sum(c.channels for c in reads), num_classes, spec))
    if any(node_layout(traced, name) != "nchw" for name in head.cuts):
        plan = readout_plan(traced)
        head.read_with([readout(traced, name, plan) for name in head.cuts])
    prefix: nn.Module = build_extractor(traced, head.cuts)
    if own_weights:
        prefix, head = copy.deepcopy(prefix), copy.deepcopy(head)
    return TrimmedNetwork(prefix, head, traced.backbone.name, cut, traced.input_size).eval()


def as_backbone(model: Backbone | nn.Module | str) -> Backbone:
    """Accept a Backbone, a registry name, or any nn.Module."""
    if isinstance(model, Backbone):
        return model
    if isinstance(model, str):
        return load_backbone(model)
    if isinstance(model, nn.Module):
        return from_module(model)
    raise NetcutError(f"cannot use a {type(model).__name__} as a backbone", "pass an nn.Module or a model name")


def trim(model: Backbone | nn.Module | str, cut: CutPoint | str, num_classes: int, head: HeadSpec = HeadSpec(),
         input_size: int | None = None) -> TrimmedNetwork:
    """Cut `model` at `cut` and attach a fresh head (eval mode); the TRN owns copies of the prefix's parameters."""
    if num_classes < 1:
        raise NetcutError(f"num_classes must be ≥ 1, got {num_classes}", "pass the number of target classes")
    traced = trace(as_backbone(model), input_size)
    cut_point = cut if isinstance(cut, CutPoint) else resolve_cut(find_cuts(traced, "layer"), cut)
    return build_trn(traced, cut_point, num_classes, head)

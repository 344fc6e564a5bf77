"""Prefixes equal the original network's activations exactly, on real architectures of many families."""

from __future__ import annotations

import pytest
import torch

from netcut.backbones import load_backbone
from netcut.graph import build_extractor, build_prefix, find_cuts, trace
from netcut.model import HeadSpec, trim

# chains, residual, dense/concat, inception-style, depthwise, shuffles, NAS, RegNet, ConvNeXt, and the built-ins
ARCHITECTURES = [
    "efficientnet_lite0", "efficientnet_lite2",
    "torchvision:alexnet", "torchvision:vgg11", "torchvision:resnet18", "torchvision:resnext50_32x4d",
    "torchvision:densenet121", "torchvision:googlenet", "torchvision:inception_v3", "torchvision:squeezenet1_0",
    "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_small", "torchvision:shufflenet_v2_x0_5",
    "torchvision:mnasnet0_5", "torchvision:regnet_x_400mf", "torchvision:efficientnet_b0",
    "torchvision:convnext_tiny",
]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_prefix_equals_the_original_activation(name):
    backbone = load_backbone(name)
    size = 96 if "inception" in name else 64
    traced = trace(backbone, size)
    cuts = find_cuts(traced, "layer")
    block = find_cuts(traced, "block")
    assert 3 <= len(block) <= len(cuts)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    # ground truth: the original eager network, with hooks-free activation capture through the traced graph,
    # whose final output must itself equal the eager model's
    with torch.inference_mode():
        assert torch.allclose(traced.graph_module(x), backbone.model(x), atol=1e-5)
        activations = build_extractor(traced, [c.name for c in cuts])(x)
        for cut, expected in zip(cuts, activations):
            got = build_prefix(traced, cut.name)(x)
            assert got.shape[1:] == cut.shape, cut.name
            assert torch.equal(got, expected), cut.name
    # the deepest cut is the whole feature extractor: it holds (almost) all parameters
    full = cuts[-1]
    assert full.is_full and full.params <= sum(p.numel() for p in backbone.model.parameters())
    assert [c.macs for c in cuts] == sorted(c.macs for c in cuts)


def test_eager_activation_equals_prefix_on_resnet_via_forward_hook():
    """Independent of fx: compare with a forward hook on the eager model."""
    backbone = load_backbone("torchvision:resnet18")
    traced = trace(backbone, 64)
    captured = {}
    handle = backbone.model.layer2.register_forward_hook(lambda m, i, o: captured.setdefault("layer2", o.clone()))
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        backbone.model(x)
        handle.remove()
        got = build_prefix(traced, "layer2.1.relu_1")(x)
    assert torch.equal(got, captured["layer2"])


def test_trim_builds_a_trn_that_owns_its_parameters():
    backbone = load_backbone("efficientnet_lite0")
    cut = find_cuts(trace(backbone, 64), "block")[5]
    trn = trim(backbone, cut, num_classes=7, head=HeadSpec(hidden=32), input_size=64)
    assert trn(torch.randn(2, 3, 64, 64)).shape == (2, 7)
    prefix_params = sum(p.numel() for p in trn.prefix.parameters())
    assert prefix_params == cut.params < sum(p.numel() for p in backbone.model.parameters()) / 10
    before = backbone.model.conv_stem.weight.clone()
    with torch.no_grad():
        for p in trn.prefix.parameters():
            p.add_(1.0)
    assert torch.equal(backbone.model.conv_stem.weight, before)


def test_trim_accepts_a_cut_name_and_rejects_an_illegal_one():
    from netcut.errors import NetcutError

    trn = trim("torchvision:resnet18", "layer3.1.relu_1", num_classes=2, input_size=64)
    assert trn.cut.shape == (256, 4, 4)
    with pytest.raises(NetcutError, match="not a legal cut point"):
        trim("torchvision:resnet18", "layer3.1.conv1", num_classes=2, input_size=64)

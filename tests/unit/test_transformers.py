"""Vision transformers and hybrids from timm (random weights): cut points on token and channels-last tensors, each
prefix equal to the backbone's activation there, and heads that read tokens the way the backbone's own head does."""

from __future__ import annotations

import pytest
import torch
from torch import fx

from netcut.backbones import load_backbone
from netcut.errors import NetcutError
from netcut.graph import build_prefix, find_cuts, trace
from netcut.graph.cuts import layout_of
from netcut.model.readout import readout, readout_plan

# (timm name, input size, the layouts its block cuts must include)
FAMILIES = [
    ("vit_tiny_patch16_224", 64, {"tokens"}),
    ("deit_tiny_distilled_patch16_224", 64, {"tokens"}),
    ("swin_tiny_patch4_window7_224", 64, {"nhwc"}),
    ("mobilevit_xxs", 64, {"nchw"}),
    ("efficientformer_l1", 224, {"nchw", "tokens"}),  # its attention biases are built for 224 px only
    ("fastvit_t8", 64, {"nchw"}),
    ("levit_128s", 64, {"nchw", "tokens"}),
]


def structured_image(size: int) -> torch.Tensor:
    """Gradients and a checkerboard: every token and channel differs (random noise makes features look alike)."""
    ramp = torch.linspace(-1, 1, size)
    checker = ((torch.arange(size)[:, None] // 4 + torch.arange(size)[None, :] // 4) % 2).float()
    return torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size), checker - 0.5])[None]


def activations(traced, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every node's value when the whole traced backbone runs on x."""
    values: dict[str, torch.Tensor] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            values[traced.names[n]] = out
            return out

    with torch.inference_mode():
        Recorder(traced.graph_module).run(x)
    return values


@pytest.fixture(scope="module", params=FAMILIES, ids=[f[0] for f in FAMILIES])
def family(request):
    name, size, layouts = request.param
    traced = trace(load_backbone(f"timm:{name}", "none"), size)
    x = structured_image(size)
    return name, traced, find_cuts(traced, "block"), activations(traced, x), x, layouts


def test_block_cuts_of_every_family_equal_the_backbones_activation(family):
    name, traced, cuts, values, x, layouts = family
    assert len(cuts) >= 6 and cuts[-1].is_full
    assert layouts <= {c.layout for c in cuts}
    with torch.inference_mode():
        for cut in cuts:
            out = build_prefix(traced, cut.name)(x)
            assert tuple(out.shape[1:]) == cut.shape, cut.name
            torch.testing.assert_close(out, values[cut.name], rtol=1e-5, atol=1e-5)


def test_the_deepest_cut_is_read_as_the_backbones_own_head_reads_it(family):
    name, traced, cuts, values, x, _ = family
    model = traced.model
    with torch.inference_mode():
        features = model.forward_features(x)
        # a distilled DeiT's head averages the logits of two tokens: its classifier reads the class token
        own = features[:, 0] if name.startswith("deit") else model.forward_head(features, pre_logits=True)
        ours = readout(traced, cuts[-1].name)(values[cuts[-1].name])
    torch.testing.assert_close(ours.flatten(1), own.flatten(1), rtol=1e-4, atol=1e-5)


def test_a_vit_reads_the_class_token_after_its_final_norm_at_every_block():
    traced = trace(load_backbone("timm:vit_tiny_patch16_224", "none"), 64)
    plan = readout_plan(traced)
    assert (plan.token, plan.prefix, plan.norm) == (0, 1, "norm")
    cuts = {c.name: c for c in find_cuts(traced, "block")}
    x = structured_image(64)
    values = activations(traced, x)
    block = values["blocks.5.add_1"]
    assert block.shape == (1, 17, 192) and cuts["blocks.5.add_1"].layout == "tokens"
    with torch.inference_mode():
        expected = traced.model.norm(block)[:, 0]
        torch.testing.assert_close(readout(traced, "blocks.5.add_1")(block), expected)
        # before the class token joins, a token cut is read as the mean of all its tokens
        patches = values["patch_embed.norm"]
        torch.testing.assert_close(readout(traced, "patch_embed.norm")(patches), traced.model.norm(patches).mean(1))
    # fine-tuning trains the head's copy of the norm, never the backbone's
    copy = readout(traced, "blocks.5.add_1").norm
    assert copy is not traced.model.norm and torch.equal(copy.weight, traced.model.norm.weight)


def test_layouts_are_told_apart_by_shape():
    assert layout_of((197, 192)) == "tokens"
    assert layout_of((96, 56, 56)) == "nchw"
    assert layout_of((56, 56, 96)) == "nhwc"
    assert layout_of((56, 56, 56)) == "nchw" and layout_of((56, 56, 56), channels_last=True) == "nhwc"


def test_a_transformer_runs_at_another_size_with_its_weights():
    backbone = load_backbone("timm:vit_tiny_patch16_224", "none")
    traced = trace(backbone, 96)
    assert find_cuts(traced, "block")[-1].shape == (37, 192)  # 6x6 patches and the class token
    assert torch.equal(traced.model.blocks[0].attn.qkv.weight, backbone.model.blocks[0].attn.qkv.weight)
    assert backbone.model.patch_embed.img_size == (224, 224)  # the backbone itself is left as it was


def test_a_transformer_built_for_one_size_says_so():
    with pytest.raises(NetcutError) as info:
        trace(load_backbone("timm:efficientformer_l1", "none"), 160)
    assert "native --input-size 224" in info.value.hint


def test_the_token_readout_can_be_chosen_and_names_other_trns():
    from dataclasses import replace

    vit = load_backbone("timm:vit_tiny_patch16_224", "none")
    auto = trace(vit, 64)
    mean = trace(replace(vit, token_readout="mean"), 64)
    assert (readout_plan(mean).token, readout_plan(mean).prefix) == (None, 1)  # the patch tokens, not the class
    assert mean.fingerprint() != auto.fingerprint()  # stored heads and latencies of one never serve the other
    x = activations(mean, structured_image(64))["blocks.5.add_1"]
    with torch.inference_mode():
        torch.testing.assert_close(readout(mean, "blocks.5.add_1")(x), mean.model.norm(x)[:, 1:].mean(1))
    levit = trace(replace(load_backbone("timm:levit_128s", "none"), token_readout="class"), 64)
    with pytest.raises(NetcutError) as info:
        readout_plan(levit)
    assert "no class token" in info.value.message and "--token-readout mean" in info.value.hint


def test_work_folded_into_the_batch_counts_once_per_window():
    """Swin attends within windows folded into the batch dimension: every window's work is the image's."""
    from torch import nn

    from netcut.latency.kernels import trn_kernels

    traced = trace(load_backbone("timm:swin_tiny_patch4_window7_224", "none"), 64)
    cut = next(c for c in find_cuts(traced, "block") if c.name == "layers.0.blocks.1.reshape_1")
    counted = [0]

    def count(module, _inputs, output):
        counted[0] += output.numel() * (module.in_features if isinstance(module, nn.Linear)
                                        else module.in_channels // module.groups * module.kernel_size[0] ** 2)

    prefix = build_prefix(traced, cut.name)
    hooks = [m.register_forward_hook(count) for m in prefix.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.inference_mode():
        prefix(structured_image(64))
    for hook in hooks:
        hook.remove()
    assert cut.macs == counted[0]
    kernels = trn_kernels(traced, cut)
    assert sum(k.macs() for k in kernels if k.kind in ("matmul", "conv")) >= counted[0]  # + q·kᵀ and attention·v

"""Legal cut points on tiny hand-built CNNs whose answer is known."""

from __future__ import annotations

import pytest
import torch

from netcut.backbones import from_module
from netcut.errors import NetcutError
from netcut.graph import build_prefix, find_cuts, trace
from tiny_models import Chain, Concat, Residual, Untraceable


def names(model: torch.nn.Module, granularity: str) -> list[str]:
    return [c.name for c in find_cuts(trace(from_module(model, input_size=32)), granularity)]


def test_chain_every_layer_is_legal_and_blocks_are_unit_ends():
    assert names(Chain(), "layer") == [
        "stem.0", "stem.1", "stem.2", "stages.0.0", "stages.0.1", "stages.0.2", "stages.1.0", "stages.1.1",
        "stages.1.2",
    ]
    assert names(Chain(), "block") == ["stem.2", "stages.0.2", "stages.1.2"]


def test_chain_shapes_params_and_macs_match_hand_computation():
    cuts = find_cuts(trace(from_module(Chain(), input_size=32)), "block")
    assert [c.shape for c in cuts] == [(8, 16, 16), (16, 8, 8), (16, 8, 8)]
    # conv 3->8 k3 on 16x16 outputs: 8*16*16*27; then 16*8*8*72; then 16*8*8*144
    assert [c.macs for c in cuts] == [55296, 55296 + 73728, 55296 + 73728 + 147456]
    # conv weights + BN affine (2 per channel)
    assert [c.params for c in cuts] == [216 + 16, 232 + 1152 + 32, 1416 + 2304 + 32]
    assert [c.is_full for c in cuts] == [False, False, True]


def test_no_cut_inside_a_residual_block():
    assert names(Residual(), "layer") == ["stem", "blocks.0.add", "blocks.1.add"]


def test_no_cut_inside_concat_branches():
    assert names(Concat(), "layer") == ["stem", "block.cat", "conv"]


def test_block_cuts_are_a_subset_of_layer_cuts_in_the_same_order():
    layer = names(Chain(), "layer")
    block = names(Chain(), "block")
    assert [n for n in layer if n in block] == block


def test_untraceable_model_names_the_failing_module():
    with pytest.raises(NetcutError) as info:
        trace(from_module(Untraceable(), input_size=32))
    assert "'gate'" in info.value.message and "DataDependent" in info.value.message
    assert "leaf" in info.value.hint


def test_untraceable_module_works_as_a_leaf():
    from tiny_models import DataDependent

    backbone = from_module(Untraceable(), input_size=32, leaf_modules=(DataDependent,))
    assert [c.name for c in find_cuts(trace(backbone), "layer")] == ["stem", "gate"]


def test_input_too_small_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 7), torch.nn.ReLU())
    with pytest.raises(NetcutError) as info:
        trace(from_module(model, input_size=4))
    assert "cannot take a 4x4 input" in info.value.message and "--input-size" in info.value.hint


def test_unknown_granularity_is_rejected():
    with pytest.raises(NetcutError):
        find_cuts(trace(from_module(Chain(), input_size=32)), "stage")


def test_prefix_keeps_only_needed_parameters():
    traced = trace(from_module(Chain(), input_size=32))
    cuts = find_cuts(traced, "layer")
    for cut in cuts:
        prefix = build_prefix(traced, cut.name)
        assert sum(p.numel() for p in prefix.parameters()) == cut.params
    assert not any(n.startswith("fc") for n, _ in build_prefix(traced, "stem.2").named_parameters())

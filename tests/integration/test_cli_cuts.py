"""The real `netcut models` and `netcut cuts` commands, run as a user runs them."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.slow]


def test_models_lists_the_builtins(cli):
    result = cli("models", "--json")
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)] == ["efficientnet_lite0", "efficientnet_lite1",
                                                               "efficientnet_lite2"]


def test_cuts_json_is_in_network_order_with_required_fields(cli):
    result = cli("cuts", "efficientnet_lite0", "--json")
    assert result.returncode == 0, result.stderr
    cuts = json.loads(result.stdout)
    assert len(cuts) >= 10
    assert all({"name", "shape", "params", "macs"} <= set(c) for c in cuts)
    assert cuts[-1]["shape"] == [1280, 7, 7] and cuts[-1]["is_full"]
    macs = [c["macs"] for c in cuts]
    assert macs == sorted(macs) and len(set(macs)) == len(macs)


def test_layer_granularity_has_more_cuts_and_input_size_changes_shapes(cli):
    block = json.loads(cli("cuts", "torchvision:resnet18", "--json", "--input-size", "64").stdout)
    layer = json.loads(cli("cuts", "torchvision:resnet18", "--json", "--input-size", "64",
                           "--granularity", "layer").stdout)
    assert len(layer) > len(block)
    assert block[-1]["shape"] == [512, 2, 2]


def test_cuts_table_is_readable(cli):
    result = cli("cuts", "torchvision:mobilenet_v2", "--input-size", "96")
    assert result.returncode == 0
    assert "features.18.2 (full)" in result.stdout and "block cut points" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["cuts", "no_such_model"], "unknown built-in model"),
    (["cuts", "torchvision:alexnet", "--input-size", "16"], "cannot take a 16x16 input"),
    (["cuts", "torchvision:resnet18", "--input-size", "0"], "must be ≥ 1"),
    (["cuts", "efficientnet_lite0", "--granularity", "stage"], "invalid choice"),
    (["cuts", "torchvision:resnet18", "--weights", "/nonexistent/w.pth"], "does not exist"),
])
def test_bad_input_is_one_paragraph_exit_2_without_traceback(cli, args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr and "fix:" in result.stderr


def test_untraceable_user_model_names_the_module_and_debug_shows_traceback(cli, tmp_path):
    file = tmp_path / "gated.py"
    file.write_text(
        "import torch\n"
        "class Gate(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return x if x.sum() > 0 else -x\n"
        "class Net(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.conv = torch.nn.Conv2d(3, 4, 3); self.gate = Gate()\n"
        "    def forward(self, x):\n"
        "        return self.gate(self.conv(x))\n")
    result = cli("cuts", f"py:{file}:Net")
    assert result.returncode == 2
    assert "module 'gate' (Gate)" in result.stderr and "leaf" in result.stderr
    assert "Traceback" not in result.stderr
    debug = cli("--debug", "cuts", f"py:{file}:Net")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_mismatched_weights_file_is_refused(cli, tmp_path):
    import torch
    import torchvision

    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    result = cli("cuts", "torchvision:resnet34", "--weights", str(path))
    assert result.returncode == 2 and "does not match torchvision:resnet34" in result.stderr


def test_a_vision_transformer_lists_a_cut_between_every_pair_of_blocks(cli):
    result = cli("cuts", "timm:vit_tiny_patch16_224", "--weights", "none", "--input-size", "160", "--json")
    assert result.returncode == 0, result.stderr
    cuts = {c["name"]: c for c in json.loads(result.stdout)}
    blocks = [f"blocks.{i}.add_1" for i in range(12)]
    assert set(blocks) <= set(cuts) and cuts["blocks.0.add_1"]["shape"] == [101, 192]  # 10x10 patches + class
    assert cuts["blocks.0.add_1"]["layout"] == "tokens" and list(cuts)[-1] == "norm.layer_norm"
    table = cli("cuts", "timm:vit_tiny_patch16_224", "--weights", "none", "--input-size", "160")
    assert table.returncode == 0 and "101 tokens × 192" in table.stdout

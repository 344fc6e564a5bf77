"""Backbone registry: real offline ImageNet weights, torchvision/timm/user models, clear failures."""

from __future__ import annotations

import pytest
import torch

from netcut.backbones import BUILTINS, load_backbone, lukemelas_to_timm
from netcut.data.transforms import load_image
from netcut.errors import NetcutError

CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_builtin_weights_are_genuine_imagenet_weights(name, skimage_photo):
    backbone = load_backbone(name)
    assert backbone.pretrained and backbone.mean == (0.5, 0.5, 0.5)
    photos = torch.stack([load_image(skimage_photo(p), backbone.input_size, backbone.mean, backbone.std)
                          for p in ("chelsea.png", "coffee.png")])
    with torch.inference_mode():
        top5 = backbone.model(photos).topk(5).indices.tolist()
    assert CAT_CLASSES & set(top5[0]), top5[0]
    assert top5[0][0] in CAT_CLASSES
    assert top5[1][0] == ESPRESSO


def test_random_weights_do_not_recognise_the_cat(skimage_photo):
    backbone = load_backbone("efficientnet_lite0", weights="none")
    assert not backbone.pretrained
    x = load_image(skimage_photo("chelsea.png"), 224, backbone.mean, backbone.std)[None]
    with torch.inference_mode():
        assert backbone.model(x).softmax(-1).max() < 0.2


@pytest.mark.parametrize("name", list(BUILTINS))
def test_key_mapping_covers_every_parameter_strictly(name):
    import importlib

    import timm

    spec = BUILTINS[name]
    package = importlib.import_module(spec.package)
    state = torch.load(getattr(package, spec.locator).get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(spec.timm_name, pretrained=False)
    mapped = lukemelas_to_timm(state, [len(s) for s in model.blocks])
    assert set(mapped) == set(model.state_dict())
    assert all(mapped[k].shape == v.shape for k, v in model.state_dict().items())


def test_native_input_sizes():
    assert {n: s.input_size for n, s in BUILTINS.items()} == {
        "efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}


def test_torchvision_and_timm_models_load_with_random_weights():
    tv = load_backbone("torchvision:resnet18")
    assert tv.weights == "random" and tv.input_size == 224
    tm = load_backbone("timm:mobilenetv3_small_050")
    assert tm.weights == "random" and tm.input_size == 224


def test_weights_path_round_trip_and_mismatch(tmp_path):
    source = load_backbone("torchvision:resnet18")
    path = tmp_path / "r18.pth"
    torch.save(source.model.state_dict(), path)
    again = load_backbone("torchvision:resnet18", weights=str(path))
    assert torch.equal(again.model.conv1.weight, source.model.conv1.weight)
    with pytest.raises(NetcutError, match="does not match torchvision:resnet34"):
        load_backbone("torchvision:resnet34", weights=str(path))
    with pytest.raises(NetcutError, match="does not exist"):
        load_backbone("torchvision:resnet18", weights=str(tmp_path / "missing.pth"))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(NetcutError, match="cannot read weights file"):
        load_backbone("torchvision:resnet18", weights=str(garbage))


def test_default_download_fails_clearly_without_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached checkpoint may hide the download
    import torch.hub

    def no_network(*args, **kwargs):
        raise OSError("simulated: no route to host")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(NetcutError) as info:
        load_backbone("torchvision:resnet18", weights="DEFAULT")
    assert "could not download" in info.value.message and "--weights PATH" in info.value.hint


@pytest.mark.parametrize("spec, fragment", [
    ("efficientnet_lite9", "efficientnet_lite0"),  # close-match suggestion
    ("torchvision:resnet19", "resnet18"),
    ("timm:nonexistent_net_xyz", "netcut models"),
    ("keras:resnet50", "torchvision:NAME"),
])
def test_unknown_models_get_a_suggestion(spec, fragment):
    with pytest.raises(NetcutError) as info:
        load_backbone(spec)
    assert fragment in str(info.value)


def test_user_module_from_a_python_file(tmp_path):
    file = tmp_path / "mynet.py"
    file.write_text("import torch\nclass Net(torch.nn.Sequential):\n    input_size = 48\n"
                    "    def __init__(self):\n        super().__init__(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())\n")
    backbone = load_backbone(f"py:{file}:Net")
    assert backbone.input_size == 48 and isinstance(backbone.model, torch.nn.Sequential)
    with pytest.raises(NetcutError, match="defines no 'Other'"):
        load_backbone(f"py:{file}:Other")


def test_random_weights_are_reproducible_and_do_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = load_backbone("torchvision:mobilenet_v3_small")
    b = load_backbone("torchvision:mobilenet_v3_small")
    assert a.weights_hash() == b.weights_hash()
    assert torch.equal(torch.rand(1), expected_next)

"""`netcut demo`: a walkthrough on real weights and real photos (grows into the full NetCut demo)."""

from __future__ import annotations

from pathlib import Path

import torch


def _photo(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def run_walkthrough(console) -> None:
    """Classify real photos with the built-in weights, list the cut points, and trim one network."""
    from torchvision.models import ResNet18_Weights

    from netcut.backbones import load_backbone
    from netcut.data.transforms import load_image
    from netcut.graph import find_cuts, trace
    from netcut.trim import trim

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    backbone = load_backbone("efficientnet_lite0")
    console.rule("1. real ImageNet weights, offline")
    for photo in ("chelsea.png", "coffee.png"):
        x = load_image(_photo(photo), backbone.input_size, backbone.mean, backbone.std)[None]
        with torch.inference_mode():
            p = backbone.model(x).softmax(-1)[0]
        top = p.topk(3)
        best = ", ".join(f"{categories[i]} {v:.2f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        console.print(f"  {photo}: {best}")
    console.rule("2. legal cut points (block granularity)")
    traced = trace(backbone)
    cuts = find_cuts(traced)
    full = cuts[-1]
    for c in cuts:
        console.print(f"  {c.name:<18} {'×'.join(map(str, c.shape)):>11}  {c.params / 1e6:5.2f} M params"
                      f"  {100 * c.macs / full.macs:4.0f}% MACs")
    console.rule("3. a trimmed network (TRN) for a 10-class task")
    cut = cuts[len(cuts) // 2]
    trn = trim(backbone, cut, num_classes=10)
    params = sum(p.numel() for p in trn.parameters())
    console.print(f"  cut at {cut.name}: {params / 1e6:.2f} M parameters (full backbone with new head: "
                  f"{(full.params + 1280 * 10 + 10) / 1e6:.2f} M), {100 * cut.macs / full.macs:.0f}% of the MACs")
    console.print(f"  output for one image: {tuple(trn(torch.zeros(1, 3, 224, 224)).shape)}")

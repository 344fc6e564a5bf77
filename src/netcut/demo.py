"""`netcut demo` (what `make demo` runs): NetCut on EfficientNet-Lite0/1/2 and the real Fashion-MNIST."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

DEMO_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# Sized for about five minutes on a 2-core machine: a fine-tuning budget that gives the two best probes of each
# deadline and the off-the-shelf baseline several epochs each (rather than many candidates one epoch each)
DEMO_BUDGET_S = 150.0
DEMO_FINE_TUNE_TOP = 2
DEMO_SIZE, DEMO_TRAIN, DEMO_TEST = 80, 2000, 1000


def _photo(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


def show_real_weights(console: Console) -> None:
    """Classify two real photos: the built-in ImageNet weights are genuine and offline."""
    from torchvision.models import ResNet18_Weights

    from netcut.backbones import load_backbone
    from netcut.data.transforms import load_image

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    backbone = load_backbone("efficientnet_lite0")
    for photo in ("chelsea.png", "coffee.png"):
        x = load_image(_photo(photo), backbone.input_size, backbone.mean, backbone.std)[None]
        with torch.inference_mode():
            p = backbone.model(x).softmax(-1)[0]
        top = p.topk(2)
        best = ", ".join(f"{categories[i]} {v:.2f}" for v, i in zip(top.values.tolist(), top.indices.tolist()))
        console.print(f"  efficientnet_lite0 on {photo}: {best}")


def choose_deadlines(latencies: dict[str, float], margin: float = 0.05) -> list[float]:
    """A deadline just above each off-the-shelf network but the slowest (by its estimate with the margin): each is
    met by that network, the fair baseline, and by trimmed networks of the larger ones, which may be more accurate."""
    ordered = sorted(latencies.values())
    return [round(ms * (1 + margin) * 1.05, 2) for ms in ordered[:-1]]


def run_demo(run_dir: str, console: Console, quick: bool = False) -> int:
    """The whole NetCut workflow on real weights and real data; returns an exit code."""
    from netcut.export.exporter import export
    from netcut.progress import Reporter
    from netcut.report import write_report
    from netcut.report.console import print_result
    from netcut.search.config import ExploreConfig
    from netcut.search.explore import Explorer

    size = 64 if quick else DEMO_SIZE
    limit_train, limit_test = (600, 300) if quick else (DEMO_TRAIN, DEMO_TEST)
    console.rule("netcut demo: NetCut on EfficientNet-Lite0/1/2 and Fashion-MNIST")
    console.print("1. The built-in backbones carry real ImageNet weights, installed offline:")
    show_real_weights(console)
    console.print(f"\n2. Profile every TRN of the three networks at {size}px on this machine, in ONNX Runtime (its "
                  "own worker process, one thread: timings that repeat on a shared machine), fp32 and int8 (static "
                  "quantization calibrated on the training images); empirical estimator: one chained pass per "
                  "network, calibrated on measured TRNs:")
    config = ExploreConfig(models=DEMO_MODELS, data="fashion-mnist", input_size=size, limit_train=limit_train,
                           limit_test=limit_test, run_dir=run_dir, repeats=10 if quick else 30, threads=1,
                           precisions=("fp32", "int8"), budget_s=None if quick else DEMO_BUDGET_S,
                           fine_tune_top=DEMO_FINE_TUNE_TOP)
    candidates = Explorer(config, Reporter()).candidates()
    full = {(c.model, c.id.precision): c for c in candidates if c.is_full}
    latencies = {model: c.estimate.p50 for (model, precision), c in full.items() if precision == "fp32"}
    for (name, precision), c in full.items():
        console.print(f"  {name} (off-the-shelf, new head), {precision}: {c.estimate.p50:.2f} ms, "
                      f"{c.size_bytes / 1e6:.1f} MB")
    deadlines = choose_deadlines(latencies)
    console.print(f"  deadlines: {', '.join(f'{d:g} ms' for d in deadlines)} (just above each off-the-shelf fp32 "
                  "network but the slowest: each meets its deadline, and trimmed networks of the larger ones compete "
                  "with it)")
    tuning = ("" if config.budget_s is None else
              f" then fine-tune every layer of the {config.fine_tune_top} most promising ones and of the best "
              f"off-the-shelf network within a {config.budget_s / 60:g}-minute budget (successive halving over "
              "epochs);")
    console.print(f"\n3. NetCut: propose the TRNs that meet each deadline, retrain only those ({limit_train} "
                  "training images, frozen trunk, cached features; int8 heads on the int8 network's own features, "
                  f"scored as the whole int8 network in ONNX Runtime),{tuning} verify the winner's latency:")
    result = Explorer(replace(config, deadlines=tuple(deadlines)), Reporter()).run()
    print_result(console, result)
    paths = write_report(result, Path(run_dir) / "report", Path(run_dir))
    console.print(f"\n4. Report: {paths['markdown']}, {paths['html']}, plots {paths['plot']} and {paths['depth']}")
    met = [d for d in result.decisions if d.chosen is not None]
    if met:
        out = Path(run_dir) / "winner.onnx"
        manifest = export(run_dir, out, "onnx", met[len(met) // 2].deadline.ms)
        accuracy, agreement = manifest["accuracy_in_runtime"], manifest["agreement_with_pytorch_fp32"]
        console.print(f"5. Exported the {manifest['deadline_ms']:g} ms winner ({manifest['backbone']} cut at "
                      f"{manifest['cut']}, {manifest['precision']}, {manifest['size_bytes'] / 1e6:.1f} MB) to {out} "
                      f"with manifest {out}.json; checked in ONNX Runtime on {accuracy['test_images']} test images: "
                      f"accuracy {accuracy['score']:.4f}, top-1 agreement with PyTorch fp32 "
                      f"{agreement['top1_agreement']:.3f}, p50 {manifest['latency']['measured_in_runtime']['p50']:.2f} "
                      "ms")
    console.print("\nNext: your own images (one sub-folder per class) and deadline:\n"
                  "  netcut explore --models efficientnet_lite0,efficientnet_lite1 --data photos/ --deadline 2 "
                  "--budget 10m\n"
                  "and latencies measured on your own device (install the agent there: pip install "
                  "'./agent[onnxruntime]'):\n"
                  "  netcut-agent serve   (on the device), then: netcut explore ... --device http://DEVICE:8765\n"
                  "Guide: docs/guide/quickstart.md and docs/guide/devices.md (or `make docs` for the site).",
                  markup=False)  # [onnxruntime] is an extra, not a style
    return 0

"""Seconds per fine-tuning epoch on each train device: EfficientNet-Lite0 cut at blocks.4.1.add, every layer, on
the scikit-learn digits (1,437 training images) at 96 px, batch 64.

Usage: python benchmarks/finetune_speed.py [--devices cpu,cuda] [--out DIR]   (DIR default: docs/benchmarks/)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import torch  # noqa: E402

from _common import machine  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.data.datasets import SplitConfig, load_dataset  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.model import classifier  # noqa: E402
from netcut.train.finetune import FineTuneConfig, FineTuner  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="cpu,cuda")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks"))
    args = parser.parse_args()
    data = load_dataset("digits", SplitConfig(val_fraction=0.1, test_fraction=0.1))
    traced = trace(load_backbone("efficientnet_lite0"), 96)
    cuts = find_cuts(traced)
    cut = next(c for c in cuts if c.name == "blocks.4.1.add")
    rows = {}
    for device in args.devices.split(","):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        tuner = FineTuner(traced, cut, cuts, classifier(cut.shape[0], 10), data,
                          FineTuneConfig(max_epochs=3, device=device))
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            tuner.train_epoch()
            seconds.append(time.perf_counter() - start)
        rows[device] = {"epoch_s": seconds, "val_after_3": tuner.history[-1],
                        "name": torch.cuda.get_device_name() if device == "cuda" else None,
                        "threads": torch.get_num_threads()}
        print(device, [round(s, 2) for s in seconds], round(tuner.history[-1], 4), flush=True)
    info = {**machine(), "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    out = {"machine": info, "train_images": len(data.splits["train"]), "size": 96, "devices": rows}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "finetune_speed.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()

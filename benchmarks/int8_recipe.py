"""int8 weights per tensor or per channel: accuracy against fp32 and latency, side by side in ONNX Runtime.

For each full EfficientNet-Lite at 96 px, a head is trained on fp32 features (real Fashion-MNIST); the whole network
(head kept float) is quantized to int8 QDQ twice, with per-tensor and with per-channel weights (u8 activations, MinMax
calibration on 128 training images), and scored in ONNX Runtime on the test images; the fp32 network and both int8
ones are timed interleaved in one worker process (one thread). Written to docs/benchmarks/int8_recipe.md.

Usage: python benchmarks/int8_recipe.py [--size 96] [--train 2000] [--test 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.data.datasets import SplitConfig, load_dataset  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.latency.backends import get_backend  # noqa: E402
from netcut.latency.backends.onnxruntime_backend import export_onnx, quantize_onnx  # noqa: E402
from netcut.latency.harness import HarnessConfig  # noqa: E402
from netcut.latency.session import RuntimeSession  # noqa: E402
from netcut.latency.workers import WorkerPool  # noqa: E402
from netcut.model import build_trn  # noqa: E402
from netcut.train.cache import extract_features  # noqa: E402
from netcut.train.metrics import evaluate  # noqa: E402
from netcut.train.probe import TrainConfig, fit_head  # noqa: E402

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
SCHEMES = {"fp32": None, "int8 per tensor": False, "int8 per channel": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", SplitConfig(limit_train=args.train, limit_test=args.test))
    rows = []
    backend = get_backend("onnxruntime")
    with WorkerPool() as pool:
        session = RuntimeSession(backend, pool.get(backend.runtime, 1, backend.name))
        for name in MODELS:
            traced = trace(load_backbone(name), args.size)
            cut = find_cuts(traced)[-1]
            features = {s: extract_features(traced, [cut.name], data, s) for s in ("train", "val", "test")}
            (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))
            head = fit_head(tx[cut.name], ty, vx[cut.name], vy, data.num_classes, TrainConfig(), sx[cut.name], sy)
            trn = build_trn(traced, cut, data.num_classes, trained_classifier=head.classifier).eval()
            example = torch.zeros(1, 3, args.size, args.size)
            b = traced.backbone
            calibration = [x.numpy() for x, _ in data.batches("train", args.size, b.mean, b.std, 1)][:128]
            fp32 = export_onnx(trn, example)
            payloads = {scheme: fp32 if pc is None else quantize_onnx(fp32, calibration, per_channel=pc)
                        for scheme, pc in SCHEMES.items()}
            for scheme, payload in payloads.items():
                session.add_payload(f"{name}/{scheme}", payload, tuple(example.shape))
            timing = session.time([f"{name}/{s}" for s in SCHEMES], HarnessConfig(repeats=50, warmup=10, threads=1))
            for scheme in SCHEMES:
                logits, targets = [], []
                for x, y in data.batches("test", args.size, b.mean, b.std, 1):
                    logits.append(session.run(f"{name}/{scheme}", x.numpy())[0])
                    targets.append(y)
                accuracy = evaluate(torch.from_numpy(np.concatenate(logits)), torch.cat(targets))["accuracy"]
                rows.append({"model": name, "scheme": scheme, "test_accuracy": accuracy,
                             "p50_ms": timing.stats[f"{name}/{scheme}"].p50, "size_mb": len(payloads[scheme]) / 1e6})
                print(rows[-1], flush=True)
            session.clear()
    lines = ["# int8 weights per tensor or per channel (ONNX Runtime)", "", "{header}",
             f"Full EfficientNet-Lite0/1/2 at {args.size} px with a head trained on fp32 features of real "
             f"Fashion-MNIST ({args.train} training, {args.test} test images); int8 = static QDQ, u8 activations, "
             "MinMax on 128 training images, the head kept float. Latency: p50 of the three interleaved in one "
             "worker process, one thread.", "",
             "| model | scheme | test accuracy | vs fp32 (points) | p50 | vs fp32 | size |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ref = next(x for x in rows if x["model"] == r["model"] and x["scheme"] == "fp32")
        lines.append(f"| {r['model']} | {r['scheme']} | {r['test_accuracy']:.4f} | "
                     f"{100 * (r['test_accuracy'] - ref['test_accuracy']):+.1f} | {r['p50_ms']:.2f} ms | "
                     f"{ref['p50_ms'] / r['p50_ms']:.2f}x | {r['size_mb']:.1f} MB |")
    write("int8_recipe", {"machine": machine(), "args": vars(args), "rows": rows}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

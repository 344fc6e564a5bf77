"""Small model files for the arm64 check (tools/arm64_check.sh): one CNN as ONNX, TFLite and OpenVINO IR, written by
netcut's own exporters.

    python tools/arm64_models.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from netcut.export.formats import write_onnx, write_openvino, write_tflite


def tiny_cnn() -> nn.Module:
    """Two conv-bn-relu units, pooling and a linear layer: every runtime's common kernels, 32 px input."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                         nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


def main(out: Path) -> None:
    """Write tiny.onnx, tiny.tflite and tiny.xml (+ .bin) into out."""
    out.mkdir(parents=True, exist_ok=True)
    model, example = tiny_cnn(), torch.zeros(1, 3, 32, 32)
    for name, writer in (("tiny.onnx", write_onnx), ("tiny.tflite", write_tflite), ("tiny.xml", write_openvino)):
        exported = writer(model, example, "fp32", None)
        for suffix, data in exported.files.items():
            (out / name).with_suffix(suffix or Path(name).suffix).write_bytes(data)
    print(" ".join(sorted(p.name for p in out.iterdir() if p.name.startswith("tiny."))))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

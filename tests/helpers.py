"""Helpers the tests share: the real CLI as a user runs it, and a soft-label baseline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed `netcut` console script as a user would."""
    exe = Path(sys.executable).with_name("netcut")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd, input=input)


def uniform_similarity(csv: Path) -> float:
    """The angular similarity a predictor that knows nothing (uniform probabilities) scores on a soft-label CSV: what
    a trained network must beat."""
    import torch

    from netcut.train.metrics import angular_similarity

    rows = [line.split(",")[1:] for line in csv.read_text().splitlines()[1:] if line.strip()]
    targets = torch.tensor([[float(v) for v in row] for row in rows])
    return angular_similarity(torch.full_like(targets, 1.0 / targets.shape[1]), targets)


def verified_latencies(run_dir: Path) -> dict[tuple[str, str, str], float]:
    """The latencies a run measured to verify its choices: (backbone, cut, device) -> p50 ms, from its store."""
    import sqlite3

    db = sqlite3.connect(Path(run_dir) / "netcut.sqlite")
    rows = db.execute("SELECT backbone, cut, device, p50 FROM latencies WHERE estimator='verified'").fetchall()
    db.close()
    return {(b, c, d): p for b, c, d, p in rows}


# A network whose one op (cummax) neither the ONNX nor the LiteRT exporter converts: errors must name the op.
UNEXPORTABLE_NET = """
import torch


class Unexportable(torch.nn.Module):
    input_size = 32

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, 1, 1)

    def forward(self, x):
        return torch.cummax(self.conv(x), -1).values
"""

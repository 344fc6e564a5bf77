"""The run's own copy of the images export needs: the test split (to measure the exported file's accuracy in its
runtime) and the int8 calibration images, as uint8 at the explored input size, independent of the source data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from netcut.data.datasets import Dataset
from netcut.fsutil import write_atomic
from netcut.paths import snapshot_path


def save_snapshot(run_dir: str | Path, dataset: Dataset, input_size: int, calibration: int) -> Path:
    """Write (once per dataset and size) the test images and targets and the first training images."""
    path = snapshot_path(run_dir)
    tag = f"{dataset.fingerprint()}|{input_size}|{calibration}"
    if path.is_file():
        with np.load(path) as data:
            if str(data["tag"]) == tag:
                return path
    zero, one = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)

    def pixels(indices: np.ndarray) -> np.ndarray:
        batches = [dataset.loader(indices[i:i + 256], input_size, zero, one).numpy()
                   for i in range(0, len(indices), 256)]
        return np.clip(np.round(np.concatenate(batches) * 255), 0, 255).astype(np.uint8)

    test = dataset.splits["test"]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, tag=np.array(tag), test=pixels(test), targets=dataset.targets[test],
                        calibration=pixels(dataset.splits["train"][:calibration]))
    return write_atomic(path, buffer.getvalue())


def load_snapshot(run_dir: str | Path, mean: tuple[float, ...], std: tuple[float, ...]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(test images, test targets, calibration images) normalised for a network, or None if the run has none."""
    path = snapshot_path(run_dir)
    if not path.is_file():
        return None
    with np.load(path) as data:
        m = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)

        def normalise(pixels: np.ndarray) -> np.ndarray:
            return ((pixels.astype(np.float32) / 255.0 - m) / s).astype(np.float32)

        return normalise(data["test"]), data["targets"], normalise(data["calibration"])

"""Calibration inputs for int8 conversion: images for a TRN, activations at a cut for a segment starting there."""

from __future__ import annotations

import numpy as np
import torch

from netcut.graph import TracedNetwork, build_extractor, example_input


def calibration_images(traced: TracedNetwork, images: np.ndarray | None, count: int) -> np.ndarray:
    """The given (N, 3, H, W) normalised images, or `count` synthetic ones (for latency alone) when None."""
    if images is not None:
        return np.ascontiguousarray(images, dtype=np.float32)
    return example_input(traced.input_size, count).numpy()


def segment_inputs(traced: TracedNetwork, images: np.ndarray, cut_names: list[str]) -> dict[str, np.ndarray]:
    """Activations of the calibration images at every cut (a segment starting at a cut is calibrated on them)."""
    with torch.inference_mode():
        outputs = build_extractor(traced, cut_names)(torch.from_numpy(images))
    return {name: out.numpy() for name, out in zip(cut_names, outputs)}


def as_batches(inputs: np.ndarray, batch: int) -> list[np.ndarray]:
    """Calibration inputs as the model's own batch size."""
    return [inputs[i:i + batch] for i in range(0, len(inputs) - batch + 1, batch)]

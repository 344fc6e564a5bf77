"""Image preprocessing: 3 channels, resize to the backbone's input size, normalise with its mean/std."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_tensor(image: Image.Image, size: int, mean: tuple[float, ...], std: tuple[float, ...],
              crop: bool = True) -> torch.Tensor:
    """A (3, size, size) float tensor: RGB, bicubic resize (shorter side, then centre crop), normalised."""
    image = image.convert("RGB")
    if crop:
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.asarray(image, dtype=np.float32) / 255.0
    tensor = torch.from_numpy(array).permute(2, 0, 1)
    return (tensor - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def normalize_batch(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Normalise a (N, 3, H, W) batch in [0, 1] with per-channel mean/std."""
    m = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - m) / s


def load_image(path: str | Path, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Read an image file into a normalised (3, size, size) tensor."""
    with Image.open(path) as image:
        return to_tensor(image, size, mean, std)

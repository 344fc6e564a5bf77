"""Datasets: Fashion-MNIST, digits, an image folder, a soft-label CSV, or a user's torch Dataset.

Every dataset gives normalised 3-channel image batches at any size, hard or soft targets, and deterministic
seeded train/val/test splits with per-split limits.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from netcut.data.transforms import normalize_batch
from netcut.errors import NetcutError
from netcut.paths import fashion_mnist_dir

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot"]
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

ARRAY_PREPROCESSING = ("values/255; grayscale repeated to 3 channels; bilinear (antialiased) resize to SxS; "
                       "(x - mean)/std per channel; NCHW")
FILE_PREPROCESSING = ("decode as RGB; bicubic resize of the shorter side to S; centre crop SxS; x/255; "
                      "(x - mean)/std per channel; NCHW")

# (indices, size, mean, std) -> float tensor (len(indices), 3, size, size)
BatchLoader = Callable[[np.ndarray, int, tuple, tuple], torch.Tensor]


@dataclass(frozen=True)
class SplitConfig:
    """How to split and limit a dataset (recorded with every result)."""

    seed: int = 0
    val_fraction: float = 0.15
    test_fraction: float = 0.15  # ignored where the dataset has an official test split
    limit_train: int | None = None
    limit_val: int | None = None  # default: a quarter of limit_train (at least 50) when limit_train is set
    limit_test: int | None = None


@dataclass
class Dataset:
    """Labelled images with splits. targets: (N,) class indices, or (N, K) probabilities for soft labels."""

    name: str
    classes: list[str]
    targets: np.ndarray
    splits: dict[str, np.ndarray]
    loader: BatchLoader
    identity: str  # content fingerprint of the source (before splitting)
    skipped: int = 0  # unreadable images left out
    notes: list[str] = field(default_factory=list)
    preprocessing: str = ARRAY_PREPROCESSING  # how images become the network's input (recorded in export manifests)
    flip_invariant: bool = False  # whether a mirrored image keeps its label (fine-tuning augments with flips then)
    _fingerprint: str = field(default="", repr=False)

    @property
    def soft(self) -> bool:
        """Whether targets are probability vectors."""
        return self.targets.ndim == 2

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def fingerprint(self) -> str:
        """Hash of the source and the exact split indices: keys caches and stored results (computed once)."""
        if not self._fingerprint:
            h = hashlib.sha256(self.identity.encode())
            for name in ("train", "val", "test"):
                h.update(name.encode())
                h.update(np.ascontiguousarray(self.splits[name]).tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def batches(self, split: str, size: int, mean: tuple, std: tuple, batch_size: int = 64,
                order: np.ndarray | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, targets) batches of one split, in a fixed order (or in `order`, a permutation of the split)."""
        indices = self.splits[split] if order is None else self.splits[split][order]
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            yield self.loader(chunk, size, mean, std), torch.from_numpy(self.targets[chunk])

    def split_targets(self, split: str) -> np.ndarray:
        """Targets of one split."""
        return self.targets[self.splits[split]]


def _split(n: int, config: SplitConfig, official_test: np.ndarray | None = None,
           stratify: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Seeded split of range(n) (or of the non-test part), then per-split limits."""
    rng = np.random.default_rng(config.seed)
    if official_test is not None:
        pool, test = np.setdiff1d(np.arange(n), official_test), np.asarray(official_test)
        test = rng.permutation(test)
        pool = rng.permutation(pool)
        n_val = int(round(config.val_fraction * len(pool)))
        val, train = pool[:n_val], pool[n_val:]
    else:
        order = rng.permutation(n)
        n_test = int(round(config.test_fraction * n))
        n_val = int(round(config.val_fraction * n))
        test, val, train = order[:n_test], order[n_test:n_test + n_val], order[n_test + n_val:]
    limit_val = config.limit_val
    if limit_val is None and config.limit_train is not None:
        limit_val = max(50, config.limit_train // 4)
    splits = {"train": train[:config.limit_train], "val": val[:limit_val], "test": test[:config.limit_test]}
    for name, idx in splits.items():
        if len(idx) == 0:
            raise NetcutError(f"the {name} split is empty ({n} usable images in all)",
                              "use a larger dataset or raise --limit-train/--limit-test")
    return {k: np.sort(v) for k, v in splits.items()}


def _array_loader(images: np.ndarray) -> BatchLoader:
    """Loader over uint8 images (N, H, W) or (N, H, W, 3), resized as a batch (fast)."""

    def load(indices: np.ndarray, size: int, mean: tuple, std: tuple) -> torch.Tensor:
        x = torch.from_numpy(images[indices]).float().div_(255.0)
        x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return normalize_batch(x.contiguous(), mean, std)

    return load


def _read_idx(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_fashion_mnist(config: SplitConfig, root: Path | None = None) -> Dataset:
    """The real Fashion-MNIST (60k train + 10k test) from the Debian package's IDX files."""
    root = root if root is not None else fashion_mnist_dir()
    files = {k: root / f"{k}-ubyte.gz" for k in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3",
                                                 "t10k-labels-idx1")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise NetcutError(f"Fashion-MNIST is not installed (missing {missing[0]})",
                          "sudo apt-get install -y dataset-fashion-mnist  (or `make demo` as root), or set "
                          "NETCUT_FASHION_MNIST to a folder holding the four IDX .gz files")
    try:
        train_x = _read_idx(files["train-images-idx3"], 16).reshape(-1, 28, 28)
        test_x = _read_idx(files["t10k-images-idx3"], 16).reshape(-1, 28, 28)
        train_y = _read_idx(files["train-labels-idx1"], 8)
        test_y = _read_idx(files["t10k-labels-idx1"], 8)
    except (OSError, EOFError, ValueError) as exc:
        raise NetcutError(f"Fashion-MNIST files in {root} are corrupt: {exc}",
                          "reinstall: sudo apt-get install --reinstall dataset-fashion-mnist") from exc
    images = np.concatenate([train_x, test_x])
    targets = np.concatenate([train_y, test_y]).astype(np.int64)
    splits = _split(len(images), config, official_test=np.arange(len(train_x), len(images)))
    return Dataset("fashion-mnist", FASHION_MNIST_CLASSES, targets, splits, _array_loader(images),
                   "fashion-mnist-idx-v1", flip_invariant=True)


def load_digits_dataset(config: SplitConfig) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images, 10 classes)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise NetcutError("the digits dataset needs scikit-learn", "pip install scikit-learn") from exc
    bunch = load_digits()
    images = (bunch.images * (255.0 / 16.0)).round().astype(np.uint8)
    return Dataset("digits", [str(i) for i in range(10)], bunch.target.astype(np.int64),
                   _split(len(images), config), _array_loader(images), "sklearn-digits-v1")


def _decode(path: Path, size: int) -> np.ndarray | None:
    """An RGB uint8 array resized for caching, or None if the file cannot be decoded."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
                rgb = image.convert("RGB")
    except Exception:  # PIL raises many types for corrupt or truncated files
        return None
    w, h = rgb.size
    scale = size / min(w, h)
    rgb = rgb.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC)
    w, h = rgb.size
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(rgb.crop((left, top, left + size, top + size)), dtype=np.uint8)


class _FileImages:
    """Decodes image files once per size (centre crop), keeps them as uint8 in memory."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.cache: dict[int, np.ndarray] = {}

    def decode_all(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(images of the readable files, mask of readable files)."""
        arrays = [_decode(p, size) for p in self.paths]
        ok = np.array([a is not None for a in arrays], dtype=bool)
        stacked = np.stack([a for a in arrays if a is not None]) if ok.any() else np.zeros((0, size, size, 3), np.uint8)
        return stacked, ok

    def loader(self, probe_size: int) -> tuple[BatchLoader, np.ndarray]:
        """A loader over readable files, and which files those are (decided at probe_size)."""
        images, ok = self.decode_all(probe_size)
        self.cache[probe_size] = images
        kept = [p for p, good in zip(self.paths, ok) if good]

        def load(indices: np.ndarray, size: int, mean: tuple, std: tuple) -> torch.Tensor:
            if size not in self.cache:
                self.cache[size] = np.stack([_decode(p, size) for p in kept])  # type: ignore[misc]
            return _array_loader(self.cache[size])(indices, size, mean, std)

        return load, ok


def _identity_of_files(paths: list[Path], extra: str) -> str:
    """A content fingerprint: each file's name and bytes (a file that cannot be read counts as missing)."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        try:
            data = p.read_bytes()
        except OSError:
            data = b"<missing>"
        h.update(f"{p.name}|{len(data)}|".encode())
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()[:16]


def load_folder(root: Path, config: SplitConfig, probe_size: int = 224) -> Dataset:
    """ImageFolder layout: one sub-folder per class holding jpg/png/bmp/webp images."""
    if not root.is_dir():
        raise NetcutError(f"dataset folder {str(root)!r} does not exist", "pass fashion-mnist, digits, a folder "
                          "with one sub-folder per class, or a soft-label CSV")
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise NetcutError(f"dataset folder {str(root)!r} has no class sub-folders",
                          "put each class's images in its own sub-folder (ImageFolder layout)")
    paths, labels = [], []
    for label, d in enumerate(class_dirs):
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not files:
            raise NetcutError(f"class folder {str(d)!r} has no images ({', '.join(sorted(IMAGE_EXTENSIONS))})",
                              "add images to it or remove the folder")
        paths += files
        labels += [label] * len(files)
    images = _FileImages(paths)
    loader, ok = images.loader(probe_size)
    skipped = int((~ok).sum())
    if not ok.any():
        raise NetcutError(f"none of the {len(paths)} images in {str(root)!r} could be decoded",
                          "check the files: they may be corrupt or not images")
    targets = np.array(labels, dtype=np.int64)[ok]
    notes = [f"skipped {skipped} unreadable image(s) of {len(paths)}"] if skipped else []
    dataset = Dataset(f"folder:{root}", [d.name for d in class_dirs], targets, _split(len(targets), config),
                      loader, _identity_of_files(paths, "folder"), skipped, notes, FILE_PREPROCESSING,
                      flip_invariant=True)
    return dataset


def load_soft_csv(path: Path, config: SplitConfig, probe_size: int = 224) -> Dataset:
    """A CSV of `path,p_1,...,p_k` rows (probabilities summing to 1); paths relative to the CSV's folder."""
    if not path.is_file():
        raise NetcutError(f"soft-label CSV {str(path)!r} does not exist", "check the path")
    rows: list[tuple[Path, list[float]]] = []
    classes: list[str] | None = None
    with path.open(newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip():
                continue
            try:
                probs = [float(v) for v in row[1:]]
            except ValueError:
                if line_no == 1:  # a header names the classes
                    classes = [c.strip() for c in row[1:]]
                    continue
                raise NetcutError(f"{path}:{line_no}: probabilities must be numbers, got {row[1:]!r}",
                                  "write rows as path,p_1,...,p_k") from None
            width = len(classes) if classes else (len(rows[0][1]) if rows else len(probs))
            if len(probs) != width or width < 2:
                raise NetcutError(f"{path}:{line_no}: expected {width} probabilities, got {len(probs)}",
                                  "every row needs the same number of class probabilities (at least 2)")
            if any(p < 0 or not np.isfinite(p) for p in probs) or abs(sum(probs) - 1.0) > 1e-3:
                raise NetcutError(f"{path}:{line_no}: probabilities must be ≥ 0 and sum to 1 (sum {sum(probs):.4f})",
                                  "normalise each row so its probabilities add up to 1")
            rows.append(((path.parent / row[0].strip()), probs))
    if not rows:
        raise NetcutError(f"soft-label CSV {str(path)!r} has no rows", "add rows path,p_1,...,p_k")
    missing = [str(p) for p, _ in rows if not p.is_file()]
    if len(missing) == len(rows):
        raise NetcutError(f"none of the images listed in {str(path)!r} exist (e.g. {missing[0]})",
                          "paths are relative to the CSV's folder")
    images = _FileImages([p for p, _ in rows])
    loader, ok = images.loader(probe_size)
    if not ok.any():
        raise NetcutError(f"none of the images listed in {str(path)!r} could be decoded", "check the image files")
    targets = np.array([probs for _, probs in rows], dtype=np.float32)[ok]
    k = targets.shape[1]
    skipped = int((~ok).sum())
    notes = [f"skipped {skipped} missing or unreadable image(s) of {len(rows)}"] if skipped else []
    identity = _identity_of_files([path, *(p for p, _ in rows)], "csv")  # the CSV and the images it lists
    return Dataset(f"csv:{path}", classes or [f"class_{i}" for i in range(k)], targets,
                   _split(len(targets), config), loader, identity, skipped, notes, FILE_PREPROCESSING,
                   flip_invariant=True)


def from_torch_dataset(dataset: torch.utils.data.Dataset, classes: list[str], config: SplitConfig = SplitConfig(),
                       name: str = "user") -> Dataset:
    """Wrap a torch Dataset yielding (image, label): image a PIL image or a (C, H, W) tensor in [0, 1]."""
    from torchvision.transforms.functional import pil_to_tensor

    n = len(dataset)  # type: ignore[arg-type]
    labels = []
    content = hashlib.sha256(f"{name}|{n}|{classes}".encode())  # every sample's pixels and label: two datasets of
    for i in range(n):  # one size must never share a feature cache or a stored record
        image, label = dataset[i][:2]
        labels.append(label)
        content.update(_sample_bytes(image))
        content.update(np.asarray(label, dtype=np.float64).tobytes())
    targets = np.array(labels, dtype=np.float32 if np.ndim(labels[0]) == 1 else np.int64)

    def load(indices: np.ndarray, size: int, mean: tuple, std: tuple) -> torch.Tensor:
        out = []
        for i in indices:
            image = dataset[int(i)][0]
            x = image if isinstance(image, torch.Tensor) else pil_to_tensor(image.convert("RGB")).float() / 255.0
            x = x.float()
            x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
            out.append(F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=True)[0])
        return normalize_batch(torch.stack(out), mean, std)

    return Dataset(name, classes, targets, _split(n, config), load, f"torch-dataset:{content.hexdigest()[:16]}")


def _sample_bytes(image: Any) -> bytes:
    """The pixels of a PIL image or a tensor, with their shape and type (so equal bytes of other shapes differ)."""
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().contiguous().numpy()
        return f"{array.shape}|{array.dtype}|".encode() + array.tobytes()
    return f"{image.size}|{image.mode}|".encode() + image.tobytes()


def load_dataset(spec: str, config: SplitConfig = SplitConfig(), probe_size: int = 224) -> Dataset:
    """fashion-mnist, digits, a class-per-folder directory, or a soft-label CSV."""
    if spec == "fashion-mnist":
        return load_fashion_mnist(config)
    if spec == "digits":
        return load_digits_dataset(config)
    path = Path(spec)
    if path.suffix.lower() == ".csv":
        return load_soft_csv(path, config, probe_size)
    if path.exists() and not path.is_dir():
        raise NetcutError(f"{spec!r} is a file, not a dataset", "pass a folder (one sub-folder per class) or a .csv")
    return load_folder(path, config, probe_size)

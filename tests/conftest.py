"""Shared fixtures: tiny models, real photos, and a runner for the real CLI."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from helpers import TESTS, run_cli

# Devices' reference levels and fitted models go to a throwaway cache (inherited by the CLI processes): tests never
# read or write the user's.
os.environ["NETCUT_CACHE"] = tempfile.mkdtemp(prefix="netcut-test-cache-")


@pytest.fixture
def cli():
    """The CLI runner."""
    return run_cli


@pytest.fixture(scope="session")
def skimage_photo():
    """Path to a real photo shipped inside the scikit-image wheel."""
    import skimage

    base = Path(skimage.__file__).parent / "data"
    return lambda name: base / name


@pytest.fixture
def photo_folder(tmp_path, skimage_photo):
    """An ImageFolder of real photo crops (3 classes x 6), plus one corrupt and one truncated file."""
    from PIL import Image

    root = tmp_path / "photos"
    sources = {"cat": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg"}
    for label, name in sources.items():
        (root / label).mkdir(parents=True)
        with Image.open(skimage_photo(name)) as image:
            image = image.convert("RGB")
            w, h = image.size
            for i in range(6):
                box = (i * w // 12, i * h // 12, w // 2 + i * w // 12, h // 2 + i * h // 12)
                image.crop(box).save(root / label / f"{i}.png")
    (root / "cat" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    good = (root / "coffee" / "0.png").read_bytes()
    (root / "coffee" / "truncated.png").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture
def soft_labels(photo_folder) -> Path:
    """A soft-label CSV (path,p_a,p_b,p_c) over the photo folder's real images."""
    rows = ["path,a,b,c"] + [f"{k}/{i}.png,{p}" for i in range(6) for k, p in
                             (("cat", "0.8,0.1,0.1"), ("coffee", "0.1,0.7,0.2"), ("rocket", "0.2,0.2,0.6"))]
    csv = photo_folder / "soft.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


@pytest.fixture
def paced(monkeypatch, tmp_path):
    """A runtime whose speed the test sets (tests/paced_runtime.py): its backend registered, importable by worker
    processes, 1 ms a call and nothing per FLOP until the test says otherwise; (backend, schedule file)."""
    from netcut.latency import backends
    from paced_runtime import PacedBackend

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("PACED_MS", "1.0")
    monkeypatch.setenv("PACED_MS_PER_MFLOP", "0")
    schedule = tmp_path / "schedule.json"
    monkeypatch.setenv("PACED_SCHEDULE", str(schedule))
    backend = PacedBackend()
    monkeypatch.setitem(backends._REGISTRY, backend.name, backend)  # registered for this test only
    return backend, schedule


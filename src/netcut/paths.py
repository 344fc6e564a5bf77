"""Where netcut keeps things: the per-device cache, the files of a run directory, and the datasets it finds on disk.

Read from the environment on each call (no module-level state), so a test or a user can move any of them.
"""

from __future__ import annotations

import os
from pathlib import Path

STORE_NAME = "netcut.sqlite"
LOCK_NAME = ".netcut.lock"
SNAPSHOT_NAME = "eval-data.npz"
FEATURE_CACHE = "cache"


def cache_dir() -> Path:
    """Where netcut keeps what belongs to a device rather than a run ($NETCUT_CACHE, default ~/.cache/netcut)."""
    return Path(os.environ.get("NETCUT_CACHE", Path.home() / ".cache" / "netcut"))


def fashion_mnist_dir() -> Path:
    """The folder of Fashion-MNIST's IDX files ($NETCUT_FASHION_MNIST; Debian's dataset-fashion-mnist by default)."""
    return Path(os.environ.get("NETCUT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))


def store_path(run_dir: str | Path) -> Path:
    """A run directory's SQLite store."""
    return Path(run_dir) / STORE_NAME


def lock_path(run_dir: str | Path) -> Path:
    """The file a run directory's exclusive lock is held on."""
    return Path(run_dir) / LOCK_NAME


def snapshot_path(run_dir: str | Path) -> Path:
    """A run directory's test-image snapshot (what exports are checked on)."""
    return Path(run_dir) / SNAPSHOT_NAME


def feature_cache_dir(run_dir: str | Path) -> Path:
    """A run directory's cache of frozen-trunk features."""
    return Path(run_dir) / FEATURE_CACHE

"""Shared fixtures: tiny models, real photos, and a runner for the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))


def run_cli(*args: str, env: dict | None = None, timeout: float = 300, cwd: Path | None = None,
            input: str | None = None) -> subprocess.CompletedProcess:
    """Run the installed `netcut` console script as a user would."""
    exe = Path(sys.executable).with_name("netcut")
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd, input=input)


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

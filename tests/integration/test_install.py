"""What a user gets from `pip install .` (or `pip install git+URL`): the wheels build from a clone, netcut installs
with its core dependencies alone into a new virtual environment, and its default path works there (`netcut cuts`,
a tiny exploration on ONNX Runtime); the device agent installs alone, without PyTorch. Exact versions come from
constraints.txt, as `make` installs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.install, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path | None = None, timeout: float = 1200) -> subprocess.CompletedProcess:
    # nothing of this environment leaks in (no PYTHONPATH, no virtual environment), but the test's device cache
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "NETCUT_CACHE": os.environ["NETCUT_CACHE"]}
    result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)
    assert result.returncode == 0, (args, result.stdout[-2000:], result.stderr[-4000:])
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(ROOT), str(ROOT / "agent"))
    found = {w.name.split("-")[0]: w for w in out.glob("*.whl")}
    assert set(found) == {"netcut", "netcut_agent"}, found
    with zipfile.ZipFile(found["netcut"]) as wheel:  # the report page's own code and style travel with it
        assert {"netcut/report/assets/page.js", "netcut/report/assets/page.css",
                "netcut/report/assets/page.html"} <= set(wheel.namelist())
    return found


def new_venv(path: Path) -> Path:
    run(sys.executable, "-m", "venv", str(path))
    return path / "bin"


def test_netcut_installs_with_its_core_dependencies_and_explores(wheels, tmp_path):
    bin_ = new_venv(tmp_path / "venv")
    run(str(bin_ / "pip"), "install", "--quiet", "-c", str(ROOT / "constraints.txt"), str(wheels["netcut"]))
    cuts = json.loads(run(str(bin_ / "netcut"), "cuts", "efficientnet_lite0", "--input-size", "32", "--json").stdout)
    assert cuts[-1]["is_full"] and len(cuts) >= 10
    explored = run(str(bin_ / "netcut"), "explore", "--models", "efficientnet_lite0", "--data", "digits",
                   "--input-size", "32", "--limit-train", "100", "--limit-test", "50", "--repeats", "3",
                   "--threads", "1", "--epochs", "3", "--deadline", "1000", "--no-report", "--json", "--quiet",
                   "--run-dir", str(tmp_path / "run"), cwd=tmp_path)
    chosen = json.loads(explored.stdout)["chosen"]
    assert chosen["backend"] == "onnxruntime" and chosen["model"] == "efficientnet_lite0"
    assert chosen["latency_ms"] is not None  # verified in ONNX Runtime, a core dependency


def test_the_agent_installs_alone_without_pytorch(wheels, tmp_path):
    bin_ = new_venv(tmp_path / "venv")
    run(str(bin_ / "pip"), "install", "--quiet", "-c", str(ROOT / "constraints.txt"), str(wheels["netcut_agent"]))
    assert run(str(bin_ / "netcut-agent"), "--version").stdout.startswith("netcut-agent ")
    missing = subprocess.run([str(bin_ / "python"), "-c", "import torch"], capture_output=True, text=True)
    assert missing.returncode != 0 and "No module named 'torch'" in missing.stderr

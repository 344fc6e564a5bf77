"""Offline profiling: `netcut profile --bundle` here, `netcut-agent run` in the agent's own environment (no PyTorch),
and `explore --latency-table` with the table the agent wrote; damaged or hostile bundles are refused clearly."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from agents import agent_python
from helpers import run_cli
from netcut.latency.table import LatencyTable

pytestmark = [pytest.mark.slow, pytest.mark.agent, pytest.mark.runtime]


def agent_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([agent_python(), "-m", "netcut_agent.cli", "run", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "lite0.ncbundle"
    result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "3", "--warmup", "1",
                     "--threads", "1", "--bundle", str(path))
    assert result.returncode == 0, result.stderr
    assert "netcut-agent run" in result.stdout
    return path


def test_a_bundle_measured_on_the_device_is_a_table_explore_uses(bundle, tmp_path):
    table_path = tmp_path / "table.json"
    result = agent_run(str(bundle), "--out", str(table_path))
    assert result.returncode == 0, result.stderr
    table = LatencyTable.load(table_path)  # one format: netcut's own reader and checks
    assert table.model == "efficientnet_lite0" and table.estimator == "measured" and len(table.cuts) == 18
    assert all(row.measured is not None and row.measured.p50 > 0 and row.size_bytes > 0 for row in table.cuts)
    assert table.environment["threads"] == 1 and "offline bundle" in table.environment["measured_by"]
    # every TRN's peak memory measured on the device too, deeper TRNs (more weights) needing more
    assert all(row.memory is not None and row.ram_bytes == row.memory.peak_bytes > 0 for row in table.cuts)
    assert table.cuts[-1].ram_bytes > table.cuts[0].ram_bytes
    explore = run_cli("explore", "--models", "efficientnet_lite0", "--data", "digits", "--deadline", "1000",
                      "--input-size", "32", "--limit-train", "200", "--limit-test", "100", "--epochs", "5",
                      "--no-report", "--no-verify", "--run-dir", str(tmp_path / "run"), "--latency-table",
                      str(table_path), "--json")
    assert explore.returncode == 0, explore.stderr
    chosen = json.loads(explore.stdout)["chosen"]
    assert chosen["estimated_ms"] == pytest.approx(table.row(chosen["cut"]).measured.p50)
    ram = table.row(chosen["cut"]).ram_bytes
    assert chosen["ram_source"] == "measured" and chosen["ram_mb"] * 1e6 == pytest.approx(ram)
    without = json.loads(table_path.read_text())  # a table from an agent that did not measure memory
    for row in without["cuts"]:
        row.pop("ram_bytes"), row.pop("memory")
    (tmp_path / "old.json").write_text(json.dumps(without))
    old = run_cli("explore", "--models", "efficientnet_lite0", "--data", "digits", "--deadline", "1000",
                  "--input-size", "32", "--limit-train", "200", "--limit-test", "100", "--epochs", "5", "--no-report",
                  "--no-verify", "--run-dir", str(tmp_path / "run"), "--latency-table", str(tmp_path / "old.json"),
                  "--json")
    assert old.returncode == 0 and "no memory measurements" in old.stderr
    assert json.loads(old.stdout)["chosen"]["ram_source"] == "estimated"
    other = run_cli("explore", "--models", "efficientnet_lite0", "--data", "digits", "--deadline", "1000",
                    "--input-size", "48", "--run-dir", str(tmp_path / "run48"), "--latency-table", str(table_path))
    assert other.returncode == 2 and "was made for efficientnet_lite0 at 32px" in other.stderr


def _tar(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type = tarfile.SYMTYPE
            info.linkname = "/etc/passwd"
            tar.addfile(info)
    return path


def _plan(bundle: Path, file: str) -> bytes:
    with tarfile.open(bundle) as tar:
        plan = json.loads(tar.extractfile("plan.json").read())  # type: ignore[union-attr]
    plan["models"][0]["file"] = file
    return json.dumps(plan).encode()


@pytest.mark.parametrize("case, expected", [
    ("not a tar", "cannot read it as a bundle"),
    ("no plan", "lacks 'plan.json'"),
    ("foreign plan", "not a netcut bundle"),
    ("escaping name", "lacks '../../escaped.onnx'"),
    ("symlink", "is not a regular file"),
])
def test_damaged_or_hostile_bundles_are_refused(bundle, tmp_path, case, expected):
    path = tmp_path / "b.ncbundle"
    if case == "not a tar":
        path.write_bytes(b"\x80\x04 a pickle, not a bundle" * 100)
    elif case == "no plan":
        _tar(path, {"models/000.onnx": b"\x08"})
    elif case == "foreign plan":
        _tar(path, {"plan.json": b'{"kind": "something-else"}'})
    elif case == "escaping name":
        _tar(path, {"plan.json": _plan(bundle, "../../escaped.onnx")})
    else:
        _tar(path, {"plan.json": _plan(bundle, "models/link.onnx")}, link="models/link.onnx")
    result = agent_run(str(path), "--out", str(tmp_path / "t.json"))
    assert result.returncode == 2 and expected in result.stderr and "fix:" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "t.json").exists()
    assert not (tmp_path.parent.parent / "escaped.onnx").exists()


def test_a_bundle_for_a_backend_no_device_runs_is_refused(tmp_path):
    result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--backend", "torch", "--bundle",
                     str(tmp_path / "x.ncbundle"))
    assert result.returncode == 2 and "cannot run on a device agent" in result.stderr
    assert not (tmp_path / "x.ncbundle").exists()

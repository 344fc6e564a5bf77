"""Profiling and exploring with latency measured on a device through its agent (a real `netcut-agent serve` process
on 127.0.0.1, without PyTorch): tables and runs record the device, strangers and absent devices are clear errors,
and a device that goes away mid-run loses nothing: the same command resumes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agents import free_port, serve_with_token_file
from helpers import run_cli, verified_latencies

pytestmark = [pytest.mark.slow, pytest.mark.agent, pytest.mark.runtime]

EXPLORE = ("explore", "--models", "efficientnet_lite0", "--data", "digits", "--deadline", "1000", "--input-size", "32",
           "--limit-train", "200", "--limit-test", "100", "--repeats", "3", "--warmup", "1", "--epochs", "5",
           "--no-report", "--threads", "1")


@pytest.fixture(scope="module")
def device(tmp_path_factory):
    process, url, token_file = serve_with_token_file(tmp_path_factory.mktemp("device"), free_port())
    yield url, token_file
    process.terminate()
    process.wait(timeout=30)


def test_profile_on_a_device_records_the_device(device, tmp_path):
    url, token_file = device
    out = tmp_path / "table.json"
    result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "3", "--warmup", "1",
                     "--device", url, "--device-token-file", str(token_file), "--out", str(out))
    assert result.returncode == 0, result.stderr
    env = json.loads(out.read_text())["environment"]
    assert env["device"] == url.removeprefix("http://") and env["backend"] == "onnxruntime"
    assert env["threads"] == env["cores"]  # by default all of the device's cores


def test_explore_measures_on_the_device_and_says_so(device, tmp_path):
    url, token_file = device
    result = run_cli(*EXPLORE, "--run-dir", str(tmp_path / "run"), "--device", url, "--json",
                     env={"NETCUT_DEVICE_TOKEN": token_file.read_text().strip()})
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["environment"]["device"] == url.removeprefix("http://")
    chosen, device = out["chosen"], url.removeprefix("http://")
    # the winner was verified on the device, and nowhere else
    verified = verified_latencies(tmp_path / "run")
    assert verified[(chosen["model"], chosen["cut"], device)] == chosen["latency_ms"]
    assert {d for _, _, d in verified} == {device}
    assert "NETCUT_DEVICE_TOKEN" not in (tmp_path / "run").joinpath("netcut.sqlite").read_bytes().decode(
        errors="ignore") and token_file.read_text().strip() not in result.stdout


def test_a_memory_budget_is_measured_on_the_device(device, tmp_path):
    """Peak memory measured by the agent (anchors, the winner), a budget that drops the first winner, and the memory
    route of the agent's API."""
    url, token_file = device
    args = (*EXPLORE, "--run-dir", str(tmp_path / "run"), "--device", url, "--device-token-file", str(token_file),
            "--json")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    chosen = out["chosen"]
    assert chosen["ram_source"] == "measured" and chosen["memory"]["method"] == "VmHWM"
    assert {r["ram_source"] for r in out["candidates"]} == {"measured", "estimated"}
    budget = 0.7 * chosen["ram_mb"]
    second = run_cli(*args, "--max-ram-mb", f"{budget:.3f}")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["chosen"]["ram_mb"] <= budget and again["chosen"]["ram_source"] == "measured"
    assert again["chosen"]["cut"] != chosen["cut"]
    assert all(not r["feasible"] for r in again["candidates"] if r["ram_mb"] > budget)


@pytest.mark.parametrize("case, expected", [
    ("no token", "no token for device"),
    ("wrong token", "refused the token"),
    ("nobody there", "does not answer"),
    ("not a URL", "is not an http(s) URL"),
    ("torch backend", "cannot run on a device agent"),
])
def test_device_problems_are_clear_errors(device, tmp_path, case, expected):
    url, token_file = device
    wrong = tmp_path / "wrong"
    wrong.write_text("some-other-token-entirely\n")
    args = {"no token": ["--device", url],
            "wrong token": ["--device", url, "--device-token-file", str(wrong)],
            "nobody there": ["--device", f"http://127.0.0.1:{free_port()}", "--device-token-file", str(token_file)],
            "not a URL": ["--device", "ftp://somewhere", "--device-token-file", str(token_file)],
            "torch backend": ["--device", url, "--device-token-file", str(token_file), "--backend", "torch"]}[case]
    result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "2", *args,
                     env={"NETCUT_DEVICE_TOKEN": ""})
    assert result.returncode == 2
    assert expected in result.stderr and "fix:" in result.stderr and "Traceback" not in result.stderr


def test_a_device_that_goes_away_mid_run_loses_nothing_and_the_command_resumes(tmp_path):
    port = free_port()
    agent, url, token_file = serve_with_token_file(tmp_path / "a", port)
    run_dir = tmp_path / "run"
    command = [str(Path(sys.executable).with_name("netcut")), *EXPLORE, "--models",
               "efficientnet_lite0,efficientnet_lite1", "--run-dir", str(run_dir), "--device", url,
               "--device-token-file", str(token_file)]
    explore = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert explore.stderr is not None
    for line in explore.stderr:  # lite0's latencies are stored; lite1's are being measured: the device goes away
        if "estimating latencies" in line and "efficientnet_lite1" in line:
            agent.kill()
            agent.wait()
            break
    _, err = explore.communicate(timeout=300)
    assert explore.returncode == 2, err
    assert "does not answer" in err and "rerun the same command to resume" in err and "Traceback" not in err
    agent, url, token_file = serve_with_token_file(tmp_path / "b", port)
    try:
        again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    finally:
        agent.terminate()
        agent.wait(timeout=30)
    assert again.returncode == 0, again.stderr
    assert "estimating latencies of 18 candidates of efficientnet_lite0" not in again.stderr  # kept from the first
    assert "estimating latencies of 23 candidates of efficientnet_lite1" in again.stderr
    assert "efficientnet_lite" in again.stdout  # a network was chosen


def test_several_devices_give_one_table_each(device, tmp_path):
    url, token_file = device
    other, other_url, _ = serve_with_token_file(tmp_path / "second", free_port(),
                                                token_file.read_text().strip())
    try:
        result = run_cli("profile", "efficientnet_lite0", "--input-size", "32", "--repeats", "3", "--warmup", "1",
                         "--device", url, "--device", other_url, "--device-token-file", str(token_file),
                         "--out", str(tmp_path / "lite0.json"))
    finally:
        other.terminate()
        other.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    for u in (url, other_url):
        name = u.removeprefix("http://")
        table = json.loads((tmp_path / f"lite0@{name.replace(':', '_')}.json").read_text())
        assert table["environment"]["device"] == name and len(table["cuts"]) == 18



def test_explore_on_several_devices_meets_the_deadline_on_each(device, tmp_path):
    url, token_file = device
    other, other_url, _ = serve_with_token_file(tmp_path / "second", free_port(), token_file.read_text().strip())
    try:
        result = run_cli(*EXPLORE, "--run-dir", str(tmp_path / "run"), "--device", url, "--device", other_url,
                         "--device-token-file", str(token_file), "--json")
    finally:
        other.terminate()
        other.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    names = {u.removeprefix("http://") for u in (url, other_url)}
    assert set(out["environment"]["devices"]) == names
    for row in out["candidates"]:
        by_device = row["estimated_ms_by_device"]
        assert set(by_device) == names and row["estimated_ms"] == max(by_device.values())
    # the winner was verified on both devices; the slower one's latency is the one reported
    verified = verified_latencies(tmp_path / "run")
    on_each = {d: p for (b, c, d), p in verified.items() if (b, c) == (out["chosen"]["model"], out["chosen"]["cut"])}
    assert set(on_each) == names and out["chosen"]["latency_ms"] == max(on_each.values())

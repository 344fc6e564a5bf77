"""Bad input never crashes: the real CLI, as a subprocess, on 30 distinct mistakes.

Each must give a short error on stderr naming the problem and the fix, no Python traceback, the documented exit
code (2 bad input, 3 infeasible deadline, 130 interrupted), and no corrupted state.
"""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import UNEXPORTABLE_NET, run_cli

pytestmark = [pytest.mark.slow]

LITE = ["--models", "efficientnet_lite0"]
SMALL = ["--input-size", "32", "--limit-train", "200", "--limit-test", "100", "--repeats", "3", "--warmup", "1",
         "--threads", "1", "--epochs", "5", "--no-report"]
UNTRACEABLE = """
import torch
class Gate(torch.nn.Module):
    def forward(self, x):
        return x if x.mean() > 0 else -x
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.gate = Gate()
    def forward(self, x):
        return self.gate(self.conv(x))
"""


def assert_clean_error(result: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    """Exit code, one short message naming the problem, a fix, and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    err = result.stderr
    assert "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert "fix:" in err, err
    message_lines = [line for line in err.splitlines() if line.startswith("netcut:") or line.startswith("  fix:")]
    assert 1 <= len(message_lines) <= 6 and all(len(line) < 500 for line in message_lines), err

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "untraceable.py").write_text(UNTRACEABLE)
    (root / "cummax.py").write_text(UNEXPORTABLE_NET)
    (root / "empty").mkdir()
    corrupt = root / "corrupt" / "a"
    corrupt.mkdir(parents=True)
    for i in range(3):
        (corrupt / f"{i}.png").write_bytes(b"\x89PNG not really")
    (root / "bad.csv").write_text("path,a,b\nx.png,0.5,0.6\n")
    (root / "truncated.json").write_text('{"kind": "netcut-latency-table", "version": 1, "cuts": [')
    (root / "a_file").write_text("not a directory")
    table = root / "resnet_table.json"
    made = run_cli("profile", "torchvision:resnet18", "--input-size", "32", "--threads", "1", "--repeats", "2",
                   "--out", str(table), "--quiet")
    assert made.returncode == 0, made.stderr
    return root


CASES = {
    # name: (argv builder, exit code, fragments)
    "unknown model": (lambda f: ["cuts", "efficientnet_lite7"], 2, ["unknown built-in model"]),
    "unknown model in the explore list": (lambda f: ["explore", "--models", "efficientnet_lite0,resnet9000",
                                                     "--data", "digits", "--deadline", "10", *SMALL], 2,
                                          ["unknown built-in model 'resnet9000'"]),
    "unknown torchvision model": (lambda f: ["cuts", "torchvision:resnet1000"], 2, ["unknown torchvision model"]),
    "untraceable model": (lambda f: ["cuts", f"py:{f / 'untraceable.py'}:Net"], 2, ["module 'gate' (Gate)"]),
    "missing user-model file": (lambda f: ["cuts", f"py:{f / 'nope.py'}:Net"], 2, ["does not exist"]),
    "nonexistent dataset path": (lambda f: ["explore", *LITE, "--data", str(f / "nowhere"), "--deadline", "10",
                                            *SMALL], 2, ["does not exist"]),
    "empty dataset folder": (lambda f: ["explore", *LITE, "--data", str(f / "empty"), "--deadline", "10", *SMALL], 2,
                             ["has no class sub-folders"]),
    "only corrupt images": (lambda f: ["explore", *LITE, "--data", str(f / "corrupt"), "--deadline", "10", *SMALL],
                            2, ["could be decoded"]),
    "csv with a bad row": (lambda f: ["explore", *LITE, "--data", str(f / "bad.csv"), "--deadline", "10", *SMALL], 2,
                           ["bad.csv:2", "sum to 1"]),
    "negative deadline": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "-5", *SMALL], 2,
                          ["positive number"]),
    "zero deadline": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "0", *SMALL], 2,
                      ["positive number"]),
    "NaN deadline": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "nan", *SMALL], 2,
                     ["positive number"]),
    "deadline not a number": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "fast", *SMALL], 2,
                              ["is not a number"]),
    "deadline below the fastest candidate": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "0.0001",
                                                        *SMALL, "--run-dir", str(f / "infeasible")], 3,
                                             ["no candidate meets", "fastest"]),
    "invalid percentile": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--percentile",
                                      "p75", *SMALL], 2, ["invalid choice: 'p75'"]),
    "invalid margin": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--margin", "-0.5",
                                  *SMALL], 2, ["margin must be in [0, 1)"]),
    "unknown strategy": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--strategy", "random",
                                    *SMALL], 2, ["invalid choice: 'random'"]),
    "latency table of another model": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10",
                                                  "--latency-table", str(f / "resnet_table.json"), *SMALL,
                                                  "--run-dir", str(f / "foreign")], 2,
                                       ["made for torchvision:resnet18"]),
    "truncated JSON table": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--latency-table",
                                        str(f / "truncated.json"), *SMALL, "--run-dir", str(f / "trunc")], 2,
                             ["not valid JSON", "truncated"]),
    "unwritable run directory": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", *SMALL,
                                            "--run-dir", str(f / "a_file" / "run")], 2, ["not writable"]),
    "conflicting flags": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--estimator",
                                     "analytical", "--latency-table", str(f / "resnet_table.json"), *SMALL], 2,
                          ["conflict"]),
    "threads zero": (lambda f: ["profile", "efficientnet_lite0", "--threads", "0"], 2, ["threads must be ≥ 1"]),
    "threads negative in explore": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10",
                                               "--threads", "-1"], 2, ["threads must be ≥ 1"]),
    "input size too small": (lambda f: ["cuts", "torchvision:inception_v3", "--input-size", "16"], 2,
                             ["cannot take a 16x16 input"]),
    "input size that collapses the feature maps": (lambda f: ["cuts", "efficientnet_lite0", "--input-size", "4"], 2,
                                                   ["collapse to 1x1", "--input-size 32 or more"]),
    "unknown backend": (lambda f: ["profile", "efficientnet_lite0", "--backend", "tensorrt"], 2,
                        ["unknown backend 'tensorrt'"]),
    "int8 on a backend without it": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10",
                                                "--backend", "torch", "--precision", "int8", *SMALL], 2,
                                     ["backend torch does not support int8"]),
    "unknown precision": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10", "--precision",
                                     "int4", *SMALL], 2, ["unknown precision 'int4'"]),
    "int8 with too few calibration images": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10",
                                                        "--precision", "int8", *SMALL, "--limit-train", "40",
                                                        "--run-dir", str(f / "few")], 2,
                                             ["int8 needs at least 64 training images"]),
    "an op LiteRT cannot convert": (lambda f: ["profile", f"py:{f / 'cummax.py'}:Unexportable", "--backend", "litert",
                                               "--repeats", "2"], 2, ["Lowering not found: aten.cummax",
                                                                      "another --backend"]),
    "a size budget that is not positive": (lambda f: ["explore", *LITE, "--data", "digits", "--deadline", "10",
                                                      "--max-model-mb", "0", *SMALL], 2,
                                           ["max-model-mb must be a positive number"]),
    "corrupt weights file": (lambda f: ["cuts", "torchvision:resnet34", "--weights",
                                                        str(f / "truncated.json")], 2, ["cannot read weights file"]),
    "export from a directory without a run": (lambda f: ["export", str(f / "empty"), "--out", str(f / "x.onnx")], 2,
                                              ["holds no netcut run"]),
    "report of a missing run": (lambda f: ["report", str(f / "nowhere")], 2, ["holds no netcut run"]),
    "unknown subcommand flag": (lambda f: ["cuts", "efficientnet_lite0", "--colour"], 2, ["unrecognized arguments"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, files, tmp_path):
    argv, code, fragments = CASES[name]
    assert_clean_error(run_cli(*argv(files), cwd=tmp_path), code, *fragments)  # default run dirs land in tmp


def test_mixed_corrupt_and_good_images_use_the_good_ones(tmp_path, photo_folder):
    result = run_cli("explore", *LITE, "--data", str(photo_folder), "--deadline", "1000", *SMALL, "--run-dir",
                     str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    assert "skipped 2 unreadable image(s) of 20" in result.stderr
    assert json.loads(result.stdout)["dataset"]["skipped"] == 2


def test_run_directory_from_another_version(tmp_path):
    run = tmp_path / "run"
    first = run_cli("explore", *LITE, "--data", "digits", "--deadline", "1000", *SMALL, "--run-dir", str(run))
    assert first.returncode == 0, first.stderr
    db = sqlite3.connect(run / "netcut.sqlite")
    db.execute("UPDATE meta SET value='7' WHERE key='schema'")
    db.commit()
    db.close()
    result = run_cli("explore", *LITE, "--data", "digits", "--deadline", "1000", *SMALL, "--run-dir", str(run))
    assert_clean_error(result, 2, "store schema 7", "new --run-dir")


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_is_a_clear_error_and_leaves_the_store_intact(tmp_path):
    run = tmp_path / "run"
    exe = str(Path(sys.executable).with_name("netcut"))
    result = subprocess.run([exe, "explore", *LITE, "--data", "digits", "--deadline", "1000", *SMALL, "--run-dir",
                             str(run)], capture_output=True, text=True, preexec_fn=_limit_file_size(150_000))
    assert_clean_error(result, 2, "File too large")
    db = sqlite3.connect(run / "netcut.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    leftovers = [p for p in run.rglob("*.tmp")]
    assert not leftovers, leftovers
    again = run_cli("explore", *LITE, "--data", "digits", "--deadline", "1000", *SMALL, "--run-dir", str(run))
    assert again.returncode == 0, again.stderr


def test_ctrl_c_during_a_long_step_exits_130_and_the_rerun_completes(tmp_path):
    exe = str(Path(sys.executable).with_name("netcut"))
    argv = [exe, "explore", *LITE, "--data", "digits", "--deadline", "1000", *SMALL, "--run-dir", str(tmp_path),
            "--strategy", "exhaustive"]
    # Ctrl-C with its default meaning, as in a terminal, whatever the test runner's own disposition is (a process
    # started with SIGINT ignored keeps ignoring it: POSIX, and Python installs no KeyboardInterrupt handler then)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not (tmp_path / "netcut.sqlite").exists():
        time.sleep(0.05)
    time.sleep(1.0)
    for _ in range(6):  # like a user pressing Ctrl-C again when nothing happened for a while
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=5)
            break
        except subprocess.TimeoutExpired:
            continue
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    db = sqlite3.connect(tmp_path / "netcut.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    again = subprocess.run(argv, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]


def test_debug_flag_shows_the_traceback(files):
    result = run_cli("--debug", "cuts", "efficientnet_lite7")
    assert result.returncode == 2 and "Traceback" in result.stderr

"""Device identity: boards that arm64 kernels describe alike (no `model name` in /proc/cpuinfo) are told apart by
their device tree's model and their cores; latency tables from one board are never taken for another's."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from types import SimpleNamespace

import pytest

from netcut.errors import NetcutError
from netcut.latency.harness import device_key
from netcut.latency.table import LatencyTable
from netcut.search.context import Target
from netcut.search.latency import table_for
from netcut_agent.available import probe_runtimes
from netcut_agent.identity import arm_cores, identify

X86 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu vme de pse avx2
"""


def arm64(implementer: str, parts: list[str], extra: str = "") -> str:
    """/proc/cpuinfo as an arm64 kernel writes it: no model name, one block per core."""
    blocks = [f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
              f"CPU implementer\t: {implementer}\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\n"
              f"CPU revision\t: 3\n" for i, part in enumerate(parts)]
    return "\n".join(blocks) + extra


PI4 = arm64("0x41", ["0xd08"] * 4, "\nRevision\t: d03114\nSerial\t\t: 10000000a1b2c3d4\n"
                                    "Model\t\t: Raspberry Pi 4 Model B Rev 1.4\n")
PI5 = arm64("0x41", ["0xd0b"] * 4, "\nRevision\t: d04170\nSerial\t\t: 0123456789abcdef\n"
                                    "Model\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
JETSON = arm64("0x41", ["0xd42"] * 6)
RK3588 = arm64("0x41", ["0xd05"] * 4 + ["0xd0b"] * 4)
PI4_32BIT = textwrap.dedent("""\
    processor\t: 0
    model name\t: ARMv7 Processor rev 3 (v7l)
    CPU implementer\t: 0x41
    CPU part\t: 0xd08
    Hardware\t: BCM2835
    Model\t\t: Raspberry Pi 4 Model B Rev 1.4
    """)


def test_an_x86_box_a_pi_4_a_pi_5_and_a_jetson_are_four_devices():
    devices = {
        "x86": identify(X86, None, "x86_64"),
        "pi4": identify(PI4, "Raspberry Pi 4 Model B Rev 1.4\x00", "aarch64"),
        "pi5": identify(PI5, "Raspberry Pi 5 Model B Rev 1.0\x00", "aarch64"),
        "jetson": identify(JETSON, "NVIDIA Jetson Orin Nano Developer Kit\x00", "aarch64"),
    }
    assert devices == {"x86": "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz",
                       "pi4": "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)",
                       "pi5": "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)",
                       "jetson": "NVIDIA Jetson Orin Nano Developer Kit (Cortex-A78AE)"}
    keys = {device_key({"cpu": name, "cores": 4, "backend": "onnxruntime", "threads": 1})
            for name in devices.values()}
    assert len(keys) == 4  # every latency, level and calibration key tells them apart


def test_without_a_device_tree_the_kernels_model_line_or_the_cores_name_it():
    # Raspberry Pi OS's 32-bit kernel prints a useless model name and the board's Model line
    assert identify(PI4_32BIT, None, "armv7l") == "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)"
    assert identify(PI4, None, "aarch64") == "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)"
    # an ARM server or VM says nothing about a board: its cores (both kinds of a big.LITTLE part) and architecture
    assert identify(arm64("0x41", ["0xd0c"] * 2), None, "aarch64") == "aarch64 Neoverse-N1"
    assert arm_cores(RK3588) == ["Cortex-A55", "Cortex-A76"]
    assert identify(arm64("0x99", ["0x123"]), None, "aarch64") == "aarch64 implementer 0x99 part 0x123"
    assert identify("", None, "riscv64") == "riscv64"


def table(device: str) -> LatencyTable:
    return LatencyTable("lite0", "fp", 96, "block", "onnxruntime", "fp32", "measured", 1, 10, {"cpu": device}, [])


def target(name: str, device: str) -> Target:
    return Target(name, None, 1, {"cpu": device}, {})  # type: ignore[arg-type]


PI4_ID, PI5_ID = "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)", "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)"


def test_tables_from_two_boards_are_never_taken_for_each_other():
    pi4, pi5 = target("pi4:8765", PI4_ID), target("pi5:8765", PI5_ID)
    ctx = SimpleNamespace(targets=[pi4, pi5])
    tables = [(table(PI4_ID), "pi4.json"), (table(PI5_ID), "pi5.json")]
    assert table_for(ctx, pi4, tables)[1] == "pi4.json" and table_for(ctx, pi5, tables)[1] == "pi5.json"
    # only the Pi 4's table: the Pi 5 is measured, not given the Pi 4's latencies
    assert table_for(ctx, pi5, tables[:1]) is None
    # a table from a board that is not explored is refused, naming both
    with pytest.raises(NetcutError, match="Jetson.*none of the devices explored"):
        table_for(SimpleNamespace(targets=[pi5]), pi5, [(table("NVIDIA Jetson Orin Nano (Cortex-A78AE)"), "j.json")])
    # exploring here for one device: its table counts (the table says which device); two devices' tables conflict
    local = target("local", "Intel(R) Xeon(R)")
    assert table_for(SimpleNamespace(targets=[local]), local, tables[:1])[1] == "pi4.json"
    with pytest.raises(NetcutError, match="different devices"):
        table_for(SimpleNamespace(targets=[local]), local, tables)


def test_a_runtime_that_crashes_on_start_is_named_and_the_others_still_found(tmp_path, monkeypatch):
    (tmp_path / "crashing_runtime.py").write_text(textwrap.dedent(f"""\
        import os


        class Crashing:
            def __init__(self, threads):
                os.kill(os.getpid(), {int(signal.SIGSEGV)})
        """))
    (tmp_path / "failing_runtime.py").write_text("class Failing:\n    def __init__(self, threads):\n"
                                                 "        raise OSError('libfoo.so: cannot open shared object')\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), *sys.path]))
    found = {s.name: s for s in probe_runtimes(["crashing_runtime:Crashing", "failing_runtime:Failing",
                                                "onnxruntime"])}
    assert found["crashing_runtime:Crashing"].problem == "crashed on start (signal 11)"
    assert "OSError: libfoo.so" in str(found["failing_runtime:Failing"].problem)
    assert found["onnxruntime"].available and found["onnxruntime"].versions["onnxruntime"]

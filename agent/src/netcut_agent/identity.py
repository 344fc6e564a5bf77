"""Which device this is, in words that tell boards apart: every latency, reference level and calibration is keyed by
it. x86 kernels name the CPU (`model name` in /proc/cpuinfo); ARM kernels on boards do not, so there the board's model
(the device tree's, or the `Model` line Raspberry Pi kernels print) and the cores' implementer and part name it."""

from __future__ import annotations

import platform
from pathlib import Path

# (implementer, part) -> core, from the CPU ID registers ARM and its licensees document (MIDR_EL1)
ARM_CORES = {
    (0x41, 0xD03): "Cortex-A53", (0x41, 0xD04): "Cortex-A35", (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57", (0x41, 0xD08): "Cortex-A72", (0x41, 0xD09): "Cortex-A73",
    (0x41, 0xD0A): "Cortex-A75", (0x41, 0xD0B): "Cortex-A76", (0x41, 0xD0C): "Neoverse-N1",
    (0x41, 0xD0D): "Cortex-A77", (0x41, 0xD40): "Neoverse-V1", (0x41, 0xD41): "Cortex-A78",
    (0x41, 0xD42): "Cortex-A78AE", (0x41, 0xD44): "Cortex-X1", (0x41, 0xD46): "Cortex-A510",
    (0x41, 0xD47): "Cortex-A710", (0x41, 0xD48): "Cortex-X2", (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4B): "Cortex-A78C", (0x41, 0xD4F): "Neoverse-V2", (0x41, 0xD80): "Cortex-A520",
    (0x41, 0xD81): "Cortex-A720", (0x41, 0xD82): "Cortex-X4", (0x41, 0xD87): "Cortex-A725",
    (0x4E, 0x004): "NVIDIA Carmel", (0x51, 0x800): "Kryo 2xx Gold", (0x51, 0x801): "Kryo 2xx Silver",
    (0x61, 0x022): "Apple M1 Icestorm", (0x61, 0x023): "Apple M1 Firestorm", (0xC0, 0xAC3): "Ampere-1",
}

DEVICE_TREE_MODEL = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")


def _fields(cpuinfo: str) -> list[tuple[str, str]]:
    """The `key : value` lines of /proc/cpuinfo, in order."""
    pairs = []
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            pairs.append((key.strip(), value.strip()))
    return pairs


def _number(text: str) -> int | None:
    try:
        return int(text, 0)
    except ValueError:
        return None


def arm_cores(cpuinfo: str) -> list[str]:
    """The distinct cores of an ARM CPU, in the order the kernel lists them ("Cortex-A76", "Cortex-A55" on a
    big.LITTLE part; "implementer 0x41 part 0xd0b" for one not in the table)."""
    cores: list[str] = []
    implementer = None
    for key, value in _fields(cpuinfo):
        if key == "CPU implementer":
            implementer = _number(value)
        elif key == "CPU part" and implementer is not None:
            part = _number(value)
            name = ARM_CORES.get((implementer, part if part is not None else -1),
                                 f"implementer {implementer:#x} part {value}")
            if name not in cores:
                cores.append(name)
    return cores


def identify(cpuinfo: str, device_tree_model: str | None, machine: str) -> str:
    """A device's identity from its /proc/cpuinfo text, its device tree's model (None where there is none) and its
    architecture: "Raspberry Pi 5 Model B Rev 1.0 (Cortex-A76)", "Intel(R) Xeon(R) ...", else the architecture."""
    fields = dict(_fields(cpuinfo))
    board = (device_tree_model or "").replace("\x00", "").strip() or fields.get("Model", "").strip()
    cores = arm_cores(cpuinfo)
    if board:
        return f"{board} ({' + '.join(cores)})" if cores else board
    if fields.get("model name"):
        return fields["model name"]
    if cores:  # an ARM machine that says nothing about its board (a server, a VM): its cores and architecture
        return f"{machine} {' + '.join(cores)}"
    return fields.get("Hardware") or fields.get("cpu model") or fields.get("cpu") or machine


def read_text(path: str) -> str | None:
    """A small system file's text, stripped (None where it cannot be read)."""
    try:
        return Path(path).read_text(errors="replace").strip()
    except OSError:
        return None


def device_identity() -> str:
    """This machine's identity (see identify)."""
    model = next((text for path in DEVICE_TREE_MODEL if (text := read_text(path))), None)
    return identify(read_text("/proc/cpuinfo") or "", model, platform.machine()) or platform.processor() or "unknown"

"""A throwaway Ray cluster on this machine: a head and more nodes started with `ray start` on 127.0.0.1, token
authentication with a token of its own (not the user's ~/.ray), its own temporary directory. For trying
`--executor ray --ray-address` on one machine, for the tests and for the benchmark. Ray 2.60 listens on every
interface whatever --node-ip-address says (measured here), hence the token."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType

from netcut.errors import NetcutError


def free_port() -> int:
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def processes_cmdline(pid: int) -> str:
    """A process's command line, words separated by spaces and ending with one ("" when it is gone)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_mentioning(marker: str) -> list[int]:
    """Pids of the processes whose command line contains `marker`."""
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and marker in processes_cmdline(
        int(e.name))]


def with_descendants(pids: list[int]) -> list[int]:
    """The processes and every process below them (Ray's agents retitle themselves, so their command lines no
    longer name the cluster's directory)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(pids), list(pids)
    while frontier:
        parent = frontier.pop()
        children = [p for p, pp in parents.items() if pp == parent and p not in found]
        found.update(children)
        frontier.extend(children)
    return sorted(found)


class LocalRayCluster:
    """`with LocalRayCluster(nodes=2) as cluster:` cluster.address and cluster.env (what a driver needs). `devices`
    names target devices the last node hosts (`--device ray:NAME`): it offers a `device:NAME` resource for each."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, object_store_bytes: int = 150_000_000,
                 devices: tuple[str, ...] = ()) -> None:
        self.nodes, self.cpus, self.store_bytes, self.devices = nodes, cpus_per_node, object_store_bytes, devices
        self.root = Path(tempfile.mkdtemp(prefix="ncray"))  # short: Ray's socket paths live under it
        token = self.root / "token"
        token.write_text(secrets.token_hex(16))
        token.chmod(0o600)
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token),
                    "RAY_BACKEND_LOG_LEVEL": "error"}
        self.address = f"127.0.0.1:{free_port()}"

    def _start(self, *args: str) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        node = ["--node-ip-address=127.0.0.1", f"--num-cpus={self.cpus}",
                f"--object-store-memory={self.store_bytes}", "--disable-usage-stats"]
        done = subprocess.run([ray, "start", *args, *node], env=self.env, capture_output=True, text=True,
                              timeout=180)
        if done.returncode != 0:
            raise NetcutError(f"`ray start` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}",
                              "check that netcut[ray] is installed and the port is free")

    def __enter__(self) -> LocalRayCluster:
        if self.devices and self.nodes < 2:
            raise NetcutError("a local cluster's devices live on a node of their own", "pass nodes=2 or more")
        try:
            self._start("--head", f"--port={self.address.rsplit(':', 1)[1]}", "--include-dashboard=false",
                        f"--temp-dir={self.root / 't'}")
            devices = f"--resources={json.dumps({f'device:{d}': 1 for d in self.devices})}"
            for i in range(self.nodes - 1):
                self._start(f"--address={self.address}", *([devices] if i == self.nodes - 2 else []))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Kill this cluster's processes (only them: `ray stop` stops every Ray on the machine); remove its files."""
        port = f":{self.address.rsplit(':', 1)[1]} "  # the client server names only the head's address
        ours = processes_mentioning(str(self.root)) + [p for p in processes_mentioning(port)
                                                       if "ray" in processes_cmdline(p)]
        for pid in with_descendants(ours):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

"""A Ray cluster this process has joined (or a private one on loopback): the one connection that Ray work
(netcut.search.executors) and Ray devices (netcut.latency.ray_device) are handed explicitly."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from netcut.errors import NetcutError

# What a local Ray instance may reserve for its object store: Ray's default is 30% of the memory, far more than
# shards of features need, and it is taken from what training has.
LOCAL_OBJECT_STORE_BYTES = 500_000_000


class RayCluster:
    """Joins the cluster at `address` ("auto": the one this machine belongs to), or starts a private instance on
    loopback sized for this machine (None); `close()` leaves it (a private instance stops with it)."""

    def __init__(self, address: str | None = None, temp_dir: str | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise NetcutError("this needs Ray, which is not installed",
                              "pip install 'netcut[ray]' (or use --executor local)") from e
        self.address = address
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "ignore_reinit_error": True, "logging_level": logging.ERROR}
        if address is None:
            options.update(num_cpus=os.cpu_count() or 1, object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                           _node_ip_address="127.0.0.1")
            if temp_dir:
                options["_temp_dir"] = temp_dir
        if address not in (None, "auto"):
            reachable(address)
        try:
            ray.init(address=address, **options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise NetcutError(f"cannot reach the Ray cluster at {address!r}: {str(e).splitlines()[0]}",
                              "start it (`ray start --head`), check the address (host:port of the head's GCS) "
                              "and that RAY_AUTH_MODE/RAY_AUTH_TOKEN match the cluster's") from e
        self.ray = ray
        _messages_to_stderr()

    def node_cpus(self) -> list[int]:
        """The CPUs of each live node."""
        return [int(n.get("Resources", {}).get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")]

    def describe(self) -> dict[str, Any]:
        """The cluster: its address, nodes and resources."""
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {"address": self.address or "local instance", "ray": self.ray.__version__, "nodes": len(nodes),
                "resources": {k: v for k, v in self.ray.cluster_resources().items() if not k.startswith("node:")}}

    def close(self) -> None:
        """Leave the cluster."""
        self.ray.shutdown()


def _messages_to_stderr() -> None:
    """Ray prints its cluster's messages to the driver (such as "a worker died ... while executing a task", after
    which the task is retried) on stdout, where `--json` writes: send them to stderr. Ray 2.60 looks the printer up
    in its worker module at each message, so replacing it there takes effect."""
    from ray._private import worker

    original = getattr(worker, "print_to_stdstream", None)
    if original is None or getattr(original, "netcut", False):
        return

    def to_stderr(data: dict[str, Any], ignore_prefix: bool) -> None:
        original({**data, "is_err": True}, ignore_prefix)

    to_stderr.netcut = True  # type: ignore[attr-defined]
    worker.print_to_stdstream = to_stderr


def reachable(address: str, timeout_s: float = 3.0) -> None:
    """Refuse an address nothing answers at, at once (Ray itself waits minutes for a head that is not there)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise NetcutError(f"--ray-address {address!r} is not HOST:PORT", "give the head's address, e.g. "
                          "127.0.0.1:6379 (as `ray start --head` printed it), or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise NetcutError(f"no Ray cluster answers at {address} ({e.strerror or e})",
                          "start one with `ray start --head --port PORT`, or check the address") from e

"""Do tables measured through the agent or a Ray device node agree with `netcut profile` on the same machine,
within its repeatability?

Every block TRN of a few networks (ONNX Runtime fp32, batch 1, one thread: the setting whose timings are stable on
this 2-core machine) is measured five ways, one after the other, per network: netcut's own worker (local), the
agent serving over HTTP on 127.0.0.1 (remote, `--device URL`), the agent running an offline bundle (`netcut-agent
run`, from its own torch-free environment), a node of a loopback Ray cluster hosting the device (`--device
ray:bench`: the session runs in an actor on that node), and netcut's own worker again (local, repeated: the
machine's repeatability). Each measures every TRN of the network interleaved; the agreement is per TRN, against the
first local table. The Ray cluster (a head and the device's node, netcut.search.ray_local) is up during all five.

Usage: python benchmarks/agent_agreement.py [--networks N1,N2] [--size 96] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import ROOT, machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.graph import trace  # noqa: E402
from netcut.latency.bundle import write_bundle  # noqa: E402
from netcut.latency.harness import HarnessConfig  # noqa: E402
from netcut.latency.profile import profile  # noqa: E402
from netcut.latency.ray_device import connect as connect_ray  # noqa: E402
from netcut.latency.remote import connect  # noqa: E402
from netcut.latency.settings import ProfileSettings  # noqa: E402
from netcut.latency.table import LatencyTable  # noqa: E402
from netcut.latency.workers import WorkerPool  # noqa: E402
from netcut.search.ray_local import LocalRayCluster  # noqa: E402

NETWORKS = ["efficientnet_lite0", "torchvision:mobilenet_v2", "torchvision:resnet18"]
AGENT = ROOT / ".venv-agent" / "bin" / "netcut-agent"


def p50s(table: LatencyTable) -> np.ndarray:
    """Measured p50 of every row."""
    return np.array([row.best().p50 for row in table.cuts])


def agreement(other: np.ndarray, reference: np.ndarray) -> dict:
    """Per-TRN relative difference to the reference: median |diff| and the share within ±10%."""
    diff = np.abs(other - reference) / reference
    return {"median_abs_pct": float(np.median(diff) * 100), "within10_pct": float((diff <= 0.10).mean() * 100),
            "max_abs_pct": float(diff.max() * 100), "n": int(diff.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netcut-agreement-"))
    token = work / "token"
    token.write_text("agreement-benchmark-token-0123456789\n")
    server = subprocess.Popen([str(AGENT), "serve", "--port", "0", "--token-file", str(token)], text=True,
                              stdout=subprocess.PIPE)
    assert server.stdout is not None
    url = server.stdout.readline().split("serving on ")[1].split()[0]
    settings = ProfileSettings("onnxruntime", "fp32", "measured",
                               harness=HarnessConfig(repeats=args.repeats, threads=args.threads))
    rows, pooled = {}, {"remote": [], "bundle": [], "ray": [], "local again": []}
    cluster = LocalRayCluster(nodes=2, devices=("bench",)).__enter__()
    joined = None
    try:
        os.environ.update({k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")})  # before ray reads
        from netcut.ray_cluster import RayCluster

        joined = RayCluster(cluster.address)
        device = connect(url, str(token))
        for name in args.networks.split(","):
            traced = trace(load_backbone(name, "none" if ":" in name else None), args.size)
            with WorkerPool() as pool:
                local = p50s(profile(traced, settings, pool=pool))
            with WorkerPool(device) as pool:
                remote = p50s(profile(traced, settings, pool=pool))
            bundle = write_bundle(traced, settings, work / "b.ncbundle")
            subprocess.run([str(AGENT), "run", str(bundle), "--out", str(work / "t.json"), "--threads",
                            str(args.threads)], check=True, capture_output=True)
            offline = p50s(LatencyTable.load(work / "t.json"))
            with WorkerPool(connect_ray("ray:bench", joined)) as pool:
                on_ray = p50s(profile(traced, settings, pool=pool))
            with WorkerPool() as pool:
                again = p50s(profile(traced, settings, pool=pool))
            rows[name] = {"trns": len(local), "full_ms": float(local[-1]),
                          "remote": agreement(remote, local), "bundle": agreement(offline, local),
                          "ray": agreement(on_ray, local), "local again": agreement(again, local)}
            for key, values in (("remote", remote), ("bundle", offline), ("ray", on_ray), ("local again", again)):
                pooled[key].append(values / local)
            print(name, {k: round(v["within10_pct"], 1) for k, v in rows[name].items() if isinstance(v, dict)},
                  flush=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if joined is not None:
            joined.close()
        cluster.stop()
    overall = {k: agreement(np.concatenate(v), np.ones(sum(len(x) for x in v))) for k, v in pooled.items()}
    data = {"machine": machine(), "size": args.size, "repeats": args.repeats, "threads": args.threads,
            "networks": rows, "overall": overall}
    write("agent_agreement", data, markdown(data))


def markdown(d: dict) -> str:
    o = d["overall"]
    lines = ["# Tables measured through the agent or on a Ray device node against `netcut profile`, same machine",
             "", "{header}",
             f"Every block TRN of {len(d['networks'])} networks at {d['size']} px, ONNX Runtime fp32, batch 1, "
             f"{d['threads']} thread(s), {d['repeats']} interleaved rounds, measured by netcut's own worker, by "
             "the agent over HTTP on 127.0.0.1 (`--device URL`), by the agent on an offline bundle (`netcut-agent "
             "run` from its torch-free environment), on the node of a loopback Ray cluster that hosts the device "
             "(`--device ray:bench`), and by netcut's own worker again (the machine's repeatability). "
             "Per TRN, the relative difference of each to the first local table:", "",
             "| measured by | TRNs within ±10% | median difference | largest |", "|---|---|---|---|"]
    for key, label in (("remote", "agent, remote (`--device URL`)"), ("bundle", "agent, offline bundle"),
                       ("ray", "Ray device node (`--device ray:bench`)"),
                       ("local again", "netcut again (repeatability)")):
        lines.append(f"| {label} | {o[key]['within10_pct']:.1f}% of {o[key]['n']} | "
                     f"{o[key]['median_abs_pct']:.1f}% | {o[key]['max_abs_pct']:.1f}% |")
    lines += ["", "| network | TRNs | full network (local) | remote within ±10% | bundle within ±10% | "
              "Ray device within ±10% | repeatability within ±10% |", "|---|---|---|---|---|---|---|"]
    for name, r in d["networks"].items():
        lines.append(f"| {name} | {r['trns']} | {r['full_ms']:.2f} ms | {r['remote']['within10_pct']:.0f}% | "
                     f"{r['bundle']['within10_pct']:.0f}% | {r['ray']['within10_pct']:.0f}% | "
                     f"{r['local again']['within10_pct']:.0f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

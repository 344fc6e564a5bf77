"""The same exploration with the local executor and on a Ray cluster of two local nodes: wall time per stage, the
speed-up, whether the results are identical, and Ray's overhead per task.

Workload (issue 14's): four backbones (EfficientNet-Lite0/1/2 with their ImageNet weights, MobileNetV3-large with
random weights: only the work matters) × 20,000 Fashion-MNIST training images at 64 px (+ val and test), linear
probes at NetCut's proposals, no fine-tuning. Latency estimates come from one latency-only pass whose store every
timed run starts from, so the runs compare the stages an executor runs (feature extraction, head training).
Runs alternate local, Ray, Ray, local (--rounds 2), each a `netcut explore` process of its own in a fresh run
directory. The cluster: `ray start` head + one worker node on 127.0.0.1, one CPU each (netcut.search.ray_local).

Overhead per task: 200 jobs that do nothing, through the Ray executor (payload-free, and with a 19 MB payload as a
backbone's weights are), minus the same through the local executor, per job.

Usage: python benchmarks/ray_executor.py [--limit-train 20000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

MODELS = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,torchvision:mobilenet_v3_large"


def command(args: argparse.Namespace, run_dir: Path) -> list[str]:
    """The exploration, as a user would type it."""
    return [str(Path(sys.executable).with_name("netcut")), "explore", "--models", MODELS, "--weights", "none",
            "--data", "fashion-mnist", "--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test),
            "--input-size", "64", "--deadline", "1000", "--epochs", "10", "--json", "--no-report", "--quiet",
            "--run-dir", str(run_dir)]


def explore(argv: list[str], env: dict | None = None) -> tuple[dict, float]:
    """One exploration in its own process: its --json result and wall seconds."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"explore failed ({done.returncode}): {done.stderr[-3000:]}")
    return json.loads(done.stdout), seconds


def outcome(result: dict) -> dict:
    """What must be identical: the choice, the baseline and the accuracy of every proposal trained."""
    pick = {k: (result[k]["model"], result[k]["cut"], result[k]["accuracy"]) if result[k] else None
            for k in ("chosen", "best_off_the_shelf")}
    return {**pick, "frontier": [(p["model"], p["cut"], p["score"]) for p in result["frontier"]]}


def nothing(job: int) -> int:
    """A job that does no work."""
    return job


def carrying(payload: bytes, job: int) -> int:
    """A job that does no work with a payload bound to it (as a backbone's weights are)."""
    return job + len(payload) * 0


def overhead(address: str, env: dict, jobs: int) -> dict:
    """Seconds per job beyond the local executor's, without and with a 19 MB payload."""
    import os

    from netcut.search.executors import LocalExecutor, RayExecutor

    os.environ.update(env)
    out = {}
    ray = RayExecutor(address)
    try:
        for name, fn in (("empty", nothing), ("payload_19mb", partial(carrying, bytes(19_000_000)))):
            list(ray.run(fn, list(range(4))))  # workers started and warm
            start = time.perf_counter()
            list(LocalExecutor().run(fn, list(range(jobs))))
            local = time.perf_counter() - start
            start = time.perf_counter()
            list(ray.run(fn, list(range(jobs))))
            out[name] = {"jobs": jobs, "ray_s": time.perf_counter() - start, "local_s": local,
                         "per_job_ms": (time.perf_counter() - start - local) / jobs * 1e3}
    finally:
        ray.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=20000)
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2, help="local/Ray pairs, alternating (default 2)")
    parser.add_argument("--name", default="ray_executor")
    args = parser.parse_args()

    from netcut.search.ray_local import LocalRayCluster

    tmp = Path(tempfile.mkdtemp(prefix="netcut-ray-bench-"))
    template = tmp / "template"
    print("latency-only pass (shared by every run) ...", flush=True)
    explore(command(args, template) + ["--limit-train", "200"])  # latency records only matter: tiny training
    runs: list[dict] = []
    with LocalRayCluster(nodes=2, cpus_per_node=1, object_store_bytes=1_000_000_000) as cluster:
        order = [e for i in range(args.rounds) for e in (("local", "ray") if i % 2 == 0 else ("ray", "local"))]
        for i, executor in enumerate(order):
            run_dir = tmp / f"run{i}"
            run_dir.mkdir()
            shutil.copy(template / "netcut.sqlite", run_dir / "netcut.sqlite")
            argv = command(args, run_dir) + (["--executor", "ray", "--ray-address", cluster.address]
                                             if executor == "ray" else [])
            print(f"run {i + 1}/{len(order)}: {executor} ...", flush=True)
            result, seconds = explore(argv, cluster.env)
            runs.append({"executor": executor, "wall_s": seconds, "stages": result["stage_seconds"],
                         "outcome": outcome(result), "environment": result["environment"].get("executor"),
                         "images": result["dataset"]["sizes"]})
            print(f"  {seconds:.0f} s, stages {json.dumps({k: round(v) for k, v in result['stage_seconds'].items()})}",
                  flush=True)
        costs = overhead(cluster.address, cluster.env, 200)
    shutil.rmtree(tmp, ignore_errors=True)

    def median(executor: str, stage: str | None) -> float:
        values = [r["wall_s"] if stage is None else r["stages"].get(stage, 0.0)
                  for r in runs if r["executor"] == executor]
        return float(np.median(values))

    identical = all(r["outcome"] == runs[0]["outcome"] for r in runs)
    rows = []
    for stage in ("features", "probes", None):
        local, ray = median("local", stage), median("ray", stage)
        rows.append({"stage": stage or "whole run", "local_s": local, "ray_s": ray, "speedup": local / ray})
    data = {"machine": machine(), "models": MODELS, "limit_train": args.limit_train, "input_size": 64,
            "runs": runs, "stages": rows, "identical": identical, "overhead": costs}
    lines = ["# The Ray executor against the local one", "", "{header}",
             f"Workload: {MODELS.replace(',', ', ')} (random weights for MobileNetV3), Fashion-MNIST "
             f"{runs[0]['images']} images at 64 px, linear probes at NetCut's proposals, no fine-tuning. Ray: a head "
             "and one worker node on 127.0.0.1, one CPU each, every job with the driver's torch thread count (so "
             "results are bitwise the local executor's). Runs alternate; medians of "
             f"{args.rounds} per executor.", "",
             "| stage | local (s) | Ray, 2 nodes (s) | speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {r['stage']} | {r['local_s']:.1f} | {r['ray_s']:.1f} | {r['speedup']:.2f}x |" for r in rows]
    lines += ["", f"Same choice, baseline and accuracies in every run: **{'yes' if identical else 'NO'}**.", "",
              "Overhead per task (200 jobs that do nothing, Ray minus local):", ""]
    lines += [f"- {name}: {c['per_job_ms']:.1f} ms per job ({c['ray_s']:.2f} s for {c['jobs']} on Ray, "
              f"{c['local_s']:.3f} s locally)" for name, c in costs.items()]
    lines += ["", "Every run:", "", "| # | executor | wall (s) | features (s) | probes (s) | latency (s) |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r['executor']} | {r['wall_s']:.1f} | {r['stages'].get('features', 0):.1f} | "
              f"{r['stages'].get('probes', 0):.1f} | {r['stages'].get('latency', 0):.1f} |"
              for i, r in enumerate(runs)]
    write(args.name, data, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

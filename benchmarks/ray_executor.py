"""The same exploration with the local executor and on a Ray cluster of two local nodes: wall time per stage, the
speed-up, whether the results are identical, and Ray's overhead per task.

Workload (issue 14's): four backbones (EfficientNet-Lite0/1/2 with their ImageNet weights, MobileNetV3-large with
random weights: only the work matters) × 20,000 Fashion-MNIST training images at 64 px (+ val and test), linear
probes at NetCut's proposals, no fine-tuning. Latency estimates come from one latency-only pass whose store every
timed run starts from, so the runs compare the stages an executor runs (feature extraction, head training).
Three settings, each a `netcut explore` process of its own in a fresh run directory, in turn (--rounds times):
local with torch on both cores (the default here), local with --train-threads 1, and Ray with --train-threads 1 on
a cluster of a head and one worker node on 127.0.0.1, one CPU each (netcut.search.ray_local). Ray's results must be
bitwise those of the local run with the same --train-threads.

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
from _common import DOCS, machine, write  # noqa: E402

MODELS = "efficientnet_lite0,efficientnet_lite1,efficientnet_lite2,torchvision:mobilenet_v3_large"
SETTINGS = {"local, 2 threads": [], "local, 1 thread": ["--train-threads", "1"],
            "Ray, 2 nodes x 1 thread": ["--executor", "ray", "--train-threads", "1"]}


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
    ray = RayExecutor(address, threads=1)  # the nodes have one CPU each
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


def report(data: dict) -> tuple[dict, str]:
    """The data with its summary (medians per stage and setting, speed-ups, identity of results) and the markdown."""
    runs = data["runs"]
    local2, local1, ray = SETTINGS

    def median(setting: str, stage: str | None) -> float:
        """The median wall seconds of a setting's runs (whole run, or one stage)."""
        return float(np.median([r["wall_s"] if stage is None else r["stages"].get(stage, 0.0)
                                for r in runs if r["executor"] == setting]))

    reference = next(r["outcome"] for r in runs if r["executor"] == local1)
    identical = all(r["outcome"] == reference for r in runs if r["executor"] in (ray, local1))
    same_everywhere = all(r["outcome"] == reference for r in runs)
    rows = []
    for stage in ("features", "probes", None):
        row = {"stage": stage or "whole run", **{s: median(s, stage) for s in SETTINGS}}
        row["speedup_vs_1_thread"] = row[local1] / row[ray]
        row["speedup_vs_2_threads"] = row[local2] / row[ray]
        rows.append(row)
    data = {**data, "stages": rows, "identical_ray_vs_local_same_threads": identical,
            "same_choices_all_settings": same_everywhere}
    sizes = runs[0]["images"]
    lines = ["# The Ray executor against the local one", "", "{header}",
             f"Workload: {MODELS.replace(',', ', ')} (random weights for MobileNetV3), Fashion-MNIST at 64 px: "
             f"{sizes['train']:,} training, {sizes['val']:,} validation and {sizes['test']:,} test images; linear "
             "probes at NetCut's proposals, no fine-tuning; latency estimates shared from one earlier pass. Ray: a "
             "head and one worker node on 127.0.0.1 of this one 2-core machine, one CPU each, `--train-threads 1`. "
             f"Medians of {data['rounds']} run(s) per setting, the settings in turn.", "",
             f"| stage | {local2} (s) | {local1} (s) | {ray} (s) | Ray vs local 1 thread | Ray vs local 2 threads |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['stage']} | {r[local2]:.1f} | {r[local1]:.1f} | {r[ray]:.1f} | "
              f"{r['speedup_vs_1_thread']:.2f}x | {r['speedup_vs_2_threads']:.2f}x |" for r in rows]
    lines += ["", "Ray's choice, baseline and frontier (with their accuracies) identical to the local run with the "
              f"same `--train-threads`: **{'yes' if identical else 'NO'}**; the same in all three settings: "
              f"{'yes' if same_everywhere else 'no (features differ in the last bits between thread counts)'}.", "",
              "Overhead per task (200 jobs that do nothing, Ray minus local, per job):", ""]
    lines += [f"- {name}: {c['per_job_ms']:.1f} ms ({c['ray_s']:.2f} s for {c['jobs']} on Ray, "
              f"{c['local_s']:.3f} s locally)" for name, c in data["overhead"].items()]
    lines += ["", "Every run:", "", "| # | setting | wall (s) | features (s) | probes (s) | latency (s) |",
              "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {r['executor']} | {r['wall_s']:.1f} | {r['stages'].get('features', 0):.1f} | "
              f"{r['stages'].get('probes', 0):.1f} | {r['stages'].get('latency', 0):.1f} |"
              for i, r in enumerate(runs)]
    return data, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit-train", type=int, default=20000)
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1, help="times each setting runs, in turn (default 1)")
    parser.add_argument("--name", default="ray_executor")
    parser.add_argument("--rewrite", action="store_true",
                        help="only rewrite docs/NAME.md from the measured docs/benchmarks/NAME.json")
    args = parser.parse_args()
    if args.rewrite:
        write(args.name, *report(json.loads((DOCS / f"{args.name}.json").read_text())))
        return

    from netcut.search.ray_local import LocalRayCluster

    tmp = Path(tempfile.mkdtemp(prefix="netcut-ray-bench-"))
    template = tmp / "template"
    print("latency-only pass (shared by every run) ...", flush=True)
    explore(command(args, template) + ["--limit-train", "200"])  # latency records only matter: tiny training
    runs: list[dict] = []
    with LocalRayCluster(nodes=2, cpus_per_node=1, object_store_bytes=1_000_000_000) as cluster:
        order = [s for _ in range(args.rounds) for s in SETTINGS]
        for i, executor in enumerate(order):
            run_dir = tmp / f"run{i}"
            run_dir.mkdir()
            shutil.copy(template / "netcut.sqlite", run_dir / "netcut.sqlite")
            argv = command(args, run_dir) + SETTINGS[executor] + (
                ["--ray-address", cluster.address] if "ray" in executor else [])
            print(f"run {i + 1}/{len(order)}: {executor} ...", flush=True)
            result, seconds = explore(argv, cluster.env)
            runs.append({"executor": executor, "wall_s": seconds, "stages": result["stage_seconds"],
                         "outcome": outcome(result), "environment": result["environment"].get("executor"),
                         "images": result["dataset"]["sizes"]})
            print(f"  {seconds:.0f} s, stages {json.dumps({k: round(v) for k, v in result['stage_seconds'].items()})}",
                  flush=True)
        costs = overhead(cluster.address, cluster.env, 200)
    shutil.rmtree(tmp, ignore_errors=True)

    data = {"machine": machine(), "models": MODELS, "limit_train": args.limit_train, "input_size": 64,
            "rounds": args.rounds, "runs": runs, "overhead": costs}
    write(args.name, *report(data))


if __name__ == "__main__":
    main()

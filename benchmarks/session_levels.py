"""How much do whole timing sessions move, and does a network's speed relative to another (and to netcut's
reference network) move with them?

Full EfficientNet-Lite0 and Lite1 at 96 px and netcut's reference network (netcut.latency.steadiness) in ONNX
Runtime fp32, interleaved in one worker (settled, as netcut times), `--sessions` sessions of `--rounds` rounds,
`--pause` seconds apart, at each thread count. Per statistic (median, mean, minimum of a session's rounds): the range
across sessions of each network, of the ratio Lite1/Lite0 within a session, and of each network over the reference
(what scaling to the reference's level relies on), and the share of sessions within ±10% of the median session.

Usage: python benchmarks/session_levels.py [--threads 1,2] [--sessions 10] [--rounds 60] [--pause 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.graph import example_input, trace  # noqa: E402
from netcut.latency.backends import converted, get_backend  # noqa: E402
from netcut.latency.steadiness import REFERENCE, load_reference  # noqa: E402
from netcut.latency.workers import RuntimeWorker  # noqa: E402
from netcut_agent.timing import TimingConfig  # noqa: E402

NETWORKS = ("efficientnet_lite0", "efficientnet_lite1")
STATISTICS = ("p50", "mean", "min")


def spread(values: np.ndarray) -> dict:
    """Range, max/min and the share within ±10% of the median."""
    return {"low": float(values.min()), "high": float(values.max()), "max_over_min": float(values.max() / values.min()),
            "within10_pct": float(np.mean(np.abs(values / np.median(values) - 1) <= 0.10) * 100)}


def sessions(threads: int, args: argparse.Namespace) -> dict:
    """Every session's statistics of both networks at one thread count."""
    backend = get_backend("onnxruntime")
    worker = RuntimeWorker(backend.runtime, threads, backend.name)
    x = example_input(96, 1)
    try:
        for name in NETWORKS:
            traced = trace(load_backbone(name), 96)
            worker.load(name, converted(backend, traced.graph_module.eval(), x, "fp32", None), tuple(x.shape))
        load_reference(backend, worker)
        timed = [*NETWORKS, REFERENCE]
        rows = []
        for _ in range(args.sessions):
            result = worker.time(timed, TimingConfig(5, args.rounds, 0.0, 1))
            rows.append({n: {s: getattr(result.stats[n], s) for s in STATISTICS} for n in timed})
            time.sleep(args.pause)
    finally:
        worker.close()
    out: dict = {"sessions": rows}
    for s in STATISTICS:
        a, b, ref = (np.array([r[n][s] for r in rows]) for n in (*NETWORKS, REFERENCE))
        out[s] = {"lite0": spread(a), "lite1": spread(b), "ratio": spread(b / a), "lite0_over_reference":
                  spread(a / ref), "lite1_over_reference": spread(b / ref)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--pause", type=float, default=8.0)
    args = parser.parse_args()
    results = {t: sessions(int(t), args) for t in args.threads.split(",")}
    data = {"machine": machine(), "sessions": args.sessions, "rounds": args.rounds, "pause_s": args.pause,
            "results": results}
    write("session_levels", data, markdown(data))


def markdown(d: dict) -> str:
    lines = ["# Whole timing sessions move; networks relative to each other much less", "", "{header}",
             f"Full Lite0 and Lite1 at 96 px, ONNX Runtime fp32, interleaved in one worker, {d['sessions']} sessions "
             f"of {d['rounds']} rounds, {d['pause_s']:g} s apart. Range across sessions (max/min; share of sessions "
             "within ±10% of the median session):", "",
             "| threads | statistic | Lite0 | Lite1 | Lite1 / Lite0 in the same session | Lite0 / reference | "
             "Lite1 / reference |", "|---|---|---|---|---|---|---|"]
    for threads, r in d["results"].items():
        for s in STATISTICS:
            cells = [f"{v['low']:.2f}–{v['high']:.2f}{' ms' if k in ('lite0', 'lite1') else ''} "
                     f"({v['max_over_min']:.2f}x; {v['within10_pct']:.0f}%)" for k, v in r[s].items()]
            lines.append(f"| {threads} | {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

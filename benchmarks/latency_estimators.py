"""How good are the latency estimators? MAPE and share within ±10% of measured p50, per architecture and overall.

Every TRN (block cuts, 224 px, batch 1) of 8 torchvision families (random weights: latency does not depend on
them) and the three built-in backbones, on each runtime backend (each in its own worker process). The empirical
estimate and the ground truth are measured side by side in one interleaved run; the measurement's own
repeatability is shown by timing every TRN twice (two sessions, interleaved). The analytical estimator has its
own benchmark (benchmarks/analytical_kernels.py).

Usage: python benchmarks/latency_estimators.py [--backends onnxruntime,openvino,litert] [--precision fp32]
                                               [--repeats 20] [--size 224] [--networks N1,N2]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.latency.backends import get_backend  # noqa: E402
from netcut.latency.estimators import accuracy_metrics, estimated_accuracy  # noqa: E402
from netcut.latency.estimators.empirical import estimate_empirical  # noqa: E402
from netcut.latency.estimators.measured import measure_trns  # noqa: E402
from netcut.latency.harness import HarnessConfig  # noqa: E402
from netcut.latency.session import RuntimeSession
from netcut.latency.workers import WorkerPool  # noqa: E402

NETWORKS = ["torchvision:resnet18", "torchvision:mobilenet_v2", "torchvision:mobilenet_v3_large",
            "torchvision:shufflenet_v2_x1_0", "torchvision:squeezenet1_1", "torchvision:mnasnet1_0",
            "torchvision:regnet_x_400mf", "torchvision:googlenet", "efficientnet_lite0", "efficientnet_lite1",
            "efficientnet_lite2"]


def run_backend(backend_name: str, precision: str, size: int, config: HarnessConfig, networks: list[str],
                pool: WorkerPool) -> dict:
    engine = get_backend(backend_name)
    backend = RuntimeSession(engine, pool.get(engine.runtime, config.resolved_threads(), engine.name), precision)
    rows = {}
    for name in networks:
        traced = trace(load_backbone(name, None if "lite" in name else "none"), size)
        cuts = find_cuts(traced, "block")
        t = time.perf_counter()
        measure_trns(traced, [cuts[-1]], backend, config)
        full_s = time.perf_counter() - t
        # the estimator's cost excludes the ground truth measured beside it (its conversion and its rounds)
        side = estimate_empirical(traced, cuts, backend, config, ground_truth=cuts)
        truth = np.array([side.measured[c.name].p50 for c in cuts])
        t = time.perf_counter()
        twice = measure_trns(traced, cuts, backend, config, copies=2)
        measured_s = (time.perf_counter() - t) / 2
        a = np.array([twice.details["stats"][c.name].p50 for c in cuts])
        b = np.array([twice.details["stats"][f"{c.name}#1"].p50 for c in cuts])
        names = [c.name for c in cuts]
        empirical = estimated_accuracy(side, names, dict(zip(names, truth.tolist())))
        rows[name] = {"cuts": len(cuts), "full_ms": float(truth[-1]), "empirical": empirical,
                      "repeatability": accuracy_metrics(b, a), "cost_full_s": round(full_s, 3),
                      "cost_empirical_s": round(side.cost_s, 3), "cost_measured_s": round(measured_s, 3),
                      "cost_ratio_empirical": round(side.cost_s / full_s, 2),
                      "cost_ratio_measured": round(measured_s / full_s, 2)}
        print(f"{backend_name} {name}: empirical {rows[name]['empirical']['within10_pct']:.0f}% within ±10%, "
              f"repeatability {rows[name]['repeatability']['within10_pct']:.0f}%, "
              f"cost x{rows[name]['cost_ratio_empirical']}",
              flush=True)
    overall = {
        "empirical": _pool(rows, "empirical"), "repeatability": _pool(rows, "repeatability"),
        "cost_ratio_empirical_median": float(np.median([r["cost_ratio_empirical"] for r in rows.values()])),
        "cost_ratio_measured_median": float(np.median([r["cost_ratio_measured"] for r in rows.values()])),
    }
    return {"networks": rows, "overall": overall}


def _pool(rows: dict, key: str) -> dict:
    """Overall metrics weighted by the number of TRNs estimated (anchors, measured by the estimator, apart)."""
    counted = [r[key] for r in rows.values() if r[key]["n"]]
    n = sum(r["n"] for r in counted)
    return {"mape_pct": sum(r["mape_pct"] * r["n"] for r in counted) / n,
            "within10_pct": sum(r["within10_pct"] * r["n"] for r in counted) / n, "n": n,
            "anchors": sum(r[key].get("anchors", 0) for r in rows.values())}


def markdown(data: dict) -> str:
    lines = ["# Latency estimators: accuracy and cost", "", "{header}",
             f"Every block-granularity TRN (prefix + new head), {data['size']} px, batch 1, all cores, "
             f"{data.get('precision', 'fp32')}; each backend in a worker process of its own. *within ±10%*: share of "
             "TRNs whose estimate is within ±10% of the measured p50 (nn-Meter's headline metric). *repeatability*: "
             "the same TRNs measured twice in one interleaved run: the noise floor of this machine. *cost*: "
             "building the empirical table / measuring the full network once, same harness settings.", ""]
    for backend, result in data["backends"].items():
        o = result["overall"]
        lines += [f"## {backend}", "",
                  f"Overall: empirical **{o['empirical']['within10_pct']:.1f}%** within ±10% (MAPE "
                  f"{o['empirical']['mape_pct']:.1f}%), repeatability {o['repeatability']['within10_pct']:.1f}% "
                  f"(MAPE {o['repeatability']['mape_pct']:.1f}%), over {o['empirical']['n']} TRNs. Empirical table "
                  "cost: median "
                  f"{o['cost_ratio_empirical_median']:.2f}x one full-network measurement (measuring every TRN: "
                  f"{o['cost_ratio_measured_median']:.1f}x).", "",
                  "| network | TRNs | full p50 ms | empirical ±10% | empirical MAPE | repeatability ±10% "
                  "| cost empirical | cost measured |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, r in result["networks"].items():
            lines.append(f"| {name} | {r['cuts']} | {r['full_ms']:.2f} | {r['empirical']['within10_pct']:.0f}% | "
                         f"{r['empirical']['mape_pct']:.1f}% | {r['repeatability']['within10_pct']:.0f}% | "
                         f"{r['cost_ratio_empirical']:.2f}x | {r['cost_ratio_measured']:.1f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnxruntime,openvino,litert")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--name", default="latency_estimators", help="docs/benchmarks/NAME.md and .json")
    args = parser.parse_args()
    config = HarnessConfig(warmup=3, repeats=args.repeats)
    networks = args.networks.split(",")
    data = {"machine": machine(), "size": args.size, "repeats": args.repeats, "precision": args.precision,
            "backends": {}}
    with WorkerPool() as pool:
        for backend in args.backends.split(","):
            data["backends"][backend] = run_backend(backend, args.precision, args.size, config, networks, pool)
            write(args.name, data, markdown(data))  # after each backend: a long run keeps what it finished


if __name__ == "__main__":
    main()

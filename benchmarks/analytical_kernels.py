"""The kernel-level analytical estimator on networks it never ran: calibrate on sampled kernels, then predict every
block TRN of real networks and compare with each TRN measured in the same runtime worker.

No network is part of the calibration (it times sampled one-kernel models only), so every network here is absent
from it. Reported per backend: the calibration's cost in minutes, and per network and overall the share of TRNs
whose prediction lies within ±10% of the measured p50 (and the MAPE).

Usage: python benchmarks/analytical_kernels.py [--backends onnxruntime,openvino] [--input-size 224] [--quick]
       [--scale 4]
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
from netcut.fsutil import write_json  # noqa: E402
from netcut.graph import find_cuts, trace  # noqa: E402
from netcut.latency.estimators import accuracy_metrics  # noqa: E402
from netcut.latency.estimators.analytical import (  # noqa: E402
    DEFAULT_SCALE,
    QUICK_SCALE,
    calibrate,
    estimate_analytical,
)
from netcut.latency.estimators.measured import measure_trns  # noqa: E402
from netcut.latency.harness import HarnessConfig  # noqa: E402
from netcut.latency.kernels import trn_kernels  # noqa: E402
from netcut.latency.profile import open_session  # noqa: E402
from netcut.latency.settings import ProfileSettings  # noqa: E402
from netcut.latency.workers import WorkerPool  # noqa: E402
from netcut.progress import Reporter  # noqa: E402

NETWORKS = ("efficientnet_lite0", "torchvision:mobilenet_v2", "torchvision:resnet18", "torchvision:mnasnet1_0",
            "torchvision:mobilenet_v3_small", "torchvision:squeezenet1_1")


def run_backend(backend: str, networks: list[str], size: int, threads: int | None, scale: float,
                reporter: Reporter, dump: Path | None = None) -> dict:
    """Calibrate one backend, then predict and measure every block TRN of every network."""
    settings = ProfileSettings(backend, "fp32", "analytical", harness=HarnessConfig(threads=threads))
    out: dict = {"networks": {}}
    with WorkerPool() as pool:
        session = open_session(pool, settings, reporter=reporter)
        started = time.perf_counter()
        model = calibrate(session, settings, reporter, scale=scale)
        out["calibration_minutes"] = (time.perf_counter() - started) / 60
        out["fit"] = model.fit
        predicted, measured = [], []
        raw: dict = {"model": model.to_dict(), "networks": {},
                     "synthetic": [[[k.to_json() for k in kernels], ms] for kernels, ms in model.synthetic]}
        for name in networks:
            traced = trace(load_backbone(name, "none"), size)
            cuts = find_cuts(traced, "block")
            truth = measure_trns(traced, cuts, session, settings.harness, settings.num_classes, reporter)
            guess = estimate_analytical(traced, cuts, model, settings.num_classes)
            p = np.array([guess.estimates[c.name].p50 for c in cuts])
            m = np.array([truth.estimates[c.name].p50 for c in cuts])
            out["networks"][name] = {**accuracy_metrics(p, m), "predicted_ms": p.tolist(), "measured_ms": m.tolist(),
                                     "cuts": [c.name for c in cuts]}
            if dump is not None:
                raw["networks"][name] = [[[k.to_json() for k in trn_kernels(traced, c, settings.num_classes)],
                                          float(v)] for c, v in zip(cuts, m)]
            predicted.append(p)
            measured.append(m)
            r = out["networks"][name]
            print(f"{backend} {name}: {r['within10_pct']:.0f}% of {r['n']} within ±10%, MAPE {r['mape_pct']:.1f}%",
                  flush=True)
        out["overall"] = accuracy_metrics(np.concatenate(predicted), np.concatenate(measured))
        out["timing"] = session.log.summary()
    if dump is not None:  # every measurement, for trying other fits offline
        write_json(dump.with_name(f"{dump.stem}-{backend}.json"), raw)
    return out


def main() -> None:
    """Every backend; docs/benchmarks/analytical_kernels.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnxruntime,openvino")
    parser.add_argument("--networks", default=",".join(NETWORKS))
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="netcut calibrate --quick's counts")
    parser.add_argument("--scale", type=float, default=None, help="multiply the base calibration counts (kernels, "
                        f"synthetic networks) by this (default {DEFAULT_SCALE:g}, as netcut calibrate)")
    parser.add_argument("--name", default="analytical_kernels")
    parser.add_argument("--dump", type=Path, default=None,
                        help="also write every kernel sample and TRN measurement to PATH-BACKEND.json")
    args = parser.parse_args()
    reporter = Reporter(quiet=True)
    scale = args.scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    results = {b: run_backend(b, args.networks.split(","), args.input_size, args.threads, scale, reporter, args.dump)
               for b in args.backends.split(",")}
    data = {"machine": machine(), "input_size": args.input_size, "results": results}
    lines = ["# Kernel-level analytical estimator on networks absent from its calibration", "", "{header}",
             f"Block TRNs at {args.input_size} px; the calibration times sampled one-kernel models only (no "
             "network), so every network below is absent from it. Truth: every TRN measured in the same runtime "
             "worker after the calibration.", "",
             "| backend | calibration | kernels timed | " + " | ".join(n.split(":")[-1] for n in
                                                                args.networks.split(",")) + " | all TRNs |",
             "|---|---|---|" + "---|" * (len(args.networks.split(",")) + 1)]
    for backend, r in results.items():
        cells = [f"{r['networks'][n]['within10_pct']:.0f}% ({r['networks'][n]['mape_pct']:.1f}%)"
                 for n in args.networks.split(",")]
        lines.append(f"| {backend} | {r['calibration_minutes']:.1f} min | {sum(r['fit']['kernels'].values())} | "
                     + " | ".join(cells) + f" | **{r['overall']['within10_pct']:.0f}%** of {r['overall']['n']} "
                     f"(MAPE {r['overall']['mape_pct']:.1f}%) |")
    lines += ["", "Cells: share of the network's block TRNs predicted within ±10% of measured p50 (MAPE).", ""]
    write(args.name, data, "\n".join(lines))


if __name__ == "__main__":
    main()

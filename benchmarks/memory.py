"""Peak RAM of every block TRN, measured where it runs, against netcut's estimate; how repeatable the measurement is.

For each network and runtime (each TRN converted once, at 224 px, random weights: memory does not depend on their
values), every TRN is measured twice, in two passes over all TRNs (the second in reverse order), each time in a fresh
process of the runtime (netcut_agent.memory): the high-water mark of resident memory while it loads and runs, over
the idle runtime, its load time and its first (cold) inference; ONNX Runtime's own report of its arena beside.

Estimates, as `netcut explore` makes them:
- graph: the TRN's weights plus its activation peak (no runtime overhead);
- anchored: the runtime's model fitted on 3 TRNs of the same network measured on the device (shallowest, deepest,
  one in the weights' middle), scored on the other TRNs;
- other networks: the runtime's model fitted on every TRN of the other networks, scored on this one's (what a
  runtime characterised once would give a network never measured).

Usage: python benchmarks/memory.py [--models efficientnet_lite0,torchvision:mobilenet_v2,torchvision:resnet18]
       [--runtimes onnxruntime,litert,openvino] [--size 224] [--threads 1] [--rows rows.json]
       [--previous earlier.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.backbones import load_backbone  # noqa: E402
from netcut.graph import example_input, find_cuts, trace  # noqa: E402
from netcut.latency.backends import converted, get_backend  # noqa: E402
from netcut.latency.memory import GraphMemory, anchor_cuts, fit_ram_model, graph_memory  # noqa: E402
from netcut.latency.workers import RuntimeWorker  # noqa: E402
from netcut.model import build_trn  # noqa: E402

MODELS = "efficientnet_lite0,torchvision:mobilenet_v2,torchvision:resnet18"
RUNTIMES = "onnxruntime,litert,openvino"
MB = 2**20


def collect(models: list[str], runtimes: list[str], size: int, threads: int) -> list[dict]:
    """One row per TRN and runtime: its graph's bytes and two measurements."""
    rows: list[dict] = []
    for model in models:
        traced = trace(load_backbone(model, "none"), size)
        cuts = find_cuts(traced, "block")
        x = example_input(size, 1)
        for runtime in runtimes:
            backend = get_backend(runtime)
            worker = RuntimeWorker(backend.runtime, threads, runtime)
            try:
                payloads = {c.name: converted(backend, build_trn(traced, c, 10, own_weights=False), x, "fp32", None)
                            for c in cuts}
                passes = []
                for order in (cuts, cuts[::-1]):
                    passes.append({c.name: worker.memory(payloads[c.name], tuple(x.shape)) for c in order})
            finally:
                worker.close()
            for c in cuts:
                g = graph_memory(traced, c, "fp32")
                first, second = passes[0][c.name], passes[1][c.name]
                rows.append({"model": model, "runtime": runtime, "cut": c.name, "index": c.index,
                             "params": c.params, "size_bytes": len(payloads[c.name]), "weights": g.weights,
                             "activations": g.activations, "peak": [first.peak_bytes, second.peak_bytes],
                             "resident": [first.resident_bytes, second.resident_bytes],
                             "load_ms": [first.load_ms, second.load_ms], "first_ms": [first.first_ms, second.first_ms],
                             "reported": first.reported, "method": first.method})
            print(f"{model} {runtime}: {len(cuts)} TRNs, deepest {passes[0][cuts[-1].name].peak_bytes / MB:.1f} MB",
                  flush=True)
    return rows


def _within(estimate: float, truth: float, tolerance: float = 0.20) -> bool:
    return abs(estimate - truth) <= tolerance * truth


def analyse(rows: list[dict], previous: list[dict] | None = None) -> dict:
    """Per network and runtime: repeatability (two sessions of this run, and against an earlier run's rows), and each
    estimate's share within ±20% and median ratio."""
    earlier = {(r["model"], r["runtime"], r["cut"]): float(np.median(r["peak"])) for r in previous or []}
    out: dict = {"groups": []}
    runtimes = sorted({r["runtime"] for r in rows}, key=[r["runtime"] for r in rows].index)
    models = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    totals: dict[str, list[bool]] = {"graph": [], "anchored": [], "other networks": []}
    for runtime in runtimes:
        for model in models:
            group = [r for r in rows if r["runtime"] == runtime and r["model"] == model]
            if not group:
                continue
            truth = {r["cut"]: float(np.median(r["peak"])) for r in group}
            graph = {r["cut"]: GraphMemory(r["weights"], r["activations"]) for r in group}

            class _Cut:  # anchor_cuts reads params only
                def __init__(self, row: dict) -> None:
                    self.name, self.params = row["cut"], row["params"]

            anchors = [c.name for c in anchor_cuts([_Cut(r) for r in group])]  # type: ignore[arg-type]
            anchored = fit_ram_model([(graph[n], int(truth[n])) for n in anchors])
            others = [r for r in rows if r["runtime"] == runtime and r["model"] != model]
            pooled = fit_ram_model([(GraphMemory(r["weights"], r["activations"]), int(np.median(r["peak"])))
                                    for r in others])
            scored = [r["cut"] for r in group if r["cut"] not in anchors]
            result = {"model": model, "runtime": runtime, "n": len(group), "anchors": anchors,
                      "anchored_model": anchored.to_json(), "pooled_model": pooled.to_json() if others else None}
            spreads = [abs(r["peak"][0] - r["peak"][1]) / max(np.median(r["peak"]), 1) for r in group]
            result["repeat_within_5pct"] = 100 * float(np.mean([s <= 0.05 for s in spreads]))
            result["repeat_max_pct"] = 100 * float(max(spreads))
            across = [abs(truth[r["cut"]] - earlier[(model, runtime, r["cut"])]) / truth[r["cut"]] for r in group
                      if (model, runtime, r["cut"]) in earlier]
            if across:
                result["across_runs_within_5pct"] = 100 * float(np.mean([a <= 0.05 for a in across]))
                result["across_runs_max_pct"] = 100 * float(max(across))
            predictions = {"graph": {n: graph[n].total for n in truth},
                           "anchored": {n: anchored.predict(graph[n]) for n in scored}}
            if others:
                predictions["other networks"] = {n: pooled.predict(graph[n]) for n in truth}
            for name, predicted in predictions.items():
                hits = [_within(p, truth[n]) for n, p in predicted.items()]
                totals[name] += hits
                result[name] = {"within20_pct": 100 * float(np.mean(hits)) if hits else None, "n": len(hits),
                                "median_ratio": float(np.median([p / truth[n] for n, p in predicted.items()]))}
            result["peak_mb"] = [min(truth.values()) / MB, max(truth.values()) / MB]
            result["load_ms_median"] = float(np.median([np.median(r["load_ms"]) for r in group]))
            result["first_ms_median"] = float(np.median([np.median(r["first_ms"]) for r in group]))
            arena = [r["reported"].get("arena_peak_bytes") for r in group if r["reported"]]
            if arena:
                result["arena_share_of_peak_median"] = float(np.median(
                    [a / truth[r["cut"]] for a, r in zip(arena, group)]))
            out["groups"].append(result)
    out["overall"] = {k: {"within20_pct": 100 * float(np.mean(v)) if v else None, "n": len(v)}
                      for k, v in totals.items()}
    return out


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}%"


def markdown(data: dict) -> str:
    """The docs page."""
    a = data["analysis"]
    lines = ["# Peak memory: measured against estimated", "", "{header}",
             f"Every block TRN of each network at {data['args']['size']} px (fp32, random weights, "
             f"{data['args']['threads']} thread(s)), converted once, measured "
             "twice in a fresh process of its runtime (two passes over all TRNs, the second in reverse order): the "
             "high-water mark of resident memory while it loads and runs four times, over the idle runtime. "
             "Estimates: **graph** = weights + activation peak (no runtime overhead); **anchored** = the runtime's "
             "model fitted on 3 TRNs of the same network measured on the device (what `netcut explore` does), scored "
             "on the other TRNs; **other networks** = the runtime's model fitted on the other networks' TRNs.", "",
             "Repeatability: the share of TRNs whose two measurements in this run lie within ±5% of each other (and "
             "the largest difference), and the same against an earlier run's (`--previous`"
             + (f": measured {data['previous_date']}" if data.get("previous_date") else "") + "), where given.", "",
             "| runtime | network | TRNs | peak (MB) | repeat ±5% | worst repeat | earlier run ±5% (worst) | "
             "graph ±20% | anchored ±20% | anchored median ratio | other networks ±20% | load (ms) | "
             "first run (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for g in a["groups"]:
        other = g.get("other networks") or {}
        across = (f"{_pct(g['across_runs_within_5pct'])} ({g['across_runs_max_pct']:.1f}%)"
                  if "across_runs_within_5pct" in g else "–")
        lines.append(f"| {g['runtime']} | {g['model']} | {g['n']} | {g['peak_mb'][0]:.1f}–{g['peak_mb'][1]:.1f} | "
                     f"{_pct(g['repeat_within_5pct'])} | {g['repeat_max_pct']:.1f}% | {across} | "
                     f"{_pct(g['graph']['within20_pct'])} | {_pct(g['anchored']['within20_pct'])} | "
                     f"{g['anchored']['median_ratio']:.2f} | {_pct(other.get('within20_pct'))} | "
                     f"{g['load_ms_median']:.0f} | {g['first_ms_median']:.1f} |")
    o = a["overall"]
    lines += ["", f"Overall within ±20% of the measured peak: graph {_pct(o['graph']['within20_pct'])} "
              f"(n={o['graph']['n']}), anchored {_pct(o['anchored']['within20_pct'])} (n={o['anchored']['n']}), "
              f"other networks {_pct(o['other networks']['within20_pct'])} (n={o['other networks']['n']}).", ""]
    arena = [g for g in a["groups"] if "arena_share_of_peak_median" in g]
    if arena:
        lines += ["ONNX Runtime's profiler reports its CPU arena's peak in use: a median share of the measured peak "
                  "of " + ", ".join(f"{g['arena_share_of_peak_median']:.2f} ({g['model']})" for g in arena) +
                  ". The rest is the weights the session holds (and their packed copies), and the code and state of "
                  "its kernels.", ""]
    lines += ["Fitted runtime models (anchored, per network): overhead, weight factor, activation factor:", ""]
    for g in a["groups"]:
        m = g["anchored_model"]
        lines.append(f"- {g['runtime']}, {g['model']}: {m['overhead_bytes'] / MB:.1f} MB + "
                     f"{m['weight_factor']:.2f} × weights + {m['activation_factor']:.2f} × activations")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Collect (or reuse) the rows, analyse, write docs/benchmarks/memory.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--runtimes", default=RUNTIMES)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rows", help="reuse rows written by an earlier run (JSON) instead of measuring")
    parser.add_argument("--previous", help="an earlier run's JSON: how far each TRN's peak moved between the runs")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.rows:
        data = json.loads(Path(args.rows).read_text())
        rows, info = data["rows"], data["machine"]
    else:
        rows = collect(args.models.split(","), args.runtimes.split(","), args.size, args.threads)
        info = machine()
    earlier = json.loads(Path(args.previous).read_text()) if args.previous else None
    data = {"machine": info, "args": vars(args), "rows": rows,
            "analysis": analyse(rows, earlier["rows"] if earlier else None),
            "previous_date": earlier["machine"]["date"] if earlier else None,
            "seconds": time.perf_counter() - started}
    write("memory", data, markdown(data))


if __name__ == "__main__":
    main()

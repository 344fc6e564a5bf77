"""Do two fresh explorations of one command, back to back, choose alike, and does each winner's verification hold?

Setting (issue 12's): EfficientNet-Lite0 and Lite1 at 96 px, scikit-learn's digits (420 training images), empirical
latency estimates, NetCut proposals, linear probes. For each backend and thread setting, a grid of deadlines is
spread geometrically between the fastest candidate and the slower full network (from a latency-only pass in a
throwaway run directory); then the same `netcut explore ... --json` command runs twice, each in a fresh run
directory and its own process, one after the other.

Reported per backend × threads: the share of deadlines at which both runs chose the same network (model, cut,
backend), and the same share among the deadlines where neither run flagged a close call (a latency within
CLOSE_CALL_PCT of the deadline decided it), why the others came apart, the share of winners whose verified latency
lay within ±10% of their estimate (both runs), proposals rejected on verification, how far every candidate's
estimate moved between the two runs, the estimate of each full network in each run, and the timing sessions' own
figures.

Usage: python benchmarks/repeatability.py [--backends torch,onnxruntime] [--threads default,1] [--deadlines 12]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402

MODELS = "efficientnet_lite0,efficientnet_lite1"
COMMON = ["--models", MODELS, "--data", "digits", "--input-size", "96", "--limit-train", "420", "--epochs", "10",
          "--quiet", "--json", "--no-report"]


def explore(backend: str, threads: str, deadlines: str, run_dir: str) -> dict:
    """One `netcut explore` in a process of its own; its --json output."""
    command = [str(Path(sys.executable).with_name("netcut")), "explore", *COMMON, "--backend", backend,
               "--deadline", deadlines, "--run-dir", run_dir] + ([] if threads == "default" else ["--threads", threads])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode not in (0, 3):  # 3: some deadline infeasible, still a result
        raise SystemExit(f"explore failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout)


def grid(backend: str, threads: str, count: int, tmp: Path) -> list[float]:
    """Deadlines from just above the fastest candidate to just above the slower full network (one latency pass)."""
    first = explore(backend, threads, "1000", str(tmp / f"grid-{backend}-{threads}"))
    estimates = [c["estimated_ms"] for c in first["candidates"]]
    fulls = [c["estimated_ms"] for c in first["candidates"] if c["is_full"]]
    return [round(float(d), 3) for d in np.geomspace(min(estimates) * 1.3, max(fulls) * 1.1, count)]


def chosen(decision: dict) -> str | None:
    """The chosen network as model@cut (None: nothing met the deadline)."""
    c = decision["chosen"]
    return None if c is None else f"{c['model']}@{c['cut']}"


def estimate_shifts(runs: list[dict]) -> list[float]:
    """Every candidate's estimate in run 2 against run 1, in percent."""
    first = {(c["model"], c["cut"]): c["estimated_ms"] for c in runs[0]["deadlines"][0]["candidates"]}
    return [100 * (c["estimated_ms"] / first[(c["model"], c["cut"])] - 1)
            for c in runs[1]["deadlines"][0]["candidates"] if (c["model"], c["cut"]) in first]


def why_apart(x: dict, y: dict) -> str:
    """Why two runs chose apart at one deadline: a close call flagged by either run (a latency within a few percent
    of the deadline decided it), a choice carried over from another deadline's proposals, or neither."""
    if x["close_calls"] or y["close_calls"]:
        return "close call"
    if any(d["chosen"] is not None and f"{d['chosen']['model']}@{d['chosen']['cut']}" not in d["proposals"]
           for d in (x, y)):
        return "carried over"
    return "other"


def compare(runs: list[dict]) -> dict:
    """Agreement of the two runs' choices and each winner's verification against its estimate."""
    a, b = runs[0]["deadlines"], runs[1]["deadlines"]
    same = [chosen(x) == chosen(y) for x, y in zip(a, b)]
    flagged = [bool(x["close_calls"] or y["close_calls"]) for x, y in zip(a, b)]
    shifts = np.abs(estimate_shifts(runs))
    verified, rejected = [], 0
    for run in runs:
        for d in run["deadlines"]:
            rejected += len(d["rejected_on_verification"])
            c = d["chosen"]
            if c is not None and c["latency_ms"] is not None:
                verified.append(abs(c["latency_ms"] / c["estimated_ms"] - 1))
    fulls = [{c["model"]: c["estimated_ms"] for c in run["deadlines"][0]["candidates"] if c["is_full"]}
             for run in runs]
    unflagged = [s for s, f in zip(same, flagged) if not f]
    return {"same_choice_pct": 100 * float(np.mean(same)), "deadlines": len(same),
            "flagged": int(sum(flagged)),
            "same_choice_unflagged_pct": 100 * float(np.mean(unflagged)) if unflagged else None,
            "apart_because": [why_apart(x, y) for x, y, s in zip(a, b, same) if not s],
            "estimate_shift_pct": {"median": float(np.median(shifts)), "p90": float(np.percentile(shifts, 90)),
                                   "max": float(shifts.max())},
            "verified_within10_pct": 100 * float(np.mean(np.array(verified) <= 0.10)) if verified else None,
            "verified_errors_pct": [100 * v for v in verified], "rejected_on_verification": rejected,
            "full_estimates_ms": fulls,
            "choices": [[chosen(x), chosen(y)] for x, y in zip(a, b)],
            "timing": [run["environment"].get("timing", {}) for run in runs],
            "threads_used": [run["environment"].get("threads") for run in runs],
            "seconds": [run["exploration_s"] for run in runs]}


def main() -> None:
    """Run every backend × thread setting and write docs/repeatability.{json,md}."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="torch,onnxruntime")
    parser.add_argument("--threads", default="default,1", help="thread settings: default (netcut's) and/or numbers")
    parser.add_argument("--deadlines", type=int, default=12)
    parser.add_argument("--name", default="repeatability")
    args = parser.parse_args()
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        for backend in args.backends.split(","):
            for threads in args.threads.split(","):
                deadlines = grid(backend, threads, args.deadlines, tmp)
                text = ",".join(f"{d:g}" for d in deadlines)
                runs = [explore(backend, threads, text, str(tmp / f"{backend}-{threads}-{i}")) for i in range(2)]
                results[f"{backend}/{threads}"] = {"deadlines_ms": deadlines, **compare(runs)}
                r = results[f"{backend}/{threads}"]
                print(f"{backend} threads={threads}: same choice {r['same_choice_pct']:.0f}%, verified within ±10% "
                      f"{r['verified_within10_pct']}%, rejected {r['rejected_on_verification']}", flush=True)
    data = {"machine": machine(), "models": MODELS, "results": results, "total_s": time.perf_counter() - started}
    lines = ["# Two fresh explorations of one command, back to back", "", "{header}",
             f"EfficientNet-Lite0/Lite1 at 96 px on digits (420 training images), empirical estimator, linear probes; "
             f"{args.deadlines} deadlines per setting, geometric between the fastest candidate and the slower full "
             "network. Each run: `netcut explore --models efficientnet_lite0,efficientnet_lite1 --data "
             "digits --input-size 96 --limit-train 420 --epochs 10 --backend B [--threads T] --deadline GRID`, in a "
             "fresh run directory and a process of its own.", "",
             "| backend | threads | threads used | same choice | same choice where neither run flagged a close call "
             "| why apart | winner's verification within ±10% of its estimate | rejected on verification "
             "| candidates' estimates, run 2 against run 1: median, p90, max | full networks' estimates, run 1 → "
             "run 2 | timing sessions (repeated, unsteady) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in results.items():
        backend, threads = key.split("/")
        fulls = "; ".join(f"{m.split('_')[-1]} {r['full_estimates_ms'][0][m]:.2f} → {r['full_estimates_ms'][1][m]:.2f}"
                          for m in r["full_estimates_ms"][0])
        timing = ", ".join(f"{t.get('sessions', 0)} ({t.get('repeated', 0)}, {t.get('unsteady', 0)})"
                           for t in r["timing"])
        within = "–" if r["verified_within10_pct"] is None else f"{r['verified_within10_pct']:.0f}%"
        unflagged = "–" if r["same_choice_unflagged_pct"] is None else \
            f"{r['same_choice_unflagged_pct']:.0f}% of {r['deadlines'] - r['flagged']}"
        apart = ", ".join(f"{r['apart_because'].count(k)} {k}" for k in dict.fromkeys(r["apart_because"])) or "–"
        shift = "{median:.1f}%, {p90:.1f}%, {max:.1f}%".format(**r["estimate_shift_pct"])
        lines.append(f"| {backend} | {threads} | {'/'.join(str(t) for t in r['threads_used'])} | "
                     f"{r['same_choice_pct']:.0f}% of {r['deadlines']} | {unflagged} | {apart} | {within} | "
                     f"{r['rejected_on_verification']} | {shift} | {fulls} ms | {timing} |")
    lines += ["", "Choices per deadline (run 1 | run 2):", ""]
    for key, r in results.items():
        lines.append(f"- {key}: " + "; ".join(f"{d:g} ms: {x} | {y}" if x != y else f"{d:g} ms: {x}"
                                                 for d, (x, y) in zip(r["deadlines_ms"], r["choices"])))
    lines += ["", "What changed to get here, and what the figures say: "
              "[latency_over_time.md](latency_over_time.md).", ""]
    write(args.name, data, "\n".join(lines))


if __name__ == "__main__":
    main()

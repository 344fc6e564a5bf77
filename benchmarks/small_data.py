"""The few-hundred-image regime: probes, fine-tuned and distilled TRNs against the equally trained off-the-shelf
network, at deadlines between the off-the-shelf latencies, medians over seeds.

For each dataset size (labelled images per class; a fifth of them validate) and seed, one exploration per variant
(fine-tuned; fine-tuned with distillation from the fine-tuned full network) over EfficientNet-Lite0/1/2, with the
fine-tuning budget given. Per deadline it records the test accuracy of: the best probe, the best off-the-shelf
probe, the fine-tuned choice, the equally fine-tuned off-the-shelf baseline, and the choice the old rule (highest
validation accuracy, no noise band) would have made among the same records. Rows go to a JSON file; --merge writes
docs/benchmarks/small_data.md from one or more of them.

Latencies come from the tables in benchmarks/latency_tables (64 px, ONNX Runtime fp32, 1 thread): the deadlines and
candidates are the same on every machine, and the choices are not verified by a measurement.

Usage: python benchmarks/small_data.py --data fashion-mnist --per-class 100 --seeds 3 [--budget 300] [--size 64]
           [--train-device cpu] --rows rows.json
       python benchmarks/small_data.py --merge rows1.json rows2.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import load_row_files, machine, write  # noqa: E402
from netcut.progress import QUIET, Reporter  # noqa: E402
from netcut.results import Choice, ExploreResult  # noqa: E402
from netcut.search.config import ExploreConfig  # noqa: E402
from netcut.search.decide import best_probe, feasible, relative_gain  # noqa: E402
from netcut.search.explore import Explorer  # noqa: E402

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
# made by: netcut profile MODEL --input-size 64 --threads 1 --out benchmarks/latency_tables/MODEL.json (AMD EPYC)
TABLES = Path(__file__).parent / "latency_tables"
VARIANTS = {"fine-tuned": 0.0, "distilled": 0.5}


def deadlines_between(full_ms: dict[str, float]) -> tuple[float, ...]:
    """One deadline halfway between each pair of consecutive off-the-shelf latencies."""
    ordered = sorted(full_ms.values())
    return tuple(round((a + b) / 2, 3) for a, b in zip(ordered, ordered[1:], strict=False))


def strict_choice(result: ExploreResult, deadline_index: int) -> float | None:
    """Test accuracy of what the highest validation accuracy alone picks among the deadline's feasible records."""
    decision = result.decisions[deadline_index]
    admitted = feasible(decision.deadline, list(result.candidates))
    pairs = [(r, c) for c in admitted for r in result.records if r.matches(c)]
    if not pairs:
        return None
    record, _ = max(pairs, key=lambda rc: (rc[0].val_score, -rc[1].estimate.p50))
    return record.test_score


def accuracy(choice: Choice | None) -> float | None:
    """Test accuracy of a choice (None where there is none)."""
    return None if choice is None else choice.record.test_score


def rows_of(result: ExploreResult, variant: str, per_class: int, seed: int, budget: float) -> list[dict]:
    """One row per deadline."""
    rows = []
    for i, d in enumerate(result.decisions):
        probe = best_probe(d.deadline, list(result.candidates), list(result.records))
        row = {"variant": variant, "per_class": per_class, "seed": seed, "deadline_ms": d.deadline.ms,
               "budget_s": budget, "fine_tuning_s": result.stage_seconds.get("fine_tuning", 0.0),
               "exploration_s": result.exploration_s,
               "chosen": accuracy(d.chosen), "chosen_label": d.chosen.candidate.label if d.chosen else None,
               "chosen_fine_tuned": bool(d.chosen and d.chosen.record.finetune_blocks),
               "chosen_distilled": bool(d.chosen and d.chosen.record.metrics.get("distilled")),
               "probe": accuracy(probe), "off_the_shelf_probe": accuracy(d.best_off_the_shelf),
               "off_the_shelf_fine_tuned": accuracy(d.best_off_the_shelf_fine_tuned),
               "strict_rule": strict_choice(result, i),
               "val_images": result.dataset.sizes["val"], "train_images": result.dataset.sizes["train"]}
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> list[dict]:
    """Every (size, seed, variant) exploration; their rows."""
    rows: list[dict] = []
    reporter = Reporter() if args.verbose else QUIET
    seeds = range(args.seeds) if args.seed is None else [args.seed]
    variants = {v: VARIANTS[v] for v in args.variants.split(",")}
    for per_class in (int(v) for v in args.per_class.split(",")):
        for seed in seeds:
            labelled = per_class * 10
            # latencies from tables profiled once (ONNX Runtime, 1 thread): every run, on any machine, has the same
            # candidates and deadlines, and nothing is timed while several runs share a machine
            tables = tuple(str(TABLES / f"{m}.json") for m in MODELS)
            base = ExploreConfig(models=MODELS, data=args.data, input_size=args.size, seed=seed,
                                 limit_train=labelled * 4 // 5, limit_test=args.test, threads=1,
                                 budget_s=args.budget, fine_tune_top=2, train_device=args.train_device,
                                 latency_tables=tables, verify=False)
            work = Path(tempfile.mkdtemp(prefix="netcut-small-"))
            candidates = Explorer(replace(base, run_dir=str(work / "profile")), QUIET).candidates()
            deadlines = deadlines_between({c.model: c.estimate.p50 for c in candidates if c.is_full})
            for variant, weight in variants.items():
                config = replace(base, deadlines=deadlines, distill=weight, run_dir=str(work / variant))
                start = time.perf_counter()
                result = Explorer(config, reporter).run()
                for row in rows_of(result, variant, per_class, seed, args.budget):
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                save(args, rows)  # after every exploration: a run cut short keeps what it measured
                print(f"# {args.data} {per_class}/class seed {seed} {variant}: {time.perf_counter() - start:.0f} s",
                      file=sys.stderr, flush=True)
    return rows


def median(values: list[float]) -> float | None:
    """Median of the values present (None when none)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per dataset, size, deadline rank and variant."""
    out = []
    keys = sorted({(r["data"], r["per_class"], r["deadline_rank"], r["variant"]) for r in rows})
    for data, per_class, rank, variant in keys:
        g = [r for r in rows if (r["data"], r["per_class"], r["deadline_rank"], r["variant"]) ==
             (data, per_class, rank, variant)]
        gains_ft = [relative_gain(r["chosen"], r["off_the_shelf_fine_tuned"]) for r in g
                    if r["chosen"] is not None and r["off_the_shelf_fine_tuned"]]
        gains_probe = [relative_gain(r["probe"], r["off_the_shelf_probe"]) for r in g
                       if r["probe"] is not None and r["off_the_shelf_probe"]]
        out.append({"data": data, "per_class": per_class, "deadline": rank, "variant": variant, "runs": len(g),
                    "deadline_ms": median([r["deadline_ms"] for r in g]),
                    "probe": median([r["probe"] for r in g]),
                    "off_the_shelf_probe": median([r["off_the_shelf_probe"] for r in g]),
                    "chosen": median([r["chosen"] for r in g]),
                    "off_the_shelf_fine_tuned": median([r["off_the_shelf_fine_tuned"] for r in g]),
                    "gain_probe_pct": median(gains_probe), "gain_fine_tuned_pct": median(gains_ft),
                    "fine_tuning_s": median([r["fine_tuning_s"] for r in g]), "budget_s": g[0]["budget_s"],
                    "strict_rule": median([r["strict_rule"] for r in g]),
                    "chosen_distilled": sum(bool(r["chosen_distilled"]) for r in g)})
    return out


def tie_rule(rows: list[dict]) -> dict:
    """Where the noise band with the loss chose otherwise than the highest validation accuracy: which did better on
    test."""
    differ = [r for r in rows if r["chosen"] is not None and r["strict_rule"] is not None
              and abs(r["chosen"] - r["strict_rule"]) > 1e-9]
    return {"decisions": len(rows), "differ": len(differ),
            "band_better": sum(r["chosen"] > r["strict_rule"] for r in differ),
            "strict_better": sum(r["chosen"] < r["strict_rule"] for r in differ),
            "median_points": median([100 * (r["chosen"] - r["strict_rule"]) for r in differ]),
            "total_points": sum(100 * (r["chosen"] - r["strict_rule"]) for r in differ)}


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.1f}%" if pct else f"{v:.3f}"


def report(parts: list[dict]) -> None:
    """docs/benchmarks/small_data.md from the row files."""
    rows = []
    for part in parts:
        for r in part["rows"]:
            rows.append(dict(r, data=part["args"]["data"], where=part["machine"].get("gpu") or part["machine"]["cpu"]))
    for r in rows:  # deadlines by rank within their run (their milliseconds differ from machine to machine)
        same = sorted({x["deadline_ms"] for x in rows if (x["data"], x["per_class"], x["seed"], x["variant"]) ==
                       (r["data"], r["per_class"], r["seed"], r["variant"])})
        r["deadline_rank"] = same.index(r["deadline_ms"]) + 1
    summary = summarize(rows)
    ties = tie_rule(rows)
    lines = ["# Small data: probes, fine-tuning and distillation at a deadline", "", "{header}",
             "EfficientNet-Lite0/1/2 at 64 px; latencies from the tables in benchmarks/latency_tables (ONNX Runtime "
             "fp32, one thread, this project's AMD EPYC), so every run has the same candidates and deadlines; "
             "deadline 1 lies halfway between the full Lite0 and Lite1, deadline 2 between Lite1 and Lite2. A fifth "
             "of the labelled images validate; 1,000 test images (digits: what is left, up to 1,000). Per deadline: "
             "test accuracy of the best probe and the best off-the-shelf probe (NetCut's comparison), the choice "
             "after fine-tuning (fine-tuned, or distilled from the fine-tuned full network at weight 0.5) and the "
             "off-the-shelf network fine-tuned alike; gains are relative (%), medians over seeds.", "",
             "| data | img/class | deadline | variant | runs | probe | off-the-shelf probe | gain (probes) | "
             "chosen | off-the-shelf fine-tuned | gain (fine-tuned) | choices distilled | fine-tuning s (budget) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['data']} | {s['per_class']} | {s['deadline']} | {s['variant']} | {s['runs']} | "
                     f"{_fmt(s['probe'])} | {_fmt(s['off_the_shelf_probe'])} | {_fmt(s['gain_probe_pct'], True)} | "
                     f"{_fmt(s['chosen'])} | {_fmt(s['off_the_shelf_fine_tuned'])} | "
                     f"{_fmt(s['gain_fine_tuned_pct'], True)} | {s['chosen_distilled']} | "
                     f"{s['fine_tuning_s']:.0f} ({s['budget_s']:.0f}) |")
    lines += ["", "## The tie rule", "",
              f"Of {ties['decisions']} decisions, {ties['differ']} chose otherwise than the highest validation "
              f"accuracy alone would have (scores within one standard error are a tie, won by the lower validation "
              f"loss). Of those, the tie rule's choice tested better {ties['band_better']} times and worse "
              f"{ties['strict_better']} times; median difference {ties['median_points'] or 0:+.2f} points, total "
              f"{ties['total_points']:+.1f} points.", "",
              "Where each part ran: " + "; ".join(sorted({f"{p['args']['data']} {p['args']['per_class']}/class on "
                                                          f"{p['machine'].get('gpu') or p['machine']['cpu']} "
                                                          f"(`{p['machine']['command']}`)" for p in parts})) + "."]
    write("small_data", {"machine": parts[0]["machine"], "parts": [p["machine"] for p in parts], "rows": rows,
                         "summary": summary, "tie_rule": ties}, "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist")
    parser.add_argument("--per-class", default="100")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None, help="run this seed alone (one process per seed)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--train-device", default="cpu")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--rows", help="write the rows here (JSON)")
    parser.add_argument("--merge", nargs="+", help="row files to merge into docs/benchmarks/small_data.md")
    args = parser.parse_args()
    if args.merge:
        report(load_row_files(args.merge))
        return
    run(args)


def save(args: argparse.Namespace, rows: list[dict]) -> None:
    """The rows so far, with the machine and the arguments."""
    Path(args.rows or f"small_data_{args.data}_{args.per_class}.json").write_text(
        json.dumps({"machine": machine(), "args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

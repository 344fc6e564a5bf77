"""Which rule breaks ties within the validation noise best: over the decisions of stored runs, the tie set (records
meeting the deadline whose validation accuracy lies within one standard error of the best) and the test accuracy of
each rule's pick, against the best test accuracy in the set.

Usage: python benchmarks/tie_rules.py RUN_DIR [RUN_DIR ...]   (e.g. the run directories small_data.py leaves under
       /tmp/netcut-small-*/, and runs/demo); writes docs/benchmarks/tie_rules.md
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.results import TrainingRecord  # noqa: E402
from netcut.search.decide import feasible, score_noise, val_loss  # noqa: E402
from netcut.store import load_result  # noqa: E402

RULES: dict[str, Callable[[TrainingRecord], tuple]] = {
    "highest validation accuracy": lambda r: (-r.val_score,),
    "lowest validation loss (netcut's)": lambda r: (val_loss(r),),
    "fine-tuned before probes": lambda r: (r.finetune_blocks == 0, -r.val_score),
}


def tie_sets(run_dirs: list[str]) -> list[list[TrainingRecord]]:
    """Every decision's tie set of two or more records."""
    sets = []
    for run_dir in run_dirs:
        result = load_result(run_dir)
        for decision in result.decisions:
            admitted = feasible(decision.deadline, list(result.candidates))
            records = list({r.key: r for c in admitted for r in result.records if r.matches(c)}.values())
            if not records:
                continue
            top = max(records, key=lambda r: r.val_score)
            tied = [r for r in records if r.val_score >= top.val_score - score_noise(top)]
            if len(tied) > 1:
                sets.append(tied)
    return sets


def main() -> None:
    run_dirs = sys.argv[1:]
    sets = tie_sets(run_dirs)
    rows = []
    for rule, key in RULES.items():
        picks = [(min(s, key=key).test_score, max(r.test_score for r in s)) for s in sets]
        rows.append({"rule": rule, "best": sum(p == b for p, b in picks),
                     "points_below_best": sum(100 * (p - b) for p, b in picks)})
    lines = ["# Breaking ties within the validation noise", "", "{header}",
             f"{len(sets)} tie sets (sizes {min(map(len, sets))}–{max(map(len, sets))}) from {len(run_dirs)} runs; "
             "per rule: how often its pick had the best test accuracy of its set, and the test points it gave up "
             "in all.", "", "| rule | picked the best on test | points below the best, total |", "|---|---:|---:|"]
    lines += [f"| {r['rule']} | {r['best']} of {len(sets)} | {r['points_below_best']:+.1f} |" for r in rows]
    write("tie_rules", {"machine": machine(), "runs": run_dirs, "sets": len(sets), "rows": rows},
          "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

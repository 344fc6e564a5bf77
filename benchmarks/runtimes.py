"""Per runtime and precision, on real Fashion-MNIST at 96 px: latency of the full Lite0/1/2 and of the chosen TRNs,
accuracy, and int8 against fp32 in speed and accuracy.

For each backend (ONNX Runtime, OpenVINO, LiteRT; each timed in its own worker process), one exploration of
EfficientNet-Lite0/1/2 at fp32 and int8: latencies estimated (empirical) in that runtime, int8 calibrated on 128
training images, int8 heads trained on the int8 network's own features and scored as the whole int8 network in
the runtime; a loose deadline trains the full networks, a grid of deadlines picks TRNs. All explorations share one
run directory (fp32 features are computed once).

Usage: python benchmarks/runtimes.py [--backends onnxruntime,openvino,litert] [--size 96] [--train 3000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write  # noqa: E402
from netcut.progress import Reporter  # noqa: E402
from netcut.report.plot import plot  # noqa: E402
from netcut.results import ExploreResult  # noqa: E402
from netcut.search.config import ExploreConfig  # noqa: E402
from netcut.search.decide import relative_gain  # noqa: E402
from netcut.search.explore import Explorer  # noqa: E402

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


def full_networks(result: ExploreResult) -> list[dict]:
    """The off-the-shelf networks (new head) at each precision: latency, size, accuracy."""
    rows = []
    for c in result.candidates:
        if not c.is_full:
            continue
        probe = result.probe_of(c)
        rows.append({"model": c.model, "precision": c.id.precision, "estimated_ms": c.estimate.p50,
                     "size_mb": c.size_bytes / 1e6, "accuracy": probe.accuracy if probe else None})
    return rows


def deadlines_for(result: ExploreResult) -> list[float]:
    """One deadline below the fastest fp32 off-the-shelf network, and one between each pair of sizes."""
    full = sorted(c.estimate.p50 for c in result.candidates if c.is_full and c.id.precision == "fp32")
    return [round(0.7 * full[0], 3)] + [round((a + b) / 2, 3) for a, b in zip(full, full[1:])]


def chosen_rows(result: ExploreResult) -> list[dict]:
    """Per deadline: the choice, its measured latency, and the best off-the-shelf network meeting it."""
    rows = []
    for d in result.decisions:
        c, b = d.chosen, d.best_off_the_shelf
        row = {"deadline_ms": d.deadline.ms, "chosen": None, "best_off_the_shelf": None}
        if c is not None:
            row["chosen"] = {"model": c.model, "cut": c.cut, "precision": c.candidate.id.precision,
                             "accuracy": c.accuracy, "estimated_ms": c.candidate.estimate.p50,
                             "measured_ms": c.latency_ms, "size_mb": c.candidate.size_bytes / 1e6}
        if b is not None:
            row["best_off_the_shelf"] = {"model": b.model, "precision": b.candidate.id.precision,
                                         "accuracy": b.accuracy}
        if c is not None and b is not None:
            row["relative_gain_pct"] = relative_gain(c.score, b.score)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="onnxruntime,openvino,litert")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netcut-runtimes-"))
    data: dict = {"machine": machine(), "size": args.size, "train_images": args.train, "test_images": args.test,
                  "models": MODELS, "backends": {}}
    for backend in args.backends.split(","):
        base = ExploreConfig(models=MODELS, data="fashion-mnist", input_size=args.size, limit_train=args.train,
                             limit_test=args.test, run_dir=str(work / "run"), repeats=args.repeats,
                             backends=(backend,), precisions=("fp32", "int8"), deadlines=(1000.0,))
        loose = Explorer(base, Reporter()).run()
        grid = deadlines_for(loose)
        result = Explorer(replace(base, deadlines=tuple(grid)), Reporter()).run()
        plot(result, Path(__file__).resolve().parents[1] / "docs" / f"runtimes_{backend}.png")
        data["backends"][backend] = {"full": full_networks(loose), "deadlines": chosen_rows(result),
                                     "runtimes": result.environment.get("runtimes", {})}
        write("runtimes", data, markdown(data))  # after each backend: a long run keeps what it finished
    shutil.rmtree(work, ignore_errors=True)


def _fmt(value: float | None, pattern: str = "{:.4f}") -> str:
    return "–" if value is None else pattern.format(value)


def markdown(data: dict) -> str:
    lines = ["# Runtimes and precisions: latency, accuracy, int8 against fp32", "", "{header}",
             f"EfficientNet-Lite0/1/2 on real Fashion-MNIST ({data['train_images']} training, "
             f"{data['test_images']} test images, {data['size']} px), all cores, batch 1, each runtime in its own "
             "worker process. Latencies are the empirical estimator's p50 in that runtime; accuracies are test "
             "accuracies of a new head on the frozen trunk (fp32: PyTorch features; int8: the int8 network's own "
             "features in the runtime, scored as the whole int8 network there). int8 = static post-training "
             "quantization calibrated on 128 training images (ONNX QDQ u8/s8 per tensor; LiteRT full integer), the "
             "classifier kept float.", ""]
    for backend, result in data["backends"].items():
        lines += [f"## {backend}", "", f"![frontier](runtimes_{backend}.png)", "",
                  "### The off-the-shelf networks", "",
                  "| model | fp32 p50 | int8 p50 | int8 speed-up | fp32 size | int8 size | fp32 accuracy | int8 "
                  "accuracy |", "|---|---|---|---|---|---|---|---|"]
        full = {(r["model"], r["precision"]): r for r in result["full"]}
        for model in data["models"]:
            f, q = full.get((model, "fp32")), full.get((model, "int8"))
            if f is None or q is None:
                continue
            lines.append(f"| {model} | {f['estimated_ms']:.2f} ms | {q['estimated_ms']:.2f} ms | "
                         f"{f['estimated_ms'] / q['estimated_ms']:.2f}x | {f['size_mb']:.1f} MB | "
                         f"{q['size_mb']:.1f} MB | {_fmt(f['accuracy'])} | {_fmt(q['accuracy'])} |")
        lines += ["", "### Chosen network per deadline", "",
                  "| deadline | chosen | precision | test accuracy | estimated | measured | size | best off-the-shelf "
                  "| relative gain |", "|---|---|---|---|---|---|---|---|---|"]
        for r in result["deadlines"]:
            c, b = r["chosen"], r["best_off_the_shelf"]
            if c is None:
                lines.append(f"| {r['deadline_ms']:g} ms | none | | | | | | | |")
                continue
            base = f"{b['model']} {b['precision']} {b['accuracy']:.4f}" if b else "none meets it"
            gain = f"{r['relative_gain_pct']:+.2f}%" if "relative_gain_pct" in r else "–"
            lines.append(f"| {r['deadline_ms']:g} ms | {c['model']} @ {c['cut']} | {c['precision']} | "
                         f"{c['accuracy']:.4f} | {c['estimated_ms']:.2f} ms | {_fmt(c['measured_ms'], '{:.2f} ms')} | "
                         f"{c['size_mb']:.1f} MB | {base} | {gain} |")
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

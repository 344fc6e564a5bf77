"""Console rendering with rich: every table the CLI and the demo print."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from netcut.latency.table import LatencyTable, along_depth
from netcut.report.text import chosen_ram_text, ram_text, timing_text
from netcut.report.view import beaten_on_test
from netcut.results import Choice, Decision, ExploreResult
from netcut.search.decide import CLOSE_CALL_PCT, close_calls, relative_gain
from netcut.search.pareto import frontiers
from netcut.types import CutPoint


def console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); piped output gets at least 140 columns (more if $COLUMNS says so) instead of
    being squeezed to 80."""
    stream = sys.stderr if stderr else sys.stdout
    columns = os.environ.get("COLUMNS", "")
    return Console(stderr=stderr, highlight=False,
                   width=None if stream.isatty() else max(140, int(columns) if columns.isdigit() else 0))


def human(n: float) -> str:
    """12.3M, 4.56k, 789."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def print_models(out: Console, rows: list[dict[str, Any]]) -> None:
    """The built-in backbones."""
    table = Table(title="built-in backbones (pretrained on ImageNet, available offline)")
    for column in ("name", "input", "weights", "description"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], str(r["input_size"]), r["weights"], r["description"])
    out.print(table)
    out.print("Also: torchvision:NAME (e.g. torchvision:resnet18), timm:NAME (e.g. timm:mobilenetv3_large_100), "
              "py:FILE.py:NAME (your own nn.Module). Add --weights DEFAULT|none|PATH.")


def shape_label(cut: CutPoint) -> str:
    """A cut's activation as a reader names it: C×H×W for a feature map, H×W×C for a channels-last one, tokens × C."""
    if cut.layout == "tokens":
        return f"{cut.shape[0]} tokens × {cut.shape[1]}"
    return "×".join(map(str, cut.shape)) + (" (H×W×C)" if cut.layout == "nhwc" else "")


def print_cuts(out: Console, model: str, input_size: int, granularity: str, cuts: list[CutPoint]) -> None:
    """The legal cut points of a backbone with their cost."""
    full = cuts[-1]
    table = Table(title=f"{model} @ {input_size}px: {len(cuts)} {granularity} cut points")
    for column, justify in (("#", "right"), ("cut", "left"), ("C×H×W or tokens", "right"), ("params", "right"),
                            ("MACs", "right"), ("% MACs", "right"), ("op", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for i, c in enumerate(cuts):
        share = 100.0 * c.macs / full.macs if full.macs else 0.0
        table.add_row(str(i), c.name + (" (full)" if c.is_full else ""), shape_label(c),
                      human(c.params), human(c.macs), f"{share:.0f}%", c.op)
    out.print(table)


def print_profile(out: Console, table: LatencyTable, measured: bool, analytical_fitted: bool) -> None:
    """A latency table, each estimator's error against measurement, and what it cost."""
    view = Table(title=f"{table.model} @ {table.input_size}px, {table.backend}, {table.environment['threads']} "
                       f"threads, batch {table.batch}: {table.estimator} estimates (ms)")
    columns = ["cut", "est p50", "est p90"] + (["meas p50", "meas p90", "error"] if measured else []) + ["RAM"]
    for column in columns:
        view.add_column(column, justify="left" if column == "cut" else "right")
    for row in table.cuts:
        cells = [row.name, f"{row.estimated.p50:.2f}", f"{row.estimated.p90:.2f}"]
        if row.measured is not None:
            error = 100 * (row.estimated.p50 - row.measured.p50) / row.measured.p50
            cells += [f"{row.measured.p50:.2f}", f"{row.measured.p90:.2f}", f"{error:+.1f}%"]
        view.add_row(*cells, ram_text(row.ram_bytes, row.memory is not None))
    out.print(view)
    model = table.environment.get("memory", {})
    if model.get("refused"):
        out.print(f"RAM: estimated from the graph alone ({model['refused']})")
    elif model:
        out.print(f"RAM: peak memory over the idle runtime, {model['measured']} TRN(s) measured (a fresh process "
                  "each), the rest estimated (≈) from the graph's weights and activations fitted to them")
    for name, acc in table.accuracy.items():
        anchors = acc.get("anchors", 0)
        apart = f" ({anchors} more measured as anchors, not counted)" if anchors else ""
        if acc["n"]:
            out.print(f"{name:>10}: MAPE {acc['mape_pct']:.1f}%, {acc['within10_pct']:.0f}% of {acc['n']} estimated "
                      f"TRNs within ±10% of measured p50{apart}")
        else:
            out.print(f"{name:>10}: all {anchors} TRNs were measured as anchors: nothing was estimated")
    if measured and not analytical_fitted:
        out.print("analytical: no fitted model for this device yet (run `netcut calibrate` to compare it too)")
    out.print(f"cost: {', '.join(f'{k} {v:.1f}s' for k, v in table.cost_s.items())}")
    timing = timing_text(table.environment.get("timing", {}))
    if timing:
        out.print(timing)


def print_layers(out: Console, table: LatencyTable) -> None:
    """Where the time goes along the depth: each block's latency and share, its work, and peak memory at its end."""
    view = Table(title=f"{table.model}: each block's share of the latency ({table.backend} {table.precision}, "
                       f"{table.estimator}) and peak memory at its end")
    for column in ("block (ends at)", "adds ms", "share", "TRN ms", "MMACs", "params", "RAM"):
        view.add_column(column, justify="left" if column.startswith("block") else "right")
    for row in along_depth(table):
        view.add_row(row.name, f"{row.block_ms:+.3f}", f"{row.share_pct:.1f}%", f"{row.ms:.2f}",
                     f"{row.macs / 1e6:.1f}", f"{row.params / 1e3:.0f}k", ram_text(row.ram_bytes, row.ram_measured))
    out.print(view)


def print_calibration(out: Console, fit: dict[str, Any], backend: str, env: dict[str, Any], path: str) -> None:
    """Where the calibration went, what it measured and how well its regressors predicted new kernels."""
    out.print(f"analytical model for {backend} on {env['cpu']} ({env['threads']} threads) saved to {path}: "
              f"{sum(fit['kernels'].values())} kernels timed in {fit['minutes']:.1f} min, call overhead "
              f"{fit['overhead_ms'] * 1e3:.0f} µs; kernels timed by {fit.get('kernel_timing', 'whole calls')}")
    view = Table(title="kernels per kind; the last adaptive round's kernels as predicted before they were added")
    for column in ("kind", "kernels", "MAPE", "within ±10%"):
        view.add_column(column, justify="left" if column == "kind" else "right")
    for kind, count in fit["kernels"].items():
        q = fit["last_round_before_refit"].get(kind, {})
        view.add_row(kind, str(count), f"{q['mape_pct']:.0f}%" if q else "–", f"{q['within10_pct']:.0f}%" if q else "–")
    out.print(view)


# Below this many columns the decision is a short block per deadline: a wide table there would cut names short.
WIDE = 120


def identity(choice: Choice) -> str:
    """model @ cut, as the user reads and types it."""
    return f"{choice.model} @ {choice.cut}" + (" (full)" if choice.candidate.is_full else "")


def _training(choice: Choice) -> str:
    blocks = choice.record.finetune_blocks
    if not blocks:
        return "probe (frozen trunk)"
    what = "every layer" if blocks < 0 else f"last {blocks} block(s)"
    return f"fine-tuned ({what}, {choice.record.metrics.get('epochs', '?')} epochs)"


def _baselines(result: ExploreResult, d: Decision) -> list[str]:
    c, b, t = d.chosen, d.best_off_the_shelf, d.best_off_the_shelf_fine_tuned
    assert c is not None
    parts = [f"best off-the-shelf {b.model} {b.score:.4f} ({relative_gain(c.score, b.score):+.1f}%)" if b else
             "no off-the-shelf network meets it"]
    if any(r.finetune_blocks for r in result.records):
        parts.append(f"fine-tuned baseline {t.model} {t.score:.4f} ({relative_gain(c.score, t.score):+.1f}%)" if t
                     else "fine-tuned baseline: none")
    return parts


def _decision_blocks(out: Console, result: ExploreResult, metric: str) -> None:
    """One short block per deadline, lines that wrap at spaces: readable in any terminal."""
    for d in result.decisions:
        c = d.chosen
        if c is None:
            out.print(Text(f"{d.deadline.ms:g} ms: none meets it ({d.reason or 'no candidate'}; fastest "
                           f"{d.fastest_ms or 0:.2f} ms)", style="red"))
            continue
        out.print(Text.assemble((f"{d.deadline.ms:g} ms", "bold"), " → ", (identity(c), "bold green")))
        measured = "not verified" if c.latency_ms is None else f"measured {c.latency_ms:.2f} ms"
        for line in (f"{c.candidate.id.backend} {c.candidate.id.precision} · {_training(c)} · "
                     f"{c.candidate.size_bytes / 1e6:.2f} MB file · {chosen_ram_text(c.candidate, c.memory)}",
                     f"test {metric} {c.score:.4f} · validation {c.record.val_score:.4f} · {measured} (estimated "
                     f"{c.candidate.estimate.p50:.2f} ms)",
                     " · ".join(_baselines(result, d))):
            out.print(Padding(Text(line), (0, 0, 0, 4)))


def _decision_table(result: ExploreResult, metric: str) -> Table:
    """The decisions as one table, for terminals wide enough to show it whole."""
    table = Table(title="the choice per deadline")
    for column in ("deadline", "chosen: model @ cut", "runtime", "training", f"test {metric}", "validation",
                   "measured p50", "estimated", "size", "RAM", "vs off-the-shelf"):
        table.add_column(column, no_wrap=True, justify="left" if column in (
            "chosen: model @ cut", "runtime", "training") else "right")
    for d in result.decisions:
        c, b = d.chosen, d.best_off_the_shelf
        if c is None:
            table.add_row(f"{d.deadline.ms:g} ms", "[red]none meets it[/red]", "", "", "", "", "",
                          f"fastest {d.fastest_ms or 0:.2f} ms", "", "", "")
            continue
        table.add_row(f"{d.deadline.ms:g} ms", identity(c), f"{c.candidate.id.backend} {c.candidate.id.precision}",
                      _training(c), f"{c.score:.4f}", f"{c.record.val_score:.4f}",
                      "–" if c.latency_ms is None else f"{c.latency_ms:.2f} ms", f"{c.candidate.estimate.p50:.2f} ms",
                      f"{c.candidate.size_bytes / 1e6:.2f} MB",
                      ram_text(c.memory.peak_bytes, True) if c.memory else
                      ram_text(c.candidate.ram_bytes, c.candidate.ram_source == "measured"),
                      f"{relative_gain(c.score, b.score):+.1f}%" if b else "none meets it")
    return table


def fits(out: Console, table: Table) -> bool:
    """Whether a table shows at its natural width, no cell wrapped or cut (measured as if the terminal had no
    edge: a measurement within the terminal is clamped to its width)."""
    return Measurement.get(out, out.options.update(max_width=10**6), table).maximum <= out.width


def _explain(out: Console, result: ExploreResult, metric: str) -> None:
    """Why a candidate may beat the choice on test: the choice is made on the validation split."""
    val = result.dataset.sizes.get("val", 0)
    out.print(f"The choice is made on the validation split ({val} images): the most accurate, and among scores within "
              "its noise (one standard error) the lowest validation loss; the test split only reports. A candidate "
              "that beats it on test by a little may have done so by chance:")
    for d in result.decisions:
        c = d.chosen
        for cand, record in beaten_on_test(result, d)[:3]:
            assert c is not None
            line = (f"{d.deadline.ms:g} ms: {cand.model} @ {cand.cut.name} test {record.test_score:.4f}, validation "
                    f"{record.val_score:.4f} (the choice: test {c.score:.4f}, validation {c.record.val_score:.4f})")
            out.print(Padding(Text(line), (0, 0, 0, 4)))


def print_result(out: Console, result: ExploreResult) -> None:
    """The per-deadline outcome (a block per deadline below WIDE columns, else a table; names never cut), why, and
    the frontiers."""
    metric = result.dataset.metric.replace("_", " ")
    out.print(Text(f"NetCut: {result.trained} of {len(result.candidates)} candidates retrained; "
                   f"{len(result.decisions)} deadline(s)", style="bold"))
    table = _decision_table(result, metric)
    if out.width < WIDE or not fits(out, table):
        _decision_blocks(out, result, metric)
    else:
        out.print(table)
        for d in result.decisions:
            if d.chosen is not None:
                out.print(Padding(Text(f"{d.deadline.ms:g} ms: " + " · ".join(_baselines(result, d))), (0, 0, 0, 2)))
    if any(beaten_on_test(result, d) for d in result.decisions):
        _explain(out, result, metric)
    for d in result.decisions:
        calls = close_calls(d, list(result.candidates), list(result.records))
        if calls:
            out.print(f"[yellow]close call at {d.deadline.ms:g} ms[/yellow]: " + "; ".join(c.text() for c in calls)
                      + f". Within {CLOSE_CALL_PCT:g}% of the deadline a second run may choose otherwise.")
    for (backend, precision), group in frontiers(list(result.candidates), list(result.records)).items():
        title = f"Pareto frontier of the retrained candidates: {backend}, {precision}"
        front = Table(title=title)
        for column in ("model @ cut", "estimated p50", "size", "RAM", f"test {metric}", "validation"):
            front.add_column(column, no_wrap=True)
        rows = [(f"{cand.model} @ {cand.cut.name}" + (" (off-the-shelf)" if cand.is_full else ""),
                 f"{cand.estimate.p50:.2f} ms", f"{cand.size_bytes / 1e6:.2f} MB",
                 ram_text(cand.ram_bytes, cand.ram_source == "measured"), f"{record.test_score:.4f}",
                 f"{record.val_score:.4f}") for cand, record in group]
        for row in rows:
            front.add_row(*row)
        if fits(out, front):
            out.print(front)
            continue
        out.print(Text(title, style="bold"))  # too narrow for the table: a line per network, wrapping at spaces
        for name, ms, size, ram, test, val in rows:
            out.print(Padding(Text(f"{name} · {ms} · {size} · RAM {ram} · test {test} · validation {val}"),
                              (0, 0, 0, 2)))
    timing = timing_text(result.environment.get("timing", {}))
    if timing:
        out.print(timing)

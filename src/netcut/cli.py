"""netcut command line: parse, call the API, print. Errors become one paragraph and an exit code."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from netcut import errors
from netcut._version import __version__

EPILOG = """examples:
  netcut models
  netcut cuts efficientnet_lite0
  netcut cuts torchvision:resnet18 --granularity layer --input-size 160 --json
  netcut profile efficientnet_lite0 --backend onnxruntime --measure-all --out lite0.json
  netcut explore --models efficientnet_lite0,efficientnet_lite1 --data fashion-mnist --deadline 8,12
  netcut report runs/latest && netcut export runs/latest --format onnx --out winner.onnx

exit codes: 0 ok, 1 internal error (a bug), 2 bad input, 3 no candidate meets the deadline, 130 interrupted"""


def _whole_at_least_one(what: str = "", note: str = ""):
    """An argparse type: a whole number ≥ 1, with a message naming what it is."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{what + ' ' if what else ''}must be ≥ 1, got {value}{note}")
        return value

    return parse


_positive_int = _whole_at_least_one()
_threads = _whole_at_least_one("threads", " (default: all cores)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in name, torchvision:NAME, timm:NAME or py:FILE.py:NAME")
    p.add_argument("--weights", default=None,
                   help="DEFAULT (download), none (random) or a state_dict PATH; built-ins default to their "
                        "packaged ImageNet weights, others to none")
    p.add_argument("--input-size", type=_positive_int, default=None, help="square input side in px (default: native)")
    p.add_argument("--granularity", choices=["block", "layer"], default="block",
                   help="block: ends of blocks/stages (default); layer: every legal point")


def _add_latency_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", help="torch (eager) or onnxruntime (CPU provider); default torch")
    p.add_argument("--threads", type=_threads, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--repeats", type=_positive_int, default=30, help="timed rounds (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="discarded warm-up rounds (default 5)")


def _harness(args: argparse.Namespace):
    from netcut.latency.harness import HarnessConfig

    return HarnessConfig(batch=args.batch, warmup=args.warmup, repeats=args.repeats, threads=args.threads).validate()


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our documented usage code and a fix hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"netcut: error: {message}\n  fix: see `{self.prog} --help`\n")
        sys.exit(errors.EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render --help in docs)."""
    parser = _Parser(prog="netcut", description="Cut pretrained CNNs into trimmed networks (TRNs) and find the most "
                     "accurate one that meets a latency deadline on your device.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"netcut {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("models", help="list the built-in backbones", epilog="example:\n  netcut models --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("cuts", help="list the legal cut points of a backbone",
                       epilog="examples:\n  netcut cuts efficientnet_lite0\n"
                              "  netcut cuts torchvision:mobilenet_v2 --granularity layer --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON list (name, shape [C,H,W], params, macs)")
    p.set_defaults(handler=cmd_cuts)

    p = sub.add_parser("profile", help="estimate (and measure) every TRN's latency; write a portable table",
                       epilog="examples:\n  netcut profile efficientnet_lite0\n"
                              "  netcut profile efficientnet_lite0 --backend onnxruntime --measure-all --out lite0.json\n"
                              "  netcut profile torchvision:resnet18 --estimator analytical --threads 1 --json\n"
                              "Run it on the target device; pass the table to `netcut explore --latency-table` "
                              "anywhere.",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    _add_latency_args(p)
    p.add_argument("--estimator", choices=["empirical", "analytical", "measured"], default="empirical",
                   help="empirical: profile once, derive all (default); analytical: fitted model, runs nothing; "
                        "measured: time every TRN")
    p.add_argument("--measure-all", action="store_true",
                   help="also measure every TRN and report each estimator's error (MAPE, share within ±10%%)")
    p.add_argument("--analytical-model", default=None, help="fitted analytical model JSON (default: per-device cache)")
    p.add_argument("--out", default=None, help="write the latency table (JSON) here")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_profile)

    p = sub.add_parser("calibrate", help="fit the analytical latency model for this device and backend",
                       epilog="example:\n  netcut calibrate --backend onnxruntime --threads 2",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_latency_args(p)
    p.add_argument("--input-size", type=_positive_int, default=224, help="input side in px (default 224)")
    p.add_argument("--granularity", choices=["block", "layer"], default="block")
    p.add_argument("--networks", default=None, help="comma-separated calibration networks (default: 6 torchvision "
                   "families)")
    p.add_argument("--out", default=None, help="where to save the model (default: per-device cache)")
    p.add_argument("--json", action="store_true", help="print the fit as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_calibrate)

    p = sub.add_parser("explore", help="find the most accurate network that meets each deadline (NetCut)",
                       epilog="examples:\n"
                              "  netcut explore --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 \\\n"
                              "      --data fashion-mnist --deadline 12\n"
                              "  netcut explore --models efficientnet_lite0 --data photos/ --deadline 8,12,20 "
                              "--percentile p90\n"
                              "  netcut explore --models efficientnet_lite0 --data labels.csv --deadline 10 "
                              "--latency-table lite0-on-device.json --json\n"
                              "exit codes: 0 ok, 2 bad input, 3 a deadline no candidate can meet",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, help="comma-separated backbones (built-in, torchvision:, timm:, py:)")
    p.add_argument("--data", required=True, help="fashion-mnist, digits, a class-per-folder directory, or a "
                   "soft-label CSV (path,p_1,...,p_k)")
    p.add_argument("--deadline", required=True, help="latency bound(s) in ms, e.g. 12 or 8,12,20")
    p.add_argument("--percentile", default="p50", help="meet the deadline at p50 (default), p90 or p99")
    p.add_argument("--margin", type=float, default=0.05, help="safety margin on estimates (default 0.05 = 5%%)")
    p.add_argument("--estimator", choices=["empirical", "analytical", "measured"], default="empirical")
    p.add_argument("--latency-table", action="append", default=[], help="a table from `netcut profile` (measured "
                   "on the target); repeat for several models")
    p.add_argument("--strategy", default="netcut", help="netcut (retrain proposals only, default) or exhaustive")
    p.add_argument("--granularity", choices=["block", "layer"], default="block")
    p.add_argument("--fine-tune-blocks", type=int, default=0, help="fine-tune the last K blocks of the top "
                   "proposals from images (default 0: frozen trunk)")
    p.add_argument("--top-k", type=_positive_int, default=3, help="deepest feasible cuts proposed per backbone")
    p.add_argument("--input-size", type=_positive_int, default=None, help="input side in px (default: native)")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use at most N training images")
    p.add_argument("--limit-test", type=_positive_int, default=None, help="use at most N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default="runs/latest", help="where the store, caches and report go "
                   "(default runs/latest); rerunning reuses finished work")
    p.add_argument("--weights", default=None, help="weights for torchvision:/timm: models (DEFAULT|none|PATH)")
    p.add_argument("--head-hidden", type=_positive_int, default=None, help="hidden units in the head (default: "
                   "linear head)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="max head-training epochs (early stopping)")
    p.add_argument("--no-verify", action="store_true", help="skip measuring the winner's latency")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    _add_latency_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON (progress goes to stderr)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_explore)

    p = sub.add_parser("report", help="write the markdown/HTML report and plot of a run",
                       epilog="example:\n  netcut report runs/latest", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a run directory written by `netcut explore`")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("export", help="export the chosen network (ONNX or TorchScript) with a manifest",
                       epilog="examples:\n  netcut export runs/latest --format onnx --out winner.onnx\n"
                              "  netcut export runs/latest --deadline 12 --format torchscript --out winner.pt",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("--deadline", type=float, default=None, help="which deadline's winner (default: the loosest met)")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", required=True, help="model file to write; the manifest goes to OUT.json")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("demo", help="run the NetCut demo (what `make demo` runs)",
                       epilog="example:\n  netcut demo --run-dir runs/demo", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a smaller, faster demo")
    p.set_defaults(handler=cmd_demo)
    return parser


def _console(stderr: bool = False):
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # piped output has no terminal width; keep tables readable instead of squeezing them to 80 columns
    width = None if stream.isatty() else 140
    return Console(stderr=stderr, highlight=False, width=width)


def cmd_models(args: argparse.Namespace) -> int:
    """List the built-in backbones."""
    from netcut.backbones import BUILTINS

    rows = [{"name": n, "input_size": s.input_size, "weights": "imagenet (offline, " + s.package.replace("_", "-") + ")",
             "description": s.description} for n, s in BUILTINS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="built-in backbones (pretrained on ImageNet, available offline)")
    for column in ("name", "input", "weights", "description"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["name"], str(r["input_size"]), r["weights"], r["description"])
    console = _console()
    console.print(table)
    console.print("Also: torchvision:NAME (e.g. torchvision:resnet18), timm:NAME (e.g. timm:mobilenetv3_large_100), "
                  "py:FILE.py:NAME (your own nn.Module). Add --weights DEFAULT|none|PATH.")
    return 0


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def cmd_cuts(args: argparse.Namespace) -> int:
    """List the legal cut points of a backbone."""
    from netcut.backbones import load_backbone
    from netcut.graph import find_cuts, trace

    backbone = load_backbone(args.model, args.weights)
    traced = trace(backbone, args.input_size)
    cuts = find_cuts(traced, args.granularity)
    if args.json:
        print(json.dumps([c.to_dict() for c in cuts], indent=2))
        return 0
    from rich.table import Table

    full = cuts[-1]
    table = Table(title=f"{backbone.name} @ {traced.input_size}px: {len(cuts)} {args.granularity} cut points")
    for column, justify in (("#", "right"), ("cut", "left"), ("C×H×W", "right"), ("params", "right"),
                            ("MACs", "right"), ("% MACs", "right"), ("op", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for i, c in enumerate(cuts):
        share = 100.0 * c.macs / full.macs if full.macs else 0.0
        name = c.name + (" (full)" if c.is_full else "")
        table.add_row(str(i), name, "×".join(map(str, c.shape)), _human(c.params), _human(c.macs), f"{share:.0f}%", c.op)
    _console().print(table)
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    """Estimate every TRN's latency and write a portable table."""
    from pathlib import Path

    from netcut.backbones import load_backbone
    from netcut.graph import trace
    from netcut.latency.backends import get_backend
    from netcut.latency.harness import environment
    from netcut.latency.profile import ProfileSettings, analytical_model_path, profile
    from netcut.progress import Reporter

    settings = ProfileSettings(args.backend, args.estimator, args.granularity, harness=_harness(args)).validate()
    backend = get_backend(args.backend, settings.harness.resolved_threads())  # fails fast if unknown/missing
    traced = trace(load_backbone(args.model, args.weights), args.input_size)
    reporter = Reporter(quiet=args.quiet or args.json)
    compare: tuple[str, ...] = ()
    if args.measure_all:
        env = environment(backend.name, settings.harness.resolved_threads(), backend.versions())
        fitted = args.analytical_model or analytical_model_path(args.backend, env).is_file()
        compare = ("empirical", "analytical") if fitted else ("empirical",)
    table = profile(traced, settings, args.measure_all, reporter,
                    Path(args.analytical_model) if args.analytical_model else None, compare)
    if args.out:
        table.save(args.out)
    if args.json:
        print(json.dumps(table.to_dict(), indent=2))
        return 0
    from rich.table import Table

    view = Table(title=f"{table.model} @ {table.input_size}px, {table.backend}, {table.environment['threads']} "
                       f"threads, batch {table.batch}: {table.estimator} estimates (ms)")
    columns = ["cut", "est p50", "est p90"] + (["meas p50", "meas p90", "error"] if args.measure_all else [])
    for column in columns:
        view.add_column(column, justify="left" if column == "cut" else "right")
    for row in table.cuts:
        cells = [row.name, f"{row.estimated_ms:.2f}", f"{row.estimated_p90_ms:.2f}"]
        if row.measured_ms is not None:
            error = 100 * (row.estimated_ms - row.measured_ms) / row.measured_ms
            cells += [f"{row.measured_ms:.2f}", f"{row.measured_p90_ms:.2f}", f"{error:+.1f}%"]
        view.add_row(*cells)
    console = _console()
    console.print(view)
    for name, acc in table.accuracy.items():
        console.print(f"{name:>10}: MAPE {acc['mape_pct']:.1f}%, {acc['within10_pct']:.0f}% of {acc['n']} TRNs "
                      "within ±10% of measured p50")
    if args.measure_all and "analytical" not in table.accuracy:
        console.print("analytical: no fitted model for this device yet (run `netcut calibrate` to compare it too)")
    console.print(f"cost: {', '.join(f'{k} {v:.1f}s' for k, v in table.cost_s.items())}")
    if args.out:
        console.print(f"latency table written to {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit the analytical latency model for this device and backend."""
    from pathlib import Path

    from netcut.latency.backends import get_backend
    from netcut.latency.harness import environment
    from netcut.latency.profile import DEFAULT_CALIBRATION, ProfileSettings, analytical_model_path, \
        calibrate_analytical
    from netcut.progress import Reporter

    settings = ProfileSettings(args.backend, "analytical", args.granularity, harness=_harness(args)).validate()
    backend = get_backend(args.backend, settings.harness.resolved_threads())
    env = environment(backend.name, settings.harness.resolved_threads(), backend.versions())
    path = Path(args.out) if args.out else analytical_model_path(backend.name, env)
    networks = tuple(n.strip() for n in args.networks.split(",") if n.strip()) if args.networks else DEFAULT_CALIBRATION
    model = calibrate_analytical(backend, settings, args.input_size, networks, Reporter(args.quiet or args.json), path)
    if args.json:
        print(json.dumps(model.to_dict(), indent=2))
        return 0
    console = _console()
    fit = model.fit
    console.print(f"analytical model for {backend.name} on {env['cpu']} ({env['threads']} threads) saved to {path}")
    console.print(f"  in-sample: MAPE {fit['in_sample']['mape_pct']:.1f}%, "
                  f"{fit['in_sample']['within10_pct']:.0f}% within ±10%")
    if "overall" in fit["leave_one_network_out"]:
        o = fit["leave_one_network_out"]["overall"]
        console.print(f"  leave-one-network-out: MAPE {o['mape_pct']:.1f}%, {o['within10_pct']:.0f}% within ±10%")
    return 0


def explore_config(args: argparse.Namespace):
    """ExploreConfig from parsed arguments."""
    from netcut.search.explore import ExploreConfig
    from netcut.search.strategy import parse_deadlines

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    return ExploreConfig(
        models=models, data=args.data, deadlines=tuple(parse_deadlines(args.deadline)), percentile=args.percentile,
        margin=args.margin, estimator=args.estimator, latency_tables=tuple(args.latency_table), backend=args.backend,
        strategy=args.strategy, granularity=args.granularity, fine_tune_blocks=args.fine_tune_blocks,
        top_k=args.top_k, input_size=args.input_size, limit_train=args.limit_train, limit_test=args.limit_test,
        seed=args.seed, run_dir=args.run_dir, threads=args.threads, weights=args.weights,
        head_hidden=args.head_hidden, epochs=args.epochs, repeats=args.repeats, warmup=args.warmup, batch=args.batch,
        verify=not args.no_verify).validate()


def print_result(result, console) -> None:
    """The per-deadline outcome and the frontier as tables."""
    from rich.table import Table

    data = result.data
    metric = data["dataset"]["metric"].replace("_", " ")
    table = Table(title=f"NetCut: {data['trained']} of {data['candidates_total']} candidates retrained in "
                        f"{data['exploration_s']:.1f} s")
    for column in ("deadline", "chosen", "cut", f"test {metric}", "measured p50", "estimated", "best off-the-shelf",
                   "gain"):
        table.add_column(column, justify="left" if column in ("chosen", "cut", "best off-the-shelf") else "right")
    for d in result.deadlines:
        c, b = d["chosen"], d["best_off_the_shelf"]
        if c is None:
            table.add_row(f"{d['deadline_ms']:g} ms", "[red]none[/red]", d.get("reason", ""), "", "",
                          f"fastest {d.get('fastest_ms', 0):.2f} ms", "", "")
            continue
        gain = f"{100 * (c['score'] - b['score']) / b['score']:+.1f}%" if b else "–"
        measured = "–" if c["latency_ms"] is None else f"{c['latency_ms']:.2f} ms"
        table.add_row(f"{d['deadline_ms']:g} ms", c["model"], c["cut"] + (" (full)" if c["is_full"] else ""),
                      f"{c['score']:.4f}", measured, f"{c['estimated_ms']:.2f} ms",
                      f"{b['model']} {b['score']:.4f}" if b else "none meets it", gain)
    console.print(table)
    front = Table(title="Pareto frontier of the retrained candidates")
    for column in ("model", "cut", "estimated p50", f"test {metric}"):
        front.add_column(column)
    for p in data["frontier"]:
        front.add_row(p["model"] + (" (off-the-shelf)" if p["is_full"] else ""), p["cut"],
                      f"{p['estimated_ms']:.2f} ms", f"{p['score']:.4f}")
    console.print(front)


def cmd_explore(args: argparse.Namespace) -> int:
    """Run a NetCut exploration."""
    from pathlib import Path

    from netcut.progress import Reporter
    from netcut.search.explore import Explorer

    config = explore_config(args)
    reporter = Reporter(quiet=args.quiet or args.json)
    result = Explorer(config, reporter).run()
    if not args.no_report:
        from netcut.report.build import write_report

        paths = write_report(result.data, Path(config.run_dir) / "report")
        reporter.note(f"report: {paths['markdown']} (and .html, frontier.png)")
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print_result(result, _console())
    if result.infeasible:
        for d in result.deadlines:
            if d["chosen"] is None:
                sys.stderr.write(f"netcut: no candidate meets {d['deadline_ms']:g} ms at {d['percentile']}: "
                                 f"{d.get('reason')}; the fastest is {d.get('fastest')} at "
                                 f"{d.get('fastest_ms', 0):.2f} ms\n  fix: loosen the deadline, add smaller "
                                 "models, or use --granularity layer\n")
        return errors.EXIT_INFEASIBLE
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report of a run."""
    from pathlib import Path

    from netcut.export.onnx_export import load_result
    from netcut.report.build import write_report

    run_dir = Path(args.run_dir)
    paths = write_report(load_result(run_dir), Path(args.out) if args.out else run_dir / "report")
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the chosen network."""
    from netcut.export.onnx_export import export

    manifest = export(args.run_dir, args.out, args.format, args.deadline)
    print(f"exported {manifest['backbone']} cut at {manifest['cut']} ({args.format}) to {args.out}; "
          f"manifest {args.out}.json; max |export - pytorch| = {manifest['parity_max_abs_diff']:.2e}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the NetCut demo."""
    from netcut.demo import run_demo

    return run_demo(args.run_dir, _console(), quick=args.quick)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `netcut` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return errors.EXIT_USAGE
    try:
        return int(args.handler(args) or 0)
    except errors.NetcutError as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"netcut: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("netcut: interrupted; finished work is saved, run the same command again to resume\n")
        return errors.EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug: say so briefly, with how to get details
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"netcut: internal error: {type(exc).__name__}: {str(exc)[:300]}\n"
                         "  fix: rerun with --debug for the traceback and report it\n")
        return errors.EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

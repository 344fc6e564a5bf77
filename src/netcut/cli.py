"""netcut command line: parse, call the API, print. Errors become one paragraph and an exit code."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from netcut import errors
from netcut._version import __version__
from netcut.export.formats import FORMATS
from netcut.latency.backends import DEFAULT_BACKEND, PRECISIONS
from netcut.latency.estimators import available_estimators
from netcut.results import STRATEGIES
from netcut.types import GRANULARITIES, PERCENTILES, TOKEN_READOUTS, TRAIN_DEVICES

if TYPE_CHECKING:
    from netcut.latency.harness import HarnessConfig
    from netcut.latency.table import LatencyTable
    from netcut.ray_cluster import RayCluster
    from netcut.search.config import ExploreConfig

EPILOG = """examples:
  netcut models
  netcut cuts efficientnet_lite0
  netcut cuts torchvision:resnet18 --granularity layer --input-size 160 --json
  netcut profile efficientnet_lite0 --backend onnxruntime --measure-all --out lite0.json
  netcut explore --models efficientnet_lite0,efficientnet_lite1 --data fashion-mnist --deadline 8,12
  netcut explore --models efficientnet_lite0 --data digits --deadline 2 --backend litert --precision fp32,int8
  netcut report runs/latest && netcut export runs/latest --format onnx --out winner.onnx

exit codes: 0 ok, 1 internal error (a bug), 2 bad input, 3 no candidate meets the deadline, 130 interrupted"""


def _whole_at_least_one(what: str = "", note: str = "") -> Callable[[str], int]:
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


def _duration(text: str) -> float:
    """'10m', '900s', '1.5h' or plain seconds -> seconds."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    number, unit = (text[:-1], units[text[-1]]) if text and text[-1] in units else (text, 1.0)
    try:
        value = float(number) * unit
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration like 10m, 900s or 1h, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"the budget must be a positive duration, got {text!r}")
    return value


def _blocks(text: str) -> int:
    """'all' -> -1; a whole number of blocks ≥ 0."""
    if text == "all":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected all or a number of blocks, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"fine-tune-blocks must be all or ≥ 0, got {value}")
    return value
_threads = _whole_at_least_one("threads", " (default: all cores)")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="built-in name, torchvision:NAME, timm:NAME or py:FILE.py:NAME")
    p.add_argument("--weights", default=None,
                   help="DEFAULT (download), none (random) or a state_dict PATH; built-ins default to their "
                        "packaged ImageNet weights, others to none")
    p.add_argument("--input-size", type=_positive_int, default=None, help="square input side in px (default: native)")
    _add_granularity(p)


def _add_granularity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--granularity", choices=GRANULARITIES, default="block",
                   help="block: ends of blocks/stages (default); layer: every legal point")


def _add_latency_args(p: argparse.ArgumentParser, several: bool = False) -> None:
    what = "backends, comma-separated" if several else "backend"
    p.add_argument("--backend", default=DEFAULT_BACKEND,
                   help=f"runtime {what}: onnxruntime (default), litert (TFLite), openvino, or torch (eager, for "
                        "debugging: no deployment runtime resembles it)")
    if several:
        p.add_argument("--precision", default="fp32", help="fp32 (default), int8, or fp32,int8: int8 is static "
                       "post-training quantization calibrated on your training images, its accuracy measured in "
                       "the runtime")
    else:
        p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                       help="fp32 (default) or int8 (calibrated on synthetic images: latency alone)")
    p.add_argument("--threads", type=_threads, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    p.add_argument("--repeats", type=_positive_int, default=30, help="timed rounds (default 30)")
    p.add_argument("--warmup", type=int, default=5, help="discarded warm-up rounds (default 5)")
    p.add_argument("--timing-tolerance", type=float, default=10.0, metavar="PCT",
                   help="a timing session during which the reference network's speed moved more than this (spread, "
                        "drift, or level against earlier sessions) is repeated, up to twice (default 10)")


def _add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", action="append", default=None,
                   help="measure latency on a target device: its `netcut-agent serve` URL, e.g. "
                        "http://127.0.0.1:8765, or ray:NAME, a Ray cluster's node started with the resource "
                        "device:NAME (needs --executor ray --ray-address); default: this machine. Repeat it for "
                        "several devices, timed side by side where they are on different hosts (explore: "
                        "a network must meet the deadline on each)")
    p.add_argument("--device-token-file", default=None, help="file holding the agent's token (default: "
                   "$NETCUT_DEVICE_TOKEN)")


def _add_executor_args(p: argparse.ArgumentParser, executor_help: str) -> None:
    p.add_argument("--executor", choices=("local", "ray"), default="local", help=executor_help)
    p.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster to join, e.g. 127.0.0.1:6379 or auto (default with --executor ray: start "
                        "a Ray instance on this machine for the run)")


def _add_estimator(p: argparse.ArgumentParser) -> None:
    p.add_argument("--estimator", choices=available_estimators(), default="empirical",
                   help="empirical: profile once, derive all (default); analytical: fitted model, runs nothing; "
                        "measured: time every TRN")


def _add_output_args(p: argparse.ArgumentParser, json_help: str, out_help: str | None = None,
                     quiet: bool = True) -> None:
    """The --json / --out / --quiet group shared by the commands that print results."""
    if out_help is not None:
        p.add_argument("--out", default=None, help=out_help)
    p.add_argument("--json", action="store_true", help=json_help)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bars")


def _names(text: str) -> tuple[str, ...]:
    """'a, b,a' -> ('a', 'b'): a comma-separated list, each once."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


def _harness(args: argparse.Namespace) -> HarnessConfig:
    from netcut.latency.harness import HarnessConfig

    return HarnessConfig(batch=args.batch, warmup=args.warmup, repeats=args.repeats, threads=args.threads,
                          timing_tolerance_pct=args.timing_tolerance).validate()


class _Parser(argparse.ArgumentParser):
    """argparse that exits with our documented usage code and a fix hint."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"netcut: error: {message}\n  fix: see `{self.prog} --help`\n")
        sys.exit(errors.EXIT_USAGE)


def _command(sub: argparse._SubParsersAction, name: str, help: str, epilog: str,
             handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, epilog=epilog,
                                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(handler=handler)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render --help in docs)."""
    parser = _Parser(prog="netcut", description="Cut pretrained CNNs into trimmed networks (TRNs) and find the most "
                     "accurate one that meets a latency deadline on your device.", epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"netcut {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = _command(sub, "models", "list the built-in backbones", "example:\n  netcut models --json", cmd_models)
    _add_output_args(p, "print JSON", quiet=False)

    p = _command(sub, "cuts", "list the legal cut points of a backbone",
                 "examples:\n  netcut cuts efficientnet_lite0\n"
                 "  netcut cuts torchvision:mobilenet_v2 --granularity layer --json", cmd_cuts)
    _add_model_args(p)
    _add_output_args(p, "print a JSON list (name, shape [C,H,W], params, macs)", quiet=False)

    p = _command(sub, "profile", "estimate (and measure) every TRN's latency; write a portable table",
                 "examples:\n  netcut profile efficientnet_lite0\n"
                 "  netcut profile efficientnet_lite0 --backend onnxruntime --measure-all --out lite0.json\n"
                 "  netcut profile torchvision:resnet18 --estimator analytical --threads 1 --json\n"
                 "  netcut profile torchvision:mobilenet_v2 --layers   (where the time and memory go)\n"
                 "Run it on the target device; pass the table to `netcut explore --latency-table` anywhere.",
                 cmd_profile)
    _add_model_args(p)
    _add_latency_args(p)
    _add_device_args(p)
    _add_executor_args(p, "local (default) or ray: join the Ray cluster of --ray-address to time on its devices "
                       "(--device ray:NAME)")
    _add_estimator(p)
    p.add_argument("--measure-all", action="store_true",
                   help="also measure every TRN and report each estimator's error (MAPE, share within ±10%%)")
    p.add_argument("--layers", action="store_true",
                   help="also show where the time goes: each block's share of the latency, its work, and peak "
                   "memory along the depth (with --json: a `layers` list beside the table)")
    p.add_argument("--analytical-model", default=None, help="fitted analytical model JSON (default: per-device cache)")
    p.add_argument("--bundle", default=None, help="measure nothing here: write every TRN and a plan to this file for "
                   "`netcut-agent run FILE --out T.json` on a device without a network path")
    _add_output_args(p, "print the table as JSON", "write the latency table (JSON) here")

    p = _command(sub, "calibrate", "calibrate the analytical latency model on this device: time sampled kernels "
                 "of every kind, fit one regressor per kind", "example:\n  netcut calibrate --backend onnxruntime "
                 "--threads 2", cmd_calibrate)
    _add_latency_args(p)
    p.add_argument("--quick", action="store_true", help="a sixteenth of the kernels and synthetic networks (about "
                   "1-2 min on a 2-core x86 machine against 5-15 for the full calibration; far less accurate: for "
                   "trying it out)")
    _add_output_args(p, "print the fit as JSON", "where to save the calibration (default: per-device cache)")

    p = _command(sub, "explore", "find the most accurate network that meets each deadline (NetCut)",
                 "examples:\n"
                 "  netcut explore --models efficientnet_lite0,efficientnet_lite1,efficientnet_lite2 \\\n"
                 "      --data fashion-mnist --deadline 12\n"
                 "  netcut explore --models efficientnet_lite0 --data photos/ --deadline 8,12,20 --percentile p90\n"
                 "  netcut explore --models efficientnet_lite0 --data labels.csv --deadline 10 "
                 "--latency-table lite0-on-device.json --json\n"
                 "exit codes: 0 ok, 2 bad input, 3 a deadline no candidate can meet", cmd_explore)
    p.add_argument("--models", required=True, help="comma-separated backbones (built-in, torchvision:, timm:, py:)")
    p.add_argument("--data", required=True, help="fashion-mnist, digits, a class-per-folder directory, or a "
                   "soft-label CSV (path,p_1,...,p_k)")
    p.add_argument("--deadline", required=True, help="latency bound(s) in ms, e.g. 12 or 8,12,20")
    p.add_argument("--percentile", choices=PERCENTILES, default="p50", help="meet the deadline at p50 (default), "
                   "p90 or p99")
    p.add_argument("--margin", type=float, default=0.05, help="safety margin on estimates (default 0.05 = 5%%)")
    _add_estimator(p)
    p.add_argument("--latency-table", action="append", default=[], help="a table from `netcut profile` (measured "
                   "on the target); repeat for several models")
    p.add_argument("--strategy", choices=STRATEGIES, default="netcut",
                   help="netcut (retrain proposals only, default) or exhaustive")
    _add_granularity(p)
    p.add_argument("--budget", type=_duration, default=None,
                   help="wall time for fine-tuning the promising candidates of every deadline, e.g. 10m, 900s, 1h "
                        "(successive halving over epochs; without it, heads are trained on the frozen trunk only)")
    p.add_argument("--fine-tune-blocks", type=_blocks, default=None,
                   help="which layers fine-tuning trains: all (default once there is a budget) or the last K blocks")
    p.add_argument("--fine-tune-epochs", type=_positive_int, default=None,
                   help="the most epochs a candidate is fine-tuned (default 8, more on a few hundred images so that "
                        "the schedule takes at least 400 optimizer steps)")
    p.add_argument("--distill", type=float, default=0.0, metavar="WEIGHT",
                   help="fine-tune with soft targets from the most accurate full network (fine-tuned once first), "
                        "at this weight beside the labels, e.g. 0.5 (default 0: labels only)")
    p.add_argument("--fine-tune-top", type=_positive_int, default=4,
                   help="per deadline, how many of the best probes start successive halving (default 4)")
    p.add_argument("--train-device", choices=TRAIN_DEVICES, default="cpu",
                   help="where features are extracted and networks fine-tuned: cpu (default), cuda, or auto; "
                        "latency is measured on the backend regardless")
    _add_executor_args(p, "where feature extraction, head training and fine-tuning run: local (this process, "
                       "default) or ray (as Ray tasks; the same result; needs netcut[ray])")
    p.add_argument("--train-threads", type=_positive_int, default=None, metavar="N",
                   help="torch threads of feature extraction, head training and fine-tuning, in every job wherever it "
                        "runs (default: this machine's cores); runs with the same N give bitwise the same results")
    p.add_argument("--top-k", type=_positive_int, default=3, help="deepest feasible cuts proposed per backbone")
    p.add_argument("--input-size", type=_positive_int, default=None, help="input side in px (default: native)")
    p.add_argument("--limit-train", type=_positive_int, default=None, help="use at most N training images")
    p.add_argument("--limit-test", type=_positive_int, default=None, help="use at most N test images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--run-dir", default="runs/latest", help="where the store, caches and report go "
                   "(default runs/latest); rerunning reuses finished work")
    p.add_argument("--weights", default=None, help="weights for torchvision:/timm: models (DEFAULT|none|PATH)")
    p.add_argument("--token-readout", choices=TOKEN_READOUTS, default="auto",
                   help="how heads read a transformer's tokens: auto (default: as the backbone's own head, the class "
                        "token or the token mean), class, or mean")
    p.add_argument("--head-hidden", type=_positive_int, default=None, help="hidden units in the head (default: "
                   "linear head)")
    p.add_argument("--head", default="linear", help="linear (default: the pooled features of the cut), multi "
                   "(Head2Toe: pooled features of every cut up to it, the best --head-features of them), or "
                   "linear,multi to let both compete")
    p.add_argument("--head-features", type=_positive_int, default=512,
                   help="how many pooled features a multi head keeps (default 512)")
    p.add_argument("--epochs", type=_positive_int, default=30, help="max head-training epochs (early stopping)")
    p.add_argument("--no-verify", action="store_true", help="skip measuring the winner's latency")
    p.add_argument("--no-report", action="store_true", help="do not write the report")
    p.add_argument("--max-model-mb", type=float, default=None, help="also drop candidates whose model file (in "
                   "the backend's format and precision) exceeds this many MB")
    p.add_argument("--max-ram-mb", type=float, default=None, help="also drop candidates whose peak memory where "
                   "they run (estimated, then measured for the winner; with several devices, on each) exceeds this "
                   "many MB (10^6 bytes)")
    p.add_argument("--calibration-images", type=_positive_int, default=128,
                   help="training images that calibrate int8 (default 128, at least 64)")
    _add_latency_args(p, several=True)
    _add_device_args(p)
    _add_output_args(p, "print the result as JSON (progress goes to stderr)")

    p = _command(sub, "report", "write a run's report: an interactive page (report.html, self-contained: move the "
                 "deadline and see the choice), markdown and figures",
                 "examples:\n  netcut report runs/latest\n  netcut report runs/latest --open", cmd_report)
    p.add_argument("run_dir", help="a run directory written by `netcut explore`")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/report)")
    p.add_argument("--open", action="store_true", help="open report.html in the default browser")

    p = _command(sub, "export", "export the chosen network in its runtime's format, checked there, with a manifest",
                 "examples:\n  netcut export runs/latest --out winner.onnx\n"
                 "  netcut export runs/latest --deadline 12 --format tflite --out winner.tflite\n"
                 "  netcut export runs/latest --format openvino --out winner.xml   (weights: winner.bin)", cmd_export)
    p.add_argument("run_dir")
    p.add_argument("--deadline", type=float, default=None, help="which deadline's winner (default: the loosest met)")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="onnx, tflite, openvino (IR) or torchscript (default: the format of the backend measured)")
    p.add_argument("--out", required=True, help="model file to write; the manifest goes to OUT.json")
    p.add_argument("--threads", type=_threads, default=None, help="threads for the runtime check (default: the "
                   "exploration's)")

    p = _command(sub, "demo", "run the NetCut demo (what `make demo` runs)",
                 "example:\n  netcut demo --run-dir runs/demo", cmd_demo)
    p.add_argument("--run-dir", default="runs/demo")
    p.add_argument("--quick", action="store_true", help="a smaller, faster demo")
    return parser


def cmd_models(args: argparse.Namespace) -> int:
    """List the built-in backbones."""
    from netcut.backbones import BUILTINS

    rows = [{"name": n, "input_size": s.input_size, "description": s.description,
             "weights": "imagenet (offline, " + s.package.replace("_", "-") + ")"} for n, s in BUILTINS.items()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from netcut.report.console import console, print_models

    print_models(console(), rows)
    return 0


def cmd_cuts(args: argparse.Namespace) -> int:
    """List the legal cut points of a backbone."""
    from netcut.backbones import load_backbone
    from netcut.graph import find_cuts, trace

    traced = trace(load_backbone(args.model, args.weights), args.input_size)
    cuts = find_cuts(traced, args.granularity)
    if args.json:
        from netcut.codec import encode

        print(json.dumps([encode(c) for c in cuts], indent=2))
        return 0
    from netcut.report.console import console, print_cuts

    print_cuts(console(), traced.backbone.name, traced.input_size, args.granularity, cuts)
    return 0


def _profile_devices(args: argparse.Namespace, harness: HarnessConfig, specs: list[str | None],
                     cluster: RayCluster | None) -> list[tuple[LatencyTable, Path | None, bool]]:
    """Profile the model on each device (this machine for None; `ray:NAME` on the joined cluster); devices on
    different hosts side by side."""
    from netcut.backbones import load_backbone
    from netcut.graph import trace
    from netcut.latency.estimators.analytical import model_path
    from netcut.latency.harness import environment
    from netcut.latency.hosts import side_by_side
    from netcut.latency.profile import checked, profile
    from netcut.latency.remote import connect_device
    from netcut.latency.settings import ProfileSettings
    from netcut.latency.workers import WorkerPool
    from netcut.progress import Reporter

    reporter = Reporter(quiet=args.quiet or args.json)
    with ExitStack() as stack:  # every device answers (and is closed at the end), or nothing is profiled
        pools = [stack.enter_context(WorkerPool(connect_device(s, args.device_token_file, reporter, cluster)
                                                if s else None)) for s in specs]
        traced = trace(load_backbone(args.model, args.weights), args.input_size)
        if args.precision != "fp32":
            reporter.note("int8 is calibrated on synthetic images here (latency alone); `netcut explore` "
                          "calibrates on your training images")

        def on(pool: WorkerPool) -> tuple[LatencyTable, Path | None, bool]:
            device = pool.device
            info = device.machine() if device else None
            threads = harness.threads if harness.threads is not None or info is None else int(info.get("cores") or 1)
            settings = checked(ProfileSettings(args.backend, args.precision, args.estimator, args.granularity,
                                               harness=replace(harness, threads=threads),
                                               analytical_model=args.analytical_model))
            env = environment(args.backend, settings.harness.resolved_threads(), machine_info=info)
            fitted = bool(args.analytical_model) or model_path(args.backend, env, args.precision).is_file()
            compare = (("empirical", "analytical") if fitted else ("empirical",)) if args.measure_all else ()
            if device is not None:
                reporter.note(f"profiling on device {device.name}")
            table = profile(traced, settings, args.measure_all, reporter, compare, pool)
            out_path = None
            if args.out:
                out_path = Path(args.out)
                if len(pools) > 1 and device is not None:
                    out_path = out_path.with_name(f"{out_path.stem}@{device.name.replace(':', '_')}"
                                                  f"{out_path.suffix}")
                table.save(out_path)
            return table, out_path, fitted

        done = dict(side_by_side(on, pools, lambda p: p.device.host if p.device else "local"))
        return [done[p] for p in pools]


def cmd_profile(args: argparse.Namespace) -> int:
    """Estimate every TRN's latency and write a portable table."""
    from netcut.ray_cluster import RayCluster
    from netcut.search.executors import check_executor_args

    harness = _harness(args)
    if args.bundle:
        return _write_bundle(args, harness)
    specs: list[str | None] = list(args.device) if args.device else [None]
    if len(specs) > 1 and not args.out:
        raise errors.NetcutError("several --device values need --out (one table per device is written)",
                                 "pass --out TABLE.json: each device's table goes to TABLE@HOST_PORT.json")
    if args.executor == "ray" and not any(s and s.startswith("ray:") for s in specs):
        raise errors.NetcutError("profile --executor ray times on the devices of a Ray cluster, and none is given",
                                 "add --device ray:NAME (a node started with --resources='{\"device:NAME\": 1}'), "
                                 "or drop --executor ray to profile this machine")
    check_executor_args(args.executor, args.ray_address)
    cluster = RayCluster(args.ray_address) if args.executor == "ray" else None
    try:
        tables = _profile_devices(args, harness, specs, cluster)
    finally:
        if cluster is not None:
            cluster.close()
    if args.json:
        from netcut.latency.table import along_depth

        payload = [{**t.to_json(), **({"layers": [r.to_json() for r in along_depth(t)]} if args.layers else {})}
                   for t, _, _ in tables]
        print(json.dumps(payload[0] if len(payload) == 1 else payload, indent=2))
        return 0
    from netcut.report.console import console, print_layers, print_profile

    out = console()
    for table, out_path, fitted in tables:
        if len(tables) > 1:
            out.print(f"device {table.environment.get('device')}:")
        print_profile(out, table, args.measure_all, fitted)
        if args.layers:
            print_layers(out, table)
        if out_path is not None:
            out.print(f"latency table written to {out_path}")
    return 0


def _write_bundle(args: argparse.Namespace, harness: HarnessConfig) -> int:
    """`profile --bundle`: the TRNs and the plan for an offline device."""
    from netcut.backbones import load_backbone
    from netcut.graph import trace
    from netcut.latency.bundle import write_bundle
    from netcut.latency.profile import checked
    from netcut.latency.settings import ProfileSettings
    from netcut.progress import Reporter

    if args.device or args.measure_all:
        raise errors.NetcutError("--bundle measures nothing here: it cannot go with --device or --measure-all",
                                 "pass --bundle alone, then run the bundle on the device")
    settings = checked(ProfileSettings(args.backend, args.precision, "measured", args.granularity, harness=harness))
    traced = trace(load_backbone(args.model, args.weights), args.input_size)
    path = write_bundle(traced, settings, args.bundle, Reporter(quiet=args.quiet or args.json))
    size = path.stat().st_size / 1e6
    if args.json:
        print(json.dumps({"bundle": str(path), "size_mb": size, "model": traced.backbone.name}))
    else:
        print(f"bundle written to {path} ({size:.1f} MB); on the device: netcut-agent run {path.name} --out "
              f"{traced.backbone.name}-table.json, then: netcut explore ... --latency-table "
              f"{traced.backbone.name}-table.json")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit the analytical latency model for this device and backend."""

    from netcut.latency.estimators.analytical import DEFAULT_SCALE, QUICK_SCALE, calibrate, model_path
    from netcut.latency.harness import environment
    from netcut.latency.profile import checked, open_session
    from netcut.latency.settings import ProfileSettings
    from netcut.latency.workers import WorkerPool
    from netcut.progress import Reporter

    settings = checked(ProfileSettings(args.backend, args.precision, "analytical", harness=_harness(args)))
    env = environment(args.backend, settings.harness.resolved_threads())
    path = Path(args.out) if args.out else model_path(args.backend, env, args.precision)
    reporter = Reporter(args.quiet or args.json)
    with WorkerPool() as pool:
        model = calibrate(open_session(pool, settings, reporter=reporter), settings, reporter, path,
                          QUICK_SCALE if args.quick else DEFAULT_SCALE)
    if args.json:
        print(json.dumps({"path": str(path), "fit": model.fit, "overhead_ms": model.overhead_ms,
                          "backend": model.backend, "precision": model.precision, "threads": model.threads,
                          "environment": model.environment}, indent=2))
        return 0
    from netcut.report.console import console, print_calibration

    print_calibration(console(), model.fit, args.backend, env, str(path))
    return 0


def explore_config(args: argparse.Namespace) -> ExploreConfig:
    """ExploreConfig from parsed arguments."""
    from netcut.search.config import ExploreConfig
    from netcut.search.proposals import parse_deadlines

    models = _names(args.models)
    return ExploreConfig(
        models=models, data=args.data, deadlines=tuple(parse_deadlines(args.deadline)), percentile=args.percentile,
        margin=args.margin, estimator=args.estimator, latency_tables=tuple(args.latency_table),
        backends=_names(args.backend), precisions=_names(args.precision), max_model_mb=args.max_model_mb,
        max_ram_mb=args.max_ram_mb, calibration_images=args.calibration_images,
        strategy=args.strategy, granularity=args.granularity, fine_tune_blocks=args.fine_tune_blocks,
        fine_tune_epochs=args.fine_tune_epochs, fine_tune_top=args.fine_tune_top, budget_s=args.budget,
        distill=args.distill,
        train_device=args.train_device, train_threads=args.train_threads,
        top_k=args.top_k, input_size=args.input_size, limit_train=args.limit_train, limit_test=args.limit_test,
        seed=args.seed, run_dir=args.run_dir, threads=args.threads,
        timing_tolerance_pct=args.timing_tolerance, devices=tuple(args.device or ()),
        device_token_file=args.device_token_file, weights=args.weights, token_readout=args.token_readout,
        head_hidden=args.head_hidden, heads=_names(args.head), head_features=args.head_features, epochs=args.epochs,
        repeats=args.repeats, warmup=args.warmup, batch=args.batch,
        verify=not args.no_verify).validate()


def cmd_explore(args: argparse.Namespace) -> int:
    """Run a NetCut exploration."""

    from netcut.progress import Reporter
    from netcut.report.console import console, print_result
    from netcut.report.view import explore_json
    from netcut.search.executors import create_executor
    from netcut.search.explore import Explorer

    config = explore_config(args)
    reporter = Reporter(quiet=args.quiet or args.json)
    executor = create_executor(args.executor, args.ray_address)
    try:
        result = Explorer(config, reporter, executor=executor).run()
    finally:
        executor.close()
    if not args.no_report:
        from netcut.report import write_report

        paths = write_report(result, Path(config.run_dir) / "report", Path(config.run_dir))
        reporter.note(f"report: {paths['markdown']} (and .html, frontier.png, depth.png)")
    if args.json:
        print(json.dumps(explore_json(result), indent=2))
    else:
        print_result(console(), result)
    for d in result.decisions:
        if d.chosen is None:
            fastest = next((c.label for c in result.candidates if c.id == d.fastest), "?")
            sys.stderr.write(f"netcut: no candidate meets {d.deadline.ms:g} ms at {d.deadline.percentile}: "
                             f"{d.reason}; the fastest is {fastest} at {d.fastest_ms or 0:.2f} ms\n"
                             "  fix: loosen the deadline, add smaller models, or use --granularity layer\n")
    return errors.EXIT_INFEASIBLE if result.infeasible else 0


def cmd_report(args: argparse.Namespace) -> int:
    """Write the report of a run."""

    from netcut.report import write_report
    from netcut.store import load_result

    run_dir = Path(args.run_dir)
    paths = write_report(load_result(run_dir), Path(args.out) if args.out else run_dir / "report", run_dir)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if args.open:
        import webbrowser

        if not webbrowser.open(paths["html"].resolve().as_uri()):
            sys.stderr.write(f"netcut: no browser could be started here; open {paths['html']} in one\n")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export the chosen network."""
    from netcut.export.exporter import export

    manifest = export(args.run_dir, args.out, args.format, args.deadline, threads=args.threads)
    agreement = manifest["agreement_with_pytorch_fp32"]
    accuracy = manifest["accuracy_in_runtime"]
    print(f"exported {manifest['backbone']} cut at {manifest['cut']} ({manifest['format']}, {manifest['precision']}, "
          f"{manifest['size_bytes'] / 1e6:.2f} MB) to {args.out}; manifest {args.out}.json\n"
          f"checked in {manifest['runtime']} on {accuracy['test_images']} test images: score {accuracy['score']:.4f}, "
          f"top-1 agreement with PyTorch fp32 {agreement['top1_agreement']:.4f} (max |diff| "
          f"{agreement['max_abs_diff']:.2e}), p50 {manifest['latency']['measured_in_runtime']['p50']:.2f} ms")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the NetCut demo."""
    from netcut.demo import run_demo
    from netcut.report.console import console

    return run_demo(args.run_dir, console(), quick=args.quick)


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

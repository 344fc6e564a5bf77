"""`netcut-agent measure`: time model files on this device, without PyTorch, with netcut's timing rules.

Exit codes: 0 ok, 2 bad input (a missing or malformed model file, a runtime not installed, impossible settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from netcut_agent import __version__
from netcut_agent.bench import Bench
from netcut_agent.runtimes import RUNTIMES, ModelError, RuntimeMissing, get_runtime
from netcut_agent.server import IDLE_TIMEOUT_S, MAX_CONNECTIONS
from netcut_agent.timing import TimingConfig, machine

RUNTIME_OF_SUFFIX = {".onnx": "onnxruntime", ".tflite": "litert", ".xml": "openvino"}


class UsageError(Exception):
    """Bad input: the message names the problem and the fix."""


def read_model(path: Path) -> bytes:
    """A model file's bytes; an OpenVINO IR (.xml) travels with its .bin as one payload."""
    if not path.is_file():
        raise UsageError(f"model file {str(path)!r} does not exist\nfix: pass the path of an .onnx, .tflite or "
                         ".xml (OpenVINO IR) file")
    if path.suffix == ".xml":
        from netcut_agent.runtimes.openvino import pack_ir

        weights = path.with_suffix(".bin")
        if not weights.is_file():
            raise UsageError(f"OpenVINO IR {str(path)!r} has no {weights.name} beside it\nfix: keep the .xml and "
                             ".bin files together")
        return pack_ir(path.read_bytes(), weights.read_bytes())
    return path.read_bytes()


def parse_shape(text: str) -> tuple[int, ...]:
    """'1,3,96,96' -> (1, 3, 96, 96)."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise UsageError(f"input shape {text!r} is not a list of positive integers\nfix: pass e.g. --input-shape "
                         "1,3,96,96 (NCHW, as netcut exports)")
    return shape


def runtime_for(paths: list[Path], requested: str | None) -> str:
    """The runtime named, or the one every file's suffix implies."""
    if requested:
        return requested
    names = {RUNTIME_OF_SUFFIX.get(p.suffix) for p in paths}
    if None in names or len(names) != 1:
        raise UsageError("cannot tell the runtime from the file names\nfix: pass --runtime "
                         f"{'|'.join(RUNTIMES)} (one runtime per job)")
    return str(names.pop())


def measure(paths: list[Path], runtime_name: str | None, shape: tuple[int, ...] | None, threads: int,
            config: TimingConfig) -> dict[str, Any]:
    """Load every model in one runtime and time them interleaved; the result with the device's environment."""
    name = runtime_for(paths, runtime_name)
    try:
        runtime = get_runtime(name, threads)
    except (KeyError, RuntimeMissing) as exc:
        raise UsageError(f"{exc}\nfix: pip install 'netcut-agent[{name}]', or choose another --runtime") from exc
    bench = Bench(runtime, name, threads)
    labels = []
    payloads: dict[str, bytes] = {}
    for path in paths:
        label, payload = str(path), read_model(path)
        payloads[label] = payload
        try:
            bench.load(label, payload, shape)
            bench.run(label, bench.models[label][1])  # a wrong input shape fails here, not mid-timing
        except ModelError as exc:
            raise UsageError(f"{path}: {exc}\nfix: pass a model file this runtime can load (and --input-shape if "
                             "its input shape is not fixed)") from exc
        except Exception as exc:  # noqa: BLE001 - a runtime's own error on a model it loaded: bad input, not a bug
            raise UsageError(f"{path} does not run with input {list(bench.models[label][1].shape)}: "
                             f"{type(exc).__name__}: "
                             f"{str(exc).splitlines()[0] if str(exc) else ''}\nfix: pass the model's --input-shape"
                             ) from exc
        labels.append(label)
    result = bench.time(labels, config)
    memory = {label: bench.memory(payloads[label], bench.models[label][1].shape).to_json()
              for label in labels}
    env = {**machine(), "threads": threads, "runtime": name, **runtime.versions(), "agent": __version__}
    return {"models": {k: {**v.to_json(), "memory": memory[k]} for k, v in result.stats.items()},
            "environment": env,
            "timing": {"warmup": config.warmup, "repeats": config.repeats, "interleaved": True}}


def read_token(path: Path) -> str:
    """The token in a file (its first line)."""
    try:
        lines = path.read_text().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the token file {str(path)!r}: {exc}\nfix: pass a readable text file "
                         "holding the token, or leave --token-file out to generate one") from exc
    token = lines[0].strip() if lines else ""
    if len(token) < 16:
        raise UsageError(f"the token in {str(path)!r} is shorter than 16 characters\nfix: put a long random token "
                         "there, e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))'")
    return token


def serve(args: argparse.Namespace) -> int:
    """Run the HTTP agent until interrupted."""
    from netcut_agent.server import create_server

    try:
        if args.threads < 1 or args.max_body_mb <= 0 or args.idle_timeout <= 0 or args.max_connections < 1:
            raise UsageError("threads and max-connections must be ≥ 1, max-body-mb and idle-timeout positive\nfix: "
                             "pass e.g. --threads 1 --max-body-mb 256 --idle-timeout 60 --max-connections 16")
        token = read_token(args.token_file) if args.token_file else None
        server, agent = create_server(args.host, args.port, token, int(args.max_body_mb * 2**20), args.threads,
                                      args.allow_remote, args.idle_timeout, args.max_connections)
    except ValueError as exc:
        print(f"error: {exc}\nfix: bind to 127.0.0.1 and reach it through an SSH tunnel, or pass --allow-remote",
              file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}\nfix: choose another --port",
              file=sys.stderr)
        return 2
    host, port = str(server.server_address[0]), server.server_address[1]
    print(f"netcut-agent {__version__} serving on http://{host}:{port} (device: {machine()['cpu']})", flush=True)
    if not args.token_file:
        print(f"token: {agent.token}", flush=True)
    found = agent.runtimes()
    print(f"runtimes: {', '.join(r.text() for r in found if r.available) or 'none'}", flush=True)
    for missing in (r for r in found if not r.available):
        print(f"not available: {missing.text()}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        agent.shutdown()
    return 0


def run(args: argparse.Namespace) -> int:
    """Measure a bundle offline and write its latency table."""
    from netcut_agent.bundle import BundleError, run_bundle, write_table

    if args.threads is not None and args.threads < 1:
        print(f"error: threads must be ≥ 1, got {args.threads}\nfix: pass --threads 1 or more", file=sys.stderr)
        return 2
    if not args.bundle.is_file():
        print(f"error: bundle {str(args.bundle)!r} does not exist\nfix: copy the .ncbundle written by `netcut "
              "profile MODEL --bundle FILE` here", file=sys.stderr)
        return 2
    try:
        table = run_bundle(args.bundle, args.threads)
        write_table(table, args.out)
    except BundleError as exc:
        print(f"error: {args.bundle} cannot be measured: {exc}\nfix: write the bundle again with `netcut profile "
              "MODEL --bundle FILE` (and install the runtime it names)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot write {str(args.out)!r}: {exc.strerror}\nfix: choose a writable --out",
              file=sys.stderr)
        return 2
    print(f"{table['model']} @ {table['input_size']}px, {table['backend']} {table['precision']}, "
          f"{len(table['cuts'])} TRNs measured in {table['cost_s']['total']:.1f} s: table written to {args.out}")
    return 0


def device(as_json: bool) -> int:
    """Print the device's identity and the runtimes that start here (exit 0 when at least one does)."""
    from netcut_agent.available import probe_runtimes

    env, found = machine(), probe_runtimes()
    if as_json:
        print(json.dumps({"device": env["cpu"], "environment": env, "runtimes": [r.to_json() for r in found]},
                         indent=2))
    else:
        print(f"device: {env['cpu']} ({env['machine']}, {env['cores']} cores, Python {env['python']})")
        for status in found:
            print(f"  {'ok     ' if status.available else 'missing'}  {status.text()}")
    return 0 if any(r.available for r in found) else 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of `netcut-agent`."""
    parser = argparse.ArgumentParser(prog="netcut-agent", description=__doc__.splitlines()[0],
                                     epilog="example: netcut-agent measure winner.tflite trn.tflite --input-shape "
                                            "1,3,96,96 --threads 4 --json\nexit codes: 0 ok, 2 bad input",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"netcut-agent {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    m = commands.add_parser("measure", help="time model files interleaved in one runtime")
    m.add_argument("models", nargs="+", type=Path, help=".onnx, .tflite or OpenVINO .xml (with its .bin)")
    m.add_argument("--input-shape", help="NCHW input shape, e.g. 1,3,96,96 (default: the model's own, if fixed)")
    m.add_argument("--runtime", choices=sorted(RUNTIMES), help="default: from the file suffix")
    m.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads (default: all cores)")
    m.add_argument("--repeats", type=int, default=30, help="timed rounds (default 30)")
    m.add_argument("--warmup", type=int, default=5, help="discarded warm-up rounds (default 5)")
    m.add_argument("--json", action="store_true", help="print JSON (p50/p90/p99/mean/std in ms and the environment)")
    v = commands.add_parser("serve", help="measure model files sent over HTTP (token required)",
                            epilog="routes: see README (GET /v1/health, POST /v1/measure, /v1/sessions...)")
    v.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    v.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    v.add_argument("--token-file", type=Path, help="read the token from this file (default: generate and print it)")
    v.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="default intra-op threads per job")
    v.add_argument("--max-body-mb", type=float, default=256.0, help="largest model file accepted (default 256)")
    v.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT_S,
                   help=f"close a connection that sends nothing for this many seconds (default {IDLE_TIMEOUT_S:g})")
    v.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                   help=f"connections served at once; more are answered 503 (default {MAX_CONNECTIONS})")
    v.add_argument("--allow-remote", action="store_true",
                   help="allow binding to a non-loopback address (put TLS in front: reverse proxy or SSH tunnel)")
    r = commands.add_parser("run", help="time every TRN of a bundle from `netcut profile --bundle` (offline)")
    r.add_argument("bundle", type=Path, help="the .ncbundle file")
    r.add_argument("--out", type=Path, required=True, help="where to write the latency table (JSON)")
    r.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the bundle's, else all cores)")
    d = commands.add_parser("device", help="what this device is and which runtimes start here (with versions)")
    d.add_argument("--json", action="store_true", help="print JSON: identity, environment, runtimes")
    args = parser.parse_args(argv)
    if args.command == "device":
        return device(args.json)
    if args.command == "serve":
        return serve(args)
    if args.command == "run":
        return run(args)
    try:
        if args.threads < 1:
            raise UsageError(f"threads must be ≥ 1, got {args.threads}\nfix: pass --threads 1 or more")
        try:
            config = TimingConfig(args.warmup, args.repeats).check()
        except ValueError as exc:
            raise UsageError(f"{exc}\nfix: pass --repeats 1 or more and --warmup 0 or more") from exc
        shape = parse_shape(args.input_shape) if args.input_shape else None
        report = measure(args.models, args.runtime, shape, args.threads, config)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        env = report["environment"]
        print(f"{env['runtime']} on {env['cpu']}, {env['threads']} threads, {config.repeats} interleaved rounds:")
        for name, s in report["models"].items():
            print(f"  {name}: p50 {s['p50']:.3f} ms, p90 {s['p90']:.3f} ms, p99 {s['p99']:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

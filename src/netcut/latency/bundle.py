"""Offline profiling for a device with no network path: a bundle of every TRN's model file and a plan.

`netcut profile MODEL --bundle B.ncbundle` writes it here; `netcut-agent run B.ncbundle --out T.json` times every TRN
on the device (no PyTorch there) and writes a latency table in netcut's own format, whose skeleton (model,
fingerprint, cuts, sizes) the bundle carries; `netcut explore --latency-table T.json` checks and uses it like any.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import tempfile
from pathlib import Path

from netcut._version import __version__
from netcut.errors import NetcutError
from netcut.graph import TracedNetwork, find_cuts
from netcut.latency.backends import check_precision, get_backend
from netcut.latency.estimators.measured import convert_trns
from netcut.latency.settings import ProfileSettings
from netcut.latency.table import CutLatency, LatencyTable
from netcut.progress import QUIET, Reporter
from netcut.types import Percentiles
from netcut_agent.bundle import BUNDLE_KIND, BUNDLE_VERSION, PLAN
from netcut_agent.runtimes import RUNTIMES

SUFFIX = {"onnx": ".onnx", "tflite": ".tflite"}


def write_bundle(traced: TracedNetwork, settings: ProfileSettings, path: str | Path,
                 reporter: Reporter = QUIET) -> Path:
    """Write every TRN of `traced` (in the settings' backend and precision) and the plan to time them."""
    backend = get_backend(settings.backend)
    check_precision(backend, settings.precision)
    if backend.runtime not in RUNTIMES:
        raise NetcutError(f"backend {backend.name} cannot run on a device agent",
                          f"bundle for --backend {', '.join(RUNTIMES)}")
    cuts = find_cuts(traced, settings.granularity)
    shape, payloads = convert_trns(traced, cuts, backend, settings.precision, settings.harness.batch,
                                   settings.num_classes, None, reporter)
    environment: dict[str, object] = {"bundle": f"written by netcut {__version__}"}
    if settings.precision != "fp32":
        environment["int8_calibration"] = "synthetic images (latency alone)"
    skeleton = LatencyTable(traced.backbone.name, traced.fingerprint(), traced.input_size, settings.granularity,
                            backend.name, settings.precision, "measured", settings.harness.batch,
                            settings.num_classes, environment,
                            [CutLatency(c.name, Percentiles(0.0, 0.0, 0.0), None, c.macs, c.params,
                                        len(payloads[c.name])) for c in cuts])
    suffix = SUFFIX.get(backend.format, f".{backend.format}")
    files = {c.name: f"models/{i:03d}{suffix}" for i, c in enumerate(cuts)}
    models = [{"cut": c.name, "file": files[c.name], "shape": list(shape)} for c in cuts]
    plan = {"kind": BUNDLE_KIND, "version": BUNDLE_VERSION, "runtime": backend.runtime, "format": backend.format,
            "threads": settings.harness.threads, "timing": {"warmup": settings.harness.warmup,
                                                            "repeats": settings.harness.repeats},
            "models": models, "table": skeleton.to_json()}
    return _write_tar(Path(path), plan, {files[c.name]: payloads[c.name] for c in cuts})


def _write_tar(path: Path, plan: dict, files: dict[str, bytes]) -> Path:
    """The bundle, written to a temporary file and renamed: never half a bundle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".bundle-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            for name, data in {PLAN: json.dumps(plan, indent=1).encode(), **files}.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise NetcutError(f"could not write the bundle {str(path)!r}: {exc.strerror}",
                          "choose a writable path with enough free space") from exc
    return path

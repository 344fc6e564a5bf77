"""Shared by the benchmarks: where results go and what machine produced them."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"  # the docs site's benchmark pages: the latest run of each, history in git


def machine() -> dict:
    """The facts a reader needs to judge a timing."""
    import torch

    from netcut_agent.timing import cpu_model

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M %Z"), "command": " ".join(sys.argv)}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    from importlib.metadata import PackageNotFoundError, version

    for package in ("onnxruntime", "openvino", "ai-edge-litert", "litert-torch"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def write(name: str, data: dict, markdown: str) -> None:
    """docs/benchmarks/<name>.json and .md."""
    DOCS.mkdir(exist_ok=True)
    (DOCS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    m = data["machine"]
    runtimes = ", ".join(f"{p} {m[p]}" for p in ("onnxruntime", "openvino", "ai-edge-litert", "litert-torch")
                         if p in m)
    gpu = f" and an {m['gpu']} GPU" if m.get("gpu") else ""
    header = (f"_Measured {m['date']} on {m['cpu']} ({m['cores']} cores){gpu}, torch {m['torch']}"
              f"{', ' + runtimes if runtimes else ''}. Reproduce: `{m['command']}`._\n\n")
    (DOCS / f"{name}.md").write_text(markdown.replace("{header}", header))
    print(f"wrote {DOCS / name}.json and .md")


def load_row_files(paths: list[str]) -> list[dict]:
    """The parts ({"machine", "args", "rows"}) of row files written by runs of one benchmark: a file holds one part,
    or a list of them (several runs of one machine gathered in one file)."""
    parts: list[dict] = []
    for path in paths:
        loaded = json.loads(Path(path).read_text())
        parts += loaded if isinstance(loaded, list) else [loaded]
    return parts

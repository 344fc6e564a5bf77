"""netcut: cut pretrained CNNs into trimmed networks and pick the most accurate one that meets a deadline.

Importing netcut is light: heavy modules (torch, onnxruntime, matplotlib) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from netcut._version import __version__

# public name -> module that defines it; resolved lazily so `import netcut` stays cheap
_EXPORTS = {
    "load_backbone": "netcut.backbones",
    "from_module": "netcut.backbones",
    "Backbone": "netcut.backbones",
    "trace": "netcut.graph",
    "find_cuts": "netcut.graph",
    "build_prefix": "netcut.graph",
    "trim": "netcut.model",
    "build_trn": "netcut.model",
    "TrimmedNetwork": "netcut.model",
    "HeadSpec": "netcut.model",
    "CutPoint": "netcut.types",
    "CandidateId": "netcut.types",
    "Percentiles": "netcut.types",
    "LatencyStats": "netcut.types",
    "NetcutError": "netcut.errors",
    "explore": "netcut.search.explore",
    "ExploreConfig": "netcut.search.config",
    "ExploreResult": "netcut.results",
    "export": "netcut.export.exporter",
    "profile": "netcut.latency.profile",
    "load_dataset": "netcut.data.datasets",
    "from_torch_dataset": "netcut.data.datasets",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'netcut' has no attribute {name!r}")

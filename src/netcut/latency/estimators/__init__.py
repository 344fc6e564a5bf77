"""Latency estimators behind a registry: measured (ground truth), empirical (profile once), analytical (a model).

Each estimator is a function `estimate(traced, cuts, session, settings, reporter, ground_truth) -> EstimatorRun`
in a module of its own, loaded lazily; `register_estimator` adds one without touching the core.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from netcut.errors import NetcutError
from netcut.types import CutPoint, LatencyStats, Percentiles
from netcut_agent.memory import MemoryRecord

if TYPE_CHECKING:  # the registry stays importable without torch (the CLI lists its names)
    from netcut.graph import TracedNetwork
    from netcut.latency.memory import RamEstimates
    from netcut.latency.session import RuntimeSession
    from netcut.latency.settings import ProfileSettings
    from netcut.progress import Reporter


@dataclass
class EstimatorRun:
    """What an estimator produced, and what it cost."""

    estimator: str
    estimates: dict[str, Percentiles]  # cut name -> estimated latency
    cost_s: float
    details: dict[str, Any] = field(default_factory=dict)
    measured: dict[str, LatencyStats] = field(default_factory=dict)  # ground truth timed side by side, if asked
    sizes: dict[str, int] = field(default_factory=dict)  # cut name -> the TRN's model file size in bytes
    anchors: tuple[str, ...] = ()  # cuts whose TRN this estimator measured itself: their estimates are measurements
    memory: dict[str, MemoryRecord] = field(default_factory=dict)  # cut name -> peak memory measured on the target
    ram: RamEstimates | None = None  # every cut's peak memory, measured or estimated (set by whoever asks for it)


class Estimator(Protocol):
    """Estimate every TRN's latency; with ground_truth, also measure them side by side where the method allows."""

    def __call__(self, traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession,
                 settings: ProfileSettings, reporter: Reporter, ground_truth: bool = False) -> EstimatorRun: ...


_REGISTRY: dict[str, str | Estimator] = {
    "empirical": "netcut.latency.estimators.empirical:estimate",
    "analytical": "netcut.latency.estimators.analytical:estimate",
    "measured": "netcut.latency.estimators.measured:estimate",
}


def register_estimator(name: str, target: str | Estimator) -> None:
    """Add an estimator: an import path 'module:function' or the function itself."""
    _REGISTRY[name] = target


def available_estimators() -> list[str]:
    """Names of the registered estimators, the built-in ones first."""
    return list(_REGISTRY)


def get_estimator(name: str) -> Estimator:
    """The estimator function registered under `name`."""
    target = _REGISTRY.get(name)
    if target is None:
        raise NetcutError(f"unknown estimator {name!r}", f"use one of: {', '.join(_REGISTRY)}")
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        function: Estimator = getattr(importlib.import_module(module_name), attr)
        return function
    return target


def run_estimator(traced: TracedNetwork, cuts: list[CutPoint], session: RuntimeSession, settings: ProfileSettings,
                  reporter: Reporter, estimator: str | None = None, ground_truth: bool = False) -> EstimatorRun:
    """Run one estimator (default: the settings' own) over the cuts, in the session's backend and precision."""
    return get_estimator(estimator or settings.estimator)(traced, cuts, session, settings, reporter, ground_truth)


def accuracy_metrics(estimated: Any, measured: Any) -> dict[str, Any]:
    """MAPE (%) and share of estimates within ±10% of measurement (nn-Meter's headline metric); None for both when
    nothing was estimated."""
    import numpy as np

    rel = np.abs(np.asarray(estimated, dtype=float) - np.asarray(measured, dtype=float)) / np.asarray(measured,
                                                                                                      dtype=float)
    if rel.size == 0:
        return {"mape_pct": None, "within10_pct": None, "n": 0}
    return {"mape_pct": float(100 * rel.mean()), "within10_pct": float(100 * (rel <= 0.10).mean()), "n": int(rel.size)}


def estimated_accuracy(run: EstimatorRun, names: list[str], measured: dict[str, float]) -> dict[str, Any]:
    """How well a run estimated the TRNs it did not measure itself (`n` of them); its anchors, measured to estimate
    the rest, are counted apart (`anchors`): their error is nil by construction and would flatter the figure."""
    estimated = [n for n in names if n not in run.anchors]
    return {**accuracy_metrics([run.estimates[n].p50 for n in estimated], [measured[n] for n in estimated]),
            "anchors": len(names) - len(estimated)}



"""Portable latency tables: per-cut latencies of one backbone on one device/backend, with environment and fingerprint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from netcut.errors import NetcutError
from netcut.fsutil import read_json, write_json

TABLE_KIND = "netcut-latency-table"
TABLE_VERSION = 1


@dataclass
class CutLatency:
    """One row: a TRN's estimated (and optionally measured) latency in ms."""

    name: str
    estimated_ms: float
    estimated_p90_ms: float
    estimated_p99_ms: float
    measured_ms: float | None = None
    measured_p90_ms: float | None = None
    measured_p99_ms: float | None = None
    macs: int = 0
    params: int = 0

    def latency(self, percentile: str = "p50", prefer_measured: bool = True) -> float:
        """The latency at a percentile: measured when available (and preferred), else estimated."""
        measured = {"p50": self.measured_ms, "p90": self.measured_p90_ms, "p99": self.measured_p99_ms}[percentile]
        if prefer_measured and measured is not None:
            return measured
        return {"p50": self.estimated_ms, "p90": self.estimated_p90_ms, "p99": self.estimated_p99_ms}[percentile]


@dataclass
class LatencyTable:
    """Everything needed to reuse latencies measured on a target device elsewhere."""

    model: str
    fingerprint: str  # architecture + input size, independent of weights
    input_size: int
    granularity: str
    backend: str
    estimator: str
    batch: int
    num_classes: int
    environment: dict
    cuts: list[CutLatency]
    cost_s: dict = field(default_factory=dict)
    accuracy: dict = field(default_factory=dict)  # estimator -> {mape_pct, within10_pct, n}

    def row(self, name: str) -> CutLatency:
        """The row of a cut."""
        for row in self.cuts:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict:
        """JSON form."""
        d = asdict(self)
        d = {"kind": TABLE_KIND, "version": TABLE_VERSION, **d}
        return d

    def save(self, path: str | Path) -> Path:
        """Write atomically."""
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read and validate a table file."""
        data = read_json(path, "latency table")
        if not isinstance(data, dict) or data.get("kind") != TABLE_KIND:
            raise NetcutError(f"{str(path)!r} is not a netcut latency table",
                              "pass a file written by `netcut profile ... --out`")
        if data.get("version") != TABLE_VERSION:
            raise NetcutError(f"latency table {str(path)!r} has version {data.get('version')}, this netcut reads "
                              f"version {TABLE_VERSION}", "re-profile with this netcut version")
        try:
            rows = [CutLatency(**row) for row in data["cuts"]]
            fields = {k: data[k] for k in ("model", "fingerprint", "input_size", "granularity", "backend", "estimator",
                                           "batch", "num_classes", "environment")}
        except (KeyError, TypeError) as exc:
            raise NetcutError(f"latency table {str(path)!r} is incomplete ({exc})", "regenerate it") from exc
        return cls(**fields, cuts=rows, cost_s=data.get("cost_s", {}), accuracy=data.get("accuracy", {}))

    def check_matches(self, fingerprint: str, model: str, backend: str | None = None, path: str = "") -> None:
        """Refuse a table made for another model, input size or backend."""
        where = f" {path!r}" if path else ""
        if fingerprint != self.fingerprint:
            raise NetcutError(
                f"latency table{where} was made for {self.model} at {self.input_size}px (fingerprint "
                f"{self.fingerprint}), not for {model} as configured here (fingerprint {fingerprint})",
                "profile this model with the same --input-size (netcut profile MODEL --out T.json) or pass its table",
            )
        if backend is not None and backend != self.backend:
            raise NetcutError(f"latency table{where} was measured with backend {self.backend!r}, not {backend!r}",
                              f"pass --backend {self.backend} or a table measured with {backend}")

"""Portable latency tables: per-cut latencies of one backbone on one device and backend, with its environment and
the architecture's fingerprint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from netcut.errors import NetcutError
from netcut.fsutil import read_json, write_json
from netcut.types import Percentiles
from netcut_agent.memory import MemoryRecord

TABLE_KIND = "netcut-latency-table"
TABLE_VERSION = 2


@dataclass(frozen=True)
class CutLatency:
    """One row: a TRN's estimated (and optionally measured) latency."""

    name: str
    estimated: Percentiles
    measured: Percentiles | None = None
    macs: int = 0
    params: int = 0
    size_bytes: int = 0  # the TRN's model file in the table's format and precision
    ram_bytes: int | None = None  # peak memory where it runs: measured (memory set) or estimated; None: unknown
    memory: MemoryRecord | None = None  # the measurement: peak, load and first-inference times

    def best(self) -> Percentiles:
        """The measured latency where there is one, else the estimate."""
        return self.measured if self.measured is not None else self.estimated

    def to_json(self) -> dict[str, Any]:
        """The flat JSON row of the table file (estimated_ms, estimated_p90_ms, ..., measured_ms or null)."""
        e, m = self.estimated, self.measured
        return {"name": self.name, "estimated_ms": e.p50, "estimated_p90_ms": e.p90, "estimated_p99_ms": e.p99,
                "measured_ms": m.p50 if m else None, "measured_p90_ms": m.p90 if m else None,
                "measured_p99_ms": m.p99 if m else None, "macs": self.macs, "params": self.params,
                "size_bytes": self.size_bytes, "ram_bytes": self.ram_bytes,
                "memory": self.memory.to_json() if self.memory else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CutLatency:
        """Inverse of to_json."""
        measured = None
        if d.get("measured_ms") is not None:
            measured = Percentiles(d["measured_ms"], d.get("measured_p90_ms") or d["measured_ms"],
                                   d.get("measured_p99_ms") or d["measured_ms"])
        estimated = Percentiles(d["estimated_ms"], d["estimated_p90_ms"], d["estimated_p99_ms"])
        memory = MemoryRecord.from_json(d["memory"]) if d.get("memory") else None
        ram = d.get("ram_bytes")
        return cls(str(d["name"]), estimated, measured, int(d.get("macs", 0)), int(d.get("params", 0)),
                   int(d.get("size_bytes", 0)), int(ram) if ram is not None else None, memory)


@dataclass
class LatencyTable:
    """Everything needed to reuse latencies measured on a target device elsewhere."""

    model: str
    fingerprint: str  # architecture + input size, independent of weights
    input_size: int
    granularity: str
    backend: str
    precision: str
    estimator: str
    batch: int
    num_classes: int
    environment: dict[str, Any]
    cuts: list[CutLatency]
    cost_s: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, dict[str, float]] = field(default_factory=dict)  # estimator -> {mape_pct, within10_pct, n}

    @property
    def device(self) -> str:
        """The device it was measured on, as its agent or this machine identifies itself (a board's model and cores
        on ARM, the CPU's name on x86)."""
        return str(self.environment.get("cpu", ""))

    def row(self, name: str) -> CutLatency:
        """The row of a cut."""
        for row in self.cuts:
            if row.name == name:
                return row
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        """JSON form (each cut row also names the table's backend and precision, for scripts that read rows)."""
        d = asdict(self)
        d["cuts"] = [{**row.to_json(), "backend": self.backend, "precision": self.precision} for row in self.cuts]
        return {"kind": TABLE_KIND, "version": TABLE_VERSION, **d}

    def save(self, path: str | Path) -> Path:
        """Write atomically."""
        return write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """Read and validate a table file."""
        data = read_json(path, "latency table")
        if not isinstance(data, dict) or data.get("kind") != TABLE_KIND:
            raise NetcutError(f"{str(path)!r} is not a netcut latency table",
                              "pass a file written by `netcut profile ... --out`")
        if data.get("version") != TABLE_VERSION:
            raise NetcutError(f"latency table {str(path)!r} has version {data.get('version')}, this netcut reads "
                              f"version {TABLE_VERSION}", "re-profile with this netcut version")
        try:
            rows = [CutLatency.from_json(row) for row in data["cuts"]]
            fields = {k: data[k] for k in ("model", "fingerprint", "input_size", "granularity", "backend", "precision",
                                           "estimator", "batch", "num_classes", "environment")}
        except (KeyError, TypeError) as exc:
            raise NetcutError(f"latency table {str(path)!r} is incomplete ({exc})", "regenerate it") from exc
        return cls(**fields, cuts=rows, cost_s=data.get("cost_s", {}), accuracy=data.get("accuracy", {}))

    def check_matches(self, fingerprint: str, model: str, backend: str | None = None, path: str = "",
                      precision: str | None = None) -> None:
        """Refuse a table made for another model, input size, backend or precision."""
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
        if precision is not None and precision != self.precision:
            raise NetcutError(f"latency table{where} was measured at {self.precision}, not {precision}",
                              f"profile with --precision {precision} (one table per precision)")


@dataclass(frozen=True)
class DepthRow:
    """One block along the depth: what it adds to the latency and where peak memory stands at its end."""

    name: str
    ms: float  # the TRN ending here (measured where measured, else estimated p50)
    block_ms: float  # what this block adds over the previous cut (noise can make it slightly negative)
    share_pct: float  # of the whole network's latency
    macs: int  # the block's own multiply-accumulates
    params: int  # the block's own parameters
    ram_bytes: int | None
    ram_measured: bool

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


def along_depth(table: LatencyTable) -> list[DepthRow]:
    """Each cut's block (from the previous cut to it): its latency and share of the whole network, its work, and the
    peak memory of the TRN ending there. From the table's TRN latencies, which the empirical estimator derives from
    its chain of segments: the differences are the segments' times."""
    total = table.cuts[-1].best().p50 if table.cuts else 0.0
    rows, previous = [], None
    for row in table.cuts:
        ms = row.best().p50
        block = ms - (previous.best().p50 if previous else 0.0)
        rows.append(DepthRow(row.name, ms, block, 100 * block / total if total else 0.0,
                             row.macs - (previous.macs if previous else 0),
                             row.params - (previous.params if previous else 0), row.ram_bytes,
                             row.memory is not None))
        previous = row
    return rows

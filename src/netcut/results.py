"""Typed results of an exploration: candidates, latencies, training records, decisions, the whole result.

Pure values (no torch, no store): what stages hand to each other, what the store keeps, what reports render.
They are written and read by the one codec (netcut.codec); nothing is rounded here (rendering rounds). A stored
result describes itself: export rebuilds the chosen network from it alone (models, heads, preprocessing), never
from today's configuration class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from netcut.codec import decode, encode
from netcut.errors import NetcutError
from netcut.types import CandidateId, CutPoint, Percentiles
from netcut_agent.memory import MemoryRecord

STRATEGIES = ("netcut", "exhaustive")
RESULT_KIND = "netcut-explore-result"
RESULT_VERSION = 2  # 2: written by netcut.codec (choices by value, heads); 1 is refused with a clear message


@dataclass(frozen=True)
class Deadline:
    """A latency bound at a percentile, with a safety margin on estimates."""

    ms: float
    percentile: str = "p50"
    margin: float = 0.05
    max_model_mb: float | None = None  # the second budget: the model file's size in its deployment format
    max_ram_mb: float | None = None  # the third: peak memory where it runs (1 MB = 10^6 bytes)

    def fits(self, candidate: Candidate) -> bool:
        """Whether the candidate fits the size and memory budgets (if any; memory: its estimate or measurement)."""
        return (self.max_model_mb is None or candidate.size_bytes <= self.max_model_mb * 1e6) and \
            self.ram_fits(candidate.ram_bytes)

    def ram_fits(self, ram_bytes: int | None) -> bool:
        """Whether a peak memory fits the memory budget (an unknown one, None, does)."""
        return self.max_ram_mb is None or ram_bytes is None or ram_bytes <= self.max_ram_mb * 1e6

    def admission_ms(self, candidate: Candidate) -> float:
        """The estimate at the deadline's percentile, inflated by the margin: what is held against the deadline."""
        return candidate.estimate.percentile(self.percentile) * (1.0 + self.margin)

    def admits(self, candidate: Candidate) -> bool:
        """Whether the estimate, inflated by the margin, meets the deadline (and the size fits the budget)."""
        return self.fits(candidate) and self.admission_ms(candidate) <= self.ms

    def met_by(self, measured: Percentiles) -> bool:
        """Whether a measured latency meets the deadline (no margin: it is the truth)."""
        return measured.percentile(self.percentile) <= self.ms


@dataclass(frozen=True)
class Candidate:
    """A TRN (or, at the deepest cut, the off-the-shelf network with a new head) and its latency estimate."""

    id: CandidateId
    cut: CutPoint
    estimate: Percentiles
    latency_source: str  # estimator name or "table:PATH"
    size_bytes: int = 0  # the TRN's model file in its backend's format and precision
    per_device: dict[str, Percentiles] = field(default_factory=dict, compare=False)  # with several devices: each one's
    ram_bytes: int | None = None  # peak memory where it runs (the largest device's); None: unknown
    ram_source: str = ""  # "measured" or "estimated"

    @property
    def model(self) -> str:
        """The backbone's name."""
        return self.id.backbone

    @property
    def is_full(self) -> bool:
        """Whether this is the whole backbone (the off-the-shelf baseline)."""
        return self.cut.is_full

    @property
    def label(self) -> str:
        """model@cut."""
        return self.id.label


@dataclass(frozen=True)
class LatencyRecord:
    """A stored latency of one candidate: an estimate, or a measurement (estimator "verified")."""

    key: str
    candidate: CandidateId
    fingerprint: str
    estimator: str
    latency: Percentiles
    environment: dict[str, Any] = field(default_factory=dict, compare=False)
    size_bytes: int = 0
    ram_bytes: int | None = None  # peak memory: measured (memory set) or estimated
    memory: MemoryRecord | None = None  # the measurement, where the TRN's memory was measured


@dataclass(frozen=True)
class TrainingRecord:
    """A trained candidate: a probe on cached features (finetune_blocks 0) or a fine-tuned TRN."""

    key: str  # the store key of this record and of its weights
    backbone: str
    cut: str
    cut_index: int
    head: str  # HeadSpec.label()
    dataset: str  # dataset fingerprint
    train_config: str  # digest of the training configuration
    finetune_blocks: int
    metric: str  # accuracy, or angular_similarity for soft labels
    val_score: float
    test_score: float
    metrics: dict[str, Any]  # {"val": {...}, "test": {...}}, and for fine-tuned records "epochs", "history"
    seconds: float
    precision: str = "fp32"
    created_run: int = 0  # the run that trained it (newly trained records are those of the current run)
    backend: str = ""  # whose runtime computed the features: "" for fp32 (torch features serve every backend)

    @property
    def label(self) -> str:
        """model@cut."""
        return f"{self.backbone}@{self.cut}"

    @property
    def accuracy(self) -> float:
        """Top-1 accuracy for hard labels; top-1 agreement for soft labels."""
        test = self.metrics.get("test", {})
        return float(test.get("accuracy", test.get("top1_agreement", self.test_score)))

    def matches(self, candidate: Candidate) -> bool:
        """Whether this record trained that candidate's network (at its precision, in its runtime for int8)."""
        c = candidate.id
        return (self.backbone, self.cut, self.precision, self.head) == (c.backbone, c.cut, c.precision, c.head) \
            and self.backend in ("", c.backend)


@dataclass(frozen=True)
class Choice:
    """A candidate chosen (or the best off-the-shelf one) with the record that scored it and, if verified, its
    measured latency."""

    candidate: Candidate
    record: TrainingRecord
    measured: Percentiles | None = None
    memory: MemoryRecord | None = None  # its peak memory, load and first-inference times, measured with the latency

    @property
    def model(self) -> str:
        """The backbone's name."""
        return self.candidate.model

    @property
    def cut(self) -> str:
        """The cut point's name."""
        return self.candidate.cut.name

    @property
    def score(self) -> float:
        """Test score (accuracy, or angular similarity for soft labels)."""
        return self.record.test_score

    @property
    def accuracy(self) -> float:
        """Test top-1 accuracy (agreement for soft labels)."""
        return self.record.accuracy

    @property
    def latency_ms(self) -> float | None:
        """Measured p50, if verified."""
        return None if self.measured is None else self.measured.p50


@dataclass(frozen=True)
class Rejection:
    """A proposal that missed the deadline when its latency was measured."""

    candidate: CandidateId
    measured_ms: float
    estimated_ms: float
    ram_bytes: int | None = None  # its measured peak memory, where that is what missed (the memory budget)


@dataclass(frozen=True)
class Decision:
    """The outcome for one deadline.

    pending names a candidate whose latency must be measured before the decision can be final (decide() is pure:
    the caller measures and decides again).
    """

    deadline: Deadline
    proposals: tuple[CandidateId, ...]
    feasible: tuple[CandidateId, ...]
    chosen: Choice | None
    best_off_the_shelf: Choice | None
    rejected: tuple[Rejection, ...] = ()
    fastest: CandidateId | None = None
    fastest_ms: float | None = None
    reason: str | None = None
    pending: CandidateId | None = None
    best_off_the_shelf_fine_tuned: Choice | None = None  # the fair baseline of a fine-tuned choice


@dataclass(frozen=True)
class DatasetInfo:
    """What a result needs to know of the data it was trained on."""

    name: str
    classes: list[str]
    soft: bool
    metric: str
    fingerprint: str
    sizes: dict[str, int]
    skipped: int = 0
    preprocessing: str = ""


@dataclass(frozen=True)
class ModelInfo:
    """A backbone as explored: how to rebuild and feed it."""

    name: str
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str
    fingerprint: str
    weights_hash: str = ""
    granularity: str = "block"


@dataclass(frozen=True)
class ExploreResult:
    """The outcome of one exploration: every candidate, every training record it used, a decision per deadline."""

    config: dict[str, Any]  # the ExploreConfig as JSON (kept plain: results outlive config changes)
    candidates: tuple[Candidate, ...]
    records: tuple[TrainingRecord, ...]
    decisions: tuple[Decision, ...]
    dataset: DatasetInfo
    models: dict[str, ModelInfo]
    run_id: int
    exploration_s: float
    environment: dict[str, Any]
    netcut_version: str
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time of each stage in this run
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)  # head label -> its HeadSpec's fields

    @property
    def strategy(self) -> str:
        """netcut or exhaustive."""
        return str(self.config["strategy"])

    @property
    def probes(self) -> list[TrainingRecord]:
        """Frozen-trunk records (one per trained candidate)."""
        return [r for r in self.records if r.finetune_blocks == 0]

    @property
    def trained(self) -> int:
        """How many candidates have a frozen-trunk record."""
        return sum(self.probe_of(c) is not None for c in self.candidates)

    @property
    def newly_trained(self) -> int:
        """How many records this run trained (the rest came from the store)."""
        return sum(r.created_run == self.run_id for r in self.records)

    @property
    def infeasible(self) -> bool:
        """Whether some deadline could not be met."""
        return any(d.chosen is None for d in self.decisions)

    def decision(self, deadline_ms: float | None = None) -> Decision:
        """The decision for a deadline (the first by default)."""
        for d in self.decisions:
            if deadline_ms is None or abs(d.deadline.ms - deadline_ms) < 1e-9:
                return d
        raise KeyError(deadline_ms)

    def chosen(self, deadline_ms: float | None = None) -> Choice | None:
        """The chosen network for a deadline (the first deadline by default)."""
        return self.decision(deadline_ms).chosen

    def probe_of(self, candidate: Candidate) -> TrainingRecord | None:
        """The frozen-trunk record of a candidate, if it was trained."""
        return next((r for r in self.probes if r.matches(candidate)), None)

    def fp32_twin(self, candidate: Candidate) -> Candidate | None:
        """The same network at fp32 on the same backend (to report what int8 changes)."""
        return next((c for c in self.candidates if c.id.precision == "fp32" and (c.model, c.cut.name, c.id.backend,
                     c.id.head) == (candidate.model, candidate.cut.name, candidate.id.backend, candidate.id.head)),
                    None)

    def to_json(self) -> dict[str, Any]:
        """The form kept in the store (a final result: no decision waits for a measurement)."""
        if any(d.pending is not None for d in self.decisions):
            raise ValueError("a decision still waiting for a measurement has no stored form")
        return {"kind": RESULT_KIND, "version": RESULT_VERSION, **encode(self)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExploreResult:
        """Inverse of to_json; a result of another format version is refused clearly."""
        if not isinstance(d, dict) or d.get("kind") != RESULT_KIND:
            raise NetcutError("the stored result is not a netcut exploration result", "explore again into a new "
                              "--run-dir")
        if d.get("version") != RESULT_VERSION:
            raise NetcutError(f"the stored result has format version {d.get('version')}; this netcut reads "
                              f"version {RESULT_VERSION}", "report or export it with the netcut version that wrote "
                              "it, or explore again into a new --run-dir")
        return decode(cls, d)

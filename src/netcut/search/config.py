"""ExploreConfig: everything an exploration depends on, and the configurations derived from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from netcut.data.datasets import SplitConfig
from netcut.errors import NetcutError
from netcut.latency.backends import MIN_CALIBRATION, check_precision, get_backend
from netcut.latency.harness import HarnessConfig
from netcut.latency.settings import ProfileSettings
from netcut.model.head import HEAD_KINDS, HeadSpec
from netcut.results import STRATEGIES
from netcut.train.finetune import ALL_BLOCKS, FineTuneConfig, resolve_device
from netcut.train.probe import TrainConfig
from netcut.types import PERCENTILES, TOKEN_READOUTS, TRAIN_DEVICES


def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())



@dataclass(frozen=True)
class ExploreConfig:
    """Everything an exploration depends on; recorded in the run directory."""

    models: tuple[str, ...] = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
    data: str = "fashion-mnist"
    deadlines: tuple[float, ...] = (12.0,)
    percentile: str = "p50"
    margin: float = 0.05
    estimator: str = "empirical"
    latency_tables: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("onnxruntime",)
    precisions: tuple[str, ...] = ("fp32",)
    max_model_mb: float | None = None
    max_ram_mb: float | None = None  # peak memory where the network runs, 1 MB = 10^6 bytes
    calibration_images: int = 128  # training images that calibrate int8 (at least MIN_CALIBRATION)
    strategy: str = "netcut"
    granularity: str = "block"
    fine_tune_blocks: int | None = None  # None: no fine-tuning unless a budget is given; -1: every layer; K: last K
    fine_tune_epochs: int | None = None  # the most epochs any candidate gets; None: 8, more on small data (plan_epochs)
    distill: float = 0.0  # weight of the soft targets of the most accurate full network (0: no distillation)
    fine_tune_top: int = 4  # per deadline, how many of the best probes start successive halving
    budget_s: float | None = None  # wall time for fine-tuning, all deadlines together; None: no limit
    train_device: str = "cpu"  # cpu, cuda or auto: feature extraction and fine-tuning (not latency)
    train_threads: int | None = None  # torch threads of training work, wherever it runs; None: this machine's cores
    top_k: int = 3
    input_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    run_dir: str = "runs/latest"
    threads: int | None = None
    timing_tolerance_pct: float = 10.0  # a timing session whose reference moved more than this is repeated
    devices: tuple[str, ...] = ()  # netcut-agent URLs: latency is measured on each (tokens are never stored)
    device_token_file: str | None = None
    weights: str | None = None
    token_readout: str = "auto"  # how heads read transformer tokens: auto (as the backbone's head), class, mean
    head_hidden: int | None = None
    heads: tuple[str, ...] = ("linear",)  # linear (one cut's features, or an MLP with head_hidden), multi (Head2Toe)
    head_features: int = 512  # multi: how many pooled features the head keeps
    epochs: int = 30
    repeats: int = 30
    warmup: int = 5
    batch: int = 1
    verify: bool = True

    def validate(self) -> ExploreConfig:
        """Clear errors for impossible settings."""
        if not self.models:
            raise NetcutError("no models given", "pass --models efficientnet_lite0,efficientnet_lite1")
        if self.percentile not in PERCENTILES:
            raise NetcutError(f"unknown percentile {self.percentile!r}", f"use one of: {', '.join(PERCENTILES)}")
        if self.token_readout not in TOKEN_READOUTS:
            raise NetcutError(f"unknown token readout {self.token_readout!r}",
                              f"use one of: {', '.join(TOKEN_READOUTS)}")
        if self.strategy not in STRATEGIES:
            raise NetcutError(f"unknown strategy {self.strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
        if not (0 <= self.margin < 1) or self.margin != self.margin:
            raise NetcutError(f"margin must be in [0, 1), got {self.margin}", "pass e.g. --margin 0.05")
        for name in ("top_k", "epochs", "repeats"):
            if getattr(self, name) < 1:
                raise NetcutError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}",
                                  f"pass --{name.replace('_', '-')} 1 or more")
        if self.fine_tune_blocks is not None and self.fine_tune_blocks < ALL_BLOCKS:
            raise NetcutError(f"fine-tune-blocks must be all or ≥ 0, got {self.fine_tune_blocks}",
                              "pass --fine-tune-blocks all, or a number of blocks")
        for name in ("fine_tune_epochs", "fine_tune_top"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise NetcutError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}",
                                  f"pass --{name.replace('_', '-')} 1 or more")
        if not 0 <= self.distill < 1:
            raise NetcutError(f"--distill is the soft targets' weight, in [0, 1); got {self.distill}",
                              "pass e.g. --distill 0.5 (0: no distillation)")
        if self.budget_s is not None and not self.budget_s > 0:
            raise NetcutError(f"the fine-tuning budget must be positive, got {self.budget_s} s",
                              "pass e.g. --budget 10m (or leave it out: no fine-tuning)")
        if not self.heads or any(h not in HEAD_KINDS for h in self.heads):
            raise NetcutError(f"unknown head {', '.join(self.heads)!r}", f"use {' or '.join(HEAD_KINDS)} (or both)")
        if self.head_features < 1:
            raise NetcutError(f"head-features must be ≥ 1, got {self.head_features}", "pass e.g. --head-features 512")
        if self.train_threads is not None and self.train_threads < 1:
            raise NetcutError(f"--train-threads must be ≥ 1, got {self.train_threads}", "pass e.g. --train-threads 2")
        if self.train_device not in TRAIN_DEVICES:
            raise NetcutError(f"unknown train device {self.train_device!r}", f"use one of: {', '.join(TRAIN_DEVICES)}")
        if resolve_device(self.train_device) == "cuda" and not cuda_available():
            raise NetcutError("--train-device cuda, but no CUDA GPU is visible to PyTorch",
                              "use --train-device cpu (or auto), or run on a machine with a GPU")
        if not self.deadlines or any(not d > 0 for d in self.deadlines):
            raise NetcutError("deadlines must be positive numbers of milliseconds", "pass e.g. --deadline 12")
        if not self.backends or not self.precisions:
            raise NetcutError("no backend or precision given", "pass e.g. --backend onnxruntime --precision fp32")
        for backend in self.backends:
            for precision in self.precisions:
                check_precision(get_backend(backend), precision)
        if self.max_model_mb is not None and not self.max_model_mb > 0:
            raise NetcutError(f"max-model-mb must be a positive number, got {self.max_model_mb}",
                              "pass e.g. --max-model-mb 4")
        if self.max_ram_mb is not None and not self.max_ram_mb > 0:
            raise NetcutError(f"max-ram-mb must be a positive number, got {self.max_ram_mb}",
                              "pass e.g. --max-ram-mb 64")
        if "int8" in self.precisions and self.calibration_images < MIN_CALIBRATION:
            raise NetcutError(f"int8 needs at least {MIN_CALIBRATION} calibration images, got "
                              f"{self.calibration_images}", f"pass --calibration-images {MIN_CALIBRATION} or more")
        if self.estimator == "analytical" and self.latency_tables:
            raise NetcutError("--estimator analytical and --latency-table conflict",
                              "pass one: a measured table, or the analytical estimator")
        self.harness().validate()
        return self

    def harness(self) -> HarnessConfig:
        """How latencies are timed."""
        return HarnessConfig(self.batch, self.warmup, self.repeats, self.threads,
                             timing_tolerance_pct=self.timing_tolerance_pct)

    def profile_settings(self, num_classes: int, backend: str, precision: str) -> ProfileSettings:
        """How each backbone is profiled on one backend at one precision."""
        return ProfileSettings(backend, precision, self.estimator, self.granularity, num_classes, self.harness())

    def head_spec(self, kind: str = "linear") -> HeadSpec:
        """The head of a candidate of one kind."""
        if kind == "multi":
            return HeadSpec(kind="multi", features=self.head_features)
        return HeadSpec(hidden=self.head_hidden)

    def head_kind(self, label: str) -> str:
        """The kind of a head from its label (CandidateId.head)."""
        return "multi" if label.startswith("multi") else "linear"

    def train_config(self, kind: str = "linear") -> TrainConfig:
        """How probes (heads on cached features) are trained."""
        return TrainConfig(epochs=self.epochs, seed=self.seed, head=self.head_spec(kind))

    @property
    def fine_tunes(self) -> bool:
        """Whether the promising candidates are fine-tuned (a budget, or fine-tune blocks, was given)."""
        return self.budget_s is not None or bool(self.fine_tune_blocks)

    def fine_tune_config(self, flip: bool = False) -> FineTuneConfig:
        """How the promising candidates are fine-tuned (every layer unless told otherwise)."""
        blocks = ALL_BLOCKS if not self.fine_tune_blocks else self.fine_tune_blocks
        # epochs given: exactly that horizon; else the default, stretched on small data to enough optimizer steps
        config = FineTuneConfig(blocks=blocks, flip=flip, seed=self.seed, device=resolve_device(self.train_device),
                                distill_weight=self.distill)
        if self.fine_tune_epochs is not None:
            config = replace(config, max_epochs=self.fine_tune_epochs, min_steps=0)
        return config

    def split_config(self) -> SplitConfig:
        """How the data is split and limited."""
        return SplitConfig(seed=self.seed, limit_train=self.limit_train, limit_test=self.limit_test)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExploreConfig:
        """Inverse of to_json (lists back to tuples)."""
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**values)

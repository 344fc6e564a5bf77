"""ExploreConfig: everything an exploration depends on, and the configurations derived from it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from netcut.data.datasets import SplitConfig
from netcut.errors import NetcutError
from netcut.latency.backends import MIN_CALIBRATION, check_precision, get_backend
from netcut.latency.harness import HarnessConfig
from netcut.latency.settings import ProfileSettings
from netcut.model.head import HeadSpec
from netcut.search.results import STRATEGIES
from netcut.train.finetune import FineTuneConfig
from netcut.train.probe import TrainConfig
from netcut.types import PERCENTILES

FINE_TUNE_TOP = 2  # per deadline, how many of the best frozen-trunk candidates are fine-tuned


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
    calibration_images: int = 128  # training images that calibrate int8 (at least MIN_CALIBRATION)
    strategy: str = "netcut"
    granularity: str = "block"
    fine_tune_blocks: int = 0
    fine_tune_epochs: int = 2
    top_k: int = 3
    input_size: int | None = None
    limit_train: int | None = None
    limit_test: int | None = None
    seed: int = 0
    run_dir: str = "runs/latest"
    threads: int | None = None
    weights: str | None = None
    head_hidden: int | None = None
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
        if self.strategy not in STRATEGIES:
            raise NetcutError(f"unknown strategy {self.strategy!r}", f"use one of: {', '.join(STRATEGIES)}")
        if not (0 <= self.margin < 1) or self.margin != self.margin:
            raise NetcutError(f"margin must be in [0, 1), got {self.margin}", "pass e.g. --margin 0.05")
        for name in ("top_k", "epochs", "repeats"):
            if getattr(self, name) < 1:
                raise NetcutError(f"{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}",
                                  f"pass --{name.replace('_', '-')} 1 or more")
        if self.fine_tune_blocks < 0:
            raise NetcutError(f"fine-tune-blocks must be ≥ 0, got {self.fine_tune_blocks}", "pass 0 (frozen) or more")
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
        return HarnessConfig(self.batch, self.warmup, self.repeats, self.threads)

    def profile_settings(self, num_classes: int, backend: str, precision: str) -> ProfileSettings:
        """How each backbone is profiled on one backend at one precision."""
        return ProfileSettings(backend, precision, self.estimator, self.granularity, num_classes, self.harness())

    def train_config(self) -> TrainConfig:
        """How probes (heads on cached features) are trained."""
        return TrainConfig(epochs=self.epochs, seed=self.seed, head=HeadSpec(hidden=self.head_hidden))

    def fine_tune_config(self) -> FineTuneConfig:
        """How the best proposals are fine-tuned."""
        return FineTuneConfig(blocks=self.fine_tune_blocks, epochs=self.fine_tune_epochs, seed=self.seed)

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

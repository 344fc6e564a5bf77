"""What a latency profile depends on (recorded with every table)."""

from __future__ import annotations

from dataclasses import dataclass

from netcut.errors import NetcutError
from netcut.latency.harness import HarnessConfig


@dataclass(frozen=True)
class ProfileSettings:
    """Backend, precision, estimator, cut granularity, the head's class count and how to time."""

    backend: str = "onnxruntime"
    precision: str = "fp32"
    estimator: str = "empirical"
    granularity: str = "block"
    num_classes: int = 10
    harness: HarnessConfig = HarnessConfig()
    analytical_model: str | None = None  # a fitted model file; None: this device's default

    def validate(self) -> ProfileSettings:
        """Clear errors for impossible settings."""
        from netcut.latency.estimators import available_estimators

        if self.estimator not in available_estimators():
            raise NetcutError(f"unknown estimator {self.estimator!r}",
                              f"use one of: {', '.join(available_estimators())}")
        from netcut.latency.backends import check_precision, get_backend

        check_precision(get_backend(self.backend), self.precision)
        self.harness.validate()
        return self

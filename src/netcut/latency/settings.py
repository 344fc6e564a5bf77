"""What a latency profile depends on (recorded with every table)."""

from __future__ import annotations

from dataclasses import dataclass

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
        """Clear errors for impossible timing settings (the backend and estimator names are checked against their
        registries by netcut.latency.profile.checked)."""
        self.harness.validate()
        return self

"""netcut-agent: time model files in their deployment runtime, with no PyTorch and no netcut."""

__version__ = "0.1.0"

"""Networks netcut builds: heads and trimmed networks (prefix + head)."""

from netcut.model.head import HeadSpec, build_head, classifier
from netcut.model.trn import TrimmedNetwork, build_trn, trim

__all__ = ["HeadSpec", "TrimmedNetwork", "build_head", "build_trn", "classifier", "trim"]

"""Networks netcut builds: heads and trimmed networks (prefix + head)."""

from netcut.model.head import HEAD_KINDS, HeadSpec, MultiHead, build_head, classifier, load_head
from netcut.model.trn import TrimmedNetwork, build_trn, trim

__all__ = ["HEAD_KINDS", "HeadSpec", "MultiHead", "TrimmedNetwork", "build_head", "build_trn", "classifier",
           "load_head", "trim"]

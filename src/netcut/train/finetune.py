"""Fine-tune a TRN from images, epoch by epoch, starting from its probe's head; resumable at every epoch.

The recipe: AdamW with a one-cycle schedule over the planned epochs, label smoothing, random shifts (and flips where
the labels allow them), BatchNorm statistics updated with the layers that train (docs/benchmarks/fine_tuning.md
measures it). A FineTuner holds one candidate's state; the fine-tuning stage decides how many epochs each gets.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from netcut.data.datasets import Dataset
from netcut.graph import TracedNetwork, build_segment
from netcut.model import HeadSpec, TrimmedNetwork, build_trn
from netcut.progress import QUIET, Reporter
from netcut.train.loop import augment, loss_fn
from netcut.train.metrics import evaluate
from netcut.types import CutPoint

ALL_BLOCKS = -1


@dataclass(frozen=True)
class FineTuneConfig:
    """How a TRN is fine-tuned (recorded with every fine-tuned result)."""

    blocks: int = ALL_BLOCKS  # -1: every layer; K ≥ 1: the last K blocks before the cut (the head always trains)
    max_epochs: int = 8  # the one-cycle schedule's horizon; successive halving stops most candidates earlier
    batch_size: int = 64
    lr: float = 1e-3  # the schedule's peak for the head
    trunk_lr_factor: float = 1.0  # the trunk's peak is lr x this
    weight_decay: float = 0.05
    label_smoothing: float = 0.1  # hard labels only
    shift: float = 1 / 16  # random translations of up to this fraction of the side
    flip: bool = False  # random horizontal flips (the exploration turns them on where labels allow)
    seed: int = 0
    device: str = "cpu"
    batch_norm: str = "frozen"  # frozen: statistics as pretrained (small data); train: updated with the batches
    bf16: bool = True  # autocast to bfloat16 where the device computes it natively (CUDA; CPUs with AVX512-BF16/AMX)

    def digest(self) -> str:
        """A short hash of what changes the result (not where it runs)."""
        fields = {k: v for k, v in asdict(self).items() if k != "device"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]

    def label(self) -> str:
        """'all' or the number of blocks, for reports."""
        return "all" if self.blocks == ALL_BLOCKS else str(self.blocks)


def resolve_device(requested: str) -> str:
    """cpu, cuda, or auto (cuda when a GPU is visible, else cpu)."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def bf16_native(device: torch.device) -> bool:
    """Whether bfloat16 arithmetic is native here: a CUDA GPU that supports it, or a CPU with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return " avx512_bf16 " in flags or " amx_bf16 " in flags


def trainable_parameter_names(traced: TracedNetwork, block_cuts: list[CutPoint], cut: CutPoint, blocks: int
                              ) -> set[str] | None:
    """Names of the prefix parameters inside the last `blocks` block segments ending at or before `cut`; None for
    every parameter (blocks = -1), the empty set for a frozen trunk (blocks = 0)."""
    if blocks == ALL_BLOCKS:
        return None
    if blocks <= 0:
        return set()
    ends = [c for c in block_cuts if c.index <= cut.index]
    if not ends or ends[-1].name != cut.name:
        ends.append(cut)
    names: set[str] = set()
    for i in range(max(0, len(ends) - blocks), len(ends)):
        start = ends[i - 1].name if i > 0 else None
        names |= {n for n, _ in build_segment(traced, start, ends[i].name).named_parameters()}
    return names


def evaluate_images(model: nn.Module, dataset: Dataset, split: str, size: int, mean: tuple[float, ...],
                    std: tuple[float, ...], batch_size: int = 64, device: str = "cpu") -> dict[str, float]:
    """Metrics of a TRN run on images of one split."""
    model.eval()
    logits, targets = [], []
    with torch.inference_mode():
        for x, y in dataset.batches(split, size, mean, std, batch_size):
            logits.append(model(x.to(device)).float().cpu())
            targets.append(y)
    return evaluate(torch.cat(logits), torch.cat(targets))


class FineTuner:
    """One candidate's fine-tuning state: the TRN, its optimizer and schedule, the epochs done, the best state."""

    def __init__(self, traced: TracedNetwork, cut: CutPoint, block_cuts: list[CutPoint], classifier: nn.Module,
                 dataset: Dataset, config: FineTuneConfig, head: HeadSpec = HeadSpec()) -> None:
        self.traced, self.cut, self.dataset, self.config = traced, cut, dataset, config
        self.device = torch.device(config.device)
        torch.manual_seed(config.seed)
        # channels-last: the layout oneDNN and cuDNN convolutions prefer (1.5x faster on an x86 CPU)
        self.trn = build_trn(traced, cut, dataset.num_classes, head, classifier, for_training=True)
        self.trn.to(self.device)
        self.trn.to(memory_format=torch.channels_last)
        trainable = trainable_parameter_names(traced, block_cuts, cut, config.blocks)
        for name, p in self.trn.prefix.named_parameters():
            p.requires_grad_(trainable is None or name in trainable)
        norms = [m for m in self.trn.prefix.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        # frozen statistics: on a few thousand images, batch statistics drift from the running ones the network is
        # evaluated with (deep 1x1 feature maps at small inputs made val accuracy collapse from 0.93 to 0.6)
        self.frozen_norms = norms if config.batch_norm == "frozen" else [
            m for m in norms if not any(p.requires_grad for p in m.parameters(recurse=False))]
        trunk = [p for p in self.trn.prefix.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": list(self.trn.head.parameters()), "lr": config.lr}]
        peaks = [config.lr]
        if trunk:
            groups.append({"params": trunk, "lr": config.lr * config.trunk_lr_factor})
            peaks.append(config.lr * config.trunk_lr_factor)
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        steps = max(1, config.max_epochs * -(-len(dataset.splits["train"]) // config.batch_size))
        self.schedule = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=peaks, total_steps=steps,
                                                            pct_start=0.15)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[float] = []  # validation score after each epoch
        self.start_score = float("-inf")  # the probe's, before any epoch: epoch 0 of the race
        self.best_score = float("-inf")
        self.best_state: dict[str, torch.Tensor] = {}
        self.seconds = 0.0

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the best validation score; 0: no epoch beat the probe it started from."""
        if not self.history or max(self.history) <= self.start_score + 1e-9:
            return 0
        return 1 + int(np.argmax(self.history))

    def _keep_if_best(self, score: float) -> None:
        if score > self.best_score + 1e-9:
            self.best_score = score
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.trn.state_dict().items()}

    def train_epoch(self, reporter: Reporter = QUIET) -> float:
        """One epoch over the shuffled training images; returns the validation score after it."""
        start = time.perf_counter()
        if self.epoch == 0 and not self.best_state:
            # the probe is epoch 0 of the race: the best state, the one kept, can only improve on it (a few hundred
            # images and a learning rate that hurts the pretrained features must not end below the probe)
            self.start_score = self.evaluate("val")["score"]
            self._keep_if_best(self.start_score)
        b, c = self.traced.backbone, self.config
        # every random draw of an epoch follows from (seed, epoch): a resumed run repeats it exactly
        torch.manual_seed(c.seed * 1000 + self.epoch)
        self.generator.manual_seed(c.seed * 1000 + self.epoch)
        order = np.random.default_rng(c.seed * 1000 + self.epoch).permutation(len(self.dataset.splits["train"]))
        steps = -(-len(order) // c.batch_size)
        self.trn.train()
        for module in self.frozen_norms:
            module.eval()  # frozen layers keep their statistics
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=c.bf16 and bf16_native(self.device))
        label = f"fine-tuning {b.name} @ {self.cut.name}, epoch {self.epoch + 1}/{c.max_epochs}"
        with torch.inference_mode(False), reporter.bar(label, steps) as advance:
            for x, y in self.dataset.batches("train", self.traced.input_size, b.mean, b.std, c.batch_size, order):
                x = augment(x, self.generator, c.shift, c.flip).to(self.device, memory_format=torch.channels_last)
                y = y.to(self.device)
                self.optimizer.zero_grad(set_to_none=True)
                with autocast:
                    logits = self.trn(x)
                loss_fn(logits.float(), y, c.label_smoothing if y.dim() == 1 else 0.0).backward()
                self.optimizer.step()
                if self.schedule.last_epoch + 1 < self.schedule.total_steps:
                    self.schedule.step()
                advance()
        self.epoch += 1
        score = self.evaluate("val")["score"]
        self.history.append(score)
        self._keep_if_best(score)
        self.seconds += time.perf_counter() - start
        return score

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics of the current weights on a split."""
        b = self.traced.backbone
        return evaluate_images(self.trn, self.dataset, split, self.traced.input_size, b.mean, b.std,
                               device=str(self.device))

    def best(self) -> TrimmedNetwork:
        """A copy of the TRN at its best validation epoch, on the CPU, in eval mode."""
        trn = copy.deepcopy(self.trn).cpu()
        if self.best_state:
            trn.load_state_dict(self.best_state)
        return trn.eval()

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue after a kill: weights, optimizer, schedule, epoch, history, best state."""
        # copies: on the CPU .cpu() is the live tensor itself, and a tuner may train on after its checkpoint is taken
        return {"model": {k: v.detach().cpu().clone() for k, v in self.trn.state_dict().items()},
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "schedule": self.schedule.state_dict(),
                "epoch": self.epoch, "history": list(self.history), "best_score": self.best_score,
                "start_score": self.start_score,
                "best_state": self.best_state, "seconds": self.seconds}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint."""
        self.trn.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.schedule.load_state_dict(checkpoint["schedule"])
        self.epoch = int(checkpoint["epoch"])
        self.history = [float(v) for v in checkpoint["history"]]
        self.best_score = float(checkpoint["best_score"])
        self.start_score = float(checkpoint.get("start_score", float("-inf")))
        self.best_state = dict(checkpoint["best_state"])
        self.seconds = float(checkpoint["seconds"])

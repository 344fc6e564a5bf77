"""Fine-tune a TRN from images, epoch by epoch, starting from its probe's head; resumable at every epoch.

The recipe (LP-FT: the probe's head first, then every layer): AdamW, a cosine cycle per rung of successive halving
(warm-up, then decay to almost nothing, so every rung is judged after its decay), BatchNorm statistics as pretrained,
label smoothing, random shifts (and flips where the labels allow them), and optionally soft targets from a teacher
network. With this schedule the trunk trains best at the head's learning rate: a lower one gained less at every data
size measured (docs/benchmarks/finetune_recipe_fashion.md, _digits.md). On a few hundred images an epoch is a
handful of steps: the plan then counts more epochs, so that a rung and the whole schedule take enough steps to learn
anything. A FineTuner holds one candidate's state; the fine-tuning stage decides how many epochs each gets.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
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
    max_epochs: int = 8  # the horizon (more on small data: plan_epochs); successive halving stops most earlier
    batch_size: int = 64
    lr: float = 1e-3  # the schedule's peak for the head
    trunk_lr_factor: float = 1.0  # the trunk's peak is lr x this (0.3, 0.1, 0.03 measured: each gained less)
    min_rung_steps: int = 50  # the first rung takes at least this many optimizer steps (several epochs on small data)
    min_steps: int = 400  # the horizon takes at least this many steps (at most MAX_EPOCH_FACTOR x max_epochs epochs)
    warmup: float = 0.1  # share of each rung's cycle spent warming up
    distill_weight: float = 0.0  # 0: hard labels only; w: (1-w) x label loss + w x soft-target loss from a teacher
    distill_temperature: float = 2.0
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


MAX_EPOCH_FACTOR = 8  # small data: the horizon grows to at most 8x max_epochs epochs


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps in one pass over the training images."""
    return max(1, -(-train_images // batch_size))


def plan_epochs(train_images: int, config: FineTuneConfig) -> list[int]:
    """Epoch targets of successive halving's rungs, doubling, the horizon last. On small data an epoch is a few steps:
    the first rung lasts at least min_rung_steps and the horizon at least min_steps (up to MAX_EPOCH_FACTOR x
    max_epochs), so that the budget a small dataset leaves goes to longer training rather than unused."""
    steps = steps_per_epoch(train_images, config.batch_size)
    horizon = min(max(config.max_epochs, -(-config.min_steps // steps)), MAX_EPOCH_FACTOR * config.max_epochs)
    first = min(horizon, max(1, -(-config.min_rung_steps // steps)))
    targets, e = [], first
    while e < horizon:
        targets.append(e)
        e *= 2
    return targets + [horizon]


def lr_multiplier(step: int, boundaries: list[int], warmup: float) -> float:
    """The learning rate at an optimizer step, as a share of the peak: a cycle per rung (boundaries: the step at
    which each rung ends), a linear warm-up over `warmup` of it, then a cosine decay to 1% at its end. Each rung ends
    decayed, so the entrants of a rung are compared at the same, settled point of their schedules."""
    start = 0
    for end in boundaries:
        if step < end:
            break
        start = end
    else:
        return 0.01
    length = end - start
    t = step - start
    ramp = max(1, round(warmup * length))
    if t < ramp:
        return (t + 1) / ramp
    progress = (t + 1 - ramp) / max(1, length - ramp)  # 1 at the rung's last step
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


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


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: KL(teacher || student) at a temperature, scaled by T² so its gradients keep their
    size whatever the temperature."""
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1), log_target=True,
                    reduction="batchmean") * t * t


def predict_images(model: nn.Module, dataset: Dataset, split: str, size: int, mean: tuple[float, ...],
                   std: tuple[float, ...], batch_size: int = 64, device: str = "cpu"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """A TRN's logits on the images of one split (in the split's order, on the CPU) and their targets."""
    model.eval()
    logits, targets = [], []
    with torch.inference_mode():
        for x, y in dataset.batches(split, size, mean, std, batch_size):
            logits.append(model(x.to(device)).float().cpu())
            targets.append(y)
    return torch.cat(logits), torch.cat(targets)


def evaluate_images(model: nn.Module, dataset: Dataset, split: str, size: int, mean: tuple[float, ...],
                    std: tuple[float, ...], batch_size: int = 64, device: str = "cpu") -> dict[str, float]:
    """Metrics of a TRN run on images of one split."""
    return evaluate(*predict_images(model, dataset, split, size, mean, std, batch_size, device))


class FineTuner:
    """One candidate's fine-tuning state: the TRN, its optimizer and schedule, the epochs done, the best state."""

    def __init__(self, traced: TracedNetwork, cut: CutPoint, block_cuts: list[CutPoint], classifier: nn.Module,
                 dataset: Dataset, config: FineTuneConfig, head: HeadSpec = HeadSpec(),
                 teacher_logits: np.ndarray | None = None) -> None:
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
        self.peaks = [config.lr]
        if trunk:
            groups.append({"params": trunk, "lr": config.lr * config.trunk_lr_factor})
            self.peaks.append(config.lr * config.trunk_lr_factor)
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        train_images = len(dataset.splits["train"])
        self.rungs = plan_epochs(train_images, config)
        per_epoch = steps_per_epoch(train_images, config.batch_size)
        self.boundaries = [e * per_epoch for e in self.rungs]  # the step at which each rung's cycle ends
        self.step = 0
        # soft targets of the teacher, one row per training image (in the order of the train split), or None
        self.teacher = None if teacher_logits is None else torch.from_numpy(np.asarray(teacher_logits, np.float32))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[float] = []  # validation score after each epoch
        self.start_score = float("-inf")  # the probe's, before any epoch: epoch 0 of the race
        self.best_score = float("-inf")
        self.best_metrics: dict[str, float] = {}  # validation metrics of the best state
        self.best_state: dict[str, torch.Tensor] = {}
        self.seconds = 0.0

    @property
    def best_epoch(self) -> int:
        """1-based epoch of the best validation score; 0: no epoch beat the probe it started from."""
        if not self.history or max(self.history) <= self.start_score + 1e-9:
            return 0
        return 1 + int(np.argmax(self.history))

    def _keep_if_best(self, metrics: dict[str, float]) -> None:
        if metrics["score"] > self.best_score + 1e-9:
            self.best_score, self.best_metrics = metrics["score"], dict(metrics)
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.trn.state_dict().items()}

    def train_epoch(self, reporter: Reporter = QUIET) -> float:
        """One epoch over the shuffled training images; returns the validation score after it."""
        start = time.perf_counter()
        if self.epoch == 0 and not self.best_state:
            # the probe is epoch 0 of the race: the best state, the one kept, can only improve on it (a few hundred
            # images and a learning rate that hurts the pretrained features must not end below the probe)
            probe = self.evaluate("val")
            self.start_score = probe["score"]
            self._keep_if_best(probe)
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
        label = f"fine-tuning {b.name} @ {self.cut.name}, epoch {self.epoch + 1}/{self.rungs[-1]}"
        batches = self.dataset.batches("train", self.traced.input_size, b.mean, b.std, c.batch_size, order)
        with torch.inference_mode(False), reporter.bar(label, steps) as advance:
            for i, (x, y) in enumerate(batches):
                x = augment(x, self.generator, c.shift, c.flip).to(self.device, memory_format=torch.channels_last)
                y = y.to(self.device)
                for group, peak in zip(self.optimizer.param_groups, self.peaks, strict=True):
                    group["lr"] = peak * lr_multiplier(self.step, self.boundaries, c.warmup)
                self.optimizer.zero_grad(set_to_none=True)
                with autocast:
                    logits = self.trn(x).float()
                loss = loss_fn(logits, y, c.label_smoothing if y.dim() == 1 else 0.0)
                if self.teacher is not None and c.distill_weight > 0:
                    soft = self.teacher[order[i * c.batch_size:(i + 1) * c.batch_size]].to(self.device)
                    loss = (1 - c.distill_weight) * loss + c.distill_weight * distillation_loss(
                        logits, soft, c.distill_temperature)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                advance()
        self.epoch += 1
        metrics = self.evaluate("val")
        score = metrics["score"]
        self.history.append(score)
        self._keep_if_best(metrics)
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
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "step": self.step,
                "epoch": self.epoch, "history": list(self.history), "best_score": self.best_score,
                "best_metrics": dict(self.best_metrics),
                "start_score": self.start_score,
                "best_state": self.best_state, "seconds": self.seconds}

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint."""
        self.trn.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step = int(checkpoint["step"])
        self.epoch = int(checkpoint["epoch"])
        self.history = [float(v) for v in checkpoint["history"]]
        self.best_score = float(checkpoint["best_score"])
        self.best_metrics = dict(checkpoint["best_metrics"])
        self.start_score = float(checkpoint["start_score"])
        self.best_state = dict(checkpoint["best_state"])
        self.seconds = float(checkpoint["seconds"])

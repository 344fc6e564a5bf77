"""Fine-tuning: it improves on the probe, resumes exactly from a checkpoint, and successive halving plans rungs.

NETCUT_TEST_DEVICE=cuda runs the same tests on a GPU (where one is lent; see docs/fine_tuning.md).
"""

from __future__ import annotations

import os

import pytest
import torch

from netcut.backbones import load_backbone
from netcut.data.datasets import SplitConfig, load_dataset
from netcut.graph import find_cuts, trace
from netcut.train.cache import extract_features
from netcut.train.finetune import (
    ALL_BLOCKS,
    FineTuneConfig,
    FineTuner,
    lr_multiplier,
    plan_epochs,
    trainable_parameter_names,
)
from netcut.train.probe import TrainConfig, fit_head

DEVICE = os.environ.get("NETCUT_TEST_DEVICE", "cpu")


@pytest.fixture(scope="module")
def setting():
    """Lite0 at 32 px on 300 digits, cut in its middle, with a probe trained on cached features."""
    data = load_dataset("digits", SplitConfig(limit_train=300, limit_test=150))
    traced = trace(load_backbone("efficientnet_lite0"), 32)
    cuts = find_cuts(traced)
    cut = cuts[9]
    features = {s: extract_features(traced, [cut.name], data, s) for s in ("train", "val", "test")}
    (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))
    probe = fit_head(tx[cut.name], ty, vx[cut.name], vy, 10, TrainConfig(), sx[cut.name], sy)
    return data, traced, cuts, cut, probe


def tuner(setting, **config) -> FineTuner:
    data, traced, cuts, cut, probe = setting
    return FineTuner(traced, cut, cuts, probe.classifier, data,
                     FineTuneConfig(max_epochs=4, batch_size=32, device=DEVICE, **config))


def test_fine_tuning_every_layer_beats_the_probe(setting):
    t = tuner(setting)
    start = t.evaluate("val")["score"]
    assert start == pytest.approx(setting[4].val["score"], abs=1e-6)  # it starts from the probe, exactly
    first_rung = t.rungs[0]
    for _ in range(first_rung):
        t.train_epoch()
    assert t.best_score > start and t.epoch == first_rung and len(t.history) == first_rung
    trn = t.best()
    assert next(trn.parameters()).device.type == "cpu"
    assert t.best_epoch == 1 + max(range(first_rung), key=lambda i: t.history[i])


def test_a_fine_tuning_that_hurts_ends_at_its_probe(setting):
    """A learning rate that wrecks the pretrained features: the race's epoch 0 is the probe, so the network kept is
    the probe itself, never below it."""
    t = tuner(setting, lr=5.0)
    t.train_epoch()
    probe_val = setting[4].val["score"]
    assert t.history[0] < probe_val - 0.1  # the epoch did hurt
    assert t.best_score == pytest.approx(probe_val, abs=1e-6) and t.best_epoch == 0
    data, traced, cuts, cut, probe = setting
    from netcut.train.finetune import evaluate_images

    b = traced.backbone
    kept = evaluate_images(t.best(), data, "val", traced.input_size, b.mean, b.std)["score"]
    assert kept == pytest.approx(probe_val, abs=1e-6)


def test_distillation_follows_the_teacher():
    """Soft targets at full weight from a teacher that names the next class: the fine-tuned network learns the
    teacher's answers, not the labels (the loss reads the teacher row of each augmented training image)."""
    from netcut.train.finetune import distillation_loss, predict_images

    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert float(distillation_loss(logits, logits, 2.0)) == pytest.approx(0.0, abs=1e-7)
    assert float(distillation_loss(logits, logits.flip(1), 2.0)) > 0.1
    data = load_dataset("digits", SplitConfig(limit_train=200, limit_test=100))
    traced = trace(load_backbone("efficientnet_lite0"), 32)
    cuts = find_cuts(traced)
    cut = cuts[9]
    features = {s: extract_features(traced, [cut.name], data, s) for s in ("train", "val")}
    (tx, ty), (vx, vy) = features["train"], features["val"]
    probe = fit_head(tx[cut.name], ty, vx[cut.name], vy, 10, TrainConfig())
    shifted = (data.split_targets("train") + 1) % 10
    teacher = torch.nn.functional.one_hot(torch.from_numpy(shifted).long(), 10).float().numpy() * 8.0
    config = FineTuneConfig(batch_size=32, device=DEVICE, distill_weight=1.0, min_steps=0, max_epochs=6)
    t = FineTuner(traced, cut, cuts, probe.classifier, data, config, teacher_logits=teacher)
    for _ in range(6):
        t.train_epoch()
    b = traced.backbone
    out, targets = predict_images(t.trn.cpu(), data, "val", 32, b.mean, b.std)
    predicted = out.argmax(1)
    follows_teacher = float((predicted == (targets + 1) % 10).float().mean())
    assert follows_teacher > 0.5 and follows_teacher > float((predicted == targets).float().mean())


def test_a_checkpoint_resumes_exactly(setting):
    straight = tuner(setting)
    straight.train_epoch()
    straight.train_epoch()
    first = tuner(setting)
    first.train_epoch()
    saved = first.checkpoint()
    resumed = tuner(setting)
    resumed.restore({k: v for k, v in saved.items()})
    resumed.train_epoch()
    assert resumed.epoch == 2 and resumed.history == pytest.approx(straight.history, abs=1e-6)
    a, b = straight.trn.state_dict(), resumed.trn.state_dict()
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-5) for k in a)


def test_last_blocks_only_leaves_the_rest_alone(setting):
    data, traced, cuts, cut, _ = setting
    names = trainable_parameter_names(traced, cuts, cut, 1)
    assert names and trainable_parameter_names(traced, cuts, cut, ALL_BLOCKS) is None
    t = tuner(setting, blocks=1)
    before = {n: p.detach().clone() for n, p in t.trn.prefix.named_parameters()}
    t.train_epoch()
    changed = {n for n, p in t.trn.prefix.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert changed and changed <= names


def test_successive_halving_rungs_count_steps_not_passes():
    """On plenty of data the rungs are 1, 2, 4, ... epochs; on a few hundred images an epoch is a few steps, so the
    first rung and the horizon stretch to enough steps (bounded)."""
    plenty = FineTuneConfig(max_epochs=8)
    assert plan_epochs(60_000, plenty) == [1, 2, 4, 8]
    assert plan_epochs(60_000, FineTuneConfig(max_epochs=6)) == [1, 2, 4, 6]
    assert plan_epochs(60_000, FineTuneConfig(max_epochs=1)) == [1]
    small = plan_epochs(420, plenty)  # 7 steps per epoch
    assert small[0] * 7 >= plenty.min_rung_steps and small[-1] * 7 >= plenty.min_steps
    assert small == sorted(small) and small[-1] == 58
    assert plan_epochs(64, plenty)[-1] == 8 * 8  # one step per epoch: the horizon is capped


def test_every_rung_ends_decayed_and_restarts_warm():
    """A cycle per rung: the learning rate warms up, peaks, and is down to 1% at each rung's last step, so the
    entrants of a rung are judged at the same settled point of their schedules."""
    boundaries = [10, 20, 40]
    lrs = [lr_multiplier(s, boundaries, 0.2) for s in range(45)]
    assert max(lrs[:10]) == pytest.approx(1.0)
    assert lrs[9] == lrs[19] == lrs[39] == pytest.approx(0.01)
    assert lrs[10] > lrs[9] and lrs[20] > lrs[19]  # each rung restarts
    assert lrs[0] < lrs[1] <= 1.0  # warm-up
    assert lrs[44] == pytest.approx(0.01)  # past the horizon: the floor


def test_fine_tuning_trains_the_backbones_training_mode_graph():
    """A backbone whose forward drops activations only while training: the TRN fine-tuning trains does so too
    (the eval-mode trace alone would have baked it out), and in eval it is the plain prefix, weights and all."""
    from netcut.backbones import from_module
    from netcut.graph import DualModePrefix, build_prefix
    from netcut.model import build_trn
    from tiny_models import Chain, DropChain

    torch.manual_seed(0)
    traced = trace(from_module(DropChain(), input_size=32))
    cut = next(c for c in find_cuts(traced) if c.name.startswith("blocks.1"))
    trn = build_trn(traced, cut, 3, for_training=True)
    assert isinstance(trn.prefix, DualModePrefix)
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():  # in eval: the plain prefix, deterministic
        assert torch.equal(trn.prefix(x), build_prefix(traced, cut.name)(x)) and torch.equal(trn(x), trn(x))
    trn.train()
    torch.manual_seed(1)
    first = trn(x)
    torch.manual_seed(2)
    assert not torch.allclose(first, trn(x))  # dropout is active while training
    trn.eval()
    # the state dict is a plain TRN's: a fine-tuned checkpoint loads into the network export rebuilds
    exported = build_trn(traced, cut, 3)
    exported.load_state_dict(trn.state_dict())
    with torch.no_grad():
        assert torch.equal(exported(x), trn(x))
    # a backbone that does nothing else while training gets the plain prefix
    chain = trace(from_module(Chain(), input_size=32))
    assert chain.training_graph() is None
    assert not isinstance(build_trn(chain, find_cuts(chain)[1], 3, for_training=True).prefix, DualModePrefix)

"""Feature caching, heads, metrics, fine-tuning: correctness, determinism, and speed where it matters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from netcut.backbones import from_module, load_backbone
from netcut.data.datasets import SplitConfig, load_dataset
from netcut.graph import build_prefix, find_cuts, trace
from netcut.model import HeadSpec, build_trn
from netcut.train.cache import cached_features, extract_features
from netcut.train.finetune import evaluate_images
from netcut.train.metrics import angular_similarity, evaluate, top1_agreement
from netcut.train.probe import TrainConfig, fit_head
from tiny_models import Chain


def test_angular_similarity_formula():
    same = torch.tensor([[0.2, 0.8]])
    assert angular_similarity(same, same) == pytest.approx(1.0)
    assert angular_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(0.0)
    # cosine 0.5 -> theta = pi/3 -> 1 - 2/3
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, math.sqrt(3) / 2]])
    assert angular_similarity(a, b) == pytest.approx(1 / 3, abs=1e-6)
    assert top1_agreement(torch.tensor([[0.6, 0.4], [0.1, 0.9]]), torch.tensor([[0.9, 0.1], [0.8, 0.2]])) == 0.5


def test_evaluate_picks_the_task_metric():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    # cross-entropy: -log softmax of the true class, averaged
    nll = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1)) + math.log(1 + math.exp(3))) / 3
    expected = {"score": pytest.approx(2 / 3), "accuracy": pytest.approx(2 / 3), "loss": pytest.approx(nll),
                "count": 3.0}
    assert evaluate(logits, torch.tensor([0, 1, 1])) == expected
    soft = evaluate(logits, torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]]))
    assert set(soft) == {"score", "angular_similarity", "top1_agreement", "loss", "count"}
    assert soft["loss"] > evaluate(logits, torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))["loss"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", SplitConfig(limit_train=300, limit_test=150))


def test_one_pass_features_equal_each_prefix_pooled(digits):
    traced = trace(from_module(Chain(), input_size=32))
    cuts = [c.name for c in find_cuts(traced, "layer")]
    features, targets = extract_features(traced, cuts, digits, "val")
    x = torch.cat([b for b, _ in digits.batches("val", 32, traced.backbone.mean, traced.backbone.std)])
    with torch.inference_mode():
        for name in cuts:
            expected = build_prefix(traced, name)(x).mean(dim=(2, 3)).numpy()
            assert np.allclose(features[name], expected, atol=1e-6), name
    assert np.array_equal(targets, digits.split_targets("val"))


def test_cache_is_reused_and_keyed_by_weights(tmp_path, digits, monkeypatch):
    from netcut.train import cache

    traced = trace(from_module(Chain(), input_size=32))
    cuts = [c.name for c in find_cuts(traced)]
    first, _ = cached_features(tmp_path, traced, cuts, digits, "train", "weightsA")
    monkeypatch.setattr(cache, "extract_features", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    again, _ = cached_features(tmp_path, traced, cuts, digits, "train", "weightsA")
    assert all(np.array_equal(first[c], again[c]) for c in cuts)
    with pytest.raises(AssertionError, match="recomputed"):
        cached_features(tmp_path, traced, cuts, digits, "train", "weightsB")


def test_augmented_views_multiply_training_rows(digits):
    traced = trace(from_module(Chain(), input_size=32))
    cuts = [find_cuts(traced)[-1].name]
    plain, _ = extract_features(traced, cuts, digits, "train")
    augmented, targets = extract_features(traced, cuts, digits, "train", views=2, seed=3)
    n = len(digits.splits["train"])
    assert augmented[cuts[0]].shape[0] == 3 * n and len(targets) == 3 * n
    assert np.allclose(augmented[cuts[0]][:n], plain[cuts[0]], atol=1e-6)
    assert not np.allclose(augmented[cuts[0]][n:2 * n], plain[cuts[0]], atol=1e-3)


@pytest.fixture(scope="module")
def lite0_features(digits):
    traced = trace(load_backbone("efficientnet_lite0"), 64)
    cuts = find_cuts(traced)
    names = [c.name for c in cuts]
    return traced, cuts, {s: extract_features(traced, names, digits, s) for s in ("train", "val", "test")}


def _fit(features, cut, config=None):
    config = config or TrainConfig()
    (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))
    return fit_head(tx[cut], ty, vx[cut], vy, 10, config, sx[cut], sy)


def test_head_training_is_deterministic_and_learns(lite0_features):
    traced, cuts, features = lite0_features
    a, b = _fit(features, cuts[8].name), _fit(features, cuts[8].name)
    assert a.test == b.test and a.epochs_run == b.epochs_run
    pairs = zip(a.classifier.state_dict().values(), b.classifier.state_dict().values())
    assert all(torch.equal(p, q) for p, q in pairs)
    assert a.test["accuracy"] > 0.7  # digits are easy; chance is 0.1


def test_trained_head_drops_into_the_trn_unchanged(lite0_features, digits):
    """Folding the feature standardisation into the head is exact: the assembled TRN scores like the cache."""
    traced, cuts, features = lite0_features
    result = _fit(features, cuts[10].name, TrainConfig(head=HeadSpec(hidden=32)))
    trn = build_trn(traced, cuts[10], 10, HeadSpec(hidden=32), result.classifier)
    b = traced.backbone
    assert evaluate_images(trn, digits, "test", 64, b.mean, b.std)["accuracy"] == pytest.approx(
        result.test["accuracy"], abs=1e-9)


def test_soft_labels_train_towards_the_target_distribution(lite0_features):
    traced, cuts, features = lite0_features
    (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))

    def soften(y):
        return (np.eye(10, dtype=np.float32)[y] * 0.7 + 0.03).astype(np.float32)

    cut = cuts[10].name
    result = fit_head(tx[cut], soften(ty), vx[cut], soften(vy), 10, TrainConfig(), sx[cut], soften(sy))
    uniform = angular_similarity(torch.full((len(sy), 10), 0.1), torch.from_numpy(soften(sy)))
    assert result.test["angular_similarity"] > uniform + 0.2
    assert result.test["top1_agreement"] > 0.7


def test_features_constant_in_training_get_no_weight():
    """int8 features of a wide layer are often exactly constant: a later nonzero value must not blow up the logits."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    x = rng.standard_normal((200, 6)).astype(np.float32)
    x[:, 0] += 3 * y  # informative
    x[:, 4] = 0.0  # dead in training
    x[:, 5] = 1e-9 * rng.standard_normal(200)  # numerically dead
    result = fit_head(x[:150], y[:150], x[150:], y[150:], 3, TrainConfig(epochs=300, patience=300), x[150:],
                      y[150:])
    weight = result.classifier[1].weight
    assert torch.all(weight[:, 4] == 0) and torch.all(weight[:, 5] == 0) and weight[:, 0].abs().max() > 0
    shifted = x[150:].copy()
    shifted[:, 4] = 5.0  # the dead feature moves at deployment
    with torch.no_grad():
        a = result.classifier(torch.from_numpy(x[150:]))
        b = result.classifier(torch.from_numpy(shifted))
    assert torch.allclose(a, b) and result.test["accuracy"] > 0.8


def test_head2toe_selects_the_informative_cut_and_drops_into_the_trn(lite0_features, digits):
    """A multi head keeps the pooled features that carry the labels, and the TRN it builds scores like the cache."""
    from netcut.model import MultiHead
    from netcut.train.probe import fit_multi_head

    traced, cuts, features = lite0_features
    (tx, ty), (vx, vy), (sx, sy) = (features[s] for s in ("train", "val", "test"))
    k = cuts[10]
    reads = [c.name for c in cuts if c.index <= k.index]
    config = TrainConfig(head=HeadSpec(kind="multi", features=64))
    result = fit_multi_head(tx, ty, vx, vy, reads, 10, config, sx, sy)
    head = result.classifier
    assert isinstance(head, MultiHead) and set(head.cuts) <= set(reads)
    assert sum(len(i) for i in head.selections()) == 64 and result.test["accuracy"] > 0.7
    trn = build_trn(traced, k, 10, config.head, head)
    b = traced.backbone
    assert evaluate_images(trn, digits, "test", 64, b.mean, b.std)["accuracy"] == pytest.approx(
        result.test["accuracy"], abs=1e-9)
    again = MultiHead.from_state(head.cuts, head.state_dict(), 10, config.head)
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(trn(x), build_trn(traced, k, 10, config.head, again)(x))


def test_head2toe_finds_the_labels_in_an_early_cut():
    from netcut.train.probe import fit_multi_head

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    early = rng.standard_normal((400, 8)).astype(np.float32)
    early[:, 3] += 4.0 * y  # only the early cut's channel 3 knows the label
    late = rng.standard_normal((400, 16)).astype(np.float32)
    splits = {"train": slice(0, 250), "val": slice(250, 325), "test": slice(325, 400)}
    feats = {s: {"a": early[sl], "b": late[sl]} for s, sl in splits.items()}
    result = fit_multi_head(feats["train"], y[:250], feats["val"], y[250:325], ["a", "b"], 2,
                            TrainConfig(epochs=200, patience=200, head=HeadSpec(kind="multi", features=2)),
                            feats["test"], y[325:])
    head = result.classifier
    assert "a" in head.cuts and 3 in head.selections()[head.cuts.index("a")].tolist()
    assert result.test["accuracy"] > 0.9

"""Datasets: real Fashion-MNIST and digits, image folders with bad files, soft-label CSVs, seeded splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from netcut.data.datasets import SplitConfig, load_dataset
from netcut.errors import NetcutError

MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def test_fashion_mnist_is_the_real_dataset_with_official_test_split():
    ds = load_dataset("fashion-mnist")
    assert ds.num_classes == 10 and len(ds.targets) == 70000
    assert len(ds.splits["test"]) == 10000 and ds.splits["test"].min() == 60000
    assert len(ds.splits["train"]) + len(ds.splits["val"]) == 60000
    assert np.bincount(ds.split_targets("test")).tolist() == [1000] * 10
    x, y = next(ds.batches("train", 32, MEAN, STD, batch_size=8))
    assert x.shape == (8, 3, 32, 32) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert torch.equal(x[:, 0], x[:, 1])  # grayscale expanded to 3 channels


def test_splits_are_seeded_disjoint_and_limited():
    a = load_dataset("digits", SplitConfig(seed=1, limit_train=200, limit_test=100))
    b = load_dataset("digits", SplitConfig(seed=1, limit_train=200, limit_test=100))
    c = load_dataset("digits", SplitConfig(seed=2, limit_train=200, limit_test=100))
    assert all(np.array_equal(a.splits[k], b.splits[k]) for k in a.splits)
    assert not np.array_equal(a.splits["train"], c.splits["train"])
    assert (len(a.splits["train"]), len(a.splits["val"]), len(a.splits["test"])) == (200, 50, 100)
    assert not set(a.splits["train"]) & set(a.splits["test"]) and not set(a.splits["val"]) & set(a.splits["test"])
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_folder_skips_corrupt_and_truncated_images_and_uses_the_rest(photo_folder):
    ds = load_dataset(str(photo_folder), SplitConfig(val_fraction=0.2, test_fraction=0.2), probe_size=32)
    assert ds.classes == ["cat", "coffee", "rocket"]
    assert ds.skipped == 2 and len(ds.targets) == 18
    assert "skipped 2 unreadable" in ds.notes[0]
    x, _ = next(ds.batches("train", 48, MEAN, STD))
    assert x.shape[1:] == (3, 48, 48)


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "does not exist"),
    (lambda root: root.mkdir(), "no class sub-folders"),
    (lambda root: (root / "a").mkdir(parents=True), "has no images"),
    (lambda root: ((root / "a").mkdir(parents=True), (root / "a" / "x.png").write_bytes(b"junk")), "could be decoded"),
])
def test_bad_folders_fail_clearly(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(NetcutError, match=message):
        load_dataset(str(root), probe_size=32)


def _write_csv(tmp_path, photo_folder, rows: list[str]) -> str:
    path = photo_folder / "labels.csv"
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def test_soft_label_csv(tmp_path, photo_folder):
    rows = ["path,power,precision,lateral"]
    for i in range(6):
        rows += [f"cat/{i}.png,0.7,0.2,0.1", f"coffee/{i}.png,0.1,0.8,0.1", f"rocket/{i}.png,0.2,0.2,0.6"]
    ds = load_dataset(_write_csv(tmp_path, photo_folder, rows), SplitConfig(val_fraction=0.2, test_fraction=0.2),
                      probe_size=32)
    assert ds.soft and ds.classes == ["power", "precision", "lateral"] and ds.targets.shape == (18, 3)
    assert np.allclose(ds.targets.sum(1), 1.0)


@pytest.mark.parametrize("bad_row, message", [
    ("cat/1.png,0.5,0.2,0.2", ":3: probabilities must be ≥ 0 and sum to 1"),
    ("cat/1.png,0.5,0.5", ":3: expected 3 probabilities, got 2"),
    ("cat/1.png,a,b,c", ":3: probabilities must be numbers"),
    ("cat/1.png,1.2,-0.1,-0.1", ":3: probabilities must be ≥ 0"),
])
def test_bad_csv_rows_name_the_line(tmp_path, photo_folder, bad_row, message):
    path = _write_csv(tmp_path, photo_folder, ["path,a,b,c", "cat/0.png,1,0,0", bad_row])
    with pytest.raises(NetcutError, match=message):
        load_dataset(path, probe_size=32)


def test_missing_fashion_mnist_gives_the_install_command(monkeypatch, tmp_path):
    from netcut.data import datasets

    with pytest.raises(NetcutError) as info:
        datasets.load_fashion_mnist(SplitConfig(), root=tmp_path)
    assert "apt-get install -y dataset-fashion-mnist" in info.value.hint


def test_user_torch_dataset():
    from netcut.data.datasets import from_torch_dataset

    class Squares(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return torch.full((1, 10, 10), i / 40.0), i % 2

    ds = from_torch_dataset(Squares(), ["even", "odd"], SplitConfig(val_fraction=0.25, test_fraction=0.25))
    x, y = next(ds.batches("train", 16, MEAN, STD))
    assert x.shape[1:] == (3, 16, 16) and set(y.tolist()) <= {0, 1}


class _Pairs(torch.utils.data.Dataset):
    """A torch dataset of structured images: a bright square whose position says the label."""

    def __init__(self, n: int, shift: int) -> None:
        self.n, self.shift = n, shift

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        image = torch.zeros(1, 16, 16)
        label = i % 2
        image[:, 4 * label + self.shift:4 * label + self.shift + 4, 2:6] = 1.0
        return image, label


def test_two_torch_datasets_of_one_size_and_name_never_share_an_identity():
    from netcut.data.datasets import from_torch_dataset

    a = from_torch_dataset(_Pairs(40, 0), ["even", "odd"])
    again = from_torch_dataset(_Pairs(40, 0), ["even", "odd"])
    other = from_torch_dataset(_Pairs(40, 1), ["even", "odd"])  # same size, same labels, other pixels
    assert a.fingerprint() == again.fingerprint() != other.fingerprint()
    # what the fingerprint keys: the feature cache and the stored training records
    from netcut.backbones import from_module
    from netcut.graph import trace
    from netcut.search.keys import training_key
    from netcut.train.cache import cache_key
    from tiny_models import Chain

    traced = trace(from_module(Chain(), input_size=32))
    assert cache_key(traced, "w", ["c"], a, 1, 0) == cache_key(traced, "w", ["c"], again, 1, 0)
    assert cache_key(traced, "w", ["c"], a, 1, 0) != cache_key(traced, "w", ["c"], other, 1, 0)
    assert training_key("m", "c", "linear", a.fingerprint(), "t") != training_key("m", "c", "linear",
                                                                                    other.fingerprint(), "t")


def test_a_soft_label_csvs_identity_covers_the_images_it_lists(soft_labels):
    from PIL import Image

    before = load_dataset(str(soft_labels), SplitConfig(val_fraction=0.2, test_fraction=0.2), probe_size=32)
    image = soft_labels.parent / "cat" / "0.png"
    with Image.open(image) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(image)  # the CSV itself is untouched
    after = load_dataset(str(soft_labels), SplitConfig(val_fraction=0.2, test_fraction=0.2), probe_size=32)
    assert before.fingerprint() != after.fingerprint()

"""The data layer on the real files (the sizes the issue asks for) and on bad input."""
import pytest
import torch
from dbp_ae.data import load_dataset


@pytest.mark.parametrize("name,split,n,shape", [
    ("mnist", "train", 60_000, (1, 28, 28)), ("mnist", "test", 10_000, (1, 28, 28)),
    ("svhn", "train", 8_000, (3, 32, 32)), ("svhn", "test", 2_000, (3, 32, 32)),
    ("celeba", "train", 8_000, (3, 64, 64)), ("celeba", "valid", 1_000, (3, 64, 64)), ("celeba", "test", 1_000, (3, 64, 64)),
])
def test_real_sizes(data_dir, name, split, n, shape):
    ds = load_dataset(name, split, root=data_dir)
    assert len(ds) == n
    x, y = ds[n - 1]
    assert tuple(x.shape) == shape and x.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    assert isinstance(y, int)


def test_sample_needs_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("DBP_AE_DATA", str(tmp_path / "nothing-here"))
    assert [len(load_dataset("mnist-sample", s)) for s in ("train", "test")] == [4000, 1000]


def test_unknown_and_missing(tmp_path):
    with pytest.raises(ValueError, match="valid: mnist, mnist-sample, svhn, celeba"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte") as e:
        load_dataset("mnist", root=tmp_path)
    assert str(tmp_path) in str(e.value) and "download=True" in str(e.value)


def test_celeba_attribute_labels(data_dir):
    ds = load_dataset("celeba", "test", root=data_dir, target="Male")
    frac = ds.labels.float().mean().item()
    assert 0.2 < frac < 0.7  # 42% male in the subset's attribute file

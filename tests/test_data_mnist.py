"""The MNIST loader: real files when present, and fabricated files for every failure it must name."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest

from rbpsolve.adapters.tasks.data import DataFileError, data_root
from rbpsolve.adapters.tasks.data import mnist
from rbpsolve.adapters.tasks.data.mnist import load_mnist, mnist_paths


def _real_files_present():
    folder = data_root() / "mnist"
    return all((folder / name).is_file() for name in mnist.FILES)


real = pytest.mark.skipif(not _real_files_present(),
                          reason="real MNIST idx .gz files not found under $RBPSOLVE_DATA/mnist "
                                 "(set RBPSOLVE_DATA to ../shared/data)")


@real
def test_real_test_split():
    images, labels = load_mnist("test")
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first t10k labels


@real
def test_real_train_split():
    images, labels = load_mnist("train", root=data_root())
    assert images.shape == (60_000, 28, 28) and labels.shape == (60_000,)
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    # The paper's Hopfield patterns: first training image of each digit.
    assert [int(np.argmax(labels == d)) for d in range(10)] == [1, 3, 5, 7, 2, 0, 13, 15, 17, 4]


# -- fabricated files ---------------------------------------------------------------------------

N = 3


def _idx(magic, dims, payload):
    header = np.array([magic, *dims], dtype=">u4").tobytes()
    return gzip.compress(header + payload, mtime=0)


def _write(tmp_path, monkeypatch, *, image_magic=2051, label_magic=2049, n_payload=N, labels=None):
    """Write a 3-image 'test' split and register its checksums as the published ones."""
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n_payload, 28, 28), dtype=np.uint8)
    labs = np.arange(N, dtype=np.uint8) if labels is None else labels
    folder = tmp_path / "mnist"
    folder.mkdir()
    blobs = {"t10k-images-idx3-ubyte.gz": _idx(image_magic, (N, 28, 28), imgs.tobytes()),
             "t10k-labels-idx1-ubyte.gz": _idx(label_magic, (N,), labs.tobytes())}
    table = dict(mnist.FILES)
    for name, blob in blobs.items():
        (folder / name).write_bytes(blob)
        table[name] = (len(blob), hashlib.sha256(blob).hexdigest())
    monkeypatch.setattr(mnist, "FILES", table)
    monkeypatch.setattr(mnist, "_SPLITS", {"train": ("train", N), "test": ("t10k", N)})
    return imgs, labs


def test_fabricated_well_formed_files_parse(tmp_path, monkeypatch):
    imgs, labs = _write(tmp_path, monkeypatch)
    images, labels = load_mnist("test", root=tmp_path)
    np.testing.assert_array_equal(images, imgs)
    np.testing.assert_array_equal(labels, labs)


def test_missing_file_names_file_and_fix(tmp_path):
    with pytest.raises(DataFileError, match=r"t10k-images-idx3-ubyte\.gz is missing.*download=True"):
        load_mnist("test", root=tmp_path)


def test_truncated_file(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch)
    path = mnist_paths("test", tmp_path)[0]
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataFileError, match="truncated"):
        load_mnist("test", root=tmp_path)


def test_altered_checksum(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch)
    path = mnist_paths("test", tmp_path)[1]
    blob = bytearray(path.read_bytes())
    blob[-9] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(blob))
    with pytest.raises(DataFileError, match=r"t10k-labels-idx1-ubyte\.gz has sha256 .* altered"):
        load_mnist("test", root=tmp_path)


def test_real_checksum_table_rejects_fabricated_file(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    blob = _idx(2051, (N, 28, 28), bytes(N * 784))
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(blob)
    with pytest.raises(DataFileError, match="has .* bytes but the published file has 1648877"):
        load_mnist("test", root=tmp_path)


@pytest.mark.parametrize("which", ["image", "label"])
def test_bad_magic(tmp_path, monkeypatch, which):
    kwargs = {"image_magic": 2049} if which == "image" else {"label_magic": 2051}
    _write(tmp_path, monkeypatch, **kwargs)
    with pytest.raises(DataFileError, match="magic number"):
        load_mnist("test", root=tmp_path)


def test_payload_shorter_than_header_declares(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, n_payload=N - 1)
    with pytest.raises(DataFileError, match="data bytes, its header declares"):
        load_mnist("test", root=tmp_path)


def test_label_out_of_range(tmp_path, monkeypatch):
    _write(tmp_path, monkeypatch, labels=np.array([0, 1, 12], dtype=np.uint8))
    with pytest.raises(DataFileError, match="label 12"):
        load_mnist("test", root=tmp_path)


def test_bad_split():
    with pytest.raises(ValueError, match="'train' or 'test'"):
        load_mnist("validation")


def test_download_fetches_missing_files_from_mirror(tmp_path, monkeypatch):
    (tmp_path / "mirror_src").mkdir()
    imgs, labs = _write(tmp_path / "mirror_src", monkeypatch)
    mirror = (tmp_path / "mirror_src" / "mnist").as_uri() + "/"
    monkeypatch.setattr(mnist, "MIRRORS", ("file:///nonexistent/mirror/", mirror))
    images, labels = load_mnist("test", root=tmp_path / "dest", download=True)
    np.testing.assert_array_equal(images, imgs)
    np.testing.assert_array_equal(labels, labs)
    assert sorted(p.name for p in (tmp_path / "dest" / "mnist").iterdir()) == sorted(
        ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])


def test_no_download_unless_asked(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("download called without download=True")

    monkeypatch.setattr(mnist, "download", boom)
    with pytest.raises(DataFileError, match="missing"):
        load_mnist("train", root=tmp_path)

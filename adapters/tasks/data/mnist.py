"""MNIST from its original idx ``.gz`` files, checksum-verified before any parsing.

The four files (LeCun, Cortes & Burges; LeCun et al. 1998) live in ``<data_root>/mnist/``
(:func:`~rbpsolve.adapters.tasks.data.data_root`). Each is checked against its published size and
sha256 (:data:`FILES`) before it is decompressed, then its idx header is checked: magic number
2051 (``0x00000803``, unsigned bytes, 3 dimensions) for images and 2049 (``0x00000801``, 1 dimension)
for labels, the expected count, 28 x 28 images, and a payload of exactly ``count * rows * cols`` bytes.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ._files import DataFileError, data_root, download, verified_path

__all__ = ["FILES", "MIRRORS", "load_mnist", "mnist_paths"]

#: ``name -> (bytes, sha256)`` of the published ``.gz`` files (see shared/data/README.md).
FILES: dict[str, tuple[int, str]] = {
    "train-images-idx3-ubyte.gz": (9_912_422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "train-labels-idx1-ubyte.gz": (28_881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "t10k-images-idx3-ubyte.gz": (1_648_877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "t10k-labels-idx1-ubyte.gz": (4_542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

#: Canonical mirrors, tried in order by ``download=True`` (the original yann.lecun.com host now
#: refuses anonymous downloads, so it is last).
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

_SPLITS = {"train": ("train", 60_000), "test": ("t10k", 10_000)}
_IMAGE_MAGIC, _LABEL_MAGIC = 2051, 2049
_ROWS = _COLS = 28


def mnist_paths(split: str, root: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The (images, labels) ``.gz`` paths of a split, without checking them.

    Parameters
    ----------
    split : {"train", "test"}
    root : path-like, optional
        Data directory (holding ``mnist/``); default :func:`data_root`.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    prefix = _SPLITS[split][0]
    folder = data_root(root) / "mnist"
    return folder / f"{prefix}-images-idx3-ubyte.gz", folder / f"{prefix}-labels-idx1-ubyte.gz"


def _hint(path: Path) -> str:
    return (f"Fetch it with load_mnist(..., download=True) on a machine with network access, or copy "
            f"{path.name} from {MIRRORS[0]} into {path.parent}.")


def _ensure(path: Path, download_missing: bool) -> Path:
    size, sha = FILES[path.name]
    if download_missing and not path.is_file():
        download([m + path.name for m in MIRRORS], path, sha256=sha, size=size)
    return verified_path(path, sha256=sha, size=size, hint=_hint(path))


def _read_idx(path: Path, magic: int, count: int, item_shape: tuple[int, ...]) -> np.ndarray:
    """Parse a verified idx ``.gz`` file: header ``magic, count, *dims`` (big-endian uint32), then uint8 data."""
    try:
        with gzip.open(path, "rb") as handle:
            raw = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"data file {path} is not a valid gzip file ({error}). {_hint(path)}") from error
    header_len = 4 * (2 + len(item_shape))
    if len(raw) < header_len:
        raise DataFileError(f"data file {path} is too short for an idx header ({len(raw)} bytes). {_hint(path)}")
    header = np.frombuffer(raw, dtype=">u4", count=2 + len(item_shape))
    if int(header[0]) != magic:
        raise DataFileError(
            f"data file {path} has idx magic number {int(header[0])}, expected {magic} "
            f"({'images' if magic == _IMAGE_MAGIC else 'labels'}): it is not the right MNIST file. {_hint(path)}")
    dims = tuple(int(d) for d in header[1:])
    if dims != (count, *item_shape):
        raise DataFileError(f"data file {path} declares shape {dims}, expected {(count, *item_shape)}. {_hint(path)}")
    payload = len(raw) - header_len
    expected = count * int(np.prod(item_shape, dtype=np.int64))
    if payload != expected:
        raise DataFileError(
            f"data file {path} holds {payload} data bytes, its header declares {expected}. {_hint(path)}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(count, *item_shape).copy()


def load_mnist(split: str = "train", root: str | os.PathLike | None = None, *,
               download: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split from the original idx ``.gz`` files.

    Parameters
    ----------
    split : {"train", "test"}
        60,000 training or 10,000 test ("t10k") digits.
    root : path-like, optional
        Data directory holding ``mnist/``; default the ``root`` argument, else ``$RBPSOLVE_DATA``,
        else the user cache directory.
    download : bool
        Fetch missing files from :data:`MIRRORS` (checksum-verified, atomic). Off by default: nothing
        touches the network unless asked.

    Returns
    -------
    images : numpy.ndarray
        ``uint8`` of shape ``(N, 28, 28)``, pixel values 0..255.
    labels : numpy.ndarray
        ``uint8`` of shape ``(N,)``, digits 0..9.

    Raises
    ------
    DataFileError
        If a file is missing, truncated, altered (size / sha256 checked before parsing), has the
        wrong idx magic number or declares the wrong shape; the message names the file and the fix.
    """
    images_path, labels_path = mnist_paths(split, root)
    count = _SPLITS[split][1]
    images = _read_idx(_ensure(images_path, download), _IMAGE_MAGIC, count, (_ROWS, _COLS))
    labels = _read_idx(_ensure(labels_path, download), _LABEL_MAGIC, count, ())
    if labels.size and labels.max() > 9:
        raise DataFileError(f"data file {labels_path} has a label {int(labels.max())} > 9. {_hint(labels_path)}")
    return images, labels

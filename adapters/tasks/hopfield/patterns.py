"""The memories of the associative-memory task: one binarised MNIST digit per class, and their corruption.

As in the paper's code (``runner/hopfield_runner.py`` of lrjconan/RBP): the first training
image of each digit 0..9 (training indices 1, 3, 5, 7, 2, 0, 13, 15, 17, 4), pixels > 0 set
to 1; the test set is the same 10 images with 50% of their "on" pixels set to 0.
"""

from __future__ import annotations

import numpy as np

from ..data.mnist import load_mnist

__all__ = ["load_patterns", "corrupt", "pool"]


def pool(images: np.ndarray, factor: int) -> np.ndarray:
    """Max-pool binary images ``(N, H, W)`` by ``factor`` (1: unchanged), keeping thin strokes."""
    if factor == 1:
        return images
    n, h, w = images.shape
    if h % factor or w % factor:
        raise ValueError(f"pool factor {factor} must divide the image size {h}x{w}; use 1, 2, 4, 7, 14 or 28")
    return images.reshape(n, h // factor, factor, w // factor, factor).max(axis=(2, 4))


def load_patterns(root=None, *, num: int = 10, pool_factor: int = 1, download: bool = False) -> np.ndarray:
    """The first training image of each digit ``0..num-1``, binarised (pixel > 0 -> 1).

    Parameters
    ----------
    root : path-like, optional
        Data directory (see :func:`~rbpsolve.adapters.tasks.data.mnist.load_mnist`).
    num : int
        How many digits (10 in the paper).
    pool_factor : int
        Max-pool the 28x28 images by this factor (1 in the paper; 2 gives 14x14).
    download : bool
        Let the loader fetch missing files.

    Returns
    -------
    numpy.ndarray
        float32 ``(num, 28 / pool_factor, 28 / pool_factor)`` of 0/1.
    """
    if not 1 <= num <= 10:
        raise ValueError(f"num must be between 1 and 10 digits; got {num}")
    images, labels = load_mnist("train", root, download=download)
    first = [int(np.flatnonzero(labels == digit)[0]) for digit in range(num)]
    return pool((images[first] > 0).astype(np.float32), pool_factor)


def corrupt(image: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    """Set ``int(level * #on)`` randomly chosen "on" pixels of a binary image to 0."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"corruption level must be in [0, 1]; got {level}")
    out = image.copy()
    flat = out.reshape(-1)
    on = np.flatnonzero(flat)
    flat[rng.permutation(on)[: int(len(on) * level)]] = 0.0
    return out

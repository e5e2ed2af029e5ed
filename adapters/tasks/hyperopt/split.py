"""The paper's split of the 70,000 MNIST images for the hyperparameter experiment, shared by
the torch loader (:mod:`.data`) and the numpy one (:mod:`.array_experiment`); torch-free.

The 60,000 training and 10,000 test images, in that order, are split in order into 10,000 for
training, 50,000 for validation and the 10,000 test images (``dataset/hypergrad_mnist.py`` of
lrjconan/RBP).
"""

from __future__ import annotations

__all__ = ["SPLIT", "check_sizes", "take_split"]

SPLIT = (10_000, 50_000, 10_000)


def check_sizes(sizes) -> None:
    """Refuse sizes that are not three positive counts within the 70,000 images."""
    if len(sizes) != 3 or any(int(n) < 1 for n in sizes) or sum(sizes) > 70_000:
        raise ValueError(f"sizes must be three positive counts summing to at most 70,000; got {sizes}")


def take_split(x, y, sizes) -> dict:
    """``{"train", "val", "test"}`` of ``(x, y)`` row blocks taken in order (numpy or torch)."""
    out, start = {}, 0
    for name, n in zip(("train", "val", "test"), sizes):
        out[name] = (x[start:start + n], y[start:start + n])
        start += n
    return out

"""The MNIST split of the paper's hyperparameter experiment (``dataset/hypergrad_mnist.py`` of lrjconan/RBP).

The 60,000 training and 10,000 test images are scaled to ``[0, 1]``, the mean image of
the 60,000 training images is subtracted, and the 70,000 are split in order into 10,000
for training, 50,000 for validation and the 10,000 test images.
"""

from __future__ import annotations

import torch

from .split import SPLIT, check_sizes, take_split

__all__ = ["SPLIT", "load_split"]


def load_split(root=None, *, sizes=SPLIT, dtype=torch.float32, download=False):
    """``{"train": (x, y), "val": (x, y), "test": (x, y)}``: inputs ``(N, 784)``, int64 labels.

    Parameters
    ----------
    root : path, optional
        The data directory (see :func:`rbpsolve.adapters.tasks.data.mnist.load_mnist`).
    sizes : (int, int, int)
        Training, validation and test sizes taken in order from the 70,000 images.
    download : bool
        Let the loader fetch missing MNIST files.
    """
    from rbpsolve.adapters.tasks.data.mnist import load_mnist

    check_sizes(sizes)
    xs, ys = [], []
    for part in ("train", "test"):
        images, labels = load_mnist(part, root=root, download=download)
        xs.append(torch.as_tensor(images.reshape(len(images), -1), dtype=torch.float64) / 255.0)
        ys.append(torch.as_tensor(labels, dtype=torch.int64))
    mean = xs[0].mean(dim=0)
    x = (torch.cat(xs) - mean).to(dtype)
    y = torch.cat(ys)
    return take_split(x, y, sizes)

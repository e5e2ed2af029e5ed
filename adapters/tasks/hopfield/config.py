"""The settings of one Hopfield training run (torch-free: the numpy/cupy path reads them too)."""

from __future__ import annotations

import dataclasses

from ..methods import EXTRA_METHODS, PAPER_METHODS, canonical

__all__ = ["TrainConfig"]

METHODS = PAPER_METHODS + EXTRA_METHODS


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one run (defaults: the paper's ``config/hopfield.yaml``)."""

    method: str = "neumann_rbp"
    truncate: int = 20
    iters: int = 10_000
    hidden: int = 1024
    steps: int = 50
    lr: float = 1e-3
    corrupt_level: float = 0.5
    valid_every: int = 100
    seed: int = 0
    device: str = "cpu"
    regulariser: str = "none"  # a Jacobian regulariser added to the loss (see regularised.py)
    reg_weight: float = 1.0
    reg_param: float | None = None  # its eta, delta or probe count (None: regularised.DEFAULT_PARAM)
    spectrum_every: int = 0  # log estimates of rho(J) and sigma_min(I - J) every this many steps (0: never)

    def __post_init__(self):  # any spelling of a method (e.g. the older "neumann") is recorded canonically
        object.__setattr__(self, "method", canonical(self.method, METHODS))

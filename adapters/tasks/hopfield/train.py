r"""One training run of the Hopfield associative memory, as in the paper's ``HopfieldRunner``.

Adam (lr 1e-3, no weight decay) with batch size 1: each epoch visits the 10 patterns in a
shuffled order, one step each (the paper runs 1000 epochs = 10,000 steps). Validation every
``valid_every`` steps retrieves every pattern from its corrupted copy (50% of its "on"
pixels zeroed, one fixed corruption per trial) and reports the mean L1 distance of the
binarised output to the clean pattern.

Success (Table 1): the final training loss is below 50% of the initial one, both measured
as the mean loss over all patterns at fixed weights (clean inputs, 50 updates).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import torch

from .config import TrainConfig
from .methods import gradient
from .model import HopfieldNet
from .patterns import corrupt
from .regularised import make_penalty, spectrum
from .stats import SUCCESS_RATIO, verdict

__all__ = ["TrainConfig", "train_trial", "mean_loss", "SUCCESS_RATIO"]



def mean_loss(net: HopfieldNet, patterns: torch.Tensor, steps: int) -> float:
    """Mean over patterns of the L1 training loss at the current weights (no gradients)."""
    with torch.no_grad():
        W, total = net.weights(), 0.0
        for image in patterns:
            x = net.clamp(image)
            h = x
            for _ in range(steps):
                h = net.update(h, x, W)
            total += float(net.loss(h, image))
        return total / len(patterns)


def _retrieval_error(net, patterns, corrupted, steps):
    errors, norms, outputs = [], None, []
    for clean, noisy in zip(patterns, corrupted):
        binary, diff = net.retrieve(noisy, steps)
        errors.append(float((binary - clean).abs().mean()))
        outputs.append(binary.cpu().numpy())
        norms = diff if norms is None else norms
    return float(np.mean(errors)), outputs


def train_trial(patterns: np.ndarray, config: TrainConfig, *, progress=None, W0: np.ndarray | None = None) -> dict:
    """Train one network from its own seeded initialisation and corruption.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(P, H, W)`` binary patterns.
    config : TrainConfig
    progress : callable, optional
        Called with no argument after every step (e.g. a tqdm ``update``).
    W0 : numpy.ndarray, optional
        Initial raw weights instead of the seeded torch draw (float64 ones make the network
        float64): the array-API path's numpy draw, to compare the two paths step by step.

    Returns
    -------
    dict
        JSON-ready: ``status`` ("success", "failed" or "nan"), ``reason``, the initial and
        final mean losses and their ratio, per-step ``train_loss``, ``valid`` (step, error)
        pairs, ``diff_norms`` (``||h_t - h_{t-1}||`` at the last step, Fig. 1c), backward
        solve statuses counted, diverging solves, products, seconds, and the retrieved
        images from corrupted inputs at the end (Fig. 2).
    """
    device = torch.device(config.device)
    gen = torch.Generator().manual_seed(config.seed)
    side = patterns.shape[-1]
    dtype = torch.float64 if W0 is not None and W0.dtype == np.float64 else torch.float32
    net = HopfieldNet(side * side, config.hidden, generator=gen, dtype=dtype).to(device)
    if W0 is not None:
        with torch.no_grad():
            net.W0.copy_(torch.as_tensor(W0, dtype=dtype, device=device))
    clean = torch.as_tensor(patterns, device=device)
    noise_rng = np.random.default_rng(config.seed)
    noisy = torch.as_tensor(np.stack([corrupt(p, config.corrupt_level, noise_rng) for p in patterns]),
                            device=device)
    order_rng = np.random.default_rng(config.seed + 1)
    solve_rng = torch.Generator(device=device).manual_seed(config.seed + 2)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    penalty = make_penalty(config.regulariser, config.reg_weight, config.reg_param,
                           generator=torch.Generator(device=device).manual_seed(config.seed + 3))
    penalties, spectra, spectrum_seconds = [], [], 0.0

    def log_spectrum(step):  # timed apart: the training step's cost excludes this extra logging
        nonlocal spectrum_seconds
        t0 = time.perf_counter()
        spectra.append({"step": step, **spectrum(net, clean[0], config.steps)})
        spectrum_seconds += time.perf_counter() - t0

    start = time.perf_counter()
    initial = mean_loss(net, clean, config.steps)
    train_loss, valid, statuses = [], [], {}
    diverging = num_vjp = num_jvp = 0
    status, reason, diff_norms = None, "", []
    order = []
    for it in range(config.iters):
        if it % config.valid_every == 0:
            valid.append((it, _retrieval_error(net, clean, noisy, config.steps)[0]))
        if not order:
            order = list(order_rng.permutation(len(patterns)))
        image = clean[order.pop()]
        if config.spectrum_every and it % config.spectrum_every == 0:
            log_spectrum(it)
        step = gradient(net, image, config.method, config.truncate, steps=config.steps, rng=solve_rng,
                        penalty=penalty)
        penalties.append(step.penalty)
        statuses[step.status] = statuses.get(step.status, 0) + 1
        diverging += step.diverging
        num_vjp += step.num_vjp
        num_jvp += step.num_jvp
        diff_norms = step.diff_norms
        if not (math.isfinite(step.loss) and bool(torch.isfinite(step.grad).all())):
            status, reason = "nan", f"non-finite loss or gradient at step {it}"
            train_loss.append(step.loss if math.isfinite(step.loss) else None)
            break
        train_loss.append(step.loss)
        net.W0.grad = step.grad
        optimizer.step()
        if progress is not None:
            progress()
    final = mean_loss(net, clean, config.steps)
    status, reason = verdict(initial, final, status, reason)
    seconds = time.perf_counter() - start - spectrum_seconds
    if config.spectrum_every and math.isfinite(final):
        log_spectrum(len(train_loss))
    error, retrieved = _retrieval_error(net, clean, noisy, config.steps)
    valid.append((len(train_loss), error))
    return {
        "config": dataclasses.asdict(config),
        "status": status,
        "reason": reason,
        "initial_loss": initial,
        "final_loss": final if math.isfinite(final) else None,
        "ratio": final / initial if math.isfinite(final) else None,
        "train_loss": train_loss,
        "valid": valid,
        "diff_norms": diff_norms,
        "backward_status": statuses,
        "diverging_solves": diverging,
        "num_vjp": num_vjp,
        "num_jvp": num_jvp,
        "seconds": seconds,  # without the spectrum logging
        "spectrum_seconds": spectrum_seconds,
        "penalty": penalties if penalty is not None else None,
        "spectrum": spectra,
        "corrupted": noisy.cpu().numpy().astype(np.uint8).tolist(),
        "retrieved": np.asarray(retrieved).astype(np.uint8).tolist(),
    }

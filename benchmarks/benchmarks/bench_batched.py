"""Issue 15: per-sample (batched) solves on a DEQ-style batch, against one-vector solves and
against torchdeq 0.1.0.

The model (:class:`DEQBatch`): a tanh network with n = 512 units and a batch of 64 samples,
``h_i = tanh(s_i W h_i + U x_i)`` (torch, float64), ``W`` orthogonal and each sample its own
scale ``s_i``. At sample i's fixed point ``h_i*`` the Jacobian is ``J_i = s_i diag(d_i) W``
with ``d_i = 1 - h_i*^2``; as ``W W^T = I``, its spectral norm is exactly
``||J_i||_2 = s_i max_j d_ij``. The scales are calibrated so that these norms (the
contraction, in the spectral norm) are spread evenly over [0.3, 0.97]; the map is moreover a
global contraction of constant ``s_i < 1`` (``|tanh'| <= 1``), so every sample has one fixed
point. The loss is ``L = sum_i <c_i, h_i*>`` with ``||c_i|| = 1``: ``g_i = c_i`` has unit
norm, so an absolute residual test (torchdeq's ``'abs'``) is the relative one.

What is measured:

- ``BatchedBackward``: ``(I - J^T) z = g`` at the fixed points, J from
  ``rbpsolve.adapters.torch.jacobian_operator`` (one VJP through the batched f), each sample
  to a relative residual ``||r_i|| / ||g_i|| <= 1e-6``, with GMRES(50), FixedPoint and LSQR
  (CGNE and Neumann in the report), per-sample mode (``batch_axis=0``, ``rtol=1e-6``)
  against one-vector mode (the batch as one vector of 32,768 entries). One-vector mode's
  relative residual is of the whole batch, so its tolerance is tightened until every
  sample's own residual is <= 1e-6 (:func:`one_vector_rtol`: the loosest of
  ``1e-6 * 2^(-k/2)``, k = 0, 1, ...; ``1e-6 / sqrt(64)`` always suffices here, since
  ``||r_i|| <= ||r|| <= rtol ||g|| = rtol sqrt(64)``). Products: batched product calls
  (``num_vjp + num_jvp``); the worst sample's relative residual, recomputed with one more
  VJP; and time, per-sample / one-vector, from interleaved rounds in one process.
- ``ForwardBackward``: the whole forward + backward (fixed point, adjoint, parameter
  gradient) against torchdeq 0.1.0 (``get_deq(f_solver='anderson', ift=True)``), same
  model, same tolerance 1e-6, same iteration caps, same Anderson memory; see
  :func:`torchdeq_step` and :func:`rbpsolve_step`.

The measuring code is shared with ``benchmarks/batched_report.py`` (more rounds, markdown).
"""

from __future__ import annotations

import importlib.util
import math
from statistics import median

import numpy as np

from ._base import calls_per_sample, seconds_per_call

N = 512
BATCH = 64
C_MIN, C_MAX = 0.3, 0.97
INPUTS = 32  # size of each sample's input x_i
INPUT_SCALE = 1.0  # U x_i has entries of about this size
RTOL = 1e-6
CAP = 500  # iteration cap of every forward and backward solve (rbpsolve and torchdeq)
RESTART = 50  # GMRES(50)
MEMORY = 5  # Anderson: rbpsolve's memory=5 differences = torchdeq's m=6 stored iterates
REPEATS = 5  # interleaved rounds in the asv classes (the report takes --repeats)
SAMPLE_SECONDS = 0.05

BACKWARD_SOLVERS = ["GMRES", "FixedPoint", "LSQR"]
ALL_BACKWARD_SOLVERS = ["GMRES", "FixedPoint", "Neumann", "LSQR", "CGNE"]
MODES = ["per_sample", "one_vector"]


def _torch():
    if importlib.util.find_spec("torch") is None:
        raise NotImplementedError("torch is not installed")
    import torch

    return torch


# ------------------------------------------------------------------------------- model
class DEQBatch:
    """``f(h) = tanh(s[:, None] * (h @ W.T) + x @ U.T)`` on states of shape (batch, n).

    ``W`` (n x n, orthogonal) and ``U`` (n x INPUTS) are leaf tensors with
    ``requires_grad=True`` (the parameters whose gradient the forward + backward
    comparison computes); ``s`` is calibrated (:meth:`calibrate`) so that
    ``||J_i||_2 = s_i max_j (1 - h_ij*^2)`` equals ``contractions[i]``."""

    def __init__(self, n: int = N, batch: int = BATCH, *, c_min: float = C_MIN, c_max: float = C_MAX,
                 dtype: str = "float64", seed: int = 0, calibrate: bool = True):
        torch = _torch()
        rng = np.random.default_rng(seed)
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        W = q * np.sign(np.diag(r))  # Haar-distributed orthogonal
        U = rng.standard_normal((n, INPUTS)) * (INPUT_SCALE / math.sqrt(INPUTS))
        x = rng.standard_normal((batch, INPUTS))
        c = rng.standard_normal((batch, n))
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        self.torch, self.n, self.batch = torch, n, batch
        self.dtype = getattr(torch, dtype)
        as_t = lambda a: torch.tensor(a, dtype=self.dtype)  # noqa: E731
        self.W = as_t(W).requires_grad_()
        self.U = as_t(U).requires_grad_()
        self.x = as_t(x)
        self.c = as_t(c)  # the loss weights: g_i = c_i, unit norm
        # Evenly spread targets, shuffled so that hard and easy samples are interleaved.
        targets = np.linspace(c_min, c_max, batch)
        self.targets = targets[rng.permutation(batch)]
        self.s = as_t(self.targets.copy())
        self.h_star = None
        if calibrate:
            self.calibrate()

    def f(self, h):
        """The batched map (differentiable in h, W and U)."""
        return self.torch.tanh(self.s[:, None] * (h @ self.W.T) + self.x @ self.U.T)

    def f_nograd(self, h):
        with self.torch.no_grad():
            return self.f(h)

    def h0(self):
        return self.torch.zeros(self.batch, self.n, dtype=self.dtype)

    def reference_fixed_point(self, tol: float = 1e-13, max_steps: int = 20000):
        """Picard to ``max_i ||h_{k+1,i} - h_{k,i}|| <= tol`` (converges: each sample's map is
        a contraction of constant s_i < 1)."""
        torch = self.torch
        h = self.h0()
        with torch.no_grad():
            for _ in range(max_steps):
                new = self.f(h)
                step = float(torch.linalg.vector_norm(new - h, dim=1).max())
                h = new
                if step <= tol:
                    return h
        raise RuntimeError(f"Picard did not reach {tol} in {max_steps} steps")

    def contractions(self, h=None):
        """``||J_i||_2 = s_i max_j (1 - h_ij^2)`` at ``h`` (default: the fixed point), exact
        because W is orthogonal; a numpy array of one value a sample."""
        h = self.h_star if h is None else h
        d = 1.0 - h.detach() ** 2
        return (self.s * d.max(dim=1).values).numpy()

    def calibrate(self, tol: float = 1e-12, rounds: int = 50):
        """Set ``s_i = target_i / max_j d_ij(h*(s))`` until the contractions meet the targets."""
        torch = self.torch
        for _ in range(rounds):
            h = self.reference_fixed_point()
            d_max = (1.0 - h**2).max(dim=1).values
            new = torch.tensor(self.targets, dtype=self.dtype) / d_max
            change = float((new - self.s).abs().max())
            self.s = new
            if change <= tol:
                break
        self.h_star = self.reference_fixed_point()
        return self

    def spectral_radii(self, h=None):
        """``rho(J_i)`` of each sample (dense eigenvalues: about a second a sample; report only)."""
        h = self.h_star if h is None else h
        W = self.W.detach().numpy()
        d = (1.0 - h.detach() ** 2).numpy()
        s = self.s.numpy()
        return np.array([np.abs(np.linalg.eigvals(s[i] * d[i][:, None] * W)).max() for i in range(self.batch)])

    def jacobian(self, h=None):
        """J = df/dh at ``h`` (default the fixed point) as an rbpsolve operator: one VJP
        (backward through the retained graph of the batched f) for the whole batch; JVPs by
        double backward (LSQR, CGNE)."""
        from rbpsolve.adapters.torch import jacobian_operator

        h = self.h_star if h is None else h
        return jacobian_operator(self.f, h.detach())

    def sample_residuals(self, z, h=None):
        """``||g_i - (z_i - J_i^T z_i)|| / ||g_i||`` per sample, with one fresh VJP (numpy)."""
        torch = self.torch
        h = (self.h_star if h is None else h).detach().requires_grad_()
        with torch.enable_grad():
            out = self.f(h)
        (jtz,) = torch.autograd.grad(out, h, z)
        r = self.c - (z - jtz)
        return (torch.linalg.vector_norm(r, dim=1) / torch.linalg.vector_norm(self.c, dim=1)).detach().numpy()

    def forward_residuals(self, h):
        """``||f(h_i) - h_i|| / ||f(h_i)||`` per sample (the forward stopping test of both
        libraries)."""
        torch = self.torch
        fh = self.f_nograd(h)
        return (torch.linalg.vector_norm(fh - h, dim=1) / torch.linalg.vector_norm(fh, dim=1)).numpy()

    def parameter_gradient(self, h, z):
        """``z^T df/d(W, U)`` at ``h``: the loss gradient given the adjoint z."""
        torch = self.torch
        h = h.detach()
        with torch.enable_grad():
            out = self.f(h)
        return torch.autograd.grad(out, (self.W, self.U), z)


# ------------------------------------------------------------------------------- backward
def make_backward_solver(name: str, rtol: float):
    import rbpsolve

    if name == "GMRES":
        return rbpsolve.GMRES(rtol=rtol, restart=RESTART, max_steps=CAP)
    if name == "FixedPoint":
        return rbpsolve.FixedPoint(rtol=rtol, max_steps=CAP)
    if name == "Neumann":
        return rbpsolve.Neumann(rtol=rtol, max_steps=CAP)
    if name == "LSQR":
        return rbpsolve.LSQR(rtol=rtol, max_steps=CAP)
    if name == "CGNE":
        return rbpsolve.CGNE(rtol=rtol, max_steps=CAP)
    raise ValueError(name)


def backward_solve(model: DEQBatch, J, name: str, mode: str, rtol: float = RTOL):
    import rbpsolve

    solver = make_backward_solver(name, rtol)
    axis = 0 if mode == "per_sample" else None
    return rbpsolve.solve_adjoint(J, model.c, solver, batch_axis=axis, throw=False)


def one_vector_rtol(model: DEQBatch, J, name: str, target: float = RTOL, max_halvings: int = 12):
    """The loosest ``target * 2^(-k/2)`` (k = 0, 1, ...) with which the one-vector solve
    leaves every sample's own relative residual <= target; returns (rtol, k, worst residual
    at each tried k). ``target / sqrt(batch)`` always suffices when the ``g_i`` have equal
    norms, so the search ends by k = log2(batch)."""
    tried = []
    for k in range(max_halvings + 1):
        rtol = target * 2.0 ** (-k / 2)
        result = backward_solve(model, J, name, "one_vector", rtol)
        worst = float(model.sample_residuals(result.x).max())
        tried.append(worst)
        if worst <= target:
            return rtol, k, tried
    raise RuntimeError(f"{name}: no one-vector tolerance down to {rtol:g} met {target:g} for every sample")


class BackwardCase:
    """One backward solver in both modes, on one model: tolerances, counts, residuals, and
    timed calls."""

    def __init__(self, model: DEQBatch, J, name: str, *, sample_seconds: float = SAMPLE_SECONDS):
        self.model, self.J, self.name = model, J, name
        self.rtol = {"per_sample": RTOL}
        self.rtol["one_vector"], self.halvings, self.tried = one_vector_rtol(model, J, name)
        self.counts = {}
        for mode in MODES:
            result = self.solve(mode)  # also the warm-up
            self.counts[mode] = {
                "products": result.num_vjp + result.num_jvp,
                "num_vjp": result.num_vjp,
                "num_jvp": result.num_jvp,
                "num_steps": result.num_steps,
                "status": getattr(result.status, "name", str(result.status)),
                "worst_residual": float(model.sample_residuals(result.x).max()),
                "sample_steps": None if result.sample_num_steps is None else np.asarray(result.sample_num_steps),
            }
        self.number = {mode: calls_per_sample(lambda m=mode: self.solve(m), sample_seconds) for mode in MODES}

    def solve(self, mode: str):
        return backward_solve(self.model, self.J, self.name, mode, self.rtol[mode])

    def sample(self, round_index: int = 0) -> dict:
        modes = MODES if round_index % 2 == 0 else MODES[::-1]
        return {m: seconds_per_call(lambda m=m: self.solve(m), self.number[m]) for m in modes}


def measure_backward(model: DEQBatch | None = None, solvers=BACKWARD_SOLVERS, repeats: int = REPEATS,
                     progress=None, sample_seconds: float = SAMPLE_SECONDS) -> dict:
    """Interleaved rounds of every solver's per-sample and one-vector solves, in this process.
    Returns ``{solver: {"rtol", "halvings", "tried", "counts", "times": {mode: [s, ...]}}}``."""
    model = model or DEQBatch()
    J = model.jacobian()
    cases = [BackwardCase(model, J, name, sample_seconds=sample_seconds) for name in solvers]
    out = {c.name: {"rtol": c.rtol, "halvings": c.halvings, "tried": c.tried, "counts": c.counts,
                    "times": {m: [] for m in MODES}} for c in cases}
    for r in range(repeats):
        for case in cases:
            for mode, seconds in case.sample(r).items():
                out[case.name]["times"][mode].append(seconds)
            if progress is not None:
                progress(1)
    return out


def per_sample_ratios(entry) -> list:
    """per-sample time / one-vector time, per round."""
    t = entry["times"]
    return [a / b for a, b in zip(t["per_sample"], t["one_vector"])]


# ------------------------------------------------------------------------------- forward + backward
def forward_batch_axis_available() -> bool:
    """Whether ``rbpsolve.fixed_point`` takes ``batch_axis`` (branch batch-fwd)."""
    import inspect

    import rbpsolve

    return "batch_axis" in inspect.signature(rbpsolve.fixed_point).parameters


def _anderson(rtol):
    import rbpsolve

    return rbpsolve.Anderson(rtol=rtol, memory=MEMORY, max_steps=CAP)


def one_vector_forward_rtol(model: DEQBatch, target: float = RTOL, max_halvings: int = 12):
    """As :func:`one_vector_rtol` for the forward solve: the loosest ``target * 2^(-k/2)``
    with which one-vector Anderson (the batch as one state) leaves every sample's
    ``||f(h_i) - h_i|| / ||f(h_i)|| <= target``; returns (rtol, k)."""
    import rbpsolve

    for k in range(max_halvings + 1):
        rtol = target * 2.0 ** (-k / 2)
        h = rbpsolve.fixed_point(model.f_nograd, model.h0(), _anderson(rtol), throw=False).x
        if float(model.forward_residuals(h).max()) <= target:
            return rtol, k
    raise RuntimeError(f"no one-vector forward tolerance down to {rtol:g} met {target:g} for every sample")


def rbpsolve_step(model: DEQBatch, *, forward_rtol: float | None = None, counts: dict | None = None):
    """rbpsolve's forward + backward, wired by hand and timed as one call (no autograd.Function):
    the fixed point by Anderson (memory 5) from zeros, the per-sample adjoint
    ``solve_adjoint(J, g, GMRES(rtol=1e-6), batch_axis=0)`` at it, and the parameter
    gradient ``z^T df/d(W, U)``. The forward is per sample
    (``fixed_point(..., batch_axis=0)``, rtol 1e-6) where rbpsolve has it; otherwise
    (``forward_rtol`` given) one-vector Anderson with that tolerance, chosen by
    :func:`one_vector_forward_rtol`. Returns (h*, z, (dL/dW, dL/dU))."""
    import rbpsolve

    if forward_rtol is None:
        fwd = rbpsolve.fixed_point(model.f_nograd, model.h0(), _anderson(RTOL), batch_axis=0, throw=False)
    else:
        fwd = rbpsolve.fixed_point(model.f_nograd, model.h0(), _anderson(forward_rtol), throw=False)
    h = fwd.x
    J = model.jacobian(h)
    bwd = rbpsolve.solve_adjoint(J, model.c, rbpsolve.GMRES(rtol=RTOL, restart=RESTART, max_steps=CAP),
                                 batch_axis=0, throw=False)
    grads = model.parameter_gradient(h, bwd.x)
    if counts is not None:
        counts.update(forward_evaluations=fwd.info["num_evaluations"], backward_products=bwd.num_vjp + bwd.num_jvp,
                      forward_status=fwd.status.name, backward_status=bwd.status.name)
    return h, bwd.x, grads


_COUNT = {"forward": 0, "backward": 0}


def _counting(solver, which):
    """A torchdeq solver that counts the batched calls of the map it is given."""

    def run(func, x0, **kwargs):
        def counted(x):
            _COUNT[which] += 1
            return func(x)

        return solver(counted, x0, **kwargs)

    return run


def make_torchdeq(b_solver: str = "anderson", *, counting: bool = False):
    """torchdeq 0.1.0's DEQ with the same tolerances and caps as :func:`rbpsolve_step`:
    forward ``anderson`` (m = 6 stored iterates = rbpsolve's memory 5, its default
    lam = 1e-4), stop at ``||f(x_i) - x_i|| / ||f(x_i)|| < 1e-6`` for every sample
    (``f_stop_mode='rel'``, rbpsolve's forward test); backward IFT (``ift=True``) with
    ``b_solver`` from zero, stop at ``||r_i|| < 1e-6`` for every sample
    (``b_stop_mode='abs'``: the relative residual, as ``||g_i|| = 1``); both capped at
    ``CAP`` iterations (torchdeq's ``max_iter`` counts evaluations)."""
    from torchdeq import get_deq
    from torchdeq.solver import get_solver, register_solver

    f_name, b_name = "anderson", b_solver
    if counting:
        register_solver("counted_forward", _counting(get_solver("anderson"), "forward"))
        register_solver("counted_backward", _counting(get_solver(b_solver), "backward"))
        f_name, b_name = "counted_forward", "counted_backward"
    deq = get_deq(f_solver=f_name, f_max_iter=CAP, f_tol=RTOL, f_stop_mode="rel",
                  b_solver=b_name, b_max_iter=CAP, b_tol=RTOL, b_stop_mode="abs", ift=True)
    deq.train()  # the IFT backward is the training path
    return deq


def torchdeq_step(model: DEQBatch, deq):
    """torchdeq's forward + backward: ``deq(f, h0)``, then ``L = sum_i <c_i, h_i>`` backward to
    (W, U) through its IFT. Returns (h*, (dL/dW, dL/dU)); h* is torchdeq's output f(z*)."""
    torch = model.torch
    out, _ = deq(model.f, model.h0())
    h = out[-1]
    loss = (model.c * h).sum()
    grads = torch.autograd.grad(loss, (model.W, model.U))
    return h.detach(), grads


def torchdeq_counts(model: DEQBatch, b_solver: str = "anderson") -> dict:
    _COUNT.update(forward=0, backward=0)
    torchdeq_step(model, make_torchdeq(b_solver, counting=True))
    return {"forward_evaluations": _COUNT["forward"], "backward_products": _COUNT["backward"]}


def gradient_difference(a, b) -> float:
    """``||a - b|| / ||b||`` over the concatenated parameter gradients."""
    torch = _torch()
    fa = torch.cat([t.reshape(-1) for t in a])
    fb = torch.cat([t.reshape(-1) for t in b])
    return float(torch.linalg.vector_norm(fa - fb) / torch.linalg.vector_norm(fb))


def reference_gradient(model: DEQBatch):
    """The gradient at the reference fixed point with a tight GMRES adjoint (rtol 1e-12)."""
    import rbpsolve

    z = rbpsolve.solve_adjoint(model.jacobian(), model.c, rbpsolve.GMRES(rtol=1e-12, restart=RESTART, max_steps=5000),
                               batch_axis=0).x
    return model.parameter_gradient(model.h_star, z)


def measure_forward_backward(model: DEQBatch | None = None, b_solvers=("anderson",), repeats: int = REPEATS,
                             progress=None, sample_seconds: float = SAMPLE_SECONDS) -> dict:
    """rbpsolve's step against torchdeq's (one entry per torchdeq backward solver),
    interleaved rounds in one process. Gradients are checked against each other and against
    :func:`reference_gradient` before timing. Raises NotImplementedError when torchdeq is
    missing. Without ``fixed_point(..., batch_axis=0)`` (branch batch-fwd) rbpsolve's forward
    is one-vector Anderson with a tightened tolerance (``result["rbpsolve"]["forward_mode"]``)."""
    if importlib.util.find_spec("torchdeq") is None:
        raise NotImplementedError("torchdeq is not installed")
    model = model or DEQBatch()
    per_sample = forward_batch_axis_available()
    forward_rtol, halvings = (None, None) if per_sample else one_vector_forward_rtol(model)
    ref = reference_gradient(model)
    ours_counts = {}
    h_ours, z_ours, g_ours = rbpsolve_step(model, forward_rtol=forward_rtol, counts=ours_counts)
    ours = {
        "forward_mode": "per_sample" if per_sample else "one_vector",
        "forward_rtol": RTOL if per_sample else forward_rtol,
        "forward_halvings": halvings,
        "counts": ours_counts,
        "forward_worst": float(model.forward_residuals(h_ours).max()),
        "backward_worst": float(model.sample_residuals(z_ours, h_ours).max()),
        "gradient_error": gradient_difference(g_ours, ref),
    }
    fns = {"rbpsolve": lambda: rbpsolve_step(model, forward_rtol=forward_rtol)}
    out = {"rbpsolve": ours, "peers": {}}
    for b in b_solvers:
        deq = make_torchdeq(b)
        h_theirs, g_theirs = torchdeq_step(model, deq)
        out["peers"][b] = {
            "counts": torchdeq_counts(model, b),
            "forward_worst": float(model.forward_residuals(h_theirs).max()),
            "gradient_error": gradient_difference(g_theirs, ref),
            "difference_to_rbpsolve": gradient_difference(g_theirs, g_ours),
        }
        fns[f"torchdeq/{b}"] = lambda deq=deq: torchdeq_step(model, deq)
    number = {k: calls_per_sample(fn, sample_seconds) for k, fn in fns.items()}
    times = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            times[k].append(seconds_per_call(fns[k], number[k]))
        if progress is not None:
            progress(1)
    out["times"] = times
    return out


def peer_ratios(result, b_solver: str) -> list:
    """rbpsolve time / torchdeq time, per round (goal <= 1)."""
    t = result["times"]
    return [a / b for a, b in zip(t["rbpsolve"], t[f"torchdeq/{b_solver}"])]


# ------------------------------------------------------------------------------- asv
class _BackwardCache:
    """One measurement (``setup_cache``: every solver in both modes, interleaved rounds, in one
    process) that the classes below read (asv shares an inherited ``setup_cache``)."""

    timeout = 600

    def setup_cache(self):
        _torch()
        return measure_backward()

    setup_cache.timeout = 600


class BatchedBackward(_BackwardCache):
    """Backward, n = 512, batch 64, contractions 0.3-0.97, every sample to rtol 1e-6:
    per-sample (``batch_axis=0``) against one-vector mode. Goal: per-sample GMRES needs fewer
    batched products than one-vector GMRES."""

    params = (BACKWARD_SOLVERS, MODES)
    param_names = ["solver", "mode"]

    def setup(self, cache, solver, mode):
        self.entry = cache[solver]

    def track_products(self, cache, solver, mode):
        return self.entry["counts"][mode]["products"]

    track_products.unit = "batched product calls (VJPs + JVPs)"

    def track_worst_sample_residual(self, cache, solver, mode):
        return self.entry["counts"][mode]["worst_residual"]

    track_worst_sample_residual.unit = "max_i ||r_i|| / ||g_i||"

    def track_rtol(self, cache, solver, mode):
        return self.entry["rtol"][mode]

    track_rtol.unit = "solver rtol (one-vector: tightened until every sample <= 1e-6)"

    def track_seconds(self, cache, solver, mode):
        return median(self.entry["times"][mode])

    track_seconds.unit = "seconds (median of interleaved rounds)"


class BatchedBackwardRatio(_BackwardCache):
    """The same measurement: per-sample time / one-vector time (median of the rounds' ratios)."""

    params = BACKWARD_SOLVERS
    param_names = ["solver"]

    def track_time_ratio(self, cache, solver):
        return median(per_sample_ratios(cache[solver]))

    track_time_ratio.unit = "per-sample time / one-vector time"


class ForwardBackward:
    """Forward (Anderson) + backward (rbpsolve: per-sample GMRES; torchdeq: its IFT with
    Anderson), same model, tolerance 1e-6, caps: time ratio (goal <= 1), gradient errors."""

    timeout = 600

    def setup_cache(self):
        _torch()
        return measure_forward_backward()

    setup_cache.timeout = 600

    def track_time_ratio(self, cache):
        return median(peer_ratios(cache, "anderson"))

    track_time_ratio.unit = "rbpsolve time / torchdeq time"

    def track_rbpsolve_gradient_error(self, cache):
        return cache["rbpsolve"]["gradient_error"]

    track_rbpsolve_gradient_error.unit = "relative error of dL/d(W, U)"

    def track_torchdeq_gradient_error(self, cache):
        return cache["peers"]["anderson"]["gradient_error"]

    track_torchdeq_gradient_error.unit = "relative error of dL/d(W, U)"

    def track_rbpsolve_products(self, cache):
        c = cache["rbpsolve"]["counts"]
        return c["forward_evaluations"] + c["backward_products"]

    track_rbpsolve_products.unit = "batched f evaluations + VJPs"

    def track_torchdeq_products(self, cache):
        c = cache["peers"]["anderson"]["counts"]
        return c["forward_evaluations"] + c["backward_products"]

    track_torchdeq_products.unit = "batched f evaluations + VJPs"


class BatchedSmall:
    """A quick one for CI (about 2 s a process): n = 64, batch 8, GMRES per-sample vs one-vector
    products (one-vector rtol tightened until every sample meets 1e-6) and time (at rtol 1e-6)."""

    params = MODES
    param_names = ["mode"]

    def setup(self, mode):
        _torch()
        self.model = DEQBatch(64, 8)
        self.J = self.model.jacobian()
        self.time_gmres(mode)  # warm-up: the first batched solve in a process costs about 0.4 s more

    def track_products(self, mode):
        rtol = RTOL if mode == "per_sample" else one_vector_rtol(self.model, self.J, "GMRES")[0]
        result = backward_solve(self.model, self.J, "GMRES", mode, rtol)
        return result.num_vjp

    track_products.unit = "batched VJPs"

    def time_gmres(self, mode):
        backward_solve(self.model, self.J, "GMRES", mode)

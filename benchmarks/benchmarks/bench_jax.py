"""Issue 17, "Measure": the JAX adapter's backward against optimistix 0.1.0 / lineax 0.1.1,
and the eager cost of rbpsolve's loop against bare products.

Two float32 fixed points on the CPU, each with one state for the whole batch (the adapter has
no ``batch_axis`` yet, so the batch is one system):

- ``tanh``: ``h = tanh(h W^T + x U^T)``, n = 512, batch 64 (state (64, 512));
- ``gru``: a GRU cell written in ``jax.numpy``, hidden 256, batch 64 (state (64, 256)).

Their recurrent weights are scaled (:meth:`Model.calibrate`) until the Jacobian at the fixed
point has spectral norm ``||J||_2 = max_i ||J_i||_2`` of about 0.9 (the batch is uncoupled:
J is block diagonal with one block a sample); the figure reported is measured on the dense
blocks. The loss is ``L = <c, h*>``, so ``g = dL/dh* = c``.

What is measured (:func:`measure`, one process, interleaved rounds):

- The backward of one gradient through the fixed point, after one forward: rbpsolve's
  ``fixed_point`` pullback (eager, as the adapter must run) with ``Neumann(max_steps=30)``
  (a fixed budget) and ``GMRES(rtol=1e-6)``; optimistix's ``fixed_point`` with
  ``FixedPointIteration`` and ``ImplicitAdjoint(lx.GMRES(rtol=1e-6, atol=1e-6))``, its
  forward and its pullback each under ``jax.jit``, the pullback timed after a warm-up.
  lineax 0.1.1 has no Neumann (Richardson) solver, so there is no Neumann-like fixed budget
  for optimistix; the nearest fixed budget, ``lx.GMRES(rtol=0, atol=0, restart=30,
  max_steps=2)`` (one real cycle of 30 Arnoldi products), is measured beside it. The
  forward solutions are shared: every method's forward starts at one ``h*`` (rbpsolve's
  Picard to rtol 1e-6, then 300 more steps, :meth:`Model.polish`) and stops a step or two
  later, so all linearise at the same point.
- Products: rbpsolve's from ``Diagnostics.backward`` (``num_vjp + num_jvp``). optimistix
  does not return its linear solve's statistics (``ImplicitAdjoint`` keeps them inside the
  backward pass), so its products are counted on the same lineax solve run directly,
  ``lx.linear_solve`` of ``(J^T - I) w = g`` with the same solver, whose operator counts its
  calls (:func:`lineax_products`); the test checks that this solve gives optimistix's
  gradient.
- Agreement: each method's parameter gradient against a reference from a float64 dense
  solve of every sample's block ``(I - J_i^T) z_i = g_i`` (the blocks are float32
  Jacobians from ``jax.jacfwd``), relative difference over all parameters.
- Loop overhead: ``solve_adjoint(jacobian_operator(f, h*), g, Neumann(max_steps=30))``
  against 30 calls of the same linearisation's ``jax.vjp`` pullback in a Python loop, both
  eager; and against 30 calls of the operator's own product (``J.rmv``: the adapter's
  pullback of the raveled map), which splits the overhead between the adapter's product and
  rbpsolve's loop. Issue 17's goal (<= 1.05) is for a *jitted* fixed budget, which the adapter cannot
  run yet: it is not measurable now. The same 30 pullbacks in one ``jax.jit``
  (``lax.fori_loop``) are timed as well, to show what eager dispatch costs at this size.

The measuring code is shared with ``benchmarks/jax_report.py`` (more rounds, markdown).
"""

from __future__ import annotations

import importlib.util
import math
from statistics import median

import numpy as np

from ._base import calls_per_sample, seconds_per_call

BATCH = 64
SIZES = {"tanh": 512, "gru": 256}
INPUTS = 32  # each sample's input x_i
TARGET_NORM = 0.9  # ||J||_2 at the fixed point
K = 30  # Neumann's fixed budget
RTOL = 1e-6  # every GMRES, rbpsolve's and lineax's
FORWARD_RTOL = 1e-6
POLISH_STEPS = 300  # Picard steps after the tolerance, so every method linearises at the same h*
CAP = 2000  # forward iteration cap
BUDGET_RESTART = 30  # lineax's nearest fixed budget: one GMRES cycle of this many products
REPEATS = 5  # interleaved rounds in the asv classes (the report takes --repeats)
SAMPLE_SECONDS = 0.1

RBPSOLVE_METHODS = ["rbpsolve-Neumann", "rbpsolve-GMRES"]
PEER_METHODS = ["optimistix-GMRES", "optimistix-GMRES-budget"]
METHODS = RBPSOLVE_METHODS + PEER_METHODS
BASELINE = "optimistix-GMRES"  # the denominator of the time ratios


def _jax():
    if importlib.util.find_spec("jax") is None:
        raise NotImplementedError("jax is not installed")
    import jax

    return jax


def peers_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("optimistix", "lineax"))


def _peers():
    if not peers_available():
        raise NotImplementedError("optimistix and lineax are not installed")
    import lineax as lx
    import optimistix as optx

    return optx, lx


# ------------------------------------------------------------------------------- models
def tanh_cell(h, x, p):
    return _jax().numpy.tanh(h @ p["W"].T + x @ p["U"].T)


def gru_cell(h, x, p):
    """A GRU cell (Cho et al. 2014), the update gate weighting the old state."""
    jnn, jnp = _jax().nn, _jax().numpy
    z = jnn.sigmoid(x @ p["Wz"].T + h @ p["Uz"].T + p["bz"])
    r = jnn.sigmoid(x @ p["Wr"].T + h @ p["Ur"].T + p["br"])
    n = jnp.tanh(x @ p["Wn"].T + r * (h @ p["Un"].T) + p["bn"])
    return (1.0 - z) * n + z * h


class Model:
    """``f(h, params) = cell(h, x, params)`` on a batch of states of shape (batch, n); ``cell``
    also takes one sample (1-d h and x), which :meth:`blocks` differentiates.

    ``recurrent`` names the weights that :meth:`calibrate` scales. For the GRU, J contains
    ``diag(z)`` whatever the recurrent weights, so the update gate is biased towards the new
    state (``bz = -1``, input weights halved) to keep ``max z`` below the target norm."""

    def __init__(self, name: str, n: int | None = None, batch: int = BATCH, *, norm: float = TARGET_NORM,
                 seed: int = 0, scale: float | None = None):
        jnp = _jax().numpy
        n = SIZES[name] if n is None else n
        rng = np.random.default_rng(seed)
        gauss = lambda *shape, scale=1.0: rng.standard_normal(shape) * scale  # noqa: E731
        if name == "tanh":
            self.cell, self.recurrent = tanh_cell, ("W",)
            p = {"W": gauss(n, n, scale=1 / math.sqrt(n)), "U": gauss(n, INPUTS, scale=1 / math.sqrt(INPUTS))}
        elif name == "gru":
            self.cell, self.recurrent = gru_cell, ("Uz", "Ur", "Un")
            p = {}
            for gate, input_scale, bias in (("z", 0.5, -1.0), ("r", 1.0, 0.0), ("n", 1.0, 0.0)):
                p["W" + gate] = gauss(n, INPUTS, scale=input_scale / math.sqrt(INPUTS))
                p["U" + gate] = gauss(n, n, scale=1 / math.sqrt(n))
                p["b" + gate] = np.full(n, bias) + gauss(n, scale=0.1)
        else:
            raise ValueError(f"unknown model {name!r}; choose tanh or gru")
        self.name, self.n, self.batch = name, n, batch
        self.params = {k: jnp.asarray(v, dtype=jnp.float32) for k, v in p.items()}
        self.x = jnp.asarray(gauss(batch, INPUTS), dtype=jnp.float32)
        self.c = jnp.asarray(gauss(batch, n), dtype=jnp.float32)  # g = dL/dh* = c
        self.h_star = self.forward_result = self.forward_residual = None
        if scale is None:
            self.calibrate(norm)
        else:  # a scale calibrated before (JaxSmall): skips the calibration's dozen forward solves
            self._set_scale(dict(self.params), scale)
            self.solve_forward()
        self.polish()

    def f(self, h, p):
        return self.cell(h, self.x, p)

    def h0(self):
        jnp = _jax().numpy
        return jnp.zeros((self.batch, self.n), dtype=jnp.float32)

    def solve_forward(self):
        """rbpsolve's Picard to ``||h_{k+1} - h_k|| <= 1e-6 ||h_{k+1}||``; sets ``h_star``."""
        import rbpsolve
        from rbpsolve.adapters.jax import fixed_point

        self.h_star, diag = fixed_point(self.f, self.h0(), self.params,
                                        forward=rbpsolve.Picard(rtol=FORWARD_RTOL, max_steps=CAP))
        self.forward_result = diag.forward
        return self.h_star

    def polish(self, steps: int = POLISH_STEPS):
        """``steps`` more Picard steps (a fixed budget) from ``h_star``, down to float32's floor.
        Every method starts its forward here: rbpsolve's Picard and optimistix's
        FixedPointIteration stop after a step or two, so all of them linearise at this point
        (a 1e-6 tolerance alone leaves the GRU's h* 3e-4 from optimistix's, which stops on an
        elementwise test). Sets ``forward_residual = max |f(h*) - h*|``."""
        import rbpsolve
        from rbpsolve.adapters.jax import fixed_point

        jnp = _jax().numpy
        self.h_star, _ = fixed_point(self.f, self.h_star, self.params,
                                     forward=rbpsolve.Picard(max_steps=steps, rtol=0.0, atol=0.0))
        self.forward_residual = float(jnp.max(jnp.abs(self.f(self.h_star, self.params) - self.h_star)))
        return self.h_star

    def power_norm(self, steps: int = 100, seed: int = 1) -> float:
        """``max_i ||J_i||_2`` at ``h_star`` by power iteration on each row of the batch (J is
        block diagonal: rows do not mix), jitted; an estimate from below, for calibrating."""
        jax = _jax()
        jnp = jax.numpy
        F = lambda h: self.f(h, self.params)  # noqa: E731
        _, jvp = jax.linearize(F, self.h_star)
        _, vjp = jax.vjp(F, self.h_star)

        def body(_, v):
            (w,) = vjp(jvp(v))
            return w / jnp.linalg.norm(w, axis=1, keepdims=True)

        v = jax.random.normal(jax.random.key(seed), self.h_star.shape, dtype=jnp.float32)
        v = jax.jit(lambda v: jax.lax.fori_loop(0, steps, body, v))(v)
        return float(jnp.sqrt(jnp.max(jnp.linalg.norm(vjp(jvp(v))[0], axis=1))))

    def calibrate(self, target: float = TARGET_NORM, tol: float = 2e-3, rounds: int = 12):
        """Scale the recurrent weights (secant steps on their scale) until the power-iteration
        ``||J||_2`` at the fixed point is within ``tol`` of ``target``."""
        base = dict(self.params)
        tried = []
        s = 1.0
        for _ in range(rounds):
            self._set_scale(base, s)
            self.solve_forward()
            norm = self.power_norm()
            tried.append((s, norm))
            if abs(norm - target) <= tol:
                return self
            if len(tried) == 1:
                s = s * target / norm
            else:
                (s0, n0), (s1, n1) = tried[-2], tried[-1]
                s = s1 + (target - n1) * (s1 - s0) / (n1 - n0) if n1 != n0 else s1 * target / n1
        raise RuntimeError(f"{self.name}: ||J|| did not reach {target} within {tol} ({tried})")

    def _set_scale(self, base, s):
        self.scale = s  # of the recurrent weights, relative to their initial draw
        self.params = {k: (v * s if k in self.recurrent else v) for k, v in base.items()}

    def blocks(self, h=None):
        """Each sample's Jacobian block ``J_i = df(h_i)/dh_i`` (float32, from ``jax.jacfwd``),
        as a numpy array of shape (batch, n, n)."""
        jax = _jax()
        h = self.h_star if h is None else h
        jac = jax.vmap(jax.jacfwd(lambda hi, xi: self.cell(hi, xi, self.params)))(h, self.x)
        return np.asarray(jac)

    def parameter_gradient(self, z, h=None):
        """``z^T df/dparams`` at ``h`` (default ``h_star``)."""
        jax = _jax()
        h = self.h_star if h is None else h
        _, pull = jax.vjp(lambda p: self.f(h, p), self.params)
        (grad,) = pull(z)
        return grad


def reference(model: Model, blocks=None):
    """The adjoint and parameter gradient from a float64 dense solve of every block
    ``(I - J_i^T) z_i = c_i``, and the blocks' spectral norms; a dict."""
    jnp = _jax().numpy
    blocks = model.blocks() if blocks is None else blocks
    A = np.eye(model.n) - np.swapaxes(blocks.astype(np.float64), 1, 2)
    z = np.linalg.solve(A, np.asarray(model.c, dtype=np.float64)[..., None])[..., 0]
    norms = np.linalg.norm(blocks.astype(np.float64), ord=2, axis=(1, 2))
    grad = model.parameter_gradient(jnp.asarray(z, dtype=jnp.float32))
    return {"z": z, "gradient": grad, "norms": norms}


def relative_difference(a, b) -> float:
    """``||a - b|| / ||b||`` over every leaf of two gradient pytrees (in float64)."""
    jax = _jax()
    la = [np.asarray(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(a)]
    lb = [np.asarray(x, dtype=np.float64) for x in jax.tree_util.tree_leaves(b)]
    num = sum(float(np.sum((x - y) ** 2)) for x, y in zip(la, lb))
    den = sum(float(np.sum(y**2)) for y in lb)
    return math.sqrt(num / den)


# ------------------------------------------------------------------------------- backward
def rbpsolve_backward(model: Model, method: str):
    """rbpsolve's pullback of ``L = <c, h*>`` through the adapter's ``fixed_point``: the
    forward runs once here (Picard from the shared ``h*``); returns ``(call, diagnostics)``, ``call()`` computing and
    returning the parameter gradient (re-linearisation, adjoint solve, one VJP to params)."""
    jax = _jax()
    jnp = jax.numpy
    import rbpsolve
    from rbpsolve.adapters.jax import fixed_point

    backward = {"rbpsolve-Neumann": rbpsolve.Neumann(max_steps=K),
                "rbpsolve-GMRES": rbpsolve.GMRES(rtol=RTOL)}[method]

    def loss(p):
        h, diag = fixed_point(model.f, model.h_star, p, backward=backward,
                              forward=rbpsolve.Picard(rtol=FORWARD_RTOL, max_steps=CAP))
        return jnp.sum(model.c * h), diag

    _, pull, diag = jax.vjp(loss, model.params, has_aux=True)
    one = jnp.ones((), dtype=jnp.float32)

    def call():
        (grad,) = pull(one)
        return jax.block_until_ready(grad)

    return call, diag


def lineax_solver(method: str):
    _, lx = _peers()
    if method == "optimistix-GMRES":
        return lx.GMRES(rtol=RTOL, atol=RTOL)
    if method == "optimistix-GMRES-budget":
        # Step 0 of lineax's GMRES is a dummy pass (one product), so max_steps=2 is one real cycle.
        return lx.GMRES(rtol=0.0, atol=0.0, restart=BUDGET_RESTART, max_steps=2)
    raise ValueError(method)


def optimistix_backward(model: Model, method: str):
    """optimistix's pullback of ``L = <c, h*>``: ``jax.jit(jax.vjp(loss))`` once (the forward,
    ``FixedPointIteration`` from the shared ``h*``), then ``call()`` runs the jitted pullback
    (compiled by a first call here). Returns ``(call, info)``, info: the forward's steps and
    ``max |h*_optimistix - h*|``."""
    jax = _jax()
    jnp = jax.numpy
    optx, _ = _peers()
    solver = optx.FixedPointIteration(rtol=FORWARD_RTOL, atol=FORWARD_RTOL)
    adjoint = optx.ImplicitAdjoint(linear_solver=lineax_solver(method))

    @jax.jit
    def forward(p, y0):
        def loss(p):
            sol = optx.fixed_point(model.f, solver, y0, p, adjoint=adjoint, max_steps=CAP)
            return jnp.sum(model.c * sol.value), (sol.value, sol.stats["num_steps"])

        return jax.vjp(loss, p, has_aux=True)

    _, pull, (h, steps) = forward(model.params, model.h_star)
    apply = jax.jit(lambda pull, ct: pull(ct)[0])
    one = jnp.ones((), dtype=jnp.float32)

    def call():
        return jax.block_until_ready(apply(pull, one))

    call()  # compiles
    info = {"forward_steps": int(steps), "h_difference": float(jnp.max(jnp.abs(h - model.h_star)))}
    return call, info


def lineax_products(model: Model, method: str, h=None):
    """The products of the linear solve inside optimistix's ``ImplicitAdjoint``, which does
    not return them: the same lineax solve run directly, ``(J^T - I) w = g`` (``J - I`` is
    optimistix's fixed-point rewrite, transposed by the backward pass), jitted, its operator
    counting its calls with ``jax.debug.callback``. Returns ``(products, lineax steps, w)``;
    ``-w`` is the adjoint z."""
    jax = _jax()
    _, lx = _peers()
    h = model.h_star if h is None else h
    _, pull = jax.vjp(lambda y: model.f(y, model.params), h)
    calls = []

    def mv(u):
        jax.debug.callback(lambda: calls.append(1))
        return pull(u)[0] - u

    operator = lx.FunctionLinearOperator(mv, jax.eval_shape(lambda: model.c))
    def solve(b):
        sol = lx.linear_solve(operator, b, lineax_solver(method), throw=False)
        return sol.value, sol.stats["num_steps"]

    w, steps = jax.block_until_ready(jax.jit(solve)(model.c))
    jax.effects_barrier()  # the callbacks have all run
    return len(calls), int(steps), w


def measure(model: Model | str, repeats: int = REPEATS, *, peers: bool | None = None, progress=None,
            sample_seconds: float = SAMPLE_SECONDS, radii: bool = False) -> dict:
    """Every method's backward on one model, and the loop overhead, in this process: counts and
    gradient differences once, then ``repeats`` interleaved rounds (the methods in a rotating
    order). ``radii``: also each block's spectral radius (dense eigenvalues, seconds). Plain
    data (asv pickles it)."""
    model = Model(model) if isinstance(model, str) else model
    peers = peers_available() if peers is None else peers
    blocks = model.blocks()
    ref = reference(model, blocks)
    out = {
        "model": model.name, "n": model.n, "batch": model.batch, "scale": model.scale,
        "norm": float(ref["norms"].max()), "norm_median": float(np.median(ref["norms"])),
        "forward_steps": model.forward_result.num_steps, "forward_residual": model.forward_residual,
        "methods": {},
    }
    if radii:
        r = np.abs(np.linalg.eigvals(blocks.astype(np.float64))).max(axis=1)
        out["radius"], out["radius_median"] = float(r.max()), float(np.median(r))
    del blocks
    calls = {}
    for method in RBPSOLVE_METHODS:
        call, diag = rbpsolve_backward(model, method)
        grad = call()  # also the warm-up
        b = diag.backward
        calls[method] = call
        out["methods"][method] = {
            "products": b.num_vjp + b.num_jvp, "num_vjp": b.num_vjp, "num_jvp": b.num_jvp,
            "steps": b.num_steps, "status": b.status.name,
            "gradient_error": relative_difference(grad, ref["gradient"]), "gradients": grad,
        }
    if peers:
        for method in PEER_METHODS:
            call, info = optimistix_backward(model, method)
            grad = call()
            products, steps, w = lineax_products(model, method)
            calls[method] = call
            out["methods"][method] = {
                "products": products, "num_vjp": products, "num_jvp": 0, "steps": steps, "status": None,
                "gradient_error": relative_difference(grad, ref["gradient"]), "gradients": grad,
                "direct_solve_difference": relative_difference(model.parameter_gradient(-w), grad), **info,
            }
    names = list(out["methods"])
    for a in names:
        out["methods"][a]["difference_to"] = {
            b: relative_difference(out["methods"][a]["gradients"], out["methods"][b]["gradients"]) for b in names}
    for a in names:  # jax arrays do not belong in a pickled asv cache
        del out["methods"][a]["gradients"]
    overhead = LoopOverhead(model)
    calls.update(overhead.calls())
    number = {k: calls_per_sample(fn, sample_seconds) for k, fn in calls.items()}
    times = {k: [] for k in calls}
    keys = list(calls)
    for r in range(repeats):
        shift = r % len(keys)
        for k in keys[shift:] + keys[:shift]:
            times[k].append(seconds_per_call(calls[k], number[k]))
        if progress is not None:
            progress(1)
    out["times"] = times
    out["overhead"] = {"num_vjp": overhead.num_vjp, "status": overhead.status}
    return out


# ------------------------------------------------------------------------------- loop overhead
class LoopOverhead:
    """``solve_adjoint(jacobian_operator(f, h*), g, Neumann(max_steps=K))`` against the same
    number of bare calls of one ``jax.vjp`` pullback of ``f(., params)`` at ``h*``, eager; of
    the operator's own product ``J.rmv`` (the adapter's linearisation of the raveled map),
    eager; and of the pullback in one ``jax.jit`` (``lax.fori_loop``)."""

    def __init__(self, model: Model, k: int = K):
        jax = _jax()
        import rbpsolve
        from rbpsolve.adapters.jax import jacobian_operator

        F = lambda h: model.f(h, model.params)  # noqa: E731
        self.J = jacobian_operator(F, model.h_star)
        self.g = model.c.ravel()  # the operator acts on the raveled state
        self.solver = rbpsolve.Neumann(max_steps=k)
        result = rbpsolve.solve_adjoint(self.J, self.g, self.solver)
        self.num_vjp, self.status = result.num_vjp, result.status.name
        _, self.pull = jax.vjp(F, model.h_star)
        self.c = model.c
        steps = self.num_vjp
        self._jitted = jax.jit(lambda pull, u: jax.lax.fori_loop(0, steps, lambda i, u: pull(u)[0], u))
        self.bare_jit()  # compiles

    def solve(self):
        import rbpsolve

        return _jax().block_until_ready(rbpsolve.solve_adjoint(self.J, self.g, self.solver).x)

    def bare(self):
        u = self.c
        for _ in range(self.num_vjp):
            (u,) = self.pull(u)
        return _jax().block_until_ready(u)

    def bare_flat(self):
        u = self.g
        for _ in range(self.num_vjp):
            u = self.J.rmv(u)
        return _jax().block_until_ready(u)

    def bare_jit(self):
        return _jax().block_until_ready(self._jitted(self.pull, self.c))

    def calls(self) -> dict:
        return {"loop:solve": self.solve, "loop:bare": self.bare, "loop:bare-flat": self.bare_flat,
                "loop:bare-jit": self.bare_jit}


def per_round(times, a, b) -> list:
    return [x / y for x, y in zip(times[a], times[b])]


def overhead_us_per_step(result) -> list:
    t, k = result["times"], result["overhead"]["num_vjp"]
    return [(s - b) / k * 1e6 for s, b in zip(t["loop:solve"], t["loop:bare"])]


# ------------------------------------------------------------------------------- asv
MODEL_NAMES = list(SIZES)


class _JaxCache:
    """One measurement of both models (every method, interleaved rounds, one process), which the
    classes below read (asv shares an inherited ``setup_cache``)."""

    timeout = 900

    def setup_cache(self):
        _jax()
        return {name: measure(name) for name in MODEL_NAMES}

    setup_cache.timeout = 900

    def _entry(self, cache, model, method):
        entry = cache[model]["methods"].get(method)
        if entry is None:
            raise NotImplementedError(f"{method} was not measured (optimistix or lineax missing)")
        return entry


class JaxBackward(_JaxCache):
    """One gradient's backward through the fixed point (tanh n = 512 / GRU 256, batch 64,
    float32, ||J|| = 0.9): products, gradient error, seconds."""

    params = (MODEL_NAMES, METHODS)
    param_names = ["model", "method"]

    def setup(self, cache, model, method):
        self.entry = self._entry(cache, model, method)

    def track_products(self, cache, model, method):
        return self.entry["products"]

    track_products.unit = "products (VJPs + JVPs) of the adjoint solve"

    def track_gradient_error(self, cache, model, method):
        return self.entry["gradient_error"]

    track_gradient_error.unit = "||grad - reference|| / ||reference|| (float64 dense reference)"

    def track_seconds(self, cache, model, method):
        return median(cache[model]["times"][method])

    track_seconds.unit = "seconds a backward (median of interleaved rounds)"


class JaxBackwardRatio(_JaxCache):
    """rbpsolve's backward time over optimistix + lx.GMRES(rtol=1e-6)'s (jitted), median of the
    rounds' ratios."""

    params = (MODEL_NAMES, RBPSOLVE_METHODS + ["optimistix-GMRES-budget"])
    param_names = ["model", "method"]

    def setup(self, cache, model, method):
        self._entry(cache, model, method)
        self._entry(cache, model, BASELINE)

    def track_time_ratio(self, cache, model, method):
        return median(per_round(cache[model]["times"], method, BASELINE))

    track_time_ratio.unit = "backward time / optimistix-GMRES backward time"


class JaxLoopOverhead(_JaxCache):
    """Eager Neumann(K=30) through ``solve_adjoint`` over 30 bare eager pullbacks; the bare
    pullbacks eager over jitted. Issue 17's goal (<= 1.05) is for a jitted fixed budget, which
    the adapter cannot run yet (not measurable)."""

    params = MODEL_NAMES
    param_names = ["model"]

    def track_ratio_to_products(self, cache, model):
        return median(per_round(cache[model]["times"], "loop:solve", "loop:bare"))

    track_ratio_to_products.unit = "eager solve / eager bare pullbacks"

    def track_overhead_us_per_step(self, cache, model):
        return median(overhead_us_per_step(cache[model]))

    track_overhead_us_per_step.unit = "microseconds a step (eager solve - eager bare) / steps"

    def track_ratio_to_adapter_products(self, cache, model):
        return median(per_round(cache[model]["times"], "loop:solve", "loop:bare-flat"))

    track_ratio_to_adapter_products.unit = "eager solve / eager bare J.rmv (the adapter's product)"

    def track_eager_over_jit(self, cache, model):
        return median(per_round(cache[model]["times"], "loop:bare", "loop:bare-jit"))

    track_eager_over_jit.unit = "eager bare pullbacks / the same in one jax.jit"


SMALL_SCALE = 0.5674  # what calibrate() finds for Model("tanh", 64, 8); tests/test_bench_jax.py checks it


class JaxSmall:
    """A quick one for CI (a few seconds a process): tanh n = 64, batch 8, ``||J|| = 0.9`` (its
    calibrated scale, :data:`SMALL_SCALE`), each method's backward products and time."""

    params = METHODS
    param_names = ["method"]
    timeout = 120

    def setup(self, method):
        _jax()
        if method in PEER_METHODS:
            _peers()
        self.model = Model("tanh", 64, 8, scale=SMALL_SCALE)
        if method in PEER_METHODS:
            self.call, _ = optimistix_backward(self.model, method)
        else:
            self.call, self.diag = rbpsolve_backward(self.model, method)
        self.method = method
        self.call()  # warm-up

    def track_products(self, method):
        if method in PEER_METHODS:
            return lineax_products(self.model, method)[0]
        b = self.diag.backward
        return b.num_vjp + b.num_jvp

    track_products.unit = "products (VJPs + JVPs) of the adjoint solve"

    def time_backward(self, method):
        self.call()

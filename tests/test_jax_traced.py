"""The JAX adapter's fixed budgets under jax.jit and jax.vmap: the eager call's iterates,
gradients and statuses to 1e-12 in float64, statuses per sample, the failure policies on
the device, Proposition 1 against a jitted TBPTT, and the clear error for everything else."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy
pytest.importorskip("equinox")

import rbpsolve  # noqa: E402
from rbpsolve import GMRES, Fallback, FixedPoint, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.jax import (  # noqa: E402
    ConvergenceWarning,
    Diagnostics,
    TracedDiagnostics,
    TracedSolve,
    backward_probe,
    backward_report,
    fixed_point,
    status_of,
)

N = 6
TIGHT = 1e-12


def _contraction(n, q, seed):
    W = np.random.default_rng(seed).standard_normal((n, n))
    return jnp.asarray(W * (q / np.linalg.norm(W, 2)))


def _params(q=0.8, seed=0):
    return {"W": _contraction(N, q, seed), "x": jnp.linspace(-1.0, 1.0, N)}


def _f(h, p):
    return jnp.tanh(p["W"] @ h + p["x"])


def _loss(h):
    return sum(jnp.sum(jnp.sin(leaf) + leaf**2) for leaf in jax.tree_util.tree_leaves(h))


def _objective(f, h0, loss=_loss, **kw):
    def objective(p, probe):
        h, diag = fixed_point(f, h0, p, backward_probe=probe, **kw)
        return loss(h), (h, diag)

    return jax.grad(objective, argnums=(0, 1), has_aux=True)


def _eager_and_jit(f, h0, params, loss=_loss, **kw):
    """``((grads, probe_grad, h, diag) eager, the same jitted)``."""
    grad = _objective(f, h0, loss, **kw)
    probe = backward_probe()
    (g_e, p_e), (h_e, d_e) = grad(params, probe)
    (g_j, p_j), (h_j, d_j) = jax.jit(grad)(params, probe)
    return (g_e, p_e, h_e, d_e), (g_j, p_j, h_j, d_j)


def _max_relative(a, b):
    def rel(x, y):
        scale = max(float(jnp.max(jnp.abs(y))), 1e-300)
        return float(jnp.max(jnp.abs(x - y))) / scale

    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(rel, a, b)))


def _assert_same_as_eager(eager, jitted, rel=TIGHT):
    g_e, p_e, h_e, d_e = eager
    g_j, p_j, h_j, d_j = jitted
    assert isinstance(d_e, Diagnostics) and isinstance(d_j, TracedDiagnostics)
    assert _max_relative(h_j, h_e) < rel
    assert _max_relative(g_j, g_e) < rel
    fwd = d_j.forward
    assert fwd.statuses() is d_e.forward.status and int(fwd.num_steps) == d_e.forward.num_steps
    np.testing.assert_allclose(float(fwd.last_norm), d_e.forward.history[-1], rtol=1e-10, atol=1e-300)
    bwd = backward_report(p_j)
    assert bwd.statuses() is d_e.backward.status and int(bwd.num_steps) == d_e.backward.num_steps
    np.testing.assert_allclose(float(bwd.last_norm), d_e.backward.history[-1], rtol=1e-10, atol=1e-300)
    np.testing.assert_array_equal(p_e[:2], p_j[:2])  # the eager call fills the probe the same way
    np.testing.assert_allclose(p_e[2], p_j[2], rtol=1e-10, atol=1e-300)
    assert backward_report(p_e).statuses() is d_e.backward.status


# ---------------------------------------------------------------------------- jit == eager
@pytest.mark.parametrize("backward", [Neumann(max_steps=12, rtol=0, atol=0), FixedPoint(max_steps=13, rtol=0, atol=0),
                                      Neumann(max_steps=100, rtol=0, atol=0)], ids=["neumann", "fixedpoint", "long"])
@pytest.mark.parametrize("T", [3, 80])
def test_jit_forward_and_gradient_equal_the_eager_call(backward, T):
    """T = 3 stops far from the fixed point: the gradient is the implicit one at h_3."""
    eager, jitted = _eager_and_jit(_f, jnp.zeros(N), _params(), forward=Picard(max_steps=T, rtol=0, atol=0),
                                   backward=backward)
    _assert_same_as_eager(eager, jitted)
    assert eager[3].forward.status is Status.BUDGET_SPENT and eager[3].backward.status is Status.BUDGET_SPENT


def test_jit_of_the_forward_alone_returns_the_eager_state_and_status():
    kw = dict(forward=Picard(max_steps=25, rtol=0, atol=0), backward=Neumann(max_steps=5))
    h_e, d_e = fixed_point(_f, jnp.zeros(N), _params(), **kw)
    h_j, d_j = jax.jit(lambda p: fixed_point(_f, jnp.zeros(N), p, **kw))(_params())
    assert _max_relative(h_j, h_e) < TIGHT
    assert d_j.forward.statuses() is d_e.forward.status is Status.BUDGET_SPENT
    assert int(d_j.forward.num_steps) == 25 and bool(d_j.forward.ok())


@pytest.mark.parametrize("kind", ["array", "callable"])
def test_pytree_states_and_backward_x0_equal_the_eager_call(kind):
    W, V = _contraction(4, 0.6, 5), _contraction(4, 0.3, 6)
    params = (W, {"V": V, "scale": jnp.asarray(0.5)})
    h0 = {"fast": jnp.zeros(4), "slow": [jnp.zeros((2, 2))]}

    def f(h, p):
        W, rest = p
        fast = jnp.tanh(W @ h["fast"] + rest["scale"] * h["slow"][0].ravel() + 0.3)
        return {"fast": fast, "slow": [jnp.tanh(rest["V"] @ fast + 0.1).reshape(2, 2)]}

    z0 = {"fast": jnp.linspace(0.1, 0.4, 4), "slow": [jnp.full((2, 2), 0.2)]}
    x0 = z0 if kind == "array" else (lambda g: jax.tree_util.tree_map(lambda a, b: 0.5 * a + b, g, z0))
    eager, jitted = _eager_and_jit(f, h0, params, forward=Picard(max_steps=40, rtol=0, atol=0),
                                   backward=FixedPoint(max_steps=4, rtol=0, atol=0), backward_x0=x0)
    _assert_same_as_eager(eager, jitted)
    zero, _ = _eager_and_jit(f, h0, params, forward=Picard(max_steps=40, rtol=0, atol=0),
                             backward=FixedPoint(max_steps=4, rtol=0, atol=0))
    assert _max_relative(zero[0], jitted[0]) > 1e-6  # the start mattered


def test_neumann_from_a_start_equals_the_eager_call():
    z0 = jnp.linspace(-0.3, 0.3, N)
    eager, jitted = _eager_and_jit(_f, jnp.zeros(N), _params(), forward=Picard(max_steps=50, rtol=0, atol=0),
                                   backward=Neumann(max_steps=6, rtol=0, atol=0), backward_x0=z0)
    _assert_same_as_eager(eager, jitted)


def test_a_float32_state_equals_the_eager_call_to_its_precision():
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), _params())
    eager, jitted = _eager_and_jit(_f, jnp.zeros(N, jnp.float32), params, forward=Picard(max_steps=30, rtol=0, atol=0),
                                   backward=Neumann(max_steps=10, rtol=0, atol=0))
    assert jitted[0]["W"].dtype == jnp.float32
    _assert_same_as_eager(eager, jitted, rel=1e-5)


def test_a_zero_cotangent_returns_zero_with_no_step_as_the_core_does():
    eager, jitted = _eager_and_jit(_f, jnp.zeros(N), _params(), loss=lambda h: 0.0 * jnp.sum(h),
                                   forward=Picard(max_steps=10, rtol=0, atol=0),
                                   backward=Neumann(max_steps=5, rtol=0, atol=0))
    assert eager[3].backward.status is Status.CONVERGED and eager[3].backward.num_steps == 0
    report = backward_report(jitted[1])
    assert report.statuses() is Status.CONVERGED and int(report.num_steps) == 0 and bool(jnp.isnan(report.last_norm))
    assert not any(bool(jnp.any(leaf)) for leaf in jax.tree_util.tree_leaves(jitted[0]))


@pytest.mark.parametrize("scale", [1e-170, 1e170], ids=["tiny", "huge"])
def test_a_cotangent_outside_the_safe_range_is_scaled_as_the_core_scales_it(scale):
    """max |g| beyond 2**+-255 in float64, where norm(g)**2 under- or overflows: the core
    solves with g scaled by a power of two, and so does the traced solve."""
    eager, jitted = _eager_and_jit(_f, jnp.zeros(N), _params(), loss=lambda h: scale * jnp.sum(h**2),
                                   forward=Picard(max_steps=30, rtol=0, atol=0),
                                   backward=Neumann(max_steps=8, rtol=0, atol=0))
    _assert_same_as_eager(eager, jitted)
    assert eager[3].backward.status is Status.BUDGET_SPENT


# ---------------------------------------------------------------------------- the series judged at the end
@pytest.mark.parametrize("solver", [Neumann(max_steps=20, rtol=0, atol=0), FixedPoint(max_steps=21, rtol=0, atol=0)],
                         ids=["neumann", "fixedpoint"])
@pytest.mark.parametrize("rho", [1.2, 1.02, 0.9])
def test_a_budget_too_short_for_the_divergence_factor_is_judged_at_its_end(solver, rho):
    """rho(J) = 1.2 grows the terms 1.2**20 = 38 times, far below divergence_factor = 1e4:
    the core's end-of-budget rule (rbpsolve._verify.series_not_converging) calls it
    DIVERGED; the traced status is the same, for each rho."""
    Q = np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0]
    A = jnp.asarray(Q @ np.diag(np.linspace(-0.5, rho, N)) @ Q.T)
    params = {"A": A, "b": jnp.linspace(0.5, 1.0, N)}

    def f(h, p):
        return p["A"] @ h + p["b"]

    kw = dict(forward=Picard(max_steps=1, rtol=0, atol=0), backward=solver, on_failure="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        eager, jitted = _eager_and_jit(f, jnp.zeros(N), params, loss=lambda h: jnp.sum(h**2), **kw)
        jax.effects_barrier()
    want = Status.BUDGET_SPENT if rho < 1 else Status.DIVERGED
    assert eager[3].backward.status is want
    _assert_same_as_eager(eager, jitted)


# ---------------------------------------------------------------------------- failures
def _divergent(K=30):
    """A linear map with spectral radius 1.5: Neumann's series diverges (1.5**K past 1e4 at
    K = 23); the forward is one step from 0 (h* = b)."""
    Q = np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0]
    params = {"A": jnp.asarray(Q @ np.diag(np.linspace(-0.5, 1.5, N)) @ Q.T), "b": jnp.linspace(0.5, 1.0, N)}
    kw = dict(forward=Picard(max_steps=1, rtol=0, atol=0), backward=Neumann(max_steps=K, rtol=0, atol=0))
    return (lambda h, p: p["A"] @ h + p["b"]), params, kw


@pytest.mark.parametrize("K", [30, 200], ids=["short", "past-a-checkpoint"])
def test_a_divergent_backward_under_warn_records_diverged_and_warns(K):
    """K = 200: the core reads the budget at step 64, finds it diverged and stops there;
    the traced loop skips the same steps (num_steps 64, the same best iterate)."""
    f, params, kw = _divergent(K)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eager, jitted = _eager_and_jit(f, jnp.zeros(N), params, loss=lambda h: jnp.sum(h**2), on_failure="warn", **kw)
        jax.effects_barrier()
    assert eager[3].backward.status is Status.DIVERGED
    assert eager[3].backward.num_steps == (30 if K == 30 else 64)
    _assert_same_as_eager(eager, jitted)
    traced = [w for w in caught if "the traced backward solve ended DIVERGED" in str(w.message)]
    assert traced and all(issubclass(w.category, ConvergenceWarning) for w in traced)
    assert bool(jnp.all(jnp.isfinite(jitted[0]["b"])))


def test_a_divergent_backward_raises_under_jit_through_equinox():
    f, params, kw = _divergent()
    grad = jax.jit(_objective(f, jnp.zeros(N), loss=lambda h: jnp.sum(h**2), **kw))
    with pytest.raises(Exception, match="the traced backward solve ended DIVERGED") as info:
        jax.block_until_ready(grad(params, backward_probe()))
    assert "spectral radius of J is below 1" in str(info.value)  # the status's own advice


def test_a_divergent_forward_raises_under_raise_and_warns_under_warn():
    params = {"a": jnp.asarray(3.0)}

    def f(h, p):
        return p["a"] * h + 1.0

    kw = dict(forward=Picard(max_steps=30, rtol=0, atol=0), backward=Neumann(max_steps=3))
    run = jax.jit(lambda p, rule: fixed_point(f, jnp.zeros(2), p, on_failure=rule, **kw), static_argnums=1)
    with pytest.raises(Exception, match="the traced forward solve ended DIVERGED"):
        jax.block_until_ready(run(params, "raise"))
    with pytest.warns(ConvergenceWarning, match="the traced forward solve ended DIVERGED"):
        h, diag = run(params, "warn")
        jax.effects_barrier()
    h_e, d_e = _eager_warn(lambda: fixed_point(f, jnp.zeros(2), params, on_failure="warn", **kw))
    assert diag.forward.statuses() is d_e.forward.status is Status.DIVERGED
    assert int(diag.forward.num_steps) == d_e.forward.num_steps
    np.testing.assert_array_equal(h, h_e)  # the best iterate


def _eager_warn(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return call()


def test_non_finite_solves_are_nonfinite_in_the_arrays():
    """Terms that overflow: the backward's second term is inf (NONFINITE, the best iterate
    g is finite so "warn" goes on); a forward that overflows at its second step too."""
    big = {"A": 1e200 * jnp.eye(N) / 3.0, "b": jnp.linspace(0.5, 1.0, N)}

    def f(h, p):
        return p["A"] @ h + p["b"]

    kw = dict(forward=Picard(max_steps=1, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0),
              on_failure="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        eager, jitted = _eager_and_jit(f, jnp.zeros(N), big, loss=lambda h: jnp.sum(h**2), **kw)
        jax.effects_barrier()
    assert eager[3].backward.status is Status.NONFINITE
    _assert_same_as_eager(eager, jitted)
    forward = dict(kw, forward=Picard(max_steps=4, rtol=0, atol=0))
    h_e, d_e = _eager_warn(lambda: fixed_point(f, jnp.zeros(N), big, **forward))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        h_j, d_j = jax.jit(lambda p: fixed_point(f, jnp.zeros(N), p, **forward))(big)
        jax.effects_barrier()
    assert d_e.forward.status is Status.NONFINITE and d_j.forward.statuses() is Status.NONFINITE
    np.testing.assert_array_equal(h_j, h_e)
    with pytest.raises(Exception, match="the traced forward solve ended NONFINITE"):
        jax.block_until_ready(jax.jit(lambda p: fixed_point(f, jnp.zeros(N), p, **dict(forward, on_failure="raise")))(big))


def test_a_non_finite_best_iterate_raises_even_under_warn():
    """A NaN from the first step: the best iterate is the start, NaN too (as the eager
    "warn", which raises rather than hand NaNs to every gradient)."""
    kw = dict(forward=Picard(max_steps=2, rtol=0, atol=0), backward=Neumann(max_steps=2), on_failure="warn")
    with pytest.raises(Exception, match="best iterate is not finite"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            jax.block_until_ready(jax.jit(lambda h0: fixed_point(lambda h, p: h + p, h0, 1.0, **kw)[0])(
                jnp.full(3, jnp.nan)))


# ---------------------------------------------------------------------------- vmap
def test_vmap_of_grad_equals_per_sample_eager_gradients_with_per_sample_statuses():
    """A batch of inputs x_i: each sample its own solve. Sample 2's W has spectral radius
    1.5 so its backward diverges (and only its)."""
    xs = jnp.asarray(np.random.default_rng(3).standard_normal((4, N)))
    Q = np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0]
    Ws = jnp.stack([_contraction(N, 0.7, s) for s in range(4)])
    Ws = Ws.at[2].set(jnp.asarray(Q @ np.diag(np.linspace(-0.5, 1.5, N)) @ Q.T))
    kw = dict(forward=Picard(max_steps=2, rtol=0, atol=0), backward=Neumann(max_steps=30, rtol=0, atol=0),
              on_failure="warn")

    def f(h, p):
        return p["W"] @ h + p["x"]

    def loss(p, probe):
        h, diag = fixed_point(f, jnp.zeros(N), p, backward_probe=probe, **kw)
        return jnp.sum(h**2), diag

    grad = jax.grad(loss, argnums=(0, 1), has_aux=True)
    probe = backward_probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (g_v, p_v), d_v = jax.jit(jax.vmap(grad, in_axes=({"W": 0, "x": 0}, None)))({"W": Ws, "x": xs}, probe)
        jax.effects_barrier()
    assert any("DIVERGED" in str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning))
    report = backward_report(p_v)
    assert p_v.shape == (4, 3) and d_v.forward.status.shape == (4,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in range(4):
            (g_e, p_e), d_e = grad({"W": Ws[i], "x": xs[i]}, probe)
            assert _max_relative({k: v[i] for k, v in g_v.items()}, g_e) < TIGHT
            assert report.statuses()[i] is d_e.backward.status
            assert int(report.num_steps[i]) == d_e.backward.num_steps
            assert d_v.forward.statuses()[i] is d_e.forward.status
    assert list(report.statuses()) == [Status.BUDGET_SPENT] * 2 + [Status.DIVERGED, Status.BUDGET_SPENT]
    np.testing.assert_array_equal(report.ok(), [True, True, False, True])


def test_vmap_of_jax_grad_without_a_probe():
    """The plain jax.vmap(jax.grad(loss)) of the issue, against per-sample eager gradients."""
    xs = jnp.asarray(np.random.default_rng(4).standard_normal((3, N)))
    W = _contraction(N, 0.8, 0)
    kw = dict(forward=Picard(max_steps=60, rtol=0, atol=0), backward=FixedPoint(max_steps=15, rtol=0, atol=0))

    def loss(x, W):
        h, _ = fixed_point(_f, jnp.zeros(N), {"W": W, "x": x}, **kw)
        return _loss(h)

    batched = jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None))(xs, W)
    for i in range(3):
        want = jax.grad(loss, argnums=(0, 1))(xs[i], W)
        assert _max_relative((batched[0][i], batched[1][i]), want) < TIGHT


def test_raise_under_vmap_raises_with_the_failing_samples_status():
    f, params, kw = _divergent()
    batch = {"A": jnp.stack([0.5 * jnp.eye(N), params["A"]]), "b": jnp.stack([params["b"]] * 2)}
    grad = jax.vmap(_objective(f, jnp.zeros(N), loss=lambda h: jnp.sum(h**2), **kw), in_axes=(0, None))
    with pytest.raises(Exception, match="the traced backward solve ended DIVERGED"):
        jax.block_until_ready(jax.jit(grad)(batch, backward_probe()))


def test_under_jit_an_array_in_fs_closure_gets_its_gradient():
    """Eagerly a traced array in f's closure is refused; a traced budget hoists it
    (jax.closure_convert) and its gradient is that of the same array passed in params."""
    W = _contraction(N, 0.7, 2)
    kw = dict(forward=Picard(max_steps=40, rtol=0, atol=0), backward=Neumann(max_steps=10, rtol=0, atol=0))

    def closed(x):
        return _loss(fixed_point(lambda h, W: jnp.tanh(W @ h + x), jnp.zeros(N), W, **kw)[0])

    def passed(x):
        return _loss(fixed_point(_f, jnp.zeros(N), {"W": W, "x": x}, **kw)[0])

    x = jnp.linspace(-1.0, 1.0, N)
    assert _max_relative(jax.jit(jax.grad(closed))(x), jax.grad(passed)(x)) < TIGHT
    xs = jnp.stack([x, 0.5 * x])
    want = jnp.stack([jax.grad(passed)(xs[0]), jax.grad(passed)(xs[1])])
    assert _max_relative(jax.jit(jax.vmap(jax.grad(closed)))(xs), want) < TIGHT


# ---------------------------------------------------------------------------- Proposition 1
def _model(q=0.5, seed=0):
    rng = np.random.default_rng(seed + 100)
    params = {"W": _contraction(8, q, seed), "U": jnp.asarray(0.2 * rng.standard_normal((8, 5))),
              "b": jnp.asarray(0.2 * rng.standard_normal(8))}
    x, target = jnp.asarray(rng.standard_normal((4, 5))), jnp.asarray(rng.standard_normal((4, 8)))

    def f(h, p):
        return jnp.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    def loss(h):
        return jnp.sum((h - target) ** 2)

    return params, f, loss, jnp.zeros((4, 8))


@pytest.mark.parametrize("K", [1, 3, 8])
def test_proposition_1_under_jit_neumann_equals_a_jitted_tbptt(K):
    """K-step Neumann-RBP at a converged state (T = 120 steps at ||W|| = 0.5) equals TBPTT
    through the last K + 1 steps, unrolled and differentiated by jax under jit; and K + 1
    FixedPoint steps from zero give the same (Proposition 3)."""
    params, f, loss, h0 = _model()
    T = 120

    @functools.partial(jax.jit, static_argnums=1)
    def rbp(p, solver):
        return jax.grad(lambda p: loss(fixed_point(f, h0, p, forward=Picard(max_steps=T, rtol=0, atol=0),
                                                   backward=solver)[0]))(p)

    @jax.jit
    def tbptt(p):
        h = jax.lax.stop_gradient(jax.lax.fori_loop(0, T - (K + 1), lambda _, h: f(h, p), h0))

        def tail(p):
            s = h
            for _ in range(K + 1):
                s = f(s, p)
            return loss(s)

        return jax.grad(tail)(p)

    neumann = rbp(params, Neumann(max_steps=K, rtol=0, atol=0))
    assert _max_relative(neumann, tbptt(params)) < 1e-10
    assert _max_relative(rbp(params, FixedPoint(max_steps=K + 1, rtol=0, atol=0)), neumann) < 1e-12
    longer = rbp(params, Neumann(max_steps=K + 20, rtol=0, atol=0))
    assert _max_relative(neumann, longer) > 1e-8  # and the truncation matters


# ---------------------------------------------------------------------------- what stays refused
TRACED_ALTERNATIVE = r"Picard\(max_steps=T, rtol=0, atol=0\) with backward=rbpsolve.Neumann\(max_steps=K"


@pytest.mark.parametrize("kw", [
    dict(forward=Picard(rtol=1e-10)),
    dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=1e-8)),
    dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=GMRES(max_steps=5, rtol=0, atol=0)),
    dict(forward=rbpsolve.Anderson(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0)),
    dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0),
         on_failure=Fallback(GMRES(rtol=1e-10))),
], ids=["tolerance-forward", "tolerance-backward", "gmres", "anderson", "fallback"])
def test_every_other_solver_under_jit_raises_naming_the_traced_alternative(kw):
    def grad(p):
        return jax.grad(lambda p: _loss(fixed_point(_f, jnp.zeros(N), p, **kw)[0]))(p)

    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED_ALTERNATIVE) as info:
        jax.jit(grad)(_params())
    assert "eagerly" in str(info.value) and "optimistix.fixed_point" in str(info.value)
    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED_ALTERNATIVE):
        jax.vmap(lambda x: fixed_point(_f, jnp.zeros(N), {"W": _params()["W"], "x": x}, **kw)[0])(jnp.ones((2, N)))


def test_mask_is_refused_under_jit():
    kw = dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0))
    with pytest.raises(ValueError, match="mask"):
        jax.jit(lambda p: fixed_point(_f, jnp.zeros(N), p, on_failure="mask", **kw)[0])(_params())


def test_bad_input_under_jit_is_refused_at_trace_time():
    kw = dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0))
    with pytest.raises(ValueError, match=r"f returned a jax array of shape \(3,\) but h0 has shape \(6,\)"):
        jax.jit(lambda p: fixed_point(lambda h, p: _f(h, p)[:3], jnp.zeros(N), p, **kw)[0])(_params())
    with pytest.raises(TypeError, match="f returned dtype float32 but h0 has dtype float64"):
        jax.jit(lambda p: fixed_point(lambda h, p: _f(h, p).astype(jnp.float32), jnp.zeros(N), p, **kw)[0])(_params())
    with pytest.raises(ValueError, match=r"backward_x0 is a jax array of shape \(2,\) but h0 has shape \(6,\)"):
        jax.jit(lambda p: fixed_point(_f, jnp.zeros(N), p, backward_x0=jnp.zeros(2), **kw)[0])(_params())
    with pytest.raises(TypeError, match="float16"):
        jax.jit(lambda h0: fixed_point(lambda h, p: h * p, h0, jnp.float16(0.5), **kw)[0])(jnp.zeros(3, jnp.float16))
    with pytest.raises(TypeError, match="backward_probe must be the float vector of shape"):
        fixed_point(_f, jnp.zeros(N), _params(), backward_probe=jnp.zeros(2), **kw)


# ---------------------------------------------------------------------------- codes
def test_status_codes_round_trip_and_bad_codes_are_refused():
    from rbpsolve.adapters.jax._results import code

    codes = jnp.asarray([code(s) for s in Status])
    assert list(status_of(codes)) == list(Status)
    assert status_of(0) is None and status_of(jnp.int32(code(Status.DIVERGED))) is Status.DIVERGED
    with pytest.raises(ValueError, match="not an rbpsolve status code"):
        status_of(len(Status) + 1)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        backward_report(jnp.zeros(2))
    with pytest.raises(TypeError, match="floating dtype"):
        backward_probe(jnp.int32)
    assert isinstance(backward_report(jnp.zeros(3)), TracedSolve)


def test_a_probe_no_backward_reached_reads_not_run():
    kw = dict(forward=Picard(max_steps=5, rtol=0, atol=0), backward=Neumann(max_steps=5, rtol=0, atol=0))

    def loss(p, probe):
        h, _ = fixed_point(_f, jnp.zeros(N), p, backward_probe=probe, **kw)
        return jnp.sum(p["x"])  # h unused: no cotangent reaches the fixed point

    _, probe_grad = jax.jit(jax.grad(loss, argnums=(0, 1)))(_params(), backward_probe())
    assert backward_report(probe_grad).statuses() is None

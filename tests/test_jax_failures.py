"""The JAX adapter on bad input, failed solves and traced calls: clear errors, the failure
policies under both settings, a Fallback that recovers, and nothing the user gave mutated."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

import rbpsolve  # noqa: E402
from rbpsolve import GMRES, Fallback, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.jax import ConvergenceWarning, fixed_point, jacobian_operator  # noqa: E402

N = 6


def _f(h, p):
    return jnp.tanh(p["W"] @ h + p["x"])


def _params(q=0.5):
    W = np.random.default_rng(0).standard_normal((N, N))
    return {"W": jnp.asarray(W * (q / np.linalg.norm(W, 2))), "x": jnp.linspace(-1.0, 1.0, N)}


def _grad(f, h0, params, **kw):
    def objective(p):
        h, diag = fixed_point(f, h0, p, **kw)
        return sum(jnp.sum(leaf**2) for leaf in jax.tree_util.tree_leaves(h)), diag

    return jax.grad(objective, has_aux=True)(params)


# ---------------------------------------------------------------------------- bad input
def test_a_numpy_state_is_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"h0 must be a jax.Array; got numpy.ndarray. Convert it with jax.numpy"):
        fixed_point(_f, np.zeros(N), _params())
    with pytest.raises(TypeError, match=r"h0\['b'\] must be a jax.Array"):
        fixed_point(lambda h, p: h, {"a": jnp.zeros(2), "b": np.zeros(2)}, _params())
    with pytest.raises(TypeError, match=r"h must be a jax.Array"):
        jacobian_operator(lambda h: h, np.zeros(N))
    with pytest.raises(TypeError, match="f must be callable"):
        fixed_point("tanh", jnp.zeros(N), _params())


@pytest.mark.parametrize("bad, error, message", [
    (lambda h, p: _f(h, p)[:3], ValueError, r"f returned a jax array of shape \(3,\) but h0 has shape \(6,\)"),
    (lambda h, p: _f(h, p).astype(jnp.float32), TypeError, "f returned dtype float32 but h0 has dtype float64"),
    (lambda h, p: (_f(h, p),), TypeError, "f returned a pytree of structure .* but h0 has structure"),
    (lambda h, p: np.asarray(_f(h, p)), TypeError, "f returned a numpy.ndarray for a .* state"),
], ids=["shape", "dtype", "structure", "library"])
def test_a_bad_output_of_f_is_refused_at_the_call(bad, error, message):
    with pytest.raises(error, match=message):
        fixed_point(bad, jnp.zeros(N), _params())
    if "numpy" not in message:  # np.asarray of the array jax.vjp traces is JAX's own error
        with pytest.raises(error, match=message.replace("h0", "h")):
            jacobian_operator(lambda h: bad(h, _params()), jnp.zeros(N))


def test_bad_settings_are_refused_before_any_solve():
    with pytest.raises(TypeError, match="forward="):
        fixed_point(_f, jnp.zeros(N), _params(), forward=GMRES())
    with pytest.raises(TypeError, match="backward="):
        fixed_point(_f, jnp.zeros(N), _params(), backward=Picard())
    with pytest.raises(ValueError, match="mask.*batch_axis"):
        fixed_point(_f, jnp.zeros(N), _params(), on_failure="mask")
    with pytest.raises(ValueError, match="on_failure must be 'raise', 'warn' or an rbpsolve.Fallback"):
        fixed_point(_f, jnp.zeros(N), _params(), on_failure="ignore")


def test_backward_x0_of_the_wrong_shape_or_kind_is_refused():
    with pytest.raises(ValueError, match=r"backward_x0 has shape \(3,\) but h0 is an array of shape \(6,\)"):
        fixed_point(_f, jnp.zeros(N), _params(), backward_x0=jnp.zeros(3))
    with pytest.raises(TypeError, match="backward_x0 must be a jax.Array"):
        fixed_point(_f, jnp.zeros(N), _params(), backward_x0=np.zeros(N))
    with pytest.raises(ValueError, match="backward_x0 contains NaN or inf"):
        fixed_point(_f, jnp.zeros(N), _params(), backward_x0=jnp.full(N, jnp.nan))
    with pytest.raises(ValueError, match=r"backward_x0\(g\) has shape \(1,\)"):
        _grad(_f, jnp.zeros(N), _params(), backward_x0=lambda g: g[:1])


# ---------------------------------------------------------------------------- failed solves
def _divergent():
    """A linear map with spectral radius 1.5: Neumann's series diverges, GMRES solves it.

    The forward is a fixed budget of one step from 0 (``h* = b``, status BUDGET_SPENT, ok).
    """
    Q = np.linalg.qr(np.random.default_rng(1).standard_normal((N, N)))[0]
    A = Q @ np.diag(np.linspace(-0.5, 1.5, N)) @ Q.T
    params = {"A": jnp.asarray(A), "b": jnp.linspace(0.5, 1.0, N)}
    kw = dict(forward=Picard(max_steps=1, rtol=0.0, atol=0.0), backward=Neumann(max_steps=200, rtol=1e-10))
    return (lambda h, p: p["A"] @ h + p["b"]), params, kw


def test_a_divergent_backward_raises_under_raise():
    f, params, kw = _divergent()
    with pytest.raises(rbpsolve.SolveError, match="Neumann DIVERGED") as info:
        _grad(f, jnp.zeros(N), params, **kw)
    assert info.value.result.status is Status.DIVERGED and info.value.result.num_vjp > 0


def test_a_divergent_backward_warns_under_warn_and_records_it():
    f, params, kw = _divergent()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grads, diag = _grad(f, jnp.zeros(N), params, on_failure="warn", **kw)
    [w] = [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert "the backward solve ended DIVERGED" in str(w.message)
    assert w.filename == __file__  # the warning points at the user's code, not at JAX's internals
    assert diag.backward.status is Status.DIVERGED and bool(jnp.all(jnp.isfinite(grads["b"])))


def test_a_fallback_to_gmres_recovers_the_exact_gradient():
    f, params, kw = _divergent()
    before = copy.deepcopy(kw)
    chain = Fallback(GMRES(rtol=1e-13))
    grads, diag = _grad(f, jnp.zeros(N), params, on_failure=chain, **kw)
    assert diag.backward.ok and [a.status for a in diag.backward.attempts] == [Status.DIVERGED]
    # h* = b after one step from 0, loss sum(h^2): g = 2 b, and dL/db = z = (I - A^T)^{-1} g.
    A, b = np.asarray(params["A"]), np.asarray(params["b"])
    z = np.linalg.solve(np.eye(N) - A.T, 2.0 * b)
    np.testing.assert_allclose(grads["b"], z, rtol=1e-10)
    # The gradient is the implicit one at the returned h* = b (as though it were the fixed point).
    np.testing.assert_allclose(grads["A"], np.outer(z, b), rtol=1e-10)
    assert kw == before and chain == Fallback(GMRES(rtol=1e-13))  # the settings are unchanged


def test_nothing_the_user_gave_is_mutated():
    f, params, kw = _divergent()
    h0 = {"h": jnp.zeros(N)}
    snapshot = {k: np.array(v) for k, v in params.items()}
    keys, arrays = list(params), dict(params)

    def g(h, p):
        return {"h": f(h["h"], p)}

    _grad(g, h0, params, on_failure=Fallback(GMRES(rtol=1e-13)), backward_x0={"h": jnp.ones(N)}, **kw)
    assert list(params) == keys and all(params[k] is arrays[k] for k in keys)
    assert all(np.array_equal(params[k], snapshot[k]) for k in keys)
    assert list(h0) == ["h"] and not bool(jnp.any(h0["h"]))


def test_a_failed_forward_raises_under_raise_and_warns_under_warn():
    params = _params()
    with pytest.raises(rbpsolve.SolveError, match="Picard MAX_STEPS after 2 steps") as info:
        fixed_point(_f, jnp.zeros(N), params, forward=Picard(max_steps=2))
    assert info.value.result.status is Status.MAX_STEPS
    with pytest.warns(ConvergenceWarning, match="the forward solve ended MAX_STEPS") as caught:
        h, diag = fixed_point(_f, jnp.zeros(N), params, forward=Picard(max_steps=2), on_failure="warn")
    assert caught[0].filename == __file__
    assert diag.forward.status is Status.MAX_STEPS and h.shape == (N,)


# ---------------------------------------------------------------------------- traced calls
TRACED = "rbpsolve's solvers read the residual on the host at every step"


@pytest.mark.parametrize("forward, backward", [(Picard(rtol=1e-10), Neumann(max_steps=20)),
                                               (Picard(max_steps=5, rtol=0.0, atol=0.0), GMRES(rtol=1e-8))],
                         ids=["tolerance-forward", "tolerance-backward"])
def test_under_jit_a_tolerance_solve_raises_a_clear_error(forward, backward):
    """Only fixed budgets of Picard with Neumann/FixedPoint trace (tests/test_jax_traced.py); a solve
    with a tolerance, forward or backward, needs the host each step and says so under jit."""
    params = _params()
    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED) as info:
        jax.jit(lambda p: fixed_point(_f, jnp.zeros(N), p, forward=forward, backward=backward)[0])(params)
    assert "optimistix.fixed_point" in str(info.value) and "eagerly" in str(info.value)
    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED):
        jax.jit(lambda p: jnp.sum(_grad(_f, jnp.zeros(N), p, forward=forward, backward=backward)[0]["x"]))(params)
    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED):
        jax.jit(lambda h: jacobian_operator(jnp.tanh, h).rmv(h))(jnp.zeros(N))


def test_under_vmap_the_solve_raises_a_clear_error():
    xs = jnp.ones((3, N))
    with pytest.raises(jax.errors.ConcretizationTypeError, match=TRACED):
        jax.vmap(lambda x: fixed_point(_f, jnp.zeros(N), {"W": _params()["W"], "x": x})[0])(xs)


def test_a_traced_value_in_fs_closure_is_refused_with_the_fix():
    params = _params()

    def objective(x):
        h, _ = fixed_point(lambda h, p: jnp.tanh(p["W"] @ h + x), jnp.zeros(N), params)
        return jnp.sum(h)

    with pytest.raises(jax.errors.UnexpectedTracerError, match=r"closes over .* Pass every array .* in params"):
        jax.grad(objective)(params["x"])


def test_a_higher_order_gradient_or_jacrev_is_refused():
    params = _params()
    with pytest.raises(jax.errors.ConcretizationTypeError, match="higher-order gradient"):
        jax.grad(lambda p: jnp.sum(_grad(_f, jnp.zeros(N), p)[0]["x"]))(params)
    with pytest.raises(jax.errors.ConcretizationTypeError, match="jax.jacrev"):
        jax.jacrev(lambda x: fixed_point(_f, jnp.zeros(N), {"W": params["W"], "x": x})[0])(params["x"])


def test_a_forward_fallback_recovers_and_records_the_switch():
    chain = Fallback(rbpsolve.Anderson(rtol=1e-12), GMRES(rtol=1e-12))
    h, diag = fixed_point(_f, jnp.zeros(N), _params(), forward=Picard(max_steps=2), on_failure=chain)
    assert diag.forward.ok and [a.status for a in diag.forward.attempts] == [Status.MAX_STEPS]
    np.testing.assert_allclose(_f(h, _params()), h, atol=1e-10)

"""The JAX adapter's gradients: against dense formulas, long unrolls, TBPTT (Proposition 1)
and optimistix's implicit adjoint, in float64 on small contractive models."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

import jax.flatten_util  # noqa: E402
import rbpsolve  # noqa: E402
from rbpsolve import GMRES, LSQR, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.jax import Diagnostics, fixed_point, jacobian_operator  # noqa: E402

TIGHT = dict(forward=Picard(rtol=1e-15, max_steps=5000))


def _contraction(n, q, seed):
    W = np.random.default_rng(seed).standard_normal((n, n))
    return jnp.asarray(W * (q / np.linalg.norm(W, 2)))


def _relative(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def _tree_relative(a, b):
    return max(jax.tree_util.tree_leaves(jax.tree_util.tree_map(_relative, a, b)))


def _model(n=8, q=0.8, seed=0):
    """tanh(W h + U x + b) with a loss against a target: params, f, loss."""
    rng = np.random.default_rng(seed + 100)
    params = {"W": _contraction(n, q, seed), "U": jnp.asarray(0.2 * rng.standard_normal((n, 5))),
              "b": jnp.asarray(0.2 * rng.standard_normal(n))}
    x, target = jnp.asarray(rng.standard_normal((4, 5))), jnp.asarray(rng.standard_normal((4, n)))

    def f(h, p):
        return jnp.tanh(h @ p["W"].T + x @ p["U"].T + p["b"])

    def loss(h):
        return jnp.sum((h - target) ** 2)

    return params, f, loss, jnp.zeros((4, n))


def _implicit_grad(params, f, loss, h0, **kw):
    def objective(p):
        h, diag = fixed_point(f, h0, p, **{**TIGHT, **kw})
        return loss(h), diag

    return jax.grad(objective, has_aux=True)(params)


# ---------------------------------------------------------------------------- the operator
@pytest.mark.parametrize("pytree", [False, True], ids=["array", "pytree"])
def test_jacobian_operator_matches_jacfwd_and_passes_the_dot_test(pytree):
    W = _contraction(6, 0.9, 1)
    if pytree:
        h = {"a": jnp.linspace(-1.0, 1.0, 6), "b": jnp.ones((2, 3))}

        def f(s):
            return {"a": jnp.tanh(W @ s["a"] + s["b"].ravel()), "b": jnp.sin(s["b"]) * s["a"][:3]}
    else:
        h = jnp.linspace(-1.0, 1.0, 6)

        def f(s):
            return jnp.tanh(W @ s) + 0.1 * s**2
    flat, unravel = jax.flatten_util.ravel_pytree(h)
    dense = jax.jacfwd(lambda x: jax.flatten_util.ravel_pytree(f(unravel(x)))[0])(flat)
    J = jacobian_operator(f, h, norm_bound=5.0)
    assert isinstance(J, rbpsolve.JacobianOperator)
    np.testing.assert_allclose(J.to_dense(), dense, rtol=1e-13, atol=1e-14)
    assert rbpsolve.dottest(J)
    z = rbpsolve.solve_adjoint(J * 0.5, jnp.ones(flat.size), GMRES(rtol=1e-13)).x
    assert isinstance(z, jax.Array)
    np.testing.assert_allclose(z, np.linalg.solve(np.eye(flat.size) - 0.5 * np.asarray(dense).T, np.ones(flat.size)),
                               rtol=1e-11)


def test_vjps_reuse_one_linearisation_and_jvps_linearise_once_lazily():
    calls = []
    W = _contraction(5, 0.5, 2)

    def f(h):
        calls.append(1)
        return jnp.tanh(W @ h)

    J = jacobian_operator(f, jnp.ones(5))
    assert len(calls) == 1  # the jax.vjp linearisation
    for _ in range(3):
        J.rmv(jnp.ones(5))
    assert len(calls) == 1
    J.mv(jnp.ones(5))
    J.mv(jnp.ones(5))
    assert len(calls) == 2  # one jax.linearize, at the first JVP


# ---------------------------------------------------------------------------- dense closed forms
@pytest.mark.parametrize("backward", [GMRES(rtol=1e-13), LSQR(rtol=1e-13)], ids=["gmres", "lsqr"])
def test_seung_steady_state_network_matches_the_closed_form(backward):
    r"""h* = sigma(W h* + x), loss R(h*) = c^T h* + sum(h*^4) / 4.

    With a = W h* + x and D = diag(sigma'(a)), differentiating h* = sigma(a) gives
    dh = D (W dh + dx), so dh*/dx = (I - D W)^{-1} D and

        dR/dx = D (I - W^T D)^{-1} r,   r = dR/dh* = c + h*^3.

    Since I - W^T D = (D^{-1} - W^T) D, this is D D^{-1} (D^{-1} - W^T)^{-1} r = u_hat with

        (D^{-1} - W^T) u_hat = r,      and dR/dW = u_hat h*^T

    (Seung's steady-state network; Almeida and Pineda's recurrent back-propagation). The
    test checks the adapter against both forms, u_hat and D z with (I - J^T) z = r,
    J = D W, each from a dense solve.
    """
    n = 10
    rng = np.random.default_rng(3)
    W, x, c = _contraction(n, 2.0, 1), jnp.asarray(rng.standard_normal(n)), jnp.asarray(rng.standard_normal(n))

    def f(h, p):
        return jax.nn.sigmoid(p["W"] @ h + p["x"])  # sigma' <= 1/4: W with ||W|| = 2 still contracts

    def R(h):
        return c @ h + 0.25 * jnp.sum(h**4)

    grads, diag = _implicit_grad({"W": W, "x": x}, f, R, jnp.zeros(n), backward=backward)
    assert diag.forward.ok and diag.backward.status is Status.CONVERGED

    h = np.asarray(diag.forward.x)
    a = np.asarray(W) @ h + np.asarray(x)
    d = np.asarray(jax.nn.sigmoid(a) * (1 - jax.nn.sigmoid(a)))
    r = np.asarray(c) + h**3
    u_hat = np.linalg.solve(np.diag(1.0 / d) - np.asarray(W).T, r)
    z = np.linalg.solve(np.eye(n) - (np.diag(d) @ np.asarray(W)).T, r)
    np.testing.assert_allclose(d * z, u_hat, rtol=1e-12)  # the two forms agree
    assert _relative(grads["x"], u_hat) < 1e-10
    assert _relative(grads["W"], np.outer(u_hat, h)) < 1e-10


# ---------------------------------------------------------------------------- long unrolls
@pytest.mark.parametrize("backward", [GMRES(rtol=1e-14), LSQR(rtol=1e-14), Neumann(max_steps=400, rtol=1e-15)],
                         ids=["gmres", "lsqr", "neumann"])
def test_gradient_matches_jax_grad_through_a_300_step_unroll(backward):
    params, f, loss, h0 = _model(q=0.7)
    got, diag = _implicit_grad(params, f, loss, h0, backward=backward)

    def unrolled(p):
        h = h0
        for _ in range(300):
            h = f(h, p)
        return loss(h)

    want = jax.grad(unrolled)(params)
    assert _tree_relative(got, want) < 1e-10
    assert diag.backward.ok and diag.backward_calls == 1
    assert diag.jvp_mode == ("linearize" if isinstance(backward, LSQR) else None)


# ---------------------------------------------------------------------------- Proposition 1
def _tbptt_grad(params, f, loss, h0, K):
    """TBPTT through the last K + 1 of 400 steps: no gradient through the first ones."""
    h = h0
    for _ in range(400 - (K + 1)):
        h = f(h, params)
    h = jax.lax.stop_gradient(h)

    def tail(p):
        s = h
        for _ in range(K + 1):
            s = f(s, p)
        return loss(s)

    return jax.grad(tail)(params)


@pytest.mark.parametrize("K", [1, 2, 5, 12])
def test_proposition_1_neumann_equals_tbptt_at_a_converged_state(K):
    """K-step Neumann-RBP (K VJPs, K + 1 terms) == TBPTT through the last K + 1 steps, to 1e-10."""
    params, f, loss, h0 = _model()
    rbp, diag = _implicit_grad(params, f, loss, h0, backward=Neumann(max_steps=K, rtol=0, atol=0))
    assert diag.backward.status is Status.BUDGET_SPENT and diag.backward.num_vjp == K
    assert _tree_relative(rbp, _tbptt_grad(params, f, loss, h0, K)) < 1e-10
    exact, _ = _implicit_grad(params, f, loss, h0, backward=GMRES(rtol=1e-14))
    assert _relative(rbp["W"], exact["W"]) > 1e-8  # and the truncation matters


# ---------------------------------------------------------------------------- optimistix
def test_agrees_with_optimistix_implicit_adjoint():
    optx = pytest.importorskip("optimistix")
    lx = pytest.importorskip("lineax")
    params, f, loss, h0 = _model(q=0.9, seed=4)

    def theirs(p):
        sol = optx.fixed_point(f, optx.FixedPointIteration(rtol=1e-14, atol=1e-14), h0, p, max_steps=5000,
                               adjoint=optx.ImplicitAdjoint(linear_solver=lx.GMRES(rtol=1e-13, atol=1e-13)))
        return loss(sol.value)

    ours, diag = _implicit_grad(params, f, loss, h0, backward=GMRES(rtol=1e-13))
    assert diag.backward.ok
    assert _tree_relative(ours, jax.grad(theirs)(params)) < 1e-8


# ---------------------------------------------------------------------------- pytrees
def test_pytree_states_and_params_match_an_unroll():
    W = _contraction(6, 0.6, 5)
    V = _contraction(6, 0.3, 6)
    params = (W, {"V": V, "scale": jnp.asarray(0.5)})
    h0 = {"fast": jnp.zeros(6), "slow": [jnp.zeros((2, 3))]}

    def f(h, p):
        W, rest = p
        slow = h["slow"][0].ravel()
        fast = jnp.tanh(W @ h["fast"] + rest["scale"] * slow + 0.3)
        return {"fast": fast, "slow": [jnp.tanh(rest["V"] @ fast + 0.1).reshape(2, 3)]}

    def loss(h):
        return jnp.sum(h["fast"] ** 3) + jnp.sum(jnp.cos(h["slow"][0]))

    got, diag = _implicit_grad(params, f, loss, h0, backward=GMRES(rtol=1e-14))
    h_star, _ = fixed_point(f, h0, params, **TIGHT)
    assert jax.tree_util.tree_structure(h_star) == jax.tree_util.tree_structure(h0)
    assert diag.forward.x.shape == (12,)  # the core solved on the raveled state

    def unrolled(p):
        h = h0
        for _ in range(300):
            h = f(h, p)
        return loss(h)

    assert _tree_relative(got, jax.grad(unrolled)(params)) < 1e-10


# ---------------------------------------------------------------------------- backward_x0
@pytest.mark.parametrize("as_callable", [False, True], ids=["array", "callable"])
def test_backward_x0_starts_the_original_rbp_from_a_given_z0(as_callable):
    """FixedPoint with K steps from z_0: z_K = (J^T)^K z_0 + sum_{t<K} (J^T)^t g, against a dense J."""
    K = 3
    params, f, loss, h0 = _model()
    z0 = jnp.asarray(np.random.default_rng(7).uniform(size=h0.shape))
    seen = []

    def start(g):
        seen.append(g)
        return z0

    solver = rbpsolve.FixedPoint(max_steps=K, rtol=0.0, atol=0.0, divergence_factor=float("inf"))
    got, _ = _implicit_grad(params, f, loss, h0, backward=solver, backward_x0=start if as_callable else z0)

    h_star = fixed_point(f, h0, params, **TIGHT)[0]
    J = jax.jacfwd(lambda v: f(v.reshape(h0.shape), params).ravel())(h_star.ravel())
    g = jax.grad(loss)(h_star).ravel()
    z = z0.ravel()
    for _ in range(K):
        z = J.T @ z + g
    want = jax.vjp(lambda p: f(h_star, p), params)[1](z.reshape(h0.shape))[0]
    assert _tree_relative(got, want) < 1e-10
    if as_callable:
        assert len(seen) == 1 and _relative(seen[0].ravel(), g) < 1e-12
    zero, _ = _implicit_grad(params, f, loss, h0, backward=solver)
    assert _relative(zero["W"], got["W"]) > 1e-6  # the start matters at this budget


# ---------------------------------------------------------------------------- diagnostics
def test_diagnostics_hold_the_forward_now_and_the_backward_after_the_pullback():
    params, f, loss, h0 = _model()
    h, pullback, diag = jax.vjp(lambda p: fixed_point(f, h0, p, **TIGHT), params, has_aux=True)
    assert isinstance(diag, Diagnostics) and diag.forward.ok and diag.backward is None
    assert "backward=not run" in repr(diag)
    pullback(jnp.ones_like(h))
    first = diag.backward
    assert first.ok and diag.backward_calls == 1 and diag.backward_error_estimate is not None
    pullback(2.0 * jnp.ones_like(h))
    assert diag.backward_calls == 2 and diag.backward is not first
    assert "backward=BUDGET_SPENT in 20 steps" in repr(diag)  # the default, Neumann(max_steps=20)
    assert diag.forward_history == diag.forward.history


def test_docstring_examples_run():
    for name in ("_jacobian", "_implicit"):
        mod = importlib.import_module(f"rbpsolve.adapters.jax.{name}")
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0


def test_the_start_gets_no_gradient_and_params_may_be_anything():
    params, f, loss, h0 = _model()

    def from_params(p):  # h0 computed from params: h* does not depend on it
        h, _ = fixed_point(f, jnp.tanh(p["b"]) * jnp.ones_like(h0), p, **TIGHT, backward=GMRES(rtol=1e-14))
        return loss(h)

    exact, _ = _implicit_grad(params, f, loss, h0, backward=GMRES(rtol=1e-14))
    assert _tree_relative(jax.grad(from_params)(params), exact) < 1e-10
    h, diag = fixed_point(lambda h, _: 0.5 * jnp.tanh(h) + 1.0, jnp.zeros(3), None)
    assert diag.forward.ok and h.shape == (3,)


def test_float32_and_mixed_dtype_states_keep_their_dtypes():
    """A float32 leaf beside a float64 one: the core solves on the promoted flat vector
    (ravel_pytree), the state and the gradients come back in their own dtypes."""
    f32 = jnp.float32
    params = {"W": (0.5 * _contraction(3, 1.0, 8)).astype(f32), "x": jnp.ones(3, f32)}
    h0 = {"a": jnp.zeros(3, f32), "b": jnp.zeros(2)}

    def f(h, p):
        return {"a": jnp.tanh(p["W"] @ h["a"] + p["x"]), "b": 0.5 * h["b"] + jnp.sum(h["a"]).astype(jnp.float64)}

    def loss(h):
        return jnp.sum(h["a"] ** 2) + jnp.sum(h["b"])

    got, diag = _implicit_grad(params, f, loss, h0, forward=Picard(rtol=1e-7), backward=GMRES(rtol=1e-7))
    assert diag.forward.x.dtype == jnp.float64 and diag.backward.ok
    assert {k: v.dtype for k, v in got.items()} == {"W": f32, "x": f32}
    h, _ = fixed_point(f, h0, params)
    assert (h["a"].dtype, h["b"].dtype) == (f32, jnp.float64)

    def unrolled(p):
        h = h0
        for _ in range(100):
            h = f(h, p)
        return loss(h)

    assert _tree_relative(got, jax.grad(unrolled)(params)) < 1e3 * float(jnp.finfo(f32).eps)

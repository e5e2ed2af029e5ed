"""The JAX adapter's Jacobian regularisers and monitor: values against dense float64 Jacobians,
gradients against the dense eigenvalue's and finite differences, jit where promised, and the same
numbers as the torch adapter."""

import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

import rbpsolve  # noqa: E402
from rbpsolve.adapters.jax import (  # noqa: E402
    AdjointRiskWarning,
    TrainingMonitor,
    column_penalty,
    fixed_point,
    gershgorin_penalty,
    jacobian_frobenius,
    smallest_eigenvalue_penalty,
)


def f(h, W):
    return jnp.tanh(h @ W.T + 0.3)


def _model(n=6, seed=0, scale=0.6, batch=None):
    rng = np.random.default_rng(seed)
    W = jnp.asarray(scale * rng.standard_normal((n, n)))
    h = jnp.asarray(rng.standard_normal((n,) if batch is None else (batch, n)))
    return W, h


def _dense(W, h):
    return jax.jacfwd(lambda v: f(v, W))(h)


def _lambda_min(W, h):
    J = _dense(W, h)
    A = jnp.eye(J.shape[0]) - J
    return jnp.linalg.eigvalsh(A.T @ A)[0]


def _fd(fun, W, eps=1e-6):
    out = np.zeros(W.shape)
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            E = jnp.zeros_like(W).at[i, j].set(eps)
            out[i, j] = (float(fun(W + E)) - float(fun(W - E))) / (2 * eps)
    return out


def test_frobenius_unbiased_and_its_gradient():
    W, h = _model()
    exact = float(jnp.sum(_dense(W, h) ** 2))
    p = jacobian_frobenius(f, h, W, key=jax.random.PRNGKey(0), probes=4000)
    assert abs(float(p.quantity) - exact) < 5 * float(p.error) and p.num_vjp == 4000
    value = lambda Wv: jacobian_frobenius(f, h, Wv, key=jax.random.PRNGKey(1), probes=3).value  # noqa: E731
    np.testing.assert_allclose(jax.grad(value)(W), _fd(value, W), rtol=1e-6, atol=1e-8)
    assert jacobian_frobenius(f, h, W, key=jax.random.PRNGKey(0)).error is None


@pytest.mark.parametrize("reduction", ["max", "sum"])
def test_column_penalty_against_dense_and_under_jit(reduction):
    W, h = _model(scale=0.9)
    J = _dense(W, h)
    cols = jnp.sum(jnp.abs(J), axis=0)
    expected = jax.nn.relu(cols.max() - 0.5) ** 2 if reduction == "max" else jnp.sum(jax.nn.relu(cols - 0.5) ** 2)
    value = lambda Wv: column_penalty(f, h, Wv, eta=0.5, reduction=reduction).value  # noqa: E731
    assert float(value(W)) == pytest.approx(float(expected), abs=1e-12)
    grad = jax.jit(jax.grad(value))(W)  # pure JAX: jit-able
    np.testing.assert_allclose(grad, _fd(value, W), rtol=1e-6, atol=1e-8)


def test_gershgorin_against_dense_and_per_sample():
    W, h = _model()
    J = _dense(W, h)
    M = (jnp.eye(6) - J).T @ (jnp.eye(6) - J)
    bound = jnp.min(jnp.diag(M) - (jnp.sum(jnp.abs(M), axis=1) - jnp.abs(jnp.diag(M))))
    p = gershgorin_penalty(f, h, W, delta=2.0)
    assert float(p.quantity) == pytest.approx(float(bound), abs=1e-12)
    assert float(p.details["lambda_min"]) == pytest.approx(float(_lambda_min(W, h)), abs=1e-12)
    value = lambda Wv: gershgorin_penalty(f, h, Wv, delta=2.0).value  # noqa: E731
    np.testing.assert_allclose(jax.grad(value)(W), _fd(value, W), rtol=1e-6, atol=1e-8)
    Wb, hb = _model(batch=4, scale=0.9)
    q = gershgorin_penalty(f, hb, Wb, delta=0.5, batch_axis=0)
    c = column_penalty(f, hb, Wb, eta=0.3, batch_axis=0)
    assert q.num_vjp == 6 and q.quantity.shape == (4,)
    for b in range(4):
        Jb = _dense(Wb, hb[b])
        assert float(c.quantity[b]) == pytest.approx(float(jnp.max(jnp.sum(jnp.abs(Jb), axis=0))), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_lanczos_full_steps_is_the_dense_eigenvalue_and_gradient(seed):
    W, h = _model(seed=seed)
    p = smallest_eigenvalue_penalty(f, h, W, delta=10.0, steps=6, rtol=1e-15)
    assert float(p.quantity) == pytest.approx(float(_lambda_min(W, h)), rel=1e-10)
    g = jax.grad(lambda Wv: smallest_eigenvalue_penalty(f, h, Wv, delta=10.0, steps=6, rtol=1e-15).quantity)(W)
    np.testing.assert_allclose(g, jax.grad(_lambda_min)(W, h), atol=1e-8)
    assert p.num_jvp == 7 and p.error < 1e-8


def test_lanczos_under_jit_is_refused_clearly():
    W, h = _model()
    with pytest.raises(jax.errors.ConcretizationTypeError, match="outside jax.jit"):
        jax.jit(lambda Wv: smallest_eigenvalue_penalty(f, h, Wv, delta=1.0).value)(W)


def test_lanczos_through_the_fixed_point():
    """h* from fixed_point inside the differentiated loss: the gradient follows h*(W) (one
    more adjoint solve), against central differences of lambda_min at the converged h*(W)."""
    n = 5
    W, _ = _model(n=n, seed=2, scale=0.5)
    fwd, bwd = rbpsolve.Picard(max_steps=500, rtol=1e-14, atol=0), rbpsolve.GMRES(rtol=1e-13, atol=0)

    def total(Wv):
        h_star, _ = fixed_point(f, jnp.zeros(n), Wv, forward=fwd, backward=bwd)
        return smallest_eigenvalue_penalty(f, h_star, Wv, delta=10.0, steps=n, rtol=1e-15).quantity

    def dense(Wv):
        h = jnp.zeros(n)
        for _ in range(500):
            h = f(h, Wv)
        return _lambda_min(Wv, h)

    np.testing.assert_allclose(jax.grad(total)(W), _fd(dense, W), atol=1e-7)


def test_same_numbers_as_the_torch_adapter():
    torch = pytest.importorskip("torch")
    from rbpsolve.adapters import torch as tadapter

    W, h = _model(scale=0.9)
    Wt, ht = torch.tensor(np.asarray(W)), torch.tensor(np.asarray(h))
    ft = lambda v: torch.tanh(v @ Wt.T + 0.3)  # noqa: E731
    assert float(column_penalty(f, h, W, eta=0.5).value) == pytest.approx(
        float(tadapter.column_penalty(ft, ht, eta=0.5).value.detach()), abs=1e-12)
    assert float(gershgorin_penalty(f, h, W, delta=1.0).quantity) == pytest.approx(
        float(tadapter.gershgorin_penalty(ft, ht, delta=1.0).quantity.detach()), abs=1e-12)
    assert float(smallest_eigenvalue_penalty(f, h, W, delta=1.0, steps=4).quantity) == pytest.approx(
        float(tadapter.smallest_eigenvalue_penalty(ft, ht, delta=1.0, steps=4).quantity.detach()), rel=1e-10)


def test_pytree_state():
    W, h = _model()
    tree = {"a": h[:3], "b": h[3:]}

    def ft(t, Wv):
        out = f(jnp.concatenate([t["a"], t["b"]]), Wv)
        return {"a": out[:3], "b": out[3:]}

    assert float(gershgorin_penalty(ft, tree, W, delta=1.0).quantity) == pytest.approx(
        float(gershgorin_penalty(f, h, W, delta=1.0).quantity), abs=1e-12)


@pytest.mark.parametrize("call, match", [
    (lambda W, h: jacobian_frobenius(f, h, W, key=jax.random.PRNGKey(0), probes=0), "probes"),
    (lambda W, h: column_penalty(f, h, W, eta=0), "eta"),
    (lambda W, h: column_penalty(f, h, W, eta=0.5, reduction="mean"), "reduction"),
    (lambda W, h: gershgorin_penalty(f, h, W, delta=1.0, max_size=3), "max_size=3"),
    (lambda W, h: gershgorin_penalty(f, h, W, delta=1.0, batch_axis=2), "batch_axis"),
    (lambda W, h: smallest_eigenvalue_penalty(lambda v, p: v[:2], h, W, delta=1.0), "elements"),
])
def test_bad_arguments(call, match):
    W, h = _model()
    with pytest.raises((ValueError, TypeError), match=match):
        call(W, h)


def test_monitor_warns_with_the_jax_warning_class():
    W = 0.95 * jnp.eye(4)
    monitor = TrainingMonitor(error_warn=1e-2)

    def loss(x):
        h, diag = fixed_point(lambda h, x: W @ h + x, jnp.zeros(4), x,
                              forward=rbpsolve.Picard(max_steps=60, rtol=0, atol=0),
                              backward=rbpsolve.Neumann(max_steps=5, rtol=0, atol=0))
        return jnp.sum(h), diag

    _, diag = jax.grad(loss, has_aux=True)(jnp.ones(4))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = monitor.update(diag)
    kinds = {type(w.message) for w in caught}
    assert AdjointRiskWarning in kinds
    assert record.rate == pytest.approx(0.95, rel=1e-6) and record.relative_error > 1e-2

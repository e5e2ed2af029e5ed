"""Jacobian regularisers of the torch adapter: values against dense float64 computations,
gradients against finite differences and against the dense eigenvalue's gradient."""

import math

import pytest

torch = pytest.importorskip("torch")

import rbpsolve  # noqa: E402
from rbpsolve.adapters.torch import (  # noqa: E402
    Penalty,
    column_penalty,
    fixed_point,
    gershgorin_penalty,
    jacobian_frobenius,
    smallest_eigenvalue_penalty,
)

DT = torch.float64


def _model(n=6, seed=0, scale=0.6, batch=None):
    g = torch.Generator().manual_seed(seed)
    W = (scale * torch.randn(n, n, generator=g, dtype=DT)).requires_grad_()
    shape = (n,) if batch is None else (batch, n)
    x = torch.randn(shape, generator=g, dtype=DT)
    h = torch.randn(shape, generator=g, dtype=DT)
    return W, x, h


def _f(W, x):
    return lambda h: torch.tanh(h @ W.T + x)


def _dense_J(W, x, h):
    return torch.autograd.functional.jacobian(_f(W, x), h, create_graph=True)


def _lambda_min(J):
    A = torch.eye(J.shape[0], dtype=DT) - J
    return torch.linalg.eigvalsh(A.T @ A)[0]


@pytest.mark.parametrize("seed", range(5))
def test_frobenius_is_unbiased(seed):
    W, x, h = _model(seed=seed)
    exact = float((_dense_J(W, x, h).detach() ** 2).sum())
    p = jacobian_frobenius(_f(W, x), h, probes=4000, generator=torch.Generator().manual_seed(seed))
    assert isinstance(p, Penalty) and p.num_vjp == 4000 and p.num_jvp == 0
    assert abs(float(p.quantity.detach()) - exact) < 5 * p.error
    assert p.error < 0.05 * exact


def test_frobenius_one_probe_has_no_error_estimate_and_gradient_matches_finite_differences():
    W, x, h = _model()
    assert jacobian_frobenius(_f(W, x), h).error is None

    def value(Wv):  # the same probes every call: a deterministic function of W
        return jacobian_frobenius(_f(Wv, x), h, probes=3, generator=torch.Generator().manual_seed(7)).value

    assert torch.autograd.gradcheck(value, (W,))


def test_frobenius_per_sample_matches_dense_blocks():
    W, x, h = _model(batch=4)
    p = jacobian_frobenius(_f(W, x), h, probes=3000, batch_axis=0, generator=torch.Generator().manual_seed(1))
    assert p.quantity.shape == (4,)
    for b in range(4):
        exact = float((_dense_J(W, x[b], h[b]).detach() ** 2).sum())
        assert abs(float(p.quantity[b]) - exact) < 0.1 * exact
    assert torch.allclose(p.value, p.quantity.mean())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reduction", ["max", "sum"])
def test_column_penalty_against_dense(seed, reduction):
    W, x, h = _model(seed=seed, scale=0.9)
    J = _dense_J(W, x, h)
    columns = J.abs().sum(0)
    eta = 0.5
    expected = torch.relu(columns.max() - eta) ** 2 if reduction == "max" else (torch.relu(columns - eta) ** 2).sum()
    p = column_penalty(_f(W, x), h, eta=eta, reduction=reduction)
    assert abs(float(p.value) - float(expected)) < 1e-12
    assert abs(float(p.quantity) - float(torch.linalg.matrix_norm(J, ord=1))) < 1e-12
    assert p.num_vjp == 6 and p.error == 0.0
    assert torch.autograd.gradcheck(lambda Wv: column_penalty(_f(Wv, x), h, eta=eta, reduction=reduction).value, (W,))


def test_column_penalty_is_zero_inside_the_contraction_region():
    W, x, h = _model(scale=0.05)
    p = column_penalty(_f(W, x), h, eta=0.9)
    assert float(p.value) == 0.0 and float(p.quantity) < 0.9


def test_entry_penalties_per_sample_cost_one_sample_of_products():
    W, x, h = _model(batch=5, scale=0.9)
    p = column_penalty(_f(W, x), h, eta=0.3, batch_axis=0)
    q = gershgorin_penalty(_f(W, x), h, delta=0.5, batch_axis=0)
    assert p.num_vjp == 6 and q.num_vjp == 6  # m = 6 products, not B * m = 30
    for b in range(5):
        J = _dense_J(W, x[b], h[b])
        assert abs(float(p.quantity[b]) - float(J.abs().sum(0).max())) < 1e-12
        M = (torch.eye(6, dtype=DT) - J).T @ (torch.eye(6, dtype=DT) - J)
        bound = (torch.diagonal(M) - (M.abs().sum(1) - torch.diagonal(M).abs())).min()
        assert abs(float(q.quantity[b]) - float(bound)) < 1e-12


def test_batch_axis_other_than_zero():
    W, x, h = _model(batch=3, scale=0.9)
    a = column_penalty(_f(W, x), h, eta=0.3, batch_axis=0)
    ft = lambda ht: torch.tanh(ht.T @ W.T + x).T  # noqa: E731  (the same map, state stored (n, B))
    b = column_penalty(ft, h.T.contiguous(), eta=0.3, batch_axis=1)
    assert torch.allclose(a.quantity, b.quantity, atol=1e-13)


@pytest.mark.parametrize("seed", range(4))
def test_gershgorin_bound_against_dense(seed):
    W, x, h = _model(seed=seed)
    J = _dense_J(W, x, h)
    M = (torch.eye(6, dtype=DT) - J).T @ (torch.eye(6, dtype=DT) - J)
    bound = (torch.diagonal(M) - (M.abs().sum(1) - torch.diagonal(M).abs())).min()
    p = gershgorin_penalty(_f(W, x), h, delta=2.0)
    assert abs(float(p.quantity) - float(bound)) < 1e-12
    assert abs(p.details["lambda_min"] - float(_lambda_min(J))) < 1e-12
    assert float(p.quantity) <= p.details["lambda_min"] + 1e-12  # a certificate: never above
    assert abs(float(p.value) - max(0.0, 2.0 - float(bound))) < 1e-12
    assert torch.autograd.gradcheck(lambda Wv: gershgorin_penalty(_f(Wv, x), h, delta=2.0).value, (W,))


@pytest.mark.parametrize("seed", range(6))
def test_lanczos_with_full_steps_is_the_dense_eigenvalue_and_its_gradient(seed):
    W, x, h = _model(seed=seed)
    exact = _lambda_min(_dense_J(W, x, h))
    (g_exact,) = torch.autograd.grad(exact, W)
    p = smallest_eigenvalue_penalty(_f(W, x), h, delta=10.0, steps=6)
    assert abs(float(p.quantity) - float(exact)) < 1e-10 * max(1.0, float(exact))
    assert p.error < 1e-8
    (g,) = torch.autograd.grad(p.value, W)
    assert torch.allclose(-g, g_exact, atol=1e-8)  # value = delta - lambda
    assert p.num_jvp == 7  # 6 Lanczos steps and the one with a graph


@pytest.mark.parametrize("seed", range(6))
def test_lanczos_estimate_is_never_below_lambda_min_and_its_residual_is_honest(seed):
    W, x, h = _model(n=40, seed=seed, scale=0.9)
    J = _dense_J(W, x, h).detach()
    M = (torch.eye(40, dtype=DT) - J).T @ (torch.eye(40, dtype=DT) - J)
    eigenvalues = torch.linalg.eigvalsh(M)
    for k in (3, 8, 15):
        p = smallest_eigenvalue_penalty(_f(W, x), h, delta=1.0, steps=k, seed=seed)
        lam = float(p.quantity)
        assert lam >= float(eigenvalues[0]) - 1e-12  # a Rayleigh quotient
        assert float((eigenvalues - lam).abs().min()) <= p.error * (1 + 1e-8) + 1e-12
        v = p.details["vector"]
        assert abs(float(torch.linalg.vector_norm(v)) - 1) < 1e-12
        assert float(torch.linalg.vector_norm(M @ v - lam * v)) == pytest.approx(p.error, rel=1e-6, abs=1e-12)


def test_lanczos_gradient_bias_shrinks_with_steps():
    """The k-step Ritz vector's gradient against the dense lambda_min's: the bias the
    docstring states, measured on a 30-dimensional tanh map."""
    W, x, h = _model(n=30, seed=3, scale=0.9)
    (g_exact,) = torch.autograd.grad(_lambda_min(_dense_J(W, x, h)), W)
    bias = {}
    for k in (5, 15, 30):
        p = smallest_eigenvalue_penalty(_f(W, x), h, delta=10.0, steps=k, rtol=1e-15)
        assert p.details["steps"] == k and p.details["converged"] is (k == 30)
        (g,) = torch.autograd.grad(p.quantity, W)
        bias[k] = float(torch.linalg.vector_norm(g - g_exact) / torch.linalg.vector_norm(g_exact))
    # measured: 23 (k = 5), 3.6 (k = 15), 1e-13 (k = 30); the Ritz value at k = 15 is 3x lambda_min
    assert bias[30] < 1e-8
    assert bias[5] > 1 and bias[15] > 0.1


def test_lanczos_penalty_through_the_fixed_point_matches_finite_differences():
    """With h* from fixed_point the gradient follows h*(W) too: one more adjoint solve."""
    n = 5
    W, x, _ = _model(n=n, seed=2, scale=0.5)

    def total(Wv, with_graph):
        f = _f(Wv, x)
        fwd = rbpsolve.Picard(max_steps=500, rtol=1e-14, atol=0)
        if with_graph:
            h_star, _ = fixed_point(f, torch.zeros(n, dtype=DT), forward=fwd,
                                    backward=rbpsolve.GMRES(rtol=1e-13, atol=0))
            return smallest_eigenvalue_penalty(f, h_star, delta=10.0, steps=n).quantity
        with torch.no_grad():
            h = torch.zeros(n, dtype=DT)
            for _ in range(500):
                h = f(h)
        return _lambda_min(torch.autograd.functional.jacobian(f, h)).detach()

    (g,) = torch.autograd.grad(total(W, True), W)
    eps = 1e-6
    fd = torch.zeros_like(W)
    for i in range(n):
        for j in range(n):
            E = torch.zeros_like(W)
            E[i, j] = eps
            fd[i, j] = (total(W.detach() + E, False) - total(W.detach() - E, False)) / (2 * eps)
    assert torch.allclose(g, fd, atol=1e-7)
    # ... and a detached h misses that dependence
    h_star = _f(W, x)(fixed_point(_f(W, x), torch.zeros(n, dtype=DT))[0].detach())
    (g_detached,) = torch.autograd.grad(smallest_eigenvalue_penalty(_f(W, x), h_star.detach(), delta=10.0,
                                                                    steps=n).quantity, W)
    assert not torch.allclose(g_detached, fd, atol=1e-5)


def test_inputs_are_not_modified():
    W, x, h = _model()
    before = h.clone()
    for p in (jacobian_frobenius(_f(W, x), h), column_penalty(_f(W, x), h, eta=0.5),
              gershgorin_penalty(_f(W, x), h, delta=1.0), smallest_eigenvalue_penalty(_f(W, x), h, delta=1.0)):
        assert torch.equal(h, before) and not h.requires_grad
        assert math.isfinite(float(p.value))
        assert "Penalty(" in repr(p)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda f, h: jacobian_frobenius(f, h, probes=0), "probes"),
        (lambda f, h: jacobian_frobenius(f, h, probes=1.5), "probes"),
        (lambda f, h: column_penalty(f, h, eta=-1), "eta"),
        (lambda f, h: column_penalty(f, h, eta=0.5, reduction="mean"), "reduction"),
        (lambda f, h: gershgorin_penalty(f, h, delta=float("nan")), "delta"),
        (lambda f, h: smallest_eigenvalue_penalty(f, h, delta=1.0, steps=0), "steps"),
        (lambda f, h: jacobian_frobenius(f, h, batch_axis=3), "batch_axis"),
        (lambda f, h: column_penalty(f, h, eta=0.5, max_size=4), "max_size=4"),
        (lambda f, h: jacobian_frobenius(lambda v: v[:3], h), "shape"),
    ],
)
def test_bad_arguments_name_the_problem(call, match):
    W, x, h = _model()
    with pytest.raises((ValueError, TypeError), match=match):
        call(_f(W, x), h)


def test_not_callable_and_not_a_tensor():
    with pytest.raises(TypeError, match="callable"):
        jacobian_frobenius(3, torch.zeros(2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        jacobian_frobenius(lambda h: h, [0.0, 1.0])


def test_nonfinite_jacobian_is_an_error_not_a_number():
    W, x, h = _model()
    with pytest.raises(FloatingPointError, match="not finite"):
        smallest_eigenvalue_penalty(lambda v: v * float("nan"), h, delta=1.0)

"""Every solver on immutable arrays (JAX): no item assignment anywhere in the core, and
the answers of numpy. Skipped where jax is not installed (CI installs it with the JAX
adapter's issue; run `pip install "jax[cpu]==0.10.2"` to run these here)."""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

N = 30
SOLVERS = {
    "FixedPoint": rbpsolve.FixedPoint(rtol=1e-12),
    "FixedPoint(K)": rbpsolve.FixedPoint(max_steps=80, rtol=0.0),
    "Neumann(K)": rbpsolve.Neumann(max_steps=80),
    "RandomizedNeumann": rbpsolve.RandomizedNeumann(continue_prob=1.0, max_steps=80),
    "CGNE": rbpsolve.CGNE(rtol=1e-12),
    "CGNE(K)": rbpsolve.CGNE(max_steps=40, rtol=0.0),
    "LSQR": rbpsolve.LSQR(rtol=1e-12),
    "LSQR(K)": rbpsolve.LSQR(max_steps=40, rtol=0.0),
    "GMRES": rbpsolve.GMRES(rtol=1e-12),
    "GMRES(K)": rbpsolve.GMRES(max_steps=30, rtol=0.0),
    "GMRES(restart=5)": rbpsolve.GMRES(restart=5, rtol=1e-12),
    "GMRES(restart=5, K)": rbpsolve.GMRES(restart=5, max_steps=30, rtol=0.0),
}


def _matrix():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((N, N))
    return W * (0.8 / np.linalg.norm(W, 2))


@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_runs_on_jax_arrays(name):
    W = _matrix()
    Wj = jnp.asarray(W)
    J = rbpsolve.JacobianOperator(lambda u: Wj.T @ u, lambda v: Wj @ v, like=jnp.zeros(N))
    res = rbpsolve.solve_adjoint(J, jnp.ones(N), SOLVERS[name])
    assert isinstance(res.x, jax.Array)
    exact = np.linalg.solve(np.eye(N) - W.T, np.ones(N))
    np.testing.assert_allclose(np.asarray(res.x), exact, rtol=1e-9, atol=1e-10)
    numpy = rbpsolve.solve_adjoint(rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(N)),
                                   np.ones(N), SOLVERS[name])
    assert (res.status, res.num_steps, res.num_vjp, res.num_jvp) == (numpy.status, numpy.num_steps, numpy.num_vjp,
                                                                     numpy.num_jvp)


@pytest.mark.parametrize("solver", [rbpsolve.Picard(rtol=1e-12), rbpsolve.Anderson(rtol=1e-12),
                                    rbpsolve.Picard(max_steps=60, rtol=0.0), rbpsolve.Anderson(max_steps=40, rtol=0.0)])
def test_forward_solvers_run_on_jax_arrays(solver):
    Wj = jnp.asarray(_matrix())
    res = rbpsolve.fixed_point(lambda h: jnp.tanh(Wj @ h) + 0.1, jnp.zeros(N), solver)
    assert isinstance(res.x, jax.Array)
    h = np.asarray(res.x)
    np.testing.assert_allclose(np.tanh(np.asarray(Wj) @ h) + 0.1, h, atol=1e-9)


def test_estimates_and_analyze_run_on_jax_arrays():
    """Every estimate, the Ritz vectors included, and analyze, on immutable arrays: numpy's figures."""
    W = _matrix()
    Wj = jnp.asarray(W)
    Jj = rbpsolve.JacobianOperator(lambda u: Wj.T @ u, lambda v: Wj @ v, like=jnp.zeros(N))
    Jn = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=np.zeros(N))
    for estimate in (rbpsolve.estimate_norm, rbpsolve.estimate_spectral_radius):
        a, b = estimate(Jj, max_steps=N, rtol=1e-12), estimate(Jn, max_steps=N, rtol=1e-12)
        assert a.value == pytest.approx(b.value, rel=1e-10) and a.num_steps == b.num_steps
    a = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(Jj), max_steps=N, rtol=1e-14, vectors=True)
    b = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(Jn), max_steps=N, rtol=1e-14, vectors=True)
    assert isinstance(a.details["right_vector_min"], jax.Array)
    assert a.details["sigma_min"] == pytest.approx(np.linalg.svd(np.eye(N) - W, compute_uv=False)[-1], rel=1e-9)
    np.testing.assert_allclose(np.abs(np.asarray(a.details["right_vector_min"])),
                               np.abs(b.details["right_vector_min"]), atol=1e-8)
    report = rbpsolve.analyze(Jj, jnp.ones(N))
    other = rbpsolve.analyze(Jn, np.ones(N))
    assert report.contraction == other.contraction and report.sigma_min == pytest.approx(other.sigma_min, rel=1e-8)

"""rbpsolve.Sharding in one process: bad descriptions and bad reductions are refused with
errors that name the fix; a one-rank split is the unsplit solve; nothing needs the whole
operator where it is split."""

import numpy as np
import pytest

import rbpsolve


def _identity(values, op):
    return values


def _one(n):
    return rbpsolve.Sharding(_identity, offset=0, global_size=n)


@pytest.mark.parametrize("kwargs, match", [
    ({"offset": -1, "global_size": 3}, "offset must be an integer >= 0"),
    ({"offset": 0, "global_size": 2.5}, "global_size must be an integer"),
    ({"offset": True, "global_size": 3}, "offset must be an integer"),
])
def test_bad_offsets_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rbpsolve.Sharding(_identity, **kwargs)


def test_reduce_must_be_callable():
    with pytest.raises(TypeError, match="reduce must be callable"):
        rbpsolve.Sharding(None, offset=0, global_size=3)


def test_a_block_past_the_global_state_is_refused():
    with pytest.raises(ValueError, match="runs past the global state"):
        rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(4),
                                  sharding=rbpsolve.Sharding(_identity, offset=2, global_size=5))


def test_sharding_must_be_a_sharding():
    with pytest.raises(TypeError, match="sharding must be an rbpsolve.Sharding"):
        rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(3), sharding=_identity)


@pytest.mark.parametrize("bad, error, match", [
    (lambda values, op: values[:-1] if values.shape[0] > 1 else np.zeros(2), ValueError, "shape"),
    (lambda values, op: values.tolist(), TypeError, "of the type it was given"),
])
def test_a_reduce_that_returns_the_wrong_thing_is_named(bad, error, match):
    J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(3),
                                  sharding=rbpsolve.Sharding(bad, offset=0, global_size=3))
    with pytest.raises(error, match=match):
        rbpsolve.solve_adjoint(J, np.ones(3), rbpsolve.GMRES())


def test_one_rank_is_the_unsplit_solve_for_every_solver():
    rng = np.random.default_rng(0)
    W = rng.standard_normal((12, 12))
    W *= 0.6 / np.linalg.norm(W, 2)
    g = rng.standard_normal(12)
    whole = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=g)
    split = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=g, sharding=_one(12))
    for solver in (rbpsolve.FixedPoint(rtol=1e-12), rbpsolve.Neumann(rtol=1e-12), rbpsolve.CGNE(rtol=1e-12),
                   rbpsolve.LSQR(rtol=1e-12), rbpsolve.GMRES(rtol=1e-12, restart=4),
                   rbpsolve.RandomizedNeumann(max_steps=30, seed=1)):
        a = rbpsolve.solve_adjoint(split, g, solver, throw=False)
        b = rbpsolve.solve_adjoint(whole, g, solver, throw=False)
        assert (a.status, a.num_steps, a.num_vjp, a.num_jvp) == (b.status, b.num_steps, b.num_vjp, b.num_jvp)
        np.testing.assert_allclose(a.x, b.x, rtol=1e-13, atol=1e-15)
    assert rbpsolve.estimate_norm(split).value == pytest.approx(rbpsolve.estimate_norm(whole).value, rel=1e-13)


def test_whole_operator_views_are_refused_on_a_split_state():
    J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=np.zeros(3), sharding=_one(3))
    for view in (J.to_dense, J.to_scipy):
        with pytest.raises(ValueError, match="whole operator in one process"):
            view()


def test_non_finite_input_is_refused_on_every_rank():
    J = rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(3), sharding=_one(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        rbpsolve.solve_adjoint(J, np.array([1.0, np.nan, 0.0]), rbpsolve.GMRES())


def test_mixed_library_input_names_the_library():
    J = rbpsolve.JacobianOperator(lambda u: u, like=np.zeros(3), sharding=_one(3))
    strict = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError, match=r"numpy \(sharded\) arrays"):
        rbpsolve.solve_adjoint(J, strict.ones(3, dtype=strict.float64), rbpsolve.GMRES())

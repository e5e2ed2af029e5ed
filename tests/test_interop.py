"""scipy interop: Operator.to_scipy, rbpsolve.aslinearoperator, and solve() on scipy objects."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg as spla

import rbpsolve
from conftest import Backend
from operators import make_problem

SHAPE = (2, 3)  # a batched state: to_scipy flattens it to 6-vectors
N = 6


def _backends():
    names = ["numpy"]
    try:
        import torch  # noqa: F401

        names.append("torch")
    except ImportError:  # pragma: no cover
        pass
    return names


@pytest.fixture(params=_backends())
def be(request):
    """numpy, and torch CPU (whose to_scipy products copy to and from the host)."""
    return Backend(request.param)


def _rectangular(backend, dtype="float64"):
    rng = np.random.default_rng(11)
    R = rng.standard_normal((N, 5))
    xp = backend.xp
    Rx, RTx = backend.asarray(R, dtype), backend.asarray(R.T.copy(), dtype)
    op = rbpsolve.FunctionOperator(
        lambda x: xp.reshape(xp.matmul(Rx, x), SHAPE),
        lambda y: xp.matmul(RTx, xp.reshape(y, (N,))),
        like_in=backend.asarray(np.zeros(5), dtype),
        like_out=backend.asarray(np.zeros(SHAPE), dtype),
    )
    return op, R


# ----------------------------------------------------------------------------- to_scipy
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_to_scipy_agrees_with_to_dense(be, dtype):
    p = make_problem("nonnormal", SHAPE, seed=0)
    J = p.operator(be, dtype)
    R, Rd = _rectangular(be, dtype)
    Id = rbpsolve.Identity(be.asarray(np.zeros(SHAPE), dtype))
    rng = np.random.default_rng(0)
    # float32 products: relative rounding ~ n * eps32 ~ 1e-6.
    tol = 1e-12 if dtype == "float64" else 1e-5
    for op, expected in [(J, p.J), (R, Rd), (Id - J.T, np.eye(N) - p.J.T), (R.T @ J @ R, Rd.T @ p.J @ Rd)]:
        S = op.to_scipy()
        assert isinstance(S, spla.LinearOperator)
        assert S.shape == expected.shape
        assert S.dtype == np.dtype(dtype)
        dense = op.to_dense()
        np.testing.assert_allclose(dense, expected, rtol=0, atol=tol * np.abs(expected).max())
        v = rng.standard_normal(S.shape[1])
        u = rng.standard_normal(S.shape[0])
        mv, rmv = S.matvec(v), S.rmatvec(u)
        # Flattened, 1-D numpy vectors of the operator's dtype, whatever the backend.
        assert type(mv) is np.ndarray and mv.shape == (S.shape[0],) and mv.dtype == np.dtype(dtype)
        assert type(rmv) is np.ndarray and rmv.shape == (S.shape[1],)
        scale = np.abs(dense).max() * max(np.abs(v).max(), np.abs(u).max()) * N
        np.testing.assert_allclose(mv, dense @ v, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(rmv, dense.T @ u, rtol=0, atol=tol * scale)
        # scipy's own algebra on top: matmat, the transpose operator.
        np.testing.assert_allclose(S @ np.eye(S.shape[1]), dense, rtol=0, atol=tol * scale)
        np.testing.assert_allclose(S.T @ u, dense.T @ u, rtol=0, atol=tol * scale)


def test_to_scipy_without_jvp_has_no_matvec(np_backend):
    p = make_problem("contractive", SHAPE, seed=0)
    J = p.operator(np_backend, jvp=False)
    S = J.to_scipy()
    with pytest.raises(NotImplementedError, match="no A v products"):
        S.matvec(np.ones(N))
    # Its transpose (I - J^T) needs only VJPs: the usual adjoint system is fine.
    S2 = rbpsolve.IdentityMinus(J.T).to_scipy()
    v = np.arange(N, dtype=float)
    np.testing.assert_allclose(S2.matvec(v), v - p.J.T @ v, rtol=0, atol=1e-13 * np.abs(v).max())


def test_scipy_gmres_on_to_scipy_matches_rbpsolve(be):
    p = make_problem("contractive", SHAPE, seed=2)
    J = p.operator(be)
    g = be.asarray(p.g)
    A = rbpsolve.IdentityMinus(J.T)  # what solve_adjoint solves with
    x_scipy, info = spla.gmres(A.to_scipy(), p.g.reshape(-1), rtol=1e-12, atol=0.0, restart=N, maxiter=50)
    assert info == 0
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.GMRES(rtol=1e-12))
    x = be.to_numpy(res.x)
    assert x.shape == SHAPE
    # cond(I - J^T) <= (1 + ||J||) / (1 - ||J||) <= 39 for these contractions: a relative
    # residual of 1e-12 bounds the relative error by ~4e-11.
    z = p.z
    np.testing.assert_allclose(x, z, rtol=0, atol=1e-9 * np.abs(z).max())
    np.testing.assert_allclose(x_scipy.reshape(SHAPE), x, rtol=0, atol=1e-9 * np.abs(z).max())


def test_scipy_lsqr_on_to_scipy_matches_rbpsolve(be):
    p = make_problem("nonnormal", SHAPE, seed=3)
    J = p.operator(be)
    g = be.asarray(p.g)
    A = rbpsolve.IdentityMinus(J.T)
    out = spla.lsqr(A.to_scipy(), p.g.reshape(-1), atol=1e-15, btol=1e-15, iter_lim=500)
    x_scipy = out[0]
    res = rbpsolve.solve_adjoint(J, g, rbpsolve.LSQR(rtol=1e-13))
    x = be.to_numpy(res.x)
    # The error is at most cond(I - J^T) times the relative residual; take the condition
    # number from the dense matrix rather than guessing it.
    cond = np.linalg.cond(np.eye(N) - p.J.T)
    atol = 100 * cond * 1e-13 * np.abs(p.z).max()
    np.testing.assert_allclose(x, p.z, rtol=0, atol=atol)
    np.testing.assert_allclose(x_scipy.reshape(SHAPE), x, rtol=0, atol=atol)


def test_rectangular_least_squares_against_scipy_lsqr(be):
    R, Rd = _rectangular(be)
    b = np.random.default_rng(5).standard_normal(SHAPE)  # not in the range of R (6 > 5)
    res = rbpsolve.solve(R, be.asarray(b), rbpsolve.LSQR(rtol=1e-12), throw=False)
    assert res.status in (rbpsolve.Status.LEAST_SQUARES, rbpsolve.Status.CONVERGED)
    x_ls = np.linalg.lstsq(Rd, b.reshape(-1), rcond=None)[0]
    x_scipy = spla.lsqr(R.to_scipy(), b.reshape(-1), atol=1e-14, btol=1e-14)[0]
    tol = 1e-8 * np.linalg.cond(Rd) * np.abs(x_ls).max()
    np.testing.assert_allclose(be.to_numpy(res.x), x_ls, rtol=0, atol=tol)
    np.testing.assert_allclose(x_scipy, x_ls, rtol=0, atol=tol)


# ----------------------------------------------------------------------------- aslinearoperator
def _system(seed=0, n=7):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, n)) + n * np.eye(n)  # diagonally dominant: cond ~ 3
    b = rng.standard_normal(n)
    return A, b, np.linalg.solve(A, b)


def _as_scipy_with_rmatvec(A):
    return spla.LinearOperator(A.shape, matvec=lambda x: A @ x, rmatvec=lambda y: A.T @ y, dtype=A.dtype)


def _as_scipy_without_rmatvec(A):
    return spla.LinearOperator(A.shape, matvec=lambda x: A @ x, dtype=A.dtype)


class _MatvecOnly(spla.LinearOperator):
    """A scipy LinearOperator subclass that defines only _matvec (no adjoint)."""

    def __init__(self, A):
        super().__init__(A.dtype, A.shape)
        self.A = A

    def _matvec(self, x):
        return self.A @ x


class _WithAdjoint(_MatvecOnly):
    def _rmatvec(self, y):
        return self.A.T @ y


CONVERSIONS = {
    "scipy_linear_operator": (_as_scipy_with_rmatvec, True),
    "scipy_linear_operator_no_rmatvec": (_as_scipy_without_rmatvec, False),
    "scipy_subclass_with_rmatvec": (_WithAdjoint, True),
    "scipy_aslinearoperator": (spla.aslinearoperator, True),
    "csr_matrix": (scipy.sparse.csr_matrix, True),
    "coo_array": (scipy.sparse.coo_array, True),
    "numpy_2d": (lambda A: A, True),
}


@pytest.mark.parametrize("kind", list(CONVERSIONS))
def test_aslinearoperator_then_solve(kind):
    convert, has_rmatvec = CONVERSIONS[kind]
    A, b, x_true = _system()
    obj = convert(A)
    op = rbpsolve.aslinearoperator(obj)
    assert isinstance(op, rbpsolve.Operator)
    assert op.in_shape == op.out_shape == (7,)
    assert op.has_mv and op.has_rmv is has_rmatvec
    np.testing.assert_allclose(op.to_dense(), A, rtol=0, atol=1e-15 * np.abs(A).max())
    if has_rmatvec:
        assert rbpsolve.dottest(op)
    # cond(A) ~ 3: a relative residual of 1e-12 gives a relative error below 1e-11.
    solvers = [rbpsolve.GMRES(rtol=1e-12)] + ([rbpsolve.LSQR(rtol=1e-12)] if has_rmatvec else [])
    for solver in solvers:
        for target in (op, obj):  # solve() takes the scipy/numpy object directly too
            res = rbpsolve.solve(target, b, solver)
            assert res.ok and type(res.x) is np.ndarray and res.x.dtype == np.float64
            np.testing.assert_allclose(res.x, x_true, rtol=0, atol=1e-10 * np.abs(x_true).max())
    if not has_rmatvec:
        with pytest.raises(ValueError, match=r"LSQR needs products A\^T u \(rmatvec\)"):
            rbpsolve.solve(obj, b, rbpsolve.LSQR())


def test_scipy_subclass_without_adjoint_reports_no_rmatvec():
    # scipy's LinearOperator.rmatvec raises NotImplementedError for a subclass defining only
    # _matvec; rbpsolve must see that up front rather than fail inside LSQR.
    A, b, x_true = _system(seed=1)
    obj = _MatvecOnly(A)
    with pytest.raises(NotImplementedError):
        obj.rmatvec(b)
    op = rbpsolve.aslinearoperator(obj)
    assert op.has_mv and not op.has_rmv
    with pytest.raises(ValueError, match=r"LSQR needs products A\^T u \(rmatvec\)"):
        rbpsolve.solve(obj, b, rbpsolve.LSQR())
    res = rbpsolve.solve(obj, b, rbpsolve.GMRES(rtol=1e-12))
    np.testing.assert_allclose(res.x, x_true, rtol=0, atol=1e-10 * np.abs(x_true).max())


def test_scipy_adjoint_is_asked_only_when_needed_and_once():
    # rbpsolve asks scipy's public rmatvec (one call on a zero vector) whether an adjoint
    # exists, the first time a solver needs A^T u, and never for one that needs only A v.
    A, b, x_true = _system(seed=3)
    calls = []

    def rmatvec(y):
        calls.append(np.array(y))
        return A.T @ y

    obj = spla.LinearOperator(A.shape, matvec=lambda x: A @ x, rmatvec=rmatvec, dtype=A.dtype)
    op = rbpsolve.aslinearoperator(obj)
    assert calls == []
    res = rbpsolve.solve(op, b, rbpsolve.GMRES(rtol=1e-12))
    assert res.ok and calls == []
    assert op.has_rmv is True
    assert len(calls) == 1 and not np.any(calls[0])
    assert op.has_rmv is True and len(calls) == 1  # kept, not asked again
    res = rbpsolve.solve(op, b, rbpsolve.LSQR(rtol=1e-12))
    assert res.ok and len(calls) == 1 + res.num_vjp


def test_scipy_composite_without_an_adjoint_reports_no_rmatvec():
    # scipy's sum defines _rmatvec whether or not its terms have one; asking rmatvec
    # itself is what tells (the old class inspection reported an adjoint here).
    A, b, x_true = _system(seed=4)
    obj = _as_scipy_with_rmatvec(0.5 * A) + _as_scipy_without_rmatvec(0.5 * A)
    op = rbpsolve.aslinearoperator(obj)
    assert op.has_mv and not op.has_rmv
    with pytest.raises(NotImplementedError, match="no rmatvec"):
        op.rmv(b)
    with pytest.raises(ValueError, match=r"LSQR needs products A\^T u \(rmatvec\)"):
        rbpsolve.solve(obj, b, rbpsolve.LSQR())
    res = rbpsolve.solve(obj, b, rbpsolve.GMRES(rtol=1e-12))
    np.testing.assert_allclose(res.x, x_true, rtol=0, atol=1e-10 * np.abs(x_true).max())


def test_interop_uses_no_private_scipy_name():
    import inspect

    from rbpsolve import _interop

    source = inspect.getsource(_interop)
    assert "_CustomLinearOperator" not in source and "__rmatvec_impl" not in source


def test_aslinearoperator_keeps_dtype_and_norm_bound():
    A, b, x_true = _system(seed=2)
    A32 = A.astype(np.float32)
    for obj in (_as_scipy_with_rmatvec(A32), scipy.sparse.csr_matrix(A32), A32):
        op = rbpsolve.aslinearoperator(obj, norm_bound=12.5)
        assert op.dtype == np.float32 and op.norm_bound == 12.5
        res = rbpsolve.solve(op, b.astype(np.float32), rbpsolve.GMRES(rtol=1e-5))
        assert res.x.dtype == np.float32
        # float32 with cond ~ 3: relative error ~1e-5 from the tolerance, plus rounding.
        np.testing.assert_allclose(res.x, x_true, rtol=0, atol=1e-4 * np.abs(x_true).max())
    with pytest.raises(TypeError, match="b has dtype float64 but the operator works in float32"):
        rbpsolve.solve(A32, b, rbpsolve.GMRES())


def test_aslinearoperator_returns_operators_unchanged_and_refuses_others(np_backend):
    J = make_problem("contractive", SHAPE, seed=0).operator(np_backend)
    assert rbpsolve.aslinearoperator(J) is J
    with pytest.raises(TypeError, match="real floating-point.*int64"):
        rbpsolve.aslinearoperator(scipy.sparse.csr_matrix(np.eye(3, dtype=np.int64)))
    with pytest.raises(TypeError, match="aslinearoperator takes an rbpsolve operator, a scipy LinearOperator"):
        rbpsolve.aslinearoperator([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(TypeError, match="aslinearoperator takes"):
        rbpsolve.aslinearoperator(np.ones(3))  # 1-D


def test_aslinearoperator_of_a_torch_matrix():
    torch = pytest.importorskip("torch")
    A, b, x_true = _system(seed=3)
    op = rbpsolve.aslinearoperator(torch.as_tensor(A))
    assert isinstance(op, rbpsolve.MatrixOperator) and op.dtype == torch.float64
    res = rbpsolve.solve(op, torch.as_tensor(b), rbpsolve.LSQR(rtol=1e-12))
    assert isinstance(res.x, torch.Tensor)
    np.testing.assert_allclose(res.x.numpy(), x_true, rtol=0, atol=1e-10 * np.abs(x_true).max())


def test_round_trip_through_scipy(be):
    p = make_problem("nonnormal", SHAPE, seed=4)
    J = p.operator(be)
    back = rbpsolve.aslinearoperator(J.to_scipy())
    # Flattened and on the host now: a numpy operator on 6-vectors with the same matrix.
    assert isinstance(back, rbpsolve.FunctionOperator)
    assert back.in_shape == back.out_shape == (N,) and back.dtype == np.float64
    np.testing.assert_allclose(back.to_dense(), p.J, rtol=0, atol=1e-14 * np.abs(p.J).max())
    assert rbpsolve.dottest(back)

"""Operators and their algebra: the adjoint dot test, dense forms, norm bounds, product counts.

Every operator here is built from a small seeded dense matrix, so each algebra node has an
exact numpy counterpart to compare with.
"""

from __future__ import annotations

import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem

STATE = (2, 3)  # a batched state: operators act on (2, 3) arrays, 6 unknowns
N = 6
R_IN = (5,)  # the rectangular operator maps (5,) -> (2, 3)


def _dense_operator(backend, A, in_shape, out_shape, dtype="float64", *, counts=None, norm_bound=None,
                    rmatvec_matrix=None, jacobian=False):
    """An operator on ``backend`` whose products use the dense ``A`` (out size x in size).

    ``counts`` (a dict) records the products the callbacks really make; ``rmatvec_matrix``
    replaces ``A.T`` in the transpose product (to build a deliberately wrong adjoint).
    """
    xp = backend.xp
    m, n = A.shape
    Ax = backend.asarray(A, dtype)
    ATx = backend.asarray((A.T if rmatvec_matrix is None else rmatvec_matrix).copy(), dtype)

    def matvec(x):
        if counts is not None:
            counts["mv"] += 1
        return xp.reshape(xp.matmul(Ax, xp.reshape(x, (n,))), out_shape)

    def rmatvec(y):
        if counts is not None:
            counts["rmv"] += 1
        return xp.reshape(xp.matmul(ATx, xp.reshape(y, (m,))), in_shape)

    like_in = backend.asarray(np.zeros(in_shape), dtype)
    if jacobian:
        assert in_shape == out_shape
        return rbpsolve.JacobianOperator(rmatvec, matvec, like=like_in, norm_bound=norm_bound)
    like_out = backend.asarray(np.zeros(out_shape), dtype)
    return rbpsolve.FunctionOperator(matvec, rmatvec, like_in=like_in, like_out=like_out, norm_bound=norm_bound)


def _matrices():
    """Seeded dense matrices: J, K square on the state, R rectangular, M for MatrixOperator."""
    rng = np.random.default_rng(20240611)
    J = make_problem("contractive", STATE, seed=1).J
    K = make_problem("nonnormal", STATE, seed=2).J
    R = rng.standard_normal((N, R_IN[0])) / np.sqrt(N)
    M = rng.standard_normal((4, N)) / 2.0
    return J, K, R, M


def _cases(backend, dtype="float64"):
    """name -> (operator, expected dense matrix of shape (out size, in size))."""
    Jd, Kd, Rd, Md = _matrices()
    J = _dense_operator(backend, Jd, STATE, STATE, dtype, jacobian=True)
    K = _dense_operator(backend, Kd, STATE, STATE, dtype, jacobian=True)
    R = _dense_operator(backend, Rd, R_IN, STATE, dtype)  # like_out differs from like_in
    M = rbpsolve.MatrixOperator(backend.asarray(Md, dtype))
    like = backend.asarray(np.zeros(STATE), dtype)
    Id = rbpsolve.Identity(like)
    I6 = np.eye(N)
    return {
        "jacobian": (J, Jd),
        "function_rectangular": (R, Rd),
        "matrix": (M, Md),
        "identity": (Id, I6),
        "transpose": (J.T, Jd.T),
        "transpose_rectangular": (R.T, Rd.T),
        "matrix_transpose": (M.T, Md.T),
        "scaled": (2.5 * J, 2.5 * Jd),
        "scaled_right": (J * -0.75, -0.75 * Jd),
        "negated": (-K, -Kd),
        "sum": (J + K, Jd + Kd),
        "difference": (J - K, Jd - Kd),
        "composed": (J @ K, Jd @ Kd),
        "composed_rectangular": (K @ R, Kd @ Rd),
        "identity_minus": (Id - J, I6 - Jd),
        "identity_minus_transpose": (rbpsolve.IdentityMinus(J.T), I6 - Jd.T),
        "identity_minus_T": ((Id - J).T, I6 - Jd.T),
        "normal": (J.normal(), Jd.T @ Jd),
        "normal_rectangular": (R.normal(), Rd.T @ Rd),
        "matrix_normal": (M.normal(), Md.T @ Md),
        "sandwich": (R.T @ J @ R, Rd.T @ Jd @ Rd),
        "nested": (
            (Id - J).T @ (0.5 * K - J.T) + R @ R.T,
            (I6 - Jd).T @ (0.5 * Kd - Jd.T) + Rd @ Rd.T,
        ),
        "nested_normal": (
            ((J @ K).T - 3.0 * (Id - K)).normal(),
            ((Jd @ Kd).T - 3.0 * (I6 - Kd)).T @ ((Jd @ Kd).T - 3.0 * (I6 - Kd)),
        ),
        "nested_transpose_twice": (((2.0 * (J - K)) @ (Id - K).T).T.T, (2.0 * (Jd - Kd)) @ (I6 - Kd).T),
    }


CASE_NAMES = list(_cases(Backend("numpy")))


# ----------------------------------------------------------------------------- dot test
@pytest.mark.parametrize("name", CASE_NAMES)
def test_dottest_passes_for_every_operator(backend, name):
    op, _ = _cases(backend)[name]
    for seed in range(3):
        assert rbpsolve.dottest(op, seed=seed) is True


@pytest.mark.parametrize("name", ["jacobian", "function_rectangular", "matrix", "nested", "nested_normal"])
def test_dottest_passes_in_float32(backend, name):
    # The default tolerance eps**(2/3) of float32 (~2.4e-5) sits well above float32 rounding
    # of 6-term inner products (~1e-7 relative).
    op, _ = _cases(backend, "float32")[name]
    assert op.dtype == backend.asarray(np.zeros(1), "float32").dtype
    assert rbpsolve.dottest(op) is True


def _wrong_adjoints(backend):
    Jd, Kd, Rd, _ = _matrices()
    rng = np.random.default_rng(7)
    like = backend.asarray(np.zeros(STATE))
    # 1. the forward matrix passed as its own transpose (J is not symmetric);
    not_transposed = _dense_operator(backend, Jd, STATE, STATE, rmatvec_matrix=Jd)
    # 2. a transpose off by a small perturbation (relative size 1e-6);
    E = rng.standard_normal(Jd.shape) * 1e-6 * np.linalg.norm(Jd, 2)
    perturbed = _dense_operator(backend, Jd, STATE, STATE, rmatvec_matrix=Jd.T + E)
    # 3. a rectangular operator whose transpose is scaled wrongly;
    scaled = _dense_operator(backend, Rd, R_IN, STATE, rmatvec_matrix=1.01 * Rd.T)
    # 4. a wrong leaf buried in a composition.
    K = _dense_operator(backend, Kd, STATE, STATE, jacobian=True)
    buried = (rbpsolve.Identity(like) - K).T @ (2.0 * not_transposed) + K.normal()
    return {"not_transposed": not_transposed, "perturbed": perturbed, "scaled": scaled, "buried": buried}


@pytest.mark.parametrize("which", ["not_transposed", "perturbed", "scaled", "buried"])
def test_dottest_detects_a_wrong_transpose(backend, which):
    op = _wrong_adjoints(backend)[which]
    assert rbpsolve.dottest(op, raise_error=False) is False
    with pytest.raises(AssertionError, match="dot test failed.*not the adjoint"):
        rbpsolve.dottest(op)


def test_dottest_needs_both_products(np_backend):
    J = make_problem("contractive", STATE, seed=0).operator(np_backend, jvp=False)
    with pytest.raises(ValueError, match="needs both products"):
        rbpsolve.dottest(J)


# ----------------------------------------------------------------------------- dense forms
@pytest.mark.parametrize("name", CASE_NAMES)
def test_to_dense_matches_numpy(backend, name):
    op, expected = _cases(backend)[name]
    dense = op.to_dense()
    assert dense.dtype == np.float64
    assert dense.shape == expected.shape == (op.out_space.size, op.in_space.size)
    # Each entry is a handful of float64 products of O(1) matrices of size <= 6: the
    # error is a small multiple of eps times the size of the entries.
    atol = 100 * np.finfo(np.float64).eps * max(1.0, np.abs(expected).max())
    np.testing.assert_allclose(dense, expected, rtol=0, atol=atol)


def test_to_dense_without_mv_uses_rmv(np_backend):
    p = make_problem("nonnormal", STATE, seed=3)
    J = p.operator(np_backend, jvp=False)  # only J^T u: to_dense goes row by row
    assert not J.has_mv
    np.testing.assert_allclose(J.to_dense(), p.J, rtol=0, atol=1e-14 * np.abs(p.J).max())
    np.testing.assert_allclose(J.T.to_dense(), p.J.T, rtol=0, atol=1e-14 * np.abs(p.J).max())


def test_transpose_of_transpose_is_the_operator(np_backend):
    J, _ = _cases(np_backend)["jacobian"]
    assert J.T.T is J
    A = rbpsolve.IdentityMinus(J)
    assert isinstance(A.T, rbpsolve.IdentityMinus)


# ----------------------------------------------------------------------------- norm bounds
def test_norm_bound_propagation(np_backend):
    Jd, Kd, _, _ = _matrices()
    J = _dense_operator(np_backend, Jd, STATE, STATE, jacobian=True, norm_bound=0.4)
    K = _dense_operator(np_backend, Kd, STATE, STATE, jacobian=True, norm_bound=0.7)
    U = _dense_operator(np_backend, Kd, STATE, STATE, jacobian=True)  # no bound declared
    Id = rbpsolve.Identity(np_backend.asarray(np.zeros(STATE)))
    assert J.norm_bound == 0.4
    assert J.T.norm_bound == 0.4
    assert (-2.5 * J).norm_bound == pytest.approx(2.5 * 0.4)  # Scaled: |c| q
    assert (J + K).norm_bound == pytest.approx(0.4 + 0.7)  # Sum: q1 + q2
    assert (J - K).norm_bound == pytest.approx(0.4 + 0.7)
    assert (J @ K).norm_bound == pytest.approx(0.4 * 0.7)  # Composed: q1 q2
    assert J.normal().norm_bound == pytest.approx(0.4**2)
    assert Id.norm_bound == 1.0
    IJ = Id - J
    assert isinstance(IJ, rbpsolve.IdentityMinus)
    assert IJ.norm_bound == pytest.approx(1.4)  # IdentityMinus: 1 + q
    assert IJ.inverse_norm_bound == pytest.approx(1 / 0.6)  # and 1 / (1 - q)
    assert IJ.T.norm_bound == pytest.approx(1.4)
    assert IJ.T.inverse_norm_bound == pytest.approx(1 / 0.6)
    assert rbpsolve.IdentityMinus(J.T).inverse_norm_bound == pytest.approx(1 / 0.6)
    # Unknown anywhere: unknown.
    assert U.norm_bound is None
    assert (J + U).norm_bound is None
    assert (U @ J).norm_bound is None
    assert (3.0 * U).norm_bound is None
    assert rbpsolve.IdentityMinus(U).norm_bound is None
    assert rbpsolve.IdentityMinus(U).inverse_norm_bound is None
    # q >= 1: no bound on the inverse.
    assert (Id - (J + K)).inverse_norm_bound is None
    assert (Id - 2.5 * J).inverse_norm_bound is None  # q = 1 exactly
    # with_norm_bound declares one on a copy; the original is unchanged.
    V = U.with_norm_bound(0.9)
    assert V.norm_bound == 0.9 and U.norm_bound is None
    assert rbpsolve.MatrixOperator(np.eye(3), norm_bound=2.0).norm_bound == 2.0


def test_propagated_bounds_are_true_bounds(np_backend):
    """Declared with the exact norms, every propagated bound holds for the dense matrix."""
    Jd, Kd, Rd, _ = _matrices()
    qJ, qK, qR = (np.linalg.norm(a, 2) for a in (Jd, Kd, Rd))
    J = _dense_operator(np_backend, Jd, STATE, STATE, jacobian=True, norm_bound=qJ)
    K = _dense_operator(np_backend, Kd, STATE, STATE, jacobian=True, norm_bound=qK)
    R = _dense_operator(np_backend, Rd, R_IN, STATE, norm_bound=qR)
    Id = rbpsolve.Identity(np_backend.asarray(np.zeros(STATE)))
    ops = [J.T, -1.5 * K, J + K, J - K, J @ K, K @ R, R.normal(), Id - J, (Id - K).T, (J - 0.5 * K).T @ (Id - J)]
    for op in ops:
        actual = np.linalg.norm(op.to_dense(), 2)
        assert actual <= op.norm_bound * (1 + 1e-12), (op, actual, op.norm_bound)
    # ||(I - J)^{-1}|| <= 1 / (1 - q) for the contraction J (q < 1).
    assert qJ < 1
    A = Id - J
    actual_inverse = np.linalg.norm(np.linalg.inv(A.to_dense()), 2)
    assert actual_inverse <= A.inverse_norm_bound * (1 + 1e-12)


def test_invalid_norm_bounds_are_rejected(np_backend):
    like = np_backend.asarray(np.zeros(3))
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="norm_bound must be a finite number >= 0"):
            rbpsolve.JacobianOperator(lambda u: u, like=like, norm_bound=bad)
        with pytest.raises(ValueError, match="norm_bound must be a finite number >= 0"):
            rbpsolve.JacobianOperator(lambda u: u, like=like).with_norm_bound(bad)
    with pytest.raises(ValueError, match="scale of an operator must be finite"):
        float("inf") * rbpsolve.JacobianOperator(lambda u: u, like=like)


# ----------------------------------------------------------------------------- algebra errors
def test_algebra_rejects_mismatched_operands(np_backend):
    Jd, _, Rd, _ = _matrices()
    J = _dense_operator(np_backend, Jd, STATE, STATE, jacobian=True)
    R = _dense_operator(np_backend, Rd, R_IN, STATE)
    J32 = _dense_operator(np_backend, Jd, STATE, STATE, "float32", jacobian=True)
    with pytest.raises(ValueError, match=r"shape \(2, 3\).*shape \(5,\)"):
        J + R.T @ J.T @ R  # (5,) -> (5,) plus (2, 3) -> (2, 3)
    with pytest.raises(ValueError, match="left factor's input.*right factor's output"):
        R @ J
    with pytest.raises(TypeError, match="float64.*float32"):
        J + J32
    with pytest.raises(ValueError, match="square M"):
        rbpsolve.IdentityMinus(R)
    with pytest.raises(TypeError, match="float64.*float32"):
        rbpsolve.Identity(np_backend.asarray(np.zeros(STATE))) - J32


def test_algebra_rejects_mixed_libraries(np_backend):
    torch = pytest.importorskip("torch")
    Jd = _matrices()[0]
    J = _dense_operator(np_backend, Jd, STATE, STATE, jacobian=True)
    Jt = _dense_operator(Backend("torch"), Jd, STATE, STATE, jacobian=True)
    assert Jt.xp is not J.xp and Jt.dtype == torch.float64
    with pytest.raises(TypeError, match="numpy.*torch|torch.*numpy"):
        J + Jt
    with pytest.raises(TypeError, match="numpy.*torch|torch.*numpy"):
        J @ Jt


# ----------------------------------------------------------------------------- product counts
def _counted_pair(backend):
    Jd, Kd, _, _ = _matrices()
    cj, ck = {"mv": 0, "rmv": 0}, {"mv": 0, "rmv": 0}
    J = _dense_operator(backend, Jd, STATE, STATE, jacobian=True, counts=cj)
    K = _dense_operator(backend, Kd, STATE, STATE, jacobian=True, counts=ck)
    return J, K, cj, ck, Jd, Kd


@pytest.mark.parametrize("solver", [rbpsolve.GMRES(rtol=1e-10), rbpsolve.LSQR(rtol=1e-10)], ids=["GMRES", "LSQR"])
def test_product_counts_through_composed_operators(backend, solver):
    J, K, cj, ck, Jd, Kd = _counted_pair(backend)
    Id = rbpsolve.Identity(backend.asarray(np.zeros(STATE)))
    # A v makes one J v, one K v and one J^T v; A^T u the transposes of each.
    A = Id + 0.5 * (J @ K) - 0.25 * J.T
    Ad = np.eye(N) + 0.5 * Jd @ Kd - 0.25 * Jd.T
    b = np.random.default_rng(3).standard_normal(STATE)
    res = rbpsolve.solve(A, backend.asarray(b), solver)
    assert res.ok
    # Leaves count their own calls: forward products (jvp/matvec) and transposes (vjp/rmatvec).
    # JacobianOperator(vjp=rmatvec, jvp=matvec): our "mv" callback is the jvp.
    assert res.num_jvp == cj["mv"] + ck["mv"]
    assert res.num_vjp == cj["rmv"] + ck["rmv"]
    assert res.num_jvp > 0 and res.num_vjp > 0
    # A v = v + 0.5 J (K v) - 0.25 J^T v and A^T u = u + 0.5 K^T (J^T u) - 0.25 J u: K's
    # products count the A v and A^T u made; J makes one product of each kind for both.
    n_av, n_atu = ck["mv"], ck["rmv"]
    assert cj["mv"] == cj["rmv"] == n_av + n_atu
    if isinstance(solver, rbpsolve.GMRES):
        assert n_atu == 0  # GMRES needs no A^T
    else:
        assert n_atu > 0
    # And the solution is right (A is well conditioned: ||0.5 JK - 0.25 J^T|| < 1).
    x = backend.to_numpy(res.x).reshape(-1)
    np.testing.assert_allclose(Ad @ x, b.reshape(-1), rtol=0, atol=1e-8 * np.linalg.norm(b))


def test_product_counts_of_solve_adjoint_are_per_solve(np_backend):
    J, _, cj, _, Jd, _ = _counted_pair(np_backend)
    g = np_backend.asarray(np.random.default_rng(4).standard_normal(STATE))
    for solver in (rbpsolve.LSQR(rtol=1e-10), rbpsolve.CGNE(rtol=1e-10), rbpsolve.GMRES(rtol=1e-10),
                   rbpsolve.FixedPoint(rtol=1e-10), rbpsolve.Neumann(max_steps=30)):
        before = dict(cj)
        res = rbpsolve.solve_adjoint(J, g, solver)
        assert res.num_vjp == cj["rmv"] - before["rmv"], solver
        assert res.num_jvp == cj["mv"] - before["mv"], solver
    # Neumann with K terms makes exactly K VJPs and no JVP (Algorithm 2).
    assert res.num_vjp == 30 and res.num_jvp == 0


def test_matrix_operator_and_scaled_identity_counts(np_backend):
    rng = np.random.default_rng(5)
    Md = rng.standard_normal((5, 5)) / 5 + np.eye(5)
    M = rbpsolve.MatrixOperator(Md)
    Id = rbpsolve.Identity(np.zeros(5))
    A = 2.0 * Id + M.T @ (3.0 * M)  # the identity costs no product
    b = rng.standard_normal(5)
    res = rbpsolve.solve(A, b, rbpsolve.GMRES(rtol=1e-12))
    assert res.ok
    # GMRES: one A v per step plus one per true-residual check; each A v is one M v and one M^T v.
    assert res.num_jvp == res.num_vjp
    assert res.num_steps <= res.num_jvp <= 2 * res.num_steps
    np.testing.assert_allclose((2 * np.eye(5) + 3 * Md.T @ Md) @ res.x, b, rtol=0, atol=1e-10)

"""Diagnostics against dense linear algebra: estimate_norm, estimate_singular_values,
estimate_spectral_radius (values and the products they report), and analyze()."""

from __future__ import annotations

import math

import numpy as np
import pytest

import rbpsolve
from conftest import Backend
from operators import make_problem

NP = Backend("numpy")
EPS = float(np.finfo(np.float64).eps)
KINDS = ["contractive", "nonnormal", "divergent", "symmetric", "nearly_singular"]


def _counted(Jd, *, jvp=True, norm_bound=None):
    """A JacobianOperator for the dense ``Jd`` whose callbacks count the products made."""
    calls = {"vjp": 0, "jvp": 0}

    def vjp(u):
        calls["vjp"] += 1
        return Jd.T @ u

    def jv(v):
        calls["jvp"] += 1
        return Jd @ v

    op = rbpsolve.JacobianOperator(vjp, jv if jvp else None, like=np.zeros(Jd.shape[0]), norm_bound=norm_bound)
    return op, calls


# ----------------------------------------------------------------------------- ||J||_2
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_norm_against_dense(kind, seed):
    p = make_problem(kind, (12,), seed)
    J, calls = _counted(p.J)
    true = np.linalg.norm(p.J, 2)
    # Lanczos bidiagonalisation: the estimate is a Ritz value of the bidiagonal, never above
    # ||J|| in exact arithmetic; in float64 at most a few eps * ||J|| above it, at any step.
    for steps in (1, 2, 3, 5):
        early = rbpsolve.estimate_norm(J, max_steps=steps)
        assert early.value <= true * (1 + 10 * EPS)
        assert early.num_steps <= steps
    est = rbpsolve.estimate_norm(J, rtol=1e-10)
    assert est.converged
    assert est.value <= true * (1 + 10 * EPS)
    # Converged to 1e-10 between steps: the Ritz value converges fast (quadratically in the
    # gap), so it is within ~1e-10 of the norm; allow 1e-8 relative.
    assert est.value == pytest.approx(true, rel=1e-8)
    # With the default rtol = 1e-4 the estimate is still within 1e-3 of the true norm.
    quick = rbpsolve.estimate_norm(J)
    assert quick.value <= true * (1 + 10 * EPS)
    assert quick.value == pytest.approx(true, rel=1e-3)
    assert float(quick) == quick.value


def test_estimate_norm_in_float32_on_every_backend(backend):
    p = make_problem("nonnormal", (3, 4), seed=1)
    J = p.operator(backend, "float32")
    true = np.linalg.norm(p.J, 2)
    est = rbpsolve.estimate_norm(J, rtol=1e-6)
    # float32 products: each Lanczos vector carries ~n * eps32 ~ 1e-6 relative rounding.
    eps32 = float(np.finfo(np.float32).eps)
    assert est.value <= true * (1 + 100 * eps32)
    assert est.value == pytest.approx(true, rel=1e-4)


def test_estimate_norm_needs_a_jvp():
    p = make_problem("contractive", (6,), seed=0)
    J, _ = _counted(p.J, jvp=False)
    with pytest.raises(ValueError, match="products with both J and J\\^T: build the JacobianOperator with jvp="):
        rbpsolve.estimate_norm(J)
    with pytest.raises(ValueError, match="jvp="):
        rbpsolve.estimate_singular_values(J)


# ----------------------------------------------------------------------------- singular values
@pytest.mark.parametrize("kind", ["contractive", "symmetric", "divergent"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigma_min_for_small_n(kind, seed):
    n = 10
    p = make_problem(kind, (n,), seed)
    J, _ = _counted(p.J)
    s = np.linalg.svd(p.J, compute_uv=False)
    est = rbpsolve.estimate_singular_values(J, max_steps=n, rtol=1e-14)
    # After n steps the Krylov space is all of R^n: the bidiagonal's singular values are
    # J's, up to rounding amplified by 1/sigma_min (at most ~1e2 here).
    assert est.num_steps == n
    assert est.value == pytest.approx(s[0], rel=1e-10)
    assert est.details["sigma_min"] == pytest.approx(s[-1], rel=1e-8)
    # sigma_min converges from above.
    assert est.details["sigma_min"] >= s[-1] * (1 - 1e-8)


def test_sigma_min_for_small_n_nonnormal():
    n = 10
    p = make_problem("nonnormal", (n,), 0)
    J, _ = _counted(p.J)
    s = np.linalg.svd(p.J, compute_uv=False)
    est = rbpsolve.estimate_singular_values(J, max_steps=n, rtol=1e-14)
    assert est.details["sigma_min"] == pytest.approx(s[-1], rel=1e-6)


def test_singular_values_of_a_rectangular_operator():
    rng = np.random.default_rng(3)
    R = rng.standard_normal((9, 5))
    op = rbpsolve.FunctionOperator(lambda x: R @ x, lambda y: R.T @ y, like_in=np.zeros(5), like_out=np.zeros(9))
    s = np.linalg.svd(R, compute_uv=False)
    est = rbpsolve.estimate_singular_values(op, max_steps=5, rtol=1e-14)
    assert est.num_steps <= 5
    assert est.value == pytest.approx(s[0], rel=1e-10)
    assert est.details["sigma_min"] >= s[-1] * (1 - 1e-10)


# ----------------------------------------------------------------------------- spectral radius
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_estimate_spectral_radius_against_eigenvalues(kind, seed):
    p = make_problem(kind, (12,), seed)
    J, _ = _counted(p.J)
    rho = np.abs(np.linalg.eigvals(p.J)).max()
    est = rbpsolve.estimate_spectral_radius(J)
    assert est.converged
    # Arnoldi with default rtol = 1e-4 between steps: the outer Ritz value is within ~1e-6
    # here; allow 1e-3.
    assert est.value == pytest.approx(rho, rel=1e-3)
    tight = rbpsolve.estimate_spectral_radius(J, rtol=1e-12)
    assert tight.value == pytest.approx(rho, rel=1e-8)
    # The Ritz values are approximations of eigenvalues: the largest is the estimate.
    assert max(abs(z) for z in tight.details["ritz_values"]) == pytest.approx(tight.value)


def _rotation(theta, scale=1.0):
    return scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("theta", [0.3, math.pi / 2, 2.5])
def test_spectral_radius_of_a_rotation(theta):
    # A scaled rotation: eigenvalues 0.9 e^{+-i theta}, a complex pair of equal modulus.
    # Power iteration's Rayleigh quotient v^T R v / v^T v is 0.9 cos(theta) (0 for a
    # quarter turn, negative past it) and its vector never settles; Arnoldi spans the
    # invariant plane in two steps and is exact.
    R = _rotation(theta, 0.9)
    J, calls = _counted(R)
    v = np.array([1.0, 0.3])
    assert (v @ R @ v) / (v @ v) == pytest.approx(0.9 * math.cos(theta), abs=1e-12)
    est = rbpsolve.estimate_spectral_radius(J)
    assert est.value == pytest.approx(0.9, rel=1e-12)
    assert est.converged and est.num_steps == 2
    ritz = sorted(est.details["ritz_values"], key=lambda z: z.imag)
    expected = sorted(np.linalg.eigvals(R), key=lambda z: z.imag)
    np.testing.assert_allclose(ritz, expected, rtol=0, atol=1e-12)
    assert est.num_vjp == calls["vjp"] == 2 and est.num_jvp == calls["jvp"] == 0


def test_spectral_radius_with_a_dominant_complex_pair():
    # rho = 1.2 from the pair +-1.2i (embedded with a random orthogonal change of basis);
    # the other eigenvalues are real in (-0.9, 0.9).
    rng = np.random.default_rng(1)
    n = 8
    D = np.zeros((n, n))
    D[:2, :2] = _rotation(math.pi / 2, 1.2)
    D[2:, 2:] = np.diag(rng.uniform(-0.9, 0.9, n - 2))
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = Q @ D @ Q.T
    J, calls = _counted(M)
    rho = np.abs(np.linalg.eigvals(M)).max()
    assert rho == pytest.approx(1.2)
    for product in ("auto", "vjp", "jvp"):
        before = dict(calls)
        est = rbpsolve.estimate_spectral_radius(J, product=product)
        assert est.value == pytest.approx(rho, rel=1e-3)  # default rtol 1e-4
        made_vjp, made_jvp = calls["vjp"] - before["vjp"], calls["jvp"] - before["jvp"]
        assert (est.num_vjp, est.num_jvp) == (made_vjp, made_jvp)
        if product == "jvp":
            assert made_vjp == 0 and made_jvp == est.num_steps
        else:
            assert made_jvp == 0 and made_vjp == est.num_steps
    # Run to the invariant space: exact.
    est = rbpsolve.estimate_spectral_radius(J, max_steps=n, rtol=1e-300)
    assert est.value == pytest.approx(rho, rel=1e-10)


def test_spectral_radius_with_two_real_eigenvalues_of_one_modulus():
    # Eigenvalues +-1.1 (plus smaller ones): power iteration alternates between two
    # directions forever; Arnoldi is not bothered.
    rng = np.random.default_rng(2)
    n = 6
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    M = Q @ np.diag([1.1, -1.1, 0.5, -0.3, 0.2, 0.1]) @ Q.T
    J, _ = _counted(M)
    est = rbpsolve.estimate_spectral_radius(J, rtol=1e-10)
    assert est.value == pytest.approx(1.1, rel=1e-8)


def test_spectral_radius_errors():
    p = make_problem("contractive", (5,), seed=0)
    J, _ = _counted(p.J, jvp=False)
    with pytest.raises(ValueError, match="product='jvp' but this operator was built without jvp="):
        rbpsolve.estimate_spectral_radius(J, product="jvp")
    with pytest.raises(ValueError, match="product must be 'auto', 'vjp' or 'jvp'"):
        rbpsolve.estimate_spectral_radius(J, product="both")
    R = rbpsolve.FunctionOperator(lambda x: x[:3], lambda y: np.concatenate([y, np.zeros(2)]),
                                  like_in=np.zeros(5), like_out=np.zeros(3))
    with pytest.raises(ValueError, match="spectral radius needs a square operator"):
        rbpsolve.estimate_spectral_radius(R)
    for fn in (rbpsolve.estimate_norm, rbpsolve.estimate_spectral_radius):
        with pytest.raises(ValueError, match="max_steps must be an int >= 1"):
            fn(J, max_steps=0)
        with pytest.raises(ValueError, match="rtol must be > 0"):
            fn(J, rtol=0.0)
        with pytest.raises(TypeError, match="expected an rbpsolve operator"):
            fn(p.J)
    # Without a jvp the radius still works, through VJPs.
    assert rbpsolve.estimate_spectral_radius(J).value == pytest.approx(p.rho, rel=1e-3)


# ----------------------------------------------------------------------------- product counts
@pytest.mark.parametrize("kind", ["contractive", "nonnormal", "divergent"])
def test_estimates_report_the_products_made(kind):
    p = make_problem(kind, (12,), seed=4)
    J, calls = _counted(p.J)
    for estimate in (
        lambda: rbpsolve.estimate_norm(J, rtol=1e-8),
        lambda: rbpsolve.estimate_singular_values(J, max_steps=7),
        lambda: rbpsolve.estimate_singular_values(rbpsolve.Identity(np.zeros(12)) - J, rtol=1e-12),
        lambda: rbpsolve.estimate_spectral_radius(J, rtol=1e-8),
        lambda: rbpsolve.estimate_spectral_radius(J, max_steps=3),
    ):
        before = dict(calls)
        est = estimate()
        assert est.num_vjp == calls["vjp"] - before["vjp"]
        assert est.num_jvp == calls["jvp"] - before["jvp"]
        assert est.num_vjp + est.num_jvp >= est.num_steps >= 1


def test_analyze_reports_the_products_made():
    p = make_problem("nonnormal", (12,), seed=5)
    J, calls = _counted(p.J)
    report = rbpsolve.analyze(J, p.g)
    assert (report.num_vjp, report.num_jvp) == (calls["vjp"], calls["jvp"])
    assert f"cost of this analysis: {calls['vjp']} VJPs, {calls['jvp']} JVPs" in str(report)
    # Without a jvp only the spectral radius is estimated, through VJPs.
    Jv, calls_v = _counted(p.J, jvp=False)
    report = rbpsolve.analyze(Jv)
    assert report.num_jvp == calls_v["jvp"] == 0
    assert report.num_vjp == calls_v["vjp"] == report.spectral_radius.num_steps


# ----------------------------------------------------------------------------- analyze
@pytest.mark.parametrize(
    "kind, expected",
    [("contractive", "likely contraction"), ("symmetric", "likely contraction"), ("nonnormal", "likely asymptotic"),
     ("divergent", "likely divergent")],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_analyze_classification(kind, expected, seed):
    p = make_problem(kind, (12,), seed)
    # The fixture guarantees what each kind is; the classification must agree with it.
    assert (p.norm < 1) == (expected == "likely contraction")
    assert (p.rho < 1) == (expected != "likely divergent")
    report = rbpsolve.analyze(p.operator(NP), NP.asarray(p.g))
    # No bound was declared: every verdict is an estimate, never "contraction".
    assert report.contraction == expected and report.certified is False
    assert report.size == 12
    assert report.norm.value == pytest.approx(p.norm, rel=1e-3)
    assert report.spectral_radius.value == pytest.approx(p.rho, rel=1e-3)
    advice = {a.solver: a for a in report.advice}
    assert set(advice) == {"Neumann", "FixedPoint", "GMRES", "LSQR", "CGNE"}
    assert advice["Neumann"].safe is advice["FixedPoint"].safe is False
    assert advice["Neumann"].likely is advice["FixedPoint"].likely is (expected != "likely divergent")
    assert not any(a.certain for a in report.advice)
    assert advice["GMRES"].safe and advice["LSQR"].safe and advice["CGNE"].safe
    if expected == "likely divergent":
        assert advice["Neumann"].steps is None and advice["FixedPoint"].steps is None
    else:
        assert advice["FixedPoint"].steps == advice["Neumann"].steps + 1


def test_analyze_without_a_jvp_cannot_prove_a_contraction():
    p = make_problem("contractive", (12,), seed=0)
    report = rbpsolve.analyze(p.operator(NP, jvp=False))
    assert report.norm is None and report.condition is None
    assert report.contraction == "likely asymptotic"  # rho < 1, ||J|| unknown
    advice = {a.solver: a for a in report.advice}
    assert advice["LSQR"].safe is False and advice["CGNE"].safe is False
    assert "needs a jvp" in advice["LSQR"].why
    assert "||J||_2   : not estimated (needs a jvp)" in str(report)
    # A declared bound below 1 proves it.
    declared = rbpsolve.analyze(p.operator(NP, jvp=False, norm_bound=p.norm))
    assert declared.contraction == "contraction" and declared.certified


def test_str_of_report_has_the_key_lines():
    p = make_problem("contractive", (12,), seed=1)
    report = rbpsolve.analyze(p.operator(NP), NP.asarray(p.g), rtol=1e-6)
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "rbpsolve.analyze: J acts on 12 unknowns"
    assert f"||J||_2   ~ {report.norm.value:.6g}" in text
    assert f"rho(J)    ~ {report.spectral_radius.value:.6g}" in text
    assert "J is likely a contraction" in text and "J is a contraction" not in text
    assert f"margin 1 - ||J||_est = {1 - report.norm.value:.3g}" in text
    assert f"cond(I - J) ~ {report.condition:.4g}" in text
    assert f"||g|| = {np.linalg.norm(p.g):.6g}" in text
    assert "solvers, for rtol = 1e-06:" in text
    for a in report.advice:
        line = next(ln for ln in lines if ln.strip().startswith(a.solver + " "))
        assert ("safe" if a.safe else "likely" if a.likely else "UNSAFE") in line
        assert f"steps ~  {a.steps:>6}" in line
    assert lines[-1] == f"  cost of this analysis: {report.num_vjp} VJPs, {report.num_jvp} JVPs"
    # The other verdicts.
    for kind, verdict in (("nonnormal", "transient growth"), ("divergent", "FixedPoint and Neumann likely diverge")):
        q = make_problem(kind, (12,), seed=1)
        assert verdict in str(rbpsolve.analyze(q.operator(NP)))


@pytest.mark.parametrize("kind", ["contractive", "symmetric"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rtol", [1e-4, 1e-8])
def test_neumann_step_advice_is_sufficient(kind, seed, rtol):
    p = make_problem(kind, (12,), seed)
    J = p.operator(NP)
    report = rbpsolve.analyze(J, rtol=rtol)
    advice = {a.solver: a for a in report.advice}
    K = advice["Neumann"].steps
    assert K is not None and K >= 1
    # K terms of the series leave the residual (J^T)^{K+1} g: at most rtol * ||g||.
    res = rbpsolve.solve_adjoint(J, NP.asarray(p.g), rbpsolve.Neumann(max_steps=K))
    A = np.eye(12) - p.J.T
    relative = np.linalg.norm(p.g - A @ res.x) / np.linalg.norm(p.g)
    assert relative <= rtol
    # FixedPoint with its advised budget from zero computes the same partial sum.
    fp = rbpsolve.solve_adjoint(J, NP.asarray(p.g),
                                rbpsolve.FixedPoint(max_steps=advice["FixedPoint"].steps, rtol=0.0))
    assert np.linalg.norm(p.g - A @ fp.x) / np.linalg.norm(p.g) <= rtol
    # And GMRES, with its advised budget and the same rtol, converges.
    gm = rbpsolve.solve_adjoint(J, NP.asarray(p.g), rbpsolve.GMRES(max_steps=advice["GMRES"].steps, rtol=rtol))
    assert gm.ok


def test_declared_norm_bound_gives_the_rigorous_condition():
    p = make_problem("contractive", (12,), seed=2)
    q = p.norm  # the true norm, declared: the bounds must hold
    report = rbpsolve.analyze(p.operator(NP, norm_bound=q))
    assert report.declared_norm_bound == q
    assert report.contraction == "contraction" and report.certified
    assert report.condition == pytest.approx((1 + q) / (1 - q), rel=1e-14)
    assert report.sigma_max == pytest.approx(1 + q) and report.sigma_min == pytest.approx(1 - q)
    # (1 + q) / (1 - q) bounds the true condition number of I - J.
    assert np.linalg.cond(np.eye(12) - p.J) <= report.condition * (1 + 1e-12)
    text = str(report)
    assert f"||J||_2   <= {q:.6g}  (declared bound)" in text
    assert f"cond(I - J) <= {report.condition:.4g}  (bound from the declared q" in text
    # The Neumann budget is then Proposition 2's: q^(K+1) <= rtol (or fewer, by rho).
    K = {a.solver: a for a in report.advice}["Neumann"].steps
    assert K <= rbpsolve.neumann_steps(report.rtol, q) + 1


def test_analyze_errors():
    p = make_problem("contractive", (5,), seed=0)
    J = p.operator(NP)
    with pytest.raises(ValueError, match=r"rtol must lie in \(0, 1\)"):
        rbpsolve.analyze(J, rtol=0.0)
    with pytest.raises(ValueError, match=r"rtol must lie in \(0, 1\)"):
        rbpsolve.analyze(J, rtol=1.0)
    R = rbpsolve.FunctionOperator(lambda x: x[:3], lambda y: np.concatenate([y, np.zeros(2)]),
                                  like_in=np.zeros(5), like_out=np.zeros(3))
    with pytest.raises(TypeError, match="analyze needs a square rbpsolve operator"):
        rbpsolve.analyze(R)
    with pytest.raises(TypeError, match="analyze needs a square rbpsolve operator"):
        rbpsolve.analyze(p.J)

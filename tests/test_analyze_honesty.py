"""analyze() and the estimates tell bounds from estimates, and survive broken products.

- A Lanczos estimate of ||J|| can only fall short of it, so ``analyze`` calls J a
  contraction, and FixedPoint/Neumann safe, only from a declared ``norm_bound``.
- Products that return NaN or inf (or overflow) are a reported outcome, not a
  LinAlgError or a RuntimeWarning (pytest turns RuntimeWarnings into errors here).
- Every argument of every public diagnostic is checked, with its name in the error.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest

import rbpsolve

ESTIMATES = (rbpsolve.estimate_norm, rbpsolve.estimate_singular_values, rbpsolve.estimate_spectral_radius)


def _diagonal(d, *, norm_bound=None, jvp=True):
    """J = diag(d) through callbacks, as a user would write them."""
    return rbpsolve.JacobianOperator(lambda u: d * u, (lambda v: d * v) if jvp else None,
                                     like=np.zeros_like(d), norm_bound=norm_bound)


def _advice(report):
    return {a.solver: a for a in report.advice}


def _line(report, start):
    return next(ln for ln in str(report).splitlines() if ln.strip().startswith(start))


# ----------------------------------------------------------------------------- the case
def test_norm_above_one_is_never_called_a_contraction():
    # The issue: ||J|| = rho(J) = 1.001, diagonal, 1e5 entries, no declared bound.
    n = 100_000
    J = _diagonal(np.full(n, 1.001))
    report = rbpsolve.analyze(J, np.ones(n))
    assert report.contraction == "likely divergent" and not report.certified
    advice = _advice(report)
    for name in ("FixedPoint", "Neumann"):
        assert not advice[name].safe and not advice[name].likely and advice[name].label == "UNSAFE"
    assert "J is a contraction" not in str(report)
    # The consequence analyze must warn about: FixedPoint diverges on this J. Every entry of
    # a constant diagonal iterates alike, so 1000 of them show it as well as 1e5, faster;
    # divergence_factor=2 flags growth 1.001 per step within log(2) / log(1.001) ~ 700 steps.
    m = 1000
    res = rbpsolve.solve_adjoint(_diagonal(np.full(m, 1.001)), np.ones(m),
                                 rbpsolve.FixedPoint(max_steps=5000, rtol=1e-8, divergence_factor=2.0), throw=False)
    assert not res.ok and res.status == rbpsolve.Status.DIVERGED


def test_a_lanczos_estimate_below_one_is_only_likely():
    # Spectrum filling [0, 1.001]: the Lanczos estimate stops just below 1 (the old
    # analyze printed "contraction" here) while ||J|| = rho(J) = 1.001.
    n = 20_000
    J = _diagonal(np.linspace(0.0, 1.001, n))
    report = rbpsolve.analyze(J, np.ones(n))
    assert report.norm.value < 1 <= 1.001  # the estimate is wrong, from below, as it may be
    assert report.contraction == "likely contraction" and not report.certified
    assert report.margin == pytest.approx(1 - report.norm.value) and report.margin < 1e-3
    text = str(report)
    assert "J is a contraction" not in text and "J is likely a contraction" in text
    assert f"margin 1 - ||J||_est = {report.margin:.3g}" in text
    assert "a Lanczos estimate never exceeds ||J||_2" in text
    advice = _advice(report)
    for name in ("FixedPoint", "Neumann"):
        a = advice[name]
        assert not a.safe and a.likely and not a.certain and a.label == "likely"
        assert "estimate" in a.why and "margin" in a.why
        assert _line(report, name).split()[1] == "likely"
    # And FixedPoint, which analyze did not call safe, diverges.
    res = rbpsolve.solve_adjoint(J, np.ones(n), rbpsolve.FixedPoint(max_steps=20_000, rtol=1e-8,
                                                                    divergence_factor=2.0), throw=False)
    assert not res.ok and res.status == rbpsolve.Status.DIVERGED


@pytest.mark.parametrize("declared", [None, 0.999])
def test_only_a_declared_bound_certifies(declared):
    n = 1000
    J = _diagonal(np.full(n, 0.999), norm_bound=declared)
    report = rbpsolve.analyze(J, np.ones(n), rtol=1e-6)
    advice = _advice(report)
    if declared is None:
        assert report.contraction == "likely contraction" and not report.certified
        assert not advice["FixedPoint"].safe and advice["FixedPoint"].likely
        assert "steps <=" not in str(report).split("solvers, for")[1].split("\n", 1)[1]
        return
    assert report.contraction == "contraction" and report.certified
    assert report.margin == pytest.approx(1 - 0.999)
    for name in ("FixedPoint", "Neumann", "GMRES", "LSQR", "CGNE"):
        assert advice[name].safe and advice[name].certain and advice[name].label == "safe"
    # The budget is Proposition 2's bound, printed as one.
    assert advice["Neumann"].steps == rbpsolve.neumann_steps(1e-6, 0.999) + 1
    assert f"steps <= {advice['Neumann'].steps:>6}" in _line(report, "Neumann")
    assert report.condition == pytest.approx((1 + 0.999) / (1 - 0.999))


def test_a_declared_bound_the_estimates_refute_is_ignored():
    # The J with a false declaration ||J|| <= 0.999: the Lanczos estimate 1.001
    # cannot exceed ||J||, so the declaration is wrong and certifies nothing.
    n = 1000
    report = rbpsolve.analyze(_diagonal(np.full(n, 1.001), norm_bound=0.999))
    assert report.declared_bound_contradicted and not report.certified
    assert report.contraction == "likely divergent"
    assert not _advice(report)["FixedPoint"].safe
    assert "WARNING: the declared bound 0.999 is wrong" in str(report)
    # Without a jvp the Arnoldi estimate refutes it too (Ritz values never exceed ||J||).
    report = rbpsolve.analyze(_diagonal(np.full(n, 1.001), norm_bound=0.999, jvp=False))
    assert report.declared_bound_contradicted and report.contraction == "likely divergent"


def test_every_figure_is_labelled_a_bound_or_an_estimate():
    rng = np.random.default_rng(0)
    d = rng.uniform(-0.8, 0.8, 200)
    estimated = rbpsolve.analyze(_diagonal(d))
    declared = rbpsolve.analyze(_diagonal(d, norm_bound=0.8))
    for report in (estimated, declared):
        assert "estimate, Lanczos" in _line(report, "||J||_2   ~")
        assert "lower bound on the true value" in _line(report, "||J||_2   ~")
        assert "estimate, Arnoldi" in _line(report, "rho(J)    ~")
    assert "estimate" in _line(estimated, "cond(I - J) ~")
    assert "declared bound" in _line(declared, "||J||_2   <=")
    assert "bound from the declared q" in _line(declared, "cond(I - J) <=")
    assert "cond(I - J) ~" not in str(declared)
    # "steps <=" and "at most" only where a bound gives them.
    for a in estimated.advice:
        assert not a.certain and "steps ~ " in _line(estimated, a.solver) and "at most" not in a.why
    for a in declared.advice:
        assert a.certain and "steps <= " in _line(declared, a.solver)


# ----------------------------------------------------------------------------- non-finite products
def _broken(kind, n=40, *, vjp_ok=False):
    bad = {"nan": np.nan, "inf": np.inf}[kind]
    good = np.linspace(0.1, 0.5, n)
    return rbpsolve.JacobianOperator((lambda u: good * u) if vjp_ok else (lambda u: np.full_like(u, bad)),
                                     lambda v: np.full_like(v, bad), like=np.zeros(n))


def _assert_nonfinite(est, product):
    assert math.isnan(est.value) and not est.converged and est.nonfinite
    assert est.details["nonfinite"] is True and est.details["nonfinite_step"] >= 1
    assert est.details["nonfinite_product"] == product


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_nonfinite_products_are_a_reported_outcome(kind):
    J = _broken(kind)
    _assert_nonfinite(rbpsolve.estimate_norm(J), "jvp")
    _assert_nonfinite(rbpsolve.estimate_singular_values(J), "jvp")
    assert math.isnan(rbpsolve.estimate_singular_values(J).details["sigma_min"])
    _assert_nonfinite(rbpsolve.estimate_spectral_radius(J), "vjp")
    _assert_nonfinite(rbpsolve.estimate_spectral_radius(J, product="jvp"), "jvp")
    for declared in (None, 0.5):
        report = rbpsolve.analyze(_broken(kind, 40) if declared is None else J.with_norm_bound(declared), np.ones(40))
        assert report.contraction == "nonfinite" and not report.certified
        assert report.nonfinite_at == "the vjp at Arnoldi step 1"
        assert not any(a.safe or a.likely for a in report.advice)
        text = str(report)
        assert "J's products are not finite at this point" in text and "check the vjp/jvp" in text.lower()
        assert "safe" not in text.replace("UNSAFE", "")
        assert report.num_vjp == 1 and report.num_jvp == 0


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_a_broken_jvp_alone_is_named(kind):
    J = _broken(kind, vjp_ok=True)
    assert not rbpsolve.estimate_spectral_radius(J).nonfinite
    report = rbpsolve.analyze(J)
    assert report.contraction == "nonfinite" and report.nonfinite_at == "the jvp at Lanczos step 1"
    assert "rho(J)    ~" in str(report)  # what was found before is still shown


def test_a_product_that_turns_nonfinite_later_stops_there():
    d = np.linspace(0.1, 0.9, 30)
    calls = {"n": 0}

    def vjp(u):
        calls["n"] += 1
        return d * u if calls["n"] < 4 else np.full_like(u, np.nan)

    est = rbpsolve.estimate_spectral_radius(rbpsolve.JacobianOperator(vjp, like=np.zeros(30)), rtol=1e-14)
    _assert_nonfinite(est, "vjp")
    assert est.details["nonfinite_step"] == est.num_steps == est.num_vjp == 4


def test_a_product_that_overflows_float32():
    # J = 1e60 I does not fit in float32: the user's product overflows to inf.
    big = np.float32(1e30)
    J = rbpsolve.JacobianOperator(lambda u: (u * big) * big, lambda v: (v * big) * big,
                                  like=np.zeros(16, np.float32))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        estimates = [fn(J) for fn in ESTIMATES]
        report = rbpsolve.analyze(J)
    for est in estimates:
        assert est.nonfinite and math.isnan(est.value)
    assert report.contraction == "nonfinite"
    # The only warnings are numpy's, raised in the user's own callback above: none from rbpsolve.
    assert caught and all(os.path.samefile(w.filename, __file__) for w in caught)
    assert all("overflow" in str(w.message) for w in caught)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_large_or_tiny_finite_float32_products_are_not_called_nonfinite(scale):
    # ||J v||^2 overflows (1e60) or underflows (1e-60) in float32 although J v does not.
    d = (scale * np.linspace(0.5, 1.0, 50)).astype(np.float32)
    J = _diagonal(d)
    for est in (rbpsolve.estimate_norm(J), rbpsolve.estimate_spectral_radius(J)):
        assert not est.nonfinite and est.value == pytest.approx(scale, rel=1e-3)
    sv = rbpsolve.estimate_singular_values(J, max_steps=50, rtol=1e-6)
    assert sv.details["sigma_min"] == pytest.approx(0.5 * scale, rel=1e-3)
    assert rbpsolve.analyze(J).contraction == ("likely divergent" if scale > 1 else "likely contraction")


def test_a_nonfinite_g_is_reported_not_warned_about():
    report = rbpsolve.analyze(_diagonal(np.full(8, 0.5)), np.full(8, np.nan))
    assert math.isnan(report.g_norm) and "g itself is not finite" in str(report)


# ----------------------------------------------------------------------------- arguments
BAD = [
    ("max_steps", 0, ValueError), ("max_steps", -3, ValueError), ("max_steps", True, TypeError),
    ("max_steps", 1.5, TypeError), ("max_steps", "10", TypeError), ("max_steps", None, TypeError),
    ("rtol", math.nan, ValueError), ("rtol", -1.0, ValueError), ("rtol", 0.0, ValueError),
    ("rtol", math.inf, ValueError), ("rtol", True, TypeError), ("rtol", "1e-6", TypeError),
    ("seed", -1, ValueError), ("seed", "x", TypeError), ("seed", False, TypeError), ("seed", 1.0, TypeError),
]


@pytest.mark.parametrize("fn", [*ESTIMATES, rbpsolve.analyze], ids=lambda f: f.__name__)
@pytest.mark.parametrize("name, value, error", BAD, ids=[f"{n}={v!r}" for n, v, _ in BAD])
def test_bad_arguments_are_named(fn, name, value, error):
    J = _diagonal(np.full(6, 0.5))
    with pytest.raises(error, match=name):
        fn(J, **{name: value})


def test_analyze_rtol_must_lie_below_one_and_numpy_scalars_are_accepted():
    J = _diagonal(np.full(6, 0.5))
    with pytest.raises(ValueError, match=r"rtol must lie in \(0, 1\)"):
        rbpsolve.analyze(J, rtol=1.5)
    with pytest.raises(ValueError, match="rtol"):
        rbpsolve.analyze(J, rtol=math.nan)
    report = rbpsolve.analyze(J, rtol=np.float32(1e-3), max_steps=np.int64(5), seed=np.int32(2))
    assert report.rtol == pytest.approx(1e-3) and type(report.rtol) is float
    assert rbpsolve.estimate_norm(J, max_steps=np.int64(3)).num_steps <= 3


@pytest.mark.parametrize("product, error", [(3, TypeError), (None, TypeError), ("both", ValueError),
                                            (["vjp"], TypeError)])
def test_spectral_radius_product_is_checked(product, error):
    with pytest.raises(error, match="product must be 'auto', 'vjp' or 'jvp'"):
        rbpsolve.estimate_spectral_radius(_diagonal(np.full(6, 0.5)), product=product)



def test_a_norm_past_the_largest_float32_counts_as_overflow():
    # J = (c / n) 1 1^T with c = 1e39: on 1 / sqrt(n) every entry of J v is a finite
    # float32 (1e37) but ||J v|| = c is not one, so dividing by it would flush v to zero.
    n, c = 10_000, 1e39

    def product(u):  # symmetric: one callback for both products, in float64 like a careful user
        return np.full(n, c / n * float(np.sum(u, dtype=np.float64)), dtype=np.float32)

    J = rbpsolve.JacobianOperator(product, product, like=np.zeros(n, np.float32))
    # Lanczos: J v, then J^T u = J (1 / sqrt(n)) at step 1, which is caught where it happens.
    _assert_nonfinite(rbpsolve.estimate_norm(J), "vjp")
    assert rbpsolve.estimate_norm(J).details["nonfinite_step"] == 1
    _assert_nonfinite(rbpsolve.estimate_spectral_radius(J), "vjp")
    assert rbpsolve.analyze(J).contraction == "nonfinite"

"""The JAX adapter on a batch (``fixed_point(..., batch_axis=k)``, eager): one fixed point
and one adjoint a sample, checked against each sample solved alone and against the torch
adapter's batched mode; the failure policies per sample (raise/warn name the samples,
"mask" drops them); the refusals (bad axes, pytree states, tracing).

Every model is float64 and its samples are independent: sample i iterates its own map
with its own contraction, so each one's solo gradient is the reference for its share.
The models are those of tests/test_torch_batched.py, written in JAX.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import rbpsolve  # noqa: E402
from rbpsolve import GMRES, LSQR, Anderson, FixedPoint, Neumann, Picard, Status  # noqa: E402
from rbpsolve.adapters.jax import ConvergenceWarning, fixed_point  # noqa: E402

B, N, D = 6, 5, 3
# A different contraction a sample: the bound on ||df_i/dh|| is SCALES[i].
SCALES = np.array([0.3, 0.85, 0.5, 0.7, 0.4, 0.6])
FWD = Picard(rtol=1e-14, max_steps=5000)
BWD = GMRES(rtol=1e-13)


def _model(seed=0, scales=SCALES):
    """Parameters (a dict pytree, what gradients reach) and the constants s, c."""
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((N, N))
    W = W / np.linalg.norm(W, 2)
    params = dict(W=jnp.asarray(W), U=jnp.asarray(0.5 * rng.standard_normal((N, D))),
                  b=jnp.asarray(0.2 * rng.standard_normal(N)), x=jnp.asarray(rng.standard_normal((len(scales), D))))
    return params, dict(s=np.asarray(scales, dtype=np.float64), c=jnp.asarray(rng.standard_normal((len(scales), N))))


def _f(const, rows=slice(None)):
    """h_i <- tanh(s_i W h_i + U x_i + b) for the samples ``rows`` (batch first)."""
    s = jnp.asarray(const["s"][rows])

    def f(h, p):
        u = p["x"][rows] @ p["U"].T + p["b"]
        return jnp.tanh(s[..., None] * (h @ p["W"].T) + u)

    return f


def _loss(const, h, rows=slice(None)):
    return jnp.sum(const["c"][rows] * h) + 0.5 * jnp.sum(h**2)


def _grad(run, params):
    """``(gradient, diagnostics)`` of ``run(params) -> (loss, diagnostics)``."""
    return jax.grad(run, has_aux=True)(params)


def _batched_run(const, f=None, **kw):
    kw = {"forward": FWD, "backward": BWD, "batch_axis": 0, **kw}
    f = _f(const) if f is None else f

    def run(p):
        h, diag = fixed_point(f, jnp.zeros((len(const["s"]), N)), p, **kw)
        return _loss(const, h), diag

    return run


def _solo_run(const, i, f=None, **kw):
    kw = {"forward": FWD, "backward": BWD, **kw}
    f = _f(const, i) if f is None else f

    def run(p):
        h, diag = fixed_point(f, jnp.zeros(N), p, **kw)
        return _loss(const, h, i), diag

    return run


def _close(a, b, tol):
    for k in b:
        np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=0, atol=tol, err_msg=k)


def _sum(trees):
    return jax.tree_util.tree_map(lambda *xs: sum(xs), *trees)


# ---------------------------------------------------------------------------- each sample as alone
@pytest.mark.parametrize("backward", [GMRES(rtol=1e-13), Neumann(rtol=1e-13, max_steps=500), LSQR(rtol=1e-13)],
                         ids=["gmres", "neumann", "lsqr"])
def test_batched_equals_separate_unbatched_calls(backward):
    """Gradients to 1e-10, the fixed points, each sample's statuses and step counts."""
    params, const = _model()
    got, diag = _grad(_batched_run(const, backward=backward), params)
    solo_grads, solo_fwd, solo_bwd = [], [], []
    for i in range(B):
        g, d = _grad(_solo_run(const, i, backward=backward), params)
        solo_grads.append(g)
        solo_fwd.append(d.forward)
        solo_bwd.append(d.backward)
    _close(got, _sum(solo_grads), 1e-10)
    fwd, bwd = diag.forward_samples, diag.backward_samples
    assert list(fwd.status) == [r.status for r in solo_fwd]
    assert list(bwd.status) == [r.status for r in solo_bwd]
    assert all(s is Status.CONVERGED for s in list(fwd.status) + list(bwd.status))
    np.testing.assert_array_equal(fwd.num_steps, [r.num_steps for r in solo_fwd])
    np.testing.assert_array_equal(bwd.num_steps, [r.num_steps for r in solo_bwd])
    assert len(set(fwd.num_steps.tolist())) > 1  # the samples do differ
    np.testing.assert_allclose(np.asarray(diag.forward.x), np.stack([np.asarray(r.x) for r in solo_fwd]),
                               rtol=0, atol=1e-12)
    # x is per sample: row i of its gradient is sample i's alone
    np.testing.assert_allclose(np.asarray(got["x"][1]), np.asarray(solo_grads[1]["x"][1]), rtol=0, atol=1e-10)
    if isinstance(backward, Neumann):
        assert len(set(bwd.num_steps.tolist())) > 1
        assert diag.backward.num_vjp < sum(r.num_steps for r in solo_bwd)  # one batched VJP a step


def test_batched_gradient_equals_the_whole_batch_as_one_system():
    params, const = _model(seed=1)
    got, diag = _grad(_batched_run(const), params)
    want, whole = _grad(_batched_run(const, batch_axis=None), params)
    _close(got, want, 1e-10)
    assert diag.batch_axis == 0 and whole.batch_axis is None and whole.forward_samples is None


@pytest.mark.parametrize("axis", [1, -1])
def test_batch_axis_other_than_zero(axis):
    """The state (n, B), samples along axis 1: the same gradient and counts as batch first."""
    params, const = _model(seed=2)
    f0 = _f(const)

    def run(p):
        h, diag = fixed_point(lambda h, p: f0(h.T, p).T, jnp.zeros((N, B)), p, forward=FWD, backward=BWD,
                              batch_axis=axis)
        assert diag.batch_axis == 1 and diag.backward is None
        return _loss(const, h.T), diag

    got, diag = _grad(run, params)
    assert diag.backward.sample_status.shape == (B,) and diag.backward.ok
    want, first = _grad(_batched_run(const), params)
    _close(got, want, 1e-10)
    np.testing.assert_array_equal(diag.forward_samples.num_steps, first.forward_samples.num_steps)


def test_diagnostics_hold_each_samples_records():
    params, const = _model(seed=3)
    h, diag = fixed_point(_f(const), jnp.zeros((B, N)), params, forward=FWD, backward=BWD, batch_axis=0)
    assert diag.backward_samples is None and diag.masked is None
    fwd = diag.forward_samples
    assert fwd.status.shape == (B,) and len(fwd.failed) == 0 and fwd.summary == f"{B} converged"
    assert "6 converged" in repr(diag) and "backward=not run" in repr(diag)
    _, diag = _grad(_batched_run(const), params)
    bwd = diag.backward_samples
    assert bwd.residual_norm.shape == bwd.error_estimate.shape == (B,)
    assert diag.backward_calls == 1 and diag.backward.sample_status is not None


def test_backward_x0_is_a_batch_shaped_start():
    """A fixed budget keeps its start's trace: the batched and solo runs from the same
    starts give the same gradient."""
    params, const = _model(seed=7)
    z0 = jnp.asarray(np.random.default_rng(0).uniform(size=(B, N)))
    bwd = FixedPoint(max_steps=5, rtol=0, atol=0)
    got, diag = _grad(_batched_run(const, backward=bwd, backward_x0=z0), params)
    assert all(s is Status.BUDGET_SPENT for s in diag.backward_samples.status)
    solo = [_grad(_solo_run(const, i, backward=bwd, backward_x0=z0[i]), params)[0] for i in range(B)]
    _close(got, _sum(solo), 1e-10)
    got_callable, _ = _grad(_batched_run(const, backward=bwd, backward_x0=lambda g: z0), params)
    _close(got_callable, got, 0)


# ---------------------------------------------------------------------------- a sample that diverges
BAD = 3


def _linear(seed=4, bad_rho=1.5):
    """h_i <- s_i W h_i + tanh(U x_i + b): linear in h with J_i = s_i W of spectral radius
    SCALES[i], but sample BAD's ``bad_rho``: 1.5 > 1, so FixedPoint diverges on it
    backward; 0.995, so it runs out of steps far from converged. Anderson still finds
    every fixed point (it solves a linear one)."""
    params, const = _model(seed)
    rho = np.abs(np.linalg.eigvals(np.asarray(params["W"]))).max()
    s = SCALES / rho
    s[BAD] = bad_rho / rho
    const["s"] = s
    return params, const


def _f_linear(const, rows=slice(None)):
    s = jnp.asarray(const["s"][rows])

    def f(h, p):
        return s[..., None] * (h @ p["W"].T) + jnp.tanh(p["x"][rows] @ p["U"].T + p["b"])

    return f


LIN = dict(forward=Anderson(memory=N + 1, rtol=1e-13, max_steps=200),
           backward=FixedPoint(rtol=1e-12, max_steps=400))  # 0.85^400 < 1e-28; 0.995^400 > 0.1


def test_raise_names_the_diverging_sample():
    params, const = _linear()
    h, diag = fixed_point(_f_linear(const), jnp.zeros((B, N)), params, batch_axis=0, **LIN)
    assert diag.forward.ok  # the forward is fine on every sample
    with pytest.raises(rbpsolve.SolveError, match=rf"diverged: sample {BAD}\b") as info:
        _grad(_batched_run(const, f=_f_linear(const), **LIN), params)
    assert info.value.result.sample_status[BAD] is Status.DIVERGED
    assert [i for i, s in enumerate(info.value.result.sample_status) if not s.ok] == [BAD]


def test_warn_names_the_diverging_sample_and_carries_on():
    params, const = _linear()
    with pytest.warns(ConvergenceWarning, match=rf"diverged: sample {BAD}\b"):
        got, diag = _grad(_batched_run(const, f=_f_linear(const), on_failure="warn", **LIN), params)
    assert diag.masked is None and list(diag.backward_samples.failed) == [BAD]
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in got.values())


@pytest.mark.parametrize("bad_rho, status", [(1.5, Status.DIVERGED), (0.995, Status.MAX_STEPS)],
                         ids=["diverged", "max_steps"])
def test_mask_zeroes_exactly_the_failing_samples_contribution(bad_rho, status):
    params, const = _linear(bad_rho=bad_rho)
    f = _f_linear(const)
    with pytest.warns(ConvergenceWarning, match=rf"samples? {BAD}\b.*set to zero"):
        got, diag = _grad(_batched_run(const, f=f, on_failure="mask", **LIN), params)
    assert list(diag.masked) == [BAD] and diag.backward.sample_status[BAD] is status
    assert diag.forward.ok
    if status is Status.MAX_STEPS:  # the solver's z for it is far from zero: the mask zeroes it
        assert float(jnp.max(jnp.abs(diag.backward.x[BAD]))) > 1e-3
    assert f"masked samples {BAD}" in repr(diag)
    # the bad sample's own input gets exactly no gradient
    assert not np.any(np.asarray(got["x"][BAD]))
    # the gradient of the loss restricted to the other samples (g_BAD = 0: nothing to solve
    # for it, so no failure), bit for bit
    keep = np.ones((B, 1))
    keep[BAD] = 0.0

    def restricted(p):
        h, d = fixed_point(f, jnp.zeros((B, N)), p, batch_axis=0, **LIN)
        return _loss(const, jnp.asarray(keep) * h), d

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        want, wd = _grad(restricted, params)
    assert wd.backward.ok and wd.backward_samples.num_steps[BAD] == 0
    _close(got, want, 0)
    # and the sum of the other samples solved alone
    others = [i for i in range(B) if i != BAD]
    solo = [_grad(_solo_run(const, i, f=_f_linear(const, i), **LIN), params)[0] for i in others]
    _close(got, _sum(solo), 1e-10)


def test_mask_drops_a_sample_whose_forward_failed():
    """Picard diverges on the BAD sample (rho 1.5): its best iterate comes back, its
    gradient is zero, and the backward does not solve for it."""
    params, const = _linear()
    f = _f_linear(const)
    kw = dict(forward=Picard(rtol=1e-13, max_steps=400), backward=GMRES(rtol=1e-13), on_failure="mask")
    with pytest.warns(ConvergenceWarning, match=rf"forward solve failed on samples {BAD}\b"):
        h, diag = fixed_point(f, jnp.zeros((B, N)), params, batch_axis=0, **kw)
    assert list(diag.masked) == [BAD] and bool(jnp.all(jnp.isfinite(h)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the forward's, again, under jax.grad
        got, diag = _grad(_batched_run(const, f=f, **kw), params)
    assert diag.backward.ok and diag.backward_samples.num_steps[BAD] == 0
    assert list(diag.masked) == [BAD] and not np.any(np.asarray(got["x"][BAD]))
    assert np.any(np.asarray(got["x"][0]))


def test_mask_still_raises_on_a_non_finite_forward_output():
    """A failed sample's forward output must be finite (its NaNs would reach every
    sample's loss). The core hands back a finite best iterate (at worst the checked h0),
    so the policy itself is given a Result whose failed sample holds a NaN."""
    from rbpsolve.adapters.jax._policy import apply

    def f(h):
        return (0.5 * h + 1.0).at[BAD].set(jnp.nan)

    result = rbpsolve.fixed_point(f, jnp.zeros((B, N)), Picard(rtol=1e-12), batch_axis=0, throw=False)
    assert result.sample_status[BAD] is Status.NONFINITE and bool(jnp.all(jnp.isfinite(result.x)))
    with pytest.warns(ConvergenceWarning, match=rf"samples {BAD}\b"):
        assert apply("mask", result, "forward", 0) == (BAD,)
    poisoned = dataclasses.replace(result, x=result.x.at[BAD, 0].set(jnp.nan))
    with pytest.raises(rbpsolve.SolveError, match=rf"nonfinite: sample {BAD}\b"):
        apply("mask", poisoned, "forward", 0)
    # the backward's adjoint of a failed sample may be anything: it is zeroed, not checked
    with pytest.warns(ConvergenceWarning):
        assert apply("mask", poisoned, "backward", 0) == (BAD,)


def test_a_per_sample_fallback_rescues_the_diverging_sample():
    params, const = _linear()
    fallback = rbpsolve.Fallback(GMRES(rtol=1e-13))
    got, diag = _grad(_batched_run(const, f=_f_linear(const), on_failure=fallback, **LIN), params)
    assert diag.backward.ok
    exact, _ = _grad(_batched_run(const, f=_f_linear(const), forward=LIN["forward"], backward=GMRES(rtol=1e-13)),
                     params)
    _close(got, exact, 1e-8)


# ---------------------------------------------------------------------------- refusals
def test_batch_axis_is_checked_with_the_fix_named():
    f, h0, p = (lambda h, p: p * h), jnp.zeros((4, 3)), jnp.asarray(0.5)
    with pytest.raises(TypeError, match="batch_axis must be an int, the axis of h0"):
        fixed_point(f, h0, p, batch_axis="0")
    with pytest.raises(TypeError, match="batch_axis must be an int"):
        fixed_point(f, h0, p, batch_axis=True)
    with pytest.raises(TypeError, match="batch_axis must be an int"):
        fixed_point(f, h0, p, batch_axis=0.0)
    with pytest.raises(ValueError, match=r"batch_axis=2 is out of range for h0 of shape \(4, 3\).*\[-2, 1\]"):
        fixed_point(f, h0, p, batch_axis=2)
    with pytest.raises(ValueError, match=r"batch_axis=-3 is out of range"):
        fixed_point(f, h0, p, batch_axis=-3)
    with pytest.raises(ValueError, match="h0 is 0-d"):
        fixed_point(f, jnp.zeros(()), p, batch_axis=0)
    with pytest.raises(ValueError, match="on_failure='mask'.*needs batch_axis"):
        fixed_point(f, h0, p, on_failure="mask")
    with pytest.raises(ValueError, match="'raise', 'warn' or an rbpsolve.Fallback.*'mask' with batch_axis"):
        fixed_point(f, h0, p, on_failure="ignore", batch_axis=0)


def test_a_pytree_state_is_refused_with_batch_axis():
    h0 = {"a": jnp.zeros((4, 3)), "b": jnp.zeros((4, 2))}
    with pytest.raises(TypeError, match="single jax.Array.*pytree"):
        fixed_point(lambda h, p: h, h0, jnp.asarray(0.5), batch_axis=0)
    with pytest.raises(TypeError, match="single jax.Array.*pytree"):
        fixed_point(lambda h, p: h, (jnp.zeros((4, 3)),), jnp.asarray(0.5), batch_axis=0)


def _core_refuses(solver):
    J = rbpsolve.JacobianOperator(lambda u: u, lambda v: v, like=np.zeros((1, 1)))
    try:
        rbpsolve.solve_adjoint(J, np.zeros((1, 1)), solver, batch_axis=0, throw=False)
    except NotImplementedError:
        return True
    return False


@pytest.mark.parametrize("backward", [rbpsolve.RandomizedNeumann(max_steps=5, seed=0), Neumann(max_steps=5),
                                      rbpsolve.Fallback(Neumann(max_steps=5), GMRES())],
                         ids=["randomized", "neumann", "fallback"])
def test_a_backward_the_core_cannot_batch_is_refused_at_the_call(backward):
    calls = []

    def f(h, p):
        calls.append(1)
        return p * h

    if _core_refuses(backward):
        with pytest.raises(NotImplementedError, match=r"fixed_point\(batch_axis=0\): the backward solver"):
            fixed_point(f, jnp.zeros((3, 2)), jnp.asarray(0.5), backward=backward, batch_axis=0)
        assert not calls  # before any forward work
    else:
        h, diag = fixed_point(f, jnp.zeros((3, 2)), jnp.asarray(0.5), backward=backward, batch_axis=0)
        assert diag.forward.sample_status is not None


def test_a_forward_chain_the_core_cannot_batch_is_refused():
    with pytest.raises(NotImplementedError, match=r"fixed_point\(batch_axis=0\): the forward solver"):
        fixed_point(lambda h, p: p * h, jnp.zeros((3, 2)), jnp.asarray(0.5), batch_axis=0,
                    on_failure=rbpsolve.Fallback(Anderson()))


BUDGETS = dict(forward=Picard(max_steps=15, rtol=0, atol=0), backward=Neumann(max_steps=20, rtol=0, atol=0))


def test_batch_axis_is_refused_under_jit_and_vmap_with_the_alternative():
    params, const = _model()
    f = _f(const)

    def loss(p):
        return _loss(const, fixed_point(f, jnp.zeros((B, N)), p, batch_axis=0, **BUDGETS)[0])

    with pytest.raises(ValueError, match=r"batch_axis=0 .*eager calls only.*jax\.vmap .*fixed budgets"):
        jax.jit(loss)(params)
    with pytest.raises(ValueError, match=r"eager calls only.*jax\.vmap"):
        jax.jit(jax.grad(loss))(params)
    with pytest.raises(ValueError, match=r"eager calls only.*jax\.vmap"):
        jax.vmap(lambda h0: fixed_point(lambda h, p: p * h, h0, jnp.asarray(0.5), batch_axis=0,
                                        on_failure="mask", **BUDGETS)[0])(jnp.zeros((2, 3, 4)))


def test_the_suggested_vmap_with_fixed_budgets_matches_the_eager_batch():
    """What the refusal points to: jax.vmap over samples, fixed budgets, per-sample statuses."""
    params, const = _model(seed=9)
    s = jnp.asarray(const["s"])

    def one(x, si, h0, p):  # one sample: its input row and its scale
        u = x @ p["U"].T + p["b"]
        return fixed_point(lambda h, q: jnp.tanh(q[1] * (q[0]["W"] @ h) + q[2]), h0, (p, si, u), **BUDGETS)

    def loss(p):
        h, diag = jax.vmap(lambda x, si, h0: one(x, si, h0, p))(p["x"], s, jnp.zeros((B, N)))
        return _loss(const, h), diag

    got, traced = jax.jit(jax.grad(loss, has_aux=True))(params)
    want, diag = _grad(_batched_run(const, **BUDGETS), params)
    _close(got, want, 1e-10)
    assert [st.name for st in traced.forward.statuses()] == [st.name for st in diag.forward_samples.status]


# ---------------------------------------------------------------------------- against the torch adapter
def test_the_same_gradient_as_the_torch_adapters_batched_mode():
    torch = pytest.importorskip("torch")
    from rbpsolve.adapters.torch import fixed_point as torch_fixed_point

    params, const = _model(seed=11)
    got, diag = _grad(_batched_run(const), params)
    t = {k: torch.tensor(np.asarray(v)).requires_grad_() for k, v in params.items()}
    s = torch.tensor(const["s"]).unsqueeze(-1)
    u = t["x"] @ t["U"].T + t["b"]
    h, tdiag = torch_fixed_point(lambda h: torch.tanh(s * (h @ t["W"].T) + u),
                                 torch.zeros(B, N, dtype=torch.float64), forward=FWD, backward=BWD, batch_axis=0)
    ((torch.tensor(np.asarray(const["c"])) * h).sum() + 0.5 * (h**2).sum()).backward()
    for k in params:
        np.testing.assert_allclose(np.asarray(got[k]), t[k].grad.numpy(), rtol=0, atol=1e-10, err_msg=k)
    np.testing.assert_array_equal(diag.forward_samples.num_steps, tdiag.forward_samples.num_steps)
    np.testing.assert_array_equal(diag.backward_samples.num_steps, tdiag.backward_samples.num_steps)


# ---------------------------------------------------------------------------- the docs
def test_the_jax_pages_batched_example_runs():
    import re
    from pathlib import Path

    page = Path(__file__).parents[1] / "docs" / "jax.md"
    blocks = [b for b in re.findall(r"```python\n(.*?)```", page.read_text(), re.S) if "batch_axis" in b]
    assert blocks, "the JAX page lost its batch_axis example"
    namespace = {}
    with pytest.warns(ConvergenceWarning, match="samples 2 .*set to zero"):
        exec(compile(blocks[0], str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    diag, grads = namespace["diag"], namespace["grads"]
    assert diag.backward_samples.summary == "3 converged, 1 diverged: sample 2"
    assert list(diag.masked) == [2] and diag.forward.ok
    assert not np.any(np.asarray(grads["x"][2])) and np.all(np.asarray(grads["x"])[[0, 1, 3]] != 0)

""":func:`fixed_point` inside ``jax.jit`` and ``jax.vmap``: fixed budgets as pure JAX in a
``jax.custom_vjp``, their statuses in arrays, the failure policy on the device."""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import rbpsolve

from . import _budget
from ._policy import ConvergenceWarning
from ._results import TracedDiagnostics, TracedSolve, code, probe_cotangent, status_of

__all__ = ["traced_fixed_point", "supports"]

_OK = (code(rbpsolve.Status.CONVERGED), code(rbpsolve.Status.BUDGET_SPENT))


def supports(forward, backward, on_failure) -> bool:
    """Whether a traced call with these settings runs here (else it raises as before)."""
    return (_budget.is_traceable_forward(forward) and _budget.is_traceable_backward(backward)
            and isinstance(on_failure, str) and on_failure in ("raise", "warn"))


def traced_fixed_point(f, h0, params, *, forward, backward, rule, backward_x0, probe):
    """The traced :func:`fixed_point`: ``(h*, TracedDiagnostics)``; see its docstring."""
    _check_output(f, h0, params)
    # Arrays f closes over that jax is tracing (an input under jax.grad or jax.jit) become
    # inputs of the custom_vjp, so that their gradients flow (a closed-over tracer would
    # leak out of it); the user's params are (params, hoisted) from here on.
    converted, hoisted = jax.closure_convert(f, h0, params)
    params = (params, tuple(hoisted))

    def f(h, p):
        return converted(h, p[0], *p[1])

    flat0, unravel = ravel_pytree(h0)
    if not jnp.issubdtype(flat0.dtype, jnp.inexact):
        raise TypeError(f"h0 is {flat0.dtype}: a fixed point needs a floating state; cast h0 to float32 or float64")
    if jnp.finfo(flat0.dtype).bits < 32:
        raise TypeError(
            f"h0 is {flat0.dtype}: traced fixed budgets run in float32 or float64 (the core promotes "
            f"float16/bfloat16 solves to float32 on the host, which a traced program cannot); cast h0 and "
            f"params to float32, or call fixed_point eagerly"
        )
    start = None
    if backward_x0 is not None and not callable(backward_x0):
        start = _ravel_like(backward_x0, h0, "backward_x0")

    def F(x, p):
        return ravel_pytree(f(unravel(x), p))[0]

    def solve(flat0, params):
        x, report = _budget.picard(lambda x: F(x, params), flat0, forward)
        # Inside the custom_vjp: the error check's primitives have no differentiation rule.
        return _apply(rule, x, report, "forward"), report

    @jax.custom_vjp
    def implicit(flat0, params, start, probe):
        return solve(flat0, params)

    def implicit_fwd(flat0, params, start, probe):
        x, report = solve(flat0, params)
        return (x, report), (x, params, start, probe)

    def implicit_bwd(residuals, cotangents):
        x, params, start, probe = residuals
        g = cotangents[0]  # the TracedSolve's cotangents are ignored
        _, vjp = jax.vjp(lambda v: F(v, params), x)
        x0 = _ravel_like(backward_x0(unravel(g)), h0, "backward_x0(g)") if callable(backward_x0) else start
        z, report = _budget.series(lambda u: vjp(u)[0], g, x0, backward)
        z = _apply(rule, z, report, "backward")
        h_star = unravel(x)
        _, pull = jax.vjp(lambda p: f(h_star, p), params)
        (params_bar,) = pull(unravel(z))
        start_bar = None if start is None else jnp.zeros_like(start)
        probe_bar = None if probe is None else probe_cotangent(report, probe)
        return jnp.zeros_like(x), params_bar, start_bar, probe_bar

    implicit.defvjp(implicit_fwd, implicit_bwd)
    x, report = implicit(flat0, params, start, probe)
    return unravel(x), TracedDiagnostics(forward=report)


def _apply(rule, x, report: TracedSolve, which: str):
    """The failure policy on the device. ``"raise"``: ``equinox.branched_error_if`` with the
    status's message (under ``jax.vmap``: that of the batch's largest failing code). ``"warn"``: a
    :class:`ConvergenceWarning` from a host callback, and an error only where the best
    iterate is not finite (as the eager ``"warn"``)."""
    eqx = _equinox()
    failed = ~_is_ok(report.status)
    if rule == "raise":
        return eqx.branched_error_if(x, failed, report.status, _MESSAGES[which])
    jax.debug.callback(functools.partial(_warn, which=which), report.status, report.num_steps)
    return eqx.error_if(
        x, failed & ~jnp.all(jnp.isfinite(x)),
        f"rbpsolve: the traced {which} solve failed and its best iterate is not finite (on_failure='warn' uses "
        f"it only when finite: its NaNs would reach every gradient); solve in float64, shorten the budget, or "
        f"make the map contractive",
    )


def _equinox():
    """equinox, imported at the first traced solve (eager calls do not need it)."""
    try:
        import equinox
    except ImportError as error:
        raise ImportError(
            "fixed_point inside jax.jit / jax.vmap needs equinox (its error_if applies on_failure on the device); "
            "install it with pip install 'rbpsolve[jax]' or pip install equinox==0.13.8"
        ) from error
    return equinox


def _is_ok(status):
    return (status == _OK[0]) | (status == _OK[1])


def _messages(which: str) -> tuple:
    """One message a status code (index = code; 0 is never raised)."""
    out = ["rbpsolve: no solve ran"]
    for status in rbpsolve.Status:
        out.append(f"rbpsolve: the traced {which} solve ended {status.name} (on_failure='raise'). {status.value}")
    return tuple(out)


_MESSAGES = {"forward": _messages("forward"), "backward": _messages("backward")}


def _warn(status, num_steps, *, which):
    """Host side of ``"warn"``: one warning naming the failed statuses (of a batch, too)."""
    codes, steps = np.atleast_1d(np.asarray(status)), np.atleast_1d(np.asarray(num_steps))
    failed = [(s, n) for s, n in zip(status_of(codes), steps) if s is not None and not s.ok]
    if not failed:
        return
    names = sorted({s.name for s, _ in failed})
    where = f" in {len(failed)} of {codes.size} samples" if codes.size > 1 else f" after {int(failed[0][1])} steps"
    warnings.warn(
        f"rbpsolve: the traced {which} solve ended {', '.join(names)}{where}; using its best iterate. "
        f"{failed[0][0].value}",
        ConvergenceWarning,
        stacklevel=2,
    )


def _check_output(f, h0, params):
    """``f``'s output against ``h0``: structure, shapes and dtypes, from shapes alone."""
    out = jax.eval_shape(f, h0, params)
    want, got = jax.tree_util.tree_structure(h0), jax.tree_util.tree_structure(out)
    if want != got:
        raise TypeError(
            f"f returned a pytree of structure {got} but h0 has structure {want}; f must map a state to a "
            f"state of the same structure"
        )
    _check_leaves(out, h0, "f returned", "h0")


def _check_leaves(tree, like, what: str, name: str):
    for (path, leaf), ref in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree_util.tree_leaves(like)):
        label = name + jax.tree_util.keystr(path)
        if leaf.shape != ref.shape:
            raise ValueError(f"{what} a jax array of shape {leaf.shape} but {label} has shape {ref.shape}")
        if leaf.dtype != ref.dtype:
            raise TypeError(f"{what} dtype {leaf.dtype} but {label} has dtype {ref.dtype}")


def _ravel_like(tree, h0, name: str):
    """``backward_x0`` (or its callable's answer) checked against ``h0`` and raveled."""
    if jax.tree_util.tree_structure(tree) != jax.tree_util.tree_structure(h0):
        raise TypeError(
            f"{name} has structure {jax.tree_util.tree_structure(tree)} but h0 has structure "
            f"{jax.tree_util.tree_structure(h0)}; make it with jax.tree_util.tree_map(jax.numpy.zeros_like, h0)"
        )
    _check_leaves(tree, h0, f"{name} is", "h0")
    return ravel_pytree(tree)[0]

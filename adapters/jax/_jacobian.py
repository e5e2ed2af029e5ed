"""``J = df/dh`` as an :class:`rbpsolve.JacobianOperator`, from one ``jax.vjp`` linearisation."""

from __future__ import annotations

import jax

import rbpsolve

from ._state import FlatState

__all__ = ["jacobian_operator", "Linearisation"]


def jacobian_operator(f, h, *, norm_bound: float | None = None):
    r"""The Jacobian ``J = df/dh`` at ``h`` as an :class:`rbpsolve.JacobianOperator`.

    ``f`` is linearised at ``h`` once by ``jax.vjp``: every VJP ``J^T u`` reuses that
    linearisation (``f`` is not run again). JVPs ``J v`` come from ``jax.linearize``, run
    once, at the first JVP (only CGNE, LSQR and the norm estimates need them).

    Parameters
    ----------
    f : callable
        ``f(h)`` returns a state of ``h``'s pytree structure, each leaf of its leaf's
        shape and dtype. It may close over arrays (they are constants here).
    h : jax.Array or pytree of jax.Array
        The point. A pytree is raveled once (``jax.flatten_util.ravel_pytree``): the
        operator acts on that flat vector, of size the total number of elements.
    norm_bound : float, optional
        A known bound ``q >= ||J||_2`` (see :class:`rbpsolve.JacobianOperator`).

    Returns
    -------
    rbpsolve.JacobianOperator
        Acting on flat jax arrays of ``h``'s (promoted) dtype and device.

    Raises
    ------
    TypeError
        If ``h`` is not a jax array (or pytree of them), or ``f``'s output differs from
        ``h`` in structure or dtype (ValueError for a shape).
    jax.errors.ConcretizationTypeError
        If ``h`` or ``f``'s output is traced (inside ``jax.jit`` or ``jax.vmap``): the
        core's solvers read values on the host.

    Notes
    -----
    Memory: the linearisation keeps ``f``'s residuals at ``h`` (about one forward pass
    of activations) until the operator is dropped, plus the same again for the JVP's
    linearisation once a JVP was asked for.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np, rbpsolve
    >>> from rbpsolve.adapters.jax import jacobian_operator
    >>> W = jnp.array([[0.5, 0.2], [0.0, 0.3]])
    >>> J = jacobian_operator(lambda h: W @ h, jnp.zeros(2))
    >>> bool(np.allclose(J.to_dense(), W))
    True
    """
    if not callable(f):
        raise TypeError(f"f must be callable, a map h -> f(h); got {type(f).__name__}")
    state = FlatState(h, "h")
    return Linearisation(state.flat_map(f), state.flat, state.check_output).operator(norm_bound=norm_bound)


class Linearisation:
    """VJPs and JVPs of a flat map ``F`` at ``x``: ``jax.vjp`` now, ``jax.linearize`` at the
    first JVP.

    ``F(x)`` returns ``(flat output, output pytree)`` (:meth:`FlatState.flat_map`); the
    pytree, concrete once ``jax.vjp`` has run, goes to ``check`` (inside ``F`` it is traced
    by ``jax.vjp`` itself, so ``F`` cannot check it).
    """

    def __init__(self, F, x, check):
        self.F, self.x = F, x
        _, self._vjp, out = jax.vjp(F, x, has_aux=True)
        check(out)
        self._jvp = None

    def operator(self, norm_bound=None):
        return rbpsolve.JacobianOperator(self.vjp, self.jvp, like=self.x, norm_bound=norm_bound)

    def vjp(self, u):
        (g,) = self._vjp(u)
        return g

    def jvp(self, v):
        if self._jvp is None:
            # Lazily: Neumann, FixedPoint and GMRES never ask, and linearize runs F again.
            _, self._jvp = jax.linearize(lambda x: self.F(x)[0], self.x)
        return self._jvp(v)

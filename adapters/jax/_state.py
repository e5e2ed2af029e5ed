"""A state pytree as the one flat vector the core solves on, and the checks of its leaves,
of ``f``'s output and of traced values against it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from rbpsolve.extending import check_input, check_map_output, space_like

__all__ = ["FlatState", "BatchedState", "check_jax_leaves", "refuse_tracers", "host_readable"]

# What a traced value means for this adapter, and what to do instead. Every rbpsolve solve
# reads one scalar on the host per step (its stopping test), which a traced program cannot do.
_ALTERNATIVES = (
    "rbpsolve's solvers read the residual on the host at every step to decide when to stop, which "
    "jax.jit, jax.vmap and other transformations that trace cannot do. Call fixed_point and "
    "jacobian_operator eagerly (outside jax.jit / jax.vmap; jax.grad and jax.vjp in eager mode are "
    "fine); or, inside jax.jit / jax.vmap, use fixed budgets, which fixed_point runs as pure JAX: "
    "forward=rbpsolve.Picard(max_steps=T, rtol=0, atol=0) with backward=rbpsolve.Neumann(max_steps=K, "
    "rtol=0, atol=0) or rbpsolve.FixedPoint(max_steps=K, rtol=0, atol=0), and on_failure 'raise' or "
    "'warn' (no Fallback, GMRES, CGNE, LSQR, Anderson or tolerance under tracing); or, for a "
    "tolerance-driven solve inside a traced program, use optimistix.fixed_point with "
    "optimistix.ImplicitAdjoint"
)

_CLOSURE_FIX = "Pass every array you differentiate with respect to in params (f(h, params)), not through f's closure"


def check_jax_leaves(tree, name: str):
    """Check that every leaf of ``tree`` is a ``jax.Array`` (tracers count); return the leaves
    with their labels, e.g. ``h0['w']``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    if not flat:
        raise ValueError(f"{name} holds no arrays; pass a jax.Array or a pytree of them as the state")
    labelled = []
    for path, leaf in flat:
        label = name + jax.tree_util.keystr(path)
        if not isinstance(leaf, jax.Array):
            raise TypeError(
                f"{label} must be a jax.Array; got {type(leaf).__module__.split('.')[0]}.{type(leaf).__name__}. "
                f"Convert it with jax.numpy.asarray({label}) (for torch tensors use rbpsolve.adapters.torch)"
            )
        labelled.append((label, leaf))
    return labelled


def refuse_tracers(tree, name: str, context: str = ""):
    """Raise ``jax.errors.ConcretizationTypeError`` if a leaf of ``tree`` is a tracer."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.core.Tracer):
            label = name + jax.tree_util.keystr(path)
            raise jax.errors.ConcretizationTypeError(
                leaf, f"{label} is traced{context}. {_ALTERNATIVES}."
            )


def host_readable(tree) -> bool:
    """Whether the values of ``tree`` can be read on the host: no leaf is traced, or every
    traced leaf is one of eager ``jax.grad``/``jax.vjp`` (whose values exist now).

    Inside ``jax.jit`` or ``jax.vmap`` they cannot. JAX has no public test of this, so it
    is asked the way the solvers would ask: one host read of one element of each traced
    leaf (a single transfer, only when some leaf is a tracer).
    """
    tracers = [leaf for leaf in jax.tree_util.tree_leaves(tree) if isinstance(leaf, jax.core.Tracer)]
    if not tracers:
        return True
    try:
        int(sum(jnp.sum(jnp.ravel(leaf)[:1] != 0) for leaf in tracers))
    except jax.errors.ConcretizationTypeError:
        return False
    return True


class FlatState:
    """The structure and leaf spaces of a state pytree ``h``, and ``h`` raveled once.

    The core sees one flat vector (``jax.flatten_util.ravel_pytree``'s order); ``unravel``
    turns a flat vector back into the state's pytree. A single array is a pytree of one
    leaf: its flat vector is ``h.ravel()``.
    """

    def __init__(self, h, name: str, context: str = ""):
        self.name = name
        self.labels, leaves = zip(*check_jax_leaves(h, name))
        refuse_tracers(h, name, context)
        self.spaces = tuple(space_like(leaf, label) for label, leaf in zip(self.labels, leaves))
        self.treedef = jax.tree_util.tree_structure(h)
        self.flat, self.unravel = ravel_pytree(h)

    def check_output(self, out, fname: str = "f"):
        """Check what ``fname`` returned for this state: same structure, and each leaf of the
        leaf's shape, dtype and device, not traced."""
        treedef = jax.tree_util.tree_structure(out)
        if treedef != self.treedef:
            raise TypeError(
                f"{fname} returned a pytree of structure {treedef} but {self.name} has structure {self.treedef}; "
                f"{fname} must map a state to a state of the same structure"
            )
        for leaf, space, label in zip(jax.tree_util.tree_leaves(out), self.spaces, self.labels):
            if isinstance(leaf, jax.core.Tracer):
                raise jax.errors.ConcretizationTypeError(
                    leaf, f"{fname} returned a traced array for {label}: it closes over a value that jax.jit, "
                    f"jax.vmap or jax.grad is tracing. {_CLOSURE_FIX}. {_ALTERNATIVES}."
                )
            check_map_output(leaf, space, name=fname, state=label, noun="jax array")
        return out

    def flat_map(self, f, *args):
        """``x -> (ravel(out), out)`` with ``out = f(unravel(x), *args)``: ``f`` on flat vectors,
        its output pytree kept for :meth:`check_output` (structure mismatches are refused
        here, before raveling would hide them)."""

        def F(x):
            try:
                out = f(self.unravel(x), *args)
            except jax.errors.UnexpectedTracerError as err:
                # JAX's message speaks of side effects; the usual cause here is a closure.
                raise jax.errors.UnexpectedTracerError(
                    f"f met a tracer from outside this solve: it closes over a value that jax.grad, jax.jit or "
                    f"jax.vmap is tracing. {_CLOSURE_FIX}. (JAX's message: {err})"
                ) from err
            treedef = jax.tree_util.tree_structure(out)
            if treedef != self.treedef:
                raise TypeError(
                    f"f returned a pytree of structure {treedef} but {self.name} has structure {self.treedef}; "
                    f"f must map a state to a state of the same structure"
                )
            return self.ravel(out), out

        return F

    def ravel(self, tree):
        """A pytree of this state's structure (checked by the caller) as a flat vector."""
        return ravel_pytree(tree)[0]

    def check_like(self, tree, name: str):
        """Check ``tree`` (e.g. ``backward_x0``) against the state: structure, leaf spaces, finite."""
        labelled = check_jax_leaves(tree, name)
        if jax.tree_util.tree_structure(tree) != self.treedef:
            raise TypeError(
                f"{name} has structure {jax.tree_util.tree_structure(tree)} but {self.name} has structure "
                f"{self.treedef}; make it with jax.tree_util.tree_map(jax.numpy.zeros_like, {self.name}) or similar"
            )
        refuse_tracers(tree, name)
        for (label, leaf), space, state in zip(labelled, self.spaces, self.labels):
            check_input(leaf, space, label, f"{state} is an array")
        return self.ravel(tree)


class BatchedState(FlatState):
    """A single-array state with a batch axis, kept in its own shape.

    The core's per-sample solves (``batch_axis``) need the samples' axis, which raveling
    would lose: here the "flat" vector is the array itself and ``ravel``/``unravel`` are
    the identity, so :class:`FlatState`'s checks and :meth:`flat_map` serve unchanged.
    """

    def __init__(self, h, name: str, context: str = ""):
        super().__init__(h, name, context)
        self.flat, self.unravel = h, _identity

    def ravel(self, tree):
        return tree


def _identity(x):
    return x

"""The surface for framework adapters: rbpsolve's own input checks, for use outside the core.

``rbpsolve.adapters.torch`` imports only :mod:`rbpsolve` and this module, and a
third-party adapter (for another framework, or a model library's implicit layers) may
do the same, so that its errors read like rbpsolve's and its checks agree with the
solvers' own.

- :func:`space_like` -- the space (shape, dtype, device, library) of a state array,
  checked to be a real floating-point array;
- :func:`check_map_output` -- check a map's output ``f(h)`` against its state's space;
- :func:`check_input` -- check an array passed to a solve (``b``, ``g``, ``x0``);
- :func:`check_product` -- check what an operator's callback returned;
- :func:`check_solver_kind` -- check that a solver (or a ``Fallback``) is linear or forward;
- :func:`check_continue_prob` -- check a Russian-roulette continuation probability.
- :func:`draw_depth` -- draw the depth ``K0 + L`` of one randomised truncation, as
  :class:`~rbpsolve.RandomizedNeumann` does;
- :class:`AbstractIterativeSolver`, :class:`StepReport`, :class:`Trace`, :class:`Finish`
  -- the protocol every solver follows (``init``, ``step``, ``judge``, ``settle``,
  ``solution``, ``finish``; see :mod:`rbpsolve._protocol`), for a solver of one's own:
  subclass :class:`~rbpsolve.AbstractSolver` (linear) or
  :class:`~rbpsolve.AbstractForwardSolver` (forward), which add their checks to it.

cupy arrays need no adapter: the core computes with the array API, so cupy arrays work
in every entry point as they are.

Stability
---------
A documented internal surface, narrower than :mod:`rbpsolve`'s promise: these names and
their parameters are kept within a minor version, and any change is listed in the release
notes. The wording of the error messages is not part of it (match on the exception type).
Everything else of rbpsolve whose module name starts with an underscore may change at any
time; adapters should not import it.
"""

from __future__ import annotations

from ._checks import check_input, check_map_output, check_product, check_solver_kind
from ._protocol import AbstractIterativeSolver, Finish, StepReport, Trace
from ._solvers.randomized_neumann import check_continue_prob, draw_depth
from ._space import _Space

__all__ = [
    "space_like",
    "check_map_output",
    "check_input",
    "check_product",
    "check_solver_kind",
    "check_continue_prob",
    "draw_depth",
    "AbstractIterativeSolver",
    "StepReport",
    "Trace",
    "Finish",
]


def space_like(array, name: str = "like"):
    """The space of ``array``: its shape, dtype, device and array-API namespace.

    Parameters
    ----------
    array : array
        A state (any shape); only its metadata is kept.
    name : str
        The argument's name in the error messages, e.g. ``"h0"``.

    Returns
    -------
    space
        An object with ``shape`` (a tuple), ``dtype``, ``device`` and ``xp``, for the
        other checks of this module.

    Raises
    ------
    TypeError
        If ``array`` is not an array, is a ``numpy.matrix``, or is not real floating-point.
    """
    return _Space.like(array, name)

"""The checks of what users hand rbpsolve: arrays against a space, solvers against a problem.

Every message names the problem and the fix. One comparison, :func:`_mismatch`, decides
what differs between an array and a space (library, then shape, dtype, device); the
public checks word it for where the array came from:

- :func:`check_like`: an array whose metadata defines a space (``like=``, ``h0``);
- :func:`check_input`: an array passed to a solve (``b``, ``g``, ``x0``);
- :func:`check_product`: what an operator's callback returned (``vjp``, ``matvec``, ...);
- :func:`check_map_output`: what a map ``h -> F(h)`` returned, for a state of a space;
- :func:`check_same_space`: two operators combined by the algebra (``A + B``, ``A @ B``).

:func:`check_solver_kind` checks that a solver is of the kind the problem needs
(linear or forward). A "space" is anything with ``shape``, ``dtype``, ``device`` and
``xp`` (the array-API namespace), as ``_space._Space``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _backend

__all__ = [
    "check_not_matrix",
    "check_like",
    "check_input",
    "check_product",
    "check_map_output",
    "check_same_space",
    "check_solver_kind",
]


# ----------------------------------------------------------------------------- arrays
def check_not_matrix(array, name: str) -> None:
    """``np.matrix`` keeps two dimensions through every reduction and makes ``*`` a matrix
    product, which the solvers' elementwise arithmetic cannot work with."""
    if isinstance(array, np.matrix):
        raise TypeError(f"{name} is a numpy.matrix; pass a plain array instead: numpy.asarray({name})")


def check_like(array, name: str):
    """Check an array whose shape, dtype, device and library define a space; return its namespace.

    Raises
    ------
    TypeError
        If ``array`` is not an array, is a ``numpy.matrix``, or is not real floating-point.
    """
    if not _is_array(array):
        raise TypeError(
            f"{name} must be an array (numpy, torch, cupy or any array-API array) whose shape, "
            f"dtype and device the operator takes; got {type(array).__name__}"
        )
    check_not_matrix(array, name)
    xp = _backend.namespace(array)
    if not _backend.is_real_floating(xp, array.dtype):
        raise TypeError(
            f"{name} has dtype {array.dtype}; rbpsolve solves real floating-point systems: "
            f"pass float32 or float64 arrays"
        )
    return xp


def check_input(array, space, name: str, what: str) -> None:
    """Check an array passed to a solve against the operator's space; it must also be finite.

    Parameters
    ----------
    array : array
        The user's ``b``, ``g`` or ``x0``.
    space : space
        The operator's input or output space.
    name : str
        The argument's name, e.g. ``"g"``.
    what : str
        The start of the shape message's reference, e.g. ``"J acts on arrays"``.
    """
    if not _is_array(array):
        raise TypeError(f"{name} must be an array; got {type(array).__name__}")
    check_not_matrix(array, name)
    problem = _mismatch(array, space)
    if problem == "library":
        raise TypeError(
            f"{name} is a {_library_name(array)} array but the operator works on "
            f"{_backend.describe_namespace(space.xp)} arrays; convert {name} (or build the operator "
            f"with a `like` array of the same library)"
        )
    if problem == "shape":
        raise ValueError(f"{name} has shape {tuple(array.shape)} but {what} of shape {space.shape}")
    if problem == "dtype":
        rebuild = _rebuild(space, array.dtype, " or build the operator with a `like` array of dtype")
        raise TypeError(
            f"{name} has dtype {array.dtype} but the operator works in {space.dtype}; cast {name} "
            f"(e.g. {name}.astype){rebuild}"
        )
    if problem == "device":
        raise ValueError(
            f"{name} is on device {_backend.device_of(array)} but the operator works on {space.device}; "
            f"move {name} there"
        )
    xp = space.xp
    if not bool(xp.all(xp.isfinite(array))):
        raise ValueError(f"{name} contains NaN or inf; the solve needs finite values")


def check_product(out, space, name: str):
    """Check what an operator's callback ``name`` returned against the space it maps to.

    Returns ``out``. Runs at every product: it reads only metadata.
    """
    if not _is_array(out):
        raise TypeError(f"{name} returned {type(out).__name__}, not an array")
    problem = _mismatch(out, space)
    if problem == "library":
        raise TypeError(
            f"{name} returned a {_type_name(out)} but the operator works on "
            f"{_backend.describe_namespace(space.xp)} arrays; return an array of the library of its "
            f"`like` array (convert inside the callback)"
        )
    if problem == "shape":
        raise ValueError(
            f"{name} returned an array of shape {tuple(out.shape)} but the operator maps to arrays of "
            f"shape {space.shape}; the callback must return an array shaped like its `like` array"
        )
    if problem == "dtype":
        rebuild = _rebuild(space, out.dtype, " or build the operator with a `like` array of")
        raise TypeError(
            f"{name} returned dtype {out.dtype} but the operator works in {space.dtype}; "
            f"cast inside the callback{rebuild}"
        )
    if problem == "device":
        raise ValueError(
            f"{name} returned an array on device {_backend.device_of(out)} but the operator works on "
            f"{space.device}; move it there inside the callback"
        )
    return out


def check_map_output(out, space, *, name: str = "F", state: str = "h0", noun: str = "array", given=None):
    """Check what a map ``h -> name(h)`` returned against the space of its state.

    Parameters
    ----------
    out : array
        The map's output.
    space : space
        The state's space (``Map.in_space``; :func:`rbpsolve.extending.space_like` of a state).
    name : str
        The map as the user knows it: ``"F"`` (``rbpsolve.fixed_point``), ``"f"`` (the torch adapter).
    state : str
        The user's array the state's space comes from, e.g. ``"h0"``.
    noun : str
        What the library calls its arrays (``"tensor"`` in the torch adapter).
    given : array, optional
        The input ``h``: a map that returns it (updating it in place) is refused, since the
        solvers compare ``F(h)`` with ``h``.

    Returns
    -------
    out
    """
    if given is not None and out is given:
        raise ValueError(
            f"{name} returned its own input array (it updates h in place and returns it), so {name}(h) - h "
            f"is always zero; {name} must return a new array and leave h unchanged (e.g. `return 0.5 * h + 1` "
            f"instead of `h *= 0.5; h += 1; return h`)"
        )
    a_noun = ("an " if noun[:1] in "aeiou" else "a ") + noun
    if not _is_array(out):
        raise TypeError(f"{name} returned {type(out).__name__}, not {a_noun}; {name} must map a state to a state")
    problem = _mismatch(out, space)
    if problem == "library":
        raise TypeError(
            f"{name} returned a {_type_name(out)} for a {_backend.describe_namespace(space.xp)} state; "
            f"{name} must return {a_noun} of the library of {state}"
        )
    if problem == "shape":
        raise ValueError(
            f"{name} returned {a_noun} of shape {tuple(out.shape)} but {state} has shape {space.shape}; "
            f"{name} must map the state to a state of the same shape"
        )
    if problem == "dtype":
        raise TypeError(
            f"{name} returned dtype {out.dtype} but {state} has dtype {space.dtype}; cast inside "
            f"{name}{_rebuild(space, out.dtype, f' or pass {state} of dtype')}"
        )
    if problem == "device":
        raise ValueError(
            f"{name} returned {a_noun} on {_backend.device_of(out)} but {state} is on {space.device}; "
            f"move it there inside {name}"
        )
    return out


def check_same_space(a, b, left: str, right: str) -> None:
    """Check that two operators' spaces agree (library, shape, dtype, device), naming both sides."""
    if a.xp is not b.xp:
        raise TypeError(
            f"{left} uses {_backend.describe_namespace(a.xp)} arrays but {right} uses "
            f"{_backend.describe_namespace(b.xp)}; build both from arrays of one library"
        )
    if a.shape != b.shape:
        raise ValueError(f"{left} acts on arrays of shape {a.shape} but {right} on shape {b.shape}")
    if a.dtype != b.dtype:
        raise TypeError(f"{left} works in {a.dtype} but {right} in {b.dtype}; build both with one dtype")
    if not _backend.same_device(a.device, b.device):
        raise ValueError(f"{left} lives on device {a.device} but {right} on {b.device}; move one of them")


def _is_array(x) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _mismatch(array, space) -> str | None:
    """What first differs between ``array`` and ``space``: "library", "shape", "dtype",
    "device", or None. The order is that of the fixes: a library's arrays can only be
    compared in that library."""
    if type(array) is not space.array_type:
        if _library_of(array) is not _backend.local(space.xp):  # a sharded space's arrays are of its base library
            return "library"
        space.array_type = type(array)
    if tuple(array.shape) != space.shape:
        return "shape"
    if array.dtype != space.dtype:
        return "dtype"
    if not _backend.on_device(array, space.device):
        return "device"
    return None


def _library_of(array):
    try:
        return _backend.namespace(array)
    except TypeError:
        return None


def _library_name(array) -> str:
    xp = _library_of(array)
    return _type_name(array) if xp is None else _backend.describe_namespace(xp)


def _type_name(x) -> str:
    return f"{type(x).__module__.split('.')[0]}.{type(x).__name__}"


def _rebuild(space, dtype, fix: str) -> str:
    """``fix`` and the dtype, for a real floating ``dtype``: rebuilding in another dtype
    is no fix for an integer or complex one."""
    return f"{fix} {dtype}" if _backend.is_real_floating(space.xp, dtype) else ""


# ----------------------------------------------------------------------------- solvers
class _Kind(NamedTuple):
    does: str  # what solvers of this kind do
    settings: str  # what their settings are called
    example: str  # settings to suggest
    belongs: str  # where they are used


_KINDS = {
    "linear": _Kind(
        "solves the linear adjoint system",
        "rbpsolve solver settings",
        "rbpsolve.GMRES(rtol=1e-8)",
        "use it with rbpsolve.solve_adjoint or rbpsolve.solve",
    ),
    "forward": _Kind(
        "finds fixed points h = F(h)",
        "forward-solver settings",
        "rbpsolve.Picard(rtol=1e-6) or rbpsolve.Anderson()",
        "use it with rbpsolve.fixed_point",
    ),
}


def check_solver_kind(
    solver, kind: str, *, argument: str = "solver", example: str | None = None, other: str | None = None
) -> tuple:
    """Check that ``solver`` is settings of the ``kind`` of solver a problem needs.

    Parameters
    ----------
    solver : solver settings or Fallback
        What the user passed.
    kind : {"linear", "forward"}
        Linear solvers (:class:`~rbpsolve.AbstractSolver`) for ``solve`` and
        ``solve_adjoint``; forward solvers (:class:`~rbpsolve.AbstractForwardSolver`) for
        ``fixed_point``. A :class:`~rbpsolve.Fallback` must hold only that kind.
    argument : str
        The parameter's name in the messages: ``"solver"`` ("solver must be ..."), or a
        keyword written with its ``=`` ("backward= takes ...").
    example : str, optional
        Settings to suggest; by default GMRES for linear, Picard or Anderson for forward.
    other : str, optional
        Where a solver of the other kind belongs, e.g. ``"forward="``; by default the
        entry point of that kind.

    Returns
    -------
    tuple
        The solvers to run: those of the Fallback, or ``(solver,)``.

    Raises
    ------
    TypeError
        For a solver class instead of settings, a solver of the other kind, or anything else.
    """
    # The solver families import the operators, which import these checks: imported on use.
    from ._forward._base import AbstractForwardSolver
    from ._fallback import Fallback
    from ._solvers._base import AbstractSolver

    if kind not in _KINDS:
        raise ValueError(f"kind must be 'linear' or 'forward'; got {kind!r}")
    classes = {"linear": AbstractSolver, "forward": AbstractForwardSolver}
    other_kind = "forward" if kind == "linear" else "linear"
    wanted, unwanted = classes[kind], classes[other_kind]
    verb = "takes" if argument.endswith("=") else "must be"
    example = _KINDS[kind].example if example is None else example
    if isinstance(solver, type) and issubclass(solver, (AbstractSolver, AbstractForwardSolver)):
        raise TypeError(f"pass solver settings, not the class: {solver.__name__}() instead of {solver.__name__}")
    chain = solver.solvers if isinstance(solver, Fallback) else (solver,)
    for s in chain:
        if isinstance(s, unwanted):
            belongs = _KINDS[other_kind].belongs if other is None else f"pass it as {other}"
            name = type(s).__name__
            raise TypeError(
                f"{name} {_KINDS[other_kind].does}; {argument} {verb} a {kind} solver such as {example} "
                f"({name} is a {other_kind} solver: {belongs})"
            )
        if not isinstance(s, wanted):
            raise TypeError(f"{argument} {verb} {_KINDS[kind].settings} such as {example}; got {s!r}")
    return chain

"""A batch of independent systems as one operator: the views and state helpers behind
``solve(..., batch_axis=k)`` (the loop is :mod:`rbpsolve._batched_loop`).

The user's operator acts on the whole batch; the user asserts that it does not couple
samples (as in a deep-equilibrium model, one fixed point per sample). The solve sees it
with the batch moved to axis 0 and a :class:`~rbpsolve._backend.PerSample` namespace,
whose reductions run per sample: each solver's unchanged step code then carries one
recurrence per sample (per-sample scalars of shape ``(B, 1, ..., 1)``), with one batched
product a step.
"""

from __future__ import annotations

from . import _backend
from ._algebra import IdentityMinus, Wrapped
from ._forward._base import Map
from ._operator import Operator
from ._protocol import SampleValues
from ._space import _Space

__all__ = ["per_sample", "SampleView", "merge", "sample_state", "scalars_on_host", "split_reports", "mask_like"]


def _moved(space: _Space, axis: int, xp) -> _Space:
    shape = (space.shape[axis],) + space.shape[:axis] + space.shape[axis + 1:]
    return _Space(shape, space.dtype, space.device, xp)


class _BatchFirst(Wrapped):
    """``op`` seen with its batch axis first, and per-sample reductions.

    Products move the batch axis back to where the user's operator expects it (no copy
    for axis 0; a view otherwise).
    """

    def __init__(self, op: Operator, axis: int):
        super().__init__(op)
        self.axis = axis
        xp = _backend.PerSample(op.xp, len(op.in_shape))
        self.in_space = _moved(op.in_space, axis, xp)
        self.out_space = _moved(op.out_space, axis, xp)

    def _to_user(self, x):
        return _to_user(self.op.xp, x, self.axis)

    def _to_batch(self, y):
        return _to_batch(self.op.xp, y, self.axis)

    def mv(self, x):
        return self._to_batch(self.op.mv(self._to_user(x)))

    def rmv(self, y):
        return self._to_batch(self.op.rmv(self._to_user(y)))

    def rewrap(self, op):
        return _BatchFirst(op, self.axis)


def _to_user(xp, x, axis: int):
    """A batch-first array as the user lays the batch out (no copy for axis 0; a view otherwise)."""
    return x if axis == 0 else xp.moveaxis(x, 0, axis)


def _to_batch(xp, y, axis: int):
    return y if axis == 0 else xp.moveaxis(y, axis, 0)


class _BatchFirstMap(Map):
    """A forward map ``F`` (:class:`~rbpsolve._forward._base.Map`) seen with its batch axis
    first and per-sample reductions: one fixed point ``h_i* = F(h*)_i`` a sample.

    Each call is one evaluation of the user's ``F`` on the whole batch (counted once, and
    its output checked, by the wrapped map).
    """

    def __init__(self, F: Map, axis: int):
        super().__init__(F, _moved(F.in_space, axis, _backend.PerSample(F.xp, len(F.in_shape))))
        self.axis = axis

    def with_counter(self, counter):
        return _BatchFirstMap(self._F.with_counter(counter), self.axis)

    def __call__(self, h):
        user = self._F.xp
        return _to_batch(user, self._F(_to_user(user, h, self.axis)), self.axis)


def per_sample(a, axis: int):
    """``a`` (an operator, or a forward map) as a batch of systems along ``axis`` (``I - M``
    keeps its form, which the series solvers and GMRES recognise)."""
    if isinstance(a, Map):
        return _BatchFirstMap(a, axis)
    if isinstance(a, IdentityMinus):
        return IdentityMinus(_BatchFirst(a.op, axis))
    return _BatchFirst(a, axis)


class SampleView(Wrapped):
    """One sample of a batched operator, for the host-side conclusions of a solve
    (certificates, estimates): its spaces, norm bound and form, but no products (the
    batched solve computes every product for all samples at once)."""

    def __init__(self, op: Operator):
        super().__init__(op)
        shape = op.in_shape[1:]
        xp = op.xp.xp if type(op.xp) is _backend.PerSample else op.xp
        self.in_space = _Space(shape, op.in_space.dtype, op.in_space.device, xp)
        self.out_space = _Space(op.out_shape[1:], op.out_space.dtype, op.out_space.device, xp)

    def mv(self, x):
        raise RuntimeError("internal: a per-sample view makes no products (the batched loop does)")

    rmv = mv

    def rewrap(self, op):
        return SampleView(op)


def _no_evaluations(h):
    raise RuntimeError("internal: a per-sample view evaluates no map (the batched loop does)")


def sample_view(a):
    if isinstance(a, Map):
        # One sample's state space, for the host-side conclusions of a forward solve.
        space = a.in_space
        return Map(_no_evaluations, _Space(space.shape[1:], space.dtype, space.device, space.xp.xp))
    if isinstance(a, IdentityMinus):
        return IdentityMinus(SampleView(a.op))
    return SampleView(a)


def mask_like(xp, mask, array):
    """The host booleans ``mask`` (one a sample) as a device array that broadcasts
    against ``array`` (batch on axis 0)."""
    shape = (len(mask),) + (1,) * (array.ndim - 1)
    return xp.reshape(xp.asarray(mask, device=_backend.device_of(array)), shape)


def merge(xp, mask, new, old, batch: int):
    """The state ``new`` where the host booleans ``mask`` hold, ``old`` elsewhere (None:
    zeros), field by field.

    Fields that are arrays with the batch on axis 0 (vectors and per-sample scalars) are
    chosen per sample; anything else (host values, shared by every sample) comes from
    ``new``, as do :class:`SampleValues` (host values that a step does not change). Tuples
    inside the state are merged the same way. A field whose shape changed in the step (a
    history that grows while it fills, such as Anderson's differences and Gram matrix) has
    no old value of its shape: the samples not taken get zeros there. A stopped sample's
    state is only read for its iterate, which keeps its shape.
    """
    def pick(n, o):
        if type(n) is SampleValues:
            return n
        if isinstance(n, tuple) and not hasattr(n, "shape"):
            if o is not None and len(o) != len(n):
                o = None
            parts = [pick(a, None if o is None else b) for a, b in zip(n, o if o is not None else [None] * len(n))]
            return type(n)(*parts) if hasattr(n, "_fields") else tuple(parts)
        if getattr(n, "shape", None) and n.shape[0] == batch and n.ndim >= 1:
            if o is not None and o.shape != n.shape:
                o = None
            keep = mask_like(xp, mask, n)
            return xp.where(keep, n, o if o is not None else xp.zeros_like(n))
        return n

    return pick(new, old)


def _is_sample_scalar(v, batch: int, sample_ndim: int, sample_size: int) -> bool:
    """Whether ``v`` is a per-sample scalar of a batched state: shape ``(B, 1, ..., 1)``, as
    the per-sample reductions give (for one-entry samples every array looks like one)."""
    shape = getattr(v, "shape", None)
    return (bool(shape) and len(shape) == sample_ndim + 1 and shape[0] == batch
            and (sample_size > 1 or sample_ndim == 0) and all(s == 1 for s in shape[1:]))


def scalars_on_host(xp, state, batch: int, sample_ndim: int, sample_size: int) -> dict:
    """Every per-sample scalar of ``state`` on the host in one transfer: ``{id(field):
    [one float a sample]}`` (for :func:`sample_state`, so that concluding B samples does
    not read each sample's scalars separately)."""
    found = []

    def walk(v):
        if type(v) is SampleValues:
            return
        if isinstance(v, tuple) and not hasattr(v, "shape"):
            for p in v:
                walk(p)
        elif _is_sample_scalar(v, batch, sample_ndim, sample_size) and not any(v is f for f in found):
            found.append(v)

    walk(state)
    if not found:
        return {}
    flat = _backend.to_host(xp, *found)
    return {id(f): flat[k * batch: (k + 1) * batch] for k, f in enumerate(found)}


def sample_state(state, index: int, sample_ndim: int, sample_size: int, host: dict | None = None):
    """Sample ``index`` of a batched state, as an unbatched solver's state looks: its
    vectors without the batch axis, its per-sample scalars as 0-d arrays (as host floats
    where ``host``, from :func:`scalars_on_host`, has them) and its :class:`SampleValues`
    as that sample's entry."""
    batch = None

    def pick(v):
        if type(v) is SampleValues:
            return v[index]
        if isinstance(v, tuple) and not hasattr(v, "shape"):
            parts = [pick(p) for p in v]
            return type(v)(*parts) if hasattr(v, "_fields") else tuple(parts)
        shape = getattr(v, "shape", None)
        if not shape:
            return v
        if host and id(v) in host:
            return host[id(v)][index]
        one = v[index]
        if _is_sample_scalar(v, shape[0] if batch is None else batch, sample_ndim, sample_size):
            # A per-sample scalar (shape (1, ..., 1) once sliced): 0-d, as a reduction gives.
            return one.reshape(())
        return one

    return pick(state)


def split_reports(xp, reports: list, batch: int) -> list:
    """Steps' reports as ``batch`` host reports each (a list a step, one report a
    sample), in one transfer for them all.

    A device field carries one value a sample (shape ``(B, 1, ..., 1)``); a Python value
    (a flag, a setting) is the same for every sample, but for :class:`SampleValues` (a
    ``done`` one a sample), which holds each sample's own.
    """
    rows = [[r.residual, r.breakdown, r.least_squares, r.scale, *r.records] for r in reports]
    device = [f for fields in rows for f in fields if hasattr(f, "shape")]
    flat = _backend.to_host(xp, *device) if device else []
    out, at = [], 0
    for report, fields in zip(reports, rows):
        columns = []
        for f in fields:
            if not hasattr(f, "shape"):
                columns.append([f] * batch)
            elif f.shape:
                columns.append(flat[at: at + batch])
                at += batch
            else:  # a 0-d value: the same for every sample
                columns.append([flat[at]] * batch)
                at += 1
        # One report a sample, built field by field (``_replace`` would cost several times
        # more, and this runs batch times a step).
        make, template = type(report)._make, list(report)
        fields = type(report)._fields
        slots = [fields.index(name) for name in ("residual", "breakdown", "least_squares", "scale")]
        records_slot, done_slot = fields.index("records"), fields.index("done")
        each = type(report.done) is SampleValues  # one done flag a sample (RandomizedNeumann)
        residuals, breakdowns, squares, scales = columns[:4]
        record_columns = columns[4:]
        samples = []
        for i in range(batch):
            values = template.copy()
            values[slots[0]], values[slots[1]] = residuals[i], bool(breakdowns[i])
            values[slots[2]], values[slots[3]] = bool(squares[i]), scales[i]
            values[records_slot] = tuple(c[i] for c in record_columns)
            if each:
                values[done_slot] = bool(report.done[i])
            samples.append(make(values))
        out.append(samples)
    return out

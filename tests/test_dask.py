"""Dask arrays (chunked numpy) in the core: the same answers as numpy.

Every solver that works on dask (all of them; GMRES not per sample) gives numpy's
solution to 1e-12 relative in float64, with the same status and step count, on seeded
random operators whose products are dask matmuls against a chunked J. The estimates,
``analyze``, ``dottest`` and the forward solvers agree too. The loops persist each step
(:func:`rbpsolve._backend.persist`): a test reads the graph of the iterate at two steps
and fails if it grows. ``docs/scale_dask.md`` says when dask is worth it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import array_api_compat
import numpy as np
import pytest

import rbpsolve
from operators import make_problem

da = pytest.importorskip("dask.array", reason="dask is not installed (pip install .[dask])")

SEEDS = (0, 1, 2)
N = 12
CHUNKS = 8  # uneven (8, 4): a chunk boundary falls inside every reduction
RTOL = 1e-10


def _operators(J, like, to):
    """The same J^T u / J v products on numpy and on dask (J a chunked dask array there).

    ``like``: the state (1-D, or batch-first 2-D: then the products act on each row).
    """
    Jx = to(J)
    if like.ndim == 1:
        return rbpsolve.JacobianOperator(lambda u: Jx.T @ u, lambda v: Jx @ v, like=like)
    return rbpsolve.JacobianOperator(lambda u: u @ Jx, lambda v: v @ Jx.T, like=like)


def _chunked(a):
    return da.from_array(np.asarray(a), chunks=CHUNKS if np.ndim(a) != 2 or a.shape[0] == a.shape[1] else (2, CHUNKS))


def _pair(problem, g=None):
    """(numpy operator, g) and (dask operator, g) of one problem."""
    g = problem.g if g is None else g
    return (_operators(problem.J, g, np.asarray), g), (_operators(problem.J, _chunked(g), _chunked), _chunked(g))


def _same(dask_result, numpy_result, chunks=None, *, rtol=1e-12):
    """The dask result is numpy's: a dask float64 array (with ``chunks``, if given), the
    same x, status and steps."""
    x = dask_result.x
    assert array_api_compat.is_dask_array(x) and x.dtype == np.float64
    if chunks is not None:
        assert x.chunks == chunks  # the caller's chunks: GMRES's basis is cut as the state is
    assert dask_result.status is numpy_result.status
    assert dask_result.num_steps == numpy_result.num_steps
    assert (dask_result.num_vjp, dask_result.num_jvp) == (numpy_result.num_vjp, numpy_result.num_jvp)
    expected = np.asarray(numpy_result.x)
    assert np.linalg.norm(x.compute() - expected) <= rtol * np.linalg.norm(expected)


SOLVERS = {
    "FixedPoint": lambda: rbpsolve.FixedPoint(rtol=RTOL, max_steps=300),
    "Neumann": lambda: rbpsolve.Neumann(rtol=RTOL, max_steps=300),
    "Neumann-budget": lambda: rbpsolve.Neumann(rtol=0, max_steps=25),
    "RandomizedNeumann": lambda: rbpsolve.RandomizedNeumann(continue_prob=0.8, min_steps=5, seed=7),
    "CGNE": lambda: rbpsolve.CGNE(rtol=RTOL, max_steps=300),
    "LSQR": lambda: rbpsolve.LSQR(rtol=RTOL, max_steps=300),
    "GMRES": lambda: rbpsolve.GMRES(rtol=RTOL),
    "GMRES(3)": lambda: rbpsolve.GMRES(rtol=RTOL, restart=3, max_steps=300),
    "GMRES-budget": lambda: rbpsolve.GMRES(rtol=0, max_steps=6),
    # Neumann runs out of steps, GMRES finishes from its iterate.
    "Fallback": lambda: rbpsolve.Fallback(rbpsolve.Neumann(rtol=RTOL, max_steps=3), rbpsolve.GMRES(rtol=RTOL)),
}


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_gives_numpys_answer(name, seed):
    (J, g), (Jd, gd) = _pair(make_problem("contractive", (N,), seed))
    expected = rbpsolve.solve_adjoint(J, g, SOLVERS[name](), throw=False)
    assert expected.status in (rbpsolve.Status.CONVERGED, rbpsolve.Status.BUDGET_SPENT)
    _same(rbpsolve.solve_adjoint(Jd, gd, SOLVERS[name](), throw=False), expected, gd.chunks)


@pytest.mark.parametrize("name", ["FixedPoint", "Neumann", "Neumann-budget"])
def test_a_divergent_series_is_diverged_on_dask_too(name):
    (J, g), (Jd, gd) = _pair(make_problem("divergent", (N,), 1))
    expected = rbpsolve.solve_adjoint(J, g, SOLVERS[name](), throw=False)
    assert expected.status is rbpsolve.Status.DIVERGED
    result = rbpsolve.solve_adjoint(Jd, gd, SOLVERS[name](), throw=False)
    _same(result, expected)
    with pytest.raises(rbpsolve.SolveError):
        rbpsolve.solve_adjoint(Jd, gd, SOLVERS[name]())


def test_matrix_and_function_operators():
    problem = make_problem("contractive", (N,), 0)
    A = np.eye(N) - problem.J.T
    Ad, gd = _chunked(A), _chunked(problem.g)
    for solver in (rbpsolve.GMRES(rtol=RTOL), rbpsolve.LSQR(rtol=RTOL)):
        expected = rbpsolve.solve(rbpsolve.MatrixOperator(A), problem.g, solver)
        _same(rbpsolve.solve(rbpsolve.MatrixOperator(Ad), gd, solver), expected)
        function = rbpsolve.FunctionOperator(lambda x: Ad @ x, lambda y: Ad.T @ y, like_in=gd)
        _same(rbpsolve.solve(function, gd, solver), expected)


def test_the_iterate_graph_does_not_grow():
    """Each step is persisted: the iterate a callback sees at step 30 is a graph of its
    finished chunks, as at step 5 (unpersisted, it would hold every step before it, and
    each read would replay them all)."""
    problem = make_problem("contractive", (60,), 0)  # 60: CGNE is not exact by step 30
    W, gd = da.from_array(problem.J, chunks=20), da.from_array(problem.g, chunks=20)
    Jd = rbpsolve.JacobianOperator(lambda u: W.T @ u, lambda v: W @ v, like=gd)
    sizes = {}

    def callback(info):
        if info.step in (5, 30):
            sizes[info.step] = len(dict(info.x.__dask_graph__()))

    for solver in (rbpsolve.FixedPoint(rtol=0, atol=0, max_steps=30), rbpsolve.CGNE(rtol=0, atol=0, max_steps=30)):
        sizes.clear()
        rbpsolve.solve_adjoint(Jd, gd, solver, callback=callback, throw=False)
        # Persisted, the iterate is its 3 chunks; unpersisted, FixedPoint's held 144 tasks
        # at step 5 and 894 at step 30.
        assert sizes[30] == sizes[5] == 3, (type(solver).__name__, sizes)


def test_estimates_analyze_and_dottest():
    (J, g), (Jd, gd) = _pair(make_problem("contractive", (N,), 1))
    for estimate in (rbpsolve.estimate_norm, rbpsolve.estimate_spectral_radius):
        expected, got = estimate(J), estimate(Jd)
        assert got.value == pytest.approx(expected.value, rel=1e-12)
        assert got.num_steps == expected.num_steps
    expected = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(J), vectors=True)
    got = rbpsolve.estimate_singular_values(rbpsolve.IdentityMinus(Jd), vectors=True)
    assert got.details["sigma_min"] == pytest.approx(expected.details["sigma_min"], rel=1e-10)
    v = got.details["right_vector_min"]
    assert array_api_compat.is_dask_array(v)
    assert np.allclose(np.abs(v.compute()), np.abs(expected.details["right_vector_min"]), atol=1e-10)
    report, expected_report = rbpsolve.analyze(Jd, gd), rbpsolve.analyze(J, g)
    assert report.condition == pytest.approx(expected_report.condition, rel=1e-10)
    assert [a.solver for a in report.advice] == [a.solver for a in expected_report.advice]
    assert rbpsolve.dottest(Jd)


def _forward_map(J, c):
    def F(h):
        xp = array_api_compat.array_namespace(h)
        if h.ndim == 1:
            return 0.5 * xp.tanh(J @ h) + c
        return 0.5 * xp.tanh(h @ J.T) + c  # batch first: each row its own state

    return F


@pytest.mark.parametrize("solver", [rbpsolve.Picard(rtol=RTOL), rbpsolve.Anderson(rtol=RTOL)], ids=["Picard", "Anderson"])
def test_forward_solvers(solver):
    problem = make_problem("contractive", (N,), 2)
    expected = rbpsolve.fixed_point(_forward_map(problem.J, problem.g), np.zeros(N), solver)
    result = rbpsolve.fixed_point(_forward_map(_chunked(problem.J), _chunked(problem.g)), da.zeros(N, chunks=CHUNKS), solver)
    _same(result, expected)


BATCHED = ["FixedPoint", "Neumann", "Neumann-budget", "RandomizedNeumann", "CGNE", "LSQR"]


@pytest.mark.parametrize("name", BATCHED)
def test_batched_mode(name):
    """``batch_axis=0``: each sample numpy's, statuses and steps included."""
    problem = make_problem("contractive", (N,), 0)
    G = np.random.default_rng(5).standard_normal((3, N))
    (J, g), (Jd, gd) = _pair(problem, G)
    expected = rbpsolve.solve_adjoint(J, g, SOLVERS[name](), batch_axis=0, throw=False)
    result = rbpsolve.solve_adjoint(Jd, gd, SOLVERS[name](), batch_axis=0, throw=False)
    _same(result, expected, gd.chunks)
    assert list(result.sample_status) == list(expected.sample_status)
    assert list(result.sample_num_steps) == list(expected.sample_num_steps)


@pytest.mark.parametrize("solver", [rbpsolve.Picard(rtol=RTOL), rbpsolve.Anderson(rtol=RTOL)], ids=["Picard", "Anderson"])
def test_batched_forward_solvers(solver):
    """Anderson per sample solves a stack of small systems, which dask's own
    ``linalg.solve`` refuses (:func:`rbpsolve._backend.solve_small`)."""
    problem = make_problem("contractive", (N,), 2)
    H0 = np.zeros((3, N))
    C = np.random.default_rng(6).standard_normal((3, N))
    expected = rbpsolve.fixed_point(_forward_map(problem.J, C), H0, solver, batch_axis=0)
    result = rbpsolve.fixed_point(_forward_map(_chunked(problem.J), _chunked(C)), _chunked(H0), solver, batch_axis=0)
    _same(result, expected, _chunked(H0).chunks)
    assert list(result.sample_num_steps) == list(expected.sample_num_steps)


def test_batched_gmres_says_why_it_cannot_run():
    (_, _), (Jd, gd) = _pair(make_problem("contractive", (N,), 0), np.ones((3, N)))
    with pytest.raises(NotImplementedError, match=r"GMRES does not solve per sample \(batch_axis\) on dask"):
        rbpsolve.solve_adjoint(Jd, gd, rbpsolve.GMRES(), batch_axis=0)


def test_import_rbpsolve_does_not_import_dask():
    code = "import sys, rbpsolve; assert 'dask' not in sys.modules, 'dask was imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_example_runs():
    """The example of docs/scale_dask.md, as written."""
    page = Path(__file__).parents[1] / "docs" / "scale_dask.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert blocks, "docs/scale_dask.md lost its example"
    namespace = {}
    exec(compile(blocks[0], str(page), "exec"), namespace)  # noqa: S102 - our own documentation
    result, g = namespace["result"], namespace["g"]
    assert result.status is rbpsolve.Status.CONVERGED
    assert array_api_compat.is_dask_array(result.x) and result.x.chunks == g.chunks

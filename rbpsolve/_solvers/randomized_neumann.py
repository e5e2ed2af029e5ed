"""An unbiased randomised truncation of the Neumann series (Russian roulette)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import _backend
from .._algebra import iteration_operator
from .._batched import mask_like, merge
from .._protocol import SampleValues
from ._base import AbstractSolver, Finish, StepReport

__all__ = ["RandomizedNeumann", "sample_seed"]


class _State(NamedTuple):
    partial_sum: Any
    term: Any  # the unweighted term M^t b
    steps: int  # t
    length: int | SampleValues  # the number of products to spend, min(drawn, max_steps) (batched: one a sample)
    drawn: int | SampleValues  # K0 + L as drawn
    r0_norm: Any  # norm(b - A x0) (0-d array), the start of the term norms the loop judges
    unweighted: Any = None  # the plain partial sum, for the error estimate
    previous: Any = None  # the term before `term`
    probe: Any = None  # the term after a draw of no products, computed to judge the series


def draw_depth(continue_prob: float, min_steps: int, seed: int | None) -> float:
    """``K0 + L`` with ``P(L >= l) = alpha^l``: the depth of one randomised truncation
    (one host draw from ``numpy.random.default_rng(seed)``; ``inf`` for ``alpha = 1``).

    Shared by :class:`RandomizedNeumann` (products of the series) and the torch
    adapter's ``RandomTruncation`` (steps of an unrolled graph), so both draw alike.
    """
    check_continue_prob(continue_prob)
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 0:
        raise ValueError(f"min_steps must be an int >= 0; got {min_steps!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TypeError(f"seed must be None or an int >= 0; got {seed!r}")
    alpha = float(continue_prob)
    if alpha == 1:
        return math.inf
    rng = np.random.default_rng(seed)
    return min_steps + int(rng.geometric(1.0 - alpha)) - 1


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a batched solve seeded with ``seed``.

    The 128 bits of ``numpy.random.SeedSequence(seed, spawn_key=(index,))`` (the
    ``index``-th child of ``SeedSequence(seed).spawn``) as an int: streams that are
    independent of each other and of the batch's size, and an ordinary ``seed`` for a
    solo solve that draws what sample ``index`` draws.
    """
    words = np.random.SeedSequence(seed, spawn_key=(index,)).generate_state(4, np.uint32)
    return sum(int(w) << (32 * k) for k, w in enumerate(words))


def check_continue_prob(alpha) -> None:
    """Raise unless ``alpha`` is a real number in (0, 1]: the probability of continuing a
    Russian-roulette truncation (shared with the torch adapter's ``RandomTruncation``)."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"continue_prob must be a float; got {alpha!r}")
    if not 0 < alpha <= 1:
        raise ValueError(f"continue_prob must lie in (0, 1]; got {alpha}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RandomizedNeumann(AbstractSolver):
    r"""Russian-roulette truncation of ``z = sum_{t>=0} (J^T)^t g``, unbiased for ``(I - J^T)^{-1} g``.

    Parameters
    ----------
    continue_prob : float
        ``alpha`` in (0, 1]: after each term past the head, the series continues with
        this probability. The number of products past the head is geometric with mean
        ``alpha / (1 - alpha)``.
    min_steps : int
        ``K0 >= 0``: a deterministic head. Terms ``t <= K0`` are always summed with
        weight 1 (``K0`` products, as ``Neumann(max_steps=K0)``); the roulette starts after.
    max_steps : int
        A cap on the products: at most ``max_steps`` terms past ``t = 0`` are summed, so
        the estimator is unbiased for the series truncated at ``max_steps`` (the
        ``Neumann(max_steps=max_steps)`` value), whose own error is at most
        ``||J||^(max_steps + 1) / (1 - ||J||) * ||g||``. The default 10 000 makes the cap
        unreachable in practice (it is hit with probability ``alpha^(max_steps - K0)``).
    seed : int or None
        None draws fresh entropy at every solve (training). An int fixes the draw, so
        every solve with these settings stops after the same number of terms: for
        reproducible tests; vary it per solve to average over draws. A batched solve
        draws one depth a sample (Notes), sample ``i`` from the seed
        :meth:`sample_seed` ``(i)``.
    divergence_factor : float
        Report ``Status.DIVERGED`` once an (unweighted) term is this many times larger
        than the smallest term so far, or when the drawn budget ends with the series not
        converging (as for :class:`Neumann`). A draw of no products then spends one to
        compute the next term (not added to the sum), so that even the shortest draw is
        judged. ``math.inf`` switches all of it off (and the probe).

    Notes
    -----
    With ``M = J^T`` and ``L`` geometric, ``P(L >= s) = alpha^s``, the estimator is

    .. math::

        \hat z = \sum_{t=0}^{K_0} M^t g + \sum_{t=K_0+1}^{K_0+L} \alpha^{-(t-K_0)} M^t g .

    Term ``t > K_0`` is present with probability ``alpha^(t-K0)`` and carries its inverse
    as weight, so ``E[z_hat] = sum_t M^t g = (I - M)^{-1} g`` whenever the series
    converges (spectral radius of J below 1). The cost is random: ``K0 + L`` products,
    ``K0 + alpha / (1 - alpha)`` on average.

    **Variance.** Scalar case, ``M = rho`` with ``|rho| < 1``, ``g = 1`` and ``K0 = 0``:
    with ``r = rho / alpha`` and ``q = rho^2 / alpha``,

    .. math::

        E[\hat z^2] = \sum_{s,t \ge 0} r^{s+t} P(L \ge \max(s,t))
                    = \sum_t q^t + 2 \sum_t \rho^t \sum_{s<t} r^s
                    = \frac{1}{1-q} + \frac{2\rho}{(1-\rho)(1-q)}
                    = \frac{1+\rho}{(1-\rho)(1-q)},

    the sums converging iff ``q < 1``, so

    .. math::

        \operatorname{Var}[\hat z] = \frac{1+\rho}{(1-\rho)(1-q)} - \frac{1}{(1-\rho)^2}
        = \frac{\rho^2 (1-\alpha)}{(1-\rho)^2 (\alpha - \rho^2)},

    finite iff ``alpha > rho^2`` (and 0 at ``alpha = 1``). A head of ``K0`` terms
    multiplies it by ``rho^(2 K0)``. For a matrix the diagonal sum becomes
    ``sum_t alpha^(-t) ||M^t g||^2``, finite when ``alpha > rho(J)^2``: choose ``alpha``
    above the square of the spectral radius, or the estimate is unbiased with infinite
    variance. ``Result.history`` holds the unweighted term norms ``||M^t g||`` (the
    residual of the unweighted partial sum, as in :class:`Neumann`);
    ``info["drawn_steps"]`` is ``K0 + L`` and ``info["capped"]`` says whether the cap cut it.
    A spectral radius above 1 makes the expectation infinite; a short draw cannot show
    it (divergence is caught only once terms grow by ``divergence_factor``), so check
    the contraction first (``rbpsolve.analyze``).

    **Batched solves** (``batch_axis``): one draw a sample. Sample ``i`` draws its own
    ``L_i``, independent of the others', and stops after its own ``K_0 + L_i`` products
    (frozen, with its solo status) while the others go on; the batch ends at

    .. math::

        \max_i (K_0 + L_i), \qquad
        E\left[\max_i L_i\right] \approx \frac{\ln B}{\ln(1/\alpha)} + O(1)

    batched products (``B`` samples; each sample's own cost is still ``K0 + L_i``). One
    draw for the whole batch would end at the mean depth, but would tie every sample's
    error to the same ``L``: the batch's averaged gradient would keep the variance of a
    single draw instead of dividing it by ``B``. Per sample, each ``\hat z_i`` is the
    solo estimator (unbiased, with the variance above) and does not depend on the batch's
    size or on its neighbours. Seeds: with an int ``seed``, sample ``i`` draws as a solo
    solve with ``seed=solver.sample_seed(i)`` (:func:`sample_seed`: the ``i``-th child of
    ``numpy.random.SeedSequence(seed)``), so a batch's sample ``i`` equals that solo solve
    and does not change when the batch grows; ``seed=None`` draws the ``B`` depths from
    fresh entropy in one call. ``Result.info["drawn_steps"]`` and ``info["capped"]`` then
    hold one entry a sample (None for a sample with ``g_i = 0``, solved in no step).

    Departures from a plain Neumann series: tolerances would bias the estimate, so
    ``rtol`` and ``atol`` must be 0 (the solve stops where the draw says, or earlier
    with ``CONVERGED`` only if a term is exactly zero, when the rest of the series is
    zero too). ``error_bound`` is not given: the error is random.

    References
    ----------
    Liao et al., ICML 2018, Algorithm 2 (the deterministic truncation); Russian-roulette
    truncation of series: e.g. Lyne et al., "On Russian roulette estimates for Bayesian
    inference with doubly-intractable likelihoods", Statistical Science 30 (2015).

    Examples
    --------
    >>> import numpy as np, rbpsolve
    >>> J = rbpsolve.JacobianOperator(lambda u: 0.5 * u, like=np.zeros(2))
    >>> draws = [rbpsolve.solve_adjoint(J, np.ones(2), rbpsolve.RandomizedNeumann(continue_prob=0.8, seed=s)).x
    ...          for s in range(2000)]
    >>> float(np.round(np.mean(draws), 1))  # the exact answer is 2
    2.0
    """

    continue_prob: float = 0.9
    min_steps: int = 0
    max_steps: int = 10_000
    rtol: float = 0.0
    atol: float = 0.0
    seed: int | None = None
    divergence_factor: float = 1e4

    residual_lags: ClassVar[bool] = True
    can_diverge: ClassVar[bool] = True
    residual_kind: ClassVar[str] = "previous iterate"
    series: ClassVar[bool] = True
    # The keys of Result.info that a batched solve reports one a sample.
    sample_info: ClassVar[tuple] = ("drawn_steps", "capped")

    def __post_init__(self):
        super().__post_init__()
        check_continue_prob(self.continue_prob)
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int):
            raise TypeError(f"min_steps must be an int; got {self.min_steps!r}")
        if not 0 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"min_steps must lie in [0, max_steps] = [0, {self.max_steps}]; got {self.min_steps}"
            )
        if self.rtol != 0 or self.atol != 0:
            raise ValueError(
                f"RandomizedNeumann takes no tolerance (got rtol={self.rtol}, atol={self.atol}): stopping "
                "on a tolerance would bias the estimate; set continue_prob and min_steps instead"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0):
            raise TypeError(f"seed must be None or an int >= 0; got {self.seed!r}")

    def draw(self) -> int:
        """``K0 + L``: the products one solve asks for before the cap (one host draw)."""
        depth = draw_depth(self.continue_prob, self.min_steps, self.seed)
        return self.max_steps if math.isinf(depth) else depth

    def sample_seed(self, index: int) -> int | None:
        """The seed that makes a solo solve draw what sample ``index`` of a batched solve
        with this solver draws (:func:`sample_seed`; None when ``seed`` is None)."""
        return None if self.seed is None else sample_seed(self.seed, index)

    def draw_samples(self, batch: int) -> list:
        """``K0 + L_i`` of each of ``batch`` samples (before the cap): sample ``i`` draws as
        ``dataclasses.replace(self, seed=self.sample_seed(i)).draw()`` does."""
        alpha = float(self.continue_prob)
        if alpha == 1:
            return [self.max_steps] * batch
        if self.seed is None:
            # Fresh entropy: the same law as `batch` solo draws, in one call.
            lengths = np.random.default_rng().geometric(1.0 - alpha, size=batch)
            return [self.min_steps + int(n) - 1 for n in lengths]
        return [draw_depth(alpha, self.min_steps, sample_seed(self.seed, i)) for i in range(batch)]

    def init(self, a, b, x0, tol, *, deferred=False):
        r0 = b if x0 is None else b - a.mv(x0)
        start = r0 + 0.0 if x0 is None else x0 + r0
        # On the host: the lengths are known before the first step.
        if type(a.xp) is _backend.PerSample:  # a batch: one draw a sample
            drawn = SampleValues(self.draw_samples(a.in_shape[0]))
            length = SampleValues(min(d, self.max_steps) for d in drawn)
        else:
            drawn = self.draw()
            length = min(drawn, self.max_steps)
        return _State(start, r0, 0, length, drawn, _backend.norm(a.xp, r0), start, None)

    def step(self, a, b, state):
        if type(state.length) is SampleValues:
            return self._step_samples(a, state)
        if state.length == 0:
            return self._no_products(a, state)
        new, term_norm = self._add_term(a, state)
        return new, StepReport(term_norm, done=new.steps >= state.length)

    def _add_term(self, a, state):
        """The state with term ``t = steps + 1`` added (one product), and that term's norm."""
        t = state.steps + 1
        term = iteration_operator(a).mv(state.term)
        weight = 1.0 if t <= self.min_steps else float(self.continue_prob) ** -(t - self.min_steps)
        new = state._replace(partial_sum=state.partial_sum + weight * term, term=term, steps=t,
                             unweighted=state.unweighted + term, previous=state.term)
        return new, _backend.norm(a.xp, term)

    def _no_products(self, a, state):
        # The draw asks for the first term only: nothing to add. Unless divergence checks
        # are off, one product probes the next term (not added): without it a draw of
        # length 0 could not tell a diverging series from a converging one.
        if not math.isfinite(self.divergence_factor):
            return state, StepReport(_backend.norm(a.xp, state.term), done=True)
        probe = iteration_operator(a).mv(state.term)
        return state._replace(probe=probe, previous=state.term), StepReport(_backend.norm(a.xp, probe), done=True)

    def _step_samples(self, a, state):
        """A step of a batched solve: every sample's next term, in one batched product.
        ``done`` holds one bool a sample; the loop freezes a sample after its last step."""
        t = state.steps + 1
        done = SampleValues(t >= n for n in state.length)
        empty = [n == 0 for n in state.length] if t == 1 else ()
        if not any(empty):
            new, term_norm = self._add_term(a, state)
            return new, StepReport(term_norm, done=done)
        if all(empty):
            new, report = self._no_products(a, state)
            return new, report._replace(done=done)
        # Draws of no products beside longer ones: the one product is both the others'
        # first term and the empty draws' probe; the empty draws add nothing.
        xp, batch = a.xp, len(done)
        added, term_norm = self._add_term(a, state)
        keep = [not e for e in empty]
        if math.isfinite(self.divergence_factor):
            held = state._replace(probe=added.term, previous=state.term)
            return merge(xp, keep, added._replace(probe=added.term), held, batch), StepReport(term_norm, done=done)
        # No probe: an empty draw reports its start's norm, as alone, and drops the product.
        residual = xp.where(mask_like(xp, keep, term_norm), term_norm, state.r0_norm)
        return merge(xp, keep, added, state, batch), StepReport(residual, done=done)

    def solution(self, a, b, state):
        return state.partial_sum

    def start_residual(self, state):
        # A draw of no products without a probe reports the start's own norm as its one
        # history entry; with the probe, the history holds the next term's norm.
        if state.length == 0 and state.probe is None:
            return None
        return _backend.to_float(state.r0_norm)

    def finish(self, a, b, state, trace):
        # x - x* = (x - S) + (S - x*) with S the unweighted partial sum: the first part is
        # known exactly, the second is the tail of the series (as in Neumann).
        xp = a.xp
        # (A batched sample's state holds a probe, or a previous term, that only its
        # neighbours computed: its own length says which it has, as alone.)
        terms = (state.term, None if state.length == 0 else state.previous)
        if state.length != 0 or state.probe is None:
            offset = _backend.to_float(_backend.norm(xp, state.partial_sum - state.unweighted))
        else:
            # The probe t_1 is not in the sum: the error is t_1 plus the tail after it.
            terms = (state.probe, state.term)
            offset = sum(_backend.to_host(xp, _backend.norm(xp, state.partial_sum - state.unweighted),
                                            _backend.norm(xp, state.probe)))
        info = {"drawn_steps": state.drawn, "capped": state.drawn > self.max_steps,
                "continue_prob": float(self.continue_prob)}
        return Finish(info=info, series_terms=terms, estimate_offset=offset)

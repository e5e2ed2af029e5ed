r"""The GRU graph network of :mod:`.model` on the array API, with hand-written products.

One propagation is ``F(h) = GRUCell(A h, h)`` with ``A`` the message-passing matrix
(:mod:`.array_sparse`). With ``m = A h`` and ``torch.nn.GRUCell``'s gates (rows ``r, z, n`` of its
stacked weights),

.. math::

    r = \sigma(m W_{ir}^T + b_{ir} + h W_{hr}^T + b_{hr}), \quad
    z = \sigma(m W_{iz}^T + b_{iz} + h W_{hz}^T + b_{hz}),

    q = h W_{hn}^T + b_{hn}, \quad n = \tanh(m W_{in}^T + b_{in} + r \odot q), \quad
    F(h) = (1 - z) \odot n + z \odot h .

Tangent ``v`` (``J v``): ``\dot m = A v``, ``\dot r = r(1-r)(\dot m W_{ir}^T + v W_{hr}^T)``,
``\dot z = z(1-z)(\dot m W_{iz}^T + v W_{hz}^T)``,
``\dot n = (1-n^2)(\dot m W_{in}^T + \dot r \odot q + r \odot v W_{hn}^T)``, and
``J v = \dot z \odot (h - n) + (1 - z) \odot \dot n + z \odot v``.

Cotangent ``u`` (``J^T u`` and the parameters' share): ``g_n = (1 - n^2) \odot (1 - z) \odot u``,
``g_r = r(1-r) \odot q \odot g_n``, ``g_z = z(1-z) \odot (h - n) \odot u``, ``g_q = r \odot g_n``;
``g_m = g_r W_{ir} + g_z W_{iz} + g_n W_{in}`` and

.. math::

    J^T u = z \odot u + g_r W_{hr} + g_z W_{hz} + g_q W_{hn} + A^T g_m ;

the weights' gradients are the outer products ``g^T m`` (input side, gates ``r, z, n`` with
``g_r, g_z, g_n``) and ``g^T h`` (hidden side, with ``g_r, g_z, g_q``), the biases' the column sums.
"""

from __future__ import annotations

import dataclasses

import array_api_compat

import rbpsolve

__all__ = ["GRUWeights", "ArrayGRUGraph"]


@dataclasses.dataclass(frozen=True)
class GRUWeights:
    """``torch.nn.GRUCell``'s parameters (stacked gates ``r, z, n``) and the output layer's."""

    weight_ih: object  # (3H, H)
    weight_hh: object  # (3H, H)
    bias_ih: object  # (3H,)
    bias_hh: object  # (3H,)
    out_weight: object  # (C, H)
    out_bias: object  # (C,)

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _gates(w, H):
    return w[:H, ...], w[H:2 * H, ...], w[2 * H:, ...]


class ArrayGRUGraph:
    """``F(h) = GRUCell(A h, h)`` on ``(N, H)`` states and its products; ``weights`` a :class:`GRUWeights`."""

    def __init__(self, weights: GRUWeights, adjacency):
        self.w, self.A = weights, adjacency
        self.xp = array_api_compat.array_namespace(weights.weight_hh)
        self.H = weights.weight_hh.shape[1]

    def _forward(self, h, gates=None):
        """``(m, r, z, q, n)`` at ``h``; ``gates`` passes them when already computed (an operator's)."""
        return self._gates_at(h) if gates is None else gates

    def _gates_at(self, h):
        xp, H, w = self.xp, self.H, self.w
        m = self.A @ h
        Wir, Wiz, Win = _gates(w.weight_ih, H)
        Whr, Whz, Whn = _gates(w.weight_hh, H)
        bir, biz, bin_ = _gates(w.bias_ih, H)
        bhr, bhz, bhn = _gates(w.bias_hh, H)
        T = xp.matrix_transpose
        r = _sigmoid(xp, m @ T(Wir) + bir + h @ T(Whr) + bhr)
        z = _sigmoid(xp, m @ T(Wiz) + biz + h @ T(Whz) + bhz)
        q = h @ T(Whn) + bhn
        n = xp.tanh(m @ T(Win) + bin_ + r * q)
        return m, r, z, q, n

    def update(self, h):
        _, _, z, _, n = self._forward(h)
        return (1.0 - z) * n + z * h

    def jvp(self, h, v, gates=None):
        xp, H = self.xp, self.H
        _, r, z, q, n = self._forward(h, gates)
        Wir, Wiz, Win = _gates(self.w.weight_ih, H)
        Whr, Whz, Whn = _gates(self.w.weight_hh, H)
        T = xp.matrix_transpose
        dm = self.A @ v
        dr = r * (1.0 - r) * (dm @ T(Wir) + v @ T(Whr))
        dz = z * (1.0 - z) * (dm @ T(Wiz) + v @ T(Whz))
        dn = (1.0 - n * n) * (dm @ T(Win) + dr * q + r * (v @ T(Whn)))
        return dz * (h - n) + (1.0 - z) * dn + z * v

    def _cotangents(self, h, u, gates=None):
        m, r, z, q, n = self._forward(h, gates)
        g_n = (1.0 - n * n) * (1.0 - z) * u
        g_r = r * (1.0 - r) * q * g_n
        g_z = z * (1.0 - z) * (h - n) * u
        g_q = r * g_n
        return m, z, g_r, g_z, g_n, g_q

    def vjp(self, h, u, gates=None):
        H = self.H
        _, z, g_r, g_z, g_n, g_q = self._cotangents(h, u, gates)
        Wir, Wiz, Win = _gates(self.w.weight_ih, H)
        Whr, Whz, Whn = _gates(self.w.weight_hh, H)
        g_m = g_r @ Wir + g_z @ Wiz + g_n @ Win
        return z * u + g_r @ Whr + g_z @ Whz + g_q @ Whn + self.A.transpose_matmul(g_m)

    def param_vjp(self, h, u) -> dict:
        """``(dF/dtheta)^T u`` for the GRU's four parameters (the output layer's share is zero)."""
        xp = self.xp
        m, _, g_r, g_z, g_n, g_q = self._cotangents(h, u)
        T = xp.matrix_transpose
        return {
            "weight_ih": xp.concat([T(g_r) @ m, T(g_z) @ m, T(g_n) @ m], axis=0),
            "weight_hh": xp.concat([T(g_r) @ h, T(g_z) @ h, T(g_q) @ h], axis=0),
            "bias_ih": xp.concat([xp.sum(g_r, axis=0), xp.sum(g_z, axis=0), xp.sum(g_n, axis=0)]),
            "bias_hh": xp.concat([xp.sum(g_r, axis=0), xp.sum(g_z, axis=0), xp.sum(g_q, axis=0)]),
        }

    def operator(self, h):
        """``J = dF/dh`` at ``h`` as an :class:`rbpsolve.JacobianOperator` on ``(N, H)`` arrays.

        The gates at ``h`` are computed once, here, and every product reuses them (as autograd
        reuses a retained graph); ``h`` is copied, so changing it later does not change ``J``.
        """
        h = self.xp.asarray(h, copy=True)
        gates = self._gates_at(h)
        return rbpsolve.JacobianOperator(lambda u: self.vjp(h, u, gates), lambda v: self.jvp(h, v, gates), like=h)

    def logits(self, h):
        return h @ self.xp.matrix_transpose(self.w.out_weight) + self.w.out_bias


def _sigmoid(xp, a):
    return 0.5 * (1.0 + xp.tanh(0.5 * a))  # sigmoid without overflow (exp(-a) overflows float32 for a < -88)

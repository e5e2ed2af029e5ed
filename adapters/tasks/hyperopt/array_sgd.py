r"""The hyperparameter task's training step on the array API, with hand-written products.

The state is ``h = [w; v]`` (weights, velocities) and one step of :class:`.sgd.TrainingStep` is

.. math::

    v' = \beta \odot v - (1 - \beta) \odot g(w), \quad w' = w + \alpha \odot v', \qquad
    g = \nabla_w \ell, \quad \ell = \mathrm{CE}(\mathrm{MLP}_w(x), y) + \lambda \|w\|^2 .

Its Jacobian needs the Hessian ``H = \nabla^2 \ell`` only through products, which are written out
here by Pearlmutter's R-operator (a forward pass of tangents, then the backward pass
differentiated along them): with ``c = (1 - \beta)``,

.. math::

    J \begin{bmatrix} d_w \\ d_v \end{bmatrix} =
    \begin{bmatrix} d_w + \alpha \odot \delta \\ \delta \end{bmatrix},\ \delta = \beta \odot d_v - c \odot H d_w;
    \qquad
    J^T \begin{bmatrix} u_w \\ u_v \end{bmatrix} =
    \begin{bmatrix} u_w - H (c \odot s) \\ \beta \odot s \end{bmatrix},\ s = \alpha \odot u_w + u_v

(``H`` is symmetric). The hyperparameters ``theta = (log alpha, logit beta)`` per parameter tensor
get ``(dF/dtheta)^T z``: ``sum_seg z_w \odot v' \odot \alpha`` and
``sum_seg (\alpha \odot z_w + z_v) \odot (v + g) \odot \beta (1 - \beta)``.

The MLP is :class:`.sgd.MLP`'s (tanh hidden layers, linear output, flat weight layout ``W_1, b_1,
W_2, ...`` with ``W_k`` of shape ``(n_in, n_out)``).
"""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

import rbpsolve

__all__ = ["ArrayTrainingStep"]

WEIGHT_DECAY = math.exp(-100.0)


class ArrayTrainingStep:
    """``h -> F(h)``, one SGD-with-momentum step of ``mlp`` on the batch ``(x, y)``, and its products.

    Parameters
    ----------
    mlp : .sgd.MLP
        The layer widths (only its ``layers`` and ``shapes`` are read).
    theta : array
        ``(2, L)``: log learning rates and logit momenta per parameter tensor.
    x : array
        ``(N, layers[0])`` inputs of the namespace; ``y``: ``(N,)`` integer labels, a numpy array
        (they become a one-hot matrix on ``x``'s device).
    """

    def __init__(self, mlp, theta, x, y):
        self.xp = xp = array_api_compat.array_namespace(theta, x)
        self.shapes = list(mlp.shapes)
        L = len(self.shapes)
        if tuple(theta.shape) != (2, L):
            raise ValueError(f"theta must have shape (2, {L}) for this network; got {tuple(theta.shape)}")
        if x.ndim != 2 or x.shape[1] != mlp.layers[0] or tuple(y.shape) != (x.shape[0],):
            raise ValueError(f"batch must be x of shape (N, {mlp.layers[0]}) and y of shape (N,); "
                             f"got {tuple(x.shape)} and {tuple(y.shape)}")
        self.x, self.P = x, sum(math.prod(s) for s in self.shapes)
        device = array_api_compat.device(x)
        sizes = [math.prod(s) for s in self.shapes]
        seg = np.repeat(np.arange(L), sizes)
        self.seg = xp.asarray(seg, device=device)
        self.sizes = sizes
        self.alpha = xp.take(xp.exp(theta[0, :]), self.seg)
        self.beta = xp.take(0.5 * (1.0 + xp.tanh(0.5 * theta[1, :])), self.seg)  # sigmoid, no exp overflow
        classes = mlp.layers[-1]
        onehot = np.zeros((x.shape[0], classes))
        onehot[np.arange(x.shape[0]), np.asarray(y).astype(np.int64)] = 1.0
        self.onehot = xp.asarray(onehot, dtype=x.dtype, device=device)

    # -- the MLP: forward, gradient, Hessian-vector product --------------------------------------
    def _unflatten(self, w):
        out, i = [], 0
        for shape, n in zip(self.shapes, self.sizes):
            out.append(self.xp.reshape(w[i:i + n], shape))
            i += n
        return out

    def _flatten(self, parts):
        return self.xp.concat([self.xp.reshape(p, (-1,)) for p in parts])

    def _forward(self, params):
        xp, acts = self.xp, [self.x]
        n = len(params) // 2
        for k in range(n):
            s = acts[-1] @ params[2 * k] + params[2 * k + 1]
            acts.append(xp.tanh(s) if k < n - 1 else s)
        return acts  # inputs, hidden activations, logits

    def _softmax(self, s):
        e = self.xp.exp(s - self.xp.max(s, axis=1, keepdims=True))
        return e / self.xp.sum(e, axis=1, keepdims=True)

    def loss_and_grad(self, w, *, weight_decay: bool = True):
        """``(ell(w), grad ell(w))``; ``weight_decay=False`` leaves out the ``lambda ||w||^2`` term (the meta-loss)."""
        xp = self.xp
        wd = WEIGHT_DECAY if weight_decay else 0.0
        params = self._unflatten(w)
        acts = self._forward(params)
        p = self._softmax(acts[-1])
        N = self.x.shape[0]
        loss = -xp.sum(self.onehot * xp.log(p)) / N + wd * xp.sum(w * w)
        delta = (p - self.onehot) / N
        grads = [None] * len(params)
        n = len(params) // 2
        for k in reversed(range(n)):
            grads[2 * k] = xp.matrix_transpose(acts[k]) @ delta
            grads[2 * k + 1] = xp.sum(delta, axis=0)
            if k > 0:
                delta = (delta @ xp.matrix_transpose(params[2 * k])) * (1.0 - acts[k] * acts[k])
        return loss, self._flatten(grads) + 2.0 * wd * w

    def _at(self, w):
        """``(params, activations, softmax)`` at ``w``: what every Hessian product at ``w`` reuses."""
        params = self._unflatten(w)
        acts = self._forward(params)
        return params, acts, self._softmax(acts[-1])

    def hvp(self, w, d, at=None):
        """``H d``, ``H`` the Hessian of ``ell`` at ``w``: Pearlmutter's R-operator by hand (``at``:
        :meth:`_at` of ``w`` when already computed)."""
        xp = self.xp
        T = xp.matrix_transpose
        params, acts, p = self._at(w) if at is None else at
        dirs = self._unflatten(d)
        n = len(params) // 2
        # R-forward: tangents of the pre-activations and activations
        r_acts = [xp.zeros_like(self.x)]
        for k in range(n):
            r_s = r_acts[-1] @ params[2 * k] + acts[k] @ dirs[2 * k] + dirs[2 * k + 1]
            r_acts.append((1.0 - acts[k + 1] * acts[k + 1]) * r_s if k < n - 1 else r_s)
        N = self.x.shape[0]
        delta = (p - self.onehot) / N
        r_delta = p * (r_acts[-1] - xp.sum(p * r_acts[-1], axis=1, keepdims=True)) / N
        r_grads = [None] * len(params)
        for k in reversed(range(n)):
            r_grads[2 * k] = T(r_acts[k]) @ delta + T(acts[k]) @ r_delta
            r_grads[2 * k + 1] = xp.sum(r_delta, axis=0)
            if k > 0:
                back = delta @ T(params[2 * k])
                slope = 1.0 - acts[k] * acts[k]
                r_delta = ((r_delta @ T(params[2 * k]) + delta @ T(dirs[2 * k])) * slope
                           - 2.0 * back * acts[k] * r_acts[k])
                delta = back * slope
        return self._flatten(r_grads) + 2.0 * WEIGHT_DECAY * d

    # -- the training step and its products ------------------------------------------------------
    def __call__(self, h):
        """``F(h)``; the mini-batch loss at ``w`` is kept as ``last_loss`` (a float)."""
        w, v = h[:self.P], h[self.P:]
        loss, g = self.loss_and_grad(w)
        self.last_loss = float(loss)
        v_new = self.beta * v - (1.0 - self.beta) * g
        return self.xp.concat([w + self.alpha * v_new, v_new])

    def jvp(self, h, d, at=None):
        w = h[:self.P]
        dw, dv = d[:self.P], d[self.P:]
        delta = self.beta * dv - (1.0 - self.beta) * self.hvp(w, dw, at)
        return self.xp.concat([dw + self.alpha * delta, delta])

    def vjp(self, h, u, at=None):
        w = h[:self.P]
        uw, uv = u[:self.P], u[self.P:]
        s = self.alpha * uw + uv
        return self.xp.concat([uw - self.hvp(w, (1.0 - self.beta) * s, at), self.beta * s])

    def theta_vjp(self, h, z):
        """``(dF/dtheta)^T z``, shape ``(2, L)``."""
        xp = self.xp
        w, v = h[:self.P], h[self.P:]
        _, g = self.loss_and_grad(w)
        v_new = self.beta * v - (1.0 - self.beta) * g
        zw, zv = z[:self.P], z[self.P:]
        lr = zw * v_new * self.alpha
        mom = (self.alpha * zw + zv) * (v + g) * self.beta * (1.0 - self.beta)
        return xp.stack([self._segment_sum(lr), self._segment_sum(mom)])

    def _segment_sum(self, values):
        xp, out, i = self.xp, [], 0
        for n in self.sizes:
            out.append(xp.sum(values[i:i + n]))
            i += n
        return xp.stack(out)

    def operator(self, h):
        """``J = dF/dh`` at ``h`` as an :class:`rbpsolve.JacobianOperator`.

        The forward pass at ``h`` is done once, here, and every Hessian product reuses it (as
        autograd reuses a retained graph); ``h`` is copied, so changing it later does not change ``J``.
        """
        h = self.xp.asarray(h, copy=True)
        at = self._at(h[:self.P])
        return rbpsolve.JacobianOperator(lambda u: self.vjp(h, u, at), lambda d: self.jvp(h, d, at), like=h)

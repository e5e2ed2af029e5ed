"""Issue 17's goal for a jitted fixed budget: the rbpsolve loop costs at most 1.05x the bare products.

Under ``jax.jit``, ``jax.grad`` through ``rbpsolve.adapters.jax.fixed_point`` with fixed budgets
(``Picard(max_steps=T, rtol=0, atol=0)`` forward, ``Neumann(max_steps=K, rtol=0, atol=0)`` backward, the
traced path) against the same arithmetic written bare: ``T`` updates in a ``fori_loop``, one
linearisation, ``K`` pullbacks ``z <- g + J^T z``, one VJP to the parameters. A tanh layer, state
``(64, 512)`` float32, T = K = 30, CPU; the ratio of the two times per round, median of 15 rounds
in one process.

Run: ``python benchmarks/jax_jit_overhead.py``.
"""
import time, jax, jax.numpy as jnp, numpy as np, rbpsolve
from rbpsolve.adapters.jax import fixed_point
n, B, T, K = 512, 64, 30, 30
key = jax.random.PRNGKey(0)
W = 0.9 * jax.random.normal(key, (n, n)) / jnp.sqrt(n) * 0.6
x = jax.random.normal(jax.random.PRNGKey(1), (B, n))
f = lambda h, p: jnp.tanh(h @ p["W"].T + p["x"])
p = {"W": W, "x": x}
fwd, bwd = rbpsolve.Picard(max_steps=T, rtol=0, atol=0), rbpsolve.Neumann(max_steps=K, rtol=0, atol=0)
def ours(p):
    h, d = fixed_point(f, jnp.zeros((B, n)), p, forward=fwd, backward=bwd)
    return jnp.sum(h)
def bare(p):
    h = jnp.zeros((B, n))
    h = jax.lax.fori_loop(0, T, lambda i, h: f(h, p), h)
    hs = jax.lax.stop_gradient(h)
    _, pull_h = jax.vjp(lambda hh: f(hh, p), hs)
    g = jnp.ones_like(hs)
    z = jax.lax.fori_loop(0, K, lambda i, z: g + pull_h(z)[0], g)
    _, pull_p = jax.vjp(lambda pp: f(hs, pp), p)
    return pull_p(z)[0]
go = jax.jit(jax.grad(ours)); gb = jax.jit(bare)
a = go(p); b = gb(p)
print("grad diff", float(jnp.max(jnp.abs(a["W"] - b["W"]))) / float(jnp.max(jnp.abs(b["W"]))))
ratios = []
for r in range(15):
    t0 = time.perf_counter(); jax.block_until_ready(go(p)); t1 = time.perf_counter()
    jax.block_until_ready(gb(p)); t2 = time.perf_counter()
    ratios.append((t1 - t0) / (t2 - t1))
print("ratio median", np.median(ratios), "min", min(ratios), "max", max(ratios), "bare s", t2 - t1)

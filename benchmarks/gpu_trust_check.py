"""The trustworthy-results guarantees on a GPU: torch CUDA (float32, float16, bfloat16) and cupy.

Run where a GPU is present (it prints a markdown table and exits non-zero on a broken
guarantee); `benchmarks/gpu_trust_check.md` holds what it printed on the lent H200:

    python benchmarks/gpu_trust_check.py          # --cpu: torch on the CPU instead

For every solver on a float64-referenced random operator (n = 256, ||J|| = 0.9) and a
diverging one (rho = 1.3, n = 30): the status, whether a CONVERGED claim meets the tolerance on
the true residual (recomputed in float64 on the host), the true error against the error
estimate, the right-hand side left untouched, and a tiny right-hand side (1e-23 in float32)
solved as well as a unit one.
"""

from __future__ import annotations

import sys

import numpy as np

import rbpsolve
from rbpsolve import _backend, _precision


def _solvers(rtol):
    return {
        "FixedPoint": rbpsolve.FixedPoint(rtol=rtol),
        "Neumann(K=20)": rbpsolve.Neumann(),
        "Neumann(rtol)": rbpsolve.Neumann(rtol=rtol, max_steps=2000),
        "CGNE": rbpsolve.CGNE(rtol=rtol),
        "LSQR": rbpsolve.LSQR(rtol=rtol),
        "GMRES": rbpsolve.GMRES(rtol=rtol),
        "RandomizedNeumann": rbpsolve.RandomizedNeumann(min_steps=10, seed=0),
    }


def _libraries(device):
    out = []
    try:
        import torch

        if device == "cpu" or torch.cuda.is_available():
            for dtype in (torch.float32, torch.float16, torch.bfloat16):
                out.append((f"torch-{device}", dtype, lambda a, d=dtype: torch.tensor(a, device=device).to(d),
                            lambda x: x.double().cpu().numpy()))
    except ImportError:
        pass
    if device == "cpu":
        return out
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
        out.append(("cupy", cupy.float32, lambda a: cupy.asarray(a, dtype=cupy.float32), lambda x: cupy.asnumpy(x)))
    except Exception:  # no cupy or no GPU
        pass
    return out


def _matrix(n, rho, seed, *, normal):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((n, n))
    if normal:
        return W * (rho / np.linalg.norm(W, 2))
    return W * (rho / np.abs(np.linalg.eigvals(W)).max())


def main(argv) -> int:
    failures = []
    rows = []
    # --cpu: the same checks with torch on the CPU (to try the script without a GPU).
    for lib, dtype, make, back in _libraries("cpu" if "--cpu" in argv else "cuda"):
        eps = float(np.finfo(np.float32).eps) if "float32" in str(dtype) else (
            2.0**-10 if "float16" in str(dtype) and "b" not in str(dtype) else 2.0**-7)
        for case, (n, rho, normal, scale) in {"contraction": (256, 0.9, True, 1.0),
                                              "tiny g": (256, 0.9, True, 1e-23),
                                              "rho 1.3": (30, 1.3, False, 1.0)}.items():
            if scale != 1.0 and "float32" not in str(dtype):
                continue  # 1e-23 is not representable in float16/bfloat16
            W = _matrix(n, rho, 1, normal=normal)
            g = np.random.default_rng(2).standard_normal(n)
            Wd, gd = make(W), make(scale * g)
            Wq = back(Wd)  # the operator as the device holds it, in float64
            xp = _backend.namespace(gd)
            J = rbpsolve.JacobianOperator(lambda u, Wd=Wd: xp.matmul(xp.matrix_transpose(Wd), u),
                                          lambda v, Wd=Wd: xp.matmul(Wd, v), like=gd * 0)
            g_host = back(gd)
            z = np.linalg.solve(np.eye(n) - Wq.T, g_host)
            for name, solver in _solvers(None).items():
                res = rbpsolve.solve_adjoint(J, gd, solver, throw=False)
                x = back(res.x)
                true_res = np.linalg.norm(g_host - (x - Wq.T @ x))
                err = np.linalg.norm(x - z)
                ok_claim = True
                if res.status is rbpsolve.Status.CONVERGED:
                    tol = _precision.default_rtol(eps) * np.linalg.norm(g_host)
                    ok_claim = true_res <= tol + 16 * eps * (np.linalg.norm(g_host) + 2 * np.linalg.norm(x))
                if case == "rho 1.3" and name in ("Neumann(K=20)", "RandomizedNeumann", "FixedPoint") and res.ok:
                    ok_claim = False  # a diverging series must not be ok
                ratio = err / res.error_estimate if res.error_estimate else float("inf")
                if res.ok and ratio > 10:
                    ok_claim = False
                if not np.array_equal(back(gd), g_host):
                    ok_claim = False
                rows.append(f"| {lib} {str(dtype).replace('torch.', '')} | {case} | {name} | {res.status.name} | "
                            f"{res.num_steps} | {true_res / max(np.linalg.norm(g_host), 1e-300):.2e} | "
                            f"{err / max(np.linalg.norm(z), 1e-300):.2e} | {ratio:.2f} | {'yes' if ok_claim else 'NO'} |")
                if not ok_claim:
                    failures.append(rows[-1])
    print("| library, dtype | case | solver | status | steps | true rel. residual | rel. error | error / estimate | claim holds |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{len(rows)} solves, {len(failures)} broken guarantees")
    return 1 if failures or not rows else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

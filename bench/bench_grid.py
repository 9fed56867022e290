"""A grid of 10^5 hyperparameter points over a 784-dimensional spectrum.

Target (issue 2): under 0.2 s per theorem call for the whole grid. Baseline in the same run: the
same closed form evaluated point by point in a Python loop (what vectorisation replaces), timed
on a sample of points and extrapolated. Prints times and ratios; no asserts.

    python bench/bench_grid.py [--points 100000] [--latent-dim 64]
"""

import argparse
import time

import numpy as np

import vaetheory as vt


def timed(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--latent-dim", type=int, nargs="+", default=[16, 64])
    args = ap.parse_args()
    ev = 1.0 / np.arange(1, 785) ** 1.5  # 784-dimensional spectrum
    sp = vt.spectrum_from_eigenvalues(ev)
    n = args.points
    rng = np.random.default_rng(0)
    beta = np.logspace(-4, 2, n)
    eta_dec = rng.uniform(0.5, 2.0, n)
    print(f"grid: {n} points, spectrum of length {sp.dim}")
    for d1 in args.latent_dim:
        runs = {
            "vae learnable (Thm 4)": lambda b, e: vt.vae_learnable_sigma(sp, d1, beta=b, eta_dec=e),
            "vae fixed (Thm 1)": lambda b, e: vt.vae_fixed_sigma(sp, d1, 0.5, beta=b, eta_dec=e),
            "mhvae Sigma2 learnable (Thm 3)": lambda b, e: vt.mhvae_learnable_sigma2(
                sp, d1, beta2=b, eta_dec=e, sigma1=0.1),
            "mhvae both fixed (Thm 5)": lambda b, e: vt.mhvae_fixed_sigma2(
                sp, d1, beta2=b, eta_dec=e, sigma1=0.1, sigma2=0.5),
        }
        for name, fn in runs.items():
            t_grid, _ = timed(lambda: fn(beta, eta_dec))
            k = 300
            t_loop, _ = timed(lambda: [fn(beta[i], eta_dec[i]) for i in range(k)], repeat=1)
            t_loop *= n / k
            print(f"latent dim {d1:4d}  {name:32s} grid {t_grid:6.3f} s "
                  f"({'meets' if t_grid < 0.2 else 'MISSES'} < 0.2 s)   "
                  f"per-point loop ~{t_loop:7.1f} s   speed-up x{t_loop / t_grid:,.0f}")


if __name__ == "__main__":
    main()

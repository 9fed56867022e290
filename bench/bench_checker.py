"""Exact checker on 64-dimensional instances of every setting: time, iterations, verdict, agreement.

Data: the bundled 8x8 digits (``vaetheory.io.load_digits()``, 1797 x 64). CVAE: condition x = left half of each image (32 pixels),
output y = right half. Hyperparameters are set from the spectrum so that some modes are active and
some collapse. Also runs the two open hierarchical settings (numerical, not theory).
Prints numbers; no timing asserts (machines are noisy).

    python bench/bench_checker.py [--latent-dim 16] [--restarts 8] [--jobs N] [--open]
"""

import argparse
import time

import numpy as np

import vaetheory as vt
from vaetheory.checker import check, numerical_optimum


def load_data():
    from vaetheory.io import load_digits

    return load_digits()[0], "digits (vaetheory.io.load_digits)"


def instances(X, d):
    spec = vt.empirical_spectrum(X, with_basis=True)
    half = X.shape[1] // 2
    rspec = vt.empirical_residual_spectrum(X[:, :half], X[:, half:], with_basis=True)
    ev, er = spec.eigenvalues, rspec.eigenvalues
    # thresholds between two eigenvalues (a mode exactly at its threshold is flat to 4th order)
    k = max(0, min(min(d, spec.rank) // 2, spec.rank - 2))
    kc = max(0, min(min(d, rspec.rank) // 2, rspec.rank - 2))
    beta = np.sqrt(ev[k] * ev[k + 1])  # about half of the modes a latent can carry are active
    beta_c = np.sqrt(er[kc] * er[kc + 1])
    s_fix = np.sqrt(ev[min(d // 3, spec.rank - 1)]) / 2.0  # fixed encoder std on the data scale
    s_fix_c = np.sqrt(er[min(d // 3, rspec.rank - 1)]) / 2.0
    s1 = np.sqrt(ev[k])
    out = [
        ("vae / learnable", vt.vae_learnable_sigma(spec, d, beta=beta)),
        ("vae / fixed", vt.vae_fixed_sigma(spec, d, s_fix * np.linspace(0.5, 1.5, d), beta=1.0)),
        ("cvae / learnable", vt.cvae_learnable_sigma(rspec, d, beta=beta_c)),
        ("cvae / fixed", vt.cvae_fixed_sigma(rspec, d, s_fix_c, beta=1.0)),
        ("mhvae / sigma2-learnable", vt.mhvae_learnable_sigma2(
            spec, d, beta1=1.0, beta2=0.5 * beta, sigma1=s1)),
        ("mhvae / sigma2-fixed", vt.mhvae_fixed_sigma2(
            spec, d, beta1=1.0, beta2=0.5 * beta, sigma1=s1, sigma2=0.5)),
    ]
    return spec, out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--restarts", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--open", action="store_true", help="also run the two open settings")
    args = ap.parse_args()
    X, source = load_data()
    print(f"data: {source}, {X.shape[0]} x {X.shape[1]}; latent dim {args.latent_dim}, "
          f"{args.restarts} restarts")
    spec, cases = instances(X, args.latent_dim)
    print(f"{'setting':26s} {'verdict':13s} {'time s':>7s} {'iters':>7s} {'loss gap':>10s} "
          f"{'sv err':>9s} {'std err':>9s} {'match':>5s}  worst map")
    for name, sol in cases:
        t0 = time.perf_counter()
        r = check(sol, restarts=args.restarts, seed=args.seed, n_jobs=args.jobs)
        dt = time.perf_counter() - t0
        worst = max(r.per_map, key=r.per_map.get) if r.per_map else "-"
        print(f"{name:26s} {r.verdict:13s} {dt:7.2f} {r.iterations:7d} {r.loss_gap:10.2e} "
              f"{r.max_singular_value_error:9.2e} {r.max_variance_error:9.2e} "
              f"{r.restarts_matching:2d}/{r.restarts:<2d}  {worst} ({r.per_map.get(worst, 0):.2e})",
              flush=True)
    if args.open:
        d = args.latent_dim
        ev = spec.eigenvalues
        s1 = np.sqrt(ev[d // 2])
        print("\nopen settings (numerical, not theory):")
        b2 = 0.5 * ev[d // 2]
        for label, kw in (
                ("mhvae / both-learnable, beta1 < beta2",
                 dict(variance="both-learnable", beta1=1.0, beta2=b2)),
                ("mhvae / both-learnable, beta1 = beta2",
                 dict(variance="both-learnable", beta1=1.0, beta2=1.0)),
                ("mhvae / both-learnable, beta1 > beta2",
                 dict(variance="both-learnable", beta1=2.0, beta2=1.0)),
                ("mhvae / anisotropic sigma1",
                 dict(variance="sigma2-learnable", beta1=1.0, beta2=b2,
                      sigma1=s1 * np.linspace(0.5, 1.5, d)))):
            t0 = time.perf_counter()
            res = numerical_optimum("mhvae", kw.pop("variance"), spec, d, restarts=args.restarts,
                                    seed=args.seed, n_jobs=args.jobs, **kw)
            dt = time.perf_counter() - t0
            spread = float(np.ptp(res.run_losses)) / max(1.0, abs(res.loss))
            print(f"{label} [{res.label}]\n    loss {res.loss:.10g}  time {dt:.2f}s  "
                  f"iterations {res.iterations}  relative spread of restart losses {spread:.1e}")
            for m, v in res.singular_values.items():
                print(f"    {m:9s} rank {res.ranks[m]:3d}  sv {np.array2string(v[:8], precision=4)}")
            print(f"    collapsed (zero mean): {res.collapsed}; posterior = prior: "
                  f"{res.collapsed_prior}")
            for z, s in res.posterior_std.items():
                print(f"    learned std {z}: {np.array2string(s[:8], precision=4)}")
            print(f"    converged: {res.converged}; spread of singular values over restarts at "
                  f"the best loss: " + ", ".join(f"{m} {v:.2g}"
                                                 for m, v in res.singular_value_spread.items()))
            for w in res.warnings:
                print(f"    warning: {w}")


if __name__ == "__main__":
    main()

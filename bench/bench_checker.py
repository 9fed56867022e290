"""Exact checker on 64-dimensional instances of every setting: time, iterations, verdict, agreement.

Data: the bundled 8x8 digits (``vaetheory.io.load_digits()``, 1797 x 64). CVAE: condition x = left half of each image (32 pixels),
output y = right half. Hyperparameters are set from the spectrum so that some modes are active and
some collapse. Also runs the two open hierarchical settings (numerical, not theory).
Prints numbers; no timing asserts (machines are noisy).

With ``--baseline`` each setting's checker CPU time is compared, in the same run, with a
1500-step minibatch Adam run (batch 128) of the same linear model in plain NumPy
(``vaetheory.sgd.train_sgd``, 100 epochs of the digits): the issue-15 target is ratio <= 1 with
the loss confirmed to 1e-9. ``--d784`` also checks a 784-dimensional synthetic instance at latent 16.

    python bench/bench_checker.py [--latent-dim 16] [--restarts 8] [--jobs N] [--open]
    python bench/bench_checker.py --baseline --restarts 1 --tol 1e-9
    python bench/bench_checker.py --latent-dim 64 --d784

Before/after (issue 15.3): every setting runs twice in the same run, first in its former
parameterisation and then in the current one; the ratio line is before / after. The hierarchical
settings: ``V1, W2, log Sigma2`` (``checker.MHVAE_PARAMETERISATION = "encoder"``) against
``V1, U2`` with ``W2`` and ``Sigma2`` eliminated exactly and the alignment moves (docs/theory.md
§13 item 4). The VAE and CVAE: the encoder and log Sigma with the decoders profiled
(``checker.VAE_PARAMETERISATION = "encoder"``) against the decoder in the data's / residual's
spectral basis with the encoder and Sigma eliminated exactly and the alignment move (§13 item 5);
the D = 784 instance likewise. ``--no-before`` skips the former paths.
"""

import argparse
import time

import numpy as np

import vaetheory as vt
from vaetheory import checker
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


def _cpu():
    """CPU seconds of this process and its (joined) worker processes."""
    import resource

    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _adam_baseline(X, sol):
    """CPU seconds of 1500 minibatch Adam steps (batch 128) of the same linear model in NumPy."""
    from vaetheory.sgd import train_sgd

    hyper = sol.at().hyper
    dims = list(sol.latent_dims.values())
    c0 = _cpu()
    if sol.model == "cvae":
        half = X.shape[1] // 2
        train_sgd(sol.model, sol.variance, X[:, :half], dims[0], y=X[:, half:], epochs=100,
                  batch_size=128, lr=0.1, **hyper)
    else:
        train_sgd(sol.model, sol.variance, X, dims[0], dims[1] if len(dims) > 1 else None,
                  epochs=100, batch_size=128, lr=0.1, **hyper)
    return _cpu() - c0


def _synthetic(n, d, seed=0):
    """n x d Gaussian data with a decaying spectrum (stds 10 * 0.99^i) in a random basis."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * (10.0 * 0.99 ** np.arange(d))) @ Q.T


def _parameterisation(model, path):
    """Select the former ("encoder") or the current ("decoder") checker path of ``model``."""
    if model == "mhvae":
        checker.MHVAE_PARAMETERISATION = path
    else:
        checker.VAE_PARAMETERISATION = path


def _ratio(walls):
    (b_w, b_c, b_i), (a_w, a_c, a_i) = walls["encoder"], walls["decoder"]
    print(f"{'':45s} before/after: wall {b_w / a_w:.2f}x, CPU {b_c / a_c:.2f}x, "
          f"iterations {b_i / max(a_i, 1):.2f}x", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent-dim", type=int, default=16)
    ap.add_argument("--restarts", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--open", action="store_true", help="also run the two open settings")
    ap.add_argument("--tol", type=float, default=1e-6, help="relative loss tolerance")
    ap.add_argument("--baseline", action="store_true",
                    help="compare CPU time with a 1500-step NumPy Adam run of the same model")
    ap.add_argument("--d784", action="store_true", help="also a D = 784 instance at latent 16")
    ap.add_argument("--no-before", action="store_true",
                    help="skip the former hierarchical parameterisation (the 'before' rows)")
    args = ap.parse_args()
    X, source = load_data()
    print(f"data: {source}, {X.shape[0]} x {X.shape[1]}; latent dim {args.latent_dim}, "
          f"{args.restarts} restarts")
    spec, cases = instances(X, args.latent_dim)
    print(f"{'setting':45s} {'verdict':13s} {'time s':>7s} {'cpu s':>7s} {'iters':>7s} "
          f"{'loss gap':>10s} {'sv err':>9s} {'std err':>9s} {'match':>5s}  worst map"
          + ("   adam cpu  ratio" if args.baseline else ""))
    rows = [(name, sol, X) for name, sol in cases]
    if args.d784:
        X784 = _synthetic(5000, 784)
        spec784 = vt.empirical_spectrum(X784, with_basis=True)
        ev = spec784.eigenvalues
        sol = vt.vae_learnable_sigma(spec784, 16, beta=float(np.sqrt(ev[7] * ev[8])))
        rows.append(("D=784 (5000 x 784) vae / learnable, 16", sol, X784))
    for name, sol, data in rows:
        paths = ["decoder"] if args.no_before else ["encoder", "decoder"]
        walls = {}
        for path in paths:
            _parameterisation(sol.model, path)
            label = name + (" [before]" if path == "encoder" else " [after]" if len(paths) > 1
                            else "")
            t0, c0 = time.perf_counter(), _cpu()
            r = check(sol, restarts=args.restarts, seed=args.seed, n_jobs=args.jobs,
                      tol_loss=args.tol)
            dt, dc = time.perf_counter() - t0, _cpu() - c0
            walls[path] = (dt, dc, r.iterations)
            worst = max(r.per_map, key=r.per_map.get) if r.per_map else "-"
            line = (f"{label:45s} {r.verdict:13s} {dt:7.2f} {dc:7.2f} {r.iterations:7d} "
                    f"{r.loss_gap:10.2e} {r.max_singular_value_error:9.2e} "
                    f"{r.max_variance_error:9.2e} {r.restarts_matching:2d}/{r.restarts:<2d}  "
                    f"{worst} ({r.per_map.get(worst, 0):.2e})")
            if args.baseline and path == "decoder":
                base = _adam_baseline(data, sol)
                line += f"   {base:8.2f}  {dc / base:5.2f}"
            print(line, flush=True)
        _parameterisation(sol.model, "decoder")
        if len(paths) > 1:
            _ratio(walls)
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

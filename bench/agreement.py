"""Worst disagreement between each closed form and the numerical optimum, over random instances.

For every setting: random second-moment matrices (full rank, rank-deficient, tied eigenvalues,
latent dims above the rank, d2 != d1 for the hierarchical VAE, tied fixed sigmas) and random
hyperparameters; the exact checker (vaetheory.checker.check) minimises the loss over all matrices.
Prints, per setting, the most negative loss gap (numerical below closed form would refute it), the
largest |gap|, and the largest singular-value / std error; no asserts.

    python bench/agreement.py [--instances 12] [--restarts 4] [--learned-decoder]

``--learned-decoder``: the settings with a learned decoder variance instead (docs/theory.md §12):
the same instances without eta_dec; also the worst relative error of the learned u and how many
instances the closed form declared unbounded (and the checker confirmed so).
"""

import argparse
import time

import numpy as np

import vaetheory as vt
from vaetheory.checker import check
from vaetheory.moments import residual_spectrum, spectrum_from_moments


def psd(rng, D, rank, ties):
    phi = np.sort(rng.uniform(0.05, 4.0, rank))[::-1]
    if ties and rank >= 3:
        phi[1] = phi[2]
    P = np.linalg.qr(rng.normal(size=(D, D)))[0][:, :rank]
    return (P * phi) @ P.T


def instance(rng, i, learned=False):
    D = int(rng.integers(2, 7))
    rank = int(rng.integers(1, D + 1)) if i % 3 else D
    d1 = int(rng.integers(1, D + 3))
    d2 = int(rng.integers(1, D + 3))
    ties = i % 4 == 0
    A = psd(rng, D, rank, ties)
    D2 = int(rng.integers(1, 4))
    J = psd(rng, D + D2, D + D2 - (i % 2), ties)
    hp = dict(beta=float(np.exp(rng.uniform(-1.5, 1))), eta_enc=float(np.exp(rng.uniform(-.5, .5))),
              eta_dec=float(np.exp(rng.uniform(-.5, .5))))
    sig = np.exp(rng.uniform(-1, 0.3, d1))
    if ties and d1 >= 2:
        sig[1] = sig[0]
    mh = dict(beta1=float(np.exp(rng.uniform(-1, 1.5))), beta2=hp["beta"], eta_enc=hp["eta_enc"],
              eta_dec=hp["eta_dec"], sigma1=float(np.exp(rng.uniform(-1, 0.3))))
    sp, rs = spectrum_from_moments(A, with_basis=True), residual_spectrum(J, D, with_basis=True)
    if learned:
        hl = {k: hp[k] for k in ("beta", "eta_enc")}
        return {
            "vae / learnable / learned u": vt.vae_learnable_sigma_learned_decoder(sp, d1, **hl),
            "vae / fixed / learned u": vt.vae_fixed_sigma_learned_decoder(sp, d1, sig, **hl),
            "cvae / learnable / learned u": vt.cvae_learnable_sigma_learned_decoder(rs, d1, **hl),
            "cvae / fixed / learned u": vt.cvae_fixed_sigma_learned_decoder(rs, d1, sig, **hl),
        }
    return {
        "vae / learnable": vt.vae_learnable_sigma(sp, d1, **hp),
        "vae / fixed": vt.vae_fixed_sigma(sp, d1, sig, **hp),
        "cvae / learnable": vt.cvae_learnable_sigma(rs, d1, **hp),
        "cvae / fixed": vt.cvae_fixed_sigma(rs, d1, sig, **hp),
        "mhvae / sigma2-learnable": vt.mhvae_learnable_sigma2(sp, d1, d2, **mh),
        "mhvae / sigma2-fixed": vt.mhvae_fixed_sigma2(sp, d1, d2, sigma2=float(
            np.exp(rng.uniform(-1, 0.3))), **mh),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=12)
    ap.add_argument("--restarts", type=int, default=4)
    ap.add_argument("--learned-decoder", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(2024)
    stats = {}
    t0 = time.perf_counter()
    for i in range(args.instances):
        for name, sol in instance(rng, i, args.learned_decoder).items():
            r = check(sol, restarts=args.restarts, seed=i).to_dict()
            s = stats.setdefault(name, {"min_gap": np.inf, "max_abs_gap": 0.0, "sv": 0.0,
                                        "std": 0.0, "u": 0.0, "unbounded": 0, "verdicts": {}})
            dv = r.get("decoder_variance") or {}
            if dv.get("unbounded"):
                s["unbounded"] += 1
            else:
                s["min_gap"] = min(s["min_gap"], r["loss_gap"])
                s["max_abs_gap"] = max(s["max_abs_gap"], abs(r["loss_gap"]))
                s["u"] = max(s["u"], dv.get("error") or 0.0)
            s["sv"] = max(s["sv"], r["max_singular_value_error"] or 0.0)
            s["std"] = max(s["std"], r.get("max_variance_error") or 0.0)
            s["verdicts"][r["verdict"]] = s["verdicts"].get(r["verdict"], 0) + 1
    print(f"{args.instances} random instances per setting, {args.restarts} restarts, "
          f"{time.perf_counter() - t0:.0f} s")
    print(f"{'setting':26s} {'min gap':>10s} {'max |gap|':>10s} {'max sv err':>11s} "
          f"{'max std err':>11s}" + (f" {'max u err':>10s} {'unbounded':>9s}"
                                      if args.learned_decoder else "") + "  verdicts")
    for name, s in stats.items():
        extra = f" {s['u']:10.1e} {s['unbounded']:9d}" if args.learned_decoder else ""
        print(f"{name:26s} {s['min_gap']:10.1e} {s['max_abs_gap']:10.1e} {s['sv']:11.1e} "
              f"{s['std']:11.1e}{extra}  {s['verdicts']}")


if __name__ == "__main__":
    main()

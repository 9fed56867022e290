"""Learnable encoder variance causes posterior collapse; a fixed one can prevent it, even when the
encoder is low-rank.

Claim (Dang et al., ICLR 2024, section 5.1 and Fig. 2(a); conclusion point ii): two linear VAEs with
5 latent dims trained on MNIST, hyperparameters chosen so that 3 of the 5 modes are below their
threshold: with a learnable encoder variance 3 of the 5 latent dims collapse, with a fixed one none
does. Theory: Theorem 4 (learnable Sigma; docs/theory.md §3) says exactly ``d1 - r`` dims collapse to
the prior; Theorem 1 (fixed Sigma; section 2) gives an encoder of rank ``r`` too, but with a fixed
isotropic variance any rotation of the latent space is also optimal, so the number of zero-mean dims
is only known to lie in ``[0, d1 - r]``.

Data: the bundled 8x8 digits (1797 images) in place of MNIST, pixels divided by 16 so they lie in
[0, 1] like MNIST pixels, centred (the model has encoder and decoder biases). eta_enc = eta_dec = 1,
d1 = 5, beta = the geometric mean of the 2nd and 3rd eigenvalue of Cov(x) (so, as in the paper, 3 of
the 5 modes are inactive).

Measurements: the exact checker (vaetheory.checker: minimises the exact loss over all matrices;
collapsed = E[(Wx)_j^2] numerically zero) and stochastic training (vaetheory.sgd.train_sgd: minibatch
reparameterised beta-ELBO; collapsed = KL below 0.01, for a fixed variance only the mean part
E[mu_j^2] / (2 eta_enc^2) of the KL, which is the part that can vanish).

    python examples/vae_learnable_vs_fixed.py [--fast]
"""

import argparse
import time

import numpy as np

import vaetheory as vt
from vaetheory.checker import check
from vaetheory.io import load_digits
from vaetheory.sgd import train_sgd
from vaetheory.report import text_table

D1 = 5
FIXED_SIGMAS = (1.0, 0.9, 0.5)  # 1.0 = eta_enc: exactly the learnable model's thresholds


def count_range(lo, hi):
    return str(lo) if lo == hi else f"[{lo}, {hi}]"


def main(fast=False, verbose=True):
    t0 = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    X = load_digits()[0] / 16.0
    spectrum = vt.empirical_spectrum(X, with_basis=True)
    phi = spectrum.eigenvalues
    beta = float(np.sqrt(phi[1] * phi[2]))
    restarts = 2 if fast else 4
    sgd = dict(epochs=100, batch_size=64, lr=0.01, seed=0)  # as in the paper: 100 epochs

    settings = [("learnable", None)] + [("fixed", s) for s in FIXED_SIGMAS]
    rows = []
    for variance, sigma in settings:
        if sigma is None:
            sol = vt.vae_learnable_sigma(spectrum, D1, beta=beta)
            hyper = dict(beta=beta)
        else:
            sol = vt.vae_fixed_sigma(spectrum, D1, sigma, beta=beta)
            hyper = dict(beta=beta, sigma=sigma)
        lo, hi = int(sol.collapsed_min["z"]), int(sol.collapsed_max["z"])
        chk = check(sol, restarts=restarts, seed=0)
        run = train_sgd("vae", variance, X, D1, **sgd, **hyper)
        msq = run.mean_second_moment["z"]
        rows.append(dict(
            setting="learnable Sigma" if sigma is None else f"fixed sigma={sigma:g}",
            variance=variance, sigma=sigma,
            rank=int(sol.ranks["encoder"]), predicted=(lo, hi),
            checker_verdict=chk.verdict, checker_rank=int(chk.learned["ranks"]["encoder"]),
            checker=int(chk.learned["collapsed"]["z"]), sgd=int(run.collapsed["z"]),
            sgd_kl=np.sort(run.kl["z"]), sgd_min_mean_sq=float(np.min(msq)),
        ))

    learn = rows[0]
    for r in rows:
        r["checker_ok"] = r["predicted"][0] <= r["checker"] <= r["predicted"][1]
        r["sgd_ok"] = r["predicted"][0] <= r["sgd"] <= r["predicted"][1]
        if r["variance"] == "learnable":
            r["held_checker"], r["held_sgd"] = r["checker_ok"], r["sgd_ok"]
        else:  # the claim: fewer collapsed dims than with a learnable variance
            r["held_checker"] = r["checker"] < learn["checker"]
            r["held_sgd"] = r["sgd"] < learn["sgd"]

    say(f"Digits / 16, centred, d1 = {D1}, eta_enc = eta_dec = 1, beta = {beta:.4f} "
        f"(between the 2nd and 3rd eigenvalue {phi[1]:.4f} > beta > {phi[2]:.4f}).")
    say("Collapsed dims: exact checker = zero posterior mean; SGD = KL < 0.01 "
        "(mean part only for a fixed sigma).\n")
    yn = {True: "yes", False: "NO"}
    say(text_table(["setting", "encoder rank", "predicted collapsed", "checker", "SGD",
           "fewer than learnable? (checker / SGD)"],
          [[r["setting"], r["rank"], count_range(*r["predicted"]),
            f"{r['checker']} ({r['checker_verdict']})", r["sgd"],
            "-" if r["variance"] == "learnable" else
            f"{yn[r['held_checker']]} / {yn[r['held_sgd']]}"] for r in rows]))
    say("\nSGD per-dim KL, sorted (fixed sigma: the full KL; the sigma part alone is "
        "0.5 (sigma^2 - 1 - log sigma^2)):")
    for r in rows:
        say(f"  {r['setting']:<16} {np.array2string(r['sgd_kl'], precision=4)}   "
            f"min_j E[mu_j^2] = {r['sgd_min_mean_sq']:.4f}")

    low_rank = [r for r in rows if r["variance"] == "fixed" and r["rank"] < D1]
    held_checker = (learn["checker_ok"] and learn["checker"] == D1 - learn["rank"]
                    and all(r["held_checker"] and r["checker_ok"] for r in low_rank))
    held_sgd = learn["sgd_ok"] and all(r["held_sgd"] for r in low_rank)
    say("")
    say(f"Claim, part 1 (learnable variance: {D1 - learn['rank']} of {D1} dims collapse): "
        f"checker {yn[learn['checker_ok']]} ({learn['checker']}), SGD {yn[learn['sgd_ok']]} "
        f"({learn['sgd']}).")
    say("Claim, part 2 (fixed variance, low-rank encoder, fewer collapsed dims than learnable): "
        + "; ".join(f"{r['setting']} (rank {r['rank']}): checker {yn[r['held_checker']]} "
                    f"({r['checker']} vs {learn['checker']}), SGD {yn[r['held_sgd']]} "
                    f"({r['sgd']} vs {learn['sgd']})" for r in low_rank) + ".")
    for r in low_rank:
        if not r["held_sgd"]:
            total = _signal(spectrum, beta, r["sigma"])
            say(f"  SGD disagrees for {r['setting']}: {r['sgd']} of {D1} dims fall below the KL line "
                f"(smallest E[mu_j^2] = {r['sgd_min_mean_sq']:.4f}; the learnable model's collapsed "
                f"dims are no closer to zero after SGD: {learn['sgd_min_mean_sq']:.4f}). By the "
                f"theory the optimum has only sum_i lambda_i^2 = {total:.3f} of mean variance to "
                f"spread over {D1} dims: even spread evenly, each dim's mean-KL is "
                f"{total / D1 / 2:.4f}, next to the 0.01 line. A KL threshold cannot tell 'weak' from "
                "'collapsed' here; the exact checker (zero vs non-zero mean) can.")
    say("Note: with a fixed isotropic sigma the theory leaves the count anywhere in the range; "
        "random starts land at the low end (no zero-mean dim), which is what the paper observed.")
    say(f"[{time.perf_counter() - t0:.1f} s]")
    return dict(rows=rows, beta=beta, held_checker=held_checker, held_sgd=held_sgd)


def _signal(spectrum, beta, sigma):
    sol = vt.vae_fixed_sigma(spectrum, D1, sigma, beta=beta)
    return float(np.sum(np.asarray(sol.singular_values["encoder"]) ** 2))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="fewer restarts and epochs (for the tests)")
    main(fast=ap.parse_args().fast)

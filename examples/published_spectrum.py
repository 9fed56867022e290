"""A published spectrum is enough: active latent dims of a beta-VAE from five MNIST eigenvalues.

Wang & Ziyin (NeurIPS 2022, "Posterior Collapse of a Linear Latent Variable Model") report the top
eigenvalues of MNIST's covariance (pixels / 255, centred, 1/N): 5.117, 3.741, 3.253, 2.842, 2.567,
and the number of active dims of their beta-VAE with 5 latent dims (eta_enc = eta_dec = 1) for
beta = 1, 2.75, 3, 3.5, 4, 6: 5, 4, 3, 2, 1, 0. With a learnable encoder variance mode i is active
iff its eigenvalue exceeds beta eta_dec^2 (Theorem 4, docs/theory.md §3), so the tool needs nothing
but the five numbers: no data file (`vaetheory predict --eigenvalues 5.117,3.741,3.253,2.842,2.567
-d 5 --beta 1,2.75,3,3.5,4,6`). The counts below are computed by the library from the eigenvalues;
the paper's numbers are only printed next to them. The loss needs the trace: with a given spectrum
it is the sum of the values given (only these modes exist), which moves the optimal loss but not the
counts.

Also shown: the same model in the loss convention of common code (the KL weight of
`F.mse_loss(x_hat, x) + w * KL`, mean over the 784 pixels: beta eta_dec^2 = 784 w / 2,
docs/theory.md §10), the rate at the optimum (docs §11), and the counts of the rules people log.

    python examples/published_spectrum.py [--fast]
"""

import argparse

import vaetheory as vt
from vaetheory import conventions as vc
from vaetheory.report import text_table

EIGENVALUES = (5.117, 3.741, 3.253, 2.842, 2.567)
BETAS = (1.0, 2.75, 3.0, 3.5, 4.0, 6.0)
PAPER = (5, 4, 3, 2, 1, 0)          # Wang & Ziyin 2022, as reported (not used in the computation)
PIXELS = 784


def main(fast=False, verbose=True):
    spec = vt.spectrum_from_eigenvalues(EIGENVALUES)
    sol = vt.vae_learnable_sigma(spec, 5, beta=list(BETAS), eta_enc=1.0, eta_dec=1.0)
    rows = []
    for i, beta in enumerate(BETAS):
        pt = sol.at((i,))
        log = pt.logged()
        # the KL weight w of F.mse_loss(x_hat, x) + w * KL giving this beta (docs §10)
        conv = vc.equivalent(vc.TrainingLoss(recon="mse", kl_weight=1.0, output_dim=PIXELS),
                             "vae", "learnable", latent_dim=5)
        rows.append({"beta": beta, "active": pt.active("z"), "paper": PAPER[i],
                     "mse_kl_weight": beta / conv.factors["beta"], "rate": log.rate,
                     "au": log.latents["z"].counts["au"], "kl": log.latents["z"].counts["kl"]})
    held = all(r["active"] == r["paper"] for r in rows)
    if verbose:
        print("Wang & Ziyin 2022: MNIST top-5 eigenvalues", ", ".join(map(str, EIGENVALUES)),
              "(pixels / 255, centred); beta-VAE, 5 latent dims, eta_enc = eta_dec = 1")
        print(text_table(
            ["beta", "active (vaetheory)", "active (paper)", "w in F.mse_loss + w*KL",
             "rate (nats)", "AU(0.01)", "KL>0.01"],
            [[f"{r['beta']:g}", r["active"], r["paper"], f"{r['mse_kl_weight']:.4g}",
              f"{r['rate']:.4f}", r["au"], r["kl"]] for r in rows]))
        print("claim held: the counts computed from the five eigenvalues equal the paper's"
              if held else "claim NOT held: the computed counts differ from the paper's")
    return {"rows": rows, "held": held}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="the same (it is instant)")
    main(fast=ap.parse_args().fast)

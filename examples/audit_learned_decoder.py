"""Audit a VAE that learns its decoder variance: the NumPy training loop of audit_numpy_vae.py with
the decoder's noise std as a parameter (``log_sigma_x``), judged with ``--eta-dec learned``.

The loss the loop minimises is the full negative beta-ELBO in nats (docs/theory.md §12.1),
``||x - x_hat||^2 / (2 sigma_x^2) + D log sigma_x + beta KL`` (plus constants), float32, sampled
noise, minibatch Adam -- user code that knows nothing of vaetheory. On the digits / 16 with 6
latent dims and beta = 5 the optimum has 4 active dims and u = eta_dec^2 = 0.0547. It is run

1. correctly, for three seeds and 100, 300, 600 epochs: each run is judged with its trained ``log_sigma_x`` (the audit
   evaluates the loss there and compares u with the optimum's) and without it (the audit then
   profiles u exactly for the weights); the relative gaps and u errors measured here are the
   numbers behind the float32 tolerances (docs/theory.md §7(f), README);
2. with a common bug: the log-normaliser summed over one output instead of the D pixels
   (``log sigma_x`` instead of ``D log sigma_x``), which drives u to D times its optimum for the
   weights; the audit fails and its hint names the trained u against the one best for the
   weights.

    python examples/audit_learned_decoder.py [--fast]

The fast variant (the tests) trains one seed for 100 epochs.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from audit_numpy_vae import save_weights, train_linear_vae  # noqa: E402  (the user's code)

from vaetheory import audit, settings, testing  # noqa: E402
from vaetheory.io import load_digits  # noqa: E402

D1 = 6
BETA = 5.0
ETA_ENC = 1.0
SETTING = settings.get("vae", "learnable", "learned")


def _judge(params, X, hyper):
    """(audit with the trained u, audit with u profiled): the two readings of one run."""
    given = audit.audit(params, X, SETTING, **hyper)
    prof = audit.audit({k: v for k, v in params.items() if k != "log_sigma_x"}, X, SETTING,
                       **hyper)
    return given, prof


def main(fast=False, verbose=True):
    t0 = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    X = load_digits()[0] / 16.0
    hyper = dict(beta=BETA, eta_enc=ETA_ENC)
    runs = [(0, 100)] if fast else [(seed, ep) for ep in (100, 300, 600) for seed in (0, 1, 2)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "digits.npy")
        np.save(data_file, X)
        for seed, epochs in runs:
            p = train_linear_vae(X, D1, BETA, ETA_ENC, 0.5, epochs=epochs, seed=seed,
                                 learn_noise=True)
            given, prof = _judge(p, X, hyper)
            sv = max(v["relative"] for v in given.singular_values.values())
            rows.append({"seed": seed, "epochs": epochs, "verdict": str(given.verdict),
                         "relative_gap": given.relative_gap, "gap_nats": given.gap,
                         "u": given.decoder_variance["u"],
                         "u_error": given.decoder_variance["relative_error"], "sv_error": sv,
                         "profiled_verdict": str(prof.verdict),
                         "profiled_relative_gap": prof.relative_gap,
                         "collapse_matches": given.collapse_matches})
        try:
            testing.assert_at_optimum(p, X, SETTING, **hyper)
            passed = True
        except AssertionError:
            passed = False
        stem = os.path.join(tmp, "vae_u")
        paths = save_weights(p, stem)
        cli = subprocess.run([sys.executable, "-m", "vaetheory", "audit", paths[-1], data_file,
                              "--beta", str(BETA), "--eta-dec", "learned"], capture_output=True,
                             text=True)
        bug = train_linear_vae(X, D1, BETA, ETA_ENC, 0.5, epochs=epochs, learn_noise=True,
                               normaliser_dims=1)
        try:
            testing.assert_at_optimum(bug, X, SETTING, **hyper)
            bug_message = ""
        except AssertionError as exc:
            bug_message = str(exc)
        bug_given, bug_prof = _judge(bug, X, hyper)
    opt = testing.optimum(X, SETTING, D1, **hyper)
    say(f"digits / 16, latent dim {D1}, beta = {BETA:g}, eta_dec learned: optimum u = "
        f"{opt.learned['u']:.5g}, optimal loss {opt.optimal_loss:.6g} nats per sample, "
        f"{opt.ranks['encoder']} active dims")
    say("seed  epochs  verdict     rel. gap   gap (nats)  u error  sv error  profiled: verdict"
        "  rel. gap")
    for r in rows:
        say(f"{r['seed']:>4}  {r['epochs']:>6}  {r['verdict']:<10}  {r['relative_gap']:.2e}  "
            f"{r['gap_nats']:.2e}    {r['u_error']:7.3%}  {r['sv_error']:7.2%}  "
            f"{r['profiled_verdict']:<10}        {r['profiled_relative_gap']:.2e}")
    say(f"\nvaetheory audit {os.path.basename(paths[-1])} digits.npy --beta {BETA:g} --eta-dec "
        f"learned: exit {cli.returncode}")
    say(f"\n== bug: log sigma_x instead of D log sigma_x ==\n{bug_message}")
    # every run within the float32 loss and u tolerances; the longest runs AT OPTIMUM outright
    # (the singular values of the collapsing modes decay slowly: the loss is flat in them)
    longest = max(r["epochs"] for r in rows)
    good_ok = passed and cli.returncode == 0 and all(
        r["relative_gap"] <= audit.LOSS_RTOL and r["profiled_relative_gap"] <= audit.LOSS_RTOL
        and r["u_error"] <= audit.SV_RTOL for r in rows) and all(
        r["verdict"] == "AT OPTIMUM" and r["profiled_verdict"] == "AT OPTIMUM" for r in rows
        if r["epochs"] == longest)
    bug_caught = (bug_given.verdict != "AT OPTIMUM" and "best for these very weights"
                  in bug_message)
    say(f"\nthe correct loop is AT OPTIMUM (u given and profiled): {'yes' if good_ok else 'NO'}; "
        f"the normaliser bug is caught (u off the best one for the weights): "
        f"{'yes' if bug_caught else 'NO'}  ({time.perf_counter() - t0:.1f} s)")
    return {"rows": rows, "good_ok": good_ok, "bug_caught": bug_caught,
            "held": good_ok and bug_caught, "cli": cli.stdout, "cli_code": cli.returncode,
            "bug_message": bug_message, "bug_u_ratio": bug_given.decoder_variance["u"]
            / bug_given.decoder_variance["best_u_for_weights"],
            "bug_profiled_verdict": str(bug_prof.verdict)}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="one seed, 100 epochs (the tests)")
    res = main(fast=ap.parse_args().fast)
    sys.exit(0 if res["held"] else 1)

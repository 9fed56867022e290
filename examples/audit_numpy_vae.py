"""Audit someone else's VAE: a linear VAE trained by a plain NumPy loop, then judged by vaetheory.

The training code below is written the way a user would write it -- float32, the reparameterised
ELBO with sampled noise, hand-derived gradients, Adam, PyTorch-style parameter names
(``encoder.weight`` is latent x data, as nn.Linear stores it) -- and knows nothing of vaetheory.
It is run twice on the bundled digits (pixels / 16, not centred: the model has biases):

1. correctly: ``loss = ||x - x_hat||^2 / (2 eta_dec^2) + beta * KL``, with the Gaussian KL
   ``1/2 sum(sigma^2/eta_enc^2 + mu^2/eta_enc^2 - 1 - log(sigma^2/eta_enc^2))``;
2. with a deliberate bug: the KL without its factor 1/2.

Each run saves its weights to .npz and .safetensors (if the safetensors package is installed), and
both files are judged by ``vaetheory.testing.assert_at_optimum`` / ``assert_collapse_matches`` and
by ``vaetheory audit`` on the command line. The correct run passes (AT OPTIMUM, exit 0); the buggy
one fails, and the message points at the bug: its weights are at the optimum for beta = 2, twice
the beta it was trained with (docs/theory.md §1).

    python examples/audit_numpy_vae.py [--fast]

The fast variant (the tests) trains for 100 epochs instead of 300.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from vaetheory import testing
from vaetheory.io import load_digits

D1 = 6            # latent dims
BETA = 1.0
ETA_ENC = 1.0
ETA_DEC = 0.55    # beta eta_dec^2 = 0.3025, between the digits' 4th and 5th eigenvalue (0.395,
#                   0.271): 4 dims active, 2 collapsed


# ------------------------------------------------------------------------------------------
# the user's code: nothing below this line until "the audit" uses vaetheory


def train_linear_vae(X, latent_dim, beta, eta_enc, eta_dec, epochs=300, batch_size=128, lr=3e-2,
                     lr_final=3e-4, seed=0, kl_factor=0.5, learn_noise=False, normaliser_dims=None):
    """Train q(z|x) = N(W_e x + b_e, diag(exp(log_var))), p(x|z) = N(W_d z + b_d, eta_dec^2 I) by
    minibatch Adam on the sampled negative beta-ELBO (one noise draw per sample and step), the
    step size decaying geometrically. ``kl_factor`` is the 1/2 of the Gaussian KL (0.5 is right).

    ``learn_noise``: the decoder's noise std is a parameter too, ``log_sigma_x`` (eta_dec =
    exp(log_sigma_x), started at ``eta_dec``), and the loss is the full negative beta-ELBO in nats,
    ``||x - x_hat||^2 / (2 sigma_x^2) + normaliser_dims * log(sigma_x) + beta * KL`` (plus
    constants); ``normaliser_dims`` is the number of pixels D (right) unless given."""
    rng = np.random.default_rng(seed)
    X = X.astype(np.float32)
    n, d_in = X.shape
    p = {"encoder.weight": (0.01 * rng.standard_normal((latent_dim, d_in))).astype(np.float32),
         "encoder.bias": np.zeros(latent_dim, np.float32),
         "decoder.weight": (0.01 * rng.standard_normal((d_in, latent_dim))).astype(np.float32),
         "decoder.bias": np.zeros(d_in, np.float32),
         "log_var": np.zeros(latent_dim, np.float32)}
    if learn_noise:
        p["log_sigma_x"] = np.full(1, np.log(eta_dec), np.float32)
    n_norm = np.float32(d_in if normaliser_dims is None else normaliser_dims)
    m = {k: np.zeros_like(v) for k, v in p.items()}
    v = {k: np.zeros_like(v) for k, v in p.items()}
    per_epoch = -(-n // batch_size)
    decay = (lr_final / lr) ** (1.0 / (epochs * per_epoch))
    e2, d2 = np.float32(eta_enc ** 2), np.float32(eta_dec ** 2)
    batches = [X[idx] for _ in range(epochs) for idx in np.array_split(rng.permutation(n),
                                                                      per_epoch)]
    for t, xb in enumerate(batches, start=1):
        n = xb.shape[0]
        if learn_noise:
            d2 = np.exp(2.0 * p["log_sigma_x"][0])
        eps = rng.standard_normal((n, latent_dim)).astype(np.float32)
        mu = xb @ p["encoder.weight"].T + p["encoder.bias"]
        std = np.exp(0.5 * p["log_var"])
        z = mu + std * eps
        x_hat = z @ p["decoder.weight"].T + p["decoder.bias"]
        # loss = mean_n [ ||x - x_hat||^2 / (2 eta_dec^2)
        #                 + beta * kl_factor * sum(exp(lv)/e2 + mu^2/e2 - 1 - lv + log e2) ]
        g_xhat = -(xb - x_hat) / d2 / n
        g_z = g_xhat @ p["decoder.weight"]
        g_mu = g_z + beta * kl_factor * 2.0 * mu / e2 / n
        g = {"decoder.weight": g_xhat.T @ z, "decoder.bias": g_xhat.sum(0),
             "encoder.weight": g_mu.T @ xb, "encoder.bias": g_mu.sum(0),
             "log_var": (g_z * eps).sum(0) * 0.5 * std
                        + beta * kl_factor * (np.exp(p["log_var"]) / e2 - 1.0)}
        if learn_noise:   # d/d log sigma_x of ||x - x_hat||^2 / (2 sigma_x^2) + D log sigma_x
            g["log_sigma_x"] = np.array([n_norm - np.sum((xb - x_hat) ** 2) / d2 / n],
                                        np.float32)
        a = lr * decay ** t
        for k in p:
            m[k] = 0.9 * m[k] + 0.1 * g[k]
            v[k] = 0.999 * v[k] + 0.001 * g[k] * g[k]
            step = a * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
            p[k] = (p[k] - step).astype(np.float32)
    return p


def save_weights(params, stem):
    """Save as .npz, and as .safetensors when the package is there; returns the paths."""
    paths = [stem + ".npz"]
    np.savez(paths[0], **params)
    try:
        from safetensors.numpy import save_file
    except ImportError:
        return paths
    save_file({k: np.ascontiguousarray(a) for k, a in params.items()}, stem + ".safetensors")
    return paths + [stem + ".safetensors"]


# ------------------------------------------------------------------------------------------
# the audit


def run_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "vaetheory", "audit", *map(str, args)],
                          capture_output=True, text=True)
    return proc.returncode, proc.stdout, proc.stderr


def judge(label, params, X, data_file, stem, say, files=None):
    hyper = dict(beta=BETA, eta_enc=ETA_ENC, eta_dec=ETA_DEC)
    out = {"label": label}
    try:
        result = testing.assert_at_optimum(params, X, "vae/learnable", **hyper)
        out["assert_at_optimum"] = "passed"
        out["relative_gap"] = result.relative_gap
    except AssertionError as exc:
        out["assert_at_optimum"] = "failed"
        out["message"] = str(exc)
    try:
        testing.assert_collapse_matches(params, X, "vae/learnable", **hyper)
        out["assert_collapse_matches"] = "passed"
    except AssertionError as exc:
        out["assert_collapse_matches"] = "failed"
        out["collapse_message"] = str(exc).splitlines()[0]
    out["cli"] = []
    paths = save_weights(params, stem)
    for path in paths if files is None else [paths[files % len(paths)]]:
        code, stdout, stderr = run_cli(path, data_file, "--beta", BETA, "--eta-enc", ETA_ENC,
                                       "--eta-dec", ETA_DEC)
        verdict = next((ln.split()[1] if ln.split()[1] != "AT" else "AT OPTIMUM"
                        for ln in stdout.splitlines() if ln.startswith("audit:")), stderr.strip())
        out["cli"].append({"file": os.path.basename(path), "exit_code": code, "verdict": verdict,
                           "stdout": stdout})
    say(f"\n== {label} ==")
    say(f"assert_at_optimum: {out['assert_at_optimum']}; assert_collapse_matches: "
        f"{out['assert_collapse_matches']}")
    if "message" in out:
        say(out["message"])
    for c in out["cli"]:
        say(f"vaetheory audit {c['file']} digits.npy --beta {BETA} --eta-dec {ETA_DEC}: "
            f"{c['verdict']} (exit {c['exit_code']})")
    return out


def main(fast=False, verbose=True):
    t0 = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    X = load_digits()[0] / 16.0
    epochs = 100 if fast else 300
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "digits.npy")
        np.save(data_file, X)
        good = train_linear_vae(X, D1, BETA, ETA_ENC, ETA_DEC, epochs=epochs)
        # the fast variant runs the command line on one of the two files per run
        rows.append(judge("correct training loop", good, X, data_file,
                          os.path.join(tmp, "vae_good"), say, files=1 if fast else None))
        buggy = train_linear_vae(X, D1, BETA, ETA_ENC, ETA_DEC, epochs=epochs, kl_factor=1.0)
        rows.append(judge("bug: the KL without its factor 1/2", buggy, X, data_file,
                          os.path.join(tmp, "vae_bug"), say, files=0 if fast else None))
    good_ok = rows[0]["assert_at_optimum"] == "passed" and all(c["exit_code"] == 0
                                                               for c in rows[0]["cli"])
    bug_caught = (rows[1]["assert_at_optimum"] == "failed"
                  and "twice the given value" in rows[1]["message"]
                  and "factor 1/2" in rows[1]["message"]
                  and all(c["exit_code"] != 0 for c in rows[1]["cli"]))
    held = good_ok and bug_caught
    say(f"\nthe correct loop is AT OPTIMUM: {'yes' if good_ok else 'NO'}; the bug is caught and "
        f"named (beta = 2 x the given one): {'yes' if bug_caught else 'NO'}  "
        f"({time.perf_counter() - t0:.1f} s)")
    return {"rows": rows, "held": held, "good_ok": good_ok, "bug_caught": bug_caught}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="100 epochs instead of 300 (the tests)")
    res = main(fast=ap.parse_args().fast)
    sys.exit(0 if res["held"] else 1)

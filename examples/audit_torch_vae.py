"""Audit a PyTorch VAE: nn.Linear layers trained with autograd, judged from its state_dict.

Optional: needs torch (``pip install torch``); without it the script says so and exits 0. The
model is what a PyTorch user writes -- ``nn.Linear`` encoder and decoder (weights are out x in),
a learnable ``log_var`` parameter, the reparameterised ELBO, ``torch.optim.Adam`` on minibatches
of the bundled digits (pixels / 16, not centred) -- and is run twice:

1. as intended;
2. with a deliberate bug: the decoder built with ``bias=False``, so it cannot model the data mean.

The state_dict (tensors with ``requires_grad``) goes straight into
``vaetheory.testing.assert_at_optimum``; it is also saved with ``safetensors.torch.save_file`` (if
safetensors is installed) and ``numpy.savez`` and judged by ``vaetheory audit``. The first run is
AT OPTIMUM; the second fails, and the message says the decoder bias is missing.

    python examples/audit_torch_vae.py [--fast]

Both variants train for 300 epochs (with 100, nn.Linear's larger initialisation leaves the
collapsed dims not yet decayed: the audit says NEAR, "train longer"); --fast runs the command line
on one file per run.
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

D1, BETA, ETA_ENC, ETA_DEC = 6, 1.0, 1.0, 0.55  # as in audit_numpy_vae.py


def build_and_train(X, decoder_bias=True, epochs=300, batch_size=128, seed=0, decay=1e-2):
    """The user's code: a linear VAE in PyTorch (nothing here uses vaetheory)."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # tiny matrices: threads only cost

    class LinearVAE(nn.Module):
        def __init__(self, d_in, d_z):
            super().__init__()
            self.encoder = nn.Linear(d_in, d_z)
            self.decoder = nn.Linear(d_z, d_in, bias=decoder_bias)
            self.log_var = nn.Parameter(torch.zeros(d_z))

        def loss(self, x):
            mu = self.encoder(x)
            z = mu + torch.exp(0.5 * self.log_var) * torch.randn_like(mu)
            rec = ((x - self.decoder(z)) ** 2).sum(1) / (2 * ETA_DEC ** 2)
            kl = 0.5 * (torch.exp(self.log_var) / ETA_ENC ** 2 + mu ** 2 / ETA_ENC ** 2 - 1
                        - self.log_var + np.log(ETA_ENC ** 2)).sum(1)
            return (rec + BETA * kl).mean()

    data = torch.tensor(X, dtype=torch.float32)
    model = LinearVAE(data.shape[1], D1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    steps = epochs * -(-len(data) // batch_size)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=decay ** (1.0 / steps))
    for _ in range(epochs):
        for idx in torch.randperm(len(data)).split(batch_size):
            opt.zero_grad()
            model.loss(data[idx]).backward()
            opt.step()
            sched.step()
    return model


def save(model, stem):
    sd = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    paths = [stem + ".npz"]
    np.savez(paths[0], **sd)
    try:
        from safetensors.torch import save_file
    except ImportError:
        return paths
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, stem + ".safetensors")
    return paths + [stem + ".safetensors"]


def judge(label, model, X, data_file, stem, say, files=None):
    out = {"label": label}
    try:
        testing.assert_at_optimum(model.state_dict(), X, "vae/learnable", beta=BETA,
                                  eta_enc=ETA_ENC, eta_dec=ETA_DEC)
        out["assert_at_optimum"] = "passed"
    except AssertionError as exc:
        out["assert_at_optimum"] = "failed"
        out["message"] = str(exc)
    out["cli"] = []
    paths = save(model, stem)
    for path in paths if files is None else [paths[files % len(paths)]]:
        p = subprocess.run([sys.executable, "-m", "vaetheory", "audit", path, data_file, "--beta",
                            str(BETA), "--eta-dec", str(ETA_DEC)], capture_output=True, text=True)
        out["cli"].append({"file": os.path.basename(path), "exit_code": p.returncode})
    say(f"\n== {label} ==\nassert_at_optimum: {out['assert_at_optimum']}")
    if "message" in out:
        say(out["message"])
    for c in out["cli"]:
        say(f"vaetheory audit {c['file']} digits.npy ...: exit {c['exit_code']}")
    return out


def main(fast=False, verbose=True):
    say = print if verbose else (lambda *a, **k: None)
    try:
        import torch  # noqa: F401
    except ImportError:
        say("torch is not installed: nothing to do (pip install torch to run this example)")
        return {"skipped": True, "held": True}
    t0 = time.perf_counter()
    X = load_digits()[0] / 16.0
    epochs = 300  # fewer leave the collapsed dims of nn.Linear's initialisation not yet decayed
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "digits.npy")
        np.save(data_file, X)
        good = judge("as intended", build_and_train(X, epochs=epochs), X, data_file,
                     os.path.join(tmp, "good"), say, files=1 if fast else None)
        bad = judge("bug: decoder without bias",
                    build_and_train(X, decoder_bias=False, epochs=epochs), X, data_file,
                    os.path.join(tmp, "bad"), say, files=0 if fast else None)
    good_ok = good["assert_at_optimum"] == "passed" and all(c["exit_code"] == 0 for c in good["cli"])
    bug_caught = (bad["assert_at_optimum"] == "failed" and "no decoder_bias" in bad["message"]
                  and all(c["exit_code"] != 0 for c in bad["cli"]))
    say(f"\nas intended: AT OPTIMUM {'yes' if good_ok else 'NO'}; the missing decoder bias caught "
        f"and named: {'yes' if bug_caught else 'NO'}  ({time.perf_counter() - t0:.1f} s)")
    return {"skipped": False, "rows": [good, bad], "good_ok": good_ok, "bug_caught": bug_caught,
            "held": good_ok and bug_caught}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="the command line on one file per run (the tests)")
    sys.exit(0 if main(fast=ap.parse_args().fast)["held"] else 1)

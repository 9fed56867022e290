"""Does the linear prediction hold for a nonlinear VAE? Measured, not theory (issue 17).

The closed forms of vaetheory are exact for *linear* VAEs (docs/theory.md §3, Theorem 4). Users
reach for them to sanity-check the nonlinear VAEs they actually train. This script measures how far
a linear count can be trusted there: it trains a nonlinear beta-VAE (MLP encoder and decoder,
learnable input-dependent encoder variance, Gaussian decoder with fixed eta_dec) and the linear VAE
with the *same* loop (same objective, optimiser, schedule, batches and seeds) over a beta sweep, and
prints per beta:

* the linear prediction at the closed-form optimum: the exact collapsed count of
  :func:`vaetheory.vae_learnable_sigma`, and the counts under the two rules people log, AU(delta)
  (``Var_x E[z_j|x] <= delta``) and KL (``KL_j <= delta``), delta = 0.01 (docs/theory.md §7).
  Both come from the library's per-dim values at the optimum, :attr:`vaetheory.Point.kl` and
  :attr:`vaetheory.Point.mean_sq`: ``Var_x E[z_j|x] = E[mu_j^2] = lambda_j^2`` (whitened encoder
  singular values, centred data) and
  ``KL_j = (s_j^2/eta_enc^2 + lambda_j^2/eta_enc^2 - 1 - log(s_j^2/eta_enc^2)) / 2`` with ``s_j`` the
  learned stds (docs/theory.md §3, §7);
* the collapsed counts of the trained linear and nonlinear VAEs under both rules (median and range
  over seeds);
* the final losses of both trainings against the exact linear optimum ``optimal_loss``, all in the
  convention of docs/theory.md §1: ``L = 2 eta_dec^2 E[-ELBO] - D eta_dec^2 log(2 pi eta_dec^2)
  - kappa d (log eta_enc^2 - 1)`` (§1.4). The linear training's loss is exact (closed-form
  expectation of its parameters, §1.1 and §1.5); the nonlinear one is a Monte Carlo estimate over
  the encoder noise, with its standard error;
* that training has converged: the relative change of the loss over the last 10% of the epochs,
  the loss curve of seed 0, and (full run) a second training with twice the epochs.

Data: the bundled digits (1797 x 64, raw 0..16 scale, centred: the networks have biases), latent
dim 16, eta_enc = eta_dec = 1, and a second, synthetic dataset with a known nonlinear structure
(a 4-dim latent through a fixed random tanh network into 32 dims plus noise, 2000 samples). Adam,
lr 1e-3 with cosine decay to 0, batch 128, trained in float32 and measured in float64, one torch
thread. What the measurement says is written up in README.md ("Nonlinear VAEs (measured, not
theory)") and docs/theory.md §14.

torch is optional (not a vaetheory dependency): without it the script prints a skip message and
exits 0.

    python examples/nonlinear_vs_linear.py [--fast] [--widths 64 256] [--depth 2] [--epochs 500]
        [--seeds 3] [--betas 1 5 10 ...] [--datasets digits manifold]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time

import numpy as np

import vaetheory as vt
from vaetheory._numerics import DELTA, active_units, kl_active
from vaetheory.io import load_digits
from vaetheory.report import text_table

#: torch, imported on first use by :func:`require_torch` (optional: the measurement needs it, the
#: linear prediction does not)
torch = None


def require_torch():
    """Import torch (ImportError if it is not installed) and return it."""
    global torch
    if torch is None:
        import torch as _torch

        torch = _torch
    return torch

SKIP_MESSAGE = ("skipped: this example trains neural networks and needs PyTorch, which vaetheory "
                "does not depend on (pip install torch)")

LATENT = {"digits": 16, "manifold": 8}
BETAS = {"digits": (1.0, 5.0, 10.0, 20.0, 50.0, 100.0, 150.0),
         "manifold": (1.0, 2.0, 5.0, 10.0, 30.0)}
#: per dataset: MLP widths and depth, epochs, seeds (MLPs, linear), Monte Carlo draws of the final
#: loss, and whether to train once more with twice the epochs (first width, seed 0). The digits
#: took 26 CPU-minutes on one thread (1 CPU-minute per 500-epoch run of the width-256 MLP).
_COMMON = dict(depth=2, epochs=500, mc=16, seeds=2, linear_seeds=1)
FULL = {"digits": dict(_COMMON, betas=BETAS["digits"], widths=(64, 256), long_check=True),
        "manifold": dict(_COMMON, betas=BETAS["manifold"], widths=(64,), long_check=False)}
FAST = {"digits": dict(depth=2, epochs=40, mc=4, betas=(5.0, 50.0), widths=(32,), seeds=1,
                       linear_seeds=1, long_check=False)}


# ------------------------------------------------------------------------------------------
# data


def dataset(name):
    """``(X, description)``: the rows of a dataset, float64, *not* centred."""
    if name == "digits":
        return load_digits()[0], "bundled digits, 1797 x 64, raw 0..16 scale"
    if name == "manifold":
        # a 4-dim latent through a fixed random tanh network, plus isotropic noise of std 0.3
        rng = np.random.default_rng(20241)
        z = rng.standard_normal((2000, 4))
        h = np.tanh(z @ rng.standard_normal((4, 64)) * 1.5)
        X = 3.0 * (h @ rng.standard_normal((64, 32)) / 8.0) + 0.3 * rng.standard_normal((2000, 32))
        return X, "synthetic: 4-dim latent -> random tanh MLP -> 32 dims + noise 0.3, 2000 rows"
    raise ValueError(f"unknown dataset {name!r}; use digits or manifold")


# ------------------------------------------------------------------------------------------
# the linear prediction (no torch needed)


def to_theory_loss(neg_elbo, *, D, d, beta, eta_enc=1.0, eta_dec=1.0):
    """An average negative beta-ELBO in nats -> the loss convention of docs/theory.md §1.

    ``L = 2 eta_dec^2 E[-ELBO] - D eta_dec^2 log(2 pi eta_dec^2) - kappa d (log eta_enc^2 - 1)``,
    ``kappa = beta eta_dec^2``: the constants of §1.4 (VAE row) removed, so that ``L`` is directly
    comparable with :attr:`vaetheory.Solution.optimal_loss`.
    """
    kappa = beta * eta_dec ** 2
    return (2.0 * eta_dec ** 2 * neg_elbo - D * eta_dec ** 2 * math.log(2.0 * math.pi * eta_dec ** 2)
            - kappa * d * (math.log(eta_enc ** 2) - 1.0))


def linear_prediction(spectrum, d, betas, *, eta_enc=1.0, eta_dec=1.0, delta=DELTA):
    """Per beta, what the closed-form linear optimum (Theorem 4, docs/theory.md §3) says.

    Returns a list of dicts: ``collapsed`` (the exact count), ``collapsed_au`` (dims with
    ``Var_x E[z_j|x] = lambda_j^2 <= delta``), ``collapsed_kl`` (dims with ``KL_j <= delta``,
    KL_j from the learned std and lambda_j by docs/theory.md §7; :attr:`vaetheory.Point.kl`),
    ``kl`` (per mode), and
    ``optimal_loss`` (§1 convention).
    """
    betas = np.asarray(betas, dtype=np.float64)
    sol = vt.vae_learnable_sigma(spectrum, d, beta=betas, eta_enc=eta_enc, eta_dec=eta_dec)
    rows = []
    for i, beta in enumerate(betas):
        pt = sol.at((i,))
        mean_var = pt.mean_sq["z"]  # = Var_x E[z_j|x] (centred data): lambda_j^2
        kl = pt.kl["z"]
        rows.append(dict(beta=float(beta), collapsed=int(pt.collapsed["z"]),
                         collapsed_au=d - active_units(mean_var, delta),
                         collapsed_kl=d - kl_active(kl, delta), kl=kl, mean_var=mean_var,
                         optimal_loss=pt.optimal_loss))
    return rows


# ------------------------------------------------------------------------------------------
# the two models and the one training loop (torch)


def make_model(D, d, *, linear, width=256, depth=2, scale=1.0, seed=0):
    """A beta-VAE with a Gaussian decoder: ``encode(x) -> (mu, log_var)``, ``decode(z)``.

    ``linear``: ``mu = W x + a`` with one learnable ``log_var`` for all inputs, ``decode(z) = U z + b``
    (the model of docs/theory.md §1.1 with biases, §1.5). Otherwise an MLP of ``depth`` hidden ReLU
    layers of ``width`` units each way, the encoder giving ``mu(x)`` and an input-dependent
    ``log_var(x)``. Both read ``x / scale`` and write ``scale * output`` (a fixed normalisation:
    ``scale`` = the data's RMS, so the networks see unit-scale numbers).
    """
    nn = require_torch().nn
    torch.manual_seed(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale, self.linear, self.d = float(scale), linear, d
            if linear:
                self.enc = nn.Linear(D, d)
                self.log_var = nn.Parameter(torch.zeros(d))
                self.dec = nn.Linear(d, D)
            else:
                self.enc = nn.Sequential(*_mlp(D, width, depth), nn.Linear(width, 2 * d))
                self.dec = nn.Sequential(*_mlp(d, width, depth), nn.Linear(width, D))

        def encode(self, x):
            h = self.enc(x / self.scale)
            if self.linear:
                return h, self.log_var.expand_as(h)
            return h[:, :self.d], h[:, self.d:]

        def decode(self, z):
            return self.scale * self.dec(z)

    return VAE()


def _mlp(n_in, width, depth):
    layers = []
    for _ in range(depth):
        layers += [torch.nn.Linear(n_in, width), torch.nn.ReLU()]
        n_in = width
    return layers


def neg_elbo(model, x, eps, *, beta, eta_enc=1.0, eta_dec=1.0):
    """Per-sample negative beta-ELBO in nats, with the encoder noise ``eps`` given.

    ``-ELBO(x) = ||x - f(mu + s eps)||^2 / (2 eta_dec^2) + (D/2) log(2 pi eta_dec^2)
    + beta KL(N(mu, s^2) || N(0, eta_enc^2 I))``; the KL in closed form, the reconstruction from
    the reparameterised sample ``z = mu + s eps`` (one per row of ``eps``).
    """
    require_torch()
    mu, log_var = model.encode(x)
    z = mu + torch.exp(0.5 * log_var) * eps
    D = x.shape[1]
    recon = (((x - model.decode(z)) ** 2).sum(1) / (2.0 * eta_dec ** 2)
             + 0.5 * D * math.log(2.0 * math.pi * eta_dec ** 2))
    v = torch.exp(log_var) / eta_enc ** 2
    kl = 0.5 * (v + mu ** 2 / eta_enc ** 2 - 1.0 - torch.log(v)).sum(1)
    return recon + beta * kl


def train(model, X, *, beta, epochs, seed, lr=1e-3, batch=128, eta_enc=1.0, eta_dec=1.0):
    """Adam with cosine decay to 0 on minibatches of the average negative beta-ELBO, in the
    model's dtype (float32 here, as practitioners train).

    Returns the loss curve: the mean training objective of each epoch, in the docs/theory.md §1
    convention (:func:`to_theory_loss`).
    """
    require_torch()
    dtype = next(model.parameters()).dtype
    Xt = torch.as_tensor(X, dtype=dtype)
    N, D = Xt.shape
    g = torch.Generator().manual_seed(10_000 + seed)
    steps = epochs * math.ceil(N / batch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1.0 + math.cos(math.pi * t / steps)))
    curve = []
    for _ in range(epochs):
        perm = torch.randperm(N, generator=g)
        total = 0.0
        for k in range(0, N, batch):
            xb = Xt[perm[k:k + batch]]
            eps = torch.randn(xb.shape[0], model.d, generator=g, dtype=dtype)
            loss = neg_elbo(model, xb, eps, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * xb.shape[0]
        curve.append(to_theory_loss(total / N, D=D, d=model.d, beta=beta, eta_enc=eta_enc,
                                    eta_dec=eta_dec))
    return np.array(curve)


def linear_parameters(model):
    """The effective ``W, U, log_var, a, b`` of a linear model (``mu = W x + a``, ``U z + b``)."""
    s = model.scale

    def f64(t):
        return t.detach().double().numpy().copy()

    return (f64(model.enc.weight) / s, f64(model.dec.weight) * s, f64(model.log_var),
            f64(model.enc.bias), f64(model.dec.bias) * s)


def linear_exact_loss(model, X, *, beta, eta_enc=1.0, eta_dec=1.0):
    """The exact expected loss (docs/theory.md §1 convention) of a linear model on data ``X``.

    By §1.5 the biased loss splits into the bias-free loss on ``Cov(x)`` plus the two mean terms
    ``beta c^2 ||W m + a||^2 + ||(I - U W) m - U a - b||^2`` (``m`` the data mean).
    """
    from vaetheory.losses import vae_loss

    W, U, log_var, a, b = linear_parameters(model)
    m = X.mean(0)
    Xc = X - m
    cov = Xc.T @ Xc / X.shape[0]
    c2 = (eta_dec / eta_enc) ** 2
    mean_enc = W @ m + a
    mean_rec = m - U @ (W @ m) - U @ a - b
    return (vae_loss(cov, W, U, log_var, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
            + beta * c2 * float(mean_enc @ mean_enc) + float(mean_rec @ mean_rec))


def measure(model, X, *, beta, mc=16, seed=0, eta_enc=1.0, eta_dec=1.0, delta=DELTA):
    """Counts and loss of a trained model on all of ``X``, evaluated in float64.

    ``collapsed_kl``: dims with ``KL_j <= delta``, ``KL_j = E_x KL(q(z_j|x) || p(z_j))`` (closed
    form per x, averaged); ``collapsed_au``: dims with ``Var_x E[z_j|x] <= delta`` (AU, Burda et al.
    2016); ``loss`` and ``loss_se``: Monte Carlo estimate (``mc`` noise draws per row) of the
    expected loss in the docs/theory.md §1 convention, and its standard error over the draws.
    """
    require_torch()
    Xt = torch.as_tensor(X, dtype=torch.float64)
    N, D = Xt.shape
    d = model.d
    model = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(20_000 + seed)
    with torch.no_grad():
        mu, log_var = model.encode(Xt)
        v = torch.exp(log_var) / eta_enc ** 2
        kl = (0.5 * (v + mu ** 2 / eta_enc ** 2 - 1.0 - torch.log(v))).mean(0).numpy()
        mean_var = mu.var(0, unbiased=False).numpy()
        draws = []
        for _ in range(mc):
            eps = torch.randn(N, d, generator=g, dtype=torch.float64)
            draws.append(float(neg_elbo(model, Xt, eps, beta=beta, eta_enc=eta_enc,
                                        eta_dec=eta_dec).mean()))
    losses = np.array([to_theory_loss(x, D=D, d=d, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
                       for x in draws])
    return dict(collapsed_kl=d - kl_active(kl, delta), collapsed_au=d - active_units(mean_var, delta),
                kl=kl, mean_var=mean_var, loss=float(losses.mean()),
                loss_se=float(losses.std(ddof=1) / math.sqrt(mc)) if mc > 1 else float("nan"))


def flatness(curve):
    """Relative change of the loss over the last 10% of the epochs (each end averaged over a
    window of 2% of the epochs, at least one, to smooth minibatch noise)."""
    n = len(curve)
    w = max(1, n // 50)
    start = max(0, int(round(0.9 * n)) - w)
    a, b = float(np.mean(curve[start:start + w])), float(np.mean(curve[-w:]))
    return (a - b) / abs(b)


def run(X, d, *, beta, linear, width, depth, epochs, seed, mc, eta_enc=1.0, eta_dec=1.0):
    """Train one model (float32) on centred ``X`` and measure it (float64, :func:`measure`)."""
    model = make_model(X.shape[1], d, linear=linear, width=width, depth=depth,
                       scale=float(np.sqrt(np.mean(X ** 2))), seed=seed)
    t0 = time.perf_counter()
    curve = train(model, X, beta=beta, epochs=epochs, seed=seed, eta_enc=eta_enc, eta_dec=eta_dec)
    out = measure(model, X, beta=beta, mc=mc, seed=seed, eta_enc=eta_enc, eta_dec=eta_dec)
    if linear:
        out["loss_exact"] = linear_exact_loss(model, X, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    out.update(curve=curve, flat=flatness(curve), seconds=time.perf_counter() - t0)
    return out


# ------------------------------------------------------------------------------------------
# the sweep and its tables


def _counts(values):
    """``"7"`` if every seed agrees, else one count per seed in seed order: ``"7/9"``."""
    v = [int(x) for x in values]
    return str(v[0]) if len(set(v)) == 1 else "/".join(map(str, v))


def _gaps(values):
    """Relative loss gaps in %: the mean, and the range over seeds."""
    v = 100.0 * np.asarray(values)
    if v.size == 1:
        return f"{v[0]:+.2f}"
    return f"{v.mean():+.2f} [{v.min():+.2f}, {v.max():+.2f}]"


def sweep(name, *, betas, widths, depth, epochs, seeds, linear_seeds, mc, long_check, say):
    """One dataset: the linear prediction and every training, per beta (see the module doc)."""
    X, about = dataset(name)
    X = X - X.mean(0)  # centred: the networks have biases (docs/theory.md §1.5)
    d = LATENT[name]
    spectrum = vt.empirical_spectrum(X, center=False)
    pred = linear_prediction(spectrum, d, betas)
    models = [("linear", None)] + [(f"MLP w{w}", w) for w in widths]
    rows = []
    for p in pred:
        row = dict(p, collapsed_point=spectrum.trace + d * p["beta"], runs={})
        for label, width in models:
            row["runs"][label] = [run(X, d, beta=p["beta"], linear=width is None, width=width or 0,
                                      depth=depth, epochs=epochs, seed=s, mc=mc)
                                  for s in range(linear_seeds if width is None else seeds)]
        if long_check:
            row["long"] = run(X, d, beta=p["beta"], linear=False, width=widths[0], depth=depth,
                              epochs=2 * epochs, seed=0, mc=mc)
        rows.append(row)
        say(f"  [{name}] beta = {p['beta']:g}: collapsed (KL rule) predicted {p['collapsed_kl']}, "
            + ", ".join(f"{label} " + "/".join(str(x["collapsed_kl"]) for x in runs)
                        for label, runs in row["runs"].items()))
    result = dict(name=name, about=about, latent_dim=d, rows=rows, models=[m for m, _ in models],
                  config=dict(widths=list(widths), depth=depth, epochs=epochs, seeds=seeds,
                              linear_seeds=linear_seeds, long_check=long_check))
    result.update(render(result, say))
    return result


def render(result, say):
    """Print the tables of one dataset's sweep (:func:`sweep`, or a saved run) and return the
    verdict (:func:`_verdict`)."""
    name, about, d, rows = result["name"], result["about"], result["latent_dim"], result["rows"]
    cfg = result["config"]
    widths, depth, epochs, seeds = cfg["widths"], cfg["depth"], cfg["epochs"], cfg["seeds"]
    linear_seeds, long_check = cfg["linear_seeds"], cfg["long_check"]
    models = [(m, None) for m in result["models"]]

    def gap(r, loss):
        return (loss - r["optimal_loss"]) / abs(r["optimal_loss"])

    say(f"\n== {name}: {about}; centred, latent dim {d}, eta_enc = eta_dec = 1 ==")
    say(f"training: Adam lr 1e-3, cosine decay to 0, batch 128, {epochs} epochs, float32; "
        f"{seeds} seed(s) per MLP, {linear_seeds} for the linear VAE; MLP depth {depth}, widths "
        f"{', '.join(map(str, widths))}, ReLU, input-dependent encoder variance. Counts: collapsed "
        "dims, one per seed where the seeds differ.")
    head = ["beta", "linear theory: exact", "AU rule", "KL rule", "linear SGD: KL", "AU"]
    for label, _ in models[1:]:
        head += [f"{label}: KL", "AU"]
    table = []
    for r in rows:
        line = [f"{r['beta']:g}", r["collapsed"], r["collapsed_au"], r["collapsed_kl"]]
        for label, _ in models:
            runs = r["runs"][label]
            line += [_counts(x["collapsed_kl"] for x in runs), _counts(x["collapsed_au"] for x in runs)]
        table.append(line)
    say(f"\nCollapsed dims (of {d}; rules at delta = {DELTA}: KL_j <= delta, Var_x E[z_j|x] <= delta):")
    say(text_table(head, table))

    head = ["beta", "L* (linear optimum)", "all collapsed"] + [f"{label}" for label, _ in models]
    table = []
    for r in rows:
        line = [f"{r['beta']:g}", f"{r['optimal_loss']:.2f}", _gaps([gap(r, r["collapsed_point"])])]
        for label, _ in models:
            key = "loss_exact" if label == "linear" else "loss"
            line.append(_gaps([gap(r, x[key]) for x in r["runs"][label]]))
        table.append(line)
    se = max(x["loss_se"] / abs(r["optimal_loss"]) for r in rows for label, _ in models[1:]
             for x in r["runs"][label])
    say("\nFinal loss - L*, in % of L* (docs/theory.md §1 convention; mean [range] over seeds; "
        "linear: exact expected loss; MLP: Monte Carlo, standard error <= "
        f"{100 * se:.3f}%; 'all collapsed' = every dim at the prior, L = tr A + d beta):")
    say(text_table(head, table))

    fracs = (0.1, 0.25, 0.5, 0.75, 1.0)
    head = ["beta", "model"] + [f"epoch {max(1, int(round(f * epochs)))}" for f in fracs] + [
        "change, last 10% (max over seeds)"]
    table = []
    for r in rows:
        for label, _ in models:
            c = r["runs"][label][0]["curve"]
            table.append([f"{r['beta']:g}", label]
                         + [f"{100 * gap(r, c[max(1, int(round(f * epochs))) - 1]):+.2f}" for f in fracs]
                         + [f"{max(abs(x['flat']) for x in r['runs'][label]):.1e}"])
    say("\nConvergence: training loss - L* in % of L* along the loss curve (seed 0), and the relative "
        "change of the loss over the last 10% of the epochs:")
    say(text_table(head, table))
    if long_check:
        label = models[1][0]
        head = ["beta", f"{label} {epochs} ep: KL", "AU", "loss - L*", f"{2 * epochs} ep: KL", "AU",
                "loss - L*"]
        table = [[f"{r['beta']:g}", r["runs"][label][0]["collapsed_kl"],
                  r["runs"][label][0]["collapsed_au"], _gaps([gap(r, r["runs"][label][0]["loss"])]),
                  r["long"]["collapsed_kl"], r["long"]["collapsed_au"], _gaps([gap(r, r["long"]["loss"])])]
                 for r in rows]
        say(f"\nTwice the epochs ({label}, seed 0): do the counts and the loss move?")
        say(text_table(head, table))

    verdict = _verdict(rows, models)
    for line in verdict["lines"]:
        say(line)
    return verdict


def _verdict(rows, models):
    """What the numbers say, computed (never written by hand): lower bound, direction, traps."""
    lines = []
    nonlinear = [label for label, _ in models[1:]]
    lower = {rule: all(x[f"collapsed_{rule}"] >= r[f"collapsed_{rule}"] for r in rows
                       for label in nonlinear for x in r["runs"][label]) for rule in ("kl", "au")}
    equal = [r["beta"] for r in rows if all(x["collapsed_kl"] == r["collapsed_kl"]
                                             for label in nonlinear for x in r["runs"][label])]
    below = [r["beta"] for r in rows if any(x["loss"] < r["optimal_loss"] - 3 * x["loss_se"]
                                             for label in nonlinear for x in r["runs"][label])]
    trapped = [r["beta"] for r in rows if any(
        x["collapsed_kl"] == len(x["kl"]) and r["collapsed"] < len(x["kl"])
        for label in nonlinear for x in r["runs"][label])]
    lin_ok = all(abs(x["collapsed_kl"] - r["collapsed_kl"]) <= 1 for r in rows
                 for x in r["runs"]["linear"])
    worst_lin = max((x["loss_exact"] - r["optimal_loss"]) / abs(r["optimal_loss"]) for r in rows
                    for x in r["runs"]["linear"])
    lines.append(f"\nlinear prediction (KL rule) a lower bound on the MLPs' collapsed count at every "
                 f"beta and seed: {'yes' if lower['kl'] else 'no'} (AU rule: "
                 f"{'yes' if lower['au'] else 'no'})")
    lines.append("betas where every MLP run has exactly the predicted count (KL rule): "
                 + (", ".join(f"{b:g}" for b in equal) or "none"))
    lines.append("betas where an MLP ends below the linear optimum L* (beyond 3 standard errors): "
                 + (", ".join(f"{b:g}" for b in below) or "none"))
    lines.append("betas where an MLP collapses every dim although the linear optimum keeps some: "
                 + (", ".join(f"{b:g}" for b in trapped) or "none"))
    lines.append(f"linear SGD within 1 dim of the prediction (KL rule) everywhere: "
                 f"{'yes' if lin_ok else 'no'}; its loss at most {100 * worst_lin:.2f}% above L*")
    return dict(lines=lines, lower_bound=lower, equal=equal, below_optimum=below, trapped=trapped,
                linear_ok=lin_ok, worst_linear_gap=worst_lin)


def main(fast=False, verbose=True, save=None, show=None, **options):
    """Run the measurement (``fast``: 2 betas, 40 epochs, one small net; what the tests run).

    ``options`` (widths, depth, epochs, seeds, linear_seeds, betas, datasets, long_check, mc)
    override the per-dataset defaults (:data:`FULL`, :data:`FAST`); ``save``: also write the
    numbers to this JSON file; ``show``: print the tables of such a file instead of training. Returns ``{"skipped": True}`` without torch, else
    ``{"skipped": False, "datasets": [one dict per dataset]}``.
    """
    say = print if verbose else (lambda *a, **k: None)
    if show:
        with open(show) as fh:
            saved = json.load(fh)
        for result in saved["datasets"]:
            render(result, say)
        return saved
    try:
        require_torch()
    except ImportError:
        say(SKIP_MESSAGE)
        return dict(skipped=True)
    torch.set_num_threads(1)  # the machine's cores are shared
    table = FAST if fast else FULL
    names = options.pop("datasets", None) or tuple(table)
    options = {k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items()
               if v is not None}
    t0, c0 = time.perf_counter(), time.process_time()
    out = []
    for name in names:
        cfg = dict(table.get(name, FULL[name]), **options)
        out.append(sweep(name, say=say, **cfg))
    say(f"[{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} s CPU]")
    result = dict(skipped=False, datasets=out)
    if save:
        with open(save, "x") as fh:  # never overwrite a file
            json.dump(result, fh, default=_plain, indent=1)
    return result


def _plain(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(type(obj).__name__)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true",
                    help="2 betas, 40 epochs, width 32, one seed, digits only (what the tests run)")
    ap.add_argument("--widths", type=int, nargs="+", help="MLP widths (default 64 256; manifold 64)")
    ap.add_argument("--depth", type=int, help="hidden layers of each MLP (default 2)")
    ap.add_argument("--epochs", type=int, help="epochs (default 500)")
    ap.add_argument("--seeds", type=int, help="seeds per MLP and beta (default 2)")
    ap.add_argument("--linear-seeds", type=int, help="seeds of the linear VAE (default 1)")
    ap.add_argument("--betas", type=float, nargs="+", help="betas (default: per dataset)")
    ap.add_argument("--datasets", nargs="+", choices=sorted(LATENT), help="default: both")
    ap.add_argument("--no-long-check", dest="long_check", action="store_false", default=None,
                    help="skip the second training with twice the epochs")
    ap.add_argument("--save", metavar="FILE.json", help="also write the numbers here (a new file)")
    ap.add_argument("--show", metavar="FILE.json", help="print the tables of a saved run (no torch "
                    "needed, nothing trained)")
    args = vars(ap.parse_args())
    fast = args.pop("fast")
    if args["save"] and os.path.exists(args["save"]):
        sys.exit(f"error: --save {args['save']!r} exists; refusing to overwrite it")
    main(fast=fast, **args)
    sys.exit(0)

"""Stochastic training mode: the practitioner's view of the same linear models.

:func:`train_sgd` trains a linear VAE / CVAE / two-latent hierarchical VAE on the data themselves
(not on their second moments) with the reparameterised stochastic beta-ELBO: minibatches, noise
``eps ~ N(0, I)`` sampled at every step, the KL terms in closed form, Adam written in NumPy, and
gradients of the *sampled* loss derived by hand (:func:`sampled_loss` returns them; the tests check
them against finite differences at fixed noise).

The per-sample loss is ``2 eta_dec^2 * (-ELBO_beta)`` with the same constants dropped as in
THEORY.md section 1, so its expectation over the noise and the data is exactly the loss of
:mod:`vaetheory.losses` on the data's second-moment matrix:

* VAE: ``||x - U z||^2 + beta c^2 (||W x||^2 + tr Sigma) - kappa log|Sigma|``, ``z = W x + Sigma^{1/2} eps``.
* CVAE: ``||y - U1 z - U2 x||^2 + beta c^2 (||W1 x + W2 y||^2 + tr Sigma) - kappa log|Sigma|``.
* hierarchical: ``||x - U1 z1||^2 + beta1 (||z1 - U2 z2||^2 [- eta_dec^2 log|Sigma1|])
  + beta2 (c^2 (||W2 z1||^2 + tr Sigma2) - eta_dec^2 log|Sigma2|)`` with ``z1 = W1 x + Sigma1^{1/2} eps1``,
  ``z2 = W2 z1 + Sigma2^{1/2} eps2`` (the bracketed entropy term of q(z1|x) only when Sigma1 is learned).

With ``center=True`` (default) the data are centred first: the model with encoder and decoder
biases is exactly the bias-free model on centred data (THEORY.md section 0), and the prediction
uses the covariance. Reported, after training: singular values of every map (encoders in whitened
coordinates, as in :class:`~vaetheory.theory.Solution`) next to the closed-form prediction, the
per-dimension KL of the posterior from the prior averaged over the data, active units
(AU: ``Cov_x(E[z|x])_jj > 0.01``, Burda et al. 2016) and the number of collapsed dims
(KL below ``kl_threshold``; with a fixed encoder variance only the mean part of the KL,
``E[mu_j^2] / (2 eta_enc^2)``, can vanish, so that part is used).
Stochastic training is slower and noisier than the exact checker (:mod:`vaetheory.checker`); it
answers "does ordinary training land where the theory says", not "is the theory right".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from ._validation import NotCoveredError, latent_dim as _latent_dim, positive

__all__ = ["SGDResult", "default_lr", "sampled_loss", "train_sgd"]

LABEL = "stochastic training (minibatch reparameterised beta-ELBO, Adam)"


# --------------------------------------------------------------------------------------------
# sampled loss and its hand-derived gradient


def _hyper(model, variance, hyper):
    """Scalar hyperparameters with defaults; returns a dict of floats (sigma vectors as arrays)."""
    h = dict(hyper)
    out = {}
    if model in ("vae", "cvae"):
        for k in ("beta", "eta_enc", "eta_dec"):
            out[k] = float(positive(k, h.pop(k, 1.0)))
        if variance == "fixed":
            if h.get("sigma") is None:
                raise ValueError("sigma is required with a fixed encoder variance")
            out["sigma"] = positive("sigma", h.pop("sigma"))
        else:
            h.pop("sigma", None)
    else:
        for k in ("beta1", "beta2", "eta_enc", "eta_dec"):
            out[k] = float(positive(k, h.pop(k, 1.0)))
        if variance != "both-learnable":
            out["sigma1"] = positive("sigma1", h.pop("sigma1", 1.0))
        else:
            h.pop("sigma1", None)
        if variance == "sigma2-fixed":
            out["sigma2"] = positive("sigma2", h.pop("sigma2", 1.0))
        else:
            h.pop("sigma2", None)
    h = {k: v for k, v in h.items() if v is not None}
    if h:
        raise ValueError(f"unknown hyperparameter(s) for {model}/{variance}: {', '.join(sorted(h))}")
    return out


def _learned_variances(model, variance):
    if model in ("vae", "cvae"):
        return ("log_var",) if variance == "learnable" else ()
    return {"sigma2-learnable": ("log_var2",), "sigma2-fixed": (),
            "both-learnable": ("log_var1", "log_var2")}[variance]


def sampled_loss(model, params, batch, eps, hyper, *, learned=(), grad=True):
    """Mean over a minibatch of the sampled per-sample loss, and its gradient.

    Parameters
    ----------
    model : {"vae", "cvae", "mhvae"}
    params : dict
        ``W, U, log_var`` (vae); ``W1, W2, U1, U2, log_var`` (cvae);
        ``W1, U1, W2, U2, log_var1, log_var2`` (mhvae). Matrices act on column vectors.
    batch : ndarray (n, D) or tuple (x (n, D0), y (n, D2)) for the CVAE
    eps : ndarray (n, d1) or tuple (eps1 (n, d1), eps2 (n, d2)) for the hierarchical VAE
    hyper : dict of floats (``beta, eta_enc, eta_dec`` or ``beta1, beta2, eta_enc, eta_dec``)
    learned : names of the log-variance parameters that are trained (others are held fixed; the
        entropy term of q(z1|x) is included only when ``log_var1`` is learned).

    Returns
    -------
    float, or (float, dict of gradients) with ``grad=True`` (gradients only for ``params`` keys).
    """
    if model == "vae":
        return _vae_sampled(params, batch, eps, hyper, grad)
    if model == "cvae":
        return _cvae_sampled(params, batch, eps, hyper, grad)
    if model == "mhvae":
        return _mhvae_sampled(params, batch, eps, hyper, "log_var1" in learned, grad)
    raise ValueError(f"unknown model {model!r}")


def _vae_sampled(p, X, eps, h, grad):
    W, U, lv = p["W"], p["U"], p["log_var"]
    n = X.shape[0]
    b, ee, ed = h["beta"], h["eta_enc"], h["eta_dec"]
    bc2, kappa = b * (ed / ee) ** 2, b * ed ** 2
    s = np.exp(0.5 * lv)
    mu = X @ W.T                       # (n, d1)
    z = mu + eps * s
    r = X - z @ U.T                    # (n, D)
    loss = (np.sum(r * r) + bc2 * np.sum(mu * mu)) / n + bc2 * np.sum(s * s) - kappa * np.sum(lv)
    if not grad:
        return float(loss)
    gz = -2.0 * (r @ U) / n            # d loss / d z, per sample (already / n)
    gmu = gz + 2.0 * bc2 * mu / n
    g = {"W": gmu.T @ X, "U": -2.0 * (r.T @ z) / n,
         "log_var": 0.5 * s * np.sum(gz * eps, axis=0) + bc2 * s * s - kappa}
    return float(loss), g


def _cvae_sampled(p, batch, eps, h, grad):
    x, y = batch
    W1, W2, U1, U2, lv = p["W1"], p["W2"], p["U1"], p["U2"], p["log_var"]
    n = x.shape[0]
    b, ee, ed = h["beta"], h["eta_enc"], h["eta_dec"]
    bc2, kappa = b * (ed / ee) ** 2, b * ed ** 2
    s = np.exp(0.5 * lv)
    mu = x @ W1.T + y @ W2.T
    z = mu + eps * s
    r = y - z @ U1.T - x @ U2.T
    loss = (np.sum(r * r) + bc2 * np.sum(mu * mu)) / n + bc2 * np.sum(s * s) - kappa * np.sum(lv)
    if not grad:
        return float(loss)
    gz = -2.0 * (r @ U1) / n
    gmu = gz + 2.0 * bc2 * mu / n
    g = {"W1": gmu.T @ x, "W2": gmu.T @ y, "U1": -2.0 * (r.T @ z) / n, "U2": -2.0 * (r.T @ x) / n,
         "log_var": 0.5 * s * np.sum(gz * eps, axis=0) + bc2 * s * s - kappa}
    return float(loss), g


def _mhvae_sampled(p, X, eps, h, entropy1, grad):
    e1, e2 = eps
    W1, U1, W2, U2 = p["W1"], p["U1"], p["W2"], p["U2"]
    lv1, lv2 = p["log_var1"], p["log_var2"]
    n = X.shape[0]
    b1, b2, ee, ed = h["beta1"], h["beta2"], h["eta_enc"], h["eta_dec"]
    c2 = (ed / ee) ** 2
    s1, s2 = np.exp(0.5 * lv1), np.exp(0.5 * lv2)
    z1 = X @ W1.T + e1 * s1
    k = z1 @ W2.T
    z2 = k + e2 * s2
    r1 = X - z1 @ U1.T
    r2 = z1 - z2 @ U2.T
    loss = ((np.sum(r1 * r1) + b1 * np.sum(r2 * r2) + b2 * c2 * np.sum(k * k)) / n
            + b2 * c2 * np.sum(s2 * s2) - b2 * ed ** 2 * np.sum(lv2))
    if entropy1:
        loss -= b1 * ed ** 2 * np.sum(lv1)
    if not grad:
        return float(loss)
    gz2 = -2.0 * b1 * (r2 @ U2) / n
    gk = gz2 + 2.0 * b2 * c2 * k / n
    gz1 = -2.0 * (r1 @ U1) / n + 2.0 * b1 * r2 / n + gk @ W2
    g = {"W1": gz1.T @ X, "U1": -2.0 * (r1.T @ z1) / n,
         "W2": gk.T @ z1, "U2": -2.0 * b1 * (r2.T @ z2) / n,
         "log_var1": 0.5 * s1 * np.sum(gz1 * e1, axis=0) - (b1 * ed ** 2 if entropy1 else 0.0),
         "log_var2": 0.5 * s2 * np.sum(gz2 * e2, axis=0) + b2 * c2 * s2 * s2 - b2 * ed ** 2}
    return float(loss), g


# --------------------------------------------------------------------------------------------
# result


@dataclass
class SGDResult:
    """Outcome of :func:`train_sgd` (see the module docstring for every measure).

    ``singular_values`` / ``predicted_singular_values`` are keyed by map name as in
    :class:`~vaetheory.theory.Solution`; ``kl``, ``active_units``, ``collapsed`` by latent name.
    ``predicted_*`` are None for settings without a closed form.
    """

    model: str
    variance: str
    singular_values: Dict[str, np.ndarray]
    predicted_singular_values: Optional[Dict[str, np.ndarray]]
    posterior_std: Dict[str, np.ndarray]
    predicted_posterior_std: Optional[Dict[str, np.ndarray]]
    kl: Dict[str, np.ndarray]
    mean_second_moment: Dict[str, np.ndarray]
    active_units: Dict[str, int]
    collapsed: Dict[str, int]
    predicted_collapsed: Optional[Dict[str, tuple]]
    exact_loss: float
    optimal_loss: Optional[float]
    loss_history: np.ndarray
    epochs: int
    steps: int
    seconds: float
    params: Dict[str, np.ndarray] = field(repr=False, default_factory=dict)
    label: str = LABEL

    @property
    def singular_value_error(self):
        """Per map, max |learned - predicted| of the sorted singular values (None if no prediction)."""
        if self.predicted_singular_values is None:
            return None
        return {k: float(np.max(np.abs(v - self.predicted_singular_values[k]), initial=0.0))
                for k, v in self.singular_values.items() if k in self.predicted_singular_values}

    def to_dict(self):
        def arr(d):
            return None if d is None else {k: np.asarray(v).tolist() for k, v in d.items()}

        return {
            "label": self.label, "model": self.model, "variance": self.variance,
            "singular_values": arr(self.singular_values),
            "predicted_singular_values": arr(self.predicted_singular_values),
            "singular_value_error": self.singular_value_error,
            "posterior_std": arr(self.posterior_std),
            "predicted_posterior_std": arr(self.predicted_posterior_std),
            "kl": arr(self.kl),
            "active_units": dict(self.active_units), "collapsed": dict(self.collapsed),
            "predicted_collapsed": (None if self.predicted_collapsed is None else
                                    {k: [int(a), int(b)] for k, (a, b) in self.predicted_collapsed.items()}),
            "exact_loss": self.exact_loss, "optimal_loss": self.optimal_loss,
            "loss_gap": (None if self.optimal_loss is None else
                         (self.exact_loss - self.optimal_loss) / max(1.0, abs(self.optimal_loss))),
            "epochs": self.epochs, "steps": self.steps, "seconds": self.seconds,
        }


# --------------------------------------------------------------------------------------------
# training


def _as_float_rows(X, name):
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    elif X.ndim > 2:
        X = X.reshape(X.shape[0], -1)
    if X.shape[0] < 2 or X.shape[1] == 0 or not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be a finite (N, D) array with N >= 2, got shape {X.shape}")
    return X


def _sv(M):
    return np.linalg.svd(M, compute_uv=False) if M.size else np.zeros(0)


def _pad(v, d):
    out = np.zeros(d)
    out[:min(d, v.size)] = v[:d]
    return out


def _psd_sqrt(M):
    w, P = np.linalg.eigh(0.5 * (M + M.T))
    return (P * np.sqrt(np.maximum(w, 0.0))) @ P.T


def default_lr(X, y=None, center=True, factor=0.02):
    """A step size that follows the data scale: ``factor`` times the RMS scale of the data the
    decoder reconstructs (``y`` for the CVAE, else ``X``; per-feature std if centred, else the raw
    root mean square). Adam's steps are in parameter units and decoder entries are of the order
    of that scale, so a fixed ``lr`` is too slow on raw pixels and too coarse on unit-scale data."""
    Z = np.asarray(X if y is None else y, dtype=np.float64)
    ms = np.mean(np.var(Z, axis=0)) if center else np.mean(Z ** 2)
    return factor * max(float(np.sqrt(ms)), 1e-3)


def train_sgd(model, variance, X, latent_dim, latent_dim2=None, *, y=None, epochs=200,
              batch_size=64, lr=0.03, lr_final=None, seed=0, center=True, kl_threshold=0.01,
              au_threshold=0.01, init_scale=0.1, progress: Optional[Callable[[int], None]] = None,
              **hyper) -> SGDResult:
    """Train a linear model by minibatch Adam on the sampled beta-ELBO; compare with the theory.

    Parameters
    ----------
    model, variance : str
        ``vae``/``cvae`` with ``learnable``/``fixed``; ``mhvae`` with ``sigma2-learnable``,
        ``sigma2-fixed`` (both covered by the theory) or ``both-learnable`` (Sigma1 learned too: an
        open setting, no prediction; its loss is unbounded below when beta1 > beta2, see
        :func:`vaetheory.checker.numerical_optimum`, so training then drifts instead of settling).
    X : ndarray (N, D)
        The data (VAE, hierarchical) or the condition x (CVAE, with ``y=``). A tuple ``(x, y)`` is
        accepted for the CVAE too.
    latent_dim, latent_dim2 : int
    epochs, batch_size, lr, seed : training schedule. The step size decays geometrically from
        ``lr`` to ``lr_final`` (default ``lr / 100``) over training: a decaying step is what lets the
        noisy iterate settle near the optimum. Adam's steps are in parameter units, so ``lr`` should
        follow the data scale (decoder entries are of the order of the data's standard deviation).
    center : bool
        Centre the data (model with biases) or not (bias-free model on raw second moments).
    kl_threshold, au_threshold : float
        A dim is collapsed if its KL (mean part for fixed variances) is below ``kl_threshold``; it is
        an active unit if ``Cov_x(E[z_j|x]) > au_threshold``.
    init_scale : float
        Std of the random initial matrix entries relative to the natural scale of each map.
    progress : callable(int), optional
        Called with 1 after each epoch.
    **hyper : beta, eta_enc, eta_dec, sigma (fixed VAE/CVAE); beta1, beta2, eta_enc, eta_dec,
        sigma1, sigma2 (hierarchical) -- scalars (sigma / sigma1 may be one value per latent dim).
    """
    t0 = time.perf_counter()
    if model not in ("vae", "cvae", "mhvae"):
        raise ValueError(f"unknown model {model!r}; use vae, cvae or mhvae")
    allowed = {"vae": ("learnable", "fixed"), "cvae": ("learnable", "fixed"),
               "mhvae": ("sigma2-learnable", "sigma2-fixed", "both-learnable")}[model]
    if variance not in allowed:
        raise ValueError(f"variance for {model} must be one of {', '.join(allowed)}, got {variance!r}")
    h = _hyper(model, variance, hyper)
    d1 = _latent_dim("latent_dim", latent_dim)
    d2 = d1 if latent_dim2 is None else _latent_dim("latent_dim2", latent_dim2)
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        _latent_dim(name, v)
    lr = float(positive("lr", lr))
    lr_final = lr / 100.0 if lr_final is None else float(positive("lr_final", lr_final))
    rng = np.random.default_rng(seed)

    if model == "cvae":
        if y is None:
            if isinstance(X, (tuple, list)) and len(X) == 2:
                X, y = X
            else:
                raise ValueError("the CVAE needs paired samples: train_sgd('cvae', ..., x, d, y=y)")
        x = _as_float_rows(X, "x")
        yy = _as_float_rows(y, "y")
        if x.shape[0] != yy.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {yy.shape[0]}")
        data = np.concatenate([x, yy], axis=1)
        D0 = x.shape[1]
    else:
        data = _as_float_rows(X, "X")
        D0 = data.shape[1]
    raw = data
    if center:
        data = data - data.mean(axis=0)
    N, D = data.shape
    M = data.T @ data / N  # second moments the exact loss and the whitening use
    M = 0.5 * (M + M.T)

    # ---- initial parameters: natural scales so U W ~ identity-sized maps
    scale_x = np.sqrt(max(np.trace(M), 1e-300) / D)
    ee = h["eta_enc"]

    def mat(r, c, s):
        return init_scale * s * rng.standard_normal((r, c)) / np.sqrt(max(c, 1))

    learned = _learned_variances(model, variance)
    if model == "vae":
        params = {"W": mat(d1, D, ee / scale_x), "U": mat(D, d1, scale_x / ee * np.sqrt(d1)),
                  "log_var": np.log(_pad_sigma(h, "sigma", d1, ee) ** 2)}
    elif model == "cvae":
        D2 = D - D0
        sx = np.sqrt(max(np.trace(M[:D0, :D0]), 1e-300) / D0)
        sy = np.sqrt(max(np.trace(M[D0:, D0:]), 1e-300) / D2)
        params = {"W1": mat(d1, D0, ee / sx), "W2": mat(d1, D2, ee / sy),
                  "U1": mat(D2, d1, sy / ee * np.sqrt(d1)), "U2": mat(D2, D0, sy / sx * np.sqrt(D0)),
                  "log_var": np.log(_pad_sigma(h, "sigma", d1, ee) ** 2)}
    else:
        s1 = _pad_sigma(h, "sigma1", d1, ee)
        params = {"W1": mat(d1, D, ee / scale_x), "U1": mat(D, d1, scale_x / ee * np.sqrt(d1)),
                  "W2": mat(d2, d1, 1.0), "U2": mat(d1, d2, np.sqrt(d2)),
                  "log_var1": np.log(s1 ** 2), "log_var2": np.log(_pad_sigma(h, "sigma2", d2, ee) ** 2)}
    trained = [k for k in params if not k.startswith("log_var")] + list(learned)

    # ---- Adam
    b1a, b2a, eps_a = 0.9, 0.999, 1e-8
    m1 = {k: np.zeros_like(params[k]) for k in trained}
    m2 = {k: np.zeros_like(params[k]) for k in trained}
    steps_per_epoch = max(1, -(-N // batch_size))
    total = epochs * steps_per_epoch
    decay = (lr_final / lr) ** (1.0 / max(total - 1, 1))
    history = np.zeros(epochs)
    step = 0
    for epoch in range(epochs):
        perm = rng.permutation(N)
        acc = 0.0
        for start in range(0, N, batch_size):
            idx = perm[start:start + batch_size]
            B = data[idx]
            n = B.shape[0]
            if model == "vae":
                batch, eps = B, rng.standard_normal((n, d1))
            elif model == "cvae":
                batch, eps = (B[:, :D0], B[:, D0:]), rng.standard_normal((n, d1))
            else:
                batch, eps = B, (rng.standard_normal((n, d1)), rng.standard_normal((n, d2)))
            loss, g = sampled_loss(model, params, batch, eps, h, learned=learned)
            acc += loss * n
            step += 1
            a = lr * decay ** (step - 1)
            corr1, corr2 = 1.0 - b1a ** step, 1.0 - b2a ** step
            for k in trained:
                m1[k] = b1a * m1[k] + (1 - b1a) * g[k]
                m2[k] = b2a * m2[k] + (1 - b2a) * g[k] * g[k]
                params[k] = params[k] - a * (m1[k] / corr1) / (np.sqrt(m2[k] / corr2) + eps_a)
        history[epoch] = acc / N
        if progress is not None:
            progress(1)

    return _summarise(model, variance, params, h, M, D0, d1, d2, raw, center, history, epochs,
                      step, kl_threshold, au_threshold, time.perf_counter() - t0)


def _pad_sigma(h, name, d, default):
    if name not in h:
        return np.full(d, float(default))
    s = np.asarray(h[name], dtype=float).ravel()
    if s.size == 1:
        return np.full(d, float(s[0]))
    if s.size != d:
        raise ValueError(f"{name} has {s.size} entries but the latent dim is {d}")
    return s.copy()


def _kl_dims(mean_sq, std, ee):
    """Per-dim KL(N(mu, s^2) || N(0, ee^2)) averaged over mu with E[mu^2] = mean_sq."""
    v = (std / ee) ** 2
    return 0.5 * (v + mean_sq / ee ** 2 - 1.0 - np.log(v))


def _summarise(model, variance, p, h, M, D0, d1, d2, raw, center, history, epochs, steps,
               kl_threshold, au_threshold, seconds):
    from . import losses
    from .moments import empirical_residual_spectrum, empirical_spectrum
    from .theory import solve

    ee = h["eta_enc"]
    sv, std, kl, msq, au, coll = {}, {}, {}, {}, {}, {}
    if model == "vae":
        A = M
        root = _psd_sqrt(A)
        sv["encoder"] = _pad(_sv(p["W"] @ root), d1)
        sv["decoder"] = _pad(_sv(p["U"]), d1)
        s = np.exp(0.5 * p["log_var"])
        msq["z"] = np.einsum("ij,jk,ik->i", p["W"], A, p["W"])
        exact = losses.vae_loss(A, p["W"], p["U"], p["log_var"], beta=h["beta"],
                                eta_enc=ee, eta_dec=h["eta_dec"])
    elif model == "cvae":
        G = np.concatenate([p["W1"], p["W2"]], axis=1)
        sv["encoder"] = _pad(_sv(G @ _psd_sqrt(M)), d1)
        sv["decoder"] = _pad(_sv(p["U1"]), d1)
        s = np.exp(0.5 * p["log_var"])
        msq["z"] = np.einsum("ij,jk,ik->i", G, M, G)
        exact = losses.cvae_loss(M, D0, p["W1"], p["W2"], p["U1"], p["U2"], p["log_var"],
                                 beta=h["beta"], eta_enc=ee, eta_dec=h["eta_dec"])
    else:
        A = M
        sv["encoder1"] = _pad(_sv(p["W1"] @ _psd_sqrt(A)), d1)
        sv["decoder1"] = _pad(_sv(p["U1"]), d1)
        sv["encoder2"] = _pad(_sv(p["W2"]), d2)
        sv["decoder2"] = _pad(_sv(p["U2"]), d2)
        s1, s = np.exp(0.5 * p["log_var1"]), np.exp(0.5 * p["log_var2"])
        msq["z1"] = np.einsum("ij,jk,ik->i", p["W1"], A, p["W1"])
        cov1 = p["W1"] @ A @ p["W1"].T + np.diag(s1 ** 2)
        msq["z2"] = np.einsum("ij,jk,ik->i", p["W2"], cov1, p["W2"])
        exact = losses.mhvae_loss(A, p["W1"], p["U1"], p["W2"], p["U2"], p["log_var1"],
                                  p["log_var2"], beta1=h["beta1"], beta2=h["beta2"], eta_enc=ee,
                                  eta_dec=h["eta_dec"],
                                  sigma1_entropy=(variance == "both-learnable"))
        au["z1"] = int(np.count_nonzero(msq["z1"] > au_threshold))
        coll["z1"] = int(np.count_nonzero(msq["z1"] / (2 * ee ** 2) < kl_threshold))
        if variance == "both-learnable":
            std["z1"] = np.sort(s1)[::-1]
    zname = "z" if model != "mhvae" else "z2"
    fixed = (variance == "fixed") or (variance == "sigma2-fixed")
    kl[zname] = _kl_dims(msq[zname], s, ee)
    au[zname] = int(np.count_nonzero(msq[zname] > au_threshold))
    mean_part = msq[zname] / (2 * ee ** 2)
    coll[zname] = int(np.count_nonzero((mean_part if fixed else kl[zname]) < kl_threshold))
    if not fixed:
        std[zname] = np.sort(s)[::-1]

    # ---- prediction from the closed form on the same data's spectrum
    pred_sv = pred_std = pred_coll = None
    optimal = None
    if not (model == "mhvae" and variance == "both-learnable"):
        if model == "cvae":
            spec = empirical_residual_spectrum(raw[:, :D0], raw[:, D0:], center=center)
        else:
            spec = empirical_spectrum(raw, center=center)
        extra = {"latent_dim2": d2} if model == "mhvae" else {}
        try:
            sol = solve(model, variance, spec, d1, **extra, **h)
        except NotCoveredError:  # e.g. per-dimension sigma1: no closed form
            sol = None
        if sol is not None:
            pred_sv = {k: np.asarray(v) for k, v in sol.singular_values.items()}
            pred_std = {k: np.asarray(v) for k, v in sol.posterior_std.items()} or None
            pred_coll = {k: (int(sol.collapsed_min[k]), int(sol.collapsed_max[k]))
                         for k in sol.latent_dims}
            optimal = float(sol.optimal_loss)
    return SGDResult(model=model, variance=variance, singular_values=sv,
                     predicted_singular_values=pred_sv, posterior_std=std,
                     predicted_posterior_std=pred_std, kl=kl, mean_second_moment=msq,
                     active_units=au, collapsed=coll, predicted_collapsed=pred_coll,
                     exact_loss=float(exact), optimal_loss=optimal, loss_history=history,
                     epochs=epochs, steps=steps, seconds=seconds, params=p)

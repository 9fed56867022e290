"""Stochastic training mode: the practitioner's view of the same linear models.

:func:`train_sgd` trains a linear VAE / CVAE / two-latent hierarchical VAE on the data themselves
(not on their second moments) with the reparameterised stochastic beta-ELBO: minibatches, noise
``eps ~ N(0, I)`` sampled at every step, the KL terms in closed form, Adam written in NumPy, and
gradients of the *sampled* loss derived by hand (:func:`sampled_loss` returns them; the tests check
them against finite differences at fixed noise).

The per-sample loss is ``2 eta_dec^2 * (-ELBO_beta)`` with the same constants dropped as in
docs/theory.md §1, so its expectation over the noise and the data is exactly the loss of
:mod:`vaetheory.losses` on the data's second-moment matrix:

* VAE: ``||x - U z||^2 + beta c^2 (||W x||^2 + tr Sigma) - kappa log|Sigma|``, ``z = W x + Sigma^{1/2} eps``.
* CVAE: ``||y - U1 z - U2 x||^2 + beta c^2 (||W1 x + W2 y||^2 + tr Sigma) - kappa log|Sigma|``.
* hierarchical: ``||x - U1 z1||^2 + beta1 (||z1 - U2 z2||^2 [- eta_dec^2 log|Sigma1|])
  + beta2 (c^2 (||W2 z1||^2 + tr Sigma2) - eta_dec^2 log|Sigma2|)`` with ``z1 = W1 x + Sigma1^{1/2} eps1``,
  ``z2 = W2 z1 + Sigma2^{1/2} eps2`` (the bracketed entropy term of q(z1|x) only when Sigma1 is learned).

With ``center=True`` (default) the data are centred first: the model with encoder and decoder
biases is exactly the bias-free model on centred data (docs/theory.md §1.5), and the prediction
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

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from . import settings as _settings
from ._numerics import Adam, active_units, kl_per_dim, psd_sqrt, sorted_singular_values
from ._validation import latent_dim as _latent_dim, positive
from .errors import NotCoveredError, ParameterError
from .losses import mhvae_constant, neg_elbo, vae_constant

__all__ = ["SGDResult", "default_lr", "default_encoder_lr", "sampled_loss", "train_sgd",
           "NOT_CONVERGED_GAP"]

LABEL = "stochastic training (minibatch reparameterised beta-ELBO, Adam)"

#: training "clearly did not converge" when its exact loss ends more than this far above the
#: closed-form optimum, relative to max(1, |optimum|) (a quarter: far outside SGD's noise floor on
#: every example of examples/, which end within 1e-2)
NOT_CONVERGED_GAP = 0.25

#: per model, the encoder maps that read the data (they get ``encoder_lr``; docs/theory.md §1)
_DATA_ENCODERS = {"vae": ("W",), "cvae": (), "mhvae": ("W1",)}


# --------------------------------------------------------------------------------------------
# sampled loss and its hand-derived gradient


def sampled_loss(model, params, batch, eps, hyper, *, learned=(), grad=True, recon=False):
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

    recon : bool
        Also return the sampled reconstruction part ``R`` of the loss (the term ``eta_dec^2``
        multiplies: ``||x - U z||^2``; hierarchical ``||x - U1 z1||^2 + beta1 ||z1 - U2 z2||^2``),
        averaged over the batch: what a learned decoder variance needs (docs/theory.md §12).

    Returns
    -------
    float, or (float, dict of gradients) with ``grad=True`` (gradients only for ``params`` keys);
    with ``recon=True`` one more entry, ``R``.
    """
    try:
        fn = _SAMPLED[model]
    except KeyError:
        raise ParameterError(f"unknown model {model!r}; use {', '.join(_SAMPLED)}") from None
    out = fn(params, batch, eps, hyper, "log_var1" in learned, grad)
    rec = out[-1]
    out = out[:-1]
    if recon:
        return (*out, rec)
    return out if grad else out[0]


def _vae_sampled(p, X, eps, h, _entropy1, grad):
    W, U, lv = p["W"], p["U"], p["log_var"]
    n = X.shape[0]
    b, ee, ed = h["beta"], h["eta_enc"], h["eta_dec"]
    bc2, kappa = b * (ed / ee) ** 2, b * ed ** 2
    s = np.exp(0.5 * lv)
    mu = X @ W.T                       # (n, d1)
    z = mu + eps * s
    r = X - z @ U.T                    # (n, D)
    rec = float(np.sum(r * r) / n)
    loss = (np.sum(r * r) + bc2 * np.sum(mu * mu)) / n + bc2 * np.sum(s * s) - kappa * np.sum(lv)
    if not grad:
        return float(loss), rec
    gz = -2.0 * (r @ U) / n            # d loss / d z, per sample (already / n)
    gmu = gz + 2.0 * bc2 * mu / n
    g = {"W": gmu.T @ X, "U": -2.0 * (r.T @ z) / n,
         "log_var": 0.5 * s * np.sum(gz * eps, axis=0) + bc2 * s * s - kappa}
    return float(loss), g, rec


def _cvae_sampled(p, batch, eps, h, _entropy1, grad):
    x, y = batch
    W1, W2, U1, U2, lv = p["W1"], p["W2"], p["U1"], p["U2"], p["log_var"]
    n = x.shape[0]
    b, ee, ed = h["beta"], h["eta_enc"], h["eta_dec"]
    bc2, kappa = b * (ed / ee) ** 2, b * ed ** 2
    s = np.exp(0.5 * lv)
    mu = x @ W1.T + y @ W2.T
    z = mu + eps * s
    r = y - z @ U1.T - x @ U2.T
    rec = float(np.sum(r * r) / n)
    loss = (np.sum(r * r) + bc2 * np.sum(mu * mu)) / n + bc2 * np.sum(s * s) - kappa * np.sum(lv)
    if not grad:
        return float(loss), rec
    gz = -2.0 * (r @ U1) / n
    gmu = gz + 2.0 * bc2 * mu / n
    g = {"W1": gmu.T @ x, "W2": gmu.T @ y, "U1": -2.0 * (r.T @ z) / n, "U2": -2.0 * (r.T @ x) / n,
         "log_var": 0.5 * s * np.sum(gz * eps, axis=0) + bc2 * s * s - kappa}
    return float(loss), g, rec


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
    rec = float((np.sum(r1 * r1) + b1 * np.sum(r2 * r2)) / n)
    if not grad:
        return float(loss), rec
    gz2 = -2.0 * b1 * (r2 @ U2) / n
    gk = gz2 + 2.0 * b2 * c2 * k / n
    gz1 = -2.0 * (r1 @ U1) / n + 2.0 * b1 * r2 / n + gk @ W2
    g = {"W1": gz1.T @ X, "U1": -2.0 * (r1.T @ z1) / n,
         "W2": gk.T @ z1, "U2": -2.0 * b1 * (r2.T @ z2) / n,
         "log_var1": 0.5 * s1 * np.sum(gz1 * e1, axis=0) - (b1 * ed ** 2 if entropy1 else 0.0),
         "log_var2": 0.5 * s2 * np.sum(gz2 * e2, axis=0) + b2 * c2 * s2 * s2 - b2 * ed ** 2}
    return float(loss), g, rec


_SAMPLED = {"vae": _vae_sampled, "cvae": _cvae_sampled, "mhvae": _mhvae_sampled}


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
    lr: Optional[float] = None
    encoder_lr: Optional[float] = None
    diverged_at_epoch: Optional[int] = None

    @property
    def diverged(self) -> bool:
        """Training stopped because the loss or a parameter stopped being finite."""
        return self.diverged_at_epoch is not None

    @property
    def loss_gap(self) -> Optional[float]:
        """(exact loss - optimum) / max(1, |optimum|); None without a closed form."""
        if self.optimal_loss is None:
            return None
        if self.diverged:
            return float("inf")
        return (self.exact_loss - self.optimal_loss) / max(1.0, abs(self.optimal_loss))

    @property
    def converged(self) -> Optional[bool]:
        """False when training clearly did not reach the optimum (it diverged, or its loss gap
        exceeds :data:`NOT_CONVERGED_GAP`); None when there is no closed form to compare with."""
        if self.diverged:
            return False
        gap = self.loss_gap
        return None if gap is None else bool(gap <= NOT_CONVERGED_GAP)
    learned: Dict[str, float] = field(default_factory=dict)
    predicted_learned: Optional[Dict[str, object]] = None
    decoder: str = "fixed"

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
            "loss_gap": self.loss_gap,
            "epochs": self.epochs, "steps": self.steps, "seconds": self.seconds,
            "lr": self.lr, "encoder_lr": self.encoder_lr,
            "diverged": self.diverged, "diverged_at_epoch": self.diverged_at_epoch,
            "converged": self.converged,
            **({"decoder": self.decoder, "learned": dict(self.learned),
                "predicted_learned": self.predicted_learned} if self.learned else {}),
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
        raise ParameterError(f"{name} must be a finite (N, D) array with N >= 2, got shape {X.shape}")
    return X


def _rms_scale(Z, center):
    Z = np.asarray(Z, dtype=np.float64)
    ms = np.mean(np.var(Z, axis=0)) if center else np.mean(Z ** 2)
    return max(float(np.sqrt(ms)), 1e-3)


def default_lr(X, y=None, center=True, factor=0.02):
    """A step size that follows the data scale: ``factor`` times the RMS scale of the data the
    decoder reconstructs (``y`` for the CVAE, else ``X``; per-feature std if centred, else the raw
    root mean square). Adam's steps are in parameter units and decoder entries are of the order
    of that scale, so a fixed ``lr`` is too slow on raw pixels and too coarse on unit-scale data."""
    return factor * _rms_scale(X if y is None else y, center)


def default_encoder_lr(model, X, center=True, eta_enc=1.0, factor=0.02):
    """The step of the encoder maps that read the data (``W``; the hierarchical VAE's ``W1``):
    ``factor * eta_enc / scale`` with ``scale`` the RMS scale of ``X`` -- the units of those maps
    are the inverse of the decoder's (the optimum has ``W ~ eta_enc / theta``, ``U ~ theta``,
    docs/theory.md §3), so one step for both is too coarse for ``W`` on data far from unit scale
    (raw wine: proline's std is 314; the shared step left the exact loss 4000x the optimum, the
    split one 4x; on the digits 4x closer too). None for the CVAE, whose shared step measured
    better (the step of ``train_sgd``'s ``lr`` is then used for every map)."""
    if not _DATA_ENCODERS.get(model):
        return None
    return factor * float(eta_enc) / _rms_scale(X, center)


def train_sgd(model, variance, X, latent_dim, latent_dim2=None, *, y=None, epochs=200,
              batch_size=64, lr=0.03, lr_final=None, encoder_lr=None, seed=0, center=True,
              kl_threshold=0.01,
              au_threshold=0.01, init_scale=0.1, progress: Optional[Callable[[int], None]] = None,
              prediction=None, decoder="fixed", **hyper) -> SGDResult:
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
    encoder_lr : float, optional
        A separate initial step for the encoder maps that read the data (``W``, ``W1``), decayed
        alike (:func:`default_encoder_lr`); default: ``lr`` for every map.
        If the loss or a parameter stops being finite (a step far too large), training stops there
        and the result says so (``diverged_at_epoch``; ``converged`` is False) instead of raising.
    center : bool
        Centre the data (model with biases) or not (bias-free model on raw second moments).
    kl_threshold, au_threshold : float
        A dim is collapsed if its KL (mean part for fixed variances) is below ``kl_threshold``; it is
        an active unit if ``Cov_x(E[z_j|x]) > au_threshold``.
    init_scale : float
        Std of the random initial matrix entries relative to the natural scale of each map.
    progress : callable(int), optional
        Called with 1 after each epoch.
    prediction : Point, optional
        The closed-form optimum to compare with (:meth:`Solution.at`); default: computed from
        the same data's spectrum.
    decoder : {"fixed", "learned"}
        ``"learned"``: the decoder variance is trained as ``log u`` too (no ``eta_dec``), on the
        full sampled negative beta-ELBO in nats, log-normaliser included (docs/theory.md §12.1);
        the result's ``learned`` holds the final ``eta_dec`` and ``u``.
    **hyper : beta, eta_enc, eta_dec, sigma (fixed VAE/CVAE); beta1, beta2, eta_enc, eta_dec,
        sigma1, sigma2 (hierarchical) -- scalars (sigma / sigma1 may be one value per latent dim).
    """
    t0 = time.perf_counter()
    setting = _settings.get(model, variance, decoder)
    d1 = _latent_dim("latent_dim", latent_dim)
    d2 = d1 if latent_dim2 is None else _latent_dim("latent_dim2", latent_dim2)
    h = _settings.point_hyper(setting, hyper, d1, d2 if setting.has_second_latent else None)
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        _latent_dim(name, v)
    lr = float(positive("lr", lr))
    lr_final = lr / 100.0 if lr_final is None else float(positive("lr_final", lr_final))
    if encoder_lr is not None:
        encoder_lr = float(positive("encoder_lr", encoder_lr))
    rng = np.random.default_rng(seed)

    if setting.spectrum_kind == "residual":
        if y is None:
            if isinstance(X, (tuple, list)) and len(X) == 2:
                X, y = X
            else:
                raise ParameterError("the CVAE needs paired samples: "
                                     "train_sgd('cvae', ..., x, d, y=y)")
        x = _as_float_rows(X, "x")
        yy = _as_float_rows(y, "y")
        if x.shape[0] != yy.shape[0]:
            raise ParameterError(f"x has {x.shape[0]} rows but y has {yy.shape[0]}")
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

    learned_u = setting.learned_decoder
    n_out = setting.gaussian_outputs(D, d1, D0, h)
    if learned_u:  # u = eta_dec^2 learned as log u, from the data's variance per element
        h = dict(h, eta_dec=np.sqrt(max(np.trace(M[D0:, D0:] if setting.spectrum_kind ==
                                                 "residual" else M) / n_out, 1e-300)))
    params = _init_params(setting, M, D0, d1, d2, h, init_scale, rng)
    learned = setting.learned_log_vars
    trained = [k for k in params if not k.startswith("log_var")] + list(learned)
    if learned_u:
        params["log_u"] = np.array(2.0 * np.log(h["eta_dec"]))
        trained.append("log_u")

    # ---- Adam with a geometrically decaying step (log u: its own, in log units)
    opt = Adam()
    steps_per_epoch = max(1, -(-N // batch_size))
    total = epochs * steps_per_epoch
    decay = (lr_final / lr) ** (1.0 / max(total - 1, 1))
    history = np.zeros(epochs)
    step = 0
    diverged = None
    enc = set(_DATA_ENCODERS.get(model, ())) if encoder_lr is not None else set()
    base = {k: (encoder_lr if k in enc else lr) for k in trained}
    if learned_u:
        base["log_u"] = LR_LOG_U
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        for epoch in range(epochs):
            perm = rng.permutation(N)
            acc = 0.0
            for start in range(0, N, batch_size):
                idx = perm[start:start + batch_size]
                B = data[idx]
                n = B.shape[0]
                if setting.spectrum_kind == "residual":
                    batch, eps = (B[:, :D0], B[:, D0:]), rng.standard_normal((n, d1))
                elif setting.has_second_latent:
                    batch, eps = B, (rng.standard_normal((n, d1)), rng.standard_normal((n, d2)))
                else:
                    batch, eps = B, rng.standard_normal((n, d1))
                loss, g = _minibatch_loss(setting, params, batch, eps, h,
                                          (D, D0, d1, d2, n_out))
                if not (math.isfinite(loss) and all(np.all(np.isfinite(g[k])) for k in trained)):
                    diverged = epoch
                    break
                acc += loss * n
                factor = decay ** step
                params = opt.step(params, {k: g[k] for k in trained},
                                  {k: v * factor for k, v in base.items()})
                step += 1
            if diverged is not None:
                history[epoch:] = np.nan
                break
            history[epoch] = acc / N
            if progress is not None:
                progress(1)
    if diverged is not None and progress is not None:
        progress(epochs - diverged)  # the bar ends where the run would have

    if diverged is not None:
        out = _diverged(setting, d1, d2, h, M, D0, raw, center, history, epochs, step,
                        time.perf_counter() - t0, prediction)
    else:
        out = _summarise(setting, params, h, M, D0, d1, d2, raw, center, history, epochs,
                         step, kl_threshold, au_threshold, time.perf_counter() - t0, prediction)
    out.lr, out.encoder_lr, out.diverged_at_epoch = lr, encoder_lr, diverged
    return out


def _minibatch_loss(setting, params, batch, eps, h, dims):
    """The sampled loss of a minibatch and its gradients: :func:`sampled_loss` (docs/theory.md §1
    convention), or with a learned decoder variance the full negative beta-ELBO in nats at
    ``u = exp(log_u)`` (§12.1): ``(L + C(u)) / (2u)``, the gradients of ``L`` divided by ``2u``,
    and ``d / d log u = n/2 - R/(2u)`` with the sampled reconstruction part ``R``."""
    learned = setting.learned_log_vars
    if not setting.learned_decoder:
        return sampled_loss(setting.model, params, batch, eps, h, learned=learned)
    D, D0, d1, d2, n_out = dims
    u = float(np.exp(params["log_u"]))
    hu = dict(h, eta_dec=np.sqrt(u))
    L, g, R = sampled_loss(setting.model, params, batch, eps, hu, learned=learned, recon=True)
    loss = neg_elbo(L, _constant(setting, u, D, D0, d1, d2, hu, params), u)
    g = {k: v / (2.0 * u) for k, v in g.items()}
    g["log_u"] = np.array(0.5 * n_out - R / (2.0 * u))
    return loss, g


#: Adam's initial step for log u (a learned decoder variance), decayed with the others: log u is
#: in log units whatever the data scale
LR_LOG_U = 0.02



def _constant(setting, u, D, D0, d1, d2, h, p):
    """The constant dropped from L at eta_dec^2 = u (docs/theory.md §1.4)."""
    if setting.has_second_latent:
        return mhvae_constant(u, D, d1, d2, h["beta1"], h["beta2"], h["eta_enc"], p["log_var1"])
    return vae_constant(u, D - (D0 if setting.spectrum_kind == "residual" else 0), d1, h["beta"],
                        h["eta_enc"])


def _init_params(setting, M, D0, d1, d2, h, init_scale, rng):
    """Random initial matrices at the natural scale of each map (so U W ~ identity-sized)."""
    ee = h["eta_enc"]

    def mat(r, c, s):
        return init_scale * s * rng.standard_normal((r, c)) / np.sqrt(max(c, 1))

    def log_var(name, d):
        sig = h.get(name)
        return np.log((np.full(d, ee) if sig is None else sig) ** 2)

    return _INIT[setting.model](M, D0, d1, d2, ee, mat, log_var)


def _init_vae(M, D0, d1, d2, ee, mat, log_var):
    sx = np.sqrt(max(np.trace(M), 1e-300) / M.shape[0])
    D = M.shape[0]
    return {"W": mat(d1, D, ee / sx), "U": mat(D, d1, sx / ee * np.sqrt(d1)),
            "log_var": log_var("sigma", d1)}


def _init_cvae(M, D0, d1, d2, ee, mat, log_var):
    D2 = M.shape[0] - D0
    sx = np.sqrt(max(np.trace(M[:D0, :D0]), 1e-300) / D0)
    sy = np.sqrt(max(np.trace(M[D0:, D0:]), 1e-300) / D2)
    return {"W1": mat(d1, D0, ee / sx), "W2": mat(d1, D2, ee / sy),
            "U1": mat(D2, d1, sy / ee * np.sqrt(d1)), "U2": mat(D2, D0, sy / sx * np.sqrt(D0)),
            "log_var": log_var("sigma", d1)}


def _init_mhvae(M, D0, d1, d2, ee, mat, log_var):
    sx = np.sqrt(max(np.trace(M), 1e-300) / M.shape[0])
    D = M.shape[0]
    return {"W1": mat(d1, D, ee / sx), "U1": mat(D, d1, sx / ee * np.sqrt(d1)),
            "W2": mat(d2, d1, 1.0), "U2": mat(d1, d2, np.sqrt(d2)),
            "log_var1": log_var("sigma1", d1), "log_var2": log_var("sigma2", d2)}


_INIT = {"vae": _init_vae, "cvae": _init_cvae, "mhvae": _init_mhvae}


def _measure_vae(p, M, D0, d1, d2, h):
    s = np.exp(0.5 * p["log_var"])
    return ({"encoder": sorted_singular_values(p["W"] @ psd_sqrt(M), d1),
             "decoder": sorted_singular_values(p["U"], d1)},
            {"z": np.einsum("ij,jk,ik->i", p["W"], M, p["W"])}, {"z": s}, {"z": h["eta_enc"]})


def _measure_cvae(p, M, D0, d1, d2, h):
    G = np.concatenate([p["W1"], p["W2"]], axis=1)
    s = np.exp(0.5 * p["log_var"])
    return ({"encoder": sorted_singular_values(G @ psd_sqrt(M), d1),
             "decoder": sorted_singular_values(p["U1"], d1)},
            {"z": np.einsum("ij,jk,ik->i", G, M, G)}, {"z": s}, {"z": h["eta_enc"]})


def _measure_mhvae(p, M, D0, d1, d2, h):
    s1, s2 = np.exp(0.5 * p["log_var1"]), np.exp(0.5 * p["log_var2"])
    cov1 = p["W1"] @ M @ p["W1"].T + np.diag(s1 ** 2)
    return ({"encoder1": sorted_singular_values(p["W1"] @ psd_sqrt(M), d1),
             "decoder1": sorted_singular_values(p["U1"], d1),
             "encoder2": sorted_singular_values(p["W2"], d2),
             "decoder2": sorted_singular_values(p["U2"], d2)},
            {"z1": np.einsum("ij,jk,ik->i", p["W1"], M, p["W1"]),
             "z2": np.einsum("ij,jk,ik->i", p["W2"], cov1, p["W2"])},
            {"z1": s1, "z2": s2}, {"z1": h["eta_enc"], "z2": h["eta_enc"]})


_MEASURES = {"vae": _measure_vae, "cvae": _measure_cvae, "mhvae": _measure_mhvae}


def _exact_loss(setting, p, M, D0, h, d1=None, d2=None):
    """The exact expected loss of the trained parameters (docs/theory.md §1); with a learned
    decoder variance the exact negative beta-ELBO in nats at the learned u (§12.1)."""
    kw = {k: h[k] for k in setting.axes}
    if setting.has_second_latent:
        kw["sigma1_entropy"] = setting.sigma1_entropy
    lead = (M, D0) if setting.spectrum_kind == "residual" else (M,)
    if not setting.learned_decoder:
        return setting.loss_function(*lead, *[p[n] for n in setting.parameters], **kw)
    u = float(np.exp(p["log_u"]))
    kw["eta_dec"] = np.sqrt(u)
    L = setting.loss_function(*lead, *[p[n] for n in setting.parameters], **kw)
    return neg_elbo(L, _constant(setting, u, M.shape[0], D0, d1, d2, h, p), u)


def _summarise(setting, p, h, M, D0, d1, d2, raw, center, history, epochs, steps,
               kl_threshold, au_threshold, seconds, prediction=None):
    sv, msq, stds, prior = _MEASURES[setting.model](p, M, D0, d1, d2, h)
    kl, std, au, coll = {}, {}, {}, {}
    for z in setting.latents:
        au[z.name] = active_units(msq[z.name], au_threshold)
        mean_part = msq[z.name] / (2.0 * prior[z.name] ** 2)
        if z.name != "z1":  # z1's prior is conditional: no KL to a fixed prior
            kl[z.name] = kl_per_dim(msq[z.name], stds[z.name], h["eta_enc"])
        if z.learned:
            std[z.name] = np.sort(stds[z.name])[::-1]
        # collapsed: posterior = prior (learned variance, the KL) or a zero mean (its KL part)
        rule = kl[z.name] if (z.learned and z.name in kl) else mean_part
        coll[z.name] = int(np.count_nonzero(rule < kl_threshold))
    exact = _exact_loss(setting, p, M, D0, h, d1, d2)
    pred_sv, pred_std, pred_coll, optimal, pred_learned = _prediction(
        setting, d1, d2, h, raw, D0, center, prediction)
    learned = {}
    if setting.learned_decoder:
        u = float(np.exp(p["log_u"]))
        learned = {"eta_dec": float(np.sqrt(u)), "u": u}
    return SGDResult(model=setting.model, variance=setting.variance, singular_values=sv,
                     predicted_singular_values=pred_sv, posterior_std=std,
                     predicted_posterior_std=pred_std, kl=kl, mean_second_moment=msq,
                     active_units=au, collapsed=coll, predicted_collapsed=pred_coll,
                     exact_loss=float(exact), optimal_loss=optimal, loss_history=history,
                     epochs=epochs, steps=steps, seconds=seconds, params=p, learned=learned,
                     predicted_learned=pred_learned, decoder=setting.decoder)


def _diverged(setting, d1, d2, h, M, D0, raw, center, history, epochs, steps, seconds,
              prediction):
    """The result of a run that diverged: nothing learned to measure (NaN), the prediction."""
    pred_sv, pred_std, pred_coll, optimal, pred_learned = _prediction(
        setting, d1, d2, h, raw, D0, center, prediction)
    dims = {z.name: (d1 if z.dim_arg == "latent_dim" else d2) for z in setting.latents}
    nan = {z.name: np.full(dims[z.name], np.nan) for z in setting.latents}
    maps = {m: np.full(dims[z.name], np.nan) for z in setting.latents
            for m in (z.encoder, z.decoder)}
    return SGDResult(model=setting.model, variance=setting.variance, singular_values=maps,
                     predicted_singular_values=pred_sv,
                     posterior_std={z.name: nan[z.name] for z in setting.latents if z.learned},
                     predicted_posterior_std=pred_std,
                     kl={k: v for k, v in nan.items() if k != "z1"}, mean_second_moment=nan,
                     active_units={}, collapsed={}, predicted_collapsed=pred_coll,
                     exact_loss=float("nan"), optimal_loss=optimal, loss_history=history,
                     epochs=epochs, steps=steps, seconds=seconds, params={},
                     predicted_learned=pred_learned, decoder=setting.decoder)


def _prediction(setting, d1, d2, h, raw, D0, center, prediction):
    """(singular values, stds, collapsed ranges, optimal loss, learned decoder variance) of the
    closed form, or Nones."""
    from .moments import empirical_residual_spectrum, empirical_spectrum

    pred_sv = pred_std = pred_coll = pred_learned = None
    optimal = None
    point = prediction
    if point is None and setting.covered:
        if setting.spectrum_kind == "residual":
            spec = empirical_residual_spectrum(raw[:, :D0], raw[:, D0:], center=center)
        else:
            spec = empirical_spectrum(raw, center=center)
        try:
            hh = {k: v for k, v in h.items() if k in setting.names}
            point = setting.solve(spec, d1, d2, **hh).at()
        except NotCoveredError:  # e.g. per-dimension sigma1: no closed form
            point = None
    if point is not None:
        pred_sv = point.singular_values
        pred_std = point.posterior_std or None
        pred_coll = {k: point.collapsed_range(k) for k in point.latent_dims}
        optimal = point.optimal_loss
        if point.solution.learned:
            pred_learned = {"eta_dec": float(point.value(point.solution.learned["eta_dec"])),
                            "u": float(point.value(point.solution.learned["u"])),
                            "unbounded": bool(point.value(point.solution.learned["unbounded"]))}
    return pred_sv, pred_std, pred_coll, optimal, pred_learned

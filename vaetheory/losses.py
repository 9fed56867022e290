"""The exact expected losses of every setting, with analytic gradients.

Each function returns ``L = 2 eta_dec^2 * E_x[-ELBO_beta]`` with additive constants dropped, in the
convention of docs/theory.md §1 (VAE, CVAE: §1.1-1.2; two-latent hierarchical VAE: §1.3), as a function of the parameter matrices and the data's
second-moment matrix (or covariance: with encoder *and* decoder biases the model is exactly the
bias-free one on centred data, docs/theory.md §1.5).

Conventions
-----------
* ``c = eta_dec / eta_enc`` and ``kappa = beta * eta_dec^2``.
* Encoder covariances are diagonal and enter through their log-variances,
  ``Sigma = diag(exp(log_var))``; ``log_var_j = log sigma_j^2`` (``sigma_j`` a standard deviation).
  The same function serves fixed and learnable variances: the ``tr Sigma`` and ``log|Sigma|`` terms
  are always included (they are constants when Sigma is fixed, as in ``Solution.optimal_loss``).
* The dropped constant of the VAE is
  ``D eta_dec^2 log(2 pi eta_dec^2) + kappa d1 (log eta_enc^2 - 1)`` (``D = D2``, the output
  dimension, for the CVAE). For the hierarchical VAE it is
  ``D0 eta_dec^2 log(2 pi eta_dec^2) + beta1 d1 eta_dec^2 (log eta_dec^2 - 1)
  + beta2 d2 eta_dec^2 (log eta_enc^2 - 1)``, plus ``-beta1 eta_dec^2 log|Sigma1|`` unless
  ``sigma1_entropy=True`` moves that term into the loss.

Every loss returns a Python float, or with ``grad=True`` a tuple ``(loss, grads)`` where ``grads``
maps each parameter name to the gradient (same shape as the parameter). The losses are evaluated
in factored, cancellation-free form: with ``A = Z Z^T`` the reconstruction term is
``||U W Z - Z||^2`` (a sum of squares), not ``tr(...) - 2 tr(UWA) + tr A`` whose absolute error
is ~ulp(tr A) (docs/theory.md §9). The unchecked cores (``_vae_core`` ...) take the factor and
the whitened encoder directly; the checker calls them. Inputs are never modified. :func:`pack` / :func:`unpack` flatten parameter dictionaries for scipy optimisers.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ParameterError
from .settings import check_value

__all__ = ["cvae_loss", "cvae_mean_terms", "mhvae_loss", "mhvae_mean_terms", "pack", "unpack",
           "unpack_shapes", "vae_loss", "vae_mean_terms", "vae_constant", "mhvae_constant",
           "neg_elbo"]


# ----------------------------------------------------------------------------- validation
def _f64(name, value):
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be an array of numbers") from None


def _check(name, arr, shape):
    if arr.shape != shape:
        raise ParameterError(f"{name} has shape {arr.shape}, expected {shape}")


def _square_symmetric(name, arr):
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise ParameterError(f"{name} must be a square matrix, got shape {arr.shape}")
    scale = np.max(np.abs(arr)) if arr.size else 0.0
    if arr.size and np.max(np.abs(arr - arr.T)) > 1e-8 * scale:
        raise ParameterError(f"{name} must be symmetric (a second-moment or covariance matrix)")
    return arr.shape[0]


def _latent(name, arr):
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be a 2-d array, got shape {arr.shape}")
    return arr.shape[0]


def _hyper(**kw):
    """Hyperparameters checked against the one constraint table (:data:`vaetheory.settings.
    CONSTRAINTS`: finite and > 0); returns them as floats in the given order."""
    out = []
    for name, value in kw.items():
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be a number, got {value!r}") from None
        out.append(float(check_value(name, v)))
    return out


# ----------------------------------------------------------------------------- factored forms
def factor(A):
    """``Z`` (D x k) with ``Z Z^T = A`` on the support of ``A`` (eigenvectors times the square
    roots of the non-negligible eigenvalues): the losses are evaluated as ``||U V - Z||^2`` with
    ``V = W Z`` instead of ``tr(U^T U Q) - 2 tr(UWA) + tr A``, whose absolute error is ~ulp(tr A)."""
    w, P = np.linalg.eigh(0.5 * (A + A.T))
    keep = w > 0  # every positive eigenvalue: a small one of an exact matrix is still signal
    return P[:, keep] * np.sqrt(w[keep])


def _residual(UV, Z):
    """``U V - Z`` for a factor given densely (D x k) or, in the eigenbasis, as the vector theta of
    ``Z = [diag(theta); 0]`` (the checker's coordinates, docs/theory.md §13)."""
    R = np.array(UV, dtype=np.float64, copy=True)
    if Z.ndim == 1:
        k = Z.size
        R[np.arange(k), np.arange(k)] -= Z
    else:
        R -= Z
    return R


def _colsq(M):
    return np.einsum("ij,ij->j", M, M)


# ----------------------------------------------------------------------------- VAE
def vae_loss(A, W, U, log_var, *, beta, eta_enc, eta_dec, grad=False, recon=False):
    r"""Exact loss of the standard linear VAE (docs/theory.md §1.1).

    Model: ``q(z|x) = N(W x, Sigma)``, ``p(x|z) = N(U z, eta_dec^2 I)``,
    ``p(z) = N(0, eta_enc^2 I)``.

    .. math::

        L = \operatorname{tr}((UW - I)A(UW - I)^T) + \operatorname{tr}(U\Sigma U^T)
            + \beta c^2\,(\operatorname{tr}(WAW^T) + \operatorname{tr}\Sigma)
            - \kappa \sum_j \log\sigma_j^2

    Parameters
    ----------
    A : (D, D) array
        Symmetric second moment ``E[x x^T]`` (or covariance, for the biased model).
    W : (d1, D) array
        Encoder mean map.
    U : (D, d1) array
        Decoder.
    log_var : (d1,) array
        ``log sigma_j^2``; ``Sigma = diag(exp(log_var))``. Fixed or learnable alike: the
        ``beta c^2 tr Sigma`` and ``-kappa log|Sigma|`` terms are always included.
    beta, eta_enc, eta_dec : float
        KL weight, prior and decoder standard deviations (all finite and > 0);
        ``c = eta_dec / eta_enc``, ``kappa = beta eta_dec^2``.
    grad : bool
        Also return the gradients.
    recon : bool
        Return ``R``, the part of ``L`` that ``u = eta_dec^2`` does not multiply (``L`` is affine
        in ``u``: ``L = R + u K``; ``R`` is ``L`` at ``u = 0``, the reconstruction error): the
        optimal learned decoder variance for these parameters is ``R / n`` (docs/theory.md
        §12.6). ``eta_dec`` is then checked but unused. Every loss and mean-terms function of
        this module takes it.

    Returns
    -------
    float, or (float, dict)
        The loss; with ``grad=True`` also ``{"W", "U", "log_var"}`` gradients.

    Raises
    ------
    ValueError
        Inconsistent shapes, asymmetric ``A``, or invalid hyperparameters (the message names the
        argument).
    """
    A, W, U, log_var = _f64("A", A), _f64("W", W), _f64("U", U), _f64("log_var", log_var)
    D = _square_symmetric("A", A)
    d1 = _latent("W", W)
    _check("W", W, (d1, D)), _check("U", U, (D, d1)), _check("log_var", log_var, (d1,))
    beta, eta_enc, eta_dec = _hyper(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    Z = factor(A)
    out = _vae_core(Z, W @ Z, U, log_var, beta * (eta_dec / eta_enc) ** 2, beta * eta_dec ** 2,
                    grad)
    if not grad:
        return out
    value, g = out
    g["W"] = g.pop("V") @ Z.T
    return value, g


def _vae_core(Z, V, U, log_var, bc2, kappa, grad=False):
    """:func:`vae_loss` in factored form, without checks: ``Z`` the data factor (D x k, or the
    vector theta in the eigenbasis), ``V = W Z`` the whitened encoder (d1 x k); gradients with
    respect to ``V``, ``U``, ``log_var``. Every term is a sum of squares except the convention's
    ``-kappa log|Sigma|`` (docs/theory.md §1.1, §9). The checker's hot loop."""
    var = np.exp(log_var)
    R = _residual(U @ V, Z)
    cu = _colsq(U)
    value = np.sum(R * R) + cu @ var + bc2 * (np.sum(V * V) + np.sum(var)) - kappa * np.sum(log_var)
    if not grad:
        return float(value)
    g = {"V": 2.0 * (U.T @ R + bc2 * V), "U": 2.0 * (R @ V.T + U * var),
         "log_var": var * (cu + bc2) - kappa}
    return float(value), g


# ----------------------------------------------------------------------------- CVAE
def cvae_loss(M, x_dim, W1, W2, U1, U2, log_var, *, beta, eta_enc, eta_dec, grad=False,
              recon=False):
    r"""Exact loss of the conditional linear VAE (docs/theory.md §1.2).

    Model: condition ``x`` (D0), output ``y`` (D2); ``q(z|x,y) = N(W1 x + W2 y, Sigma)``,
    ``p(y|z,x) = N(U1 z + U2 x, eta_dec^2 I)``, ``p(z) = N(0, eta_enc^2 I)``. With
    ``F = [U1 W1 + U2, U1 W2 - I]`` and ``G = [W1, W2]``:

    .. math::

        L = \operatorname{tr}(FMF^T) + \operatorname{tr}(U_1\Sigma U_1^T)
            + \beta c^2\,(\operatorname{tr}(GMG^T) + \operatorname{tr}\Sigma)
            - \kappa \sum_j \log\sigma_j^2

    Parameters
    ----------
    M : (D0 + D2, D0 + D2) array
        Symmetric joint second moment of ``[x; y]``.
    x_dim : int
        ``D0``, the number of leading coordinates of ``M`` that are the condition x (0 <= D0 < D).
    W1 : (d1, D0) array
        Encoder map from x.
    W2 : (d1, D2) array
        Encoder map from y.
    U1 : (D2, d1) array
        Decoder map from z.
    U2 : (D2, D0) array
        Decoder map from x.
    log_var : (d1,) array
        ``log sigma_j^2`` of the encoder covariance (fixed or learnable alike).
    beta, eta_enc, eta_dec : float
        As in :func:`vae_loss`.
    grad : bool
        Also return the gradients.

    Returns
    -------
    float, or (float, dict)
        The loss; with ``grad=True`` also ``{"W1", "W2", "U1", "U2", "log_var"}`` gradients.
    """
    M, W1, W2 = _f64("M", M), _f64("W1", W1), _f64("W2", W2)
    U1, U2, log_var = _f64("U1", U1), _f64("U2", U2), _f64("log_var", log_var)
    D = _square_symmetric("M", M)
    try:
        D0 = int(x_dim)
    except (TypeError, ValueError):
        raise ParameterError(f"x_dim must be an integer, got {x_dim!r}") from None
    if D0 != x_dim or not 0 <= D0 < D:
        raise ParameterError(f"x_dim must be an integer in [0, {D}) for M of shape {M.shape}, "
                         f"got {x_dim!r}")
    D2 = D - D0
    d1 = _latent("W1", W1)
    _check("W1", W1, (d1, D0)), _check("W2", W2, (d1, D2)), _check("U1", U1, (D2, d1))
    _check("U2", U2, (D2, D0)), _check("log_var", log_var, (d1,))
    beta, eta_enc, eta_dec = _hyper(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    Z = factor(M)
    G = np.concatenate([W1, W2], axis=1)
    out = _cvae_core(Z[:D0], Z[D0:], G @ Z, U1, U2, log_var, beta * (eta_dec / eta_enc) ** 2,
                     beta * eta_dec ** 2, grad)
    if not grad:
        return out
    value, g = out
    gG = g.pop("V") @ Z.T
    g["W1"], g["W2"] = gG[:, :D0], gG[:, D0:]
    return value, {k: g[k] for k in ("W1", "W2", "U1", "U2", "log_var")}


def _cvae_core(Zx, Zy, V, U1, U2, log_var, bc2, kappa, grad=False):
    """:func:`cvae_loss` in factored form, without checks: ``[Zx; Zy]`` the factor of the joint
    moment M (rows of x, rows of y), ``V = [W1 W2] Z`` (d1 x k); the residual of y is
    ``U1 V + U2 Zx - Zy`` (docs/theory.md §1.2). Gradients with respect to ``V``, ``U1``, ``U2``,
    ``log_var``. The checker's hot loop."""
    var = np.exp(log_var)
    R = U1 @ V + (U2 @ Zx - Zy)
    cu = _colsq(U1)
    value = np.sum(R * R) + cu @ var + bc2 * (np.sum(V * V) + np.sum(var)) - kappa * np.sum(log_var)
    if not grad:
        return float(value)
    g = {"V": 2.0 * (U1.T @ R + bc2 * V), "U1": 2.0 * (R @ V.T + U1 * var),
         "U2": 2.0 * (R @ Zx.T), "log_var": var * (cu + bc2) - kappa}
    return float(value), g


# ----------------------------------------------------------------------------- MHVAE
def mhvae_loss(A, W1, U1, W2, U2, log_var1, log_var2, *, beta1, beta2, eta_enc, eta_dec,
               sigma1_entropy=False, grad=False, recon=False):
    r"""Exact loss of the two-latent hierarchical linear VAE (docs/theory.md §1.3), for any
    diagonal Sigma1 and Sigma2.

    Model: ``q(z1|x) = N(W1 x, Sigma1)``, ``q(z2|z1) = N(W2 z1, Sigma2)``,
    ``p(z1|z2) = N(U2 z2, eta_dec^2 I)``, ``p(x|z1) = N(U1 z1, eta_dec^2 I)``,
    ``p(z2) = N(0, eta_enc^2 I)``;
    ``ELBO = E log p(x|z1) - beta1 E[log q(z1|x) - log p(z1|z2)] - beta2 E KL(q(z2|z1) || p(z2))``.
    With ``S = W1 A W1^T`` and ``R2 = U2 W2 - I``:

    .. math::

        L = \operatorname{tr}((U_1W_1 - I)A(U_1W_1 - I)^T) + \operatorname{tr}(U_1\Sigma_1U_1^T)
            + \beta_1[\operatorname{tr}(R_2(S + \Sigma_1)R_2^T)
                      + \operatorname{tr}(U_2\Sigma_2U_2^T)]
            + \beta_2[c^2(\operatorname{tr}(W_2(S + \Sigma_1)W_2^T) + \operatorname{tr}\Sigma_2)
                      - \eta_{dec}^2\log|\Sigma_2|]
            \;[-\,\beta_1\eta_{dec}^2\log|\Sigma_1|]

    For ``Sigma1 = sigma1^2 I`` this is the L of docs/theory.md §1.3 exactly (its ``log|Sigma2|`` term is
    kept for a fixed Sigma2 too). The bracketed last term is added with ``sigma1_entropy=True``: it
    is the entropy of q(z1|x) in the beta1-weighted consistency term
    (``E log q(z1|x) = -1/2 log|2 pi e Sigma1|``, times ``-2 eta_dec^2 beta1``), a constant for a
    fixed Sigma1 but needed when Sigma1 is learnable.

    Parameters
    ----------
    A : (D0, D0) array
        Symmetric second moment (or covariance) of x.
    W1 : (d1, D0) array
        Encoder x -> z1.
    U1 : (D0, d1) array
        Decoder z1 -> x.
    W2 : (d2, d1) array
        Encoder z1 -> z2.
    U2 : (d1, d2) array
        Decoder z2 -> z1.
    log_var1 : (d1,) array
        ``log`` of the diagonal of Sigma1.
    log_var2 : (d2,) array
        ``log`` of the diagonal of Sigma2.
    beta1, beta2 : float
        Weights (> 0) of the consistency term and of the z2 KL.
    eta_enc, eta_dec : float
        Prior and decoder standard deviations (> 0); ``c = eta_dec / eta_enc``.
    sigma1_entropy : bool
        Include ``-beta1 eta_dec^2 log|Sigma1|`` (learnable Sigma1).
    grad : bool
        Also return the gradients.

    Returns
    -------
    float, or (float, dict)
        The loss; with ``grad=True`` also ``{"W1", "U1", "W2", "U2", "log_var1", "log_var2"}``
        gradients (``log_var1`` always, whether or not the entropy term is included).
    """
    A, W1, U1 = _f64("A", A), _f64("W1", W1), _f64("U1", U1)
    W2, U2 = _f64("W2", W2), _f64("U2", U2)
    lv1, lv2 = _f64("log_var1", log_var1), _f64("log_var2", log_var2)
    D = _square_symmetric("A", A)
    d1, d2 = _latent("W1", W1), _latent("W2", W2)
    _check("W1", W1, (d1, D)), _check("U1", U1, (D, d1)), _check("W2", W2, (d2, d1))
    _check("U2", U2, (d1, d2)), _check("log_var1", lv1, (d1,)), _check("log_var2", lv2, (d2,))
    beta1, beta2, eta_enc, eta_dec = _hyper(beta1=beta1, beta2=beta2, eta_enc=eta_enc,
                                            eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    Z = factor(A)
    out = _mhvae_core(Z, W1 @ Z, U1, W2, U2, lv1, lv2, beta1, beta2 * (eta_dec / eta_enc) ** 2,
                      beta2 * eta_dec ** 2, beta1 * eta_dec ** 2 if sigma1_entropy else 0.0, grad)
    if not grad:
        return out
    value, g = out
    g["W1"] = g.pop("V1") @ Z.T
    return value, {k: g[k] for k in ("W1", "U1", "W2", "U2", "log_var1", "log_var2")}


def _mhvae_core(Z, V1, U1, W2, U2, lv1, lv2, beta1, b2c2, b2ed2, b1ed2, grad=False):
    """:func:`mhvae_loss` in factored form, without checks: ``V1 = W1 Z`` (d1 x k); ``b1ed2`` is
    the weight of the Sigma1 entropy term (0 without it). Every term is a sum of squares except
    the convention's log terms (docs/theory.md §1.3). Gradients with respect to ``V1``, ``U1``,
    ``W2``, ``U2``, ``log_var1``, ``log_var2``. The checker's hot loop."""
    var1, var2 = np.exp(lv1), np.exp(lv2)
    R1 = _residual(U1 @ V1, Z)                    # x - U1 z1 (signal part)
    R2 = U2 @ W2
    R2[np.diag_indices_from(R2)] -= 1.0           # z1 - U2 W2 z1
    RV, WV = R2 @ V1, W2 @ V1
    c1, cR, cW, cU2 = _colsq(U1), _colsq(R2), _colsq(W2), _colsq(U2)
    value = (np.sum(R1 * R1) + c1 @ var1
             + beta1 * (np.sum(RV * RV) + cR @ var1 + cU2 @ var2)
             + b2c2 * (np.sum(WV * WV) + cW @ var1 + np.sum(var2))
             - b2ed2 * np.sum(lv2) - b1ed2 * np.sum(lv1))
    if not grad:
        return float(value)
    dR2 = 2.0 * beta1 * (RV @ V1.T + R2 * var1)
    g = {
        "V1": 2.0 * (U1.T @ R1 + beta1 * (R2.T @ RV) + b2c2 * (W2.T @ WV)),
        "U1": 2.0 * (R1 @ V1.T + U1 * var1),
        "W2": U2.T @ dR2 + 2.0 * b2c2 * (WV @ V1.T + W2 * var1),
        "U2": dR2 @ W2.T + 2.0 * beta1 * (U2 * var2),
        "log_var1": var1 * (c1 + beta1 * cR + b2c2 * cW) - b1ed2,
        "log_var2": var2 * (beta1 * cU2 + b2c2) - b2ed2,
    }
    return float(value), g


# ----------------------------------------------------------------------------- constants
def vae_constant(u, D, d1, beta, eta_enc):
    """The constant dropped from the VAE's (CVAE's: ``D`` = the output dim) ``L`` at
    ``eta_dec^2 = u`` (docs/theory.md §1.4): ``D u log(2 pi u) + beta u d1 (log eta_enc^2 - 1)``.
    With a learned decoder variance it is no longer a constant: ``(L + C(u)) / (2u)`` is the full
    negative beta-ELBO per sample in nats (§12.1, :func:`neg_elbo`)."""
    return D * u * np.log(2 * np.pi * u) + beta * u * d1 * (2 * np.log(eta_enc) - 1.0)


def mhvae_constant(u, D, d1, d2, beta1, beta2, eta_enc, log_var1):
    """The hierarchical row of docs/theory.md §1.4 at ``eta_dec^2 = u`` with a fixed Sigma1
    (``log_var1`` its log-variances): ``D u log(2 pi u) + beta1 d1 u (log u - 1)
    + beta2 d2 u (log eta_enc^2 - 1) - beta1 u log|Sigma1|``."""
    return (D * u * np.log(2 * np.pi * u) + beta1 * d1 * u * (np.log(u) - 1.0)
            + beta2 * d2 * u * (2 * np.log(eta_enc) - 1.0) - beta1 * u * np.sum(log_var1))


def neg_elbo(L, C, u):
    """The per-sample negative beta-ELBO in nats from a loss ``L`` of this module evaluated at
    ``eta_dec^2 = u`` and its dropped constant ``C`` (docs/theory.md §12.1): ``(L + C) / (2u)``."""
    return (L + C) / (2.0 * u)


# ----------------------------------------------------------------------------- biases
# A model with biases on data with mean mu and covariance Cov has the loss
#     L(Cov; weights) + (mean terms)
# (docs/theory.md §1.5): every squared norm of an affine function of x splits into its covariance
# part and the square of its value at the mean. The functions below give the second part; it is
# >= 0 and zero exactly when the biases are optimal for the weights.


def _bias(name, value, n):
    if value is None:
        return np.zeros(n)
    b = _f64(name, value)
    _check(name, b, (n,))
    return b


def vae_mean_terms(mean, W, U, log_var, encoder_bias=None, decoder_bias=None, *, beta, eta_enc,
                   eta_dec, recon=False):
    """What the data mean adds to the loss of the VAE with biases (docs/theory.md §1.5).

    With ``q(z|x) = N(W x + a, Sigma)`` and ``p(x|z) = N(U z + b, eta_dec^2 I)`` the loss on data
    with mean ``mu`` is :func:`vae_loss` on ``Cov(x)`` plus
    ``||mu - U m - b||^2 + beta c^2 ||m||^2`` with ``m = W mu + a`` (the posterior mean at the data
    mean). A missing bias is 0.

    Parameters
    ----------
    mean : (D,) array
    W, U, log_var : arrays as in :func:`vae_loss` (``log_var`` does not enter)
    encoder_bias : (d1,) array, optional
    decoder_bias : (D,) array, optional
    beta, eta_enc, eta_dec : float

    Returns
    -------
    (float, dict)
        The mean terms and ``{"z": m}``.
    """
    mu, W, U = _f64("mean", mean).ravel(), _f64("W", W), _f64("U", U)
    d1, D = W.shape
    _check("U", U, (D, d1))
    beta, eta_enc, eta_dec = _hyper(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    m = W @ mu + _bias("encoder_bias", encoder_bias, d1)
    r = mu - U @ m - _bias("decoder_bias", decoder_bias, D)
    return float(r @ r + beta * (eta_dec / eta_enc) ** 2 * (m @ m)), {"z": m}


def cvae_mean_terms(mean, x_dim, W1, W2, U1, U2, log_var, encoder_bias=None, decoder_bias=None, *,
                    beta, eta_enc, eta_dec, recon=False):
    """What the data mean adds to the loss of the CVAE with biases (docs/theory.md §1.5).

    ``q(z|x,y) = N(W1 x + W2 y + a, Sigma)``, ``p(y|z,x) = N(U1 z + U2 x + b, eta_dec^2 I)``:
    ``||mu_y - U1 m - U2 mu_x - b||^2 + beta c^2 ||m||^2`` with ``m = W1 mu_x + W2 mu_y + a``;
    ``mean`` is the mean of ``[x; y]`` (x first, ``x_dim`` entries). Returns ``(value, {"z": m})``.
    """
    mu, W1, W2 = _f64("mean", mean).ravel(), _f64("W1", W1), _f64("W2", W2)
    U1, U2 = _f64("U1", U1), _f64("U2", U2)
    D0 = int(x_dim)
    mx, my = mu[:D0], mu[D0:]
    d1 = W1.shape[0]
    beta, eta_enc, eta_dec = _hyper(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    m = W1 @ mx + W2 @ my + _bias("encoder_bias", encoder_bias, d1)
    r = my - U1 @ m - U2 @ mx - _bias("decoder_bias", decoder_bias, my.size)
    return float(r @ r + beta * (eta_dec / eta_enc) ** 2 * (m @ m)), {"z": m}


def mhvae_mean_terms(mean, W1, U1, W2, U2, log_var1, log_var2, encoder_bias=None,
                     decoder_bias=None, encoder2_bias=None, decoder2_bias=None, *, beta1, beta2,
                     eta_enc, eta_dec, recon=False):
    """What the data mean adds to the loss of the hierarchical VAE with biases on all four means
    (docs/theory.md §1.5): ``q(z1|x) = N(W1 x + a1, .)``, ``q(z2|z1) = N(W2 z1 + a2, .)``,
    ``p(z1|z2) = N(U2 z2 + c2, .)``, ``p(x|z1) = N(U1 z1 + c1, .)``. With ``m1 = W1 mu + a1`` and
    ``m2 = W2 m1 + a2``:
    ``||mu - U1 m1 - c1||^2 + beta1 ||m1 - U2 m2 - c2||^2 + beta2 c^2 ||m2||^2``.
    The biases are, in order, ``a1`` (encoder_bias), ``c1`` (decoder_bias), ``a2``
    (encoder2_bias), ``c2`` (decoder2_bias). Returns ``(value, {"z1": m1, "z2": m2})``.
    """
    mu, W1, U1 = _f64("mean", mean).ravel(), _f64("W1", W1), _f64("U1", U1)
    W2, U2 = _f64("W2", W2), _f64("U2", U2)
    d1, d2 = W1.shape[0], W2.shape[0]
    beta1, beta2, eta_enc, eta_dec = _hyper(beta1=beta1, beta2=beta2, eta_enc=eta_enc,
                                            eta_dec=eta_dec)
    eta_dec = 0.0 if recon else eta_dec   # L at u = 0: the part u does not multiply (§12.6)
    m1 = W1 @ mu + _bias("encoder_bias", encoder_bias, d1)
    m2 = W2 @ m1 + _bias("encoder2_bias", encoder2_bias, d2)
    r1 = mu - U1 @ m1 - _bias("decoder_bias", decoder_bias, mu.size)
    r2 = m1 - U2 @ m2 - _bias("decoder2_bias", decoder2_bias, d1)
    value = r1 @ r1 + beta1 * (r2 @ r2) + beta2 * (eta_dec / eta_enc) ** 2 * (m2 @ m2)
    return float(value), {"z1": m1, "z2": m2}


# ----------------------------------------------------------------------------- flattening
def pack(params, names):
    """Concatenate ``params[name]`` for ``name in names`` (row-major) into one float64 vector.

    Parameters
    ----------
    params : dict
        Name -> array (or scalar).
    names : sequence of str
        Which entries to pack, in order.

    Returns
    -------
    (n,) float64 array
    """
    names = list(names)
    if not names:
        return np.zeros(0)
    return np.concatenate([np.ravel(np.asarray(params[n], dtype=np.float64)) for n in names])


def unpack(vec, template, names):
    """Inverse of :func:`pack`.

    Parameters
    ----------
    vec : (n,) array
        Packed values.
    template : dict
        Name -> array giving every parameter's shape; entries not in ``names`` are passed through.
    names : sequence of str
        The packed entries, in the order used by :func:`pack`.

    Returns
    -------
    dict
        A new dict: ``template`` with ``names`` replaced by float64 views of ``vec`` (reshaped).

    Raises
    ------
    ValueError
        ``vec`` is not 1-d or its length does not match the shapes of ``names``.
    """
    out = dict(template)
    out.update(unpack_shapes(vec, {n: np.shape(template[n]) for n in names}, names))
    return out


def unpack_shapes(vec, shapes, names):
    """:func:`unpack` from a dict of shapes: ``{name: view of vec reshaped}`` for ``names``."""
    vec = np.asarray(vec, dtype=np.float64)
    if vec.ndim != 1:
        raise ParameterError(f"vec must be 1-d, got shape {vec.shape}")
    out = {}
    i = 0
    for n in names:
        shape = tuple(shapes[n])
        size = math.prod(shape)
        if i + size > vec.size:
            raise ParameterError(f"vec has {vec.size} entries, too few for the parameters "
                                 f"{list(names)}")
        out[n] = vec[i:i + size].reshape(shape)
        i += size
    if i != vec.size:
        raise ParameterError(f"vec has {vec.size} entries, the parameters need {i}")
    return out

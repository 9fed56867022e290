"""The exact expected losses of every setting, with analytic gradients.

``L = 2 eta_dec^2 E_x[-ELBO_beta]`` with additive constants dropped (THEORY.md section 1), as a
function of the parameter matrices and the data's second-moment matrix; shared by the numerical
checker and the tests. Encoder variances enter as log-variances ``log_var = log sigma^2`` (the
checker optimises learnable ones in log space; fixed ones are just held). ``c = eta_dec/eta_enc``,
``kappa = beta eta_dec^2``.

Every function returns the loss (a float) or, with ``grad=True``, ``(loss, grads)`` where
``grads`` maps each parameter name to its gradient.
"""

from __future__ import annotations

import numpy as np

__all__ = ["cvae_loss", "mhvae_loss", "pack", "unpack", "vae_loss"]


def _check(name, arr, shape):
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")


def _recon(A, W, U, var):
    """tr((UW - I) A (UW - I)^T) + tr(U diag(var) U^T) and its pieces, via d1 x d1 products.

    Returns (value, WA, Q) with ``Q = W A W^T + diag(var)``.
    """
    WA = W @ A
    Q = WA @ W.T
    Q[np.diag_indices_from(Q)] += var
    value = np.sum((U.T @ U) * Q) - 2.0 * np.sum(U * WA.T) + np.trace(A)
    return value, WA, Q


def vae_loss(A, W, U, log_var, *, beta, eta_enc, eta_dec, grad=False):
    r"""Standard linear VAE (THEORY.md §1):

    .. math::

        L = \mathrm{tr}((UW - I)A(UW - I)^T) + \mathrm{tr}(U\Sigma U^T)
            + \beta c^2(\mathrm{tr}(WAW^T) + \mathrm{tr}\,\Sigma) - \kappa\sum_j \log\sigma_j^2

    Parameters
    ----------
    A : (D, D) second moment (or covariance) of x.
    W : (d1, D) encoder mean map.  U : (D, d1) decoder.  log_var : (d1,) log sigma_j^2.

    The last two terms are kept for a fixed Sigma too (as in ``Solution.optimal_loss``).
    """
    A, W, U, log_var = (np.asarray(a, dtype=np.float64) for a in (A, W, U, log_var))
    D, d1 = A.shape[0], W.shape[0]
    _check("A", A, (D, D)), _check("W", W, (d1, D)), _check("U", U, (D, d1))
    _check("log_var", log_var, (d1,))
    c2 = (eta_dec / eta_enc) ** 2
    kappa = beta * eta_dec ** 2
    var = np.exp(log_var)
    rec, WA, Q = _recon(A, W, U, var)
    # tr(W A W^T) + tr Sigma = tr Q
    value = rec + beta * c2 * np.trace(Q) - kappa * np.sum(log_var)
    if not grad:
        return float(value)
    UtU = U.T @ U
    g = {
        "W": 2.0 * (UtU @ WA - U.T @ A) + 2.0 * beta * c2 * WA,
        "U": 2.0 * (U @ Q - WA.T),
        "log_var": var * (np.diag(UtU) + beta * c2) - kappa,
    }
    return float(value), g


def cvae_loss(M, x_dim, W1, W2, U1, U2, log_var, *, beta, eta_enc, eta_dec, grad=False):
    r"""Conditional linear VAE (THEORY.md §1), for both a fixed and a learnable Sigma.

    With ``M = E[[x; y][x; y]^T]``, ``F = [U1 W1 + U2, U1 W2 - I]``, ``G = [W1, W2]``:

    .. math::

        L = \mathrm{tr}(FMF^T) + \mathrm{tr}(U_1\Sigma U_1^T)
            + \beta c^2(\mathrm{tr}(GMG^T) + \mathrm{tr}\,\Sigma) - \kappa\sum_j\log\sigma_j^2

    Shapes: M (D0+D2, D0+D2), W1 (d1, D0), W2 (d1, D2), U1 (D2, d1), U2 (D2, D0), log_var (d1,).
    """
    M, W1, W2, U1, U2, log_var = (np.asarray(a, dtype=np.float64)
                                  for a in (M, W1, W2, U1, U2, log_var))
    D0 = int(x_dim)
    D, d1 = M.shape[0], W1.shape[0]
    D2 = D - D0
    _check("M", M, (D, D)), _check("W1", W1, (d1, D0)), _check("W2", W2, (d1, D2))
    _check("U1", U1, (D2, d1)), _check("U2", U2, (D2, D0)), _check("log_var", log_var, (d1,))
    c2 = (eta_dec / eta_enc) ** 2
    kappa = beta * eta_dec ** 2
    var = np.exp(log_var)
    G = np.hstack([W1, W2])
    F = U1 @ G
    F[:, :D0] += U2
    F[:, D0:] -= np.eye(D2)
    FM, GM = F @ M, G @ M
    colsq = np.sum(U1 * U1, axis=0)
    value = (np.sum(FM * F) + np.sum(colsq * var)
             + beta * c2 * (np.sum(GM * G) + np.sum(var)) - kappa * np.sum(log_var))
    if not grad:
        return float(value)
    dG = 2.0 * (U1.T @ FM) + 2.0 * beta * c2 * GM
    g = {
        "W1": dG[:, :D0], "W2": dG[:, D0:],
        "U1": 2.0 * (FM @ G.T) + 2.0 * U1 * var,
        "U2": 2.0 * FM[:, :D0],
        "log_var": var * (colsq + beta * c2) - kappa,
    }
    return float(value), g


def mhvae_loss(A, W1, U1, W2, U2, log_var1, log_var2, *, beta1, beta2, eta_enc, eta_dec,
               sigma1_entropy=False, grad=False):
    r"""Two-latent hierarchical VAE (THEORY.md §5; THEORY-mhvae-detail §1), any diagonal Sigma1.

    With ``Q = W1 A W1^T + Sigma1`` (second moment of z1) and ``R2 = U2 W2 - I``:

    .. math::

        L = \mathrm{tr}((U_1W_1 - I)A(U_1W_1 - I)^T) + \mathrm{tr}(U_1\Sigma_1U_1^T)
            + \beta_1[\mathrm{tr}(R_2QR_2^T) + \mathrm{tr}(U_2\Sigma_2U_2^T)]
            + \beta_2[c^2(\mathrm{tr}(W_2QW_2^T) + \mathrm{tr}\,\Sigma_2) - \eta_{dec}^2\log|\Sigma_2|]
            \;[-\,\beta_1\eta_{dec}^2\log|\Sigma_1|]

    which for ``Sigma1 = sigma1^2 I`` is THEORY.md's L exactly (the ``log|Sigma2|`` term is kept for a
    fixed Sigma2 too). ``sigma1_entropy=True`` adds the last term, the entropy of q(z1|x) weighted by
    beta1 (``E log q(z1|x) = -1/2 log|2 pi e Sigma1|``, times ``2 eta_dec^2``): a constant when
    Sigma1 is fixed, needed when it is learnable (an open case, numerical only).

    Shapes: A (D, D), W1 (d1, D), U1 (D, d1), W2 (d2, d1), U2 (d1, d2), log_var1 (d1,),
    log_var2 (d2,).
    """
    A, W1, U1, W2, U2, lv1, lv2 = (np.asarray(a, dtype=np.float64)
                                   for a in (A, W1, U1, W2, U2, log_var1, log_var2))
    D, d1, d2 = A.shape[0], W1.shape[0], W2.shape[0]
    _check("A", A, (D, D)), _check("W1", W1, (d1, D)), _check("U1", U1, (D, d1))
    _check("W2", W2, (d2, d1)), _check("U2", U2, (d1, d2))
    _check("log_var1", lv1, (d1,)), _check("log_var2", lv2, (d2,))
    c2 = (eta_dec / eta_enc) ** 2
    var1, var2 = np.exp(lv1), np.exp(lv2)
    rec, W1A, Q = _recon(A, W1, U1, var1)
    R2 = U2 @ W2
    R2[np.diag_indices_from(R2)] -= 1.0
    R2Q, W2Q = R2 @ Q, W2 @ Q
    colsq2 = np.sum(U2 * U2, axis=0)
    value = (rec + beta1 * (np.sum(R2Q * R2) + np.sum(colsq2 * var2))
             + beta2 * (c2 * (np.sum(W2Q * W2) + np.sum(var2)) - eta_dec ** 2 * np.sum(lv2)))
    if sigma1_entropy:
        value -= beta1 * eta_dec ** 2 * np.sum(lv1)
    if not grad:
        return float(value)
    U1tU1 = U1.T @ U1
    P = beta1 * (R2.T @ R2) + beta2 * c2 * (W2.T @ W2)   # dL/dQ from the z2 terms (symmetric)
    dlv1 = var1 * (np.diag(U1tU1) + np.diag(P))
    if sigma1_entropy:
        dlv1 = dlv1 - beta1 * eta_dec ** 2
    g = {
        "W1": 2.0 * (U1tU1 @ W1A - U1.T @ A) + 2.0 * P @ W1A,
        "U1": 2.0 * (U1 @ Q - W1A.T),
        "W2": 2.0 * beta1 * (U2.T @ R2Q) + 2.0 * beta2 * c2 * W2Q,
        "U2": 2.0 * beta1 * (R2Q @ W2.T + U2 * var2),
        "log_var1": dlv1,
        "log_var2": var2 * (beta1 * colsq2 + beta2 * c2) - beta2 * eta_dec ** 2,
    }
    return float(value), g


def pack(params, names):
    """Concatenate ``params[name]`` for ``name in names`` into one float64 vector."""
    return np.concatenate([np.ravel(np.asarray(params[n], dtype=np.float64)) for n in names])


def unpack(vec, template, names):
    """Inverse of :func:`pack`: a copy of ``template`` with ``names`` filled from ``vec``."""
    out = dict(template)
    i = 0
    for n in names:
        shape = np.shape(template[n])
        size = int(np.prod(shape))
        out[n] = np.asarray(vec[i:i + size]).reshape(shape)
        i += size
    if i != len(vec):
        raise ValueError(f"vector has {len(vec)} entries, the parameters need {i}")
    return out

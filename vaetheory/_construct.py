"""Optimal parameter matrices in data coordinates, built from one :class:`~vaetheory.theory.Point`.

The theorems give singular values in the spectrum's eigenbasis ``P``; here they are put back:
latent dim carrying mode i gets decoder column ``omega_i P[:, i]`` and encoder row
``(lambda_i / theta_i) P[:, i]^T`` (zero where theta_i = 0: W is only determined on range(A);
docs/theory.md §0.5). Names match :mod:`vaetheory.losses`, so
``losses.vae_loss(A, **{k: m[k] for k in ("W", "U", "log_var")}, ...)`` evaluates the optimum.
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError


def _columns(basis, d):
    """First d eigenvectors, zero columns beyond the dimension."""
    D = basis.shape[0]
    out = np.zeros((D, d))
    k = min(d, basis.shape[1])
    out[:, :k] = basis[:, :k]
    return out


def _vae_like(point, spectral_values):
    """Encoder/decoder for the VAE or the residual part of the CVAE, in the spectrum's basis."""
    sol = point.solution
    d1 = sol.latent_dims["z"]
    P = _columns(sol.spectrum.basis, d1)
    omega, lam = point.mode("omega"), point.mode("lambda")
    root = np.sqrt(spectral_values)
    gain = np.divide(lam, root, out=np.zeros_like(lam), where=root > 0)
    if not sol.setting.latent("z").learned:
        sigma = point.hyper["sigma"]
        perm = np.argsort(sigma, kind="stable")  # mode i -> dim with i-th smallest sigma
        U = np.zeros_like(P)
        W = np.zeros((d1, P.shape[0]))
        U[:, perm] = P * omega
        W[perm, :] = (P * gain).T
        log_var = np.log(sigma ** 2)
    else:
        U = P * omega
        W = (P * gain).T
        with np.errstate(divide="ignore"):   # sigma -> 0 in the limit of an unbounded loss
            log_var = np.log(point.mode("sigma") ** 2)
    return W, U, log_var


def _vae(point, spec, centred):
    W, U, log_var = _vae_like(point, spec.padded(point.latent_dims["z"]))
    out = {"W": W, "U": U, "log_var": log_var}
    if centred:
        out["encoder_bias"] = -W @ spec.mean
        out["decoder_bias"] = spec.mean.copy()
    return out


def _cvae(point, spec, centred):
    W2, U1, log_var = _vae_like(point, spec.padded(point.latent_dims["z"]))
    K = spec.regression
    out = {"W1": -W2 @ K, "W2": W2, "U1": U1, "U2": K.copy(), "log_var": log_var}
    if centred:
        mx, my = spec.mean[:spec.x_dim], spec.mean[spec.x_dim:]
        out["encoder_bias"] = -(out["W1"] @ mx + W2 @ my)
        out["decoder_bias"] = my - K @ mx
    return out


def _mhvae(point, spec, centred):
    d1, d2 = point.latent_dims["z1"], point.latent_dims["z2"]
    k = min(d1, d2)
    P = _columns(spec.basis, d1)
    theta = point.mode("theta")
    lam, u1, w2, omega = (point.mode(n) for n in ("lambda", "u1", "w2", "omega"))
    gain = np.divide(lam, theta, out=np.zeros_like(lam), where=theta > 0)
    W2 = np.zeros((d2, d1))
    U2 = np.zeros((d1, d2))
    W2[np.arange(k), np.arange(k)] = w2[:k]
    U2[np.arange(k), np.arange(k)] = omega[:k]
    hyper = point.hyper
    if point.solution.setting.latent("z2").learned:
        log_var2 = np.log(point.mode("sigma2") ** 2)
    else:
        log_var2 = np.full(d2, np.log(hyper["sigma2"] ** 2))
    out = {"W1": (P * gain).T, "U1": P * u1, "W2": W2, "U2": U2,
           "log_var1": np.full(d1, np.log(hyper["sigma1"] ** 2)), "log_var2": log_var2}
    if centred:
        out["encoder_bias"] = -out["W1"] @ spec.mean
        out["decoder_bias"] = spec.mean.copy()
    return out


_BUILDERS = {"vae": _vae, "cvae": _cvae, "mhvae": _mhvae}


def optimal_matrices(point):
    """The optimal matrices at a :class:`~vaetheory.theory.Point` (see :meth:`Solution.matrices`)."""
    spec = point.solution.spectrum
    if spec.basis is None:
        raise ParameterError("the optimal matrices need the eigenvectors: compute the spectrum "
                             "with with_basis=True")
    centred = bool(spec.centered) and spec.mean is not None
    out = _BUILDERS[point.solution.model](point, spec, centred)
    learned = point.learned
    if learned and not learned["unbounded"]:
        # a learned decoder variance: its role log u = log eta_dec^2 (docs/theory.md §12); none
        # where the loss has no minimum (u -> 0)
        out[point.solution.setting.decoder_variance_role] = np.log(learned["u"])
    return out

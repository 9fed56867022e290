"""Optimal parameter matrices in data coordinates, built from a :class:`~vaetheory.theory.Solution`.

The theorems give singular values in the spectrum's eigenbasis ``P``; here they are put back:
latent dim carrying mode i gets decoder column ``omega_i P[:, i]`` and encoder row
``(lambda_i / theta_i) P[:, i]^T`` (zero where theta_i = 0: W is only determined on range(A)).
Names match :mod:`vaetheory.losses`, so ``losses.vae_loss(A, **{k: m[k] for k in ("W", "U",
"log_var")}, ...)`` evaluates the optimum.
"""

from __future__ import annotations

import numpy as np


def _at(arr, shape, index, d=None):
    arr = np.asarray(arr)
    full = shape + ((arr.shape[-1],) if d is None else (d,))
    return np.broadcast_to(arr, full)[index] if arr.ndim else arr


def _columns(basis, d):
    """First d eigenvectors, zero columns beyond the dimension."""
    D = basis.shape[0]
    out = np.zeros((D, d))
    k = min(d, basis.shape[1])
    out[:, :k] = basis[:, :k]
    return out


def _vae_like(sol, index, spectral_values):
    """Encoder/decoder for the VAE or the residual part of the CVAE, in the spectrum's basis."""
    d1 = sol.latent_dims["z"]
    shape = sol.grid_shape
    P = _columns(sol.spectrum.basis, d1)
    omega = _at(sol._modes["omega"], shape, index)
    lam = _at(sol._modes["lambda"], shape, index)
    root = np.sqrt(spectral_values)
    gain = np.divide(lam, root, out=np.zeros_like(lam), where=root > 0)
    if sol.variance == "fixed":
        sigma = _at(sol.params["sigma"], shape, index)
        perm = np.argsort(sigma, kind="stable")  # mode i -> dim with i-th smallest sigma
        U = np.zeros_like(P)
        W = np.zeros((d1, P.shape[0]))
        U[:, perm] = P * omega
        W[perm, :] = (P * gain).T
        log_var = np.log(sigma ** 2)
    else:
        U = P * omega
        W = (P * gain).T
        log_var = np.log(_at(sol._modes["sigma"], shape, index) ** 2)
    return W, U, log_var


def optimal_matrices(sol, index=()):
    spec = sol.spectrum
    if spec.basis is None:
        raise ValueError("the optimal matrices need the eigenvectors: compute the spectrum with "
                         "with_basis=True")
    index = tuple(np.atleast_1d(index)) if index != () else ()
    if len(index) != len(sol.grid_shape):
        raise ValueError(f"index {index} does not address a point of the grid {sol.grid_shape}")
    shape = sol.grid_shape
    centred = bool(spec.centered) and spec.mean is not None
    if sol.model == "vae":
        W, U, log_var = _vae_like(sol, index, spec.padded(sol.latent_dims["z"]))
        out = {"W": W, "U": U, "log_var": log_var}
        if centred:
            out["encoder_bias"] = -W @ spec.mean
            out["decoder_bias"] = spec.mean.copy()
        return out
    if sol.model == "cvae":
        W2, U1, log_var = _vae_like(sol, index, spec.padded(sol.latent_dims["z"]))
        K = spec.regression
        out = {"W1": -W2 @ K, "W2": W2, "U1": U1, "U2": K.copy(), "log_var": log_var}
        if centred:
            mx, my = spec.mean[:spec.x_dim], spec.mean[spec.x_dim:]
            out["encoder_bias"] = -(out["W1"] @ mx + W2 @ my)
            out["decoder_bias"] = my - K @ mx
        return out
    # hierarchical
    d1, d2 = sol.latent_dims["z1"], sol.latent_dims["z2"]
    k = min(d1, d2)
    P = _columns(spec.basis, d1)
    theta = sol._modes["theta"]
    lam = _at(sol._modes["lambda"], shape, index)
    u1 = _at(sol._modes["u1"], shape, index)
    w2 = _at(sol._modes["w2"], shape, index)
    omega = _at(sol._modes["omega"], shape, index)
    gain = np.divide(lam, theta, out=np.zeros_like(lam), where=theta > 0)
    W2 = np.zeros((d2, d1))
    U2 = np.zeros((d1, d2))
    W2[np.arange(k), np.arange(k)] = w2[:k]
    U2[np.arange(k), np.arange(k)] = omega[:k]
    s1 = float(np.broadcast_to(sol.params["sigma1"], shape)[index])
    if sol._modes["sigma2"] is not None:
        log_var2 = np.log(_at(sol._modes["sigma2"], shape, index) ** 2)
    else:
        s2 = float(np.broadcast_to(sol.params["sigma2"], shape)[index])
        log_var2 = np.full(d2, np.log(s2 ** 2))
    out = {"W1": (P * gain).T, "U1": P * u1, "W2": W2, "U2": U2,
           "log_var1": np.full(d1, np.log(s1 ** 2)), "log_var2": log_var2}
    if centred:
        out["encoder_bias"] = -out["W1"] @ spec.mean
        out["decoder_bias"] = spec.mean.copy()
    return out

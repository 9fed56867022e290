"""A small, independent numerical minimiser for the theory tests.

Minimises the exact losses of :mod:`vaetheory.losses` over all parameter matrices with scipy's
L-BFGS-B from random starts. Deliberately simpler than :mod:`vaetheory.checker` (no first-order
phase, no verdicts) so the theory is tested against an optimiser that does not share the
checker's code paths.
"""

import numpy as np
from scipy.optimize import minimize

from vaetheory import losses


def lbfgs(fun, template, free, rng, *, restarts=4, scale=1.0, maxiter=20000):
    """Minimise ``fun(**params, grad=True) -> (value, grads)`` over the names in ``free``.

    ``template`` gives every parameter (fixed ones keep their values). Returns (best value, best
    params) and the list of all final values.
    """
    shapes = {k: np.shape(template[k]) for k in free}
    sizes = [int(np.prod(shapes[k])) for k in free]

    def unpack(v):
        out = dict(template)
        i = 0
        for k, n in zip(free, sizes):
            out[k] = v[i:i + n].reshape(shapes[k])
            i += n
        return out

    def f(v):
        val, g = fun(**unpack(v), grad=True)
        return val, np.concatenate([np.ravel(g[k]) for k in free])

    best, best_p, finals = np.inf, None, []
    for _ in range(restarts):
        v0 = rng.normal(scale=scale, size=sum(sizes))
        res = minimize(f, v0, jac=True, method="L-BFGS-B",
                       options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-15,
                                "gtol": 1e-11, "maxcor": 30})
        finals.append(res.fun)
        if res.fun < best:
            best, best_p = res.fun, unpack(res.x)
    return best, best_p, finals


def vae(A, d1, *, beta, eta_enc, eta_dec, log_var=None, rng, restarts=4):
    """Numerical VAE optimum; learnable variance unless ``log_var`` is given."""
    D = A.shape[0]
    tpl = {"W": np.zeros((d1, D)), "U": np.zeros((D, d1)),
           "log_var": np.zeros(d1) if log_var is None else np.asarray(log_var, float)}
    free = ["W", "U"] + (["log_var"] if log_var is None else [])

    def fun(grad=False, **p):
        return losses.vae_loss(A, p["W"], p["U"], p["log_var"], beta=beta, eta_enc=eta_enc,
                               eta_dec=eta_dec, grad=grad)

    return lbfgs(fun, tpl, free, rng, restarts=restarts, scale=0.5)


def cvae(M, x_dim, d1, *, beta, eta_enc, eta_dec, log_var=None, rng, restarts=4):
    D0, D2 = x_dim, M.shape[0] - x_dim
    tpl = {"W1": np.zeros((d1, D0)), "W2": np.zeros((d1, D2)), "U1": np.zeros((D2, d1)),
           "U2": np.zeros((D2, D0)),
           "log_var": np.zeros(d1) if log_var is None else np.asarray(log_var, float)}
    free = ["W1", "W2", "U1", "U2"] + (["log_var"] if log_var is None else [])

    def fun(grad=False, **p):
        return losses.cvae_loss(M, x_dim, p["W1"], p["W2"], p["U1"], p["U2"], p["log_var"],
                                beta=beta, eta_enc=eta_enc, eta_dec=eta_dec, grad=grad)

    return lbfgs(fun, tpl, free, rng, restarts=restarts, scale=0.5)


def mhvae(A, d1, d2, *, beta1, beta2, eta_enc, eta_dec, sigma1, sigma2=None, rng, restarts=4):
    """Numerical hierarchical optimum; Sigma2 learnable unless ``sigma2`` is given."""
    D = A.shape[0]
    tpl = {"W1": np.zeros((d1, D)), "U1": np.zeros((D, d1)), "W2": np.zeros((d2, d1)),
           "U2": np.zeros((d1, d2)), "log_var1": np.full(d1, np.log(sigma1 ** 2)),
           "log_var2": np.zeros(d2) if sigma2 is None else np.full(d2, np.log(sigma2 ** 2))}
    free = ["W1", "U1", "W2", "U2"] + (["log_var2"] if sigma2 is None else [])

    def fun(grad=False, **p):
        return losses.mhvae_loss(A, p["W1"], p["U1"], p["W2"], p["U2"], p["log_var1"],
                                 p["log_var2"], beta1=beta1, beta2=beta2, eta_enc=eta_enc,
                                 eta_dec=eta_dec, grad=grad)

    return lbfgs(fun, tpl, free, rng, restarts=restarts, scale=0.5)


def sqrtm_psd(A):
    w, P = np.linalg.eigh(A)
    return (P * np.sqrt(np.clip(w, 0, None))) @ P.T


def svals(M, k):
    """Singular values sorted descending, zero-padded/truncated to length k."""
    s = np.linalg.svd(M, compute_uv=False) if M.size else np.zeros(0)
    out = np.zeros(k)
    out[:min(k, s.size)] = s[:k]
    return out

"""Small numerical kernels every layer shares, each written once.

* :func:`rank_tolerance` -- the one rule for a "negligible" eigenvalue or singular value;
* :func:`psd_eigh`, :func:`psd_sqrt` -- eigen-decompositions of second-moment matrices;
* :func:`sorted_singular_values`, :func:`pad_sorted` -- the reported form of singular values
  (descending, one entry per latent dim);
* :func:`kl_per_dim` -- KL of a Gaussian posterior from the prior, averaged over the data;
* the collapse rules (docs/theory.md §7): :func:`collapsed_to_prior`, :func:`zero_mean`,
  :func:`active_units`, :func:`kl_active`;
* :class:`Adam` -- the first-order optimiser of the checker's warm-up and of the stochastic trainer.
"""

from __future__ import annotations

import numpy as np

EPS = float(np.finfo(np.float64).eps)

#: a dim "collapsed to the prior" has KL below this (nats), in the exact checker
KL_COLLAPSE_TOL = 1e-6
#: the default delta of the rules people log (AU(delta), KL_j > delta), Burda et al. 2016
DELTA = 0.01


# ------------------------------------------------------------------------------------------
# negligible values and decompositions


def rank_tolerance(scale, dim):
    """Values at or below ``scale * dim * eps`` count as zero (numpy.linalg.matrix_rank's rule,
    ``scale`` being the largest value of the matrix whose rank is decided)."""
    return float(max(scale, 0.0)) * (max(int(dim), 1) * EPS)  # no overflow near the top


def blas_threads(n=1):
    """Context limiting BLAS/LAPACK to ``n`` threads (threadpoolctl; a no-op without it).

    Eigen-decompositions and SVDs of moment matrices are dominated by level-2 BLAS with a
    barrier per column: on a shared or oversubscribed machine two threads spin-wait, and one
    thread was 50x faster for ``eigvalsh`` of 784 x 784 (0.14 s vs 5-10 s; bench/bench_spectrum.py).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=n)


def lapack_threads():
    """Context for the eigen-decompositions of moment matrices: one BLAS thread when the machine
    is busy (1-minute load average at or above its cores: two threads then spin-wait, 5-10 s
    instead of 0.14 s for 784 x 784), the default otherwise (idle, two threads are faster)."""
    import contextlib
    import os

    try:
        busy = os.getloadavg()[0] >= (len(os.sched_getaffinity(0)) - 0.5)
    except (AttributeError, OSError):
        busy = True
    return blas_threads(1) if busy else contextlib.nullcontext()


def psd_eigh(M, *, with_vectors=True, scale=None):
    """Eigen-decomposition of a symmetric PSD matrix, descending, negligible values set to 0.

    Returns ``(w, P, tol)`` (``P`` None without vectors); ``scale`` (default: the largest
    eigenvalue) sets :func:`rank_tolerance`.
    """
    M = 0.5 * (M + M.T)
    if with_vectors:
        w, P = np.linalg.eigh(M)
        w, P = w[::-1].copy(), P[:, ::-1].copy()
    else:
        w, P = np.linalg.eigvalsh(M)[::-1].copy(), None
    top = w[0] if w.size else 0.0
    tol = rank_tolerance(top if scale is None else scale, M.shape[0])
    return np.where(w > tol, w, 0.0), P, tol


def psd_sqrt(M):
    """Symmetric square root of a PSD matrix."""
    w, P, _ = psd_eigh(M)
    return (P * np.sqrt(w)) @ P.T


def sorted_singular_values(M, d=None):
    """Singular values of ``M``, descending, zero-padded (or truncated) to ``d`` entries."""
    s = np.linalg.svd(M, compute_uv=False) if np.size(M) else np.zeros(0)
    return s if d is None else pad_sorted(s, d)


def pad_sorted(v, d):
    """``v`` sorted descending and zero-padded (or truncated) to length ``d``."""
    v = np.sort(np.asarray(v, dtype=np.float64).ravel())[::-1]
    out = np.zeros(int(d))
    k = min(int(d), v.size)
    out[:k] = v[:k]
    return out


# ------------------------------------------------------------------------------------------
# KL and the collapse rules (docs/theory.md §7)


def kl_per_dim(mean_sq, std, eta_enc):
    """``E_x KL(N(mu_j(x), s_j^2) || N(0, eta_enc^2))`` per dim, from ``mean_sq = E[mu_j^2]``.

    ``= (s_j^2/eta_enc^2 + E[mu_j^2]/eta_enc^2 - 1 - log(s_j^2/eta_enc^2)) / 2`` nats.
    """
    v = (np.asarray(std, dtype=np.float64) / eta_enc) ** 2
    return 0.5 * (v - 1.0 - np.log(v)) + 0.5 * np.asarray(mean_sq) / eta_enc ** 2


def collapsed_to_prior(kl, tol=KL_COLLAPSE_TOL) -> int:
    """Rule (a), posterior = prior: dims with ``KL_j <= tol`` nats."""
    return int(np.count_nonzero(np.asarray(kl) <= tol))


def zero_mean(mean_sq, eta_enc, tol=KL_COLLAPSE_TOL) -> int:
    """Rule (b), zero posterior mean on the data support: dims whose mean part of the KL,
    ``E[mu_j^2] / (2 eta_enc^2)``, is at most ``tol`` nats (never zero rows of W: docs/theory.md §6)."""
    return int(np.count_nonzero(np.asarray(mean_sq) / (2.0 * eta_enc ** 2) <= tol))


def active_units(mean_var, delta=DELTA) -> int:
    """AU(delta) = #{j : Var_x E[z_j | x] > delta} (Burda et al. 2016)."""
    return int(np.count_nonzero(np.asarray(mean_var) > delta))


def kl_active(kl, delta=DELTA) -> int:
    """#{j : KL_j > delta} (the per-dim KL people log)."""
    return int(np.count_nonzero(np.asarray(kl) > delta))


# ------------------------------------------------------------------------------------------
# Adam


class Adam:
    """Adam (Kingma & Ba 2015) on a dict of arrays; the step size is given per call.

    ``lr`` may be a scalar or, per key, an array of per-coordinate step sizes.
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8):
        self.b1, self.b2, self.eps = b1, b2, eps
        self.t = 0
        self.m, self.v = {}, {}

    def step(self, params, grads, lr):
        """Return the updated ``params`` (a new dict; the arrays in ``params`` are not modified)."""
        self.t += 1
        c1, c2 = 1.0 - self.b1 ** self.t, 1.0 - self.b2 ** self.t
        out = dict(params)
        for k, g in grads.items():
            m = self.m.get(k)
            if m is None:
                m = self.m[k] = np.zeros_like(g)
                self.v[k] = np.zeros_like(g)
            m = self.m[k] = self.b1 * m + (1.0 - self.b1) * g
            v = self.v[k] = self.b2 * self.v[k] + (1.0 - self.b2) * g * g
            a = lr[k] if isinstance(lr, dict) else lr
            out[k] = params[k] - a * (m / c1) / (np.sqrt(v / c2) + self.eps)
        return out

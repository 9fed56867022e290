"""Helpers for using vaetheory as an oracle in your own tests of linear (C/H)VAE code.

Typical use in a property-based test of a training loop::

    from hypothesis import given
    from vaetheory.testing import spectra, vae_hyperparameters, expected_vae

    @given(spectra(max_dim=6), vae_hyperparameters())
    def test_my_vae_collapses_as_predicted(spectrum, hp):
        W, U, log_var = my_train(spectrum.eigenvalues, **hp)      # your code, diagonal data
        expected = expected_vae(spectrum, latent_dim=W.shape[0], **hp)
        assert_singular_values_close(U, expected.singular_values["decoder"], atol=1e-3)

The strategies need ``hypothesis`` (imported lazily, only when a strategy is built).
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError
from .moments import Spectrum, spectrum_from_eigenvalues
from .theory import vae_fixed_sigma, vae_learnable_sigma


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_range(name, bounds, *, positive=True):
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a (low, high) pair of numbers, got {bounds!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or (positive and lo <= 0):
        what = "0 < low <= high" if positive else "low <= high"
        raise ParameterError(f"{name} must satisfy {what} (finite), got {bounds!r}")
    return lo, hi

__all__ = [
    "assert_singular_values_close",
    "collapsed_by_mean",
    "expected_vae",
    "spectra",
    "vae_hyperparameters",
]


def spectra(*, max_dim=8, kind="data", allow_zero=True, min_value=1e-4, max_value=1e4):
    """Hypothesis strategy of :class:`Spectrum` objects, degenerate cases included.

    Draws eigenvalues log-uniformly in ``[min_value, max_value]``, with exact zeros (rank
    deficiency) and exact ties mixed in. The arguments are checked when the strategy is built
    (as ``hypothesis.extra.numpy`` does): a bad one raises :class:`~vaetheory.errors.ParameterError`.
    """
    from hypothesis import strategies as st

    max_dim = _check_int("max_dim", max_dim, 1)
    if kind not in ("data", "residual"):
        raise ParameterError(f"kind must be 'data' or 'residual', got {kind!r}")
    min_value, max_value = _check_range("(min_value, max_value)", (min_value, max_value))

    value = st.floats(np.log(min_value), np.log(max_value)).map(np.exp)
    item = st.one_of(value, st.just(0.0)) if allow_zero else value

    @st.composite
    def build(draw):
        ev = draw(st.lists(item, min_size=1, max_size=max_dim))
        if len(ev) >= 2 and draw(st.booleans()):
            ev[1] = ev[0]  # a tie
        return spectrum_from_eigenvalues(ev, kind=kind)

    return build()


def vae_hyperparameters(*, beta=(1e-2, 1e2), eta=(0.1, 10.0)):
    """Hypothesis strategy of ``dict(beta=..., eta_enc=..., eta_dec=...)`` (log-uniform in the
    given ``(low, high)`` ranges, checked when built)."""
    from hypothesis import strategies as st

    beta, eta = _check_range("beta", beta), _check_range("eta", eta)

    def logu(lo, hi):
        return st.floats(np.log(lo), np.log(hi)).map(lambda v: float(np.exp(v)))

    return st.fixed_dictionaries({"beta": logu(*beta), "eta_enc": logu(*eta),
                                  "eta_dec": logu(*eta)})


def expected_vae(spectrum, latent_dim, *, sigma=None, **hyper):
    """The closed-form optimum of the standard VAE: learnable variance, or fixed if ``sigma``."""
    if not isinstance(spectrum, Spectrum):
        spectrum = spectrum_from_eigenvalues(spectrum)
    if sigma is None:
        return vae_learnable_sigma(spectrum, latent_dim, **hyper)
    return vae_fixed_sigma(spectrum, latent_dim, sigma, **hyper)


def collapsed_by_mean(W, A, *, tol=1e-6):
    """Number of latent dims whose posterior mean is (numerically) zero on the data.

    Uses ``E[(W x)_j^2] = (W A W^T)_jj`` relative to the largest (``tol``), not the row norms of W (rows
    can be large in the null space of A without carrying any signal; docs/theory.md §6, §7).
    """
    W, A = np.asarray(W, float), np.asarray(A, float)
    energy = np.einsum("ij,jk,ik->i", W, A, W)
    # relative to the strongest dim, with a roundoff floor relative to the data's scale
    threshold = max(tol * float(np.max(energy)), 1e-13 * float(np.trace(A)), 1e-300)
    return int(np.sum(energy <= threshold))


def assert_singular_values_close(M, expected, *, atol=1e-4, rtol=1e-4):
    """Assert that the sorted singular values of matrix ``M`` equal ``expected`` (sorted, zero-padded
    to the longer length)."""
    s = np.linalg.svd(np.asarray(M, float), compute_uv=False)
    e = np.sort(np.asarray(expected, float))[::-1]
    n = max(s.size, e.size)
    s, e = np.pad(s, (0, n - s.size)), np.pad(e, (0, n - e.size))
    np.testing.assert_allclose(s, e, atol=atol, rtol=rtol,
                               err_msg="singular values differ from the closed-form optimum")

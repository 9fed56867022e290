"""vaetheory: closed-form global optima and posterior-collapse predictions for linear VAEs.

Flow: ``io`` (files -> arrays) -> ``moments`` (arrays -> second moments, spectra) -> ``theory``
(spectra + hyperparameters -> closed-form optima, one function per theorem) -> ``losses`` (the exact
objectives) -> ``checker`` (numerical optima) -> ``report``/``cli``.

>>> import numpy as np, vaetheory as vt
>>> X = np.random.default_rng(0).normal(size=(1000, 8)) * np.arange(1, 9)
>>> sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), latent_dim=4, beta=[1.0, 40.0])  # variances ~ 64, 49, 36, 25
>>> sol.collapsed().tolist()
[0, 2]
"""

from ._validation import DataError, NotCoveredError
from .moments import (
    Moments,
    Spectrum,
    empirical_moments,
    empirical_residual_spectrum,
    empirical_spectrum,
    residual_spectrum,
    spectrum_from_eigenvalues,
    spectrum_from_moments,
)
from .theory import (
    Solution,
    cvae_fixed_sigma,
    cvae_learnable_sigma,
    mhvae_fixed_sigma2,
    mhvae_learnable_sigma2,
    solve,
    vae_fixed_sigma,
    vae_learnable_sigma,
)

__version__ = "0.1.0"

__all__ = [
    "DataError", "NotCoveredError", "Moments", "Spectrum", "Solution",
    "empirical_moments", "empirical_residual_spectrum", "empirical_spectrum", "residual_spectrum",
    "spectrum_from_eigenvalues", "spectrum_from_moments",
    "vae_fixed_sigma", "vae_learnable_sigma", "cvae_fixed_sigma", "cvae_learnable_sigma",
    "mhvae_learnable_sigma2", "mhvae_fixed_sigma2", "solve",
]

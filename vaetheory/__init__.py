"""vaetheory: closed-form global optima and posterior-collapse predictions for linear VAEs.

Flow: ``io`` (files -> row blocks, with provenance: :class:`Selection`) -> ``moments`` (second
moments, spectra; streaming, float64) -> ``theory`` (spectra + hyperparameters -> closed-form
optima, one function per theorem) -> ``losses`` (the exact objectives) -> ``checker`` / ``sgd``
(numerical optima, stochastic training) -> ``report`` / ``plot`` / ``cli``. What each (model, variance)
setting is lives in one record in :mod:`vaetheory.settings`; the mathematics is in
docs/theory.md.

>>> import numpy as np, vaetheory as vt
>>> X = np.random.default_rng(0).normal(size=(1000, 8)) * np.arange(1, 9)
>>> sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), latent_dim=4, beta=[1.0, 40.0])  # variances ~ 64, 49, 36, 25
>>> sol.collapsed().tolist()
[0, 2]
"""

from .errors import (DataError, NotCoveredError, NotRepresentableError, ParameterError,
                     ResourceError, VaetheoryError, Verdict)
from .io import Selection
from .moments import (
    Moments,
    Spectrum,
    empirical_moments,
    empirical_residual_spectrum,
    empirical_spectrum,
    load_spectrum,
    residual_spectrum,
    spectrum_from_eigenvalues,
    spectrum_from_moments,
)
from .settings import SETTINGS, Request, Setting
from .theory import (
    Point,
    Solution,
    cvae_fixed_sigma,
    cvae_fixed_sigma_learned_decoder,
    cvae_learnable_sigma,
    cvae_learnable_sigma_learned_decoder,
    mhvae_fixed_sigma2,
    mhvae_learnable_sigma2,
    solve,
    vae_fixed_sigma,
    vae_fixed_sigma_learned_decoder,
    vae_learnable_sigma,
    vae_learnable_sigma_learned_decoder,
)

__version__ = "0.1.0"

__all__ = [
    "VaetheoryError", "ParameterError", "DataError", "NotCoveredError", "ResourceError",
    "NotRepresentableError", "Verdict",
    "Selection", "Moments", "Spectrum", "Solution", "Point", "Setting", "SETTINGS", "Request",
    "empirical_moments", "empirical_residual_spectrum", "empirical_spectrum", "load_spectrum",
    "residual_spectrum", "spectrum_from_eigenvalues", "spectrum_from_moments",
    "vae_fixed_sigma", "vae_learnable_sigma", "cvae_fixed_sigma", "cvae_learnable_sigma",
    "mhvae_learnable_sigma2", "mhvae_fixed_sigma2", "solve",
    "vae_learnable_sigma_learned_decoder", "vae_fixed_sigma_learned_decoder",
    "cvae_learnable_sigma_learned_decoder", "cvae_fixed_sigma_learned_decoder",
]

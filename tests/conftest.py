import os
import sys

import numpy as np
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/_numopt.py

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow],
                          derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


def random_psd(rng, D, rank=None, ties=False, scale=1.0):
    """A D x D PSD matrix with the given rank; optionally tied eigenvalues."""
    rank = D if rank is None else rank
    phi = np.sort(rng.uniform(0.05, 4.0, size=rank))[::-1] * scale
    if ties and rank >= 3:
        phi[1] = phi[2]
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    P = Q[:, :rank]
    return (P * phi) @ P.T

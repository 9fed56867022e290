"""The oracle helpers in vaetheory.testing, used the way a downstream test would."""

import numpy as np
import pytest
from hypothesis import given, settings

import _numopt as nopt
from vaetheory import testing


@settings(max_examples=40)
@given(testing.spectra(max_dim=6), testing.vae_hyperparameters())
def test_constructed_optimum_passes_the_oracle(spectrum, hp):
    d1 = 4
    sol = testing.expected_vae(spectrum, d1, **hp)
    m = sol.matrices()
    testing.assert_singular_values_close(m["U"], sol.singular_values["decoder"])
    # a mode within roundoff of its threshold (e.g. eigenvalue 1 + 1e-13 at beta = eta_dec = 1) is
    # active with a ~1e-7 singular value: exact in the closed form, "zero" to a tolerance-based count
    crit = np.asarray(sol.critical["beta"], dtype=float).ravel()
    near = int(np.sum(np.abs(crit / hp["beta"] - 1.0) < 1e-6))
    k = int(sol.collapsed())
    assert k <= testing.collapsed_by_mean(m["W"], spectrum.matrix) <= k + near


def test_oracle_agrees_with_an_independent_optimiser_and_rejects_a_wrong_model():
    rng = np.random.default_rng(0)
    ev = np.array([4.0, 2.0, 0.5, 0.1])
    sol = testing.expected_vae(ev, 3, beta=0.8)
    _, p, _ = nopt.vae(np.diag(ev), 3, beta=0.8, eta_enc=1.0, eta_dec=1.0, rng=rng)
    testing.assert_singular_values_close(p["U"], sol.singular_values["decoder"], atol=1e-4)
    assert testing.collapsed_by_mean(p["W"], np.diag(ev), tol=1e-6) == int(sol.collapsed())
    with pytest.raises(AssertionError, match="closed-form"):
        testing.assert_singular_values_close(p["U"] * 1.1, sol.singular_values["decoder"])


@pytest.mark.parametrize("build", [
    lambda: testing.spectra(kind="bogus"),
    lambda: testing.spectra(max_dim=-3),
    lambda: testing.spectra(max_dim=2.5),
    lambda: testing.spectra(min_value=0.0),
    lambda: testing.spectra(min_value=10.0, max_value=1.0),
    lambda: testing.vae_hyperparameters(beta=(2.0, 1.0)),
    lambda: testing.vae_hyperparameters(eta=(-1.0, 1.0)),
])
def test_strategies_check_their_arguments_when_built(build):
    from vaetheory.errors import ParameterError

    with pytest.raises(ParameterError):
        build()

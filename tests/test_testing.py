"""The oracle helpers in vaetheory.testing, used the way a downstream test would."""

import numpy as np
import pytest
from hypothesis import given, settings

import _numopt as nopt
from vaetheory import settings as vs
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


# ------------------------------------------------------------------------------------------
# the strategies of the testing kit: what they draw is what they say (checked with numpy)


@settings(max_examples=60)
@given(testing.data_matrices(n_samples=(2, 12), dim=(1, 8)))
def test_data_matrices_have_their_designed_spectrum_and_mean(case):
    N, D = case.X.shape
    cov = np.atleast_2d(np.cov(case.X.T, bias=True))
    ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
    top = max(case.eigenvalues[0], 1e-300)
    np.testing.assert_allclose(ev, case.eigenvalues, atol=1e-9 * top + 1e-300)
    np.testing.assert_allclose(case.X.mean(0), case.mean,
                               atol=1e-9 * (1 + np.abs(case.mean).max() + np.sqrt(top)))
    assert case.rank <= min(N - 1, D)
    np.testing.assert_allclose(case.second_moment, case.X.T @ case.X / N,
                               atol=1e-9 * (top + np.abs(case.mean).max() ** 2 + 1))


def test_data_matrices_reach_the_degenerate_cases():
    from hypothesis import find

    strat = testing.data_matrices(n_samples=(2, 10), dim=(1, 8))
    find(strat, lambda c: c.X.shape[0] < c.X.shape[1])                      # N < D
    find(strat, lambda c: c.rank < c.X.shape[1])                            # rank deficient
    find(strat, lambda c: c.rank >= 2 and c.eigenvalues[0] == c.eigenvalues[1] or
         c.rank >= 3 and c.eigenvalues[1] == c.eigenvalues[2])              # ties
    find(strat, lambda c: np.any(c.mean != 0))                              # a mean
    big = find(testing.data_matrices(scale=1e6, value_range=(1.0, 1.0)), lambda c: True)
    assert big.eigenvalues[0] == pytest.approx(1e12)


@settings(max_examples=60)
@given(testing.cvae_pairs())
def test_cvae_pairs_have_their_designed_residual(case):
    """The residual of y after least-squares regression on x (numpy lstsq, centred) has the
    designed covariance eigenvalues, and the regression map is the designed K."""
    x, y = case.x - case.x.mean(0), case.y - case.y.mean(0)
    # rank of x as designed: lstsq's default cut (eps max(N, D)) can count the centring's rounding
    # (~1e-16 of the largest singular value) as directions, and regress y on that noise (a CI
    # draw: rank-1 x in 4 columns, 6 rows, residual 0.966 instead of 1)
    K, *_ = np.linalg.lstsq(x, y, rcond=1e-10)
    r = y - x @ K
    e = np.sort(np.linalg.eigvalsh(np.atleast_2d(np.cov(r.T, bias=True))))[::-1]
    scale = max(np.var(y, 0).max(), 1e-300)
    np.testing.assert_allclose(e, case.residual_eigenvalues, atol=1e-8 * scale)
    np.testing.assert_allclose(x @ case.regression.T, x @ K, atol=1e-7 * np.sqrt(scale))


def test_more_correlation_lowers_the_residual_spectrum():
    from hypothesis import find

    lo = find(testing.cvae_pairs(correlation=0.0), lambda c: True)
    hi = find(testing.cvae_pairs(correlation=0.8), lambda c: True)
    # same draws apart from rho: the residual shrinks by 1 - rho^2
    np.testing.assert_allclose(hi.residual_eigenvalues, 0.36 * lo.residual_eigenvalues)


@pytest.mark.parametrize("setting", list(vs.SETTINGS.values()), ids=lambda s: s.name)
def test_hyperparameters_of_every_setting_are_valid_for_it(setting):
    from hypothesis import given as given_, settings as settings_

    @settings_(max_examples=15)
    @given_(testing.hyperparameters(setting, latent_dim=3, latent_dim2=2))
    def check(hp):
        assert set(hp) == set(setting.names)
        vs.point_hyper(setting, hp, 3, 2)  # every value passes the record's constraints
        for spec in setting.hyperparameters:
            lo, hi = testing.DEFAULT_RANGES[spec.name]
            v = np.atleast_1d(hp[spec.name])
            assert np.all((v >= lo * (1 - 1e-12)) & (v <= hi * (1 + 1e-12)))

    check()


@settings(max_examples=30)
@given(testing.problems(center=None))
def test_problems_cover_their_settings_with_consistent_parts(problem):
    s = problem.setting
    assert s.covered
    assert (problem.latent_dim2 is not None) == s.has_second_latent
    if s.spectrum_kind == "residual":
        assert isinstance(problem.case, testing.PairCase) and len(problem.data) == 2
    point = problem.optimum()
    assert point.solution.setting is s
    assert np.isfinite(point.optimal_loss)


@pytest.mark.parametrize("build", [
    lambda: testing.data_matrices(n_samples=1),
    lambda: testing.data_matrices(dim=(3, 2)),
    lambda: testing.data_matrices(scale=0.0),
    lambda: testing.data_matrices(mean="yes"),
    lambda: testing.data_matrices(rank=-1),
    lambda: testing.cvae_pairs(correlation=1.0),
    lambda: testing.cvae_pairs(n_samples=3),
    lambda: testing.hyperparameters("vae/learnable", ranges={"beta1": (1, 2)}),
    lambda: testing.hyperparameters("vae/fixed", ranges={"sigma": (0, 1)}),
    lambda: testing.hyperparameters("nope/learnable"),
    lambda: testing.problems(settings=["mhvae/both-learnable"]),
    lambda: testing.problems(latent_dim=0),
    lambda: testing.problems(center="x"),
])
def test_new_strategies_check_their_arguments_when_built(build):
    from vaetheory.errors import ParameterError

    with pytest.raises(ParameterError):
        build()


# ------------------------------------------------------------------------------------------
# learned decoder variance (docs/theory.md §12): strategies and the oracle


@pytest.mark.parametrize("setting", [s for s in vs.LEARNED_DECODER.values()],
                         ids=lambda s: s.name)
def test_hyperparameters_of_learned_decoder_settings_have_no_eta_dec(setting):
    from hypothesis import find

    hp = find(testing.hyperparameters(setting, latent_dim=3, latent_dim2=2), lambda h: True)
    assert "eta_dec" not in hp and set(hp) == set(setting.names)
    vs.point_hyper(setting, hp, 3, 2)


@settings(max_examples=40, deadline=None)
@given(testing.problems(center=None))
def test_problems_draw_learned_decoder_settings_with_a_minimum(problem):
    point = problem.optimum()
    assert np.isfinite(point.optimal_loss)
    if problem.setting.learned_decoder:
        assert "eta_dec" not in problem.hyper and not point.learned["unbounded"]
        m = problem.optimal_parameters()
        assert np.exp(m["log_u"]) == pytest.approx(point.learned["u"], rel=1e-15)


def test_the_default_problems_cover_the_learned_decoder_records():
    from hypothesis import find

    for s in vs.LEARNED_DECODER.values():
        if s.covered:
            assert find(testing.problems(), lambda p, s=s: p.setting is s).setting is s
    from vaetheory.errors import ParameterError

    with pytest.raises(ParameterError, match="no closed form"):
        testing.problems(settings=[vs.get("mhvae", "sigma2-fixed", "learned")])

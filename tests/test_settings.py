"""The settings records (vaetheory.settings), the public errors and verdicts, and Solution.at.

Each record must agree with what its theory and loss functions actually do: the tests call them
and compare, so a record that drifts from its functions fails here.
"""

import inspect

import numpy as np
import pytest
from click.testing import CliRunner

import vaetheory as vt
from vaetheory import losses, settings
from vaetheory.errors import (EXIT_INTERNAL, DataError, NotCoveredError, ParameterError,
                              VaetheoryError, Verdict)

COVERED = [s for s in settings.SETTINGS.values() if s.covered]


def _spectrum(kind):
    return vt.spectrum_from_eigenvalues([4.0, 2.0, 1.0, 0.25, 0.0], kind=kind)


def _hyper(setting, d=3):
    h = {n: 0.7 for n in setting.names}
    return h


@pytest.mark.parametrize("setting", COVERED, ids=lambda s: s.name)
def test_record_matches_its_theory_function(setting):
    fn = setting.theory_function
    sig = inspect.signature(fn)
    for spec in setting.hyperparameters:  # the table's defaults are the function's
        assert spec.name in sig.parameters, spec.name
        if spec.default is not None:
            assert sig.parameters[spec.name].default == spec.default, spec.name
    sol = setting.solve(_spectrum(setting.spectrum_kind), 3, 2 if setting.has_second_latent else None,
                        **_hyper(setting))
    assert (sol.model, sol.variance) == setting.key and sol.setting is setting
    assert tuple(sol.latent_dims) == setting.latent_names
    assert tuple(sol.singular_values) == setting.map_names
    assert set(sol.ranks) == set(setting.map_names)
    assert tuple(sol.critical) == setting.critical
    assert {k: v for k, v in sol.critical_direction.items()} == {
        n: setting.direction(n) for n in setting.critical}
    assert set(sol.posterior_std) == {z.name for z in setting.latents if z.learned}
    for z in setting.latents:  # "prior" collapse is exact; "zero-mean" is a range when tied
        if z.collapse == "prior":
            assert sol.exact[z.name]
    assert sol.theorem == setting.theorem and "docs/theory.md " + setting.section in sol.theorem


@pytest.mark.parametrize("setting", list(settings.SETTINGS.values()), ids=lambda s: s.name)
def test_record_matches_its_loss_function(setting):
    D, d1, d2, x_dim = 5, 3, 2, 2
    shapes = setting.parameter_shapes(D, d1, d2, x_dim)
    assert tuple(shapes) == setting.parameters
    params = {n: np.zeros(s) for n, s in shapes.items()}
    hyper = {n: 0.7 for n in setting.axes}
    lead = (np.eye(D), x_dim) if setting.spectrum_kind == "residual" else (np.eye(D),)
    extra = {"sigma1_entropy": setting.sigma1_entropy} if setting.has_second_latent else {}
    value, grads = setting.loss_function(*lead, *params.values(), **hyper, **extra, grad=True)
    assert np.isfinite(value) and set(grads) == set(shapes)
    for name in setting.learned_log_vars + tuple(setting.fixed_log_vars):
        assert name in shapes
    for name, hp in setting.fixed_log_vars.items():
        assert hp in setting.names


def test_resolve_and_lookup():
    assert settings.resolve("vae").variance == "learnable"
    assert settings.resolve("vae", given={"sigma"}).variance == "fixed"
    assert settings.resolve("cvae", given={"sigma"}).variance == "fixed"
    assert settings.resolve("mhvae").variance == "sigma2-learnable"
    assert settings.resolve("mhvae", given={"sigma2"}).variance == "sigma2-fixed"
    assert settings.resolve("mhvae", "fixed").variance == "sigma2-fixed"
    assert not settings.get("mhvae", "both-learnable").covered
    with pytest.raises(ParameterError, match="known: vae/learnable"):
        settings.get("vae", "sigma2-fixed")
    with pytest.raises(ParameterError, match="unknown model"):
        settings.resolve("gan")


def test_one_constraint_rule_everywhere():
    """beta = 0 was accepted by the losses and refused elsewhere; now every layer refuses it."""
    A, W, U, lv = np.eye(2), np.zeros((1, 2)), np.zeros((2, 1)), np.zeros(1)
    for call in (
        lambda: losses.vae_loss(A, W, U, lv, beta=0.0, eta_enc=1.0, eta_dec=1.0),
        lambda: vt.vae_learnable_sigma(_spectrum("data"), 2, beta=0.0),
        lambda: settings.point_hyper(settings.get("vae", "learnable"), {"beta": 0.0}, 2),
        lambda: settings.Request.build(settings.get("vae", "learnable"), beta=[1.0, 0.0]),
    ):
        with pytest.raises(ParameterError, match="beta must be positive"):
            call()
    with pytest.raises(ParameterError, match="not used by vae/learnable: sigma"):
        settings.point_hyper(settings.get("vae", "learnable"), {"sigma": 1.0}, 2)
    h = settings.point_hyper(settings.get("vae", "fixed"), {"sigma": 0.5}, 3)
    assert h == {"beta": 1.0, "eta_enc": 1.0, "eta_dec": 1.0, "sigma": pytest.approx([0.5] * 3)}


def test_request_is_the_grid_of_the_command_line():
    s = settings.get("mhvae", "sigma2-fixed")
    req = settings.Request.build(s, latent_dims=[2, 3], latent_dims2=[1], beta2=[1.0, 2.0, 3.0],
                                 sigma2=0.5)
    assert req.grid_shape == (1, 3, 1, 1) and req.swept == ["beta2"]
    assert req.latent_settings() == [(2, 1), (3, 1)]
    assert np.allclose(req.vectors["sigma1"], 1.0) and np.allclose(req.vectors["sigma2"], 0.5)
    sols = req.solve(_spectrum("data"))
    assert [sol.latent_dims for sol in sols] == [{"z1": 2, "z2": 1}, {"z1": 3, "z2": 1}]
    points = list(req.points())
    assert len(points) == 6 and points[1][3]["beta2"] == 2.0
    assert not settings.Request.build(settings.get("mhvae", "sigma2-learnable"),
                                      sigma1=[0.5, 1.0]).covered


def test_point_view_reads_one_grid_point():
    sol = vt.vae_fixed_sigma(_spectrum("data"), 3, [0.5, 1.0, 2.0], beta=[0.5, 2.0],
                             eta_dec=[[1.0], [0.5]])
    assert sol.grid_shape == (2, 2)
    pt = sol.at((1, 0))
    assert pt.params == {"beta": 0.5, "eta_enc": 1.0, "eta_dec": 0.5, "sigma": [0.5, 1.0, 2.0],
                         "latent_dim": 3}
    np.testing.assert_array_equal(pt.singular_values["decoder"],
                                  np.asarray(sol.singular_values["decoder"])[1, 0])
    assert pt.optimal_loss == float(sol.optimal_loss[1, 0])
    assert pt.collapsed == {"z": int(sol.collapsed_min["z"][1, 0])}  # distinct sigmas: exact
    np.testing.assert_array_equal(pt.hyper["sigma"], [0.5, 1.0, 2.0])
    assert len(sol.points()) == 4
    for bad in ((2, 0), (0,), (0, 0, 0)):
        with pytest.raises(ParameterError, match="does not address a point"):
            sol.at(bad)
    one = vt.vae_learnable_sigma(_spectrum("data"), 2)  # scalar hyperparameters: grid shape ()
    assert one.grid_shape == () and one.at().optimal_loss == float(one.optimal_loss)
    grid1 = vt.vae_learnable_sigma(_spectrum("data"), 2, beta=[2.0])  # a one-point grid
    assert grid1.at().optimal_loss == grid1.at((0,)).optimal_loss


def test_errors_are_public_with_exit_codes():
    assert issubclass(ParameterError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(NotCoveredError, ParameterError)
    assert all(issubclass(e, VaetheoryError) for e in (ParameterError, DataError, NotCoveredError))
    assert (ParameterError.exit_code, DataError.exit_code, NotCoveredError.exit_code) == (2, 1, 2)
    assert vt.DataError is DataError and vt.NotCoveredError is NotCoveredError
    e = ParameterError("key=... applies", cli="--key applies")
    assert str(e) == "key=... applies" and e.cli_message == "--key applies"


def test_verdicts_know_their_exit_codes():
    assert [Verdict(v).exit_code for v in ("CONFIRMED", "CONSISTENT", "NUMERICAL",
                                           "INCONCLUSIVE", "REFUTED")] == [0, 0, 0, 4, 3]
    assert Verdict.worst(["CONFIRMED", "INCONCLUSIVE"]) is Verdict.INCONCLUSIVE
    assert Verdict.worst(["INCONCLUSIVE", "REFUTED", "CONFIRMED"]) is Verdict.REFUTED
    assert Verdict.REFUTED == "REFUTED" and f"{Verdict.REFUTED}" == "REFUTED"


def test_an_internal_error_is_reported_as_a_bug_not_a_usage_error(tmp_path, monkeypatch):
    """A ValueError from deep inside (e.g. a numpy broadcast error) is not the user's fault."""
    from vaetheory import cli
    from vaetheory.settings import Request

    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(50, 3)))

    def broken(self, spectrum):
        raise ValueError("operands could not be broadcast together with shapes (3,) (4,)")

    monkeypatch.setattr(Request, "solve", broken)
    r = CliRunner().invoke(cli.main, ["predict", str(tmp_path / "x.npy"), "-d", "2"])
    assert r.exit_code == EXIT_INTERNAL
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: internal error: ValueError")
    assert "bug" in r.stderr and "--debug" in r.stderr

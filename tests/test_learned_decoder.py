"""A learned decoder variance u = eta_dec^2 (docs/theory.md §12): closed forms, checker, trainer, CLI.

Expected values never come from the code under test: the profile is minimised by brute force
over u with the mpmath reference's optimal losses at fixed eta_dec (tests/_reference.py, written
from the fixed-decoder theorems alone); beta = 1 is compared with probabilistic PCA (scikit-learn,
and its maximum-likelihood formulas typed in by hand); the exact checker minimises the full
negative ELBO over every matrix and u; critical values must flip the state of their own dim;
scaling the data by 2^k must scale u by 4^k exactly.
"""

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from mpmath import mp

import _reference as ref
import vaetheory as vt
from vaetheory import cli, io, settings
from vaetheory.checker import check, check_claim, numerical_optimum
from vaetheory.errors import NotCoveredError, ParameterError
from vaetheory.moments import residual_spectrum, spectrum_from_moments
from vaetheory.sgd import train_sgd

LEARNED = [s for s in settings.LEARNED_DECODER.values() if s.covered]


# --------------------------------------------------------------------------------------------
# the records


def test_learned_records_are_reached_through_the_lookups():
    for model, variance in [("vae", "learnable"), ("vae", "fixed"), ("cvae", "learnable"),
                            ("cvae", "fixed"), ("mhvae", "sigma2-learnable"),
                            ("mhvae", "sigma2-fixed")]:
        s = settings.get(model, variance, "learned")
        assert s.learned_decoder and "eta_dec" not in s.names
        assert s.learned_hyperparameters == ("eta_dec",)
        assert settings.get(model, variance) is settings.SETTINGS[(model, variance)]
        assert not settings.get(model, variance).learned_decoder
    assert settings.resolve("vae", decoder="learned").variance == "learnable"
    assert settings.resolve("vae", given={"sigma"}, decoder="learned").variance == "fixed"
    assert settings.resolve("mhvae", "fixed", decoder="learned").name == \
        "mhvae/sigma2-fixed/learned-decoder"
    assert len(settings.SETTINGS) == 7  # the fixed-decoder table is unchanged
    with pytest.raises(ParameterError, match="learned decoder"):
        settings.get("mhvae", "both-learnable", "learned")
    with pytest.raises(ParameterError, match="unknown decoder"):
        settings.get("vae", "learnable", "sometimes")


@pytest.mark.parametrize("setting", LEARNED, ids=lambda s: s.name)
def test_learned_record_matches_its_theory_function(setting):
    import inspect

    sig = inspect.signature(setting.theory_function)
    assert "eta_dec" not in sig.parameters
    for spec in setting.hyperparameters:
        assert spec.name in sig.parameters
    sp = vt.spectrum_from_eigenvalues([4.0, 2.0, 1.0, 0.25, 0.1], kind=setting.spectrum_kind)
    hyper = {n: 0.7 for n in setting.names}
    sol = setting.solve(sp, 3, **hyper)
    assert sol.setting is setting and sol.decoder == "learned"
    assert tuple(sol.critical) == setting.critical and "eta_dec" not in sol.params
    assert set(sol.learned) == {"eta_dec", "u", "kappa", "unbounded", "flat"}
    with pytest.raises(ParameterError, match="learns eta_dec"):
        setting.solve(sp, 3, eta_dec=1.0, **hyper)
    assert sol.at().water_line.level.shape == (3,)


# --------------------------------------------------------------------------------------------
# the profile against brute force with the independent reference


def _nats_ref(setting, ev, d1, u, beta, eta_enc, sigma=None):
    """E[-ELBO] at the inner optimum for eta_dec^2 = u, from the mpmath reference (§1.4)."""
    with mp.workdps(30):
        hyper = dict(beta=beta, eta_enc=eta_enc, eta_dec=mp.sqrt(mp.mpf(u)))
        if sigma is not None:
            hyper["sigma"] = list(sigma)
        L = ref.optimal_loss(setting, ev, d1, **hyper)
        u = mp.mpf(u)
        D = len(ev)
        return float(L / (2 * u) + D / 2 * mp.log(2 * mp.pi * u)
                     + mp.mpf(beta) * d1 / 2 * (mp.log(mp.mpf(eta_enc) ** 2) - 1))


def _instances(n, seed):
    """Rank-deficient, tied, zero-variance columns, latent dim above the rank."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        D = int(rng.integers(2, 7))
        r = int(rng.integers(1, D + 1))
        ev = np.zeros(D)
        ev[:r] = np.sort(rng.uniform(0.05, 5.0, r))[::-1]
        if r >= 3 and rng.random() < 0.4:
            ev[1] = ev[2]  # a tie
        d1 = int(rng.integers(1, D + 2))
        beta = float(np.exp(rng.uniform(-1.5, 1.5)))
        eta_enc = float(np.exp(rng.uniform(-0.7, 0.7)))
        sigma = np.exp(rng.uniform(-1.0, 0.4, d1))
        out.append((ev, d1, beta, eta_enc, sigma))
    return out


@pytest.mark.parametrize("kind", ["learnable", "fixed"])
def test_profile_minimum_matches_brute_force_over_u(kind):
    """No u gives a lower (reference) negative ELBO than the closed form, and the closed form's
    value is the reference's at its own u; where it says "unbounded" the reference falls."""
    checked = unbounded = 0
    for ev, d1, beta, ee, sigma in _instances(25, 7 if kind == "learnable" else 8):
        sp = vt.spectrum_from_eigenvalues(ev)
        name = "vae-" + kind
        sig = sigma if kind == "fixed" else None
        if kind == "learnable":
            sol = vt.vae_learnable_sigma_learned_decoder(sp, d1, beta=beta, eta_enc=ee)
        else:
            sol = vt.vae_fixed_sigma_learned_decoder(sp, d1, sigma, beta=beta, eta_enc=ee)
        pt = sol.at()
        assert pt.critical["beta"].shape == (d1,)   # latent dims beyond the data dim too
        if pt.value(sol.learned["unbounded"]):
            unbounded += 1
            assert kind == "learnable" and pt.optimal_loss == -math.inf
            vals = [_nats_ref(name, ev, d1, u, beta, ee, sig) for u in (1e-2, 1e-4, 1e-6)]
            assert vals[2] < vals[1] < vals[0]
            continue
        u = float(pt.value(sol.learned["u"]))
        L = pt.optimal_loss
        assert _nats_ref(name, ev, d1, u, beta, ee, sig) == pytest.approx(L, rel=1e-12, abs=1e-12)
        for v in np.exp(np.linspace(np.log(u) - 9, np.log(u) + 6, 31)).tolist() + [u * 1.001,
                                                                                   u / 1.001]:
            assert _nats_ref(name, ev, d1, v, beta, ee, sig) >= L - 1e-12 * max(1, abs(L))
        checked += 1
    assert checked >= 10 and (kind == "fixed" or unbounded >= 2)


def test_probabilistic_pca_at_beta_one_against_its_ml_formulas():
    """Tipping & Bishop: noise variance = mean of the discarded eigenvalues; loadings
    sqrt(lambda_i - sigma^2); -log-likelihood = (D log 2 pi + sum log lambda_i + (D-k) log sigma^2
    + D) / 2 per sample -- the ELBO is tight at the optimum."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 7)) * np.array([5, 3, 2, 1.5, 1, 0.5, 0.2])
    sp = vt.empirical_spectrum(X)
    lam = sp.eigenvalues
    for k in (1, 2, 4, 6):
        sol = vt.vae_learnable_sigma_learned_decoder(sp, k, beta=1.0, eta_enc=1.3)
        pt = sol.at()
        s2 = lam[k:].mean()
        assert float(pt.value(sol.learned["u"])) == pytest.approx(s2, rel=1e-13)
        nll = 0.5 * (7 * np.log(2 * np.pi) + np.sum(np.log(lam[:k])) + (7 - k) * np.log(s2) + 7)
        assert pt.optimal_loss == pytest.approx(nll, rel=1e-13)
        np.testing.assert_allclose(np.sort(pt.singular_values["decoder"])[::-1] * 1.3,
                                   np.sqrt(lam[:k] - s2), rtol=1e-12)
        assert pt.collapsed == {"z": 0}


def test_probabilistic_pca_against_scikit_learn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    X, _ = io.load_digits()
    sp = vt.empirical_spectrum(X)
    N = X.shape[0]
    for k in (4, 16, 40):
        pca = decomposition.PCA(n_components=k, svd_solver="full").fit(X)
        sol = vt.vae_learnable_sigma_learned_decoder(sp, k, beta=1.0)
        u = float(sol.at().value(sol.learned["u"]))
        assert u == pytest.approx(pca.noise_variance_ * (N - 1) / N, rel=1e-10)
        loadings = np.sqrt(pca.explained_variance_ * (N - 1) / N - u)
        np.testing.assert_allclose(sol.at().singular_values["decoder"], loadings, rtol=1e-9)


def test_unbounded_when_the_latent_dims_hold_every_mode():
    ev = [3.0, 2.0, 0.5, 0.0, 0.0]      # rank 3 in D = 5 (two zero-variance columns)
    sp = vt.spectrum_from_eigenvalues(ev)
    sol = vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=[1.0, 5 / 3, 2.0])
    unb = sol.learned["unbounded"]
    assert unb.tolist() == [True, False, False]        # D > beta * 3 only for beta < 5/3
    assert sol.learned["flat"].tolist() == [False, True, False]
    assert np.isnan(sol.learned["u"][0]) and sol.optimal_loss[0] == -np.inf
    assert any("no minimum" in n for n in sol.notes)
    assert sol.ranks["encoder"][0] == 3 and sol.collapsed()[0] == 0  # the limit u -> 0
    bounded = vt.vae_learnable_sigma_learned_decoder(sp, 2, beta=1.0)  # a residual is left
    assert not bounded.learned["unbounded"] and bounded.learned["u"] == pytest.approx(0.5 / 3)
    fixed = vt.vae_fixed_sigma_learned_decoder(sp, 3, 0.5, beta=1.0)  # encoder noise: bounded
    assert not fixed.learned["unbounded"] and np.isfinite(fixed.optimal_loss)
    zero = vt.vae_fixed_sigma_learned_decoder(vt.spectrum_from_eigenvalues([0.0, 0.0]), 1, 0.5)
    assert zero.learned["unbounded"] and zero.optimal_loss == -np.inf


def test_critical_values_flip_their_dim_and_beta_u_grows_with_beta():
    X, _ = io.load_digits()
    sp = vt.empirical_spectrum(X)
    for fn, kw in ((vt.vae_learnable_sigma_learned_decoder, {}),
                   (vt.vae_fixed_sigma_learned_decoder, {"sigma": np.linspace(0.3, 1.2, 10)})):
        sol = fn(sp, 10, beta=2.0, **kw)
        crit = sol.at().critical["beta"]
        assert np.all(np.isfinite(crit))
        for i, c in enumerate(crit):
            below = fn(sp, 10, beta=c * (1 - 1e-9), **kw).at().mode("omega")
            at = fn(sp, 10, beta=c, **kw).at().mode("omega")
            assert below[i] > 0 and at[i] == 0, i
        betas = np.exp(np.linspace(-3, 4, 200))
        grid = fn(sp, 10, beta=betas, **kw)
        k = grid.learned["kappa"]
        assert np.all(np.diff(k) > 0)                  # continuous, increasing: no jumps
        act = grid.ranks["encoder"]
        assert np.all(np.diff(act) <= 0) and np.all(np.diff(act) >= -1)
        assert np.all(act == np.array([np.sum(crit > b) for b in betas]))
    fixed = vt.vae_fixed_sigma_learned_decoder(sp, 10, 0.5, beta=2.0, eta_enc=0.8)
    ee = fixed.at().critical["eta_enc"]
    i = 4
    assert fixed.critical_direction["eta_enc"] == "above"
    assert vt.vae_fixed_sigma_learned_decoder(sp, 10, 0.5, beta=2.0,
                                              eta_enc=ee[i] * (1 + 1e-9)).at().mode("omega")[i] > 0
    assert vt.vae_fixed_sigma_learned_decoder(sp, 10, 0.5, beta=2.0,
                                              eta_enc=ee[i]).at().mode("omega")[i] == 0


@pytest.mark.parametrize("k", [-300, -7, 5, 300])
def test_scale_equivariance(k):
    rng = np.random.default_rng(2)
    ev = np.sort(rng.uniform(0.1, 3, 6))[::-1]
    s = 2.0 ** k
    for fn, kw in ((vt.vae_learnable_sigma_learned_decoder, {}),
                   (vt.vae_fixed_sigma_learned_decoder, {"sigma": [0.3, 0.5, 0.9]})):
        a = fn(vt.spectrum_from_eigenvalues(ev), 3, beta=[0.5, 2.0], **kw)
        b = fn(vt.spectrum_from_eigenvalues(ev * s * s), 3, beta=[0.5, 2.0], **kw)
        np.testing.assert_allclose(b.learned["u"], a.learned["u"] * s * s, rtol=1e-14)
        np.testing.assert_array_equal(b.ranks["encoder"], a.ranks["encoder"])
        np.testing.assert_allclose(b.critical["beta"], a.critical["beta"], rtol=1e-14)
        np.testing.assert_allclose(b.optimal_loss, a.optimal_loss + 6 * k * np.log(2),
                                   rtol=1e-12, atol=1e-9)


def test_cvae_is_the_vae_on_the_residual_with_the_output_dim():
    rng = np.random.default_rng(4)
    e = np.array([3.0, 1.0, 0.4, 0.1])
    rs = vt.spectrum_from_eigenvalues(e, kind="residual")
    a = vt.cvae_learnable_sigma_learned_decoder(rs, 2, beta=[0.7, 2.0])
    b = vt.vae_learnable_sigma_learned_decoder(vt.spectrum_from_eigenvalues(e), 2, beta=[0.7, 2.0])
    np.testing.assert_allclose(a.learned["u"], b.learned["u"], rtol=1e-15)
    np.testing.assert_allclose(a.optimal_loss, b.optimal_loss, rtol=1e-15)
    sig = rng.uniform(0.2, 1, 2)
    a = vt.cvae_fixed_sigma_learned_decoder(rs, 2, sig, beta=1.5)
    b = vt.vae_fixed_sigma_learned_decoder(vt.spectrum_from_eigenvalues(e), 2, sig, beta=1.5)
    np.testing.assert_allclose(a.learned["u"], b.learned["u"], rtol=1e-15)


# --------------------------------------------------------------------------------------------
# the exact checker: every closed form confirmed, u included


def _psd_with(rng, eigenvalues, D):
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    P = Q[:, :len(eigenvalues)]
    return (P * np.asarray(eigenvalues, dtype=float)) @ P.T


def _checker_instances():
    rng = np.random.default_rng(11)
    sp = spectrum_from_moments(_psd_with(rng, [4.0, 1.5, 1.5, 0.6], 6), with_basis=True)  # tie,
    # rank 4 of 6 (two zero-variance directions)
    M = np.zeros((6, 6))
    Ax = _psd_with(rng, [2.0, 1.0], 3)
    G = rng.normal(size=(3, 3))
    N = _psd_with(rng, [1.2, 0.5, 0.2], 3)
    M[:3, :3], M[:3, 3:], M[3:, :3], M[3:, 3:] = Ax, Ax @ G.T, G @ Ax, G @ Ax @ G.T + N
    rs = residual_spectrum(M, 3, with_basis=True)
    crit = vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=1.0).at().critical["beta"]
    return [
        ("vae-learnable", vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=1.3, eta_enc=0.7)),
        ("vae-learnable-across-a-threshold",
         vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=float(np.sqrt(crit[0] * crit[2])))),
        ("vae-learnable-d1>rank", vt.vae_learnable_sigma_learned_decoder(sp, 5, beta=2.0)),
        ("vae-fixed", vt.vae_fixed_sigma_learned_decoder(sp, 3, [0.5, 0.9, 0.3], beta=0.8)),
        ("vae-fixed-d1>rank", vt.vae_fixed_sigma_learned_decoder(sp, 5, 0.4, beta=2.0)),
        ("cvae-learnable", vt.cvae_learnable_sigma_learned_decoder(rs, 2, beta=0.6)),
        ("cvae-fixed", vt.cvae_fixed_sigma_learned_decoder(rs, 3, [0.2, 0.5, 0.4], beta=0.9)),
    ]


CHECKS = _checker_instances()


@pytest.mark.parametrize("name,sol", CHECKS, ids=[n for n, _ in CHECKS])
def test_checker_confirms_the_learned_decoder_closed_forms(name, sol):
    r = check(sol, restarts=3, seed=2)
    assert r.verdict == "CONFIRMED", r.reason
    assert r.loss_gap >= -1e-12 and abs(r.loss_gap) <= 1e-6
    dv = r.decoder_variance
    assert dv["error"] <= 1e-6 and dv["claimed"] == pytest.approx(dv["learned"], rel=1e-6)
    assert r.to_dict()["decoder_variance"]["learned"] == dv["learned"]


def test_checker_on_the_unbounded_case_and_doctored_claims():
    sp = vt.spectrum_from_eigenvalues([3.0, 2.0, 0.5, 0.0, 0.0])
    unb = vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=1.0)
    r = check(unb, restarts=2)
    assert r.verdict == "CONFIRMED" and "unbounded" in r.reason and r.decoder_variance["unbounded"]
    # claiming a finite minimum there is refuted by the degenerate family
    r = check_claim(unb, {"unbounded": False, "optimal_loss": 5.0, "decoder_variance": 0.1},
                    restarts=2)
    assert r.verdict == "REFUTED"
    # claiming "unbounded" where a residual is left is not confirmed
    ok = vt.vae_learnable_sigma_learned_decoder(sp, 2, beta=1.0)
    assert check_claim(ok, {"unbounded": True}, restarts=2).verdict == "INCONCLUSIVE"
    # a wrong u with the right loss and values is never confirmed
    u = float(ok.at().value(ok.learned["u"]))
    assert check_claim(ok, {"decoder_variance": 1.1 * u}, restarts=2).verdict == "INCONCLUSIVE"


def test_hierarchical_learned_decoder_is_numerical_only():
    sp = vt.spectrum_from_eigenvalues([4.0, 2.0, 1.0, 0.25, 0.1])
    s = settings.get("mhvae", "sigma2-learnable", "learned")
    assert not s.covered
    with pytest.raises(NotCoveredError):
        s.solve(sp, 2, 2, beta1=1.0, beta2=1.0, eta_enc=1.0, sigma1=0.5)
    num = numerical_optimum("mhvae", "sigma2-learnable", sp, 2, 2, restarts=2,
                            decoder="learned", sigma1=0.5)
    assert num.label == "numerical, not theory" and not num.covered
    assert num.learned["u"] > 0 and num.to_dict()["decoder"] == "learned"
    # u is the optimum of the profile: fixing eta_dec at the learned value and re-solving the
    # fixed-decoder problem (Theorem 3) reproduces the loss in nats
    fixed = vt.mhvae_learnable_sigma2(sp, 2, 2, sigma1=0.5, eta_dec=np.sqrt(num.learned["u"]))
    u = num.learned["u"]
    lv1 = np.full(2, np.log(0.25))
    C = vt.losses.mhvae_constant(u, 5, 2, 2, 1.0, 1.0, 1.0, lv1)
    assert vt.losses.neg_elbo(float(fixed.optimal_loss), C, u) == pytest.approx(num.loss,
                                                                                rel=1e-8)


# --------------------------------------------------------------------------------------------
# stochastic training on the bundled digits


def test_sgd_on_the_digits_lands_near_the_predicted_u_and_active_count():
    X, _ = io.load_digits()
    sol = vt.vae_learnable_sigma_learned_decoder(vt.empirical_spectrum(X), 8, beta=3.0)
    pt = sol.at()
    r = train_sgd("vae", "learnable", X, 8, epochs=60, lr=vt.sgd.default_lr(X), seed=0,
                  decoder="learned", beta=3.0, prediction=pt)
    u = float(pt.value(sol.learned["u"]))
    assert r.learned["u"] == pytest.approx(u, rel=0.06)
    assert abs(r.collapsed["z"] - pt.collapsed["z"]) <= 1
    assert r.exact_loss >= pt.optimal_loss - 1e-9          # the optimum is a lower bound
    assert r.exact_loss <= pt.optimal_loss + 0.01 * abs(pt.optimal_loss)
    assert r.to_dict()["predicted_learned"]["u"] == pytest.approx(u)


# --------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("learned")
    X, _ = io.load_digits()
    np.save(d / "x.npy", X)
    np.save(d / "r.npy", np.random.default_rng(0).normal(size=(200, 4)) * [3, 2, 1, 0.5])
    return d


def _run(*args):
    r = CliRunner().invoke(cli.main, [str(a) for a in args])
    return r


def test_cli_predict_and_thresholds_with_a_learned_eta_dec(data):
    r = _run("predict", data / "x.npy", "-d", "16", "--beta", "1,4,8", "--eta-dec", "learned",
             "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["decoder"] == "learned" and doc["learned_hyperparameters"] == ["eta_dec"]
    assert doc["settings"]["decoder"] == "learned"
    sol = vt.vae_learnable_sigma_learned_decoder(vt.empirical_spectrum(io.load_digits()[0]), 16,
                                                 beta=[1.0, 4.0, 8.0])
    for i, p in enumerate(doc["points"]):
        assert p["learned"]["decoder_variance"] == pytest.approx(sol.learned["u"][i], rel=1e-12)
        assert p["learned"]["beta_u"] == pytest.approx(sol.learned["kappa"][i], rel=1e-12)
        assert "eta_dec" not in p["params"]
    r = _run("thresholds", data / "x.npy", "--keep", "8", "--eta-dec", "learned", "--json")
    assert r.exit_code == 0, r.stderr
    keep = json.loads(r.stdout)["points"][0]["keep"]
    assert keep["param"] == "beta" and keep["possible"]
    crit = sol.at((0,)).critical["beta"]
    assert keep["value"] == pytest.approx(crit[7])
    r = _run("predict", data / "x.npy", "-d", "64", "--eta-dec", "learned")
    assert r.exit_code == 0 and "no optimum" in r.stdout and "unbounded" in r.stdout


def test_cli_check_and_refusals(data):
    r = _run("check", data / "r.npy", "-d", "2", "--beta", "1,3", "--eta-dec", "learned",
             "--restarts", "2", "--json")
    assert r.exit_code == 0, r.stderr
    for p in json.loads(r.stdout)["points"]:
        assert p["check"]["verdict"] == "CONFIRMED"
        assert p["check"]["decoder_variance"]["error"] <= 1e-6
    r = _run("check", data / "r.npy", "-d", "2", "--model", "mhvae", "--eta-dec", "learned",
             "--restarts", "2", "--json")
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["decoder"] == "learned" and doc["points"][0]["numerical"]["learned"]["u"] > 0
    for args, msg in [(("--model", "mhvae"), "no verified closed form"),
                      (("--model", "mhvae", "--variance", "both-learnable"), "no closed form"),
                      (("--eta-dec", "learnt"), "--eta-dec")]:
        r = _run("predict", data / "r.npy", "-d", "2", "--eta-dec", "learned", *args) \
            if args[-1] != "learnt" else _run("predict", data / "r.npy", "-d", "2", *args)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr
        assert r.stderr.count("\n") == 1
    # predict refuses both-learnable at parse time (no closed form); check takes it, but not
    # with a learned decoder as well
    r = _run("check", data / "r.npy", "-d", "2", "--model", "mhvae", "--variance",
             "both-learnable", "--eta-dec", "learned")
    assert r.exit_code == 2 and "not supported" in r.stderr and r.stderr.count("\n") == 1
    r = _run("thresholds", data / "r.npy", "-d", "2", "--eta-dec", "learned", "--param", "eta_dec")
    assert r.exit_code == 2 and "choose from beta" in r.stderr


def test_round_off_eigenvalues_are_not_data_for_a_learned_decoder():
    """y an exact linear function of x: the residual's eigenvalues are round-off (~1e-15); a
    learned u would be set by them. They count as 0, the loss is unbounded, and the checker
    (which works on the joint matrix) agrees -- for both encoder variances."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 3))
    y = x @ rng.normal(size=(3, 2))
    rs = vt.empirical_residual_spectrum(x, y)
    for sol in (vt.cvae_learnable_sigma_learned_decoder(rs, 2, beta=0.5),
                vt.cvae_fixed_sigma_learned_decoder(rs, 2, 0.5, beta=0.5)):
        assert bool(sol.learned["unbounded"]) and sol.optimal_loss == -np.inf
        r = check(sol, restarts=2)
        assert r.verdict == "CONFIRMED" and "exactly" in r.reason


def test_constructed_optimum_has_the_closed_form_loss_in_nats():
    """The optimal matrices at the learned eta_dec, fed to the exact matrix loss of
    vaetheory.losses and converted with the §1.4 constant, give optimal_loss."""
    rng = np.random.default_rng(8)
    A = _psd_with(rng, [5.0, 2.0, 1.0, 0.3], 6)
    sp = spectrum_from_moments(A, with_basis=True)
    for sol in (vt.vae_learnable_sigma_learned_decoder(sp, 3, beta=1.7, eta_enc=0.6),
                vt.vae_fixed_sigma_learned_decoder(sp, 3, [0.4, 0.8, 0.6], beta=1.7)):
        m = sol.matrices()
        u = float(sol.at().value(sol.learned["u"]))
        L = vt.losses.vae_loss(A, m["W"], m["U"], m["log_var"], beta=1.7,
                               eta_enc=sol.at().hyper["eta_enc"], eta_dec=np.sqrt(u))
        C = vt.losses.vae_constant(u, 6, 3, 1.7, sol.at().hyper["eta_enc"])
        assert vt.losses.neg_elbo(L, C, u) == pytest.approx(sol.at().optimal_loss, rel=1e-12)


@pytest.mark.parametrize("k", [0, -40, 40])
def test_round_off_eigenvalues_count_as_zero_for_a_learned_decoder(k):
    """docs §12.2 "Resolution": an eigenvalue at or below 1e3 x the rank tolerance is 0 for a
    learned u (this path raised a TypeError once: Spectrum has no `eigenvalues` field). By hand:
    d1 = 1, beta = 1, eigenvalues 1, 0.5, (1e-14 -> 0): u = (0.5 + 0) / (3 - 1) = 0.25."""
    from vaetheory.moments import spectrum_from_eigenvalues

    s = 4.0 ** k
    sol = settings.get("vae", "learnable", "learned").solve(
        spectrum_from_eigenvalues(np.array([1.0, 0.5, 1e-14]) * s), 1, beta=1.0)
    assert sol.spectrum.rank == 2 and any("count as 0" in n for n in sol.notes)
    assert float(sol.learned["u"]) == pytest.approx(0.25 * s, rel=1e-14)

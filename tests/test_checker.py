"""The exact checker (vaetheory.checker) and the stochastic training mode (vaetheory.sgd).

Checker: every setting's closed form is CONFIRMED on small random instances (rank-deficient data,
latent dims above the rank, d2 != d1, tied sigmas); doctored claims are not; results are
deterministic; the open hierarchical settings come back labelled as numerical.
SGD: the hand-derived gradients of the sampled loss match finite differences, the sampled loss
averages exactly to the exact loss of vaetheory.losses, and training lands near the prediction.
"""

import dataclasses

import numpy as np
import pytest

import vaetheory as vt
from conftest import random_psd
from vaetheory import losses
from vaetheory.checker import LABEL_NUMERICAL, check, check_claim, numerical_optimum
from vaetheory.moments import residual_spectrum, spectrum_from_moments
from vaetheory.sgd import sampled_loss, train_sgd


def psd_with(rng, eigenvalues, D):
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    P = Q[:, :len(eigenvalues)]
    return (P * np.asarray(eigenvalues, dtype=float)) @ P.T


def joint(rng, D0, D2, rank_x=None):
    Ax = random_psd(rng, D0, rank_x)
    G = rng.normal(size=(D2, D0))
    N = random_psd(rng, D2)
    C = G @ Ax
    return np.block([[Ax, C.T], [C, G @ Ax @ G.T + N]])


def _instances():
    rng = np.random.default_rng(20240501)
    # rank 3 in 5 dims; theta = (2, 1.2247, 0.7746)
    A = psd_with(rng, [4.0, 1.5, 0.6], 5)
    sp = spectrum_from_moments(A, with_basis=True)
    A_full = random_psd(rng, 4)
    sp_full = spectrum_from_moments(A_full, with_basis=True)
    M = joint(rng, 3, 3, rank_x=2)  # rank-deficient condition
    rs = residual_spectrum(M, 3, with_basis=True)
    e = rs.eigenvalues
    return [
        # learnable VAE, d1 = 4 > rank 3, one data mode collapses (1 < beta = 1.2 < 1.5)
        ("vae-learnable-d1>rank", vt.vae_learnable_sigma(sp, 4, beta=1.2, eta_enc=0.8)),
        # fixed VAE with tied sigmas (rotation freedom inside the tie)
        ("vae-fixed-tied", vt.vae_fixed_sigma(sp, 4, [0.5, 0.5, 0.9, 0.3], beta=0.7,
                                              eta_dec=1.3)),
        ("vae-fixed-isotropic", vt.vae_fixed_sigma(sp_full, 3, 0.4, beta=2.0)),
        # CVAE, rank-deficient x, d1 = 4 > D2 = 3, threshold between the residual eigenvalues
        ("cvae-learnable", vt.cvae_learnable_sigma(rs, 4, beta=float(np.sqrt(e[0] * e[1])),
                                                   eta_dec=1.0, eta_enc=1.3)),
        ("cvae-fixed", vt.cvae_fixed_sigma(rs, 3, [0.3, 0.6, 0.45], beta=0.8)),
        # hierarchical: d2 < d1, d1 > rank; and d2 > d1
        ("mhvae-sigma2-learnable-d2<d1", vt.mhvae_learnable_sigma2(
            sp, 4, 2, beta1=1.3, beta2=0.6, sigma1=0.5, eta_dec=0.9)),
        ("mhvae-sigma2-learnable-regime-a", vt.mhvae_learnable_sigma2(
            sp, 3, 4, beta1=2.0, beta2=0.5, sigma1=0.8)),
        ("mhvae-sigma2-fixed-d2>d1", vt.mhvae_fixed_sigma2(
            sp, 3, 4, beta1=1.2, beta2=0.5, sigma1=0.4, sigma2=0.7, eta_enc=1.1)),
        ("mhvae-sigma2-fixed-d2<d1", vt.mhvae_fixed_sigma2(
            sp_full, 4, 3, beta1=0.8, beta2=1.5, sigma1=0.3, sigma2=0.5)),
    ]


INSTANCES = _instances()


@pytest.mark.parametrize("name,sol", INSTANCES, ids=[n for n, _ in INSTANCES])
def test_closed_forms_confirmed(name, sol):
    r = check(sol, restarts=4, seed=1)
    assert r.verdict == "CONFIRMED", (r.reason, r.to_dict())
    assert abs(r.loss_gap) <= 1e-6
    assert r.max_singular_value_error <= 1e-4
    assert r.restarts_matching >= 1
    d = r.to_dict()
    assert set(d) == {"verdict", "loss_gap", "max_singular_value_error", "max_variance_error",
                      "per_map", "restarts_matching", "restarts", "iterations", "seconds",
                      "learned"}
    assert set(d["per_map"]) == set(sol.singular_values)
    # learned collapsed counts lie in the predicted [min, max] range
    for z in sol.latent_dims:
        lo, hi = int(np.ravel(sol.collapsed_min[z])[0]), int(np.ravel(sol.collapsed_max[z])[0])
        assert lo <= d["learned"]["collapsed"][z] <= hi, (z, lo, hi, d["learned"])


def _scaled(mapping, name, factor):
    out = {k: np.asarray(v) for k, v in mapping.items()}
    out[name] = out[name] * factor
    return out


def test_wrong_singular_value_not_confirmed():
    name, sol = INSTANCES[0]
    bad = dataclasses.replace(sol, singular_values=_scaled(sol.singular_values, "decoder", 1.1))
    r = check(bad, restarts=3, seed=0)
    assert r.verdict != "CONFIRMED"
    assert r.verdict == "INCONCLUSIVE"  # the loss claim is right, so nothing is below it
    assert r.per_map["decoder"] > 0.05
    # the same through check_claim
    r2 = check_claim(sol, {"singular_values": {"encoder": np.ravel(sol.singular_values["encoder"]) * 1.1}},
                     restarts=3, seed=0)
    assert r2.verdict == "INCONCLUSIVE"


def test_wrong_std_not_confirmed():
    _, sol = INSTANCES[3]  # learnable CVAE
    bad = dataclasses.replace(sol, posterior_std=_scaled(sol.posterior_std, "z", 0.9))
    r = check(bad, restarts=3, seed=0)
    assert r.verdict == "INCONCLUSIVE"
    assert r.max_variance_error > 0.01


@pytest.mark.parametrize("i", [0, 4, 5])
def test_loss_claimed_too_high_is_refuted(i):
    _, sol = INSTANCES[i]
    L = np.asarray(sol.optimal_loss)
    bad = dataclasses.replace(sol, optimal_loss=L + 0.05 * np.abs(L))
    r = check(bad, restarts=3, seed=0)
    assert r.verdict == "REFUTED", r.reason
    assert r.loss_gap < -0.04
    # the counterexample is reported: the learned point's singular values, below the claim
    assert set(r.learned["singular_values"]) == set(sol.singular_values)
    assert r.learned["loss"] < float(np.ravel(bad.optimal_loss)[0])


def test_loss_claimed_too_low_is_inconclusive():
    _, sol = INSTANCES[1]
    L = np.asarray(sol.optimal_loss)
    r = check(dataclasses.replace(sol, optimal_loss=L - 0.05 * np.abs(L)), restarts=3, seed=0)
    assert r.verdict == "INCONCLUSIVE"  # nothing reaches it, but that proves nothing
    assert r.loss_gap > 0.04


def test_check_claim_on_a_spectrum():
    _, sol = INSTANCES[0]
    claim = {"optimal_loss": float(np.ravel(sol.optimal_loss)[0]),
             "singular_values": {"decoder": np.ravel(sol.singular_values["decoder"])}}
    hyper = {k: float(np.ravel(v)[0]) for k, v in sol.params.items()}
    r = check_claim(sol.spectrum, claim, model="vae", variance="learnable", latent_dim=4,
                    hyper=hyper, restarts=3)
    assert r.verdict == "CONFIRMED"
    assert set(r.per_map) == {"decoder"}


def test_check_on_a_grid_point_and_eigenvalue_only_spectra():
    sp = vt.spectrum_from_eigenvalues([3.0, 1.0, 0.2])  # no matrix: diag(eigenvalues) is used
    sol = vt.vae_learnable_sigma(sp, 2, beta=[0.5, 2.0])
    for index in [(0,), (1,)]:
        assert check(sol, index, restarts=2).verdict == "CONFIRMED"
    rs = vt.spectrum_from_eigenvalues([2.0, 0.5], kind="residual")
    assert check(vt.cvae_learnable_sigma(rs, 2, beta=1.0), restarts=2).verdict == "CONFIRMED"


def test_deterministic_with_same_seed():
    _, sol = INSTANCES[5]
    a = check(sol, restarts=3, seed=7).to_dict()
    b = check(sol, restarts=3, seed=7).to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    # and independent of parallelism (starts are drawn up front)
    c = check(sol, restarts=3, seed=7, n_jobs=2).to_dict()
    c.pop("seconds")
    assert c == a


def test_open_settings_are_labelled_numerical():
    rng = np.random.default_rng(3)
    sp = spectrum_from_moments(psd_with(rng, [3.0, 1.0, 0.3], 4), with_basis=True)
    both = numerical_optimum("mhvae", "both-learnable", sp, 3, 2, beta1=0.7, beta2=1.0,
                             eta_enc=1.2, eta_dec=0.9, restarts=3, seed=0)
    assert both.label == LABEL_NUMERICAL and not both.covered
    assert both.converged and not both.unbounded and both.warnings == ()
    assert np.ptp(both.run_losses) <= 1e-8 * max(1.0, abs(both.loss))  # restarts agree
    assert set(both.posterior_std) == {"z1", "z2"}
    assert set(both.singular_values) == {"encoder1", "decoder1", "encoder2", "decoder2"}
    d = both.to_dict()
    assert d["label"] == "numerical, not theory" and d["covered_by_theory"] is False
    assert np.isfinite(d["loss"]) and set(d["collapsed"]) == {"z1", "z2"}
    # observed (not a theorem): with beta1 < beta2, z2 collapses entirely and z1 is the
    # Theorem-4 VAE with beta = beta1 and prior std eta_dec
    assert both.collapsed_prior["z2"] == 2
    vae = vt.vae_learnable_sigma(sp, 3, beta=0.7, eta_enc=0.9, eta_dec=0.9)
    z2_const = 2 * 1.0 * (0.9 ** 2 - 0.9 ** 2 * np.log(1.2 ** 2))
    assert both.loss == pytest.approx(float(np.ravel(vae.optimal_loss)[0]) + z2_const, rel=1e-9)
    assert np.allclose(both.posterior_std["z1"], np.sort(np.ravel(vae.posterior_std["z"]))[::-1],
                       atol=1e-5)

    aniso = numerical_optimum("mhvae", "sigma2-learnable", sp, 3, beta1=1.0, beta2=0.5,
                              sigma1=[0.2, 0.5, 0.9], restarts=3, seed=0)
    assert aniso.label == LABEL_NUMERICAL and not aniso.covered and aniso.converged
    # an "anisotropic" sigma1 with equal entries is Theorem 3 again: same loss as the closed form
    iso = numerical_optimum("mhvae", "sigma2-learnable", sp, 3, beta1=1.0, beta2=0.5,
                            sigma1=[0.5, 0.5, 0.5], restarts=3, seed=0)
    assert iso.covered
    sol = vt.mhvae_learnable_sigma2(sp, 3, beta1=1.0, beta2=0.5, sigma1=0.5)
    L = float(np.ravel(sol.optimal_loss)[0])
    assert abs(iso.loss - L) <= 1e-8 * max(1.0, abs(L))
    assert abs(aniso.loss - iso.loss) > 1e-6


def test_open_setting_flat_family_is_reported():
    # anisotropic sigma1 with every z1 dim in Theorem-3 regime (a) (beta1 sigma1_j^2 > beta2
    # eta_dec^2): the per-mode optimum 2B log(theta sigma1_j) + const is additive, so any pairing of
    # data modes with z1 dims is optimal -- same loss, different singular values
    sp = vt.spectrum_from_eigenvalues([9.0, 4.0, 2.0])
    r = numerical_optimum("mhvae", "sigma2-learnable", sp, 3, beta1=1.0, beta2=0.1,
                          sigma1=[0.5, 1.0, 2.0], restarts=3, seed=0)
    assert np.ptp(r.run_losses) <= 1e-9 * abs(r.loss)
    assert max(r.singular_value_spread.values()) > 1e-2
    assert any("family of minimisers" in w for w in r.warnings)


def test_open_setting_unbounded_when_beta1_exceeds_beta2():
    # Sigma1 learned, beta1 > beta2: z1 variance t^2 passed exactly through z2 lowers the loss by
    # 2 (beta1 - beta2) eta_dec^2 log t without bound; reported instead of a fake optimum
    sp = vt.spectrum_from_eigenvalues([3.0, 1.0, 0.3])
    r = numerical_optimum("mhvae", "both-learnable", sp, 2, beta1=1.0, beta2=0.5, restarts=2,
                          max_iter=300)
    assert r.unbounded and not r.converged
    assert "unbounded below" in r.warnings[0]
    assert r.to_dict()["unbounded"] is True


def test_bad_arguments():
    _, sol = INSTANCES[0]
    with pytest.raises(ValueError):
        numerical_optimum("vae", "sigma2-fixed", sol.spectrum, 2)
    with pytest.raises(ValueError):
        numerical_optimum("vae", "fixed", sol.spectrum, 2)  # sigma missing
    with pytest.raises(ValueError):
        check_claim(sol, {"singular_values": {"nope": [1.0]}}, restarts=1)


# --------------------------------------------------------------------------------------------
# stochastic training


def _fd_check(model, params, batch, eps, hyper, learned):
    _, g = sampled_loss(model, params, batch, eps, hyper, learned=learned)
    for k, v in params.items():
        num = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            p = {kk: vv.copy() for kk, vv in params.items()}
            p[k][idx] += 1e-6
            fp = sampled_loss(model, p, batch, eps, hyper, learned=learned, grad=False)
            p[k][idx] -= 2e-6
            fm = sampled_loss(model, p, batch, eps, hyper, learned=learned, grad=False)
            num[idx] = (fp - fm) / 2e-6
        assert np.allclose(g[k], num, rtol=1e-6, atol=1e-6 * max(1.0, np.abs(num).max())), k


def _random_params(rng, model, D, d1, d2=None, D0=None):
    if model == "vae":
        return {"W": rng.normal(size=(d1, D)), "U": rng.normal(size=(D, d1)),
                "log_var": rng.normal(size=d1)}
    if model == "cvae":
        D2 = D - D0
        return {"W1": rng.normal(size=(d1, D0)), "W2": rng.normal(size=(d1, D2)),
                "U1": rng.normal(size=(D2, d1)), "U2": rng.normal(size=(D2, D0)),
                "log_var": rng.normal(size=d1)}
    return {"W1": rng.normal(size=(d1, D)), "U1": rng.normal(size=(D, d1)),
            "W2": rng.normal(size=(d2, d1)), "U2": rng.normal(size=(d1, d2)),
            "log_var1": 0.3 * rng.normal(size=d1), "log_var2": 0.3 * rng.normal(size=d2)}


def test_sampled_loss_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    n, D, d1, d2 = 6, 5, 3, 2
    X = rng.normal(size=(n, D))
    h = dict(beta=1.3, eta_enc=0.7, eta_dec=1.4)
    _fd_check("vae", _random_params(rng, "vae", D, d1), X, rng.normal(size=(n, d1)), h,
              ("log_var",))
    _fd_check("cvae", _random_params(rng, "cvae", D, d1, D0=2), (X[:, :2], X[:, 2:]),
              rng.normal(size=(n, d1)), h, ("log_var",))
    hm = dict(beta1=1.3, beta2=0.6, eta_enc=0.7, eta_dec=1.4)
    eps = (rng.normal(size=(n, d1)), rng.normal(size=(n, d2)))
    for learned in [("log_var1", "log_var2"), ("log_var2",)]:
        _fd_check("mhvae", _random_params(rng, "mhvae", D, d1, d2), X, eps, hm, learned)


def _design(n_dims):
    """Noise vectors +-sqrt(n) e_j: mean 0, second moment I (exact for a loss quadratic in eps)."""
    E = np.sqrt(n_dims) * np.eye(n_dims)
    return np.concatenate([E, -E])


@pytest.mark.parametrize("model,entropy", [("vae", False), ("cvae", False), ("mhvae", False),
                                           ("mhvae", True)])
def test_sampled_loss_averages_to_the_exact_loss(model, entropy):
    rng = np.random.default_rng(5)
    N, D, d1, d2, D0 = 7, 5, 3, 2, 2
    X = rng.normal(size=(N, D))
    M = X.T @ X / N
    p = _random_params(rng, model, D, d1, d2, D0)
    n_noise = d1 + (d2 if model == "mhvae" else 0)
    design = _design(n_noise)
    Xr = np.repeat(X, len(design), axis=0)
    eps = np.tile(design, (N, 1))
    if model == "vae":
        h = dict(beta=0.7, eta_enc=1.2, eta_dec=0.8)
        got = sampled_loss(model, p, Xr, eps, h, grad=False)
        want = losses.vae_loss(M, p["W"], p["U"], p["log_var"], **h)
    elif model == "cvae":
        h = dict(beta=0.7, eta_enc=1.2, eta_dec=0.8)
        got = sampled_loss(model, p, (Xr[:, :D0], Xr[:, D0:]), eps, h, grad=False)
        want = losses.cvae_loss(M, D0, p["W1"], p["W2"], p["U1"], p["U2"], p["log_var"], **h)
    else:
        h = dict(beta1=1.4, beta2=0.6, eta_enc=1.2, eta_dec=0.8)
        learned = ("log_var1", "log_var2") if entropy else ("log_var2",)
        got = sampled_loss(model, p, Xr, (eps[:, :d1], eps[:, d1:]), h, learned=learned,
                           grad=False)
        want = losses.mhvae_loss(M, p["W1"], p["U1"], p["W2"], p["U2"], p["log_var1"],
                                 p["log_var2"], sigma1_entropy=entropy, **h)
    assert got == pytest.approx(want, rel=1e-10)


def _easy_data(rng, N=3000):
    # variances 9, 4, 0.25, 0.04 in a random basis: with beta = 1 two modes are active
    Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    return (rng.standard_normal((N, 4)) * np.array([3.0, 2.0, 0.5, 0.2])) @ Q.T


def test_sgd_learnable_vae_lands_near_the_prediction():
    X = _easy_data(np.random.default_rng(1))
    r = train_sgd("vae", "learnable", X, 4, epochs=60, batch_size=64, lr=0.05, seed=0, beta=1.0)
    pred = r.predicted_singular_values["decoder"]
    assert pred[0] > 2.5 and pred[1] > 1.5 and pred[2] == 0.0  # sanity of the instance
    assert np.max(np.abs(r.singular_values["decoder"] - pred)) < 0.1
    assert r.collapsed["z"] == r.predicted_collapsed["z"][0] == 2
    assert r.active_units["z"] == 2
    assert r.exact_loss - r.optimal_loss < 0.02 * abs(r.optimal_loss)
    assert np.all(r.kl["z"][np.argsort(r.kl["z"])[:2]] < 0.01)
    d = r.to_dict()
    assert d["collapsed"] == {"z": 2} and d["predicted_collapsed"] == {"z": [2, 2]}


def test_sgd_other_settings_run():
    rng = np.random.default_rng(2)
    X = _easy_data(rng, N=600)
    y = X[:, :2] @ rng.normal(size=(2, 3)) + 0.5 * rng.normal(size=(600, 3))
    rc = train_sgd("cvae", "fixed", X, 2, y=y, epochs=5, sigma=0.5, seed=1)
    assert set(rc.singular_values) == {"encoder", "decoder"} and rc.optimal_loss is not None
    rm = train_sgd("mhvae", "sigma2-learnable", X, 3, 2, epochs=5, sigma1=0.5, beta2=0.5)
    assert set(rm.kl) == {"z2"} and set(rm.active_units) == {"z1", "z2"}
    ro = train_sgd("mhvae", "both-learnable", X, 3, epochs=3)
    assert ro.predicted_singular_values is None and set(ro.posterior_std) == {"z1", "z2"}
    with pytest.raises(ValueError):
        train_sgd("vae", "fixed", X, 2)  # sigma missing

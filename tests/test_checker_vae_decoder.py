"""The VAE's and CVAE's decoder parameterisation (vaetheory.checker._VAEDecoderProblem,
_CVAEDecoderProblem, docs/theory.md §13 item 5): the reduced loss is the public exact loss at the
completed point, the eliminated encoder, Sigma and (CVAE) U2 are stationary minimisers of the
public loss (its gradient, and perturbations), the gradient is the envelope gradient (finite
differences), the alignment move never raises the loss and beats random rotations, and the
verdicts and optima on degenerate instances (ties, rank deficiency, d1 > rank, y linear in x) and
doctored claims are those of the former parameterisation.
"""

import dataclasses

import numpy as np
import pytest

import vaetheory as vt
from vaetheory import checker, losses, settings
from _checker_cases import (assert_aligned, assert_confirmed, assert_envelope_gradient,
                           assert_same_optimum, psd as _psd)
from vaetheory.moments import residual_spectrum, spectrum_from_moments


def _joint(rng, D0, D2, x_eigs, noise_eigs):
    """Joint moment of [x; y] with y = G x + noise: rank(x) = len(x_eigs), residual noise_eigs."""
    Ax = _psd(rng, x_eigs, D0)
    G = rng.normal(size=(D2, D0))
    N = _psd(rng, noise_eigs, D2) if len(noise_eigs) else np.zeros((D2, D2))
    C = G @ Ax
    return np.block([[Ax, C.T], [C, G @ Ax @ G.T + N]])


HYPER = {"learnable": dict(beta=0.8, eta_enc=1.3, eta_dec=0.9),
         "fixed": dict(beta=0.7, eta_enc=0.8, eta_dec=1.1, sigma=[0.4, 0.9, 0.6])}


def _problem(model, variance, rng, full=False, d1=3):
    setting = settings.get(model, variance)
    h = dict(HYPER[variance])
    if variance == "fixed":
        h["sigma"] = h["sigma"][:d1] + [0.5] * (d1 - 3)
    if model == "vae":
        sp = spectrum_from_moments(_psd(rng, [3.0, 1.4, 1.4, 0.5] + [0.2] * full, 4 + full),
                                   with_basis=True)
        x_dim = None
    else:  # rank-deficient x (rank 2 of 3) and a residual of rank 2 in 3 dims
        x_dim = 3
        sp = residual_spectrum(_joint(rng, 3, 3, [2.0, 0.7], [1.5, 0.4] + [0.3] * full), 3,
                               with_basis=True)
    hp = settings.point_hyper(setting, h, d1, None)
    factor, xd = checker._setting_factor(setting, sp)
    return checker._problem(setting, factor, xd, d1, None, hp), sp, hp, x_dim


def _exact(model, prob, sp, h, x, grad=False):
    """The public exact loss (data coordinates) at the completed point."""
    p = prob.data_params(x)
    kw = dict(beta=h["beta"], eta_enc=h["eta_enc"], eta_dec=h["eta_dec"], grad=grad)
    if model == "vae":
        return losses.vae_loss(sp.matrix, p["W"], p["U"], p["log_var"], **kw), p
    return losses.cvae_loss(sp.matrix, sp.x_dim, p["W1"], p["W2"], p["U1"], p["U2"],
                            p["log_var"], **kw), p


CASES = [(m, v) for m in ("vae", "cvae") for v in ("learnable", "fixed")]


@pytest.mark.parametrize("model,variance", CASES)
def test_decoder_problem_is_used_and_loss_is_the_exact_loss(model, variance):
    rng = np.random.default_rng(7)
    prob, sp, h, _ = _problem(model, variance, rng)
    want = {"vae": checker._VAEDecoderProblem, "cvae": checker._CVAEDecoderProblem}[model]
    assert type(prob) is want
    assert prob.names == ["Ur"]  # the encoder and Sigma are not optimisation variables
    for _ in range(5):
        x = rng.normal(size=prob.n)
        (f, _), _ = _exact(model, prob, sp, h, x, grad=True)
        assert prob.value(x) == pytest.approx(f, rel=1e-12)


@pytest.mark.parametrize("model", ["vae", "cvae"])
def test_learned_decoder_variance_keeps_the_former_path(model):
    setting = settings.get(model, "learnable", "learned")
    prob_cls = checker._ADAPTERS[model]
    rng = np.random.default_rng(1)
    sp = (spectrum_from_moments(_psd(rng, [2.0, 1.0], 3), with_basis=True) if model == "vae"
          else residual_spectrum(_joint(rng, 2, 2, [1.0], [0.5]), 2, with_basis=True))
    h = settings.point_hyper(setting, dict(beta=1.0), 2, None)
    factor, xd = checker._setting_factor(setting, sp)
    assert type(checker._problem(setting, factor, xd, 2, None, h)) is prob_cls


@pytest.mark.parametrize("model,variance", CASES)
def test_eliminated_blocks_are_minimisers_of_the_exact_loss(model, variance):
    """At the completed point the public loss is stationary in the encoder, the learnable
    Sigma and U2, and perturbing them never lowers it (the blocks are convex given U1)."""
    rng = np.random.default_rng(3)
    prob, sp, h, _ = _problem(model, variance, rng, full=True)
    x = rng.normal(size=prob.n)
    (base, g), p = _exact(model, prob, sp, h, x, grad=True)
    free = {"vae": ["W"], "cvae": ["W1", "W2", "U2"]}[model]
    free += ["log_var"] if variance == "learnable" else []
    for n in free:
        assert np.max(np.abs(g[n])) <= 1e-9 * max(1.0, abs(base)), n
    kw = dict(beta=h["beta"], eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])
    for _ in range(20):
        q = dict(p)
        for n in free:
            q[n] = p[n] + 1e-3 * rng.normal(size=p[n].shape)
        if model == "vae":
            f = losses.vae_loss(sp.matrix, q["W"], q["U"], q["log_var"], **kw)
        else:
            f = losses.cvae_loss(sp.matrix, sp.x_dim, q["W1"], q["W2"], q["U1"], q["U2"],
                                 q["log_var"], **kw)
        assert f > base


@pytest.mark.parametrize("model,variance", CASES)
def test_reduced_gradient_is_the_envelope_gradient(model, variance):
    rng = np.random.default_rng(5)
    prob, _, _, _ = _problem(model, variance, rng)
    assert_envelope_gradient(prob, rng.normal(size=prob.n))


@pytest.mark.parametrize("model,variance", CASES)
@pytest.mark.parametrize("d1", [2, 3, 5])
def test_alignment_never_raises_the_loss_and_beats_random_rotations(model, variance, d1):
    rng = np.random.default_rng(9 + d1)
    prob, _, _, _ = _problem(model, variance, rng, d1=d1)
    r = prob.shapes["Ur"][0]
    assert_aligned(prob, rng, [lambda q, R: {**q, "Ur": R(r) @ q["Ur"]}])


def _degenerate_instances():
    rng = np.random.default_rng(20240503)
    tied = spectrum_from_moments(_psd(rng, [4.0, 4.0, 1.0, 1.0], 4), with_basis=True)
    deficient = spectrum_from_moments(_psd(rng, [3.0, 0.8], 5), with_basis=True)  # rank 2 in 5
    out = []
    for label, sp in (("ties", tied), ("rank-deficient", deficient)):
        for d1 in (2, 3, 5):  # d1 below, at and above the rank
            out.append((f"vae-learnable-{label}-{d1}", vt.vae_learnable_sigma(sp, d1, beta=1.5)))
            out.append((f"vae-fixed-{label}-{d1}", vt.vae_fixed_sigma(
                sp, d1, np.linspace(0.4, 0.9, d1), beta=0.8)))
    out.append(("vae-fixed-tied-sigmas", vt.vae_fixed_sigma(tied, 3, [0.5, 0.5, 0.7], beta=1.0)))
    out.append(("vae-all-collapsed", vt.vae_learnable_sigma(tied, 3, beta=20.0)))
    rs = residual_spectrum(_joint(rng, 3, 4, [2.0, 0.7], [1.5, 1.5, 0.4]), 3, with_basis=True)
    linear = residual_spectrum(_joint(rng, 3, 2, [2.0, 1.0, 0.5], []), 3, with_basis=True)
    for d1 in (2, 4):
        out.append((f"cvae-learnable-{d1}", vt.cvae_learnable_sigma(rs, d1, beta=0.9)))
        out.append((f"cvae-fixed-{d1}", vt.cvae_fixed_sigma(rs, d1, 0.5, beta=0.8)))
    out.append(("cvae-y-linear-in-x", vt.cvae_learnable_sigma(linear, 2, beta=1.0)))
    return out


DEGENERATE = _degenerate_instances()


@pytest.mark.parametrize("name,sol", DEGENERATE, ids=[n for n, _ in DEGENERATE])
def test_verdicts_on_degenerate_instances(name, sol):
    assert_confirmed(name, sol)


SAME = [DEGENERATE[i] for i in (0, 3, 4, 9, 12, 13, 14, 15)]


@pytest.mark.parametrize("name,sol", SAME, ids=[n for n, _ in SAME])
def test_same_optimum_in_both_parameterisations(name, sol, monkeypatch):
    new, old = assert_same_optimum(sol, monkeypatch, "VAE_PARAMETERISATION")
    for z, v in old.posterior_std.items():
        np.testing.assert_allclose(new.posterior_std[z], v, atol=1e-4 * max(1.0, v.max()))
    assert new.collapsed == old.collapsed and new.collapsed_prior == old.collapsed_prior


@pytest.mark.parametrize("name,sol", [DEGENERATE[0], DEGENERATE[-2]],
                         ids=[DEGENERATE[0][0], DEGENERATE[-2][0]])
def test_doctored_claims_still_refuted_or_not_confirmed(name, sol):
    pt = sol.at()
    L, dL = pt.optimal_loss, 0.05 * abs(pt.optimal_loss)
    high = dataclasses.replace(sol, optimal_loss=np.asarray(L + dL))
    assert checker.check(high, restarts=2, seed=0).verdict == "REFUTED"
    low = dataclasses.replace(sol, optimal_loss=np.asarray(L - dL))
    assert checker.check(low, restarts=2, seed=0).verdict == "INCONCLUSIVE"
    sv = {m: np.asarray(v) * 1.01 + 0.01 for m, v in pt.singular_values.items()}
    assert checker.check_claim(sol, {"singular_values": sv}, restarts=2,
                               seed=0).verdict == "INCONCLUSIVE"

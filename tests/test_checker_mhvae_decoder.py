"""The hierarchical checker's decoder parameterisation (vaetheory.checker._MHVAEDecoderProblem,
docs/theory.md §13 item 4): the eliminated blocks are the exact minimisers (against brute-force
least squares and perturbations of the public exact loss), the reduced loss equals the exact loss
of vaetheory.losses at the completed point, its gradient is the envelope gradient (finite
differences), the alignment moves never raise the loss and beat random rotations, and the
verdicts on degenerate instances (ties, rank deficiency, d1 > rank, d2 < d1, d2 > d1) and on
doctored claims are what the former parameterisation gives.
"""

import dataclasses

import numpy as np
import pytest

import vaetheory as vt
from vaetheory import checker, losses, settings
from _checker_cases import (assert_aligned, assert_confirmed, assert_envelope_gradient,
                           assert_same_optimum, psd as _psd)
from vaetheory.moments import spectrum_from_moments


def _problem(variance, A, d1, d2, **hyper):
    setting = settings.get("mhvae", variance)
    sp = spectrum_from_moments(A, with_basis=True)
    h = settings.point_hyper(setting, hyper, d1, d2)
    factor, x_dim = checker._setting_factor(setting, sp)
    return checker._problem(setting, factor, x_dim, d1, d2, h), sp, h


HYPER = {
    "sigma2-learnable": dict(beta1=1.3, beta2=0.7, sigma1=0.6, eta_dec=0.9, eta_enc=1.2),
    "sigma2-fixed": dict(beta1=0.8, beta2=1.4, sigma1=0.5, sigma2=0.7, eta_dec=1.1, eta_enc=0.9),
}


def _exact(prob, sp, h, x):
    """The public exact loss (vaetheory.losses.mhvae_loss, data coordinates) at the completed point."""
    p = prob.data_params(x)
    return losses.mhvae_loss(sp.matrix, p["W1"], p["U1"], p["W2"], p["U2"], p["log_var1"],
                             p["log_var2"], beta1=h["beta1"], beta2=h["beta2"],
                             eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])


@pytest.mark.parametrize("variance", sorted(HYPER))
@pytest.mark.parametrize("d1,d2", [(3, 3), (4, 2), (2, 4)])
def test_decoder_problem_is_used_and_loss_is_the_exact_loss(variance, d1, d2):
    rng = np.random.default_rng(7)
    A = _psd(rng, [5.0, 2.0, 2.0, 0.3], 5)  # a tie, rank 4 in 5 dims
    prob, sp, h = _problem(variance, A, d1, d2, **HYPER[variance])
    assert type(prob) is checker._MHVAEDecoderProblem
    assert prob.names == ["V1", "U2"]  # Sigma2 is not an optimisation variable
    for _ in range(5):
        x = rng.normal(size=prob.n)
        assert prob.value(x) == pytest.approx(_exact(prob, sp, h, x), rel=1e-12)


@pytest.mark.parametrize("variance", sorted(HYPER))
def test_eliminated_w2_is_the_least_squares_solution(variance):
    """W2* against a brute-force least-squares solve of the W2 terms (Kronecker form, lstsq)."""
    rng = np.random.default_rng(11)
    d1, d2 = 4, 3
    prob, sp, h = _problem(variance, _psd(rng, [3.0, 1.0, 0.5], 4), d1, d2, **HYPER[variance])
    b1 = h["beta1"]
    b2c2 = h["beta2"] * (h["eta_dec"] / h["eta_enc"]) ** 2
    for _ in range(3):
        x = rng.normal(size=prob.n)
        p = prob._complete(prob.unpack(x))
        Q = p["V1"] @ p["V1"].T + np.diag(np.exp(p["log_var1"]))
        w, E = np.linalg.eigh(Q)
        Qh = (E * np.sqrt(w)) @ E.T
        # min_W b1 ||(U2 W - I) Qh||^2 + b2c2 ||W Qh||^2 over vec(W) (column-major)
        U2 = p["U2"]
        M = np.vstack([np.sqrt(b1) * np.kron(Qh.T, U2), np.sqrt(b2c2) * np.kron(Qh.T, np.eye(d2))])
        rhs = np.concatenate([np.sqrt(b1) * Qh.ravel(order="F"), np.zeros(d2 * d1)])
        W_ls = np.linalg.lstsq(M, rhs, rcond=None)[0].reshape((d2, d1), order="F")
        np.testing.assert_allclose(p["W2"], W_ls, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("variance", sorted(HYPER))
def test_eliminated_blocks_are_minimisers_of_the_exact_loss(variance):
    """Perturbing U1, W2 or (learnable) Sigma2 at the completed point never lowers the public loss."""
    rng = np.random.default_rng(3)
    prob, sp, h = _problem(variance, _psd(rng, [4.0, 1.5, 0.2], 4), 3, 3, **HYPER[variance])
    kw = dict(beta1=h["beta1"], beta2=h["beta2"], eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])
    x = rng.normal(size=prob.n)
    p = prob.data_params(x)
    names = ("W1", "U1", "W2", "U2", "log_var1", "log_var2")
    base, g = losses.mhvae_loss(sp.matrix, *(p[n] for n in names), grad=True, **kw)
    free = ["U1", "W2"] + (["log_var2"] if variance == "sigma2-learnable" else [])
    for n in free:  # stationary ...
        assert np.max(np.abs(g[n])) <= 1e-9 * max(1.0, abs(base)), n
    for _ in range(20):  # ... and a minimum (the blocks are convex given the others)
        q = dict(p)
        for n in free:
            q[n] = p[n] + 1e-3 * rng.normal(size=p[n].shape)
        assert losses.mhvae_loss(sp.matrix, *(q[n] for n in names), **kw) > base


@pytest.mark.parametrize("variance", sorted(HYPER))
def test_reduced_gradient_is_the_envelope_gradient(variance):
    rng = np.random.default_rng(5)
    prob, _, _ = _problem(variance, _psd(rng, [2.0, 1.0, 0.7], 3), 3, 2, **HYPER[variance])
    assert_envelope_gradient(prob, rng.normal(size=prob.n))


@pytest.mark.parametrize("variance", sorted(HYPER))
def test_alignment_never_raises_the_loss_and_beats_random_rotations(variance):
    rng = np.random.default_rng(9)
    prob, _, _ = _problem(variance, _psd(rng, [6.0, 3.0, 3.0, 1.0, 0.1], 6), 4, 3,
                          **HYPER[variance])
    # random data-side and z1-side rotations
    assert_aligned(prob, rng, [
        lambda q, P: {**q, "V1": q["V1"] @ P(prob.k)},
        lambda q, R: {**q, "U2": R(prob.d1) @ q["U2"]}])


def _degenerate_instances():
    rng = np.random.default_rng(20240502)
    tied = spectrum_from_moments(_psd(rng, [4.0, 4.0, 1.0, 1.0], 4), with_basis=True)
    deficient = spectrum_from_moments(_psd(rng, [3.0, 0.8], 5), with_basis=True)  # rank 2 in 5
    full = spectrum_from_moments(_psd(rng, [5.0, 2.5, 1.2, 0.6], 4), with_basis=True)
    out = []
    for label, sp in (("ties", tied), ("rank-deficient", deficient), ("full", full)):
        for d1, d2 in ((3, 3), (4, 2), (2, 4), (5, 5)):  # d1 = d2, d2 < d1, d2 > d1, d > D0
            out.append((f"thm3-{label}-{d1}x{d2}", vt.mhvae_learnable_sigma2(
                sp, d1, d2, beta1=1.2, beta2=0.6, sigma1=0.7)))
            out.append((f"thm5-{label}-{d1}x{d2}", vt.mhvae_fixed_sigma2(
                sp, d1, d2, beta1=0.9, beta2=1.1, sigma1=0.5, sigma2=0.6)))
    # regime (a) of §5.1 (z2 active on noise) and a point past the z1 thresholds
    out.append(("thm3-regime-a", vt.mhvae_learnable_sigma2(full, 4, 4, beta1=2.0, beta2=0.4,
                                                           sigma1=0.9)))
    out.append(("thm3-all-collapsed", vt.mhvae_learnable_sigma2(full, 3, 3, beta1=1.0, beta2=30.0,
                                                                sigma1=3.0)))
    return out


DEGENERATE = _degenerate_instances()


@pytest.mark.parametrize("name,sol", DEGENERATE, ids=[n for n, _ in DEGENERATE])
def test_verdicts_on_degenerate_instances(name, sol):
    assert_confirmed(name, sol)


@pytest.mark.parametrize("name,sol", DEGENERATE[:6], ids=[n for n, _ in DEGENERATE[:6]])
def test_same_optimum_in_both_parameterisations(name, sol, monkeypatch):
    assert_same_optimum(sol, monkeypatch, "MHVAE_PARAMETERISATION")


def test_doctored_claims_still_refuted_or_not_confirmed():
    sol = DEGENERATE[0][1]
    pt = sol.at()
    high = dataclasses.replace(sol, optimal_loss=np.asarray(pt.optimal_loss * 1.05))
    assert checker.check(high, restarts=2, seed=0).verdict == "REFUTED"
    low = dataclasses.replace(sol, optimal_loss=np.asarray(pt.optimal_loss * 0.95))
    assert checker.check(low, restarts=2, seed=0).verdict == "INCONCLUSIVE"

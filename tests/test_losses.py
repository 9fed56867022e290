"""The exact losses of vaetheory.losses.

* analytic gradients against central finite differences (hypothesis shapes, d1 > D, d2 != d1,
  rank-deficient A);
* hand cases, the 1-D VAE against its ELBO integrated by Gauss-Hermite quadrature, and the
  written-out forms of docs/theory.md §1.1-1.3;
* 2 eta_dec^2 E[-ELBO] by Monte Carlo (log-densities and KLs written out here) for the VAE, CVAE
  and MHVAE, minus the constants of docs/theory.md §1 (derived here for the MHVAE);
* the CVAE without x is the VAE on y; biases = centring (docs/theory.md §0), closed-form biases;
* input validation and pack/unpack.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import random_psd
from vaetheory import losses


# ----------------------------------------------------------------------------- helpers
def fd_rel_error(fun, params, h=1e-5):
    """max over parameters of ||numerical - analytic|| / ||numerical|| (central differences;
    h = 1e-5 balances truncation, O(h^2), against roundoff, O(eps |f| / h): with h = 1e-6 a loss of
    ~100 with a small gradient gave a 1.8e-6 roundoff error, above the 1e-6 tolerance)."""
    _, g = fun(grad=True, **params)
    assert set(g) == set(params)
    worst = 0.0
    for n, p in params.items():
        assert g[n].shape == p.shape
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            q = dict(params)
            q[n] = p.copy()
            q[n][idx] += h
            fp = fun(**q)
            q[n][idx] -= 2 * h
            num[idx] = (fp - fun(**q)) / (2 * h)
        worst = max(worst, np.linalg.norm(num - g[n]) / max(np.linalg.norm(num), 1e-8))
    return worst


def vae_f(A, **kw):
    return lambda grad=False, **q: losses.vae_loss(A, q["W"], q["U"], q["log_var"], grad=grad, **kw)


def cvae_f(M, D0, **kw):
    return lambda grad=False, **q: losses.cvae_loss(M, D0, q["W1"], q["W2"], q["U1"], q["U2"],
                                                    q["log_var"], grad=grad, **kw)


def mhvae_f(A, **kw):
    return lambda grad=False, **q: losses.mhvae_loss(A, q["W1"], q["U1"], q["W2"], q["U2"],
                                                     q["log_var1"], q["log_var2"], grad=grad, **kw)


def vae_params(rng, D, d1):
    return dict(W=rng.normal(size=(d1, D)), U=rng.normal(size=(D, d1)),
                log_var=rng.normal(size=d1))


def cvae_params(rng, D0, D2, d1):
    return dict(W1=rng.normal(size=(d1, D0)), W2=rng.normal(size=(d1, D2)),
                U1=rng.normal(size=(D2, d1)), U2=rng.normal(size=(D2, D0)),
                log_var=rng.normal(size=d1))


def mhvae_params(rng, D, d1, d2):
    return dict(W1=rng.normal(size=(d1, D)), U1=rng.normal(size=(D, d1)),
                W2=rng.normal(size=(d2, d1)), U2=rng.normal(size=(d1, d2)),
                log_var1=rng.normal(size=d1), log_var2=rng.normal(size=d2))


def gauss_logpdf(x, mean, var):
    """log N(x; mean, diag(var)), summed over the last axis."""
    return -0.5 * np.sum(np.log(2 * np.pi * var) + (x - mean) ** 2 / var, axis=-1)


def kl_to_isotropic(mean, var, prior_var):
    """KL(N(mean, diag(var)) || N(0, prior_var I)), per row."""
    return 0.5 * np.sum((var + mean ** 2) / prior_var - 1 - np.log(var / prior_var), axis=-1)


FD_TOL = 1e-6
dims = st.integers(1, 5)
hyper = dict(beta=st.floats(0.05, 4), ee=st.floats(0.3, 3), ed=st.floats(0.3, 3))


# ----------------------------------------------------------------------------- gradients
@settings(max_examples=40)
@given(D=dims, d1=dims, data=st.data(), seed=st.integers(0, 2**32 - 1), **hyper)
def test_vae_gradient_matches_finite_differences(D, d1, data, seed, beta, ee, ed):
    rank = data.draw(st.integers(0, D), label="rank")
    rng = np.random.default_rng(seed)
    A = random_psd(rng, D, rank)
    f = vae_f(A, beta=beta, eta_enc=ee, eta_dec=ed)
    assert fd_rel_error(f, vae_params(rng, D, d1)) < FD_TOL


@settings(max_examples=40)
@given(D0=st.integers(0, 4), D2=dims, d1=dims, data=st.data(), seed=st.integers(0, 2**32 - 1),
       **hyper)
def test_cvae_gradient_matches_finite_differences(D0, D2, d1, data, seed, beta, ee, ed):
    rank = data.draw(st.integers(0, D0 + D2), label="rank")
    rng = np.random.default_rng(seed)
    M = random_psd(rng, D0 + D2, rank)
    f = cvae_f(M, D0, beta=beta, eta_enc=ee, eta_dec=ed)
    assert fd_rel_error(f, cvae_params(rng, D0, D2, d1)) < FD_TOL


@settings(max_examples=40)
@given(D=dims, d1=dims, d2=dims, data=st.data(), seed=st.integers(0, 2**32 - 1),
       b1=st.floats(0.05, 4), b2=st.floats(0.05, 4), ee=st.floats(0.3, 3), ed=st.floats(0.3, 3),
       ent=st.booleans())
def test_mhvae_gradient_matches_finite_differences(D, d1, d2, data, seed, b1, b2, ee, ed, ent):
    rank = data.draw(st.integers(0, D), label="rank")
    rng = np.random.default_rng(seed)
    A = random_psd(rng, D, rank)
    f = mhvae_f(A, beta1=b1, beta2=b2, eta_enc=ee, eta_dec=ed, sigma1_entropy=ent)
    assert fd_rel_error(f, mhvae_params(rng, D, d1, d2)) < FD_TOL


@pytest.mark.parametrize("D,rank,d1,d2", [(2, 1, 5, 3), (3, 2, 4, 1), (4, 1, 2, 6), (1, 1, 3, 2)])
def test_gradients_latent_wider_than_data_and_rank_deficient(D, rank, d1, d2):
    """Deterministic cover of the cases the brief singles out: d1 > D, d2 != d1, rank(A) < D."""
    rng = np.random.default_rng(10 * D + d1)
    A = random_psd(rng, D, rank)
    assert fd_rel_error(vae_f(A, beta=0.7, eta_enc=1.3, eta_dec=0.8), vae_params(rng, D, d1)) \
        < FD_TOL
    M = random_psd(rng, D + d2, rank)
    assert fd_rel_error(cvae_f(M, D, beta=1.7, eta_enc=0.6, eta_dec=1.1),
                        cvae_params(rng, D, d2, d1)) < FD_TOL
    for ent in (False, True):
        f = mhvae_f(A, beta1=1.4, beta2=0.3, eta_enc=0.9, eta_dec=1.2, sigma1_entropy=ent)
        assert fd_rel_error(f, mhvae_params(rng, D, d1, d2)) < FD_TOL


def test_value_is_a_float_and_identical_with_and_without_grad():
    rng = np.random.default_rng(0)
    A = random_psd(rng, 3, 2)
    p = vae_params(rng, 3, 2)
    before = {k: v.copy() for k, v in p.items()}
    f = vae_f(A, beta=1.0, eta_enc=1.0, eta_dec=1.0)
    v, g = f(grad=True, **p)
    assert type(f(**p)) is float and type(v) is float and f(**p) == v
    assert all(np.array_equal(p[k], before[k]) for k in p)  # inputs untouched
    M = random_psd(rng, 5, 5)
    q = cvae_params(rng, 2, 3, 2)
    f = cvae_f(M, 2, beta=1.0, eta_enc=1.0, eta_dec=1.0)
    assert type(f(**q)) is float and f(**q) == f(grad=True, **q)[0]
    q = mhvae_params(rng, 3, 2, 4)
    f = mhvae_f(A, beta1=1.0, beta2=1.0, eta_enc=1.0, eta_dec=1.0)
    assert type(f(**q)) is float and f(**q) == f(grad=True, **q)[0]


# ----------------------------------------------------------------------------- hand cases
def test_zero_maps():
    A = np.diag([3.0, 1.0])
    lv = np.log(np.array([0.5, 2.0]))
    beta, ee, ed = 2.0, 2.0, 1.0
    c2, kappa = (ed / ee) ** 2, beta * ed ** 2
    # VAE, W = U = 0: tr A + beta c^2 tr Sigma - kappa sum log sigma^2
    got = losses.vae_loss(A, np.zeros((2, 2)), np.zeros((2, 2)), lv, beta=beta, eta_enc=ee,
                          eta_dec=ed)
    assert got == pytest.approx(4.0 + beta * c2 * 2.5 - kappa * np.sum(lv), rel=1e-14)
    # CVAE, all maps 0: tr(B) + the same variance terms (B = y block)
    M = np.diag([5.0, 3.0, 1.0])
    got = losses.cvae_loss(M, 1, np.zeros((2, 1)), np.zeros((2, 2)), np.zeros((2, 2)),
                           np.zeros((2, 1)), lv, beta=beta, eta_enc=ee, eta_dec=ed)
    assert got == pytest.approx(4.0 + beta * c2 * 2.5 - kappa * np.sum(lv), rel=1e-14)
    # MHVAE, all maps 0: tr A + beta1 tr Sigma1 + beta2 (c^2 tr Sigma2 - ed^2 log|Sigma2|)
    lv2 = np.log(np.array([0.3, 1.5, 4.0]))
    b1, b2 = 0.7, 1.9
    for ent in (False, True):
        got = losses.mhvae_loss(A, np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((3, 2)),
                                np.zeros((2, 3)), lv, lv2, beta1=b1, beta2=b2, eta_enc=ee,
                                eta_dec=ed, sigma1_entropy=ent)
        want = (4.0 + b1 * 2.5 + b2 * (c2 * np.exp(lv2).sum() - ed ** 2 * lv2.sum())
                - ent * b1 * ed ** 2 * lv.sum())
        assert got == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("u,w,s,phi,beta,ee,ed", [(0.7, 1.1, 0.3, 2.0, 0.5, 1.0, 2.0),
                                                  (-1.3, 0.2, 1.7, 0.4, 2.5, 0.6, 0.9)])
def test_1d_vae_against_the_elbo_by_quadrature(u, w, s, phi, beta, ee, ed):
    """x ~ N(0, phi), q(z|x) = N(w x, s), p(x|z) = N(u z, ed^2), p(z) = N(0, ee^2): the
    beta-ELBO integrated over x and z by Gauss-Hermite quadrature (exact for these degrees),
    KL included as E_q[log q - log p]."""
    t, wt = np.polynomial.hermite_e.hermegauss(8)
    wt = wt / wt.sum()
    x = np.sqrt(phi) * t[:, None]                    # outer node: x
    z = w * x + np.sqrt(s) * t[None, :]              # inner node: z given x
    W2 = wt[:, None] * wt[None, :]
    lp = lambda v, m, var: -0.5 * (np.log(2 * np.pi * var) + (v - m) ** 2 / var)  # noqa: E731
    elbo = lp(x, u * z, ed ** 2) - beta * (lp(z, w * x, s) - lp(z, 0.0, ee ** 2))
    neg = -2 * ed ** 2 * np.sum(W2 * elbo)
    const = ed ** 2 * np.log(2 * np.pi * ed ** 2) + beta * ed ** 2 * (np.log(ee ** 2) - 1)
    got = losses.vae_loss(np.array([[phi]]), np.array([[w]]), np.array([[u]]),
                          np.array([np.log(s)]), beta=beta, eta_enc=ee, eta_dec=ed)
    assert got == pytest.approx(neg - const, rel=1e-12, abs=1e-12)


def test_vae_matches_theory_whitened_form():
    """docs/theory.md §1, second line: ||UV - Z||^2 + tr(U S U^T) + beta c^2 ||V||^2 + ..."""
    rng = np.random.default_rng(5)
    D, d1, rank = 4, 5, 2
    A = random_psd(rng, D, rank)
    phi, P = np.linalg.eigh(A)
    P, phi = P[:, -rank:], phi[-rank:]
    Z = P * np.sqrt(phi)
    p = vae_params(rng, D, d1)
    V = p["W"] @ Z
    S = np.exp(p["log_var"])
    beta, ee, ed = 0.6, 1.5, 0.8
    c2 = (ed / ee) ** 2
    want = (np.sum((p["U"] @ V - Z) ** 2) + np.sum(p["U"] ** 2 * S) + beta * c2 * np.sum(V ** 2)
            + beta * c2 * S.sum() - beta * ed ** 2 * p["log_var"].sum())
    assert vae_f(A, beta=beta, eta_enc=ee, eta_dec=ed)(**p) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("d1,d2", [(3, 3), (2, 4), (4, 2)])
def test_mhvae_matches_theory_section_5_form(d1, d2):
    """docs/theory.md §5 with Sigma1 = s1^2 I, written with V1 = W1 Z."""
    rng = np.random.default_rng(d1 * 10 + d2)
    D, rank = 4, 3
    A = random_psd(rng, D, rank)
    phi, P = np.linalg.eigh(A)
    Z = P[:, -rank:] * np.sqrt(phi[-rank:])
    p = mhvae_params(rng, D, d1, d2)
    s1sq = 0.37
    p["log_var1"] = np.full(d1, np.log(s1sq))
    W1, U1, W2, U2 = p["W1"], p["U1"], p["W2"], p["U2"]
    S2 = np.exp(p["log_var2"])
    b1, b2, ee, ed = 1.3, 0.4, 0.7, 1.1
    c2 = (ed / ee) ** 2
    V1 = W1 @ Z
    R = U2 @ W2 - np.eye(d1)
    want = (np.sum((U1 @ V1 - Z) ** 2) + s1sq * np.sum(U1 ** 2)
            + b1 * (np.sum((R @ V1) ** 2) + s1sq * np.sum(R ** 2) + np.sum(U2 ** 2 * S2))
            + b2 * (c2 * (np.sum((W2 @ V1) ** 2) + s1sq * np.sum(W2 ** 2) + S2.sum())
                    - ed ** 2 * p["log_var2"].sum()))
    got = mhvae_f(A, beta1=b1, beta2=b2, eta_enc=ee, eta_dec=ed)(**p)
    assert got == pytest.approx(want, rel=1e-12)


def test_cvae_without_x_is_the_vae_on_y():
    rng = np.random.default_rng(1)
    M = random_psd(rng, 5, 4)
    B = M[2:, 2:]
    W2, U1, lv = rng.normal(size=(4, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    kw = dict(beta=0.8, eta_enc=1.3, eta_dec=0.6)
    got, g = losses.cvae_loss(M, 2, np.zeros((4, 2)), W2, U1, np.zeros((3, 2)), lv, grad=True,
                              **kw)
    want, gv = losses.vae_loss(B, W2, U1, lv, grad=True, **kw)
    assert got == pytest.approx(want, rel=1e-13)
    for a, b in (("W2", "W"), ("U1", "U"), ("log_var", "log_var")):
        np.testing.assert_allclose(g[a], gv[b], rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- Monte Carlo
N_MC = 200_000
MC_Z = 5.0  # tolerance in standard errors; with a fixed seed the test is deterministic


def assert_mc(neg, const, exact_true, exact_hat, x_part):
    """Two comparisons of mean(neg) - const.

    (1) with the loss on the true A: SE of the whole estimator (x and z noise);
    (2) with the loss on the drawn x's second moment: the loss is linear in A, so the difference is
    the mean of neg_i - const - l(x_i), whose only noise is z's; its SE is std(neg - x_part)/sqrt(N)
    where x_part is the x-dependent part of l(x_i) (the rest is constant), so (2) removes x's noise.
    """
    N = neg.size
    mc = neg.mean() - const
    se_full = neg.std() / np.sqrt(N)
    se_z = (neg - x_part).std() / np.sqrt(N)
    assert abs(mc - exact_true) < MC_Z * se_full, (mc, exact_true, se_full)
    assert abs(mc - exact_hat) < MC_Z * se_z, (mc, exact_hat, se_z)


def test_vae_loss_is_the_scaled_negative_elbo_monte_carlo():
    """ELBO_beta = E_q log p(x|z) - beta KL(q(z|x) || N(0, eta_enc^2 I)); constant (docs/theory.md §1):
    D eta_dec^2 log(2 pi eta_dec^2) + kappa d1 (log eta_enc^2 - 1)."""
    rng = np.random.default_rng(2)
    D, d1 = 3, 4
    A = random_psd(rng, D, 2)
    W, U, lv = rng.normal(size=(d1, D)) * 0.5, rng.normal(size=(D, d1)), rng.normal(size=d1) * 0.3
    beta, ee, ed = 0.7, 1.4, 0.9
    kw = dict(beta=beta, eta_enc=ee, eta_dec=ed)
    x = rng.multivariate_normal(np.zeros(D), A, size=N_MC)
    mu, var = x @ W.T, np.exp(lv)
    z = mu + rng.normal(size=(N_MC, d1)) * np.sqrt(var)
    elbo = gauss_logpdf(x, z @ U.T, ed ** 2) - beta * kl_to_isotropic(mu, var, ee ** 2)
    neg = -2 * ed ** 2 * elbo
    const = D * ed ** 2 * np.log(2 * np.pi * ed ** 2) + beta * ed ** 2 * d1 * (np.log(ee ** 2) - 1)
    x_part = (np.sum((x @ (U @ W).T - x) ** 2, axis=1)
              + beta * (ed / ee) ** 2 * np.sum(mu ** 2, axis=1))
    assert_mc(neg, const, losses.vae_loss(A, W, U, lv, **kw),
              losses.vae_loss(x.T @ x / N_MC, W, U, lv, **kw), x_part)


def test_cvae_loss_is_the_scaled_negative_elbo_monte_carlo():
    """ELBO_beta = E_q log p(y|z,x) - beta KL(q(z|x,y) || N(0, eta_enc^2 I)); constant: D = D2."""
    rng = np.random.default_rng(6)
    D0, D2, d1 = 2, 3, 2
    M = random_psd(rng, D0 + D2, D0 + D2)
    W1, W2 = rng.normal(size=(d1, D0)) * 0.5, rng.normal(size=(d1, D2)) * 0.5
    U1, U2, lv = rng.normal(size=(D2, d1)), rng.normal(size=(D2, D0)), rng.normal(size=d1) * 0.3
    beta, ee, ed = 1.6, 0.8, 1.1
    kw = dict(beta=beta, eta_enc=ee, eta_dec=ed)
    xy = rng.multivariate_normal(np.zeros(D0 + D2), M, size=N_MC)
    x, y = xy[:, :D0], xy[:, D0:]
    mu, var = x @ W1.T + y @ W2.T, np.exp(lv)
    z = mu + rng.normal(size=(N_MC, d1)) * np.sqrt(var)
    elbo = gauss_logpdf(y, z @ U1.T + x @ U2.T, ed ** 2) - beta * kl_to_isotropic(mu, var, ee ** 2)
    neg = -2 * ed ** 2 * elbo
    const = D2 * ed ** 2 * np.log(2 * np.pi * ed ** 2) + beta * ed ** 2 * d1 * (np.log(ee ** 2) - 1)
    x_part = (np.sum((mu @ U1.T + x @ U2.T - y) ** 2, axis=1)
              + beta * (ed / ee) ** 2 * np.sum(mu ** 2, axis=1))
    assert_mc(neg, const, losses.cvae_loss(M, D0, W1, W2, U1, U2, lv, **kw),
              losses.cvae_loss(xy.T @ xy / N_MC, D0, W1, W2, U1, U2, lv, **kw), x_part)


def test_mhvae_loss_is_the_scaled_negative_elbo_monte_carlo():
    """ELBO = E log p(x|z1) - beta1 E[log q(z1|x) - log p(z1|z2)] - beta2 E KL(q(z2|z1) || p(z2)).

    Constants of 2 eta_dec^2 E[-ELBO] (derived): reconstruction D ed^2 log(2 pi ed^2);
    -beta1 E log p(z1|z2) gives beta1 d1 ed^2 log(2 pi ed^2); beta1 E log q(z1|x) =
    -beta1/2 (d1 log(2 pi e) + log|Sigma1|) gives -beta1 ed^2 (d1 log(2 pi e) + log|Sigma1|);
    beta2 KL gives beta2 d2 ed^2 (log ee^2 - 1). Together
    D ed^2 log(2 pi ed^2) + beta1 d1 ed^2 (log ed^2 - 1) + beta2 d2 ed^2 (log ee^2 - 1)
    - beta1 ed^2 log|Sigma1|, the last term being the one sigma1_entropy=True keeps in the loss.
    """
    rng = np.random.default_rng(3)
    D, d1, d2 = 4, 2, 3
    A = random_psd(rng, D, 3)
    W1, U1 = rng.normal(size=(d1, D)) * 0.5, rng.normal(size=(D, d1))
    W2, U2 = rng.normal(size=(d2, d1)) * 0.5, rng.normal(size=(d1, d2))
    lv1, lv2 = rng.normal(size=d1) * 0.3, rng.normal(size=d2) * 0.3
    b1, b2, ee, ed = 1.3, 0.6, 1.2, 0.8
    kw = dict(beta1=b1, beta2=b2, eta_enc=ee, eta_dec=ed)
    v1, v2 = np.exp(lv1), np.exp(lv2)
    x = rng.multivariate_normal(np.zeros(D), A, size=N_MC)
    m1 = x @ W1.T
    z1 = m1 + rng.normal(size=(N_MC, d1)) * np.sqrt(v1)
    m2 = z1 @ W2.T
    z2 = m2 + rng.normal(size=(N_MC, d2)) * np.sqrt(v2)
    elbo = (gauss_logpdf(x, z1 @ U1.T, ed ** 2)
            - b1 * (gauss_logpdf(z1, m1, v1) - gauss_logpdf(z1, z2 @ U2.T, ed ** 2))
            - b2 * kl_to_isotropic(m2, v2, ee ** 2))
    neg = -2 * ed ** 2 * elbo
    const_ent = (D * ed ** 2 * np.log(2 * np.pi * ed ** 2)
                 + b1 * d1 * ed ** 2 * (np.log(ed ** 2) - 1)
                 + b2 * d2 * ed ** 2 * (np.log(ee ** 2) - 1))
    R = U2 @ W2 - np.eye(d1)
    x_part = (np.sum((x @ (U1 @ W1).T - x) ** 2, axis=1) + b1 * np.sum((m1 @ R.T) ** 2, axis=1)
              + b2 * (ed / ee) ** 2 * np.sum((m1 @ W2.T) ** 2, axis=1))
    A_hat = x.T @ x / N_MC
    args = (W1, U1, W2, U2, lv1, lv2)
    for ent in (True, False):
        const = const_ent - (not ent) * b1 * ed ** 2 * lv1.sum()
        assert_mc(neg, const, losses.mhvae_loss(A, *args, sigma1_entropy=ent, **kw),
                  losses.mhvae_loss(A_hat, *args, sigma1_entropy=ent, **kw), x_part)


# ----------------------------------------------------------------------------- biases = centring
def test_vae_biases_are_centring():
    """docs/theory.md §0. Biased model q(z|x) = N(Wx + b, Sigma), p(x|z) = N(Uz + a, ed^2 I) on
    data with mean mu, covariance Cov:
    L_b = E||U(Wx + b) + a - x||^2 + tr(U S U^T) + beta c^2 (E||Wx + b||^2 + tr S) - kappa log|S|.
    It is a convex quadratic in (a, b) whose mean terms vanish at b = -W mu, a = mu - U W mu - U b,
    leaving the bias-free loss on Cov."""
    rng = np.random.default_rng(4)
    D, d1 = 3, 4
    Cov, mu = random_psd(rng, D, 2), rng.normal(size=D) * 3
    A_raw = Cov + np.outer(mu, mu)
    W, U, lv = rng.normal(size=(d1, D)), rng.normal(size=(D, d1)), rng.normal(size=d1)
    beta, ee, ed = 0.9, 1.1, 0.7
    kw = dict(beta=beta, eta_enc=ee, eta_dec=ed)
    c2, S = (ed / ee) ** 2, np.exp(lv)

    def biased(a, b):  # E||r||^2 = tr(R Cov R^T) + ||E r||^2 with r = (UW - I) x + U b + a
        R = U @ W - np.eye(D)
        r_mean, e_mean = R @ mu + U @ b + a, W @ mu + b
        return (np.trace(R @ Cov @ R.T) + r_mean @ r_mean + np.sum(U ** 2 * S)
                + beta * c2 * (np.trace(W @ Cov @ W.T) + e_mean @ e_mean + S.sum())
                - beta * ed ** 2 * lv.sum())

    b = -W @ mu
    a = mu - U @ (W @ mu) - U @ b
    best = biased(a, b)
    assert best == pytest.approx(losses.vae_loss(Cov, W, U, lv, **kw), rel=1e-12)
    for _ in range(20):  # it is the minimum
        assert biased(a + rng.normal(size=D) * 0.1, b + rng.normal(size=d1) * 0.1) > best
    # zero biases on raw data: the paper's bias-free model on the second moment, and worse here
    assert biased(np.zeros(D), np.zeros(d1)) == pytest.approx(
        losses.vae_loss(A_raw, W, U, lv, **kw), rel=1e-12)
    assert losses.vae_loss(A_raw, W, U, lv, **kw) > best


def test_mhvae_biases_are_centring():
    """docs/theory.md §1.5: biases on all four means, optimal biases
    a1 = -W1 mu, a2 = -W2 (W1 mu + a1), c2 = -(U2W2 - I)(W1 mu + a1) - U2 a2,
    c1 = (I - U1W1) mu - U1 a1, leave the bias-free loss on Cov."""
    rng = np.random.default_rng(7)
    D, d1, d2 = 3, 2, 3
    Cov, mu = random_psd(rng, D, 3), rng.normal(size=D) * 2
    p = mhvae_params(rng, D, d1, d2)
    W1, U1, W2, U2, lv1, lv2 = (p[k] for k in ("W1", "U1", "W2", "U2", "log_var1", "log_var2"))
    b1, b2, ee, ed = 0.8, 1.7, 1.2, 0.9
    kw = dict(beta1=b1, beta2=b2, eta_enc=ee, eta_dec=ed)
    base = losses.mhvae_loss(Cov, W1, U1, W2, U2, lv1, lv2, **kw)

    def biased(a1, a2, c1, c2):
        # means: z1 = W1 x + a1, z2 = W2 z1 + a2, x_hat = U1 z1 + c1, z1_hat = U2 z2 + c2; the
        # second-moment terms are the centred loss, each mean adds its squared norm
        R1, R2 = U1 @ W1 - np.eye(D), U2 @ W2 - np.eye(d1)
        m1 = W1 @ mu + a1
        e_x = R1 @ mu + U1 @ a1 + c1                 # E[U1 z1 + c1 - x]
        e_z1 = R2 @ m1 + U2 @ a2 + c2                # E[U2 z2 + c2 - z1]
        e_z2 = W2 @ m1 + a2                          # E[z2 mean]
        return (base + e_x @ e_x + b1 * e_z1 @ e_z1 + b2 * (ed / ee) ** 2 * e_z2 @ e_z2)

    a1 = -W1 @ mu
    a2 = -W2 @ (W1 @ mu + a1)
    c2 = -(U2 @ W2 - np.eye(d1)) @ (W1 @ mu + a1) - U2 @ a2
    c1 = (np.eye(D) - U1 @ W1) @ mu - U1 @ a1
    assert biased(a1, a2, c1, c2) == pytest.approx(base, rel=1e-12)
    # and with zero biases the same expression is the bias-free loss on the raw second moment
    zero = biased(np.zeros(d1), np.zeros(d2), np.zeros(D), np.zeros(d1))
    raw = losses.mhvae_loss(Cov + np.outer(mu, mu), W1, U1, W2, U2, lv1, lv2, **kw)
    assert zero == pytest.approx(raw, rel=1e-12)


# ----------------------------------------------------------------------------- validation, packing
def test_bad_inputs_name_the_argument():
    h = dict(beta=1.0, eta_enc=1.0, eta_dec=1.0)
    with pytest.raises(ValueError, match="U has shape"):
        losses.vae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), **h)
    with pytest.raises(ValueError, match="log_var has shape"):
        losses.vae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(3), **h)
    with pytest.raises(ValueError, match="A must be symmetric"):
        losses.vae_loss(np.triu(np.ones((3, 3))), np.zeros((2, 3)), np.zeros((3, 2)),
                        np.zeros(2), **h)
    with pytest.raises(ValueError, match="eta_dec"):
        losses.vae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(2), beta=1,
                        eta_enc=1, eta_dec=0)
    with pytest.raises(ValueError, match="beta"):
        losses.vae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros(2), beta=-1,
                        eta_enc=1, eta_dec=1)
    M = np.eye(5)
    good = dict(W1=np.zeros((2, 2)), W2=np.zeros((2, 3)), U1=np.zeros((3, 2)),
                U2=np.zeros((3, 2)), log_var=np.zeros(2))
    assert losses.cvae_loss(M, 2, *good.values(), **h) == pytest.approx(3.0 + 2.0)
    with pytest.raises(ValueError, match="x_dim"):
        losses.cvae_loss(M, 5, *good.values(), **h)
    with pytest.raises(ValueError, match="U2 has shape"):
        losses.cvae_loss(M, 2, *{**good, "U2": np.zeros((2, 3))}.values(), **h)
    with pytest.raises(ValueError, match="W2 has shape"):
        losses.mhvae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((4, 3)),
                          np.zeros((2, 4)), np.zeros(2), np.zeros(4), beta1=1, beta2=1,
                          eta_enc=1, eta_dec=1)
    with pytest.raises(ValueError, match="log_var2 has shape"):
        losses.mhvae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((4, 2)),
                          np.zeros((2, 4)), np.zeros(2), np.zeros(2), beta1=1, beta2=1,
                          eta_enc=1, eta_dec=1)


def test_pack_unpack_roundtrip_and_lbfgs():
    tpl = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(4), "c": 5.0}
    v = losses.pack(tpl, ["a", "b"])
    assert v.shape == (10,) and v.dtype == np.float64
    back = losses.unpack(v * 2, tpl, ["a", "b"])
    assert np.array_equal(back["a"], tpl["a"] * 2) and back["c"] == 5.0
    assert np.array_equal(tpl["a"], np.arange(6.0).reshape(2, 3))  # template untouched
    for bad in (np.ones(3), np.ones(11), np.ones((2, 5))):
        with pytest.raises(ValueError):
            losses.unpack(bad, tpl, ["a", "b"])
    # as an optimiser uses them: L-BFGS on the 1-D VAE (phi = 4, fixed unit variance,
    # beta = c = 1) reaches the minimum of a fine grid over (u, w)
    from scipy.optimize import minimize
    A = np.array([[4.0]])
    tpl = {"W": np.array([[0.3]]), "U": np.array([[0.2]]), "log_var": np.zeros(1)}
    names = ["W", "U"]

    def f(vec):
        p = losses.unpack(vec, tpl, names)
        val, g = losses.vae_loss(A, p["W"], p["U"], p["log_var"], beta=1.0, eta_enc=1.0,
                                 eta_dec=1.0, grad=True)
        return val, losses.pack(g, names)

    res = minimize(f, losses.pack(tpl, names), jac=True, method="L-BFGS-B")
    uu, ww = np.meshgrid(np.linspace(-3, 3, 601), np.linspace(-3, 3, 601))
    grid = (uu * ww - 1) ** 2 * 4 + uu ** 2 + ww ** 2 * 4 + 1
    assert res.fun <= grid.min() + 1e-9

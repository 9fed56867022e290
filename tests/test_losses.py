"""The exact losses: gradients, hand cases, a Monte-Carlo ELBO, and the bias equivalence."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize

from conftest import random_psd
from vaetheory import losses


def fd_error(fun, params, names, h=1e-6):
    _, g = fun(grad=True, **params)
    worst = 0.0
    for n in names:
        num = np.zeros_like(params[n])
        for idx in np.ndindex(params[n].shape):
            q = {k: np.array(v, copy=True) for k, v in params.items()}
            q[n][idx] += h
            fp = fun(**q)
            q[n][idx] -= 2 * h
            num[idx] = (fp - fun(**q)) / (2 * h)
        worst = max(worst, np.max(np.abs(num - g[n])) / max(1.0, np.max(np.abs(num))))
    return worst


dims = st.integers(1, 4)


@settings(max_examples=25)
@given(D=dims, rank=dims, d1=dims, seed=st.integers(0, 10**6), beta=st.floats(0.1, 3),
       ee=st.floats(0.5, 2), ed=st.floats(0.5, 2))
def test_vae_and_cvae_gradients_match_finite_differences(D, rank, d1, seed, beta, ee, ed):
    rng = np.random.default_rng(seed)
    A = random_psd(rng, D, min(rank, D))
    kw = dict(beta=beta, eta_enc=ee, eta_dec=ed)
    p = dict(W=rng.normal(size=(d1, D)), U=rng.normal(size=(D, d1)), log_var=rng.normal(size=d1))
    f = lambda grad=False, **q: losses.vae_loss(A, q["W"], q["U"], q["log_var"], grad=grad, **kw)  # noqa
    assert fd_error(f, p, list(p)) < 1e-6
    D2 = rank
    M = random_psd(rng, D + D2, D + D2 - 1)
    p = dict(W1=rng.normal(size=(d1, D)), W2=rng.normal(size=(d1, D2)),
             U1=rng.normal(size=(D2, d1)), U2=rng.normal(size=(D2, D)), log_var=rng.normal(size=d1))
    f = lambda grad=False, **q: losses.cvae_loss(M, D, q["W1"], q["W2"], q["U1"], q["U2"],  # noqa
                                                 q["log_var"], grad=grad, **kw)
    assert fd_error(f, p, list(p)) < 1e-6


@settings(max_examples=25)
@given(D=dims, d1=dims, d2=dims, seed=st.integers(0, 10**6), ent=st.booleans())
def test_mhvae_gradients_match_finite_differences(D, d1, d2, seed, ent):
    rng = np.random.default_rng(seed)
    A = random_psd(rng, D, max(1, D - 1))
    p = dict(W1=rng.normal(size=(d1, D)), U1=rng.normal(size=(D, d1)), W2=rng.normal(size=(d2, d1)),
             U2=rng.normal(size=(d1, d2)), log_var1=rng.normal(size=d1),
             log_var2=rng.normal(size=d2))
    f = lambda grad=False, **q: losses.mhvae_loss(  # noqa: E731
        A, q["W1"], q["U1"], q["W2"], q["U2"], q["log_var1"], q["log_var2"], beta1=1.3,
        beta2=0.7, eta_enc=1.2, eta_dec=0.8, sigma1_entropy=ent, grad=grad)
    assert fd_error(f, p, list(p)) < 1e-6


def test_hand_cases():
    A = np.diag([3.0, 1.0])
    lv = np.log(np.array([0.5, 2.0]))
    # W = U = 0: tr A + beta c^2 tr Sigma - kappa sum log sigma^2
    got = losses.vae_loss(A, np.zeros((2, 2)), np.zeros((2, 2)), lv, beta=2.0, eta_enc=2.0,
                          eta_dec=1.0)
    assert got == pytest.approx(4.0 + 2.0 * 0.25 * 2.5 - 2.0 * np.sum(lv))
    # 1-D: (u w - 1)^2 phi + u^2 s + beta c^2 (w^2 phi + s) - kappa log s
    u, w, s, phi = 0.7, 1.1, 0.3, 2.0
    got = losses.vae_loss(np.array([[phi]]), np.array([[w]]), np.array([[u]]),
                          np.array([np.log(s)]), beta=0.5, eta_enc=1.0, eta_dec=2.0)
    want = (u * w - 1) ** 2 * phi + u * u * s + 0.5 * 4 * (w * w * phi + s) - 2.0 * np.log(s)
    assert got == pytest.approx(want)


def test_cvae_without_x_is_the_vae_on_y():
    rng = np.random.default_rng(1)
    M = random_psd(rng, 5, 5)
    B = M[2:, 2:]
    W2, U1, lv = rng.normal(size=(2, 3)), rng.normal(size=(3, 2)), rng.normal(size=2)
    kw = dict(beta=0.8, eta_enc=1.3, eta_dec=0.6)
    got = losses.cvae_loss(M, 2, np.zeros((2, 2)), W2, U1, np.zeros((3, 2)), lv, **kw)
    assert got == pytest.approx(losses.vae_loss(B, W2, U1, lv, **kw))


def gauss_logpdf(x, mean, var):
    return -0.5 * np.sum(np.log(2 * np.pi * var) + (x - mean) ** 2 / var, axis=-1)


def test_vae_loss_is_the_scaled_negative_elbo_monte_carlo():
    """2 eta_dec^2 E[-ELBO_beta] by sampling, with the ELBO written out from its definition:
    E_q log p(x|z) - beta KL(q(z|x) || N(0, eta_enc^2 I))."""
    rng = np.random.default_rng(2)
    D, d1, N = 3, 2, 400_000
    A = random_psd(rng, D, D)
    W, U, lv = rng.normal(size=(d1, D)) * 0.5, rng.normal(size=(D, d1)), rng.normal(size=d1) * 0.3
    beta, ee, ed = 0.7, 1.4, 0.9
    x = rng.multivariate_normal(np.zeros(D), A, size=N)
    mu, var = x @ W.T, np.exp(lv)
    z = mu + rng.normal(size=(N, d1)) * np.sqrt(var)
    loglik = gauss_logpdf(x, z @ U.T, ed ** 2)
    kl = 0.5 * np.sum((var + mu ** 2) / ee ** 2 - 1 - np.log(var / ee ** 2), axis=1)
    neg = -(loglik - beta * kl) * 2 * ed ** 2
    const = D * ed ** 2 * np.log(2 * np.pi * ed ** 2) + beta * ed ** 2 * d1 * (np.log(ee ** 2) - 1)
    mc, se = neg.mean() - const, neg.std() / np.sqrt(N)
    # the exact loss uses the sample second moment of the draws (the MC target)
    A_hat = x.T @ x / N
    exact = losses.vae_loss(A_hat, W, U, lv, beta=beta, eta_enc=ee, eta_dec=ed)
    assert abs(mc - exact) < 5 * se


def test_mhvae_loss_is_the_scaled_negative_elbo_monte_carlo():
    """ELBO = E log p(x|z1) - beta1 E[log q(z1|x) - log p(z1|z2)] - beta2 E KL(q(z2|z1) || p(z2))."""
    rng = np.random.default_rng(3)
    D, d1, d2, N = 3, 2, 2, 400_000
    A = random_psd(rng, D, D)
    W1, U1 = rng.normal(size=(d1, D)) * 0.5, rng.normal(size=(D, d1))
    W2, U2 = rng.normal(size=(d2, d1)) * 0.5, rng.normal(size=(d1, d2))
    lv1, lv2 = rng.normal(size=d1) * 0.3, rng.normal(size=d2) * 0.3
    b1, b2, ee, ed = 1.3, 0.6, 1.2, 0.8
    v1, v2 = np.exp(lv1), np.exp(lv2)
    x = rng.multivariate_normal(np.zeros(D), A, size=N)
    m1 = x @ W1.T
    z1 = m1 + rng.normal(size=(N, d1)) * np.sqrt(v1)
    m2 = z1 @ W2.T
    z2 = m2 + rng.normal(size=(N, d2)) * np.sqrt(v2)
    loglik = gauss_logpdf(x, z1 @ U1.T, ed ** 2)
    consistency = gauss_logpdf(z1, m1, v1) - gauss_logpdf(z1, z2 @ U2.T, ed ** 2)
    kl2 = 0.5 * np.sum((v2 + m2 ** 2) / ee ** 2 - 1 - np.log(v2 / ee ** 2), axis=1)
    neg = -(loglik - b1 * consistency - b2 * kl2) * 2 * ed ** 2
    # constants: reconstruction D ed^2 log(2 pi ed^2); consistency b1 d1 ed^2 log(2 pi ed^2) and
    # (entropy of q(z1|x)) -b1 ed^2 [d1 log(2 pi e) + log|Sigma1|]; KL b2 ed^2 d2 (log ee^2 - 1)
    const = (D * ed ** 2 * np.log(2 * np.pi * ed ** 2)
             + b1 * d1 * ed ** 2 * np.log(2 * np.pi * ed ** 2)
             - b1 * ed ** 2 * (d1 * np.log(2 * np.pi * np.e) + np.sum(lv1))
             + b2 * ed ** 2 * d2 * (np.log(ee ** 2) - 1))
    mc, se = neg.mean() - const, neg.std() / np.sqrt(N)
    exact = losses.mhvae_loss(x.T @ x / N, W1, U1, W2, U2, lv1, lv2, beta1=b1, beta2=b2,
                              eta_enc=ee, eta_dec=ed)
    assert abs(mc - exact) < 5 * se
    # with sigma1_entropy the log|Sigma1| part of the constant moves into the loss
    with_ent = losses.mhvae_loss(x.T @ x / N, W1, U1, W2, U2, lv1, lv2, beta1=b1, beta2=b2,
                                 eta_enc=ee, eta_dec=ed, sigma1_entropy=True)
    assert with_ent == pytest.approx(exact - b1 * ed ** 2 * np.sum(lv1))


def test_biases_are_centring():
    """THEORY §0: with encoder and decoder biases, the loss minimised over the biases on data with
    mean mu equals the bias-free loss on Cov(x)."""
    rng = np.random.default_rng(4)
    D, d1 = 3, 2
    Cov, mu = random_psd(rng, D, D), rng.normal(size=D) * 3
    A_raw = Cov + np.outer(mu, mu)
    W, U, lv = rng.normal(size=(d1, D)), rng.normal(size=(D, d1)), rng.normal(size=d1)
    kw = dict(beta=0.9, eta_enc=1.1, eta_dec=0.7)
    c2 = (0.7 / 1.1) ** 2

    def biased(v):  # E||U(Wx + b) + a - x||^2 + tr(U S U^T) + beta c^2 (E||Wx + b||^2 + tr S) - ...
        b, a = v[:d1], v[d1:]
        R = U @ W - np.eye(D)
        r_mean = R @ mu + U @ b + a
        e_mean = W @ mu + b
        S = np.exp(lv)
        return (np.trace(R @ Cov @ R.T) + r_mean @ r_mean + np.sum((U * U) @ S)
                + kw["beta"] * c2 * (np.trace(W @ Cov @ W.T) + e_mean @ e_mean + S.sum())
                - kw["beta"] * 0.7 ** 2 * lv.sum())

    best = minimize(biased, np.zeros(d1 + D), method="BFGS", options={"gtol": 1e-12}).fun
    assert best == pytest.approx(losses.vae_loss(Cov, W, U, lv, **kw), rel=1e-10)
    assert losses.vae_loss(A_raw, W, U, lv, **kw) > best  # no biases on raw moments: worse


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="U has shape"):
        losses.vae_loss(np.eye(3), np.zeros((2, 3)), np.zeros((2, 2)), np.zeros(2), beta=1,
                        eta_enc=1, eta_dec=1)


def test_pack_unpack_roundtrip():
    tpl = {"a": np.arange(6.0).reshape(2, 3), "b": np.ones(4), "c": 5.0}
    v = losses.pack(tpl, ["a", "b"])
    back = losses.unpack(v * 2, tpl, ["a", "b"])
    assert np.array_equal(back["a"], tpl["a"] * 2) and back["c"] == 5.0
    with pytest.raises(ValueError):
        losses.unpack(np.ones(3), tpl, ["a", "b"])

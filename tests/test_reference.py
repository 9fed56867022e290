"""Checks of the mpmath reference (tests/_reference.py) itself, so that it can be trusted as an oracle.

Nothing here imports vaetheory.  The checks are independent of each other's derivations:
- closed-form losses vs the literal matrix losses (traces of products, T§1 / D§1) evaluated at the
  optimal matrices built from the per-mode values, to 1e-40 relative, including extreme scales;
- the constructed optima are stationary minima (random +-1e-8 perturbations never lower the loss);
- the m*-form of the hierarchical optimum vs the case forms printed in THEORY.md §5.1/§5.2, and the
  cancellation-free loss rewrites vs the literal L* formulas of THEORY.md §2-§4 and detail §3;
- worked numbers quoted in the THEORY files;
- float64 brute-force minimisation over all matrices (scipy L-BFGS-B, complex-step gradients);
- data spectra vs numpy on well-conditioned data.
"""
import contextlib

import numpy as np
import pytest
from mpmath import mp
from scipy.optimize import minimize

try:                 # multi-threaded OpenBLAS makes tiny L-BFGS-B problems ~20x slower
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    def threadpool_limits(limits=None):
        return contextlib.nullcontext()

import _reference as R

mpf = mp.mpf


def close(a, b, tol="1e-40", scale=None):
    err = R.rel_err(a, b, scale)
    assert err <= mpf(tol), f"{mp.nstr(a, 25)} vs {mp.nstr(b, 25)}: rel err {mp.nstr(err, 3)}"


def P(**kw):
    return kw


# ----------------------------------------------------------------------------- VAE / CVAE, constructed
VAE_CASES = [
    ("vae-learnable", [5, 2, 0.7, 0.1], 3, P(beta=0.9, eta_enc=1.4, eta_dec=0.8)),
    ("vae-learnable", [4, 1], 4, P(beta=2.0)),                                  # d1 > D0
    ("vae-learnable", [1e300, 1e120, 1e-200, 0.0], 4, P(beta=0.5, eta_enc=1e-30, eta_dec=1e50)),
    ("vae-learnable", ["1e-250", "3e-251"], 2, P(beta="0.3", eta_dec="1e-125")),
    ("vae-fixed", [5, 2, 0.7, 0.1], 3, P(sigma=[0.5, 0.2, 0.9], beta=1.3, eta_enc=0.9, eta_dec=0.6)),
    ("vae-fixed", [3, 1, 0.5], 5, P(sigma=0.4, beta=0.7)),                      # scalar sigma, d1 > D0
    ("vae-fixed", [6, 3, 2, 1, 0.5], 4, P(sigma=[0.3, 0.8, 0.3, 0.8], beta=1.1)),  # ties
    ("vae-fixed", [1e200, 1e100, 1e-100], 3, P(sigma=[1e-60, 1e10, 3.0], eta_enc=1e-20, eta_dec=1e40)),
]


@pytest.mark.parametrize("setting,eigs,d1,hyper", VAE_CASES)
def test_vae_closed_form_equals_matrix_loss(setting, eigs, d1, hyper):
    ref = R.optimal_loss(setting, eigs, d1, **hyper)           # at the default DPS
    kw = {k: hyper[k] for k in ("beta", "eta_enc", "eta_dec") if k in hyper}
    # the trace form cancels badly at extreme conditioning (1 - u w ~ 1e-100 below), so build and
    # evaluate the optimal matrices at 3x the digits; the closed form needs no such help
    with mp.workdps(3 * R.DPS):
        m = R.optimal_matrices(setting, eigs, d1, **hyper)
        L = R.vae_loss(m["A"], m["W"], m["U"], m["log_var"], **kw)
    close(L, ref)
    # active flags <=> non-zero singular values
    assert m["opt"]["active"] == [w > 0 for w in m["opt"]["omega"]]
    assert m["opt"]["active"] == [v > 0 for v in m["opt"]["lambda"]]


CVAE_CASES = [
    ("cvae-learnable", [3, 1, 0.2], 2, [2, 0.5], P(beta=0.8, eta_enc=1.2, eta_dec=0.9)),
    ("cvae-learnable", [6, 3, 1.5, 0.5], 5, [1, 0.3, 0.0], P(beta=2.0)),        # rank-deficient x
    ("cvae-learnable", [1e80, 1e-80], 2, [1, 1], P(beta=0.5, eta_dec=1e30)),
    ("cvae-fixed", [3, 1, 0.2], 3, [2, 0.0], P(sigma=[0.9, 0.3, 0.5], beta=0.8, eta_dec=0.7)),
    ("cvae-fixed", [2.5, 0.4], 2, [1.5], P(sigma=0.35, eta_enc=0.6)),
]


@pytest.mark.parametrize("setting,e,d1,xe,hyper", CVAE_CASES)
def test_cvae_closed_form_equals_matrix_loss(setting, e, d1, xe, hyper):
    rng = np.random.default_rng(len(e) * 10 + d1)
    K = rng.normal(size=(len(e), len(xe)))
    ref = R.optimal_loss(setting, e, d1, **hyper)
    kw = {k: hyper[k] for k in ("beta", "eta_enc", "eta_dec") if k in hyper}
    with mp.workdps(3 * R.DPS):
        m = R.optimal_matrices(setting, e, d1, K=K, x_eigenvalues=xe, **hyper)
        L = R.cvae_loss(m["M"], m["x_dim"], m["W1"], m["W2"], m["U1"], m["U2"], m["log_var"], **kw)
    close(L, ref)


# ----------------------------------------------------------------------------- hierarchical, constructed
def _lu(rng, lo, hi):
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _mh_draw(rng, learnable, D0, d1):
    """Random hyperparameters (ranges of detail §5) and thetas, many of them near a branch threshold."""
    h = dict(beta1=_lu(rng, .05, 10), beta2=_lu(rng, .05, 10), sigma1=_lu(rng, .1, 3),
             eta_enc=_lu(rng, .2, 5), eta_dec=_lu(rng, .2, 5))
    if not learnable:
        h["sigma2"] = _lu(rng, .1, 3)
    b1, b2, s1, ee, ed = (h[k] for k in ("beta1", "beta2", "sigma1", "eta_enc", "eta_dec"))
    c = ed / ee
    q = ed ** 2 if learnable else (c * h["sigma2"]) ** 2
    alpha = np.sqrt(b1 * b2) * c * s1 * h.get("sigma2", ee)
    thr = [np.sqrt(b1) * s1, b2 * q / (np.sqrt(b1) * s1), np.sqrt(b2) * ed, np.sqrt(alpha)]
    theta = []
    for _ in range(D0):
        u = rng.uniform()
        theta.append(0.0 if u < .1 else thr[rng.integers(4)] * np.exp(rng.uniform(-.4, .4))
                     if u < .6 else _lu(rng, .05, 10))
    return np.array(theta) ** 2, h


def _thm3_cases(t, b1, b2, s1, ee, ed):
    """THEORY.md §5.1, literally."""
    B, c = b2 * ed ** 2, ed / ee
    if b1 * s1 ** 2 >= B:
        return ("a", s1 / (mp.sqrt(b2) * ed) * mp.sqrt(max(t ** 2 - B, 0)),
                mp.sqrt(max(s1 ** 2 * max(t ** 2, B) / (B * ee ** 2) - b2 / b1 * c ** 2, 0)))
    if s1 ** 2 * t ** 2 / B < b2 / b1 * ed ** 2:
        return "b", mp.sqrt(s1 / mp.sqrt(b1) * max(t - mp.sqrt(b1) * s1, 0)), mpf(0)
    return ("c", s1 / (mp.sqrt(b2) * ed) * mp.sqrt(t ** 2 - B),
            mp.sqrt(s1 ** 2 * t ** 2 / (b2 * ee ** 2 * ed ** 2) - b2 / b1 * c ** 2))


def _thm5_cases(t, b1, b2, s1, s2, ee, ed):
    """THEORY.md §5.2, literally (a = sqrt(b1 b2) c s1 s2 there)."""
    c = ed / ee
    a = mp.sqrt(b1 * b2) * c * s1 * s2
    tstar = max(mp.sqrt(a), b2 * c ** 2 * s2 ** 2 / (mp.sqrt(b1) * s1))
    if t >= tstar:
        lam = mp.cbrt(s1 ** 2 / (mp.sqrt(b1 * b2) * c * s2)) * mp.sqrt(t ** (mpf(4) / 3) - mp.cbrt(a) ** 2)
        om = mp.cbrt(mp.sqrt(b2) * c * s1 / (b1 * s2 ** 2)) * mp.sqrt(
            t ** (mpf(2) / 3) - mp.cbrt(b2 ** 2 * c ** 4 * s2 ** 4 / (b1 * s1 ** 2)))
        return "main", lam, om
    if mp.sqrt(b1) * s1 >= mp.sqrt(b2) * c * s2:
        return "noise", mpf(0), mp.sqrt(mp.sqrt(b2) * c * s1 / (mp.sqrt(b1) * s2) - b2 / b1 * c ** 2)
    if t < mp.sqrt(b1) * s1:
        return "zero", mpf(0), mpf(0)
    return "vae", mp.sqrt(s1 * (t / mp.sqrt(b1) - s1)), mpf(0)


def _detail_mode_loss(t, b1, B, s1):
    """Explicit Thm-3 per-mode values F(m*) of detail §3 (paired modes)."""
    m0, m = B / b1, None
    if t <= B / (mp.sqrt(b1) * s1):
        m = max(s1 ** 2, t * s1 / mp.sqrt(b1))
    else:
        m = max(s1 ** 2, t ** 2 * s1 ** 2 / B)
    if m <= m0:
        return 2 * t * s1 * mp.sqrt(b1) if t >= mp.sqrt(b1) * s1 else t ** 2 + b1 * s1 ** 2
    if m > s1 ** 2:
        return 2 * B * (1 + mp.log(mp.sqrt(b1) * t * s1 / B))
    return t ** 2 + B * (1 + mp.log(b1 * s1 ** 2 / B))


DIMS = [(4, 4, 4), (2, 4, 4), (4, 4, 2), (3, 3, 5), (4, 2, 2), (2, 3, 4), (5, 5, 3)]


@pytest.mark.parametrize("learnable", [True, False], ids=["thm3", "thm5"])
def test_mhvae_closed_form_matrix_loss_and_case_forms(learnable):
    setting = "mhvae-sigma2-learnable" if learnable else "mhvae-sigma2-fixed"
    rng = np.random.default_rng(3 if learnable else 5)
    branches = {}
    with mp.workdps(R.DPS):
        for n in range(42):
            D0, d1, d2 = DIMS[n % len(DIMS)]
            eigs, h = _mh_draw(rng, learnable, D0, d1)
            m = R.optimal_matrices(setting, eigs, d1, d2, **h)
            o = m["opt"]
            hk = {k: h[k] for k in ("beta1", "beta2", "eta_enc", "eta_dec")}
            L = R.mhvae_loss(m["A"], m["W1"], m["U1"], m["W2"], m["U2"], m["log_var1"], m["log_var2"], **hk)
            b1, b2, s1, ee, ed = (mpf(h[k]) for k in ("beta1", "beta2", "sigma1", "eta_enc", "eta_dec"))
            B = b2 * ed ** 2
            s2 = mpf(h.get("sigma2", 1))
            scale = sum(eigs) + d2 * B * (1 + abs(mp.log(ee ** 2)) + abs(mp.log(s2 ** 2))) + d1 * b1 * s1 ** 2
            close(L, o["loss"], scale=scale)
            assert len(o["lambda"]) == d1 and len(o["omega"]) == d2 and len(o["sigma2"]) == d2
            assert o["lambda_active"] == [v > 0 for v in o["lambda"]]
            assert o["active_z2"] == [w > 0 for w in o["omega"]]
            for i in range(min(d1, d2)):
                t = o["theta"][i]
                if learnable:
                    br, lam, om = _thm3_cases(t, b1, b2, s1, ee, ed)
                    close(_detail_mode_loss(t, b1, B, s1), t ** 2 * s1 ** 2 / o["m"][i]
                          + (b1 * o["m"][i] if o["m"][i] <= B / b1 else B * (1 + mp.log(o["m"][i] * b1 / B))))
                else:
                    br, lam, om = _thm5_cases(t, b1, b2, s1, s2, ee, ed)
                branches[br] = branches.get(br, 0) + 1
                close(lam, o["lambda"][i], scale=1)
                close(om, o["omega"][i], scale=1)
            for i in range(min(d1, d2), d1):    # unpaired z1 modes: VAE mode with weight beta1 (T§5.3)
                t = o["theta"][i]
                close(mp.sqrt(s1 / mp.sqrt(b1) * max(t - mp.sqrt(b1) * s1, 0)), o["lambda"][i], scale=1)
    expected = ("a", "b", "c") if learnable else ("main", "noise", "zero", "vae")
    assert all(branches.get(b, 0) >= 3 for b in expected), branches


# ----------------------------------------------------------------------------- stationarity
def _perturbed_min(loss, mats, free, rng, n=6, delta=1e-8):
    """loss(mats) vs loss at random +-delta perturbations of the entries of the matrices in `free`."""
    L0 = loss(**mats)
    for _ in range(n):
        pert = dict(mats)
        for k in free:
            v = mats[k]
            if isinstance(v, list):
                pert[k] = [x + mpf(float(rng.normal())) * delta for x in v]
            else:
                v = v.copy()
                for i in range(v.rows):
                    for j in range(v.cols):
                        v[i, j] += mpf(float(rng.normal())) * delta
                pert[k] = v
        Lp = loss(**pert)
        with mp.workdps(R.DPS):
            assert Lp - L0 > -mpf("1e-40") * abs(L0), (mp.nstr(Lp - L0, 5), k)


@pytest.mark.parametrize("setting,eigs,d1,hyper", [c for c in VAE_CASES if max(map(float, c[1])) < 1e3])
def test_vae_optimum_is_stationary_minimum(setting, eigs, d1, hyper):
    m = R.optimal_matrices(setting, eigs, d1, **hyper)
    kw = {k: hyper[k] for k in ("beta", "eta_enc", "eta_dec") if k in hyper}
    free = ("W", "U", "log_var") if setting.endswith("learnable") else ("W", "U")
    _perturbed_min(lambda **a: R.vae_loss(a["A"], a["W"], a["U"], a["log_var"], **kw),
                   {k: m[k] for k in ("A", "W", "U", "log_var")}, free, np.random.default_rng(0))


@pytest.mark.parametrize("setting,dims,hyper", [
    ("mhvae-sigma2-learnable", (4, 3, 3), P(beta1=1.3, beta2=0.7, sigma1=0.6, eta_enc=1.5, eta_dec=0.9)),
    ("mhvae-sigma2-learnable", (3, 3, 2), P(beta1=3.0, beta2=0.5, sigma1=1.0)),
    ("mhvae-sigma2-fixed", (4, 3, 3), P(beta1=1.3, beta2=0.7, sigma1=0.6, sigma2=0.8, eta_dec=0.9)),
    ("mhvae-sigma2-fixed", (2, 2, 3), P(beta1=0.5, beta2=1.0, sigma1=0.5, sigma2=1.0)),
])
def test_mhvae_optimum_is_stationary_minimum(setting, dims, hyper):
    D0, d1, d2 = dims
    eigs = [6.0, 2.5, 0.9, 0.2][:D0]
    m = R.optimal_matrices(setting, eigs, d1, d2, **hyper)
    kw = {k: hyper[k] for k in ("beta1", "beta2", "eta_enc", "eta_dec") if k in hyper}
    free = ("W1", "U1", "W2", "U2") + (("log_var2",) if setting.endswith("learnable") else ())
    names = ("A", "W1", "U1", "W2", "U2", "log_var1", "log_var2")
    _perturbed_min(lambda **a: R.mhvae_loss(*(a[k] for k in names), **kw),
                   {k: m[k] for k in names}, free, np.random.default_rng(1))


# ----------------------------------------------------------------------------- literal L* formulas
def test_literal_loss_formulas_of_theory():
    with mp.workdps(R.DPS):
        # T§3: L* = tr A - kappa sum h(theta^2/kappa) + d1 kappa (1 - log eta_enc^2)
        ev, d1, beta, ee, ed = [mpf(x) for x in (7, 2, "0.6", "0.05")], 3, mpf("0.8"), mpf("1.7"), mpf("0.9")
        kappa = beta * ed ** 2
        h = [e / kappa - 1 - mp.log(e / kappa) if e > kappa else 0 for e in ev[:d1]]
        lit = mp.fsum(ev) - kappa * mp.fsum(h) + d1 * kappa * (1 - mp.log(ee ** 2))
        close(lit, R.optimal_loss("vae-learnable", ev, d1, beta=beta, eta_enc=ee, eta_dec=ed))
        close(lit, R.optimal_loss("cvae-learnable", ev, d1, beta=beta, eta_enc=ee, eta_dec=ed))
        # with an explicit trace larger than the listed eigenvalues
        close(lit + 5, R.optimal_loss("vae-learnable", ev, d1, trace=mp.fsum(ev) + 5, beta=beta,
                                      eta_enc=ee, eta_dec=ed))
        # T§2: L* = tr A - sum (theta_i - s sigma'_i)_+^2 + beta c^2 sum sigma^2 - kappa sum log sigma^2
        sig = [mpf("0.9"), mpf("0.2"), mpf("0.5")]
        s = mp.sqrt(beta) * ed / ee
        sp = sorted(sig)
        lit = (mp.fsum(ev) - mp.fsum(max(mp.sqrt(e) - s * x, 0) ** 2 for e, x in zip(ev, sp))
               + s ** 2 * mp.fsum(x ** 2 for x in sig) - kappa * mp.fsum(mp.log(x ** 2) for x in sig))
        for st in ("vae-fixed", "cvae-fixed"):
            close(lit, R.optimal_loss(st, ev, 3, sigma=sig, beta=beta, eta_enc=ee, eta_dec=ed))
        # D§4: L* of Thm 5 vs F(m*) summed by hand for d1 = d2 = 1
        t, s1, s2, ee, ed, b1, b2 = (mpf(x) for x in ("0.451", "0.227", "0.443", 1, "0.469", "2.668", "1.76"))
        o = R.optimum("mhvae-sigma2-fixed", [t ** 2], 1, 1, sigma1=s1, sigma2=s2, eta_enc=ee,
                      eta_dec=ed, beta1=b1, beta2=b2)
        c, mm = ed / ee, o["m"][0]
        Hm = b1 * mm if mm <= b2 * c ** 2 * s2 ** 2 / b1 else 2 * s2 * c * mp.sqrt(b1 * b2 * mm) - b2 * c ** 2 * s2 ** 2
        close(t ** 2 * s1 ** 2 / mm + Hm + b2 * c ** 2 * s2 ** 2 - b2 * ed ** 2 * mp.log(s2 ** 2), o["loss"])


def test_scale_homogeneity_at_extreme_scales():
    """x -> a x with eta_dec -> a eta_dec (VAE) resp. all of s1, s2, eta_enc, eta_dec -> a * (MHVAE):
    L -> a^2 L (VAE) and L -> a^2 (L - d2 b2 eta_dec^2 log a^2) (MHVAE, from the log|Sigma2| term)."""
    a = mpf(10) ** 120
    ev = [mpf(x) for x in (5, 2, "0.7", "0.1")]
    with mp.workdps(R.DPS):
        for st, extra in (("vae-learnable", {}), ("vae-fixed", dict(sigma=[0.5, 0.2, 0.9]))):
            L1 = R.optimal_loss(st, ev, 3, beta=0.9, eta_enc=1.4, eta_dec=0.8, **extra)
            L2 = R.optimal_loss(st, [e * a ** 2 for e in ev], 3, beta=0.9, eta_enc=1.4, eta_dec=0.8 * a,
                                **extra)
            close(L2, a ** 2 * L1)
        for st, extra in (("mhvae-sigma2-learnable", {}), ("mhvae-sigma2-fixed", dict(sigma2=0.8))):
            h = dict(beta1=1.3, beta2=0.7, sigma1=0.6, eta_enc=1.5, eta_dec=0.9, **extra)
            L1 = R.optimal_loss(st, ev, 3, 2, **h)
            hs = {k: (mpf(v) * a if k in ("sigma1", "sigma2", "eta_enc", "eta_dec") else v) for k, v in h.items()}
            L2 = R.optimal_loss(st, [e * a ** 2 for e in ev], 3, 2, **hs)
            close(L2, a ** 2 * (L1 - 2 * mpf(0.7) * mpf(0.9) ** 2 * mp.log(a ** 2)))


# ----------------------------------------------------------------------------- worked numbers in THEORY
def test_worked_numbers_from_theory():
    f = R.as_float
    # T§6 CVAE sigma example
    np.testing.assert_allclose(f(R.optimum("cvae-learnable", [6, 3, 1.5, .5], 4, beta=2)["sigma"]),
                               [0.577, 0.816, 1, 1], atol=6e-4)
    np.testing.assert_allclose(f(R.optimum("cvae-learnable", [6, 3, 1.5, .5], 4, beta=.3)["sigma"]),
                               [0.224, 0.316, 0.447, 0.775], atol=6e-4)
    # D§7 E3 (Thm 5): optimum (0.1732, 0.3169), matrix optimum L = 1.01605538
    o = R.optimum("mhvae-sigma2-fixed", [0.451 ** 2], 1, 1, sigma1=.227, sigma2=.443, eta_dec=.469,
                  beta1=2.668, beta2=1.76)
    np.testing.assert_allclose([f(o["lambda"])[0], f(o["omega"])[0]], [0.1732, 0.3169], atol=1e-4)
    assert abs(f(o["loss"]) - 1.01605538) < 1e-8
    # D§5 E1 (Thm 3)
    o = R.optimum("mhvae-sigma2-learnable", [4, 1], 4, 4, sigma1=1, beta1=2, beta2=1)
    np.testing.assert_allclose(f(o["omega"]), [1.8708, .7071, .7071, .7071], atol=1e-4)
    np.testing.assert_allclose(np.sort(f(o["sigma2"]) ** 2), [.125, .5, .5, .5], atol=1e-12)
    # D§7 E2 (Thm 3, d2 < d1) and E4 (Thm 5)
    o = R.optimum("mhvae-sigma2-learnable", [9, 4, 1.44, 1.21], 4, 2, sigma1=1, beta1=1.5)
    np.testing.assert_allclose(f(o["lambda"]), [2.83, 1.73, 0, 0], atol=5e-3)
    np.testing.assert_allclose(f(o["omega"]), [2.89, 1.83], atol=5e-3)
    o = R.optimum("mhvae-sigma2-fixed", [4, 1], 2, 2, sigma1=.5, sigma2=1, beta1=.5)
    assert abs(f(o["lambda"])[0] - 1.079) < 1e-3 and f(o["omega"])[0] == 0
    # D§6 sweep, theta = (3.1, 2.05, 1.13, 0.41, 0), s1 = .57: "z2 collapsed / rank V1"
    ev = np.array([3.1, 2.05, 1.13, 0.41, 0]) ** 2
    sweep = dict(beta2={.05: (0, 4), .19: (0, 3), .45: (2, 3), .71: (3, 3), 1.71: (4, 3), 2.66: (5, 3)},
                 eta_dec={.2: (0, 4), .58: (2, 3), 1.0: (3, 3), 1.31: (4, 3), 1.71: (5, 3)},
                 beta1={.05: (5, 4), .45: (4, 4), .71: (4, 3), 1.1: (3, 3), 2.66: (2, 3), 4.1: (0, 3)},
                 eta_enc={.2: (3, 3), 1.0: (3, 3), 5.0: (3, 3)})
    for name, pts in sweep.items():
        for v, expect in pts.items():
            o = R.optimum("mhvae-sigma2-learnable", ev, 5, 5, sigma1=.57, **{name: v})
            assert (o["collapsed_z2"], o["rank_V1"]) == expect, (name, v)
    o = R.optimum("mhvae-sigma2-learnable", ev, 5, 5, sigma1=.57, beta2=.61)
    np.testing.assert_allclose(f(o["omega"]), [2.12332, 1.27607, 0.26478, 0, 0], atol=1e-5)
    o = R.optimum("mhvae-sigma2-learnable", ev, 5, 5, sigma1=.57, beta1=6.3)
    np.testing.assert_allclose(f(o["omega"]), [1.72, 1.10, 0.51, 0.41, 0.41], atol=6e-3)
    assert o["rank_V1"] == 3 and o["collapsed_z2"] == 0


# ----------------------------------------------------------------------------- float64 brute force
def _unpack(p, shapes):
    """Split the last axis of p (batch axes in front) into matrices of the given shapes."""
    out, k = [], 0
    for sh in shapes:
        n = int(np.prod(sh))
        out.append(p[..., k:k + n].reshape(p.shape[:-1] + sh))
        k += n
    return out


def _T(X):
    return np.swapaxes(X, -1, -2)


def _tr(X):
    return np.trace(X, axis1=-2, axis2=-1)


def _sq(X):                     # sum of squares without conjugation (complex-step safe)
    return np.sum(X * X, axis=(-2, -1))


def _brute_min(f, n, seed, starts=3):
    """min over all parameters of f (float64), L-BFGS-B with exact complex-step gradients
    (all n directional evaluations batched in one call of f)."""
    steps = 1e-30j * np.eye(n)

    def fg(p):
        return float(np.real(f(p))), f(p[None, :] + steps).imag / 1e-30
    rng, best = np.random.default_rng(seed), np.inf
    with threadpool_limits(1):
        for _ in range(starts):
            res = minimize(fg, rng.normal(scale=0.7, size=n), jac=True, method="L-BFGS-B",
                           options=dict(maxiter=20000, maxfun=40000, ftol=1e-16, gtol=1e-12))
            res = minimize(fg, res.x, jac=True, method="BFGS", options=dict(gtol=1e-11, maxiter=2000))
            best = min(best, res.fun)
    return best


def _np_vae(A, d1, beta, ee, ed, lv_fixed=None):
    D0 = A.shape[0]
    shapes = [(d1, D0), (D0, d1)] + ([(d1,)] if lv_fixed is None else [])

    def f(p):
        W, U, *rest = _unpack(p, shapes)
        lv = rest[0] if lv_fixed is None else lv_fixed
        Rm, S = U @ W - np.eye(D0), np.exp(lv)
        return (_tr(Rm @ A @ _T(Rm)) + np.sum(U * U * S[..., None, :], axis=(-2, -1))
                + beta * (ed / ee) ** 2 * (_tr(W @ A @ _T(W)) + S.sum(-1)) - beta * ed ** 2 * lv.sum(-1))
    return f, sum(int(np.prod(s)) for s in shapes)


def _np_mhvae(A, d1, d2, b1, b2, s1, ee, ed, s2=None):
    D0 = A.shape[0]
    shapes = [(d1, D0), (D0, d1), (d2, d1), (d1, d2)] + ([(d2,)] if s2 is None else [])
    c2 = (ed / ee) ** 2

    def f(p):
        W1, U1, W2, U2, *rest = _unpack(p, shapes)
        lv2 = rest[0] if s2 is None else np.full(d2, np.log(s2 ** 2))
        Rm, Az, Pm, S2 = U1 @ W1 - np.eye(D0), W1 @ A @ _T(W1), U2 @ W2 - np.eye(d1), np.exp(lv2)
        return (_tr(Rm @ A @ _T(Rm)) + s1 ** 2 * _sq(U1)
                + b1 * (_tr(Pm @ Az @ _T(Pm)) + s1 ** 2 * _sq(Pm)
                        + np.sum(U2 * U2 * S2[..., None, :], axis=(-2, -1)))
                + b2 * (c2 * (_tr(W2 @ Az @ _T(W2)) + s1 ** 2 * _sq(W2) + S2.sum(-1))
                        - ed ** 2 * lv2.sum(-1)))
    return f, sum(int(np.prod(s)) for s in shapes)


def _np_cvae(M, Dx, Dy, d1, beta, ee, ed):
    shapes = [(d1, Dx), (d1, Dy), (Dy, d1), (Dy, Dx), (d1,)]

    def f(p):
        W1, W2, U1, U2, lv = _unpack(p, shapes)
        F = np.concatenate([U1 @ W1 + U2, U1 @ W2 - np.eye(Dy)], axis=-1)
        G, S = np.concatenate([W1, W2], axis=-1), np.exp(lv)
        return (_tr(F @ M @ _T(F)) + np.sum(U1 * U1 * S[..., None, :], axis=(-2, -1))
                + beta * (ed / ee) ** 2 * (_tr(G @ M @ _T(G)) + S.sum(-1)) - beta * ed ** 2 * lv.sum(-1))
    return f, sum(int(np.prod(s)) for s in shapes)


BRUTE = [
    ("vae-learnable", [3.0, 1.2, 0.3], 3, P(beta=0.8, eta_enc=1.3, eta_dec=0.7)),
    ("vae-fixed", [3.0, 1.2, 0.3], 3, P(sigma=[0.5, 0.9, 0.3], beta=0.8, eta_enc=1.3, eta_dec=0.7)),
    ("mhvae-sigma2-learnable", [3.0, 1.2, 0.3], (3, 2), P(beta1=1.2, beta2=0.9, sigma1=0.6, eta_enc=1.3, eta_dec=0.8)),
    ("mhvae-sigma2-learnable", [2.0, 0.5], (2, 2), P(beta1=3.0, beta2=0.6, sigma1=0.9)),
    ("mhvae-sigma2-fixed", [3.0, 0.8], (2, 2), P(beta1=1.2, beta2=0.9, sigma1=0.6, sigma2=0.7, eta_dec=0.8)),
    ("mhvae-sigma2-fixed", [2.5, 0.6], (2, 3), P(beta1=2.0, beta2=0.5, sigma1=0.7, sigma2=1.1)),
]


@pytest.mark.parametrize("setting,eigs,dims,hyper", BRUTE)
def test_brute_force_float64_minimum(setting, eigs, dims, hyper):
    A = np.diag(eigs)
    g = {"beta": 1, "beta1": 1, "beta2": 1, "eta_enc": 1, "eta_dec": 1, **hyper}
    if setting.startswith("vae"):
        lv = None if "sigma" not in hyper else np.log(np.asarray(hyper["sigma"]) ** 2)
        f, n = _np_vae(A, dims, g["beta"], g["eta_enc"], g["eta_dec"], lv)
        ref = R.optimal_loss(setting, eigs, dims, **hyper)
    else:
        d1, d2 = dims
        f, n = _np_mhvae(A, d1, d2, g["beta1"], g["beta2"], g["sigma1"], g["eta_enc"], g["eta_dec"],
                         hyper.get("sigma2"))
        ref = R.optimal_loss(setting, eigs, d1, d2, **hyper)
    best = _brute_min(f, n, seed=n)
    ref = float(ref)
    assert best >= ref - 1e-10 * max(1, abs(ref))
    assert abs(best - ref) <= 1e-8 * max(1, abs(ref)), (best, ref)


def test_brute_force_cvae_from_data():
    """Data -> residual spectrum (mpmath) -> Thm 2 loss, vs float64 minimisation on the data moment."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 2)) @ np.array([[1.0, 0.3], [0.0, 0.6]]) + 0.5
    y = x @ np.array([[0.8, -0.4], [0.2, 0.5]]).T + rng.normal(size=(200, 2)) * [1.1, 0.4] + [1.0, -2.0]
    e = R.residual_eigenvalues(x, y)
    M = R.as_float(R.moment_matrix(np.hstack([x, y])))
    h = P(beta=0.7, eta_enc=1.2, eta_dec=0.6)
    f, n = _np_cvae(M, 2, 2, 2, beta=0.7, ee=1.2, ed=0.6)
    ref = float(R.optimal_loss("cvae-learnable", e, 2, **h))
    best = _brute_min(f, n, seed=3)
    assert best >= ref - 1e-10 * max(1, abs(ref))
    assert abs(best - ref) <= 1e-8 * max(1, abs(ref)), (best, ref)


# ----------------------------------------------------------------------------- data spectra
def test_eigenvalues_match_numpy():
    rng = np.random.default_rng(11)
    X = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6) * 3
    for center in (True, False):
        ref = R.as_float(R.eigenvalues(X, center=center))
        Xc = X - X.mean(0) if center else X
        npv = np.sort(np.linalg.eigvalsh(Xc.T @ Xc / len(X)))[::-1]
        assert np.all(np.diff(ref) <= 0)
        np.testing.assert_allclose(ref, npv, rtol=0, atol=1e-12 * npv[0])
    np.testing.assert_allclose(R.as_float(R.moment_matrix(X)), np.cov(X.T, bias=True), rtol=1e-13, atol=1e-13)


def test_residual_eigenvalues():
    rng = np.random.default_rng(12)
    x = rng.normal(size=(250, 3)) + [1, -2, 0.5]
    y = x @ rng.normal(size=(3, 4)) + rng.normal(size=(250, 4)) @ rng.normal(size=(4, 4)) + 4.0
    ref = R.as_float(R.residual_eigenvalues(x, y))
    xc, yc = x - x.mean(0), y - y.mean(0)
    r = yc - xc @ np.linalg.lstsq(xc, yc, rcond=None)[0]
    npv = np.sort(np.linalg.eigvalsh(r.T @ r / len(x)))[::-1]
    np.testing.assert_allclose(ref, npv, rtol=0, atol=1e-12 * npv[0])
    # residual form agrees with B - C A^+ C^T at high precision (well-conditioned x)
    with mp.workdps(R.DPS):
        Mm = R.moment_matrix(np.hstack([x, y]))
        Am, Cm, Bm = Mm[0:3, 0:3], Mm[3:7, 0:3], Mm[3:7, 3:7]
        Es = Bm - Cm * mp.inverse(Am) * Cm.T
        Er = R.residual_moment(x, y)
        assert mp.mnorm(Es - Er, 1) < mpf("1e-40") * mp.mnorm(Bm, 1)
    # an exactly dependent column (stored in float64) is dropped by the rank decision
    xd = np.hstack([x, (x[:, 0] + 2 * x[:, 1])[:, None]])
    np.testing.assert_allclose(R.as_float(R.residual_eigenvalues(xd, y)), ref, rtol=1e-12)
    # y linear in x: residual at float64-rounding level only
    yl = x @ rng.normal(size=(3, 2))
    e = R.residual_eigenvalues(x, yl)
    assert max(e) < 1e-28 * float(np.trace(np.cov(yl.T, bias=True)))
    # uncentred variant = regression without intercept
    r0 = y - x @ np.linalg.lstsq(x, y, rcond=None)[0]
    np.testing.assert_allclose(R.as_float(R.residual_eigenvalues(x, y, center=False)),
                               np.sort(np.linalg.eigvalsh(r0.T @ r0 / len(x)))[::-1], rtol=1e-11)


# ----------------------------------------------------------------------------- helpers / inputs
def test_conversions_exact_and_input_types():
    rng = np.random.default_rng(13)
    a = rng.normal(size=(3, 4)) * 10.0 ** rng.integers(-300, 300, size=(3, 4))
    assert np.array_equal(R.as_float(R.to_mpf_array(a)), a)
    assert np.array_equal(R.as_float(R.to_mpf_array(a[0])), a[0])
    with mp.workdps(R.DPS):
        assert R.to_mpf_array(0.1) != mpf("0.1") and R.to_mpf_array("0.1") == mpf("0.1")
    L = [R.optimal_loss("vae-fixed", ev, 2, sigma=s, beta=b)
         for ev, s, b in (([2, 0.5], [0.375, 0.5], 0.25), (["2", "0.5"], ["0.375", "0.5"], "0.25"),
                          (np.array([2.0, 0.5]), np.array([0.375, 0.5]), np.float64(0.25)))]
    assert R.rel_err(L[0], L[2]) == 0 and R.rel_err(L[0], L[1]) == 0
    with pytest.raises(TypeError):
        R.optimal_loss("vae-learnable", [1], 1, betta=2)
    with pytest.raises(ValueError):
        R.optimal_loss("vae-fixed", [1, 2], 2, sigma=[1, 2, 3])
    with open(R.__file__) as fh:
        src = fh.read()
    assert not any(line.lstrip().startswith(("import vaetheory", "from vaetheory"))
                   for line in src.splitlines())

"""Issue 11: training losses as written, what users log, target rates, given spectra.

Expected values are derived by hand from docs/theory.md §10 (typed into each row below), computed
independently from the constructed optimal matrices and the data (never from vaetheory.logged), or
taken from the exact checker's numerical optimum.
"""

import json

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings as hsettings, strategies as st

import vaetheory as vt
from vaetheory import conventions as vc
from vaetheory import settings as vs
from vaetheory.cli import main
from vaetheory.errors import ParameterError
from vaetheory.rates import target_rate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def as_json(*args):
    r = run(*args, "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(400, 6)) * np.array([3.0, 2.5, 2.0, 1.2, 0.7, 0.3]) + 1.5
    d = tmp_path_factory.mktemp("conv")
    np.save(d / "x.npy", X)
    return X, d / "x.npy"


# ------------------------------------------------------------------------------------------
# the README table: every row, through the library and the command line
#
# (id, model, loss fields, CLI flags, the (beta, eta) typed directly: hand-derived from §10)

ROWS = [
    ("mse-sum", "vae", dict(recon="sse", kl_weight=3.0), ["--recon", "sse", "--kl-weight", "3"],
     dict(beta=1.5, eta_dec=1.0)),                       # beta eta_dec^2 = w / 2
    ("half-sse", "vae", dict(recon="sse", recon_weight=0.5, kl_weight=3.0),
     ["--recon", "sse", "--recon-weight", "0.5", "--kl-weight", "3"], dict(beta=3.0, eta_dec=1.0)),
    ("mse-mean", "vae", dict(recon="mse", kl_weight=2.5e-4, output_dim=12288),
     ["--recon", "mse", "--kl-weight", "2.5e-4", "--output-dim", "12288"],
     dict(beta=1.536, eta_dec=1.0)),                     # D w / 2 = 12288 * 2.5e-4 / 2
    ("mse-mean-data-dim", "vae", dict(recon="mse", kl_weight=0.5, output_dim=6),
     ["--recon", "mse", "--kl-weight", "0.5"], dict(beta=1.5, eta_dec=1.0)),   # D = 6 columns
    ("sigma-vae", "vae", dict(recon="gaussian", decoder_std=0.5, kl_weight=2.0),
     ["--recon", "gaussian", "--decoder-std", "0.5", "--kl-weight", "2"],
     dict(beta=2.0, eta_dec=0.5)),                       # beta = w, eta_dec = S
    ("kl-mean", "vae", dict(recon="sse", kl="mean", kl_weight=4.0),
     ["--recon", "sse", "--kl", "mean", "--kl-weight", "4"], dict(beta=0.5, eta_dec=1.0)),  # w/(2d)
    ("prior-std", "vae", dict(recon="sse", kl_weight=3.0, prior_std=2.0),
     ["--recon", "sse", "--kl-weight", "3", "--eta-enc", "2"],
     dict(beta=1.5, eta_dec=1.0, eta_enc=2.0)),
    ("cvae", "cvae", dict(recon="mse", kl_weight=1.0, output_dim=2),
     ["--recon", "mse", "--kl-weight", "1", "--y-cols", "4:6"], dict(beta=1.0, eta_dec=1.0)),
    ("hierarchical", "mhvae",
     dict(recon="gaussian", decoder_std=0.5, kl1_weight=1.5, kl_weight=2.0, z1_prior_std=0.5),
     ["--recon", "gaussian", "--decoder-std", "0.5", "--kl1-weight", "1.5", "--kl-weight", "2",
      "--z1-prior-std", "0.5", "--sigma1", "0.4"],
     dict(beta1=1.5, beta2=2.0, eta_dec=0.5)),           # rho = 2: beta_t = w_t / (2 rho s_z^2)
    ("authors-script", "mhvae", dict(recon="sse", kl1_weight=0.5, kl_weight=1.0, z1_prior_std=0.5),
     ["--recon", "sse", "--kl1-weight", "0.5", "--kl-weight", "1", "--z1-prior-std", "0.5",
      "--sigma1", "0.4"],
     dict(beta1=1.0, beta2=2.0, eta_dec=0.5)),           # w_t = 2 beta_t eta_dec^2
]


def _spectrum(model, X, with_basis=False):
    if model == "cvae":
        return vt.empirical_residual_spectrum(X[:, :4], X[:, 4:], with_basis=with_basis)
    return vt.empirical_spectrum(X, with_basis=with_basis)


def _same(a, b):
    assert a.model == b.model and a.variance == b.variance
    for z in a.latent_dims:
        assert np.array_equal(np.asarray(a.collapsed_min[z]), np.asarray(b.collapsed_min[z]))
    np.testing.assert_allclose(a.optimal_loss, b.optimal_loss, rtol=1e-12)
    for k, v in a.singular_values.items():
        np.testing.assert_allclose(v, b.singular_values[k], rtol=1e-10, atol=1e-12)
    for k, v in a.critical.items():
        np.testing.assert_allclose(v, b.critical[k], rtol=1e-10)


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_readme_row_library(row, data):
    _, model, fields, _, direct = row
    X, _ = data
    spec = _spectrum(model, X)
    extra = {"sigma1": 0.4} if model == "mhvae" else {}
    conv = vc.equivalent(vc.TrainingLoss(**fields), model, latent_dim=4)
    for k, v in direct.items():
        assert conv.hyper[k] == pytest.approx(v, rel=1e-14), k
    setting = vs.resolve(model)
    fn = setting.theory_function
    _same(fn(spec, 4, **conv.hyper, **extra), fn(spec, 4, **direct, **extra))


@pytest.mark.parametrize("row", ROWS, ids=[r[0] for r in ROWS])
def test_readme_row_cli(row, data):
    _, model, _, flags, direct = row
    _, path = data
    base = ["predict", path, "--model", model, "-d", "4"]
    if model == "cvae" and "--y-cols" not in flags:
        base += ["--y-cols", "4:6"]
    got = as_json(*base, *flags)
    typed = [a for k, v in direct.items() for a in (f"--{k.replace('_', '-')}", repr(v))]
    want = as_json(*base, *[f for f in flags if f in ("--y-cols", "4:6", "--sigma1", "0.4")],
                   *typed)
    assert got["settings"]["loss"]["hyper"]["eta_dec"] == pytest.approx(direct["eta_dec"])
    for p, q in zip(got["points"], want["points"]):
        assert p["collapsed"] == q["collapsed"]
        assert p["optimal_loss"] == pytest.approx(q["optimal_loss"], rel=1e-12)
        for k in p["singular_values"]:
            np.testing.assert_allclose(p["singular_values"][k], q["singular_values"][k],
                                       rtol=1e-10, atol=1e-12)
        assert p["logged"]["rate"] == pytest.approx(q["logged"]["rate"], rel=1e-10)


def test_cli_prints_the_conversion(data):
    _, path = data
    r = run("predict", path, "-d", "3", "--recon", "mse", "--kl-weight", "2.5e-4",
            "--output-dim", "12288")
    assert r.exit_code == 0, r.stderr
    assert "beta eta_dec^2 = 1.536" in r.stdout
    assert "vae/learnable depends on beta eta_dec^2 only" in r.stdout


@pytest.mark.parametrize("name", sorted(vs.SETTINGS))
def test_depends_on_holds(name, data):
    """Every closed form depends on beta and eta_dec only through beta eta_dec^2 (docs §10)."""
    setting = vs.SETTINGS[name]
    if not setting.covered:
        return
    X, _ = data
    spec = _spectrum(setting.model, X)
    weight = [t.weight for t in setting.kl_terms if t.against == "eta_enc"][0]
    extra = {"sigma": 0.6} if "sigma" in setting.names else {}
    if setting.model == "mhvae":
        extra = {"sigma1": 0.4, **({"sigma2": 0.7} if "sigma2" in setting.names else {}),
                 "beta1": 1.3}
    a = setting.solve(spec, 4, 3 if setting.has_second_latent else None,
                      **{weight: 2.0, "eta_dec": 1.0, "eta_enc": 1.0}, **extra)
    b = setting.solve(spec, 4, 3 if setting.has_second_latent else None,
                      **{weight: 2.0 / 0.25, "eta_dec": 0.5, "eta_enc": 1.0}, **extra)
    if "eta_enc" not in " ".join(setting.depends_on):   # learnable: eta_enc only rescales
        c = setting.solve(spec, 4, 3 if setting.has_second_latent else None,
                          **{weight: 2.0, "eta_dec": 1.0, "eta_enc": 3.0}, **extra)
        for k in a.ranks:
            assert np.array_equal(a.ranks[k], c.ranks[k])
    for z in a.latent_dims:
        assert np.array_equal(a.collapsed_min[z], b.collapsed_min[z])
        assert np.array_equal(a.collapsed_max[z], b.collapsed_max[z])
    for k in a.ranks:
        assert np.array_equal(a.ranks[k], b.ranks[k])


@pytest.mark.parametrize("recon", ["bce", "bernoulli", "categorical", "cross-entropy", "l1"])
def test_non_gaussian_decoders_refused(recon, data):
    _, path = data
    r = run("predict", path, "-d", "2", "--recon", recon)
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --recon") and "not covered" in lines[0]
    with pytest.raises(ParameterError, match="not covered"):
        vc.TrainingLoss(recon=recon)


@pytest.mark.parametrize("args, words", [
    (["--recon", "sse", "--beta", "2"], "give one or the other"),
    (["--kl-weight", "2"], "give --recon too"),
    (["--recon", "gaussian"], "--decoder-std"),
    (["--recon", "sse", "--kl1-weight", "2"], "hierarchical"),
])
def test_convention_usage_errors(args, words, data):
    _, path = data
    r = run("predict", path, "-d", "2", *args)
    assert r.exit_code == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_kl_mean_needs_one_latent_dim(data):
    _, path = data
    r = run("predict", path, "-d", "2,3", "--recon", "sse", "--kl", "mean")
    assert r.exit_code == 2 and "one --latent-dim" in r.stderr


# ------------------------------------------------------------------------------------------
# what users log: against the constructed matrices and the data, independently

def _hand_logged(sol, X, center=True):
    """Per latent (latent-dim order of the matrices): KL, Var_x E[z|x], std, from the matrices
    and the samples; and the permutation mode -> dim."""
    m = sol.matrices()
    spec = sol.spectrum
    A = spec.matrix
    Xc = X - X.mean(axis=0) if center else X
    hyper = sol.at().hyper
    ee = hyper["eta_enc"]
    if sol.model == "mhvae":
        W1, U1, W2, U2 = m["W1"], m["U1"], m["W2"], m["U2"]
        S1, S2 = np.diag(np.exp(m["log_var1"])), np.diag(np.exp(m["log_var2"]))
        ed = hyper["eta_dec"]
        Q = W1 @ A @ W1.T + S1
        I = np.eye(W1.shape[0])
        R = (I - U2 @ W2) @ Q @ (I - U2 @ W2).T + U2 @ S2 @ U2.T
        cons = 0.5 * (np.diag(R) / ed ** 2 - 1 - np.log(np.diag(S1) / ed ** 2))
        M2 = W2 @ Q @ W2.T
        v2 = np.diag(S2) / ee ** 2
        kl2 = 0.5 * (v2 + np.diag(M2) / ee ** 2 - 1 - np.log(v2))
        mu1, mu2 = Xc @ W1.T, Xc @ (W2 @ W1).T
        dist = (np.trace((U1 @ W1 - np.eye(A.shape[0])) @ A @ (U1 @ W1 - np.eye(A.shape[0])).T)
                + np.trace(U1 @ S1 @ U1.T))
        return ({"z1": (cons, mu1.var(axis=0), np.sqrt(np.diag(S1))),
                 "z2": (kl2, mu2.var(axis=0), np.sqrt(np.diag(S2)))}, dist)
    if sol.model == "cvae":
        k = spec.x_dim
        W = np.hstack([m["W1"], m["W2"]])
        U = m["U1"]
        mu = Xc @ W.T
        M = W @ A @ W.T
        F = np.hstack([U @ m["W1"] + m["U2"], U @ m["W2"] - np.eye(U.shape[0])])
        dist = np.trace(F @ A @ F.T)
    else:
        W, U = m["W"], m["U"]
        mu = Xc @ W.T
        M = W @ A @ W.T
        F = U @ W - np.eye(A.shape[0])
        dist = np.trace(F @ A @ F.T)
        k = None
    s2 = np.exp(m["log_var"])
    dist += np.trace(U @ np.diag(s2) @ U.T)
    v = s2 / ee ** 2
    kl = 0.5 * (v + np.diag(M) / ee ** 2 - 1 - np.log(v))
    del k
    return {"z": (kl, mu.var(axis=0), np.sqrt(s2))}, dist


def _mode_order(sol, latent, values):
    """Matrices are in latent-dim order; a fixed-variance VAE's mode i sits in the dim with the
    i-th smallest sigma (docs §2)."""
    if latent == "z" and not sol.setting.latent("z").learned:
        perm = np.argsort(sol.at().hyper["sigma"], kind="stable")
        return values[perm]
    return values


CASES = [
    ("vae", "learnable", dict(beta=3.0), True),
    ("vae", "learnable", dict(beta=3.0), False),
    ("vae", "fixed", dict(beta=2.0, sigma=[0.3, 0.5, 0.8, 1.4]), True),
    ("vae", "fixed", dict(beta=2.0, sigma=[0.3, 0.5, 0.8, 1.4]), False),
    ("cvae", "learnable", dict(beta=0.4), True),
    ("cvae", "fixed", dict(beta=0.4, sigma=[0.2, 0.4, 0.6, 1.1]), True),
    ("mhvae", "sigma2-learnable", dict(beta1=1.2, beta2=0.6, sigma1=0.4), True),
    ("mhvae", "sigma2-fixed", dict(beta1=1.2, beta2=0.3, sigma1=0.4, sigma2=0.7), True),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[0]}-{c[1]}-{'c' if c[3] else 'nc'}" for c in CASES])
def test_logged_equals_matrices_and_data(case, data):
    model, variance, hyper, center = case
    X, _ = data
    if model == "cvae":
        spec = vt.empirical_residual_spectrum(X[:, :4], X[:, 4:], with_basis=True, center=center)
        Xs = X
    else:
        spec = vt.empirical_spectrum(X, with_basis=True, center=center)
        Xs = X
    d2 = 3 if model == "mhvae" else None
    sol = vs.get(model, variance).solve(spec, 4, d2, **hyper)
    hand, dist = _hand_logged(sol, Xs, center)
    log = sol.at().logged(0.01)
    total = 0.0
    for latent, (kl, var, std) in hand.items():
        lg = log.latents[latent]
        kl, var, std = (_mode_order(sol, latent, a) for a in (kl, var, std))
        np.testing.assert_allclose(lg.kl, kl, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(lg.mean_variance, var, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(lg.posterior_std, std, rtol=1e-12)
        np.testing.assert_allclose(sol.at().kl[latent], kl, rtol=1e-8, atol=1e-10)
        if lg.kl_range is None:   # the counts of each rule, from the independent values
            assert lg.counts["kl"] == int(np.sum(kl > 0.01))
            assert lg.counts["au"] == int(np.sum(var > 0.01))
        total += kl.sum()
    assert log.rate == pytest.approx(total, rel=1e-9)
    assert log.distortion == pytest.approx(dist, rel=1e-9)


def test_logged_counts_disagree_near_a_threshold():
    """An active mode just above its threshold: the theory counts it, KL_j > delta does not."""
    spec = vt.spectrum_from_eigenvalues([4.0, 2.0, 1.0])
    sol = vt.vae_learnable_sigma(spec, 3, beta=1.9)      # mode 2: KL = log(sqrt(2/1.9)) ~ 0.026
    c = sol.at().logged(0.05).latents["z"].counts
    assert c["theory"] == 2 and c["kl"] == 1
    assert sol.at().logged(0.01).latents["z"].counts["kl"] == 2
    kl = sol.at().logged().latents["z"].kl
    assert kl[1] == pytest.approx(0.5 * np.log(2.0 / 1.9), rel=1e-12)   # docs §11


def test_logged_rotation_ranges_hold_for_rotated_optima():
    """Isotropic fixed std: any rotation of the latent space is an optimum; its per-dim values
    stay in the reported ranges and its counts in [min, max]; the totals do not move."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 5)) * np.array([3.0, 2.0, 1.5, 0.6, 0.2])
    spec = vt.empirical_spectrum(X, with_basis=True)
    sol = vt.vae_fixed_sigma(spec, 4, 0.5, beta=6.0)
    lg = sol.at().logged(0.05).latents["z"]
    assert lg.kl_range is not None
    m = sol.matrices()
    A = spec.matrix
    ee = 1.0
    for _ in range(20):
        Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
        W = Q @ m["W"]
        msq = np.diag(W @ A @ W.T)
        v = 0.25 / ee ** 2
        kl = 0.5 * (v - 1 - np.log(v)) + 0.5 * msq
        assert np.all(kl >= lg.kl_range[0].min() - 1e-12) and np.all(kl <= lg.kl_range[1].max() + 1e-12)
        lo, hi = lg.counts["kl"] if isinstance(lg.counts["kl"], list) else [lg.counts["kl"]] * 2
        assert lo <= int(np.sum(kl > 0.05)) <= hi
        lo, hi = lg.counts["au"] if isinstance(lg.counts["au"], list) else [lg.counts["au"]] * 2
        assert lo <= int(np.sum(msq > 0.05)) <= hi
        assert kl.sum() == pytest.approx(sol.at().rate, rel=1e-10)


def test_count_range_extremes_are_attained():
    """The [min, max] of count_range is reached by an explicit rotation (Schur-Horn)."""
    from vaetheory.logged import count_range

    e = np.array([3.0, 0.02, 0.0, 0.0])
    lo, hi = count_range(e, 0.5)
    assert (lo, hi) == (1, 4)          # mean of all four = 0.755 > 0.5
    H = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
    assert int(np.sum(np.diag(H @ np.diag(e) @ H.T) > 0.5)) == 4
    assert int(np.sum(e > 0.5)) == 1


@pytest.mark.parametrize("model, variance, hyper", [
    ("vae", "learnable", dict(beta=3.0)),
    ("vae", "fixed", dict(beta=2.0, sigma=[0.3, 0.5, 1.4])),
    ("mhvae", "sigma2-learnable", dict(beta1=1.2, beta2=0.6, sigma1=0.4)),
])
def test_logged_equals_the_checker_optimum(model, variance, hyper, data):
    from vaetheory.checker import check

    X, _ = data
    spec = vt.empirical_spectrum(X)
    sol = vs.get(model, variance).solve(spec, 3, 3 if model == "mhvae" else None, **hyper)
    res = check(sol, restarts=2, seed=1)
    assert res.verdict == "CONFIRMED"
    num = res.numerical
    latent = "z2" if model == "mhvae" else "z"
    np.testing.assert_allclose(np.sort(num.kl[latent]), np.sort(sol.at().kl[latent]),
                               rtol=1e-5, atol=1e-7)
    assert np.sum(num.kl[latent]) == pytest.approx(np.sum(sol.at().kl[latent]), rel=1e-6)


# ------------------------------------------------------------------------------------------
# target rates: plugged back into predict

RATE_CASES = [
    ("vae", [], "beta", 3.0), ("vae", [], "eta_dec", 0.7), ("vae", ["--sigma", "0.3,0.5,0.9,1.2"],
                                                            "beta", 4.0),
    ("cvae", ["--y-cols", "4:6"], "beta", 0.8),
    ("mhvae", ["--sigma1", "0.4"], "beta2", 2.0),
    ("mhvae", ["--sigma1", "0.4", "--sigma2", "0.6"], "beta2", 2.5),
    ("mhvae", ["--sigma1", "0.4"], "eta_dec", 1.5),
]


@pytest.mark.parametrize("model, extra, param, R", RATE_CASES)
def test_rate_plugged_back_into_predict(model, extra, param, R, data):
    _, path = data
    doc = as_json("thresholds", path, "--model", model, "-d", "4", *extra, "--rate", R,
                  "--param", param)
    ans = doc["points"][0]["rate"]
    assert ans["possible"]
    back = as_json("predict", path, "--model", model, "-d", "4", *extra,
                   f"--{param.replace('_', '-')}", repr(ans["value"]))
    latent = ans["latent"]
    rate = back["points"][0]["logged"]["latents"][latent]["total_kl"]
    assert abs(rate - R) <= 1e-9 * R
    assert ans["active"] == back["points"][0]["ranks"][vs.get(doc["model"], doc["variance"])
                                                        .latent(latent).encoder]


@hsettings(max_examples=40)
@given(ev=st.lists(st.floats(0.01, 100.0), min_size=1, max_size=8),
       R=st.floats(0.01, 40.0), d=st.integers(1, 8))
def test_reverse_water_filling(ev, R, d):
    """Learnable VAE: kappa = exp(2 (sum_{i<=k} log theta_i - R) / k) on the interval with k active
    modes (docs §11), computed here by hand."""
    spec = vt.spectrum_from_eigenvalues(ev)
    theta2 = np.sort(np.asarray(ev))[::-1][:d]
    sol = vt.vae_learnable_sigma(spec, d, beta=1.0)
    ans = target_rate(sol.at(), R)
    for k in range(1, theta2.size + 1):
        kappa = np.exp(2 * (0.5 * np.sum(np.log(theta2[:k])) - R) / k)
        below = theta2[k] if k < theta2.size else 0.0
        if below <= kappa < theta2[k - 1]:
            break
    assert ans.value == pytest.approx(kappa, rel=1e-9)
    assert ans.achieved == pytest.approx(R, rel=1e-9)


def test_rate_floor_of_a_fixed_std():
    spec = vt.spectrum_from_eigenvalues([4.0, 2.0])
    sol = vt.vae_fixed_sigma(spec, 2, 0.5, beta=1.0)
    ans = target_rate(sol.at(), 0.5)
    v = 0.25 - 1
    assert not ans.possible and ans.floor == pytest.approx(2 * 0.5 * (v - np.log1p(v)), rel=1e-12)


def test_rate_refuses_non_monotone_params(data):
    _, path = data
    r = run("thresholds", path, "--model", "mhvae", "-d", "3", "--rate", "1", "--param", "beta1")
    assert r.exit_code == 2 and "monotone" in r.stderr


# ------------------------------------------------------------------------------------------
# a spectrum given directly

def test_eigenvalues_given(tmp_path):
    ev = "5.117,3.741,3.253,2.842,2.567"
    r = run("predict", "--eigenvalues", ev, "-d", "5", "--beta", "3")
    assert r.exit_code == 0 and "the loss needs the trace" in r.stdout and "only these modes" in r.stdout
    doc = as_json("predict", "--eigenvalues", ev, "-d", "5", "--beta", "3")
    assert doc["data"]["given"] and doc["points"][0]["collapsed"]["z"] == 2
    f = tmp_path / "ev.txt"
    f.write_text("\n".join(ev.split(",")) + "\n")
    doc2 = as_json("predict", "--eigenvalues", f, "-d", "5", "--beta", "3")
    assert doc2["points"][0]["optimal_loss"] == doc["points"][0]["optimal_loss"]
    assert doc["trace"] == pytest.approx(sum(map(float, ev.split(","))))


@pytest.mark.parametrize("args, words", [
    (["-d", "2"], "give DATA"),
    (["--eigenvalues", "1,2", "-d", "2", "--cols", "0:1"], "--cols"),
    (["--eigenvalues", "1,2", "-d", "2", "--recon", "mse"], "--output-dim"),
])
def test_eigenvalue_usage_errors(args, words):
    r = run("predict", *args)
    assert r.exit_code == 2 and words in r.stderr


def test_eigenvalues_and_data_together(data):
    _, path = data
    r = run("predict", path, "--eigenvalues", "1,2", "-d", "2")
    assert r.exit_code == 2 and "not both" in r.stderr

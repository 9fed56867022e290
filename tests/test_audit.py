"""vaetheory.audit and the assertions of vaetheory.testing on trained parameters.

Expected numbers never come from the code under test: the loss of a parameter set is checked
against a literal per-sample evaluation of the model's expected loss written here from
docs/theory.md §1 and §1.5 (biases included) and against the mpmath reference (tests/_reference.py);
"at the optimum" is checked on the optimum constructed by the closed form and on the exact
checker's numerical optimum; failures are provoked by perturbations, a wrong beta, missing biases
and transposed weights whose effect is known by construction.
"""

import numpy as np
import pytest
from hypothesis import given, settings as hsettings

import _reference as ref
import vaetheory as vt
from vaetheory import audit as va
from vaetheory import settings as vs
from vaetheory import testing
from vaetheory.errors import DataError, NotCoveredError, ParameterError, ResourceError, Verdict

COVERED = [s for s in vs.SETTINGS.values() if s.covered]
#: one point per setting: hyperparameters, d1, d2 (latent dims chosen so that some dims collapse)
POINTS = {
    "vae/learnable": (dict(beta=2.0), 3, None),
    "vae/fixed": (dict(beta=2.0, sigma=[0.5, 0.7, 0.7]), 3, None),
    "cvae/learnable": (dict(beta=0.5), 3, None),
    "cvae/fixed": (dict(beta=0.5, sigma=0.6), 3, None),
    "mhvae/sigma2-learnable": (dict(beta1=1.3, beta2=2.0, sigma1=0.6), 3, 2),
    "mhvae/sigma2-fixed": (dict(beta2=1.5, sigma1=0.5, sigma2=0.8), 2, 3),
}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 5)) * np.array([3.0, 2.0, 1.5, 0.7, 0.3]) + np.array([1, -2, 3, 0.5, 1])
    Y = (X[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(300, 4)) * np.array([2, 1, 0.6, 0.2])
         + 0.5)
    return X, Y


def _data_arg(setting, data):
    X, Y = data
    return (X, Y) if setting.spectrum_kind == "residual" else X


def _optimum(name, data, center=True):
    setting = vs.SETTINGS[tuple(name.split("/"))]
    hyper, d1, d2 = POINTS[name]
    return setting, hyper, testing.optimal_parameters(_data_arg(setting, data), setting, d1, d2,
                                                      center=center, **hyper)


# ------------------------------------------------------------------------------------------
# an independent evaluation: the expected loss, sample by sample (docs/theory.md §1, §1.5)


def literal_loss(setting, p, data, h):
    """(1/N) sum_n of the model's loss at sample n, the Gaussian noise integrated in closed form,
    with the biases as they are (missing ones 0): no covariance split, no factored form."""
    X, Y = data
    ee, ed = h["eta_enc"], h["eta_dec"]
    c2 = (ed / ee) ** 2

    def b(name, n):
        return np.asarray(p.get(name, np.zeros(n)), dtype=float)

    if setting.model == "vae":
        W, U, lv = p["W"], p["U"], p["log_var"]
        S = np.diag(np.exp(lv))
        a, bb = b("encoder_bias", W.shape[0]), b("decoder_bias", W.shape[1])
        m = X @ W.T + a
        r = X - m @ U.T - bb
        per = (np.sum(r * r, 1) + np.trace(U @ S @ U.T)
               + h["beta"] * c2 * (np.sum(m * m, 1) + np.trace(S)))
        return per.mean() - h["beta"] * ed ** 2 * np.sum(lv)
    if setting.model == "cvae":
        W1, W2, U1, U2, lv = (p[k] for k in ("W1", "W2", "U1", "U2", "log_var"))
        S = np.diag(np.exp(lv))
        m = X @ W1.T + Y @ W2.T + b("encoder_bias", W1.shape[0])
        r = Y - m @ U1.T - X @ U2.T - b("decoder_bias", Y.shape[1])
        per = (np.sum(r * r, 1) + np.trace(U1 @ S @ U1.T)
               + h["beta"] * c2 * (np.sum(m * m, 1) + np.trace(S)))
        return per.mean() - h["beta"] * ed ** 2 * np.sum(lv)
    W1, U1, W2, U2 = (p[k] for k in ("W1", "U1", "W2", "U2"))
    S1, S2 = np.diag(np.exp(p["log_var1"])), np.diag(np.exp(p["log_var2"]))
    d1, d2 = W1.shape[0], W2.shape[0]
    m1 = X @ W1.T + b("encoder_bias", d1)
    r1 = X - m1 @ U1.T - b("decoder_bias", X.shape[1])
    P = np.eye(d1) - U2 @ W2
    r2 = m1 @ P.T - U2 @ b("encoder2_bias", d2) - b("decoder2_bias", d1)
    m2 = m1 @ W2.T + b("encoder2_bias", d2)
    per = (np.sum(r1 * r1, 1) + np.trace(U1 @ S1 @ U1.T)
           + h["beta1"] * (np.sum(r2 * r2, 1) + np.trace(P @ S1 @ P.T) + np.trace(U2 @ S2 @ U2.T))
           + h["beta2"] * c2 * (np.sum(m2 * m2, 1) + np.trace(W2 @ S1 @ W2.T) + np.trace(S2)))
    return per.mean() - h["beta2"] * ed ** 2 * np.sum(p["log_var2"])


def _full(setting, p, hyper, d1, d2):
    """Add the fixed log-variances the user need not give."""
    h = vs.point_hyper(setting, hyper, d1, d2)
    q = dict(p)
    for role, name in setting.fixed_log_vars.items():
        q.setdefault(role, np.log(np.asarray(h[name], dtype=float) ** 2))
    return q, h


# ------------------------------------------------------------------------------------------
# at the optimum: the constructed one and the checker's


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("name", list(POINTS))
def test_constructed_optimum_of_every_setting_passes(data, name, center):
    setting, hyper, p = _optimum(name, data, center)
    res = testing.assert_at_optimum(p, _data_arg(setting, data), setting, center=center, **hyper)
    assert res.verdict == Verdict.AT_OPTIMUM and res.verdict.exit_code == 0
    assert abs(res.relative_gap) < 1e-12
    assert res.gap_biases <= 1e-12 * res.loss_scale
    testing.assert_collapse_matches(p, _data_arg(setting, data), setting, center=center, **hyper)
    testing.assert_collapse_matches(p, _data_arg(setting, data), setting, center=center,
                                    rule="au", **hyper)
    # the loss audited is the literal expected loss of these parameters (centred: with biases)
    d1, d2 = POINTS[name][1], POINTS[name][2]
    X, Y = data
    q, h = _full(setting, p, hyper, d1, d2)
    # (centred: the biased model on the raw data; not centred: the bias-free one on it)
    assert res.loss == pytest.approx(literal_loss(setting, q, data, h), rel=1e-10)


@pytest.mark.parametrize("name", list(POINTS))
def test_the_loss_and_the_optimum_agree_with_the_mpmath_reference(data, name):
    """A perturbed parameter set: its audited loss equals the reference's matrix loss and the
    optimum the reference's closed form, on the raw second moments (center=False)."""
    setting, hyper, p = _optimum(name, data, center=False)
    rng = np.random.default_rng(1)
    d1, d2 = POINTS[name][1], POINTS[name][2]
    q, h = _full(setting, p, hyper, d1, d2)
    q = {k: v + 0.05 * rng.normal(size=np.shape(v)) if k not in setting.fixed_log_vars else v
         for k, v in q.items()}
    X, Y = data
    res = va.audit(q, _data_arg(setting, data), setting, center=False, **hyper)
    key = name.replace("/", "-")
    if setting.model == "cvae":
        Z = np.concatenate([X, Y], 1)
        M = Z.T @ Z / len(Z)
        want = ref.cvae_loss(M, X.shape[1], q["W1"], q["W2"], q["U1"], q["U2"], q["log_var"],
                             beta=h["beta"], eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])
        ev = ref.residual_eigenvalues(X, Y, center=False)
    else:
        A = X.T @ X / len(X)
        ev = ref.eigenvalues(X, center=False)
        if setting.model == "vae":
            want = ref.vae_loss(A, q["W"], q["U"], q["log_var"], beta=h["beta"],
                                eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])
        else:
            want = ref.mhvae_loss(A, q["W1"], q["U1"], q["W2"], q["U2"], q["log_var1"],
                                  q["log_var2"], beta1=h["beta1"], beta2=h["beta2"],
                                  eta_enc=h["eta_enc"], eta_dec=h["eta_dec"])
    hyper_ref = {k: (list(v) if isinstance(v, list) else v) for k, v in hyper.items()}
    opt = ref.optimal_loss(key, ev, d1, d2, **hyper_ref)
    assert res.loss == pytest.approx(float(want), rel=1e-10)
    assert res.optimal_loss == pytest.approx(float(opt), rel=1e-10)
    assert res.gap == pytest.approx(float(want) - float(opt), rel=1e-8)
    assert res.verdict != Verdict.AT_OPTIMUM


@pytest.mark.parametrize("name", list(POINTS))
def test_the_exact_checkers_optimum_passes(data, name):
    """The numerical minimiser of the exact loss (vaetheory.checker, not the closed form) is AT
    OPTIMUM too: the audit's verdict agrees with an independent optimiser."""
    from vaetheory.checker import numerical_optimum

    setting, hyper, _ = _optimum(name, data, center=False)
    d1, d2 = POINTS[name][1], POINTS[name][2]
    X, Y = data
    spec = (vt.empirical_residual_spectrum(X, Y, center=False) if setting.model == "cvae"
            else vt.empirical_spectrum(X, center=False, with_basis=True))
    num = numerical_optimum(setting.model, setting.variance, spec, d1, d2, restarts=2, seed=0,
                            **hyper)
    res = testing.assert_at_optimum(num.params, _data_arg(setting, data), setting, center=False,
                                    **hyper)
    assert abs(res.relative_gap) < 1e-8


# ------------------------------------------------------------------------------------------
# and not at it: the documented failure messages


def _torch_names(p):
    return {"encoder.weight": p["W"], "encoder.bias": p["encoder_bias"],
            "decoder.weight": p["U"], "decoder.bias": p["decoder_bias"], "log_var": p["log_var"]}


def test_perturbed_parameters_fail_with_gap_singular_values_and_collapsed_dims(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    q = dict(p)
    q["U"] = p["U"] * 1.2
    with pytest.raises(AssertionError) as err:
        testing.assert_at_optimum(q, data[0], setting, **hyper)
    msg = str(err.value)
    assert msg.startswith("the parameters are not at the optimum of vae/learnable")
    assert "relative loss gap" in msg and "singular values" in msg and "collapsed dims" in msg
    assert "decoder" in msg and "<-- off" in msg
    # the gap is the literal loss difference
    q2, h = _full(setting, q, hyper, 3, None)
    p2, _ = _full(setting, p, hyper, 3, None)
    res = va.audit(q, data[0], setting, **hyper)
    want = literal_loss(setting, q2, data, h) - literal_loss(setting, p2, data, h)
    assert res.gap == pytest.approx(want, rel=1e-8)
    assert res.gap_biases == pytest.approx(0.0, abs=1e-10 * res.loss_scale)
    assert res.singular_values["decoder"]["found"][0] == pytest.approx(
        1.2 * res.singular_values["decoder"]["predicted"][0], rel=1e-10)


@pytest.mark.parametrize("factor", [2.0, 0.5])
def test_a_wrong_beta_fails_and_the_hint_names_the_beta_the_weights_fit(data, factor):
    setting, hyper, p = _optimum("vae/learnable", data)
    beta = hyper["beta"] / factor  # the weights are the optimum at factor x the beta audited
    with pytest.raises(AssertionError) as err:
        testing.assert_at_optimum(_torch_names(p), data[0], setting, beta=beta)
    msg = str(err.value)
    assert f"the weights are at the optimum for beta = {hyper['beta']:.4g}" in msg
    assert ("twice the given value" if factor == 2 else "half the given value") in msg
    assert "factor 1/2" in msg


@pytest.mark.parametrize("name", ["vae/learnable", "cvae/fixed", "mhvae/sigma2-learnable"])
def test_a_missing_bias_on_non_centred_data_is_caught(data, name):
    setting, hyper, p = _optimum(name, data)
    q = {k: v for k, v in p.items() if "bias" not in k}
    with pytest.raises(AssertionError) as err:
        testing.assert_at_optimum(q, _data_arg(setting, data), setting, **hyper)
    assert "have no encoder_bias, decoder_bias" in str(err.value)
    assert "(taken as 0) but the data are not centred" in str(err.value)
    res = va.audit(q, _data_arg(setting, data), setting, **hyper)
    assert res.gap_weights == pytest.approx(0.0, abs=1e-10 * res.loss_scale)
    # what the biases add is the literal loss of the bias-free weights on the non-centred data
    # minus the optimum
    d1, d2 = POINTS[name][1], POINTS[name][2]
    q2, h = _full(setting, q, hyper, d1, d2)
    assert res.gap_biases == pytest.approx(literal_loss(setting, q2, data, h) - res.optimal_loss,
                                           rel=1e-8)
    # a decoder bias alone is not centring
    if setting.model == "vae":
        one = dict(q, decoder_bias=p["decoder_bias"])
        with pytest.raises(AssertionError, match="no encoder_bias .*a decoder bias alone is not "
                                                 "centring"):
            testing.assert_at_optimum(one, data[0], setting, **hyper)
        # the same weights without biases are the bias-free model's optimum only on raw moments
        with pytest.raises(AssertionError):
            testing.assert_at_optimum(q, data[0], setting, center=False, **hyper)


def test_missing_biases_do_not_matter_on_centred_data(data):
    X = data[0] - data[0].mean(0)
    setting, hyper, p = _optimum("vae/learnable", (X, None))
    q = {k: v for k, v in p.items() if "bias" not in k}
    assert testing.assert_at_optimum(q, X, setting, **hyper).passed


def test_transposed_weights_are_named(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    t = _torch_names(p)
    t["encoder.weight"] = p["W"].T
    with pytest.raises(ParameterError, match=r"'encoder\.weight' \(role W\) has shape \(5, 3\), "
                                             r"expected \(3, 5\).*looks transposed"):
        testing.assert_at_optimum(t, data[0], setting, **hyper)
    # the same matrix declared as a kernel (in x out) is read correctly
    assert testing.assert_at_optimum(t, data[0], setting, mapping={"encoder.weight": "W.T"},
                                     **hyper).passed
    # a square matrix stored transposed: only the loss can tell, and the hint says so
    X = data[0]
    sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X, with_basis=True), 5, beta=0.2)
    m = sol.matrices()
    bad = dict(m, U=m["U"].T)
    with pytest.raises(AssertionError) as err:
        testing.assert_at_optimum(bad, X, "vae/learnable", beta=0.2)
    assert "'U' (role U) looks transposed" in str(err.value)


def test_a_loss_below_the_optimum_is_a_refutation(data, monkeypatch):
    setting, hyper, p = _optimum("vae/learnable", data)
    real = vt.Point.optimal_loss.fget
    monkeypatch.setattr(vt.Point, "optimal_loss", property(lambda self: real(self) * 1.01))
    res = va.audit(p, data[0], setting, **hyper)
    assert res.verdict == Verdict.REFUTED and res.verdict.exit_code == 3
    assert "counterexample" in res.hints[0]


def test_near_and_far_follow_the_documented_thresholds(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    for scale, verdict in ((1.0 + 1e-4, Verdict.AT_OPTIMUM), (1.07, Verdict.NEAR),
                           (2.0, Verdict.FAR)):
        q = dict(p, U=p["U"] * scale)
        res = va.audit(q, data[0], setting, **hyper)
        g = res.relative_gap
        want = (Verdict.AT_OPTIMUM if g <= 1e-3 else Verdict.NEAR if g <= 5e-2 else Verdict.FAR)
        assert res.verdict == want == verdict, (scale, g)
    assert Verdict.NEAR.exit_code == 5 and Verdict.FAR.exit_code == 6
    # sv_rtol=None judges on the loss alone; a tighter loss_rtol turns AT OPTIMUM into NEAR
    q = dict(p, U=p["U"] * (1 + 1e-4))
    assert va.audit(q, data[0], setting, loss_rtol=1e-12, **hyper).verdict == Verdict.NEAR
    assert va.audit(q, data[0], setting, sv_rtol=None, **hyper).passed


# ------------------------------------------------------------------------------------------
# reading parameters


class FakeTensor:
    """What a torch tensor offers without torch: detach().cpu().numpy()."""

    def __init__(self, a, bf16=False):
        self.a, self.bf16, self.calls = np.asarray(a), bf16, []

    def detach(self):
        self.calls.append("detach")
        return self

    def cpu(self):
        self.calls.append("cpu")
        return self

    def numpy(self):
        if self.bf16:
            raise TypeError("Got unsupported ScalarType BFloat16")
        return self.a

    def float(self):
        return FakeTensor(self.a)

    def __array__(self, dtype=None, copy=None):  # torch refuses this with requires_grad
        raise RuntimeError("Can't call numpy() on Tensor that requires grad")


class ArrayLike:
    def __init__(self, a):
        self.a = np.asarray(a, dtype=np.float32)

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


class Module:
    def __init__(self, sd):
        self.sd = sd

    def state_dict(self):
        return self.sd


def test_tensors_array_likes_and_modules_are_read_without_their_libraries(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    t = {"encoder.weight": FakeTensor(p["W"]), "encoder.bias": FakeTensor(p["encoder_bias"], True),
         "decoder.weight": ArrayLike(p["U"]), "decoder.bias": p["decoder_bias"].tolist(),
         "log_var": FakeTensor(p["log_var"])}
    res = testing.assert_at_optimum(Module(t), data[0], setting, **hyper, sv_rtol=0.01)
    assert t["encoder.weight"].calls == ["detach", "cpu"]
    assert res.relative_gap < 1e-6  # float32 rounding of decoder.weight
    with pytest.raises(ParameterError, match="parameter 'log_var' is not an array of real numbers"):
        va.as_array(np.array(["a"]), "log_var")
    with pytest.raises(ParameterError, match="not an array of real numbers"):
        va.as_array(np.array([1 + 2j]), "x")


def test_mapping_roles_transforms_and_layouts(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    std = {"enc": p["W"].T, "be": p["encoder_bias"], "dec": p["U"].T, "bd": p["decoder_bias"],
           "sd": np.exp(0.5 * p["log_var"])}
    mapping = {"enc": "W", "be": "encoder_bias", "dec": "U", "bd": "decoder_bias",
               "sd": "std:log_var"}
    res = testing.assert_at_optimum(std, data[0], setting, mapping=mapping, layout="in_out",
                                    **hyper)
    assert [r for r, _, _ in res.mapping] == ["W.T", "encoder_bias", "U.T", "decoder_bias",
                                              "std:log_var"]
    assert not any(g for _, _, g in res.mapping)
    # log_std and var forms; an ignored name; two parameters summing into one bias
    half = p["encoder_bias"] / 2
    q = {"W": p["W"], "U": p["U"], "ls": 0.5 * p["log_var"], "b1": half, "b2": half,
         "decoder_bias": p["decoder_bias"], "step": np.array(7.0)}
    res = testing.assert_at_optimum(q, data[0], setting, mapping={"ls": "log_std:log_var",
                                    "b1": "encoder_bias", "b2": "encoder_bias", "step": None},
                                    **hyper)
    assert res.ignored == ["step"]
    with pytest.raises(ParameterError, match="'Q' is not a parameter of vae/learnable"):
        va.audit(q, data[0], setting, mapping={"ls": "Q"}, **hyper)
    with pytest.raises(ParameterError, match="not among the parameters"):
        va.audit(q, data[0], setting, mapping={"nope": "W"}, **hyper)
    with pytest.raises(ParameterError, match="two parameters are mapped to role W"):
        va.audit({**q, "W2": p["W"]}, data[0], setting, mapping={"W2": "W", "ls": "log_std:log_var"},
                 **hyper)
    with pytest.raises(ParameterError, match=r"no parameter for role U of vae/learnable.*--map"):
        va.audit({"W": p["W"], "log_var": p["log_var"]}, data[0], setting, **hyper)
    with pytest.raises(ParameterError, match="layout must be"):
        va.audit(p, data[0], setting, layout="rows", **hyper)


def test_the_cvae_encoder_on_a_concatenation_and_the_latent_dims_from_shapes(data):
    setting, hyper, p = _optimum("cvae/learnable", data)
    t = {"enc.weight": np.concatenate([p["W1"], p["W2"]], 1), "enc.bias": p["encoder_bias"],
         "dec.weight": np.concatenate([p["U1"], p["U2"]], 1), "dec.bias": p["decoder_bias"],
         "logvar": p["log_var"]}
    res = testing.assert_at_optimum(t, data, setting, **hyper)
    assert sorted(r for r, _, _ in res.mapping) == sorted(["[W1,W2]", "encoder_bias", "[U1,U2]",
                                                           "decoder_bias", "log_var"])
    assert res.latent_dims == {"z": 3}
    with pytest.raises(ParameterError, match="expected .* for latent dim 4"):
        va.audit(t, data, setting, latent_dim=4, **hyper)


def test_fixed_log_variances_come_from_the_hyperparameters(data):
    setting, hyper, p = _optimum("vae/fixed", data)
    q = {k: v for k, v in p.items() if k != "log_var"}
    assert testing.assert_at_optimum(q, data[0], setting, **hyper).passed
    assert testing.assert_at_optimum(p, data[0], setting, **hyper).passed  # equal: accepted
    with pytest.raises(ParameterError, match="fixed log-variance of vae/fixed"):
        va.audit(dict(p, log_var=p["log_var"] + 0.1), data[0], setting, **hyper)
    with pytest.raises(ParameterError, match="sigma is required"):
        va.audit(q, data[0], setting, beta=2.0)


def test_bad_inputs_are_one_line_errors(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    with pytest.raises(DataError, match=r"'U' \(role U\) has 1 non-finite"):
        va.audit(dict(p, U=np.where(np.arange(p["U"].size).reshape(p["U"].shape) == 0, np.nan,
                                    p["U"])), data[0], setting, **hyper)
    with pytest.raises(ParameterError, match="center=False audits the bias-free model"):
        va.audit(p, data[0], setting, center=False, **hyper)
    with pytest.raises(NotCoveredError, match="no closed form"):
        va.audit(p, data[0], "mhvae/both-learnable")
    with pytest.raises(ParameterError, match="needs paired data"):
        va.audit(p, data[0], "cvae/learnable")
    with pytest.raises(ParameterError, match="rule must be one of"):
        va.audit(p, data[0], setting, rule="zero", **hyper)
    with pytest.raises(ParameterError, match="beta must be positive"):
        va.audit(p, data[0], setting, beta=-1.0)
    with pytest.raises(ParameterError, match="not used by vae/learnable"):
        va.audit(p, data[0], setting, beta1=1.0)


def test_data_as_selection_spectrum_or_moments(data):
    setting, hyper, p = _optimum("vae/learnable", data)
    X = data[0]
    for d in (vt.Selection(X), vt.empirical_spectrum(X), vt.empirical_moments(X)):
        assert va.audit(p, d, setting, **hyper).passed
    with pytest.raises(ParameterError, match="center=False but the Selection"):
        va.audit(p, vt.Selection(X), setting, center=False, **hyper)
    with pytest.raises(ParameterError, match="second-moment matrix"):
        va.audit(p, vt.spectrum_from_eigenvalues([1.0, 2.0], kind="residual"), "cvae/learnable")


def test_guessed_roles_for_common_layouts():
    cases = {
        "vae/learnable": {"encoder.weight": "W", "module.enc.bias": "encoder_bias",
                          "fc_mu.weight": "W", "decoder.weight": "U", "dec.bias": "decoder_bias",
                          "logvar": "log_var", "log_sigma": "log_std:log_var",
                          "model.sigma": "std:log_var", "params/encoder/kernel": "W.T",
                          "W_enc": "W", "b_dec": "decoder_bias", "head": None},
        "cvae/fixed": {"encoder.weight": "[W1,W2]", "enc_x.weight": "W1", "enc_y.weight": "W2",
                       "enc_y.bias": "encoder_bias", "decoder.weight": "[U1,U2]",
                       "skip.weight": "U2", "dec_z.weight": "U1"},
        "mhvae/sigma2-fixed": {"encoder1.weight": "W1", "enc2.bias": "encoder2_bias",
                               "decoder2.weight": "U2", "dec1.bias": "decoder_bias",
                               "logvar2": "log_var2", "z1_logvar": "log_var1"},
    }
    for name, names in cases.items():
        for n, role in names.items():
            assert va.guess_role(n, name) == role, (name, n)


# ------------------------------------------------------------------------------------------
# collapse under a rule


def test_rotation_ranges_contain_every_rotation_and_reach_their_ends():
    """_group_range against brute force: the diagonal of R diag(values) R^T over random rotations
    R never leaves [lo, hi], and the constructions of the proof reach both ends."""
    rng = np.random.default_rng(0)
    for _ in range(40):
        m = int(rng.integers(1, 6))
        vals = np.sort(rng.exponential(size=m) * (rng.random(m) < 0.7))[::-1]
        delta = float(rng.choice([1e-6, 0.05, 0.3, 1.0]))
        lo, hi = va._group_range(vals, (m,), delta)
        seen = set()
        for _ in range(200):
            Q, _ = np.linalg.qr(rng.normal(size=(m, m)))
            d = np.einsum("ij,j,ij->i", Q, vals, Q)
            seen.add(int(np.sum(d <= delta)))
        assert min(seen) >= lo and max(seen) <= hi, (vals, delta, lo, hi, seen)
        # the ends: spread the top n_max evenly (fewest collapsed), keep the top n_min and
        # spread the rest (most collapsed) -- both are diagonals of rotations (Schur-Horn)
        n_max, n_min = m - lo, m - hi
        if n_max:
            spread = np.r_[np.full(n_max, vals[:n_max].sum() / n_max), vals[n_max:]]
            assert np.sum(spread > delta) >= n_max
        rest = vals[n_min:].sum() / max(m - n_min, 1)
        assert rest <= delta * (1 + 1e-12) or n_min == m
    assert va._group_range([1.0, 0.0, 0.0], (3,), 1e-6) == (0, 2)  # the theory's [0, m - k]
    assert va._group_range([0.0, 0.0], (2,), 1e-6) == (2, 2)


def test_collapse_rules_count_what_they_say(data):
    X = data[0]
    spec = vt.empirical_spectrum(X, with_basis=True)
    beta = float(spec.eigenvalues[2]) * 1.05  # modes 3..5 collapse: posterior = prior
    sol = vt.vae_learnable_sigma(spec, 4, beta=beta)
    p = sol.matrices()
    res = va.audit(p, X, "vae/learnable", beta=beta)
    for rule in ("kl", "au", "exact"):
        c = res.collapse_under(rule)["z"]
        assert len(c.found) == 2 and c.predicted == (2, 2) and c.matches
    kl = res.per_dim["z"]["kl"]
    np.testing.assert_allclose(np.sort(kl)[::-1], np.sort(sol.at().kl["z"])[::-1], atol=1e-12)
    # a dim made weak by hand: KL below delta counts as collapsed under "kl", not under "exact"
    q = dict(p)
    j = int(np.argmax(kl))
    q["W"] = p["W"].copy()
    q["W"][j] *= 1e-3
    q["U"] = p["U"].copy()
    q["U"][:, j] *= 1e-3
    q["log_var"] = p["log_var"].copy()
    q["log_var"][j] = 0.0
    with pytest.raises(AssertionError, match=r"collapse under rule kl .*z: 3 collapsed, predicted 2"):
        testing.assert_collapse_matches(q, X, "vae/learnable", beta=beta)


# ------------------------------------------------------------------------------------------
# weights files


def test_weights_files(tmp_path, data, monkeypatch):
    setting, hyper, p = _optimum("vae/learnable", data)
    np.savez(tmp_path / "w.npz", **_torch_names(p))
    got = va.load_weights(tmp_path / "w.npz")
    assert set(got) == set(_torch_names(p))
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in _torch_names(p).items()},
              str(tmp_path / "w.safetensors"))
    assert va.audit(va.load_weights(tmp_path / "w.safetensors"), data[0], setting, **hyper).passed
    for bad, match in (("missing.npz", "no such file"), ("w.pt", "torch checkpoint"),
                       ("w.h5", "unsupported weights format")):
        if bad != "missing.npz":
            (tmp_path / bad).write_bytes(b"x")
        with pytest.raises(DataError, match=match):
            va.load_weights(tmp_path / bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read .* as .npz weights"):
        va.load_weights(tmp_path / "junk.npz")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match="cannot read .* as .safetensors weights"):
        va.load_weights(tmp_path / "junk.safetensors")
    import sys

    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)  # the extra not installed
    with pytest.raises(ResourceError, match=r'pip install "vaetheory\[audit\]"'):
        va.load_weights(tmp_path / "w.safetensors")


# ------------------------------------------------------------------------------------------
# hypothesis: every setting, the constructed optimum passes and a perturbation does not


@hsettings(max_examples=60, deadline=None)
@given(testing.problems(center=None))
def test_every_drawn_problem_passes_at_its_optimum_and_fails_when_perturbed(problem):
    p = problem.optimal_parameters()
    res = testing.assert_at_optimum(p, problem.data, problem.setting, center=problem.center,
                                    **problem.dims, **problem.hyper)
    assert abs(res.relative_gap) < 1e-9
    testing.assert_collapse_matches(p, problem.data, problem.setting, center=problem.center,
                                    **problem.hyper)
    # doubling every decoder raises the loss, strictly unless every latent is fully collapsed
    decoders = [r for r in problem.setting.parameters if r.startswith("U")]
    q = dict(p, **{r: 2.0 * p[r] for r in decoders})
    bumped = va.audit(q, problem.data, problem.setting, center=problem.center, diagnose=False,
                      **problem.hyper)
    assert bumped.gap >= -1e-12 * bumped.loss_scale
    if any(np.max(v["predicted"]) > 1e-3 * v["scale"] for m, v in res.singular_values.items()
           if m.startswith("decoder")):
        assert bumped.gap > 0


#: how each role scales when the data (and the hyperparameters in data units) scale by s:
#: exponents of s (z and z2 carry the prior's units, z1 the data's; docs/theory.md §9.11)
UNITS = {"vae": {"W": -1, "U": 1, "encoder_bias": 0, "decoder_bias": 1},
         "cvae": {"W1": -1, "W2": -1, "U1": 1, "U2": 0, "encoder_bias": 0, "decoder_bias": 1},
         "mhvae": {"W1": 0, "U1": 0, "W2": -1, "U2": 1, "encoder_bias": 1, "decoder_bias": 1}}


@pytest.mark.parametrize("name", ["vae/learnable", "cvae/fixed", "mhvae/sigma2-learnable"])
@pytest.mark.parametrize("k", [-30, 30])
def test_the_audit_is_scale_equivariant(data, name, k):
    """Data x 2^k, eta_dec (and sigma1) x 2^k, the weights in their units: the loss scales by
    4^k and the relative gap, the verdict and the collapse stay the same (to a few ulps)."""
    setting, hyper, p = _optimum(name, data)
    rng = np.random.default_rng(3)
    q = {r: v if r in setting.fixed_log_vars else v * (1 + 0.02 * rng.normal(size=np.shape(v)))
         for r, v in p.items()}
    base = va.audit(q, _data_arg(setting, data), setting, **hyper)
    s = 2.0 ** k
    units = UNITS[setting.model]
    q2 = {r: v * s ** units[r] if r in units else v for r, v in q.items()}
    if "log_var1" in q2:
        q2["log_var1"] = q2["log_var1"] + 2 * k * np.log(2.0)
    h2 = dict(hyper, eta_dec=hyper.get("eta_dec", 1.0) * s)
    if "sigma1" in h2:
        h2["sigma1"] = h2["sigma1"] * s
    scaled = va.audit(q2, tuple(d * s for d in data) if setting.model == "cvae" else data[0] * s,
                      setting, **h2)
    assert scaled.loss == pytest.approx(base.loss * 4.0 ** k, rel=1e-12)
    assert scaled.relative_gap == pytest.approx(base.relative_gap, rel=1e-9)
    assert scaled.verdict == base.verdict
    assert {z: c.found for z, c in scaled.collapse.items()} == \
        {z: c.found for z, c in base.collapse.items()}


# ------------------------------------------------------------------------------------------
# a learned decoder variance (docs/theory.md §12): the loss in nats, u given or profiled

LEARNED = {
    "vae/learnable": (dict(beta=2.0), 3),
    "vae/fixed": (dict(beta=2.0, sigma=[0.5, 0.7, 0.7]), 3),
    "cvae/learnable": (dict(beta=0.5), 3),
    "cvae/fixed": (dict(beta=0.5, sigma=0.6), 3),
}


def _learned(name, data, center=True):
    model, variance = name.split("/")
    setting = vs.get(model, variance, "learned")
    hyper, d1 = LEARNED[name]
    p = testing.optimal_parameters(_data_arg(setting, data), setting, d1, center=center, **hyper)
    return setting, hyper, p


def literal_nats(setting, p, data, h, u=None):
    """The negative beta-ELBO per sample in nats, written from docs/theory.md §12.1 sample by
    sample (the Gaussian noise integrated in closed form, missing biases 0): the mean over n of
    ``||t_n - U m_n - b||^2 / (2u) + tr(U S U^T) / (2u) + (n_out/2) log(2 pi u)
    + beta KL(N(m_n, S) || N(0, eta_enc^2 I))``, t = x (VAE) or y (CVAE). ``u`` None: the
    weights' ``exp(log_u)``, or without it the u minimising this formula, found here by its own
    stationarity (the mean squared error per output plus the decoder's share of the noise)."""
    X, Y = data
    ee = h["eta_enc"]
    lv = np.asarray(p["log_var"], dtype=float)
    S = np.diag(np.exp(lv))

    def b(name, n):
        return np.asarray(p.get(name, np.zeros(n)), dtype=float)

    if setting.model == "vae":
        W, U = p["W"], p["U"]
        m = X @ W.T + b("encoder_bias", W.shape[0])
        r = X - m @ U.T - b("decoder_bias", X.shape[1])
    else:
        W1, W2, U, U2 = p["W1"], p["W2"], p["U1"], p["U2"]
        m = X @ W1.T + Y @ W2.T + b("encoder_bias", W1.shape[0])
        r = Y - m @ U.T - X @ U2.T - b("decoder_bias", Y.shape[1])
    n_out = r.shape[1]
    sq = np.sum(r * r, 1) + np.trace(U @ S @ U.T)          # E||t - U z - b||^2 given t
    if u is None:
        u = float(np.exp(np.ravel(p["log_u"])[0])) if "log_u" in p else sq.mean() / n_out
    var = np.exp(lv)
    kl = 0.5 * (np.sum(var / ee ** 2) + np.sum(m * m, 1) / ee ** 2 - len(lv)
                - np.sum(np.log(var / ee ** 2)))
    per = sq / (2 * u) + 0.5 * n_out * np.log(2 * np.pi * u) + h["beta"] * kl
    return per.mean(), u


@pytest.mark.parametrize("center", [True, False])
@pytest.mark.parametrize("name", list(LEARNED))
def test_constructed_learned_decoder_optimum_passes_given_and_profiled(data, name, center):
    setting, hyper, p = _learned(name, data, center)
    assert "log_u" in p and np.ndim(p["log_u"]) == 0   # Point.matrices carries u
    arg = _data_arg(setting, data)
    given = testing.assert_at_optimum(p, arg, setting, center=center, **hyper)
    noul = {k: v for k, v in p.items() if k != "log_u"}
    prof = testing.assert_at_optimum(noul, arg, setting, center=center, **hyper)
    for res in (given, prof):
        assert res.verdict == Verdict.AT_OPTIMUM and abs(res.relative_gap) < 1e-12
        assert res.to_dict()["loss_units"] == "nats per sample"
    assert not given.decoder_variance["profiled"] and prof.decoder_variance["profiled"]
    # profiled and given agree at the optimum: the same u and the same loss
    assert prof.decoder_variance["u"] == pytest.approx(given.decoder_variance["u"], rel=1e-12)
    assert prof.loss == pytest.approx(given.loss, rel=1e-13, abs=1e-12)
    # the optimum's u is the stationary point of the literal per-sample formula: R / n
    q, h = _full(setting, noul, hyper, LEARNED[name][1], None)
    lit, u_lit = literal_nats(setting, q, data if setting.model == "cvae" else (data[0], None), h)
    assert u_lit == pytest.approx(np.exp(p["log_u"]), rel=1e-10)
    assert lit == pytest.approx(given.optimal_loss, rel=1e-10)
    testing.assert_collapse_matches(p, arg, setting, center=center, **hyper)


@pytest.mark.parametrize("name", list(LEARNED))
def test_learned_decoder_loss_equals_a_literal_per_sample_evaluation(data, name):
    setting, hyper, p = _learned(name, data)
    rng = np.random.default_rng(11)
    q = {r: v if r in setting.fixed_log_vars else v * (1 + 0.1 * rng.normal(size=np.shape(v)))
         for r, v in p.items()}
    q["log_u"] = p["log_u"] + 0.3
    d1 = LEARNED[name][1]
    arg = _data_arg(setting, data)
    pair = data if setting.model == "cvae" else (data[0], None)
    res = va.audit(q, arg, setting, **hyper)
    qq, h = _full(setting, q, hyper, d1, None)
    lit, u = literal_nats(setting, qq, pair, h)
    assert u == pytest.approx(np.exp(q["log_u"]), rel=1e-14)
    assert res.loss == pytest.approx(lit, rel=1e-11)
    assert res.gap > 0 and res.verdict in (Verdict.NEAR, Verdict.FAR)
    # without log_u: the profiled u minimises the literal formula, and the loss is its value
    nou = {k: v for k, v in qq.items() if k != "log_u"}
    res = va.audit({k: v for k, v in q.items() if k != "log_u"}, arg, setting, **hyper)
    lit, u = literal_nats(setting, nou, pair, h)
    assert res.decoder_variance["u"] == pytest.approx(u, rel=1e-11)
    assert res.loss == pytest.approx(lit, rel=1e-11)
    for f in (0.98, 1.02):
        assert literal_nats(setting, nou, pair, h, u=u * f)[0] > lit


@pytest.mark.parametrize("name", ["vae/learnable", "cvae/fixed"])
def test_perturbed_weights_and_a_wrong_u_fail_with_the_documented_messages(data, name):
    setting, hyper, p = _learned(name, data)
    arg = _data_arg(setting, data)
    dec = "U" if setting.model == "vae" else "U1"
    with pytest.raises(AssertionError, match="not at the optimum") as e:
        testing.assert_at_optimum(dict(p, **{dec: 1.3 * p[dec]}), arg, setting, **hyper)
    assert "decoder variance u = eta_dec^2" in str(e.value) and "<-- off" in str(e.value)
    # a wrong u with the optimal maps: the gap is all u's, and the hint says so
    with pytest.raises(AssertionError) as e:
        testing.assert_at_optimum(dict(p, log_u=p["log_u"] + np.log(2.0)), arg, setting, **hyper)
    msg = str(e.value)
    assert "relative error 100.00%" in msg and "<-- off" in msg
    assert "is 2 x the u = R/n" in msg and "best for these very weights" in msg
    # u alone 5 % off costs (n/2)(r - 1 - log r) = 6e-4 n nats, ~1e-3 of the scale n/2 + beta KL
    res = va.audit(dict(p, log_u=p["log_u"] + np.log(1.05)), arg, setting, **hyper)
    assert res.verdict in (Verdict.NEAR, Verdict.AT_OPTIMUM)
    r = 1 / 1.05
    n = data[0].shape[1] if setting.model == "vae" else data[1].shape[1]
    assert res.gap == pytest.approx(0.5 * n * (r - 1 - np.log(r)), rel=1e-8)


@pytest.mark.parametrize("name", list(LEARNED))
@pytest.mark.parametrize("k", [-30, 30])
def test_learned_decoder_verdict_and_relative_gap_are_scale_invariant(data, name, k):
    """Data x 2^k and the weights in their units (log u + 2k log 2): every nats value shifts by
    n k log 2, so the gap, the relative gap and the verdict are unchanged (docs/theory.md §7(f))."""
    setting, hyper, p = _learned(name, data)
    rng = np.random.default_rng(3)
    q = {r: v if r in setting.fixed_log_vars or r == "log_u"
         else v * (1 + 0.02 * rng.normal(size=np.shape(v))) for r, v in p.items()}
    q["log_u"] = p["log_u"] + 0.05
    s = 2.0 ** k
    units = UNITS[setting.model]
    q2 = {r: v * s ** units[r] if r in units else v for r, v in q.items()}
    q2["log_u"] = q["log_u"] + 2 * k * np.log(2.0)
    arg = _data_arg(setting, data)
    arg2 = tuple(d * s for d in data) if setting.model == "cvae" else data[0] * s
    n = data[0].shape[1] if setting.model == "vae" else data[1].shape[1]
    for drop in (False, True):     # u given, and u profiled
        a = {r: v for r, v in q.items() if not (drop and r == "log_u")}
        b = {r: v for r, v in q2.items() if not (drop and r == "log_u")}
        base, scaled = va.audit(a, arg, setting, **hyper), va.audit(b, arg2, setting, **hyper)
        assert scaled.verdict == base.verdict
        assert scaled.relative_gap == pytest.approx(base.relative_gap, rel=1e-9)
        assert scaled.gap == pytest.approx(base.gap, rel=1e-8, abs=1e-12)
        assert scaled.loss - base.loss == pytest.approx(n * k * np.log(2.0), rel=1e-10)
        assert scaled.decoder_variance["u"] == pytest.approx(base.decoder_variance["u"] * s * s,
                                                             rel=1e-10)


def test_an_unbounded_learned_decoder_loss_is_one_answer_not_a_number(data):
    """latent dim >= rank and D > beta x rank (docs §12.2): no minimum -- NO OPTIMUM (exit 7),
    the reason and where the trained u should be heading, never a gap."""
    X = data[0]
    X3 = np.c_[X[:, :3], X[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])]   # rank 3 of 5
    setting = vs.get("vae", "learnable", "learned")
    point = testing.optimum(X3, setting, 4, beta=1.0)
    assert point.learned["unbounded"] and point.optimal_loss == -np.inf
    m = point.matrices()
    assert "log_u" not in m                      # no optimal u: it goes to 0
    q = dict(m, log_var=np.maximum(m["log_var"], -12.0), log_u=np.array([-8.0]))
    res = va.audit(q, X3, setting, beta=1.0)
    assert res.verdict == Verdict.NO_OPTIMUM and res.verdict.exit_code == 7
    assert res.relative_gap == np.inf and res.optimal_loss == -np.inf and np.isfinite(res.loss)
    assert "latent dim 4 >= rank 3" in res.decoder_variance["reason"]
    assert len(res.hints) == 1 and "should drive log u down" in res.hints[0]
    assert "a clip or floor on the log-variance" in res.hints[0]
    doc = res.to_dict()
    assert doc["verdict"] == "NO OPTIMUM" and doc["decoder_variance"]["unbounded"] is True
    with pytest.raises(AssertionError, match="has no optimum here"):
        testing.assert_at_optimum(q, X3, setting, beta=1.0)
    # profiled: the weights' best u is tiny, and it is said to be profiled
    res = va.audit({k: v for k, v in q.items() if k != "log_u"}, X3, setting, beta=1.0)
    assert res.verdict == Verdict.NO_OPTIMUM and "u was profiled" in res.hints[0]
    # at beta x rank >= D there is a minimum again
    assert not testing.optimum(X3, setting, 4, beta=2.0).learned["unbounded"]


def test_the_decoder_variance_role_names_transforms_and_shapes(data):
    setting, hyper, p = _learned("vae/learnable", data)
    X = data[0]
    base = {"encoder.weight": p["W"], "encoder.bias": p["encoder_bias"],
            "decoder.weight": p["U"], "decoder.bias": p["decoder_bias"], "logvar": p["log_var"]}
    lu = float(p["log_u"])
    for name, value, role in [("log_sigma_x", 0.5 * lu, "log_std:log_u"),
                              ("logvar_x", lu, "log_u"), ("dec_logvar", lu, "log_u"),
                              ("decoder.log_var", lu, "log_u"), ("log_scale", 0.5 * lu, "log_std:log_u"),
                              ("log_noise_std", 0.5 * lu, "log_std:log_u"),
                              ("noise_std", np.exp(0.5 * lu), "std:log_u")]:
        assert va.guess_role(name, setting) == role, name
        res = va.audit(dict(base, **{name: np.array([value])}), X, setting, **hyper)
        assert res.verdict == Verdict.AT_OPTIMUM and not res.decoder_variance["profiled"], name
        assert (role, name, True) in res.mapping
    # an explicit mapping with a transform; a per-output vector with equal entries is one u
    res = va.audit(dict(base, s2=np.full(5, np.exp(lu))), X, setting, mapping={"s2": "var:log_u"},
                   **hyper)
    assert res.verdict == Verdict.AT_OPTIMUM
    with pytest.raises(ParameterError, match="per-output decoder variance is outside the theory"):
        va.audit(dict(base, dec_logvar=lu + np.arange(5.0)), X, setting, **hyper)
    # a fixed eta_dec has no such role: the name is not used
    fixed = va.audit(dict(base, dec_logvar=np.array([lu])), X, vs.get("vae", "learnable"),
                     beta=2.0)
    assert "dec_logvar" in fixed.ignored and not fixed.decoder_variance
    with pytest.raises(ParameterError, match="'log_u' is not a parameter"):
        va.audit(base, X, vs.get("vae", "learnable"), mapping={"logvar": "log_u"}, beta=2.0)


def test_hierarchical_learned_decoder_has_no_closed_form_to_audit(data):
    setting = vs.get("mhvae", "sigma2-learnable", "learned")
    with pytest.raises(NotCoveredError, match="no closed form"):
        va.audit({}, data[0], setting, sigma1=0.5)


@hsettings(max_examples=40, deadline=None)
@given(testing.problems(settings=[s for s in vs.RECORDS if s.learned_decoder and s.covered],
                        center=None))
def test_drawn_learned_decoder_problems_pass_at_their_optimum_given_and_profiled(problem):
    p = problem.optimal_parameters()
    assert "log_u" in p
    kw = dict(center=problem.center, **problem.dims, **problem.hyper)
    given_u = testing.assert_at_optimum(p, problem.data, problem.setting, **kw)
    prof = testing.assert_at_optimum({k: v for k, v in p.items() if k != "log_u"}, problem.data,
                                     problem.setting, **kw)
    assert abs(given_u.relative_gap) < 1e-9 and abs(prof.relative_gap) < 1e-9
    assert prof.decoder_variance["u"] == pytest.approx(given_u.decoder_variance["u"], rel=1e-7)
    # a wrong u raises the loss by (n/2)(r - 1 - log r) > 0 exactly
    off = va.audit(dict(p, log_u=p["log_u"] + 0.4), problem.data, problem.setting,
                   diagnose=False, **kw)
    assert off.gap > 0 and off.verdict != Verdict.AT_OPTIMUM


@hsettings(max_examples=25, deadline=None)
@given(testing.problems(settings=[vs.get("vae", "learnable", "learned")], unbounded=True,
                        dim=(2, 5)))
def test_drawn_unbounded_problems_say_no_optimum(problem):
    point = problem.optimum()
    p = problem.optimal_parameters()
    q = dict(p, log_var=np.maximum(p["log_var"], -30.0))
    q.setdefault("log_u", np.array(-20.0))
    res = va.audit(q, problem.data, problem.setting, center=problem.center, **problem.dims,
                   **problem.hyper)
    assert (res.verdict == Verdict.NO_OPTIMUM) == bool(point.learned["unbounded"])

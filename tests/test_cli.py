"""The command line through Click's test runner and as a real subprocess.

Every file is written under pytest's ``tmp_path``. Expected numbers come from the library called
directly in the test (never hard-coded).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import vaetheory as vt
from vaetheory import cli, io as vio
from vaetheory.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*args, env=None):
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    return result


def ok(*args, **kw):
    r = run(*args, **kw)
    assert r.exit_code == 0, (r.exit_code, r.stdout, r.stderr, r.exception)
    return r


def as_json(*args):
    r = ok(*args, "--json")
    assert r.stderr == ""
    return json.loads(r.stdout)


def fails(code, *args, match=None):
    r = run(*args)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr)
    err = r.stderr
    assert err.startswith("error: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "Traceback" not in r.stdout
    if match:
        assert match in err, err
    return err


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(7)
    X = rng.normal(size=(300, 6)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5]) + 3.0
    np.save(d / "x.npy", X)
    np.save(d / "x32.npy", X.astype(np.float32))
    np.savetxt(d / "x.csv", X, delimiter=",", header="a,b,c,d,e,f", comments="")
    # CVAE: y depends on the first two columns of x
    Y = X[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(300, 3)) * np.array([2.0, 1.0, 0.3])
    np.save(d / "cx.npy", X)
    np.save(d / "cy.npy", Y)
    np.save(d / "cy_short.npy", Y[:250])
    np.savez(d / "cxy.npz", x=X, y=Y)
    np.savetxt(d / "cxy.csv", np.hstack([X, Y]), delimiter=",")
    # 4x4 images
    imgs = rng.normal(size=(200, 4, 4)) + np.linspace(0, 1, 16).reshape(4, 4)
    np.save(d / "imgs.npy", imgs)
    nan = X.copy()
    nan[5, 2] = np.nan
    nan[9, 4] = np.inf
    np.save(d / "nan.npy", nan)
    np.save(d / "one.npy", X[:1])
    (d / "text.csv").write_text("a,b\n1,2\n3,oops\n")
    (d / "bad.npy").write_bytes(b"not a numpy file")
    return d, X, Y, imgs


# ------------------------------------------------------------------------------------------
# predict: the JSON document equals the library


def test_predict_json_equals_the_library(files):
    d, X, _, _ = files
    doc = as_json("predict", d / "x.npy", "--latent-dim", 4, "--beta", "0.5,3,30",
                  "--eta-dec", "0.5,1")
    sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), 4,
                                 beta=np.array([0.5, 3, 30])[:, None, None],
                                 eta_enc=np.array([1.0])[None, :, None],
                                 eta_dec=np.array([0.5, 1.0])[None, None, :])
    assert doc["model"] == "vae" and doc["variance"] == "learnable"
    assert doc["centered"] is True and doc["n_samples"] == 300
    np.testing.assert_allclose(doc["spectrum"], sol.spectrum.theta, rtol=1e-12)
    assert len(doc["points"]) == 6
    for p, idx in zip(doc["points"], np.ndindex(*sol.grid_shape)):
        assert p["params"]["beta"] == sol.params["beta"][idx]
        assert p["params"]["eta_dec"] == sol.params["eta_dec"][idx]
        assert p["collapsed"]["z"] == int(sol.collapsed()[idx])
        np.testing.assert_allclose(p["singular_values"]["encoder"], sol.singular_values["encoder"][idx])
        np.testing.assert_allclose(p["singular_values"]["decoder"], sol.singular_values["decoder"][idx])
        np.testing.assert_allclose(p["posterior_std"]["z"], sol.posterior_std["z"][idx])
        np.testing.assert_allclose(p["critical"]["beta"], sol.critical["beta"][idx])
        assert p["optimal_loss"] == pytest.approx(float(sol.optimal_loss[idx]), rel=1e-12)


def _check_mode_order(p, model):
    """Per-dim arrays are aligned (mode order): a map's zero singular value and its partner's
    are the same dim, and a learned std equals the prior's exactly where the dim is off."""
    pairs = [("encoder", "decoder", "z")] if model != "mhvae" else [("encoder2", "decoder2", "z2")]
    ee = p["params"]["eta_enc"]
    for enc, dec, latent in pairs:
        off = [v == 0.0 for v in p["singular_values"][dec]]
        assert off == [v == 0.0 for v in p["singular_values"][enc]]
        if latent in p["posterior_std"]:
            std = p["posterior_std"][latent]
            assert all((s == pytest.approx(ee)) == o for s, o in zip(std, off)), (std, off)


def _check_schema(doc):
    assert doc["model"] in ("vae", "cvae", "mhvae")
    assert doc["variance"] in ("learnable", "fixed", "sigma2-learnable", "sigma2-fixed")
    assert isinstance(doc["centered"], bool) and isinstance(doc["n_samples"], int)
    assert all(isinstance(v, float) for v in doc["spectrum"])
    assert doc["spectrum"] == sorted(doc["spectrum"], reverse=True)
    maps = {"vae": {"encoder", "decoder"}, "cvae": {"encoder", "decoder"},
            "mhvae": {"encoder1", "decoder1", "encoder2", "decoder2"}}[doc["model"]]
    latents = {"z1", "z2"} if doc["model"] == "mhvae" else {"z"}
    for p in doc["points"]:
        assert set(p) >= {"params", "singular_values", "posterior_std", "collapsed", "critical",
                          "optimal_loss"}
        d1 = p["params"]["latent_dim"]
        d2 = p["params"].get("latent_dim2", d1)
        assert set(p["singular_values"]) == maps
        for name, vals in p["singular_values"].items():
            assert len(vals) == (d2 if name in ("encoder2", "decoder2") else d1)
        _check_mode_order(p, doc["model"])
        assert set(p["collapsed"]) == latents
        for c in p["collapsed"].values():
            assert isinstance(c, int) or (isinstance(c, list) and len(c) == 2 and c[0] <= c[1])
        for vals in p["critical"].values():
            assert len(vals) == (d2 if doc["model"] == "mhvae" else d1)
            assert all(v is None or isinstance(v, float) for v in vals)
        assert isinstance(p["optimal_loss"], float)
        for key, value in p["params"].items():
            assert isinstance(value, (int, float, list)), key


@pytest.mark.parametrize("args", [
    ["--latent-dim", 4, "--beta", "log:0.1:100:5"],
    ["--latent-dim", "2,4", "--variance", "fixed", "--sigma", 0.5, "--beta", "1,10"],
    ["--latent-dim", 3, "--sigma", "0.2,0.5,1", "--eta-enc", "0.5:2:3"],
    ["--model", "mhvae", "--latent-dim", 3, "--latent-dim2", "2,4", "--beta2", "0.5,5"],
    ["--model", "mhvae", "--latent-dim", 3, "--sigma2", 0.5, "--sigma1", 0.7, "--beta1", "1,2"],
    ["--latent-dim", 8],  # latent dim > data dim
])
def test_json_schema(files, args):
    d = files[0]
    _check_schema(as_json("predict", d / "x.npy", *args))


def test_json_schema_cvae(files):
    d = files[0]
    doc = as_json("predict", d / "cx.npy", "--model", "cvae", "--y", d / "cy.npy", "-d", 4,
                  "--beta", "0.1,1")
    _check_schema(doc)
    assert doc["spectrum_kind"] == "residual" and "eigenvalue" in doc["spectrum_units"]
    fixed = as_json("predict", d / "cx.npy", "--model", "cvae", "--y", d / "cy.npy", "-d", 2,
                    "--sigma", 0.3)
    _check_schema(fixed)
    assert fixed["points"][0]["posterior_std"] == {}
    assert isinstance(fixed["points"][0]["collapsed"]["z"], list)  # isotropic: a range


def test_grid_order_and_ranges(files):
    d = files[0]
    doc = as_json("predict", d / "x.npy", "-d", 2, "--beta", "1:3:3", "--eta-enc", "log:0.1:10:3")
    got = [(p["params"]["beta"], p["params"]["eta_enc"]) for p in doc["points"]]
    assert got == [(b, e) for b in (1.0, 2.0, 3.0) for e in (0.1, 1.0, 10.0)]
    assert doc["settings"]["grid_shape"] == [3, 3, 1]


def test_latent_dim_list_and_per_dim_sigma(files):
    d, X, _, _ = files
    doc = as_json("predict", d / "x.npy", "-d", "1,3", "--beta", "2")
    assert [p["params"]["latent_dim"] for p in doc["points"]] == [1, 3]
    doc = as_json("predict", d / "x.npy", "-d", 3, "--sigma", "1,0.2,0.5", "--beta", "4")
    sol = vt.vae_fixed_sigma(vt.empirical_spectrum(X), 3, [1, 0.2, 0.5], beta=4.0)
    p = doc["points"][0]
    assert p["params"]["sigma"] == [1.0, 0.2, 0.5]
    np.testing.assert_allclose(p["singular_values"]["decoder"], sol.singular_values["decoder"])
    assert p["collapsed"]["z"] == int(sol.collapsed())  # distinct sigmas: determined


def test_mhvae_both_variants_match_the_library(files):
    d, X, _, _ = files
    spec = vt.empirical_spectrum(X)
    doc = as_json("predict", d / "x.npy", "--model", "mhvae", "-d", 3, "--beta2", "0.5,20",
                  "--sigma1", 0.5)
    sol = vt.mhvae_learnable_sigma2(spec, 3, beta1=np.array([1.0])[:, None, None, None],
                                    beta2=np.array([0.5, 20])[None, :, None, None], sigma1=0.5)
    assert doc["variance"] == "sigma2-learnable"
    for p, idx in zip(doc["points"], np.ndindex(*sol.grid_shape)):
        assert p["collapsed"]["z2"] == int(sol.collapsed("z2")[idx])
        assert p["collapsed"]["z1"] == [int(sol.collapsed_min["z1"][idx]),
                                        int(sol.collapsed_max["z1"][idx])]
        np.testing.assert_allclose(p["posterior_std"]["z2"], sol.posterior_std["z2"][idx])
        assert p["optimal_loss"] == pytest.approx(float(sol.optimal_loss[idx]))
    doc = as_json("predict", d / "x.npy", "--model", "mhvae", "-d", 2, "--sigma2", 0.4)
    sol = vt.mhvae_fixed_sigma2(spec, 2, sigma2=0.4)
    assert doc["variance"] == "sigma2-fixed" and doc["points"][0]["posterior_std"] == {}
    assert doc["points"][0]["optimal_loss"] == pytest.approx(float(sol.optimal_loss))


def test_cvae_sources_agree(files):
    d, X, Y, _ = files
    expected = vt.empirical_residual_spectrum(X, Y).eigenvalues
    docs = [
        as_json("predict", d / "cx.npy", "--model", "cvae", "--y", d / "cy.npy", "-d", 2),
        as_json("predict", d / "cxy.npz", "--model", "cvae", "-d", 2),
        as_json("predict", d / "cxy.csv", "--model", "cvae", "--x-cols", "0:6", "-d", 2),
        as_json("predict", d / "cxy.csv", "--model", "cvae", "--y-cols", "6:9", "-d", 2),
        as_json("predict", d / "cxy.csv", "--model", "cvae", "--x-cols", ":6", "--y-cols", "6:",
                "-d", 2),
    ]
    for doc in docs:
        np.testing.assert_allclose(doc["spectrum"], expected, rtol=1e-9, atol=1e-12)
        assert doc["data"]["x_dim"] == 6 and doc["data"]["y_dim"] == 3


def test_cvae_quadrant(files):
    d, _, _, imgs = files
    flat = imgs.reshape(len(imgs), -1)
    xc, yc = vio.quadrant_columns((4, 4), "bottom-left")
    expected = vt.empirical_residual_spectrum(flat[:, xc], flat[:, yc]).eigenvalues
    for extra in (["--image-shape", "4x4"], []):  # square shape inferred
        doc = as_json("predict", d / "imgs.npy", "--model", "cvae", "--quadrant", "bottom-left",
                      "-d", 3, *extra)
        np.testing.assert_allclose(doc["spectrum"], expected, rtol=1e-9, atol=1e-12)
        assert doc["data"]["x_dim"] == 4 and doc["data"]["y_dim"] == 12


def test_center_flag(files):
    d, X, _, _ = files
    doc = as_json("predict", d / "x.npy", "-d", 2, "--no-center")
    assert doc["centered"] is False
    np.testing.assert_allclose(doc["spectrum"], vt.empirical_spectrum(X, center=False).theta)
    assert "not centred" in ok("predict", d / "x.npy", "-d", 2, "--no-center").stdout
    assert "centred (covariances" in ok("predict", d / "x.npy", "-d", 2).stdout


def test_csv_and_cols(files):
    d, X, _, _ = files
    doc = as_json("predict", d / "x.csv", "-d", 2, "--cols", "0:4")
    np.testing.assert_allclose(doc["spectrum"], vt.empirical_spectrum(X[:, :4]).theta, rtol=1e-9)
    doc32 = as_json("predict", d / "x32.npy", "-d", 2)
    assert doc32["n_samples"] == 300


# ------------------------------------------------------------------------------------------
# predict: human output


def test_predict_human_output(files):
    d, X, _, _ = files
    out = ok("predict", d / "x.npy", "-d", 4, "--beta", "0.5,5,40").stdout
    sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), 4, beta=[0.5, 5, 40])
    assert "\x1b[" not in out  # not a terminal: no colour codes
    assert "300 samples x 6 features" in out and "rank of the data: 6 of 6" in out
    assert "Theorem 4" in out
    for b, c in zip((0.5, 5, 40), sol.collapsed().tolist()):
        assert f"beta={b:g}: {c} of 4 latent dims collapse" in out
    body = [ln for ln in out.splitlines() if ln.startswith("│")]
    assert len(body) == 3


def test_predict_detail(files):
    d, X, _, _ = files
    out = ok("predict", d / "x.npy", "-d", 3, "--beta", 2, "--detail").stdout
    sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), 3, beta=2.0)
    assert "detail: beta=2" in out and "std z" in out and "beta*" in out
    from vaetheory.report import fmt
    for v in sol.singular_values["decoder"]:
        assert fmt(v) in out


def test_notes_printed_once(files):
    d = files[0]
    out = ok("predict", d / "x.npy", "-d", "2,3", "--sigma", 0.5).stdout
    assert out.count("rotation of the latent space free") == 1


def test_no_color_env_and_forced_terminal_are_respected(files):
    d = files[0]
    out = ok("predict", d / "x.npy", "-d", 2, env={"NO_COLOR": "1"}).stdout
    assert "\x1b[" not in out


# ------------------------------------------------------------------------------------------
# --matrices


def test_matrices_written_and_never_overwritten(files, tmp_path):
    d, X, _, _ = files
    out = tmp_path / "m.npz"
    ok("predict", d / "x.npy", "-d", 3, "--beta", 2, "--matrices", out)
    with np.load(out) as z:
        assert set(z.files) >= {"W", "U", "log_var", "meta"}
        assert z["W"].shape == (3, 6) and z["U"].shape == (6, 3)
        sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X, with_basis=True), 3, beta=2.0)
        np.testing.assert_allclose(np.linalg.svd(z["U"], compute_uv=False),
                                   sol.singular_values["decoder"], atol=1e-9)
        assert json.loads(str(z["meta"]))["params"]["beta"] == 2.0
    before = out.read_bytes()
    fails(2, "predict", d / "x.npy", "-d", 3, "--beta", 5, "--matrices", out, match="exists")
    assert out.read_bytes() == before
    ok("predict", d / "x.npy", "-d", 3, "--beta", 5, "--matrices", out, "--force")
    assert out.read_bytes() != before
    fails(2, "predict", d / "x.npy", "-d", 3, "--beta", "1,2", "--matrices", tmp_path / "g.npz",
          match="single grid point")
    assert not (tmp_path / "g.npz").exists()
    fails(2, "predict", d / "x.npy", "-d", 3, "--matrices", tmp_path / "m.txt", match=".npz")


def test_matrices_refuses_the_input_file(files, tmp_path):
    d = files[0]
    src = tmp_path / "in.npz"
    shutil.copy(d / "cxy.npz", src)
    before = src.read_bytes()
    fails(2, "predict", src, "--model", "cvae", "-d", 2, "--matrices", src, "--force",
          match="input file")
    assert src.read_bytes() == before


def test_matrices_cvae_and_mhvae(files, tmp_path):
    d = files[0]
    ok("predict", d / "cxy.npz", "--model", "cvae", "-d", 2, "--matrices", tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as z:
        assert {"W1", "W2", "U1", "U2"} <= set(z.files)
    ok("predict", d / "x.npy", "--model", "mhvae", "-d", 2, "--matrices", tmp_path / "h.npz")
    with np.load(tmp_path / "h.npz") as z:
        assert {"W1", "U1", "W2", "U2", "log_var1", "log_var2"} <= set(z.files)


# ------------------------------------------------------------------------------------------
# spectrum


def test_spectrum_command(files):
    d, X, Y, _ = files
    doc = as_json("spectrum", d / "x.npy")
    spec = vt.empirical_spectrum(X)
    np.testing.assert_allclose(doc["spectrum"], spec.theta)
    assert doc["rank"] == 6 and doc["trace"] == pytest.approx(spec.trace)
    assert doc["scale"] == pytest.approx(spec.theta[0]) and doc["n_samples"] == 300
    assert len(as_json("spectrum", d / "x.npy", "--top", 2)["spectrum"]) == 2
    res = as_json("spectrum", d / "cx.npy", "--model", "cvae", "--y", d / "cy.npy")
    np.testing.assert_allclose(res["spectrum"], vt.empirical_residual_spectrum(X, Y).eigenvalues)
    assert res["spectrum_kind"] == "residual"
    out = ok("spectrum", d / "x.npy", "--top", 3).stdout
    assert "theta_i" in out and "3 more (--top 0 shows all)" in out and "rank 6 of 6" in out


# ------------------------------------------------------------------------------------------
# thresholds


def test_thresholds_keep(files):
    d, X, _, _ = files
    spec = vt.empirical_spectrum(X)
    doc = as_json("thresholds", d / "x.npy", "--keep", 4)
    sol = vt.vae_learnable_sigma(spec, 4)
    keep = doc["points"][0]["keep"]
    assert keep["possible"] and keep["value"] == pytest.approx(float(sol.critical["beta"][3]))
    out = ok("thresholds", d / "x.npy", "--keep", 4).stdout
    import re  # the printed bound is rounded down, so "beta < v keeps 4 active" holds at v
    v = float(re.search(r"beta < ([0-9.e+-]+) keeps 4 of 4 latent dims active", out).group(1))
    assert v <= keep["value"] and v == pytest.approx(keep["value"], rel=1e-5)
    # more than the rank: said so, exit 0
    doc = as_json("thresholds", d / "x.npy", "--keep", 7)
    assert doc["points"][0]["keep"]["possible"] is False
    assert "at most 6" in ok("thresholds", d / "x.npy", "--keep", 7).stdout
    # more than the latent dim given
    assert "exceeds the latent dim 3" in ok("thresholds", d / "x.npy", "-d", 3, "--keep", 5).stdout


def test_thresholds_param_and_table(files):
    d, X, _, _ = files
    spec = vt.empirical_spectrum(X)
    doc = as_json("thresholds", d / "x.npy", "-d", 3, "--beta", 2, "--param", "eta_dec",
                  "--keep", 2)
    sol = vt.vae_learnable_sigma(spec, 3, beta=2.0)
    assert doc["points"][0]["keep"]["value"] == pytest.approx(float(sol.critical["eta_dec"][1]))
    np.testing.assert_allclose(doc["points"][0]["critical"]["eta_dec"], sol.critical["eta_dec"])
    out = ok("thresholds", d / "x.npy", "-d", 3, "--sigma", 0.5).stdout
    assert "active if eta_enc >" in out and "active if beta <" in out
    doc = as_json("thresholds", d / "x.npy", "--model", "mhvae", "--keep", 2, "--param", "beta1",
                  "--beta2", 3)
    sol = vt.mhvae_learnable_sigma2(spec, 2, beta2=3.0)
    k = doc["points"][0]["keep"]
    assert k["direction"] == "above" and k["value"] == pytest.approx(float(sol.critical["beta1"][1]))
    fails(2, "thresholds", d / "x.npy", "--keep", 2, "--param", "beta1", match="--param beta1")
    fails(2, "thresholds", d / "x.npy", "--keep", 0, match="--keep")
    fails(2, "thresholds", d / "x.npy", match="--latent-dim is required")


# ------------------------------------------------------------------------------------------
# demo


def test_demo_human():
    out = ok("demo").stdout
    assert "1797 samples x 64 features" in out
    assert "Run it on your own data" in out and "vaetheory predict YOUR_DATA.npy" in out
    assert "latent dims collapse" in out and len([l for l in out.splitlines() if l.startswith("│")]) == 7


@pytest.mark.parametrize("model", ["vae", "cvae", "mhvae"])
def test_demo_json(model):
    doc = as_json("demo", "--model", model)
    _check_schema(doc)
    assert doc["n_samples"] == 1797 and doc["model"] == model
    X, _ = vio.load_digits()
    if model != "cvae":
        np.testing.assert_allclose(doc["spectrum"], vt.empirical_spectrum(X).theta, rtol=1e-9)
    # the sweep crosses thresholds: the outcome is not the same everywhere
    latent = "z2" if model == "mhvae" else "z"
    assert len({json.dumps(p["collapsed"][latent]) for p in doc["points"]}) > 2


# ------------------------------------------------------------------------------------------
# errors: one line, exit 2 (usage) or 1 (data), never a traceback


@pytest.mark.parametrize("args, match", [
    (["predict", "{x}", "-d", 2, "--beta", -1], "--beta must be positive"),
    (["predict", "{x}", "-d", 2, "--eta-dec", "0,1"], "--eta-dec must be positive"),
    (["predict", "{x}", "-d", 2, "--beta", "abc"], "not a number"),
    (["predict", "{x}", "-d", 2, "--beta", "log:-1:1:3"], "needs a, b > 0"),
    (["predict", "{x}", "-d", 0], "--latent-dim must be an integer >= 1"),
    (["predict", "{x}", "-d", "1.5"], "whole numbers"),
    (["predict", "{x}"], "--latent-dim is required"),
    (["predict", "{x}", "--model", "gan", "-d", 2], "'gan' is not one of"),
    (["predict", "{x}", "-d", 2, "--variance", "fixed"], "needs --sigma"),
    (["predict", "{x}", "-d", 2, "--variance", "learnable", "--sigma", 1], "needs --variance fixed"),
    (["predict", "{x}", "-d", 2, "--sigma", "1,2,3"], "3 values but the latent dim is 2"),
    (["predict", "{x}", "-d", 2, "--sigma", "0.1:1:3"], "not a range"),
    (["predict", "{x}", "-d", 2, "--beta1", 2], "--beta1 (mhvae only)"),
    (["predict", "{x}", "--model", "mhvae", "-d", 2, "--beta", 2], "--beta (vae/cvae only)"),
    (["predict", "{x}", "--model", "mhvae", "-d", 2, "--sigma1", "0.5,1"], "not covered by the theory"),
    (["predict", "{x}", "--model", "mhvae", "-d", 2, "--variance", "sigma2-fixed"], "needs --sigma2"),
    (["predict", "{x}", "--model", "cvae", "-d", 2], "the cvae needs an output y"),
    (["predict", "{x}", "--model", "cvae", "-d", 2, "--x-cols", "0-2"], "'0:3'"),
    (["predict", "{x}", "--model", "cvae", "-d", 2, "--x-cols", "0:10"], "out of range"),
    (["predict", "{x}", "--model", "cvae", "-d", 2, "--quadrant", "top-left"], "not a square image"),
    (["predict", "{x}", "--model", "cvae", "-d", 2, "--quadrant", "top-left", "--image-shape", "5x5"],
     "25 values per image"),
    (["predict", "{x}", "-d", 2, "--image-shape", "4x4"], "cvae only"),
    (["predict", "{x}", "-d", 2, "--no-such-option"], "No such option"),
    (["nonsense"], "No such command"),
    (["spectrum", "{x}", "--top", -1], "--top"),
])
def test_usage_errors_exit_2(files, args, match):
    d = files[0]
    fails(2, *[str(a).replace("{x}", str(d / "x.npy")) for a in args], match=match)


@pytest.mark.parametrize("args, match", [
    (["predict", "{d}/missing.npy", "-d", 2], "no such file"),
    (["predict", "{d}", "-d", 2], "is a directory"),
    (["predict", "{d}/bad.npy", "-d", 2], "not a NumPy .npy file"),
    (["predict", "{d}/nan.npy", "-d", 2], "contains 2 non-finite value(s) (NaN or inf); first at row 6, column 3 (counting from 1)"),
    (["predict", "{d}/text.csv", "-d", 2], "non-numeric value 'oops'"),
    (["predict", "{d}/one.npy", "-d", 1], "--no-center"),
    (["predict", "{d}/cx.npy", "--model", "cvae", "--y", "{d}/cy_short.npy", "-d", 2],
     "has 300 rows but y"),
    (["predict", "{d}/x.npy", "-d", 2, "--key", "a"], "applies only to .npz"),
    (["predict", "{d}/cxy.npz", "-d", 2], "holds 2 arrays"),
    (["spectrum", "{d}/missing.csv"], "no such file"),
    (["thresholds", "{d}/nan.npy", "--keep", 2], "non-finite"),
])
def test_data_errors_exit_1(files, args, match):
    d = files[0]
    fails(1, *[str(a).replace("{d}", str(d)) for a in args], match=match)


def test_nan_location_is_in_file_coordinates_after_column_selection(files, tmp_path):
    d, X, Y, _ = files
    joint = np.hstack([X, Y])
    joint[7, 8] = np.nan
    np.save(tmp_path / "j.npy", joint)
    err = fails(1, "predict", tmp_path / "j.npy", "--model", "cvae", "--y-cols", "8,6", "-d", 1)
    assert "first at row 8, column 9 (counting from 1)" in err  # joint[7, 8]
    # a NaN in a column that is not used is no error
    ok("predict", tmp_path / "j.npy", "--model", "cvae", "--x-cols", "0:6", "--y-cols", "6:8",
       "-d", 1)


def test_debug_shows_the_traceback(files):
    d = files[0]
    r = run("--debug", "predict", d / "missing.npy", "-d", 2)
    assert r.exit_code == 1 and "Traceback" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: ")


def test_json_stdout_is_only_json_even_on_large_files(files, tmp_path, monkeypatch):
    d = files[0]
    monkeypatch.setattr(cli, "PROGRESS_BYTES", 0)
    r = ok("predict", d / "x.npy", "-d", 2, "--json")
    json.loads(r.stdout)
    assert r.stderr == ""
    assert cli._progress_enabled(True) is False


def test_progress_bar_runs_on_a_large_file(files, monkeypatch):
    d, X, _, _ = files
    monkeypatch.setattr(cli, "PROGRESS_BYTES", 0)
    monkeypatch.setattr(cli, "_progress_enabled", lambda as_json: True)
    spec = cli._spectrum(vio.Selection(str(d / "x.npy")), as_json=False)
    np.testing.assert_allclose(spec.theta, vt.empirical_spectrum(X).theta)


def test_help_and_version():
    assert "predict" in ok("--help").stdout
    assert "--beta" in ok("predict", "--help").stdout
    assert "vaetheory" in ok("--version").stdout
    assert "predict" in ok().stdout  # no command: the help, exit 0


def test_the_library_has_the_data_path_of_the_command_line(files):
    """What the CLI does (a selection, its spectrum, one Solution per latent dim) is library API."""
    d, X, _, _ = files
    from vaetheory import settings

    spec = vt.load_spectrum(vio.Selection(str(d / "x.npy")))
    req = settings.Request.build(settings.resolve("vae"), latent_dims=[3], beta=[1.0, 2.0])
    (sol,) = req.solve(spec)
    assert sol.grid_shape == (2, 1, 1) and spec.provenance["n_samples"] == 300
    assert sol.spectrum.matrix is not None  # what the numerical checker needs
    doc = as_json("predict", d / "x.npy", "-d", 3, "--beta", "1,2")
    assert [p["optimal_loss"] for p in doc["points"]] == [pt.optimal_loss for pt in sol.points()]


# ------------------------------------------------------------------------------------------
# real subprocesses


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("FORCE_COLOR", None)
    return env


def test_python_m_vaetheory(files):
    d, X, _, _ = files
    p = subprocess.run([sys.executable, "-m", "vaetheory", "predict", str(d / "x.npy"), "-d", "3",
                        "--beta", "1,50", "--json"], capture_output=True, text=True, env=_env(),
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    doc = json.loads(p.stdout)
    sol = vt.vae_learnable_sigma(vt.empirical_spectrum(X), 3, beta=[1.0, 50.0])
    assert [pt["collapsed"]["z"] for pt in doc["points"]] == sol.collapsed().tolist()
    p = subprocess.run([sys.executable, "-m", "vaetheory", "predict", str(d / "nan.npy"), "-d", "2"],
                       capture_output=True, text=True, env=_env(), timeout=60)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: ") and p.stderr.count("\n") == 1


def test_installed_console_script(files):
    exe = shutil.which("vaetheory")
    if exe is None:
        pytest.skip("the vaetheory console script is not on PATH")
    d = files[0]
    p = subprocess.run([exe, "spectrum", str(d / "x.npy"), "--json"], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["rank"] == 6
    p = subprocess.run([exe, "predict", str(d / "x.npy"), "-d", "2", "--beta", "-3"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("error: --beta must be positive")
    assert "Traceback" not in p.stderr
    p = subprocess.run([exe, "demo"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "Run it on your own data" in p.stdout


def test_keep_beta1_for_z2_dims_without_partner_is_impossible(files):
    d = files[0]
    doc = as_json("thresholds", d / "x.npy", "--model", "mhvae", "-d", 2, "--latent-dim2", 4,
                  "--keep", 3, "--param", "beta1")
    assert doc["points"][0]["keep"]["possible"] is False


def test_cvae_text_files_with_different_row_counts(files, tmp_path):
    d, X, Y, _ = files
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    np.savetxt(tmp_path / "y.csv", Y[:-3], delimiter=",")
    fails(1, "predict", tmp_path / "x.csv", "--model", "cvae", "--y", tmp_path / "y.csv", "-d", 2,
          match="has 300 rows but y")
    np.savetxt(tmp_path / "y.csv", Y, delimiter=",")
    doc = as_json("predict", tmp_path / "x.csv", "--model", "cvae", "--y", tmp_path / "y.csv",
                  "-d", 2)
    np.testing.assert_allclose(doc["spectrum"], vt.empirical_residual_spectrum(X, Y).eigenvalues,
                               rtol=1e-9, atol=1e-12)


_WITHOUT_RICH = """
import sys
class _NoRich:
    def find_spec(self, name, path=None, target=None):
        if name == "rich" or name.startswith("rich."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, _NoRich())
from vaetheory.cli import main
sys.argv = ["vaetheory"] + sys.argv[1:]
main()
"""


def test_without_rich_help_and_json_work_and_tables_say_what_is_missing(files):
    d = files[0]
    """A clone run before `pip install .` (numpy/scipy/click present, rich not): --help and --json
    work; a table is one error line naming the dependency and the install command (exit 1)."""
    def go(*args):
        return subprocess.run([sys.executable, "-c", _WITHOUT_RICH, *map(str, args)],
                              capture_output=True, text=True, timeout=120)

    p = go("--help")
    assert p.returncode == 0 and "Usage:" in p.stdout
    p = go("spectrum", d / "x.npy", "--json")
    assert p.returncode == 0 and json.loads(p.stdout)["rank"] >= 1
    p = go("spectrum", d / "x.npy")
    assert p.returncode == 1 and p.stderr.count("\n") == 1
    assert p.stderr.startswith("error: the package 'rich', a dependency of vaetheory, is not "
                               "installed") and "pip install ." in p.stderr

"""`vaetheory audit WEIGHTS DATA`: exit codes from the verdict, the JSON document, the guessed
mapping printed, options, and one-line errors. The weights are closed-form optima written by the
library (at the optimum by construction) and doctored copies of them (off by construction)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import vaetheory as vt
from vaetheory.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 5)) * np.array([3.0, 2.0, 1.5, 0.7, 0.3]) + 2.0
    np.save(d / "x.npy", X)
    Y = X[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(300, 3)) * np.array([2, 1, 0.5])
    np.save(d / "y.npy", Y)
    m = vt.vae_learnable_sigma(vt.empirical_spectrum(X, with_basis=True), 3, beta=2.0).matrices()
    torch_names = {"encoder.weight": m["W"], "encoder.bias": m["encoder_bias"],
                   "decoder.weight": m["U"], "decoder.bias": m["decoder_bias"],
                   "log_var": m["log_var"]}
    np.savez(d / "good.npz", **torch_names)
    save_file({k: np.ascontiguousarray(v) for k, v in torch_names.items()},
              str(d / "good.safetensors"))
    np.savez(d / "near.npz", **dict(torch_names, **{"decoder.weight": m["U"] * 1.07}))
    np.savez(d / "nobias.npz", **{k: v for k, v in torch_names.items() if "bias" not in k})
    np.savez(d / "kernels.npz", **{"enc/kernel": m["W"].T, "dec/kernel": m["U"].T,
                                   "sd": np.exp(0.5 * m["log_var"]), "eb": m["encoder_bias"],
                                   "db": m["decoder_bias"]})
    c = vt.cvae_fixed_sigma(vt.empirical_residual_spectrum(X, Y, with_basis=True), 2, 0.5,
                            beta=0.5).matrices()
    np.savez(d / "cvae.npz", **c)
    np.savez(d / "nan.npz", **dict(torch_names, log_var=np.full(3, np.nan)))
    return d


def test_at_optimum_exits_0_and_prints_the_guess(files):
    for w in ("good.npz", "good.safetensors"):
        r = run("audit", files / w, files / "x.npy", "--beta", "2")
        assert r.exit_code == 0, (r.stdout, r.stderr)
        out = r.stdout
        assert "audit: AT OPTIMUM -- vae/learnable" in out
        assert "W <- 'encoder.weight'" in out and "(guessed from the names" in out
        assert "singular values" in out and "collapsed dims" in out


def test_near_and_far_exit_5_and_6_with_the_reason(files):
    r = run("audit", files / "near.npz", files / "x.npy", "--beta", "2")
    assert r.exit_code == 5 and "audit: NEAR" in r.stdout
    r = run("audit", files / "good.npz", files / "x.npy", "--beta", "1")
    assert r.exit_code == 6 and "audit: FAR" in r.stdout
    assert "at the optimum for beta = 2" in r.stdout and "twice the given value" in r.stdout
    r = run("audit", files / "nobias.npz", files / "x.npy", "--beta", "2")
    assert r.exit_code == 6 and "--no-center" in r.stdout
    # the same weights as the bias-free model on raw moments are judged against that optimum
    r = run("audit", files / "nobias.npz", files / "x.npy", "--beta", "2", "--no-center")
    assert r.exit_code in (5, 6) and "raw second moments" in r.stdout


def test_tolerances_are_options(files):
    r = run("audit", files / "near.npz", files / "x.npy", "--beta", "2", "--tol", "0.5",
            "--tol-sv", "0.5")
    assert r.exit_code == 0
    r = run("audit", files / "near.npz", files / "x.npy", "--beta", "2", "--near", "1e-9")
    assert r.exit_code == 6


def test_json_document(files):
    r = run("audit", files / "good.npz", files / "x.npy", "--beta", "2", "--json")
    assert r.exit_code == 0 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert doc["verdict"] == "AT OPTIMUM" and doc["exit_code"] == 0
    assert doc["data"]["n_samples"] == 300 and doc["data"]["centered"] is True
    assert doc["settings"]["weights"].endswith("good.npz") and doc["settings"]["latent_dims"] == [3]
    assert doc["latent_dims"] == {"z": 3} and doc["hyper"]["beta"] == 2.0
    assert abs(doc["relative_gap"]) < 1e-12
    assert set(doc["singular_values"]) == {"encoder", "decoder"}
    for m, v in doc["singular_values"].items():
        np.testing.assert_allclose(v["found"], v["predicted"], atol=1e-12)
    assert doc["collapse"]["z"]["matches"] is True and doc["collapse"]["z"]["rule"] == "kl"
    assert {e["role"] for e in doc["mapping"]} == {"W", "U", "log_var", "encoder_bias",
                                                  "decoder_bias"}
    r = run("audit", files / "good.npz", files / "x.npy", "--beta", "1", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 6 and doc["verdict"] == "FAR" and doc["hints"]
    assert doc["gap"] == pytest.approx(doc["loss"] - doc["optimal_loss"])


def test_map_layout_and_other_models(files):
    r = run("audit", files / "kernels.npz", files / "x.npy", "--beta", "2", "--layout", "in-out",
            "--map", "enc/kernel=W", "--map", "dec/kernel=U", "--map", "sd=std:log_var",
            "--map", "eb=encoder_bias", "--map", "db=decoder_bias")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "W.T <- 'enc/kernel'" in r.stdout and "guessed" not in r.stdout
    r = run("audit", files / "cvae.npz", files / "x.npy", "--model", "cvae", "--y", files / "y.npy",
            "--beta", "0.5", "--sigma", "0.5", "--rule", "au", "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["variance"] == "fixed" and doc["collapse"]["z"]["rule"] == "au"


@pytest.mark.parametrize("args, code, message", [
    (["{d}/good.npz", "{d}/x.npy", "--beta", "1,2"], 2, "audit judges one hyperparameter point"),
    (["{d}/good.npz", "{d}/x.npy", "-d", "2,3"], 2, "give one --latent-dim"),
    (["{d}/good.npz", "{d}/x.npy", "-d", "4"], 2, "expected (4, 5) for latent dim 4"),
    (["{d}/good.npz", "{d}/x.npy", "--map", "encoder.weight"], 2, "give NAME=ROLE"),
    (["{d}/good.npz", "{d}/x.npy", "--map", "encoder.weight=Q"], 2, "'Q' is not a parameter"),
    (["{d}/good.npz", "{d}/x.npy", "--no-center"], 2, "but --no-center audits the bias-free"),
    (["{d}/good.npz", "{d}/x.npy", "--model", "mhvae", "--variance", "both-learnable"], 2,
     "no closed form"),
    (["{d}/missing.npz", "{d}/x.npy"], 1, "cannot read"),
    (["{d}/good.npz", "{d}/missing.npy"], 1, "missing.npy"),
    (["{d}/nan.npz", "{d}/x.npy"], 1, "non-finite"),
    (["{d}/x.npy", "{d}/x.npy"], 1, "unsupported weights format"),
])
def test_errors_are_one_line_with_their_exit_code(files, args, code, message):
    r = run("audit", *[a.format(d=files) for a in args])
    assert r.exit_code == code, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_the_missing_extra_is_named(files):
    """A subprocess whose import of safetensors fails: one line naming the extra, exit 1."""
    code = ("import sys; sys.modules['safetensors'] = None; sys.modules['safetensors.numpy'] = None;"
            "from vaetheory.cli import main; sys.argv = ['vaetheory', 'audit', sys.argv[1], "
            "sys.argv[2]]; main()")
    p = subprocess.run([sys.executable, "-c", code, str(files / "good.safetensors"),
                        str(files / "x.npy")], capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip() == ("error: reading .safetensors weights needs the safetensors "
                                "package, which is not installed: pip install \"vaetheory[audit]\" "
                                "(or save the weights with numpy.savez)")


# ------------------------------------------------------------------------------------------
# --eta-dec learned (docs/theory.md §12): u given or profiled, NO OPTIMUM


@pytest.fixture(scope="module")
def learned_files(files):
    """The data of ``files``; the weights of the learned-decoder optimum and doctored copies."""
    from safetensors.numpy import save_file

    from vaetheory import settings as vs

    d = files
    X = np.load(d / "x.npy")
    s = vs.get("vae", "learnable", "learned")
    m = s.solve(vt.empirical_spectrum(X, with_basis=True), 3, beta=2.0).at().matrices()
    names = {"encoder.weight": m["W"], "encoder.bias": m["encoder_bias"],
             "decoder.weight": m["U"], "decoder.bias": m["decoder_bias"], "log_var": m["log_var"]}
    np.savez(d / "prof.npz", **names)
    with_u = dict(names, log_sigma_x=np.array([0.5 * m["log_u"]]))
    np.savez(d / "u.npz", **with_u)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in with_u.items()},
              str(d / "u.safetensors"))
    np.savez(d / "u2.npz", **dict(names, log_sigma_x=np.array([0.5 * m["log_u"] + 0.35])))
    # rank 3 of 5 with latent dim 4 at beta 1: no minimum (docs §12.2)
    X3 = np.c_[X[:, :3], X[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])]
    np.save(d / "x3.npy", X3)
    m3 = s.solve(vt.empirical_spectrum(X3, with_basis=True), 4, beta=1.0).at().matrices()
    np.savez(d / "unb.npz", W=m3["W"], U=m3["U"], log_var=np.maximum(m3["log_var"], -12.0),
             encoder_bias=m3["encoder_bias"], decoder_bias=m3["decoder_bias"], log_u=[-9.0])
    return d


def test_learned_decoder_audit_exit_codes_and_text(learned_files):
    d = learned_files
    for w in ("u.npz", "u.safetensors"):
        r = run("audit", d / w, d / "x.npy", "--beta", "2", "--eta-dec", "learned")
        assert r.exit_code == 0, (r.stdout, r.stderr)
        assert "audit: AT OPTIMUM -- vae/learnable/learned-decoder" in r.stdout
        assert "log_std:log_u <- 'log_sigma_x'" in r.stdout
        assert "decoder variance u = eta_dec^2" in r.stdout and "(the weights' log_u)" in r.stdout
        assert "nats per sample" in r.stdout
    r = run("audit", d / "prof.npz", d / "x.npy", "--beta", "2", "--eta-dec", "learned")
    assert r.exit_code == 0 and "(profiled:" in r.stdout
    r = run("audit", d / "u2.npz", d / "x.npy", "--beta", "2", "--eta-dec", "learned")
    assert r.exit_code == 6 and "audit: FAR" in r.stdout and "<-- off" in r.stdout
    assert "best for these very weights" in r.stdout
    r = run("audit", d / "unb.npz", d / "x3.npy", "--eta-dec", "learned")
    assert r.exit_code == 7, (r.stdout, r.stderr)
    assert "audit: NO OPTIMUM" in r.stdout and "optimal: none" in r.stdout
    assert "latent dim 4 >= rank 3" in r.stdout and "should drive log u down" in r.stdout
    assert r.stderr == ""


def test_learned_decoder_audit_json(learned_files):
    d = learned_files
    r = run("audit", d / "u.npz", d / "x.npy", "--beta", "2", "--eta-dec", "learned", "--json")
    assert r.exit_code == 0 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert doc["decoder"] == "learned" and doc["loss_units"] == "nats per sample"
    dv = doc["decoder_variance"]
    assert dv["profiled"] is False and dv["unbounded"] is False
    assert dv["u"] == pytest.approx(dv["optimal_u"], rel=1e-12) and "eta_dec" not in doc["hyper"]
    assert doc["settings"]["decoder"] == "learned"
    r = run("audit", d / "unb.npz", d / "x3.npy", "--eta-dec", "learned", "--json")
    doc = json.loads(r.stdout)
    assert r.exit_code == 7 and doc["verdict"] == "NO OPTIMUM" and doc["exit_code"] == 7
    assert doc["optimal_loss"] is None and doc["gap"] is None and doc["relative_gap"] is None
    assert doc["decoder_variance"]["unbounded"] is True and doc["decoder_variance"]["reason"]


def test_learned_decoder_audit_errors(learned_files):
    d = learned_files
    r = run("audit", d / "u.npz", d / "x.npy", "--eta-dec", "learned", "--model", "mhvae",
            "--sigma1", "0.5")
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and "no closed form" in r.stderr
    r = run("audit", d / "u.npz", d / "x.npy", "--eta-dec", "learned", "--map",
            "log_sigma_x=log_std:log_var")
    assert r.exit_code == 2 and r.stderr.count("\n") == 1

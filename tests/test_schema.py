"""Real JSON outputs of every command validate against docs/schema/vaetheory.schema.json.

The schema is written from the code's documents (report.predict_document, thresholds_document,
spectrum_document, numerical_document); these outputs come from the real command line.
"""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from vaetheory.cli import main

jsonschema = pytest.importorskip("jsonschema")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA = json.load(open(os.path.join(ROOT, "docs", "schema", "vaetheory.schema.json")))


def validator(name):
    return jsonschema.Draft202012Validator({"$ref": f"#/$defs/{name}", "$defs": SCHEMA["$defs"]})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("schema")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 6)) * np.array([4.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    np.save(d / "x.npy", X)
    np.save(d / "y.npy", X[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(200, 3)))
    low = rng.normal(size=(100, 2)) @ rng.normal(size=(2, 5))
    np.save(d / "low.npy", low)
    return d


def doc(*args):
    r = CliRunner().invoke(main, [str(a) for a in args] + ["--json"])
    assert r.exit_code in (0, 4), (r.exit_code, r.stderr)
    return json.loads(r.stdout)


PREDICT = [
    ["-d", "3,5", "--beta", "0.5,2", "--eta-dec", "1,2"],
    ["-d", "4", "--sigma", "0.5", "--beta", "1,3"],
    ["-d", "3", "--sigma", "0.5,1,2"],
    ["--model", "cvae", "--y", "{d}/y.npy", "-d", "2", "--beta", "1,4"],
    ["--model", "cvae", "--y", "{d}/y.npy", "-d", "2", "--sigma", "0.7"],
    ["--model", "mhvae", "-d", "3", "--latent-dim2", "4", "--beta2", "1,5", "--sigma1", "0.5"],
    ["--model", "mhvae", "-d", "3", "--sigma2", "0.6"],
    ["-d", "3", "--eta-dec", "learned", "--beta", "0.5,2"],            # docs §12
    ["-d", "3", "--eta-dec", "learned", "--sigma", "0.5"],
    ["-d", "3", "--recon", "mse", "--kl-weight", "0.01,0.1"],          # docs §10
]


@pytest.mark.parametrize("args", PREDICT, ids=lambda a: " ".join(a))
def test_predict_documents_validate(files, args):
    args = [a.replace("{d}", str(files)) for a in args]
    validator("predict").validate(doc("predict", files / "x.npy", *args))
    validator("thresholds").validate(doc("thresholds", files / "x.npy", *args))


def test_low_rank_keep_and_impossible_keep_validate(files):
    v = validator("thresholds")
    v.validate(doc("thresholds", files / "low.npy", "--keep", "2"))
    impossible = doc("thresholds", files / "low.npy", "--keep", "4")
    v.validate(impossible)
    assert impossible["points"][0]["keep"]["possible"] is False
    assert impossible["points"][0]["keep"]["value"] is None


def test_spectrum_documents_validate(files):
    validator("spectrum").validate(doc("spectrum", files / "x.npy"))
    validator("spectrum").validate(doc("spectrum", files / "x.npy", "--model", "cvae", "--y",
                                       files / "y.npy"))


def test_check_documents_validate(files):
    validator("predict").validate(doc("check", files / "x.npy", "-d", "2", "--restarts", "1"))
    validator("predict").validate(doc("check", files / "x.npy", "-d", "2", "--mode", "sgd",
                                      "--epochs", "5"))
    validator("numerical").validate(doc("check", files / "x.npy", "--model", "mhvae",
                                        "--variance", "both-learnable", "-d", "2", "--beta1",
                                        "0.5", "--restarts", "1"))


def test_demo_documents_validate_and_the_schema_rejects_a_wrong_document():
    for model in ("vae", "cvae", "mhvae"):
        d = doc("demo", "--model", model)
        validator("predict").validate(d)
    del d["points"][0]["ranks"]
    with pytest.raises(jsonschema.ValidationError):
        validator("predict").validate(d)
    with pytest.raises(jsonschema.ValidationError):
        validator("predict").validate({"model": "vae"})


def test_audit_documents_validate(tmp_path):
    """`audit --json`: a fixed eta_dec, a learned one (u given), and NO OPTIMUM (nulls)."""
    import vaetheory as vt
    from vaetheory import settings as vs

    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, 5)) * np.array([3.0, 2.0, 1.5, 0.7, 0.3]) + 1.0
    np.save(tmp_path / "x.npy", X)
    sp = vt.empirical_spectrum(X, with_basis=True)
    np.savez(tmp_path / "fixed.npz", **vt.vae_learnable_sigma(sp, 3, beta=2.0).matrices())
    s = vs.get("vae", "learnable", "learned")
    np.savez(tmp_path / "learned.npz", **s.solve(sp, 3, beta=2.0).at().matrices())
    X3 = np.c_[X[:, :3], X[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]])]
    np.save(tmp_path / "x3.npy", X3)
    m = s.solve(vt.empirical_spectrum(X3, with_basis=True), 4, beta=1.0).at().matrices()
    np.savez(tmp_path / "unb.npz", **dict(m, log_var=np.maximum(m["log_var"], -12.0),
                                          log_u=[-9.0]))
    v = validator("audit")
    for args, code in [(["fixed.npz", "x.npy", "--beta", "2"], 0),
                       (["fixed.npz", "x.npy", "--beta", "1"], 6),
                       (["learned.npz", "x.npy", "--beta", "2", "--eta-dec", "learned"], 0),
                       (["unb.npz", "x3.npy", "--eta-dec", "learned"], 7)]:
        r = CliRunner().invoke(main, ["audit", *[str(tmp_path / a) if a.endswith(("npz", "npy"))
                                                 else a for a in args], "--json"])
        assert r.exit_code == code, (r.stdout, r.stderr)
        d = json.loads(r.stdout)
        v.validate(d)
        jsonschema.Draft202012Validator(SCHEMA).validate(d)
    d["verdict"] = "AT OPTIMUM"    # a NO OPTIMUM document's nulls are only valid with its verdict
    with pytest.raises(jsonschema.ValidationError):
        v.validate(d)

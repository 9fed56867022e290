"""The moment options of the command line: --moments, --standardize, --dask-workers,
--dask-scheduler, and the data notes (docs/theory.md §9)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import vaetheory as vt
from vaetheory.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def doc(*args):
    r = run(*args, "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert r.stderr == ""
    return json.loads(r.stdout)


@pytest.fixture
def ill(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 4)) * [2.0, 1.0, 0.5, 1e-7]
    X = X @ np.linalg.qr(rng.normal(size=(4, 4)))[0]
    path = tmp_path / "ill.npy"
    np.save(path, X)
    return path, X


def test_moments_method_is_chosen_and_reported(ill):
    path, X = ill
    want = np.sqrt(np.array(sorted(np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2 / 500,
                                   reverse=True)))
    for method, used in (("gram", "gram"), ("qr", "qr"), ("auto", "qr")):
        d = doc("spectrum", path, "--moments", method)
        assert d["data"]["method"] == used
        if used == "qr":
            np.testing.assert_allclose(d["spectrum"], want, rtol=1e-8)
            assert d["data"]["max_relative_error"] < 1e-6
        else:
            assert d["data"]["max_relative_error"] > 1e-2  # honest about what it lost
    p = doc("predict", path, "-d", "2", "--moments", "qr")
    assert p["settings"]["moments"] == "qr" and p["data"]["method"] == "qr"
    r = run("spectrum", path, "--moments", "svd")
    assert r.exit_code == 2 and "--moments" in r.stderr


def test_standardize_and_the_dominant_column_note(tmp_path):
    X = np.random.default_rng(1).normal(size=(300, 3)) * [1.0, 2.0, 300.0]
    path = tmp_path / "w.npy"
    np.save(path, X)
    r = run("spectrum", path)
    # on stderr, naming the file's column as every io message does (counting from 1)
    assert r.exit_code == 0 and "warning: column 3 holds" in r.stderr
    assert "column 3 holds" not in r.stdout
    assert any("column 3 holds" in n for n in doc("spectrum", path)["notes"])  # the document's notes
    d = doc("spectrum", path, "--standardize")
    want = np.sqrt(np.linalg.eigvalsh(np.corrcoef(X.T))[::-1])
    np.testing.assert_allclose(d["spectrum"], want, rtol=1e-12)
    assert "correlation" in d["spectrum_units"] and "notes" not in d["data"]
    assert doc("predict", path, "-d", "2", "--standardize")["settings"]["standardize"] is True
    for args, msg in ((["--no-center"], "drop --no-center"),
                      (["--model", "cvae", "--x-cols", "0:1"], "vae/mhvae")):
        r = run("spectrum", path, "--standardize", *args)
        assert r.exit_code == 2 and r.stderr.startswith("error: ") and msg in r.stderr
        assert r.stderr.count("\n") == 1


def test_extreme_scale_through_the_cli(tmp_path):
    X = np.random.default_rng(2).normal(size=(200, 3)) * [3, 2, 1]
    base = doc("spectrum", _save(tmp_path, "a.npy", X))
    tiny = doc("spectrum", _save(tmp_path, "b.npy", X * 2.0 ** -500))
    assert tiny["rank"] == 3
    np.testing.assert_array_equal(np.array(tiny["spectrum"]) * 2.0 ** 500, base["spectrum"])
    # eigenvalues below float64's range (~1e-400): never rank 0, never a silent 0
    r = run("spectrum", _save(tmp_path, "c.npy", X * 1e-200))
    assert r.exit_code == 0 and r.stderr == "" and "rank 3 of 3" in r.stdout


@pytest.mark.parametrize("k", [-680, -600, 560, 620])
def test_values_float64_cannot_hold_are_null_in_json_and_exact_in_text(tmp_path, k):
    """Data x 2^k whose eigenvalues (x 4^k) leave float64: JSON null plus the exact 'scaled'
    values (the unit-scale run's, bitwise) and a note; the table prints them in decimal, checked
    against mpmath; predict keeps counts and thresholds and nulls the loss it cannot hold."""
    import mpmath

    X = np.random.default_rng(2).normal(size=(200, 3)) * [3, 2, 1]
    base = doc("spectrum", _save(tmp_path, "a.npy", X))
    path = _save(tmp_path, "b.npy", X * 2.0 ** k)
    d = doc("spectrum", path)
    assert d["eigenvalues"] == [None] * 3 and d["trace"] is None
    assert any("outside the float64 range" in n for n in d["notes"])
    sc = d["scaled"]["eigenvalues"]
    ev = [mpmath.mpf(v) * mpmath.mpf(2) ** (sc["exponent"]) for v in sc["scaled"]]
    for got, want in zip(ev, base["eigenvalues"]):  # exactly the unit-scale values x 4^k
        assert got == mpmath.mpf(want) * mpmath.mpf(4) ** k
    text = run("spectrum", path).stdout
    for v in ev:
        want = mpmath.nstr(v, 4, min_fixed=1, max_fixed=0)  # scientific
        mant, e = want.split("e")
        assert f"{mant}e{'-' if int(e) < 0 else '+'}{abs(int(e)):02d}" in text
    p0 = doc("predict", _save(tmp_path, "a.npy", X), "-d", "2", "--beta", "1", "--eta-dec", "1")
    p = doc("predict", path, "-d", "2", "--beta", "1", "--eta-dec", 2.0 ** k)
    assert p["points"][0]["optimal_loss"] is None and p["trace"] is None and "scaled" in p
    assert p0["points"][0]["optimal_loss"] is not None
    assert p["points"][0]["collapsed"] == p0["points"][0]["collapsed"]
    assert p["points"][0]["critical"]["beta"] == p0["points"][0]["critical"]["beta"]


def _save(d, name, X):
    np.save(d / name, X)
    return d / name


def test_dask_options(tmp_path):
    pytest.importorskip("distributed")
    X = np.random.default_rng(3).normal(size=(5000, 6)) * np.arange(1, 7)
    path = _save(tmp_path, "d.npy", X)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    out = subprocess.run([sys.executable, "-m", "vaetheory", "spectrum", str(path), "--json",
                          "--dask-workers", "2"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    single = vt.empirical_spectrum(X)
    np.testing.assert_allclose(json.loads(out.stdout)["spectrum"], single.theta, rtol=1e-12)
    r = run("spectrum", path, "--dask-workers", "2", "--dask-scheduler", "tcp://x:1")
    assert r.exit_code == 2 and "alternatives" in r.stderr
    out = subprocess.run([sys.executable, "-m", "vaetheory", "spectrum", str(path),
                          "--dask-scheduler", "tcp://127.0.0.1:9"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert out.returncode == 1 and out.stderr.startswith("error: cannot reach the Dask scheduler")
    assert out.stderr.count("\n") == 1, out.stderr


def test_documents_with_values_float64_cannot_hold_validate(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    schema = json.loads((Path(__file__).parents[1] / "docs/schema/vaetheory.schema.json").read_text())
    path = _save(tmp_path, "t.npy", np.random.default_rng(3).normal(size=(50, 3)) * 2.0 ** -680)
    for args in (("spectrum", path), ("predict", path, "-d", "2"), ("thresholds", path, "-d", "2")):
        d = doc(*args)
        assert "scaled" in d
        jsonschema.validate(d, schema)


def test_what_float64_cannot_compute_is_one_line_with_the_rescaling(tmp_path):
    """check and plot need the moments themselves in the data's units: at data x 2^620 they
    overflow; the refusal is one line (exit 1) that says by how much to rescale."""
    path = _save(tmp_path, "h.npy", np.random.default_rng(4).normal(size=(60, 3)) * 2.0 ** 620)
    r = run("check", path, "-d", "2", "--restarts", "1")
    assert r.exit_code == 1 and r.stderr.count("\n") == 1
    assert "overflow float64" in r.stderr and "multiply it by 2^-6" in r.stderr

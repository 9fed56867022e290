"""`vaetheory check` and `predict --check`: verdicts, exit codes, JSON, determinism, open settings.

The checker's own correctness (it confirms closed forms and refutes doctored ones) is tested in
test_checker.py; here the command line must carry its verdicts faithfully: a doctored closed form
(the theory monkeypatched inside the CLI) has to turn into exit code 3 or 4 and the counterexample.
"""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from vaetheory.cli import main

CONTRACT = ("verdict", "loss_gap", "max_singular_value_error", "restarts_matching", "seconds")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("check")
    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5)) * np.array([3.0, 2.0, 1.5, 0.7, 0.3]) + 1.0
    np.save(d / "x.npy", X)
    Y = X[:, :3] @ rng.normal(size=(3, 4)) + rng.normal(size=(400, 4)) * np.array([2, 1, 0.6, 0.2])
    np.save(d / "y.npy", Y)
    return d


SETTINGS = {
    "vae learnable": ["-d", "3", "--beta", "2"],
    "vae fixed": ["-d", "3", "--beta", "2", "--sigma", "0.7"],
    "cvae learnable": ["--model", "cvae", "--y", "{y}", "-d", "3", "--beta", "0.5"],
    "cvae fixed": ["--model", "cvae", "--y", "{y}", "-d", "3", "--sigma", "0.5,0.6,0.8"],
    "mhvae sigma2 learnable": ["--model", "mhvae", "-d", "3", "--latent-dim2", "2",
                               "--beta1", "1.3", "--beta2", "2", "--sigma1", "0.6"],
    "mhvae sigma2 fixed": ["--model", "mhvae", "-d", "2", "--latent-dim2", "3",
                           "--beta2", "1.5", "--sigma1", "0.5", "--sigma2", "0.8"],
}


def _args(data, opts):
    return [o.format(y=data / "y.npy") for o in opts]


@pytest.mark.parametrize("name", list(SETTINGS))
def test_check_confirms_every_setting_with_exit_0_and_the_json_contract(data, name):
    r = run("check", data / "x.npy", *_args(data, SETTINGS[name]), "--restarts", "3", "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["settings"]["check"]["restarts"] == 3
    (point,) = doc["points"]
    chk = point["check"]
    for key in CONTRACT:
        assert key in chk
    assert chk["verdict"] == "CONFIRMED" and chk["mode"] == "exact"
    assert abs(chk["loss_gap"]) <= 1e-6 and chk["max_singular_value_error"] <= 1e-4
    assert 1 <= chk["restarts_matching"] <= 3 and chk["seconds"] > 0
    # the learned collapsed count agrees with the prediction (an int, or inside [min, max])
    pred = point["collapsed"]
    for latent, found in chk["learned"]["collapsed_prior"].items():
        lo, hi = pred[latent] if isinstance(pred[latent], list) else (pred[latent],) * 2
        if "fixed" not in name:  # with fixed variances no dim's posterior equals the prior
            assert lo <= found <= hi


def _doctored(monkeypatch, change):
    """Every closed form the command line computes goes through ``change`` first."""
    from vaetheory.settings import Request

    real = Request.solve

    def fake(self, spectrum):
        return [change(sol) for sol in real(self, spectrum)]

    monkeypatch.setattr(Request, "solve", fake)


def test_a_claimed_minimum_above_the_true_one_is_refuted_with_exit_3(data, monkeypatch):
    _doctored(monkeypatch, lambda s: dataclasses.replace(
        s, optimal_loss=np.asarray(s.optimal_loss) * 1.01 + 0.01))
    r = run("check", data / "x.npy", "-d", "3", "--beta", "2", "--restarts", "2")
    assert r.exit_code == 3, (r.stdout, r.stderr)
    assert "REFUTED" in r.stdout and "counterexample" in r.stdout
    r = run("predict", data / "x.npy", "-d", "3", "--beta", "2", "--check", "--restarts", "2",
            "--json")
    assert r.exit_code == 3
    assert json.loads(r.stdout)["points"][0]["check"]["verdict"] == "REFUTED"


def test_wrong_singular_values_at_the_right_loss_are_inconclusive_with_exit_4(data, monkeypatch):
    def scale(s):
        sv = {k: np.asarray(v) * (1.1 if k == "decoder" else 1.0)
              for k, v in s.singular_values.items()}
        return dataclasses.replace(s, singular_values=sv)

    _doctored(monkeypatch, scale)
    r = run("check", data / "x.npy", "-d", "3", "--beta", "2", "--restarts", "2")
    assert r.exit_code == 4, (r.stdout, r.stderr)
    assert "INCONCLUSIVE" in r.stdout and "singular values differ" in r.stdout


def test_the_worst_verdict_over_a_grid_sets_the_exit_code(data, monkeypatch):
    def lift_second(s):  # only the second beta's claimed minimum is wrong
        L = np.array(s.optimal_loss, dtype=float, copy=True)
        L.reshape(-1)[1] += 0.05 * abs(L.reshape(-1)[1]) + 0.05
        return dataclasses.replace(s, optimal_loss=L)

    _doctored(monkeypatch, lift_second)
    r = run("check", data / "x.npy", "-d", "2", "--beta", "1,3", "--restarts", "2", "--json")
    assert r.exit_code == 3
    verdicts = [p["check"]["verdict"] for p in json.loads(r.stdout)["points"]]
    assert verdicts == ["CONFIRMED", "REFUTED"]


def test_same_seed_same_result(data):
    def doc(seed):
        r = run("check", data / "x.npy", "-d", "3", "--beta", "0.5", "--restarts", "2",
                "--seed", seed, "--json")
        assert r.exit_code == 0
        chk = json.loads(r.stdout)["points"][0]["check"]
        chk.pop("seconds")
        return chk

    a, b = doc(5), doc(5)
    assert a == b


def test_predict_check_adds_a_check_to_every_point(data):
    r = run("predict", data / "x.npy", "-d", "2", "--beta", "0.5,4", "--check", "--restarts", "2",
            "--json")
    assert r.exit_code == 0 and r.stderr == ""
    doc = json.loads(r.stdout)
    assert [p["check"]["verdict"] for p in doc["points"]] == ["CONFIRMED"] * 2
    plain = json.loads(run("predict", data / "x.npy", "-d", "2", "--beta", "0.5,4",
                           "--json").stdout)
    assert all("check" not in p for p in plain["points"])
    for p, q in zip(doc["points"], plain["points"]):
        p.pop("check")
        assert p == q
    r = run("predict", data / "x.npy", "-d", "2", "--beta", "4", "--check", "--restarts", "2")
    assert r.exit_code == 0 and "CONFIRMED" in r.stdout and "runs at optimum" in r.stdout


def test_open_settings_are_numerical_and_labelled(data):
    r = run("check", data / "x.npy", "--model", "mhvae", "--variance", "both-learnable", "-d", "2",
            "--beta1", "0.5", "--restarts", "2", "--json")
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert doc["covered_by_theory"] is False and "not theory" in doc["label"]
    (p,) = doc["points"]
    assert p["check"]["verdict"] == "NUMERICAL"
    assert set(p["numerical"]["singular_values"]) == {"encoder1", "decoder1", "encoder2", "decoder2"}
    # beta1 < beta2: z2 collapses (docs/theory.md §5.5); the table says it is numerical
    assert p["numerical"]["collapsed_prior"]["z2"] == 2
    r = run("check", data / "x.npy", "--model", "mhvae", "-d", "3", "--sigma1", "0.3,0.6,0.9",
            "--restarts", "2")
    assert r.exit_code == 0 and "no closed form" in r.stdout and "numerical" in r.stdout


def test_open_settings_are_refused_where_a_prediction_is_expected(data):
    for cmd in ("predict", "thresholds"):
        r = run(cmd, data / "x.npy", "--model", "mhvae", "--variance", "both-learnable", "-d", "2")
        assert r.exit_code == 2 and "vaetheory check" in r.stderr, r.stderr
    r = run("check", data / "x.npy", "--model", "mhvae", "--variance", "both-learnable", "-d", "2",
            "--mode", "sgd")
    assert r.exit_code == 2 and "--mode exact" in r.stderr
    r = run("check", data / "x.npy", "--model", "mhvae", "--variance", "both-learnable", "-d", "2",
            "--sigma1", "0.5")
    assert r.exit_code == 2 and "drop" in r.stderr


@pytest.mark.parametrize("bad", [["--restarts", "0"], ["--tol", "0"], ["--tol-sv", "-1"],
                                 ["--mode", "adam"], ["--epochs", "0"]])
def test_bad_checker_options_are_usage_errors(data, bad):
    r = run("check", data / "x.npy", "-d", "2", *bad)
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1


def test_sgd_mode_trains_on_the_samples_and_compares_collapsed_counts(data):
    # beta between the 2nd and 3rd thresholds: 1 of 3 dims collapses (exact count, learnable)
    r = run("check", data / "x.npy", "-d", "3", "--beta", "1.2", "--mode", "sgd", "--epochs", "60",
            "--json")
    doc = json.loads(r.stdout)
    (p,) = doc["points"]
    chk = p["check"]
    assert chk["mode"] == "sgd" and doc["settings"]["check"]["epochs"] == 60
    assert chk["predicted_collapsed"]["z"] == [p["collapsed"]["z"]] * 2
    assert chk["collapsed"]["z"] == p["collapsed"]["z"], chk
    assert chk["verdict"] == "CONSISTENT" and r.exit_code == 0
    assert 0 <= chk["loss_gap"] < 0.05


def test_sgd_mode_on_the_cvae_splits_x_and_y(data):
    # residual variances of y given x ~ (4, 1, 0.36, 0.04): beta = 1.5 keeps 1 of 3 dims, with
    # the others far (e/beta < 0.7) from their thresholds, where training converges slowly
    r = run("check", data / "x.npy", "--model", "cvae", "--y", data / "y.npy", "-d", "3",
            "--beta", "1.5", "--mode", "sgd", "--epochs", "150", "--json")
    assert r.exit_code == 0, r.stderr
    p = json.loads(r.stdout)["points"][0]
    chk = p["check"]
    assert set(chk["singular_values"]) == {"encoder", "decoder"}
    assert p["collapsed"]["z"] == 2 and chk["collapsed"]["z"] == 2
    assert 0 <= chk["loss_gap"] < 0.05  # trained near the optimum of the same x/y split


def test_check_as_a_real_subprocess_sets_the_exit_code(data):
    out = subprocess.run([sys.executable, "-m", "vaetheory", "check", str(data / "x.npy"), "-d",
                          "2", "--beta", "3", "--restarts", "2"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "CONFIRMED" in out.stdout and out.stderr == ""


def test_sgd_mode_reads_the_file_once(data, monkeypatch):
    """The spectrum and the training samples come from one pass over the file."""
    from vaetheory import io as vio

    calls = []
    real = vio._open_reader

    def counting(*a, **k):
        calls.append(a[0])
        return real(*a, **k)

    monkeypatch.setattr(vio, "_open_reader", counting)
    r = run("check", data / "x.npy", "-d", "2", "--mode", "sgd", "--epochs", "3", "--json")
    assert r.exit_code in (0, 4), r.stderr
    assert len(calls) == 1, calls

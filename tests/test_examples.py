"""The examples in examples/ run (fast variants) and their measurements agree with the predictions.

Each example's ``main(fast=True, verbose=False)`` returns the numbers it prints; the assertions
compare what was measured (exact checker, stochastic training) with what the closed forms
predicted, never with hard-coded values, so a change in the library or the data that breaks an
example's agreement fails here.
"""

import numpy as np
import pytest

from _examples import load


@pytest.fixture(scope="module")
def vae_fixed():
    return load("vae_learnable_vs_fixed").main(fast=True, verbose=False)


def test_vae_learnable_vs_fixed_checker_matches_theory(vae_fixed):
    for r in vae_fixed["rows"]:
        lo, hi = r["predicted"]
        assert r["checker_verdict"] == "CONFIRMED", r["setting"]
        assert r["checker_rank"] == r["rank"]
        assert lo <= r["checker"] <= hi, r["setting"]
    learn = vae_fixed["rows"][0]
    assert learn["variance"] == "learnable" and learn["predicted"][0] == learn["predicted"][1]
    assert learn["predicted"][0] == 3  # the paper's "3 of 5": the example's choice of beta


def test_vae_learnable_vs_fixed_sgd_matches_theory(vae_fixed):
    learn = vae_fixed["rows"][0]
    assert learn["sgd"] == learn["predicted"][0]  # learnable: the exact count
    full_rank = [r for r in vae_fixed["rows"] if r["variance"] == "fixed" and r["rank"] == 5]
    assert full_rank and all(r["sgd"] == 0 for r in full_rank)


def test_vae_learnable_vs_fixed_verdicts_follow_the_numbers(vae_fixed):
    learn = vae_fixed["rows"][0]
    for r in vae_fixed["rows"][1:]:
        assert r["held_checker"] == (r["checker"] < learn["checker"])
        assert r["held_sgd"] == (r["sgd"] < learn["sgd"])


@pytest.fixture(scope="module")
def thresholds():
    return load("vae_beta_thresholds").main(fast=True, verbose=False)


def test_vae_beta_thresholds_checker_switches_at_every_tested_threshold(thresholds):
    assert thresholds["checker"]
    for r in thresholds["checker"]:
        assert r["measured"] == r["predicted"], r
        assert r["predicted"][0] - r["predicted"][1] == 1  # the bracket straddles one threshold


def test_vae_beta_thresholds_sgd_counts_and_kl(thresholds):
    assert thresholds["sgd"]
    for r in thresholds["sgd"]:
        assert r["measured"] == r["predicted"] or r.get("measured_300") == r["predicted"], r
        assert abs(r["kl_total"] - r["kl_total_pred"]) <= max(0.02, 0.1 * r["kl_total_pred"]), r
    counts = [r["predicted"] for r in thresholds["sgd"]]
    assert counts == sorted(counts)  # betas descend, so active counts ascend


@pytest.fixture(scope="module")
def correlation():
    return load("cvae_correlation").main(fast=True, verbose=False)


def test_cvae_correlation_measured_counts_and_kl_match_theory(correlation):
    rows = correlation["rows"]
    assert [r["a"] for r in rows] == sorted((r["a"] for r in rows), reverse=True)
    for r in rows:
        assert r["checker_verdict"] == "CONFIRMED"
        assert r["checker"] == r["predicted"] == r["sgd"], r
        assert abs(r["checker_kl"] - r["kl_pred"]) <= 1e-3 * max(1.0, r["kl_pred"])
        assert abs(r["sgd_kl"] - r["kl_pred"]) <= max(0.02, 0.1 * r["kl_pred"]), r
    assert rows[0]["a"] == 1.0 and rows[0]["predicted"] == 6  # y = x: everything collapses


def test_cvae_correlation_trend_is_measured_not_assumed(correlation):
    trend = correlation["trend"]
    assert trend["predicted"] and trend["kl_pred"]  # the theory's monotonicity
    assert trend["checker"] and trend["checker_kl"] and trend["sgd"] and trend["sgd_kl"]
    assert correlation["held"]


@pytest.fixture(scope="module")
def quadrant():
    return load("cvae_quadrant_digits").main(fast=True, verbose=False)


def test_cvae_quadrant_checker_counts_match_theory(quadrant):
    for r in quadrant["rows"]:
        assert r["checker_verdict"] == "CONFIRMED", r["digit"]
        assert r["checker"] == r["predicted"], r["digit"]


def test_cvae_quadrant_sgd_disagreements_are_slow_convergence(quadrant):
    for r in quadrant["rows"]:
        if r["sgd"] != r["predicted"]:  # only modes near the threshold, and longer training agrees
            assert r["near_threshold"] and r["sgd_long"] == r["predicted"], r


def test_cvae_quadrant_claim_verdict_follows_the_measured_correlation(quadrant):
    rho = quadrant["rho"]
    assert quadrant["held"] == (rho["checker"] < 0 and rho["sgd"] < 0)
    # the prediction itself: lower summed residual spectrum, at least as much collapse
    rows = sorted(quadrant["rows"], key=lambda r: r["top_sum"])
    assert rho["predicted"] < 0 and rows[0]["predicted"] >= rows[-1]["predicted"]


@pytest.fixture(scope="module")
def learned_decoder():
    return load("learned_decoder_variance").main(fast=True, verbose=False)


def test_learned_decoder_variance_checker_and_sgd_follow_the_prediction(learned_decoder):
    ex = learned_decoder
    assert ex["held_checker"] and ex["earlier"]
    for r in ex["rows"]:
        assert r["learned_verdict"] == r["fixed_verdict"] == "CONFIRMED"
        assert r["u_checker"] == pytest.approx(r["u_pred"], rel=1e-6)
        if "learned_sgd" in r:   # training lands near the predicted u and active count
            assert abs(r["learned_sgd"] - r["learned_pred"]) <= 1
            assert r["fixed_sgd"] == r["fixed_pred"]
    assert ex["u_err_sgd"] <= 0.12
    # the learned critical values are below the fixed-eta_dec ones: u > 1 on the raw digits
    assert np.all(ex["crit_learned"] < ex["crit_fixed"])

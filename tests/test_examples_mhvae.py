"""examples/mhvae_collapse.py runs (fast variant) and its measurements agree with Theorems 3 and 5.

``main(fast=True, verbose=False)`` returns the numbers it prints; every assertion compares what was
measured (exact checker, stochastic training, the exact loss at constructed matrices) with what the
closed forms predicted, or recomputes a verdict from the measured numbers -- never a number copied
from a run.
"""

import numpy as np
import pytest

from _examples import load


@pytest.fixture(scope="module")
def example():
    return load("mhvae_collapse")


@pytest.fixture(scope="module")
def mhvae(example):
    return example.main(fast=True, verbose=False)


def thm3_rows(res):
    return [r for rows in res["sweeps"].values() for r in rows]


def test_checker_confirms_theorem_3_at_every_point(mhvae):
    rows = thm3_rows(mhvae)
    assert rows and all(len(v) >= 2 for v in mhvae["sweeps"].values())
    for r in rows:
        assert r["checker_verdict"] == "CONFIRMED", r
        assert r["checker_z2"] == r["predicted"] == r["z2_range"][0] == r["z2_range"][1], r
        assert r["checker_rank1"] == r["rank1"] and r["checker_rank2"] == r["rank2"], r
        assert r["z1_range"][0] <= r["checker_z1"] <= r["z1_range"][1], r
        assert r["checker_informative"] == r["informative"], r
        assert abs(r["checker_kl"] - r["kl_pred"]) <= 1e-3 * max(1.0, r["kl_pred"]), r


def test_checker_confirms_theorem_5_ranges(mhvae):
    assert mhvae["thm5"]
    for r in mhvae["thm5"]:
        assert r["checker_verdict"] == "CONFIRMED", r
        assert r["checker_rank1"] == r["rank1"] and r["checker_rank2"] == r["rank2"], r
        assert r["z1_range"][0] <= r["checker_z1"] <= r["z1_range"][1], r
        assert r["z2_range"][0] <= r["checker_z2"] <= r["z2_range"][1], r
    assert mhvae["thm5_ok"]


def test_sgd_counts_match_theory_where_it_ran(mhvae):
    ran = [r for r in thm3_rows(mhvae) if r["sgd"] is not None]
    assert len(ran) >= 2
    for r in ran:
        assert r["sgd"] == r["predicted"] or r.get("sgd_300") == r["predicted"], r
        assert r["z1_range"][0] <= r["sgd_z1"] <= r["z1_range"][1], r


def test_sweep_points_keep_away_from_the_thresholds(example, mhvae):
    for name in ("beta2", "beta1"):
        crit = np.asarray(mhvae["thresholds"][name])
        for r in mhvae["sweeps"][name]:
            margin = np.min(np.abs(np.log(r["value"] / crit)))
            assert margin >= 0.5 * np.log(example.MIN_GAP) - 1e-3, (name, r["value"])


def test_claim_verdicts_follow_the_measured_numbers(example, mhvae):
    sweeps = mhvae["sweeps"]

    def trend(xs):
        return all(a >= b for a, b in zip(xs, xs[1:])) and xs[-1] < xs[0]

    def measured(name):
        rows = sweeps[name]
        return (trend([r["checker_z2"] for r in rows])
                and all(r["checker_z2"] == r["predicted"] and r["checker_rank1"] == r["rank1"]
                        and r["checker_verdict"] == "CONFIRMED" for r in rows))

    held = mhvae["held"]
    assert held["a"] == (measured("beta2") and measured("eta_dec"))
    assert held["b"] == measured("beta1")
    # the measured verdicts are the ones the closed form predicts along the same sweeps
    for name in sweeps:
        assert measured(name) == trend([r["predicted"] for r in sweeps[name]]), name

    low = [r for r in thm3_rows(mhvae) if r["rank1"] < example.D1]
    demo = mhvae["rotation"]
    expect_c = (any(r["checker_z1"] == 0 for r in low)
                and all(r["z1_range"][0] <= r["checker_z1"] <= r["z1_range"][1]
                        for r in thm3_rows(mhvae))
                and demo is not None and demo["rotated_zero"] < demo["constructed_zero"])
    assert held["c"] == expect_c
    assert held["c"] == any(r["z1_range"][0] == 0 for r in low)  # predicted: 0 is allowed


def test_rotation_reaches_both_ends_of_the_z1_range_at_the_optimal_loss(mhvae):
    demo = mhvae["rotation"]
    assert demo is not None and demo["rank1"] < 8
    scale = max(1.0, abs(demo["loss_pred"]))
    assert abs(demo["loss_constructed"] - demo["loss_pred"]) <= 1e-9 * scale
    assert abs(demo["loss_rotated"] - demo["loss_pred"]) <= 1e-9 * scale
    assert demo["constructed_zero"] == demo["z1_range"][1]
    assert demo["rotated_zero"] == demo["z1_range"][0]


def test_beta2_and_eta_dec_enter_only_through_their_product(mhvae):
    assert mhvae["b_equivalence"] <= 1e-12


def test_noise_only_z2_dims_where_every_z2_dim_is_active(mhvae):
    noisy = [r for r in thm3_rows(mhvae) if r["noise_regime"]]
    assert noisy  # the sweeps end past beta1 sigma1^2 = beta2 eta_dec^2
    for r in noisy:
        assert r["checker_z2"] == 0
        assert r["checker_informative"] == r["checker_rank1"]  # the rest carry z1's noise only

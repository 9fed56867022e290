"""examples/cvae_beta_eta_dec.py runs (fast variant); its measurements agree with the predictions.

As in tests/test_examples.py: ``main(fast=True, verbose=False)`` returns the numbers it prints, and
the assertions compare what was measured (exact checker, stochastic training) with what the closed
forms predicted at the same points, never with values copied from a run.
"""

import numpy as np
import pytest

from _examples import load


@pytest.fixture(scope="module")
def example():
    return load("cvae_beta_eta_dec")


@pytest.fixture(scope="module")
def hyper(example):
    return example.main(fast=True, verbose=False)


def rows(result, variance=None, param=None):
    return [r for s in result["sweeps"] for r in s["rows"]
            if variance in (None, r["variance"]) and param in (None, r["param"])]


def test_all_four_sweeps_cross_thresholds(hyper, example):
    assert {(s["variance"], s["param"]) for s in hyper["sweeps"]} == set(example.SWEEPS)
    for s in hyper["sweeps"]:
        values, t = s["values"], s["thresholds"]
        assert len(values) >= 2 and np.all(np.diff(values) > 0)
        # every point sits strictly between thresholds, and the predicted count is the number of
        # thresholds at or below it (collapse iff value >= threshold)
        for v, r in zip(values, s["rows"]):
            assert np.min(np.abs(v / t - 1.0)) > 0.01
            assert r["predicted"] == int(np.count_nonzero(t <= v)), r
        # the other hyperparameter stays at its default
        other = "eta_dec" if s["param"] == "beta" else "beta"
        assert all(r[other] == example.DEFAULTS[other] for r in s["rows"])
        assert [r[s["param"]] for r in s["rows"]] == pytest.approx(list(values))


def test_checker_confirms_every_point(hyper):
    for r in rows(hyper):
        assert r["checker_verdict"] == "CONFIRMED", r
        assert r["checker"] == r["predicted"], r
        lo, hi = r["zero_mean"]
        assert lo <= r["checker_zero_mean"] <= hi, r
        assert r["agrees_checker"]


def test_learnable_collapse_is_exact_and_fixed_is_a_range(hyper, example):
    for r in rows(hyper, "learnable"):
        lo, hi = r["zero_mean"]
        assert lo == hi == r["predicted"]  # collapsed to the prior: determined
        assert r["checker_prior"] == r["checker_zero_mean"] == r["checker"]
    for r in rows(hyper, "fixed"):
        lo, hi = r["zero_mean"]
        assert hi == example.D1 - r["rank"]  # the rank is determined, the zero-mean count is not
        if r["rank"] >= 1:
            assert lo == 0
        assert r["checker_prior"] == 0  # sigma != eta_enc: no dim can equal the prior


def test_sgd_agrees_with_the_prediction(hyper):
    measured = [r for r in rows(hyper) if r["sgd"] is not None]
    assert {r["variance"] for r in measured} == {"learnable", "fixed"}
    assert {r["param"] for r in measured} == {"beta", "eta_dec"}
    for r in measured:
        assert r["sgd"] == r["sgd_predicted"] or r["sgd_long"] == r["sgd_predicted"], r
        assert r["agrees_sgd"] == (r["sgd"] == r["sgd_predicted"])


def test_held_flags_follow_the_measured_numbers(hyper, example):
    for p, claim in hyper["claims"].items():
        parts = {}
        for v in ("learnable", "fixed"):
            rs = rows(hyper, v, p)
            parts[f"{v} checker"] = example.monotone([r["checker"] for r in rs])
            sgd = [r["sgd"] for r in rs if r["sgd"] is not None]
            if len(sgd) >= 2:
                parts[f"{v} SGD"] = example.monotone(sgd)
        assert claim["parts"] == parts
        assert claim["held"] == all(parts.values()) == hyper["held"][p]
        assert claim["predicted"]  # the theory's own monotonicity
        assert claim["held"]  # the measurements equal monotone predictions


def test_monotone_is_strict_about_the_claim(example):
    assert example.monotone([0, 3, 3, 8])
    assert not example.monotone([0, 4, 3, 8])  # falls once
    assert not example.monotone([5, 5, 5])  # flat: no evidence either way

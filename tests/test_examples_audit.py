"""The audit examples (fast variants): code that is not ours, trained the way a user would, is
judged AT OPTIMUM when it is right and fails with a message naming the bug when it is not."""

import re

import pytest

from _examples import load


def test_numpy_vae_converged_passes_and_the_kl_bug_is_named():
    res = load("audit_numpy_vae").main(fast=True, verbose=False)
    good, bug = res["rows"]
    assert good["assert_at_optimum"] == "passed" and good["assert_collapse_matches"] == "passed"
    assert good["relative_gap"] <= 1e-3
    assert all(c["exit_code"] == 0 and c["verdict"] == "AT OPTIMUM" for c in good["cli"])
    assert bug["assert_at_optimum"] == "failed"
    fitted = re.search(r"the weights are at the optimum for beta = ([0-9.]+),", bug["message"])
    assert fitted and abs(float(fitted.group(1)) - 2.0) <= 0.05  # the beta the bug trains at
    assert "twice the given value" in bug["message"] and "factor 1/2" in bug["message"]
    assert all(c["exit_code"] in (5, 6) for c in bug["cli"])
    assert res["held"]


@pytest.mark.slow  # needs torch (not in CI); the numpy example above is the fast check
def test_torch_vae_converged_passes_and_the_missing_bias_is_named():
    pytest.importorskip("torch")
    res = load("audit_torch_vae").main(fast=True, verbose=False)
    good, bad = res["rows"]
    assert good["assert_at_optimum"] == "passed", good.get("message")
    assert all(c["exit_code"] == 0 for c in good["cli"])
    assert bad["assert_at_optimum"] == "failed" and "no decoder_bias" in bad["message"]
    assert all(c["exit_code"] == 6 for c in bad["cli"])
    assert res["held"]


def test_learned_decoder_variance_loop_passes_and_the_normaliser_bug_is_caught():
    res = load("audit_learned_decoder").main(fast=True, verbose=False)
    (row,) = res["rows"]
    assert row["verdict"] == "AT OPTIMUM" and row["profiled_verdict"] == "AT OPTIMUM"
    assert row["relative_gap"] <= 1e-3 and row["u_error"] <= 0.01
    assert res["cli_code"] == 0 and "audit: AT OPTIMUM" in res["cli"]
    # log sigma_x instead of D log sigma_x: u ~ D = 64 times the best one for the weights
    assert 30 < res["bug_u_ratio"] < 70 and "best for these very weights" in res["bug_message"]
    assert res["held"]

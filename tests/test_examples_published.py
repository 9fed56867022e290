"""examples/published_spectrum.py: the counts it prints are the library's, and they match the
rule of Theorem 4 applied by hand to the five eigenvalues (eigenvalue > beta) and the paper."""

from _examples import load

EIGENVALUES = (5.117, 3.741, 3.253, 2.842, 2.567)


def test_published_spectrum_counts():
    out = load("published_spectrum").main(fast=True, verbose=False)
    for r in out["rows"]:
        assert r["active"] == sum(e > r["beta"] for e in EIGENVALUES)   # docs §3, by hand
        assert r["mse_kl_weight"] * 784 / 2 == __import__("pytest").approx(r["beta"])
        assert r["au"] <= r["active"] and r["kl"] <= r["active"]
    assert [r["active"] for r in out["rows"]] == [5, 4, 3, 2, 1, 0]   # Wang & Ziyin 2022
    assert out["held"]

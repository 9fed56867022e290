"""Shared pieces of the checker-parameterisation tests (test_checker_*_decoder.py): a PSD matrix
with given eigenvalues in a random basis, and the checks every parameterisation must pass -- the
envelope gradient, the alignment moves, the closed form confirmed, and the same optimum as the
former parameterisation."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from vaetheory import checker


def psd(rng, eigenvalues, D):
    """A D x D PSD matrix with the given non-zero eigenvalues in a random orthonormal basis."""
    Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
    P = Q[:, :len(eigenvalues)]
    return (P * np.asarray(eigenvalues, dtype=float)) @ P.T


def assert_envelope_gradient(prob, x):
    """The reduced loss's gradient at ``x`` equals central finite differences of its value (the
    envelope theorem at the eliminated blocks)."""
    _, g = prob.fun(x)
    eps = 1e-6
    fd = np.array([(prob.value(x + eps * e) - prob.value(x - eps * e)) / (2 * eps)
                   for e in np.eye(prob.n)])
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-6 * np.max(np.abs(fd)))


def assert_aligned(prob, rng, moves, points=5, draws=10):
    """At random points, ``prob.align`` never raises the loss, and the aligned point is the best
    of its orbit: no random rotation ``move(q, R)`` (``R(n)`` draws an n x n orthogonal matrix)
    of it has a lower loss (beyond round-off)."""
    def R(n):
        return ortho_group.rvs(n, random_state=rng) if n > 1 else np.ones((1, 1))
    for _ in range(points):
        x = rng.normal(size=prob.n)
        xa = prob.align(x)
        fa = prob.value(xa)
        assert fa <= prob.value(x)
        q = prob.unpack(xa)
        for _ in range(draws):
            for move in moves:
                assert prob.value(prob.pack(move(q, R))) >= fa - 1e-12 * abs(fa)


def assert_confirmed(name, sol):
    r = checker.check(sol, restarts=3, seed=2)
    assert r.verdict == "CONFIRMED", (name, r.reason)
    assert r.restarts_matching >= 1


def assert_same_optimum(sol, monkeypatch, switch):
    """The current path and the former one (``checker.<switch> = "encoder"``) reach the same loss
    (1e-10 relative) and singular values (1e-4 of their scale)."""
    def run():
        return checker.numerical_optimum(sol.model, sol.variance, sol.spectrum,
                                         *sol.latent_dims.values(), restarts=2, seed=4,
                                         **sol.at().hyper)
    new = run()
    monkeypatch.setattr(checker, switch, "encoder")
    old = run()
    assert new.loss == pytest.approx(old.loss, rel=1e-10, abs=1e-12)
    for m, v in old.singular_values.items():
        np.testing.assert_allclose(new.singular_values[m], v, atol=1e-4 * max(1.0, v.max()))
    return new, old

"""Streaming second moments and spectra against direct float64 computations."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import vaetheory as vt
from vaetheory.moments import accumulate_moments, empirical_moments, residual_spectrum


@settings(max_examples=30)
@given(n=st.integers(2, 60), d=st.integers(1, 7), chunk=st.integers(1, 70),
       center=st.booleans(), offset=st.sampled_from([0.0, 1.0, 1e4]), seed=st.integers(0, 999))
def test_chunked_moments_equal_direct(n, d, chunk, center, offset, seed):
    X = np.random.default_rng(seed).normal(size=(n, d)) + offset
    m = empirical_moments(X, center=center, chunk_rows=chunk)
    Y = X - X.mean(axis=0) if center else X
    want = Y.T @ Y / n
    np.testing.assert_allclose(m.matrix, want, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(want).max()))
    np.testing.assert_allclose(m.mean, X.mean(axis=0), rtol=1e-12, atol=1e-9)
    assert m.n_samples == n and m.centered == center


def test_centring_does_not_cancel_with_a_large_offset():
    """float32 data with a mean 1e4 times its spread: the shift keeps full float64 accuracy."""
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(5000, 3)) * [1.0, 0.1, 0.01] + 1e4).astype(np.float32)
    X64 = X.astype(np.float64)
    Y = X64 - X64.mean(axis=0)
    want = np.linalg.eigvalsh(Y.T @ Y / len(X))[::-1]
    got = vt.empirical_spectrum(X, chunk_rows=777).eigenvalues
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # the naive one-pass formula E[xx^T] - mu mu^T loses the small direction entirely
    naive = np.linalg.eigvalsh(X64.T @ X64 / len(X) - np.outer(X64.mean(0), X64.mean(0)))[::-1]
    assert abs(naive[-1] - want[-1]) / want[-1] > 1e-6


def test_float32_and_int_inputs_and_memmap(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.integers(0, 17, size=(400, 5)).astype(np.uint8)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    a = vt.empirical_spectrum(mm, chunk_rows=64).eigenvalues
    Y = X.astype(float) - X.mean(0)
    np.testing.assert_allclose(a, np.linalg.eigvalsh(Y.T @ Y / 400)[::-1], rtol=1e-10)


def test_images_are_flattened_row_wise():
    X = np.random.default_rng(2).normal(size=(50, 3, 4))
    np.testing.assert_allclose(vt.empirical_moments(X).matrix,
                               vt.empirical_moments(X.reshape(50, 12)).matrix)


def test_rank_and_padding():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 2)) @ rng.normal(size=(2, 6))
    sp = vt.empirical_spectrum(X)
    assert sp.rank == 2 and np.all(sp.eigenvalues[2:] == 0)
    assert np.array_equal(sp.padded(9)[6:], np.zeros(3))


def test_non_finite_values_are_counted_and_located():
    X = np.ones((10, 3))
    X[4, 1] = np.nan
    X[7, 2] = np.inf
    with pytest.raises(vt.DataError, match=r"2 non-finite.*row 4, column 1"):
        empirical_moments(X, chunk_rows=3)


def test_too_few_samples_and_width_mismatch():
    with pytest.raises(vt.DataError, match="at least 2"):
        empirical_moments(np.ones((1, 3)))
    assert empirical_moments(np.ones((1, 3)), center=False).n_samples == 1
    with pytest.raises(vt.DataError, match="columns"):
        accumulate_moments(iter([np.ones((2, 3)), np.ones((2, 4))]))


def test_residual_spectrum_equals_least_squares_residual_with_rank_deficient_x():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 3)) @ rng.normal(size=(3, 5))   # rank 3 in R^5
    y = x @ rng.normal(size=(5, 4)) + rng.normal(size=(500, 4)) * [1, 0.5, 0.1, 0]
    y[:, 3] = x[:, 0] * 2.0                                      # exactly predictable
    rs = vt.empirical_residual_spectrum(x, y, with_basis=True)
    xc, yc = x - x.mean(0), y - y.mean(0)
    coef, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    r = yc - xc @ coef
    want = np.linalg.eigvalsh(r.T @ r / 500)[::-1]
    np.testing.assert_allclose(rs.eigenvalues, np.where(want > rs.tolerance, want, 0), atol=1e-9)
    assert rs.rank == 3
    np.testing.assert_allclose(rs.regression @ xc.T, (xc @ coef).T, atol=1e-8)


def test_residual_spectrum_validates_x_dim():
    with pytest.raises(ValueError, match="x_dim"):
        residual_spectrum(np.eye(3), 3)

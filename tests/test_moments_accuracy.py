"""Moments at every scale, shape and conditioning (docs/theory.md §9), against independent
references: the mpmath reference (tests/_reference.py), exact powers of two, numpy on small data.
"""

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import _reference as ref
import vaetheory as vt
from vaetheory import moments as vm
from vaetheory.errors import NotRepresentableError, ResourceError


def _data(seed, n=60, d=4, offset=0.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(3.0, 0.4, d) + offset


def _ref_eigenvalues(X, center=True):
    return np.array([float(v) for v in ref.eigenvalues(X, center=center)])


# --------------------------------------------------------------------------------------------
# scale: data x 2^k -> everything exactly scaled


@settings(max_examples=40)
@given(k=st.integers(-1000, 1000), seed=st.integers(0, 50), center=st.booleans(),
       method=st.sampled_from(["gram", "qr"]))
def test_scaling_by_a_power_of_two_is_exact(k, seed, center, method):
    X = _data(seed)
    base = vt.empirical_spectrum(X, center=center, method=method)
    big = vt.empirical_spectrum(np.ldexp(X, k), center=center, method=method)
    # the same numbers in scaled units, the unit moved by exactly k
    assert big.scale_exponent == base.scale_exponent + k
    assert np.array_equal(big.scaled_eigenvalues, base.scaled_eigenvalues)
    assert np.array_equal(big.scaled_error, base.scaled_error)
    assert big.rank == base.rank == 4
    # theta in the data's units is exact wherever the data are representable
    assert np.array_equal(big.theta, np.ldexp(base.theta, k))
    # eigenvalues: exact, or a clear refusal when float64 cannot hold them (never 0 or inf)
    try:
        ev = big.eigenvalues
    except NotRepresentableError:
        assert not (-1022 < 2 * k + math.frexp(base.eigenvalues[-1])[1] - 1 and
                    2 * k + math.frexp(base.eigenvalues[0])[1] < 1024)
    else:
        assert np.array_equal(ev, np.ldexp(base.eigenvalues, 2 * k))
        assert np.all(ev > 0) and np.all(np.isfinite(ev))


@pytest.mark.parametrize("scale", [1e-300, 1e-200, 1e-160, 1e154, 1e300])
def test_extreme_scales_against_the_mpmath_reference(scale):
    """The issue's cases: 1e-200 gave rank 0, 1e-160 5e-4 off, 1e154 'did not converge'."""
    X = _data(3, n=40, d=3)
    want = np.sqrt(_ref_eigenvalues(X))
    sp = vt.empirical_spectrum(X * scale)
    np.testing.assert_allclose(sp.theta / scale, want, rtol=1e-13)
    assert sp.rank == 3


def test_unrepresentable_eigenvalues_raise_and_say_what_to_use():
    sp = vt.empirical_spectrum(_data(1) * 1e-200)
    assert np.all(sp.theta > 0)
    with pytest.raises(NotRepresentableError, match="underflow.*scaled_eigenvalues"):
        sp.eigenvalues
    with pytest.raises(NotRepresentableError, match="overflow"):
        vt.empirical_spectrum(_data(1) * 1e200).eigenvalues
    assert isinstance(NotRepresentableError("x"), vt.DataError)


def test_residual_and_standardized_spectra_are_scale_equivariant():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(80, 3))
    y = x @ rng.normal(size=(3, 2)) + rng.normal(size=(80, 2)) * [1.0, 0.1]
    for k in (-900, -300, 0, 400, 900):
        r0 = vt.empirical_residual_spectrum(x, y, method="qr")
        rk = vt.empirical_residual_spectrum(np.ldexp(x, k), np.ldexp(y, k), method="qr")
        assert rk.scale_exponent == r0.scale_exponent + k
        assert np.array_equal(rk.scaled_eigenvalues, r0.scaled_eigenvalues)
        np.testing.assert_array_equal(rk.regression, r0.regression)
        s0 = vt.empirical_spectrum(x, standardize=True)
        sk = vt.empirical_spectrum(np.ldexp(x, k), standardize=True)
        assert np.array_equal(sk.eigenvalues, s0.eigenvalues)  # unitless


def test_mixed_column_scales():
    """Columns 1e10 apart: both resolved (QR; variance ratio 1e-20). 1e300 apart: the small one
    is below every tolerance relative to the large one (rank 1), without under/overflow."""
    X = _data(7, n=50, d=2) * [1e5, 1e-5]
    sp = vt.empirical_spectrum(X)
    assert sp.rank == 2 and sp.provenance["method"] == "qr"
    np.testing.assert_allclose(sp.theta, np.sqrt(_ref_eigenvalues(X)), rtol=1e-9)
    X = _data(7, n=50, d=2) * [1e150, 1e-150]
    sp = vt.empirical_spectrum(X)
    assert sp.rank == 1
    np.testing.assert_allclose(sp.theta[0], np.std(X[:, 0]), rtol=1e-12)
    # a column at 1e150 beside a spread of 1e-150: centred at the raw scale first
    X = _data(7, n=50, d=2) * [1.0, 1e-150]
    X[:, 0] = 1e150
    for chunk in (7, 50):
        sp = vt.empirical_spectrum(X, chunk_rows=chunk)
        assert sp.rank == 1 and sp.eigenvalues[1] == 0.0
        np.testing.assert_allclose(sp.theta[0], np.sqrt(_ref_eigenvalues(X)[0]), rtol=1e-12)
    # 1e300 beside 1e-300: the means cannot share a float64 unit: a clear refusal, not NaN
    X[:, 0], X[:, 1] = 1e300, X[:, 1] * 1e-150
    with pytest.raises(vt.DataError, match="column magnitudes differ"):
        vt.empirical_spectrum(X)


# --------------------------------------------------------------------------------------------
# conditioning: the accurate path and the error estimate


def _with_spectrum(rel, n=500, seed=0):
    """Centred data whose covariance eigenvalues are exactly (in exact arithmetic) ``rel``."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(size=(n, len(rel)))
    Z -= Z.mean(axis=0)
    U, _, _ = np.linalg.svd(Z, full_matrices=False)
    Q, _ = np.linalg.qr(rng.normal(size=(len(rel), len(rel))))
    return (U * np.sqrt(np.asarray(rel) * n)) @ Q.T


@pytest.mark.parametrize("small", [1e-12, 1e-14, 1e-20])
def test_ill_conditioned_spectrum_against_the_reference(small):
    """The issue: 1e-12 came out 4e-4 off, 1e-14 2% off (D = 5, N = 500)."""
    X = _with_spectrum([1.0, 0.5, 0.3, 0.1, small])
    want = _ref_eigenvalues(X)
    gram = vt.empirical_spectrum(X, method="gram")
    auto = vt.empirical_spectrum(X)
    assert auto.provenance["method"] == "qr" and "method_reason" in auto.provenance
    err = np.abs(auto.eigenvalues - want)
    assert np.all(err <= auto.error)  # the estimate bounds the real error
    assert err[-1] / want[-1] < 1e-8 * (small / 1e-12) ** -0.5  # QR: sv error ~ eps s_1
    assert auto.rank == 5
    # the Gram path's own error estimate is honest too: it bounds what it got wrong
    assert np.all(np.abs(gram.eigenvalues - want) <= gram.error)


def test_well_conditioned_data_stay_on_the_fast_path():
    sp = vt.empirical_spectrum(_data(2, n=300, d=6))
    assert sp.provenance["method"] == "gram"
    assert sp.provenance["max_relative_error"] < 1e-12


def test_uncentred_data_with_a_large_mean_keep_their_rank():
    """--no-center with a 1e8 mean gave rank 1 (true 4)."""
    X = np.random.default_rng(3).normal(size=(500, 4)) + 1e8
    want = _ref_eigenvalues(X, center=False)
    gram = vt.empirical_spectrum(X, center=False, method="gram")
    sp = vt.empirical_spectrum(X, center=False)
    assert gram.rank == 1 and sp.rank == 4 and sp.provenance["method"] == "qr"
    err = np.abs(sp.eigenvalues - want)
    assert np.all(err <= sp.error) and np.all(err / want < 1e-7)


def test_mean_with_a_large_offset_is_exact():
    X = np.random.default_rng(4).normal(size=(3000, 3)) * [1.0, 1e-3, 1e-6] + 1e8
    m = vt.empirical_moments(X, chunk_rows=257)
    want = [math.fsum(X[:, j]) / X.shape[0] for j in range(3)]  # within 1 ulp of the exact mean
    np.testing.assert_allclose(m.mean, want, rtol=2 * np.finfo(float).eps, atol=0)
    M = ref.moment_matrix(X)
    exact = np.array([[float(M[i, j]) for j in range(3)] for i in range(3)])
    np.testing.assert_allclose(np.diag(m.matrix), np.diag(exact), rtol=1e-13)


def test_cvae_residual_of_an_exactly_linear_y_on_an_ill_conditioned_x():
    """x singular values 16, 14, 1.5e-7, y = x K: the Gram form reported e = 1.15 (true ~0)."""
    rng = np.random.default_rng(1)
    x = _with_spectrum(np.array([16.0, 14.0, 1.5e-7]) ** 2 / 400, n=400, seed=1)
    y = x @ rng.normal(size=(3, 4))
    y2 = y + rng.normal(size=y.shape) * [1.0, 0.1, 1e-3, 0.0]
    for yy in (y, y2):
        want = np.array([float(v) for v in ref.residual_eigenvalues(x, yy)])
        sp = vt.empirical_residual_spectrum(x, yy)
        assert sp.provenance["method"] == "qr"
        assert np.all(np.abs(sp.eigenvalues - want) <= sp.error)
        live = want > 1e-20
        np.testing.assert_allclose(sp.eigenvalues[live], want[live], rtol=1e-8)
        assert sp.rank == int(np.count_nonzero(live))
    # the Gram form is flagged, not trusted: its error estimate covers what it got wrong
    g = vt.empirical_residual_spectrum(x, y2, method="gram")
    want = np.array([float(v) for v in ref.residual_eigenvalues(x, y2)])
    assert np.all(np.abs(g.eigenvalues - want) <= g.error)


def test_qr_residual_equals_least_squares_with_rank_deficient_x():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 5))   # rank 3 in R^5
    y = x @ rng.normal(size=(5, 4)) + rng.normal(size=(300, 4)) * [1, 0.5, 0.1, 0]
    for method in ("gram", "qr"):
        rs = vt.empirical_residual_spectrum(x, y, method=method, with_basis=True)
        want = np.array([float(v) for v in ref.residual_eigenvalues(x, y, rtol="1e-20")])
        np.testing.assert_allclose(rs.eigenvalues, np.where(want > rs.tolerance, want, 0),
                                   atol=1e-9)
        xc, yc = x - x.mean(0), y - y.mean(0)
        coef, *_ = np.linalg.lstsq(xc, yc, rcond=None)
        np.testing.assert_allclose(rs.regression @ xc.T, (xc @ coef).T, atol=1e-8)


# --------------------------------------------------------------------------------------------
# shape: chunking, the dual path, memory


@settings(max_examples=25)
@given(rows=st.integers(1, 400), seed=st.integers(0, 99), method=st.sampled_from(["gram", "qr"]),
       center=st.booleans())
def test_chunk_size_does_not_change_the_result(rows, seed, method, center):
    X = _data(seed, n=401, d=5, offset=50.0)
    a = vt.empirical_moments(X, chunk_rows=rows, method=method, center=center)
    b = vt.empirical_moments(X, chunk_rows=401, method=method, center=center)
    top = np.abs(b.matrix).max()
    assert np.abs(a.matrix - b.matrix).max() <= 1e-13 * top
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-15)


@pytest.mark.parametrize("center", [True, False])
def test_dual_path_equals_the_primal_path(center):
    rng = np.random.default_rng(8)
    X = rng.normal(size=(40, 300)) * np.linspace(2, 0.1, 300) + 3.0
    primal = vm.spectrum_from_moments(vt.empirical_moments(X, center=center, method="qr"))
    for method, used in (("auto", "gram-dual"), ("qr", "svd-dual")):
        d = vt.empirical_spectrum(X, center=center, with_basis=True, method=method)
        assert d.provenance["method"] == used and d.scaled_matrix is None
        np.testing.assert_allclose(d.eigenvalues[:40], primal.eigenvalues[:40],
                                   atol=1e-12 * primal.eigenvalues[0])
        assert d.rank == primal.rank == (39 if center else 40)
        assert np.all(d.eigenvalues[40:] == 0)
        assert np.all(np.abs(d.eigenvalues - primal.eigenvalues) <= d.error + primal.error)
    dual = d
    # the basis spans the data: X_c = (X_c V) V^T
    Xc = X - X.mean(0) if center else X
    V = dual.basis
    np.testing.assert_allclose(Xc @ V @ V.T, Xc, atol=1e-10 * np.abs(Xc).max())
    np.testing.assert_allclose(np.sum((Xc @ V) ** 2, axis=0) / 40,
                               dual.eigenvalues[:V.shape[1]], rtol=1e-10)


def test_dual_residual_equals_least_squares():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(30, 20))
    y = rng.normal(size=(30, 50))
    sp = vt.empirical_residual_spectrum(x, y, with_basis=True)
    assert sp.provenance["method"] == "svd-dual"
    xc, yc = x - x.mean(0), y - y.mean(0)
    coef, *_ = np.linalg.lstsq(xc, yc, rcond=None)
    r = yc - xc @ coef
    want = np.linalg.svd(r, compute_uv=False) ** 2 / 30
    np.testing.assert_allclose(sp.eigenvalues[:want.size], want, atol=1e-12 * want[0])
    np.testing.assert_allclose(sp.regression @ xc.T, (xc @ coef).T, atol=1e-9)


def test_ill_conditioned_wide_data_take_the_svd():
    X = _with_spectrum([1.0, 0.1, 1e-14], n=3, seed=2)  # 3 x 3: use a wide embedding
    W = np.hstack([X, np.zeros((3, 5))]) @ np.linalg.qr(
        np.random.default_rng(3).normal(size=(8, 8)))[0]
    Z = np.vstack([W, -W.sum(axis=0)])  # 4 rows, 8 columns, centred
    sp = vt.empirical_spectrum(Z)
    assert sp.provenance["method"] == "svd-dual"
    want = _ref_eigenvalues(Z)
    assert np.all(np.abs(sp.eigenvalues - want) <= sp.error + 1e-30)


def test_wide_data_need_no_d_by_d_matrix(monkeypatch):
    """20 x 20000 under a small memory budget: the dual path; a D x D path is refused."""
    X = np.random.default_rng(10).normal(size=(20, 20000))
    monkeypatch.setenv("VAETHEORY_MEMORY_LIMIT", str(64 << 20))  # vaetheory._resources
    sp = vt.empirical_spectrum(X)
    assert sp.rank == 19
    tall = np.broadcast_to(np.float32(1.0), (20001, 20000))  # no memory behind it
    with pytest.raises(ResourceError, match=r"20000 x 20000 moment matrix needs about 8.9 GiB and 64.0 MiB is available"):
        vt.empirical_spectrum(tall)


def test_constant_columns_give_exact_zeros():
    X = _data(11, n=100, d=4)
    X[:, 1] = 0.1  # constant, not exactly representable: its mean would round
    sp = vt.empirical_spectrum(X, with_basis=True)
    assert sp.rank == 3 and sp.eigenvalues[-1] == 0.0 and sp.error[-1] == 0.0
    assert sp.provenance["method"] == "gram"
    assert np.allclose(np.abs(sp.basis[:, -1]), [0, 1, 0, 0])


# --------------------------------------------------------------------------------------------
# standardize and the dominant-column note


def test_standardize_is_the_correlation_spectrum():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(200, 4)) @ rng.normal(size=(4, 4)) * [1, 10, 100, 1000]
    want = np.linalg.eigvalsh(np.corrcoef(X.T))[::-1]
    for method in ("gram", "qr"):
        sp = vt.empirical_spectrum(X, standardize=True, method=method)
        np.testing.assert_allclose(sp.eigenvalues, want, rtol=1e-12)
        assert sp.provenance["standardized"] is True and sp.scale_exponent == 0
    X[:, 2] = 7.0
    sp = vt.empirical_spectrum(X, standardize=True)
    assert sp.rank == 3 and sp.eigenvalues[-1] == 0.0
    assert any("constant feature(s) (feature 3)" in n for n in sp.provenance["notes"])
    with pytest.raises(vt.ParameterError, match="centred"):
        vt.empirical_spectrum(X, standardize=True, center=False)


def test_a_dominant_column_is_noted():
    X = _data(13, n=100, d=3) * [100.0, 1.0, 1.0]
    notes = vt.empirical_spectrum(X).provenance.get("notes", [])
    assert any(n.startswith("feature 1 holds >99.99% of the total variance") and "--standardize" in n
               for n in notes)
    assert "notes" not in vt.empirical_spectrum(_data(13, n=100, d=3)).provenance
    assert "notes" not in vt.empirical_spectrum(X, standardize=True).provenance


# --------------------------------------------------------------------------------------------
# Dask


def test_dask_array_equals_single_machine():
    da = pytest.importorskip("dask.array")
    X = _data(14, n=3000, d=8, offset=1e6)
    for method in ("gram", "qr"):
        a = vt.empirical_spectrum(X, method=method)
        d = vt.empirical_spectrum(da.from_array(X, chunks=(700, 4)), method=method)
        np.testing.assert_allclose(d.eigenvalues, a.eigenvalues, rtol=1e-12)
        np.testing.assert_allclose(vt.empirical_moments(da.from_array(X, chunks=(500, 8))).mean,
                                   [math.fsum(c) / len(c) for c in X.T], rtol=1e-15)


def test_selection_of_a_dask_array_equals_the_numpy_one():
    da = pytest.importorskip("dask.array")
    X = _data(17, n=2000, d=16, offset=2.0)
    D = da.from_array(X, chunks=(300, 16))
    for kw in ({"cols": "2:12"}, {"conditional": True, "quadrant": "top-left"},
               {"conditional": True, "x_cols": "0:5"}):
        a = vt.load_spectrum(vt.Selection(X, **kw))
        b = vt.load_spectrum(vt.Selection(D, **kw))
        np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-12,
                                   atol=1e-13 * a.eigenvalues[0])
        assert b.kind == a.kind and b.rank == a.rank
    y = _data(18, n=2000, d=3)
    a = vt.load_spectrum(vt.Selection(X, conditional=True, y=y))
    b = vt.load_spectrum(vt.Selection(D, conditional=True, y=da.from_array(y, chunks=(500, 3))))
    np.testing.assert_allclose(b.eigenvalues, a.eigenvalues, rtol=1e-12)


def test_dask_partials_report_non_finite_values_in_global_rows():
    da = pytest.importorskip("dask.array")
    X = _data(15, n=100, d=3)
    X[73, 2] = np.nan
    with pytest.raises(vt.DataError, match="row 73, column 2"):
        vt.empirical_spectrum(da.from_array(X, chunks=(20, 3)))


def test_local_cluster_equals_single_machine(tmp_path):
    """A real distributed.LocalCluster (processes): the file's blocks go to the workers."""
    pytest.importorskip("distributed")
    from vaetheory._dask import connect

    X = _data(16, n=20000, d=12, offset=3.0)
    path = tmp_path / "x.npy"
    np.save(path, X)
    sel = vt.Selection(str(path))
    single = vt.load_spectrum(sel)
    with connect(workers=2) as client:
        dist = vt.load_spectrum(sel, client=client)
        qr = vt.load_spectrum(sel, client=client, method="qr")
    np.testing.assert_allclose(dist.eigenvalues, single.eigenvalues, rtol=1e-12)
    np.testing.assert_allclose(qr.eigenvalues, single.eigenvalues, rtol=1e-12)
    assert dist.provenance["source"] == single.provenance["source"]


def test_text_files_of_unknown_length_choose_the_path_while_reading(tmp_path):
    """A CSV's row count is unknown up front: rows are buffered until there are D of them."""
    X = np.random.default_rng(19).normal(size=(30, 200))
    for name, data in (("wide.csv", X), ("tall.csv", X[:, :20])):
        np.savetxt(tmp_path / name, data, delimiter=",")
        sp = vt.load_spectrum(vt.Selection(str(tmp_path / name)))
        want = vt.empirical_spectrum(data)
        assert sp.provenance["method"] == ("gram-dual" if name == "wide.csv" else "gram")
        np.testing.assert_allclose(sp.eigenvalues, want.eigenvalues, rtol=1e-12,
                                   atol=1e-14 * want.eigenvalues[0])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))

"""The streamed JSON of long sweeps (report.encode_points, vaetheory/_bulkjson.py,
logged.logged_block) writes exactly the bytes of the per-point dicts (report.point_dict +
json.dumps), for every setting, on grids that cross block boundaries, with either float
formatter (orjson when installed, plain repr)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vaetheory as vt
from vaetheory import _bulkjson as bj
from vaetheory import report
from vaetheory import settings as vs
from vaetheory.io import load_digits
from vaetheory.logged import logged, logged_block


_PAIR = []


@pytest.fixture(params=["fast", "repr"])
def formatter(request, monkeypatch):
    """Both float formatters: orjson's (skipped when not installed) and plain repr."""
    if request.param == "fast":
        pytest.importorskip("orjson")
        if not _PAIR:
            monkeypatch.setattr(bj, "_FAST", [])   # decide afresh (the probes), once
            _PAIR.append(bj._fast())
        monkeypatch.setattr(bj, "_FAST", [_PAIR[0]])
        assert bj._fast_floats() is not None, "orjson installed but disagrees with repr"
    else:
        monkeypatch.setattr(bj, "_FAST", [(None, None)])
    return request.param


@pytest.fixture(scope="module")
def spectra():
    X, _ = load_digits()
    X = X / 16.0
    out = {}
    for center in (True, False):
        out["data", center] = vt.empirical_spectrum(X, center=center, with_basis=not center)
        out["residual", center] = vt.empirical_residual_spectrum(
            X[:, :32], X[:, 32:], center=center, with_basis=not center)
    out["data", None] = vt.spectrum_from_eigenvalues(out["data", True].eigenvalues)
    return out


B = np.linspace(0.05, 40.0, 23)   # crosses the collapse of most modes at latent dim 6
CASES = [
    ("vae", "learnable", "fixed", "data", dict(dims=[6], beta=B)),
    ("vae", "learnable", "fixed", "data", dict(dims=[2, 70], beta=B[::3], eta_dec=[0.3, 1.0])),
    ("vae", "fixed", "fixed", "data", dict(dims=[6], sigma=[0.5], beta=B)),
    ("vae", "fixed", "fixed", "data", dict(dims=[4], sigma=[0.5, 0.5, 1.0, 2.0], beta=B)),
    ("vae", "fixed", "fixed", "data", dict(dims=[3], sigma=[0.2, 1.0, 3.0], beta=B,
                                           eta_enc=[0.5, 2.0])),
    ("cvae", "learnable", "fixed", "residual", dict(dims=[5], beta=B)),
    ("cvae", "fixed", "fixed", "residual", dict(dims=[5], sigma=[0.7], beta=B)),
    ("mhvae", "sigma2-learnable", "fixed", "data", dict(dims=[4], dims2=[6], beta2=B,
                                                        sigma1=[0.5])),
    ("mhvae", "sigma2-learnable", "fixed", "data", dict(dims=[5], dims2=[3], beta1=B[::2],
                                                        beta2=[1.0, 9.0])),
    ("mhvae", "sigma2-fixed", "fixed", "data", dict(dims=[6], dims2=[3], beta1=B,
                                                    sigma2=[0.3])),
    ("vae", "learnable", "learned", "data", dict(dims=[64], beta=np.linspace(0.5, 3.0, 19))),
    ("vae", "learnable", "learned", "data", dict(dims=[6], beta=B)),
    ("vae", "fixed", "learned", "data", dict(dims=[6], sigma=[0.5], beta=B)),
    ("cvae", "learnable", "learned", "residual", dict(dims=[32], beta=np.linspace(0.5, 3, 19))),
    ("cvae", "fixed", "learned", "residual", dict(dims=[4], sigma=[0.3, 1.0, 1.0, 2.0],
                                                 beta=B)),
]


def _solve(spectra, case, center):
    model, variance, decoder, kind, kw = case
    kw = {k: np.asarray(v, dtype=float) if k not in ("dims", "dims2") else v
          for k, v in kw.items()}
    setting = vs.get(model, variance, decoder)
    req = vs.Request.build(setting, latent_dims=kw.pop("dims"), latent_dims2=kw.pop("dims2", None),
                           **kw)
    return req.solve(spectra[kind, center])


_WANT = {}


def _dict_texts(sol, delta):
    return [report._indent(report.dumps(report.point_dict(sol, idx, delta)), 4)
            for idx in report.grid_indices(sol)]


@pytest.mark.parametrize("center", [True, False], ids=["centred", "uncentred"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(c[:3]) + f"-{sorted(c[4])}")
def test_streamed_points_equal_the_dicts_point_for_point(spectra, case, center, formatter):
    key = (CASES.index(case), center)
    if key not in _WANT:   # the dicts (the slow path) once for both formatters
        _WANT[key] = [(_dict_texts(sol, 0.01), _dict_texts(sol, None), [
            report._indent(report.dumps(report.thresholds_point(sol, idx)), 4)
            for idx in report.grid_indices(sol)]) for sol in _solve(spectra, case, center)]
    for sol, (want, plain, thresholds) in zip(_solve(spectra, case, center), _WANT[key]):
        n = int(np.prod(sol.grid_shape))
        for block in (7, n + 5):   # boundaries inside the grid, and one block
            got = list(report.encode_points(sol, delta=0.01, block=block, strict=True))
            assert got == want
        joined = list(report.encode_points(sol, delta=0.01, block=7, strict=True, joined=True))
        assert [p.n_points for p in joined] == [min(7, n - s) for s in range(0, n, 7)]
        assert ",\n    ".join(p.text for p in joined) == ",\n    ".join(want)
        assert list(report.encode_points(sol, block=5, strict=True)) == plain
        assert list(report.encode_thresholds(sol, block=6, strict=True)) == thresholds


def test_a_given_spectrum_and_the_whole_document(spectra, formatter):
    sols = _solve(spectra, CASES[3], None)
    doc = report.predict_document(sols, {"source": "x"}, {"model": "vae"})
    head = report.predict_document(sols, {"source": "x"}, {"model": "vae"}, points=False)
    pieces = []
    n = report.write_json(pieces.append, head, (p for s in sols for p in report.encode_points(
        s, delta=0.01, block=6, strict=True, joined=True)))
    assert n == len(doc["points"]) == len(B)
    assert "".join(pieces) == report.dumps(doc)


@pytest.mark.parametrize("center", [True, False], ids=["centred", "uncentred"])
@pytest.mark.parametrize("case", [CASES[3], CASES[8], CASES[9]], ids=["tied", "mh", "mhfixed"])
def test_logged_block_is_logged_at_every_point(spectra, case, center):
    for sol in _solve(spectra, case, center):
        lb = logged_block(sol, 0.01, 2, 9)
        for row, flat in enumerate(range(2, 9)):
            idx = tuple(int(i) for i in np.unravel_index(flat, sol.grid_shape))
            one = logged(sol.at(idx), 0.01)
            assert one.rate == lb.rate[row] and one.distortion == lb.distortion[row]
            for z, lat in one.latents.items():
                b = lb.latents[z]
                assert np.array_equal(lat.kl, b.kl[row])
                assert lat.total_kl == b.total_kl[row]
                assert np.array_equal(lat.posterior_std, b.posterior_std[row])
                if lat.mean_variance is None:
                    assert b.mean_variance is None
                else:
                    assert np.array_equal(lat.mean_variance, b.mean_variance[row])
                for rule, c in lat.counts.items():
                    lo, hi = b.counts[rule][0][row], b.counts[rule][1][row]
                    assert c == (lo if lo == hi else [lo, hi])
                assert (lat.kl_range is not None) == bool(b.free[row])


def _json_number(x):
    return json.dumps(x if math.isfinite(x) else None)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1,
                max_size=40), st.integers(1, 4))
def test_float_strings_are_what_json_writes(values, repeat):
    v = np.repeat(np.asarray(values, dtype=np.float64), repeat)   # runs of equal values
    want = [_json_number(float(x)) for x in v]
    pair = bj._fast()   # decided once (the probes), kept after the test
    saved = list(bj._FAST)
    for fast in ([pair], [(None, None)]):
        bj._FAST[:] = fast
        try:
            got = bj.column_strings("f", v)
        finally:
            bj._FAST[:] = saved
        assert (got == want) if isinstance(got, list) else (want == [got] * v.size)


def test_float_strings_on_every_exponent():
    """Every decade's edges, subnormals and the switch points of repr's two layouts."""
    e = np.arange(-323, 309)
    v = np.concatenate([10.0 ** e, np.nextafter(10.0 ** e, 0), np.nextafter(10.0 ** e, np.inf),
                        -(10.0 ** e), 1.2345678901234567 * 10.0 ** np.arange(-300, 300)])
    v = v[np.isfinite(v)]
    want = [repr(float(x)) for x in v]
    assert bj._repr_floats(v) == want
    if bj._fast_floats() is not None:
        assert bj._fast_floats()(v) == want


leaf = st.one_of(
    st.builds(lambda: "f"), st.builds(lambda: "i"), st.builds(lambda: "b"), st.builds(lambda: "c"))


@pytest.mark.parametrize("fast", ["fast", "repr"])
@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 9), data=st.data())
def test_block_text_of_a_tree_is_json_dumps_of_each_row(fast, m, data):
    """Random trees of columns, constants and optional / alternative parts (the forms a point
    can take) against json.dumps of the value of each row built by hand."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2 ** 32 - 1)))

    def node(depth):
        kind = data.draw(st.sampled_from(["f", "i", "b", "c", "v", "dict", "list", "opt", "alt"]
                                         if depth < 3 else ["f", "i", "b", "c", "v"]))
        if kind == "v":
            d = data.draw(st.integers(0, 3))
            M = rng.choice([0.0, -0.0, 2.5, np.nan, -np.inf, 1e-5, 7.0e-300, 1e16], size=(m, d))
            if data.draw(st.booleans()):
                M[:] = M[:1]   # the same list in every row
            return bj.Vec(M), lambda r: [float(x) if math.isfinite(x) else None for x in M[r]]
        if kind == "f":
            v = rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, 1e-7, 3.0e20], size=m)
            return bj.Col("f", v), lambda r: float(v[r]) if math.isfinite(v[r]) else None
        if kind == "i":
            v = rng.integers(-3, 3, size=m)
            return bj.Col("i", v), lambda r: int(v[r])
        if kind == "b":
            v = rng.integers(0, 2, size=m).astype(bool)
            return bj.Col("b", v), lambda r: bool(v[r])
        if kind == "c":
            c = data.draw(st.sampled_from(["a §7 \"q\"", 3, None, [], {}, {"k": [1, 2.5]}]))
            return bj.Const(c), lambda r: c
        if kind in ("opt", "alt"):
            mask = rng.integers(0, 2, size=m).astype(bool)
            a, fa = node(depth + 1)
            b, fb = node(depth + 1)
            return bj.Alt(mask, a, b), lambda r: fa(r) if mask[r] else fb(r)
        parts = [node(depth + 1) for _ in range(data.draw(st.integers(0, 3)))]
        opts = [rng.integers(0, 2, size=m).astype(bool) if data.draw(st.booleans()) else None
                for _ in parts]
        wrap = [p if o is None else bj.Opt(o, p) for (p, _), o in zip(parts, opts)]
        keep = [(lambda r, o=o: o is None or o[r]) for o in opts]
        if kind == "list":
            return wrap, lambda r: [f(r) for (_, f), k in zip(parts, keep) if k(r)]
        keys = [f"k{i}" for i in range(len(parts))]
        return (dict(zip(keys, wrap)),
                lambda r: {key: f(r) for key, (_, f), k in zip(keys, parts, keep) if k(r)})

    tree, value = node(0)
    want = [json.dumps(value(r), indent=2).replace("\n", "\n    ") for r in range(m)]
    pair = bj._fast()
    saved = list(bj._FAST)
    bj._FAST[:] = [pair] if fast == "fast" else [(None, None)]
    try:
        assert bj.texts(tree, m, 4) == want
        text, head, tail = bj.block_text(tree, m, 4, ",\n")
    finally:
        bj._FAST[:] = saved
    assert text == ",\n".join(want) and head == want[0] and tail == want[-1]


@pytest.mark.parametrize("n", [1, 255, 256, 3000])
def test_dumps_with_long_float_lists_is_json_dumps(n, formatter):
    rng = np.random.default_rng(n)
    v = rng.choice([0.0, -0.0, 1.5, np.nan, np.inf, 1e-6, 123456.789, 1e300], size=n)
    doc = {"settings": {"grid": {"beta": v.tolist(), "eta": v, "ints": list(range(n))},
                        "nested": [[float(x) for x in v], (1, 2.5)],
                        "f32": np.clip(v, -1e30, 1e30).astype(np.float32)},
           "mixed": [1.0] * n + [2], "s": "§", "none": None}
    assert report.dumps(doc) == json.dumps(report._clean(doc), indent=2, allow_nan=False)

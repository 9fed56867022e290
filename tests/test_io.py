"""Files -> arrays: every format, every error path, streaming, column selections, bundled data.

Every file is written under pytest's ``tmp_path``; nothing else on disk is touched.
"""

import gzip
import hashlib
import os

import numpy as np
import pytest

from vaetheory import io
from vaetheory._validation import DataError
from vaetheory.moments import accumulate_moments, empirical_moments


def raises_one_line(func, *args, match=None, exc=DataError, **kwargs):
    """Call, expect ``exc`` matching ``match``; the message must be one line. Returns it."""
    with pytest.raises(exc, match=match) as info:
        func(*args, **kwargs)
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------
# binary formats


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.uint8])
def test_npy_is_a_readonly_memmap_with_the_file_dtype(tmp_path, dtype):
    X = (np.random.default_rng(0).normal(size=(30, 4)) * 10 + 50).astype(dtype)
    np.save(tmp_path / "x.npy", X)
    got = io.load_array(tmp_path / "x.npy")
    assert isinstance(got, np.memmap) and got.dtype == dtype and got.shape == (30, 4)
    assert not got.flags.writeable
    np.testing.assert_array_equal(got, X)


@pytest.mark.parametrize("shape", [(5, 3, 4), (6, 4, 4, 3)])
def test_image_npy_is_flattened_row_wise_as_a_view(tmp_path, shape):
    imgs = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    np.save(tmp_path / "i.npy", imgs)
    got = io.load_array(tmp_path / "i.npy")
    assert isinstance(got, np.memmap) and got.dtype == np.uint8
    assert got.base is not None and not got.flags.owndata  # a view of the map, not a copy
    np.testing.assert_array_equal(got, imgs.reshape(shape[0], -1))


def test_fortran_ordered_images_are_still_flattened_row_wise(tmp_path):
    imgs = np.asfortranarray(np.arange(60, dtype=np.float32).reshape(5, 3, 4))
    np.save(tmp_path / "f.npy", imgs)
    want = np.ascontiguousarray(imgs).reshape(5, 12)
    np.testing.assert_array_equal(io.load_array(tmp_path / "f.npy"), want)
    n, chunks = io.iter_chunks(tmp_path / "f.npy", chunk_rows=2)
    assert n == 5
    np.testing.assert_array_equal(np.concatenate(list(chunks)), want)


def test_vector_npy_is_refused_with_a_reshape_hint(tmp_path):
    # scikit-learn's convention: a 1-d array is ambiguous (N samples of 1 feature, or 1 sample)
    np.save(tmp_path / "v.npy", np.arange(7.0))
    msg = raises_one_line(io.load_array, tmp_path / "v.npy", match=r"v\.npy' holds a 1-d array")
    assert "7 values" in msg and "X.reshape(-1, 1)" in msg and "X.reshape(1, -1)" in msg
    np.savez(tmp_path / "v.npz", a=np.arange(3))
    raises_one_line(io.load_array, tmp_path / "v.npz", match="1-d array.*reshape")
    raises_one_line(lambda: io.Selection(np.arange(5.0)).open(), match="1-d array.*reshape")


def test_npz_with_and_without_key(tmp_path):
    a, b = np.ones((3, 2), np.float32), np.arange(15, dtype=np.int16).reshape(3, 5)
    np.savez(tmp_path / "one.npz", data=a)
    got = io.load_array(tmp_path / "one.npz")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, a)
    np.testing.assert_array_equal(io.load_array(tmp_path / "one.npz", key="data"), a)
    np.savez_compressed(tmp_path / "two.npz", x=a, y=b)
    got = io.load_array(tmp_path / "two.npz", key="y")
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, b)


# ------------------------------------------------------------------------------------------
# text formats

TABLE = [[1, 2, 3], [4, 5.5, -6e-3]]


@pytest.mark.parametrize("name,text", [
    ("plain.csv", "1,2,3\n4,5.5,-6e-3\n"),
    ("header.csv", "a,b,c\n1,2,3\n4,5.5,-6e-3\n"),
    ("quoted_header.csv", '"a","b","c"\n1, 2, 3\n4, 5.5, -6e-3\n'),
    ("crlf_bom.csv", "\ufeffa,b,c\r\n1,2,3\r\n4,5.5,-6e-3\r\n"),
    ("header.tsv", "a\tb\tc\n1\t2\t3\n4\t5.5\t-6e-3\n"),
    ("plain.tsv", "1\t2\t3\n4\t5.5\t-6e-3\n"),
    ("spaces.txt", "1 2  3\n\n4\t5.5 -6e-3\n"),
    ("header.txt", "# written by hand\na b c\n1 2 3\n4 5.5 -6e-3\n"),
    ("commas.txt", "1,2,3\n4,5.5,-6e-3\n"),
    ("spaces.csv", "1 2 3\n4 5.5 -6e-3\n"),
    ("tabs.csv", "a\tb\tc\n1\t2\t3\n4\t5.5\t-6e-3\n"),
])
def test_text_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text, encoding="utf-8", newline="")
    got = io.load_array(tmp_path / name)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, TABLE)


def test_single_column_csv_with_spaces_in_its_header(tmp_path):
    got = io.load_array(write(tmp_path / "c.csv", "pixel value\n1\n2\n3\n"))
    np.testing.assert_array_equal(got, [[1], [2], [3]])


@pytest.mark.parametrize("name", ["g.csv.gz", "g.tsv.gz", "g.txt.gz"])
def test_gzip_text(tmp_path, name):
    sep = {"g.csv.gz": ",", "g.tsv.gz": "\t", "g.txt.gz": " "}[name]
    with gzip.open(tmp_path / name, "wt") as fh:
        fh.write(f"x{sep}y\n1{sep}2\n3{sep}4\n")
    np.testing.assert_array_equal(io.load_array(tmp_path / name), [[1, 2], [3, 4]])


# ------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("name,text,pattern", [
    ("bad.csv", "a,b\n1,2\n3,oops\n",
     r"bad\.csv' line 3, column 2 \('b'\): non-numeric value 'oops'"),
    ("bad_nohdr.csv", "1,2\n3,x\n", r"line 2, column 2: non-numeric"),
    ("hole.csv", "a,b\n1,2\n3,\n", r"line 3, column 2 \('b'\): empty value"),
    ("rag.csv", "1,2\n3\n", r"rag\.csv' line 2: 1 values, expected 2"),
    ("raghdr.tsv", "a\tb\n1\t2\t3\n", r"line 2: 3 values, expected 2 as on the header"),
    ("empty.csv", "", r"empty\.csv' is empty"),
    ("blank.txt", "\n  \n# only a comment\n", r"is empty"),
    ("hdr.csv", "a,b\n", r"header line but no data rows"),
])
def test_text_errors_name_file_line_and_column(tmp_path, name, text, pattern):
    write(tmp_path / name, text)
    raises_one_line(io.load_array, tmp_path / name, match=pattern)


def test_error_deep_in_a_large_text_file_is_raised_while_streaming(tmp_path, monkeypatch):
    monkeypatch.setattr(io._text, "BLOCK_BYTES", 512)  # text is read and parsed in 512-byte blocks
    lines = ["a,b"] + [f"{i},{2 * i}" for i in range(500)]
    lines[401] = "400,??"  # file line 402
    path = write(tmp_path / "big.csv", "\n".join(lines) + "\n")
    n, chunks = io.iter_chunks(path, chunk_rows=64)
    assert n is None
    first = next(chunks)  # the first blocks are fine
    assert first.shape == (64, 2)
    raises_one_line(lambda: list(chunks),
                    match=r"line 402, column 2 \('b'\): non-numeric value '\?\?'")


def test_binary_garbage_in_a_text_file(tmp_path):
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x01\x02")
    raises_one_line(io.load_array, tmp_path / "bin.csv", match=r"bin\.csv'.*not UTF-8")
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip at all")
    raises_one_line(io.load_array, tmp_path / "bad.csv.gz", match=r"bad\.csv\.gz'")


def test_file_errors(tmp_path):
    raises_one_line(io.load_array, tmp_path / "missing.npy", match=r"missing\.npy'.*no such file")
    raises_one_line(io.load_array, tmp_path, match="directory")
    (tmp_path / "x.xlsx").write_bytes(b"PK")
    msg = raises_one_line(io.load_array, tmp_path / "x.xlsx", match=r"x\.xlsx.*unsupported")
    for ext in io.SUPPORTED:
        assert ext in msg
    raises_one_line(io.iter_chunks, tmp_path / "nothing.csv", match="no such file")


def test_permission_denied(tmp_path, monkeypatch):
    path = write(tmp_path / "secret.csv", "1,2\n")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads anything: simulate the check
        monkeypatch.setattr(io.os, "access", lambda p, mode: False)
    path.chmod(0)
    try:
        raises_one_line(io.load_array, path, match=r"secret\.csv.*permission denied")
    finally:
        path.chmod(0o600)


def test_corrupt_and_non_numeric_npy(tmp_path):
    (tmp_path / "junk.npy").write_bytes(b"not really numpy")
    raises_one_line(io.load_array, tmp_path / "junk.npy", match=r"junk\.npy' as \.npy: not a NumPy")
    np.save(tmp_path / "full.npy", np.zeros((1000, 3)))
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:500])
    raises_one_line(io.load_array, tmp_path / "cut.npy", match=r"cut\.npy'.*truncated")
    (tmp_path / "head.npy").write_bytes(raw[:20])
    raises_one_line(io.load_array, tmp_path / "head.npy", match=r"head\.npy' as \.npy")
    cases = {
        "obj.npy": (np.array([1, None], dtype=object), "Python objects"),
        "str.npy": (np.array(["a", "b"]), "strings"),
        "cplx.npy": (np.zeros(3, complex), "complex"),
        "rec.npy": (np.zeros(3, dtype=[("a", float), ("b", int)]), "structured"),
        "scalar.npy": (np.float64(3.0), "single number"),
        "none.npy": (np.zeros((0, 3)), "empty"),
    }
    for name, (arr, what) in cases.items():
        np.save(tmp_path / name, arr, allow_pickle=True)
        raises_one_line(io.load_array, tmp_path / name, match=rf"/{name}'.*{what}")


def test_npz_errors_list_keys(tmp_path):
    np.savez(tmp_path / "two.npz", x=np.ones(2), y=np.zeros(2))
    msg = raises_one_line(io.load_array, tmp_path / "two.npz", match=r"two\.npz' holds 2 arrays")
    assert "x, y" in msg and "key" in msg
    raises_one_line(io.load_array, tmp_path / "two.npz", key="z", match=r"no array 'z'.*x, y")
    raises_one_line(io.iter_chunks, tmp_path / "two.npz", match="x, y")
    (tmp_path / "junk.npz").write_bytes(b"garbage")
    raises_one_line(io.load_array, tmp_path / "junk.npz", match=r"junk\.npz' as \.npz")
    np.savez(tmp_path / "obj.npz", a=np.array([1, None], dtype=object))
    raises_one_line(io.load_array, tmp_path / "obj.npz", match="Python objects")
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    raises_one_line(io.load_array, tmp_path / "x.npy", key="a", match=r"only to \.npz")


# ------------------------------------------------------------------------------------------
# streaming


def _formats(tmp_path, X):
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "img.npy", X.reshape(X.shape[0], 2, -1))
    np.savez(tmp_path / "x.npz", X=X, other=X[:3])
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c,d,e,f", comments="")
    np.savetxt(tmp_path / "x.txt", X)
    np.savetxt(tmp_path / "x.tsv.gz", X, delimiter="\t")
    return [("x.npy", None), ("img.npy", None), ("x.npz", "X"), ("x.csv", None),
            ("x.txt", None), ("x.tsv.gz", None)]


def test_iter_chunks_reassembles_load_array_and_feeds_accumulate_moments(tmp_path):
    X = np.random.default_rng(1).normal(size=(257, 6)) * np.arange(1, 7) + 3
    want = empirical_moments(X)
    for name, key in _formats(tmp_path, X):
        whole = io.load_array(tmp_path / name, key=key)
        np.testing.assert_allclose(whole, X, rtol=1e-15)  # savetxt's %.18e round-trips float64
        n, chunks = io.iter_chunks(tmp_path / name, key=key, chunk_rows=50)
        blocks = list(chunks)
        assert [b.shape[0] for b in blocks] == [50] * 5 + [7], name
        assert n == (None if name.endswith(("csv", "txt", "gz")) else 257), name
        np.testing.assert_array_equal(np.concatenate(blocks), whole)

        seen = []
        n, chunks = io.iter_chunks(tmp_path / name, key=key, chunk_rows=50)
        m = accumulate_moments(chunks, progress=seen.append)
        assert m.n_samples == 257 and sum(seen) == 257, name
        np.testing.assert_allclose(m.matrix, want.matrix, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(m.mean, want.mean, rtol=1e-12)


def test_iter_chunks_default_chunking_and_memmap_views(tmp_path):
    X = np.arange(40, dtype=np.int16).reshape(10, 4)
    np.save(tmp_path / "x.npy", X)
    n, chunks = io.iter_chunks(tmp_path / "x.npy")
    blocks = list(chunks)
    assert n == 10 and len(blocks) == 1 and blocks[0].dtype == np.int16
    assert isinstance(blocks[0], np.memmap)
    n, chunks = io.iter_chunks(tmp_path / "x.npy", chunk_rows=3)
    assert [b.shape for b in chunks] == [(3, 4)] * 3 + [(1, 4)]
    for bad in (0, -1, 2.5, True, "x"):
        with pytest.raises(ValueError, match="chunk_rows"):
            io.iter_chunks(tmp_path / "x.npy", chunk_rows=bad)


def test_inputs_are_never_modified(tmp_path):
    X = np.random.default_rng(2).normal(size=(20, 6))
    files = [tmp_path / name for name, _ in _formats(tmp_path, X)]
    def state(p):
        return hashlib.sha256(p.read_bytes()).hexdigest(), os.stat(p).st_mtime_ns

    before = {p: state(p) for p in files}
    listing = sorted(os.listdir(tmp_path))
    for p in files:
        key = "X" if p.suffix == ".npz" else None
        arr = io.load_array(p, key=key)
        if isinstance(arr, np.memmap):
            with pytest.raises(ValueError):
                arr[0, 0] = 1.0  # read-only map
        n, chunks = io.iter_chunks(p, key=key, chunk_rows=7)
        accumulate_moments(chunks)
    after = {p: state(p) for p in files}
    assert after == before
    assert sorted(os.listdir(tmp_path)) == listing  # nothing written beside them


# ------------------------------------------------------------------------------------------
# column selections


@pytest.mark.parametrize("spec,want", [
    ("0:3,5", [0, 1, 2, 5]),
    ("-2:", [6, 7]),
    (":2", [0, 1]),
    ("-1", [7]),
    ("0:8:3", [0, 3, 6]),
    (" 7 , 0 ", [7, 0]),
    (":", list(range(8))),
    ("2:-4", [2, 3]),
])
def test_parse_columns(spec, want):
    got = io.parse_columns(spec, 8)
    assert got.dtype == np.intp
    assert got.tolist() == want


@pytest.mark.parametrize("spec,pattern", [
    ("8", "out of range"),
    ("-9", "out of range"),
    ("0:9", "end 9 is out of range"),
    ("3:2", "selects no columns"),
    ("5:5", "selects no columns"),
    ("a", "not an integer"),
    ("0:2,1", "column 1 more than once"),
    ("0-3", r"'0:4'"),
    ("1,,2", "empty item"),
    ("", "empty column selection"),
    ("0:4:0", "step"),
    ("0:1:2:3", "a:b"),
])
def test_parse_columns_errors(spec, pattern):
    raises_one_line(io.parse_columns, spec, 8, exc=ValueError, match=pattern)


def test_quadrants_by_hand():
    # 4x4 image, pixels numbered row by row:  0  1  2  3 /  4  5  6  7 /  8  9 10 11 / 12 13 14 15
    expected = {"top-left": [0, 1, 4, 5], "top-right": [2, 3, 6, 7],
                "bottom-left": [8, 9, 12, 13], "bottom-right": [10, 11, 14, 15]}
    for q, want in expected.items():
        x, y = io.quadrant_columns((4, 4), q)
        assert x.tolist() == want
        assert y.tolist() == sorted(set(range(16)) - set(want))
    # odd sizes: floor(H/2) x floor(W/2) from the corner; the middle row and column go to y
    x, y = io.quadrant_columns((3, 5), "bottom-right")  # rows 2, cols 3..4
    assert x.tolist() == [13, 14] and len(y) == 13
    x, _ = io.quadrant_columns((5, 3), "top-left")  # rows 0..1, col 0
    assert x.tolist() == [0, 3]
    # channels last: all channels of each quadrant pixel
    x, y = io.quadrant_columns((2, 2, 3), "top-right")
    assert x.tolist() == [3, 4, 5] and len(y) == 9
    # digits: 8x8 -> 16 condition pixels, 48 outputs
    x, y = io.quadrant_columns(io.DIGITS_IMAGE_SHAPE, "TOP_LEFT", n_cols=64)
    assert len(x) == 16 and len(y) == 48 and x[:4].tolist() == [0, 1, 2, 3] and x[4] == 8


def test_quadrant_and_shape_errors():
    raises_one_line(io.quadrant_columns, (4, 4), "middle", exc=ValueError, match="top-left")
    raises_one_line(io.quadrant_columns, (1, 4), "top-left", exc=ValueError, match="H, W >= 2")
    raises_one_line(io.quadrant_columns, (28, 28), "top-left", n_cols=785, exc=ValueError,
                    match="784 values per image but the data have 785 columns")
    assert io.parse_image_shape("28x28") == (28, 28)
    assert io.parse_image_shape(" 8 X 8 ") == (8, 8)
    assert io.parse_image_shape("32x32x3") == (32, 32, 3)
    for bad in ("28", "28x", "axb", "1x5", "2x2x2x2", "28x28x0"):
        raises_one_line(io.parse_image_shape, bad, exc=ValueError, match="bad image shape")


# ------------------------------------------------------------------------------------------
# bundled data


def test_bundled_digits():
    X, labels = io.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and X.flags.c_contiguous
    assert labels.shape == (1797,) and labels.dtype.kind == "i"
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    counts = np.bincount(labels)
    assert len(counts) == 10 and counts.min() >= 174 and counts.max() <= 183
    assert counts.sum() == 1797
    # the first image is a 0 (the well-known sample)
    assert labels[0] == 0 and X[0, :8].tolist() == [0, 0, 5, 13, 9, 1, 0, 0]


def test_bundled_files_and_path():
    with io.bundled_path("digits.csv.gz") as p:
        table = io.load_array(p)
    assert table.shape == (1797, 65)
    X, labels = io.load_digits()
    np.testing.assert_array_equal(table[:, :64], X)
    np.testing.assert_array_equal(table[:, 64], labels)
    with io.bundled_path("DIGITS_LICENSE.txt") as p:
        text = open(p, encoding="utf-8").read()
    for needle in ("CC BY 4.0", "BSD-3-Clause", "Alpaydin", "10.24432/C50P49", "Layout"):
        assert needle in text
    raises_one_line(io.bundled_path, "nope.csv", match="nope.csv")

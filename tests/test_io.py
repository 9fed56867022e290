"""Files -> arrays: every format, every error path, and the bundled data."""

import gzip
import os

import numpy as np
import pytest

import vaetheory as vt
from vaetheory import io
from vaetheory.moments import accumulate_moments, empirical_moments


def one_line(exc):
    return "\n" not in str(exc.value)


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8, np.float64])
def test_npy_memmap_keeps_dtype(tmp_path, dtype):
    X = (np.random.default_rng(0).normal(size=(30, 4)) * 10).astype(dtype)
    np.save(tmp_path / "x.npy", X)
    got = io.load_array(tmp_path / "x.npy")
    assert isinstance(got, np.memmap) and got.dtype == dtype
    np.testing.assert_array_equal(got, X)


def test_images_and_vectors(tmp_path):
    imgs = np.arange(5 * 3 * 4, dtype=np.float32).reshape(5, 3, 4)
    np.save(tmp_path / "i.npy", imgs)
    np.testing.assert_array_equal(io.load_array(tmp_path / "i.npy"), imgs.reshape(5, 12))
    np.save(tmp_path / "v.npy", np.arange(7.0))
    assert io.load_array(tmp_path / "v.npy").shape == (7, 1)


def test_npz_keys(tmp_path):
    a, b = np.ones((3, 2)), np.zeros((3, 5))
    np.savez(tmp_path / "one.npz", data=a)
    np.testing.assert_array_equal(io.load_array(tmp_path / "one.npz"), a)
    np.savez(tmp_path / "two.npz", x=a, y=b)
    np.testing.assert_array_equal(io.load_array(tmp_path / "two.npz", key="y"), b)
    with pytest.raises(vt.DataError, match="x, y") as e:
        io.load_array(tmp_path / "two.npz")
    assert one_line(e)
    with pytest.raises(vt.DataError, match="no array 'z'"):
        io.load_array(tmp_path / "two.npz", key="z")


@pytest.mark.parametrize("name,text", [
    ("a.csv", "1,2,3\n4,5,6\n"),
    ("h.csv", "a,b,c\n1,2,3\n4,5,6\n"),
    ("t.tsv", "a\tb\tc\n1\t2\t3\n4\t5\t6\n"),
    ("w.txt", "1 2  3\n\n4 5 6\n"),
])
def test_text_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    np.testing.assert_array_equal(io.load_array(tmp_path / name), [[1, 2, 3], [4, 5, 6]])


def test_gzip_csv(tmp_path):
    with gzip.open(tmp_path / "g.csv.gz", "wt") as fh:
        fh.write("x,y\n1,2\n3,4\n")
    np.testing.assert_array_equal(io.load_array(tmp_path / "g.csv.gz"), [[1, 2], [3, 4]])


@pytest.mark.parametrize("name,text,needle", [
    ("bad.csv", "a,b\n1,2\n3,oops\n", r"line 3, column 2 \('b'\).*'oops'"),
    ("rag.csv", "1,2\n3\n", "line 2: 1 values, expected 2"),
    ("empty.csv", "\n\n", "empty"),
    ("hdr.csv", "a,b\n", "no data rows"),
])
def test_text_errors(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(vt.DataError, match=needle) as e:
        io.load_array(tmp_path / name)
    assert one_line(e)


def test_file_errors(tmp_path):
    with pytest.raises(vt.DataError, match="no such file"):
        io.load_array(tmp_path / "missing.npy")
    with pytest.raises(vt.DataError, match="directory"):
        io.load_array(tmp_path)
    (tmp_path / "x.parquet").write_bytes(b"PAR1")
    with pytest.raises(vt.DataError, match="unsupported format"):
        io.load_array(tmp_path / "x.parquet")
    (tmp_path / "c.npy").write_bytes(b"not really numpy")
    with pytest.raises(vt.DataError, match="as .npy") as e:
        io.load_array(tmp_path / "c.npy")
    assert one_line(e)
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(vt.DataError, match="numeric"):
        io.load_array(tmp_path / "s.npy")


def test_streaming_equals_whole(tmp_path):
    X = np.random.default_rng(1).normal(size=(257, 6)) + 3
    np.save(tmp_path / "x.npy", X)
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", header="a,b,c,d,e,f", comments="")
    want = empirical_moments(X)
    for name in ("x.npy", "x.csv"):
        n, chunks = io.iter_chunks(tmp_path / name, chunk_rows=50)
        m = accumulate_moments(chunks)
        np.testing.assert_allclose(m.matrix, want.matrix, rtol=1e-9)
        assert m.n_samples == 257


def test_inputs_are_never_modified(tmp_path):
    X = np.random.default_rng(2).normal(size=(20, 3))
    path = tmp_path / "x.npy"
    np.save(path, X)
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    vt.empirical_spectrum(io.load_array(path))
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before


def test_parse_columns():
    np.testing.assert_array_equal(io.parse_columns("0:3,5", 8), [0, 1, 2, 5])
    np.testing.assert_array_equal(io.parse_columns("-2:", 8), [6, 7])
    np.testing.assert_array_equal(io.parse_columns(":2", 8), [0, 1])
    for bad in ("9", "3:2", "a", "0:2,1"):
        with pytest.raises(ValueError):
            io.parse_columns(bad, 8)


def test_quadrants_by_hand():
    x, y = io.quadrant_columns((4, 4), "bottom-left")
    np.testing.assert_array_equal(x, [8, 9, 12, 13])
    assert len(y) == 12 and not set(x) & set(y)
    x, _ = io.quadrant_columns((4, 4), "top-right")
    np.testing.assert_array_equal(x, [2, 3, 6, 7])
    assert io.parse_image_shape("28x28") == (28, 28)
    with pytest.raises(ValueError):
        io.parse_image_shape("28")
    with pytest.raises(ValueError):
        io.quadrant_columns((4, 4), "middle")


def test_bundled_digits():
    X, labels = io.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert X.min() == 0 and X.max() == 16 and np.all(X == np.round(X))
    counts = np.bincount(labels)
    assert len(counts) == 10 and counts.min() >= 174 and counts.max() <= 183

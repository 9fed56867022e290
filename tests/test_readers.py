"""The readers of issue 15.4 / 16.1-3, 16.7, 16.10: text parsed once and only where selected,
headers, delimiters, pipes and stdin, .npy without a memory map, HDF5 / zarr / Parquet / Arrow.

Expected values never come from the reader under test: they are the arrays the test wrote, numbers
parsed by Python's ``float`` (correctly rounded), and moments computed by numpy directly. Command
lines run as real subprocesses (with timeouts: nothing may hang) and must print one ``error:``
line, or only ``warning:`` lines, on stderr.
"""

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from vaetheory import io, _text
from vaetheory.errors import DataError, ParameterError, ResourceError
from vaetheory.moments import load_spectrum

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "NO_COLOR": "1", "COLUMNS": "200"}


def cli(*args, input=None, timeout=120):
    """The real command line in a subprocess: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "vaetheory", *[str(a) for a in args]], input=input,
                       capture_output=True, timeout=timeout, env=ENV, cwd=ROOT)
    return r.returncode, r.stdout.decode(), r.stderr.decode()


def one_error(code, out, err, want_code=1):
    assert code == want_code, (code, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err + out and "Warning" not in err
    return err


def warnings_only(err):
    lines = err.splitlines()
    assert all(line.startswith("warning: ") for line in lines), err
    return lines


def cov_eigenvalues(X):
    """Independent reference: eigenvalues of the 1/N covariance, descending."""
    X = np.asarray(X, dtype=np.float64)
    C = np.cov(X, rowvar=False, bias=True).reshape(X.shape[1], X.shape[1])
    return np.sort(np.linalg.eigvalsh(C))[::-1]


def csv_text(X, header=None, index=False, sep=",", fmt=repr):
    rows = []
    if header is not None:
        rows.append(header)
    for i, r in enumerate(np.asarray(X, dtype=float).tolist()):
        rows.append(sep.join(([str(i)] if index else []) + [fmt(v) for v in r]))
    return "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(16)
    return rng.normal(size=(101, 4)) * np.array([3.0, 2.0, 1.0, 0.5]) + 1.0


@pytest.fixture(params=["pyarrow", "numpy"])
def parser(request, monkeypatch):
    """Run a test with each text parser (pyarrow's when installed, numpy's)."""
    if request.param == "numpy":
        monkeypatch.setattr(_text, "_pyarrow_csv", lambda: None)
    else:
        pytest.importorskip("pyarrow")
    return request.param


# ------------------------------------------------------------------------------------------
# 16.1 headers


def test_pandas_numeric_header_is_a_header_with_a_warning(tmp_path, X):
    path = tmp_path / "pandas.csv"
    path.write_text(csv_text(X, header="0,1,2,3"))  # DataFrame(X).to_csv(index=False)
    code, out, err = cli("spectrum", path, "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["n_samples"] == 101
    np.testing.assert_allclose(doc["eigenvalues"], cov_eigenvalues(X), rtol=1e-10)
    assert any("0, 1, ..., 3" in n and "--header no" in n for n in doc["notes"])
    assert "notes" not in doc["data"] and doc["data"]["header"] is True
    code, out, err = cli("spectrum", path)  # the same note as a warning line on stderr
    assert code == 0
    assert len(warnings_only(err)) == 1 and "pandas" in err
    # --header no: the line is data (102 rows), and nothing is noted
    code, out, err = cli("spectrum", path, "--header", "no", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["n_samples"] == 102 and doc["notes"] == []
    np.testing.assert_allclose(doc["eigenvalues"], cov_eigenvalues(np.r_[[[0, 1, 2, 3]], X]),
                               rtol=1e-10)


def test_pandas_index_column_is_noted_with_the_selection_that_drops_it(tmp_path, X):
    path = tmp_path / "index.csv"
    path.write_text(csv_text(X, header=",a,b,c,d", index=True))  # DataFrame(X).to_csv()
    code, out, err = cli("predict", path, "-d", "2", "--json")
    assert code == 0 and err == ""
    notes = json.loads(out)["notes"]
    assert any("column 1 ('')" in n and "0, 1, ..., 100" in n and "--cols 1:" in n
               for n in notes), notes
    code, out, err = cli("spectrum", path, "--cols", "1:", "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["notes"] == []
    np.testing.assert_allclose(doc["eigenvalues"], cov_eigenvalues(X), rtol=1e-10)


def test_header_choices_in_the_library(tmp_path, parser):
    path = tmp_path / "h.csv"
    path.write_text("1,2\n3,4\n5,7\n")
    np.testing.assert_array_equal(io.load_array(path), [[1, 2], [3, 4], [5, 7]])
    np.testing.assert_array_equal(io.load_array(path, header="yes"), [[3, 4], [5, 7]])
    (tmp_path / "n.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"line 1, column 1: non-numeric value 'a'.*header"):
        io.load_array(tmp_path / "n.csv", header="no")
    with pytest.raises(ParameterError, match="header"):
        io.load_array(path, header="maybe")
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    with pytest.raises(ParameterError, match="only to text files"):
        io.load_array(tmp_path / "x.npy", header="yes")
    sel = io.Selection(str(tmp_path / "mixed.csv"))
    (tmp_path / "mixed.csv").write_text("x,2019,2020\n1,2,3\n4,5,7\n")
    stream = sel.open()
    list(stream.blocks)
    assert any("2 of its 3 values are numbers" in n for n in stream.provenance["notes"])


# ------------------------------------------------------------------------------------------
# 16.2 selected columns, quotes, delimiters


def test_text_columns_are_fine_when_not_selected(tmp_path, X):
    lines = ["name,a,b,c,d"] + [f'item {i},' + ",".join(f'"{v!r}"' for v in r)
                                for i, r in enumerate(X.tolist())]
    path = tmp_path / "text.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, err = cli("spectrum", path, "--cols", "1:", "--json")
    assert code == 0 and err == "", err
    np.testing.assert_allclose(json.loads(out)["eigenvalues"], cov_eigenvalues(X), rtol=1e-10)
    err = one_error(*cli("spectrum", path))
    assert "line 2, column 1 ('name'): non-numeric value 'item 0'" in err


def test_semicolons_are_detected_and_a_wrong_delimiter_gets_a_hint(tmp_path, X):
    path = tmp_path / "semi.csv"
    path.write_text(csv_text(X, header="a;b;c;d", sep=";"))
    code, out, err = cli("spectrum", path, "--json")
    assert code == 0 and err == ""
    doc = json.loads(out)
    assert doc["data"]["delimiter"] == ";"
    np.testing.assert_allclose(doc["eigenvalues"], cov_eigenvalues(X), rtol=1e-10)
    err = one_error(*cli("spectrum", path, "--delimiter", ","))
    assert "has no commas (the delimiter given) but semicolons" in err
    assert "--delimiter ';'" in err
    (tmp_path / "mixed.csv").write_text("a,b\n1;2,3\n")
    with pytest.raises(DataError, match=r"line 2, column 1 \('a'\): non-numeric value '1;2'; the "
                                        r"values seem separated by semicolons, not commas"):
        io.load_array(tmp_path / "mixed.csv")
    (tmp_path / "dec.csv").write_text("a;b\n1,5;2,5\n3,5;4\n")
    err = one_error(*cli("spectrum", tmp_path / "dec.csv"))
    assert "line 2, column 1 ('a'): non-numeric value '1,5'" in err and "decimal" in err
    err = one_error(*cli("spectrum", path, "--delimiter", "ab"), want_code=2)
    assert "--delimiter" in err


@pytest.mark.parametrize("name,text,want", [
    ("tab.txt", "a\tb\n1\t2\n3\t4\n", [[1, 2], [3, 4]]),
    ("pipe.csv", "a|b\n1|2\n3|4\n", [[1, 2], [3, 4]]),
    ("quoted.csv", '"a","b"\n"1","2.5"\n3,"4"\n', [[1, 2.5], [3, 4]]),
    ("comma_in_quotes.csv", 'name,v\n"Smith, J",1\n"Doe, A",2\n', None),
    ("comments.csv", "# made by hand\na,b\n\n1,2\n  \n# more\n3,4\n", [[1, 2], [3, 4]]),
    ("crlf.csv", "a,b\r\n1,2\r\n3,4\r\n", [[1, 2], [3, 4]]),
    ("no_newline.csv", "1,2\n3,4", [[1, 2], [3, 4]]),
    ("spaces.txt", "1  2\n 3 4 \n", [[1, 2], [3, 4]]),
])
def test_dialects(tmp_path, parser, name, text, want):
    (tmp_path / name).write_text(text, newline="")
    if want is None:  # a quoted text column with the delimiter inside: select the number
        _, chunks = io.iter_chunks(tmp_path / name, columns=[1])
        np.testing.assert_array_equal(np.concatenate(list(chunks)), [[1], [2]])
        return
    np.testing.assert_array_equal(io.load_array(tmp_path / name), want)


def test_ragged_rows_are_errors_even_when_a_column_subset_is_parsed(tmp_path, parser):
    (tmp_path / "rag.csv").write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    for cols in (None, [0], [2, 0]):
        with pytest.raises(DataError, match=r"line 3: 4 values, expected 3 as on the header"):
            list(io.iter_chunks(tmp_path / "rag.csv", columns=cols)[1])
    (tmp_path / "short.txt").write_text("1 2 3\n4 5\n")
    with pytest.raises(DataError, match=r"line 2: 2 values, expected 3"):
        list(io.iter_chunks(tmp_path / "short.txt", columns=[0])[1])


_NUMBER = st.floats(allow_nan=False, allow_infinity=False, width=64)
_FORMATS = [repr, lambda v: f"{v:.18e}", lambda v: f"{v:g}", lambda v: f" {v!r} ",
            lambda v: f'"{v!r}"', lambda v: f"{v:.6f}"]


@settings(max_examples=40)
@given(values=st.lists(st.lists(_NUMBER, min_size=3, max_size=3), min_size=1, max_size=30),
       fmt=st.sampled_from(range(len(_FORMATS))), block=st.integers(16, 400),
       noise=st.lists(st.sampled_from(["", "# c", "   "]), max_size=4),
       cols=st.sampled_from([None, [0, 2], [2], [1, 0]]))
def test_parsed_values_are_pythons_floats_for_any_block_size_and_parser(values, fmt, block,
                                                                       noise, cols):
    f = _FORMATS[fmt]
    lines = [",".join(f(v) for v in row) for row in values]
    for i, extra in enumerate(noise):  # blank and comment lines anywhere
        lines.insert((7 * i) % (len(lines) + 1), extra)
    text = "x,y,z\n" + "\n".join(lines) + "\n"
    want = np.array([[float(f(v).strip().strip('"')) for v in row] for row in values])
    if cols is not None:
        want = want[:, cols]
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "t.csv")
        with open(path, "w") as fh:
            fh.write(text)
        old = _text.BLOCK_BYTES
        try:
            _text.BLOCK_BYTES = block
            got = {}
            for name, arrow in (("pyarrow", _text._pyarrow_csv), ("numpy", lambda: None)):
                real = _text._pyarrow_csv
                _text._pyarrow_csv = arrow
                try:
                    _, chunks = io.iter_chunks(path, columns=cols)
                    got[name] = np.concatenate(list(chunks))
                finally:
                    _text._pyarrow_csv = real
        finally:
            _text.BLOCK_BYTES = old
    for name, arr in got.items():
        np.testing.assert_array_equal(arr, want, err_msg=name)  # exact: correctly rounded


# ------------------------------------------------------------------------------------------
# 16.10 one location convention


def test_locations_count_from_one_in_every_message(tmp_path, parser, monkeypatch):
    monkeypatch.setattr(_text, "BLOCK_BYTES", 64)  # many blocks, with blank lines inside
    rows = [f"{i},{2 * i},{3 * i}" for i in range(60)]
    rows[40] = "40,nan,120"
    text = "a,b,c\n" + "\n\n".join(rows) + "\n"
    (tmp_path / "n.csv").write_text(text)
    line = text.splitlines().index("40,nan,120") + 1  # 1-based line of the file
    for cols in (None, "1:", "2,1"):
        with pytest.raises(DataError, match=rf"first at line {line}, column 2 \('b'\)$"):
            load_spectrum(io.Selection(str(tmp_path / "n.csv"), cols=cols))
    (tmp_path / "bad.csv").write_text(text.replace("nan", "x"))
    with pytest.raises(DataError, match=rf"line {line}, column 2 \('b'\): non-numeric value 'x'"):
        load_spectrum(io.Selection(str(tmp_path / "bad.csv"), cols="1:"))
    Z = np.zeros((9, 3))
    Z[6, 2] = np.inf
    np.save(tmp_path / "z.npy", Z)
    with pytest.raises(DataError, match=r"first at row 7, column 3 \(counting from 1\)$"):
        load_spectrum(io.Selection(str(tmp_path / "z.npy")))


# ------------------------------------------------------------------------------------------
# 16.3 1-d arrays


def test_one_dimensional_npy_is_refused_with_the_reshape_to_use(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(12.0))
    err = one_error(*cli("spectrum", tmp_path / "v.npy"))
    assert "1-d array (12 values)" in err and "X.reshape(-1, 1)" in err


# ------------------------------------------------------------------------------------------
# 16.7 pipes and stdin: read once, never hang


def _fifo_writer(path, data):
    def write():
        with open(path, "wb") as fh:
            fh.write(data)
    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes")
@pytest.mark.parametrize("name", ["x.csv", "x.npy", "x.csv.gz"])
def test_named_pipes_are_read_once(tmp_path, X, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    if name == "x.npy":
        import io as pyio

        buf = pyio.BytesIO()
        np.save(buf, X)
        data = buf.getvalue()
    else:
        data = csv_text(X, header="a,b,c,d").encode()
        data = gzip.compress(data) if name.endswith(".gz") else data
    writer = _fifo_writer(fifo, data)
    code, out, err = cli("spectrum", fifo, "--json", timeout=60)
    writer.join(5)
    assert code == 0 and err == "", err
    np.testing.assert_allclose(json.loads(out)["eigenvalues"], cov_eigenvalues(X), rtol=1e-10)


def test_stdin(tmp_path, X):
    import io as pyio

    text = csv_text(X, header="a,b,c,d").encode()
    buf = pyio.BytesIO()
    np.save(buf, X.astype(np.float32))
    for data, fmt in ((text, "csv"), (gzip.compress(text), "csv"), (buf.getvalue(), "npy"),
                      (text.replace(b",", b"\t"), "tsv")):
        code, out, err = cli("spectrum", "-", "--json", input=data, timeout=60)
        assert code == 0 and err == "", err
        doc = json.loads(out)
        assert doc["data"]["source"] == "<stdin>"
        assert doc["data"]["format"] == ("npy" if fmt == "npy" else "text")
        ref = X.astype(np.float32) if fmt == "npy" else X
        np.testing.assert_allclose(doc["eigenvalues"], cov_eigenvalues(ref), rtol=1e-6)
    code, out, err = cli("spectrum", "-", input=text)  # the table says how stdin was read
    assert code == 0 and "data: <stdin> (read as comma-separated text with a header line" in out
    code, out, err = cli("predict", "-", "-d", "2", "--format", "tsv", "--json",
                         input=text.replace(b",", b"\t"))
    assert code == 0 and json.loads(out)["data"]["format"] == "tsv"
    err = one_error(*cli("spectrum", "-", "--format", "npz", input=text))
    assert "stdin" in err and "seekable" in err
    err = one_error(*cli("spectrum", "-", input=b""))
    assert "<stdin> is empty" in err


# ------------------------------------------------------------------------------------------
# 15.4 .npy without a memory map


def _no_memmap(monkeypatch):
    def refuse(*a, **k):
        raise OSError(12, "Cannot allocate memory")
    monkeypatch.setattr(io.np, "memmap", refuse)


@pytest.mark.parametrize("shape,order", [((37, 5), "C"), ((37, 5), "F"), ((23, 3, 4), "C"),
                                         ((23, 3, 4), "F"), ((11, 2, 3, 2), "F")])
def test_npy_is_read_in_blocks_when_no_memory_map_can_be_had(tmp_path, monkeypatch, shape,
                                                             order):
    A = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * 0.5 - 3
    A = np.asfortranarray(A) if order == "F" else A
    np.save(tmp_path / "a.npy", A)
    want = np.ascontiguousarray(A).reshape(shape[0], -1)
    _no_memmap(monkeypatch)
    n, chunks = io.iter_chunks(tmp_path / "a.npy", chunk_rows=6)
    blocks = list(chunks)
    assert n == shape[0] and all(b.dtype == np.float32 for b in blocks)
    assert [b.shape[0] for b in blocks[:-1]] == [6] * (len(blocks) - 1)
    np.testing.assert_array_equal(np.concatenate(blocks), want)
    np.testing.assert_array_equal(io.load_array(tmp_path / "a.npy"), want)
    _, chunks = io.iter_chunks(tmp_path / "a.npy", columns=[3, 0])
    np.testing.assert_array_equal(np.concatenate(list(chunks)), want[:, [3, 0]])


def test_truncated_npy_without_a_memory_map(tmp_path, monkeypatch):
    np.save(tmp_path / "full.npy", np.zeros((1000, 3)))
    raw = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(raw[:5000])
    with pytest.raises(DataError, match=r"cut\.npy' as \.npy: file is truncated"):
        io.load_array(tmp_path / "cut.npy")
    code, out, err = cli("spectrum", "-", input=raw[:5000])
    assert "truncated" in one_error(code, out, err)


def test_address_space_limit_smaller_than_the_file(tmp_path):
    """ulimit -v: the memory map cannot be had; the plain read() path gives the exact moments."""
    pytest.importorskip("resource")
    D, N = 8, 12_000_000  # 768 MiB of float64, sparse on disk (only the first rows are written)
    path = tmp_path / "big.npy"
    head = np.lib.format.header_data_from_array_1_0(np.zeros((1, D)))
    head["shape"] = (N, D)
    rows = np.arange(1.0, 5 * D + 1).reshape(5, D)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, head)
        fh.write(rows.tobytes())
        fh.truncate(fh.tell() - rows.nbytes + N * D * 8)
    want = rows.T @ rows / N  # uncentred second moments: only the written rows are non-zero
    script = textwrap.dedent(f"""
        import resource, re
        import numpy as np
        from vaetheory import io
        from vaetheory.moments import load_spectrum
        vm = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
        limit = vm + (400 << 20)          # room for the work, not for a 768 MiB map
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            np.load({str(path)!r}, mmap_mode="r")
            print("mapped")
        except (OSError, ValueError, MemoryError):
            print("no map")
        spec = load_spectrum(io.Selection({str(path)!r}, center=False))
        np.save({str(tmp_path / 'M.npy')!r}, spec.matrix)
        print(spec.n_samples)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300,
                       env=ENV, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["no", "map", str(N)], r.stdout  # the limit did bite
    np.testing.assert_allclose(np.load(tmp_path / "M.npy"), want, rtol=1e-12)


# ------------------------------------------------------------------------------------------
# 15.4 optional formats: round trips of files the test writes


def _moments_equal(selection, X, rtol=1e-12):
    spec = load_spectrum(selection)
    np.testing.assert_allclose(spec.eigenvalues, np.clip(cov_eigenvalues(X), 0, None),
                               rtol=rtol, atol=1e-12 * cov_eigenvalues(X)[0])
    return spec


def test_hdf5(tmp_path, X):
    h5py = pytest.importorskip("h5py")
    imgs = np.arange(101 * 12, dtype=np.uint8).reshape(101, 3, 4)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("emb", data=X.astype(np.float32), chunks=(16, 4))
        f.create_group("g").create_dataset("imgs", data=imgs)
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f.create_dataset("x", data=X)
    _moments_equal(io.Selection(str(tmp_path / "one.hdf5")), X)
    _moments_equal(io.Selection(str(tmp_path / "d.h5"), key="emb"), X.astype(np.float32), 1e-6)
    n, chunks = io.iter_chunks(tmp_path / "d.h5", key="g/imgs", chunk_rows=10)
    got = np.concatenate(list(chunks))
    assert n == 101 and got.dtype == np.uint8
    np.testing.assert_array_equal(got, imgs.reshape(101, -1))
    with pytest.raises(DataError, match=r"holds 2 datasets \(emb \(101, 4\), g/imgs"):
        io.load_array(tmp_path / "d.h5")
    with pytest.raises(DataError, match="'g' is a group"):
        io.load_array(tmp_path / "d.h5", key="g")
    with pytest.raises(DataError, match="no dataset 'nope'"):
        io.load_array(tmp_path / "d.h5", key="nope")
    err = one_error(*cli("spectrum", tmp_path / "d.h5"))
    assert "--key NAME" in err
    code, out, err = cli("spectrum", tmp_path / "d.h5", "--key", "emb", "--json")
    assert code == 0 and json.loads(out)["data"]["format"] == "hdf5"


def test_zarr(tmp_path, X):
    zarr = pytest.importorskip("zarr")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("x", shape=X.shape, chunks=(25, 4), dtype="f8")[:] = X
    g.create_group("sub").create_array("y", shape=(101, 2), dtype="i2")[:] = 3
    a = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=X.shape, chunks=(10, 4),
                        dtype="f8")
    a[:] = X
    _moments_equal(io.Selection(str(tmp_path / "a.zarr")), X)
    _moments_equal(io.Selection(str(tmp_path / "g.zarr"), key="x"), X)
    np.testing.assert_array_equal(io.load_array(tmp_path / "g.zarr", key="sub/y"),
                                  np.full((101, 2), 3))
    with pytest.raises(DataError, match=r"holds 2 arrays \(x \(101, 4\), sub/y \(101, 2\)\)"):
        io.load_array(tmp_path / "g.zarr")
    with pytest.raises(DataError, match="single zarr array"):
        io.load_array(tmp_path / "a.zarr", key="x")


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "feather"])
def test_parquet_and_arrow_tables(tmp_path, X, fmt):
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"name": [f"r{i}" for i in range(101)], "a": X[:, 0], "b": X[:, 1],
                      "n": pa.array(np.arange(101) % 7, pa.int32()),
                      "emb": pa.array(list(X[:, 2:]), pa.list_(pa.float64(), 2))})
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path, row_group_size=30)
    else:
        import pyarrow.feather as feather

        feather.write_feather(table, path, chunksize=30)
    want = np.c_[X[:, :2], np.arange(101) % 7, X[:, 2:]]
    # the text column makes the default (every column) an error naming it
    with pytest.raises(DataError, match=r"column 1 \('name'\) holds string values"):
        load_spectrum(io.Selection(str(path)))
    _moments_equal(io.Selection(str(path), cols="1:"), want)
    _moments_equal(io.Selection(str(path), key="a,b,emb"), np.c_[X[:, :2], X[:, 2:]])
    n, chunks = io.iter_chunks(path, key="emb", chunk_rows=40)
    assert n == 101
    np.testing.assert_array_equal(np.concatenate(list(chunks)), X[:, 2:])
    with pytest.raises(DataError, match="no column 'zz'"):
        io.load_array(path, key="zz")
    code, out, err = cli("spectrum", path, "--cols", "1:", "--json")
    assert code == 0 and err == ""
    assert json.loads(out)["data"]["format"] == ("parquet" if fmt == "parquet" else "arrow")


def test_parquet_nulls_and_variable_lists(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1.0, None, 3.0, 4.0]}), tmp_path / "null.parquet")
    with pytest.raises(DataError, match=r"first at row 2, column 1 \('a'\) \(counting from 1\)"):
        load_spectrum(io.Selection(str(tmp_path / "null.parquet")))
    pq.write_table(pa.table({"v": [[1.0, 2.0], [3.0, 4.0], [5.0]]}), tmp_path / "rag.parquet")
    with pytest.raises(DataError, match=r"row 3, column 'v': 1 values, expected 2"):
        io.load_array(tmp_path / "rag.parquet")


def test_pandas_index_columns_of_parquet_are_not_features(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    meta = {b"pandas": json.dumps({"index_columns": ["__index_level_0__"]}).encode()}
    t = pa.table({"x": [1.0, 2.0, 4.0], "__index_level_0__": [10, 11, 12]})
    t = t.replace_schema_metadata(meta)
    pq.write_table(t, tmp_path / "p.parquet")
    np.testing.assert_array_equal(io.load_array(tmp_path / "p.parquet"), [[1], [2], [4]])


def test_a_missing_optional_reader_names_its_extra(tmp_path, monkeypatch):
    import builtins

    (tmp_path / "x.h5").write_bytes(b"\x89HDF")
    real = builtins.__import__

    def no_h5py(name, *a, **k):
        if name == "h5py":
            raise ImportError("no h5py")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_h5py)
    with pytest.raises(ResourceError, match=r'pip install "vaetheory\[hdf5\]"'):
        io.load_array(tmp_path / "x.h5")


# ------------------------------------------------------------------------------------------
# the size hint and convert()


def test_large_text_inputs_get_the_convert_hint(tmp_path, X, monkeypatch):
    monkeypatch.setattr(_text, "HINT_BYTES", 1000)
    (tmp_path / "x.csv").write_text(csv_text(X))
    spec = load_spectrum(io.Selection(str(tmp_path / "x.csv")))
    assert any("convert it once to .npy" in n for n in spec.provenance["notes"])
    np.save(tmp_path / "x.npy", X)
    assert "notes" not in load_spectrum(io.Selection(str(tmp_path / "x.npy"))).provenance


def test_convert_streams_to_a_new_npy_and_never_overwrites(tmp_path, X, monkeypatch):
    monkeypatch.setattr(_text, "BLOCK_BYTES", 500)
    (tmp_path / "x.csv").write_text(csv_text(X, header="id,a,b,c,d", index=True))
    prov = io.convert(tmp_path / "x.csv", tmp_path / "x.npy", cols="1:")
    assert prov["n_samples"] == 101
    got = np.load(tmp_path / "x.npy")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, np.asarray(X.tolist()))  # repr round-trips exactly
    before = (tmp_path / "x.npy").read_bytes()
    with pytest.raises(ParameterError, match="exists; refusing to overwrite"):
        io.convert(tmp_path / "x.csv", tmp_path / "x.npy")
    assert (tmp_path / "x.npy").read_bytes() == before
    with pytest.raises(ParameterError, match=r"must end in \.npy"):
        io.convert(tmp_path / "x.csv", tmp_path / "x.csv")
    with pytest.raises(DataError):  # a failure removes the partial output, nothing else
        io.convert(tmp_path / "missing.csv", tmp_path / "m.npy")
    assert not (tmp_path / "m.npy").exists()

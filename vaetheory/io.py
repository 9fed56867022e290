"""Files -> arrays. Rows are samples; nothing here does any math beyond parsing.

Supported formats (chosen by the file name, case-insensitive, or by ``format=`` / ``--format``):

- ``.npy``: memory-mapped read-only, never loaded whole; the stored dtype (float32, int16,
  uint8, ...) is kept as is. Where a memory map cannot be had (an address-space limit,
  ``ulimit -v``, smaller than the file; a pipe; stdin) the file is read once, in row blocks, with
  plain ``read()`` (as fast: bench/bench_io.py). Object, string, structured and complex arrays
  are rejected.
- ``.npz``: the array named by ``key``, or the only array in the file (read into memory; npz
  members cannot be memory-mapped).
- ``.csv``, ``.tsv``, ``.txt`` and their gzip-compressed forms ``.csv.gz``, ``.tsv.gz``,
  ``.txt.gz``: parsed in blocks of rows into float64 (see "Text files" below).
- Optional formats (``pip install "vaetheory[formats]"``, or one of the extras ``hdf5``,
  ``zarr``, ``parquet``): HDF5 ``.h5``/``.hdf5`` (``key`` = the dataset's path; default: the
  only dataset), zarr ``.zarr`` stores (``key`` = the array's path in a group; default: the only
  array), Parquet ``.parquet``/``.pq`` and Arrow IPC / Feather ``.arrow``/``.feather``
  (``key`` = a column name or a comma list of them; default: every column but a pandas index).
  Numeric scalar columns are one feature each; a column of fixed-length numeric lists (an
  embedding) is one feature per list element. All are read in row blocks.
- ``-`` (the command line's DATA): standard input, read once; its format is ``format=`` if
  given, else recognised from its first bytes (.npy, gzip) or read as delimited text.

Shapes: arrays with more than two dimensions (images, e.g. ``(N, 28, 28)`` or ``(N, H, W, C)``)
are flattened row-wise (C order) to ``(N, H*W*...)``, as a view of the memory map when the file
is C-ordered. A 1-d array is refused, as scikit-learn does: save ``X.reshape(-1, 1)`` (N samples
of one feature) or ``X.reshape(1, -1)`` (one sample).

Text files:

- Delimiter (``delimiter=`` / ``--delimiter`` to choose one): a ``.csv`` file is comma-separated
  and a ``.tsv`` file tab-separated; a ``.txt`` file (and stdin) is comma-separated if its first
  lines contain a comma, otherwise whitespace-separated. A file whose first lines do not contain
  its own delimiter but each contain another one (tab, comma, ``;`` or ``|``) uses that one; one
  with none of them but several whitespace-separated numbers is read as whitespace-separated.
- Header (``header=`` / ``--header``: ``"auto"``, ``"yes"`` or ``"no"``): in ``auto`` the first
  non-blank line is a header (column names) when one of its fields is not a number, or when its
  fields are exactly ``0,1,...,D-1`` (the names pandas writes for an unnamed frame). The latter,
  and a header that mixes names and numbers, are noted (the command line prints a warning). At
  most one header line. Blank lines and lines starting with ``#`` are skipped anywhere.
- Every other line must have the same number of fields; the selected ones must be numbers
  (quoted or not; ``nan``/``inf`` parse and are rejected later with their location). Columns
  that are not selected are not parsed: a text column is fine when it is not selected.
- A file, pipe or stdin is opened once and read once, in ~16 MiB blocks of lines; pyarrow's CSV
  parser is used when installed (the ``formats`` extra: ~2.5x less CPU), numpy's otherwise,
  with the same values and the same messages.

Locations in messages and notes, one convention for every format: lines, rows and columns count
from 1 (as editors and spreadsheets do); a text cell is ``line L, column C ('name')`` with the
header's name when there is one; an array cell is ``row R, column C (counting from 1)``. Column
*selections* (``cols``, ``--cols``) are Python indices, 0-based.

A column whose values are exactly the row numbers (0, 1, 2, ... or 1, 2, 3, ...), as an index
written by pandas' ``to_csv()`` is, gets a note in the provenance (``provenance["notes"]``)
saying how to leave it out; it is not dropped silently.

Every problem with a file raises :class:`~vaetheory.errors.DataError` (a ``ValueError``)
with one line that names the file and, for text, the line and column. Problems with an argument
(a column selection, an image shape) raise :class:`~vaetheory.errors.ParameterError`; a missing
optional reader raises :class:`~vaetheory.errors.ResourceError` naming the extra to install.

What a model reads -- which file(s), array, columns, quadrant, and whether it is centred -- is a
:class:`Selection`; :meth:`Selection.open` streams its row blocks with their provenance, and
:func:`vaetheory.moments.load_spectrum` turns a selection into the spectrum a theorem needs
(docs/theory.md §0: only the second moments of the selected columns are used).

Column selections and the paper's conditional (CVAE) image task: :func:`parse_columns`,
:func:`parse_image_shape`, :func:`quadrant_columns`. Bundled real data: :func:`load_digits`
(the UCI 8x8 handwritten digits, CC BY 4.0; ``vaetheory/data/DIGITS_LICENSE.txt``).
:func:`convert` writes a selection to a new .npy file once (later runs read it 10-25x cheaper
than the CSV; bench/bench_io.py).
"""

from __future__ import annotations

import gzip
import importlib.resources
import io as _io
import itertools
import math
import os
import re
import stat
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from . import _text
from ._text import is_number as _is_number  # noqa: F401  (kept for callers of the old name)
from ._text import parse_delimiter
from ._text import show as _show
from .errors import DataError, ParameterError, ResourceError

__all__ = [
    "DataError",
    "FORMATS",
    "RowStream",
    "Selection",
    "EigenvalueSelection",
    "DIGITS_IMAGE_SHAPE",
    "QUADRANTS",
    "STDIN",
    "SUPPORTED",
    "bundled_path",
    "convert",
    "iter_chunks",
    "load_array",
    "load_digits",
    "parse_columns",
    "parse_delimiter",
    "parse_image_shape",
    "quadrant_columns",
]

SUPPORTED = (".npy", ".npz", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz",
             ".h5", ".hdf5", ".zarr", ".parquet", ".pq", ".arrow", ".feather")
#: ``format=`` / ``--format`` names and the formats they mean
FORMATS = ("npy", "npz", "csv", "tsv", "txt", "hdf5", "zarr", "parquet", "arrow")
_FORMAT_OF = {".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "tsv", ".txt": "txt",
              ".csv.gz": "csv", ".tsv.gz": "tsv", ".txt.gz": "txt", ".h5": "hdf5",
              ".hdf5": "hdf5", ".zarr": "zarr", ".parquet": "parquet", ".pq": "parquet",
              ".arrow": "arrow", ".feather": "arrow"}
_TEXT = ("csv", "tsv", "txt")
_KEYED = ("npz", "hdf5", "zarr", "parquet", "arrow")
#: the DATA argument that means standard input
STDIN = "-"
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
DIGITS_IMAGE_SHAPE = (8, 8)
HEADER_CHOICES = ("auto", "yes", "no")

_CHUNK_BYTES = 1 << 24  # ~16 MiB of float64 per chunk, as in vaetheory.moments
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error)  # gzip.BadGzipFile is an OSError
_NPY_MAGIC = b"\x93NUMPY"
_GZIP_MAGIC = b"\x1f\x8b"


# ------------------------------------------------------------------------------------------
# files


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _reason(exc):
    """A short reason for an OS/decoding error, without the path numpy/Python may add."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
    return _first_line(exc)


def _kind(path):
    name = os.path.basename(os.path.normpath(path)).lower()
    for ext in sorted(SUPPORTED, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def _default_rows(n_cols):
    return max(1, _CHUNK_BYTES // (8 * max(1, n_cols)))


def _check_format(fmt):
    if fmt is None:
        return None
    f = str(fmt).lower().lstrip(".")
    f = {"h5": "hdf5", "hdf": "hdf5", "pq": "parquet", "feather": "arrow", "ipc": "arrow"}.get(f, f)
    if f not in FORMATS:
        raise ParameterError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}",
                             cli=f"--format {fmt}: unknown format; use one of "
                                 f"{', '.join(FORMATS)}")
    return f


def _check_file(path, fmt=None):
    """``(path as str, format name or None for stdin to be recognised, gz)`` for a readable
    input of a supported format."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise DataError(f"expected a file path, got {type(path).__name__} {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    fmt = _check_format(fmt)
    if path == STDIN:
        if fmt in ("npz", "hdf5", "zarr", "parquet", "arrow"):
            raise DataError(f"stdin cannot be read as {fmt}: that format needs a seekable file; "
                            "save it and give the file name")
        return path, fmt, False
    if not os.path.exists(path):
        raise DataError(f"cannot read {_show(path)}: no such file")
    kind = _kind(path)
    fmt = fmt or _FORMAT_OF.get(kind)
    if os.path.isdir(path) and fmt != "zarr":
        raise DataError(f"cannot read {_show(path)}: it is a directory; give a data file")
    if fmt is None:
        msg = (f"cannot read {_show(path)}: unsupported format; use one of "
               + ", ".join(SUPPORTED))
        raise DataError(msg + " (or name the format with format=...)",
                        cli=msg + " (or name the format with --format)")
    if not os.access(path, os.R_OK):
        raise DataError(f"cannot read {_show(path)}: permission denied")
    return path, fmt, bool(kind and kind.endswith(".gz"))


def _check_rows(dtype, shape, label):
    """``(N, D)`` of an array of ``dtype`` and ``shape`` that rows = samples can be read from."""
    if dtype.names is not None:
        raise DataError(f"{label} holds a structured array (fields "
                        f"{', '.join(dtype.names)}); save a plain numeric array")
    if dtype.kind not in _NUMERIC_KINDS:
        what = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes"}
        raise DataError(f"{label} holds {what.get(dtype.kind, 'non-numeric data')} "
                        f"(dtype {dtype}); a real numeric array is needed")
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        raise DataError(f"{label} holds a single number, not a dataset (rows = samples)")
    if len(shape) == 1:
        n = shape[0]
        raise DataError(f"{label} holds a 1-d array ({n} values) but rows must be samples: save "
                        f"it as X.reshape(-1, 1) for {n} samples of one feature, or "
                        "X.reshape(1, -1) for one sample (as scikit-learn asks)")
    d = int(np.prod(shape[1:]))
    if shape[0] == 0 or d == 0:
        raise DataError(f"{label} is empty (array of shape {shape})")
    return shape[0], d


def _as_rows(arr, label):
    """(N, D) view of a loaded array, after checking it is a non-empty real numeric array."""
    _check_rows(arr.dtype, arr.shape, label)
    return arr.reshape(arr.shape[0], -1) if arr.ndim > 2 else arr


class _Prefixed(_io.RawIOBase):
    """A non-seekable stream with the bytes already read from it put back in front."""

    def __init__(self, head, fh):
        self.head, self.fh = head, fh

    def readable(self):
        return True

    def readinto(self, b):
        if self.head:
            n = min(len(b), len(self.head))
            b[:n] = self.head[:n]
            self.head = self.head[n:]
            return n
        return self.fh.readinto(b)


def _read_exactly(fh, n):
    out = b""
    while len(out) < n:
        more = fh.read(n - len(out))
        if not more:
            break
        out += more
    return out


def _open_stream(path):
    """``(binary stream, first bytes, seekable)`` of a file or stdin, opened once; the first
    bytes are still to be read from the stream."""
    if path == STDIN:
        if sys.stdin is None or sys.stdin.isatty():
            raise DataError("DATA is '-' (standard input) but nothing is piped in; pipe the data "
                            "(e.g. cat X.csv | vaetheory ...) or give a file name")
        raw = sys.stdin.buffer
        head = _read_exactly(raw, 8)
        return _io.BufferedReader(_Prefixed(head, raw), buffer_size=1 << 20), head, False
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise DataError(f"cannot read {_show(path)}: {_reason(exc)}") from None
    seekable = stat.S_ISREG(os.fstat(fh.fileno()).st_mode) and fh.seekable()
    if seekable:
        head = fh.read(8)
        fh.seek(0)
        return fh, head, True
    head = _read_exactly(fh, 8)
    return _io.BufferedReader(_Prefixed(head, fh), buffer_size=1 << 20), head, False


# ---- readers: one per format, each with blocks(cols, chunk_rows), where(), column()


class _Reader:
    """What every binary reader says about itself: cells as ``row R, column C`` counted from 1
    (with the column's name when it has one), its format, and no end-of-file notes."""

    names = None
    fmt = "array"

    def column(self, j):
        if self.names is not None:
            return f"column {j + 1} ('{self.names[j]}')"
        return f"column {j + 1}"

    def where(self, row, col):
        return f"row {row + 1}, {self.column(col)} (counting from 1)"

    def describe(self):
        return {"format": self.fmt}

    def end_notes(self):
        return []


class _ArrayReader(_Reader):
    """Row blocks of an array-like (ndarray, memmap, h5py dataset, zarr array) of shape
    ``(N, ...)``: slices ``arr[s:e]``, flattened row-wise, columns ``cols`` taken."""

    def __init__(self, arr, label, fmt, *, n_rows=None, n_cols=None, align=1, names=None):
        self.arr, self.label, self.fmt = arr, label, fmt
        if n_rows is None:
            n_rows, n_cols = _check_rows(np.dtype(arr.dtype), arr.shape, label)
        if arr.ndim > 2 and isinstance(arr, np.ndarray) and arr.flags.c_contiguous:
            self.arr = arr.reshape(n_rows, n_cols)  # a view (of the memory map)
        self.n_rows, self.n_cols, self.align, self.names = n_rows, n_cols, max(1, align), names
        self.notes: List[str] = []

    def blocks(self, cols=None, chunk_rows=None):
        rows = chunk_rows or _default_rows(self.n_cols)
        if chunk_rows is None and self.align > 1:  # whole storage chunks per block
            rows = max(1, rows // self.align) * self.align
        d = self.n_cols
        for s in range(0, self.n_rows, rows):
            b = self.arr[s:s + rows]
            if b.ndim != 2:
                b = b.reshape(b.shape[0], d)
            yield b if cols is None else b[:, cols]


class _NpyStream(_ArrayReader):
    """A .npy file read with plain ``read()`` in row blocks: no memory map (pipes, stdin, or an
    address-space limit smaller than the file)."""

    def __init__(self, fh, label, shape, fortran, dtype, seekable, offset):
        n, d = _check_rows(dtype, shape, label)
        self.fh, self.label, self.fmt = fh, label, "npy"
        self.shape, self.fortran, self.dtype = tuple(shape), fortran, dtype
        self.seekable, self.offset = seekable, offset
        self.stdin = label == "<stdin>"
        self.n_rows, self.n_cols, self.align, self.names = n, d, 1, None
        self.notes = []
        self._whole = None

    def _fill(self, arr):
        view = memoryview(arr.reshape(-1)).cast("B")
        got = 0
        while got < len(view):
            k = self.fh.readinto(view[got:])
            if not k:
                raise DataError(f"cannot read {self.label} as .npy: file is truncated (shorter "
                                "than its header says)")
            got += k

    def blocks(self, cols=None, chunk_rows=None):
        rows = chunk_rows or _default_rows(self.n_cols)
        n, d = self.n_rows, self.n_cols
        try:
            if self.fortran and any(s > 1 for s in self.shape[1:]):
                yield from self._fortran_blocks(rows, cols)
                return
            if self.seekable:
                self.fh.seek(self.offset)
            for s in range(0, n, rows):
                buf = np.empty((min(rows, n - s), d), dtype=self.dtype)
                self._fill(buf)
                yield buf if cols is None else buf[:, cols]
        except (OSError, EOFError) as exc:
            raise DataError(f"cannot read {self.label} as .npy: {_reason(exc)}") from None
        finally:
            if self.stdin is False:
                self.fh.close()

    def _fortran_blocks(self, rows, cols):
        n, d = self.n_rows, self.n_cols
        trailing = self.shape[1:]
        if not self.seekable:  # the bytes are those of the transposed C array: read it whole
            t = np.empty(self.shape[::-1], dtype=self.dtype)
            self._fill(t)
            arr = t.T
            for s in range(0, n, rows):
                b = arr[s:s + rows].reshape(-1, d)
                yield b if cols is None else b[:, cols]
            return
        size = self.dtype.itemsize
        for s in range(0, n, rows):  # one contiguous segment per feature
            m = min(rows, n - s)
            seg = np.empty((d, m), dtype=self.dtype)
            for k in range(d):
                self.fh.seek(self.offset + (k * n + s) * size)
                self._fill(seg[k])
            b = seg.reshape(trailing[::-1] + (m,)).transpose().reshape(m, d)
            yield b if cols is None else b[:, cols]


def _npy_header(fh, label):
    """``(shape, fortran_order, dtype)`` from the header of a .npy stream at its start."""
    magic = _read_exactly(fh, 8)
    if magic[:6] != _NPY_MAGIC:
        raise DataError(f"cannot read {label} as .npy: not a NumPy .npy file (no NumPy header)")
    if len(magic) < 8:
        raise DataError(f"cannot read {label} as .npy: file is truncated (within its header)")
    version = (magic[6], magic[7])
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy format version {version[0]}.{version[1]}")
    except ValueError as exc:
        msg = _first_line(exc)
        if "EOF" in msg or "truncated" in msg.lower():
            msg = "file is truncated (within its header)"
        raise DataError(f"cannot read {label} as .npy: {msg}") from None
    if dtype.hasobject:
        raise DataError(f"{label} holds Python objects (dtype object); save a numeric array")
    return shape, fortran, dtype


def _memmap(path, shape, fortran, dtype, offset):
    """The read-only memory map, or None when the address space cannot hold it."""
    try:
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                         order="F" if fortran else "C")
    except (OSError, ValueError, MemoryError, OverflowError):
        return None


def _open_npy(path, fh, seekable, label):
    """A reader of a .npy file: its memory map when one can be had, else a read() stream."""
    shape, fortran, dtype = _npy_header(fh, label)
    _check_rows(dtype, shape, label)
    if not seekable:
        return _NpyStream(fh, label, shape, fortran, dtype, False, None)
    offset = fh.tell()
    need = offset + int(np.prod(shape)) * dtype.itemsize
    if os.fstat(fh.fileno()).st_size < need:
        fh.close()
        raise DataError(f"cannot read {label} as .npy: file is truncated (shorter than its "
                        "header says)")
    mm = _memmap(path, shape, fortran, dtype, offset)
    if mm is None:
        return _NpyStream(fh, label, shape, fortran, dtype, True, offset)
    fh.close()
    return _ArrayReader(mm, label, "npy")


def _load_npz(path, key):
    try:
        if not zipfile.is_zipfile(path):
            raise DataError(f"cannot read {_show(path)} as .npz: not a complete zip archive "
                            "(corrupt or truncated)")
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if not keys:
                raise DataError(f"{_show(path)} holds no arrays")
            if key is None:
                if len(keys) != 1:
                    msg = f"{_show(path)} holds {len(keys)} arrays ({', '.join(keys)}); choose one"
                    raise DataError(f"{msg} with key=...", cli=f"{msg} with --key NAME")
                key = keys[0]
            if key not in keys:
                raise DataError(f"{_show(path)} has no array {key!r}; it has: {', '.join(keys)}")
            return z[key]
    except DataError:
        raise
    except ValueError as exc:
        msg = _first_line(exc)
        if "Object arrays" in msg:
            raise DataError(f"{_show(path)}: array {key!r} holds Python objects (dtype object); "
                            "save a numeric array") from None
        raise DataError(f"cannot read {_show(path)} as .npz: {msg}") from None
    except (zipfile.BadZipFile, *_READ_ERRORS) as exc:
        raise DataError(f"cannot read {_show(path)} as .npz: {_reason(exc)}") from None


def _open_reader(path, *, key=None, header="auto", delimiter=None, fmt=None, label=None,
                 text_options_apply=True):
    """The reader of one input (a path, or ``-`` for stdin), opened once."""
    path, fmt, gz = _check_file(path, fmt)
    shown = label or ("<stdin>" if path == STDIN else _show(path))
    if key is not None and fmt is not None and fmt not in _KEYED:
        raise DataError(f"{shown}: key={key!r} applies only to .npz, HDF5, zarr, Parquet and "
                        "Arrow files",
                        cli=f"{shown}: --key {key} applies only to .npz, HDF5, zarr, Parquet and "
                            "Arrow files")
    if fmt in ("hdf5", "zarr", "parquet", "arrow"):
        from . import _formats

        return _formats.open_reader(fmt, path, key, shown)
    if fmt == "npz":
        _check_regular(path, shown, "npz")
        arr = _load_npz(path, key)
        return _ArrayReader(arr, shown, "npz")
    fh, head, seekable = _open_stream(path)
    try:
        if fmt == "npy" or (fmt is None and head.startswith(_NPY_MAGIC)):
            if path == STDIN and key is not None:
                raise DataError("stdin: key applies only to .npz, HDF5, zarr, Parquet and Arrow "
                                "files", cli="stdin: --key applies only to .npz, HDF5, zarr, "
                                             "Parquet and Arrow files")
            try:
                return _open_npy(path, fh, seekable, shown)
            except _READ_ERRORS as exc:
                raise DataError(f"cannot read {shown} as .npy: {_reason(exc)}") from None
        if key is not None:  # stdin recognised as text
            raise DataError(f"{shown}: key={key!r} applies only to .npz, HDF5, zarr, Parquet and "
                            "Arrow files", cli=f"{shown}: --key {key} applies only to .npz, "
                                               "HDF5, zarr, Parquet and Arrow files")
        stream = fh
        if gz or head.startswith(_GZIP_MAGIC):
            stream = gzip.GzipFile(fileobj=fh, mode="rb")
        ext = "." + fmt if fmt else None

        def close():
            stream.close()
            if path != STDIN:
                fh.close()

        return _text.TextReader(stream, shown, ext, header=header,
                                delimiter=parse_delimiter(delimiter),
                                delimiter_given=delimiter is not None, close=close)
    except BaseException:
        if fh is not None and path != STDIN:
            fh.close()
        raise


def _check_regular(path, label, fmt):
    if not os.path.isfile(path):
        raise DataError(f"cannot read {label} as {fmt}: it is not a regular file (a pipe?); "
                        f"{fmt} needs a seekable file: save it to disk first")


def _text_reader_of(reader):
    return reader if isinstance(reader, _text.TextReader) else None


def _check_header(header):
    if header is None or header is True or header is False:
        return {None: "auto", True: "yes", False: "no"}[header]
    h = str(header).lower()
    if h not in HEADER_CHOICES:
        raise ParameterError(f"header must be 'auto', 'yes' or 'no', got {header!r}",
                             cli=f"--header {header}: use auto, yes or no")
    return h


def load_array(path, *, key: Optional[str] = None, header="auto", delimiter=None,
               format=None) -> np.ndarray:
    """Read a dataset file into an ``(N, D)`` array, rows = samples.

    Parameters
    ----------
    path : str or os.PathLike
        Any supported file (see the module docstring), or ``"-"`` for standard input.
    key : str, optional
        The array inside an ``.npz`` file (may be omitted when it holds one), the dataset of an
        HDF5 file, the array of a zarr group, the column(s) of a Parquet/Arrow file.
    header : {"auto", "yes", "no"}
        Text files: is the first line a header (column names)?
    delimiter : str, optional
        Text files: the field separator (default: detected); see :func:`parse_delimiter`.
    format : str, optional
        One of :data:`FORMATS`, instead of the file name's extension.

    Returns
    -------
    ndarray (N, D)
        ``.npy``: a read-only ``numpy.memmap`` with the file's dtype (flattened row-wise if the
        stored array has more than two dimensions; a view unless the file is Fortran-ordered),
        or the array read into memory when no memory map can be had. ``.npz``, HDF5, zarr:
        the stored dtype. Text: float64.

    Raises
    ------
    DataError
        Missing/unreadable file, unsupported format, corrupt or non-numeric data, ragged or
        empty text; the message is one line naming the file.
    """
    reader = _open_reader(path, key=key, header=_check_header(header), delimiter=delimiter,
                          fmt=format)
    _check_text_options(reader, header, delimiter)
    if isinstance(reader, _ArrayReader) and not isinstance(reader, _NpyStream) and \
            isinstance(reader.arr, np.ndarray):
        return reader.arr if reader.arr.ndim == 2 else reader.arr.reshape(reader.n_rows, -1)
    blocks = list(reader.blocks())
    if not blocks:
        raise DataError(f"{reader.label} has no rows")
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


def _check_text_options(reader, header, delimiter):
    if _text_reader_of(reader) is None and (_check_header(header) != "auto"
                                            or delimiter is not None):
        raise ParameterError(f"{reader.label}: header=/delimiter= apply only to text files "
                             "(csv, tsv, txt)",
                             cli=f"{reader.label}: --header/--delimiter apply only to text files "
                                 "(csv, tsv, txt)")


def iter_chunks(path, *, key: Optional[str] = None, chunk_rows: Optional[int] = None,
                header="auto", delimiter=None, format=None,
                columns=None) -> Tuple[Optional[int], Iterator[np.ndarray]]:
    """Stream a file as consecutive blocks of rows.

    Parameters
    ----------
    path : str or os.PathLike
        Any input :func:`load_array` reads (``"-"``: standard input).
    key, header, delimiter, format
        As :func:`load_array`.
    chunk_rows : int, optional
        Rows per block. Default: about 16 MiB of float64 per block (``2**21 // D`` rows); text
        files: the rows of each ~16 MiB block of text.
    columns : sequence of int, optional
        Only these columns (0-based, in this order); text and Parquet/Arrow files parse only
        them.

    Returns
    -------
    n_rows : int or None
        Number of rows, known up front for binary formats; None for text (read once).
    chunks : iterator of ndarray (n_i, D)
        ``.npy``: slices of the memory map (views, file dtype; a Fortran-ordered image array is
        copied one block at a time), or blocks read with ``read()`` when there is no memory map.
        ``.npz``: slices of the loaded array. Text: float64 blocks, so a file larger than memory
        can be fed to :func:`vaetheory.moments.accumulate_moments`.

    Raises
    ------
    DataError
        As :func:`load_array`. Problems found before the first row (missing file, bad format,
        empty file, bad header) are raised here; problems in later lines are raised while
        iterating, naming the line.

    Examples
    --------
    >>> n, chunks = iter_chunks("train.npy")                      # doctest: +SKIP
    >>> moments = accumulate_moments(chunks, progress=bar.update)  # doctest: +SKIP
    """
    if chunk_rows is not None:
        try:
            ok = not isinstance(chunk_rows, bool) and int(chunk_rows) == chunk_rows >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ParameterError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
        chunk_rows = int(chunk_rows)
    reader = _open_reader(path, key=key, header=_check_header(header), delimiter=delimiter,
                          fmt=format)
    _check_text_options(reader, header, delimiter)
    cols = None if columns is None else np.asarray(columns, dtype=np.intp)
    return getattr(reader, "n_rows", None), reader.blocks(cols, chunk_rows)


# ------------------------------------------------------------------------------------------
# column selections

_RANGE_WITH_DASH = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def _index(text, item):
    try:
        return int(text)
    except ValueError:
        raise ParameterError(f"column selection item {item!r}: {text.strip()!r} is not an integer; "
                         "use e.g. '0:10,15' (0-based, end excluded)") from None


def parse_columns(spec: str, n_cols: int) -> np.ndarray:
    """0-based column indices from a selection string.

    Syntax (Python indexing, 0-based, ends excluded): comma-separated items, each either

    - ``i``: one column; negative counts from the end (``-1`` is the last column);
    - ``a:b`` or ``a:b:s``: the half-open range ``a, a+s, ..., < b`` (``s >= 1``, default 1);
      ``a`` defaults to 0 and ``b`` to ``n_cols``; negatives count from the end.

    Examples for 784 pixels plus a label column (``n_cols=785``): ``"0:784"`` or ``":-1"``
    (the pixels), ``"-1"`` (the label), ``"0:10,20,30:40"`` (columns 0..9, 20 and 30..39).
    There are no inclusive ``a-b`` ranges (``-`` is the minus sign); ``"0-9"`` is an error that
    suggests ``"0:10"``. Unlike Python slices nothing is clipped: an index or range end outside
    the columns, an empty range and a column selected twice are errors.

    Parameters
    ----------
    spec : str
        The selection.
    n_cols : int
        Number of columns in the data.

    Returns
    -------
    ndarray of intp
        The selected indices, in the order given.

    Raises
    ------
    ValueError
        Malformed, out-of-range, empty or duplicated selections (one line saying which item).
    """
    n_cols = int(n_cols)
    if n_cols < 1:
        raise ParameterError(f"n_cols must be >= 1, got {n_cols}")
    if spec is None or not str(spec).strip():
        raise ParameterError("empty column selection; use e.g. '0:10,15' (0-based, end excluded)")
    last = n_cols - 1
    out = []
    for item in str(spec).split(","):
        shown = item.strip()
        if not shown:
            raise ParameterError(f"column selection {spec!r} has an empty item (stray comma?)")
        m = _RANGE_WITH_DASH.match(item)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            raise ParameterError(f"column selection item {shown!r}: ranges use ':' with the end "
                             f"excluded, e.g. '{a}:{b + 1}' for columns {a} to {b}")
        if ":" not in item:
            i = _index(item, shown)
            j = i + n_cols if i < 0 else i
            if not 0 <= j < n_cols:
                raise ParameterError(f"column selection item {shown!r}: column {i} is out of range; "
                                 f"the data have {n_cols} columns (0..{last}, or -{n_cols}..-1)")
            out.append(j)
            continue
        parts = item.split(":")
        if len(parts) > 3:
            raise ParameterError(f"column selection item {shown!r}: use a:b or a:b:step")
        a = _index(parts[0], shown) if parts[0].strip() else 0
        b = _index(parts[1], shown) if parts[1].strip() else n_cols
        s = _index(parts[2], shown) if len(parts) == 3 and parts[2].strip() else 1
        if s < 1:
            raise ParameterError(f"column selection item {shown!r}: step must be >= 1, got {s}")
        a2, b2 = (a + n_cols if a < 0 else a), (b + n_cols if b < 0 else b)
        for v, v2, what in ((a, a2, "start"), (b, b2, "end")):
            hi = n_cols if what == "end" else last
            if not 0 <= v2 <= hi:
                raise ParameterError(f"column selection item {shown!r}: {what} {v} is out of range; "
                                 f"the data have {n_cols} columns (0..{last}, end excluded)")
        if a2 >= b2:
            raise ParameterError(f"column selection item {shown!r} selects no columns "
                             f"(columns {a2}..{b2 - 1}); the end is excluded")
        out.extend(range(a2, b2, s))
    idx = np.asarray(out, dtype=np.intp)
    uniq, counts = np.unique(idx, return_counts=True)
    if np.any(counts > 1):
        raise ParameterError(f"column selection {spec!r} selects column {int(uniq[counts > 1][0])} "
                         "more than once")
    return idx


def parse_image_shape(text: str) -> Tuple[int, ...]:
    """Parse ``"HxW"`` (or ``"HxWxC"``, channels last) into a tuple of ints.

    Parameters
    ----------
    text : str
        E.g. ``"28x28"``, ``"8x8"``, ``"32x32x3"``; ``x`` or ``X``, spaces allowed.

    Returns
    -------
    tuple of int
        ``(H, W)`` or ``(H, W, C)``, with ``H, W >= 2`` (a quadrant needs at least one pixel)
        and ``C >= 1``.

    Raises
    ------
    ValueError
        Anything else.
    """
    parts = re.split(r"\s*[xX\u00d7]\s*", str(text).strip())
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        dims = ()
    if len(dims) not in (2, 3) or min(dims[:2]) < 2 or min(dims) < 1:
        raise ParameterError(f"bad image shape {str(text)!r}: use HxW with H, W >= 2 "
                         "(e.g. 28x28), or HxWxC for channels-last images")
    return dims


def quadrant_columns(image_shape, quadrant: str, *,
                     n_cols: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Columns of one image quadrant (the condition x) and of the other three (the output y).

    The paper's conditional task: images flattened row-wise (C order, as :func:`load_array` does),
    one quadrant observed as x, the remaining three predicted as y. The quadrant is the
    ``floor(H/2) x floor(W/2)`` block of pixels starting from its corner; for odd ``H`` (``W``)
    the middle row (column) is therefore part of y. With channels (``(H, W, C)``, channels last)
    every channel of a quadrant pixel belongs to x.

    Parameters
    ----------
    image_shape : tuple (H, W) or (H, W, C)
        E.g. from :func:`parse_image_shape`.
    quadrant : {"top-left", "top-right", "bottom-left", "bottom-right"}
        Case-insensitive; ``_`` or a space may replace ``-``.
    n_cols : int, optional
        Number of data columns; when given it must equal ``H * W * C``.

    Returns
    -------
    x_cols, y_cols : ndarray of intp
        Sorted, disjoint, together ``0 .. H*W*C - 1``.

    Examples
    --------
    A 4x4 image, pixels numbered row by row: the bottom-left quadrant is pixels 8, 9, 12, 13.

    >>> x, y = quadrant_columns((4, 4), "bottom-left")
    >>> x.tolist(), y.tolist()
    ([8, 9, 12, 13], [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15])
    """
    try:
        dims = tuple(int(v) for v in image_shape)
    except (TypeError, ValueError):
        dims = ()
    if len(dims) not in (2, 3) or min(dims[:2]) < 2 or min(dims) < 1:
        raise ParameterError(f"image_shape must be (H, W) or (H, W, C) with H, W >= 2, "
                         f"got {image_shape!r}")
    H, W = dims[:2]
    C = dims[2] if len(dims) == 3 else 1
    q = str(quadrant).strip().lower().replace("_", "-").replace(" ", "-")
    if q not in QUADRANTS:
        raise ParameterError(f"unknown quadrant {quadrant!r}; use one of {', '.join(QUADRANTS)}")
    total = H * W * C
    if n_cols is not None and int(n_cols) != total:
        shape = "x".join(str(d) for d in dims)
        raise ParameterError(f"image shape {shape} has {total} values per image but the data have "
                         f"{n_cols} columns; select the pixel columns or fix the shape")
    h, w = H // 2, W // 2
    rows = np.arange(h) if q.startswith("top") else np.arange(H - h, H)
    cols = np.arange(w) if q.endswith("left") else np.arange(W - w, W)
    pixels = (rows[:, None] * W + cols[None, :]).ravel()
    x = (pixels[:, None] * C + np.arange(C)[None, :]).ravel().astype(np.intp)
    mask = np.ones(total, dtype=bool)
    mask[x] = False
    return x, np.flatnonzero(mask).astype(np.intp)


# ------------------------------------------------------------------------------------------
# selections: what a model reads


def _feature_namer(reader, colmap):
    """Feature j of a selection -> the reader's name of its file column."""
    if colmap is None:
        return reader.column
    return lambda j: reader.column(int(colmap[j]))


@dataclass
class RowStream:
    """Row blocks of a :class:`Selection`, read once, with where they came from.

    ``blocks`` yields ``(n_i, D)`` arrays (for a conditional selection the columns are ``[x, y]``,
    x first); non-finite values are counted while streaming and raise a :class:`DataError` naming
    the first one in file coordinates at the end. ``provenance`` is a JSON-able dict (source,
    format, centring, selection, dimensions; ``notes``: a list of what the reader was unsure of,
    complete once ``blocks`` is exhausted) that the spectrum carries on.
    """

    blocks: Iterator[np.ndarray]
    name: str                     # how moment errors name the data ("[x, y]" for pairs)
    n_rows: Optional[int]         # None when unknown up front (text files)
    nbytes: int                   # bytes on disk (0 for in-memory arrays and stdin)
    x_dim: Optional[int]          # conditional selections: columns of x (the first ones)
    provenance: dict
    #: how a message names feature j (0-based, of the selected features) in the file's terms,
    #: e.g. "column 3 ('age')" (counting from 1, as every io message does)
    feature: Optional[Callable[[int], str]] = None


@dataclass
class _Source:
    label: str
    reader: object
    nbytes: int

    @property
    def n_rows(self):
        return getattr(self.reader, "n_rows", None)

    @property
    def n_cols(self):
        return int(self.reader.n_cols)

    def stream(self, cols=None) -> Iterator[np.ndarray]:
        """The row blocks of columns ``cols`` (all when None); the first one read now."""
        blocks = self.reader.blocks(cols)
        first = next(blocks, None)
        if first is None:
            raise DataError(f"{self.label} has no rows")
        return itertools.chain([first], blocks)


def _in_memory(source) -> bool:
    """An array (NumPy, or array-like with shape and dtype: a Dask array), not a path."""
    return isinstance(source, np.ndarray) or (
        hasattr(source, "shape") and hasattr(source, "dtype")
        and not isinstance(source, (str, bytes, os.PathLike)))


def _open_source(source, key=None, label=None, *, header="auto", delimiter=None,
                 fmt=None) -> _Source:
    """A file path, ``-`` (stdin) or in-memory array, opened (not yet read)."""
    if _in_memory(source):
        name = label or "the array"
        if source.dtype.kind not in _NUMERIC_KINDS:
            raise DataError(f"{name} must be numeric, got dtype {source.dtype}")
        return _Source(name, _ArrayReader(source, name, "array"), 0)
    shown = label or ("<stdin>" if os.fspath(source) == STDIN else f"'{source}'"
                      + (f" (array {key!r})" if key else ""))
    reader = _open_reader(source, key=key, header=header, delimiter=delimiter, fmt=fmt,
                          label=shown)
    nbytes = 0
    if os.fspath(source) != STDIN:
        with _suppress_os():
            nbytes = os.path.getsize(source) if os.path.isfile(source) else 0
    return _Source(shown, reader, nbytes)


class _suppress_os:
    def __enter__(self):
        return self

    def __exit__(self, typ, exc, tb):
        return typ is not None and issubclass(typ, OSError)


def _where(src: _Source, row, col):
    return src.reader.where(row, col)


def _index_hint(src, col, colmap, conditional):
    """How to leave file column ``col`` (0-based) out: a --cols selection, or advice."""
    if conditional:
        return f"leave it out of --x-cols/--y-cols (it is column {col} there, 0-based)"
    if colmap is not None:
        return f"leave column {col} (0-based) out of --cols"
    d = src.n_cols
    if col == 0:
        sel = "1:"
    elif col == d - 1:
        sel = ":-1"
    else:
        sel = f":{col},{col + 1}:"
    return f"leave it out with --cols {sel}"


def _inspect(src: _Source, blocks, colmap, prov, conditional=False) -> Iterator[np.ndarray]:
    """Pass blocks through, counting non-finite values (raised at the end with the first one's
    location, in the file's coordinates) and watching for a column of row numbers (a note)."""
    row, bad, first = 0, 0, None
    cand = base = None
    for block in blocks:
        m = block.shape[0]
        if block.dtype.kind in "fc":
            mask = ~np.isfinite(block)
            k = int(np.count_nonzero(mask))
            if k:
                if first is None:
                    r, c = np.argwhere(mask)[0]
                    first = _where(src, row + int(r),
                                   int(colmap[c]) if colmap is not None else int(c))
                bad += k
        if m:
            if cand is None:  # the first block: which columns start 0, 1, 2, ... (or 1, 2, ...)
                head = np.asarray(block[:min(m, 1024)])
                start = head[0]
                steps = np.arange(head.shape[0]).reshape(-1, 1)
                ok = ((start == 0) | (start == 1)) & np.all(head == start + steps, axis=0)
                cand, base = np.flatnonzero(ok), start
                if cand.size and head.shape[0] < m:
                    tail = np.asarray(block[head.shape[0]:, cand])
                    steps = np.arange(head.shape[0], m).reshape(-1, 1)
                    cand = cand[np.all(tail == base[cand] + steps, axis=0)]
            elif cand.size:
                steps = np.arange(row, row + m).reshape(-1, 1)
                cand = cand[np.all(np.asarray(block[:, cand]) == base[cand] + steps, axis=0)]
        row += m
        yield block
    notes = prov.setdefault("notes", [])
    if cand is not None and cand.size and row >= 3:
        j = int(cand[0])
        col = int(colmap[j]) if colmap is not None else j
        b = int(base[j])
        notes.append(f"{src.label} {src.reader.column(col)} holds the row numbers {b}, {b + 1}, "
                     f"..., {b + row - 1}, like the index pandas' to_csv() writes; it is used as a "
                     f"feature: if it is an index, {_index_hint(src, col, colmap, conditional)}")
    for note in src.reader.end_notes():
        if note not in notes:
            notes.append(note)
    if not notes:
        del prov["notes"]
    if bad:
        raise DataError(f"{src.label} contains {bad} non-finite value(s) (NaN or inf); first at "
                        f"{first}")


def _zip_rows(x: _Source, y: _Source, xs, ys) -> Iterator[np.ndarray]:
    """Blocks of [x, y] with paired rows, whatever the block sizes of the two streams."""
    rx = ry = None
    nx = ny = 0
    while True:
        if rx is None or rx.shape[0] == 0:
            rx = next(xs, None)
            nx += 0 if rx is None else rx.shape[0]
        if ry is None or ry.shape[0] == 0:
            ry = next(ys, None)
            ny += 0 if ry is None else ry.shape[0]
        if rx is None or ry is None:
            rest = xs if ry is None else ys
            if rx is not None or ry is not None:
                extra = sum(b.shape[0] for b in rest)
                nx, ny = (nx + extra, ny) if ry is None else (nx, ny + extra)
                raise DataError(f"x ({x.label}) has {nx} rows but y ({y.label}) has {ny}: they "
                                "must be paired samples (row i of x with row i of y)")
            return
        k = min(rx.shape[0], ry.shape[0])
        yield np.concatenate([np.asarray(rx[:k], dtype=np.float64),
                              np.asarray(ry[:k], dtype=np.float64)], axis=1)
        rx, ry = rx[k:], ry[k:]


def _source_name(source, label):
    if _in_memory(source):
        return label or "the array"
    return "<stdin>" if os.fspath(source) == STDIN else str(source)


def _format_of(source, fmt):
    """The format a selection's source will be read as (None: stdin, recognised on reading)."""
    if _in_memory(source):
        return "array"
    if fmt is not None:
        return _check_format(fmt)
    path = os.fspath(source)
    return None if path == STDIN else _FORMAT_OF.get(_kind(path))


@dataclass(frozen=True)
class Selection:
    """What a model reads: a file (or an in-memory array) and how to take rows and columns.

    Parameters
    ----------
    source : path or ndarray
        The data file (any format :func:`load_array` reads; ``"-"`` is standard input) or an
        array; rows are samples.
    key : str, optional
        The array inside an ``.npz`` source, the dataset of an HDF5 file, the array of a zarr
        group, the column(s) of a Parquet/Arrow file (a comma list).
    cols : str, optional
        Unconditional models: use only these columns (:func:`parse_columns` syntax, e.g. ``":-1"``).
        Text and Parquet/Arrow files parse only these.
    conditional : bool
        The CVAE reads pairs (x, y): from ``source`` (x) and ``y``; from columns ``x_cols`` /
        ``y_cols`` of ``source`` (either one alone means "the other columns"); from an image
        ``quadrant`` (x) and the other three (y); or from the arrays ``x`` and ``y`` of an .npz.
    y, y_key, x_cols, y_cols, quadrant, image_shape
        The conditional forms above (``image_shape`` ``(H, W)`` or ``(H, W, C)``; square images
        are inferred from the column count).
    center : bool
        Centre the data (covariances: the model with encoder and decoder biases) or not.
    header : {"auto", "yes", "no"}
        Text files of the selection: is the first line a header? (module docstring).
    delimiter : str, optional
        Text files of the selection: the field separator (default: detected).
    format : str, optional
        How to read ``source`` (one of :data:`FORMATS`) instead of its file name's extension;
        ``y`` is read by its own name.
    label, y_label : str, optional
        How messages and the provenance name an in-memory ``source`` (and ``y``).
    provenance : dict, optional
        Given: reported as the provenance instead of the one :meth:`open` would describe (a
        selection read into memory by :meth:`read` keeps the file's).

    Examples
    --------
    >>> sel = Selection("digits.npy", conditional=True, quadrant="bottom-left")  # doctest: +SKIP
    >>> spectrum = vaetheory.moments.load_spectrum(sel)                          # doctest: +SKIP
    >>> Selection("export.csv", header="yes", delimiter=";", cols="1:")          # doctest: +SKIP
    """

    source: object
    key: Optional[str] = None
    cols: Optional[str] = None
    conditional: bool = False
    y: object = None
    y_key: Optional[str] = None
    x_cols: Optional[str] = None
    y_cols: Optional[str] = None
    quadrant: Optional[str] = None
    image_shape: Optional[Tuple[int, ...]] = None
    center: bool = True
    label: Optional[str] = None
    y_label: Optional[str] = None
    provenance: Optional[dict] = field(default=None, compare=False, repr=False)
    header: str = "auto"
    delimiter: Optional[str] = None
    format: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "header", _check_header(self.header))
        parse_delimiter(self.delimiter)
        _check_format(self.format)
        stdin = [n for n, v in (("source", self.source), ("y", self.y))
                 if v is not None and not _in_memory(v) and os.fspath(v) == STDIN]
        if len(stdin) > 1:
            raise ParameterError("only one input can be standard input ('-')",
                                 cli="only one of DATA and --y can be '-' (standard input)")
        pairs = {"y": self.y, "y_key": self.y_key, "x_cols": self.x_cols, "y_cols": self.y_cols,
                 "quadrant": self.quadrant, "image_shape": self.image_shape}
        if not self.conditional:
            given = [k for k, v in pairs.items() if v is not None]
            if given:
                raise ParameterError(f"{', '.join(given)} select x and y of a conditional model: "
                                     "use conditional=True")
            return
        if self.cols is not None:
            raise ParameterError("cols selects the columns of an unconditional model; a "
                                 "conditional one takes x_cols/y_cols",
                                 cli="not an option of --model cvae: --cols (vae/mhvae only) "
                                     "(use --x-cols/--y-cols)")
        if self.image_shape is not None and self.quadrant is None:
            raise ParameterError("image_shape is used with quadrant (which quadrant is x)",
                                 cli="--image-shape is used with --quadrant (which quadrant is x)")
        by_cols = self.x_cols is not None or self.y_cols is not None
        if self.quadrant is not None and (by_cols or self.y is not None):
            raise ParameterError("quadrant selects x and y itself; do not combine it with "
                                 "y/x_cols/y_cols",
                                 cli="--quadrant selects x and y itself; do not combine it with "
                                     "--y/--x-cols/--y-cols")

    @property
    def name(self) -> str:
        """The source as messages and the provenance name it."""
        return _source_name(self.source, self.label)

    @property
    def inputs(self):
        """The files read (for refusing to overwrite them)."""
        return [p for p in (self.source, self.y)
                if p is not None and not _in_memory(p) and os.fspath(p) != STDIN]

    def _open(self, source, key=None, label=None, fmt=None) -> _Source:
        return _open_source(source, key, label, header=self.header, delimiter=self.delimiter,
                            fmt=fmt)

    def _check_text_options(self, sources):
        if (self.header != "auto" or self.delimiter is not None) and not any(
                _text_reader_of(s.reader) is not None for s in sources):
            names = ", ".join(s.label for s in sources)
            raise ParameterError(f"header=/delimiter= apply only to text files (csv, tsv, txt); "
                                 f"{names} is not one",
                                 cli=f"--header/--delimiter apply only to text files (csv, tsv, "
                                     f"txt); {names} is not one")

    # ---- streaming
    def open(self) -> RowStream:
        """Open the source(s): a :class:`RowStream` of row blocks, read once, with provenance.

        Raises :class:`DataError` for the data and :class:`ParameterError` for a selection that
        does not fit them (columns out of range, an image shape that does not match).
        """
        prov = {"source": self.name, "centered": bool(self.center)}
        if not self.conditional:
            src = self._open(self.source, self.key, self.label, self.format)
            self._check_text_options([src])
            prov.update(src.reader.describe())
            prov["features"] = src.n_cols
            colmap = None
            if self.cols is not None:
                colmap = parse_columns(self.cols, src.n_cols)
                prov["selection"] = f"columns {self.cols} of {prov['features']}"
            if src.reader.notes:
                prov["notes"] = list(src.reader.notes)
            blocks = _inspect(src, src.stream(colmap), colmap, prov)
            stream = RowStream(blocks, src.label, src.n_rows, src.nbytes, None, prov,
                               _feature_namer(src.reader, colmap))
        else:
            stream = self._open_pairs(prov)
        if self.provenance is not None:
            stream.provenance = dict(self.provenance)
        return stream

    def _open_pairs(self, prov) -> RowStream:
        is_npz = _format_of(self.source, self.format) == "npz"
        by_cols = self.x_cols is not None or self.y_cols is not None
        if self.y is not None or (is_npz and not by_cols and self.quadrant is None):
            # two arrays: source (x) and y, or the x/y arrays of one .npz
            if self.y is not None:
                x = self._open(self.source, self.key, self.label and f"{self.label} (x)",
                               self.format)
                y = self._open(self.y, self.y_key, self.y_label)
            else:
                x = self._open(self.source, self.key or "x", fmt=self.format)
                y = self._open(self.source, self.y_key or "y", fmt=self.format)
            self._check_text_options([x, y])
            xc = parse_columns(self.x_cols, x.n_cols) if self.x_cols is not None else None
            yc = parse_columns(self.y_cols, y.n_cols) if self.y_cols is not None else None
            if x.n_rows is not None and y.n_rows is not None and x.n_rows != y.n_rows:
                raise DataError(f"x ({x.label}) has {x.n_rows} rows but y ({y.label}) has "
                                f"{y.n_rows}: they must be paired samples (row i of x with row i "
                                "of y)")
            prov.update(x.reader.describe())
            prov.update(x_source=x.label, y_source=y.label, x_dim=x.n_cols if xc is None else
                        int(xc.size), y_dim=y.n_cols if yc is None else int(yc.size))
            prov["selection"] = f"x from {x.label}, y from {y.label}"
            notes = list(x.reader.notes) + [n for n in y.reader.notes if n not in x.reader.notes]
            if notes:
                prov["notes"] = notes
            blocks = _zip_rows(x, y, _inspect(x, x.stream(xc), xc, prov, True),
                               _inspect(y, y.stream(yc), yc, prov, True))
            total = None if x.n_rows is None or y.n_rows is None else x.n_rows
            return RowStream(blocks, "[x, y]", total, x.nbytes + y.nbytes, prov["x_dim"], prov)
        if not by_cols and self.quadrant is None:
            raise ParameterError(
                "the conditional model needs an output y: give y=, x_cols=/y_cols=, quadrant= "
                "(with image_shape=), or an .npz with arrays 'x' and 'y'",
                cli="the cvae needs an output y: give --y FILE, --x-cols/--y-cols, --quadrant with "
                    "--image-shape, or an .npz with arrays 'x' and 'y'")
        src = self._open(self.source, self.key, self.label, self.format)
        self._check_text_options([src])
        prov.update(src.reader.describe())
        D = src.n_cols
        if self.quadrant is not None:
            shape = self.image_shape
            if shape is None:
                side = math.isqrt(D)
                if side * side != D or side < 2:
                    raise ParameterError(
                        f"quadrant: the data have {D} columns, not a square image; give "
                        "image_shape=(H, W) (or (H, W, C))",
                        cli=f"--quadrant: the data have {D} columns, not a square image; give "
                            "--image-shape HxW (or HxWxC)")
                shape = (side, side)
                prov["image_shape_inferred"] = True
            xc, yc = quadrant_columns(shape, self.quadrant, n_cols=D)
            prov["image_shape"] = list(shape)
            prov["selection"] = (f"x = {self.quadrant} quadrant of {'x'.join(map(str, shape))} "
                                 "images, y = the other three")
        else:
            xc = parse_columns(self.x_cols, D) if self.x_cols is not None else None
            yc = parse_columns(self.y_cols, D) if self.y_cols is not None else None
            if xc is None:
                xc = np.setdiff1d(np.arange(D), yc)
            if yc is None:
                yc = np.setdiff1d(np.arange(D), xc)
            if xc.size == 0 or yc.size == 0:
                raise ParameterError(f"the column selection leaves "
                                     f"{'x' if xc.size == 0 else 'y'} with no columns "
                                     f"(the data have {D})")
            both = np.intersect1d(xc, yc)
            if both.size:
                raise ParameterError(f"column {int(both[0])} is in both x_cols and y_cols",
                                     cli=f"column {int(both[0])} is in both --x-cols and --y-cols")
            prov["selection"] = (f"x = columns {self.x_cols or 'not in y'}, "
                                 f"y = columns {self.y_cols or 'not in x'}")
        cols = np.concatenate([xc, yc])
        prov.update(features=D, x_dim=int(xc.size), y_dim=int(yc.size))
        if src.reader.notes:
            prov["notes"] = list(src.reader.notes)
        blocks = _inspect(src, src.stream(cols), cols, prov, True)
        return RowStream(blocks, src.label, src.n_rows, src.nbytes, int(xc.size), prov)

    # ---- in memory
    def read(self) -> Tuple[np.ndarray, Optional[np.ndarray], "Selection"]:
        """Read the selected rows into float64 arrays, once.

        Returns ``(X, y, selection)``: unconditional ``y`` is None; conditional ``X`` is the
        condition x and ``y`` the output. ``selection`` selects the same data from memory (same
        provenance), so a spectrum of it needs no second pass over the file.
        """
        stream = self.open()
        Z = np.concatenate([np.asarray(b, dtype=np.float64) for b in stream.blocks], axis=0)
        if not self.conditional:
            return Z, None, Selection(Z, center=self.center, label=stream.name,
                                      provenance=stream.provenance)
        k = stream.x_dim
        x, y = Z[:, :k], Z[:, k:]
        return x, y, Selection(x, conditional=True, y=y, center=self.center, label=stream.name,
                               provenance=stream.provenance)


@dataclass(frozen=True)
class EigenvalueSelection:
    """A spectrum given directly (a published one, or one computed elsewhere): eigenvalues typed
    as a comma list (``"5.117,3.741,..."``) or read from a file (any format of
    :func:`load_array`, all values in order), in place of data.

    :func:`vaetheory.moments.load_spectrum` wraps them as a spectrum of ``kind`` ("data", or
    "residual" for the CVAE's e_i). There are no samples: no centring, no sample count, no
    eigenvectors beyond the coordinate axes, and the loss's trace is the sum of the values given
    (only those modes exist).
    """

    values: object
    kind: str = "data"
    label: Optional[str] = None
    conditional: bool = False
    center: Optional[bool] = None

    @property
    def name(self) -> str:
        return self.label or "eigenvalues given"

    @property
    def inputs(self):
        return [self.values] if isinstance(self.values, str) and not _looks_numeric(self.values) \
            else []

    def array(self) -> np.ndarray:
        """The eigenvalues (1-d float64), as given."""
        v = self.values
        if isinstance(v, str):
            if _looks_numeric(v):
                from ._grid import parse_values

                return parse_values(v, "--eigenvalues")
            return np.asarray(load_array(v), dtype=np.float64).ravel()
        return np.asarray(v, dtype=np.float64).ravel()

    def read(self):
        raise ParameterError("a spectrum given as eigenvalues has no samples to train on",
                             cli="--eigenvalues gives a spectrum, not samples: --mode sgd needs "
                                 "DATA")


def _looks_numeric(text) -> bool:
    return all(_is_number(t) for t in str(text).split(",")) and bool(str(text).strip())


# ------------------------------------------------------------------------------------------
# conversion


def _npy_header_bytes(dtype, shape, width=None):
    """A version-1.0 .npy header for ``shape``, padded to ``width`` bytes (default: minimal,
    a multiple of 64)."""
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
         "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    if width is None:
        width = -(-(10 + len(text) + 1) // 64) * 64
    pad = width - 10 - len(text) - 1
    if pad < 0:
        raise ValueError("header does not fit")
    body = text + b" " * pad + b"\n"
    return _NPY_MAGIC + b"\x01\x00" + len(body).to_bytes(2, "little") + body


def convert(source, out, *, dtype=np.float64, **selection) -> dict:
    """Write the rows a :class:`Selection` reads to a new ``.npy`` file, in one streaming pass.

    A text file is parsed once here; later runs memory-map the .npy instead: reading 10^6 x 100
    values then costs ~1/25 of the CPU of parsing the CSV with numpy, ~1/10 with pyarrow
    (bench/bench_io.py, one BLAS thread).

    Parameters
    ----------
    source : path
        Any input :func:`load_array` reads (``"-"``: standard input).
    out : path
        The new file; must end in ``.npy`` and must not exist (nothing is overwritten).
    dtype : numpy dtype
        Of the stored values (default float64: exactly the values parsed).
    **selection
        Options of an unconditional :class:`Selection`: ``key``, ``cols``, ``header``,
        ``delimiter``, ``format``.

    Returns
    -------
    dict
        The provenance of the rows written (``n_samples`` and ``features`` included).
    """
    out = os.fspath(out)
    if not out.lower().endswith(".npy"):
        raise ParameterError(f"convert: {_show(out)} must end in .npy")
    sel = Selection(source, center=False, **selection)
    for p in sel.inputs:
        with _suppress_os():
            if os.path.exists(out) and os.path.samefile(p, out):
                raise ParameterError(f"convert: {_show(out)} is the input; refusing to "
                                     "overwrite it")
    stream = sel.open()
    dt = np.dtype(dtype)
    try:
        fh = open(out, "xb")
    except FileExistsError:
        raise ParameterError(f"convert: {_show(out)} exists; refusing to overwrite it") from None
    except OSError as exc:
        raise ResourceError(f"convert: cannot write {_show(out)}: {_reason(exc)}") from None
    n, d = 0, None
    try:
        with fh:
            width = None
            for block in stream.blocks:
                if d is None:
                    d = block.shape[1]
                    width = len(_npy_header_bytes(dt, (10 ** 18, d)))
                    fh.write(b"\0" * width)
                fh.write(np.ascontiguousarray(block, dtype=dt).tobytes())
                n += block.shape[0]
            fh.seek(0)
            fh.write(_npy_header_bytes(dt, (n, d), width))
    except BaseException:
        with _suppress_os():
            os.remove(out)
        raise
    prov = dict(stream.provenance)
    prov.update(n_samples=n, file=out)
    return prov


# ------------------------------------------------------------------------------------------
# bundled data


def bundled_path(name: str):
    """Context manager giving a filesystem path to a file in ``vaetheory/data``.

    Works from a source tree and from an installed wheel or zip (then a temporary copy).

    >>> with bundled_path("digits.csv.gz") as p:   # doctest: +SKIP
    ...     X = load_array(p)
    """
    res = importlib.resources.files("vaetheory").joinpath("data", name)
    if not res.is_file():
        raise DataError(f"no bundled data file {name!r} in vaetheory/data")
    return importlib.resources.as_file(res)


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits bundled with the package.

    The test set (1797 images, 13 writers) of the UCI "Optical Recognition of Handwritten Digits"
    dataset (Alpaydin & Kaynak, 1998; CC BY 4.0), as redistributed by scikit-learn; source,
    licence, citation and layout in ``vaetheory/data/DIGITS_LICENSE.txt``. scikit-learn is not
    needed.

    Returns
    -------
    X : ndarray (1797, 64) float64
        Pixels 0..16 of the 8x8 images, flattened row-wise (reshape to ``(-1, 8, 8)``;
        :data:`DIGITS_IMAGE_SHAPE`).
    labels : ndarray (1797,) int64
        The digit 0..9 of each image (174 to 183 per class).
    """
    raw = importlib.resources.files("vaetheory").joinpath("data", "digits.csv.gz").read_bytes()
    table = np.loadtxt(_io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",",
                       ndmin=2)
    if table.shape != (1797, 65):
        raise DataError(f"bundled digits.csv.gz has shape {table.shape}, expected (1797, 65); "
                        "reinstall vaetheory")
    return np.ascontiguousarray(table[:, :64]), table[:, 64].astype(np.int64)

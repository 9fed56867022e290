"""Files -> arrays. Rows are samples; nothing here does any math beyond parsing.

Supported formats (chosen by the file name, case-insensitive):

- ``.npy``: memory-mapped read-only (``np.load(mmap_mode="r")``), never loaded whole; the stored
  dtype (float32, int16, uint8, ...) is kept as is. Object, string, structured and complex arrays
  are rejected.
- ``.npz``: the array named by ``key``, or the only array in the file (read into memory; npz
  members cannot be memory-mapped).
- ``.csv``, ``.tsv``, ``.txt`` and their gzip-compressed forms ``.csv.gz``, ``.tsv.gz``,
  ``.txt.gz``: parsed in chunks of rows into float64 (see :func:`iter_chunks`).

Shapes: a 1-d array is one feature, ``(N,) -> (N, 1)``; arrays with more than two dimensions
(images, e.g. ``(N, 28, 28)`` or ``(N, H, W, C)``) are flattened row-wise (C order) to
``(N, H*W*...)``, as a view of the memory map when the file is C-ordered.

Text files:

- Delimiter: a ``.csv`` file is comma-separated and a ``.tsv`` file tab-separated; a ``.txt`` file
  is comma-separated if its first data line contains a comma, otherwise whitespace-separated.
  A ``.csv``/``.tsv`` whose first lines contain the other delimiter but not its own uses the other
  one; one with neither but several whitespace-separated fields is read as whitespace-separated.
- Header: the first non-blank line is a header (column names) when one of its fields is not a
  number. At most one header line. Blank lines and lines starting with ``#`` are skipped anywhere.
- Every other line must have the same number of fields, each a number (``nan``/``inf`` parse;
  the moment computations reject them later with their location).

Every problem with a file raises :class:`~vaetheory.errors.DataError` (a ``ValueError``)
with one line that names the file and, for text, the line and column. Problems with an argument
(a column selection, an image shape) raise :class:`~vaetheory.errors.ParameterError`.

What a model reads -- which file(s), array, columns, quadrant, and whether it is centred -- is a
:class:`Selection`; :meth:`Selection.open` streams its row blocks with their provenance, and
:func:`vaetheory.moments.load_spectrum` turns a selection into the spectrum a theorem needs.

Column selections and the paper's conditional (CVAE) image task: :func:`parse_columns`,
:func:`parse_image_shape`, :func:`quadrant_columns`. Bundled real data: :func:`load_digits`
(the UCI 8x8 handwritten digits, CC BY 4.0; ``vaetheory/data/DIGITS_LICENSE.txt``).
"""

from __future__ import annotations

import gzip
import importlib.resources
import io as _io
import itertools
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Iterator, Optional, Tuple

import numpy as np

from .errors import DataError, ParameterError

__all__ = [
    "DataError",
    "RowStream",
    "Selection",
    "EigenvalueSelection",
    "DIGITS_IMAGE_SHAPE",
    "QUADRANTS",
    "SUPPORTED",
    "bundled_path",
    "iter_chunks",
    "load_array",
    "load_digits",
    "parse_columns",
    "parse_image_shape",
    "quadrant_columns",
]

SUPPORTED = (".npy", ".npz", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
DIGITS_IMAGE_SHAPE = (8, 8)

_CHUNK_BYTES = 1 << 24  # ~16 MiB of float64 per chunk, as in vaetheory.moments
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, zlib.error)  # gzip.BadGzipFile is an OSError


# ------------------------------------------------------------------------------------------
# files


def _show(path):
    """The path as it appears in messages: quoted, on one line."""
    return "'" + str(path).replace("\n", "\\n").replace("\r", "\\r") + "'"


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
    name = os.path.basename(path).lower()
    for ext in sorted(SUPPORTED, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def _default_rows(n_cols):
    return max(1, _CHUNK_BYTES // (8 * max(1, n_cols)))


def _check_file(path):
    """``(path as str, format)`` for a readable regular file of a supported format."""
    try:
        path = os.fspath(path)
    except TypeError:
        raise DataError(f"expected a file path, got {type(path).__name__} {path!r}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise DataError(f"cannot read {_show(path)}: no such file")
    if os.path.isdir(path):
        raise DataError(f"cannot read {_show(path)}: it is a directory; give a data file")
    kind = _kind(path)
    if kind is None:
        raise DataError(f"cannot read {_show(path)}: unsupported format; use one of "
                        + ", ".join(SUPPORTED))
    if not os.access(path, os.R_OK):
        raise DataError(f"cannot read {_show(path)}: permission denied")
    return path, kind


def _as_rows(arr, path):
    """(N, D) view of a loaded array, after checking it is a non-empty real numeric array."""
    if arr.dtype.names is not None:
        raise DataError(f"{_show(path)} holds a structured array (fields "
                        f"{', '.join(arr.dtype.names)}); save a plain numeric array")
    if arr.dtype.kind not in _NUMERIC_KINDS:
        what = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes"}
        raise DataError(f"{_show(path)} holds {what.get(arr.dtype.kind, 'non-numeric data')} "
                        f"(dtype {arr.dtype}); a real numeric array is needed")
    if arr.ndim == 0:
        raise DataError(f"{_show(path)} holds a single number, not a dataset (rows = samples)")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim > 2:
        # images: flatten each sample row-wise; a view when the file is C-ordered, else a copy
        arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{_show(path)} is empty (array of shape {arr.shape})")
    return arr


def _open_npy(path):
    """The raw (unflattened) read-only memory map of a .npy file."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise DataError(f"cannot read {_show(path)} as .npy: not a NumPy .npy file "
                            "(no NumPy header)")
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        msg = _first_line(exc)
        if "Python objects" in msg:
            raise DataError(f"{_show(path)} holds Python objects (dtype object); "
                            "save a numeric array") from None
        if "mmap length" in msg:
            msg = "file is truncated (shorter than its header says)"
        raise DataError(f"cannot read {_show(path)} as .npy: {msg}") from None
    except _READ_ERRORS as exc:
        raise DataError(f"cannot read {_show(path)} as .npy: {_reason(exc)}") from None


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


def load_array(path, *, key: Optional[str] = None) -> np.ndarray:
    """Read a dataset file into an ``(N, D)`` array, rows = samples.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy``, ``.npz``, ``.csv``, ``.tsv`` or ``.txt`` file (text formats optionally
        ``.gz``-compressed). See the module docstring for how text is parsed.
    key : str, optional
        Name of the array inside an ``.npz`` file; may be omitted when the file holds exactly
        one array. Not allowed for other formats.

    Returns
    -------
    ndarray (N, D)
        ``.npy``: a read-only ``numpy.memmap`` with the file's dtype (flattened row-wise if the
        stored array has more than two dimensions; a view unless the file is Fortran-ordered).
        ``.npz``: the stored array with its dtype. Text: float64.

    Raises
    ------
    DataError
        Missing/unreadable file, unsupported format, corrupt or non-numeric data, ragged or
        empty text; the message is one line naming the file.
    """
    path, kind = _check_file(path)
    _check_key(path, kind, key)
    if kind == ".npy":
        return _as_rows(_open_npy(path), path)
    if kind == ".npz":
        return _as_rows(_load_npz(path, key), path)
    _, chunks = iter_chunks(path)
    blocks = list(chunks)
    return blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)


def _check_key(path, kind, key):
    if key is not None and kind != ".npz":
        raise DataError(f"{_show(path)}: key={key!r} applies only to .npz files",
                        cli=f"{_show(path)}: --key {key} applies only to .npz files")


def iter_chunks(path, *, key: Optional[str] = None,
                chunk_rows: Optional[int] = None) -> Tuple[Optional[int], Iterator[np.ndarray]]:
    """Stream a file as consecutive blocks of rows.

    Parameters
    ----------
    path : str or os.PathLike
        Any format :func:`load_array` reads.
    key : str, optional
        Array name inside an ``.npz`` file.
    chunk_rows : int, optional
        Rows per block. Default: about 16 MiB of float64 per block (``2**21 // D`` rows).

    Returns
    -------
    n_rows : int or None
        Number of rows, known up front for ``.npy``/``.npz``; None for text files (they are not
        scanned twice).
    chunks : iterator of ndarray (n_i, D)
        ``.npy``: slices of the memory map (views, file dtype; a Fortran-ordered image array is
        copied one block at a time). ``.npz``: slices of the loaded array. Text: float64 blocks
        parsed ``chunk_rows`` lines at a time, so a file larger than memory can be fed to
        :func:`vaetheory.moments.accumulate_moments`.

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
    path, kind = _check_file(path)
    _check_key(path, kind, key)
    if chunk_rows is not None:
        try:
            ok = not isinstance(chunk_rows, bool) and int(chunk_rows) == chunk_rows >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ParameterError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
        chunk_rows = int(chunk_rows)
    if kind == ".npy":
        raw = _open_npy(path)
        if raw.ndim > 2 and not raw.flags.c_contiguous:
            # Fortran-ordered images cannot be flattened row-wise as a view: check the dtype and
            # emptiness on one row, then flatten (copy) one block at a time
            d = _as_rows(raw[:1], path).shape[1]
            n = raw.shape[0]
            rows = chunk_rows or _default_rows(d)
            return n, (raw[s:s + rows].reshape(-1, d) for s in range(0, n, rows))
        arr = _as_rows(raw, path)
        rows = chunk_rows or _default_rows(arr.shape[1])
        return arr.shape[0], (arr[s:s + rows] for s in range(0, arr.shape[0], rows))
    if kind == ".npz":
        arr = _as_rows(_load_npz(path, key), path)
        rows = chunk_rows or _default_rows(arr.shape[1])
        return arr.shape[0], (arr[s:s + rows] for s in range(0, arr.shape[0], rows))
    return None, _TextReader(path, kind).chunks(chunk_rows)


# ------------------------------------------------------------------------------------------
# text


def _is_number(token):
    """True when ``np.loadtxt`` would parse ``token`` as a float (Python's float, minus '_')."""
    if not token or "_" in token:
        return False
    try:
        float(token)
    except ValueError:
        return False
    return True


def _unquote(name):
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        return name[1:-1]
    return name


class _TextReader:
    """Delimited text: sniffed once on construction, then parsed in chunks by :meth:`chunks`."""

    def __init__(self, path, kind):
        self.path = path
        self.gz = kind.endswith(".gz")
        self.ext = kind[:4]  # .csv / .tsv / .txt
        sample = []  # (line number, stripped text) of the first two content lines
        try:
            with self._open() as fh:
                for lineno, line in enumerate(fh, 1):
                    s = line.strip()
                    if s and not s.startswith("#"):
                        sample.append((lineno, s))
                        if len(sample) == 2:
                            break
        except _READ_ERRORS as exc:
            raise DataError(f"cannot read {_show(path)}: {_reason(exc)}") from None
        if not sample:
            raise DataError(f"{_show(path)} is empty (no data lines)")
        self.delimiter = self._sniff([s for _, s in sample])
        first_no, first = sample[0]
        self.first_line = first_no
        tokens = self.split(first)
        if all(_is_number(t) for t in tokens):
            self.header, self.data_from = None, first_no
        else:
            self.header, self.data_from = [_unquote(t) for t in tokens], first_no + 1
            if len(sample) == 1:
                raise DataError(f"{_show(path)} has a header line but no data rows")
        self.n_cols = len(tokens)

    def _open(self):
        if self.gz:
            return gzip.open(self.path, "rt", encoding="utf-8-sig")
        return open(self.path, "r", encoding="utf-8-sig")

    def _sniff(self, lines):
        if self.ext == ".txt":
            return "," if any("," in s for s in lines) else None
        own, other = (",", "\t") if self.ext == ".csv" else ("\t", ",")
        if any(own in s for s in lines):
            return own
        if any(other in s for s in lines):
            return other
        if any(len(s.split()) > 1 and all(_is_number(t) for t in s.split()) for s in lines):
            return None  # numbers separated by whitespace despite the extension
        return own  # a single column

    def split(self, line):
        if self.delimiter is None:
            return line.split()
        return [t.strip() for t in line.strip().split(self.delimiter)]

    def _column(self, j):
        name = f"column {j + 1}"
        if self.header is not None and j < len(self.header) and self.header[j]:
            name += f" ('{self.header[j]}')"
        return name

    def _expected(self):
        src = "the header" if self.header is not None else "the first data line"
        return f"expected {self.n_cols} as on {src} (line {self.first_line})"

    def chunks(self, chunk_rows=None):
        """Iterator of float64 blocks of ``chunk_rows`` data lines."""
        rows = chunk_rows or _default_rows(self.n_cols)
        return self._generate(rows)

    def _generate(self, rows):
        lines, numbers = [], []
        try:
            with self._open() as fh:
                for lineno, line in enumerate(fh, 1):
                    if lineno < self.data_from:
                        continue
                    s = line.strip()
                    if not s or s.startswith("#"):
                        continue
                    lines.append(s)
                    numbers.append(lineno)
                    if len(lines) >= rows:
                        yield self._parse(lines, numbers)
                        lines, numbers = [], []
        except _READ_ERRORS as exc:
            raise DataError(f"cannot read {_show(self.path)}: {_reason(exc)}") from None
        if lines:
            yield self._parse(lines, numbers)

    def _parse(self, lines, numbers):
        try:
            block = np.loadtxt(lines, delimiter=self.delimiter, comments=None, dtype=np.float64,
                               ndmin=2)
        except ValueError as exc:
            self._diagnose(lines, numbers)
            raise DataError(f"{_show(self.path)} lines {numbers[0]}-{numbers[-1]}: "
                            f"{_first_line(exc)}") from None
        if block.shape != (len(lines), self.n_cols):
            self._diagnose(lines, numbers)
            raise DataError(f"{_show(self.path)} lines {numbers[0]}-{numbers[-1]}: parsed shape "
                            f"{block.shape}, expected ({len(lines)}, {self.n_cols})")
        return block

    def _diagnose(self, lines, numbers):
        """Raise the error of the first bad line of a block that failed to parse."""
        for line, lineno in zip(lines, numbers):
            tokens = self.split(line)
            if len(tokens) != self.n_cols:
                raise DataError(f"{_show(self.path)} line {lineno}: {len(tokens)} values, "
                                f"{self._expected()}; every row needs the same number of values")
            for j, t in enumerate(tokens):
                if not _is_number(t):
                    what = "empty value" if not t else f"non-numeric value {t!r}"
                    raise DataError(f"{_show(self.path)} line {lineno}, {self._column(j)}: {what}; "
                                    "every value must be a number (select numeric columns "
                                    "or clean the file)")


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


@dataclass
class RowStream:
    """Row blocks of a :class:`Selection`, read once, with where they came from.

    ``blocks`` yields ``(n_i, D)`` arrays (for a conditional selection the columns are ``[x, y]``,
    x first); non-finite values are counted while streaming and raise a :class:`DataError` naming
    the first one in file coordinates at the end. ``provenance`` is a JSON-able dict (source,
    centring, selection, dimensions) that the spectrum carries on.
    """

    blocks: Iterator[np.ndarray]
    name: str                     # how moment errors name the data ("[x, y]" for pairs)
    n_rows: Optional[int]         # None when unknown up front (text files)
    nbytes: int                   # bytes on disk (0 for in-memory arrays)
    x_dim: Optional[int]          # conditional selections: columns of x (the first ones)
    provenance: dict


@dataclass
class _Source:
    label: str
    n_rows: Optional[int]
    chunks: Iterator[np.ndarray]
    n_cols: int
    nbytes: int


def _open_source(source, key=None, label=None) -> _Source:
    """Row blocks of a file path or an in-memory array; peeks the first block."""
    if isinstance(source, np.ndarray):
        X = source.reshape(source.shape[0], -1) if source.ndim > 2 else (
            source[:, None] if source.ndim == 1 else source)
        if X.dtype.kind not in _NUMERIC_KINDS:
            raise DataError(f"{label or 'the array'} must be numeric, got dtype {X.dtype}")
        rows = _default_rows(X.shape[1])
        chunks = (X[s:s + rows] for s in range(0, X.shape[0], rows))
        n, nbytes, label = X.shape[0], 0, label or "the array"
    else:
        n, chunks = iter_chunks(source, key=key)
        label = label or f"'{source}'" + (f" (array {key!r})" if key else "")
        nbytes = os.path.getsize(source)
    first = next(chunks, None)
    if first is None:
        raise DataError(f"{label} has no rows")
    return _Source(label, n, itertools.chain([first], chunks), int(first.shape[1]), nbytes)


def _select(src: _Source, cols: np.ndarray) -> _Source:
    src.chunks = (b[:, cols] for b in src.chunks)
    src.n_cols = int(cols.size)
    return src


def _checked(src: _Source, colmap: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
    """Pass blocks through; at the end raise a DataError naming the count and the first location
    (row and column of the file, 0-based) of non-finite values."""
    row, bad, first = 0, 0, None
    for block in src.chunks:
        if block.dtype.kind in "fc":
            mask = ~np.isfinite(block)
            k = int(np.count_nonzero(mask))
            if k:
                if first is None:
                    r, c = np.argwhere(mask)[0]
                    first = (row + int(r), int(colmap[c]) if colmap is not None else int(c))
                bad += k
        row += block.shape[0]
        yield block
    if bad:
        raise DataError(f"{src.label} contains {bad} non-finite value(s) (NaN or inf); first at "
                        f"row {first[0]}, column {first[1]} (0-based)")


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
    return (label or "the array") if isinstance(source, np.ndarray) else str(source)


@dataclass(frozen=True)
class Selection:
    """What a model reads: a file (or an in-memory array) and how to take rows and columns.

    Parameters
    ----------
    source : path or ndarray
        The data file (any format :func:`load_array` reads) or an array; rows are samples.
    key : str, optional
        Array name inside an ``.npz`` source.
    cols : str, optional
        Unconditional models: use only these columns (:func:`parse_columns` syntax, e.g. ``":-1"``).
    conditional : bool
        The CVAE reads pairs (x, y): from ``source`` (x) and ``y``; from columns ``x_cols`` /
        ``y_cols`` of ``source`` (either one alone means "the other columns"); from an image
        ``quadrant`` (x) and the other three (y); or from the arrays ``x`` and ``y`` of an .npz.
    y, y_key, x_cols, y_cols, quadrant, image_shape
        The conditional forms above (``image_shape`` ``(H, W)`` or ``(H, W, C)``; square images
        are inferred from the column count).
    center : bool
        Centre the data (covariances: the model with encoder and decoder biases) or not.
    label, y_label : str, optional
        How messages and the provenance name an in-memory ``source`` (and ``y``).
    provenance : dict, optional
        Given: reported as the provenance instead of the one :meth:`open` would describe (a
        selection read into memory by :meth:`read` keeps the file's).

    Examples
    --------
    >>> sel = Selection("digits.npy", conditional=True, quadrant="bottom-left")  # doctest: +SKIP
    >>> spectrum = vaetheory.moments.load_spectrum(sel)                          # doctest: +SKIP
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

    def __post_init__(self):
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
                if p is not None and not isinstance(p, np.ndarray)]

    # ---- streaming
    def open(self) -> RowStream:
        """Open the source(s): a :class:`RowStream` of row blocks, read once, with provenance.

        Raises :class:`DataError` for the data and :class:`ParameterError` for a selection that
        does not fit them (columns out of range, an image shape that does not match).
        """
        prov = {"source": self.name, "centered": bool(self.center)}
        if not self.conditional:
            src = _open_source(self.source, self.key, self.label)
            prov["features"] = src.n_cols
            colmap = None
            if self.cols is not None:
                colmap = parse_columns(self.cols, src.n_cols)
                _select(src, colmap)
                prov["selection"] = f"columns {self.cols} of {prov['features']}"
            stream = RowStream(_checked(src, colmap), src.label, src.n_rows, src.nbytes, None, prov)
        else:
            stream = self._open_pairs(prov)
        if self.provenance is not None:
            stream.provenance = dict(self.provenance)
        return stream

    def _open_pairs(self, prov) -> RowStream:
        is_npz = not isinstance(self.source, np.ndarray) and str(self.source).lower().endswith(".npz")
        by_cols = self.x_cols is not None or self.y_cols is not None
        if self.y is not None or (is_npz and not by_cols and self.quadrant is None):
            # two arrays: source (x) and y, or the x/y arrays of one .npz
            if self.y is not None:
                x = _open_source(self.source, self.key, self.label and f"{self.label} (x)")
                y = _open_source(self.y, self.y_key, self.y_label)
            else:
                x = _open_source(self.source, self.key or "x")
                y = _open_source(self.source, self.y_key or "y")
            xc = parse_columns(self.x_cols, x.n_cols) if self.x_cols is not None else None
            yc = parse_columns(self.y_cols, y.n_cols) if self.y_cols is not None else None
            if xc is not None:
                _select(x, xc)
            if yc is not None:
                _select(y, yc)
            if x.n_rows is not None and y.n_rows is not None and x.n_rows != y.n_rows:
                raise DataError(f"x ({x.label}) has {x.n_rows} rows but y ({y.label}) has "
                                f"{y.n_rows}: they must be paired samples (row i of x with row i "
                                "of y)")
            prov.update(x_source=x.label, y_source=y.label, x_dim=x.n_cols, y_dim=y.n_cols)
            prov["selection"] = f"x from {x.label}, y from {y.label}"
            blocks = _zip_rows(x, y, _checked(x, xc), _checked(y, yc))
            total = None if x.n_rows is None or y.n_rows is None else x.n_rows
            return RowStream(blocks, "[x, y]", total, x.nbytes + y.nbytes, x.n_cols, prov)
        if not by_cols and self.quadrant is None:
            raise ParameterError(
                "the conditional model needs an output y: give y=, x_cols=/y_cols=, quadrant= "
                "(with image_shape=), or an .npz with arrays 'x' and 'y'",
                cli="the cvae needs an output y: give --y FILE, --x-cols/--y-cols, --quadrant with "
                    "--image-shape, or an .npz with arrays 'x' and 'y'")
        src = _open_source(self.source, self.key, self.label)
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
        _select(src, cols)
        return RowStream(_checked(src, cols), src.label, src.n_rows, src.nbytes, int(xc.size), prov)

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

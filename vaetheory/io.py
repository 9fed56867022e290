"""Files -> arrays. Rows are samples; no math beyond parsing.

Formats:

- ``.npy``: memory-mapped (never loaded whole); any real dtype is kept as is.
- ``.npz``: the array named by ``key`` (or the only array in the file).
- ``.csv``, ``.tsv``, ``.txt`` (optionally ``.gz``): comma, tab or whitespace separated, with or
  without one header line; read in chunks of rows.

Arrays with more than two dimensions (images, e.g. ``(N, 28, 28)``) are flattened row-wise to
``(N, H*W*...)``; a 1-d array is one feature. Every problem raises :class:`DataError` with one line
that names the file.
"""

from __future__ import annotations

import gzip
import importlib.resources
import io as _io
import os
import zipfile
from typing import Iterator, Optional, Tuple

import numpy as np

from ._validation import DataError

__all__ = [
    "DataError", "iter_chunks", "load_array", "load_digits", "parse_columns",
    "parse_image_shape", "quadrant_columns", "SUPPORTED",
]

SUPPORTED = (".npy", ".npz", ".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
QUADRANTS = ("top-left", "top-right", "bottom-left", "bottom-right")
_TEXT_CHUNK_ROWS = 20000


def _kind(path):
    name = os.path.basename(str(path)).lower()
    for ext in sorted(SUPPORTED, key=len, reverse=True):
        if name.endswith(ext):
            return ext
    return None


def _check_file(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"cannot read '{path}': no such file")
    if os.path.isdir(path):
        raise DataError(f"cannot read '{path}': it is a directory, give a data file")
    if not os.access(path, os.R_OK):
        raise DataError(f"cannot read '{path}': permission denied")
    kind = _kind(path)
    if kind is None:
        raise DataError(f"cannot read '{path}': unsupported format; use one of "
                        + ", ".join(SUPPORTED))
    return path, kind


def _as_rows(arr, path):
    if arr.dtype.kind not in "biuf":
        raise DataError(f"'{path}': array has dtype {arr.dtype}; a numeric array is needed")
    if arr.ndim == 0:
        raise DataError(f"'{path}': holds a single number, not a dataset")
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    elif arr.ndim > 2:
        arr = arr.reshape(arr.shape[0], -1)  # images: flatten each sample row-wise
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"'{path}': empty array (shape {arr.shape})")
    return arr


def _load_npz(path, key):
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if key is None:
                if len(keys) != 1:
                    raise DataError(f"'{path}' holds {len(keys)} arrays ({', '.join(keys)}); "
                                    "choose one with --key")
                key = keys[0]
            if key not in keys:
                raise DataError(f"'{path}' has no array '{key}'; it has: {', '.join(keys)}")
            return z[key]
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read '{path}' as .npz: {_first_line(exc)}") from None


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def load_array(path, *, key=None) -> np.ndarray:
    """Read a dataset file into an (N, D) array (memory-mapped for .npy).

    Parameters
    ----------
    path : str or PathLike
    key : str, optional
        Array name inside an ``.npz`` file.
    """
    path, kind = _check_file(path)
    if kind == ".npy":
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"cannot read '{path}' as .npy: {_first_line(exc)}") from None
        return _as_rows(arr, path)
    if kind == ".npz":
        return _as_rows(_load_npz(path, key), path)
    n, chunks = iter_chunks(path)
    blocks = list(chunks)
    return np.concatenate(blocks, axis=0)


def iter_chunks(path, *, key=None, chunk_rows=None) -> Tuple[Optional[int], Iterator[np.ndarray]]:
    """``(n_rows or None, iterator over (n_i, D) row blocks)`` for streaming a file.

    ``.npy``/``.npz`` yield views of the (memory-mapped) array; text files are parsed
    ``chunk_rows`` lines at a time (the row count is then unknown up front: None).
    """
    path, kind = _check_file(path)
    if kind in (".npy", ".npz"):
        arr = load_array(path, key=key)
        rows = chunk_rows or max(1, (1 << 24) // (8 * arr.shape[1]))
        return arr.shape[0], (arr[s:s + rows] for s in range(0, arr.shape[0], rows))
    return None, _text_chunks(path, kind, chunk_rows or _TEXT_CHUNK_ROWS)


def _is_number(tok):
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _text_chunks(path, kind, chunk_rows):
    opener = gzip.open if kind.endswith(".gz") else open
    delimiter = "\t" if kind.startswith(".tsv") else None
    try:
        fh = opener(path, "rt", encoding="utf-8", errors="strict", newline="")
        lines = iter(fh)
        first = None
        lineno = 0
        for raw in lines:
            lineno += 1
            if raw.strip():
                first = raw
                break
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise DataError(f"cannot read '{path}': {_first_line(exc)}") from None
    if first is None:
        fh.close()
        raise DataError(f"'{path}' is empty")
    if delimiter is None:
        delimiter = "," if "," in first else ("\t" if "\t" in first else None)

    def split(line):
        toks = line.strip().split(delimiter) if delimiter else line.split()
        return [t.strip() for t in toks]

    header = None
    tokens = split(first)
    if not all(_is_number(t) for t in tokens):
        header, tokens = tokens, None
    n_cols = len(header) if header is not None else len(tokens)

    def col_name(j):
        return f"column {j + 1}" + (f" ('{header[j]}')" if header is not None and j < len(header)
                                    else "")

    def parse(rows, start):
        try:
            return np.array([[float(t) for t in r] for r in rows], dtype=np.float64)
        except ValueError:
            pass
        for i, r in enumerate(rows):
            if len(r) != n_cols:
                raise DataError(f"'{path}' line {start + i}: {len(r)} values, expected {n_cols}")
            for j, t in enumerate(r):
                if not _is_number(t):
                    raise DataError(f"'{path}' line {start + i}, {col_name(j)}: non-numeric value "
                                    f"{t!r}; every column must be numeric")
        raise DataError(f"'{path}': could not parse lines {start}..{start + len(rows) - 1}")

    def gen():
        nonlocal lineno
        seen = False
        try:
            rows, start = ([tokens], lineno) if tokens is not None else ([], lineno + 1)
            for raw in lines:
                lineno += 1
                if not raw.strip():
                    continue
                if not rows:
                    start = lineno
                r = split(raw)
                if len(r) != n_cols:
                    raise DataError(f"'{path}' line {lineno}: {len(r)} values, expected {n_cols}")
                rows.append(r)
                if len(rows) >= chunk_rows:
                    seen = True
                    yield parse(rows, start)
                    rows = []
            if rows:
                yield parse(rows, start)
            elif tokens is None and not seen:
                raise DataError(f"'{path}' has a header line but no data rows")
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            raise DataError(f"cannot read '{path}': {_first_line(exc)}") from None
        finally:
            fh.close()

    return gen()


# ------------------------------------------------------------------------------------------
# column selections


def parse_columns(spec: str, n_cols: int) -> np.ndarray:
    """0-based column indices from a selection such as ``"0:392"``, ``":100,200"``, ``"-10:"``.

    Comma-separated items, each a single index or a Python-style half-open slice ``a:b``
    (``a`` or ``b`` may be omitted; negative values count from the end). Duplicates are an error.
    """
    if spec is None or not str(spec).strip():
        raise ValueError("empty column selection")
    out = []
    for item in str(spec).split(","):
        item = item.strip()
        try:
            if ":" in item:
                a, b = item.split(":", 1)
                a = int(a) if a.strip() else 0
                b = int(b) if b.strip() else n_cols
                a, b = (a + n_cols if a < 0 else a), (b + n_cols if b < 0 else b)
                if not (0 <= a < b <= n_cols):
                    raise ValueError
                out.extend(range(a, b))
            else:
                i = int(item)
                i = i + n_cols if i < 0 else i
                if not 0 <= i < n_cols:
                    raise ValueError
                out.append(i)
        except ValueError:
            raise ValueError(f"bad column selection '{item}' for {n_cols} columns (use e.g. "
                             "'0:10,15' with 0-based half-open ranges)") from None
    idx = np.asarray(out, dtype=np.intp)
    if np.unique(idx).size != idx.size:
        raise ValueError(f"column selection '{spec}' names a column twice")
    return idx


def parse_image_shape(text: str) -> Tuple[int, int]:
    """``"28x28"`` -> ``(28, 28)``."""
    try:
        h, w = (int(v) for v in str(text).lower().split("x"))
        if h < 2 or w < 2:
            raise ValueError
    except ValueError:
        raise ValueError(f"bad image shape '{text}': use HxW, e.g. 28x28") from None
    return h, w


def quadrant_columns(image_shape, quadrant: str) -> Tuple[np.ndarray, np.ndarray]:
    """Columns of one image quadrant (x) and of the other three (y), images flattened row-wise.

    The quadrant is ``floor(H/2) x floor(W/2)`` pixels from its corner (for odd sizes the middle
    row/column belongs to y). This is the paper's conditional task: one quadrant as the condition,
    the rest as the output.
    """
    H, W = image_shape
    if quadrant not in QUADRANTS:
        raise ValueError(f"unknown quadrant '{quadrant}'; use one of {', '.join(QUADRANTS)}")
    h, w = H // 2, W // 2
    rows = np.arange(h) if quadrant.startswith("top") else np.arange(H - h, H)
    cols = np.arange(w) if quadrant.endswith("left") else np.arange(W - w, W)
    x = (rows[:, None] * W + cols[None, :]).ravel()
    mask = np.ones(H * W, dtype=bool)
    mask[x] = False
    return x, np.flatnonzero(mask)


# ------------------------------------------------------------------------------------------
# bundled data


def bundled_path(name: str):
    """A context manager giving a filesystem path of a file bundled in ``vaetheory/data``."""
    return importlib.resources.as_file(importlib.resources.files("vaetheory") / "data" / name)


def load_digits() -> Tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits bundled with the package: ``(X (1797, 64) float64, labels)``.

    UCI "Optical Recognition of Handwritten Digits" test set (CC BY 4.0); see
    ``vaetheory/data/DIGITS_LICENSE.txt``.
    """
    raw = (importlib.resources.files("vaetheory") / "data" / "digits.csv.gz").read_bytes()
    table = np.loadtxt(_io.StringIO(gzip.decompress(raw).decode("ascii")), delimiter=",")
    return table[:, :-1].copy(), table[:, -1].astype(int)

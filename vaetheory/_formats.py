"""Optional readers: HDF5 (h5py), zarr, Parquet and Arrow IPC / Feather (pyarrow).

Each is an extra (``pip install "vaetheory[hdf5]"``, ``[zarr]``, ``[parquet]``, or all three as
``[formats]``), imported only when such a file is read; without it the error says which extra to
install. Every reader streams row blocks (whole storage chunks where the file has them) with the
same checks, messages and provenance as the .npy reader (:mod:`vaetheory.io`); ``key`` selects
the dataset (HDF5), the array (zarr) or the column set (Parquet/Arrow).
"""

from __future__ import annotations

import json
from typing import List

import numpy as np

from . import io as _vio
from .errors import DataError, ResourceError

_EXTRA = {"h5py": "hdf5", "zarr": "zarr", "pyarrow": "parquet"}


def _need(module, what):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        extra = _EXTRA[module.split(".")[0]]
        raise ResourceError(f"reading {what} files needs {module.split('.')[0]}, which is not "
                            f'installed: pip install "vaetheory[{extra}]" (or "vaetheory[formats]")'
                            ) from None


def open_reader(fmt, path, key, label):
    """The reader of an HDF5 / zarr / Parquet / Arrow input."""
    if fmt == "hdf5":
        return _open_hdf5(path, key, label)
    if fmt == "zarr":
        return _open_zarr(path, key, label)
    return _open_table(fmt, path, key, label)


def _listing(items, limit=8):
    shown = [f"{name} {tuple(shape)}" for name, shape in items[:limit]]
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(shown) + more


def _choose(items, key, label, what):
    """The (name, array) named ``key`` among ``items``, or the only one."""
    if key is None:
        if len(items) == 1:
            return items[0]
        if not items:
            raise DataError(f"{label} holds no {what}s")
        msg = (f"{label} holds {len(items)} {what}s "
               f"({_listing([(n, a.shape) for n, a in items])}); choose one")
        raise DataError(f"{msg} with key=...", cli=f"{msg} with --key NAME")
    for name, arr in items:
        if name == key.strip("/"):
            return name, arr
    raise DataError(f"{label} has no {what} {key!r}; it has: "
                    f"{_listing([(n, a.shape) for n, a in items])}")


def _chunked(arr, name, label, what, fmt):
    n, d = _vio._check_rows(np.dtype(arr.dtype), arr.shape, f"{label} ({what} {name!r})")
    chunks = getattr(arr, "chunks", None)
    align = int(chunks[0]) if chunks else 1
    reader = _vio._ArrayReader(arr, label, fmt, n_rows=n, n_cols=d, align=align)
    reader.key = name
    return reader


# ---- HDF5


def _open_hdf5(path, key, label):
    h5py = _need("h5py", "HDF5 (.h5)")
    _vio._check_regular(path, label, "HDF5")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"cannot read {label} as HDF5: {_vio._first_line(exc)}") from None
    items = []
    f.visititems(lambda name, obj: items.append((name, obj))
                 if isinstance(obj, h5py.Dataset) else None)
    if key is not None and key.strip("/") in f and not isinstance(f[key], h5py.Dataset):
        raise DataError(f"{label}: {key!r} is a group, not a dataset; it has: "
                        f"{_listing([(n, a.shape) for n, a in items])}")
    name, ds = _choose(items, key, label, "dataset")
    if ds.shape is None:
        raise DataError(f"{label}: dataset {name!r} is empty (no shape)")
    return _chunked(ds, name, label, "dataset", "hdf5")


# ---- zarr


def _zarr_arrays(group, prefix=""):
    out = []
    for name, arr in group.arrays():
        out.append((prefix + name, arr))
    for name, sub in group.groups():
        out.extend(_zarr_arrays(sub, prefix + name + "/"))
    return out


def _open_zarr(path, key, label):
    zarr = _need("zarr", "zarr (.zarr)")
    try:
        node = zarr.open(path, mode="r")
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read {label} as zarr: {_vio._first_line(exc)}") from None
    if hasattr(node, "arrays"):  # a group
        name, arr = _choose(_zarr_arrays(node), key, label, "array")
    else:
        if key is not None:
            raise DataError(f"{label} is a single zarr array, not a group: drop key={key!r}",
                            cli=f"{label} is a single zarr array, not a group: drop --key")
        name, arr = "/", node
    return _chunked(arr, name, label, "array", "zarr")


# ---- Parquet and Arrow IPC


class _TableReader(_vio._Reader):
    """Columns of a Parquet or Arrow table as features, read in row batches; only the fields
    holding selected features are read."""

    def __init__(self, fmt, path, key, label):
        self.pa = _need("pyarrow", "Parquet and Arrow")
        self.pc = _need("pyarrow.compute", "Parquet and Arrow")
        self.fmt, self.path, self.label = fmt, path, label
        self.notes: List[str] = []
        self._open(path)
        schema = self.schema
        fields = [f for f in schema if f.name not in self._pandas_index(schema)]
        if key is not None:
            wanted = [k.strip() for k in str(key).split(",") if k.strip()]
            byname = {f.name: f for f in schema}
            missing = [k for k in wanted if k not in byname]
            if missing:
                raise DataError(f"{label} has no column {missing[0]!r}; it has: "
                                + ", ".join(f.name for f in schema))
            fields = [byname[k] for k in wanted]
        if not fields:
            raise DataError(f"{label} has no columns")
        self.fields = fields
        self.widths = [self._width(f) for f in fields]
        self.n_cols = int(sum(self.widths))
        self.starts = np.concatenate([[0], np.cumsum(self.widths)]).astype(int)
        self.names = []
        for f, w in zip(fields, self.widths):
            self.names += [f.name] if w == 1 and not self._is_list(f.type) else \
                [f"{f.name}[{i}]" for i in range(w)]

    # ---- the file
    def _open(self, path):
        pa = self.pa
        try:
            if self.fmt == "parquet":
                import pyarrow.parquet as pq

                self.pf = pq.ParquetFile(path)
                self.schema = self.pf.schema_arrow
                self.n_rows = int(self.pf.metadata.num_rows)
            else:
                import pyarrow.ipc as ipc

                try:
                    self.table = ipc.open_file(pa.memory_map(path, "r")).read_all()
                except pa.ArrowInvalid:
                    with pa.OSFile(path, "rb") as fh:
                        self.table = ipc.open_stream(fh).read_all()
                self.schema = self.table.schema
                self.n_rows = int(self.table.num_rows)
        except (pa.lib.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {self.label} as {self.fmt}: "
                            f"{_vio._first_line(exc)}") from None
        if self.n_rows == 0:
            raise DataError(f"{self.label} is empty (no rows)")

    @staticmethod
    def _pandas_index(schema):
        meta = schema.metadata or {}
        try:
            info = json.loads(meta.get(b"pandas", b"{}"))
        except ValueError:
            return set()
        return {c for c in info.get("index_columns", []) if isinstance(c, str)}

    def _is_list(self, t):
        pa = self.pa
        return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)

    def _numeric(self, t):
        pa = self.pa
        return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)

    def _width(self, f):
        t = f.type
        if self.pa.types.is_fixed_size_list(t):
            return int(t.list_size)
        if self._is_list(t):  # variable-length lists: the first row's length (checked per row)
            first = next(self._batches([f.name], 1), None)
            col = first.column(0) if first is not None else None
            if col is None or col.null_count:
                return 1
            return int(self.pc.list_value_length(col).to_numpy()[0])
        return 1

    def _batches(self, names, rows):
        if self.fmt == "parquet":
            yield from self.pf.iter_batches(batch_size=rows, columns=names)
        else:
            yield from self.table.select(names).to_batches(max_chunksize=rows)

    # ---- reading
    def blocks(self, cols=None, chunk_rows=None):
        cols = np.arange(self.n_cols) if cols is None else np.asarray(cols, dtype=np.intp)
        owner = np.searchsorted(self.starts, cols, side="right") - 1
        used = sorted(set(owner.tolist()))
        for i in used:
            f = self.fields[i]
            t = f.type.value_type if self._is_list(f.type) else f.type
            if not self._numeric(t):
                j = int(cols[owner == i][0])
                raise DataError(f"{self.label} {self.column(j)} holds {f.type} values, not "
                                "numbers; select numeric columns (with --key NAME,... or --cols)",
                                cli=f"{self.label} {self.column(j)} holds {f.type} values, not "
                                    "numbers; select numeric columns (--key NAME,... or --cols)")
        local = {i: k for k, i in enumerate(used)}
        # the block's columns: field k's values start at offs[k] in the gathered array
        widths = [self.widths[i] for i in used]
        offs = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        take = np.array([offs[local[int(o)]] + int(c) - self.starts[o]
                         for c, o in zip(cols, owner)], dtype=np.intp)
        dtype = np.result_type(*[self._dtype(self.fields[i]) for i in used])
        rows = chunk_rows or _vio._default_rows(self.n_cols)
        names = [self.fields[i].name for i in used]
        done = 0
        try:
            for batch in self._batches(names, rows):
                m = batch.num_rows
                out = np.empty((m, int(offs[-1])), dtype=dtype)
                for k, i in enumerate(used):
                    out[:, offs[k]:offs[k + 1]] = self._values(batch.column(k), i, done, m)
                done += m
                yield out[:, take] if not np.array_equal(take, np.arange(out.shape[1])) else out
        except (self.pa.lib.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {self.label} as {self.fmt}: "
                            f"{_vio._first_line(exc)}") from None

    def _dtype(self, f):
        t = f.type.value_type if self._is_list(f.type) else f.type
        if self.pa.types.is_boolean(t):
            return np.dtype(np.uint8)
        dt = np.dtype(t.to_pandas_dtype())
        return np.dtype(np.float64) if f.nullable and dt.kind in "iub" else dt

    def _values(self, col, i, done, m):
        f, w = self.fields[i], self.widths[i]
        if not self._is_list(f.type):
            return col.to_numpy(zero_copy_only=False).reshape(m, 1)
        if col.null_count:
            r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{self.label} row {done + r + 1}, column '{f.name}' is null (no "
                            "list of values); every row needs one")
        lengths = self.pc.list_value_length(col).to_numpy(zero_copy_only=False)
        if np.any(lengths != w):
            r = int(np.flatnonzero(lengths != w)[0])
            raise DataError(f"{self.label} row {done + r + 1}, column '{f.name}': "
                            f"{int(lengths[r])} values, expected {w} as on row 1; every row "
                            "needs the same number")
        flat = col.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(m, w)


def _open_table(fmt, path, key, label):
    _vio._check_regular(path, label, fmt)
    return _TableReader(fmt, path, key, label)

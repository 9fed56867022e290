"""Many JSON texts of one shape at once, from columns: the points of a long sweep.

A *tree* describes one JSON value for every row of a block: dicts and lists as themselves, and
leaves that are columns (:class:`Col`: one number per row), constants (:class:`Const`), entries
present only in some rows (:class:`Opt`) and values whose form depends on the row
(:class:`Alt`, e.g. a count that is an int or a ``[min, max]`` pair). :func:`texts` writes the
text ``json.dumps(value, indent=2)`` of every row (placed at a given depth), byte for byte, with
the per-value work done in bulk:

* rows are grouped by their form (the ``Opt``/``Alt`` choices); each form gets one template
  (``json.dumps`` of a skeleton with placeholders), split into its literal pieces;
* each column becomes its text in one pass: ``float.__repr__`` (what :mod:`json` writes for a
  float) over ``tolist()``, once per run of equal values (bit patterns, so ``-0.0`` keeps its
  sign), non-finite values as ``null`` (the documents' cleaning rule) chosen with array masks;
* the texts are the literal pieces and the columns' strings interleaved by list slicing and one
  ``str.join`` -- no Python step per number.
"""

from __future__ import annotations

import json
import re
from typing import Any, List, Tuple

import numpy as np

__all__ = ["Col", "Const", "Opt", "Alt", "texts", "block_text", "column_strings", "float_strings",
           "SEP"]


class Col:
    """A leaf with one value per row: ``kind`` ``"f"`` (float64; non-finite -> null), ``"i"``
    (int) or ``"b"`` (bool)."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: str, values):
        self.kind, self.values = kind, np.asarray(values)


class Const:
    """A leaf with the same JSON-able value (already cleaned: no NaN) in every row."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class Opt:
    """A dict entry or list item present only in the rows where ``mask`` is true."""

    __slots__ = ("mask", "node")

    def __init__(self, mask, node):
        self.mask, self.node = np.asarray(mask, dtype=bool), node


class Alt:
    """``yes`` in the rows where ``mask`` is true, ``no`` elsewhere."""

    __slots__ = ("mask", "yes", "no")

    def __init__(self, mask, yes, no):
        self.mask, self.yes, self.no = np.asarray(mask, dtype=bool), yes, no


_SLOT = re.compile(r'"\\u0001(\d+)\\u0001"')
_BOOL = np.array(["false", "true"], dtype=object)


def _masks(node, out: List[np.ndarray]):
    """Every Opt/Alt mask of the tree (both branches), in a fixed order."""
    if isinstance(node, dict):
        for v in node.values():
            _masks(v, out)
    elif isinstance(node, list):
        for v in node:
            _masks(v, out)
    elif isinstance(node, Opt):
        out.append(node.mask)
        _masks(node.node, out)
    elif isinstance(node, Alt):
        out.append(node.mask)
        _masks(node.yes, out)
        _masks(node.no, out)


def _skeleton(node, row: int, leaves: List[Col]):
    """The JSON-able value of ``row``'s form, each column a placeholder string."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if isinstance(v, Opt):
                if not v.mask[row]:
                    continue
                v = v.node
            out[k] = _skeleton(v, row, leaves)
        return out
    if isinstance(node, list):
        out = []
        for v in node:
            if isinstance(v, Opt):
                if not v.mask[row]:
                    continue
                v = v.node
            out.append(_skeleton(v, row, leaves))
        return out
    if isinstance(node, Alt):
        return _skeleton(node.yes if node.mask[row] else node.no, row, leaves)
    if isinstance(node, Const):
        return node.value
    if isinstance(node, Col):
        leaves.append(node)
        return f"\x01{len(leaves) - 1}\x01"
    raise TypeError(f"not a tree node: {type(node).__name__}")


#: separates the rows' texts in :func:`block_text` (json.dumps escapes it in any string)
SEP = "\x02"

_FAST = []   # [formatter or None], decided on first use (:func:`_fast_floats`)

#: values whose text a formatter must get right to be used (each decade's edges, the switch
#: points of repr's fixed and exponent forms, the extremes, signed zeros, non-finite values)
_PROBES = np.concatenate([
    np.array([0.0, -0.0, 1.0, -1.0, 0.1, 0.5, 2.5, 1e-4, 9.999999999999999e-05, 1e-5, 1.5e-7,
              1e16, 9999999999999998.0, 1e15 + 0.5, 1e22, 123456789012345678.0, 5e-324,
              2.2250738585072014e-308, 1.7976931348623157e308, np.nan, np.inf, -np.inf]),
    10.0 ** np.arange(-320, 309), np.nextafter(10.0 ** np.arange(-300, 300), 0.0),
    np.random.default_rng(0).standard_normal(4096) * 10.0 ** np.random.default_rng(1)
    .integers(-30, 30, 4096)])


def _repr_floats(vals) -> List[str]:
    """``float.__repr__`` of every value (what :mod:`json` writes), ``null`` where not finite."""
    out = list(map(float.__repr__, vals.tolist()))
    for i in np.flatnonzero(~np.isfinite(vals)).tolist():
        out[i] = "null"
    return out


def _fast_floats():
    """orjson's float formatter made to write exactly :func:`_repr_floats`' text, or None.

    orjson (the ``fast`` extra) writes the same shortest round-trip digits as ``repr`` with the
    same layout except below 1e-4 (``0.00001`` and ``1.5e-7`` for repr's ``1e-05`` and
    ``1.5e-07``): those few values are redone with ``repr``. Used only if it reproduces
    ``repr`` on :data:`_PROBES` (so a future orjson with another layout is simply not used)."""
    if _FAST:
        return _FAST[0]
    fn = None
    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is not None:
        opt = orjson.OPT_SERIALIZE_NUMPY

        def fn(vals):
            out = orjson.dumps(vals, option=opt)[1:-1].decode("ascii").split(",")
            small = np.flatnonzero((np.abs(vals) < 1e-4) & (vals != 0)).tolist()
            for i in small:
                out[i] = float.__repr__(float(vals[i]))
            return out

        try:
            if fn(_PROBES) != _repr_floats(_PROBES):
                fn = None
        except Exception:   # any failure of the accelerator: the plain path
            fn = None
    _FAST.append(fn)
    return fn


def float_strings(vals) -> List[str]:
    """The JSON text of each float64 value (a contiguous 1-d array): ``repr``, ``null`` where not
    finite; formatted by orjson when it is installed and agrees (:func:`_fast_floats`)."""
    if vals.size == 0:
        return []
    fast = _fast_floats()
    return fast(vals) if fast is not None else _repr_floats(vals)


def column_strings(kind: str, values, rows=None):
    """The JSON text of every value of a column (``rows`` of it): floats as :func:`float_strings`,
    ints as ``str``, bools ``true``/``false``; one string when every value has the same text.
    Each run of equal values (equal bit patterns, so -0.0 keeps its sign) is formatted once."""
    v = np.asarray(values)
    if rows is not None:
        v = v[rows]
    m = v.shape[0]
    if m == 0:
        return []
    if kind == "b":
        v = v.astype(np.intp)
        return _BOOL[v[0]] if np.all(v == v[0]) else _BOOL[v].tolist()
    if kind == "f":
        v = np.ascontiguousarray(v, dtype=np.float64)
        key = v.view(np.int64)
    else:
        v = np.ascontiguousarray(v, dtype=np.int64)
        key = v
    change = key[1:] != key[:-1]
    runs = int(np.count_nonzero(change)) + 1
    if runs == m:          # all distinct: format every value
        starts, vals = None, v
    else:
        starts = np.flatnonzero(np.concatenate(([True], change)))
        vals = v[starts]
    out = float_strings(vals) if kind == "f" else list(map(int.__repr__, vals.tolist()))
    if starts is None:
        return out if m > 1 else out[0]
    if runs == 1:
        return out[0]
    run = np.cumsum(np.concatenate(([0], change)))
    return np.array(out, dtype=object)[run].tolist()


def _fill(lits: List[str], slots: List[int], leaves: List[Col], rows, m: int, sep: str):
    """The texts of ``m`` rows of one form joined by ``sep``, with the first and the last row's
    own texts: literal pieces and column strings interleaved (a column with one text everywhere
    joins the literal pieces), then one ``str.join``."""
    fixed, columns = [lits[0]], []
    for j, k in enumerate(slots):
        leaf = leaves[k]
        strs = column_strings(leaf.kind, leaf.values, rows)
        if isinstance(strs, str):
            fixed[-1] += strs + lits[j + 1]
        else:
            columns.append(strs)
            fixed.append(lits[j + 1])
    end = fixed[-1]
    fixed[-1] += sep
    width = len(fixed) + len(columns)
    pieces: List[Any] = [None] * (width * m)
    for j, lit in enumerate(fixed):
        pieces[2 * j::width] = [lit] * m
    for j, strs in enumerate(columns):
        pieces[2 * j + 1::width] = strs
    pieces[-1] = end
    head = "".join(pieces[:width])
    return "".join(pieces), (head[:-len(sep)] if m > 1 else head), "".join(pieces[-width:])


def block_text(tree, m: int, indent: int = 0, sep: str = SEP) -> Tuple[str, str, str]:
    """``json.dumps(value_of_row, indent=2)`` of each of the ``m`` rows of ``tree``, every line
    after the first indented by ``indent`` more spaces (the value placed inside a document),
    joined by ``sep`` (:data:`SEP`: ``split(SEP)`` gives one text per row); with the first and
    the last row's texts."""
    if m == 0:
        return "", "", ""
    masks: List[np.ndarray] = []
    _masks(tree, masks)
    forms, which = [None], None
    if masks:
        bits = np.column_stack([np.broadcast_to(k, (m,)) for k in masks])
        if not np.all(bits == bits[:1]):
            forms, which = np.unique(bits, axis=0, return_inverse=True)
            which = np.ravel(which)
    texts: List[Any] = [None] * m
    for f in range(len(forms)):
        rows = None if len(forms) == 1 else np.flatnonzero(which == f)
        first = 0 if rows is None else int(rows[0])
        leaves: List[Col] = []
        text = json.dumps(_skeleton(tree, first, leaves), indent=2, allow_nan=False)
        if indent:
            text = text.replace("\n", "\n" + " " * indent)
        parts = _SLOT.split(text)
        lits, slots = parts[0::2], [int(s) for s in parts[1::2]]
        size = m if rows is None else rows.size
        if rows is None:
            return _fill(lits, slots, leaves, rows, size, sep)
        filled = _fill(lits, slots, leaves, rows, size, SEP)[0]
        for i, t in zip(rows.tolist(), filled.split(SEP)):   # several forms: placed in order
            texts[i] = t
    return sep.join(texts), texts[0], texts[-1]


def texts(tree, m: int, indent: int = 0) -> List[str]:
    """:func:`block_text` as one text per row."""
    return block_text(tree, m, indent)[0].split(SEP) if m else []

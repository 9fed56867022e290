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

__all__ = ["Col", "Vec", "Const", "Opt", "Alt", "texts", "block_text", "column_strings", "float_strings",
           "SEP"]


class Col:
    """A leaf with one value per row: ``kind`` ``"f"`` (float64; non-finite -> null), ``"i"``
    (int) or ``"b"`` (bool)."""

    __slots__ = ("kind", "values")

    def __init__(self, kind: str, values):
        self.kind, self.values = kind, np.asarray(values)


class Vec:
    """A leaf with one list of floats per row: the rows of ``values`` (``(m, d)``, float64;
    non-finite -> null), written as one piece per row (orjson formats whole rows)."""

    __slots__ = ("values",)

    def __init__(self, values):
        self.values = np.asarray(values, dtype=np.float64)


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
    if isinstance(node, (Col, Vec)):
        leaves.append(node)
        return f"\x01{len(leaves) - 1}\x01"
    raise TypeError(f"not a tree node: {type(node).__name__}")


#: separates the rows' texts in :func:`block_text` (json.dumps escapes it in any string)
SEP = "\x02"

_FAST = []   # [(floats, rows) of orjson, or (None, None)], decided on first use (:func:`_fast`)

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
    return _fast()[0]


def _fast():
    """``(floats, rows)``: orjson's formatters of a column and of the rows of a matrix (as
    :func:`float_strings` and :func:`vec_strings` write them), or ``(None, None)``."""
    if _FAST:
        return _FAST[0]
    pair = (None, None)
    try:
        import orjson
    except ImportError:
        orjson = None
    if orjson is not None:
        opt = orjson.OPT_SERIALIZE_NUMPY
        rows_opt = opt | orjson.OPT_INDENT_2

        def floats(vals):
            out = orjson.dumps(vals, option=opt)[1:-1].decode("ascii").split(",")
            for i in np.flatnonzero((np.abs(vals) < 1e-4) & (vals != 0)).tolist():
                out[i] = float.__repr__(float(vals[i]))
            return out

        def rows(M, level):
            # M nested in wrapper lists so that orjson itself indents its rows to ``level``
            # (values at level + 2); each row without its opening bracket:
            # "\n<level+2>v1,\n<level+2>v2\n<level>]"
            if level % 2 or level < 2:
                text = orjson.dumps(M, option=rows_opt).decode("ascii")[5:-2]
                text = text.replace("\n    ", "\n" + " " * (level + 2)).replace(
                    "\n  ]", "\n" + " " * level + "]")
                out = text.split(",\n  [")
            else:
                k = level // 2 - 1
                obj = M
                for _ in range(k):
                    obj = [obj]
                out = orjson.dumps(obj, option=rows_opt).decode("ascii").split(
                    ",\n" + " " * level + "[")
                head = 1 + sum(2 + 2 * i for i in range(1, k + 2))   # "[" "\n  [" ...
                tail = sum(2 + 2 * i for i in range(k + 1))          # "\n  ]" ... "\n]"
                out[0] = out[0][head:]
                out[-1] = out[-1][:len(out[-1]) - tail]
            small = np.flatnonzero(np.any((np.abs(M) < 1e-4) & (M != 0), axis=1)).tolist()
            for i in small:
                out[i] = _repr_row(M[i], level)
            return out

        try:
            P = _PROBES[: _PROBES.size // 4 * 4].reshape(-1, 4)
            if (floats(_PROBES) != _repr_floats(_PROBES)
                    or any(rows(P, lv) != [_repr_row(r, lv) for r in P] for lv in (1, 2, 6))):
                raise ValueError("orjson writes floats unlike repr")
            pair = (floats, rows)
        except Exception:   # any failure of the accelerator: the plain path
            pair = (None, None)
    _FAST.append(pair)
    return pair


def _repr_row(row, level) -> str:
    """One row of :func:`vec_strings` with :func:`_repr_floats`."""
    ind = " " * (level + 2)
    return "\n" + ind + (",\n" + ind).join(_repr_floats(row)) + "\n" + " " * level + "]"


def vec_strings(M, level: int, rows=None):
    """The JSON list of each row of ``M`` (``(m, d)`` float64) as placed at indentation
    ``level`` with indent 2, without its opening ``[``: ``"\n" + items + "\n" + pad + "]"``;
    one string when every row has the same text. Each run of equal rows is formatted once."""
    M = np.asarray(M, dtype=np.float64)
    if rows is not None:
        M = M[rows]
    m = M.shape[0]
    if m == 0:
        return []
    if M.shape[1] == 0:
        return "]"
    M = np.ascontiguousarray(M)
    starts, change = _runs(M.view(np.int64))
    vals = M if starts is None else M[starts]
    fast = _fast()[1]
    if fast is not None:
        out = fast(vals, level)
    else:
        cols = [_repr_floats(np.ascontiguousarray(vals[:, j])) for j in range(vals.shape[1])]
        ind = " " * (level + 2)
        head, mid, end = "\n" + ind, ",\n" + ind, "\n" + " " * level + "]"
        out = [head + mid.join(r) + end for r in zip(*cols)]
    return _expand(out, starts, change, m)


def _runs(key):
    """``(starts, change)``: the first row of each run of equal rows of ``key`` (bit patterns),
    None when every row differs from the one before; ``change[i]``: row i+1 differs from i."""
    change = key[1:] != key[:-1]
    if change.ndim > 1:
        change = np.any(change, axis=1)
    if np.all(change):
        return None, change
    return np.flatnonzero(np.concatenate(([True], change))), change


def _expand(out, starts, change, m):
    """The texts of all ``m`` rows from those of the runs' first rows: one string when every row
    has the same text."""
    if starts is None:
        return out if m > 1 else out[0]
    if starts.size == 1:
        return out[0]
    return np.array(out, dtype=object)[np.cumsum(np.concatenate(([0], change)))].tolist()


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
    starts, change = _runs(key)
    vals = v if starts is None else v[starts]
    out = float_strings(vals) if kind == "f" else list(map(int.__repr__, vals.tolist()))
    return _expand(out, starts, change, m)


def _fill(lits: List[str], slots: List[int], leaves: List[Col], rows, m: int, sep: str,
          indent: int):
    """The texts of ``m`` rows of one form joined by ``sep``, with the first and the last row's
    own texts: literal pieces and column strings interleaved (a column with one text everywhere
    joins the literal pieces), then one ``str.join``."""
    fixed, columns = [lits[0]], []
    for j, k in enumerate(slots):
        leaf = leaves[k]
        if isinstance(leaf, Vec):   # its rows close at the indentation of their first line
            first_line = len(fixed) == 1 and "\n" not in fixed[0]
            line = fixed[-1].rsplit("\n", 1)[-1]
            level = len(line) - len(line.lstrip(" ")) + (indent if first_line else 0)
            fixed[-1] += "["
            strs = vec_strings(leaf.values, level, rows)
        else:
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
            return _fill(lits, slots, leaves, rows, size, sep, indent)
        filled = _fill(lits, slots, leaves, rows, size, SEP, indent)[0]
        for i, t in zip(rows.tolist(), filled.split(SEP)):   # several forms: placed in order
            texts[i] = t
    return sep.join(texts), texts[0], texts[-1]


def texts(tree, m: int, indent: int = 0) -> List[str]:
    """:func:`block_text` as one text per row."""
    return block_text(tree, m, indent)[0].split(SEP) if m else []

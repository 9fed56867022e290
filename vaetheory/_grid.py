"""Parse hyperparameter values given on the command line, and form their grid.

Syntax of one option value (items separated by commas, each item one of):

- ``2`` or ``1e-3``: one number;
- ``a:b:n``: ``n`` evenly spaced values from ``a`` to ``b`` inclusive (``numpy.linspace``);
- ``log:a:b:n``: ``n`` log-spaced values from ``a`` to ``b`` inclusive (``numpy.geomspace``;
  ``a, b > 0``).

``0.5,1,2`` is three values, ``0.1:10:50`` fifty, ``log:0.01:100:5`` is 0.01, 0.1, 1, 10, 100, and
``0.5,log:1:100:3`` is 0.5, 1, 10, 100. The values of several options form an outer-product grid
(:func:`make_grid`, ``numpy.meshgrid(indexing="ij")``): one theory call covers the whole grid.

Every problem raises :class:`~vaetheory.errors.ParameterError` (a ``ValueError``) with one line
naming the option. Sizes are checked before anything is allocated: an option with more than
:data:`MAX_GRID_POINTS` values is refused while parsing (``1:10:1000000000`` never reaches
``numpy.linspace``), and :func:`make_grid` checks the product before ``numpy.meshgrid``.

Large grids are solved in pieces: :func:`point_values` gives the hyperparameters of any set of
grid points (C-order indices) as flat arrays, and :func:`solve_points` the closed form at exactly
those points -- the theory is elementwise over the grid (docs/theory.md: each point's optimum
depends on that point's hyperparameters only), so a piece gives the same numbers as the whole.
:func:`grid_rows` reads a run of points of a solution's (broadcastable) array as rows, for code
that works on a block of points at once (the streamed JSON).
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

import numpy as np

from .errors import ParameterError

__all__ = ["parse_values", "parse_ints", "parse_vector", "make_grid", "MAX_GRID_POINTS",
           "point_values", "solve_points", "blocks", "grid_rows"]

MAX_GRID_POINTS = 1_000_000


def _number(text, name, item):
    try:
        value = float(text)
    except ValueError:
        raise ParameterError(f"{name}: {item.strip()!r} is not a number; use one value, a comma list, "
                         "a:b:n (linear) or log:a:b:n (log-spaced)") from None
    if not np.isfinite(value):
        raise ParameterError(f"{name}: {item.strip()!r} is not a finite number")
    return value


def _count(text, name, item):
    try:
        n = int(text)
    except ValueError:
        raise ParameterError(f"{name}: in {item.strip()!r} the number of values {text.strip()!r} must be "
                         "an integer >= 1 (a:b:n)") from None
    if n < 1:
        raise ParameterError(f"{name}: in {item.strip()!r} the number of values must be >= 1, got {n}")
    return n


def parse_values(text: str, name: str) -> np.ndarray:
    """All values of one option, in the order given, as a 1-d float64 array."""
    if text is None or not str(text).strip():
        raise ParameterError(f"{name}: empty value")
    out = []
    count = 0
    for item in str(text).split(","):
        if not item.strip():
            raise ParameterError(f"{name}: {text!r} has an empty item (stray comma?)")
        parts = [p.strip() for p in item.split(":")]
        if len(parts) == 1:
            out.append(_number(parts[0], name, item))
            count += 1
            continue
        log = parts[0].lower() == "log"
        if log:
            parts = parts[1:]
        if len(parts) != 3:
            form = "log:a:b:n" if log else "a:b:n"
            raise ParameterError(f"{name}: {item.strip()!r} is not a range; use {form} "
                             "(n values from a to b inclusive)")
        a, b = _number(parts[0], name, item), _number(parts[1], name, item)
        n = _count(parts[2], name, item)
        count += n
        if count > MAX_GRID_POINTS:  # before numpy allocates the values
            raise ParameterError(f"{name}: {text.strip()!r} gives at least {count} values; a grid has "
                                 f"at most {MAX_GRID_POINTS} points")
        if log:
            if a <= 0 or b <= 0:
                raise ParameterError(f"{name}: log-spaced range {item.strip()!r} needs a, b > 0")
            out.extend(np.geomspace(a, b, n).tolist())
        else:
            out.extend(np.linspace(a, b, n).tolist())
    return np.asarray(out, dtype=np.float64)


def parse_ints(text: str, name: str) -> list:
    """Integer values (latent dims): same syntax; every value must be a whole number.

    Duplicates are dropped (first occurrence kept), e.g. ``log:1:64:7`` is 1, 2, 4, ..., 64.
    """
    values = parse_values(text, name)
    rounded = np.rint(values)
    bad = np.abs(values - rounded) > 1e-9 * np.maximum(1.0, np.abs(values))
    if np.any(bad):
        raise ParameterError(f"{name} takes whole numbers, got {values[bad][0]:g}")
    out = []
    for v in rounded.astype(np.int64).tolist():
        if v not in out:
            out.append(v)
    return out


def parse_vector(text: str, name: str) -> np.ndarray:
    """One value or a comma list of plain numbers (a per-latent-dimension vector): no ranges."""
    if text is None or not str(text).strip():
        raise ParameterError(f"{name}: empty value")
    items = str(text).split(",")
    for item in items:
        if ":" in item:
            raise ParameterError(f"{name} takes one value (isotropic) or one value per latent dimension "
                             f"separated by commas, not a range ({item.strip()!r})")
        if not item.strip():
            raise ParameterError(f"{name}: {text!r} has an empty item (stray comma?)")
    return np.asarray([_number(item, name, item) for item in items], dtype=np.float64)


def make_grid(axes: Dict[str, Sequence[float]]) -> Tuple[Tuple[int, ...], Dict[str, np.ndarray]]:
    """Outer product of the axes, in the order given: ``(shape, {name: array of that shape})``.

    An axis with one value still gets its own (length-1) dimension, so grid indices always have
    one entry per axis.
    """
    names = list(axes)
    values = [np.asarray(axes[n], dtype=np.float64).ravel() for n in names]
    shape = tuple(v.size for v in values)
    total = int(np.prod(shape)) if shape else 1
    if total > MAX_GRID_POINTS:
        raise ParameterError(f"the hyperparameter grid has {total} points "
                         f"({' x '.join(str(s) for s in shape)}); at most {MAX_GRID_POINTS} are allowed")
    grids = np.meshgrid(*values, indexing="ij") if values else []
    return shape, dict(zip(names, grids))


def point_values(axes: Dict[str, np.ndarray], flat) -> Dict[str, np.ndarray]:
    """The axis values at grid points ``flat`` (C-order indices into the outer product of
    ``axes``), as 1-d arrays of ``len(flat)``: the grid of those points alone."""
    names = list(axes)
    shape = tuple(np.asarray(axes[n]).size for n in names)
    flat = np.asarray(flat, dtype=np.intp).ravel()
    idx = np.unravel_index(flat, shape) if names else ()
    return {n: np.asarray(axes[n], dtype=np.float64).ravel()[i] for n, i in zip(names, idx)}


def solve_points(request, spectrum, d1, d2, flat):
    """The closed-form :class:`~vaetheory.theory.Solution` of ``request`` at the grid points
    ``flat`` only (C-order indices of ``request``'s grid), for latent dims ``(d1, d2)``.

    Its grid is one axis over those points, in the order given; every number equals the one the
    whole grid's solution has at that point.
    """
    kw = point_values(request.axes, flat)
    for name, v in request.vectors.items():
        kw[name] = float(v[0]) if v.size == 1 else v
    return request.setting.solve(spectrum, d1, d2, **kw)


def blocks(n_points: int, size: int):
    """``range`` objects covering ``0 .. n_points - 1`` in pieces of at most ``size``."""
    size = max(1, int(size))
    for start in range(0, int(n_points), size):
        yield range(start, min(start + size, int(n_points)))


def grid_rows(arr, shape, start: int, stop: int, per_dim: bool = False) -> np.ndarray:
    """Points ``start .. stop - 1`` (C order) of an array broadcastable to the grid ``shape``
    (``per_dim``: to ``shape + (d,)``), as an array ``(stop - start,)`` (or ``(stop - start,
    d)``): the values :meth:`~vaetheory.theory.Point.value` (``.vector``) reads point by
    point (same dtype), with only those rows materialised (a broadcast array is never expanded whole)."""
    a = np.asarray(arr)
    full = tuple(shape) + (a.shape[-1:] if per_dim else ())
    if a.shape == full and a.flags.c_contiguous:
        flat = a.reshape((-1,) + full[len(shape):])
        return flat[start:stop]
    b = np.broadcast_to(a, full)
    if not shape:
        return b.reshape((1,) + full)[start:stop]
    idx = np.unravel_index(np.arange(start, stop), tuple(shape))
    return b[idx]

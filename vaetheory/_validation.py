"""Argument checking shared by every layer: one clear :class:`~vaetheory.errors.ParameterError`
(a ``ValueError``) naming the argument. Hyperparameters are checked against their constraints in
:func:`vaetheory.settings.check_value`; these are the generic checks."""

from __future__ import annotations

import contextlib
import numbers
import os

import numpy as np

from .errors import DataError, NotCoveredError, ParameterError  # noqa: F401  (re-exported)


def positive(name, value, *, allow_zero=False):
    """Return ``value`` as a float64 array after checking it is finite and > 0 (or >= 0)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a number or an array of numbers, got {value!r}") from None
    if arr.size == 0:
        raise ParameterError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite, got {_show(arr)}")
    bad = arr < 0 if allow_zero else arr <= 0
    if np.any(bad):
        what = "non-negative" if allow_zero else "positive"
        raise ParameterError(f"{name} must be {what}, got {_show(arr[bad].ravel()[:3])}")
    return arr


def latent_dim(name, value):
    """Return ``value`` as a Python int >= 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"{name} must be an integer >= 1, got {value!r}") from None
        if not as_float.is_integer():
            raise ParameterError(f"{name} must be an integer >= 1, got {value!r}")
        value = int(as_float)
    value = int(value)
    if value < 1:
        raise ParameterError(f"{name} must be an integer >= 1, got {value}")
    return value


def finite_matrix(name, value, *, ndim=2):
    """Return a float64 array of the given ndim with only finite entries, non-empty."""
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ParameterError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if arr.ndim != ndim:
        raise ParameterError(f"{name} must be {ndim}-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} contains {int(np.sum(~np.isfinite(arr)))} non-finite values")
    return arr


def spectrum_values(name, value):
    """A 1-d, finite, non-negative vector (a spectrum), returned sorted descending."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr[None]
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ParameterError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ParameterError(f"{name} must be finite")
    if np.any(arr < 0):
        raise ParameterError(f"{name} must be non-negative, got {_show(arr[arr < 0][:3])}")
    return np.sort(arr)[::-1].copy()


def output_path(flag, path, suffixes, *, force=False, inputs=()):
    """Refuse an output file that would overwrite something the user gave, or cannot be written:
    a suffix not in ``suffixes``, one of the ``inputs``, a directory, an existing file (unless
    ``force``), a missing parent directory. ``flag`` names the option in the message."""
    p = str(path)
    if not p.lower().endswith(tuple(suffixes)):
        raise ParameterError(f"{flag} {p!r}: the file name must end in " + " or ".join(suffixes))
    for src in inputs:
        if src is None or not isinstance(src, (str, os.PathLike)):
            continue
        same = os.path.abspath(p) == os.path.abspath(str(src))
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(p, src)
        if same:
            raise ParameterError(f"{flag} {p!r} is an input file; refusing to overwrite it")
    if os.path.isdir(p):
        raise ParameterError(f"{flag} {p!r} is a directory")
    if os.path.exists(p) and not force:
        raise ParameterError(f"{flag} {p!r} exists; refusing to overwrite it (use --force)")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise ParameterError(f"{flag} {p!r}: directory {parent!r} does not exist")
    return p


def _show(arr):
    arr = np.asarray(arr).ravel()
    return ", ".join(f"{v:g}" for v in arr[:3]) + (" ..." if arr.size > 3 else "")

"""Argument checking shared by every layer: one clear :class:`~vaetheory.errors.ParameterError`
(a ``ValueError``) naming the argument. Hyperparameters are checked against their constraints in
:func:`vaetheory.settings.check_value`; these are the generic checks."""

from __future__ import annotations

import numbers

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


def _show(arr):
    arr = np.asarray(arr).ravel()
    return ", ".join(f"{v:g}" for v in arr[:3]) + (" ..." if arr.size > 3 else "")

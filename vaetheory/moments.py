"""Arrays -> second moments -> spectra, at every scale, shape and conditioning (docs/theory.md §9).

Everything the closed forms need from a dataset is its second-moment matrix (docs/theory.md §0):
``A = E[x x^T]`` (``center=False``, the bias-free model as the paper states it) or ``Cov(x)``
(``center=True``, the default: a model with encoder and decoder biases is exactly the bias-free
model on centred data). Expectations are sample means with ``1/N``.

How it is computed (§9):

* **Scale.** Values are multiplied by a power of two ``2**-k`` (exact) chosen from the data's
  spread before any product is formed, so data at 1e-200 or 1e300 give the same digits as data at
  1; a :class:`Spectrum` keeps ``k`` (:attr:`Spectrum.scale_exponent`) and its values in those
  units (:attr:`Spectrum.scaled_eigenvalues`), and gives them in the user's units when float64
  can hold them (:attr:`Spectrum.eigenvalues`, :attr:`Spectrum.theta`) -- otherwise it raises
  :class:`~vaetheory.errors.NotRepresentableError`, never a silent 0 or inf.
* **Streaming.** Rows are read in blocks; each block is centred on its own mean and merged with
  Chan's parallel update (no cancellation whatever the mean, no float64 copy of the data), the
  scatter updated in place by BLAS ``syrk`` ("gram", fast) or a streamed QR ("qr", accurate:
  eigenvalues from singular values, so the condition number is not squared). The same partials
  merge across Dask partitions (:mod:`vaetheory._dask`).
* **Method** ``"auto"`` (the default) takes the Gram path and, when its result cannot be trusted
  to ~8 digits (an eigenvalue below ``sqrt(eps)`` times the largest that is not exactly zero, or an
  ill-conditioned condition x for the CVAE residual), reads the data a second time with the QR
  path. Every spectrum carries a per-eigenvalue error estimate (:attr:`Spectrum.error`) and
  ``provenance["method"]``.
* **Shape.** With fewer rows than columns (N < D) the nonzero spectrum comes from the N x N
  side (the "dual" path: the N x N Gram of the centred data held in memory, or its SVD when the
  Gram is not accurate), so 500 x 50000 data need no D x D matrix. A D x D matrix that would not fit in memory is refused with the estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional

import numpy as np

from . import _accumulate as acc
from ._numerics import EPS, lapack_threads, rank_tolerance
from ._validation import finite_matrix
from .errors import DataError, NotRepresentableError, ParameterError
from ._resources import require as _require_memory

__all__ = [
    "DataError",
    "METHODS",
    "Moments",
    "NotRepresentableError",
    "Spectrum",
    "accumulate_moments",
    "empirical_moments",
    "empirical_residual_spectrum",
    "empirical_spectrum",
    "load_spectrum",
    "residual_spectrum",
    "spectrum_from_eigenvalues",
    "spectrum_from_moments",
]

#: how moments are computed: "auto" (gram, then qr when the gram result is unreliable), or one
METHODS = ("auto", "gram", "qr")
#: a Gram eigenvalue below this times the largest has lost half of its digits (or all of them)
RELIABLE = math.sqrt(EPS)
#: "auto" reads the data a second time with the QR path only if that costs at most this many
#: flops (2 N D^2: ~10 s on one core); beyond, the Gram result stands with its error and a note
QR_AUTO_FLOPS = 2e10
#: a note when one column holds more than this share of the total variance (trace)
DOMINANT_SHARE = 0.9
_TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------------------------
# user units: values * 2**e, or a clear refusal


def _to_user(values, e, what, strict=True):
    """``values * 2**e`` (exact), or :class:`NotRepresentableError` when float64 cannot hold it.

    Entries that matter (above ``eps`` times the largest) must stay finite and normal; smaller ones
    may round to subnormals or zero (they are below every tolerance anyway). ``strict=False``
    (tolerances, error bounds: auxiliary sizes) lets them underflow, refusing only overflow.
    """
    if values is None:
        return None
    v = np.asarray(values, dtype=np.float64)
    if e == 0 or v.size == 0:
        return v.copy() if isinstance(values, np.ndarray) else v
    with np.errstate(over="ignore", under="ignore"):
        out = acc.pow2_scale(v, e)
    a = np.abs(v)
    top = float(np.max(a)) if a.size else 0.0
    if top == 0.0:
        return out
    matters = a > EPS * top
    o = np.abs(out)
    if not np.all(np.isfinite(out)) or (strict and np.any(matters & (o < _TINY))):
        big = not np.all(np.isfinite(out))
        head = (f"{what} {'overflow' if big else 'underflow'} float64 in the data's units "
                f"(values up to {top:.3g} x 2^{e})")
        k = -(e // 2) if e % 2 == 0 else -e
        raise NotRepresentableError(
            f"{head}; use the scaled values (Spectrum.scaled_eigenvalues with scale_exponent) or "
            "rescale the data",
            cli=f"{head}; rescale the data (e.g. multiply it by 2^{k}, and eta_dec with it): "
                "counts and thresholds are unchanged by a scale (docs/theory.md §9.11), and "
                "predict/thresholds/spectrum answer at this scale")
    return out


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Moments:
    """Second moments of a dataset (rows are samples), in scaled units (docs/theory.md §9.1).

    Attributes
    ----------
    scaled_matrix : ndarray (D, D)
        ``Cov(x)`` if ``centered`` else ``E[x x^T]`` (1/N), times ``4**-scale_exponent``.
    scaled_mean : ndarray (D,)
        Sample mean times ``2**-scale_exponent`` (always computed).
    n_samples : int
    centered : bool
    scale_exponent : int
        ``k``: the data were multiplied by ``2**-k`` (exact) before any product.
    constant : ndarray of bool (D,), optional
        Columns holding a single value (their centred variance is exactly 0).
    factor : ndarray (D, D), optional
        QR path: upper-triangular ``R`` (scaled) with ``R^T R = N * Cov(x)`` (centred, always).
    method : {"gram", "qr"}
    """

    scaled_matrix: np.ndarray
    scaled_mean: np.ndarray
    n_samples: int
    centered: bool
    scale_exponent: int = 0
    constant: Optional[np.ndarray] = field(default=None, repr=False)
    factor: Optional[np.ndarray] = field(default=None, repr=False)
    method: str = "gram"

    @property
    def dim(self):
        return self.scaled_matrix.shape[0]

    @property
    def matrix(self) -> np.ndarray:
        """The moment matrix in the data's units (raises if float64 cannot hold it)."""
        return _to_user(self.scaled_matrix, 2 * self.scale_exponent, "the moment matrix")

    @property
    def mean(self) -> np.ndarray:
        """The sample mean in the data's units."""
        return _to_user(self.scaled_mean, self.scale_exponent, "the mean")


@dataclass(frozen=True)
class Spectrum:
    """The spectrum a theorem consumes, with its provenance and accuracy (docs/theory.md §9).

    Values are stored in scaled units: the data were multiplied by ``2**-k`` (``k`` =
    :attr:`scale_exponent`, exact) before any product, so ``scaled_eigenvalues`` =
    eigenvalues ``* 4**-k`` (largest around 1) and ``scaled_theta = theta * 2**-k``. The
    properties :attr:`eigenvalues`, :attr:`theta`, :attr:`tolerance`, :attr:`error`,
    :attr:`trace`, :attr:`matrix` and :attr:`mean` give the data's units, exactly (a power of two),
    and raise :class:`~vaetheory.errors.NotRepresentableError` when float64 cannot hold them (e.g.
    ``theta = 1e-200`` has eigenvalue 1e-400): never a silent 0 or inf. ``theta`` is representable
    whenever the data are.

    ``eigenvalues`` are those of the second-moment matrix (data spectrum, ``kind="data"``) or of the
    residual covariance ``E`` of y given x (``kind="residual"``, CVAE), sorted descending, clipped to
    zero at or below the rank tolerance. ``theta = sqrt(eigenvalues)`` is the paper's theta for the
    VAE and hierarchical theorems; the CVAE theorem uses the eigenvalues themselves (§4).

    Attributes
    ----------
    scaled_eigenvalues : ndarray (D,)
    rank : int
        Number of nonzero eigenvalues (above the tolerance).
    n_samples : int or None
        None when the spectrum was given directly rather than computed from data.
    centered : bool or None
    kind : {"data", "residual"}
    scaled_tolerance : float
        Values at or below it count as zero (§0.3, §9.3), scaled.
    scale_exponent : int
        ``k`` above.
    scaled_error : ndarray (D,) or None
        Estimated absolute float64 error of each eigenvalue (scaled units; §9.3): Weyl's bound
        ``D eps lambda_1`` for the Gram path, ``(2 s_i ds + ds^2) / N`` from the singular values
        ``s_i`` for the QR path; 0 for eigenvalues that are exactly zero (constant columns). None
        for user-given spectra.
    basis : ndarray (D, r) or None
        Orthonormal eigenvectors (columns, same order), present when requested; needed to build the
        optimal matrices in data coordinates. The dual path (N < D) gives only the ``r <= N``
        columns of nonzero eigenvalues (``_construct`` pads with zero columns).
    regression : ndarray (D2, D0) or None
        CVAE only: ``K = C A^+``, the least-squares map from x to y (``U2`` at the optimum).
    x_dim : int or None
        CVAE only: dimension of the condition x.
    scaled_matrix : ndarray or None
        The second-moment matrix the spectrum came from (scaled): ``A`` (data) or the joint matrix
        of ``[x; y]`` (residual); the numerical checker minimises the losses on it. None on the
        dual path (no D x D matrix; the eigenvalues in the eigenbasis are equivalent).
    scaled_mean : ndarray or None
        Sample mean (of ``[x; y]`` for the CVAE), scaled; gives the biases of the optimal model.
    provenance : dict or None
        Where the data came from (:func:`load_spectrum`): source, selection, centring, sample
        count, dimensions, rank, ``method``, ``max_relative_error``, ``scale_exponent`` and
        ``notes`` -- JSON-able, what the command line reports as ``data``.
    """

    scaled_eigenvalues: np.ndarray
    rank: int
    n_samples: Optional[int] = None
    centered: Optional[bool] = None
    kind: str = "data"
    scaled_tolerance: float = 0.0
    scale_exponent: int = 0
    scaled_error: Optional[np.ndarray] = field(default=None, repr=False)
    basis: Optional[np.ndarray] = field(default=None, repr=False)
    regression: Optional[np.ndarray] = field(default=None, repr=False)
    x_dim: Optional[int] = None
    scaled_mean: Optional[np.ndarray] = field(default=None, repr=False)
    scaled_matrix: Optional[np.ndarray] = field(default=None, repr=False)
    provenance: Optional[dict] = field(default=None, repr=False, compare=False)

    # ---- data units
    @property
    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues in the data's (squared) units; raises if float64 cannot hold them."""
        return _to_user(self.scaled_eigenvalues, 2 * self.scale_exponent, "the eigenvalues")

    @property
    def scaled_theta(self) -> np.ndarray:
        return np.sqrt(self.scaled_eigenvalues)

    @property
    def theta(self):
        """Square roots of the eigenvalues (singular values of ``Z = E[x x~^T]``), data units:
        ``sqrt(scaled_eigenvalues) * 2**k``, exact to the rounding of the square root."""
        return _to_user(self.scaled_theta, self.scale_exponent, "theta")

    @property
    def tolerance(self) -> float:
        return float(_to_user(np.array([self.scaled_tolerance]), 2 * self.scale_exponent,
                              "the rank tolerance", strict=False)[0])

    @property
    def error(self) -> Optional[np.ndarray]:
        """Estimated absolute error of each eigenvalue, data units (None if not estimated)."""
        if self.scaled_error is None:
            return None
        return _to_user(self.scaled_error, 2 * self.scale_exponent, "the eigenvalue errors",
                        strict=False)

    @property
    def relative_error(self) -> Optional[np.ndarray]:
        """``error / eigenvalue`` per nonzero eigenvalue (0 where the eigenvalue is 0)."""
        if self.scaled_error is None:
            return None
        ev = self.scaled_eigenvalues
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(ev > 0, self.scaled_error / np.where(ev > 0, ev, 1.0), 0.0)

    @property
    def matrix(self) -> Optional[np.ndarray]:
        return _to_user(self.scaled_matrix, 2 * self.scale_exponent, "the moment matrix")

    @property
    def mean(self) -> Optional[np.ndarray]:
        return _to_user(self.scaled_mean, self.scale_exponent, "the mean")

    @property
    def dim(self):
        return self.scaled_eigenvalues.shape[0]

    @property
    def scaled_trace(self) -> float:
        return float(np.sum(self.scaled_eigenvalues))

    @property
    def trace(self):
        return float(_to_user(np.array([self.scaled_trace]), 2 * self.scale_exponent,
                              "the trace")[0])

    def padded(self, length):
        """Eigenvalues zero-padded (or truncated) to ``length`` (theta_i := 0 beyond the rank)."""
        return _pad(self.eigenvalues, length)

    def scaled_padded(self, length):
        """:meth:`padded` in scaled units (``* 4**-scale_exponent``)."""
        return _pad(self.scaled_eigenvalues, length)


def _pad(ev, length):
    out = np.zeros(max(length, 0))
    k = min(length, ev.size)
    out[:k] = ev[:k]
    return out


# --------------------------------------------------------------------------------------------
# inputs


def _as_rows(X, name):
    if _is_dask(X):
        return X if X.ndim == 2 else X.reshape(X.shape[0], -1)
    X = np.asarray(X) if not isinstance(X, np.ndarray) else X
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name} must be numeric, got dtype {X.dtype}")
    if X.ndim == 1:
        X = X[:, None]
    elif X.ndim > 2:  # images: flatten each sample row-wise
        X = X.reshape(X.shape[0], -1)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{name} is empty (shape {X.shape})")
    return X


def _is_dask(X):
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "to_delayed")


def default_chunk_rows(n_features):
    """Rows per working block for data of width ``n_features`` (see ``_accumulate.block_rows``)."""
    return acc.block_rows(n_features)


def iter_row_chunks(X, chunk_rows):
    """Yield consecutive row blocks ``X[i:i+chunk_rows]`` (views for ndarrays and memmaps)."""
    n = X.shape[0]
    for start in range(0, n, chunk_rows):
        yield start, X[start:start + chunk_rows]


def primal_bytes(dim, with_basis=False):
    """Peak bytes of the D x D path: the accumulator, the eigen-decomposition's copy and
    workspace, the eigenvectors."""
    return 8 * dim * dim * (3 + (1 if with_basis else 0))


def _check_memory(need, what):
    """A :class:`ResourceError` (exit 1) before an allocation that cannot fit (vaetheory._resources,
    which reads MemAvailable, the cgroup limit, ``ulimit -v`` and VAETHEORY_MEMORY_LIMIT)."""
    _require_memory(need, what, "select fewer columns, or use a machine with more memory",
                    cli="select fewer columns (--cols, or --x-cols/--y-cols), or use a machine "
                        "with more memory")


# --------------------------------------------------------------------------------------------
# accumulation


def _accumulate(blocks, dim, kind, *, rows=None, progress=None, name="X", check=True):
    a = acc.accumulator(kind, dim, rows=rows, name=name)
    for block in blocks:
        a.add(_as_rows(block, name))
        if progress is not None:
            progress(block.shape[0])
    return a.finish(check=check)


def _moments_of(a, center) -> Moments:
    """A finished accumulator -> :class:`Moments` (scaled)."""
    n = a.n
    if n == 0:
        raise DataError(f"{a.name} has no rows")
    if center and n < 2:
        raise DataError(f"{a.name} has {n} sample; centring needs at least 2 (or use center=False)")
    mean = a.mean
    k = 0 if a.k is None else a.k
    if a.kind == "gram":
        M = a.scatter() / n
        factor = None
    else:
        factor = a.factor()
        M = factor.T @ factor / n
    const = a.constant
    M[const, :] = 0.0
    M[:, const] = 0.0
    if factor is not None:
        factor[:, const] = 0.0
    if not center:
        M = M + np.outer(mean, mean)
    M = 0.5 * (M + M.T)
    return Moments(scaled_matrix=M, scaled_mean=mean, n_samples=int(n), centered=bool(center),
                   scale_exponent=int(k), constant=const, factor=factor, method=a.kind)


def accumulate_moments(
    chunks: Iterable[np.ndarray],
    *,
    center: bool = True,
    n_features: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
    name: str = "X",
    method: str = "gram",
    chunk_rows: Optional[int] = None,
) -> Moments:
    """Second moments from an iterable of row blocks, in one pass, in float64 (§9.1, §9.2).

    Parameters
    ----------
    chunks : iterable of ndarray (n_i, D)
        Row blocks of the dataset in order; any real dtype.
    center : bool
        Return ``Cov(x)`` (True) or ``E[x x^T]`` (False).
    progress : callable(int), optional
        Called with the number of rows in each block after it is processed.
    method : {"gram", "qr"}
        In-place ``syrk`` updates of the scatter, or a streamed QR (``Moments.factor``).
    chunk_rows : int, optional
        Rows per working block (default from the width: ``_accumulate.block_rows``); the result
        does not depend on it beyond rounding.

    Raises
    ------
    DataError
        Non-finite values (with their count and the first location), no rows, or blocks of
        differing width.
    """
    if method not in ("gram", "qr"):
        raise ParameterError(f"method must be 'gram' or 'qr' for moments, got {method!r}")
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        raise DataError(f"{name} has no rows")
    first = _as_rows(first, name)
    dim = first.shape[1] if n_features is None else int(n_features)

    def blocks():
        yield first
        yield from it

    a = _accumulate(blocks(), dim, method, rows=chunk_rows, progress=progress, name=name)
    return _moments_of(a, center)


def empirical_moments(X, *, center=True, chunk_rows=None, progress=None, name="X",
                      method="gram") -> Moments:
    """Second moments of the rows of ``X`` (array, memmap or Dask array, any real dtype; >2-d is
    flattened). See :func:`accumulate_moments`. No float64 copy of the whole array is made."""
    X = _as_rows(X, name)
    if _is_dask(X):
        from . import _dask

        return _moments_of(_dask.partial_of_array(X, method, name=name), center)
    rows = chunk_rows or acc.block_rows(X.shape[1])
    return accumulate_moments((b for _, b in iter_row_chunks(X, rows)), center=center,
                              progress=progress, name=name, method=method, chunk_rows=chunk_rows)


# --------------------------------------------------------------------------------------------
# spectra of data


def spectrum_from_eigenvalues(eigenvalues, *, kind="data", rank_scale=None) -> Spectrum:
    """Wrap user-given eigenvalues (any order, non-negative) as a :class:`Spectrum`.

    A data spectrum is taken as data whose covariance is ``diag(eigenvalues)`` (sorted descending)
    in the coordinate axes, so ``basis`` is the identity and optimal matrices can be built.
    """
    from ._validation import spectrum_values

    if kind not in ("data", "residual"):
        raise ParameterError(f"kind must be 'data' or 'residual', got {kind!r}")
    ev = spectrum_values("eigenvalues", eigenvalues)
    scale = ev[0] if rank_scale is None else rank_scale
    tol = rank_tolerance(scale, ev.size)
    ev = np.where(ev > tol, ev, 0.0)
    data = kind == "data"
    return Spectrum(scaled_eigenvalues=ev, rank=int(np.sum(ev > 0)), kind=kind,
                    scaled_tolerance=tol, basis=np.eye(ev.size) if data else None,
                    scaled_matrix=np.diag(ev) if data else None)


def _exact_zero_columns(moments):
    """Columns whose moments are exactly zero: constant (centred) or all-zero (uncentred)."""
    const = moments.constant
    if const is None:
        return np.zeros(moments.dim, dtype=bool)
    if moments.centered:
        return const.copy()
    return const & (moments.scaled_mean == 0)


def _embed(vectors, keep, dim, zero_cols):
    """Eigenvectors of the reduced matrix (rows ``keep``) -> D-dim, plus unit vectors for the
    exactly-zero columns (last, with the zero eigenvalues)."""
    P = np.zeros((dim, dim))
    P[np.ix_(keep, np.arange(keep.size))] = vectors
    for j, c in enumerate(np.flatnonzero(zero_cols)):
        P[c, keep.size + j] = 1.0
    return P


def _gram_eigen(M, zero_cols, with_basis):
    """Eigen-decomposition of the formed matrix, exactly-zero columns split off.

    Returns ``(w, P, tol, err, reliable)`` in the matrix's units.
    """
    D = M.shape[0]
    keep = np.flatnonzero(~zero_cols)
    sub = M[np.ix_(keep, keep)]
    if with_basis:
        w, V = np.linalg.eigh(sub) if keep.size else (np.zeros(0), np.zeros((0, 0)))
        w, V = w[::-1].copy(), V[:, ::-1]
    else:
        from scipy.linalg import eigh

        w = (eigh(sub, eigvals_only=True, driver="evr", overwrite_a=True, check_finite=False)[::-1]
             .copy() if keep.size else np.zeros(0))
        V = None
    top = max(float(w[0]), 0.0) if w.size else 0.0
    tol = rank_tolerance(top, D)
    # unreliable: an eigenvalue (not exactly zero) that lost half its digits or more
    reliable = not (w.size and top > 0 and float(w[-1]) < RELIABLE * top)
    w = np.where(w > tol, w, 0.0)
    err = np.concatenate([np.where(w > 0, tol, tol), np.zeros(D - keep.size)])
    w = np.concatenate([w, np.zeros(D - keep.size)])
    P = _embed(V, keep, D, zero_cols) if with_basis else None
    return w, P, tol, err, reliable


def _svd(M, with_basis, driver="gesvd"):
    """Singular values of ``M`` (descending) and, with the basis, its right singular vectors
    (columns); LAPACK without input checks (the data were checked while streaming)."""
    from scipy.linalg import svd

    if with_basis:
        _, s, Vt = svd(M, full_matrices=False, check_finite=False, lapack_driver=driver)
        return s, Vt.T
    return svd(M, compute_uv=False, check_finite=False, lapack_driver=driver), None


def _qr_eigen(R, n, zero_cols, with_basis):
    """Eigenvalues ``s_i^2 / n`` of ``R^T R / n`` from the singular values of ``R``."""
    D = R.shape[1]
    keep = np.flatnonzero(~zero_cols)
    if keep.size:
        s, V = _svd(R[:, keep], with_basis)
    else:
        s, V = np.zeros(0), np.zeros((0, 0))
    ds = rank_tolerance(float(s[0]) if s.size else 0.0, D)  # sv error ~ D eps s_1 (Householder)
    s = np.where(s > ds, s, 0.0)
    w = s * s / n
    err = (2.0 * s * ds + ds * ds) / n
    err = np.where(s > 0, err, ds * ds / n)
    tol = ds * ds / n
    w = np.concatenate([w, np.zeros(D - keep.size)])
    err = np.concatenate([err, np.zeros(D - keep.size)])
    P = _embed(V[:, :keep.size], keep, D, zero_cols) if with_basis else None
    return w, P, tol, err


def _uncentred_factor(R, n, mean):
    """``R`` with ``R^T R = sum x x^T`` from the centred factor: QR of ``[R; sqrt(n) mean]``."""
    from scipy.linalg import qr

    stack = np.vstack([R, math.sqrt(n) * mean[None, :]])
    return np.triu(qr(stack, mode="r", check_finite=False)[0][:R.shape[1]])


def _standardize(moments):
    """The correlation matrix (and factor) of centred moments; constant columns stay 0 (§9.5)."""
    M = moments.scaled_matrix
    sd = np.sqrt(np.diag(M))
    inv = np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
    C = M * inv[:, None] * inv[None, :]
    np.fill_diagonal(C, np.where(sd > 0, 1.0, 0.0))
    F = None
    if moments.factor is not None:
        F = moments.factor * inv[None, :]  # column norms sqrt(N): F^T F / N = C
    return replace(moments, scaled_matrix=C, scaled_mean=np.zeros(moments.dim), scale_exponent=0,
                   factor=F, constant=moments.constant | (sd == 0))


def spectrum_from_moments(moments, *, with_basis=False, standardize=False) -> Spectrum:
    """Eigen-decompose a :class:`Moments` (or a symmetric PSD matrix) into a data :class:`Spectrum`.

    Gram moments: ``eigh`` of the matrix (exactly-zero columns split off first). QR moments:
    singular values of the factor, which do not square the condition number (§9.2).
    ``standardize``: the spectrum of the correlation matrix (§9.5; needs centred moments).
    """
    if not isinstance(moments, Moments):
        M = finite_matrix("moments", moments)
        if M.shape[0] != M.shape[1]:
            raise ParameterError(f"moments must be a square matrix, got shape {M.shape}")
        M = 0.5 * (M + M.T)
        moments = Moments(scaled_matrix=M, scaled_mean=None, n_samples=None, centered=None)
    if standardize:
        if moments.centered is False:
            raise ParameterError("standardize=True needs centred moments (the correlation matrix)",
                                 cli="--standardize centres the data (the correlation matrix): "
                                     "drop --no-center")
        moments = _standardize(moments)
    zero = _exact_zero_columns(moments) if moments.constant is not None else \
        np.zeros(moments.dim, dtype=bool)
    with lapack_threads():  # level-2 bound: under load one thread is far faster
        if moments.factor is not None:
            R = moments.factor
            if not moments.centered:
                R = _uncentred_factor(R, moments.n_samples, moments.scaled_mean)
            w, P, tol, err = _qr_eigen(R, moments.n_samples, zero, with_basis)
        else:
            w, P, tol, err, _ = _gram_eigen(moments.scaled_matrix, zero, with_basis)
    return Spectrum(scaled_eigenvalues=w, rank=int(np.sum(w > 0)), n_samples=moments.n_samples,
                    centered=moments.centered, kind="data", scaled_tolerance=tol,
                    scale_exponent=moments.scale_exponent, scaled_error=err, basis=P,
                    scaled_mean=moments.scaled_mean, scaled_matrix=moments.scaled_matrix)


def _gram_reliable(moments, spectrum) -> bool:
    """Whether a Gram-path data spectrum holds ~8 digits in every eigenvalue (§9.3)."""
    zero = _exact_zero_columns(moments)
    w = spectrum.scaled_eigenvalues
    live = int(np.count_nonzero(~zero))
    if live == 0 or w[0] <= 0:
        return True
    return bool(w[live - 1] >= RELIABLE * w[0])


# --------------------------------------------------------------------------------------------
# the CVAE residual


def residual_spectrum(joint, x_dim, *, with_basis=False) -> Spectrum:
    """CVAE residual spectrum from the joint moments of ``[x; y]`` (docs/theory.md §4, §9.4).

    ``E = B - C A^+ C^T`` with ``A = E[x x^T]``, ``B = E[y y^T]``, ``C = E[y x^T]`` (covariances when
    centred): the second moment of the residual ``r = y - K x``, ``K = C A^+``, of y after linear
    regression on x. From Gram moments it is formed as written (``A^+`` with numpy's rank rule);
    from QR moments (``Moments.factor``) it is the trailing block of the factor of ``[x, y]``
    (``E = R22^T R22 / N`` when x has full rank), with no subtraction of large numbers.
    """
    if isinstance(joint, Moments):
        mom = joint
    else:
        M = finite_matrix("joint", joint)
        mom = Moments(scaled_matrix=0.5 * (M + M.T), scaled_mean=None, n_samples=None,
                      centered=None)
    M = mom.scaled_matrix
    D0 = int(x_dim)
    if not 1 <= D0 < M.shape[0]:
        raise ParameterError(f"x_dim must be in [1, {M.shape[0] - 1}], got {x_dim}")
    with lapack_threads():
        if mom.factor is not None:
            w, Q, K, tol, err = _residual_qr(mom, D0, with_basis)
        else:
            zero = _exact_zero_columns(mom) if mom.constant is not None else None
            w, Q, K, tol, err = _residual_gram(M, D0, with_basis, zero)
    return Spectrum(scaled_eigenvalues=w, rank=int(np.sum(w > 0)), n_samples=mom.n_samples,
                    centered=mom.centered, kind="residual", scaled_tolerance=tol,
                    scale_exponent=mom.scale_exponent, scaled_error=err, basis=Q, regression=K,
                    x_dim=D0, scaled_mean=mom.scaled_mean, scaled_matrix=M)


def _residual_gram(M, D0, with_basis, zero=None):
    D = M.shape[0]
    A, C, B = M[:D0, :D0], M[D0:, :D0], M[D0:, D0:]
    phi, P = np.linalg.eigh(A)
    keep = phi > rank_tolerance(max(phi[-1], 0.0), D0)
    P, phi = P[:, keep], phi[keep]
    half = (C @ P) / np.sqrt(phi)  # C P Phi^{-1/2}
    E = B - half @ half.T
    E = 0.5 * (E + E.T)
    K = (half / np.sqrt(phi)) @ P.T  # C A^+
    if with_basis:
        w, Q = np.linalg.eigh(E)
        w, Q = w[::-1].copy(), Q[:, ::-1].copy()
    else:
        w, Q = np.linalg.eigvalsh(E)[::-1].copy(), None
    # roundoff in E is relative to B's scale, not E's (E may be ~0 when y is a function of x)
    bmax = float(np.max(np.diag(B))) if B.size else 0.0
    scale = max(w[0] if w.size else 0.0, bmax)
    tol = rank_tolerance(scale, D)
    w = np.where(w > tol, w, 0.0)
    # error: B's rounding, plus A's eigenvalue errors amplified through A^+ (Weyl, first order)
    kappa = float(phi[0]) if phi.size else 1.0  # the smallest kept eigenvalue of A
    amp = float(np.sum(half * half, axis=0).max() / kappa) if phi.size else 0.0  # ~|K|^2 |A|/phi_min
    err = np.full(w.shape, tol + rank_tolerance(max(phi[-1], 0.0) if phi.size else 0.0, D0) * amp)
    # an x direction whose variance the Gram cannot resolve (kept or dropped on noise) may hold
    # any part of y: the residual is then known only to the scale of y
    live = np.flatnonzero(~zero[:D0]) if zero is not None else np.arange(D0)
    if live.size:
        ax = np.linalg.eigvalsh(A[np.ix_(live, live)])
        if ax[-1] > 0 and ax[0] < RELIABLE * ax[-1]:
            err = np.maximum(err, bmax)
    return w, Q, K, tol, err


def _residual_reliable(spec) -> bool:
    """Gram residual: every nonzero eigenvalue and every x direction kept to ~8 digits (§9.4)."""
    rel = spec.relative_error
    if rel is None:
        return True
    w = spec.scaled_eigenvalues
    bad = (w > 0) & (rel > RELIABLE)
    # a zero eigenvalue is trusted only if the error is below the tolerance
    zero_bad = (w == 0) & (spec.scaled_error > spec.scaled_tolerance * (1 + 1e-12))
    return not (np.any(bad) or np.any(zero_bad))


def _residual_qr(mom, D0, with_basis):
    """The residual from the factor of ``[x, y]``: ``R = [[R11, R12], [0, R22]]``."""
    from scipy.linalg import qr, svd, solve_triangular

    n = mom.n_samples
    R = mom.factor
    if not mom.centered:
        R = _uncentred_factor(R, n, mom.scaled_mean)
    D = R.shape[1]
    R11, R12, R22 = R[:D0, :D0], R[:D0, D0:], R[D0:, D0:]
    U, sx, Vt = svd(R11, check_finite=False, lapack_driver="gesvd")
    tol_x = rank_tolerance(float(sx[0]) if sx.size else 0.0, D0)
    r = int(np.count_nonzero(sx > tol_x))
    if r == D0:
        F = R22
        Kt = solve_triangular(R11, R12, check_finite=False)
    else:  # rank-deficient x: what of y lies outside range(R11) is residual too
        F = np.vstack([U[:, r:].T @ R12, R22])
        Kt = (Vt[:r].T / sx[:r]) @ (U[:, :r].T @ R12) if r else np.zeros_like(R12)
    F = np.triu(qr(F, mode="r", check_finite=False)[0]) if F.shape[0] > 1 else F
    s, Q = _svd(F, with_basis)
    D2 = D - D0
    s = np.concatenate([s, np.zeros(D2 - s.size)])
    if Q is not None and Q.shape[1] < D2:  # complete the basis
        full = np.linalg.qr(np.hstack([Q, np.eye(D2)]))[0]
        Q = np.hstack([Q, full[:, Q.shape[1]:D2]])
    ynorm = math.sqrt(float(np.max(np.sum(np.vstack([R12, R22]) ** 2, axis=0)))) if D2 else 0.0
    ds = rank_tolerance(max(ynorm, float(s[0]) if s.size else 0.0), D)
    cond = float(sx[0] / sx[r - 1]) if r else 1.0
    ds_err = ds + rank_tolerance(float(s[0]) if s.size else 0.0, D) * cond  # LS: eps (|y| + k |r|)
    s = np.where(s > ds, s, 0.0)
    w = s * s / n
    err = np.where(s > 0, (2.0 * s * ds_err + ds_err ** 2) / n, ds * ds / n)
    return w, Q, Kt.T, ds * ds / n, err


# --------------------------------------------------------------------------------------------
# the dual path (N < D): the N x N side, data held in memory


def _dual(Z, center, with_basis, x_dim=None, standardize=False, name="X", method="auto"):
    """Spectrum of ``N x D`` data with ``N < D`` from the N x N side (§9.6): the Gram
    ``Z Z^T / N`` of the (centred) scaled data, or an SVD of the data when the Gram is not
    accurate ("auto") or ``method="qr"``.

    No D x D matrix is formed: eigenvalues beyond the first N are 0, ``basis`` has the N columns of
    nonzero eigenvalues, ``scaled_matrix`` is None.
    """

    n, D = Z.shape
    if center and n < 2:
        raise DataError(f"{name} has {n} sample; centring needs at least 2 (or use center=False)")
    lo, hi = Z.min(axis=0), Z.max(axis=0)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        mask = ~np.isfinite(Z)
        r, c = np.argwhere(mask)[0]
        raise DataError(f"{name} contains {int(mask.sum())} non-finite value(s) (NaN or inf); "
                        f"first at row {r}, column {c}")
    k = acc._spread_exponent(lo, hi) if center else acc.exponent(
        float(np.max(np.maximum(np.abs(lo), np.abs(hi)))))
    k = 0 if k is None else k
    acc.pow2_scale(Z, -k, out=Z)
    m1 = Z.mean(axis=0)
    mean = m1 + (Z - m1).mean(axis=0)
    if center:
        Z -= mean
        Z -= Z.mean(axis=0)
        Z[:, lo == hi] = 0.0
    if standardize:
        sd = np.sqrt(np.sum(Z * Z, axis=0) / n)
        Z *= np.where(sd > 0, 1.0 / np.where(sd > 0, sd, 1.0), 0.0)
        k, mean = 0, np.zeros(D)
    if x_dim is not None:
        return _dual_residual(Z, n, k, mean, center, x_dim, with_basis)
    if method != "qr":  # the N x N Gram (syrk), trusted only if it keeps ~8 digits (§9.3)
        from scipy.linalg.blas import dsyrk

        G = dsyrk(1.0 / n, Z.T, trans=1, lower=1)  # Z.T is Fortran-ordered: no copy
        G = np.tril(G) + np.tril(G, -1).T
        with lapack_threads():
            if with_basis:
                g, U = np.linalg.eigh(G)
                g, U = g[::-1].copy(), U[:, ::-1]
            else:
                g, U = np.linalg.eigvalsh(G)[::-1].copy(), None
        top = max(float(g[0]), 0.0)
        live = n - 1 if center else n  # centring leaves one exact zero (the ones vector)
        tol = rank_tolerance(top, n)
        if method == "gram" or top == 0 or g[live - 1] >= RELIABLE * top:
            g = np.where(g > tol, g, 0.0)
            w = np.zeros(D)
            w[:n] = g
            err = np.zeros(D)
            err[:n] = tol
            basis = None
            if with_basis:
                r = int(np.count_nonzero(g))
                basis = (Z.T @ U[:, :r]) / np.sqrt(n * g[:r])
            return Spectrum(scaled_eigenvalues=w, rank=int(np.count_nonzero(w)), n_samples=n,
                            centered=bool(center), kind="data", scaled_tolerance=tol,
                            scale_exponent=int(k), scaled_error=err, basis=basis,
                            scaled_mean=mean, provenance={"method": "gram-dual"})
    s, V = _svd(Z, with_basis, "gesdd")
    ds = rank_tolerance(float(s[0]) if s.size else 0.0, D)
    s = np.where(s > ds, s, 0.0)
    w = np.zeros(D)
    w[:s.size] = s * s / n
    err = np.zeros(D)
    err[:s.size] = np.where(s > 0, (2 * s * ds + ds * ds) / n, ds * ds / n)
    basis = None
    if with_basis:
        r = int(np.count_nonzero(s))
        basis = V[:, :r].copy()
    return Spectrum(scaled_eigenvalues=w, rank=int(np.count_nonzero(w)), n_samples=n,
                    centered=bool(center), kind="data", scaled_tolerance=ds * ds / n,
                    scale_exponent=int(k), scaled_error=err, basis=basis, scaled_mean=mean,
                    provenance={"method": "svd-dual"})


def _dual_residual(Z, n, k, mean, center, D0, with_basis):
    """CVAE residual with N < D: y minus its projection on the span of x, by SVDs of N-row data."""
    from scipy.linalg import svd

    D = Z.shape[1]
    x, y = Z[:, :D0], Z[:, D0:]
    U, sx, Vt = svd(x, full_matrices=True, check_finite=False, lapack_driver="gesdd")
    r = int(np.count_nonzero(sx > rank_tolerance(float(sx[0]) if sx.size else 0.0, D)))
    rest = U[:, r:].T @ y  # y outside range(x): the residual data (N - r rows)
    s, Qv = _svd(rest, with_basis, "gesdd")
    ynorm = math.sqrt(float(np.max(np.sum(y * y, axis=0))))
    ds = rank_tolerance(max(ynorm, float(s[0]) if s.size else 0.0), D)
    s = np.where(s > ds, s, 0.0)
    D2 = D - D0
    w = np.zeros(D2)
    w[:s.size] = s * s / n
    err = np.zeros(D2)
    err[:s.size] = np.where(s > 0, (2 * s * ds + ds * ds) / n, ds * ds / n)
    Q = K = None
    if with_basis:
        Q = Qv[:, :int(np.count_nonzero(s))].copy()
        K = ((Vt[:r].T / sx[:r]) @ (U[:, :r].T @ y)).T
    return Spectrum(scaled_eigenvalues=w, rank=int(np.count_nonzero(w)), n_samples=n,
                    centered=bool(center), kind="residual", scaled_tolerance=ds * ds / n,
                    scale_exponent=int(k), scaled_error=err, basis=Q, regression=K, x_dim=D0,
                    scaled_mean=mean)


# --------------------------------------------------------------------------------------------
# one entry point: a source of row blocks -> the spectrum, with the method chosen


def _notes(moments, spec, standardize, feature=None):
    """Notes about the data a user should see (a dominant column; constant columns).

    ``feature(j)`` names feature j (0-based) as the file's reader does ("column 3 ('age')");
    without it, "feature j+1" (counting from 1, like every other message).
    """
    name = feature or (lambda j: f"feature {j + 1}")
    notes = []
    M = moments.scaled_matrix if moments is not None else None
    if M is not None and not standardize and spec.kind == "data":
        diag = np.diag(M)
        total = float(np.sum(diag))
        if total > 0 and M.shape[0] > 1:
            j = int(np.argmax(diag))
            share = float(diag[j]) / total
            if share > DOMINANT_SHARE:
                pct = f"{100 * share:.4g}%" if share < 0.99995 else ">99.99%"
                notes.append(f"{name(j)} holds {pct} of the total variance: features "
                             "on different scales dominate the spectrum (--standardize gives the "
                             "spectrum of the correlation matrix)")
    if standardize and moments is not None and moments.constant is not None:
        const = np.flatnonzero(moments.constant)
        if const.size:
            shown = ", ".join(name(int(c)) for c in const[:5]) + (" ..." if const.size > 5 else "")
            notes.append(f"standardize: {const.size} constant feature(s) ({shown}) have no variance "
                         "to scale; they stay 0 (a zero eigenvalue each), as in scikit-learn's "
                         "StandardScaler")
    return notes


def _dual_from_blocks(blocks, D, center, with_basis, x_dim, standardize, name, progress,
                      method="auto"):
    parts = []
    for b in blocks:
        b = _as_rows(b, name)
        parts.append(np.array(b, dtype=np.float64))
        if progress is not None:
            progress(b.shape[0])
    Z = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
    return _dual(Z, center, with_basis, x_dim=x_dim, standardize=standardize, name=name,
                 method=method)


def _finish(a, center, conditional, x_dim, with_basis, standardize):
    moments = _moments_of(a, center)
    if conditional:
        if standardize:
            raise ParameterError("standardize applies to the data spectrum (vae/mhvae), not to "
                                 "the CVAE residual", cli="--standardize is for --model vae/mhvae")
        spec = residual_spectrum(moments, x_dim, with_basis=with_basis)
        ok = _residual_reliable(spec) if moments.factor is None else True
    else:
        spec = spectrum_from_moments(moments, with_basis=with_basis, standardize=standardize)
        ok = _gram_reliable(moments, spec) if moments.factor is None else True
    return moments, spec, ok


def _spectrum_of(open_blocks, *, center, conditional, with_basis, method, standardize,
                 progress=None, runner=None):
    """The spectrum of a source that ``open_blocks()`` streams: ``(blocks, n_rows, dim, name,
    x_dim)``. ``runner(kind, blocks, dim, name) -> finished accumulator`` (Dask) or local."""
    if method not in METHODS:
        raise ParameterError(f"method must be one of {', '.join(METHODS)}, got {method!r}",
                             cli=f"--moments must be one of {', '.join(METHODS)}, got {method!r}")
    blocks, n_rows, dim, name, x_dim = open_blocks()
    # the dual path: fewer rows than columns (or unknown: buffer until there are more rows)
    if n_rows is not None and n_rows < dim:
        need = 8 * n_rows * dim * 3
        _check_memory(need, f"the spectrum of {n_rows} x {dim} data (N < D: an SVD of the data)")
        spec = _dual_from_blocks(blocks, dim, center, with_basis, x_dim if conditional else None,
                                 standardize, name, progress, method)
        return _dual_method(spec)
    if n_rows is None:
        head, rows = [], 0
        for b in blocks:
            head.append(b)
            rows += b.shape[0]
            if rows >= dim:
                break
        if rows < dim:
            spec = _dual_from_blocks(head, dim, center, with_basis,
                                     x_dim if conditional else None, standardize, name, progress,
                                     method)
            return _dual_method(spec)
        rest = blocks

        def chained():
            yield from head
            yield from rest
        blocks = chained()
    _check_memory(primal_bytes(dim, with_basis), f"the {dim} x {dim} moment matrix")
    first = "qr" if method == "qr" else "gram"
    run = runner or (lambda kind, bl, d, nm: _accumulate(bl, d, kind, progress=progress, name=nm))
    a = run(first, blocks, dim, name)
    moments, spec, ok = _finish(a, center, conditional, x_dim, with_basis, standardize)
    notes = []
    used = first
    if method == "auto" and not ok and 2.0 * a.n * dim * dim > QR_AUTO_FLOPS:
        notes.append(_limited(spec, a.n, dim))
    elif method == "auto" and not ok:
        blocks, _, _, _, _ = open_blocks()
        a = (runner or (lambda kind, bl, d, nm: _accumulate(bl, d, kind, name=nm)))(
            "qr", blocks, dim, name)
        moments, spec, _ = _finish(a, center, conditional, x_dim, with_basis, standardize)
        used = "qr"
        notes.append(_SECOND_PASS)
    return spec, moments, used, notes


def _limited(spec, n, dim):
    """The note when the Gram result stands although some eigenvalues lost digits."""
    rel = spec.relative_error
    w = spec.scaled_eigenvalues
    live = w > 0
    worst = float(np.max(rel[live])) if np.any(live) else 0.0
    cut = RELIABLE * float(w[0]) if w.size else 0.0
    below = int(np.count_nonzero((w < cut) & (spec.scaled_error > 0)))
    what = (f"{below} eigenvalue(s) below sqrt(eps) x the largest are known only to about "
            f"{_fmt_abs(spec)} (absolute)" if below else
            f"the smallest nonzero eigenvalues carry relative errors up to {worst:.1e}")
    return (f"float64 limits these moments (Gram): {what}; --moments qr computes them from a "
            f"streamed QR (about {2.0 * n * dim * dim / 1e9:.0f} GFlop, a second pass; "
            "docs/theory.md §9.3)")


def _fmt_abs(spec):
    try:
        return f"{float(spec.error[0]):.2e}"
    except NotRepresentableError:
        return f"{float(spec.scaled_error[0]):.2e} x 4^{spec.scale_exponent}"


_SECOND_PASS = ("the Gram moments could not hold every eigenvalue to 8 digits (an eigenvalue below "
                "sqrt(eps) x the largest, or an ill-conditioned x): read again with a streamed QR "
                "(docs/theory.md §9.3)")


def _dual_method(spec):
    used = (spec.provenance or {}).get("method", "svd-dual")
    return replace(spec, provenance=None), None, used, []


def _provenance(spec, base, moments, method, notes, standardize, feature=None):
    prov = dict(base or {})
    rel = spec.relative_error
    live = rel[spec.scaled_eigenvalues > 0] if rel is not None else np.zeros(0)
    prov.update(n_samples=int(spec.n_samples), dim=int(spec.dim), rank=int(spec.rank),
                spectrum_kind=spec.kind, method=method,
                max_relative_error=float(np.max(live)) if live.size else 0.0,
                scale_exponent=int(spec.scale_exponent))
    if standardize:
        prov["standardized"] = True
    if _SECOND_PASS in notes:  # not a warning: the answer is the accurate one
        prov["method_reason"] = _SECOND_PASS
        notes = [n for n in notes if n != _SECOND_PASS]
    notes = list(notes) + _notes(moments, spec, standardize, feature)
    if notes:
        prov["notes"] = list(prov.get("notes", [])) + notes
    return replace(spec, provenance=prov)


def empirical_spectrum(X, *, center=True, with_basis=False, chunk_rows=None, progress=None,
                       method="auto", standardize=False) -> Spectrum:
    """Data spectrum of the rows of ``X``: ``theta_i = sqrt(eig_i(Cov x))`` (or of ``E[x x^T]``).

    ``X``: array, memmap or Dask array (any real dtype; >2-d is flattened). ``method``: "auto"
    (Gram, then the streamed QR if the Gram result is unreliable), "gram" or "qr" (§9).
    ``standardize``: the spectrum of the correlation matrix (§9.5). N < D uses the dual path.
    """
    X = _as_rows(X, "X")
    runner = None
    if _is_dask(X):
        from . import _dask

        if X.shape[0] < X.shape[1]:  # the dual path holds the (small) data in memory anyway
            X = _as_rows(np.asarray(X.compute()), "X")
        else:
            runner = _dask.array_runner(X)

    def open_blocks():
        rows = chunk_rows or acc.block_rows(X.shape[1])
        bl = (b for _, b in iter_row_chunks(X, rows)) if runner is None else None
        return bl, int(X.shape[0]), int(X.shape[1]), "X", None

    spec, moments, used, notes = _spectrum_of(
        open_blocks, center=center, conditional=False, with_basis=with_basis, method=method,
        standardize=standardize, progress=progress, runner=_with_rows(runner, chunk_rows))
    return _provenance(spec, None, moments, used, notes, standardize)


def _with_rows(runner, chunk_rows):
    if runner is None and chunk_rows is None:
        return None
    if runner is not None:
        return runner

    def run(kind, blocks, dim, name):
        return _accumulate(blocks, dim, kind, rows=chunk_rows, name=name)
    return run


def empirical_residual_spectrum(x, y, *, center=True, with_basis=False, chunk_rows=None,
                                progress=None, method="auto") -> Spectrum:
    """CVAE residual spectrum from paired samples: condition ``x`` (N, D0), output ``y`` (N, D2)."""
    x = _as_rows(x, "x")
    y = _as_rows(y, "y")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} rows but y has {y.shape[0]}: they must be paired samples")
    D0, D = x.shape[1], x.shape[1] + y.shape[1]
    rows = chunk_rows or acc.block_rows(D)

    def open_blocks():
        def blocks():
            for s in range(0, x.shape[0], rows):
                yield np.concatenate([np.asarray(x[s:s + rows], dtype=np.float64),
                                      np.asarray(y[s:s + rows], dtype=np.float64)], axis=1)
        return blocks(), int(x.shape[0]), D, "[x, y]", D0

    spec, moments, used, notes = _spectrum_of(
        open_blocks, center=center, conditional=True, with_basis=with_basis, method=method,
        standardize=False, progress=progress, runner=_with_rows(None, chunk_rows))
    return _provenance(spec, None, moments, used, notes, False)


def load_spectrum(selection, *, with_basis=False, progress=None, method="auto",
                  standardize=False, client=None) -> Spectrum:
    """The spectrum a model's theorem needs, from a :class:`~vaetheory.io.Selection`.

    Unconditional selections give the data spectrum of the selected columns; conditional ones the
    residual spectrum of y given x (docs/theory.md §4). The result's ``provenance`` describes the
    data (source, selection, centring, ``n_samples``, ``dim``, ``rank``, ``spectrum_kind``) and how
    they were computed (``method``, ``max_relative_error``, ``scale_exponent``, ``notes``).

    Parameters
    ----------
    selection : Selection
        What to read (file or array, columns, quadrant, centring).
    with_basis : bool
        Keep the eigenvectors (needed for :meth:`Solution.matrices`).
    progress : callable, optional
        ``progress(total_rows, nbytes)`` -> a context manager yielding a per-block callback
        ``tick(n_rows)`` (or None): how the command line shows a progress bar (first pass only).
    method : {"auto", "gram", "qr"}
        §9.3. "auto" may read the selection a second time (the QR path).
    standardize : bool
        The spectrum of the correlation matrix (unconditional selections; §9.5).
    client : dask.distributed.Client, optional
        Run the moment pass on this Dask cluster (row blocks are sent to the workers, partial
        moments come back and are merged: §9.7).
    """
    if hasattr(selection, "array") and not hasattr(selection, "open"):
        return _given_spectrum(selection)
    if _is_dask(selection.source):
        return _load_dask(selection, with_basis, method, standardize)
    streams = [selection.open()]

    def open_blocks():
        stream = streams.pop() if streams else selection.open()
        dim = _peek(stream)
        return stream.blocks, stream.n_rows, dim, stream.name, stream.x_dim

    first = streams[0]
    runner = None
    if client is not None:
        from . import _dask

        runner = _dask.client_runner(client)
    ctx = progress(first.n_rows, first.nbytes) if progress is not None else None
    with (ctx if ctx is not None else _nullcontext()) as tick:
        spec, moments, used, notes = _spectrum_of(
            open_blocks, center=selection.center, conditional=selection.conditional,
            with_basis=with_basis, method=method, standardize=standardize, progress=tick,
            runner=runner)
    return _provenance(spec, first.provenance, moments, used, notes, standardize, first.feature)


def _load_dask(sel, with_basis, method, standardize):
    """A :class:`~vaetheory.io.Selection` whose source is a Dask array: the selected columns as
    one Dask array, its partials computed on the array's scheduler (§9.7)."""
    from . import _dask
    from .io import parse_columns, quadrant_columns

    _dask.require()
    import dask.array as da

    X = _as_rows(sel.source, "X")
    D = int(X.shape[1])
    label = sel.label or "the Dask array"
    prov = {"source": label, "centered": bool(sel.center), "features": D}
    x_dim = None
    if not sel.conditional:
        if sel.cols is not None:
            X = X[:, parse_columns(sel.cols, D)]
            prov["selection"] = f"columns {sel.cols} of {D}"
    elif sel.y is not None:
        Y = sel.y if _is_dask(sel.y) else da.from_array(_as_rows(sel.y, "y"))
        Y = _as_rows(Y, "y")
        if Y.shape[0] != X.shape[0]:
            raise DataError(f"x has {X.shape[0]} rows but y has {Y.shape[0]}: they must be paired "
                            "samples")
        x_dim = D
        prov.update(x_dim=D, y_dim=int(Y.shape[1]), selection=f"x from {label}, y from the array y")
        X = da.concatenate([X, Y.astype(X.dtype) if Y.dtype != X.dtype else Y], axis=1)
    else:
        if sel.quadrant is not None:
            side = math.isqrt(D)
            xc, yc = quadrant_columns(sel.image_shape or (side, side), sel.quadrant, n_cols=D)
        else:
            xc = parse_columns(sel.x_cols, D) if sel.x_cols is not None else None
            yc = parse_columns(sel.y_cols, D) if sel.y_cols is not None else None
            xc = np.setdiff1d(np.arange(D), yc) if xc is None else xc
            yc = np.setdiff1d(np.arange(D), xc) if yc is None else yc
        x_dim = int(xc.size)
        prov.update(x_dim=x_dim, y_dim=int(yc.size))
        X = X[:, np.concatenate([xc, yc])]
    if X.shape[0] < X.shape[1]:
        Z = np.asarray(X.compute())
        spec, _, used, _ = _dual_method(_dual(np.array(Z, dtype=np.float64), sel.center,
                                              with_basis, x_dim=x_dim, standardize=standardize,
                                              method=method))
        return _provenance(spec, prov, None, used, [], standardize)
    runner = _dask.array_runner(X)

    def open_blocks():
        return None, int(X.shape[0]), int(X.shape[1]), label, x_dim

    spec, moments, used, notes = _spectrum_of(
        open_blocks, center=sel.center, conditional=sel.conditional, with_basis=with_basis,
        method=method, standardize=standardize, runner=runner)
    return _provenance(spec, prov, moments, used, notes, standardize)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _peek(stream):
    """Width of a stream's rows, from its first block (put back)."""
    it = iter(stream.blocks)
    first = next(it, None)
    if first is None:
        raise DataError(f"{stream.name} has no rows")

    def chained():
        yield first
        yield from it
    stream.blocks = chained()
    return int(_as_rows(first, stream.name).shape[1])


def _given_spectrum(selection) -> Spectrum:
    """The spectrum of an :class:`~vaetheory.io.EigenvalueSelection`, with its provenance."""
    ev = selection.array()
    spec = spectrum_from_eigenvalues(ev, kind=selection.kind)
    prov = {"source": selection.name, "given": True, "centered": None, "n_samples": None,
            "dim": int(spec.dim), "rank": int(spec.rank), "spectrum_kind": spec.kind,
            "trace_assumed": ("the sum of the given eigenvalues: only these modes exist (the "
                              "optimal loss and the distortion leave out any variance not listed; "
                              "counts and thresholds of the listed modes do not depend on it)")}
    return replace(spec, provenance=prov)

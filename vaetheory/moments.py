"""Arrays -> second moments -> spectra.

Everything the closed forms need from a dataset is its second-moment matrix (docs/theory.md §0):
``A = E[x x^T]`` (``center=False``, the bias-free model as the paper states it) or ``Cov(x)``
(``center=True``, the default: a model with encoder and decoder biases is exactly the bias-free
model on centred data). Expectations are sample means with ``1/N``.

Moments are accumulated in float64 over chunks of rows, whatever the input dtype, with a
symmetric rank-k update per chunk (``w.T @ w`` on the same buffer, which numpy hands to BLAS
``syrk``: half the flops of a general product) on rows shifted by a provisional mean (the first
chunk's), so centring does not cancel catastrophically. Only one chunk (~16 MiB, cache-friendly)
is ever held in float64, so memory-mapped files larger than RAM work, and no float64 copy of the
dataset is made (that copy is most of what the naive ``X.astype(float64).T @ ...`` costs beyond
the product itself; bench/bench_spectrum.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Optional

import numpy as np

from ._numerics import psd_eigh, rank_tolerance
from ._validation import finite_matrix
from .errors import DataError, ParameterError
from ._resources import covariance_bytes, require as _require_memory

__all__ = [
    "DataError",
    "Moments",
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

_CHUNK_BYTES = 1 << 24  # float64 bytes per chunk (16 MiB)


@dataclass(frozen=True)
class Moments:
    """Second moments of a dataset (rows are samples).

    Attributes
    ----------
    matrix : ndarray (D, D)
        ``Cov(x)`` if ``centered`` else ``E[x x^T]``, both with 1/N.
    mean : ndarray (D,)
        Sample mean (always computed).
    n_samples : int
    centered : bool
    """

    matrix: np.ndarray
    mean: np.ndarray
    n_samples: int
    centered: bool

    @property
    def dim(self):
        return self.matrix.shape[0]


@dataclass(frozen=True)
class Spectrum:
    """The spectrum a theorem consumes, with its provenance.

    ``eigenvalues`` are those of the second-moment matrix (data spectrum, ``kind="data"``) or of the
    residual covariance ``E`` of y given x (``kind="residual"``, CVAE), sorted descending, clipped to
    zero below the rank tolerance. ``theta = sqrt(eigenvalues)`` is the paper's theta for the VAE and
    hierarchical theorems; the CVAE theorem uses the eigenvalues themselves (docs/theory.md §4).

    Attributes
    ----------
    eigenvalues : ndarray (D,)
    rank : int
        Number of eigenvalues above ``tolerance`` (numpy's ``matrix_rank`` rule).
    n_samples : int or None
        None when the spectrum was given directly rather than computed from data.
    centered : bool or None
    kind : {"data", "residual"}
    tolerance : float
    basis : ndarray (D, D) or None
        Orthonormal eigenvectors (columns, same order), present when requested; needed to build the
        optimal matrices in data coordinates.
    regression : ndarray (D2, D0) or None
        CVAE only: ``K = C A^+``, the least-squares map from x to y (``U2`` at the optimum).
    x_dim : int or None
        CVAE only: dimension of the condition x.
    matrix : ndarray or None
        The second-moment matrix the spectrum came from: ``A`` (data) or the joint matrix of
        ``[x; y]`` (residual). The numerical checker minimises the losses on it.
    mean : ndarray or None
        Sample mean of the data (of ``[x; y]`` for the CVAE); gives the biases of the optimal model
        when the spectrum is centred.
    provenance : dict or None
        Where the data came from (:func:`load_spectrum`): source, selection, centring, sample
        count, dimensions, rank -- JSON-able, what the command line reports as ``data``.
    """

    eigenvalues: np.ndarray
    rank: int
    n_samples: Optional[int] = None
    centered: Optional[bool] = None
    kind: str = "data"
    tolerance: float = 0.0
    basis: Optional[np.ndarray] = field(default=None, repr=False)
    regression: Optional[np.ndarray] = field(default=None, repr=False)
    x_dim: Optional[int] = None
    mean: Optional[np.ndarray] = field(default=None, repr=False)
    matrix: Optional[np.ndarray] = field(default=None, repr=False)
    provenance: Optional[dict] = field(default=None, repr=False, compare=False)

    @property
    def theta(self):
        """Square roots of the eigenvalues (singular values of ``Z = E[x x~^T]``)."""
        return np.sqrt(self.eigenvalues)

    @property
    def dim(self):
        return self.eigenvalues.shape[0]

    @property
    def trace(self):
        return float(np.sum(self.eigenvalues))

    def padded(self, length):
        """Eigenvalues zero-padded (or truncated) to ``length`` (theta_i := 0 beyond the rank)."""
        out = np.zeros(max(length, 0))
        k = min(length, self.dim)
        out[:k] = self.eigenvalues[:k]
        return out


# --------------------------------------------------------------------------------------------
# accumulation


def _as_rows(X, name):
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


def default_chunk_rows(n_features):
    """Rows per chunk so that one float64 chunk is about 16 MiB."""
    return max(1, _CHUNK_BYTES // (8 * max(1, n_features)))


def iter_row_chunks(X, chunk_rows):
    """Yield consecutive row blocks ``X[i:i+chunk_rows]`` (views for ndarrays and memmaps)."""
    n = X.shape[0]
    for start in range(0, n, chunk_rows):
        yield start, X[start:start + chunk_rows]


def accumulate_moments(
    chunks: Iterable[np.ndarray],
    *,
    center: bool = True,
    n_features: Optional[int] = None,
    progress: Optional[Callable[[int], None]] = None,
    name: str = "X",
) -> Moments:
    """Second moments from an iterable of row blocks, in one pass, in float64.

    Parameters
    ----------
    chunks : iterable of ndarray (n_i, D)
        Row blocks of the dataset in order; any real dtype.
    center : bool
        Return ``Cov(x)`` (True) or ``E[x x^T]`` (False).
    progress : callable(int), optional
        Called with the number of rows in each block after it is processed.

    Raises
    ------
    DataError
        Non-finite values (with their count and the first location), no rows, or blocks of
        differing width.
    """
    S = None  # sum (x - shift)(x - shift)^T
    n = 0
    bad = 0
    first_bad = None
    for block in chunks:
        block = _as_rows(block, name)
        if S is None:
            D = block.shape[1] if n_features is None else n_features
            _require_memory(covariance_bytes(D), f"the {D} x {D} second-moment matrix of {name}",
                            "select fewer columns",
                            cli="select fewer columns (--cols, or --x-cols/--y-cols)")
            S = np.zeros((D, D))
            colsum = np.zeros(D)
            shift = np.asarray(block, dtype=np.float64).mean(axis=0) if center else np.zeros(D)
            if not np.all(np.isfinite(shift)):
                shift = np.zeros(D)
            buf = np.empty((default_chunk_rows(D), D))
        if block.shape[1] != S.shape[0]:
            raise DataError(f"{name}: rows have {block.shape[1]} columns, expected {S.shape[0]}")
        m = block.shape[0]
        if m > buf.shape[0]:
            buf = np.empty((m, S.shape[0]))
        work = buf[:m]
        np.subtract(block, shift, out=work)  # cast to float64 and shift in one pass
        sums = work.sum(axis=0)
        if not np.all(np.isfinite(sums)):
            mask = ~np.isfinite(np.asarray(block, dtype=np.float64))
            k = int(mask.sum())
            if k == 0:
                raise DataError(f"{name}: values too large, float64 overflow in rows {n}..{n + m - 1}")
            if first_bad is None:
                r, c = np.argwhere(mask)[0]
                first_bad = (n + int(r), int(c))
            bad += k
        elif bad == 0:
            colsum += sums
            S += work.T @ work  # numpy -> BLAS syrk (same buffer, transposed)
        n += m
        if progress is not None:
            progress(m)
    if S is None or n == 0:
        raise DataError(f"{name} has no rows")
    if bad:
        r, c = first_bad
        raise DataError(
            f"{name} contains {bad} non-finite value(s) (NaN or inf); first at row {r}, column {c}"
        )
    if center and n < 2:
        raise DataError(f"{name} has {n} sample; centring needs at least 2 (or use center=False)")
    d = colsum / n  # mean of shifted rows
    if center:
        M = S / n - np.outer(d, d)
    else:
        M = S / n
    M = 0.5 * (M + M.T)
    return Moments(matrix=M, mean=shift + d, n_samples=n, centered=bool(center))


def empirical_moments(X, *, center=True, chunk_rows=None, progress=None, name="X") -> Moments:
    """Second moments of the rows of ``X`` (array or memmap, any real dtype; >2-d is flattened).

    See :func:`accumulate_moments`. ``X`` is read in row chunks; no float64 copy of the whole array
    is made.
    """
    X = _as_rows(X, name)
    rows = chunk_rows or default_chunk_rows(X.shape[1])
    return accumulate_moments(
        (b for _, b in iter_row_chunks(X, rows)), center=center, progress=progress, name=name
    )


# --------------------------------------------------------------------------------------------
# spectra


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
    return Spectrum(eigenvalues=ev, rank=int(np.sum(ev > 0)), kind=kind, tolerance=tol,
                    basis=np.eye(ev.size) if data else None,
                    matrix=np.diag(ev) if data else None)


def spectrum_from_moments(moments, *, with_basis=False) -> Spectrum:
    """Eigen-decompose a :class:`Moments` (or a symmetric PSD matrix) into a data :class:`Spectrum`."""
    if isinstance(moments, Moments):
        M, n, centered, mean = moments.matrix, moments.n_samples, moments.centered, moments.mean
    else:
        M = finite_matrix("moments", moments)
        if M.shape[0] != M.shape[1]:
            raise ParameterError(f"moments must be a square matrix, got shape {M.shape}")
        M, n, centered, mean = 0.5 * (M + M.T), None, None, None
    w, P, tol = psd_eigh(M, with_vectors=with_basis)
    return Spectrum(eigenvalues=w, rank=int(np.sum(w > 0)), n_samples=n, centered=centered,
                    kind="data", tolerance=tol, basis=P, mean=mean, matrix=M)


def empirical_spectrum(X, *, center=True, with_basis=False, chunk_rows=None, progress=None) -> Spectrum:
    """Data spectrum of the rows of ``X``: ``theta_i = sqrt(eig_i(Cov x))`` (or of ``E[x x^T]``)."""
    return spectrum_from_moments(
        empirical_moments(X, center=center, chunk_rows=chunk_rows, progress=progress),
        with_basis=with_basis,
    )


def residual_spectrum(joint, x_dim, *, with_basis=False) -> Spectrum:
    """CVAE residual spectrum from the joint moments of ``[x; y]`` (docs/theory.md §4).

    ``E = B - C A^+ C^T`` with ``A = E[x x^T]``, ``B = E[y y^T]``, ``C = E[y x^T]`` (covariances when
    centred): the second moment of the residual ``r = y - K x``, ``K = C A^+``, of y after linear
    regression on x. ``A^+`` is the pseudo-inverse (rank tolerance as numpy's ``matrix_rank``), so
    rank-deficient conditions are handled.
    """
    if isinstance(joint, Moments):
        M, n, centered, mean = joint.matrix, joint.n_samples, joint.centered, joint.mean
    else:
        M, n, centered, mean = finite_matrix("joint", joint), None, None, None
    D0 = int(x_dim)
    if not 1 <= D0 < M.shape[0]:
        raise ParameterError(f"x_dim must be in [1, {M.shape[0] - 1}], got {x_dim}")
    A, C, B = M[:D0, :D0], M[D0:, :D0], M[D0:, D0:]
    phi, P = np.linalg.eigh(A)
    keep = phi > rank_tolerance(max(phi[-1], 0.0), D0)
    P, phi = P[:, keep], phi[keep]
    half = (C @ P) / np.sqrt(phi)  # C P Phi^{-1/2}
    E = B - half @ half.T
    E = 0.5 * (E + E.T)
    K = (half / np.sqrt(phi)) @ P.T  # C A^+
    # roundoff in E is relative to B's scale, not E's (E may be ~0 when y is a function of x)
    w, Q, _ = psd_eigh(E, with_vectors=with_basis, scale=0.0)
    scale = max(w[0] if w.size else 0.0, float(np.max(np.diag(B))) if B.size else 0.0)
    tol = rank_tolerance(scale, M.shape[0])
    w = np.where(w > tol, w, 0.0)
    return Spectrum(eigenvalues=w, rank=int(np.sum(w > 0)), n_samples=n, centered=centered,
                    kind="residual", tolerance=tol, basis=Q, regression=K, x_dim=D0, mean=mean, matrix=M)


def empirical_residual_spectrum(x, y, *, center=True, with_basis=False, chunk_rows=None,
                                progress=None) -> Spectrum:
    """CVAE residual spectrum from paired samples: condition ``x`` (N, D0), output ``y`` (N, D2)."""
    x = _as_rows(x, "x")
    y = _as_rows(y, "y")
    if x.shape[0] != y.shape[0]:
        raise DataError(f"x has {x.shape[0]} rows but y has {y.shape[0]}: they must be paired samples")
    D0, D = x.shape[1], x.shape[1] + y.shape[1]
    rows = chunk_rows or default_chunk_rows(D)

    def blocks():
        for s in range(0, x.shape[0], rows):
            yield np.concatenate([np.asarray(x[s:s + rows], dtype=np.float64),
                                  np.asarray(y[s:s + rows], dtype=np.float64)], axis=1)

    joint = accumulate_moments(blocks(), center=center, progress=progress, name="[x, y]")
    return residual_spectrum(joint, D0, with_basis=with_basis)


def load_spectrum(selection, *, with_basis=False, progress=None) -> Spectrum:
    """The spectrum a model's theorem needs, from a :class:`~vaetheory.io.Selection`, in one pass.

    Unconditional selections give the data spectrum of the selected columns; conditional ones the
    residual spectrum of y given x (docs/theory.md §4). The result's ``provenance`` describes the
    data (source, selection, centring, ``n_samples``, ``dim``, ``rank``, ``spectrum_kind``).

    Parameters
    ----------
    selection : Selection
        What to read (file or array, columns, quadrant, centring).
    with_basis : bool
        Keep the eigenvectors (needed for :meth:`Solution.matrices`).
    progress : callable, optional
        ``progress(total_rows, nbytes)`` -> a context manager yielding a per-block callback
        ``tick(n_rows)`` (or None): how the command line shows a progress bar.
    """
    if hasattr(selection, "array") and not hasattr(selection, "open"):
        return _given_spectrum(selection)
    stream = selection.open()
    ctx = progress(stream.n_rows, stream.nbytes) if progress is not None else None
    if ctx is None:
        moments = accumulate_moments(stream.blocks, center=selection.center, name=stream.name)
    else:
        with ctx as tick:
            moments = accumulate_moments(stream.blocks, center=selection.center, progress=tick,
                                         name=stream.name)
    if selection.conditional:
        spec = residual_spectrum(moments, stream.x_dim, with_basis=with_basis)
    else:
        spec = spectrum_from_moments(moments, with_basis=with_basis)
    prov = dict(stream.provenance)
    prov.update(n_samples=int(spec.n_samples), dim=int(spec.dim), rank=int(spec.rank),
                spectrum_kind=spec.kind)
    return replace(spec, provenance=prov)


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

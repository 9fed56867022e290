"""Streaming second-moment kernels (private to :mod:`vaetheory.moments`; docs/theory.md §9).

Both accumulators keep one *partial* of the rows seen so far, in the same form, so that partials
computed anywhere (chunks of one file, Dask partitions on other machines) merge exactly:

``n``
    rows;
``k``
    the scale exponent: every value held is ``data * 2**-k`` (exact: a power of two), chosen from
    the data's spread so that no square under- or overflows (§9.1);
``hi + lo``
    the mean, in scaled units, as an unevaluated sum (``lo`` carries what ``hi`` rounds away, so a
    mean 1e8 times the spread is still known to ``eps * spread``);
``F``
    the centred scatter ``sum (x - mean)(x - mean)^T`` (:class:`GramAccumulator`: lower triangle of
    a Fortran array updated in place by BLAS ``syrk``) or an upper-triangular ``R`` with
    ``R^T R`` = that scatter (:class:`QRAccumulator`: a streamed QR, "TSQR").

Each block is centred on its own mean (two passes: the mean, then the mean of what is left) and
merged by the parallel update of Chan, Golub & LeVeque (1979)::

    S = S_a + S_b + (n_a n_b / n) d d^T,    d = mean_b - mean_a

which for ``R`` is a QR of ``[R_a; R_b; sqrt(n_a n_b / n) d^T]``. Nothing here cancels: the only
subtraction of large numbers is ``x - mean`` on values that are close.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from scipy.linalg import qr as _qr
from scipy.linalg.blas import dsyr, dsyrk

from .errors import DataError

#: a block whose spread exceeds the accumulator's unit by more than 2**HEADROOM rescales it
HEADROOM = 200
#: raw magnitudes this far above the unit are centred at their own scale first (no overflow)
_RAW_HEADROOM = 600
#: bytes of float64 per working block (the rows are chosen from the width; bench/bench_spectrum.py)
BLOCK_BYTES = 1 << 26
MIN_ROWS, MAX_ROWS = 256, 1 << 16


def block_rows(dim: int) -> int:
    """Rows per working block for data of width ``dim``: ~64 MiB of float64, 256..65536 rows.

    BLAS ``syrk`` runs near peak once a block has a few hundred rows; larger blocks only cost
    cache misses and memory (bench/bench_spectrum.py measures the choice).
    """
    return int(min(MAX_ROWS, max(MIN_ROWS, BLOCK_BYTES // (8 * max(1, int(dim))))))


def exponent(value: float) -> Optional[int]:
    """``k`` with ``value * 2**-k`` in ``[0.5, 1)``; None for 0 (and non-finite values)."""
    if not value or not math.isfinite(value):
        return None
    return math.frexp(value)[1]


def pow2_scale(a, e: int, out=None):
    """``a * 2**e``, exactly (in steps that are representable powers of two)."""
    if out is None:
        out = np.array(a, dtype=np.float64, copy=True)
    elif out is not a:
        np.copyto(out, a)
    while e:
        step = max(-1000, min(1000, e))
        np.multiply(out, 2.0 ** step, out=out)
        e -= step
    return out


def _spread_exponent(lo, hi):
    """Exponent of the largest column range ``hi - lo`` (ranges wider than float64 are handled)."""
    with np.errstate(over="ignore", invalid="ignore"):
        width = hi - lo
    finite = np.isfinite(width)
    top = float(np.max(width[finite])) if np.any(finite) else 0.0
    e = exponent(top)
    if not np.all(finite):  # a range beyond float64 (values near +-1.8e308 of both signs)
        big = float(np.max(np.maximum(np.abs(lo), np.abs(hi))[~finite]))
        e = max(e or 0, exponent(big) + 1)
    return e


class _Base:
    """What both accumulators share: scaling, per-block centring, the mean, row/NaN counts."""

    kind = ""

    def __init__(self, dim: int, *, rows: Optional[int] = None, name: str = "X"):
        self.dim = int(dim)
        self.name = name
        self.rows = int(rows) if rows else block_rows(self.dim)
        self.n = 0            # rows accumulated
        self.seen = 0         # rows seen (including rows of blocks with non-finite values)
        self.k = None         # scale exponent (None until a block with nonzero spread)
        self.hi = np.zeros(self.dim)
        self.lo = np.zeros(self.dim)
        self.colmin = np.full(self.dim, np.inf)
        self.colmax = np.full(self.dim, -np.inf)
        self.bad = 0
        self.first_bad = None
        self._buf = None
        self._fill = 0
        self._bk, self._blo, self._bhi = 0, None, None  # the buffer's unit and column ranges

    # ---- public
    def add(self, block) -> None:
        """Add a block of rows (any real dtype, shape ``(m, dim)``)."""
        if block.ndim != 2 or block.shape[1] != self.dim:
            raise DataError(f"{self.name}: rows have {block.shape[-1]} columns, expected {self.dim}")
        m = block.shape[0]
        start = 0
        while start < m:  # copy into the working buffer (float64, scaled); process it when full
            take = min(m - start, self.rows - self._fill)
            part = block[start:start + take]
            # column ranges on the raw values (NaN propagates: one check finds any bad value)
            plo = np.min(part, axis=0).astype(np.float64)
            phi = np.max(part, axis=0).astype(np.float64)
            e = self._unit_for(plo, phi)
            if self._fill and e != self._bk:
                self._flush()  # this part needs another unit: process what is buffered first
            if self._fill == 0:
                self._blo, self._bhi, self._bk = plo, phi, e
            else:
                np.minimum(self._blo, plo, out=self._blo)
                np.maximum(self._bhi, phi, out=self._bhi)
            if self._buf is None:
                self._buf = np.empty((self.rows, self.dim))
            dst = self._buf[self._fill:self._fill + take]
            if e and -1000 <= e <= 1000:  # cast and scale in one pass (exact: a power of two)
                np.multiply(part, 2.0 ** -e, out=dst, dtype=np.float64, casting="unsafe")
            else:
                np.copyto(dst, part, casting="unsafe")
                if e:
                    pow2_scale(dst, -e, out=dst)
            self._fill += take
            start += take
            if self._fill == self.rows:
                self._flush()

    def _unit_for(self, lo, hi):
        """The exponent a part is scaled by when copied: the current unit, unless there is none
        yet, the values are not finite, or they are too large for it (then 0: raw)."""
        if self.k is None:
            return 0
        with np.errstate(invalid="ignore"):
            top = float(np.max(np.maximum(np.abs(lo), np.abs(hi))))
        kr = exponent(top)
        if kr is None or kr - self.k > _RAW_HEADROOM:
            return 0
        return self.k

    def finish(self, check=True):
        """Process what is buffered; return ``self``. ``check``: raise a :class:`DataError` for
        non-finite values (partials computed elsewhere pass False and are checked when merged)."""
        if self._fill:
            self._flush()
        self._buf = None
        if self.bad and check:
            r, c = self.first_bad
            raise DataError(f"{self.name} contains {self.bad} non-finite value(s) (NaN or inf); "
                            f"first at row {r}, column {c}")
        return self

    @property
    def mean(self) -> np.ndarray:
        """Mean in scaled units (``hi + lo``)."""
        return self.hi + self.lo

    @property
    def constant(self) -> np.ndarray:
        """Columns whose values are all identical (their centred values are exactly 0)."""
        return self.colmin == self.colmax

    # ---- internals
    def _locate_bad(self, W, start):
        mask = ~np.isfinite(W)
        if self.first_bad is None:
            r, c = np.argwhere(mask)[0]
            self.first_bad = (start + int(r), int(c))
        self.bad += int(np.count_nonzero(mask))

    def _flush(self):
        m = self._fill
        W = self._buf[:m]
        self._fill = 0
        e0 = self._bk  # W holds the raw values times 2**-e0
        lo, hi = self._blo, self._bhi
        start, self.seen = self.seen, self.seen + m
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            self._locate_bad(W, start)
            return
        if self.bad:
            return  # the data are unusable; keep counting to report every bad value
        np.minimum(self.colmin, lo, out=self.colmin)
        np.maximum(self.colmax, hi, out=self.colmax)
        ks = _spread_exponent(self.colmin, self.colmax)
        if self.k is None:
            if ks is None:  # every column constant so far: only the mean matters
                if e0:
                    pow2_scale(W, e0, out=W)
                self._merge_block(W, m, None, 0, scatter=False)
                return
            self._rescale(ks)
        elif ks is not None and ks > self.k + HEADROOM:
            self._rescale(ks)
        kr = exponent(float(np.max(np.maximum(np.abs(lo), np.abs(hi)))))
        if kr is not None and kr - self.k > _RAW_HEADROOM:
            # raw values far above the spread unit: centre at the raw scale, then rescale
            pow2_scale(W, e0 - kr, out=W)
            m1 = W.mean(axis=0)
            W -= m1
            W[:, lo == hi] = 0.0  # constant here: exactly 0 (not the mean's rounding residue)
            pow2_scale(W, kr - self.k, out=W)
            with np.errstate(over="ignore"):
                m1 = pow2_scale(m1, kr - self.k)
            if not np.all(np.isfinite(m1)):
                raise DataError(f"{self.name}: column magnitudes differ by more than float64's "
                                f"range (values up to 2^{kr} beside a spread of 2^{self.k}): the "
                                "means cannot be held in one unit; select or rescale columns")
        else:
            if e0 != self.k:
                pow2_scale(W, e0 - self.k, out=W)
            m1 = W.mean(axis=0)
            W -= m1
        c = W.mean(axis=0)  # what the first mean rounded away
        self._merge_block(W, m, m1, c)

    def _merge_block(self, W, m, m1, c, scatter=True):
        if m1 is None:  # no scale yet: every value of W is its column's constant
            m1, c = W[0].copy(), np.zeros(self.dim)
        n0, n = self.n, self.n + m
        d = (m1 - self.hi) + (c - self.lo)  # mean_b - mean_a, without cancellation
        self._update(W if scatter else None, m, c, d, n0)
        if n0 == 0:
            self.hi, self.lo = _two_sum(m1, c)
        else:
            self.hi, self.lo = _two_sum(self.hi, self.lo + d * (m / n))
        self.n = n

    def _rescale(self, k_new):
        """Change the unit to ``2**k_new`` (exact: powers of two)."""
        old = 0 if self.k is None else self.k
        if self.k is not None or self.n:
            e = old - k_new
            self.hi = pow2_scale(self.hi, e)
            self.lo = pow2_scale(self.lo, e)
            self._scale_factor(e)
        self.k = k_new

    # ---- merging partials (Dask): self <- self + other
    def merge(self, other: "_Base") -> "_Base":
        """Combine with another accumulator's partial (Chan's parallel update); returns self."""
        if other.dim != self.dim or other.kind != self.kind:
            raise DataError(f"{self.name}: partial moments of different shapes cannot be merged")
        self.bad += other.bad
        if other.first_bad is not None and self.first_bad is None:
            r, c = other.first_bad
            self.first_bad = (self.seen + r, c)
        self.seen += other.seen
        if other.n == 0:
            return self
        np.minimum(self.colmin, other.colmin, out=self.colmin)
        np.maximum(self.colmax, other.colmax, out=self.colmax)
        if other.k is not None and (self.k is None or other.k > self.k):
            self._rescale(other.k)
        e = 0 if other.k is None or self.k is None else other.k - self.k
        ohi, olo = pow2_scale(other.hi, e), pow2_scale(other.lo, e)
        n0, n = self.n, self.n + other.n
        d = (ohi - self.hi) + (olo - self.lo)
        self._merge_factor(other, e, d, n0)
        if n0 == 0:
            self.hi, self.lo = ohi, olo
        else:
            self.hi, self.lo = _two_sum(self.hi, self.lo + d * (other.n / n))
        self.n = n
        return self


def _two_sum(a, b):
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


class GramAccumulator(_Base):
    """Centred scatter by in-place BLAS ``syrk`` (lower triangle), per block plus Chan's term."""

    kind = "gram"

    def __init__(self, dim, **kw):
        super().__init__(dim, **kw)
        self.S = np.zeros((self.dim, self.dim), order="F")

    def _update(self, W, m, c, d, n0):
        if W is not None:
            # sum over the block of (w - c)(w - c)^T = W^T W - m c c^T, then the Chan term
            self.S = dsyrk(1.0, W.T, beta=1.0, c=self.S, trans=0, lower=1, overwrite_c=1)
            if np.any(c):
                self.S = dsyr(-float(m), c, lower=1, a=self.S, overwrite_a=1)
        if n0 and np.any(d):
            self.S = dsyr(n0 * m / (n0 + m), d, lower=1, a=self.S, overwrite_a=1)

    def _scale_factor(self, e):
        pow2_scale(self.S, 2 * e, out=self.S)

    def _merge_factor(self, other, e, d, n0):
        So = pow2_scale(np.asfortranarray(other.S), 2 * e)
        self.S += So
        if n0 and np.any(d):
            self.S = dsyr(n0 * other.n / (n0 + other.n), d, lower=1, a=self.S, overwrite_a=1)

    def scatter(self) -> np.ndarray:
        """The full symmetric centred scatter (scaled units)."""
        S = np.tril(self.S)
        return S + np.tril(S, -1).T


class QRAccumulator(_Base):
    """Streamed QR of the centred rows: ``R`` upper triangular with ``R^T R`` = the scatter."""

    kind = "qr"

    def __init__(self, dim, **kw):
        super().__init__(dim, **kw)
        self.R = np.zeros((0, self.dim))

    def _update(self, W, m, c, d, n0):
        parts = [self.R]
        if W is not None:
            W -= c  # exactly centred (QR cannot subtract m c c^T)
            parts.append(W)
        if n0 and np.any(d):
            parts.append((math.sqrt(n0 * m / (n0 + m)) * d)[None, :])
        self._refactor(parts)

    def _refactor(self, parts):
        parts = [p for p in parts if p.shape[0]]
        if not parts:
            return
        stack = np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]
        if stack.shape[0] <= 1:
            self.R = np.array(stack, dtype=np.float64)
            return
        R = _qr(stack, mode="r", overwrite_a=True, check_finite=False)[0]
        self.R = np.triu(R[:min(R.shape[0], self.dim)])

    def _scale_factor(self, e):
        self.R = pow2_scale(self.R, e)

    def _merge_factor(self, other, e, d, n0):
        parts = [self.R, pow2_scale(other.R, e)]
        if n0 and np.any(d):
            parts.append((math.sqrt(n0 * other.n / (n0 + other.n)) * d)[None, :])
        self._refactor(parts)

    def factor(self) -> np.ndarray:
        """``R`` padded to ``dim x dim`` (scaled units): ``R^T R`` is the centred scatter."""
        R = np.zeros((self.dim, self.dim))
        R[:self.R.shape[0]] = self.R
        return R


def accumulator(kind: str, dim: int, **kw) -> _Base:
    """A :class:`GramAccumulator` (``"gram"``) or :class:`QRAccumulator` (``"qr"``)."""
    return {"gram": GramAccumulator, "qr": QRAccumulator}[kind](dim, **kw)

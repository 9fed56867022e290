"""What users log, at the optimum: per-dim KL, posterior-mean variance, posterior std, the rate,
the distortion, and active-dim counts under the rules people use (docs/theory.md §7, §11).

:func:`logged` reads one :class:`~vaetheory.theory.Point` and returns a :class:`Logged`. Every
per-dim array is in mode order, like the Solution. The counts carry their rule:

=================  ============================================================================
rule               counted
=================  ============================================================================
``theory``         the theory's active dims: the rank of the latent's encoder map (docs §7(d));
                   exact, or ``[min, max]`` dims with a non-zero posterior mean where a free
                   rotation leaves it open (docs §7(c))
``AU(delta)``      ``#{j : Var_x E[z_j|x] > delta}`` (Burda et al. 2016)
``KL>delta``       ``#{j : KL_j > delta}`` (nats)
=================  ============================================================================

Near a threshold the rules disagree: an active dim whose KL is below delta is counted by the
theory and not by ``KL>delta``; with a fixed encoder std a collapsed dim (zero mean) keeps the KL of
its variance part, so ``KL>delta`` may count it as active.

Rotation freedom (fixed isotropic or tied encoder stds, the z1 of the hierarchical VAE): the
optimum is a family ``V -> Q V`` within each group of equal stds. Per-dim values are then only
determined up to the rotation: the reported values belong to the constructed optimum
(:meth:`Solution.matrices`), ``*_range`` gives the interval every member can reach, and a count is
a ``[min, max]`` range (Schur-Horn: the diagonal of ``Q M Q^T`` ranges over the permutohedron of
``M``'s eigenvalues ``e_1 >= ... >= e_m``, so at most ``#{k : mean(e_1..e_k) > delta}`` and at
least ``min{k : mean(e_{k+1}..e_m) <= delta}`` entries exceed delta). Totals are determined.

Without centring (``--no-center``) ``E[mu_j^2]`` is not the variance: ``Var_x E[z_j|x] = E[mu_j^2]
(1 - (p_i^T m)^2 / phi_i)`` for the dim carrying mode i (``p_i`` the eigenvector, ``m`` the data's
mean, ``phi_i`` the raw second moment along ``p_i``), which needs the spectrum's basis
(``with_basis=True``); a given spectrum (eigenvalues only) is taken as centred.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from ._numerics import DELTA

__all__ = ["Logged", "LatentLog", "logged", "DELTA", "count_range"]

RULES = {
    "theory": "the theory's active dims (rank of the encoder map, docs/theory.md §7)",
    "au": "AU(delta) = #{j : Var_x E[z_j|x] > delta} (Burda et al. 2016)",
    "kl": "#{j : KL_j > delta} (nats)",
}


@dataclass(frozen=True)
class LatentLog:
    """One latent's logged quantities at the optimum (mode order).

    ``kl``: nats per dim (the hierarchical z1: the z1 term ``E[log q(z1|x) - log p(z1|z2)]``);
    ``mean_variance``: ``Var_x E[z_j|x]`` (None when it cannot be computed, see ``notes``);
    ``posterior_std``: the encoder std of each dim (learned or fixed); ``*_range``: ``(lo, hi)`` per
    dim over the rotations the optimum leaves free (None where the values are determined);
    ``counts``: rule -> int or ``[min, max]``.
    """

    latent: str
    meaning: str
    kl: np.ndarray
    mean_variance: Optional[np.ndarray]
    posterior_std: np.ndarray
    counts: Dict[str, object]
    kl_range: Optional[Tuple[np.ndarray, np.ndarray]] = None
    mean_variance_range: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def total_kl(self) -> float:
        return float(np.sum(self.kl))

    def to_dict(self) -> dict:
        out = {"meaning": self.meaning, "kl": self.kl, "total_kl": self.total_kl,
               "mean_variance": self.mean_variance, "posterior_std": self.posterior_std,
               "counts": dict(self.counts)}
        if self.kl_range is not None:
            out["kl_range"] = [list(self.kl_range[0]), list(self.kl_range[1])]
        if self.mean_variance_range is not None:
            out["mean_variance_range"] = [list(self.mean_variance_range[0]),
                                          list(self.mean_variance_range[1])]
        return out


@dataclass(frozen=True)
class Logged:
    """What a training log shows at the optimum (:func:`logged`)."""

    delta: float
    latents: Dict[str, LatentLog]
    rate: float
    distortion: float
    rules: Dict[str, str] = field(default_factory=lambda: dict(RULES))
    notes: Tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"delta": self.delta, "rate": self.rate, "distortion": self.distortion,
                "rules": dict(self.rules),
                "latents": {k: v.to_dict() for k, v in self.latents.items()},
                "notes": list(self.notes)}


def count_range(eigs, delta) -> Tuple[int, int]:
    """``(min, max)`` of ``#{j : diag(Q M Q^T)_j > delta}`` over orthogonal ``Q``, for a symmetric
    ``M`` with eigenvalues ``eigs`` (see the module docstring)."""
    e = np.sort(np.asarray(eigs, dtype=np.float64))[::-1]
    m = e.size
    if m == 0:
        return 0, 0
    head = np.cumsum(e) / np.arange(1, m + 1)            # mean of the top k
    tail = (np.cumsum(e[::-1]) / np.arange(1, m + 1))[::-1]   # tail[k] = mean(e[k:])
    hi = int(np.count_nonzero(head > delta))
    below = np.flatnonzero(tail <= delta)
    lo = int(below[0]) if below.size else m
    return lo, hi


def _groups(values) -> List[np.ndarray]:
    """Runs of equal values (positions in mode order): the tie groups of fixed stds."""
    v = np.asarray(values)
    out, start = [], 0
    for i in range(1, v.size + 1):
        if i == v.size or v[i] != v[start]:
            out.append(np.arange(start, i))
            start = i
    return out


def _mean_projection(spec, length):
    """``(phi, p^T m)`` for modes i < ``length``: the raw second moments along the eigenvectors
    and the data's mean along each (the residual's mean, ``m_y - K m_x``, for the CVAE); 0 past
    the basis."""
    if spec.kind == "residual":
        k = spec.x_dim
        mean = spec.mean[k:] - spec.regression @ spec.mean[:k]
    else:
        mean = spec.mean
    ev = spec.padded(length)
    proj = np.zeros(ev.size)
    n = min(ev.size, spec.basis.shape[1])
    proj[:n] = spec.basis[:, :n].T @ mean
    return ev, proj


def _uncentred_factor(spec, d):
    """Per mode i < d: ``1 - (p_i^T m)^2 / phi_i`` (Var / E[.^2] of the data along p_i), or None
    when the spectrum has no basis or mean; 1 for a centred spectrum."""
    if spec.centered is not False:
        return np.ones(d)
    if spec.basis is None or spec.mean is None:
        return None
    ev, proj = _mean_projection(spec, d)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(ev > 0, 1.0 - proj * proj / np.where(ev > 0, ev, 1.0), 0.0)
    return np.clip(f, 0.0, 1.0)


def _latent_state(pt, latent, f1, hyper):
    """(kl, mean_variance or None, posterior std, groups) of one latent, mode order."""
    sol = pt.solution
    setting = sol.setting
    spec = setting.latent(latent)
    d = sol.latent_dims[latent]
    kl = np.asarray(pt.vector(sol.kl[latent]), dtype=float)
    if latent == "z2":
        d1 = sol.latent_dims["z1"]
        k = min(d1, d)
        lam, w2 = pt.mode("lambda"), pt.mode("w2")
        var = None
        if f1 is not None:   # E[z2|x] = W2 E[z1|x]: z1's mean variance through W2
            var = np.zeros(d)
            var[:k] = (w2[:k] * lam[:k]) ** 2 * f1[:k]
    else:
        lam = pt.mode("lambda")
        var = None if f1 is None else lam * lam * f1
    if spec.learned:
        std = pt.posterior_std[latent]
        groups = [np.array([i]) for i in range(d)]
    else:
        if latent == "z":
            std = pt.mode("sigma_sorted")
        else:
            std = np.full(d, float(np.asarray(hyper["sigma1" if latent == "z1" else "sigma2"])
                                   .ravel()[0]))
        groups = _groups(std)
    return kl, var, np.asarray(std, dtype=np.float64), groups


def _meaning(setting, latent):
    spec = setting.latent(latent)
    if latent == "z1":
        return ("KL_j is the z1 term E[log q(z1_j|x) - log p(z1_j|z2)] (against the conditional "
                "p(z1|z2), not a fixed prior); z1's std is fixed: a collapsed dim has a zero "
                "posterior mean (Var E[z_j|x] = 0)")
    if spec.learned:
        return ("learned std: a collapsed dim equals the prior exactly (KL_j = 0, Var E[z_j|x] = "
                "0, std = eta_enc)")
    return ("fixed std: a collapsed dim has a zero posterior mean (Var E[z_j|x] = 0) but keeps the "
            "KL of its variance part, 0.5 (s^2/eta_enc^2 - 1 - log(s^2/eta_enc^2)), > 0 unless "
            "its std equals eta_enc, so KL>delta can count it as active")


FREE_NOTE = ("{latent}: a free rotation within groups of equal fixed stds leaves the per-dim "
             "values undetermined: the values are those of the constructed optimum, *_range what "
             "any optimum can show, counts are [min, max]; totals are determined")


def _solution_notes(spec, f1) -> List[str]:
    """The notes every point of a solution has (before the per-latent rotation notes)."""
    if f1 is None:
        return ["the data were not centred and the spectrum has no basis: Var_x E[z_j|x] needs "
                "the eigenvectors and the mean (with_basis=True); not reported"]
    if spec.centered is None:
        return ["a given spectrum is taken as centred: Var_x E[z_j|x] = E[mu_j^2]"]
    return []


def _check_delta(delta) -> float:
    delta = float(delta)
    if not (np.isfinite(delta) and delta > 0):
        from .errors import ParameterError

        raise ParameterError(f"delta must be finite and > 0, got {delta}")
    return delta


def logged(point, delta: float = DELTA) -> Logged:
    """The quantities a training log shows, at the optimum of one grid point.

    Parameters
    ----------
    point : Point
        ``solution.at(index)``.
    delta : float
        The threshold of the AU and KL rules (default 0.01, Burda et al.).

    Returns
    -------
    Logged
        Per latent (mode order): KL (nats), ``Var_x E[z_j|x]``, the posterior std, ranges under
        free rotations, and the counts of each rule; the total rate (sum of KL) and distortion
        ``E||x - x_hat||^2`` (docs/theory.md §7, §11).
    """
    delta = _check_delta(delta)
    sol = point.solution
    spec = sol.spectrum
    d1 = max(sol.latent_dims.values())
    f1 = _uncentred_factor(spec, d1)
    notes = _solution_notes(spec, f1)
    latents = {}
    fixed = [z.name for z in sol.setting.latents if not z.learned]
    hyper = point.hyper if fixed else {}
    for latent, d in sol.latent_dims.items():
        f = None if f1 is None else (f1 if latent == "z2" else f1[:d])
        kl, var, std, groups = _latent_state(point, latent, f, hyper)
        free = any(g.size > 1 for g in groups)
        lo, hi = point.collapsed_range(latent)
        theory = d - lo if lo == hi else [d - hi, d - lo]
        counts = {"theory": theory}
        kl_rng = var_rng = None
        if free:
            kl_rng = (kl.copy(), kl.copy())
            au_lo = au_hi = kl_lo = kl_hi = 0
            if var is not None:
                var_rng = (var.copy(), var.copy())
            for g in groups:
                a, b = count_range(kl[g], delta)
                kl_lo, kl_hi = kl_lo + a, kl_hi + b
                kl_rng[0][g], kl_rng[1][g] = kl[g].min(), kl[g].max()
                if var is not None:
                    e = _group_eigs(var, g, point, latent)
                    a, b = count_range(e, delta)
                    au_lo, au_hi = au_lo + a, au_hi + b
                    var_rng[0][g], var_rng[1][g] = e.min(), e.max()
            counts["kl"] = kl_lo if kl_lo == kl_hi else [kl_lo, kl_hi]
            if var is not None:
                counts["au"] = au_lo if au_lo == au_hi else [au_lo, au_hi]
        else:
            counts["kl"] = int(np.count_nonzero(kl > delta))
            if var is not None:
                counts["au"] = int(np.count_nonzero(var > delta))
        latents[latent] = LatentLog(latent, _meaning(sol.setting, latent), kl, var, std, counts,
                                    kl_rng, var_rng)
        if free:
            notes.append(FREE_NOTE.format(latent=latent))
    return Logged(delta, latents, point.rate, point.distortion, notes=tuple(notes))


def _group_eigs(var, g, point, latent):
    """Eigenvalues of the group's block of the posterior-mean covariance: diagonal in mode
    coordinates when centred; uncentred, ``C_ij = lambda_i lambda_j (delta_ij - h_i h_j)``."""
    spec = point.solution.spectrum
    if spec.centered is not False or g.size == 1:
        return var[g]
    lam = point.mode("lambda")
    if latent == "z2":
        lam = _z2_lambda(point.solution.latent_dims["z2"], point.mode("w2"), lam)
    return _cov_eigs(lam[g], _mean_directions(spec, max(g) + 1)[g])


def _z2_lambda(d2, w2, lam):
    """z2's mean map per mode (``w2_i lambda_i`` for the paired modes, 0 past them), along the
    last axis."""
    out = np.zeros(lam.shape[:-1] + (d2,))
    k = min(d2, lam.shape[-1])
    out[..., :k] = w2[..., :k] * lam[..., :k]
    return out


def _mean_directions(spec, length):
    """``h_i = p_i^T m / sqrt(phi_i)`` for modes i < ``length`` (0 where phi_i = 0): the data's
    mean along each eigenvector, in units of its raw second moment (uncentred data)."""
    ev, proj = _mean_projection(spec, length)
    return np.where(ev > 0, proj / np.sqrt(np.where(ev > 0, ev, 1.0)), 0.0)


def _cov_eigs(lg, h):
    """Eigenvalues (ascending, clipped at 0) of ``C_ij = l_i l_j (delta_ij - h_i h_j)``, for one
    ``l`` (``(s,)``) or a stack of them (``(m, s)``: one matrix per row, the same numbers)."""
    lg = np.asarray(lg, dtype=np.float64)
    C = (lg[..., :, None] * lg[..., None, :]) * (np.eye(h.size) - np.outer(h, h))
    return np.clip(np.linalg.eigvalsh(0.5 * (C + np.swapaxes(C, -1, -2))), 0.0, None)


# ------------------------------------------------------------------------------------------
# a block of grid points at once (the streamed JSON of long sweeps)


@dataclass(frozen=True)
class LatentBlock:
    """:class:`LatentLog` of a run of grid points: one row per point, mode order along the last
    axis (:func:`logged_block`).

    ``counts``: rule -> ``(lo, hi)`` int arrays (a point's count is ``lo`` where ``lo == hi``,
    else ``[lo, hi]``); ``free``: where a rotation is free (``*_range`` and ``[min, max]`` counts
    apply there; the ranges' rows elsewhere are the values themselves).
    """

    latent: str
    meaning: str
    kl: np.ndarray
    total_kl: np.ndarray
    mean_variance: Optional[np.ndarray]
    posterior_std: np.ndarray
    counts: Dict[str, Tuple[np.ndarray, np.ndarray]]
    free: np.ndarray
    kl_range: Tuple[np.ndarray, np.ndarray]
    mean_variance_range: Optional[Tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LoggedBlock:
    """:class:`Logged` of a run of grid points (:func:`logged_block`): ``notes`` every point has,
    then ``FREE_NOTE`` for each latent where it is free."""

    delta: float
    latents: Dict[str, LatentBlock]
    rate: np.ndarray
    distortion: np.ndarray
    notes: Tuple[str, ...]


def _count_range_rows(M, delta):
    """:func:`count_range` of every row of ``M`` (``(m, s)``), as two int arrays; the same
    arithmetic, row by row (sort, running means, comparisons)."""
    s = M.shape[1]
    E = np.sort(M, axis=1)[:, ::-1]
    ar = np.arange(1, s + 1)
    hi = np.count_nonzero(np.cumsum(E, axis=1) / ar > delta, axis=1)
    tail = (np.cumsum(E[:, ::-1], axis=1) / ar)[:, ::-1]
    below = tail <= delta
    lo = np.where(below.any(axis=1), below.argmax(axis=1), s)
    return lo, hi


def logged_block(sol, delta: float = DELTA, start: int = 0,
                 stop: Optional[int] = None) -> LoggedBlock:
    """:func:`logged` at the grid points ``start .. stop - 1`` (C order) of ``sol`` at once, as
    arrays over those points: every number equals the one ``logged(sol.at(index), delta)`` gives
    (the same operations on rows; docs/theory.md §7, §11), without a Python step per point."""
    from ._grid import grid_rows

    delta = _check_delta(delta)
    shape = sol.grid_shape
    n = int(np.prod(shape))
    stop = n if stop is None else int(stop)
    m = stop - int(start)

    def rows(arr, per_dim=True, dtype=np.float64):
        return np.asarray(grid_rows(arr, shape, start, stop, per_dim), dtype=dtype)

    spec = sol.spectrum
    d1 = max(sol.latent_dims.values())
    f1 = _uncentred_factor(spec, d1)
    modes = sol._modes
    latents = {}
    for latent, d in sol.latent_dims.items():
        setting_latent = sol.setting.latent(latent)
        kl = np.ascontiguousarray(rows(sol.kl[latent]))
        if latent == "z2":
            k = min(sol.latent_dims["z1"], d)
            lam, w2 = rows(modes["lambda"]), rows(modes["w2"])
            var = None
            if f1 is not None:
                var = np.zeros((m, d))
                var[:, :k] = (w2[:, :k] * lam[:, :k]) ** 2 * f1[:k]
        else:
            lam = rows(modes["lambda"])
            var = None if f1 is None else lam * lam * f1[:d]
        if setting_latent.learned:
            std = rows(sol.posterior_std[latent])
            tied = np.zeros((m, max(d - 1, 0)), dtype=bool)
        else:
            if latent == "z":
                std = rows(modes["sigma_sorted"])
            else:
                name = "sigma1" if latent == "z1" else "sigma2"
                std = np.repeat(rows(sol.params[name], per_dim=False)[:, None], d, axis=1)
            tied = std[:, 1:] == std[:, :-1]
        free = tied.any(axis=1)
        lo = rows(sol.collapsed_min[latent], False, np.int64)
        hi = rows(sol.collapsed_max[latent], False, np.int64)
        kl_count = np.count_nonzero(kl > delta, axis=1)
        counts = {"theory": (d - hi, d - lo), "kl": (kl_count, kl_count.copy())}
        if var is not None:
            au = np.count_nonzero(var > delta, axis=1)
            counts["au"] = (au, au.copy())
        kl_rng = (kl.copy(), kl.copy())
        var_rng = None if var is None else (var.copy(), var.copy())
        if free.any():
            where = np.flatnonzero(free)
            patterns, which = np.unique(tied[where], axis=0, return_inverse=True)
            for p, pattern in enumerate(patterns):
                r = where[np.ravel(which) == p]
                groups = _groups(np.concatenate([[0], np.cumsum(~pattern)]))
                _free_rows(r, groups, kl, var, delta, counts, kl_rng, var_rng, spec, latent,
                           sol, lam, modes, start, stop)
        latents[latent] = LatentBlock(latent, _meaning(sol.setting, latent), kl,
                                      np.sum(kl, axis=-1), var, std, counts, free, kl_rng,
                                      var_rng)
    rate = rows(sol.rate, per_dim=False)
    distortion = rows(sol.distortion, per_dim=False)
    return LoggedBlock(delta, latents, rate, distortion, tuple(_solution_notes(spec, f1)))


def _free_rows(r, groups, kl, var, delta, counts, kl_rng, var_rng, spec, latent, sol, lam,
               modes, start, stop):
    """The rows ``r`` (one tie pattern, ``groups``) of a free latent: counts as ranges over the
    rotations within each group, and the per-dim ranges (as :func:`logged`)."""
    from ._grid import grid_rows

    kl_lo = np.zeros(r.size, dtype=np.int64)
    kl_hi = kl_lo.copy()
    au_lo, au_hi = kl_lo.copy(), kl_lo.copy()
    uncentred = spec.centered is False
    if var is not None and uncentred:
        lam_r = lam[r]
        if latent == "z2":
            w2 = np.asarray(grid_rows(modes["w2"], sol.grid_shape, start, stop, True),
                            dtype=np.float64)[r]
            lam_r = _z2_lambda(sol.latent_dims["z2"], w2, lam_r)
    for g in groups:
        K = kl[np.ix_(r, g)]
        a, b = _count_range_rows(K, delta)
        kl_lo, kl_hi = kl_lo + a, kl_hi + b
        kl_rng[0][np.ix_(r, g)] = K.min(axis=1)[:, None]
        kl_rng[1][np.ix_(r, g)] = K.max(axis=1)[:, None]
        if var is not None:
            if uncentred and g.size > 1:
                e = _cov_eigs(lam_r[:, g], _mean_directions(spec, max(g) + 1)[g])
            else:
                e = var[np.ix_(r, g)]
            a, b = _count_range_rows(e, delta)
            au_lo, au_hi = au_lo + a, au_hi + b
            var_rng[0][np.ix_(r, g)] = e.min(axis=1)[:, None]
            var_rng[1][np.ix_(r, g)] = e.max(axis=1)[:, None]
    counts["kl"][0][r], counts["kl"][1][r] = kl_lo, kl_hi
    if var is not None:
        counts["au"][0][r], counts["au"][1][r] = au_lo, au_hi

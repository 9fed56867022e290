"""A testing kit for linear (C/H)VAE code: the closed forms as an oracle in your own pytest suite.

Three parts (docs/theory.md for the mathematics):

* **Strategies** (hypothesis, imported lazily, arguments checked when a strategy is built):
  :func:`data_matrices` (data with a designed spectrum: rank deficiency, ties, a non-zero mean,
  a chosen scale, ``N < D``), :func:`cvae_pairs` (``(x, y)`` with a designed residual spectrum and
  a chosen x-y correlation), :func:`hyperparameters` (for any setting, read from its record in
  :mod:`vaetheory.settings`), :func:`problems` (setting + latent dims + data + hyperparameters
  drawn together), and the older :func:`spectra` / :func:`vae_hyperparameters`.
* **Oracles**: :func:`optimum` (the closed-form optimum of a setting on data or moments: a
  :class:`~vaetheory.theory.Point`), :func:`optimal_parameters` (one optimal set of matrices,
  biases included when centred), :func:`expected` / :func:`expected_vae` (the Solution).
* **Assertions** on trained parameters (numpy arrays, PyTorch tensors, JAX arrays, a
  ``state_dict``; names mapped to roles as in :mod:`vaetheory.audit`):
  :func:`assert_at_optimum` (the exact expected loss of the parameters on the data against the
  optimum; the failure message gives the loss gap, the singular values found vs expected per map,
  the collapsed dims found vs predicted, and hints at the usual bugs) and
  :func:`assert_collapse_matches` (collapsed dims under a named rule: ``"kl"`` -- KL_j > delta,
  ``"au"`` -- AU(delta), ``"exact"``).

Typical use::

    from hypothesis import given, settings
    from vaetheory import testing

    @settings(max_examples=20, deadline=None)
    @given(testing.problems(settings=["vae/learnable"]))
    def test_my_training_reaches_the_optimum(problem):
        params = my_train(problem.data, **problem.dims, **problem.hyper)   # your code
        testing.assert_at_optimum(params, problem.data, problem.setting, **problem.hyper)

Tolerances (defaults for float32 training with sampled noise, :mod:`vaetheory.audit`): the relative
loss gap at most ``loss_rtol = 1e-3`` and every sorted singular value within ``sv_rtol = 10 %`` of
its map's scale (``sv_rtol=None``: the loss alone; a mode next to its threshold has a poorly
determined singular value); collapse with rule ``"kl"`` and ``delta = 0.01`` nats, the rule people
log (``"exact"`` -- 1e-6 nats -- is for float64 optimisers).

A learned decoder variance (``setting=settings.get("vae", "learnable", "learned")`` and the other
learned-decoder records, docs/theory.md §12): the loss is the negative beta-ELBO in nats, at the
parameters' ``log_u`` (``log eta_dec^2``; a trained ``log_sigma_x`` etc. is recognised) or, when
they have none, at the ``u`` optimal for them (profiled exactly); ``u`` must also be within
``sv_rtol`` of the optimum's; where the loss has no minimum the assertion fails with NO OPTIMUM
and says why (docs/theory.md §7(f), §12.2). :func:`problems` draws these settings too (bounded
instances unless ``unbounded=True``); :func:`optimal_parameters` includes ``log_u``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import audit as _audit
from . import settings as _settings
from ._numerics import DELTA
from .audit import LOSS_RTOL, SV_RTOL, resolve_setting
from .errors import ParameterError, Verdict
from .moments import Spectrum, spectrum_from_eigenvalues
from .theory import vae_fixed_sigma, vae_learnable_sigma

__all__ = [
    "DataCase",
    "PairCase",
    "Problem",
    "assert_at_optimum",
    "assert_collapse_matches",
    "assert_singular_values_close",
    "collapsed_by_mean",
    "cvae_pairs",
    "data_matrices",
    "expected",
    "expected_vae",
    "hyperparameters",
    "optimal_parameters",
    "optimum",
    "problems",
    "spectra",
    "vae_hyperparameters",
]


# ------------------------------------------------------------------------------------------
# argument checks (at build time, as hypothesis.extra.numpy does)


def _check_int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ParameterError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_range(name, bounds, *, positive=True):
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ParameterError(f"{name} must be a (low, high) pair of numbers, got {bounds!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or (positive and lo <= 0):
        what = "0 < low <= high" if positive else "low <= high"
        raise ParameterError(f"{name} must satisfy {what} (finite), got {bounds!r}")
    return lo, hi


def _check_ints(name, value, low):
    """An int or a (low, high) pair of ints, each >= ``low``: returns (lo, hi)."""
    pair = value if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2:
        raise ParameterError(f"{name} must be an integer or a (low, high) pair, got {value!r}")
    lo, hi = (_check_int(name, v, low) for v in pair)
    if lo > hi:
        raise ParameterError(f"{name} must satisfy low <= high, got {value!r}")
    return lo, hi


def _check_scale(value):
    if isinstance(value, (tuple, list)):
        return _check_range("scale", value)
    v = float(_settings.check_value("beta", value, label="scale"))
    return v, v


def _check_data_args(scale, value_range, mean):
    """The arguments data_matrices and cvae_pairs share: (scale range, eigenvalue range)."""
    if mean not in (None, True, False):
        raise ParameterError(f"mean must be True, False or None, got {mean!r}")
    return _check_scale(scale), _check_range("value_range", value_range)


def _check_unit(name, bounds):
    lo, hi = _check_range(name, bounds, positive=False)
    if lo < 0 or hi >= 1:
        raise ParameterError(f"{name} must lie in [0, 1), got {bounds!r}")
    return lo, hi


def _logu(st, lo, hi):
    if lo == hi:
        return st.just(float(lo))
    return st.floats(np.log(lo), np.log(hi)).map(lambda v: float(np.exp(v)))


# ------------------------------------------------------------------------------------------
# strategies


def spectra(*, max_dim=8, kind="data", allow_zero=True, min_value=1e-4, max_value=1e4):
    """Hypothesis strategy of :class:`Spectrum` objects, degenerate cases included.

    Draws eigenvalues log-uniformly in ``[min_value, max_value]``, with exact zeros (rank
    deficiency) and exact ties mixed in. The arguments are checked when the strategy is built
    (as ``hypothesis.extra.numpy`` does): a bad one raises :class:`~vaetheory.errors.ParameterError`.
    """
    from hypothesis import strategies as st

    max_dim = _check_int("max_dim", max_dim, 1)
    if kind not in ("data", "residual"):
        raise ParameterError(f"kind must be 'data' or 'residual', got {kind!r}")
    min_value, max_value = _check_range("(min_value, max_value)", (min_value, max_value))

    value = st.floats(np.log(min_value), np.log(max_value)).map(np.exp)
    item = st.one_of(value, st.just(0.0)) if allow_zero else value

    @st.composite
    def build(draw):
        ev = draw(st.lists(item, min_size=1, max_size=max_dim))
        if len(ev) >= 2 and draw(st.booleans()):
            ev[1] = ev[0]  # a tie
        return spectrum_from_eigenvalues(ev, kind=kind)

    return build()


@dataclass(frozen=True)
class DataCase:
    """Data drawn with a designed spectrum (:func:`data_matrices`).

    ``X`` (N, D) float64; ``eigenvalues``: those of ``Cov(X)`` (1/N, descending, zero beyond
    ``rank``), exact by construction; ``mean``: the rows' mean; ``basis``: the eigenvectors
    (D, rank). ``covariance`` and ``second_moment`` (``E[x x^T]``) follow.
    """

    X: np.ndarray
    eigenvalues: np.ndarray
    mean: np.ndarray
    basis: np.ndarray = field(repr=False)

    @property
    def rank(self) -> int:
        return int(np.count_nonzero(self.eigenvalues))

    @property
    def shape(self):
        return self.X.shape

    @property
    def covariance(self) -> np.ndarray:
        r = self.basis.shape[1]
        return (self.basis * self.eigenvalues[:r]) @ self.basis.T

    @property
    def second_moment(self) -> np.ndarray:
        return self.covariance + np.outer(self.mean, self.mean)


@dataclass(frozen=True)
class PairCase:
    """CVAE data ``(x, y)`` with a designed residual (:func:`cvae_pairs`): ``y = K (x - mean_x)
    + r + mean_y`` with ``r`` uncorrelated with ``x`` in the sample; ``residual_eigenvalues`` are
    those of ``E = Cov(r)`` (the CVAE's spectrum, docs/theory.md §4), exact by construction;
    ``regression`` is ``K``; ``x_case`` the DataCase of ``x``; ``correlation`` the rho used."""

    x: np.ndarray
    y: np.ndarray
    residual_eigenvalues: np.ndarray
    regression: np.ndarray
    correlation: float
    x_case: DataCase = field(repr=False)

    @property
    def data(self):
        return (self.x, self.y)


def _orthonormal(rng, n, k, avoid=None):
    """(n, k) orthonormal columns orthogonal to the columns of ``avoid`` (n, j)."""
    a = np.zeros((n, 0)) if avoid is None else avoid
    Q, _ = np.linalg.qr(np.concatenate([a, rng.standard_normal((n, k))], axis=1))
    return Q[:, a.shape[1]:a.shape[1] + k]


def _designed_values(draw, st, r, lo, hi, ties):
    vals = sorted((draw(_logu(st, lo, hi)) for _ in range(r)), reverse=True)
    if ties and r >= 2 and draw(st.booleans()):
        i = draw(st.integers(0, r - 2))
        vals[i + 1] = vals[i]
    return np.array(vals, dtype=float)


def _draw_data(draw, st, n, d, rank, lo, hi, ties, mean, scale, rng, avoid=None, max_rank=None):
    cap = min(n - 1 - (0 if avoid is None else avoid.shape[1] - 1), d)
    if max_rank is not None:
        cap = min(cap, max_rank)
    r = min(rank, cap) if rank is not None else draw(st.integers(min(1, cap), cap))
    ev = np.zeros(d)
    ev[:r] = _designed_values(draw, st, r, lo, hi, ties) * scale * scale
    ones = np.ones((n, 1)) / np.sqrt(n)
    base = ones if avoid is None else avoid
    Uc = _orthonormal(rng, n, r, base)                  # orthogonal to 1: exactly centred
    V = _orthonormal(rng, d, r)
    X0 = np.sqrt(n) * (Uc * np.sqrt(ev[:r])) @ V.T
    nonzero = draw(st.booleans()) if mean is None else bool(mean)
    mu = rng.normal(size=d) * scale * (1.0 + np.sqrt(ev[0] if r else 1.0)) if nonzero else np.zeros(d)
    return X0 + mu, ev, mu, V, Uc


def data_matrices(*, n_samples=(2, 24), dim=(1, 6), rank=None, ties=True, mean=None, scale=1.0,
                  value_range=(1e-2, 1e2)):
    """Hypothesis strategy of :class:`DataCase`: an ``N x D`` data matrix whose covariance has a
    designed spectrum.

    Parameters
    ----------
    n_samples, dim : int or (low, high)
        ``N`` (>= 2) and ``D`` (>= 1); ``N < D`` is drawn too (then the rank is at most ``N - 1``).
    rank : int, optional
        The rank of ``Cov(X)`` (capped at ``min(N - 1, D)``); default: drawn in
        ``[1, min(N - 1, D)]``, so rank-deficient cases appear.
    ties : bool
        Sometimes make two eigenvalues exactly equal.
    mean : bool, optional
        A non-zero mean (True), a zero one (False), or either (None, default).
    scale : float or (low, high)
        Multiplies the data (eigenvalues by ``scale**2``); a pair draws it log-uniformly.
    value_range : (low, high)
        Eigenvalues before scaling are log-uniform in this range.

    Defaults keep an example to a few microseconds of numpy (``N <= 24``, ``D <= 6``).
    """
    from hypothesis import strategies as st

    n_lo, n_hi = _check_ints("n_samples", n_samples, 2)
    d_lo, d_hi = _check_ints("dim", dim, 1)
    if rank is not None:
        rank = _check_int("rank", rank, 0)
    (s_lo, s_hi), (lo, hi) = _check_data_args(scale, value_range, mean)

    @st.composite
    def build(draw):
        n = draw(st.integers(n_lo, n_hi))
        d = draw(st.integers(d_lo, d_hi))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        sc = draw(_logu(st, s_lo, s_hi))
        X, ev, mu, V, _ = _draw_data(draw, st, n, d, rank, lo, hi, ties, mean, sc, rng)
        r = int(np.count_nonzero(ev))
        return DataCase(X, ev, mu, V[:, :r])

    return build()


def cvae_pairs(*, n_samples=(6, 24), x_dim=(1, 4), y_dim=(1, 4), correlation=(0.0, 0.9),
               ties=True, mean=None, scale=1.0, value_range=(1e-2, 1e2)):
    """Hypothesis strategy of :class:`PairCase`: ``(x, y)`` pairs for the CVAE with a designed
    residual spectrum and a chosen x-y correlation.

    ``y = rho * c + sqrt(1 - rho^2) * r`` (plus a mean), where ``c`` is a rotation of the whitened
    ``x`` scaled to the residual's size and ``r`` a designed part uncorrelated with ``x`` in the
    sample, so the residual of y after regression on x is exactly ``sqrt(1 - rho^2) r``: its
    eigenvalues ``(1 - rho^2) e_i`` are known (docs/theory.md §4: more correlation, a lower residual
    spectrum). ``correlation`` is rho in ``[0, 1)`` or a ``(low, high)`` range; the other
    arguments are those of :func:`data_matrices` (for x, and for the residual's eigenvalues).
    """
    from hypothesis import strategies as st

    n_lo, n_hi = _check_ints("n_samples", n_samples, 4)
    x_lo, x_hi = _check_ints("x_dim", x_dim, 1)
    y_lo, y_hi = _check_ints("y_dim", y_dim, 1)
    rho = correlation if isinstance(correlation, (tuple, list)) else (correlation, correlation)
    r_lo, r_hi = _check_unit("correlation", rho)
    (s_lo, s_hi), (lo, hi) = _check_data_args(scale, value_range, mean)

    @st.composite
    def build(draw):
        n = draw(st.integers(n_lo, n_hi))
        dx, dy = draw(st.integers(x_lo, x_hi)), draw(st.integers(y_lo, y_hi))
        rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        sc = draw(_logu(st, s_lo, s_hi))
        rho_ = draw(st.floats(r_lo, r_hi)) if r_hi > r_lo else r_lo
        X, evx, mux, Vx, Ux = _draw_data(draw, st, n, dx, None, lo, hi, ties, mean, sc, rng,
                                         max_rank=max(1, (n - 2) // 2))
        rx = int(np.count_nonzero(evx))
        avoid = np.concatenate([np.ones((n, 1)) / np.sqrt(n), Ux], axis=1)
        R, ev, muy, _, _ = _draw_data(draw, st, n, dy, None, lo, hi, ties, mean, sc, rng,
                                      avoid=avoid)
        xt = np.sqrt(n) * Ux                               # whitened centred x (Cov = I), n x rx
        G = _orthonormal(rng, dy, min(rx, dy))             # dy x k
        size = np.sqrt(max(ev[0], 1e-300))
        c = xt[:, :G.shape[1]] @ G.T * size
        y = rho_ * c + np.sqrt(1.0 - rho_ ** 2) * (R - muy) + muy
        # K: y - mean_y = K (x - mean_x) + residual; xt = (x - mean_x) Vx Phi^-1/2
        phi = evx[:rx]
        K = rho_ * size * G @ (Vx[:, :G.shape[1]] / np.sqrt(phi[:G.shape[1]])).T
        return PairCase(X, y, (1.0 - rho_ ** 2) * ev, K, float(rho_),
                        DataCase(X, evx, mux, Vx[:, :rx]))

    return build()


#: default (low, high) ranges of hyperparameters by name (log-uniform); others: (0.1, 10)
DEFAULT_RANGES = {"beta": (1e-2, 1e2), "beta1": (1e-1, 1e1), "beta2": (1e-1, 1e1),
                  "eta_enc": (0.1, 10.0), "eta_dec": (0.1, 10.0), "sigma": (0.1, 10.0),
                  "sigma1": (0.1, 10.0), "sigma2": (0.1, 10.0)}


def hyperparameters(setting, *, latent_dim=None, latent_dim2=None, ranges=None):
    """Hypothesis strategy of hyperparameter dicts for ``setting`` (a record, ``"model/variance"``
    or ``(model, variance)``), read from its record: every hyperparameter of
    ``Setting.hyperparameters`` drawn log-uniformly in its range (:data:`DEFAULT_RANGES`,
    overridden by ``ranges``). Per-dim ones (``sigma``) are one value (isotropic) or, when the
    latent dim is given, sometimes one per dim with ties; isotropic ones (``sigma1``) one value.
    A new setting needs no change here."""
    from hypothesis import strategies as st

    setting = resolve_setting(setting)
    ranges = dict(ranges or {})
    unknown = set(ranges) - set(setting.names)
    if unknown:
        raise ParameterError(f"ranges names {', '.join(sorted(unknown))}, not hyperparameters of "
                             f"{setting.name} ({', '.join(setting.names)})")
    bounds = {n: _check_range(n, ranges.get(n, DEFAULT_RANGES.get(n, (0.1, 10.0))))
              for n in setting.names}
    dims = {"latent_dim": None if latent_dim is None else _check_int("latent_dim", latent_dim, 1),
            "latent_dim2": None if latent_dim2 is None else _check_int("latent_dim2", latent_dim2, 1)}
    parts = {}
    for spec in setting.hyperparameters:
        one = _logu(st, *bounds[spec.name])
        d = None
        if spec.kind == "vector":
            z = setting.latent(spec.latent)
            d = dims.get(z.dim_arg)
        if d is not None and d > 1:
            vec = st.lists(one, min_size=d, max_size=d).flatmap(
                lambda v, d=d: st.sampled_from([v, v[:1] * 2 + v[2:]]).map(list))
            parts[spec.name] = st.one_of(one, vec)
        else:
            parts[spec.name] = one
    return st.fixed_dictionaries(parts)


def vae_hyperparameters(*, beta=(1e-2, 1e2), eta=(0.1, 10.0)):
    """Hypothesis strategy of ``dict(beta=..., eta_enc=..., eta_dec=...)`` (log-uniform in the
    given ``(low, high)`` ranges, checked when built): :func:`hyperparameters` of vae/learnable."""
    beta, eta = _check_range("beta", beta), _check_range("eta", eta)
    return hyperparameters("vae/learnable", ranges={"beta": beta, "eta_enc": eta, "eta_dec": eta})


@dataclass(frozen=True)
class Problem:
    """A whole problem instance (:func:`problems`): a setting, latent dims, data (a
    :class:`DataCase`, or a :class:`PairCase` for the CVAE), hyperparameters and centring."""

    setting: _settings.Setting
    latent_dim: int
    latent_dim2: Optional[int]
    case: object
    hyper: dict
    center: bool = True

    @property
    def data(self):
        """What the oracles and assertions take: ``X``, or ``(x, y)`` for the CVAE."""
        return self.case.data if isinstance(self.case, PairCase) else self.case.X

    @property
    def dims(self) -> dict:
        out = {"latent_dim": self.latent_dim}
        if self.latent_dim2 is not None:
            out["latent_dim2"] = self.latent_dim2
        return out

    def optimum(self):
        """The closed-form optimum (a :class:`~vaetheory.theory.Point`)."""
        return optimum(self.data, self.setting, self.latent_dim, self.latent_dim2,
                       center=self.center, **self.hyper)

    def optimal_parameters(self) -> dict:
        """One optimal set of parameters, named by role (biases when centred)."""
        return optimal_parameters(self.data, self.setting, self.latent_dim, self.latent_dim2,
                                  center=self.center, **self.hyper)


def problems(settings=None, *, n_samples=(6, 24), dim=(1, 5), latent_dim=(1, 4),
             latent_dim2=(1, 4), center=True, ranges=None, scale=1.0, unbounded=False):
    """Hypothesis strategy of :class:`Problem`: setting, latent dims, data and hyperparameters
    drawn together.

    ``settings``: records or names (default: every setting with a closed form, read from
    :data:`~vaetheory.settings.RECORDS`: the learned-decoder ones, docs/theory.md §12, included;
    their ``hyper`` has no ``eta_dec``); ``latent_dim`` / ``latent_dim2`` ints or ranges
    (``latent_dim2`` only for settings with a second latent); ``center``: True, False or None
    (either); the data come from :func:`data_matrices` (:func:`cvae_pairs` for settings whose
    spectrum is a residual) with ``n_samples``, ``dim`` (for the CVAE: each of x and y) and
    ``scale``; hyperparameters from :func:`hyperparameters` with ``ranges``. The defaults keep
    an example well under a millisecond of numpy. ``unbounded``: also draw learned-decoder
    instances whose loss has no minimum (latent dim >= rank and more outputs than beta x rank,
    docs/theory.md §12.2; :meth:`Problem.optimum` then has ``learned["unbounded"]`` and an
    optimal loss of -inf); by default they are rejected (``hypothesis.assume``).
    """
    from hypothesis import assume
    from hypothesis import strategies as st

    chosen = ([s for s in _settings.RECORDS if s.covered] if settings is None
              else [resolve_setting(s) for s in settings])
    if not chosen:
        raise ParameterError("settings is empty")
    for s in chosen:
        if not s.covered:
            raise ParameterError(f"{s.name} has no closed form: no optimum to test against")
    if ranges is not None and not isinstance(ranges, dict):
        raise ParameterError("ranges must be a dict of (low, high) per hyperparameter")
    l1, l2 = _check_ints("latent_dim", latent_dim, 1), _check_ints("latent_dim2", latent_dim2, 1)
    if center not in (None, True, False):
        raise ParameterError(f"center must be True, False or None, got {center!r}")
    data = data_matrices(n_samples=n_samples, dim=dim, scale=scale)
    n_lo, n_hi = _check_ints("n_samples", n_samples, 2)
    pairs = cvae_pairs(n_samples=(max(4, n_lo), max(4, n_hi)), x_dim=dim, y_dim=dim, scale=scale)

    @st.composite
    def build(draw):
        s = draw(st.sampled_from(chosen))
        d1 = draw(st.integers(*l1))
        d2 = draw(st.integers(*l2)) if s.has_second_latent else None
        rng = {k: v for k, v in (ranges or {}).items() if k in s.names}
        hyper = draw(hyperparameters(s, latent_dim=d1, latent_dim2=d2, ranges=rng))
        case = draw(pairs if s.spectrum_kind == "residual" else data)
        c = draw(st.booleans()) if center is None else center
        problem = Problem(s, d1, d2, case, hyper, c)
        if s.learned_decoder and not unbounded:
            assume(not problem.optimum().learned["unbounded"])
        return problem

    return build()


# ------------------------------------------------------------------------------------------
# oracles


def optimum(data, setting, latent_dim, latent_dim2=None, *, center=None, **hyper):
    """The closed-form optimum of ``setting`` on ``data`` (an array, ``(x, y)`` for the CVAE, a
    Selection, a Spectrum or Moments), at one hyperparameter point: a
    :class:`~vaetheory.theory.Point` (singular values, stds, KL and ``E[mu^2]`` per dim, collapsed
    counts, optimal loss, ``matrices()``)."""
    setting = resolve_setting(setting, hyper)
    spectrum, _, _, _ = _audit._data(data, setting, center, with_basis=True)
    d2 = latent_dim2 if setting.has_second_latent else None
    h = _settings.point_hyper(setting, hyper, latent_dim, d2 if d2 is not None else latent_dim)
    return setting.solve(spectrum, latent_dim, d2, **h).at()


def optimal_parameters(data, setting, latent_dim, latent_dim2=None, *, center=None, **hyper):
    """One optimal set of parameters, named by role (``W``, ``U``, ``log_var`` ...; biases
    ``encoder_bias`` ... when centred): :meth:`~vaetheory.theory.Point.matrices` of
    :func:`optimum`."""
    return optimum(data, setting, latent_dim, latent_dim2, center=center, **hyper).matrices()


def expected(setting, spectrum, latent_dim, latent_dim2=None, **hyper):
    """The closed-form :class:`~vaetheory.theory.Solution` of ``setting`` (hyperparameters may be
    grids); ``spectrum`` a :class:`Spectrum` or eigenvalues (of the setting's kind)."""
    setting = resolve_setting(setting, hyper)
    if not isinstance(spectrum, Spectrum):
        kind = "residual" if setting.spectrum_kind == "residual" else "data"
        spectrum = spectrum_from_eigenvalues(spectrum, kind=kind)
    return setting.solve(spectrum, latent_dim, latent_dim2, **hyper)


def expected_vae(spectrum, latent_dim, *, sigma=None, **hyper):
    """The closed-form optimum of the standard VAE: learnable variance, or fixed if ``sigma``."""
    if not isinstance(spectrum, Spectrum):
        spectrum = spectrum_from_eigenvalues(spectrum)
    if sigma is None:
        return vae_learnable_sigma(spectrum, latent_dim, **hyper)
    return vae_fixed_sigma(spectrum, latent_dim, sigma, **hyper)


# ------------------------------------------------------------------------------------------
# assertions


def _message(head, result):
    from .report import audit_lines

    return head + "\n" + "\n".join("  " + line for line in audit_lines(result))


def assert_at_optimum(params, data, setting, *, mapping=None, layout="out_in", center=None,
                      loss_rtol=LOSS_RTOL, sv_rtol=SV_RTOL, latent_dim=None, latent_dim2=None,
                      **hyper):
    """Assert that trained parameters sit at the closed-form global optimum.

    Evaluates the exact expected loss of ``params`` on ``data`` (:func:`vaetheory.audit.audit`:
    the loss of docs/theory.md §1 with the biases of §1.5 when ``center``) and compares it with
    the optimum of ``setting`` at ``hyper``: passes iff the relative loss gap is at most
    ``loss_rtol`` and every map's sorted singular values are within ``sv_rtol`` of their scale
    (``sv_rtol=None``: the loss alone). Arguments as for :func:`vaetheory.audit.audit`.

    Returns
    -------
    Audit
        When it passes (the numbers, for further checks).

    Raises
    ------
    AssertionError
        Otherwise, with the verdict, the loss gap (weights and biases), the singular values
        found vs expected per map, the collapsed dims found vs predicted and hints at the
        usual bugs (a missing factor 2 in the KL, missing biases, a transposed matrix).
    ParameterError, DataError
        Parameters that cannot be read (the message names the parameter).
    """
    result = _audit.audit(params, data, setting, mapping=mapping, layout=layout, center=center,
                          latent_dim=latent_dim, latent_dim2=latent_dim2, loss_rtol=loss_rtol,
                          sv_rtol=sv_rtol, **hyper)
    if result.verdict == Verdict.NO_OPTIMUM:
        raise AssertionError(_message(
            f"{result.setting.name} has no optimum here (NO OPTIMUM): "
            f"{result.decoder_variance['reason']}, so the loss falls without bound as eta_dec -> 0 "
            "(docs/theory.md §12.2)", result))
    if not result.passed:
        raise AssertionError(_message(
            f"the parameters are not at the optimum of {result.setting.name}: {result.verdict}, "
            f"relative loss gap {result.relative_gap:.3g} (at most {loss_rtol:g} allowed)", result))
    return result


def assert_collapse_matches(params, data, setting, *, rule="kl", delta=DELTA, mapping=None,
                            layout="out_in", center=None, latent_dim=None, latent_dim2=None,
                            **hyper):
    """Assert that the trained model collapses the latent dims the theory predicts, under a
    named rule (docs/theory.md §7):

    * ``"kl"`` (default, what people log): dim j is collapsed iff ``KL_j <= delta`` nats (with a
      fixed encoder variance only the mean part of the KL can vanish, so that part is used);
    * ``"au"``: active units, collapsed iff ``Var_x E[z_j|x] <= delta`` (Burda et al. 2016);
    * ``"exact"``: ``KL_j <= 1e-6`` nats (mean part for fixed variances) -- for float64
      optimisers, not float32 training.

    The prediction applies the same rule to the optimum's per-dim KL / ``E[mu^2]``
    (:attr:`Solution.kl`, :attr:`Solution.mean_sq`), so a dim that is active at the optimum but
    below ``delta`` counts as collapsed on both sides; where a fixed isotropic or tied variance
    leaves a rotation free the prediction is the range of counts over the rotations
    (the theory's [min, max] for ``"exact"``). Other arguments as for :func:`assert_at_optimum`
    (no loss tolerance: this checks collapse only).

    Returns the per-latent :class:`~vaetheory.audit.LatentCollapse` when it passes; raises
    AssertionError (with the audit) otherwise.
    """
    result = _audit.audit(params, data, setting, mapping=mapping, layout=layout, center=center,
                          latent_dim=latent_dim, latent_dim2=latent_dim2, rule=rule, delta=delta,
                          **hyper)
    if not result.collapse_matches:
        bad = [f"{z}: {len(c.found)} collapsed, predicted "
               + (str(c.predicted[0]) if c.predicted[0] == c.predicted[1]
                  else f"{c.predicted[0]} to {c.predicted[1]}")
               for z, c in result.collapse.items() if not c.matches]
        raise AssertionError(_message(f"collapse under rule {result.rule} (delta "
                                      f"{result.delta:g}) differs from the prediction: "
                                      + "; ".join(bad), result))
    return result.collapse


def collapsed_by_mean(W, A, *, tol=1e-6):
    """Number of latent dims whose posterior mean is (numerically) zero on the data.

    Uses ``E[(W x)_j^2] = (W A W^T)_jj`` relative to the largest (``tol``), not the row norms of W (rows
    can be large in the null space of A without carrying any signal; docs/theory.md §6, §7).
    """
    W, A = np.asarray(W, float), np.asarray(A, float)
    energy = np.einsum("ij,jk,ik->i", W, A, W)
    # relative to the strongest dim, with a roundoff floor relative to the data's scale
    threshold = max(tol * float(np.max(energy)), 1e-13 * float(np.trace(A)), 1e-300)
    return int(np.sum(energy <= threshold))


def assert_singular_values_close(M, expected, *, atol=1e-4, rtol=1e-4):
    """Assert that the sorted singular values of matrix ``M`` equal ``expected`` (sorted, zero-padded
    to the longer length)."""
    s = np.linalg.svd(np.asarray(M, float), compute_uv=False)
    e = np.sort(np.asarray(expected, float))[::-1]
    n = max(s.size, e.size)
    s, e = np.pad(s, (0, n - s.size)), np.pad(e, (0, n - e.size))
    np.testing.assert_allclose(s, e, atol=atol, rtol=rtol,
                               err_msg="singular values differ from the closed-form optimum")

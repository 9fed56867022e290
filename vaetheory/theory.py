"""Spectra + hyperparameters -> closed-form global optima of the linear beta-ELBO.

One public function per theorem (notation and losses: docs/theory.md; Dang, Tran, Nguyen & Ho,
ICLR 2024). What each setting is (its hyperparameters, latents, maps, thresholds) is its record in
:mod:`vaetheory.settings`:

==========================  =================================================  ===============
function                    setting                                            source
==========================  =================================================  ===============
:func:`vae_fixed_sigma`     VAE, fixed diagonal encoder variance               Theorem 1 (§2)
:func:`vae_learnable_sigma` VAE, learnable diagonal encoder variance           Theorem 4 (§3)
:func:`cvae_learnable_sigma` CVAE, learnable encoder variance                  Theorem 2 (§4)
:func:`cvae_fixed_sigma`    CVAE, fixed diagonal encoder variance              §4b (not in paper)
:func:`mhvae_learnable_sigma2` two-latent HVAE, Sigma1 = sigma1^2 I, Sigma2 learnable  Theorem 3 (§5.1)
:func:`mhvae_fixed_sigma2`  two-latent HVAE, Sigma1, Sigma2 both fixed isotropic  Theorem 5 (§5.2)
==========================  =================================================  ===============

Every hyperparameter may be a scalar or an array; they are broadcast together into a grid and
every output has that grid's shape (per-dimension outputs get one more trailing axis). There is
no Python loop over grid points or singular values.

All functions return a :class:`Solution`. Its per-dimension arrays are indexed by **mode**: entry
``i`` belongs to the latent dimension carrying the i-th largest spectral value (for the z2 of the
hierarchical VAE: the z2 dim paired with z1 mode i, then the unpaired ones), in every array of the
Solution, its :class:`Point` and the JSON -- so ``critical[name][..., i]``, ``posterior_std[..., i]``
and ``singular_values[...][..., i]`` describe the same dimension. Each mode's state is decided once
(:mod:`vaetheory._closed_forms`); counts, ranks and singular values derive from that decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

from . import _closed_forms as cf
from . import settings as _settings
from ._validation import latent_dim as _latent_dim
from .errors import NotCoveredError, ParameterError
from .moments import Spectrum

__all__ = [
    "Point",
    "Solution",
    "WaterLine",
    "cvae_fixed_sigma",
    "cvae_learnable_sigma",
    "mhvae_fixed_sigma2",
    "mhvae_learnable_sigma2",
    "solve",
    "vae_fixed_sigma",
    "vae_learnable_sigma",
    "water_fixed",
    "water_learnable",
    "water_mhvae_fixed",
    "water_mhvae_learnable",
    "water_learned_decoder",
    "vae_learnable_sigma_learned_decoder",
    "vae_fixed_sigma_learned_decoder",
    "cvae_learnable_sigma_learned_decoder",
    "cvae_fixed_sigma_learned_decoder",
]

ROTATION_NOTE = (
    "{latent}: fixed isotropic or tied encoder variances leave a rotation of the latent space free, "
    "so which (and how many) dims have a zero posterior mean is not determined: a [min, max] range"
)


@dataclass(frozen=True)
class Solution:
    """Closed-form global optimum over a hyperparameter grid.

    Attributes
    ----------
    model : {"vae", "cvae", "mhvae"}
    variance : {"learnable", "fixed", "sigma2-learnable", "sigma2-fixed"}
    theorem : str
        Where the closed form comes from.
    spectrum : Spectrum
        The spectrum used (with its provenance: centring, sample count, rank).
    params : dict of str -> ndarray
        Hyperparameters broadcast to the grid shape (per-dimension sigma: grid shape + (d,)).
    latent_dims : dict of str -> int
        ``{"z": d1}`` or ``{"z1": d1, "z2": d2}``.
    singular_values : dict of str -> ndarray (*grid, d)
        Singular values of each learned map, in mode order, one per latent dimension:
        ``encoder`` (in whitened coordinates, ``V = W P_A Phi^{1/2}``) and ``decoder`` for the VAE/CVAE;
        ``encoder1`` (x -> z1, whitened), ``decoder1`` (z1 -> x), ``encoder2`` (z1 -> z2),
        ``decoder2`` (z2 -> z1) for the hierarchical VAE.
    posterior_std : dict of str -> ndarray (*grid, d)
        Learned encoder standard deviations, in mode order; empty when none is learned.
    ranks : dict of str -> int ndarray (*grid)
        Rank of each map (number of non-zero singular values).
    collapsed_min, collapsed_max : dict of str -> int ndarray (*grid)
        Number of collapsed latent dimensions per latent variable. Equal where the theory fixes the
        count; a range where a free rotation leaves it open (see ``exact``).
    exact : dict of str -> bool
        Whether the collapsed count of each latent is determined.
    critical : dict of str -> ndarray (*grid, d)
        Per latent dimension (mode order), the hyperparameter value at which it changes state,
        others held fixed; ``critical_direction[name]`` says whether the dimension is active
        "below" or "above" it. NaN where a dimension can never be active. The rule holds at the
        value itself: at ``critical`` the dim is in its inactive state (docs/theory.md §9).
    optimal_loss : ndarray (*grid)
        Global minimum of L (docs/theory.md §1 convention, additive constants dropped); NaN where
        it is not representable in float64 (a note says so).
    notes : tuple of str
        Caveats a reader must see (rotation freedom, what "collapse" means with fixed variances).
    decoder : {"fixed", "learned"}
        Whether eta_dec was given (``"fixed"``) or learned (docs/theory.md §12). With a learned
        decoder variance ``optimal_loss`` is the full per-sample negative beta-ELBO in nats
        (nothing dropped), and eta_dec is not in ``params`` but in ``learned``.
    learned : dict of str -> ndarray (*grid)
        Learned-decoder settings only: ``eta_dec`` (the learned decoder std), ``u`` (its variance
        ``eta_dec^2``), ``kappa`` (the effective ``beta u``), ``unbounded`` (bool: the loss has no
        minimum there; the other entries are NaN) and ``flat`` (bool: every u in ``(0, u]``
        attains the minimum). Empty otherwise.

    Also (computed on first use): :attr:`kl` (per-dim KL of the posterior from the prior, nats),
    :attr:`mean_sq` (per-dim ``E[mu_j(x)^2]``), :attr:`rate` (total KL) and :attr:`distortion`
    (expected reconstruction error ``E||x - U z||^2``) at the optimum (docs/theory.md §7, §11).
    """

    model: str
    variance: str
    theorem: str
    spectrum: Spectrum
    params: Dict[str, np.ndarray]
    latent_dims: Dict[str, int]
    singular_values: Dict[str, np.ndarray]
    posterior_std: Dict[str, np.ndarray]
    ranks: Dict[str, np.ndarray]
    collapsed_min: Dict[str, np.ndarray]
    collapsed_max: Dict[str, np.ndarray]
    exact: Dict[str, bool]
    critical: Dict[str, np.ndarray]
    critical_direction: Dict[str, str]
    optimal_loss: np.ndarray
    notes: Tuple[str, ...] = ()
    decoder: str = "fixed"
    learned: Dict[str, np.ndarray] = field(default_factory=dict)
    _modes: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _extra: Dict[str, object] = field(default_factory=dict, repr=False)

    @property
    def grid_shape(self):
        return self.optimal_loss.shape

    @property
    def kl(self) -> Dict[str, np.ndarray]:
        """Per latent, the per-dim KL(q(z_j|.) || prior) at the optimum in nats (*grid, d), mode
        order; the hierarchical z1 entry is the consistency term E[log q(z1|x) - log p(z1|z2)]."""
        return self._extra["kl"]

    @property
    def mean_sq(self) -> Dict[str, np.ndarray]:
        """Per latent, ``E[mu_j(x)^2]`` of each dim's posterior mean (*grid, d), mode order (the
        variance of the posterior mean over the data when the data are centred)."""
        return self._extra["mean_sq"]

    @property
    def rate(self) -> np.ndarray:
        """Total KL to the prior at the optimum (nats, *grid): the sum of :attr:`kl`."""
        return self._extra["summary"]["rate"]

    @property
    def distortion(self) -> np.ndarray:
        """Expected reconstruction error ``E||x - U z||^2`` at the optimum (*grid)."""
        return self._extra["summary"]["distortion"]

    @property
    def setting(self):
        """The record of this solution's setting (:mod:`vaetheory.settings`)."""
        return _settings.get(self.model, self.variance, self.decoder)

    def at(self, index=()) -> "Point":
        """The grid point ``index`` (a tuple with one entry per grid axis; ``()`` for a grid of
        one point): a :class:`Point` view, nothing copied."""
        return Point(self, _grid_index(self.grid_shape, index))

    def points(self):
        """Every grid point, in C order (the order of the tables and of the JSON points)."""
        return [Point(self, idx) for idx in np.ndindex(*self.grid_shape)]

    def collapsed(self, latent=None):
        """Collapsed count of ``latent`` (default: the only/first one): an int array if exact,
        else a ``(min, max)`` pair of int arrays."""
        latent = latent or next(iter(self.latent_dims))
        if self.exact[latent]:
            return self.collapsed_min[latent]
        return self.collapsed_min[latent], self.collapsed_max[latent]

    def matrices(self, index=()):
        """One member of the optimal set at grid point ``index``, in data coordinates.

        Requires a spectrum computed ``with_basis=True``. Returns a dict of arrays named as in
        :mod:`vaetheory.losses` (``W``, ``U``, ``log_var`` ...; CVAE ``W1, W2, U1, U2``; hierarchical
        ``W1, U1, W2, U2, log_var1, log_var2``) plus biases (``encoder_bias``, ``decoder_bias`` ...)
        when the spectrum was centred, and with a learned decoder variance ``log_u = log u*``
        (docs/theory.md §12; absent where the loss has no minimum). Where rotations are free (fixed isotropic variances) any
        rotation of the latent space gives another optimum.
        """
        return self.at(index).matrices()


def _grid_index(shape, index):
    index = tuple(int(i) for i in np.atleast_1d(index)) if index != () else ()
    if index == () and int(np.prod(shape)) == 1:
        index = (0,) * len(shape)  # a single point, whatever its grid shape
    if len(index) != len(shape) or any(not 0 <= i < n for i, n in zip(index, shape)):
        raise ParameterError(f"index {index} does not address a point of the grid {shape}")
    return index


_PARAM_ORDER = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma", "sigma1", "sigma2")


@dataclass(frozen=True)
class Point:
    """One grid point of a :class:`Solution`: every quantity of the solution at ``index``.

    Per-dimension arrays are in mode order (entry i = the latent dim carrying the i-th largest
    spectral value), as in the Solution.
    """

    solution: "Solution"
    index: Tuple[int, ...]

    def value(self, arr):
        """A grid-shaped (or broadcastable) array at this point."""
        return np.broadcast_to(np.asarray(arr), self.solution.grid_shape)[self.index]

    def vector(self, arr):
        """A per-dimension array ``(*grid, d)`` (or broadcastable, e.g. ``(d,)``) at this point."""
        arr = np.asarray(arr)
        return np.broadcast_to(arr, self.solution.grid_shape + arr.shape[-1:])[self.index]

    # ---- hyperparameters
    @property
    def hyper(self) -> Dict[str, object]:
        """The hyperparameters here: floats, and ``(d,)`` arrays for per-dim ones (``sigma``)."""
        setting = self.solution.setting
        out = {}
        for name, arr in self.solution.params.items():
            per_dim = setting.hyperparameter(name).kind == "vector"
            v = np.asarray(self.vector(arr) if per_dim else self.value(arr))
            out[name] = float(v) if v.ndim == 0 else v.astype(np.float64)
        return out

    @property
    def params(self) -> Dict[str, object]:
        """Hyperparameters for people and JSON: floats (a per-dim vector with equal entries is
        one float, else a list), then ``latent_dim`` (and ``latent_dim2``)."""
        out = {}
        hyper = self.hyper
        for name in sorted(hyper, key=lambda k: _PARAM_ORDER.index(k) if k in _PARAM_ORDER else 99):
            v = np.asarray(hyper[name])
            if v.ndim == 0:
                out[name] = float(v)
            elif np.all(v == v.flat[0]):
                out[name] = float(v.flat[0])  # isotropic
            else:
                out[name] = [float(x) for x in v]  # per latent dim, in the order given
        dims = list(self.solution.latent_dims.values())
        out["latent_dim"] = int(dims[0])
        if len(dims) > 1:
            out["latent_dim2"] = int(dims[1])
        return out

    @property
    def latent_dims(self):
        return self.solution.latent_dims

    # ---- the optimum
    @property
    def singular_values(self) -> Dict[str, np.ndarray]:
        return {k: np.asarray(self.vector(v), dtype=float)
                for k, v in self.solution.singular_values.items()}

    @property
    def posterior_std(self) -> Dict[str, np.ndarray]:
        return {k: np.asarray(self.vector(v), dtype=float)
                for k, v in self.solution.posterior_std.items()}

    @property
    def critical(self) -> Dict[str, np.ndarray]:
        return {k: np.asarray(self.vector(v), dtype=float)
                for k, v in self.solution.critical.items()}

    @property
    def ranks(self) -> Dict[str, int]:
        return {k: int(self.value(v)) for k, v in self.solution.ranks.items()}

    def active(self, latent) -> int:
        """Active modes of ``latent``: the rank of its encoder map."""
        return self.ranks[self.solution.setting.latent(latent).encoder]

    def collapsed_range(self, latent) -> Tuple[int, int]:
        sol = self.solution
        return int(self.value(sol.collapsed_min[latent])), int(self.value(sol.collapsed_max[latent]))

    @property
    def collapsed(self) -> Dict[str, object]:
        """Per latent: an int where the count is determined, else ``[min, max]``."""
        out = {}
        for latent in self.solution.latent_dims:
            lo, hi = self.collapsed_range(latent)
            out[latent] = lo if self.solution.exact[latent] else [lo, hi]
        return out

    @property
    def optimal_loss(self) -> float:
        return float(self.value(self.solution.optimal_loss))

    @property
    def learned(self) -> Dict[str, object]:
        """A learned decoder variance here (docs/theory.md §12): ``eta_dec``, ``u``, ``kappa``
        (floats; NaN where unbounded), ``unbounded`` and ``flat`` (bools); empty for a fixed
        ``eta_dec``."""
        out = {}
        for k, v in self.solution.learned.items():
            x = self.value(v)
            out[k] = bool(x) if np.asarray(x).dtype == bool else float(x)
        return out

    @property
    def kl(self) -> Dict[str, np.ndarray]:
        return {k: np.asarray(self.vector(v), dtype=float) for k, v in self.solution.kl.items()}

    @property
    def mean_sq(self) -> Dict[str, np.ndarray]:
        return {k: np.asarray(self.vector(v), dtype=float)
                for k, v in self.solution.mean_sq.items()}

    @property
    def rate(self) -> float:
        return float(self.value(self.solution.rate))

    @property
    def distortion(self) -> float:
        return float(self.value(self.solution.distortion))

    def logged(self, delta=0.01):
        """What a training log shows here: per-dim KL, ``Var_x E[z_j|x]``, posterior stds, the
        rate, the distortion and the active-dim counts of each rule
        (:func:`vaetheory.logged.logged`, docs/theory.md §7, §11)."""
        from .logged import logged

        return logged(self, delta)

    def mode(self, name) -> np.ndarray:
        """A per-mode array of the closed form (``theta``, ``omega``, ``lambda``, ...) here."""
        return np.asarray(self.vector(self.solution._modes[name]), dtype=float)

    def matrices(self):
        """One member of the optimal set here, in data coordinates (see :meth:`Solution.matrices`)."""
        from ._construct import optimal_matrices

        return optimal_matrices(self)

    @property
    def water_line(self) -> "WaterLine":
        """What decides each dim of the critical latent here: its spectral value against a level
        (:class:`WaterLine`; the setting's record names the function, e.g. :func:`water_fixed`)."""
        fn = self.solution.setting.water_function
        if fn is None:
            raise NotCoveredError(f"{self.solution.setting.name} has no closed form")
        return fn(self)


@dataclass(frozen=True)
class WaterLine:
    """Per dim of the critical latent (mode order), the spectral value and the level it must
    exceed for the dim to be active: dim i is active iff ``values[i] > level[i]``.

    Both are in eigenvalue units (``theta_i^2`` of the data, or the residual ``e_i`` for the
    CVAE), so that a spectrum drawn as eigenvalues can carry the level as a "water line". The
    level is ``-inf`` where a dim is active whatever its value (hierarchical regime (a)) and
    ``+inf`` where it can never be (a z2 dim without a z1 partner).

    Attributes
    ----------
    latent : str
        The latent the critical values refer to (``Setting.critical_latent``).
    values, level : ndarray (d,)
    formula : str
        The level in the notation of docs/theory.md (ASCII).
    section : str
        Where the comparison is derived.
    """

    latent: str
    values: np.ndarray
    level: np.ndarray
    formula: str
    section: str

    @property
    def active(self) -> np.ndarray:
        return self.values > self.level


def _water_values(point, latent):
    d = point.solution.latent_dims[latent]
    return d, point.solution.spectrum.padded(d)


def water_learnable(point) -> WaterLine:
    """Learnable encoder variance, VAE (docs/theory.md §3) and CVAE (§4): mode i is active iff
    ``theta_i^2 > beta eta_dec^2`` (CVAE: ``e_i > beta eta_dec^2``), one level for every mode."""
    latent = point.solution.setting.critical_latent
    d, values = _water_values(point, latent)
    h = point.hyper
    return WaterLine(latent, values, np.full(d, h["beta"] * (h["eta_dec"] * h["eta_dec"])), "beta eta_dec^2",
                     point.solution.setting.section)


def water_fixed(point) -> WaterLine:
    """Fixed encoder variance, VAE (docs/theory.md §2) and CVAE (§4b): mode i is active iff
    ``theta_i > s sigma'_i`` with ``s = sqrt(beta) eta_dec / eta_enc`` and ``sigma'`` the stds
    sorted ascending, i.e. ``theta_i^2 > beta (eta_dec / eta_enc)^2 sigma'_i^2`` (CVAE:
    ``e_i``). A step line when the sigmas differ."""
    latent = point.solution.setting.critical_latent
    d, values = _water_values(point, latent)
    h = point.hyper
    sig = np.sort(np.broadcast_to(np.asarray(h["sigma"], dtype=np.float64), (d,)))
    c = h["eta_dec"] / h["eta_enc"]
    level = h["beta"] * (c * c) * (sig * sig)
    return WaterLine(latent, values, level, "beta (eta_dec/eta_enc)^2 sigma'_i^2",
                     point.solution.setting.section)


def _water_mhvae(point, n2, formula):
    """docs/theory.md §5.4: the z2 dim of mode i (i < min(d1, d2)) is active iff
    ``beta1 sigma1^2 > beta2 n2`` or ``theta_i > beta2 n2 / (sqrt(beta1) sigma1)``; squared, the
    level is ``(beta2 n2)^2 / (beta1 sigma1^2)``, or ``-inf`` in the first case. z2 dims without
    a z1 partner are never active (``+inf``)."""
    sol = point.solution
    latent = sol.setting.critical_latent
    d, values = _water_values(point, latent)
    h = point.hyper
    B, gate = h["beta2"] * n2, h["beta1"] * (h["sigma1"] * h["sigma1"])
    paired = np.arange(d) < min(sol.latent_dims.values())
    level = np.where(paired, -np.inf if gate > B else B * B / gate, np.inf)
    return WaterLine(latent, values, level, formula, "§5.4")


def water_mhvae_learnable(point) -> WaterLine:
    """Theorem 3 (docs/theory.md §5.4, Sigma2 learnable): ``n2 = eta_dec^2``."""
    ed = point.hyper["eta_dec"]
    return _water_mhvae(point, ed * ed, "(beta2 eta_dec^2)^2 / (beta1 sigma1^2)")


def water_mhvae_fixed(point) -> WaterLine:
    """Theorem 5 (docs/theory.md §5.4, Sigma2 fixed): ``n2 = c^2 sigma2^2``, ``c = eta_dec/eta_enc``."""
    h = point.hyper
    c = h["eta_dec"] / h["eta_enc"]
    n2 = (c * c) * (h["sigma2"] * h["sigma2"])
    return _water_mhvae(point, n2, "(beta2 c^2 sigma2^2)^2 / (beta1 sigma1^2)")


def water_learned_decoder(point) -> WaterLine:
    """Learned decoder variance (docs/theory.md §12): the level of :func:`water_learnable` or
    :func:`water_fixed` at the learned ``u = eta_dec^2`` (``beta u``, or ``beta (u / eta_enc^2)
    sigma'_i^2``); 0 where the loss is unbounded (the limit u -> 0)."""
    sol = point.solution
    latent = sol.setting.critical_latent
    d, values = _water_values(point, latent)
    h = point.hyper
    u = float(point.value(sol.learned["u"]))
    u = 0.0 if not np.isfinite(u) else u
    if sol.setting.latent(latent).learned:
        level, formula = np.full(d, h["beta"] * u), "beta u (u = learned eta_dec^2)"
    else:
        sig = np.sort(np.broadcast_to(np.asarray(h["sigma"], dtype=np.float64), (d,)))
        level = h["beta"] * (u / h["eta_enc"] ** 2) * sig ** 2
        formula = "beta (u / eta_enc^2) sigma'_i^2 (u = learned eta_dec^2)"
    return WaterLine(latent, values, level, formula, sol.setting.section)


# --------------------------------------------------------------------------------------------
# helpers


class _Memo:
    """Compute the per-dimension arrays of a solution once, on first use."""

    def __init__(self, fn):
        self._fn, self._value = fn, None

    def __call__(self):
        if self._value is None:
            self._value = self._fn()
            self._fn = None
        return self._value


class _LazyArrays(Mapping):
    """Read-only mapping whose arrays come from a shared :class:`_Memo` (part ``part``).

    Grid sweeps that only need counts and losses never pay for (grid x latent dim) arrays.
    """

    def __init__(self, memo, part, keys):
        self._memo, self._part, self._keys = memo, part, tuple(keys)

    def __getitem__(self, key):
        if key not in self._keys:
            raise KeyError(key)
        return self._memo()[self._part][key]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)

    def __repr__(self):
        return f"<lazy {self._part}: {', '.join(self._keys)}>"


def _lazy(memo, keys):
    """The four lazily filled fields of a Solution, from ``memo() -> {part: {key: array}}``."""
    return {part: _LazyArrays(memo, part, ks) for part, ks in keys.items()}


def _spectrum(spectrum, kind):
    if not isinstance(spectrum, Spectrum):
        raise TypeError(
            "spectrum must be a vaetheory Spectrum (from empirical_spectrum, "
            "empirical_residual_spectrum or spectrum_from_eigenvalues), got "
            f"{type(spectrum).__name__}"
        )
    if spectrum.kind != kind:
        want = {"data": "a data spectrum (empirical_spectrum)",
                "residual": "a residual spectrum of y given x (empirical_residual_spectrum, or "
                            "spectrum_from_eigenvalues(e, kind='residual'))"}[kind]
        raise ParameterError(f"this theorem needs {want}, got a {spectrum.kind} spectrum")
    return spectrum


def _grid(**named):
    """Validate positive hyperparameters and broadcast them; returns dict of (*grid, 1) arrays."""
    arrays = {k: _settings.check_value(k, v) for k, v in named.items()}
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        shapes = ", ".join(f"{k}{a.shape}" for k, a in arrays.items())
        raise ParameterError(f"hyperparameter shapes do not broadcast: {shapes}") from None
    return shape, {k: np.broadcast_to(a, shape)[..., None] for k, a in arrays.items()}


def _sigma_vector(name, sigma, d, grid_shape):
    """Per-dimension stds broadcast to (*grid, d); a scalar means isotropic."""
    s = _settings.check_value(name, sigma)
    if s.ndim == 0 or s.shape[-1] == 1:
        s = s[..., None] if s.ndim == 0 else s
    elif s.shape[-1] != d:
        raise ParameterError(f"{name} has {s.shape[-1]} entries per point but the latent dim is {d}: "
                         "give one value (isotropic) or one per latent dimension")
    try:
        shape = np.broadcast_shapes(s.shape[:-1], grid_shape)
    except ValueError:
        raise ParameterError(f"{name} shape {s.shape} does not broadcast with the grid {grid_shape}") from None
    return np.broadcast_to(s, shape + (d,)), shape


def _isotropic(name, sigma):
    s = _settings.check_value(name, sigma)
    if s.ndim >= 1 and s.shape[-1] > 1:
        reason = _settings.get("mhvae", "sigma2-fixed").not_covered({name: s})
        if reason is not None:
            raise NotCoveredError(reason)
        s = s[..., 0]
    return s


def _theta(spectrum, d):
    """Spectral values t_i = sqrt(eigenvalue_i) (theta_i; sqrt(e_i) for the CVAE) padded with
    zeros (or truncated) to ``d``, and the full array (docs/theory.md §0.3)."""
    full = np.asarray(spectrum.theta, dtype=np.float64)
    t = np.zeros(d)
    k = min(d, full.size)
    t[:k] = full[:k]
    return t, full


def _unrepresentable(loss, notes, scale=None):
    """NaN where the optimal loss is not a finite float64, with a note saying so.

    ``scale`` (broadcastable to the grid, data units): the largest of the values whose squares
    make up the loss (the top theta and the hyperparameters' sqrt(kappa)-type thresholds). Where
    ``scale**2`` is below the smallest normal float64 every part of the loss is subnormal or 0, so
    the computed loss has lost its digits (data at 2^-680: a loss of ~1e-408 computes as 0): NaN
    too, never a silent 0 (docs/theory.md §9.11).
    """
    loss = np.asarray(loss, dtype=np.float64)
    bad = ~np.isfinite(loss)
    if scale is not None:
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            sc = np.asarray(scale, dtype=np.float64)
            bad = bad | ((sc > 0) & (sc * sc < np.finfo(np.float64).tiny))
    if np.any(bad):
        notes.append(f"the optimal loss is outside the float64 range at {int(np.sum(bad))} grid "
                     "point(s) (shown as null): the hyperparameters or the data are too large or "
                     "too small in these units for its value to be represented; counts, ranks "
                     "and thresholds are unaffected")
        loss = np.where(bad, np.nan, loss)
    return loss


def _loss_scale(t_full, *hyper):
    """The ``scale`` of :func:`_unrepresentable`: max(theta_1, the sqrt(kappa)-type values)."""
    t0 = float(t_full[0]) if t_full.size else 0.0
    out = np.asarray(t0)
    for h in hyper:
        out = np.maximum(out, np.where(np.isfinite(h), h, 0.0))
    return out


def _rotation_range(rank, d):
    """[min, max] zero-mean dims when an isotropic fixed variance leaves rotations free."""
    return np.where(rank >= 1, 0, d), d - rank


# --------------------------------------------------------------------------------------------
# shared docstring blocks (SciPy style): %(name)s in a docstring is replaced by the block

_DOCS = {
    "spectrum_data": """spectrum : Spectrum
        Data spectrum (``kind="data"``, from :func:`~vaetheory.moments.empirical_spectrum`,
        :func:`~vaetheory.moments.load_spectrum` or
        :func:`~vaetheory.moments.spectrum_from_eigenvalues`); theta_i = sqrt(eigenvalue_i),
        zero beyond the rank (docs/theory.md §0.3).""",
    "spectrum_residual": """spectrum : Spectrum
        Residual spectrum of y given x (``kind="residual"``, from
        :func:`~vaetheory.moments.empirical_residual_spectrum`, or
        ``spectrum_from_eigenvalues(e, kind="residual")``): the eigenvalues e_i of
        E = B - C A^+ C^T (docs/theory.md §4).""",
    "latent_dim": """latent_dim : int
        d1, the latent dimension (may exceed the rank of the spectrum: theta_i = 0 there).""",
    "sigma": """sigma : float or array (..., d1)
        Fixed encoder standard deviations: one value (isotropic) or one per latent dimension;
        leading axes broadcast with the other hyperparameters.""",
    "hyper": """beta, eta_enc, eta_dec : float or array, default 1
        KL weight, prior std and decoder noise std; arrays broadcast into a grid (every output
        has the grid's shape). Finite and > 0.""",
    "hyper2": """beta1, beta2 : float or array, default 1
        Weight of the z1 consistency term and KL weight of z2.
    eta_enc, eta_dec : float or array, default 1
        Prior std of z2 and decoder noise std (of x and of z1 given z2); arrays broadcast into
        a grid. Finite and > 0.""",
    "learned": """

    The decoder noise variance ``u = eta_dec^2`` is learned with the other parameters
    (sigma-VAE; at beta = 1 the learnable-variance VAE is probabilistic PCA), so ``eta_dec`` is
    not an argument: the Solution's ``learned`` dict holds the learned ``eta_dec``, ``u`` and the
    effective ``kappa = beta u`` per grid point, and ``optimal_loss`` is the full negative
    beta-ELBO per sample in nats (docs/theory.md §12.1). Critical values of beta account for u
    moving with beta.""",
    "returns": """Returns
    -------
    Solution
        The optimum over the whole grid: singular values of every map, learned stds, ranks,
        collapsed counts (exact or a [min, max] range), critical values per latent dim and the
        optimal loss; ``solution.at(index)`` reads one grid point.""",
}


def _doc(fn):
    text = fn.__doc__
    for name, block in _DOCS.items():
        text = text.replace(f"%({name})s", block)
    fn.__doc__ = text
    return fn


# --------------------------------------------------------------------------------------------
# standard VAE


@_doc
def vae_fixed_sigma(spectrum, latent_dim, sigma, *, beta=1.0, eta_enc=1.0, eta_dec=1.0) -> Solution:
    r"""Standard linear VAE with a fixed diagonal encoder covariance (Theorem 1; docs/theory.md §2).

    With :math:`s = \sqrt{\beta}\,\eta_{dec}/\eta_{enc}` and the given stds sorted ascending
    :math:`\sigma'_1 \le \dots \le \sigma'_{d_1}` (mode i is carried by the dim with the i-th smallest
    sigma):

    .. math::

        \omega_i = \sqrt{s(\theta_i - s\sigma'_i)_+/\sigma'_i},\quad
        \lambda_i = \sqrt{\sigma'_i(\theta_i - s\sigma'_i)_+/s},\quad
        \beta^*_i = \frac{\theta_i^2\eta_{enc}^2}{\eta_{dec}^2\sigma'^2_i}

    and :math:`L^* = \sum\theta_i^2 - \sum_i(\theta_i - s\sigma'_i)_+^2 + \beta c^2\sum\sigma_j^2
    - \kappa\sum\log\sigma_j^2`. With fixed variances "collapsed" means a zero posterior mean; the
    posterior equals the prior only if also ``sigma_j == eta_enc``. With tied sigmas the count is a
    [min, max] range (docs/theory.md §7).

    Parameters
    ----------
    %(spectrum_data)s
    %(latent_dim)s
    %(sigma)s
    %(hyper)s

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "data")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _fixed(spectrum, d1, sigma, beta, eta_enc, eta_dec, setting=_settings.get("vae", "fixed"))


@_doc
def vae_learnable_sigma(spectrum, latent_dim, *, beta=1.0, eta_enc=1.0, eta_dec=1.0) -> Solution:
    r"""Standard linear VAE with a learnable diagonal encoder covariance (Theorem 4; docs/theory.md §3).

    .. math::

        \omega_i = \sqrt{(\theta_i^2 - \beta\eta_{dec}^2)_+}/\eta_{enc},\quad
        \lambda_i = \frac{\eta_{enc}}{\theta_i}\sqrt{(\theta_i^2 - \beta\eta_{dec}^2)_+},\quad
        \sigma_i = \min(\eta_{enc}, \sqrt{\beta}\eta_{enc}\eta_{dec}/\theta_i)

    :math:`L^* = \mathrm{tr}A - \kappa\sum_i h(\theta_i^2/\kappa) + d_1\kappa(1 - \log\eta_{enc}^2)`,
    :math:`h(t) = t - 1 - \log t` for t > 1 else 0. Collapse is exact: mode i collapses iff
    :math:`\beta \ge \beta^*_i = \theta_i^2/\eta_{dec}^2`; collapsed dims equal the prior.

    Parameters
    ----------
    %(spectrum_data)s
    %(latent_dim)s
    %(hyper)s

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "data")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _learnable(spectrum, d1, beta, eta_enc, eta_dec, setting=_settings.get("vae", "learnable"))


def _fixed_grid(d1, sigma, **named):
    """The (*grid, 1) hyperparameters broadcast with the per-dim sigma: ``(shape, hp, sig, srt,
    isotropic)`` with ``srt`` the stds sorted ascending (mode i <-> the i-th smallest)."""
    shape, hp = _grid(**named)
    raw = _settings.check_value("sigma", sigma)
    isotropic = raw.ndim == 0 or raw.shape[-1] == 1
    sig, shape = _sigma_vector("sigma", sigma, d1, shape)
    hp = {k: np.broadcast_to(v, shape + (1,)) for k, v in hp.items()}
    srt = sig[..., :1] if isotropic else np.sort(sig, axis=-1)  # sigma'_1 <= ... <= sigma'_d1
    return shape, hp, sig, srt, isotropic


def _fixed(spectrum, d1, sigma, beta, eta_enc, eta_dec, *, setting):
    """Theorem 1 (§2) / §4b: mode i (i-th largest t) is carried by the dim with the i-th smallest
    sigma and is active iff t_i > s sigma'_i (:func:`_closed_forms.fixed_threshold`)."""
    grid = _fixed_grid(d1, sigma, beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    return _fixed_solution(spectrum, d1, *grid, setting=setting)


def _fixed_solution(spectrum, d1, shape, hp, sig, srt, isotropic, *, setting, loss_of=None,
                    notes=(), critical=None, params=None, learned=None):
    """The Theorem-1 optimum at the (*grid, 1) hyperparameters ``hp``; a learned-decoder caller
    (docs/theory.md §12.3) passes ``loss_of(r, thr)`` (its objective from the active counts and
    thresholds decided here), ``critical`` (a function), ``params`` and ``learned``."""
    b, ee, ed = hp["beta"], hp["eta_enc"], hp["eta_dec"]
    t, t_full = _theta(spectrum, d1)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        thr = cf.fixed_threshold(b, ee, ed, srt)                  # (*grid, 1) or (*grid, d1)
        if isotropic:
            r = cf.learnable_rank(t, thr[..., 0])                 # the same comparison t > thr
            P1, S2 = cf.prefix(t), cf.suffix(t_full * t_full)
            th = thr[..., 0]
            # active: 2 thr t; inactive dims of z: t^2 + thr^2; beyond d1: t^2 (docs §2)
            loss = (2.0 * th * np.take(P1, r) + (d1 - r) * th * th + np.take(S2, r)
                    - 2.0 * d1 * (b[..., 0] * ed[..., 0] ** 2) * np.log(srt[..., 0]))
            cmin = np.where(r >= 1, 0, d1) if d1 > 1 else 1 - r
            tied = d1 > 1
        else:
            active = t > thr                                      # a prefix (t desc, thr asc)
            r = np.count_nonzero(active, axis=-1)
            tail = cf.suffix(t_full * t_full)[min(d1, t_full.size)]
            loss = (np.sum(np.where(active, 2.0 * thr * t, t * t + thr * thr), axis=-1) + tail
                    - 2.0 * (b[..., 0] * ed[..., 0] ** 2) * np.sum(np.log(srt), axis=-1))
            # ties: per group of equal sigma holding k active modes, zero-mean dims range over
            # [0 if k >= 1 else m, m - k]; active modes occupy sorted positions < r
            new_group = np.ones(srt.shape, dtype=bool)
            new_group[..., 1:] = srt[..., 1:] != srt[..., :-1]
            group_start = np.maximum.accumulate(np.where(new_group, np.arange(d1), 0), axis=-1)
            cmin = np.count_nonzero(group_start >= r[..., None], axis=-1)
            tied = bool(np.any(~new_group[..., 1:])) if d1 > 1 else False
        if loss_of is not None:
            loss = loss_of(r, thr)
    notes = ["fixed encoder variance: a collapsed dim has a zero posterior mean; it equals the "
             "prior only if its sigma equals eta_enc"] + list(notes)
    if tied:
        notes.append(ROTATION_NOTE.format(latent="z"))
    loss = _unrepresentable(loss, notes, None if loss_of is not None
                            else _loss_scale(t_full, np.max(thr, axis=-1)))
    if params is None:
        params = {k: v[..., 0] for k, v in hp.items()}
        params["sigma"] = sig

    def detail():
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            sig_m = np.broadcast_to(srt, shape + (d1,))
            thr_m = np.broadcast_to(thr, shape + (d1,))
            active = cf.modes_below(r, d1)
            s_ = np.sqrt(b) * ed / ee
            md = cf.fixed_modes(t, thr_m, s_, sig_m, ee, active)
            crit = cf.fixed_critical(t, b, ee, ed, sig_m) if critical is None else critical()
        return {
            "singular_values": {"encoder": md["lambda"], "decoder": md["omega"]},
            "posterior_std": {},
            "critical": crit,
            "modes": {"theta": t, "omega": md["omega"], "lambda": md["lambda"],
                      "sigma_sorted": sig_m},
            "kl": {"z": md["kl"]}, "mean_sq": {"z": md["mean_sq"]},
            "summary": {"rate": np.sum(md["kl"], axis=-1),
                        "distortion": np.sum(md["distortion"], axis=-1)
                        + cf.suffix(t_full * t_full)[min(d1, t_full.size)]},
        }

    lazy = _lazy(_Memo(detail), {"singular_values": ("encoder", "decoder"), "posterior_std": (),
                                 "critical": setting.critical,
                                 "modes": ("theta", "omega", "lambda", "sigma_sorted"),
                                 "kl": ("z",), "mean_sq": ("z",),
                                 "summary": ("rate", "distortion")})
    return Solution(
        model=setting.model, variance=setting.variance, theorem=setting.theorem,
        spectrum=spectrum, params=params,
        latent_dims={"z": d1}, singular_values=lazy["singular_values"],
        posterior_std=lazy["posterior_std"], ranks={"encoder": r, "decoder": r},
        collapsed_min={"z": cmin}, collapsed_max={"z": d1 - r}, exact={"z": not tied},
        critical=lazy["critical"],
        critical_direction={n: setting.direction(n) for n in setting.critical},
        optimal_loss=loss, notes=tuple(notes), decoder=setting.decoder, learned=learned or {},
        _modes=lazy["modes"], _extra={k: lazy[k] for k in ("kl", "mean_sq", "summary")},
    )


def _learnable(spectrum, d1, beta, eta_enc, eta_dec, *, setting):
    """Theorem 4 (§3) / Theorem 2 (§4): mode i is active iff t_i > sqrt(beta) eta_dec."""
    shape, hp = _grid(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    return _learnable_solution(spectrum, d1, hp, setting=setting)


def _learnable_solution(spectrum, d1, hp, *, setting, r=None, loss=None, notes=(),
                        critical=None, params=None, learned=None):
    """The Theorem-4 optimum at the (*grid, 1) hyperparameters ``hp`` (``eta_dec`` may be 0: the
    limit u -> 0 of an unbounded learned-decoder problem, §12). A learned-decoder caller passes its
    own active counts ``r`` (decided with the same predicate), ``loss``, ``critical`` (a function
    returning the critical values), ``params`` and ``learned`` (docs/theory.md §12)."""
    b, ee, ed = hp["beta"], hp["eta_enc"], hp["eta_dec"]
    t, t_full = _theta(spectrum, d1)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        sk = cf.sqrt_kappa(b, ed)                               # (*grid, 1)
        if r is None:
            r = cf.learnable_rank(t, sk[..., 0])
        if loss is None:
            loss = cf.learnable_loss(t, t_full, d1, r, sk[..., 0], ee[..., 0])
    notes = list(notes)
    own = learned is None  # a learned decoder's loss is in nats: no squared data units
    loss = _unrepresentable(loss, notes, _loss_scale(t_full, sk[..., 0]) if own else None)

    def detail():
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            active = cf.modes_below(r, d1)
            md = cf.learnable_modes(t, sk, ee, active)
            crit = cf.learnable_critical(t, b, ed) if critical is None else critical()
            tail = cf.suffix(t_full * t_full)[min(d1, t_full.size)]
        return {
            "singular_values": {"encoder": md["lambda"], "decoder": md["omega"]},
            "posterior_std": {"z": md["sigma"]},
            "critical": crit,
            "modes": {"theta": t, "e": t * t, "omega": md["omega"], "lambda": md["lambda"],
                      "sigma": md["sigma"]},
            "kl": {"z": md["kl"]}, "mean_sq": {"z": md["mean_sq"]},
            "summary": {"rate": np.sum(md["kl"], axis=-1),
                        "distortion": np.sum(md["distortion"], axis=-1) + tail},
        }

    lazy = _lazy(_Memo(detail), {"singular_values": ("encoder", "decoder"),
                                 "posterior_std": ("z",), "critical": setting.critical,
                                 "modes": ("theta", "e", "omega", "lambda", "sigma"),
                                 "kl": ("z",), "mean_sq": ("z",),
                                 "summary": ("rate", "distortion")})
    return Solution(
        model=setting.model, variance=setting.variance, theorem=setting.theorem,
        spectrum=spectrum,
        params={k: v[..., 0] for k, v in hp.items()} if params is None else params,
        latent_dims={"z": d1},
        singular_values=lazy["singular_values"], posterior_std=lazy["posterior_std"],
        ranks={"encoder": r, "decoder": r},
        collapsed_min={"z": d1 - r}, collapsed_max={"z": d1 - r}, exact={"z": True},
        critical=lazy["critical"],
        critical_direction={n: setting.direction(n) for n in setting.critical},
        optimal_loss=loss, notes=tuple(notes), decoder=setting.decoder, learned=learned or {},
        _modes=lazy["modes"], _extra={k: lazy[k] for k in ("kl", "mean_sq", "summary")},
    )


# --------------------------------------------------------------------------------------------
# conditional VAE


@_doc
def cvae_learnable_sigma(spectrum, latent_dim, *, beta=1.0, eta_enc=1.0, eta_dec=1.0) -> Solution:
    r"""Conditional linear VAE with learnable encoder variance (Theorem 2; docs/theory.md §4).

    The optimum is Theorem 4 applied to the residual ``r = y - K x`` of y after linear regression on
    x, with the eigenvalues :math:`e_i` of :math:`E = B - CA^+C^T` in place of :math:`\theta_i^2`
    (note the units: the paper's CVAE "theta" is an eigenvalue):

    .. math::

        \omega_i = \sqrt{(e_i - \beta\eta_{dec}^2)_+}/\eta_{enc},\quad
        \lambda_i = \eta_{enc}\sqrt{(e_i - \beta\eta_{dec}^2)_+/e_i},\quad
        \beta^*_i = e_i/\eta_{dec}^2

    ``sigma_i = sqrt(beta) eta_enc eta_dec / sqrt(e_i)`` if ``e_i >= beta eta_dec^2`` else ``eta_enc``
    (the published code tests ``e_i >= sqrt(beta) eta_dec``: wrong unless ``beta eta_dec^2 = 1``).
    Also ``U2 = K`` and ``W1 = -W2 K`` (see :meth:`Solution.matrices`).

    Parameters
    ----------
    %(spectrum_residual)s
    %(latent_dim)s
    %(hyper)s

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "residual")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _learnable(spectrum, d1, beta, eta_enc, eta_dec,
                      setting=_settings.get("cvae", "learnable"))


@_doc
def cvae_fixed_sigma(spectrum, latent_dim, sigma, *, beta=1.0, eta_enc=1.0, eta_dec=1.0) -> Solution:
    r"""Conditional linear VAE with fixed diagonal encoder variance (docs/theory.md §4b; not in
    the paper).

    The Theorem-1 optimum (:func:`vae_fixed_sigma`) on the residual spectrum, i.e. with
    :math:`\theta_i = \sqrt{e_i}` and ``tr A`` replaced by ``tr E``; plus ``U2 = K``, ``W1 = -W2 K``.

    Parameters
    ----------
    %(spectrum_residual)s
    %(latent_dim)s
    %(sigma)s
    %(hyper)s

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "residual")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _fixed(spectrum, d1, sigma, beta, eta_enc, eta_dec, setting=_settings.get("cvae", "fixed"))


# --------------------------------------------------------------------------------------------
# two-latent hierarchical VAE


def _mhvae(spectrum, latent_dim, latent_dim2, beta1, beta2, eta_enc, eta_dec, sigma1, sigma2):
    spectrum = _spectrum(spectrum, "data")
    d1 = _latent_dim("latent_dim", latent_dim)
    d2 = _latent_dim("latent_dim2", latent_dim2)
    fixed = sigma2 is not None
    hyper = dict(beta1=beta1, beta2=beta2, eta_enc=eta_enc, eta_dec=eta_dec,
                 sigma1=_isotropic("sigma1", sigma1))
    if fixed:
        hyper["sigma2"] = _isotropic("sigma2", sigma2)
    shape, hp = _grid(**hyper)
    t, t_full = _theta(spectrum, d1)
    k = min(d1, d2)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        h = cf.Hierarchical(hp, fixed)
        counts = cf.hierarchical_counts(h, t, d1, d2)
        rank1, rank2 = cf.hierarchical_ranks(h, counts, d1, d2)
        loss = cf.hierarchical_loss(h, t, t_full, d1, d2, counts)
    nh = counts[0]

    def detail():
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            md = cf.hierarchical_modes(h, t, d1, d2, counts)
            critical = _mhvae_critical(t, hp, fixed, d1, d2)
            tail = cf.suffix(t_full * t_full)[min(d1, t_full.size)]
        ee = hp["eta_enc"]
        var_fill = 0.0
        if fixed:  # an unpaired z2 dim keeps the fixed std: only the variance part of its KL
            var_fill = cf.variance_part(hp["sigma2"], ee)
        omega, w2 = _pad_last(md["omega"], d2), _pad_last(md["w2"], d2)
        kl2 = _pad_last(np.where(np.arange(d1) < k, md["kl_z2"], 0.0), d2, var_fill)
        return {
            "singular_values": {"encoder1": md["lambda"], "decoder1": md["u1"],
                                "encoder2": w2, "decoder2": omega},
            "posterior_std": {} if fixed else {"z2": _pad_last(md["sigma2"], d2, fill=ee)},
            "critical": critical,
            "modes": {"theta": t, "lambda": md["lambda"], "u1": md["u1"], "w2": w2,
                      "omega": omega, "sigma2": None if fixed else _pad_last(md["sigma2"], d2,
                                                                              fill=ee),
                      "m": md["m"], "F": md["F"]},
            "kl": {"z1": md["consistency"], "z2": kl2},
            "mean_sq": {"z1": md["mean_sq_z1"], "z2": _pad_last(md["mean_sq_z2"], d2)},
            "summary": {"rate": np.sum(md["consistency"], axis=-1) + np.sum(kl2, axis=-1),
                        "distortion": np.sum(md["distortion"], axis=-1) + tail},
        }

    setting = _settings.get("mhvae", "sigma2-fixed" if fixed else "sigma2-learnable")
    crit_names = setting.critical
    lazy = _lazy(_Memo(detail), {
        "singular_values": ("encoder1", "decoder1", "encoder2", "decoder2"),
        "posterior_std": () if fixed else ("z2",), "critical": crit_names,
        "modes": ("theta", "lambda", "u1", "w2", "omega", "sigma2", "m", "F"),
        "kl": ("z1", "z2"), "mean_sq": ("z1", "z2"), "summary": ("rate", "distortion")})
    z1_lo, z1_hi = _rotation_range(rank1, d1)
    z2_lo, z2_hi = _rotation_range(rank2, d2) if fixed else (d2 - rank2, d2 - rank2)
    notes = [ROTATION_NOTE.format(latent="z1")]
    if fixed:
        notes.append(ROTATION_NOTE.format(latent="z2")
                     + "; with sigma2 fixed a dim equals its prior only if sigma2 == eta_enc")
    elif np.any(rank2 > nh):
        notes.append("some active z2 dims sit on z1 modes with no data signal (lambda = 0): "
                     "they encode the injected noise of z1, not x")
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        scale = _loss_scale(t_full, h.q[..., 0], np.sqrt(h.B[..., 0]), h.s1[..., 0], h.ed[..., 0])
    loss = _unrepresentable(loss, notes, scale)
    return Solution(
        model=setting.model, variance=setting.variance,
        theorem=setting.theorem, spectrum=spectrum, params={n: v[..., 0] for n, v in hp.items()},
        latent_dims={"z1": d1, "z2": d2}, singular_values=lazy["singular_values"],
        posterior_std=lazy["posterior_std"],
        ranks={"encoder1": rank1, "decoder1": rank1, "encoder2": rank2, "decoder2": rank2},
        collapsed_min={"z1": z1_lo, "z2": z2_lo}, collapsed_max={"z1": z1_hi, "z2": z2_hi},
        exact={"z1": False, "z2": not fixed}, critical=lazy["critical"],
        critical_direction={n: setting.direction(n) for n in crit_names}, optimal_loss=loss,
        notes=tuple(notes), _modes=lazy["modes"],
        _extra={k_: lazy[k_] for k_ in ("kl", "mean_sq", "summary")},
    )


def _mhvae_critical(t, hp, fixed, d1, d2):
    """Critical values of the z2 dim paired with each z1 mode (docs/theory.md §5.4), tightened so
    the stated rule holds at the value; z2 dims without a partner never activate (NaN)."""
    b1, b2, ee, ed, s1 = hp["beta1"], hp["beta2"], hp["eta_enc"], hp["eta_dec"], hp["sigma1"]
    paired = np.arange(d1) < min(d1, d2)
    gate = np.maximum(b1 * (s1 * s1), np.sqrt(b1) * s1 * t)   # active iff beta2 * n2 < gate
    c2 = (ed / ee) * (ed / ee)
    n2 = c2 * (hp["sigma2"] * hp["sigma2"]) if fixed else ed * ed
    B = b2 * n2
    tt = np.where(t > 0, t, np.nan)
    cand = {
        "beta2": gate / n2,
        "eta_dec": (ee / hp["sigma2"] if fixed else 1.0) * np.sqrt(gate / b2),
        "beta1": np.fmin(B / (s1 * s1), np.square(B / (s1 * tt))),
    }
    if fixed:
        cand["eta_enc"] = ed * hp["sigma2"] * np.sqrt(b2 / gate)
    out = {}
    for name, c in cand.items():
        c = np.where(paired, np.broadcast_to(c, np.broadcast_shapes(c.shape, t.shape)), np.nan)

        def active_at(v, name=name):
            return cf.hierarchical_z2_active(t, {**hp, name: v}, fixed, paired)

        direction = _settings.get("mhvae", "sigma2-fixed").direction(name)
        out[name] = _pad_last(cf.tighten(c, active_at, direction), d2, np.nan)
    return out


def _pad_last(x, d, fill=0.0):
    """Broadcast ``x`` (..., d1) to length d along the last axis: truncate or pad with ``fill``."""
    n = x.shape[-1]
    if n >= d:
        return x[..., :d]
    fill = np.broadcast_to(fill, x.shape[:-1] + (1,))
    return np.concatenate([x, np.broadcast_to(fill, x.shape[:-1] + (d - n,))], axis=-1)


@_doc
def mhvae_learnable_sigma2(spectrum, latent_dim, latent_dim2=None, *, beta1=1.0, beta2=1.0,
                           eta_enc=1.0, eta_dec=1.0, sigma1=1.0) -> Solution:
    r"""Two-latent hierarchical VAE, Sigma1 = sigma1^2 I fixed, Sigma2 learnable (Theorem 3;
    docs/theory.md §5.1).

    Per mode (theta padded with zeros to d1; the ``min(d1, d2)`` largest modes get a z2 partner),
    with the z1 second moment :math:`m = \lambda^2 + \sigma_1^2`, :math:`B = \beta_2\eta_{dec}^2`,
    :math:`t_3 = B/(\sqrt{\beta_1}\sigma_1)`, :math:`m_0 = B/\beta_1`:

    .. math::

        m^* = \max(\sigma_1^2, \theta\sigma_1/\sqrt{\beta_1})\ (\theta \le t_3),\quad
        m^* = \max(\sigma_1^2, \theta^2\sigma_1^2/B)\ (\theta > t_3),\quad
        \lambda = \sqrt{m^* - \sigma_1^2},\quad \omega = \sqrt{(m^* - m_0)_+}/\eta_{enc}

    (equal to the paper's three cases). Unpaired z1 modes are VAE modes with weight beta1; unpaired
    z2 dims collapse. z2 collapse is exact: dim i is active iff
    :math:`\beta_1\sigma_1^2 > B` or :math:`\theta_i > t_3`; critical values
    :math:`\beta_2^* = \max(\beta_1\sigma_1^2, \sqrt{\beta_1}\sigma_1\theta_i)/\eta_{dec}^2` (active
    below), :math:`\beta_1^* = \min(B/\sigma_1^2, B^2/(\sigma_1^2\theta_i^2))` (active above).
    The optimal loss is the sum of the per-mode minima (docs/theory.md §5.1).

    Parameters
    ----------
    %(spectrum_data)s
    latent_dim, latent_dim2 : int
        d1 (z1) and d2 (z2, default d1). Every relation to the data rank is covered (§5.3).
    %(hyper2)s
    sigma1 : float or array, default 1
        Fixed isotropic std of z1 given x; distinct per-dimension values raise
        :class:`~vaetheory.errors.NotCoveredError` (no closed form: §5.5).

    %(returns)s
    """
    return _mhvae(spectrum, latent_dim, latent_dim if latent_dim2 is None else latent_dim2,
                  beta1, beta2, eta_enc, eta_dec, sigma1, None)


@_doc
def mhvae_fixed_sigma2(spectrum, latent_dim, latent_dim2=None, *, beta1=1.0, beta2=1.0,
                       eta_enc=1.0, eta_dec=1.0, sigma1=1.0, sigma2=1.0) -> Solution:
    r"""Two-latent hierarchical VAE, Sigma1 = sigma1^2 I and Sigma2 = sigma2^2 I fixed (Theorem 5;
    docs/theory.md §5.2).

    As :func:`mhvae_learnable_sigma2` with :math:`\eta_{dec}^2 \to c^2\sigma_2^2` in the thresholds,
    :math:`a = \sigma_2 c\sqrt{\beta_1\beta_2}`, :math:`T_2 = \beta_2c^2\sigma_2^2/(\sqrt{\beta_1}\sigma_1)`,
    :math:`m^* = \max(\sigma_1^2, (\theta^2\sigma_1^2/a)^{2/3})` for :math:`\theta > T_2` and
    :math:`\omega^2 = \frac{c\sqrt{\beta_2}}{\sqrt{\beta_1}\sigma_2}(\sqrt{m^*} - \sqrt{m_0})_+`.
    The branch test is :math:`\theta > T_2`; the authors' code uses :math:`\beta_1 T_2` (docs/theory.md §6).
    Both variances are fixed and isotropic, so both collapse counts are [min, max] ranges; z2 dim i
    is active (rank of U2) iff :math:`\beta_1\sigma_1^2 > \beta_2c^2\sigma_2^2` or :math:`\theta_i > T_2`.
    Unlike Theorem 3, eta_enc changes the ranks here (through c).

    Parameters
    ----------
    %(spectrum_data)s
    latent_dim, latent_dim2 : int
        d1 (z1) and d2 (z2, default d1).
    %(hyper2)s
    sigma1, sigma2 : float or array, default 1
        Fixed isotropic stds of z1 given x and of z2 given z1; distinct per-dimension values raise
        :class:`~vaetheory.errors.NotCoveredError`.

    %(returns)s
    """
    return _mhvae(spectrum, latent_dim, latent_dim if latent_dim2 is None else latent_dim2,
                  beta1, beta2, eta_enc, eta_dec, sigma1, sigma2)


# --------------------------------------------------------------------------------------------
# learned decoder variance (sigma-VAE, probabilistic PCA): docs/theory.md §12

UNBOUNDED_NOTE = (
    "eta_dec learned: at {n} grid point(s) the loss has no minimum -- the latent dims can carry "
    "all of the data's variance (latent dim >= rank, no residual left for the decoder noise) and "
    "D = {D} > beta x (number of data modes), so the negative ELBO falls without bound as "
    "eta_dec -> 0 (the likelihood degenerates; implementations that clip the log-variance stop "
    "at their clip). Shown there: eta_dec and the loss null, the counts and maps of the limit "
    "eta_dec -> 0 (docs/theory.md §12.2)")
FLAT_NOTE = (
    "eta_dec learned: at {n} grid point(s) beta x (number of data modes) equals D with no "
    "residual variance: every eta_dec^2 in (0, u] attains the same minimum (a flat family); the "
    "largest, u, is shown (docs/theory.md §12.2)")
NATS_NOTE = ("eta_dec learned: optimal_loss is the full negative beta-ELBO per sample in nats "
             "(nothing dropped; docs/theory.md §12.1), not the 2 eta_dec^2 convention of §1")


#: a learned decoder variance is set by the smallest eigenvalues: below this multiple of the rank
#: tolerance they are round-off, not data, and count as 0 (docs/theory.md §12.2, "Resolution")
RESOLUTION = 1e3


def _resolved(spectrum, notes):
    """The spectrum with eigenvalues at or below ``RESOLUTION x tolerance`` set to 0, and a note
    when that changes anything (docs/theory.md §12.2)."""
    import dataclasses

    # in the spectrum's scaled units (a power of two from the data's: the same comparison, exact)
    ev = np.asarray(spectrum.scaled_eigenvalues, dtype=np.float64)
    cut = (ev > 0) & (ev <= RESOLUTION * spectrum.scaled_tolerance)
    if not np.any(cut):
        return spectrum
    floor = RESOLUTION * spectrum.tolerance
    notes.append(f"eta_dec learned: {int(np.sum(cut))} eigenvalue(s) at or below {floor:.3g} "
                 f"({RESOLUTION:g} x the rank tolerance) count as 0: a learned decoder variance "
                 "is set by the smallest eigenvalues, and these are round-off (docs/theory.md "
                 "§12.2)")
    ev = np.where(cut, 0.0, ev)
    return dataclasses.replace(spectrum, scaled_eigenvalues=ev, rank=int(np.sum(ev > 0)))


def _learned_dict(eta, b, unbounded=None, flat=None):
    """The ``learned`` entries of a Solution (docs/theory.md §12): eta_dec, u, beta u, flags."""
    u = eta * eta
    out = {"eta_dec": eta, "u": u, "kappa": b * u}
    shape = np.shape(eta)
    out["unbounded"] = np.zeros(shape, bool) if unbounded is None else np.asarray(unbounded)
    out["flat"] = np.zeros(shape, bool) if flat is None else np.asarray(flat)
    return out


def _learnable_learned(spectrum, d1, beta, eta_enc, *, setting):
    """Theorem 4 (§3) / Theorem 2 (§4) profiled over u = eta_dec^2 (docs/theory.md §12.2)."""
    shape, hp = _grid(beta=beta, eta_enc=eta_enc)
    notes = [NATS_NOTE]
    spectrum = _resolved(spectrum, notes)
    b = hp["beta"][..., 0]
    t, t_full = _theta(spectrum, d1)
    D = int(spectrum.dim)
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        u, r, fmin, unb, flat = cf.learned_u_learnable(t, t_full, D, b)
        eta = np.sqrt(u)
        t0 = cf._t0(t)
        loss = np.where(unb, -np.inf, fmin + 0.5 * D * (np.log(2 * np.pi) + 2 * np.log(t0)))
    hp = dict(hp, eta_dec=np.where(unb, 0.0, eta)[..., None])   # the limit u -> 0 where unbounded
    if np.any(unb):
        notes.append(UNBOUNDED_NOTE.format(n=int(np.sum(unb)), D=D))
    if np.any(flat & ~unb):
        notes.append(FLAT_NOTE.format(n=int(np.sum(flat & ~unb))))
    # the loss is -inf where unbounded (not a float64 overflow): keep it out of that note
    finite_loss = np.where(unb, 0.0, loss)

    def critical():
        def active_at(v):
            _, rr, _, _, _ = cf.learned_u_learnable(t, t_full, D, v)
            return np.arange(d1) < rr

        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            crit = np.broadcast_to(cf.learnable_learned_critical(t, t_full, D), shape + (d1,))
            return {"beta": cf.tighten(crit, active_at, "below")}

    sol = _learnable_solution(spectrum, d1, hp, setting=setting, r=r, loss=finite_loss,
                              notes=notes, critical=critical,
                              params={"beta": hp["beta"][..., 0], "eta_enc": hp["eta_enc"][..., 0]},
                              learned=_learned_dict(np.where(unb, np.nan, eta), b, unb, flat))
    return _with_loss(sol, np.where(unb, -np.inf, sol.optimal_loss))


def _with_loss(sol, loss):
    import dataclasses

    return dataclasses.replace(sol, optimal_loss=np.asarray(loss, dtype=np.float64))


def _fixed_learned(spectrum, d1, sigma, beta, eta_enc, *, setting):
    """Theorem 1 (§2) / §4b profiled over u = eta_dec^2 (docs/theory.md §12.3): the learned std is
    the root of one quadratic per active set, the unique self-consistent one."""
    shape, hp, sig, srt, isotropic = _fixed_grid(d1, sigma, beta=beta, eta_enc=eta_enc)
    notes = [NATS_NOTE]
    spectrum = _resolved(spectrum, notes)
    b, ee = hp["beta"], hp["eta_enc"]
    t, t_full = _theta(spectrum, d1)
    D = int(spectrum.dim)
    srt_full = np.broadcast_to(srt, shape + (d1,))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        eta = cf.learned_eta_fixed(t, t_full, D, (np.sqrt(b) / ee) * srt_full)
    none = ~np.isfinite(eta)                       # no data variance: unbounded
    hp = dict(hp, eta_dec=np.where(none, 0.0, eta)[..., None])
    if np.any(none):
        notes.append(UNBOUNDED_NOTE.format(n=int(np.sum(none)), D=D).replace(
            "the latent dims can carry all of the data's variance (latent dim >= rank, no residual "
            "left for the decoder noise) and D = {0} > beta x (number of data modes)".format(D),
            "the data have no variance"))
    b0, ee0 = b[..., 0], ee[..., 0]
    logsig = np.log(np.broadcast_to(sig, shape + (d1,)) / ee)   # log(sigma_j / eta_enc)

    def loss_of(r, thr):
        # [sum of Theorem 1's mode losses + tail] / (2 eta^2) + (D/2) log(2 pi eta^2) + the KL's
        # variance constants; every term as a ratio to eta (scale-free)
        e = hp["eta_dec"][..., 0]
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            te = t / e[..., None]
            th = np.broadcast_to(thr, shape + (d1,)) / e[..., None]
            active = cf.modes_below(r, d1)
            modes = np.where(active, 2.0 * th * te, te * te + th * th)
            tail = cf.suffix(t_full * t_full)[min(d1, t_full.size)] / e / e
            val = (0.5 * (np.sum(modes, axis=-1) + tail) + 0.5 * D * np.log(2 * np.pi)
                   + D * np.log(e) - b0 * np.sum(logsig, axis=-1) - 0.5 * b0 * d1)
        return np.where(none, 0.0, val)

    def critical():
        with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
            bstar = cf.fixed_learned_critical(t, t_full, D, srt_full, ee)
            beta_c = (bstar * ee) ** 2
            ee_c = np.sqrt(b) / bstar

            def active(bv, ev):
                bsig = ((np.sqrt(bv) / ev)[..., None]) * srt_full[..., None, :]
                et = cf.learned_eta_fixed(t, t_full, D, bsig)
                return t > cf.fixed_threshold(bv, ev, et, srt_full)

            out = {"beta": cf.tighten(beta_c, lambda v: active(v, np.broadcast_to(ee, v.shape)),
                                      "below"),
                   "eta_enc": cf.tighten(ee_c, lambda v: active(np.broadcast_to(b, v.shape), v),
                                         "above")}
        return out

    params = {"beta": b0, "eta_enc": ee0, "sigma": sig}
    sol = _fixed_solution(spectrum, d1, shape, hp, sig, srt, isotropic, setting=setting,
                          loss_of=loss_of, notes=notes, critical=critical, params=params,
                          learned=_learned_dict(np.where(none, np.nan, eta), b0, none))
    return _with_loss(sol, np.where(none, -np.inf, sol.optimal_loss))





@_doc
def vae_learnable_sigma_learned_decoder(spectrum, latent_dim, *, beta=1.0,
                                        eta_enc=1.0) -> Solution:
    r"""Standard linear VAE, learnable encoder variance, learned decoder variance
    (docs/theory.md §12.2).

    Profiling Theorem 4 over :math:`u = \eta_{dec}^2` gives the per-sample negative beta-ELBO

    .. math::

        f(u) = \frac{S_{in}}{2u} + \frac{k\beta}{2} + \frac{\beta}{2}\sum_{i\,active}
               \log\frac{\theta_i^2}{\beta u} + \frac{D}{2}\log(2\pi u)

    with mode i active iff :math:`\theta_i^2 > \beta u`; on the active set of the first k modes it
    is minimised at :math:`u_k = S_k/(D - \beta k)`; the optimum is the candidate with the lowest
    f. At beta = 1 this is probabilistic PCA (u = the mean of the discarded eigenvalues). With
    latent dim >= rank and :math:`D > \beta\,\mathrm{rank}` the loss is unbounded below
    (reported, with its reason: ``learned["unbounded"]``).%(learned)s

    Parameters
    ----------
    %(spectrum_data)s
    %(latent_dim)s
    beta, eta_enc : float or array, default 1
        KL weight and prior std; arrays broadcast into a grid.

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "data")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _learnable_learned(spectrum, d1, beta, eta_enc,
                              setting=_settings.get("vae", "learnable", "learned"))


@_doc
def vae_fixed_sigma_learned_decoder(spectrum, latent_dim, sigma, *, beta=1.0,
                                    eta_enc=1.0) -> Solution:
    r"""Standard linear VAE, fixed encoder variance, learned decoder variance
    (docs/theory.md §12.3).

    Theorem 1 profiled over the decoder std: with :math:`a_i = \sqrt\beta\sigma'_i/\eta_{enc}`
    (stds sorted ascending) the profile is strictly convex in :math:`1/\eta_{dec}`, so the optimum
    is unique and always exists when the data have variance:

    .. math::

        \eta_{dec} = \frac{P_k + \sqrt{P_k^2 + 4DS_k}}{2D},\quad
        P_k = \sum_{i\le k} a_i\theta_i,\quad S_k = \sum_{i>k}\theta_i^2

    for the unique k with exactly k modes active (:math:`\theta_i > \eta_{dec} a_i`). The critical
    values :math:`\beta^*_i = D\eta_{enc}^2(\theta_i/\sigma'_i)^2/H_i` with
    :math:`H_i = (\theta_i/\sigma'_i)\sum_{j<i}\sigma'_j\theta_j + \sum_{j\ge i}\theta_j^2`
    are closed forms too.%(learned)s

    Parameters
    ----------
    %(spectrum_data)s
    %(latent_dim)s
    %(sigma)s
    beta, eta_enc : float or array, default 1
        KL weight and prior std; arrays broadcast into a grid.

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "data")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _fixed_learned(spectrum, d1, sigma, beta, eta_enc,
                          setting=_settings.get("vae", "fixed", "learned"))


@_doc
def cvae_learnable_sigma_learned_decoder(spectrum, latent_dim, *, beta=1.0,
                                         eta_enc=1.0) -> Solution:
    r"""Conditional linear VAE, learnable encoder variance, learned decoder variance
    (docs/theory.md §12.4): :func:`vae_learnable_sigma_learned_decoder` on the residual spectrum
    (:math:`\theta_i^2 \to e_i`) with D the output dimension of y.%(learned)s

    Parameters
    ----------
    %(spectrum_residual)s
    %(latent_dim)s
    beta, eta_enc : float or array, default 1

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "residual")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _learnable_learned(spectrum, d1, beta, eta_enc,
                              setting=_settings.get("cvae", "learnable", "learned"))


@_doc
def cvae_fixed_sigma_learned_decoder(spectrum, latent_dim, sigma, *, beta=1.0,
                                     eta_enc=1.0) -> Solution:
    r"""Conditional linear VAE, fixed encoder variance, learned decoder variance
    (docs/theory.md §12.4): :func:`vae_fixed_sigma_learned_decoder` on the residual spectrum
    (:math:`\theta_i = \sqrt{e_i}`) with D the output dimension of y.%(learned)s

    Parameters
    ----------
    %(spectrum_residual)s
    %(latent_dim)s
    %(sigma)s
    beta, eta_enc : float or array, default 1

    %(returns)s
    """
    spectrum = _spectrum(spectrum, "residual")
    d1 = _latent_dim("latent_dim", latent_dim)
    return _fixed_learned(spectrum, d1, sigma, beta, eta_enc,
                          setting=_settings.get("cvae", "fixed", "learned"))


# --------------------------------------------------------------------------------------------
# dispatch


def solve(model, variance, spectrum, latent_dim, *, decoder="fixed", **hyper) -> Solution:
    """The closed form of ``model/variance`` (its record in :mod:`vaetheory.settings`).

    Parameters
    ----------
    model, variance : str
        E.g. ``"vae", "learnable"``; ``"mhvae", "sigma2-fixed"``.
    spectrum : Spectrum
        Of the kind the setting needs (``data``, or ``residual`` for the CVAE).
    latent_dim : int
        d1; the hierarchical VAE also takes ``latent_dim2`` as a keyword.
    decoder : {"fixed", "learned"}
        ``"learned"``: the decoder variance is learned (docs/theory.md §12; no ``eta_dec``).
    **hyper
        That function's keywords (``sigma`` for the fixed-variance VAE/CVAE too).

    Returns
    -------
    Solution
    """
    setting = _settings.get(model, variance, decoder)
    d2 = hyper.pop("latent_dim2", None)
    return setting.solve(spectrum, latent_dim, d2, **hyper)

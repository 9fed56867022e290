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
``i`` belongs to the latent dimension carrying the i-th largest spectral value, so singular values
come out sorted descending and ``critical[name][..., i]`` is the threshold of that dimension.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Dict, Tuple

import numpy as np

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
        Singular values of each learned map, sorted descending, one per latent dimension:
        ``encoder`` (in whitened coordinates, ``V = W P_A Phi^{1/2}``) and ``decoder`` for the VAE/CVAE;
        ``encoder1`` (x -> z1, whitened), ``decoder1`` (z1 -> x), ``encoder2`` (z1 -> z2),
        ``decoder2`` (z2 -> z1) for the hierarchical VAE.
    posterior_std : dict of str -> ndarray (*grid, d)
        Learned encoder standard deviations, sorted descending; empty when none is learned.
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
        "below" or "above" it. NaN where a dimension can never be active.
    optimal_loss : ndarray (*grid)
        Global minimum of L (docs/theory.md §1 convention, additive constants dropped).
    notes : tuple of str
        Caveats a reader must see (rotation freedom, what "collapse" means with fixed variances).
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
    _modes: Dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def grid_shape(self):
        return self.optimal_loss.shape

    @property
    def setting(self):
        """The record of this solution's setting (:mod:`vaetheory.settings`)."""
        return _settings.get(self.model, self.variance)

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
        when the spectrum was centred. Where rotations are free (fixed isotropic variances) any
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
    return WaterLine(latent, values, np.full(d, h["beta"] * h["eta_dec"] ** 2), "beta eta_dec^2",
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
    level = h["beta"] * (h["eta_dec"] / h["eta_enc"]) ** 2 * sig ** 2
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
    B, gate = h["beta2"] * n2, h["beta1"] * h["sigma1"] ** 2
    paired = np.arange(d) < min(sol.latent_dims.values())
    level = np.where(paired, -np.inf if gate > B else B ** 2 / gate, np.inf)
    return WaterLine(latent, values, level, formula, "§5.4")


def water_mhvae_learnable(point) -> WaterLine:
    """Theorem 3 (docs/theory.md §5.4, Sigma2 learnable): ``n2 = eta_dec^2``."""
    return _water_mhvae(point, point.hyper["eta_dec"] ** 2, "(beta2 eta_dec^2)^2 / (beta1 sigma1^2)")


def water_mhvae_fixed(point) -> WaterLine:
    """Theorem 5 (docs/theory.md §5.4, Sigma2 fixed): ``n2 = c^2 sigma2^2``, ``c = eta_dec/eta_enc``."""
    h = point.hyper
    n2 = (h["eta_dec"] / h["eta_enc"]) ** 2 * h["sigma2"] ** 2
    return _water_mhvae(point, n2, "(beta2 c^2 sigma2^2)^2 / (beta1 sigma1^2)")


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


def _prefix(x):
    out = np.zeros(x.size + 1)
    np.cumsum(x, out=out[1:])
    return out


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


def _sqrt_pos(x):
    return np.sqrt(np.maximum(x, 0.0))


def _safe_div(a, b):
    a, b = np.broadcast_arrays(a, b)
    out = np.zeros(a.shape)
    np.divide(a, b, out=out, where=b > 0)
    return out


def _desc(x):
    return -np.sort(-x, axis=-1)


def _rotation_range(rank, d):
    """[min, max] zero-mean dims when an isotropic fixed variance leaves rotations free."""
    return np.where(rank >= 1, 0, d), d - rank


# --------------------------------------------------------------------------------------------
# shared per-mode cores


def _fixed_core(theta, d1, beta, eta_enc, eta_dec, sigma):
    """Theorem 1 (docs/theory.md §2) per mode, on sqrt-eigenvalues ``theta`` padded to d1.

    ``sigma`` is (*grid, d1) in the user's dimension order; mode i goes to the i-th smallest sigma.
    Returns per-mode arrays and the exact optimal loss terms that depend on the modes.
    """
    sig = np.sort(sigma, axis=-1)  # sigma'_1 <= ... <= sigma'_{d1}
    s = np.sqrt(beta) * eta_dec / eta_enc
    pos = np.maximum(theta - s * sig, 0.0)
    omega = np.sqrt(s * pos / sig)
    lam = np.sqrt(sig * pos / s)
    critical = {
        "beta": theta ** 2 * eta_enc ** 2 / (eta_dec ** 2 * sig ** 2),
        "eta_dec": theta * eta_enc / (np.sqrt(beta) * sig),
        "eta_enc": np.sqrt(beta) * eta_dec * sig / np.where(theta > 0, theta, np.nan),
    }
    return dict(omega=omega, lam=lam, sig=sig, pos=pos, critical=critical)


def _learnable_core(e, beta, eta_enc, eta_dec):
    """Theorem 4 (docs/theory.md §3) / Theorem 2 (§4) per mode, on eigenvalues ``e`` padded to d1."""
    kappa = beta * eta_dec ** 2
    pos = np.maximum(e - kappa, 0.0)
    omega = np.sqrt(pos) / eta_enc
    lam = eta_enc * np.sqrt(_safe_div(pos, e))
    active = e > kappa
    sigma = np.where(active, np.sqrt(kappa) * eta_enc / np.sqrt(np.where(active, e, 1.0)), eta_enc)
    critical = {
        "beta": np.broadcast_to(e / eta_dec ** 2, omega.shape),
        "eta_dec": np.sqrt(e / beta),
    }
    return dict(omega=omega, lam=lam, sigma=sigma, critical=critical)


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
    return _fixed(spectrum, np.sqrt(spectrum.padded(d1)), d1, sigma, beta, eta_enc, eta_dec,
                  setting=_settings.get("vae", "fixed"))


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
    return _learnable(spectrum, spectrum.padded(d1), d1, beta, eta_enc, eta_dec,
                      setting=_settings.get("vae", "learnable"))


def _fixed(spectrum, theta, d1, sigma, beta, eta_enc, eta_dec, *, setting):
    shape, hp = _grid(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    raw = _settings.check_value("sigma", sigma)
    isotropic = raw.ndim == 0 or raw.shape[-1] == 1
    sig, shape = _sigma_vector("sigma", sigma, d1, shape)
    hp = {k: np.broadcast_to(v, shape + (1,)) for k, v in hp.items()}
    b, ee, ed = hp["beta"], hp["eta_enc"], hp["eta_dec"]
    memo = _Memo(lambda: _fixed_core(theta, d1, b, ee, ed, sig))
    kappa = b[..., 0] * ed[..., 0] ** 2
    c2 = (ed[..., 0] / ee[..., 0]) ** 2
    if isotropic:
        # one sigma per point: active modes are theta_i > s sigma, a prefix found by bisection, and
        # sum_{i<r} (theta_i - s sigma)^2 comes from prefix sums: O(log d) per grid point
        s_sig = np.sqrt(b[..., 0] * c2) * sig[..., 0]
        r = np.searchsorted(-theta, -s_sig, side="left")
        T1, T2 = _prefix(theta), _prefix(theta * theta)
        lost = T2[r] - 2.0 * s_sig * T1[r] + r * s_sig ** 2
        penalty = d1 * (b[..., 0] * c2 * sig[..., 0] ** 2 - kappa * np.log(sig[..., 0] ** 2))
        cmin = np.where(r >= 1, 0, d1) if d1 > 1 else 1 - r
        tied = d1 > 1
    else:
        core = memo()
        srt, pos = core["sig"], core["pos"]
        r = np.count_nonzero(pos > 0, axis=-1)  # active modes form a prefix
        lost = np.sum(pos * pos, axis=-1)
        penalty = np.sum(b * c2[..., None] * srt ** 2 - kappa[..., None] * np.log(srt ** 2), axis=-1)
        # ties: per group of equal sigma holding k active modes, zero-mean dims range over
        # [0 if k >= 1 else m, m - k]; active modes occupy sorted positions < r
        new_group = np.ones(srt.shape, dtype=bool)
        new_group[..., 1:] = srt[..., 1:] != srt[..., :-1]
        group_start = np.maximum.accumulate(np.where(new_group, np.arange(d1), 0), axis=-1)
        cmin = np.count_nonzero(group_start >= r[..., None], axis=-1)
        tied = bool(np.any(~new_group[..., 1:])) if d1 > 1 else False
    loss = spectrum.trace - lost + penalty
    notes = ["fixed encoder variance: a collapsed dim has a zero posterior mean; it equals the "
             "prior only if its sigma equals eta_enc"]
    if tied:
        notes.append(ROTATION_NOTE.format(latent="z"))
    params = {k: v[..., 0] for k, v in hp.items()}
    params["sigma"] = sig

    def detail():
        core = memo()
        return {
            "singular_values": {"encoder": _desc(core["lam"]), "decoder": _desc(core["omega"])},
            "posterior_std": {},
            "critical": core["critical"],
            "modes": {"theta": theta, "omega": core["omega"], "lambda": core["lam"],
                      "sigma_sorted": core["sig"]},
        }

    lazy = _lazy(_Memo(detail), {"singular_values": ("encoder", "decoder"), "posterior_std": (),
                                 "critical": ("beta", "eta_dec", "eta_enc"),
                                 "modes": ("theta", "omega", "lambda", "sigma_sorted")})
    return Solution(
        model=setting.model, variance=setting.variance, theorem=setting.theorem,
        spectrum=spectrum, params=params,
        latent_dims={"z": d1}, singular_values=lazy["singular_values"],
        posterior_std=lazy["posterior_std"], ranks={"encoder": r, "decoder": r},
        collapsed_min={"z": cmin}, collapsed_max={"z": d1 - r}, exact={"z": not tied},
        critical=lazy["critical"],
        critical_direction={"beta": "below", "eta_dec": "below", "eta_enc": "above"},
        optimal_loss=loss, notes=tuple(notes), _modes=lazy["modes"],
    )


def _learnable(spectrum, e, d1, beta, eta_enc, eta_dec, *, setting):
    shape, hp = _grid(beta=beta, eta_enc=eta_enc, eta_dec=eta_dec)
    b, ee, ed = hp["beta"], hp["eta_enc"], hp["eta_dec"]
    kappa = b[..., 0] * ed[..., 0] ** 2
    # active modes e_i > kappa form a prefix (e descending): bisection, then the optimal loss
    # L* = tr - kappa sum_{i<r} h(e_i/kappa) + d1 kappa (1 - log eta_enc^2) from prefix sums
    r = np.searchsorted(-e, -kappa, side="left")
    E1 = _prefix(e)
    EL = _prefix(np.log(np.where(e > 0, e, 1.0)))
    loss = (spectrum.trace - E1[r] + r * kappa + kappa * EL[r] - r * kappa * np.log(kappa)
            + d1 * kappa * (1.0 - np.log(ee[..., 0] ** 2)))

    def detail():
        core = _learnable_core(e, b, ee, ed)
        return {
            "singular_values": {"encoder": core["lam"], "decoder": core["omega"]},  # descending
            "posterior_std": {"z": core["sigma"][..., ::-1]},
            "critical": core["critical"],
            "modes": {"e": e, "omega": core["omega"], "lambda": core["lam"],
                      "sigma": core["sigma"]},
        }

    lazy = _lazy(_Memo(detail), {"singular_values": ("encoder", "decoder"),
                                 "posterior_std": ("z",), "critical": ("beta", "eta_dec"),
                                 "modes": ("e", "omega", "lambda", "sigma")})
    return Solution(
        model=setting.model, variance=setting.variance, theorem=setting.theorem,
        spectrum=spectrum,
        params={k: v[..., 0] for k, v in hp.items()}, latent_dims={"z": d1},
        singular_values=lazy["singular_values"], posterior_std=lazy["posterior_std"],
        ranks={"encoder": r, "decoder": r},
        collapsed_min={"z": d1 - r}, collapsed_max={"z": d1 - r}, exact={"z": True},
        critical=lazy["critical"], critical_direction={"beta": "below", "eta_dec": "below"},
        optimal_loss=loss, notes=(), _modes=lazy["modes"],
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
    return _learnable(spectrum, spectrum.padded(d1), d1, beta, eta_enc, eta_dec,
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
    return _fixed(spectrum, np.sqrt(spectrum.padded(d1)), d1, sigma, beta, eta_enc, eta_dec,
                  setting=_settings.get("cvae", "fixed"))


# --------------------------------------------------------------------------------------------
# two-latent hierarchical VAE


def _mhvae_modes(t, d1, d2, hp, fixed):
    """Per-mode optimum of the two-latent VAE (docs/theory.md §5.0-5.2), arrays (*grid, d1).

    ``m`` is the second moment of z1 along the mode (lambda^2 + sigma1^2); F = t^2 s1^2/m + H(m) is
    the mode's loss. Theorem 3 is Theorem 5 with c^2 sigma2^2 -> eta_dec^2 in every threshold.
    """
    b1, b2, ee, ed, s1 = hp["beta1"], hp["beta2"], hp["eta_enc"], hp["eta_dec"], hp["sigma1"]
    paired = np.arange(d1) < min(d1, d2)
    c2 = (ed / ee) ** 2
    n2 = c2 * hp["sigma2"] ** 2 if fixed else ed ** 2
    m0 = b2 * n2 / b1                               # omega > 0  <=>  m > m0
    t_branch = b2 * n2 / (np.sqrt(b1) * s1)         # t3 (Thm 3) / T2 (Thm 5)
    m_low = np.maximum(s1 ** 2, t * s1 / np.sqrt(b1))
    if fixed:
        a = hp["sigma2"] * np.sqrt(b1 * b2 * c2)
        m_high = np.maximum(s1 ** 2, (t ** 2 * s1 ** 2 / a) ** (2.0 / 3.0))
    else:
        m_high = np.maximum(s1 ** 2, t ** 2 * s1 ** 2 / (b2 * ed ** 2))
    m = np.where(paired & (t > t_branch), m_high, m_low)
    lam = _sqrt_pos(m - s1 ** 2)
    z2_active = paired & ((b1 * s1 ** 2 > b2 * n2) | (t > t_branch))
    if fixed:
        s2 = hp["sigma2"]
        omega = np.where(z2_active, np.sqrt(np.sqrt(c2 * b2) / (np.sqrt(b1) * s2)
                                            * np.maximum(np.sqrt(m) - np.sqrt(m0), 0.0)), 0.0)
        H = np.where(z2_active, 2.0 * s2 * np.sqrt(c2 * b1 * b2 * m) - b2 * c2 * s2 ** 2, b1 * m)
        sigma2_modes = None
    else:
        omega = np.where(z2_active, _sqrt_pos(m - m0) / ee, 0.0)
        H = np.where(z2_active, b2 * ed ** 2 * (1.0 + np.log(m / m0)), b1 * m)
        sigma2_modes = _pad_last(np.where(z2_active, ee * np.sqrt(np.minimum(1.0, m0 / m)), ee),
                                 d2, fill=ee)
    w2 = b1 * omega / (b1 * omega ** 2 + b2 * c2)
    return dict(m=m, lam=lam, u1=t * lam / m, omega=omega, w2=w2, F=t ** 2 * s1 ** 2 / m + H,
                z2_active=z2_active, sigma2=sigma2_modes)


def _mhvae_summary(t, d1, d2, hp, fixed):
    """Ranks and optimal loss of the two-latent VAE in O(log d) per grid point.

    Modes are sorted (t descending), so each case of the per-mode optimum covers a contiguous range
    of modes, found by bisection; the mode losses F(m*) of each case are affine in one of t, t^2,
    log t, t^(2/3), summed with prefix sums. Same cases as :func:`_mhvae_modes` (checked against it
    in the tests).
    """
    b1, b2, ee, ed, s1 = (hp[k][..., 0] for k in ("beta1", "beta2", "eta_enc", "eta_dec", "sigma1"))
    k = min(d1, d2)
    c2 = (ed / ee) ** 2
    B2 = b2 * (c2 * hp["sigma2"][..., 0] ** 2 if fixed else ed ** 2)
    sb1 = np.sqrt(b1)
    noise = b1 * s1 ** 2 > B2                      # every paired z2 dim active
    idx = lambda x: np.searchsorted(-t, -x, side="left")  # noqa: E731  #{t_i > x}
    logt = np.log(np.where(t > 0, t, 1.0))
    P1, P2, PL, P23 = _prefix(t), _prefix(t * t), _prefix(logt), _prefix(np.cbrt(t * t))
    span = lambda P, lo, hi: P[hi] - P[lo]  # noqa: E731
    if fixed:
        a = hp["sigma2"][..., 0] * np.sqrt(b1 * b2 * c2)
        tau_g = np.sqrt(a * s1)                    # above it m* = (t^2 s1^2 / a)^(2/3) > s1^2
        H_s1 = 2.0 * a * s1 - B2                   # active H at m = s1^2
    else:
        tau_g = np.sqrt(B2)                        # above it m* = t^2 s1^2 / B2 > s1^2
        H_s1 = B2 * (1.0 + np.log(b1 * s1 ** 2 / B2))
    h = np.minimum(k, idx(B2 / (sb1 * s1)))        # paired modes above the branch threshold
    hg = np.minimum(h, idx(tau_g))                 # ... of which m* > s1^2
    lv = np.maximum(h, np.minimum(k, idx(sb1 * s1)))   # low branch, m* = t s1/sqrt(b1) > s1^2
    v = np.maximum(k, np.minimum(d1, idx(sb1 * s1)))   # unpaired VAE-like modes with lambda > 0
    zero = np.zeros_like(h)
    if fixed:
        F_g = 3.0 * a * np.cbrt(s1 ** 2 / a) * span(P23, zero, hg) - hg * B2
    else:
        F_g = hg * B2 * (2.0 + np.log(s1 ** 2 * b1 / B2 ** 2)) + 2.0 * B2 * span(PL, zero, hg)
    F = (F_g
         + span(P2, hg, h) + (h - hg) * H_s1                               # high, m* = s1^2
         + 2.0 * sb1 * s1 * span(P1, h, lv)                                # low, m* = t s1/sqrt b1
         + span(P2, lv, k) + (k - lv) * np.where(noise, H_s1, b1 * s1 ** 2)  # low, m* = s1^2
         + 2.0 * sb1 * s1 * span(P1, k, v)                                 # unpaired
         + span(P2, v, d1) + (d1 - v) * b1 * s1 ** 2)
    if fixed:
        s2 = hp["sigma2"][..., 0]
        per_z2 = b2 * (c2 * s2 ** 2 - ed ** 2 * np.log(s2 ** 2))
    else:
        per_z2 = b2 * ed ** 2 * (1.0 - np.log(ee ** 2))
    rank2 = np.where(noise, k, h)
    rank1 = hg + (lv - h) + (v - k)
    return dict(loss_modes=F, per_z2=per_z2, rank1=rank1, rank2=rank2,
                noise_only=rank2 > hg)  # active z2 dims on z1 modes with lambda = 0


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
    t = np.sqrt(spectrum.padded(d1))
    summ = _mhvae_summary(t, d1, d2, hp, fixed)
    loss = spectrum.trace - np.sum(t ** 2) + d2 * summ["per_z2"] + summ["loss_modes"]
    rank1, rank2 = summ["rank1"], summ["rank2"]
    b1, b2, ee, ed, s1 = hp["beta1"], hp["beta2"], hp["eta_enc"], hp["eta_dec"], hp["sigma1"]
    c2 = (ed / ee) ** 2

    def detail():
        md = _mhvae_modes(t, d1, d2, hp, fixed)
        # thresholds of z2 dim i (paired modes; z2 dims without a partner never activate)
        gate = np.maximum(b1 * s1 ** 2, np.sqrt(b1) * s1 * t)  # active iff beta2 * n2 < gate
        never = np.where(np.arange(d1) < min(d1, d2), 1.0, np.nan)
        nan_t = np.where(t > 0, t, np.nan)
        n2 = c2 * hp["sigma2"] ** 2 if fixed else ed ** 2
        critical = {
            "beta2": gate / n2,
            "eta_dec": (ee / hp["sigma2"] if fixed else 1.0) * np.sqrt(gate / b2),
            "beta1": np.fmin(b2 * n2 / s1 ** 2, (b2 * n2) ** 2 / (s1 ** 2 * nan_t ** 2)),
        }
        if fixed:
            critical["eta_enc"] = ed * hp["sigma2"] * np.sqrt(b2 / gate)
        omega, w2 = _pad_last(md["omega"], d2), _pad_last(md["w2"], d2)
        return {
            "singular_values": {"encoder1": _desc(md["lam"]), "decoder1": _desc(md["u1"]),
                                "encoder2": _desc(w2), "decoder2": _desc(omega)},
            "posterior_std": {} if fixed else {"z2": _desc(md["sigma2"])},
            # z2 dims beyond d1 have no z1 mode to pair with: never active (NaN), as `never` does
            "critical": {name: _pad_last(v * never, d2, np.nan) for name, v in critical.items()},
            "modes": {"theta": t, "lambda": md["lam"], "u1": md["u1"], "w2": w2, "omega": omega,
                      "sigma2": md["sigma2"], "m": md["m"], "F": md["F"]},
        }

    crit_names = ("beta2", "eta_dec", "beta1") + (("eta_enc",) if fixed else ())
    lazy = _lazy(_Memo(detail), {
        "singular_values": ("encoder1", "decoder1", "encoder2", "decoder2"),
        "posterior_std": () if fixed else ("z2",), "critical": crit_names,
        "modes": ("theta", "lambda", "u1", "w2", "omega", "sigma2", "m", "F")})
    direction = {"beta2": "below", "eta_dec": "below", "beta1": "above", "eta_enc": "above"}
    z1_lo, z1_hi = _rotation_range(rank1, d1)
    z2_lo, z2_hi = _rotation_range(rank2, d2) if fixed else (d2 - rank2, d2 - rank2)
    notes = [ROTATION_NOTE.format(latent="z1")]
    if fixed:
        notes.append(ROTATION_NOTE.format(latent="z2")
                     + "; with sigma2 fixed a dim equals its prior only if sigma2 == eta_enc")
    elif np.any(summ["noise_only"]):
        notes.append("some active z2 dims sit on z1 modes with no data signal (lambda = 0): "
                     "they encode the injected noise of z1, not x")
    setting = _settings.get("mhvae", "sigma2-fixed" if fixed else "sigma2-learnable")
    return Solution(
        model=setting.model, variance=setting.variance,
        theorem=setting.theorem, spectrum=spectrum, params={n: v[..., 0] for n, v in hp.items()},
        latent_dims={"z1": d1, "z2": d2}, singular_values=lazy["singular_values"],
        posterior_std=lazy["posterior_std"],
        ranks={"encoder1": rank1, "decoder1": rank1, "encoder2": rank2, "decoder2": rank2},
        collapsed_min={"z1": z1_lo, "z2": z2_lo}, collapsed_max={"z1": z1_hi, "z2": z2_hi},
        exact={"z1": False, "z2": not fixed}, critical=lazy["critical"],
        critical_direction={n: direction[n] for n in crit_names}, optimal_loss=loss,
        notes=tuple(notes), _modes=lazy["modes"],
    )


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
# dispatch


def solve(model, variance, spectrum, latent_dim, **hyper) -> Solution:
    """The closed form of ``model/variance`` (its record in :mod:`vaetheory.settings`).

    Parameters
    ----------
    model, variance : str
        E.g. ``"vae", "learnable"``; ``"mhvae", "sigma2-fixed"``.
    spectrum : Spectrum
        Of the kind the setting needs (``data``, or ``residual`` for the CVAE).
    latent_dim : int
        d1; the hierarchical VAE also takes ``latent_dim2`` as a keyword.
    **hyper
        That function's keywords (``sigma`` for the fixed-variance VAE/CVAE too).

    Returns
    -------
    Solution
    """
    setting = _settings.get(model, variance)
    d2 = hyper.pop("latent_dim2", None)
    return setting.solve(spectrum, latent_dim, d2, **hyper)

"""What each (model, variance) setting *is*: one frozen record per setting, read by every module.

A :class:`Setting` holds the setting's hyperparameters (names, defaults, constraints), its latent
variables and dimensions, the maps whose singular values are reported, which latent carries the
critical values and in which direction each hyperparameter acts, the theory function (None where
no closed form exists), the exact loss, the parameter shapes, which log-variances are learned, and
what "collapsed" means there (docs/theory.md §7), and the notes every prediction of it carries.

=====================  =====================================  ===============================
``model/variance``     theory function                        source (docs/theory.md)
=====================  =====================================  ===============================
vae/learnable          :func:`~vaetheory.theory.vae_learnable_sigma`    Theorem 4, §3
vae/fixed              :func:`~vaetheory.theory.vae_fixed_sigma`        Theorem 1, §2
cvae/learnable         :func:`~vaetheory.theory.cvae_learnable_sigma`   Theorem 2, §4
cvae/fixed             :func:`~vaetheory.theory.cvae_fixed_sigma`       §4b (not in the paper)
mhvae/sigma2-learnable :func:`~vaetheory.theory.mhvae_learnable_sigma2` Theorem 3, §5.1
mhvae/sigma2-fixed     :func:`~vaetheory.theory.mhvae_fixed_sigma2`     Theorem 5, §5.2
mhvae/both-learnable   none (numerical optimum only)                     §5.5
=====================  =====================================  ===============================

A second axis says whether the decoder noise variance ``u = eta_dec^2`` is a hyperparameter
(``decoder="fixed"``, the paper's setting and the default) or learned with the other parameters
(``decoder="learned"``: sigma-VAE, probabilistic PCA; docs/theory.md §12). A learned-decoder record
has no ``eta_dec`` hyperparameter; its theory function reports the learned ``eta_dec`` (and
``u``, ``beta u``) at the optimum, and its objective is the full negative beta-ELBO in nats.
:data:`SETTINGS` holds the fixed-decoder records by ``(model, variance)`` as before;
:data:`LEARNED_DECODER` the learned-decoder ones by ``(model, variance)``; :func:`get` and
:func:`resolve` take ``decoder=`` (default ``"fixed"``):

=================================  ==========================================  ==========
``model/variance/decoder``         theory function                             docs
=================================  ==========================================  ==========
vae/learnable/learned              ``vae_learnable_sigma_learned_decoder``     §12.2
vae/fixed/learned                  ``vae_fixed_sigma_learned_decoder``         §12.3
cvae/learnable/learned             ``cvae_learnable_sigma_learned_decoder``    §12.4
cvae/fixed/learned                 ``cvae_fixed_sigma_learned_decoder``        §12.4
mhvae/sigma2-learnable/learned     none (numerical optimum only)               §12.5
mhvae/sigma2-fixed/learned         none (numerical optimum only)               §12.5
=================================  ==========================================  ==========

Adding a setting is one record here plus its theory and loss functions. Hyperparameters are
validated at the boundary with one rule table (:data:`CONSTRAINTS`), in the style of
scikit-learn's ``_parameter_constraints``: :func:`check_value` for one value, :func:`point_hyper`
for all hyperparameters of one point (checker, trainer), :meth:`Setting.grid` for broadcast grids
(theory).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from ._validation import latent_dim as check_latent_dim  # noqa: F401  (one rule for latent dims)
from ._validation import positive
from .errors import NotCoveredError, ParameterError

__all__ = ["Hyperparameter", "Latent", "KLTerm", "Setting", "SETTINGS", "LEARNED_DECODER",
           "RECORDS", "DECODERS", "MODELS", "CONSTRAINTS", "get", "resolve", "check_value",
           "point_hyper", "Request"]


# ------------------------------------------------------------------------------------------
# the pieces of a record


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter of a setting.

    ``kind``: ``"axis"`` (one value per grid point; a list of values forms a grid axis),
    ``"vector"`` (per latent dim of ``latent``: one value = isotropic, or one per dim; fixed for a
    whole grid) or ``"isotropic"`` (one value per grid point, the same for every dim of ``latent``;
    distinct per-dim values are outside the theory). ``default`` None means required.
    """

    name: str
    default: Optional[float]
    kind: str = "axis"
    latent: Optional[str] = None
    help: str = ""


@dataclass(frozen=True)
class Latent:
    """A latent variable: its name, the argument giving its dimension, the maps acting on it,
    whether its encoder variance is learned, and what "collapsed" means for it (docs §7):

    * ``"prior"`` -- posterior equals prior (learned variance; the count is exact);
    * ``"zero-mean"`` -- zero posterior mean on the data support (fixed variance; the count is a
      [min, max] range where tied or isotropic variances leave a rotation free).
    """

    name: str
    dim_arg: str
    encoder: str
    decoder: str
    learned: bool
    collapse: str


@dataclass(frozen=True)
class KLTerm:
    """One KL-type term of the setting's loss (docs/theory.md §10): the hyperparameter that
    weights it, the latent it belongs to, the term in words, and the std of the Gaussian that q is
    compared with -- ``"eta_enc"`` (the prior) or ``"eta_dec"`` (the hierarchical p(z1|z2), whose
    std in the theory is the decoder's). A user's loss fixes each weight through
    :mod:`vaetheory.conventions`."""

    weight: str
    latent: str
    term: str
    against: str


#: the constraint of every hyperparameter (one rule table, checked by :func:`check_value`):
#: all are finite and > 0 -- beta = 0 (a plain autoencoder) is outside the theory everywhere
CONSTRAINTS = {name: "positive" for name in
               ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma", "sigma1", "sigma2")}

#: what a linear count means for a nonlinear VAE: measured (examples/nonlinear_vs_linear.py),
#: not theory; the numbers are in README.md and docs/theory.md §14
NONLINEAR_NOTE = ("nonlinear VAEs: these counts are the linear optimum's; measured on the digits, MLP "
                  "VAEs collapsed at least as many dims in every run, often several more (README "
                  "'Nonlinear VAEs (measured, not theory)', docs/theory.md §14)")

_DIRECTION = {"beta": "below", "eta_dec": "below", "beta2": "below", "eta_enc": "above",
              "beta1": "above"}


@dataclass(frozen=True)
class Setting:
    """The record of one (model, variance) setting (see the module docstring)."""

    model: str
    variance: str
    title: str
    theorem: Optional[str]
    section: str
    hyperparameters: Tuple[Hyperparameter, ...]
    latents: Tuple[Latent, ...]
    critical_latent: str
    critical: Tuple[str, ...]
    spectrum_kind: str
    theory: Optional[str]          # function name in vaetheory.theory (None: no closed form)
    loss: str                      # function name in vaetheory.losses
    parameters: Tuple[str, ...]    # loss arguments, in order
    learned_log_vars: Tuple[str, ...]
    fixed_log_vars: Dict[str, str] = field(default_factory=dict)  # log-var -> hyperparameter
    sigma1_entropy: bool = False
    water: Optional[str] = None    # function name in vaetheory.theory: the level each mode's
    #                                spectral value is compared against (Point.water_line)
    #: notes every prediction of this setting carries, whatever its hyperparameters (shown by
    #: ``predict`` and ``demo``, in text and in the JSON ``notes``)
    notes: Tuple[str, ...] = ()
    kl_terms: Tuple[KLTerm, ...] = ()   # the weighted KL terms of the loss (docs §10)
    depends_on: Tuple[str, ...] = ()    # the combinations of hyperparameters the optimum
    #                                     depends on (docs §10): all a training loss can fix
    depends_note: str = ""              # what the others do
    decoder: str = "fixed"         # "fixed": eta_dec is a hyperparameter; "learned": u = eta_dec^2
    #                                is learned (docs/theory.md §12)
    bias_of: Dict[str, str] = field(default_factory=dict)  # weight -> the bias of its output
    mean_terms: Optional[str] = None  # function name in vaetheory.losses: what the data mean and
    #                                   the biases add to the loss (docs/theory.md §1.5)
    common_names: Dict[str, Tuple[str, ...]] = field(default_factory=dict)  # role -> name stems
    #                                   users give it (vaetheory.audit guesses a mapping from them)

    # ---- identity
    @property
    def key(self) -> Tuple[str, ...]:
        """``(model, variance)``; ``(model, variance, "learned")`` for a learned decoder variance."""
        if self.decoder == "fixed":
            return (self.model, self.variance)
        return (self.model, self.variance, self.decoder)

    @property
    def name(self) -> str:
        base = f"{self.model}/{self.variance}"
        return base if self.decoder == "fixed" else f"{base}/{self.decoder}-decoder"

    @property
    def learned_decoder(self) -> bool:
        """Whether the decoder variance ``u = eta_dec^2`` is learned (docs/theory.md §12)."""
        return self.decoder == "learned"

    @property
    def decoder_variance_role(self) -> Optional[str]:
        """The optional parameter role of a trained decoder variance: ``"log_u"`` (``log u =
        log eta_dec^2``, as :mod:`vaetheory.sgd` trains it) for a learned decoder variance, None
        otherwise (docs/theory.md §12). :mod:`vaetheory.audit` evaluates the loss at it when the
        weights carry it and profiles ``u`` exactly when they do not."""
        return "log_u" if self.learned_decoder else None

    def gaussian_outputs(self, D, d1=None, x_dim=None, hyper=None) -> float:
        """``n``, the number of Gaussian outputs ``eta_dec`` is the std of (docs/theory.md §12.6):
        the optimal ``u`` for given maps is ``R / n``; the VAE's ``D``, the CVAE's ``D - x_dim``
        (y), the hierarchical VAE's ``D + beta1 d1`` (``eta_dec`` is also the std of z1 given z2)."""
        if self.has_second_latent:
            return float(D + hyper["beta1"] * d1)
        return float(D - (x_dim if self.spectrum_kind == "residual" else 0))

    @property
    def learned_hyperparameters(self) -> Tuple[str, ...]:
        """Hyperparameters of the paper that this setting learns instead (``("eta_dec",)``)."""
        return ("eta_dec",) if self.learned_decoder else ()

    @property
    def covered(self) -> bool:
        """Whether a closed form exists (for some hyperparameter values)."""
        return self.theory is not None

    # ---- hyperparameters
    @property
    def names(self) -> Tuple[str, ...]:
        return tuple(h.name for h in self.hyperparameters)

    @property
    def axes(self) -> Tuple[str, ...]:
        """Hyperparameters that form grid axes, in table order."""
        return tuple(h.name for h in self.hyperparameters if h.kind == "axis")

    @property
    def vectors(self) -> Tuple[str, ...]:
        """Per-latent-dim hyperparameters (sigma, sigma1, sigma2)."""
        return tuple(h.name for h in self.hyperparameters if h.kind != "axis")

    def hyperparameter(self, name) -> Hyperparameter:
        for h in self.hyperparameters:
            if h.name == name:
                return h
        raise KeyError(name)

    def defaults(self) -> Dict[str, float]:
        return {h.name: h.default for h in self.hyperparameters if h.default is not None}

    def direction(self, name) -> str:
        """"below": a dim is active while ``name`` is below its critical value; "above": above."""
        return _DIRECTION[name]

    # ---- latents
    @property
    def latent_names(self) -> Tuple[str, ...]:
        return tuple(z.name for z in self.latents)

    def latent(self, name) -> Latent:
        for z in self.latents:
            if z.name == name:
                return z
        raise KeyError(name)

    @property
    def maps(self) -> Dict[str, Tuple[str, str]]:
        """latent -> (encoder map, decoder map): their ranks count the latent's active modes."""
        return {z.name: (z.encoder, z.decoder) for z in self.latents}

    @property
    def map_names(self) -> Tuple[str, ...]:
        return tuple(m for z in self.latents for m in (z.encoder, z.decoder))

    # ---- functions
    @property
    def theory_function(self):
        if self.theory is None:
            return None
        return getattr(importlib.import_module("vaetheory.theory"), self.theory)

    @property
    def water_function(self):
        """``f(point) -> WaterLine``: what decides each critical-latent dim (None: no closed form)."""
        if self.water is None:
            return None
        return getattr(importlib.import_module("vaetheory.theory"), self.water)

    @property
    def loss_function(self):
        return getattr(importlib.import_module("vaetheory.losses"), self.loss)

    @property
    def mean_terms_function(self):
        """``f(mean, [x_dim,] *parameters, *biases, **axes) -> (value, {latent: mean})``: the
        loss the data mean adds with biases (docs/theory.md §1.5); None if not modelled."""
        if self.mean_terms is None:
            return None
        return getattr(importlib.import_module("vaetheory.losses"), self.mean_terms)

    @property
    def biases(self) -> Tuple[str, ...]:
        """The bias roles of the model with biases (docs/theory.md §1.5), in order."""
        return tuple(dict.fromkeys(self.bias_of.values()))

    @property
    def has_second_latent(self) -> bool:
        return any(z.dim_arg == "latent_dim2" for z in self.latents)

    def not_covered(self, hyper: Mapping = None) -> Optional[str]:
        """Why these hyperparameter values have no closed form (None if they have one)."""
        if self.theory is None:
            if self.learned_decoder:
                return (f"{self.name} (eta_dec learned) has no verified closed form "
                        "(docs/theory.md §12.5); `vaetheory check` reports its numerical optimum")
            return f"{self.name} has no closed form in the theory"
        for h in self.hyperparameters:
            if h.kind == "isotropic" and (hyper or {}).get(h.name) is not None:
                v = np.asarray(hyper[h.name], dtype=np.float64)
                if v.ndim >= 1 and v.shape[-1] > 1 and not np.all(v == v[..., :1]):
                    return (f"{h.name} with distinct per-dimension values is not covered by the "
                            "theory (Theorems 3 and 5 assume an isotropic fixed variance); give "
                            "one value, or use the numerical checker for a numerical optimum")
        return None

    def covers(self, hyper: Mapping) -> bool:
        """Whether the theory covers these hyperparameter values (isotropic ones equal per dim)."""
        return self.not_covered(hyper) is None

    def solve(self, spectrum, latent_dim, latent_dim2=None, **hyper):
        """The closed-form :class:`~vaetheory.theory.Solution` (raises NotCoveredError if none)."""
        fn = self.theory_function
        if fn is None:
            raise NotCoveredError(f"{self.name} has no closed form in the theory; "
                                  "vaetheory.checker.numerical_optimum gives its numerical optimum")
        if self.learned_decoder and hyper.get("eta_dec") is not None:
            raise ParameterError(f"{self.name} learns eta_dec: do not give a value for it")
        for spec in self.hyperparameters:
            if spec.default is None and hyper.get(spec.name) is None:
                raise ParameterError(f"{spec.name} is required with a fixed encoder variance")
        if self.has_second_latent:
            hyper["latent_dim2"] = latent_dim2
        return fn(spectrum, latent_dim, **hyper)

    # ---- loss parameters
    def parameter_shapes(self, D, d1, d2=None, x_dim=None) -> Dict[str, tuple]:
        """Shapes of the loss arguments (D: data dim; CVAE: D = x_dim + y dim)."""
        if self.model == "vae":
            return {"W": (d1, D), "U": (D, d1), "log_var": (d1,)}
        if self.model == "cvae":
            D0, D2 = x_dim, D - x_dim
            return {"W1": (d1, D0), "W2": (d1, D2), "U1": (D2, d1), "U2": (D2, D0),
                    "log_var": (d1,)}
        return {"W1": (d1, D), "U1": (D, d1), "W2": (d2, d1), "U2": (d1, d2),
                "log_var1": (d1,), "log_var2": (d2,)}

    def bias_shapes(self, D, d1, d2=None, x_dim=None) -> Dict[str, tuple]:
        """Shapes of the biases: each is the output of the weight it belongs to (``bias_of``)."""
        shapes = self.parameter_shapes(D, d1, d2, x_dim)
        return {b: (shapes[w][0],) for w, b in self.bias_of.items()}


_BETA = Hyperparameter("beta", 1.0, help="KL weight")
_ETA_ENC = Hyperparameter("eta_enc", 1.0, help="prior std")
_ETA_DEC = Hyperparameter("eta_dec", 1.0, help="decoder noise std")
_SIGMA = Hyperparameter("sigma", None, "vector", "z", "the fixed encoder std")
_BETA1 = Hyperparameter("beta1", 1.0, help="weight of the z1 consistency term")
_BETA2 = Hyperparameter("beta2", 1.0, help="KL weight of z2")
_SIGMA1 = Hyperparameter("sigma1", 1.0, "isotropic", "z1", "fixed isotropic std of z1 given x")
_SIGMA2 = Hyperparameter("sigma2", None, "isotropic", "z2", "the fixed std of z2")

_Z_LEARNED = Latent("z", "latent_dim", "encoder", "decoder", True, "prior")
_Z_FIXED = Latent("z", "latent_dim", "encoder", "decoder", False, "zero-mean")
_Z1 = Latent("z1", "latent_dim", "encoder1", "decoder1", False, "zero-mean")
_Z1_LEARNED = Latent("z1", "latent_dim", "encoder1", "decoder1", True, "prior")
_Z2_LEARNED = Latent("z2", "latent_dim2", "encoder2", "decoder2", True, "prior")
_Z2_FIXED = Latent("z2", "latent_dim2", "encoder2", "decoder2", False, "zero-mean")

_KL_Z = (KLTerm("beta", "z", "KL(q(z|x) || N(0, eta_enc^2 I))", "eta_enc"),)
_KL_ZC = (KLTerm("beta", "z", "KL(q(z|x,y) || N(0, eta_enc^2 I))", "eta_enc"),)
_KL_H = (KLTerm("beta1", "z1", "log q(z1|x) - log p(z1|z2), p(z1|z2) = N(U2 z2, eta_dec^2 I)",
                "eta_dec"),
         KLTerm("beta2", "z2", "KL(q(z2|z1) || N(0, eta_enc^2 I))", "eta_enc"))
_DEP_LEARN = dict(depends_on=("beta eta_dec^2",),
                  depends_note="eta_enc only rescales the latent space (docs §3)")
_DEP_FIXED = dict(depends_on=("beta eta_dec^2 / eta_enc^2", "sigma"),
                  depends_note="= s^2: a dim is active iff theta_i > s sigma'_i (docs §2); "
                               "beta eta_dec^2 also enters the optimal loss's constants")
_DEP_THM3 = dict(depends_on=("beta1", "beta2 eta_dec^2", "sigma1"),
                 depends_note="eta_enc only rescales z2 (docs §5.4)")
_DEP_THM5 = dict(depends_on=("beta1", "beta2 eta_dec^2 / eta_enc^2", "sigma1", "sigma2"),
                 depends_note="eta_enc changes the ranks through c = eta_dec / eta_enc (docs "
                              "§5.4); beta2 eta_dec^2 also enters the optimal loss's constants")
_DEP_OPEN = dict(depends_on=("beta1", "beta2", "eta_dec", "eta_enc"),
                 depends_note="no closed form (docs §5.5)")
_DEP_LEARN_U = dict(depends_on=("beta",),
                    depends_note="eta_dec is learned (docs §12.2); eta_enc only rescales the "
                                 "latent space")
_DEP_FIXED_U = dict(depends_on=("beta / eta_enc^2", "sigma"),
                    depends_note="eta_dec is learned (docs §12.3): s^2 = beta u / eta_enc^2")
_DEP_OPEN_U = dict(depends_on=("beta1", "beta2", "eta_enc", "sigma1"),
                   depends_note="eta_dec is learned; no closed form (docs §12.5)")
def _stems(*names, tags=("",)):
    """Name stems (lowercase, no separators) for every name x latent tag."""
    out = []
    for n in names:
        for t in tags:
            out += [n + t, t + n] if t else [n]
    return tuple(dict.fromkeys(out))


_ENC = ("encoder", "enc", "encodermu", "encmu", "encodermean", "fcmu", "mu", "wenc", "qz",
        "inference", "recognition")
_DEC = ("decoder", "dec", "decodermu", "fcdec", "wdec", "px", "generator", "generative")
_LOGVAR = ("logvar", "logvariance", "logsigma2", "logsigmasq", "logvarz", "zlogvar")
_FLAT_NAMES = {"W": _ENC, "U": _DEC, "log_var": _LOGVAR}
_COND_NAMES = {"[W1,W2]": _ENC, "W1": _stems(*_ENC[:3], tags=("x",)),
               "W2": _stems(*_ENC[:3], tags=("y",)), "[U1,U2]": _DEC,
               "U1": _stems(*_DEC[:3], tags=("z",)), "U2": _stems(*_DEC[:3], "skip", tags=("x",)) + ("skip",),
               "log_var": _LOGVAR}
_HIER_NAMES = {"W1": _stems(*_ENC[:4], "q", tags=("1", "z1")),
               "U1": _stems(*_DEC[:4], "p", tags=("1", "x")),
               "W2": _stems(*_ENC[:4], "q", tags=("2", "z2")),
               "U2": _stems(*_DEC[:4], "p", tags=("2", "z1")),
               "log_var1": _stems("logvar", "logvariance", "logsigma2", tags=("1", "z1")),
               "log_var2": _stems("logvar", "logvariance", "logsigma2", tags=("2", "z2"))}
_FLAT_BIAS = {"W": "encoder_bias", "U": "decoder_bias"}
_COND_BIAS = {"W1": "encoder_bias", "W2": "encoder_bias", "U1": "decoder_bias",
              "U2": "decoder_bias"}
_HIER_BIAS = {"W1": "encoder_bias", "U1": "decoder_bias", "W2": "encoder2_bias",
              "U2": "decoder2_bias"}
_FLAT_EXTRA = dict(bias_of=_FLAT_BIAS, mean_terms="vae_mean_terms", common_names=_FLAT_NAMES)
_COND_EXTRA = dict(bias_of=_COND_BIAS, mean_terms="cvae_mean_terms", common_names=_COND_NAMES)
#: names users give a trained decoder (log-)variance, by role and transform (a learned decoder
#: variance's optional role ``log_u``, docs/theory.md §12); first in the records' common_names so
#: that e.g. ``log_scale`` is the decoder's there, not a log-std of the encoder
_LOG_U_NAMES = {
    "log_u": ("logu", "logvarx", "xlogvar", "logvary", "ylogvar", "declogvar", "decoderlogvar",
              "logvardec", "logvardecoder", "pxlogvar", "noiselogvar", "logvarnoise",
              "lognoisevar", "outputlogvar", "outlogvar", "obslogvar", "logobsvar",
              "likelihoodlogvar", "reconlogvar", "logdecvar", "logdecodervar"),
    "log_std:log_u": ("logscale", "lognoisestd", "lognoisesigma", "logsigmanoise", "logdecstd",
                      "logdecoderstd", "logdecsigma", "logoutputstd", "logobsstd", "logobssigma",
                      "logeta", "logetadec"),
    "std:log_u": ("noisestd", "noisesigma", "decstd", "decoderstd", "decsigma", "obsstd",
                  "obssigma", "outputstd", "etadec"),
    "var:log_u": ("noisevar", "noisevariance", "decvar", "decodervar", "obsvar",
                  "outputvar"),
}
_FLAT_EXTRA_U = dict(_FLAT_EXTRA, common_names={**_LOG_U_NAMES, **_FLAT_NAMES})
_COND_EXTRA_U = dict(_COND_EXTRA, common_names={**_LOG_U_NAMES, **_COND_NAMES})
_HIER_EXTRA = dict(bias_of=_HIER_BIAS, mean_terms="mhvae_mean_terms", common_names=_HIER_NAMES)

_FLAT = ("W", "U", "log_var")
_COND = ("W1", "W2", "U1", "U2", "log_var")
_HIER = ("W1", "U1", "W2", "U2", "log_var1", "log_var2")

_RECORDS = (
    Setting("vae", "learnable", "standard VAE", "Theorem 4 (docs/theory.md §3)", "§3",
            (_BETA, _ETA_ENC, _ETA_DEC), (_Z_LEARNED,), "z", ("beta", "eta_dec"), "data",
            "vae_learnable_sigma", "vae_loss", _FLAT, ("log_var",), water="water_learnable",
            notes=(NONLINEAR_NOTE,), kl_terms=_KL_Z, **_DEP_LEARN, **_FLAT_EXTRA),
    Setting("vae", "fixed", "standard VAE", "Theorem 1 (docs/theory.md §2)", "§2",
            (_BETA, _ETA_ENC, _ETA_DEC, _SIGMA), (_Z_FIXED,), "z", ("beta", "eta_dec", "eta_enc"),
            "data", "vae_fixed_sigma", "vae_loss", _FLAT, (), {"log_var": "sigma"},
            water="water_fixed", kl_terms=_KL_Z, **_DEP_FIXED, **_FLAT_EXTRA),
    Setting("cvae", "learnable", "conditional VAE (y given x)", "Theorem 2 (docs/theory.md §4)",
            "§4", (_BETA, _ETA_ENC, _ETA_DEC), (_Z_LEARNED,), "z", ("beta", "eta_dec"),
            "residual", "cvae_learnable_sigma", "cvae_loss", _COND, ("log_var",),
            water="water_learnable", kl_terms=_KL_ZC, **_DEP_LEARN, **_COND_EXTRA),
    Setting("cvae", "fixed", "conditional VAE (y given x)",
            "docs/theory.md §4b (fixed-variance CVAE)", "§4b",
            (_BETA, _ETA_ENC, _ETA_DEC, _SIGMA), (_Z_FIXED,), "z", ("beta", "eta_dec", "eta_enc"),
            "residual", "cvae_fixed_sigma", "cvae_loss", _COND, (), {"log_var": "sigma"},
            water="water_fixed", kl_terms=_KL_ZC, **_DEP_FIXED, **_COND_EXTRA),
    Setting("mhvae", "sigma2-learnable", "two-latent hierarchical VAE",
            "Theorem 3 (docs/theory.md §5.1)", "§5.1", (_BETA1, _BETA2, _ETA_ENC, _ETA_DEC, _SIGMA1),
            (_Z1, _Z2_LEARNED), "z2", ("beta2", "eta_dec", "beta1"), "data",
            "mhvae_learnable_sigma2", "mhvae_loss", _HIER, ("log_var2",), {"log_var1": "sigma1"},
            water="water_mhvae_learnable", kl_terms=_KL_H, **_DEP_THM3, **_HIER_EXTRA),
    Setting("mhvae", "sigma2-fixed", "two-latent hierarchical VAE",
            "Theorem 5 (docs/theory.md §5.2, corrected branch threshold)", "§5.2",
            (_BETA1, _BETA2, _ETA_ENC, _ETA_DEC, _SIGMA1, _SIGMA2), (_Z1, _Z2_FIXED), "z2",
            ("beta2", "eta_dec", "beta1", "eta_enc"), "data", "mhvae_fixed_sigma2", "mhvae_loss",
            _HIER, (), {"log_var1": "sigma1", "log_var2": "sigma2"},
            water="water_mhvae_fixed", kl_terms=_KL_H, **_DEP_THM5, **_HIER_EXTRA),
    Setting("mhvae", "both-learnable", "two-latent hierarchical VAE", None, "§5.5",
            (_BETA1, _BETA2, _ETA_ENC, _ETA_DEC), (_Z1_LEARNED, _Z2_LEARNED), "z2", (), "data",
            None, "mhvae_loss", _HIER, ("log_var1", "log_var2"), {}, sigma1_entropy=True,
            kl_terms=_KL_H, **_DEP_OPEN, **_HIER_EXTRA),
)

_LEARNED_RECORDS = (
    Setting("vae", "learnable", "standard VAE", "Theorem 4 profiled over the learned decoder "
            "variance (docs/theory.md §12.2)", "§12.2", (_BETA, _ETA_ENC), (_Z_LEARNED,), "z",
            ("beta",), "data", "vae_learnable_sigma_learned_decoder", "vae_loss", _FLAT,
            ("log_var",), water="water_learned_decoder", decoder="learned", kl_terms=_KL_Z,
            **_DEP_LEARN_U, **_FLAT_EXTRA_U),
    Setting("vae", "fixed", "standard VAE", "Theorem 1 profiled over the learned decoder "
            "variance (docs/theory.md §12.3)", "§12.3", (_BETA, _ETA_ENC, _SIGMA), (_Z_FIXED,),
            "z", ("beta", "eta_enc"), "data", "vae_fixed_sigma_learned_decoder", "vae_loss", _FLAT,
            (), {"log_var": "sigma"}, water="water_learned_decoder", decoder="learned",
            kl_terms=_KL_Z, **_DEP_FIXED_U, **_FLAT_EXTRA_U),
    Setting("cvae", "learnable", "conditional VAE (y given x)", "Theorem 2 profiled over the "
            "learned decoder variance (docs/theory.md §12.4)", "§12.4", (_BETA, _ETA_ENC),
            (_Z_LEARNED,), "z", ("beta",), "residual", "cvae_learnable_sigma_learned_decoder",
            "cvae_loss", _COND, ("log_var",), water="water_learned_decoder", decoder="learned",
            kl_terms=_KL_ZC, **_DEP_LEARN_U, **_COND_EXTRA_U),
    Setting("cvae", "fixed", "conditional VAE (y given x)", "§4b profiled over the learned "
            "decoder variance (docs/theory.md §12.4)", "§12.4", (_BETA, _ETA_ENC, _SIGMA),
            (_Z_FIXED,), "z", ("beta", "eta_enc"), "residual", "cvae_fixed_sigma_learned_decoder",
            "cvae_loss", _COND, (), {"log_var": "sigma"}, water="water_learned_decoder",
            decoder="learned", kl_terms=_KL_ZC, **_DEP_FIXED_U, **_COND_EXTRA_U),
    Setting("mhvae", "sigma2-learnable", "two-latent hierarchical VAE", None, "§12.5",
            (_BETA1, _BETA2, _ETA_ENC, _SIGMA1), (_Z1, _Z2_LEARNED), "z2", (), "data", None,
            "mhvae_loss", _HIER, ("log_var2",), {"log_var1": "sigma1"}, decoder="learned",
            kl_terms=_KL_H, **_DEP_OPEN_U, **_HIER_EXTRA),
    Setting("mhvae", "sigma2-fixed", "two-latent hierarchical VAE", None, "§12.5",
            (_BETA1, _BETA2, _ETA_ENC, _SIGMA1, _SIGMA2), (_Z1, _Z2_FIXED), "z2", (), "data",
            None, "mhvae_loss", _HIER, (), {"log_var1": "sigma1", "log_var2": "sigma2"},
            decoder="learned", kl_terms=_KL_H, **_DEP_OPEN_U, **_HIER_EXTRA),
)

#: every setting with a fixed decoder variance (eta_dec a hyperparameter), by (model, variance)
SETTINGS: Dict[Tuple[str, str], Setting] = {s.key: s for s in _RECORDS}
#: every setting with a learned decoder variance (u = eta_dec^2 learned), by (model, variance)
LEARNED_DECODER: Dict[Tuple[str, str], Setting] = {(s.model, s.variance): s
                                                   for s in _LEARNED_RECORDS}
#: every record, fixed decoders first
RECORDS: Tuple[Setting, ...] = _RECORDS + _LEARNED_RECORDS
#: the decoder-variance axis: "fixed" (eta_dec given) or "learned"
DECODERS: Tuple[str, ...] = ("fixed", "learned")
_BY_DECODER = {"fixed": SETTINGS, "learned": LEARNED_DECODER}
#: the models, in order
MODELS: Tuple[str, ...] = tuple(dict.fromkeys(s.model for s in _RECORDS))
#: the variances of each model, in order
VARIANCES: Dict[str, Tuple[str, ...]] = {m: tuple(s.variance for s in _RECORDS if s.model == m)
                                         for m in MODELS}
#: every variance name, in order
ALL_VARIANCES: Tuple[str, ...] = tuple(dict.fromkeys(s.variance for s in _RECORDS))


def get(model, variance, decoder="fixed") -> Setting:
    """The record of ``model/variance`` with a ``decoder`` variance that is ``"fixed"`` (eta_dec a
    hyperparameter, the default) or ``"learned"``; ParameterError naming the known ones otherwise."""
    table = _BY_DECODER.get(decoder)
    if table is None:
        raise ParameterError(f"unknown decoder variance {decoder!r}; use fixed or learned")
    try:
        return table[(model, variance)]
    except KeyError:
        known = ", ".join(s.name for s in table.values())
        what = f"{model}/{variance}" + ("" if decoder == "fixed" else f" with a {decoder} decoder "
                                        "variance")
        raise ParameterError(f"unknown model/variance {what}; known: {known}") from None


def of(obj) -> Setting:
    """The record of anything with ``model`` and ``variance`` (and optionally ``decoder``)
    attributes (a Solution, a result)."""
    return get(obj.model, obj.variance, getattr(obj, "decoder", "fixed"))


# the variance names users may give for the hierarchical VAE (learnable/fixed refer to Sigma2)
_ALIASES = {"mhvae": {"learnable": "sigma2-learnable", "fixed": "sigma2-fixed"}}


def resolve(model, variance=None, *, given=(), decoder="fixed") -> Setting:
    """The setting meant by a model, an optional variance and the hyperparameters ``given``.

    Without ``variance``: the first variant of the model whose required hyperparameters are all
    given (vae/cvae: ``fixed`` iff ``sigma`` is given; the hierarchical VAE: ``sigma2-fixed`` iff
    ``sigma2`` is given), else the model's first variant (``learnable``, ``sigma2-learnable``).
    For the hierarchical VAE ``learnable``/``fixed`` mean ``sigma2-learnable``/``sigma2-fixed``.
    ``decoder="learned"`` picks the record of the same variance with a learned decoder variance.
    """
    if model not in VARIANCES:
        raise ParameterError(f"unknown model {model!r}; use {', '.join(MODELS)}")
    given = set(given)
    if variance is None:
        variance = VARIANCES[model][0]
        for v in VARIANCES[model]:
            required = [h.name for h in SETTINGS[(model, v)].hyperparameters if h.default is None]
            if required and all(r in given for r in required):
                variance = v
                break
    variance = _ALIASES.get(model, {}).get(variance, variance)
    return get(model, variance, decoder)


# ------------------------------------------------------------------------------------------
# validation at the boundary


def check_value(name, value, *, label=None):
    """``value`` as a float64 array, after checking the constraint of hyperparameter ``name``
    (:data:`CONSTRAINTS`). ``label`` is how messages name it (e.g. ``--beta``; default ``name``).
    Raises :class:`ParameterError`."""
    rule = CONSTRAINTS.get(name, "positive")
    return positive(label or name, value, allow_zero=rule == "non-negative")


def _vector(name, value, d):
    a = check_value(name, value).ravel()
    if a.size == 1:
        return np.full(d, float(a[0]))
    if a.size != d:
        raise ParameterError(f"{name} has {a.size} entries but the latent dim is {d}")
    return a.astype(np.float64)


def point_hyper(setting: Setting, hyper: Mapping, d1, d2=None) -> Dict[str, object]:
    """The hyperparameters of one point, checked, with defaults: floats for grid axes and
    ``(d,)`` arrays for per-dim ones (sigma, sigma1, sigma2). Unknown names raise."""
    h = {k: v for k, v in hyper.items() if v is not None}
    out = {}
    dims = {"z": d1, "z1": d1, "z2": d2 if d2 is not None else d1}
    for spec in setting.hyperparameters:
        value = h.pop(spec.name, spec.default)
        if value is None:
            raise ParameterError(f"{spec.name} is required with a fixed encoder variance")
        if spec.kind == "axis":
            v = check_value(spec.name, value)
            if v.size != 1:
                raise ParameterError(f"{spec.name} must be one number here, got {v.size} values")
            out[spec.name] = float(v.ravel()[0])
        else:
            out[spec.name] = _vector(spec.name, value, dims[spec.latent])
    if h:
        raise ParameterError(f"hyperparameter(s) not used by {setting.name}: {', '.join(sorted(h))}")
    return out


# ------------------------------------------------------------------------------------------
# a request: a setting, latent dims and a hyperparameter grid


@dataclass(frozen=True)
class Request:
    """A setting with latent dims and a grid of hyperparameter values: what ``predict`` asks.

    ``axes`` maps every grid hyperparameter of the setting to its values (1-d arrays, the order
    of the grid axes); ``vectors`` the per-dim ones (sigma, sigma1, sigma2: one value = isotropic,
    or one per latent dim). :meth:`solve` gives one :class:`~vaetheory.theory.Solution` per
    latent-dim setting, each covering the whole grid in one theory call.
    """

    setting: Setting
    axes: Dict[str, np.ndarray]
    latent_dims: Tuple[int, ...] = ()
    latent_dims2: Optional[Tuple[int, ...]] = None
    vectors: Dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def build(cls, setting: Setting, *, latent_dims=(), latent_dims2=None, labels=None,
              **values) -> "Request":
        """Check and complete a request: missing axes get their default (one value)."""
        labels = labels or {}
        axes, vectors = {}, {}
        for spec in setting.hyperparameters:
            given = values.pop(spec.name, None)
            label = labels.get(spec.name, spec.name)
            if spec.kind == "axis":
                v = np.array([spec.default]) if given is None else np.atleast_1d(
                    check_value(spec.name, given, label=label)).ravel()
                axes[spec.name] = v.astype(np.float64)
            elif given is not None:
                vectors[spec.name] = np.atleast_1d(check_value(spec.name, given, label=label)).ravel()
            elif spec.default is not None:
                vectors[spec.name] = np.array([spec.default])
        if values:
            raise ParameterError(f"hyperparameter(s) not used by {setting.name}: "
                                 f"{', '.join(sorted(values))}")
        return cls(setting, axes, tuple(latent_dims),
                   None if latent_dims2 is None else tuple(latent_dims2), vectors)

    def latent_settings(self):
        """``[(d1, d2), ...]``: one Solution per entry (d2 None without a second latent)."""
        if not self.setting.has_second_latent:
            return [(d, None) for d in self.latent_dims]
        if self.latent_dims2 is None:
            return [(d, d) for d in self.latent_dims]
        return [(a, b) for a in self.latent_dims for b in self.latent_dims2]

    @property
    def grid_shape(self) -> Tuple[int, ...]:
        return tuple(v.size for v in self.axes.values())

    @property
    def grid_size(self) -> int:
        return math.prod(self.grid_shape)

    @property
    def swept(self):
        """Hyperparameters with more than one value."""
        return [k for k, v in self.axes.items() if v.size > 1]

    @property
    def covered(self) -> bool:
        return self.setting.covers(self.vectors)

    def grid(self) -> Dict[str, np.ndarray]:
        """The outer-product grid of the axes (``numpy.meshgrid(indexing="ij")``)."""
        names = list(self.axes)
        grids = np.meshgrid(*[self.axes[n] for n in names], indexing="ij") if names else []
        return dict(zip(names, grids))

    def theory_kwargs(self, d2=None) -> dict:
        kw = dict(self.grid())
        for name, v in self.vectors.items():
            kw[name] = float(v[0]) if v.size == 1 else v
        return kw

    def solve(self, spectrum):
        """One Solution per latent-dim setting (see :meth:`latent_settings`)."""
        return [self.setting.solve(spectrum, d1, d2, **self.theory_kwargs())
                for d1, d2 in self.latent_settings()]

    def points(self):
        """``(d1, d2, index, hyper)`` for every latent setting and grid point (C order)."""
        grid = self.grid()
        shape = self.grid_shape
        for d1, d2 in self.latent_settings():
            for idx in np.ndindex(*shape):
                hyper = {k: float(v[idx]) for k, v in grid.items()}
                for name, v in self.vectors.items():
                    hyper[name] = float(v[0]) if v.size == 1 else v
                yield d1, d2, idx, hyper

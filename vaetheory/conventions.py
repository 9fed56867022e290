"""Training losses as users write them -> the theory's (beta, eta_enc, eta_dec) (docs/theory.md §10).

A :class:`TrainingLoss` describes a loss as written in training code: the reconstruction term
(squared error summed over the output elements, averaged over them, or a Gaussian negative
log-likelihood with a fixed decoder std; times a weight), the KL term(s) (summed or averaged over
the latent dims, times a weight; for the hierarchical VAE also the weight of the z1 term and the
std of p(z1|z2)), the prior std, and whether the batch is summed or averaged (which cancels).
:func:`equivalent` converts it *exactly* into the hyperparameters of a setting:

===================================  ==============================================================
user's loss, per sample              theory (docs §10)
===================================  ==============================================================
``r * rho * ||x - x_hat||^2``        ``rho = 1`` (sse), ``1/D`` (mse, D output elements),
                                     ``1/(2 S^2)`` (Gaussian NLL with std S)
``+ w * mu * KL``                    ``mu = 1`` (sum over latent dims), ``1/d`` (mean over d dims)
equivalent                           ``beta * eta_dec^2 = w mu / (2 r rho)``, ``eta_enc = prior std``
===================================  ==============================================================

Only the combinations in the setting record's ``depends_on`` matter (e.g. ``beta eta_dec^2``), so
one representative is returned: ``eta_dec = S`` for a Gaussian NLL, 1 for a squared error, and for
the hierarchical VAE the std of p(z1|z2) (its z1 term compares q(z1|x) with that Gaussian).
Non-Gaussian decoders (Bernoulli / binary cross-entropy, categorical, Laplace / L1, ...) are
outside the theory and are refused with a :class:`~vaetheory.errors.ParameterError`.

>>> import vaetheory.conventions as vc
>>> loss = vc.TrainingLoss(recon="mse", kl_weight=2.5e-4, output_dim=3 * 64 * 64)
>>> conv = vc.equivalent(loss, "vae", "learnable", latent_dim=128)
>>> round(conv.hyper["beta"] * conv.hyper["eta_dec"] ** 2, 6)
1.536
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np

from . import settings as _settings
from ._validation import positive
from .errors import ParameterError

__all__ = ["TrainingLoss", "Conversion", "equivalent", "RECON", "KL_REDUCTIONS", "REFUSED"]

#: reconstruction terms the theory covers: name -> (what it is, how people write it)
RECON = {
    "sse": ("squared error summed over the output elements",
            'F.mse_loss(x_hat, x, reduction="sum"), ((x_hat - x)**2).sum()'),
    "mse": ("squared error averaged over the output elements",
            "F.mse_loss(x_hat, x) (default reduction='mean')"),
    "gaussian": ("Gaussian negative log-likelihood with a fixed decoder std S, summed over the "
                 "output elements", "-Normal(x_hat, S).log_prob(x).sum()"),
}
_RECON_ALIASES = {"mse-sum": "sse", "sum": "sse", "mse-mean": "mse", "mean": "mse",
                  "gauss": "gaussian", "gaussian-nll": "gaussian", "normal": "gaussian"}

#: decoders the theory does not cover (it is about Gaussian decoders): name -> what it is
REFUSED = {
    "bce": "a Bernoulli decoder (binary cross-entropy)",
    "binary-cross-entropy": "a Bernoulli decoder (binary cross-entropy)",
    "bernoulli": "a Bernoulli decoder (binary cross-entropy)",
    "continuous-bernoulli": "a continuous Bernoulli decoder",
    "categorical": "a categorical decoder (cross-entropy)",
    "cross-entropy": "a categorical decoder (cross-entropy)",
    "ce": "a categorical decoder (cross-entropy)",
    "multinomial": "a multinomial decoder",
    "l1": "a Laplace decoder (absolute error)",
    "mae": "a Laplace decoder (absolute error)",
    "laplace": "a Laplace decoder (absolute error)",
    "poisson": "a Poisson decoder",
    "logistic": "a (discretised) logistic decoder",
    "discretized-logistic": "a discretised logistic decoder",
}

KL_REDUCTIONS = ("sum", "mean")
_BATCH = ("mean", "sum")


def recon_kind(name: str) -> str:
    """The canonical reconstruction kind of ``name`` (``sse``, ``mse``, ``gaussian``); a
    ParameterError for decoders the theory does not cover and for unknown names."""
    key = str(name).strip().lower().replace("_", "-")
    key = _RECON_ALIASES.get(key, key)
    if key in RECON:
        return key
    if key in REFUSED:
        raise ParameterError(
            f"recon {name!r} is {REFUSED[key]}: not covered by the theory, which is about Gaussian "
            "decoders (squared error or a Gaussian likelihood); no prediction is made for it",
            cli=f"--recon {name}: {REFUSED[key]} is not covered by the theory, which is about "
                "Gaussian decoders (--recon sse, mse or gaussian); no prediction is made for it")
    known = ", ".join(list(RECON) + list(_RECON_ALIASES))
    raise ParameterError(f"unknown recon {name!r}; use one of {known}",
                         cli=f"--recon {name}: unknown; use sse, mse or gaussian")


@dataclass(frozen=True)
class TrainingLoss:
    """A training loss as written (docs/theory.md §10), per sample before batch reduction::

        recon_weight * R(x, x_hat) + kl1_weight * K1 + kl_weight * K

    Parameters
    ----------
    recon : {"sse", "mse", "gaussian"}
        ``R``: squared error summed over the D output elements, averaged over them, or the
        Gaussian NLL ``-log N(x; x_hat, decoder_std^2 I)`` (summed over the elements). Aliases:
        ``mse-sum``, ``mse-mean``. Bernoulli, categorical, Laplace ... raise ParameterError.
    recon_weight : float
        Its weight (e.g. 0.5 for ``0.5 * SSE``).
    decoder_std : float, optional
        ``S`` of the Gaussian NLL (required with ``recon="gaussian"``, not used otherwise).
    kl : {"sum", "mean"}
        Each KL term summed over its latent dims, or averaged over them.
    kl_weight : float or array
        Weight of the KL to the prior (the hierarchical VAE: of z2's KL). An array gives a grid.
    kl1_weight : float or array, optional
        Hierarchical VAE: weight of the z1 term ``log q(z1|x) - log p(z1|z2)`` (default 1).
    z1_prior_std : float
        Hierarchical VAE: the std of ``p(z1|z2) = N(U2 z2, z1_prior_std^2 I)`` (default 1).
    prior_std : float or array
        Std of the prior ``N(0, prior_std^2 I)`` (of z2 for the hierarchical VAE): eta_enc.
    output_dim : int, optional
        D, the number of output elements (``recon="mse"`` divides by it; e.g. 3*64*64).
    batch : {"mean", "sum"}
        How the per-sample losses of a batch are combined: a positive factor, it cancels.
    """

    recon: str = "sse"
    recon_weight: float = 1.0
    decoder_std: Optional[float] = None
    kl: str = "sum"
    kl_weight: object = 1.0
    kl1_weight: object = None
    z1_prior_std: float = 1.0
    prior_std: object = 1.0
    output_dim: Optional[int] = None
    batch: str = "mean"

    def __post_init__(self):
        object.__setattr__(self, "recon", recon_kind(self.recon))
        positive("recon_weight", self.recon_weight)
        if self.recon == "gaussian":
            if self.decoder_std is None:
                raise ParameterError("recon='gaussian' needs decoder_std (the fixed std S of the "
                                     "Gaussian likelihood)",
                                     cli="--recon gaussian needs --decoder-std S")
            positive("decoder_std", self.decoder_std)
        elif self.decoder_std is not None:
            raise ParameterError(f"decoder_std belongs to recon='gaussian', not {self.recon!r}",
                                 cli=f"--decoder-std is the std of --recon gaussian, not of "
                                     f"--recon {self.recon}")
        if self.kl not in KL_REDUCTIONS:
            raise ParameterError(f"kl must be 'sum' or 'mean' over the latent dims, got {self.kl!r}")
        if self.batch not in _BATCH:
            raise ParameterError(f"batch must be 'mean' or 'sum', got {self.batch!r}")
        positive("kl_weight", self.kl_weight)
        if self.kl1_weight is not None:
            positive("kl1_weight", self.kl1_weight)
        positive("z1_prior_std", self.z1_prior_std)
        positive("prior_std", self.prior_std)
        if self.output_dim is not None and (int(self.output_dim) != self.output_dim
                                            or self.output_dim < 1):
            raise ParameterError(f"output_dim must be an integer >= 1, got {self.output_dim}")

    # ---- the factors of docs §10
    def rho(self, output_dim=None) -> float:
        """``rho``: the user's reconstruction term is ``recon_weight * rho * ||x - x_hat||^2`` plus a
        constant (docs §10)."""
        if self.recon == "sse":
            return 1.0
        if self.recon == "gaussian":
            return 1.0 / (2.0 * float(self.decoder_std) ** 2)
        D = self.output_dim if self.output_dim is not None else output_dim
        if D is None:
            raise ParameterError("recon='mse' averages over the output elements: give output_dim "
                                 "(e.g. 3*64*64 for 64x64 RGB images)",
                                 cli="--recon mse averages over the output elements: give "
                                     "--output-dim D (e.g. 12288 for 64x64 RGB images)")
        return 1.0 / float(D)

    def describe(self, output_dim=None, latent_dims=None, hierarchical=False) -> str:
        """The loss in words, as written (one line)."""
        w = _num(self.recon_weight)
        head = "" if self.recon_weight == 1 else f"{w} * "
        if self.recon == "sse":
            rec = "sum of (x - x_hat)^2 over the output elements"
        elif self.recon == "mse":
            D = self.output_dim if self.output_dim is not None else output_dim
            rec = f"mean of (x - x_hat)^2 over the {D if D is not None else 'D'} output elements"
        else:
            rec = f"-log N(x; x_hat, {_num(self.decoder_std)}^2 I)"
        dims = latent_dims or {}
        red = (lambda z: "summed over its dims" if self.kl == "sum" else
               f"averaged over its {dims.get(z, 'd')} dims")
        prior = _num(self.prior_std)
        if hierarchical:
            k1 = _num(1.0 if self.kl1_weight is None else self.kl1_weight)
            terms = (f"{k1} * [log q(z1|x) - log N(z1; U2 z2, {_num(self.z1_prior_std)}^2 I)] "
                     f"{red('z1')} + {_num(self.kl_weight)} * KL(q(z2|z1) || N(0, {prior}^2 I)) "
                     f"{red('z2')}")
        else:
            terms = f"{_num(self.kl_weight)} * KL(q(z|x) || N(0, {prior}^2 I)) {red('z')}"
        return f"{head}{rec} + {terms}; {self.batch} over the batch (cancels)"


def _num(v):
    a = np.asarray(v, dtype=np.float64).ravel()
    if a.size == 1:
        return f"{a[0]:.6g}"
    return f"[{a[0]:.6g} .. {a[-1]:.6g}] ({a.size} values)"


@dataclass(frozen=True)
class Conversion:
    """The theory's hyperparameters equivalent to a :class:`TrainingLoss` (docs/theory.md §10).

    Attributes
    ----------
    setting : Setting
    loss : TrainingLoss
    hyper : dict
        ``beta`` (or ``beta1``, ``beta2``), ``eta_enc``, ``eta_dec``: pass them to the theory
        function (``vae_learnable_sigma(spec, d, **conv.hyper)``); arrays where the loss's
        weights are arrays.
    factors : dict
        Per KL hyperparameter, the factor ``f`` with ``hyper[name] = f * (the user's weight)``.
    weights : dict
        Per KL hyperparameter, the user's weight it comes from (the name of the loss field).
    reference : str
        Why eta_dec has the value it has (the representative chosen).
    """

    setting: object
    loss: TrainingLoss
    hyper: Dict[str, object]
    factors: Dict[str, float]
    weights: Dict[str, str]
    reference: str
    output_dim: Optional[int] = None
    latent_dims: Dict[str, int] = field(default_factory=dict)

    @property
    def kappa(self):
        """``weight * eta_dec^2`` of each KL-to-the-prior hyperparameter (the combination that
        matters; the hierarchical z1 term's weight beta1 matters by itself)."""
        ed2 = np.asarray(self.hyper["eta_dec"], dtype=np.float64) ** 2
        return {t.weight: np.asarray(self.hyper[t.weight], dtype=np.float64) * ed2
                for t in self.setting.kl_terms if t.against == "eta_enc"}

    @property
    def description(self) -> str:
        return self.loss.describe(self.output_dim, self.latent_dims,
                                  self.setting.has_second_latent)

    def user_weight(self, name, value):
        """The user's weight that gives ``value`` of KL hyperparameter ``name`` (e.g. the kl_weight
        of a beta answered by ``thresholds --rate``)."""
        return np.asarray(value, dtype=np.float64) / self.factors[name]

    def lines(self):
        """The conversion in words, for the command line."""
        parts = [f"{k} = {_num(self.hyper[k])}" for k in self.factors]
        parts += [f"eta_enc = {_num(self.hyper['eta_enc'])}", f"eta_dec = {_num(self.hyper['eta_dec'])}"]
        kap = "; ".join(f"{k} eta_dec^2 = {_num(v)}" for k, v in self.kappa.items())
        forms = "; ".join(f"{k} = {self.factors[k]:.6g} x {self.weights[k]}" for k in self.factors)
        return [f"loss: {self.description}",
                f"equivalent (docs/theory.md §10): {', '.join(parts)} ({kap}; {forms}); "
                f"{self.reference}",
                f"{self.setting.name} depends on {', '.join(self.setting.depends_on)} only"
                + (f"; {self.setting.depends_note}" if self.setting.depends_note else "")]

    def to_dict(self) -> dict:
        return {"description": self.description,
                "as_given": {k: v for k, v in self.loss.__dict__.items()},
                "hyper": dict(self.hyper), "factors": dict(self.factors),
                "weights": dict(self.weights), "kappa": self.kappa,
                "reference": self.reference, "output_dim": self.output_dim,
                "depends_on": list(self.setting.depends_on)}


def equivalent(loss: TrainingLoss, model="vae", variance=None, *, latent_dim=None,
               latent_dim2=None, output_dim=None) -> Conversion:
    """The hyperparameters of ``model/variance`` equivalent to ``loss`` (docs/theory.md §10).

    Parameters
    ----------
    loss : TrainingLoss
    model, variance : str
        The setting (variance as in :func:`vaetheory.settings.resolve`; default the learnable one).
    latent_dim, latent_dim2 : int, optional
        Needed when the KL is averaged over the latent dims (``kl="mean"``).
    output_dim : int, optional
        D for ``recon="mse"`` when ``loss.output_dim`` is not set (e.g. the data's dimension).

    Returns
    -------
    Conversion
        ``conv.hyper`` holds the theory's values; for every KL term with weight ``w`` and
        reduction factor ``mu`` (1, or 1/d for a mean over d dims), ``weight * eta_dec^2 =
        w mu / (2 recon_weight rho)``; ``eta_enc`` is the prior std.
    """
    setting = model if isinstance(model, _settings.Setting) else _settings.resolve(model, variance)
    if not setting.kl_terms:
        raise ParameterError(f"{setting.name} has no KL terms to convert")
    dims = {"z": latent_dim, "z1": latent_dim, "z2": latent_dim2 if latent_dim2 else latent_dim}
    D = loss.output_dim if loss.output_dim is not None else output_dim
    rho = loss.rho(D)
    conditional = any(t.against == "eta_dec" for t in setting.kl_terms)
    if conditional:   # the z1 term compares q(z1|x) with N(U2 z2, s_z^2 I): eta_dec = s_z
        eta_dec = float(loss.z1_prior_std)
        reference = (f"eta_dec = the std of p(z1|z2) ({eta_dec:.6g}), which the theory's model "
                     "shares with the decoder")
    elif loss.recon == "gaussian":
        eta_dec = float(loss.decoder_std)
        reference = "eta_dec = the decoder std of the Gaussian likelihood"
    else:
        eta_dec = 1.0
        reference = ("eta_dec = 1 is a choice: a squared error fixes only beta eta_dec^2 (any "
                     "eta_dec with beta = (beta eta_dec^2) / eta_dec^2 is the same model)")
    hyper, factors, weights = {}, {}, {}
    for term in setting.kl_terms:
        if term.latent == "z1":
            w, field_name = (1.0 if loss.kl1_weight is None else loss.kl1_weight), "kl1_weight"
        else:
            w, field_name = loss.kl_weight, "kl_weight"
        mu = 1.0
        if loss.kl == "mean":
            d = dims.get(term.latent)
            if d is None:
                raise ParameterError("kl='mean' averages over the latent dims: give latent_dim",
                                     cli="--kl mean averages over the latent dims: give "
                                         "--latent-dim (one value)")
            mu = 1.0 / int(d)
        # docs §10: weight * eta_dec^2 = w mu / (2 r rho)
        f = mu / (2.0 * float(loss.recon_weight) * rho * eta_dec * eta_dec)
        factors[term.weight] = f
        weights[term.weight] = field_name
        w = np.asarray(w, dtype=np.float64)
        hyper[term.weight] = float(w * f) if w.ndim == 0 else w * f
    pe = np.asarray(loss.prior_std, dtype=np.float64)
    hyper["eta_enc"] = float(pe) if pe.ndim == 0 else pe
    hyper["eta_dec"] = eta_dec
    used = {k: v for k, v in dims.items() if v is not None}
    return Conversion(setting, loss, hyper, factors, weights, reference,
                      None if D is None else int(D), used)


def hyper_names() -> Tuple[str, ...]:
    """The hyperparameters a training loss fixes (a conflict if also given directly)."""
    return ("beta", "beta1", "beta2", "eta_dec")

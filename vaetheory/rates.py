"""Target rates: the hyperparameter value at which the optimum's KL equals R nats (docs/theory.md §11).

The rate at the optimum (``Solution.kl`` summed over the latent that carries the KL to the prior:
z, or z2 of the hierarchical VAE) is continuous and non-increasing in the weight of that KL and in
eta_dec (§11: an exchange argument, and the closed forms). With a learnable encoder variance it is
reverse water-filling, ``R(kappa) = sum_{i: theta_i^2 > kappa} log(theta_i / sqrt(kappa))`` with
``kappa = beta eta_dec^2``; with a fixed one it falls to the floor of the variance parts,
``R0 = sum_j (v_j - log(1 + v_j)) / 2``, ``v_j = sigma_j^2 / eta_enc^2 - 1``.

:func:`target_rate` reuses the theory's decisions: the critical values of the parameter are where
the active set changes, so the rate evaluated there (one vectorised call of the setting's closed
form) brackets the answer within one interval of constant active set, on which the rate is
smooth and strictly decreasing; Brent's method on ``log(value)`` then solves ``rate = R`` to
machine precision. The answer is checked by evaluating the closed form at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from scipy.optimize import brentq

from ._validation import positive
from .errors import NotCoveredError, ParameterError

__all__ = ["RateAnswer", "rate_params", "rate_latent", "target_rate"]


def rate_latent(setting) -> str:
    """The latent whose KL to the prior is the rate solved for (z, or z2)."""
    for term in setting.kl_terms:
        if term.against == "eta_enc":
            return term.latent
    raise NotCoveredError(f"{setting.name} has no KL to a prior")


def rate_params(setting):
    """The hyperparameters the rate is monotone in (docs §11): the weight of the KL to the
    prior and eta_dec -- for settings with a closed form."""
    if not setting.covered:
        return ()
    return tuple(t.weight for t in setting.kl_terms if t.against == "eta_enc") + ("eta_dec",)


@dataclass(frozen=True)
class RateAnswer:
    """Where the optimum's rate equals ``rate`` (see :func:`target_rate`).

    ``value`` is the parameter's value (None when impossible, with ``reason``); ``achieved`` the
    rate of the closed form evaluated at ``value`` (the check); ``active`` the active dims of
    ``latent`` there (the theory's count); ``floor`` the rate's limit as the parameter grows.
    """

    rate: float
    param: str
    latent: str
    value: Optional[float]
    achieved: Optional[float]
    active: Optional[int]
    latent_dim: int
    floor: float
    possible: bool
    reason: str = ""
    params: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rate": self.rate, "param": self.param, "latent": self.latent,
                "value": self.value, "achieved": self.achieved, "active": self.active,
                "latent_dim": self.latent_dim, "floor": self.floor, "possible": self.possible,
                "reason": self.reason, "params": dict(self.params)}


def _rate_function(point, param, latent):
    sol = point.solution
    setting = sol.setting
    dims = list(sol.latent_dims.values())
    d2 = dims[1] if len(dims) > 1 else None
    hyper = point.hyper

    def rate(values):
        h = dict(hyper)
        h[param] = np.asarray(values, dtype=np.float64)
        s = setting.solve(sol.spectrum, dims[0], d2, **h)
        return np.sum(np.asarray(s.kl[latent]), axis=-1), s

    return rate


def target_rate(point, rate, param: Optional[str] = None) -> RateAnswer:
    """The value of ``param`` (others as at ``point``) at which the optimum's rate is ``rate`` nats.

    Parameters
    ----------
    point : Point
        ``solution.at(index)``: the other hyperparameters.
    rate : float
        Target total KL to the prior, nats (the hierarchical VAE: of z2), > 0.
    param : str, optional
        The weight of that KL (beta; beta2 for the hierarchical VAE; the default) or eta_dec.

    Returns
    -------
    RateAnswer
        Solved to machine precision in ``log(value)`` (docs/theory.md §11).
    """
    sol = point.solution
    setting = sol.setting
    allowed = rate_params(setting)
    if not allowed:
        raise NotCoveredError(f"{setting.name} has no closed form: no target rate")
    param = param or allowed[0]
    if param not in allowed:
        raise ParameterError(f"the rate is monotone in {' and '.join(allowed)} only (docs §11), "
                             f"not in {param}",
                             cli=f"--rate solves for {' or '.join(allowed)} (the rate is monotone "
                                 f"in them, docs/theory.md §11), not --param {param}")
    R = float(positive("rate", rate))
    latent = rate_latent(setting)
    d = sol.latent_dims[latent]
    f = _rate_function(point, param, latent)
    crit = np.asarray(point.critical[param], dtype=np.float64)
    crit = np.sort(crit[np.isfinite(crit) & (crit > 0)])[::-1]     # the order dims turn on
    params = dict(point.params)

    def answer(value, achieved, active, floor, ok, reason=""):
        p = dict(params)
        if value is not None:
            p[param] = value
        return RateAnswer(R, param, latent, value, achieved, active, d, floor, ok, reason, p)

    with np.errstate(all="ignore"):
        if crit.size == 0:
            r0 = float(f(np.array([1.0]))[0][0])
            return answer(None, None, None, r0, False,
                          f"no {latent} dim can be active by changing {param} alone: the rate "
                          f"is {r0:.6g} nats whatever its value")
        at, _ = f(np.concatenate([[crit[0] * 2.0], crit]))
        floor, at = float(at[0]), at[1:]
        if not R > floor * (1 + 1e-15):
            why = ("a fixed encoder std costs this much KL whatever the weight (the variance "
                   "parts)" if floor > 0 else "the rate is 0 once every dim has collapsed")
            return answer(None, None, 0, floor, False,
                          f"the rate cannot go down to {R:.6g} nats: it is at least {floor:.6g} "
                          f"({why}); at {param} >= {crit[0]:.6g} it is {floor:.6g}")
        j = int(np.searchsorted(at, R, side="left"))   # at[j] >= R > at[j-1] (at ascending)
        if j < at.size:
            lo, hi = crit[j], (crit[j - 1] if j > 0 else crit[0] * 2.0)
        else:  # beyond the last threshold: smaller values until the rate exceeds R
            hi, lo = crit[-1], crit[-1]
            for _ in range(2000):
                lo = lo / 16.0
                if not lo > 0:
                    return answer(None, None, None, floor, False,
                                  f"no representable {param} gives a rate of {R:.6g} nats")
                if float(f(np.array([lo]))[0][0]) >= R:
                    break
        g = lambda u: float(f(np.array([np.exp(u)]))[0][0]) - R  # noqa: E731
        a, b = np.log(lo), np.log(hi)
        if g(a) == 0.0:
            u = a
        elif g(b) == 0.0:
            u = b
        else:
            u = brentq(g, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=400)
        value = float(np.exp(u))
        achieved, s = f(np.array([value]))
    return answer(value, float(achieved[0]), int(s.at((0,)).active(latent)), floor, True)

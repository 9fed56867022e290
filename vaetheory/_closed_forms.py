"""The per-mode closed forms, each mode's state decided once (docs/theory.md §2-§5, §9).

Every setting's optimum is decided mode by mode by a few *basic predicates*, each a comparison of
one float expression of the mode's spectral value ``t`` (theta_i, or sqrt(e_i) for the CVAE)
with one float per grid point: ``t > sqrt(kappa)`` (learnable variance), ``t > thr_i`` (fixed),
``t * q > B``, ``t * t > C``, ``t > q`` (hierarchical). Each is monotone in ``t``, and the modes
are sorted by ``t`` (descending), so each predicate holds on a prefix of the modes. Its length is
found once per grid point (``numpy.searchsorted`` or a vectorised bisection on the *same* float
expression, :func:`count_prefix`); every count, rank and collapsed number, every per-mode mask and
the case of the optimal loss derive from these integers. A singular value is computed from the
difference of its predicate's two sides (``t - thr``, ``t*q - B``...), which is > 0 exactly when
the predicate holds, so "active" and "non-zero singular value" can never disagree.

Losses are sums of non-negative per-mode parts (plus the convention's constants, docs/theory.md
§1.4), never ``trace - (explained part)``: tails are suffix sums of ``t^2``, range sums are
suffix differences (relative error at most ~n eps for descending positive terms), log sums are
taken relative to the largest mode. Everything is written in ``t`` and ``sqrt(kappa)`` (never
``t^2`` where ``t`` alone is needed), so data at any representable scale keep their
representable outputs (docs/theory.md §9).

Critical values are the closed-form boundaries of the basic predicates, then moved by a few ulps
until the stated rule ("active while beta < beta*") holds at the printed value itself
(:func:`tighten`).
"""

from __future__ import annotations

import numpy as np

from ._numerics import EPS

# ------------------------------------------------------------------------------------------
# sums and prefix lengths


def prefix(x):
    """``P[j] = sum_{i<j} x_i`` along the last axis (length n + 1)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape[:-1] + (x.shape[-1] + 1,))
    np.cumsum(x, axis=-1, out=out[..., 1:])
    return out


def suffix(x):
    """``S[j] = sum_{i>=j} x_i`` along the last axis (length n + 1), summed smallest first."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape[:-1] + (x.shape[-1] + 1,))
    np.cumsum(x[..., ::-1], axis=-1, out=out[..., 1:])
    return out[..., ::-1]


def span(S, lo, hi):
    """Sum over the modes ``lo <= i < hi`` from suffix sums ``S`` (0 where hi <= lo)."""
    lo = np.asarray(lo)
    hi = np.maximum(np.asarray(hi), lo)
    return np.take(S, lo) - np.take(S, hi)


def count_prefix(pred, n, shape):
    """Length of the prefix of modes ``i < n`` on which ``pred(i)`` holds, per grid point.

    ``pred(idx)`` gets an int array of ``shape`` (one mode index per grid point) and returns a
    bool array of ``shape``; it must be monotone (true on a prefix). Vectorised bisection:
    ``ceil(log2(n + 1))`` evaluations of ``pred``.
    """
    lo = np.zeros(shape, dtype=np.intp)
    hi = np.full(shape, n, dtype=np.intp)
    if n == 0:
        return lo
    while True:
        todo = lo < hi
        if not np.any(todo):
            return lo
        mid = (lo + hi) // 2
        ok = pred(np.minimum(mid, n - 1)) & todo
        lo = np.where(ok, mid + 1, lo)
        hi = np.where(todo & ~ok, mid, hi)


def modes_below(n, d):
    """Mask (*grid, d): mode i < n (per grid point)."""
    return np.arange(d) < np.asarray(n)[..., None]


# ------------------------------------------------------------------------------------------
# critical values: the printed boundary obeys the stated rule


def tighten(candidate, active_at, direction, steps=16):
    """Move closed-form boundaries by ulps until the rule holds at the value itself.

    ``active_at(values)`` says, for each entry, whether the mode is active when the varied
    hyperparameter equals ``values`` (the others as given), evaluated with the same float code
    that decides the state. ``direction="below"`` (active iff value < c): the result is the
    smallest float c with the mode inactive at c; ``"above"`` (active iff value > c): the largest
    float c with the mode inactive at c. NaN candidates (never active) stay NaN.
    """
    c = np.array(candidate, dtype=np.float64, copy=True)
    ok = np.isfinite(c) & (c > 0)
    up, down = (np.inf, 0.0) if direction == "below" else (0.0, np.inf)
    for _ in range(steps):  # still active at c: move c away from the active side
        bad = ok & active_at(np.where(ok, c, 1.0))
        if not np.any(bad):
            break
        c = np.where(bad, np.nextafter(c, up), c)
    for _ in range(steps):  # inactive one ulp closer too: the boundary is there
        p = np.nextafter(c, down)
        closer = ok & (p > 0) & ~active_at(np.where(ok, p, 1.0))
        if not np.any(closer):
            break
        c = np.where(closer, p, c)
    return c


def never_to_nan(values, never):
    """NaN where a mode can never change state (no data signal)."""
    return np.where(never, np.nan, values)


# ------------------------------------------------------------------------------------------
# learnable encoder variance: Theorem 4 (VAE, §3) and Theorem 2 (CVAE, §4)


def sqrt_kappa(beta, eta_dec):
    """sqrt(beta * eta_dec^2), the water line in the units of t."""
    return np.sqrt(beta) * eta_dec


def learnable_rank(t, sk):
    """#{modes: t_i > sqrt(kappa)} per grid point (t descending, sk grid-shaped)."""
    return np.searchsorted(-t, -sk, side="left")


def learnable_loss(t, t_full, d1, r, sk, ee):
    """Optimal loss: inactive modes keep t^2, active ones cost kappa (1 + 2 log(t/sqrt kappa)),
    plus the convention's d1 kappa (1 - log eta_enc^2) (docs/theory.md §3)."""
    kappa = sk * sk
    S2 = suffix(t_full * t_full)
    t0 = t[0] if t.size and t[0] > 0 else 1.0
    PL = prefix(np.log(np.where(t > 0, t / t0, 1.0)))
    logs = np.take(PL, r) + r * np.log(t0 / sk)   # sum_{i<r} log(t_i / sqrt kappa) >= 0
    return np.take(S2, r) + kappa * (r + 2.0 * logs) + d1 * kappa * (1.0 - 2.0 * np.log(ee))


def learnable_modes(t, sk, ee, active):
    """Per-mode optimum (*grid, d1): decoder omega, whitened encoder lambda, learned std, KL,
    posterior-mean second moment and reconstruction error per mode (docs/theory.md §3, §7)."""
    gap = np.where(active, t - sk, 0.0)             # > 0 exactly on active modes
    plus = t + sk
    root = np.sqrt(gap) * np.sqrt(plus)             # sqrt(t^2 - kappa) without forming t^2
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(active, sk / np.where(t > 0, t, 1.0), 1.0)
        lam = np.where(active, ee * np.sqrt(gap / np.where(t > 0, t, 1.0))
                       * np.sqrt(plus / np.where(t > 0, t, 1.0)), 0.0)
        kl = np.where(active, np.log1p(gap / sk), 0.0)
    omega = root / ee
    sigma = np.where(active, ee * ratio, ee)
    return {"omega": omega, "lambda": lam, "sigma": sigma, "kl": kl, "mean_sq": lam * lam,
            "distortion": np.where(active, sk * sk, t * t)}


def learnable_critical(t, b, ed):
    """beta*_i = (t_i / eta_dec)^2, eta_dec*_i = t_i / sqrt(beta), both "active below"."""
    never = t <= 0
    with np.errstate(divide="ignore", over="ignore"):
        beta = never_to_nan((t / ed) ** 2, never)
        eta_dec = never_to_nan(t / np.sqrt(b), never)
    return {"beta": tighten(beta, lambda v: t > sqrt_kappa(v, ed), "below"),
            "eta_dec": tighten(eta_dec, lambda v: t > sqrt_kappa(b, v), "below")}


# ------------------------------------------------------------------------------------------
# fixed encoder variance: Theorem 1 (VAE, §2) and §4b (CVAE)


def variance_part(s, ee):
    """The variance part of a dim's KL, ``(v - log(1 + v)) / 2`` with ``v = s^2/ee^2 - 1`` (docs
    §7), without cancellation: ``v`` as a product of differences, and ``log(1 + v)`` as
    ``log1p(v)`` near 0 but ``2 log(s/ee)`` where ``1 + v`` is small (s << ee)."""
    v = (s - ee) * (s + ee) / (ee * ee)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg = np.where(v > -0.5, np.log1p(np.maximum(v, -0.5)), 2.0 * np.log(s / ee))
    return 0.5 * (v - lg)


def fixed_threshold(beta, eta_enc, eta_dec, sig):
    """s sigma'_i with s = sqrt(beta) eta_dec / eta_enc: mode i is active iff t_i > it."""
    return (np.sqrt(beta) * eta_dec / eta_enc) * sig


def fixed_modes(t, thr, s, sig, ee, active):
    """Per-mode optimum of Theorem 1 (*grid, d1); ``sig`` sorted ascending (mode i <-> i-th
    smallest sigma)."""
    gap = np.where(active, t - thr, 0.0)
    omega = np.sqrt(gap * (s / sig))
    lam = np.sqrt(gap * (sig / s))
    kl = variance_part(sig, ee) + 0.5 * lam * lam / (ee * ee)
    return {"omega": omega, "lambda": lam, "kl": kl, "mean_sq": lam * lam,
            "distortion": np.where(active, thr * t, t * t)}


def fixed_critical(t, b, ee, ed, sig):
    """beta*, eta_dec* (active below) and eta_enc* (active above) per mode (docs §2)."""
    never = t <= 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        beta = never_to_nan((t * ee / (ed * sig)) ** 2, never)
        eta_dec = never_to_nan(t * ee / (np.sqrt(b) * sig), never)
        eta_enc = never_to_nan(np.sqrt(b) * ed * sig / np.where(never, 1.0, t), never)
    return {
        "beta": tighten(beta, lambda v: t > fixed_threshold(v, ee, ed, sig), "below"),
        "eta_dec": tighten(eta_dec, lambda v: t > fixed_threshold(b, ee, v, sig), "below"),
        "eta_enc": tighten(eta_enc, lambda v: t > fixed_threshold(b, v, ed, sig), "above"),
    }


# ------------------------------------------------------------------------------------------
# two-latent hierarchical VAE: Theorems 3 and 5 (§5)


class Hierarchical:
    """The per-point quantities of Theorems 3 / 5 and the basic predicates of a mode.

    ``q = sqrt(beta1) sigma1`` (low branch: lambda > 0 iff t > q), ``B = beta2 n2`` with
    ``n2 = eta_dec^2`` (Thm 3) or ``c^2 sigma2^2`` (Thm 5) (branch: t q > B, i.e. t > t3 / T2),
    ``C`` the high-branch threshold of t^2 (``B`` for Thm 3: m* = t^2 s1^2/B > s1^2; ``a sigma1``
    with ``a = sigma2 c sqrt(beta1 beta2)`` for Thm 5), and ``noise``: beta1 sigma1^2 > B (every
    paired z2 dim active). docs/theory.md §5.0-5.2.
    """

    def __init__(self, hp, fixed):
        self.fixed = fixed
        b1, b2, ee, ed, s1 = (hp[k] for k in ("beta1", "beta2", "eta_enc", "eta_dec", "sigma1"))
        self.b1, self.b2, self.ee, self.ed, self.s1 = b1, b2, ee, ed, s1
        self.c2 = (ed / ee) * (ed / ee)
        self.s2 = hp["sigma2"] if fixed else None
        self.q = np.sqrt(b1) * s1
        self.B = b2 * (self.c2 * self.s2 * self.s2) if fixed else b2 * (ed * ed)
        if fixed:
            self.a = self.s2 * np.sqrt(b1 * b2 * self.c2)
            self.C = self.a * s1
        else:
            self.C = self.B
        self.b1s1s1 = b1 * (s1 * s1)
        self.noise = self.b1s1s1 > self.B

    # basic predicates of a mode (elementwise; the same expressions decide and count)
    def branch(self, t):
        return t * self.q > self.B

    def high(self, t):
        return t * t > self.C

    def low(self, t):
        return t > self.q


def hierarchical_counts(h, t, d1, d2):
    """Prefix lengths per grid point: ``(nh, nb, lv, v, k)`` -- high-active, branch, low-active
    paired and unpaired boundaries (docs/theory.md §5.0), from the three basic predicates."""
    shape = np.shape(h.q)[:-1]
    k = min(d1, d2)

    def count(pred):
        return count_prefix(lambda i: pred(t[i][..., None])[..., 0], d1, shape)

    n_br, n_hi, n_lo = count(h.branch), count(h.high), count(h.low)
    nb = np.minimum(n_br, k)
    nh = np.minimum(n_hi, nb)
    lv = np.maximum(nb, np.minimum(n_lo, k))
    v = np.maximum(k, np.minimum(n_lo, d1))
    return nh, nb, lv, v, k


def hierarchical_ranks(h, counts, d1, d2):
    """(rank of x -> z1, rank of z2): lambda > 0 on high-active and low-active modes; a paired z2
    dim is active on high-active modes, or on every paired mode in the noise regime."""
    nh, nb, lv, v, k = counts
    noise = h.noise[..., 0]
    rank1 = nh + (lv - nb) + (v - k)
    rank2 = np.where(noise, k, nh)
    return rank1, rank2


def hierarchical_loss(h, t, t_full, d1, d2, counts):
    """Optimal loss as a sum of non-negative per-mode parts plus the convention's constants
    (docs/theory.md §5.1-5.2); per-z2-dim constants folded where they cancel (Thm 5)."""
    nh, nb, lv, v, k = counts
    B, q, s1 = h.B[..., 0], h.q[..., 0], h.s1[..., 0]
    b1s1s1, noise = h.b1s1s1[..., 0], h.noise[..., 0]
    b2, ed = h.b2[..., 0], h.ed[..., 0]
    S1, S2 = suffix(t), suffix(t * t)
    t0 = t[0] if t.size and t[0] > 0 else 1.0
    if h.fixed:
        a = h.a[..., 0]
        P23 = prefix(np.cbrt((t / t0) * (t / t0)))
        g = np.cbrt(a) * np.cbrt(s1) * np.cbrt(t0)                   # (a s1 t0)^(1/3), no a^3
        high = 3.0 * g * g * np.take(P23, nh)                         # sum 3 (a s1 t)^(2/3)
        z2_on_s1 = 2.0 * a * s1            # t^2 + 2 a s1 - B5, with the dim's +B5 folded in
        z2_const = -b2 * ed * ed * np.log(h.s2[..., 0] ** 2)         # per z2 dim
        z2_off = B                                                    # per inactive z2 dim
    else:
        PL = prefix(np.log(np.where(t > 0, t / t0, 1.0)))
        logs = np.take(PL, nh) + nh * np.log(t0 * q / B)             # sum log(t q / B) >= 0
        high = 2.0 * B * (nh + logs)
        z2_on_s1 = B * (1.0 + np.log(b1s1s1 / B))                     # noise: the log is > 0
        z2_const = B * (1.0 - 2.0 * np.log(h.ee[..., 0]))
        z2_off = 0.0
    # paired modes at m = s1^2: branch-not-high [nh, nb) and non-branch [lv, k); their z2 dim is
    # active iff noise. Low branch: [nb, lv) paired, [k, v) unpaired. Unpaired at s1^2: [v, d1).
    n_s1 = (nb - nh) + (k - lv)
    at_s1 = span(S2, nh, nb) + span(S2, lv, k) + n_s1 * np.where(noise, z2_on_s1, b1s1s1)
    low = 2.0 * q * (span(S1, nb, lv) + span(S1, k, v))
    unpaired = span(S2, v, d1) + (d1 - v) * b1s1s1
    tail = suffix(t_full * t_full)[min(d1, t_full.size)]
    n_on = np.where(noise, k, nh)
    return high + at_s1 + low + unpaired + tail + (d2 - n_on) * z2_off + d2 * z2_const


def hierarchical_modes(h, t, d1, d2, counts):
    """Per-mode optimum (*grid, d1) in mode order (docs/theory.md §5.0-5.2): z1 quantities per z1
    mode; z2 quantities of the z2 dim paired with it (zero for unpaired modes)."""
    nh, nb, lv, v, k = counts
    i = np.arange(d1)
    high = i < nh[..., None]
    low = ((i >= nb[..., None]) & (i < lv[..., None])) | ((i >= k) & (i < v[..., None]))
    paired = i < k
    z2 = paired & (high | h.noise)
    b1, b2, ee, ed, s1, q, B = h.b1, h.b2, h.ee, h.ed, h.s1, h.q, h.B
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        # lambda > 0 exactly on high/low-active modes (difference forms of their predicates)
        if h.fixed:
            grow = np.expm1((2.0 / 3.0) * np.log1p(np.where(high, (t * t - h.C) / h.C, 0.0)))
            lam_high = s1 * np.sqrt(grow)
            m_high = s1 * s1 * (1.0 + grow)
        else:
            lam_high = s1 * np.sqrt(np.where(high, (t * t - B) / B, 0.0))
            m_high = (t * s1) * ((t * s1) / B)            # no (data units)^4 intermediate
        lam_low = np.sqrt(np.where(low, s1 * (t - q) / np.sqrt(b1), 0.0))
        lam = np.where(high, lam_high, np.where(low, lam_low, 0.0))
        m = np.where(high, m_high, np.where(low, t * s1 / np.sqrt(b1), s1 * s1))
        u1 = np.where(high | low, t * lam / m, 0.0)
        # omega > 0 exactly on active z2 dims (difference forms of m > m0 = B / b1)
        on_s1 = np.maximum(h.b1s1s1 - B, 0.0)
        if h.fixed:
            K = np.sqrt(h.c2 * b2) / (np.sqrt(b1) * h.s2)   # omega^2 = K (sqrt m - sqrt m0)
            m0_root = np.sqrt(B / b1)
            om_high = np.sqrt(K * m0_root * np.expm1(
                (2.0 / 3.0) * np.log1p(np.where(high, (t * q - B) / B, 0.0))))
            # grouped so no intermediate has (data units)^3 (overflow / subnormal at 2^+-342)
            om_s1 = np.sqrt(K * (on_s1 / (np.sqrt(b1) * (h.q + np.sqrt(B)))))
        else:
            om_high = np.sqrt(np.where(high, ((t * q - B) / B) * ((t * q + B) / b1), 0.0)) / ee
            om_s1 = np.sqrt(on_s1 / b1) / ee
        omega = np.where(z2, np.where(high, om_high, om_s1), 0.0)
        w2 = b1 * omega / (b1 * omega * omega + b2 * h.c2)
        if h.fixed:
            sigma2, var2 = None, h.s2 * h.s2
        else:
            sigma2 = np.where(z2, ee * np.sqrt(np.minimum(1.0, (B / b1) / m)), ee)
            var2 = sigma2 * sigma2
        msq2 = w2 * w2 * m                       # E[(W2 z1)_i^2] of the paired z2 dim
        kl2 = variance_part(np.sqrt(var2), ee) + 0.5 * msq2 / (ee * ee)
        # z1: the consistency term E[log q(z1|x) - log p(z1|z2)] per dim (nats)
        resid = (omega * w2 - 1.0) ** 2 * m + omega * omega * var2
        # a sum of O(1) terms that cancel exactly at sigma1 = eta_dec, resid = eta_dec^2: within
        # its rounding bound it is 0 (printed -1.7e-16 before), docs/theory.md §9.9
        r_term, l_term = resid / (ed * ed), np.log(np.square(s1 / ed))
        cons = 0.5 * (r_term - 1.0 - l_term)
        cons = np.where(np.abs(cons) <= 4.0 * EPS * (np.abs(r_term) + 1.0 + np.abs(l_term)), 0.0,
                        cons)
        distortion = (t * s1) * ((t * s1) / m)
        if h.fixed:
            H = np.where(z2, 2.0 * h.a * np.sqrt(m) - B, b1 * m)
        else:
            H = np.where(z2, B * (1.0 + np.log(m * b1 / B)), b1 * m)
        F = distortion + H                        # the mode's loss F(m*) (docs §5.0)
    return {"m": m, "F": F, "lambda": lam, "u1": u1, "omega": omega, "w2": w2, "sigma2": sigma2,
            "z2_active": z2, "kl_z2": kl2, "mean_sq_z1": lam * lam, "mean_sq_z2": msq2,
            "consistency": cons, "distortion": distortion}


def hierarchical_z2_active(t, hp, fixed, paired):
    """Elementwise z2 state of a paired mode at hyperparameters ``hp`` (arrays broadcast with
    ``t``): noise, or branch and high (the same predicates as the counts)."""
    h = Hierarchical(hp, fixed)
    return paired & (h.noise | (h.branch(t) & h.high(t)))


# ------------------------------------------------------------------------------------------
# learned decoder variance u = eta_dec^2 (docs/theory.md §12)


def _t0(t):
    """The scale the profile is evaluated relative to (the largest spectral value, or 1)."""
    return float(t[0]) if t.size and t[0] > 0 else 1.0


def learned_profile_learnable(t, t_full, D, b, u):
    """The profile f(u) of docs/theory.md §12.2 (learnable encoder variance, Theorem 4 at
    eta_dec^2 = u), minus ``(D/2) log(2 pi t0^2)``, and the active count there.

    ``f(u) = S_c/(2u) + c beta/2 + beta sum_{i<c} log(t_i/sqrt(beta u)) + (D/2) log(2 pi u)``
    with ``c = #{t_i > sqrt(beta u)}`` (the basic predicate of §9.8) and ``S_c`` the sum of
    ``t_i^2`` over every mode after the first ``c`` (those beyond the latent dim included).
    Written relative to ``t0`` so it is scale-free. ``b`` and ``u`` broadcast."""
    t0 = _t0(t)
    sk = sqrt_kappa(b, np.sqrt(u))
    c = learnable_rank(t, sk)
    S2 = suffix(t_full * t_full)
    PL = prefix(np.log(np.where(t > 0, t / t0, 1.0)))
    logs = np.take(PL, c) + c * np.log(t0 / sk)        # sum_{i<c} log(t_i / sqrt(beta u)) >= 0
    f = 0.5 * np.take(S2, c) / u + 0.5 * b * c + b * logs + 0.5 * D * (np.log(u) - 2 * np.log(t0))
    return f, c


def learned_u_learnable(t, t_full, D, b):
    """The learned decoder variance of the learnable-encoder VAE / CVAE (docs/theory.md §12.2).

    On the active set of the first ``k`` modes the profile is minimised at
    ``u_k = S_k / (D - beta k)`` (``D > beta k``, ``S_k > 0``). The profile is convex in log u, so
    exactly one candidate is self-consistent; it is found as the candidate with the lowest
    profile value, every candidate evaluated with the active count its own ``u`` gives (robust to
    rounding: a perturbed candidate is never mistaken for another). Returns
    ``(u, r, f, unbounded, flat)`` per grid point: ``u`` (NaN where unbounded), the active count
    ``r`` at ``u`` (``m`` in the unbounded limit ``u -> 0``), the minimum of
    :func:`learned_profile_learnable` (``-inf`` where unbounded), and where the minimum is
    unbounded below (``S_m = 0`` and ``D > beta m``: the latent dims carry all of the data's
    variance) or attained on a whole interval ``(0, u]`` (``S_m = 0`` and ``D = beta m``).
    ``t`` has the latent dim's length, ``m = #{t_i > 0}``.
    """
    b = np.asarray(b, dtype=np.float64)
    m = int(np.count_nonzero(t > 0))
    S2 = suffix(t_full * t_full)
    k = np.arange(m + 1)
    Sk = np.take(S2, k)
    den = D - b[..., None] * k
    valid = (den > 0) & (Sk > 0)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        uk = np.where(valid, Sk / np.where(valid, den, 1.0), 1.0)
        f, c = learned_profile_learnable(t, t_full, D, b[..., None], uk)
    f = np.where(valid, f, np.inf)
    best = np.argmin(f, axis=-1)
    u = np.take_along_axis(uk, best[..., None], axis=-1)[..., 0]
    r = np.take_along_axis(c, best[..., None], axis=-1)[..., 0]
    fmin = np.take_along_axis(f, best[..., None], axis=-1)[..., 0]
    tail_zero = S2[m] == 0
    unbounded = tail_zero & (D > b * m)
    flat = tail_zero & (D == b * m) & (m >= 1)
    u = np.where(unbounded, np.nan, u)
    r = np.where(unbounded, m, r)
    fmin = np.where(unbounded, -np.inf, fmin)
    return u, r, fmin, unbounded, flat


def learned_eta_fixed(t, t_full, D, bsig):
    """The learned decoder std of the fixed-encoder-variance VAE / CVAE (docs/theory.md §12.3).

    With ``w = 1/eta_dec`` the profile is strictly convex, and its stationarity condition on the
    active set of the first ``k`` modes is the quadratic ``S_k w^2 + P_k w = D`` with
    ``P_k = sum_{i<k} a_i t_i``, ``a_i = sqrt(beta) sigma'_i / eta_enc`` (``bsig``, ascending):

        eta_dec_k = (P_k + sqrt(P_k^2 + 4 D S_k)) / (2 D)        (no cancellation)

    The unique minimiser is the candidate whose own active count (``t_i > eta_dec a_i``, the
    predicate of Theorem 1) is ``k``; each candidate is scored by the profile with its own count
    (robust to rounding). Returns ``eta_dec`` per grid point (``bsig``'s leading axes), NaN where
    the data have no variance (then the loss is unbounded below). ``bsig``: (*grid, d1), ascending.
    """
    bsig = np.broadcast_to(np.asarray(bsig, dtype=np.float64),
                           np.broadcast_shapes(np.shape(bsig), t.shape))
    t0 = _t0(t)
    tt = t / t0
    m = int(np.count_nonzero(t > 0))
    S2 = suffix((t_full / t0) * (t_full / t0))
    P = prefix(bsig[..., :m] * tt[:m])                  # (*grid, m + 1)
    Sk = S2[:m + 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        e_k = (P + np.sqrt(P * P + 4.0 * D * Sk)) / (2.0 * D)   # eta_k / t0, (*grid, m + 1)
        f = learned_profile_fixed(t, t_full, D, bsig, e_k * t0)
    f = np.where(np.isfinite(f) & (e_k > 0), f, np.inf)
    best = np.argmin(f, axis=-1)
    e = np.take_along_axis(e_k, best[..., None], axis=-1)[..., 0]
    return np.where(S2[0] == 0, np.nan, e * t0)


def learned_profile_fixed(t, t_full, D, bsig, eta):
    """Profile of docs/theory.md §12.3 at ``eta_dec = eta`` (*grid, K), with ``bsig`` (*grid, d1)
    ascending, up to its eta-free constant and relative to ``t0`` (scale-free):
    ``L*_1(eta) / (2 eta^2) + D log(eta / t0)``, Theorem 1's per-mode loss being ``2 thr t``
    (active: ``t > thr``) or ``t^2 + thr^2`` with ``thr = eta a_i``; from prefix sums."""
    t0 = _t0(t)
    tt = t / t0
    e = np.asarray(eta, dtype=np.float64) / t0
    bsig = np.broadcast_to(bsig, np.shape(e)[:-1] + t.shape)
    P1 = prefix(bsig * tt)
    Q = suffix(bsig * bsig)
    S2 = suffix((t_full / t0) * (t_full / t0))
    def pred(i):
        return tt[i] > e * np.take_along_axis(bsig, i, axis=-1)

    c = count_prefix(pred, t.size, np.shape(e))
    take = np.take_along_axis
    return (take(P1, c, axis=-1) / e + np.take(S2, c) / (2.0 * e * e) + 0.5 * take(Q, c, axis=-1)
            + D * np.log(e))


def fixed_learned_critical(t, t_full, D, sig, ee):
    """Critical ``b = sqrt(beta) / eta_enc`` per mode with a learned decoder variance and a fixed
    encoder variance (docs/theory.md §12.3): mode i is active iff ``b < b*_i`` with

        b*_i^2 = D (t_i / sigma'_i)^2 / H_i,   H_i = (t_i / sigma'_i) sum_{j<i} sigma'_j t_j + sum_{j>=i} t_j^2

    (the second sum over every mode, those beyond the latent dim included). NaN for t_i = 0."""
    sig = np.broadcast_to(np.asarray(sig, dtype=np.float64), np.broadcast_shapes(np.shape(sig),
                                                                                 t.shape))
    S2 = np.take(suffix(t_full * t_full), np.minimum(np.arange(t.size), t_full.size))
    P = prefix(sig * t)[..., :-1]                         # sum_{j<i} sigma'_j t_j
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = t / sig
        H = q * P + S2
        bstar = np.sqrt(D / H) * q
    return np.where(t > 0, bstar, np.nan)


def learnable_learned_critical(t, t_full, D):
    """Critical beta per mode with a learned decoder variance and a learnable encoder variance
    (docs/theory.md §12.2): the profile is convex in log(beta u), so beta u* grows continuously
    with beta and mode i (1-based) switches off where beta u* = t_i^2 with modes 1..i-1 active:

        beta*_i = D / ( sum_{j>=i} (t_j / t_i)^2 + (i - 1) )

    (the sum over every mode, those beyond the latent dim included). NaN for t_i = 0."""
    t0 = _t0(t)
    S = np.take(suffix((t_full / t0) * (t_full / t0)), np.minimum(np.arange(t.size), t_full.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (t / t0) * (t / t0)
        out = D / (S / r + np.arange(t.size))
    return np.where(t > 0, out, np.nan)

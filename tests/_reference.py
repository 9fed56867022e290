"""High-precision reference for the vaetheory tests (test-only; does not import vaetheory).

Everything here is derived from /work/shared/THEORY.md ("T") and THEORY-mhvae-detail.md ("D") alone
and computed in mpmath, so tests can check the package's float64 numbers at extreme scales and
conditioning.  Section references: T§1 losses, T§2 Theorem 1 (VAE, fixed Sigma), T§3 Theorem 4 (VAE,
learnable Sigma), T§4 Theorem 2 (CVAE, learnable), T§4b (CVAE, fixed), T§5 / D§1-4 Theorems 3 and 5
(two-latent hierarchical VAE).

Precision: every public function works at ``max(DPS, mp.dps)`` decimal digits (``DPS = 50`` by default;
change the module attribute or raise ``mp.dps`` to go higher).  Results are mpf / mp.matrix values that
keep that precision, but arithmetic on them is done at the *caller's* mp.dps, so compare them with
``rel_err`` (or inside ``mp.workdps``).  Inputs may be int, float, numpy scalars/arrays, str or mpf:
floats are converted exactly (mpf(float) is exact), strings as exact decimals.

Loss convention (T§1, D§1): L = 2 eta_dec^2 E[-ELBO_beta] with additive constants dropped, but the
tr Sigma and log|Sigma| terms kept also when Sigma is fixed.  Closed-form losses are written as
"rest + sum of per-mode losses + per-dim constants" with each per-mode term in a cancellation-free
form, so they are accurate to ~10^-(dps-3) relative to the largest term.

Practical sizes at dps 50 (pure Python): closed forms are instant; for N = 500, D = 20 ``eigenvalues``
takes ~0.5 s, ``residual_eigenvalues`` ~0.6 s (10 + 10 dims) to ~1.6 s (20 + 20 dims); the matrix
losses take ~0.2-0.4 s at D = d = 20.  Cost grows like N D^2 (data) and D^3 (matrices).
"""
import numpy as np
from mpmath import mp

DPS = 50

SETTINGS = ("vae-learnable", "vae-fixed", "cvae-learnable", "cvae-fixed",
            "mhvae-sigma2-learnable", "mhvae-sigma2-fixed")


def _precise(fn):
    def wrapper(*args, **kwargs):
        with mp.workdps(max(DPS, mp.dps)):
            return fn(*args, **kwargs)
    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


# ----------------------------------------------------------------------------- conversion helpers
def _mpf(x):
    if isinstance(x, mp.mpf):
        return x
    if isinstance(x, (bool, np.bool_)):
        raise TypeError("boolean is not a number here")
    if isinstance(x, (int, np.integer)):
        return mp.mpf(int(x))
    if isinstance(x, (float, np.floating)):
        return mp.mpf(float(x))          # exact for float16/32/64
    return mp.mpf(x)                     # str (exact decimal) or anything mpmath accepts


@_precise
def to_mpf_array(a):
    """Exact conversion: scalar -> mpf, 1-D -> list of mpf, 2-D (or mp.matrix) -> mp.matrix."""
    if isinstance(a, mp.matrix):
        return a.copy()
    if isinstance(a, (str, int, float, np.generic, mp.mpf)):
        return _mpf(a)
    arr = np.asarray(a, dtype=object)          # float64 entries become Python floats (exact)
    if arr.ndim == 0:
        return _mpf(arr.item())
    if arr.ndim == 1:
        return [_mpf(v) for v in arr]
    if arr.ndim == 2:
        out = mp.matrix(arr.shape[0], arr.shape[1])
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                out[i, j] = _mpf(arr[i, j])
        return out
    raise ValueError("only 0-, 1- and 2-dimensional inputs")


def as_float(x):
    """mpf -> float, mp.matrix -> 2-D ndarray, lists of numbers -> ndarray; dicts/tuples recursively."""
    if isinstance(x, dict):
        return {k: as_float(v) for k, v in x.items()}
    if isinstance(x, mp.matrix):
        return np.array([[float(v) for v in row] for row in x.tolist()], dtype=float)
    if isinstance(x, (list, tuple)):
        vals = [as_float(v) for v in x]
        if vals and all(isinstance(v, float) for v in vals):
            return np.array(vals)
        return type(x)(vals)
    if isinstance(x, mp.mpf):
        return float(x)
    return x


@_precise
def rel_err(a, b, scale=None):
    """|a - b| / max(|a|, |b|, scale) computed at the reference precision (returns mpf)."""
    a, b = _mpf(a), _mpf(b)
    den = max(abs(a), abs(b), _mpf(scale) if scale is not None else mp.mpf(0))
    return abs(a - b) / den if den else mp.mpf(0)


def _vec(v, n, name):
    """Scalar or length-n sequence -> list of n mpf."""
    arr = to_mpf_array(v)
    if isinstance(arr, mp.mpf):
        return [arr] * n
    if isinstance(arr, mp.matrix):
        arr = [arr[i] for i in range(len(arr))]
    if len(arr) != n:
        raise ValueError(f"{name}: expected a scalar or {n} values, got {len(arr)}")
    return arr


def _trace(M):
    return mp.fsum(M[i, i] for i in range(M.rows))


# ----------------------------------------------------------------------------- closed forms
def _spectrum(eigenvalues, n):
    """Eigenvalues sorted descending, negatives clipped to 0 (|neg| <= 1e-12 max), zero-padded to n."""
    ev = to_mpf_array(eigenvalues)
    ev = [ev] if isinstance(ev, mp.mpf) else list(ev)
    top = max([abs(e) for e in ev] + [mp.mpf(0)])
    if any(e < -mp.mpf("1e-12") * top for e in ev):
        raise ValueError("eigenvalues of a PSD matrix must be >= 0")
    ev = sorted((max(e, mp.mpf(0)) for e in ev), reverse=True)
    return ev + [mp.mpf(0)] * max(0, n - len(ev))


def _rest(ev, d1, trace):
    """Signal not carried by the first d1 modes: sum_{i>d1} e_i, or trace - sum_{i<=d1} e_i."""
    return mp.fsum(ev[d1:]) if trace is None else _mpf(trace) - mp.fsum(ev[:d1])


def _hyper(hyper, required, optional):
    unknown = set(hyper) - set(required) - set(optional)
    if unknown:
        raise TypeError(f"unknown hyperparameters: {sorted(unknown)}")
    missing = [k for k in required if k not in hyper]
    if missing:
        raise TypeError(f"missing hyperparameters: {missing}")
    out = dict(optional)
    out.update(hyper)
    for k, v in out.items():
        if k not in ("sigma",):
            out[k] = _mpf(v)
            if out[k] <= 0:
                raise ValueError(f"{k} must be > 0")
    return out


def _learnable(ev, d1, rest, beta, eta_enc, eta_dec):
    """T§3 (Theorem 4; ev = theta^2) and T§4 (Theorem 2; ev = e): learnable diagonal Sigma.
    Per mode: collapsed -> e, active -> kappa (1 + log(e/kappa)) (= e - kappa h(e/kappa)); plus
    d1 kappa (1 - log eta_enc^2)."""
    kappa = beta * eta_dec ** 2
    o = {k: [] for k in ("eig", "theta", "omega", "lambda", "sigma", "active", "beta_crit",
                         "eta_dec_crit")}
    modes = []
    for e in ev[:d1]:
        gap = max(e - kappa, mp.mpf(0))
        active = e > kappa
        o["eig"].append(e)
        o["theta"].append(mp.sqrt(e))
        o["omega"].append(mp.sqrt(gap) / eta_enc)
        o["lambda"].append(eta_enc * mp.sqrt(gap / e) if e > 0 else mp.mpf(0))
        o["sigma"].append(min(eta_enc, mp.sqrt(beta) * eta_enc * eta_dec / mp.sqrt(e))
                          if e > 0 else eta_enc)
        o["active"].append(bool(active))
        o["beta_crit"].append(e / eta_dec ** 2)
        o["eta_dec_crit"].append(mp.sqrt(e / beta))
        modes.append(kappa * (1 + mp.log(e / kappa)) if active else e)
    o["collapsed"] = d1 - sum(o["active"])
    o["loss"] = rest + mp.fsum(modes) + d1 * kappa * (1 - mp.log(eta_enc ** 2))
    return o


def _fixed(ev, d1, rest, sigma, beta, eta_enc, eta_dec):
    """T§2 (Theorem 1) and T§4b: fixed diagonal Sigma = diag(sigma_j^2), s = sqrt(beta) c.
    Mode i (i-th largest theta) sits on the latent dim with the i-th smallest sigma.  Per mode:
    inactive -> theta^2, active -> s sigma' (2 theta - s sigma') (= theta^2 - (theta - s sigma')^2);
    plus beta c^2 sum sigma_j^2 - kappa sum log sigma_j^2."""
    sig = _vec(sigma, d1, "sigma")
    if any(s <= 0 for s in sig):
        raise ValueError("sigma must be > 0")
    c2, kappa = (eta_dec / eta_enc) ** 2, beta * eta_dec ** 2
    s = mp.sqrt(beta * c2)
    order = sorted(range(d1), key=lambda j: sig[j])          # stable: ties keep dim order
    o = {k: [] for k in ("eig", "theta", "omega", "lambda", "sigma_mode", "dim", "active",
                         "beta_crit")}
    modes = []
    for i, j in enumerate(order):
        th, sp = mp.sqrt(ev[i]), sig[j]
        gap = max(th - s * sp, mp.mpf(0))
        active = th > s * sp
        o["eig"].append(ev[i])
        o["theta"].append(th)
        o["omega"].append(mp.sqrt(s * gap / sp))
        o["lambda"].append(mp.sqrt(sp * gap / s))
        o["sigma_mode"].append(sp)
        o["dim"].append(j)
        o["active"].append(bool(active))
        o["beta_crit"].append(th ** 2 * eta_enc ** 2 / (eta_dec ** 2 * sp ** 2))
        modes.append(s * sp * (2 * th - s * sp) if active else th ** 2)
    # zero-mean dims per group of equal sigma (T§2): [0 if k >= 1 else m, m - k]
    lo = hi = 0
    for val in sorted(set(sig)):
        members = [i for i, j in enumerate(order) if sig[j] == val]
        m, k = len(members), sum(o["active"][i] for i in members)
        lo, hi = lo + (0 if k >= 1 else m), hi + (m - k)
    o["collapsed"] = (lo, hi)
    o["loss"] = (rest + mp.fsum(modes) + beta * c2 * mp.fsum(x ** 2 for x in sig)
                 - kappa * mp.fsum(mp.log(x ** 2) for x in sig))
    return o


def _mhvae(ev, d1, d2, rest, learnable, beta1, beta2, sigma1, eta_enc, eta_dec, sigma2=None):
    """T§5, D§2-4 (Theorems 3 and 5, all dimension relations).  Per z1 mode, with m = lambda^2 + s1^2,
    F(m) = t^2 s1^2/m + H(m) on m >= s1^2, minimiser m* = max(s1^2, stationary point).
    q := eta_dec^2 (Thm 3) or c^2 s2^2 (Thm 5); m0 = b2 q / b1; threshold T = b2 q/(sqrt(b1) s1).
    Paired (i < min(d1,d2)): stationary = t s1/sqrt(b1) if t <= T, else t^2 s1^2/(b2 eta_dec^2) (Thm 3)
    resp. (t^2 s1^2/a)^(2/3), a = s2 c sqrt(b1 b2) (Thm 5).  Unpaired: t s1/sqrt(b1), H = b1 m.
    H(m) = b1 m for m <= m0; else B (1 + log(m/m0)) (Thm 3, B = b2 eta_dec^2) resp.
    b2 c^2 s2^2 (2 sqrt(m/m0) - 1) (Thm 5, = 2 s2 c sqrt(b1 b2 m) - b2 c^2 s2^2).
    L* = sum_{i>d1} theta_i^2 + d2 * const + sum_i F(m_i*), const = B - B log eta_enc^2 (Thm 3) or
    b2 c^2 s2^2 - B log s2^2 (Thm 5)."""
    b1, b2, s1, ee, ed = beta1, beta2, sigma1, eta_enc, eta_dec
    c = ed / ee
    B = b2 * ed ** 2
    q = ed ** 2 if learnable else (c * sigma2) ** 2
    m0 = b2 * q / b1
    T = b2 * q / (mp.sqrt(b1) * s1)
    a = None if learnable else sigma2 * c * mp.sqrt(b1 * b2)
    z1_thr_paired = min(mp.sqrt(b1) * s1, mp.sqrt(B) if learnable else mp.sqrt(a * s1))
    always = b1 * s1 ** 2 > b2 * q
    k = min(d1, d2)
    o = {key: [] for key in ("eig", "theta", "m", "lambda", "u1", "lambda_active", "theta_crit_z1",
                             "omega", "w2", "sigma2", "active_z2", "theta_crit_z2")}
    if learnable:
        o.update(beta2_crit=[], beta1_crit=[], eta_dec_crit=[])
    modes = []
    for i in range(d1):
        t = mp.sqrt(ev[i])
        paired = i < k
        if not paired or t <= T:
            stat = t * s1 / mp.sqrt(b1)
        elif learnable:
            stat = t ** 2 * s1 ** 2 / B
        else:
            stat = mp.cbrt(t ** 2 * s1 ** 2 / a) ** 2
        m = max(s1 ** 2, stat)
        lam = mp.sqrt(m - s1 ** 2)
        if not paired or m <= m0:
            H = b1 * m
        elif learnable:
            H = B * (1 + mp.log(m / m0))
        else:
            H = b2 * (c * sigma2) ** 2 * (2 * mp.sqrt(m / m0) - 1)
        modes.append(t ** 2 * s1 ** 2 / m + H)
        thr1 = z1_thr_paired if paired else mp.sqrt(b1) * s1
        o["eig"].append(ev[i]); o["theta"].append(t); o["m"].append(m)
        o["lambda"].append(lam); o["u1"].append(t * lam / m)
        o["lambda_active"].append(bool(t > thr1)); o["theta_crit_z1"].append(thr1)
        if not paired:
            continue
        if learnable:
            omega = mp.sqrt(max(m - m0, mp.mpf(0))) / ee
            S = ee ** 2 * min(mp.mpf(1), m0 / m)
        else:
            omega = mp.sqrt(c * mp.sqrt(b2) / (mp.sqrt(b1) * sigma2)
                            * max(mp.sqrt(m) - mp.sqrt(m0), mp.mpf(0)))
            S = sigma2 ** 2
        o["omega"].append(omega)
        o["w2"].append(b1 * omega / (b1 * omega ** 2 + b2 * c ** 2))
        o["sigma2"].append(mp.sqrt(S))
        o["active_z2"].append(bool(always or t > T))
        o["theta_crit_z2"].append(mp.mpf(0) if always else T)
        if learnable:   # T§5.1 / D§6 critical values (z2 mode active for b2 below / b1 above)
            top = max(b1 * s1 ** 2, mp.sqrt(b1) * s1 * t)
            o["beta2_crit"].append(top / ed ** 2)
            o["eta_dec_crit"].append(mp.sqrt(top / b2))
            o["beta1_crit"].append(min(b2 * ed ** 2 / s1 ** 2,
                                       b2 ** 2 * ed ** 4 / (s1 ** 2 * t ** 2) if t > 0 else mp.inf))
    for _ in range(k, d2):                                   # unpaired z2 dims: collapsed
        o["omega"].append(mp.mpf(0)); o["w2"].append(mp.mpf(0)); o["active_z2"].append(False)
        o["sigma2"].append(ee if learnable else sigma2); o["theta_crit_z2"].append(None)
    rank1, rank2 = sum(o["lambda_active"]), sum(o["active_z2"])
    o["rank_V1"], o["rank_U2"] = rank1, rank2
    o["collapsed_z1"] = (0 if rank1 >= 1 else d1, d1 - rank1)
    o["collapsed_z2"] = d2 - rank2 if learnable else (0 if rank2 >= 1 else d2, d2 - rank2)
    const = B - B * mp.log(ee ** 2) if learnable else b2 * (c * sigma2) ** 2 - B * mp.log(sigma2 ** 2)
    o["loss"] = rest + d2 * const + mp.fsum(modes)
    return o


@_precise
def optimum(setting, eigenvalues, d1, d2=None, trace=None, **hyper):
    """Closed-form global optimum as a dict of per-mode mpf lists (mode i = i-th largest eigenvalue)
    plus 'loss' (= optimal_loss).  ``eigenvalues``: of A = E[x x^T] (theta = sqrt) for vae/mhvae
    settings, of the residual moment E for cvae settings; padded with zeros to d1; ``trace``
    (default: their sum) is the tr A / tr E term.  Hyperparameters (defaults 1): beta, eta_enc,
    eta_dec; 'vae-fixed'/'cvae-fixed' need sigma (std, scalar or one per latent dim);
    'mhvae-*' use beta1, beta2 and need sigma1 (and sigma2 for 'mhvae-sigma2-fixed'); d2 defaults to d1.

    Keys: learnable (T§3/§4): eig, theta, omega (decoder sv), lambda (encoder sv, whitened), sigma
    (learned std), active, beta_crit, eta_dec_crit, collapsed (int).  Fixed (T§2/§4b): eig, theta,
    omega, lambda, sigma_mode (sigma'_i), dim (latent dim carrying mode i), active, beta_crit,
    collapsed ((min, max) zero-mean dims).  Hierarchical (D§3-4): per z1 mode eig, theta, m, lambda, u1,
    lambda_active, theta_crit_z1; per z2 dim (length d2; paired first) omega, w2, sigma2 (std),
    active_z2, theta_crit_z2 (0 if every paired z2 dim is active); Thm 3 also beta2_crit, beta1_crit,
    eta_dec_crit per paired mode; rank_V1, rank_U2, collapsed_z1 (range), collapsed_z2 (int for Thm 3,
    range for Thm 5).  Singular values are in mode order, not re-sorted."""
    d1 = int(d1)
    if setting in ("vae-learnable", "cvae-learnable"):
        h = _hyper(hyper, (), dict(beta=1, eta_enc=1, eta_dec=1))
        ev = _spectrum(eigenvalues, d1)
        return _learnable(ev, d1, _rest(ev, d1, trace), h["beta"], h["eta_enc"], h["eta_dec"])
    if setting in ("vae-fixed", "cvae-fixed"):
        h = _hyper(hyper, ("sigma",), dict(beta=1, eta_enc=1, eta_dec=1))
        ev = _spectrum(eigenvalues, d1)
        return _fixed(ev, d1, _rest(ev, d1, trace), h["sigma"], h["beta"], h["eta_enc"],
                      h["eta_dec"])
    if setting in ("mhvae-sigma2-learnable", "mhvae-sigma2-fixed"):
        learnable = setting.endswith("learnable")
        req = ("sigma1",) if learnable else ("sigma1", "sigma2")
        h = _hyper(hyper, req, dict(beta1=1, beta2=1, eta_enc=1, eta_dec=1))
        d2 = d1 if d2 is None else int(d2)
        ev = _spectrum(eigenvalues, d1)
        return _mhvae(ev, d1, d2, _rest(ev, d1, trace), learnable, **h)
    raise ValueError(f"unknown setting {setting!r}; expected one of {SETTINGS}")


def optimal_loss(setting, eigenvalues, d1, d2=None, trace=None, **hyper):
    """Optimal loss (T§1 / D§1 convention, constants dropped) as mpf; arguments as for ``optimum``."""
    return optimum(setting, eigenvalues, d1, d2=d2, trace=trace, **hyper)["loss"]


@_precise
def optimal_matrices(setting, eigenvalues, d1, d2=None, *, K=None, x_eigenvalues=(1,), **hyper):
    """One member of the optimal set, as mp matrices, for diagonal data A = diag(eigenvalues sorted
    descending) (D0 = len(eigenvalues)); feed the result to vae_loss / cvae_loss / mhvae_loss.
    cvae settings: the residual moment is E = diag(eigenvalues), A_x = diag(x_eigenvalues) and y = K x + r
    (K: D2 x D0x, default 0), so M = [[A_x, A_x K^T], [K A_x, E + K A_x K^T]]; U2 = K, W1 = -W2 K (T§4).
    Returns dict with the matrices, log-variances and 'opt' (the ``optimum`` dict)."""
    opt = optimum(setting, eigenvalues, d1, d2=d2, **hyper)
    ev = _spectrum(eigenvalues, 0)
    D0 = len(ev)
    A = mp.diag(ev)
    if setting.startswith("mhvae"):
        d2 = d1 if d2 is None else int(d2)
        k = min(d1, d2)
        W1, U1, W2, U2 = mp.zeros(d1, D0), mp.zeros(D0, d1), mp.zeros(d2, d1), mp.zeros(d1, d2)
        for i in range(min(d1, D0)):
            if opt["theta"][i] > 0:
                W1[i, i] = opt["lambda"][i] / opt["theta"][i]
            U1[i, i] = opt["u1"][i]
        for i in range(k):
            W2[i, i], U2[i, i] = opt["w2"][i], opt["omega"][i]
        return dict(A=A, W1=W1, U1=U1, W2=W2, U2=U2, log_var1=mp.log(_mpf(hyper["sigma1"]) ** 2),
                    log_var2=[mp.log(s ** 2) for s in opt["sigma2"]], opt=opt)
    W, U = mp.zeros(d1, D0), mp.zeros(D0, d1)
    dims = opt.get("dim", list(range(d1)))
    for i in range(d1):
        j = dims[i]
        if i < D0:
            if opt["theta"][i] > 0:
                W[j, i] = opt["lambda"][i] / opt["theta"][i]
            U[i, j] = opt["omega"][i]
        elif opt["omega"][i] != 0:
            raise AssertionError("a mode without data direction has a non-zero decoder value")
    if "sigma" in opt:
        log_var = [mp.log(s ** 2) for s in opt["sigma"]]
    else:
        log_var = [mp.log(s ** 2) for s in _vec(hyper["sigma"], d1, "sigma")]
    if setting.startswith("vae"):
        return dict(A=A, W=W, U=U, log_var=log_var, opt=opt)
    Ax = mp.diag(_spectrum(x_eigenvalues, 0))
    D0x = Ax.rows
    K = mp.zeros(D0, D0x) if K is None else to_mpf_array(K)
    M = mp.zeros(D0x + D0, D0x + D0)
    blocks = ((0, 0, Ax), (0, D0x, Ax * K.T), (D0x, 0, K * Ax), (D0x, D0x, A + K * Ax * K.T))
    for r0, c0, blk in blocks:
        for i in range(blk.rows):
            for j in range(blk.cols):
                M[r0 + i, c0 + j] = blk[i, j]
    return dict(M=M, x_dim=D0x, W1=-W * K, W2=W, U1=U, U2=K, log_var=log_var, opt=opt)


# ----------------------------------------------------------------------------- exact matrix losses
# These are the literal trace forms: no float64 cancellation, but still finite precision.  Their
# absolute error is ~10^-dps times the largest term (e.g. phi_1 when (UW - I) is formed), so a loss
# far below its largest term (a direction of variance 1e200 reconstructed to 1e-100) needs more
# digits: wrap the construction *and* the evaluation in mp.workdps(150).
def _mats(*xs):
    return [to_mpf_array(x) for x in xs]


def _diag_exp(lv):
    return mp.diag([mp.exp(v) for v in lv])


@_precise
def vae_loss(A, W, U, log_var, beta=1, eta_enc=1, eta_dec=1):
    """T§1 standard VAE, literally: tr((UW-I) A (UW-I)^T) + tr(U Sigma U^T)
    + beta c^2 (tr(W A W^T) + tr Sigma) - kappa log|Sigma|, Sigma = diag(exp(log_var)) (log_var: scalar
    or one per latent dim; log|Sigma| = sum log_var).  A = E[x x^T] (D0 x D0), W: d1 x D0, U: D0 x d1."""
    A, W, U = _mats(A, W, U)
    beta, ee, ed = _mats(beta, eta_enc, eta_dec)
    lv = _vec(log_var, W.rows, "log_var")
    c2, kappa = (ed / ee) ** 2, beta * ed ** 2
    S = _diag_exp(lv)
    R = U * W - mp.eye(A.rows)
    return (_trace(R * A * R.T) + _trace(U * S * U.T)
            + beta * c2 * (_trace(W * A * W.T) + _trace(S)) - kappa * mp.fsum(lv))


@_precise
def cvae_loss(M, x_dim, W1, W2, U1, U2, log_var, beta=1, eta_enc=1, eta_dec=1):
    """T§1 CVAE: tr(F M F^T) + tr(U1 Sigma U1^T) + beta c^2 (tr(G M G^T) + tr Sigma) - kappa log|Sigma|,
    F = [U1 W1 + U2, U1 W2 - I], G = [W1, W2], M = E[[x;y][x;y]^T] with x the first x_dim coordinates.
    Shapes: W1 d1 x D0, W2 d1 x D2, U1 D2 x d1, U2 D2 x D0."""
    M, W1, W2, U1, U2 = _mats(M, W1, W2, U1, U2)
    beta, ee, ed = _mats(beta, eta_enc, eta_dec)
    lv = _vec(log_var, W1.rows, "log_var")
    c2, kappa = (ed / ee) ** 2, beta * ed ** 2
    S = _diag_exp(lv)

    def hstack(P, Q):
        out = mp.zeros(P.rows, P.cols + Q.cols)
        for i in range(P.rows):
            for j in range(P.cols):
                out[i, j] = P[i, j]
            for j in range(Q.cols):
                out[i, P.cols + j] = Q[i, j]
        return out
    if M.rows != int(x_dim) + W2.cols:
        raise ValueError("M must be (x_dim + D2) square")
    F = hstack(U1 * W1 + U2, U1 * W2 - mp.eye(U1.rows))
    G = hstack(W1, W2)
    return (_trace(F * M * F.T) + _trace(U1 * S * U1.T)
            + beta * c2 * (_trace(G * M * G.T) + _trace(S)) - kappa * mp.fsum(lv))


@_precise
def mhvae_loss(A, W1, U1, W2, U2, log_var1, log_var2, beta1=1, beta2=1, eta_enc=1, eta_dec=1,
               sigma1_entropy=False):
    """D§1 / T§5 hierarchical loss with V1 V1^T = W1 A W1^T, written with a diagonal Sigma1 (the
    theorems use Sigma1 = s1^2 I; log_var1 scalar or one per z1 dim):
      tr((U1W1-I)A(U1W1-I)^T) + tr(U1 S1 U1^T)
      + b1 [tr(P W1AW1^T P^T) + tr(P S1 P^T) + tr(U2 S2 U2^T)],  P = U2 W2 - I
      + b2 [c^2 (tr(W2 W1AW1^T W2^T) + tr(W2 S1 W2^T) + tr S2) - eta_dec^2 log|S2|]
    The log|S2| term is always included (D§1 convention).  sigma1_entropy=True adds the q(z1|x) entropy
    term -b1 eta_dec^2 log|S1| (2 eta_dec^2 * b1 E log q(z1|x) up to constants; needed if Sigma1 is
    learnable).  Shapes: W1 d1 x D0, U1 D0 x d1, W2 d2 x d1, U2 d1 x d2."""
    A, W1, U1, W2, U2 = _mats(A, W1, U1, W2, U2)
    b1, b2, ee, ed = _mats(beta1, beta2, eta_enc, eta_dec)
    lv1 = _vec(log_var1, W1.rows, "log_var1")
    lv2 = _vec(log_var2, W2.rows, "log_var2")
    c2 = (ed / ee) ** 2
    S1, S2 = _diag_exp(lv1), _diag_exp(lv2)
    R = U1 * W1 - mp.eye(A.rows)
    Az = W1 * A * W1.T
    P = U2 * W2 - mp.eye(W1.rows)
    L = (_trace(R * A * R.T) + _trace(U1 * S1 * U1.T)
         + b1 * (_trace(P * Az * P.T) + _trace(P * S1 * P.T) + _trace(U2 * S2 * U2.T))
         + b2 * (c2 * (_trace(W2 * Az * W2.T) + _trace(W2 * S1 * W2.T) + _trace(S2))
                 - ed ** 2 * mp.fsum(lv2)))
    if sigma1_entropy:
        L -= b1 * ed ** 2 * mp.fsum(lv1)
    return L


# ----------------------------------------------------------------------------- spectra of data
def _columns(X, center):
    X = np.asarray(X)
    X = X[:, None] if X.ndim == 1 else X
    cols = [[_mpf(v) for v in X[:, j].tolist()] for j in range(X.shape[1])]
    if center:
        n = mp.mpf(X.shape[0])
        cols = [[v - m for v in col] for col, m in ((col, mp.fsum(col) / n) for col in cols)]
    return cols, X.shape[0]


def _gram(P, Q, n):
    out = mp.matrix(len(P), len(Q))
    for i, p in enumerate(P):
        for j, q in enumerate(Q):
            out[i, j] = out[j, i] if (P is Q and j < i) else mp.fdot(p, q) / n
    return out


def _eig_desc(S):
    if S.rows == 0:
        return []
    return sorted((S_ev for S_ev in mp.eigsy(S, eigvals_only=True)), reverse=True)


@_precise
def moment_matrix(X, center=True):
    """1/N second-moment matrix (covariance if centred) of data X (rows = samples) as mp.matrix,
    from the exact float64 entries; the mean is subtracted in mpmath (T§0)."""
    cols, n = _columns(X, center)
    return _gram(cols, cols, n)


@_precise
def eigenvalues(X, center=True):
    """Eigenvalues (descending, list of mpf) of ``moment_matrix(X, center)`` via mp.eigsy.  Absolute
    accuracy ~10^-dps * phi_1 (tiny rounding-level negatives are possible and are not clipped)."""
    return _eig_desc(moment_matrix(X, center))


@_precise
def residual_moment(x, y, center=True, rtol="1e-30"):
    """E = E[r r^T] for the residual r = y - K x of the exact (minimum-norm) least-squares regression of
    y on x (T§4: E = B - C A^+ C^T), computed as the moment of the residual itself (no B - C A^+ C^T
    cancellation).  Rank decision for A^+: eigenvalues of A = E[x x^T] at most rtol * (largest) are
    treated as zero.  The default 1e-30 sits above the ~1e-32 relative eigenvalue that float64 rounding
    leaves in an exactly-dependent column (x3 = x1 + x2 stored in float64) and far below anything float64
    code can resolve; pass e.g. rtol = D*2.2e-16 to mimic a numpy-style float64 rank decision."""
    X, n = _columns(x, center)
    Y, _ = _columns(y, center)
    A = _gram(X, X, n)
    if not X:
        return _gram(Y, Y, n)
    ev, Q = mp.eigsy(A)
    top = max(ev)
    keep = [i for i in range(len(ev)) if top > 0 and ev[i] > _mpf(rtol) * top]
    C = _gram(X, Y, n)                                      # E[x y^T]: D0 x D2
    Kt = mp.zeros(len(X), len(Y))                           # K^T = A^+ E[x y^T]
    for i in keep:
        qi = [Q[a, i] for a in range(len(X))]
        proj = [mp.fdot(qi, [C[a, b] for a in range(len(X))]) / ev[i] for b in range(len(Y))]
        for a in range(len(X)):
            for b in range(len(Y)):
                Kt[a, b] += qi[a] * proj[b]
    rows = list(zip(*X))                                    # samples of the centred x
    R = []
    for b in range(len(Y)):
        kb = [Kt[a, b] for a in range(len(X))]
        R.append([Y[b][s] - mp.fdot(rows[s], kb) for s in range(n)])
    return _gram(R, R, n)


@_precise
def residual_eigenvalues(x, y, center=True, rtol="1e-30"):
    """Eigenvalues e_1 >= e_2 >= ... (list of mpf) of ``residual_moment(x, y, center, rtol)`` (T§4)."""
    return _eig_desc(residual_moment(x, y, center, rtol))

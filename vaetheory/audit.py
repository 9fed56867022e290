"""How far trained weights are from the closed-form global optimum: the judgement behind
:mod:`vaetheory.testing`'s assertions and ``vaetheory audit``.

:func:`audit` takes the parameters of a trained linear (C/H)VAE -- numpy arrays, or anything with
``__array__`` or ``.detach().cpu().numpy()`` (PyTorch tensors, JAX arrays; neither library is
imported) -- the data it was trained on and the setting's hyperparameters, and

1. evaluates the **exact expected loss** of those parameters on the data (docs/theory.md §1, in
   float64, no sampling): the loss of :mod:`vaetheory.losses` on the data's covariance plus, for
   a model with biases, what the data mean adds (§1.5: ``Setting.mean_terms``);
2. compares it with the closed-form optimum of the setting at the same hyperparameters
   (:meth:`Setting.solve`, :meth:`Solution.at`): the **loss gap**, absolute and relative, split
   into the part due to the weights and the part due to the biases;
3. compares the sorted **singular values of every map** (encoders in whitened coordinates,
   docs/theory.md §0.5) with the predicted ones, and the **collapsed latent dims** under a named
   rule (:data:`RULES`) with the dims predicted;
4. gives a **verdict** (:class:`~vaetheory.errors.Verdict`) and, when it is not AT OPTIMUM,
   **hints** at the usual bugs: missing biases on non-centred data, a hyperparameter the
   training effectively used instead of the given one (a missing factor 2 in the KL shows up as
   ``beta`` twice the given value), a square weight matrix stored transposed.

Verdicts and their thresholds (relative gap ``g = (L - L*) / S``, ``S`` the size of the trained
loss: its data part plus the absolute value of its data-independent part, at least ``|L*|``, so
cancellation between the two never inflates ``g``; singular-value errors relative to
``max(largest predicted value of the map, the map's natural scale)``):

==============  =========================================================  =========
verdict         condition (defaults)                                       exit code
==============  =========================================================  =========
AT OPTIMUM      ``g <= loss_rtol`` (1e-3) and every map's singular values  0
                within ``sv_rtol`` (10 %)
NEAR            not AT OPTIMUM and ``g <= near_rtol`` (5e-2)               5
FAR             ``g > near_rtol``                                          6
REFUTED         ``g < -1e-8``: a loss *below* the closed-form minimum,     3
                a counterexample to the theory
NO OPTIMUM      a learned decoder variance where the loss has no minimum   7
                (docs/theory.md §12.2): nothing to compare with
==============  =========================================================  =========

**A learned decoder variance** (the records ``settings.get(model, variance, "learned")``,
docs/theory.md §12; the VAE and CVAE -- the hierarchical ones have no closed form): the loss is
the full negative beta-ELBO per sample in nats (§12.1), at the weights' own ``u = eta_dec^2`` if
they carry it -- the optional role ``log_u`` (``log eta_dec^2``, as :mod:`vaetheory.sgd` trains
it; ``std:log_u``/``var:log_u``/``log_std:log_u`` for a std, a variance, a log-std; guessed from
``log_sigma_x``, ``logvar_x``, ``dec_logvar``, ``decoder.log_var``, ``log_scale``,
``log_noise_std`` ...) -- and otherwise at the ``u`` optimal for the given maps, ``u = R / n``
(exact: the loss is affine in ``u``; "u profiled" in the report). :attr:`Audit.decoder_variance`
compares the ``u`` found with the optimum's, and AT OPTIMUM also needs ``|u - u*| <= sv_rtol
u*``. The relative gap is ``(N - N*) / S`` with ``S`` the larger of the two losses' parts that
are not the log-normaliser (``N - (n/2) log(2 pi u)``, > 0): data scaled by ``2^k`` shift every
nats value by ``n k log 2``, so the gap, ``S``, the relative gap and the verdict are invariant;
``|N*|`` itself can be ~0 or negative (proof and measured float32 numbers: docs/theory.md §7(f)).

The defaults are for float32 training with sampled noise: such runs settle within ~1e-4..1e-3
(relative) of the optimum's loss (measured in examples/audit_numpy_vae.py: 2e-4..4e-4 after
100-300 epochs of minibatch Adam on the digits, singular values within 2.5-5 % of their scale);
the singular values of modes just below their threshold decay slowly (the loss is flat in
them), which ``sv_rtol=None`` ignores. Collapse is reported but does
not enter the verdict; :func:`vaetheory.testing.assert_collapse_matches` asserts it.

Parameter names and layouts: a ``mapping`` from the user's names to the setting's roles
(``Setting.parameters`` -- ``W``, ``U``, ``log_var`` ...; the biases ``Setting.biases``); a role may
be written ``W.T`` (stored transposed, e.g. a flax/keras ``(in, out)`` kernel), ``[W1,W2]`` (one
matrix acting on a concatenation, x first: a CVAE encoder on ``[x, y]``), and a log-variance as
``std:log_var``, ``var:log_var`` or ``log_std:log_var`` when the code stores a std, a variance or
a log-std. Matrices are ``out x in``, as PyTorch's ``nn.Linear.weight`` and as the losses write
them (``W`` is ``latent x data``); ``layout="in_out"`` flips every matrix. Names not mapped are
guessed from common layouts (``encoder.weight``, ``enc.bias``, ``fc_mu.weight``, ``logvar``,
``decoder1.weight`` ...; :func:`guess_role`), and the guess is reported. Several parameters
mapped to one bias role are added (two layers whose outputs are summed).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from . import settings as _settings
from ._numerics import DELTA, KL_COLLAPSE_TOL, kl_per_dim, pad_sorted
from .errors import DataError, NotCoveredError, ParameterError, ResourceError, Verdict
from .io import Selection
from .moments import Moments, Spectrum, load_spectrum, spectrum_from_moments

__all__ = ["Audit", "Binding", "LOSS_RTOL", "NEAR_RTOL", "RULES", "SV_RTOL", "as_array", "audit",
           "bind", "guess_role", "load_weights", "resolve_setting"]

#: AT OPTIMUM: relative loss gap at most this (float32 training with sampled noise)
LOSS_RTOL = 1e-3
#: NEAR: relative loss gap at most this
NEAR_RTOL = 5e-2
#: AT OPTIMUM: every sorted singular value within this fraction of its map's scale
SV_RTOL = 0.1
#: a relative gap below minus this is a loss under the closed-form minimum (REFUTED)
REFUTE_RTOL = 1e-8
#: the collapse rules (docs/theory.md §7): name -> what a collapsed dim has
RULES = {
    "kl": "KL_j <= delta nats (fixed variances: the mean part E[mu_j^2] / (2 prior std^2))",
    "au": "Var_x E[z_j|x] <= delta (active units, Burda et al. 2016)",
    "exact": f"KL_j <= {KL_COLLAPSE_TOL:g} nats (fixed variances: its mean part), the rule of "
             "docs/theory.md §7 for exact optima",
}

_INSTALL_AUDIT = 'pip install "vaetheory[audit]"'


# ------------------------------------------------------------------------------------------
# arrays from anything array-like, weights from files


def as_array(value, name) -> np.ndarray:
    """``value`` as a float64 ndarray: numpy arrays, anything with ``__array__`` (JAX arrays),
    or with ``.detach().cpu().numpy()`` (PyTorch tensors, bfloat16 included) -- neither library
    is imported. Raises :class:`ParameterError` naming ``name`` for anything else."""
    obj = value
    if not isinstance(obj, np.ndarray):
        for method in ("detach", "cpu"):
            fn = getattr(obj, method, None)
            if callable(fn):
                obj = fn()
        fn = getattr(obj, "numpy", None)
        if callable(fn):
            try:
                obj = fn()
            except (TypeError, RuntimeError):  # e.g. torch.bfloat16 has no numpy dtype
                widen = getattr(obj, "float", None)
                obj = widen().numpy() if callable(widen) else obj
    try:
        arr = np.asarray(obj)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.dtype.kind not in "biuf":
        kind = type(value).__name__ if arr is None else f"dtype {arr.dtype}"
        raise ParameterError(f"parameter {name!r} is not an array of real numbers ({kind})")
    return np.array(arr, dtype=np.float64)


def load_weights(path) -> Dict[str, np.ndarray]:
    """The arrays of a weights file: ``.npz`` (numpy) or ``.safetensors`` (needs the
    ``safetensors`` package: the ``audit`` extra; no torch). Raises :class:`DataError` for a
    missing or unreadable file and :class:`ResourceError` when the extra is not installed."""
    path = os.fspath(path)
    shown = "'" + path + "'"
    if not os.path.isfile(path):
        raise DataError(f"cannot read {shown}: " + ("it is a directory" if os.path.isdir(path)
                                                   else "no such file"))
    low = path.lower()
    if low.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: np.asarray(z[k]) for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read {shown} as .npz weights: {_first_line(exc)}") from None
    if low.endswith(".safetensors"):
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise ResourceError(f"reading .safetensors weights needs the safetensors package, "
                                f"which is not installed: {_INSTALL_AUDIT} (or save the weights "
                                "with numpy.savez)") from None
        try:
            return dict(load_file(path))
        except Exception as exc:  # safetensors raises its own error types
            raise DataError(f"cannot read {shown} as .safetensors weights: {_first_line(exc)} "
                            "(bfloat16 tensors need converting to float32 before saving)") from None
    if low.endswith((".pt", ".pth", ".ckpt", ".bin")):
        raise DataError(f"{shown} is a torch checkpoint, which cannot be read without torch: save "
                        "the state dict with safetensors.torch.save_file (.safetensors) or "
                        "numpy.savez (.npz)")
    raise DataError(f"{shown}: unsupported weights format; use .npz or .safetensors")


def _first_line(exc):
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def resolve_setting(setting, hyper=()) -> _settings.Setting:
    """A :class:`~vaetheory.settings.Setting` from a record, ``"model/variance"``,
    ``(model, variance)`` or a model name alone (its variant then follows ``hyper``: ``sigma``
    given means fixed, as on the command line)."""
    if isinstance(setting, _settings.Setting):
        return setting
    if isinstance(setting, tuple) and len(setting) == 2:
        return _settings.resolve(*setting)
    if isinstance(setting, str):
        model, _, variance = setting.partition("/")
        return _settings.resolve(model, variance or None, given=list(hyper))
    raise ParameterError(f"setting must be a Setting, 'model/variance' or (model, variance), got "
                         f"{setting!r}")


# ------------------------------------------------------------------------------------------
# names -> roles


_TRANSFORMS = {"": "log_var", "log_var": "log_var", "std": "std", "var": "var",
               "log_std": "log_std"}
_PREFIXES = {"module", "model", "vae", "cvae", "hvae", "mhvae", "net", "network", "params",
             "param", "state", "dict", "self", "linear", "lin"}
_STD_WORDS = {"log_std": ("logsigma", "logstd", "logscale"), "std": ("sigma", "std", "scale"),
              "var": ("var", "variance")}


@dataclass(frozen=True)
class _Spec:
    """How one user parameter is read: its roles (several for a concatenation), stored
    transposed or not, and the log-variance transform."""

    name: str
    roles: Tuple[str, ...]
    transpose: bool = False
    transform: str = "log_var"
    guessed: bool = False

    @property
    def text(self):
        role = self.roles[0] if len(self.roles) == 1 else "[" + ",".join(self.roles) + "]"
        pre = "" if self.transform == "log_var" else self.transform + ":"
        return pre + role + (".T" if self.transpose else "")


def _valid_roles(setting):
    u = setting.decoder_variance_role
    return tuple(setting.parameters) + setting.biases + ((u,) if u else ())


def _is_log(role):
    """Whether a role is a log-variance (the encoder's ``log_var...`` or the decoder's ``log_u``):
    the roles the ``std:``/``var:``/``log_std:`` transforms apply to."""
    return role.startswith("log_var") or role == "log_u"


def _parse_role(text, setting, name) -> _Spec:
    """``[transform:]role[.T]`` or ``[A,B][.T]`` -> _Spec (ParameterError naming ``name``)."""
    t = str(text).strip()
    pre, sep, rest = t.partition(":")
    transform = "log_var"
    if sep:
        if pre not in _TRANSFORMS:
            raise ParameterError(f"mapping of {name!r}: unknown transform {pre!r} in {t!r} (use "
                                 "std:, var: or log_std: before a log-variance role)")
        transform, t = _TRANSFORMS[pre], rest
    transpose = t.endswith(".T")
    if transpose:
        t = t[:-2]
    if t.startswith("[") and t.endswith("]"):
        roles = tuple(r.strip() for r in t[1:-1].split(","))
    else:
        roles = (t,)
    known = _valid_roles(setting)
    for r in roles:
        if r not in known:
            raise ParameterError(f"mapping of {name!r}: {r!r} is not a parameter of "
                                 f"{setting.name}; its roles are {', '.join(known)}")
    if len(roles) > 1 and any(_is_log(r) or r in setting.biases for r in roles):
        raise ParameterError(f"mapping of {name!r}: only weight matrices can be concatenated "
                             f"({t!r})")
    if transform != "log_var" and not (len(roles) == 1 and _is_log(roles[0])):
        raise ParameterError(f"mapping of {name!r}: {pre}: applies to a log-variance role")
    return _Spec(name, roles, transpose, transform)


def _plain(text):
    return re.sub(r"[^a-z0-9]", "", text.lower())


def guess_role(name, setting) -> Optional[str]:
    """The role a parameter called ``name`` most likely has in ``setting`` (None if no guess):
    the role's own name, or a common layout (``encoder.weight`` -> ``W``, ``enc.bias`` ->
    ``encoder_bias``, ``flax ... /kernel`` -> ``W.T``, ``log_sigma`` -> ``log_std:log_var``),
    from the record's ``common_names`` (lowercase stems without separators)."""
    setting = resolve_setting(setting)
    if name in _valid_roles(setting):
        return name
    tokens = [t for t in re.split(r"[^a-z0-9]+", str(name).lower()) if t]
    while len(tokens) > 1 and tokens[0] in _PREFIXES:
        tokens.pop(0)
    if not tokens:
        return None
    kind, transpose = None, False
    if len(tokens) > 1 and tokens[-1] in ("weight", "weights", "kernel", "w"):
        kind, transpose = "weight", tokens[-1] == "kernel"
        tokens.pop()
    elif len(tokens) > 1 and tokens[-1] in ("bias", "b"):
        kind = "bias"
        tokens.pop()
    elif len(tokens) > 1 and tokens[0] in ("w", "b"):
        kind = "weight" if tokens[0] == "w" else "bias"
        tokens.pop(0)
    stem = "".join(tokens)
    names = setting.common_names
    if kind is None:
        for role, stems in names.items():
            base = role.rpartition(":")[2]   # a key may carry its transform (``std:log_u``)
            if not _is_log(base):
                continue
            if stem in stems:
                return role
            if base != role:
                continue
            for transform, words in _STD_WORDS.items():
                variants = {s.replace("logvar", w) for s in stems if "logvar" in s for w in words}
                if stem in variants:
                    return f"{transform}:{role}"
    for role, stems in names.items():
        if _is_log(role.rpartition(":")[2]) or stem not in stems:
            continue
        if kind == "bias":
            first = role.strip("[]").split(",")[0]
            return setting.bias_of.get(first)
        return role + (".T" if transpose else "")
    return None


@dataclass
class Binding:
    """The parameters of a model, by role, and how they were read.

    ``params``: role -> float64 array in the losses' layout (``out x in``), the fixed
    log-variances filled in from the hyperparameters; ``biases``: bias role -> array (only those
    given); ``latent_dims``: ``{"latent_dim": d1, "latent_dim2": d2}``; ``mapping``: one
    ``(role text, user name, guessed)`` per parameter read; ``ignored``: names not used;
    ``hyper``: the hyperparameters, checked (when given).
    """

    params: Dict[str, np.ndarray]
    biases: Dict[str, np.ndarray]
    latent_dims: Dict[str, Optional[int]]
    mapping: List[Tuple[str, str, bool]]
    ignored: List[str]
    hyper: Optional[Dict[str, object]] = None
    names: Dict[str, str] = field(default_factory=dict)   # role -> the user's name

    @property
    def guessed(self) -> bool:
        return any(g for _, _, g in self.mapping)


def _named_arrays(params):
    if hasattr(params, "state_dict") and callable(params.state_dict):
        params = params.state_dict()
    if not isinstance(params, Mapping):
        raise ParameterError("params must be a mapping from parameter names to arrays (a dict, a "
                             f"state_dict, an .npz file's arrays), got {type(params).__name__}")
    return dict(params)


def _specs(names, setting, mapping, layout):
    if layout not in ("out_in", "in_out"):
        raise ParameterError(f"layout must be 'out_in' (nn.Linear: weight is out x in) or "
                             f"'in_out' (x @ W kernels), got {layout!r}")
    mapping = dict(mapping or {})
    unknown = [n for n in mapping if n not in names]
    if unknown:
        raise ParameterError(f"mapping names {unknown[0]!r}, which is not among the parameters "
                             f"({', '.join(map(str, names)) or 'none'})")
    specs, ignored = [], []
    for n in names:
        if n in mapping:
            text, guessed = mapping[n], False
            if text is None or str(text).strip() in ("", "-"):
                ignored.append(n)
                continue
        else:
            text = guess_role(n, setting)
            guessed = text != n
            if text is None:
                ignored.append(n)
                continue
        spec = _parse_role(text, setting, n)
        matrix = not (_is_log(spec.roles[0]) or spec.roles[0] in setting.biases)
        if layout == "in_out" and matrix:
            spec = _Spec(spec.name, spec.roles, not spec.transpose, spec.transform)
        specs.append(_Spec(spec.name, spec.roles, spec.transpose, spec.transform, guessed))
    return specs, ignored


def _transformed(arr, spec):
    if spec.transform == "std":
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * np.log(arr)
    if spec.transform == "var":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(arr)
    if spec.transform == "log_std":
        return 2.0 * arr
    return arr


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _expected(spec, shapes):
    """Expected (stored) shape of a spec, given the roles' shapes."""
    parts = [shapes[r] for r in spec.roles]
    if len(parts) == 1:
        shape = parts[0]
    else:
        shape = (parts[0][0], sum(p[1] for p in parts))
    return tuple(reversed(shape)) if spec.transpose and len(shape) == 2 else tuple(shape)


def _all_shapes(setting, D, x_dim, d1, d2):
    shapes = setting.parameter_shapes(D, d1, d2, x_dim)
    shapes.update(setting.bias_shapes(D, d1, d2, x_dim))
    if setting.decoder_variance_role:
        shapes[setting.decoder_variance_role] = (1,)   # one u for every output (docs §12)
    return shapes


def _fits(arr, shape):
    if arr.shape == tuple(shape):
        return True
    return len(shape) == 1 and arr.size == shape[0]  # a (1, d) or (d, 1) vector


def bind(params, setting, D, x_dim=None, *, mapping=None, layout="out_in", latent_dim=None,
         latent_dim2=None, hyper=None) -> Binding:
    """Read ``params`` (a mapping or anything with ``state_dict()``) into the roles of
    ``setting`` for data of dimension ``D`` (CVAE: ``D = x_dim + y_dim``).

    The latent dims come from the shapes (or ``latent_dim``/``latent_dim2``, then checked). Shape
    errors name the parameter, its role and the expected shape, and say when the parameter looks
    transposed. Fixed log-variances (``Setting.fixed_log_vars``) are filled in from ``hyper``;
    given ones must equal them.
    """
    setting = resolve_setting(setting)
    arrays = _named_arrays(params)
    specs, ignored = _specs(list(arrays), setting, mapping, layout)
    values = {s.name: _transformed(as_array(arrays[s.name], s.name), s) for s in specs}
    # latent dims: the (d1, d2) that fits most parameters
    second = setting.has_second_latent
    seen = sorted({int(n) for v in values.values() for n in v.shape} | {1})
    c1 = [latent_dim] if latent_dim is not None else seen
    c2 = ([latent_dim2] if latent_dim2 is not None else seen) if second else [None]
    best, score = None, -1
    for a in c1:
        for b in c2:
            shapes = _all_shapes(setting, D, x_dim, a, b)
            n = sum(_fits(values[s.name], _expected(s, shapes)) for s in specs)
            if n > score:
                best, score = (a, b), n
    d1, d2 = best
    shapes = _all_shapes(setting, D, x_dim, d1, d2)
    out, biases, lines = {}, {}, []
    for s in specs:
        arr, want = values[s.name], _expected(s, shapes)
        if s.roles[0] == "log_u" and arr.size > 1:
            flat = arr.ravel()
            if not np.all(flat == flat[0]):
                raise ParameterError(
                    f"parameter {s.name!r} (role {s.text}) has {arr.size} different entries: a "
                    "per-output decoder variance is outside the theory, which learns one u = "
                    "eta_dec^2 for every output (docs/theory.md §12); audit a model with one "
                    "(a scalar log-variance)")
            arr = flat[:1]
        if not _fits(arr, want):
            msg = (f"parameter {s.name!r} (role {s.text}) has shape {_shape_text(arr.shape)}, "
                   f"expected {_shape_text(want)} for latent dim {d1}"
                   + (f" and latent dim2 {d2}" if second else "") + f" and data dim {D}")
            if arr.ndim == 2 and arr.shape == tuple(reversed(want)):
                msg += (" -- it looks transposed: matrices are out x in (nn.Linear.weight); an "
                        "(in, out) kernel (x @ W) needs the role " + s.text.replace(".T", "")
                        + ("" if s.transpose else ".T") + " or layout='in_out'")
            raise ParameterError(msg)
        arr = arr.reshape(want)
        if s.transpose:
            arr = arr.T
        if len(s.roles) > 1:
            pieces = np.cumsum([shapes[r][1] for r in s.roles])[:-1]
            parts = dict(zip(s.roles, np.split(arr, pieces, axis=1)))
        else:
            parts = {s.roles[0]: arr}
        for role, a in parts.items():
            if role in setting.biases:
                biases[role] = biases.get(role, 0.0) + a
            elif role in out:
                raise ParameterError(f"two parameters are mapped to role {role}: "
                                     f"{out[role][1]!r} and {s.name!r}")
            else:
                out[role] = (np.ascontiguousarray(a), s.name)
        lines.append((s.text, s.name, s.guessed))
    fixed = setting.fixed_log_vars
    h = None if hyper is None else _settings.point_hyper(setting, hyper, d1, d2)
    missing = [r for r in setting.parameters if r not in out and (r not in fixed or h is None)]
    if missing:
        raise ParameterError(
            f"no parameter for role {missing[0]} of {setting.name}"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; parameters: {', '.join(map(str, arrays)) or 'none'}"
            + (f" (not recognised: {', '.join(map(str, ignored))})" if ignored else "")
            + f"; give a mapping, e.g. {{'name': '{missing[0]}'}} (CLI: --map NAME={missing[0]})")
    params_out = {r: out[r][0] for r in out}
    for role, hname in (fixed.items() if h is not None else ()):
        want = np.log(np.broadcast_to(np.asarray(h[hname], dtype=np.float64), shapes[role]) ** 2)
        if role in params_out:
            got = np.exp(0.5 * params_out[role])
            ref = np.exp(0.5 * want)
            if not np.all(np.abs(got - ref) <= 1e-5 * ref):
                raise ParameterError(
                    f"parameter {out[role][1]!r} (role {role}) is the fixed log-variance of "
                    f"{setting.name}: its stds {np.array2string(got, precision=4)} differ from "
                    f"{hname} = {np.array2string(ref, precision=4)}; give the {hname} the model "
                    "was trained with (a trained variance is the learnable setting)")
        params_out[role] = want.copy()
    dims = {"latent_dim": int(d1), "latent_dim2": None if d2 is None else int(d2)}
    names = {r: n for r, (_, n) in out.items()}
    for s in specs:
        for r in s.roles:
            names.setdefault(r, s.name)
    return Binding(params_out, {k: np.asarray(v, dtype=np.float64) for k, v in biases.items()},
                   dims, lines, ignored, h, names)


# ------------------------------------------------------------------------------------------
# data -> spectrum (with its second-moment matrix and mean)


def _data(data, setting, center, with_basis=False):
    """(spectrum, centred, mean, x_dim) of the data the model was trained on."""
    residual = setting.spectrum_kind == "residual"
    if isinstance(data, Spectrum):
        spec = data
        if spec.matrix is None or (residual and spec.x_dim is None):
            raise ParameterError("an audit needs the data's second-moment matrix: a spectrum "
                                 "from empirical_spectrum / empirical_residual_spectrum / "
                                 "load_spectrum, or the data themselves")
        centred = spec.centered
    elif isinstance(data, Moments):
        if residual:
            raise ParameterError("for the cvae give the data (x, y), a Selection or a residual "
                                 "Spectrum: Moments do not say which columns are x")
        spec, centred = spectrum_from_moments(data, with_basis=with_basis), data.centered
    else:
        if isinstance(data, Selection):
            sel = data
            if center is not None and bool(center) != bool(sel.center):
                raise ParameterError(f"center={center} but the Selection has center="
                                     f"{sel.center}")
        elif residual:
            if not (isinstance(data, (tuple, list)) and len(data) == 2):
                raise ParameterError(f"{setting.name} needs paired data: data=(x, y)")
            x, y = (d if isinstance(d, np.ndarray) else as_array(d, n)
                    for d, n in zip(data, ("x", "y")))
            sel = Selection(x, conditional=True, y=y, center=True if center is None else center,
                            label="x", y_label="y")
        else:
            X = data if isinstance(data, np.ndarray) else as_array(data, "data")
            sel = Selection(X, center=True if center is None else center, label="the data")
        if sel.conditional != residual:
            raise ParameterError(f"{setting.name} needs {'a conditional' if residual else 'an unconditional'}"
                                 " Selection")
        spec = load_spectrum(sel, with_basis=with_basis)
        centred = sel.center
        if spec.matrix is None:   # wide data (N < D) take the dual path, without the D x D matrix
            spec = _with_matrix(spec, data if not isinstance(data, Selection) else None,
                                residual, centred)
    if spec.kind != setting.spectrum_kind:
        raise ParameterError(f"{setting.name} needs a {setting.spectrum_kind} spectrum, got a "
                             f"{spec.kind} spectrum")
    if centred is None:
        centred = True if center is None else bool(center)
    elif center is not None and bool(center) != bool(centred):
        raise ParameterError(f"center={center} but the data's moments have centered={centred}")
    M = np.asarray(spec.matrix, dtype=np.float64)
    mean = np.zeros(M.shape[0]) if spec.mean is None else np.asarray(spec.mean, dtype=np.float64)
    return spec, bool(centred), mean, (int(spec.x_dim) if residual else None)


def _with_matrix(spec, arrays, residual, centred):
    """The spectrum with the moment matrix the exact loss needs, from in-memory data whose
    spectrum was computed on the dual path (N < D, docs/theory.md §9.6: no D x D matrix)."""
    import dataclasses

    from .moments import empirical_moments

    if arrays is None:
        raise ParameterError("the audit needs the data's D x D second-moment matrix, which wide "
                             "data (fewer samples than features) read from a Selection do not "
                             "form: pass the data as arrays")
    Z = np.hstack([np.asarray(a, dtype=np.float64) for a in arrays]) if residual else \
        np.asarray(arrays, dtype=np.float64)
    mom = empirical_moments(Z, center=centred)
    e = int(spec.scale_exponent)
    return dataclasses.replace(spec, scaled_matrix=np.ldexp(mom.matrix, -2 * e),
                               scaled_mean=np.ldexp(mom.mean, -e) if spec.scaled_mean is None
                               else spec.scaled_mean)


# ------------------------------------------------------------------------------------------
# the loss of the trained parameters and their measures


class _Evaluator:
    """Exact loss (and its parts) of parameters on one dataset, for one setting.

    A fixed decoder variance: the loss of docs/theory.md §1 (``2 eta_dec^2`` times the negative
    ELBO, constants dropped). A learned one (§12.1): the full negative beta-ELBO per sample in
    nats, at the weights' ``u = exp(log_u)`` or, without ``log_u``, at the ``u`` that is optimal
    for the other parameters, ``u = R / n`` (§12.6: ``L`` is affine in ``u``, ``R`` its part at
    ``u = 0``, ``n`` the number of Gaussian outputs) -- profiled exactly."""

    def __init__(self, setting, M, x_dim, mean, centred, d1, d2):
        from .sgd import _MEASURES  # the measures a training run is judged by

        self.setting, self.M, self.x_dim = setting, M, x_dim
        self.mean, self.centred, self.d1, self.d2 = mean, centred, d1, d2
        self.zero = np.zeros_like(M)
        self._measure = _MEASURES[setting.model]
        self.learned = setting.learned_decoder
        self.n = setting.gaussian_outputs(M.shape[0], d1, x_dim) if self.learned else None

    def _kw(self, h):
        s = self.setting
        kw = {k: h[k] for k in s.axes}
        if self.learned:
            kw["eta_dec"] = h["eta_dec"]
        return kw

    def _loss(self, M, p, h, recon=False):
        s = self.setting
        kw = self._kw(h)
        if s.has_second_latent:
            kw["sigma1_entropy"] = s.sigma1_entropy
        if recon:
            kw["recon"] = True
        lead = (M, self.x_dim) if s.spectrum_kind == "residual" else (M,)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            return float(s.loss_function(*lead, *[p[n] for n in s.parameters], **kw))

    def mean_terms(self, p, biases, h, recon=False):
        """(value, {latent: posterior mean at the data mean}); zero for the bias-free model."""
        s = self.setting
        if not self.centred or s.mean_terms_function is None:
            return 0.0, {}
        lead = (self.mean, self.x_dim) if s.spectrum_kind == "residual" else (self.mean,)
        kw = dict(self._kw(h), recon=True) if recon else self._kw(h)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            return s.mean_terms_function(*lead, *[p[n] for n in s.parameters],
                                         *[biases.get(b) for b in s.biases], **kw)

    def profiled_u(self, p, biases, h):
        """``u = R / n``: the decoder variance that minimises the loss for these maps (§12.6)."""
        h1 = dict(h, eta_dec=1.0)   # unused by recon=True, checked
        R = self._loss(self.M, p, h1, recon=True) + float(self.mean_terms(p, biases, h1,
                                                                          recon=True)[0])
        return R / self.n

    def decoder_u(self, p, biases, h):
        """(u, profiled): the weights' ``exp(log_u)``, or :meth:`profiled_u` without it."""
        if "log_u" in p:
            return float(np.exp(np.asarray(p["log_u"], dtype=float).ravel()[0])), False
        return self.profiled_u(p, biases, h), True

    def nats(self, p, biases, h, u):
        """(N, the covariance part, the bias part, N's scale-free part, latent means) at ``u``:
        ``N = (L_u + C(u)) / (2u)`` (docs/theory.md §12.1), its scale-free part
        ``N - (n/2) log(2 pi u) = E||x - U z||^2 / (2u) + beta E KL >= 0`` (§7(f))."""
        from .losses import neg_elbo
        from .sgd import _constant

        if not (u > 0 and math.isfinite(u)):   # a perfect reconstruction: -inf (unbounded)
            return -math.inf, -math.inf, 0.0, math.inf, {}
        hu = dict(h, eta_dec=math.sqrt(u))
        cov = self._loss(self.M, p, hu)
        bias, means = self.mean_terms(p, biases, hu)
        C = float(_constant(self.setting, u, self.M.shape[0], self.x_dim, self.d1, self.d2, hu,
                            p))
        total = float(neg_elbo(cov + float(bias), C, u))
        with np.errstate(over="ignore", invalid="ignore"):
            size = total - 0.5 * self.n * math.log(2.0 * math.pi * u)
        return total, float(neg_elbo(cov, C, u)), float(bias) / (2.0 * u), size, means

    def total(self, p, biases, h):
        """The loss the verdict compares with the optimum (at the weights' or the profiled u)."""
        if not self.learned:
            return self._loss(self.M, p, h) + float(self.mean_terms(p, biases, h)[0])
        return self.nats(p, biases, h, self.decoder_u(p, biases, h)[0])[0]

    def losses(self, p, biases, h):
        """(loss on the covariance, bias part, data-independent part, latent means)."""
        cov = self._loss(self.M, p, h)
        rest = self._loss(self.zero, p, h)
        bias, means = self.mean_terms(p, biases, h)
        return cov, float(bias), rest, means

    def measures(self, p, h):
        return self._measure(p, self.M, self.x_dim, self.d1, self.d2, h)


def _relative(total, rest, optimal):
    scale = max(abs(total - rest) + abs(rest), abs(optimal), np.finfo(float).tiny)
    return (total - optimal) / scale, scale


def _relative_nats(total, size, optimal, optimal_size):
    """The relative gap of a loss in nats (docs/theory.md §7(f)): the gap over the larger
    scale-free part, ``max(N - (n/2) log(2 pi u), N* - (n/2) log(2 pi u*))`` -- invariant under a
    rescaling of the data (which shifts every nats value alike) and > 0, where ``|N*|`` can be
    ~0 or negative."""
    scale = max(size, optimal_size, np.finfo(float).tiny)
    return (total - optimal) / scale, scale


# ------------------------------------------------------------------------------------------
# collapse under a rule


def _rule(rule, delta):
    r = str(rule).lower()
    if r not in RULES:
        raise ParameterError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    if r == "exact":
        return r, KL_COLLAPSE_TOL
    d = float(delta)
    if not (math.isfinite(d) and d > 0):
        raise ParameterError(f"delta must be a finite number > 0, got {delta!r}")
    return r, d


def _group_range(values, sizes, delta):
    """[min, max] collapsed dims when rotations are free inside groups of the given sizes
    (docs/theory.md §7(f)):
    per group the diagonal of a rotated PSD matrix with eigenvalues ``values`` ranges over the
    vectors they majorize (Schur-Horn), so at most ``n_max`` entries can exceed ``delta``
    (the largest n with mean of the top n values > delta) and at least ``n_min`` must (the
    smallest n whose remaining values fit under delta each); the exact rule is delta -> 0."""
    lo = hi = 0
    i = 0
    for m in sizes:
        v = np.sort(np.asarray(values[i:i + m], dtype=float))[::-1]
        i += m
        top = np.cumsum(v) / np.arange(1, m + 1)
        n_max = int(np.count_nonzero(top > delta))
        tail = np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])  # tail[n] = sum of v[n:]
        n_min = next(n for n in range(m + 1) if tail[n] <= (m - n) * delta)
        lo += m - n_max
        hi += m - n_min
    return lo, hi


@dataclass(frozen=True)
class LatentCollapse:
    """One latent's collapse under a rule: the trained model's collapsed dims (its own dim
    indices) against the predicted count (an int, or ``[min, max]`` where a rotation is free)."""

    latent: str
    rule: str
    delta: float
    found: Tuple[int, ...]
    predicted: Tuple[int, int]
    predicted_modes: Tuple[int, ...]
    values: np.ndarray
    predicted_values: np.ndarray

    @property
    def matches(self) -> bool:
        return self.predicted[0] <= len(self.found) <= self.predicted[1]

    def to_dict(self):
        lo, hi = self.predicted
        return {"rule": self.rule, "delta": self.delta, "collapsed_dims": list(self.found),
                "collapsed": len(self.found), "predicted": lo if lo == hi else [lo, hi],
                "predicted_collapsed_modes": list(self.predicted_modes),
                "matches": self.matches, "values": self.values, "predicted_values":
                self.predicted_values}


# ------------------------------------------------------------------------------------------
# the result


@dataclass
class Audit:
    """The judgement of :func:`audit` (see the module docstring); :meth:`to_dict` is the JSON.

    Attributes
    ----------
    verdict : Verdict
        AT OPTIMUM, NEAR, FAR or REFUTED (``verdict.exit_code``: 0, 5, 6, 3).
    loss, optimal_loss : float
        The exact loss of the trained parameters and the closed-form minimum (docs/theory.md §1
        convention, constants dropped; with a learned decoder variance the negative beta-ELBO
        per sample in nats, §12.1).
    gap, relative_gap : float
        ``loss - optimal_loss`` and its ratio to ``loss_scale``.
    gap_weights, gap_biases : float
        The gap split: the weights on the covariance (``>= 0``) and what the data mean adds with
        the given biases (``>= 0``; 0 for the bias-free model).
    singular_values : dict map -> dict
        ``found`` and ``predicted`` (sorted, descending), ``error`` (max abs difference),
        ``scale`` and ``relative`` (error / scale).
    per_dim : dict latent -> dict
        The trained model's per-dim ``kl`` (learned variances), ``mean_part``
        (``E[mu_j^2] / (2 s^2)``, ``s`` the latent's prior std: ``eta_enc``, or ``eta_dec`` for
        the z1 of the hierarchical VAE, whose prior is ``p(z1|z2)``), ``variance`` (``Var_x E[z_j|x]``) and ``std``, in its own dim
        order; the optimum's ``predicted_kl``/``predicted_mean_part``/``predicted_variance`` in
        mode order.
    collapse : dict latent -> LatentCollapse
        Under ``rule``/``delta``; :meth:`collapse_under` recomputes it for another rule.
    hints : list of str
        What the numbers point at (filled when the verdict is not AT OPTIMUM).
    mapping, ignored : how the parameters were read (role text, name, guessed) and what was not.
    point : Point
        The closed-form optimum (:meth:`Solution.at`).
    decoder_variance : dict
        A learned decoder variance only (docs/theory.md §12, §7(f); the losses are then in nats
        per sample): ``u`` (the weights' ``exp(log_u)``, or profiled), ``eta_dec``,
        ``profiled``, the optimum's ``optimal_u`` / ``optimal_eta_dec``, ``relative_error``,
        ``best_u_for_weights`` (``R / n``), ``unbounded``, ``flat`` and, where unbounded,
        ``reason`` (the verdict is then NO OPTIMUM; ``optimal_loss`` -inf, ``gap`` and
        ``relative_gap`` inf). Empty for a fixed ``eta_dec``.
    """

    verdict: Verdict
    setting: _settings.Setting
    hyper: Dict[str, object]
    latent_dims: Dict[str, int]
    center: bool
    loss: float
    optimal_loss: float
    gap: float
    relative_gap: float
    gap_weights: float
    gap_biases: float
    loss_scale: float
    tolerances: Dict[str, Optional[float]]
    singular_values: Dict[str, dict]
    per_dim: Dict[str, dict]
    collapse: Dict[str, LatentCollapse]
    rule: str
    delta: float
    mapping: List[Tuple[str, str, bool]]
    ignored: List[str]
    biases_given: Tuple[str, ...]
    hints: List[str] = field(default_factory=list)
    point: object = field(default=None, repr=False)
    spectrum: object = field(default=None, repr=False)
    _groups: Dict[str, Tuple[int, ...]] = field(default_factory=dict, repr=False)
    decoder_variance: Dict[str, object] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.AT_OPTIMUM

    @property
    def collapse_matches(self) -> bool:
        return all(c.matches for c in self.collapse.values())

    def collapse_under(self, rule="kl", delta=DELTA) -> Dict[str, LatentCollapse]:
        """The collapse comparison under another rule (``"kl"``, ``"au"``, ``"exact"``)."""
        return _collapse(self, *_rule(rule, delta))

    def to_dict(self) -> dict:
        hyper = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.hyper.items()}
        return {
            "verdict": self.verdict, "exit_code": self.verdict.exit_code,
            "model": self.setting.model, "variance": self.setting.variance,
            "theorem": self.setting.theorem, "hyper": hyper, "latent_dims": dict(self.latent_dims),
            "center": self.center,
            "loss": self.loss, "optimal_loss": self.optimal_loss, "gap": self.gap,
            "relative_gap": self.relative_gap, "gap_weights": self.gap_weights,
            "gap_biases": self.gap_biases, "loss_scale": self.loss_scale,
            "tolerances": dict(self.tolerances),
            "singular_values": {m: dict(v) for m, v in self.singular_values.items()},
            "per_dim": {z: dict(v) for z, v in self.per_dim.items()},
            "collapse": {z: c.to_dict() for z, c in self.collapse.items()},
            "collapse_matches": self.collapse_matches,
            "mapping": [{"role": r, "name": n, "guessed": g} for r, n, g in self.mapping],
            "ignored": list(self.ignored), "biases_given": list(self.biases_given),
            "hints": list(self.hints),
            **({"decoder": self.setting.decoder, "loss_units": "nats per sample",
                "decoder_variance": dict(self.decoder_variance)} if self.decoder_variance else {}),
        }


def _collapse(a: Audit, rule, delta) -> Dict[str, LatentCollapse]:
    """Per latent: the trained dims the rule counts collapsed, against the same rule on the
    optimum's per-dim values (a range where rotations are free, docs/theory.md §7(f))."""
    out = {}
    for z in a.setting.latents:
        pd = a.per_dim[z.name]
        if rule == "au":
            values, pred = pd["variance"], pd["predicted_variance"]
        elif z.learned and pd.get("kl") is not None:
            values, pred = pd["kl"], pd["predicted_kl"]
        else:
            values, pred = pd["mean_part"], pd["predicted_mean_part"]
        found = tuple(int(j) for j in np.flatnonzero(np.asarray(values) <= delta))
        modes = tuple(int(i) + 1 for i in np.flatnonzero(np.asarray(pred) <= delta))
        predicted = _group_range(pred, a._groups[z.name], delta)
        out[z.name] = LatentCollapse(z.name, rule, delta, found, tuple(int(v) for v in predicted),
                                     modes, np.asarray(values), np.asarray(pred))
    return out


def _groups(setting, latent, h, d):
    """Sizes of the groups of equal fixed stds, in mode order (one group per dim when learned)."""
    z = setting.latent(latent)
    if z.learned:
        return (1,) * d
    specs = [s for s in setting.hyperparameters if s.latent == latent and s.kind != "axis"]
    if not specs:
        return (1,) * d
    sig = np.sort(np.broadcast_to(np.asarray(h[specs[0].name], dtype=float), (d,)))
    sizes, start = [], 0
    for i in range(1, d + 1):
        if i == d or sig[i] != sig[start]:
            sizes.append(i - start)
            start = i
    return tuple(sizes)


def _natural_scales(setting, spectrum, h):
    """Per map, the scale its singular values are judged against when the prediction is 0: the
    latents form a chain (data -> first latent -> ... -> top latent); the top latent has the
    prior's std eta_enc, the lower ones (z1) carry data units (docs/theory.md §9.11); an encoder
    maps its (whitened, for the data) input to its latent, a decoder back."""
    trace, rank = float(spectrum.trace), int(spectrum.rank)
    rms = math.sqrt(trace / max(rank, 1)) if trace > 0 else 1.0
    latents = setting.latents
    scale = {z.name: (h["eta_enc"] if i == len(latents) - 1 else rms)
             for i, z in enumerate(latents)}
    out = {}
    for i, z in enumerate(latents):
        below = 1.0 if i == 0 else scale[latents[i - 1].name]
        out[z.encoder] = scale[z.name] / below
        out[z.decoder] = (rms if i == 0 else below) / scale[z.name]
    return out


def _unbounded_reason(setting, point, d1):
    """Why a learned decoder variance leaves the loss without a minimum (docs/theory.md §12.2-4)."""
    spec = point.solution.spectrum
    n = int(spec.dim)   # the outputs the decoder noise covers (y's for a residual spectrum)
    rank = int(spec.rank)
    if rank == 0 or not setting.latent(setting.critical_latent).learned:
        what = "y has no variance x does not explain" if setting.spectrum_kind == "residual" \
            else "the data have no variance"
        return f"{what}, so the decoder can reproduce them exactly"
    beta = point.hyper["beta"]
    return (f"latent dim {d1} >= rank {rank} of the {'residual ' if spec.kind == 'residual' else ''}"
            f"spectrum and {n:g} outputs > beta x rank = {beta * rank:.4g}: the decoder can "
            "reproduce the data exactly")


def _unbounded_hint(dv):
    """The one answer where no minimum exists: where the trained u should be heading."""
    where = (f"u was profiled for these weights: the best u for them is R/n = {dv['u']:.4g}"
             if dv["profiled"] else f"the trained u = {dv['u']:.4g} (eta_dec = "
             f"{dv['eta_dec']:.4g}) is not an optimum")
    return (f"no minimum to compare with ({dv['reason']}): the negative ELBO falls without bound "
            f"as u = eta_dec^2 -> 0, so training should drive log u down until something stops it "
            f"-- a clip or floor on the log-variance, or the end of training; {where}. For a "
            "minimum: a latent dim below the rank, a larger beta (beta x rank >= the number of "
            "outputs), or a fixed eta_dec (docs/theory.md §12.2)")


def audit(params, data, setting, *, mapping=None, layout="out_in", center=None, latent_dim=None,
          latent_dim2=None, loss_rtol=LOSS_RTOL, near_rtol=NEAR_RTOL, sv_rtol=SV_RTOL,
          rule="kl", delta=DELTA, diagnose=True, **hyper) -> Audit:
    """How far trained parameters are from the closed-form optimum (module docstring).

    Parameters
    ----------
    params : mapping of name -> array-like, or an object with ``state_dict()``
        The trained parameters (numpy, PyTorch, JAX ...), named as in the user's code.
    data : array (N, D), ``(x, y)`` for the CVAE, Selection, Spectrum or Moments
        The data the model was trained on (a Spectrum must carry its matrix, as
        :func:`~vaetheory.moments.empirical_spectrum` makes it).
    setting : Setting, ``"model/variance"``, ``(model, variance)`` or a model name
    mapping : dict, optional
        User name -> role (``"W"``, ``"W.T"``, ``"[W1,W2]"``, ``"std:log_var"``, ``None`` to
        ignore); names not given are guessed (:func:`guess_role`).
    layout : {"out_in", "in_out"}
        ``out_in``: matrices are ``out x in`` (``nn.Linear.weight``); ``in_out``: all are
        transposed kernels (``x @ W``).
    center : bool, optional
        True (default for arrays): the model with biases, judged on the centred data
        (docs/theory.md §1.5); missing biases count as 0, so a model without them on
        non-centred data is (rightly) not at the optimum. False: the bias-free model on raw
        second moments (biases are then an error).
    latent_dim, latent_dim2 : int, optional
        Checked against the shapes (they are inferred from them otherwise).
    loss_rtol, near_rtol, sv_rtol : float
        Thresholds of the verdicts (module docstring); ``sv_rtol=None`` judges on the loss alone.
    rule, delta :
        The collapse rule (:data:`RULES`) for :attr:`Audit.collapse`.
    diagnose : bool
        Look for the usual bugs when the verdict is not AT OPTIMUM (:attr:`Audit.hints`).
    **hyper
        The setting's hyperparameters (defaults as in :mod:`vaetheory.settings`; ``sigma``
        etc. required where the variance is fixed).

    Raises
    ------
    ParameterError
        Unknown roles, missing parameters, shapes that do not fit (naming the parameter), bad
        hyperparameters; NotCoveredError for a setting without a closed form.
    DataError
        Unusable data, or parameters that are not finite.
    """
    setting = resolve_setting(setting, hyper)
    if not setting.covered:
        raise NotCoveredError(f"{setting.name} has no closed form in the theory, so there is no "
                              "optimum to audit against (vaetheory check gives its numerical "
                              "optimum)")
    loss_rtol, near_rtol = (float(_settings.check_value("beta", v, label=n)) for v, n in
                            ((loss_rtol, "loss_rtol"), (near_rtol, "near_rtol")))
    if sv_rtol is not None:
        sv_rtol = float(_settings.check_value("beta", sv_rtol, label="sv_rtol"))
    rule, delta = _rule(rule, delta)
    spectrum, centred, mean, x_dim = _data(data, setting, center, with_basis=True)
    M = np.asarray(spectrum.matrix, dtype=np.float64)
    D = M.shape[0]
    binding = bind(params, setting, D, x_dim, mapping=mapping, layout=layout,
                   latent_dim=latent_dim, latent_dim2=latent_dim2, hyper=hyper)
    d1, d2 = binding.latent_dims["latent_dim"], binding.latent_dims["latent_dim2"]
    h = binding.hyper
    for role, arr in {**binding.params, **binding.biases}.items():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        if bad and role not in setting.fixed_log_vars:
            name = binding.names.get(role, role)
            raise DataError(f"parameter {name!r} (role {role}) has {bad} non-finite value(s) "
                            "(NaN or inf): did the training diverge?")
    if binding.biases and not centred:
        given = ", ".join(binding.biases)
        why = ("audits the bias-free model: a model with encoder and decoder biases is the "
               "centred one (docs/theory.md §1.5)")
        raise ParameterError(f"the parameters include {given} but center=False {why}; use "
                             "center=True", cli=f"the weights include {given} but --no-center "
                             f"{why}; drop --no-center")
    if centred and setting.mean_terms_function is None and np.any(mean != 0):
        raise ParameterError(f"{setting.name} does not model biases (its record has no "
                             "mean_terms): audit it on centred data or with center=False")
    point = setting.solve(spectrum, d1, d2, **dict(h)).at()
    optimal = point.optimal_loss
    learned = point.learned
    unbounded = bool(learned.get("unbounded"))
    if not (math.isfinite(optimal) or unbounded):
        raise ParameterError("the optimal loss is not representable in float64 at these "
                             "hyperparameters and data (docs/theory.md §9.11)")
    ev = _Evaluator(setting, M, x_dim, mean, centred, d1, d2)
    p = binding.params
    decoder = {}
    if setting.learned_decoder:
        u, profiled = ev.decoder_u(p, binding.biases, h)
        total, cov, bias, size, means = ev.nats(p, binding.biases, h, u)
        best_u = u if profiled else ev.profiled_u(p, binding.biases, h)
        u_opt = float(learned["u"])
        decoder = {"u": u, "eta_dec": math.sqrt(u) if u >= 0 else math.nan,
                   "profiled": profiled, "optimal_u": u_opt,
                   "optimal_eta_dec": float(learned["eta_dec"]),
                   "relative_error": abs(u - u_opt) / u_opt if u_opt > 0 else math.nan,
                   "best_u_for_weights": best_u, "unbounded": unbounded,
                   "flat": bool(learned.get("flat"))}
        if unbounded:
            decoder["reason"] = _unbounded_reason(setting, point, d1)
    else:
        cov, bias, rest, means = ev.losses(p, binding.biases, h)
        total = cov + bias
    if not math.isfinite(total) and not (unbounded or total == -math.inf):
        raise DataError("the loss of these parameters is not finite (overflow): the weights or "
                        "log-variances are far too large")
    if unbounded:
        rel, scale = math.inf, math.nan
    elif setting.learned_decoder:
        if total == -math.inf:   # the weights reproduce the data exactly: below any minimum
            rel, scale = -math.inf, math.nan
        else:
            opt_size = optimal - 0.5 * ev.n * math.log(2.0 * math.pi * u_opt)
            rel, scale = _relative_nats(total, size, optimal, opt_size)
    else:
        rel, scale = _relative(total, rest, optimal)

    # singular values and per-dim measures
    sv, msq, stds, _prior = ev.measures(p, h)
    natural = _natural_scales(setting, spectrum, h)
    svs = {}
    pred_sv = point.singular_values
    for m in setting.map_names:
        found = np.asarray(sv[m], dtype=float)
        want = np.sort(np.asarray(pred_sv[m], dtype=float))[::-1]
        n = max(found.size, want.size)
        found, want = pad_sorted(found, n), pad_sorted(want, n)
        err = float(np.max(np.abs(found - want), initial=0.0))
        sc = max(float(want.max(initial=0.0)), natural[m])
        svs[m] = {"found": found, "predicted": want, "error": err, "scale": sc,
                  "relative": err / sc}
    ee = h["eta_enc"]
    per_dim, groups = {}, {}
    for i, z in enumerate(setting.latents):
        var = np.asarray(msq[z.name], dtype=float)
        total_sq = var + (np.asarray(means[z.name]) ** 2 if z.name in means else 0.0)
        std = np.asarray(stds[z.name], dtype=float)
        # the mean part of the KL to the latent's prior: N(0, eta_enc^2) for the top latent,
        # p(z1|z2) = N(U2 z2, eta_dec^2) below it (docs/theory.md §1.3): in the latent's units
        prior = ee if i == len(setting.latents) - 1 else h["eta_dec"]
        entry = {"variance": var, "mean_part": total_sq / (2.0 * prior * prior), "std": std,
                 "predicted_variance": point.mean_sq[z.name],
                 "predicted_mean_part": point.mean_sq[z.name] / (2.0 * prior * prior)}
        if z.learned:
            entry["kl"] = kl_per_dim(total_sq, std, ee)
            entry["predicted_kl"] = point.kl[z.name]
            entry["predicted_std"] = np.sort(point.posterior_std.get(z.name, std))[::-1]
        per_dim[z.name] = entry
        groups[z.name] = _groups(setting, z.name, h, point.latent_dims[z.name])

    u_ok = (not decoder or sv_rtol is None or decoder["relative_error"] <= sv_rtol)
    if unbounded:
        verdict = Verdict.NO_OPTIMUM
    elif rel < -REFUTE_RTOL:
        verdict = Verdict.REFUTED
    elif rel <= loss_rtol and u_ok and (sv_rtol is None or all(v["relative"] <= sv_rtol
                                                               for v in svs.values())):
        verdict = Verdict.AT_OPTIMUM
    elif rel <= near_rtol:
        verdict = Verdict.NEAR
    else:
        verdict = Verdict.FAR
    result = Audit(
        verdict=verdict, setting=setting, hyper=h, latent_dims=dict(point.latent_dims),
        center=centred, loss=total, optimal_loss=optimal,
        gap=math.inf if unbounded else total - optimal, relative_gap=rel,
        gap_weights=math.inf if unbounded else cov - optimal, gap_biases=bias, loss_scale=scale,
        tolerances={"loss_rtol": loss_rtol, "near_rtol": near_rtol, "sv_rtol": sv_rtol},
        singular_values=svs, per_dim=per_dim, collapse={}, rule=rule, delta=delta,
        mapping=binding.mapping, ignored=binding.ignored, biases_given=tuple(binding.biases),
        point=point, spectrum=spectrum, _groups=groups, decoder_variance=decoder)
    result.collapse = _collapse(result, rule, delta)
    if verdict == Verdict.NO_OPTIMUM:
        result.hints.append(_unbounded_hint(decoder))
    elif verdict == Verdict.REFUTED:
        result.hints.append(
            f"the loss is {-rel:.3g} (relative) below the closed-form minimum {optimal:.10g}: a "
            "counterexample to the theory, which should not exist; check that the data, centring "
            "and hyperparameters are those of this setting, and please report it")
    elif verdict != Verdict.AT_OPTIMUM and diagnose:
        result.hints.extend(_diagnose(result, ev, binding, mean, spectrum, d1, d2))
    return result


# ------------------------------------------------------------------------------------------
# what the numbers point at


def _gap_at(ev, setting, spectrum, p, biases, h, d1, d2, scale):
    """The relative gap at other hyperparameters, against a fixed ``scale`` (one loss evaluation:
    the diagnoses compare gaps, they need no new denominator)."""
    total = ev.total(p, biases, h)
    try:
        opt = setting.solve(spectrum, d1, d2, **dict(h)).at().optimal_loss
    except ParameterError:
        return math.inf
    if not math.isfinite(opt) or not math.isfinite(total):
        return math.inf
    return (total - opt) / scale


def _factor_words(name, f):
    k = math.log2(f)
    if abs(k - 1) < 0.1:
        times = "twice"
    elif abs(k + 1) < 0.1:
        times = "half"
    else:
        return ""
    if name.startswith("beta"):
        if times == "twice":
            return (f" -- twice the given value: your loss weighs the KL term twice as much as the "
                    f"beta-ELBO with this {name} does; the usual bug is a Gaussian KL without its "
                    "factor 1/2, or a reconstruction term with an extra 1/2 (docs/theory.md §1)")
        return (f" -- half the given value: your loss weighs the KL term half as much as the "
                f"beta-ELBO with this {name} does; the usual bug is a KL with an extra factor 1/2, "
                "or a squared error without its 1/(2 eta_dec^2) (docs/theory.md §1)")
    return f" -- {times} the given value: check how your loss uses {name} (docs/theory.md §1)"


def _diagnose(a: Audit, ev, binding, mean, spectrum, d1, d2) -> List[str]:
    from scipy.optimize import minimize_scalar

    setting, h = a.setting, a.hyper
    p, biases = binding.params, binding.biases
    hints = []
    gap = a.relative_gap
    tol = a.tolerances["loss_rtol"]
    # 1. biases: missing ones the optimum needs (the data are not centred), or given ones off
    if a.center:
        missing = [b for b in setting.biases if b not in biases]
        opt = a.point.matrices()
        p_opt = {r: opt[r] for r in setting.parameters}
        b_opt = {b: opt[b] for b in setting.biases if b in opt and b not in missing}
        if not missing:
            cost = 0.0
        elif setting.learned_decoder:   # in nats, u profiled for the optimal maps without them
            cost = (ev.total(p_opt, b_opt, h) - a.optimal_loss) / a.loss_scale
        else:
            cost = ev.mean_terms(p_opt, b_opt, h)[0] / a.loss_scale
        size = float(np.sqrt(mean @ mean))
        needed = [b for b in missing if b in opt and np.any(opt[b] != 0)] or missing
        if cost > tol:
            which = ", ".join(needed)
            alone = ("; a decoder bias alone is not centring" if "decoder_bias" in biases
                     and "encoder_bias" in missing else "")
            hints.append(
                f"the parameters have no {which} (taken as 0) but the data are not centred (the "
                f"mean has norm {size:.4g}): without {'them' if len(needed) > 1 else 'it'} even "
                f"the optimal weights are {cost:.2g} (relative) above the optimum, and training "
                "makes the other parameters carry the mean. A model without biases is the "
                "bias-free one: audit it with center=False (CLI: --no-center); if it has them, "
                f"map them (e.g. {{'decoder.bias': 'decoder_bias'}}) (docs/theory.md §1.5{alone})")
        elif a.gap_biases > 0.5 * max(a.gap, 0.0) and a.gap_biases / a.loss_scale > tol:
            share = a.gap_biases / a.gap if a.gap > 0 else 1.0
            hints.append(f"the biases account for {share:.0%} of the gap (they add "
                         f"{a.gap_biases:.4g} to the loss): they are off -- at the optimum the "
                         "posterior means at the data mean are 0 and the decoder reproduces the "
                         "mean (docs/theory.md §1.5)")
    # 2. a hyperparameter the training effectively used
    best = None
    ks = [k for k in range(-4, 5) if k != 0]  # factors 1/4 .. 4 in steps of sqrt(2)
    S = a.loss_scale
    for name in setting.axes:
        v = h[name]
        for k in ks:
            g = _gap_at(ev, setting, spectrum, p, biases, {**h, name: v * 2.0 ** (k / 2)}, d1, d2,
                        S)
            if best is None or g < best[0]:
                best = (g, name, k)
    if best is not None and best[0] <= 0.1 * gap and best[0] <= a.tolerances["near_rtol"]:
        _, name, k = best
        v = h[name]

        def f(u):
            return _gap_at(ev, setting, spectrum, p, biases, {**h, name: v * 2.0 ** u}, d1, d2,
                           S)

        res = minimize_scalar(f, bounds=((k - 1) / 2, (k + 1) / 2), method="bounded",
                              options={"xatol": 1e-3, "maxiter": 20})
        u = float(res.x) if res.fun <= best[0] else k / 2
        g = min(float(res.fun), best[0])
        factor = 2.0 ** u
        hints.append(f"the weights are at the optimum for {name} = {v * factor:.4g}, {factor:.3g} x "
                     f"the {name} = {v:.4g} given (relative gap {max(g, 0.0):.2g} there, "
                     f"{gap:.2g} here){_factor_words(name, factor)}")
    # 3. a trained decoder variance off the best one for these very weights (docs §12.6)
    dv = a.decoder_variance
    if dv and not dv["profiled"] and dv["best_u_for_weights"] > 0:
        u, best = dv["u"], dv["best_u_for_weights"]
        at_best = ev.nats(p, biases, h, best)[0]
        share = (a.loss - at_best) / a.loss_scale
        if share > tol and share >= 0.5 * gap:
            hints.append(
                f"the trained u = eta_dec^2 = {u:.4g} is {u / best:.3g} x the u = R/n = {best:.4g} "
                f"that is best for these very weights (the reconstruction error per output, docs/"
                f"theory.md §12.6): at that u the relative gap is {max(gap - share, 0.0):.2g} "
                f"instead of {gap:.2g}. log u is not trained to its optimum: check that its "
                "gradient reaches it (the log-normaliser (n/2) log(2 pi u) in the loss, its "
                "learning rate, a clip)")
    # 4. a square matrix stored transposed
    for role in setting.parameters:
        arr = p.get(role)
        if arr is None or arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] < 2:
            continue
        if role in setting.fixed_log_vars:
            continue
        g = _gap_at(ev, setting, spectrum, {**p, role: arr.T}, biases, h, d1, d2, a.loss_scale)
        if g <= 0.1 * gap and g <= a.tolerances["near_rtol"]:
            name = binding.names.get(role, role)
            hints.append(f"{name!r} (role {role}) looks transposed: with it transposed the relative "
                         f"gap falls from {gap:.2g} to {max(g, 0.0):.2g} (matrices are out x in, as "
                         "nn.Linear.weight; map an (in, out) kernel as "
                         f"'{role}.T' or use layout='in_out')")
    if not hints and a.verdict == Verdict.NEAR:
        hints.append("close to the optimum but not at it: train longer or let the step size decay "
                     "further (noisy training settles within ~ the step size of the optimum)")
    if not hints and a.verdict == Verdict.FAR:
        hints.append("far from the optimum, and no single hyperparameter, bias or transposed "
                     "matrix explains it: check that training converged and that the loss your "
                     "code minimises is the beta-ELBO of docs/theory.md §1")
    return hints

"""Solutions -> JSON-able documents, rich tables and one-line summaries.

Nothing here computes a prediction: every number comes from a :class:`~vaetheory.theory.Solution`
or a :class:`~vaetheory.moments.Spectrum` and is only selected, sorted for display or formatted.
No I/O either: functions return dicts, strings or rich renderables.

The JSON document (:func:`predict_document`) is a contract other tools parse; its JSON Schema is
``docs/schema/predict.json`` (and ``thresholds.json``, ``spectrum.json``, ``numerical.json``;
README.md, "JSON output", describes it in words). Non-finite numbers become ``null``.

Large grids: :func:`write_json` writes a document with its ``points`` streamed one at a time (the
same text as :func:`dumps` of the whole document, in flat memory), and :func:`encode_points` turns
a solution's points into that text without building a dict per point (a template per solution,
filled with every point's numbers in one formatting call). Tables of long sweeps show one row per
change of the collapsed counts (:func:`change_points`).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from . import settings as _settings
from .errors import Verdict

if TYPE_CHECKING:
    from rich.table import Table


__all__ = [
    "LATENT_MAPS", "critical_latent", "dumps", "grid_indices", "point_dict", "point_params",
    "point_label", "point_summary", "predict_document", "spectrum_document", "spectrum_values",
    "spectrum_units", "predict_table", "detail_table", "summary_lines", "notes_of",
    "prediction_notes",
    "spectrum_table", "thresholds_document", "thresholds_table", "thresholds_point", "keep_answer", "keep_sentence",
    "data_sentence", "fmt", "logged_table", "logged_lines", "rate_sentence", "check_dict", "check_table", "check_lines", "numerical_document",
    "numerical_table", "text_table", "write_json", "encode_points", "encode_thresholds",
    "change_points",
    "summary_rows", "audit_lines", "audit_document", "mapping_sentence",
]


def _table(**kwargs) -> "Table":
    """A rich Table; rich is imported when a table is made, so the library, ``--help`` and
    ``--json`` work before it is (and a missing rich is one error line, not a traceback)."""
    from rich.table import Table as _RichTable

    return _RichTable(**kwargs)


#: maps whose rank says how many modes of each latent are active (from the settings records)
LATENT_MAPS = {m: _settings.get(m, _settings.VARIANCES[m][0]).maps for m in _settings.MODELS}


# ------------------------------------------------------------------------------------------
# small helpers


def fmt(value, digits=4):
    """A number for people: 4 significant digits, '-' for NaN/None, 'inf' kept."""
    if value is None:
        return "-"
    v = float(value)
    if math.isnan(v):
        return "-"
    return f"{v:.{digits}g}"


def fmt_bound(value, side, digits=4):
    """A boundary for people, rounded so that the sentence it appears in stays true: ``side="up"``
    gives the smallest ``digits``-digit decimal >= value, ``"down"`` the largest <= value (e.g.
    "dim 12 collapses at beta >= {up}", "beta < {down} keeps 12 active"); docs/theory.md §9."""
    if value is None:
        return "-"
    v = float(value)
    if not math.isfinite(v) or v == 0.0:
        return fmt(v, digits)
    from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

    d = Decimal(v)
    e = d.adjusted() - (digits - 1)
    q = d.scaleb(-e).quantize(Decimal(1), rounding=ROUND_CEILING if side == "up" else ROUND_FLOOR)
    return f"{float(q.scaleb(e)):.{digits}g}"


def _clean(obj):
    """JSON-able copy: numpy -> Python, NaN/inf -> None."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def text_table(header: Sequence, rows: Sequence[Sequence]) -> str:
    """A plain-text table (left-aligned columns, a dashed rule under the header), for logs and
    the examples where a rich table's box characters would get in the way."""
    cells = [[str(c) for c in r] for r in [list(header)] + [list(r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def dumps(doc, indent=2) -> str:
    """The JSON text of a document (strict JSON: no NaN/Infinity tokens).

    A document holding long lists of floats (a sweep's grid values in ``settings``) is written
    with those lists formatted in bulk (:mod:`vaetheory._bulkjson`): the same text as
    ``json.dumps`` of :func:`_clean` of it, without a Python step per number."""
    if indent == 2:
        big = []
        tree = _bulk_tree(doc, big)
        if big:
            from ._bulkjson import block_text

            return block_text(tree, 1, 0)[0]
    return json.dumps(_clean(doc), indent=indent, allow_nan=False)


#: a list of at least this many floats is formatted in bulk by :func:`dumps`
_BULK_LIST = 256


def _bulk_tree(obj, big):
    """:func:`_clean` as a :mod:`vaetheory._bulkjson` tree of one row: each float64 array or list
    of Python floats with at least ``_BULK_LIST`` entries a ``Vec`` (appended to ``big``), the
    rest constants."""
    from . import _bulkjson as bj

    if isinstance(obj, dict):
        return {str(k): _bulk_tree(v, big) for k, v in obj.items()}
    if isinstance(obj, np.ndarray) and obj.dtype == np.float64 and obj.ndim == 1:
        if obj.size >= _BULK_LIST:
            big.append(obj)
            return bj.Vec(obj[None, :])
    elif isinstance(obj, list) and len(obj) >= _BULK_LIST and all(type(v) is float for v in obj):
        big.append(obj)
        return bj.Vec(np.asarray(obj, dtype=np.float64)[None, :])
    if isinstance(obj, (list, tuple)):
        return [_bulk_tree(v, big) for v in obj]
    return bj.Const(_clean(obj))


def grid_indices(sol) -> List[Tuple[int, ...]]:
    """Every grid index of a solution, in C order (the order of the table rows and JSON points)."""
    return list(np.ndindex(*sol.grid_shape))


def critical_latent(sol) -> str:
    """The latent whose dims the critical values refer to (``z``, or ``z2`` for the mhvae)."""
    return sol.setting.critical_latent


def _learned(sol, latent):
    return latent in sol.posterior_std


def _active(sol, idx, latent) -> int:
    return sol.at(idx).active(latent)


def _collapsed(sol, idx, latent):
    return sol.at(idx).collapsed[latent]


def _range_text(c):
    if isinstance(c, list):
        return str(c[0]) if c[0] == c[1] else f"{c[0]}-{c[1]}"
    return str(c)


def _dims_text(a, b, noun="dim"):
    """'dim 5' or 'dims 5-16' (1-based, inclusive)."""
    return f"{noun} {a}" if a == b else f"{noun}s {a}-{b}"


# ------------------------------------------------------------------------------------------
# spectra


_TINY = float(np.finfo(np.float64).tiny)


def in_data_units(scaled, exponent) -> np.ndarray:
    """``scaled * 2**exponent`` where float64 holds it (a normal number, or exactly 0), NaN
    (JSON null) where it does not: an eigenvalue of data at 1e-204 is ~1e-408 (docs §9.11)."""
    v = np.asarray(scaled, dtype=np.float64)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        out = np.ldexp(v, int(exponent))
        bad = ~np.isfinite(out) | ((v != 0) & (np.abs(out) < _TINY))
    return np.where(bad, np.nan, out)


def fmt_pow2(scaled, exponent, digits=4) -> str:
    """``scaled * 2**exponent`` for people, as :func:`fmt` writes it, also outside the float64
    range ("1.234e-408": exact decimal arithmetic, then ``digits`` significant digits)."""
    v = float(scaled)
    user = float(in_data_units(v, exponent))
    if not math.isnan(user) or not math.isfinite(v) or v == 0.0:
        return fmt(user if not math.isnan(user) else v, digits)
    from decimal import Decimal, localcontext

    with localcontext() as ctx:
        ctx.prec = digits + 20
        d = Decimal(v) * Decimal(2) ** int(exponent)
        mant, _, exp = f"{d:.{digits - 1}e}".partition("e")
    mant = mant.rstrip("0").rstrip(".") if "." in mant else mant
    e = int(exp)
    return f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"


def spectrum_footer(spectrum, shown) -> List[str]:
    """The lines under the spectrum table: how many more values, rank, trace, scale, tolerance."""
    svals, e, _, e2 = _spectrum_scaled(spectrum)
    n = svals.size if not shown else min(shown, svals.size)
    out = [f"... {svals.size - n} more (--top 0 shows all)"] if n < svals.size else []
    top = fmt_pow2(svals[0], e, 6) if svals.size else "-"
    out.append(f"rank {spectrum.rank} of {spectrum.dim}; "
               f"trace {fmt_pow2(spectrum.scaled_trace, e2, 6)}; scale (largest value) {top}; "
               f"values below {fmt_pow2(spectrum.scaled_tolerance, e2, 3)} (rank tolerance) "
               "count as 0")
    return out


def _spectrum_scaled(spectrum):
    """(scaled values, their exponent, scaled eigenvalues, theirs) of :func:`spectrum_values`."""
    k = int(spectrum.scale_exponent)
    ev = np.asarray(spectrum.scaled_eigenvalues, dtype=np.float64)
    if spectrum.kind == "residual":
        return ev, 2 * k, ev, 2 * k
    return np.sqrt(ev), k, ev, 2 * k


def spectrum_values(spectrum) -> np.ndarray:
    """The spectrum in the units the theorems use: theta_i (data) or e_i (residual, CVAE); NaN
    for a value float64 cannot hold in the data's units (:func:`in_data_units`)."""
    vals, e, _, _ = _spectrum_scaled(spectrum)
    return in_data_units(vals, e)


def spectrum_trace(spectrum) -> float:
    """The trace in the data's units (NaN if float64 cannot hold it)."""
    return float(in_data_units(spectrum.scaled_trace, 2 * int(spectrum.scale_exponent)))


#: the note of a document with values float64 cannot hold in the data's units
UNREPRESENTABLE_NOTE = ("some values are outside the float64 range in the data's units (shown "
                        "as null): 'scaled' gives them exactly as value = scaled x "
                        "2^exponent (docs/theory.md §9.11)")


def _scaled_doc(spectrum) -> dict:
    scaled = spectrum_scaled(spectrum, None)
    return {} if scaled is None else {"scaled": scaled}


def _scaled_notes(spectrum) -> List[str]:
    return [] if spectrum_scaled(spectrum, None) is None else [UNREPRESENTABLE_NOTE]


def spectrum_scaled(spectrum, n) -> Optional[dict]:
    """The ``scaled`` object of a JSON document, or None when every value is representable."""
    vals, e, ev, e2 = _spectrum_scaled(spectrum)
    k2 = 2 * int(spectrum.scale_exponent)
    parts = [(vals[:n], e), (ev[:n], e2), (spectrum.scaled_trace, k2),
             (spectrum.scaled_tolerance, k2)]
    if not any(np.any(np.isnan(in_data_units(a, x))) for a, x in parts):
        return None
    return {"spectrum": {"scaled": vals[:n], "exponent": e},
            "eigenvalues": {"scaled": ev[:n], "exponent": e2},
            "trace": {"scaled": float(spectrum.scaled_trace), "exponent": k2},
            "tolerance": {"scaled": float(spectrum.scaled_tolerance), "exponent": k2}}


def spectrum_units(spectrum) -> str:
    if spectrum.kind == "residual":
        return ("e_i: eigenvalues of the residual covariance E = Cov(y) - Cov(y,x) Cov(x)^+ Cov(x,y) "
                "of y given x (squared units)" if spectrum.centered is not False else
                "e_i: eigenvalues of E = E[yy^T] - E[yx^T] E[xx^T]^+ E[xy^T] (squared units)")
    if (spectrum.provenance or {}).get("standardized"):
        return "theta_i = sqrt(eigenvalue_i of the correlation matrix of x) (standardised: unitless)"
    return ("theta_i = sqrt(eigenvalue_i of Cov(x)) (data units)" if spectrum.centered is not False
            else "theta_i = sqrt(eigenvalue_i of E[x x^T]) (data units)")


def _spectrum_symbol(spectrum):
    return "e_i" if spectrum.kind == "residual" else "theta_i"


def spectrum_document(spectrum, info: Optional[dict] = None, top: Optional[int] = None) -> dict:
    """JSON document of ``vaetheory spectrum``: values (first ``top``), rank, trace, scale."""
    vals = spectrum_values(spectrum)
    _, _, sev, e2 = _spectrum_scaled(spectrum)
    ev = in_data_units(sev, e2)
    n = vals.size if not top else min(int(top), vals.size)
    doc = {
        "spectrum_kind": spectrum.kind,
        "spectrum_units": spectrum_units(spectrum),
        "centered": spectrum.centered,
        "n_samples": spectrum.n_samples,
        "dim": int(spectrum.dim),
        "rank": int(spectrum.rank),
        "trace": spectrum_trace(spectrum),
        "scale": float(vals[0]) if vals.size else None,
        "tolerance": float(in_data_units(spectrum.scaled_tolerance, e2)),
        "shown": n,
        "spectrum": vals[:n],
        "eigenvalues": ev[:n],
    }
    if spectrum.kind == "residual":
        doc["x_dim"] = spectrum.x_dim
    scaled = spectrum_scaled(spectrum, n)
    if scaled is not None:
        doc["scaled"] = scaled
    doc["notes"] = document_notes(info) + ([UNREPRESENTABLE_NOTE] if scaled else [])
    if info:
        doc["data"] = {k: v for k, v in info.items() if k not in doc}
    return doc


def spectrum_table(spectrum, top: Optional[int] = None) -> Table:
    """Rich table: i, spectral value, eigenvalue, cumulative share of the trace."""
    svals, e, sev, e2 = _spectrum_scaled(spectrum)
    n = svals.size if not top else min(int(top), svals.size)
    sym = _spectrum_symbol(spectrum)
    table = _table(title=f"spectrum ({sym})", title_justify="left")
    table.add_column("i", justify="right", overflow="fold")
    table.add_column(sym, justify="right", overflow="fold")
    if spectrum.kind != "residual":
        table.add_column("eigenvalue", justify="right", overflow="fold")
    table.add_column("cumulative", justify="right", overflow="fold")
    total = float(spectrum.scaled_trace)   # shares are scale-free: scaled units
    running = 0.0
    for i in range(n):
        running += float(sev[i])
        share = f"{100.0 * running / total:.1f}%" if total > 0 else "-"
        row = [str(i + 1), fmt_pow2(svals[i], e)]
        if spectrum.kind != "residual":
            row.append(fmt_pow2(sev[i], e2))
        row.append(share)
        table.add_row(*row, style="dim" if i >= spectrum.rank else None)
    return table


def data_sentence(info: dict) -> str:
    """One sentence about the data: source, samples, centring, rank (from the info dict)."""
    if info.get("given"):
        what = "residual e_i" if info.get("spectrum_kind") == "residual" else "eigenvalues"
        return (f"data: {info.get('source', '?')}; a spectrum given directly ({info.get('dim')} "
                f"{what}, rank {info.get('rank')}; no samples, so no centring to choose); the "
                f"loss needs the trace: assumed {info.get('trace_assumed')}")
    parts = [f"data: {info.get('source', '?')}"]
    if info.get("source") == "<stdin>":  # say how standard input was read (it has no name)
        how = info.get("format", "?")
        if how in ("text", "csv", "tsv", "txt") and info.get("delimiter"):
            sep = {",": "comma", "tab": "tab", "whitespace": "whitespace"}.get(
                info["delimiter"], repr(info["delimiter"]))
            how = f"{sep}-separated text" + (" with a header line" if info.get("header") else "")
        parts[0] += f" (read as {how}; --format chooses)"
    n = info.get("n_samples")
    if info.get("spectrum_kind") == "residual":
        parts.append(f"{n} samples; x = {info.get('x_dim')} columns, y = {info.get('y_dim')} columns"
                     + (f" ({info['selection']})" if info.get("selection") else ""))
    else:
        parts.append(f"{n} samples x {info.get('dim')} features"
                     + (f" ({info['selection']})" if info.get("selection") else ""))
    parts.append("centred (covariances; equivalent to a model with encoder and decoder biases)"
                 if info.get("centered") else
                 "not centred (raw second moments; the bias-free model)")
    what = "residual of y given x" if info.get("spectrum_kind") == "residual" else "data"
    parts.append(f"rank of the {what}: {info.get('rank')} of {info.get('dim')}")
    return "; ".join(parts)


# ------------------------------------------------------------------------------------------
# one grid point


def point_params(sol, idx) -> dict:
    """Hyperparameters of one grid point plus the latent dims (``latent_dim``, ``latent_dim2``)."""
    return sol.at(idx).params


def learned_point(sol, idx) -> Optional[dict]:
    """The learned hyperparameters at a point (docs/theory.md §12): ``eta_dec`` (the learned
    decoder std), ``decoder_variance`` (u = eta_dec^2), ``beta_u`` (the effective beta eta_dec^2),
    ``unbounded`` (no minimum: those are null) and ``flat``; None for a fixed decoder."""
    if not sol.learned:
        return None
    pt = sol.at(idx)
    v = {k: pt.value(a) for k, a in sol.learned.items()}
    out = {"eta_dec": float(v["eta_dec"]), "decoder_variance": float(v["u"]),
           "beta_u": float(v["kappa"]), "unbounded": bool(v["unbounded"]),
           "flat": bool(v["flat"])}
    if out["unbounded"]:
        out["reason"] = _unbounded_reason(sol)
    return out


def _unbounded_reason(sol) -> str:
    return ("unbounded below as eta_dec -> 0: the latent dims carry all of the data's variance "
            "and D > beta x (number of data modes) (docs/theory.md §12.2)"
            if sol.setting.latent(sol.setting.critical_latent).learned else
            "unbounded below as eta_dec -> 0: the data have no variance")


def _learned_doc(sol) -> dict:
    """Top-level JSON keys of a learned-decoder document (nothing for a fixed decoder)."""
    if not sol.setting.learned_decoder:
        return {}
    return {"decoder": "learned", "learned_hyperparameters": list(sol.setting.learned_hyperparameters),
            "loss_units": "nats: the full negative beta-ELBO per sample (docs/theory.md §12.1)"}


def point_dict(sol, idx, delta: Optional[float] = None) -> dict:
    """One entry of ``points`` in the JSON document (with ``logged`` when ``delta`` is given:
    what a training log shows at the optimum, :func:`vaetheory.logged.logged`; with ``learned``
    first for a learned decoder variance)."""
    pt = sol.at(idx)
    learned = learned_point(sol, idx)
    extra = {} if delta is None else {"logged": pt.logged(delta).to_dict()}
    return {**({"learned": learned} if learned is not None else {}), **_point_core(pt), **extra}


def _point_core(pt) -> dict:
    return {
        "params": pt.params,
        # every per-dim array in mode order: entry i is the latent dim carrying mode i
        "singular_values": {k: [float(x) for x in v] for k, v in pt.singular_values.items()},
        "posterior_std": {k: [float(x) for x in v] for k, v in pt.posterior_std.items()},
        "collapsed": pt.collapsed,
        "critical": {k: [float(x) for x in v] for k, v in pt.critical.items()},
        "ranks": pt.ranks,
        "optimal_loss": pt.optimal_loss,
    }


def notes_of(solutions: Iterable) -> List[str]:
    """The notes of all solutions, each once, in order."""
    out = []
    for sol in solutions:
        for note in sol.notes:
            if note not in out:
                out.append(note)
    return out


def document_notes(info: Optional[dict], notes: Iterable[str] = ()) -> List[str]:
    """The notes of a JSON document: the reader's (``info["notes"]``: what it was unsure of,
    e.g. a header or an index column) first, then ``notes`` (the solutions', :func:`notes_of`,
    or a prediction's, :func:`prediction_notes`), each once."""
    out = list((info or {}).get("notes", []))
    for note in notes:
        if note not in out:
            out.append(note)
    return out


def _data(info: dict) -> dict:
    """The ``data`` object: the provenance without its notes (they are the document's)."""
    return {k: v for k, v in dict(info or {}).items() if k != "notes"}


def prediction_notes(solutions: Sequence) -> List[str]:
    """What a prediction shows below its numbers: the solutions' notes (:func:`notes_of`), then
    the notes of their setting's record (:attr:`vaetheory.settings.Setting.notes`, e.g. what a
    linear count means for a nonlinear VAE), each once."""
    out = notes_of(solutions)
    for sol in solutions[:1]:
        out += [n for n in sol.setting.notes if n not in out]
    return out


def predict_document(solutions: Sequence, info: dict, settings: Optional[dict] = None,
                     checks: Optional[Sequence[dict]] = None, delta: Optional[float] = 0.01, *,
                     points: bool = True) -> dict:
    """The JSON document of ``vaetheory predict`` (schema: docs/schema/predict.json).

    ``checks`` (``predict --check``, ``vaetheory check``): one :func:`check_dict` per point, in
    the order of the points; each point gains a ``check`` object. ``points=False``: ``points``
    is left empty, for :func:`write_json` to stream.
    """
    first = solutions[0]
    spec = first.spectrum
    return {
        "model": first.model,
        "variance": first.variance,
        "theorem": first.theorem,
        "centered": spec.centered,
        "n_samples": spec.n_samples,
        "spectrum": spectrum_values(spec),
        "spectrum_units": spectrum_units(spec),
        "spectrum_kind": spec.kind,
        "rank": int(spec.rank),
        "dim": int(spec.dim),
        "trace": spectrum_trace(spec),
        "data": _data(info),
        "settings": dict(settings or {}),
        "critical_latent": critical_latent(first),
        "critical_direction": dict(first.critical_direction),
        **_learned_doc(first),
        **_scaled_doc(spec),
        "notes": document_notes(info, prediction_notes(solutions)) + _scaled_notes(spec),
        "points": (_with_checks([point_dict(sol, idx, delta) for sol in solutions
                                 for idx in grid_indices(sol)], checks) if points else []),
    }


def _with_checks(points, checks):
    if checks is not None:
        if len(checks) != len(points):
            raise ValueError(f"{len(checks)} checks for {len(points)} points")
        for point, chk in zip(points, checks):
            point["check"] = chk
    return points


# ------------------------------------------------------------------------------------------
# streamed JSON: the same text as dumps(document), one point at a time

_SENTINEL = "\x00vaetheory-streamed-points\x00"


def _indent(text: str, spaces: int) -> str:
    return text.replace("\n", "\n" + " " * spaces)


def write_json(write: Callable[[str], object], doc: dict, points: Iterable, key="points") -> int:
    """Write ``doc`` with ``doc[key]`` streamed from ``points``; returns the number of points.

    The text equals ``dumps({**doc, key: list(points)})`` (indent 2) exactly, without holding the
    list: ``points`` yields point dicts or the text :func:`encode_points` makes of them (one
    point's, or a :class:`PointsText` of several).
    ``write`` is called with pieces of text (e.g. ``sys.stdout.write``).
    """
    head = dumps({**doc, key: _SENTINEL})
    before, after = head.split(json.dumps(_SENTINEL), 1)
    write(before)
    n = 0
    for item in points:
        if isinstance(item, PointsText):
            text, k = item.text, item.n_points
        else:
            text, k = (item if isinstance(item, str) else _indent(dumps(item), 4)), 1
        if k == 0:
            continue
        write("[\n    " if n == 0 else ",\n    ")
        write(text)   # a block's text is large: never copied into a concatenation
        n += k
    write("[]" if n == 0 else "\n  ]")
    write(after)
    return n


class _Mismatch(Exception):
    """The bulk text disagrees with :func:`point_dict` (its structure changed): use the dicts."""


class PointsText:
    """The text of ``n_points`` consecutive points, already joined as :func:`write_json` joins
    them (what ``encode_points(..., joined=True)`` yields)."""

    __slots__ = ("text", "n_points")

    def __init__(self, text: str, n_points: int):
        self.text, self.n_points = text, int(n_points)


def _param_key(name):
    from .theory import _PARAM_ORDER

    return _PARAM_ORDER.index(name) if name in _PARAM_ORDER else 99


class _Rows:
    """Columns of the points ``start .. stop - 1`` of a solution, as :mod:`vaetheory._bulkjson`
    leaves."""

    def __init__(self, sol, start, stop):
        self.sol, self.start, self.stop = sol, start, stop

    def col(self, arr, kind="f"):
        from . import _bulkjson as bj
        from ._grid import grid_rows

        dtype = {"f": np.float64, "i": np.int64, "b": bool}[kind]
        rows = grid_rows(arr, self.sol.grid_shape, self.start, self.stop)
        return bj.Col(kind, np.asarray(rows, dtype=dtype))

    def vec(self, arr):
        from . import _bulkjson as bj
        from ._grid import grid_rows

        return bj.Vec(grid_rows(arr, self.sol.grid_shape, self.start, self.stop, True))

    def params(self):
        """:meth:`vaetheory.theory.Point.params` (an isotropic vector as one float)."""
        from . import _bulkjson as bj

        sol = self.sol
        out = {}
        for name in sorted(sol.params, key=_param_key):
            if sol.setting.hyperparameter(name).kind == "vector":
                M = np.asarray(self.vec(sol.params[name]).values, dtype=np.float64)
                out[name] = bj.Alt(np.all(M == M[:, :1], axis=1), bj.Col("f", M[:, 0]),
                                   bj.Vec(M))
            else:
                out[name] = self.col(sol.params[name])
        dims = list(sol.latent_dims.values())
        out["latent_dim"] = bj.Const(int(dims[0]))
        if len(dims) > 1:
            out["latent_dim2"] = bj.Const(int(dims[1]))
        return out

    def learned(self):
        """:func:`learned_point` (None for a fixed decoder variance)."""
        from . import _bulkjson as bj

        sol = self.sol
        if not sol.learned:
            return None
        unbounded = self.col(sol.learned["unbounded"], "b")
        return {"eta_dec": self.col(sol.learned["eta_dec"]),
                "decoder_variance": self.col(sol.learned["u"]),
                "beta_u": self.col(sol.learned["kappa"]), "unbounded": unbounded,
                "flat": self.col(sol.learned["flat"], "b"),
                "reason": bj.Opt(unbounded.values, bj.Const(_unbounded_reason(sol)))}

    def collapsed(self, latent):
        """``Point.collapsed[latent]``: an int where exact, else ``[min, max]``."""
        lo = self.col(self.sol.collapsed_min[latent], "i")
        hi = self.col(self.sol.collapsed_max[latent], "i")
        return lo if self.sol.exact[latent] else [lo, hi]


def _thresholds_tree(sol, start, stop):
    """:func:`thresholds_point` of the points ``start .. stop - 1`` as one tree of columns."""
    from . import _bulkjson as bj

    r = _Rows(sol, start, stop)
    latent = critical_latent(sol)
    d = sol.latent_dims[latent]
    vals = spectrum_values(sol.spectrum)
    padded = np.zeros(d)
    padded[:min(d, vals.size)] = vals[:d]
    tree = {"params": r.params()}
    learned = r.learned()
    if learned is not None:
        tree["learned"] = learned
    tree.update({
        "latent": bj.Const(latent),
        "spectrum": bj.Vec(np.broadcast_to(padded, (stop - start, d))),
        "critical": {name: r.vec(v) for name, v in sol.critical.items()},
        "critical_direction": bj.Const(dict(sol.critical_direction)),
        "active": r.col(sol.ranks[sol.setting.latent(latent).encoder], "i"),
        "collapsed": r.collapsed(latent),
    })
    return tree


def _point_tree(sol, start, stop, delta):
    """:func:`point_dict` of the points ``start .. stop - 1`` (C order) of ``sol`` as one tree of
    columns (:mod:`vaetheory._bulkjson`): the same keys in the same order, each number a column
    over the points, each per-point difference of form (an isotropic sigma, a ``[min, max]``
    count, a learned decoder's ``reason``, the rotation ranges) an Opt/Alt node."""
    from . import _bulkjson as bj

    r = _Rows(sol, start, stop)
    col, vec, cols = r.col, r.vec, bj.Vec

    def count(lo, hi):
        return bj.Alt(lo == hi, bj.Col("i", lo), [bj.Col("i", lo), bj.Col("i", hi)])

    tree = {}
    learned = r.learned()
    if learned is not None:
        tree["learned"] = learned
    collapsed = {latent: r.collapsed(latent) for latent in sol.latent_dims}
    tree.update({
        "params": r.params(),
        "singular_values": {k: vec(v) for k, v in sol.singular_values.items()},
        "posterior_std": {k: vec(v) for k, v in sol.posterior_std.items()},
        "collapsed": collapsed,
        "critical": {k: vec(v) for k, v in sol.critical.items()},
        "ranks": {k: col(v, "i") for k, v in sol.ranks.items()},
        "optimal_loss": col(sol.optimal_loss),
    })
    if delta is None:
        return tree
    from .logged import FREE_NOTE, RULES, logged_block

    lb = logged_block(sol, delta, start, stop)
    latents = {}
    for z, b in lb.latents.items():
        node = {"meaning": bj.Const(b.meaning), "kl": cols(b.kl),
                "total_kl": bj.Col("f", b.total_kl),
                "mean_variance": (bj.Const(None) if b.mean_variance is None
                                  else cols(b.mean_variance)),
                "posterior_std": cols(b.posterior_std),
                "counts": {rule: count(lo, hi) for rule, (lo, hi) in b.counts.items()},
                "kl_range": bj.Opt(b.free, [cols(b.kl_range[0]), cols(b.kl_range[1])])}
        if b.mean_variance_range is not None:
            node["mean_variance_range"] = bj.Opt(b.free, [cols(b.mean_variance_range[0]),
                                                          cols(b.mean_variance_range[1])])
        latents[z] = node
    tree["logged"] = {
        "delta": bj.Const(lb.delta), "rate": bj.Col("f", lb.rate),
        "distortion": bj.Col("f", lb.distortion), "rules": bj.Const(dict(RULES)),
        "latents": latents,
        "notes": [bj.Const(t) for t in lb.notes]
        + [bj.Opt(b.free, bj.Const(FREE_NOTE.format(latent=z))) for z, b in lb.latents.items()],
    }
    return tree


def _dict_text(sol, flat, delta):
    return _indent(dumps(point_dict(sol, _flat_index(sol, flat), delta)), 4)


def _flat_index(sol, flat):
    shape = sol.grid_shape
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


def encode_points(sol, *, delta: Optional[float] = None, block: int = 4096,
                  strict: bool = False, joined: bool = False) -> Iterator[str]:
    """The JSON text of every point of ``sol`` (C order), each exactly as :func:`write_json` would
    write :func:`point_dict` (with ``delta``: its ``logged`` object too) -- but ``block`` points at
    a time from arrays: every per-point quantity (``logged`` included,
    :func:`vaetheory.logged.logged_block`) for the block at once, every number formatted in bulk
    (:mod:`vaetheory._bulkjson`: orjson's shortest digits when installed, else ``repr``, over
    whole columns and rows, once per run of equal values, NaN/inf -> null by masks). Falls back
    to the dicts if the bulk text ever disagrees with them (checked on the solution's first and
    last points, a dict each being ~10^3 times a point's bulk cost; ``strict``: raise instead --
    the tests' way of making sure the fast path is the one taken; tests/test_bulkjson.py compares
    every point). ``joined``: yield one :class:`PointsText` per block (its points joined as
    :func:`write_json` joins them) instead of one text per point."""
    return _encode(sol, lambda a, b: _point_tree(sol, a, b, delta),
                   lambda flat: _dict_text(sol, flat, delta), block, strict, joined)


def encode_thresholds(sol, *, block: int = 4096, strict: bool = False,
                      joined: bool = False) -> Iterator[str]:
    """:func:`encode_points` for the points of ``vaetheory thresholds --json``
    (:func:`thresholds_point`, without ``keep`` or ``rate`` answers)."""
    return _encode(sol, lambda a, b: _thresholds_tree(sol, a, b),
                   lambda flat: _indent(dumps(thresholds_point(sol, _flat_index(sol, flat))), 4),
                   block, strict, joined)


def _encode(sol, tree_of, dict_text, block, strict, joined):
    from ._bulkjson import SEP, block_text

    n = int(np.prod(sol.grid_shape))
    size = max(1, int(block))
    sep = ",\n    " if joined else SEP
    fast = True
    for start in range(0, n, size):
        stop = min(n, start + size)
        text = None
        if fast:
            try:
                text, head, tail = block_text(tree_of(start, stop), stop - start, 4, sep)
                # the canary: the solution's first and last points against their dicts
                if ((start == 0 and head != dict_text(start))
                        or (stop == n and tail != dict_text(stop - 1))):
                    raise _Mismatch()
            except (_Mismatch, KeyError, ValueError, TypeError, IndexError) as exc:
                if strict:
                    raise ValueError("the bulk JSON text disagrees with the point's dict "
                                     f"({type(exc).__name__}: {exc})") from exc
                fast, text = False, None
        if text is None:  # the slow, always-right path
            text = sep.join(dict_text(flat) for flat in range(start, stop))
        if joined:
            yield PointsText(text, stop - start)
        else:
            yield from text.split(SEP)


# ------------------------------------------------------------------------------------------
# long sweeps: the points where the outcome changes


def _states(sol) -> np.ndarray:
    """Per grid point (C order), the active count and collapsed range of every latent."""
    shape = sol.grid_shape
    n = int(np.prod(shape))
    cols = []
    for latent in sol.latent_dims:
        enc = sol.setting.latent(latent).encoder
        for arr in (sol.ranks[enc], sol.collapsed_min[latent], sol.collapsed_max[latent]):
            cols.append(np.broadcast_to(np.asarray(arr), shape).reshape(n))
    return np.column_stack(cols) if cols else np.zeros((n, 0))


def change_points(sol, *, last: bool = False) -> np.ndarray:
    """Flat (C-order) indices of the first grid point and of every point whose active and
    collapsed counts differ from the previous point's; with ``last``, the last point too."""
    st = _states(sol)
    n = st.shape[0]
    keep = np.ones(n, dtype=bool)
    if n > 1:
        keep[1:] = np.any(st[1:] != st[:-1], axis=1)
        if last:
            keep[-1] = True
    return np.flatnonzero(keep)


def summary_rows(solutions: Sequence, *, all_rows: bool = False, max_all: int = 20):
    """Which points a table shows: every point when ``all_rows`` or when there are at most
    ``max_all``; otherwise the first, each change of the counts and the last. Returns per
    solution an array of flat indices and the total number of points."""
    total = sum(int(np.prod(s.grid_shape)) for s in solutions)
    if all_rows or total <= max_all:
        return [np.arange(int(np.prod(s.grid_shape))) for s in solutions], total
    return [change_points(s, last=True) for s in solutions], total


def _own_points(sol, flats):
    shape = sol.grid_shape
    return [(sol, tuple(int(i) for i in np.unravel_index(int(f), shape)) if shape else ())
            for f in flats]


# ------------------------------------------------------------------------------------------
# words


def point_label(sol, idx, label_params: Sequence[str], show_dims=False) -> str:
    """``beta=2, eta_dec=1`` (only ``label_params``), plus the latent dims when ``show_dims``."""
    params = point_params(sol, idx)
    if not label_params:  # nothing swept: name the main hyperparameter
        label_params = [p for p in (_default_param(sol),) if p in params]
    parts = []
    for name in label_params:
        if name in params:
            v = params[name]
            parts.append(f"{name}=" + (",".join(fmt(x) for x in v) if isinstance(v, list) else fmt(v)))
    if show_dims or not parts:
        parts += [f"{k}={v}" for k, v in params.items() if k.startswith("latent_dim")]
    return ", ".join(parts)


def _revival_text(sol, idx, latent, param, first_off, d):
    """What the inactive modes first_off..d-1 (0-based) of ``latent`` need (or can never get)."""
    crit = sol.at(idx).critical[param][:d]
    below = sol.critical_direction[param] == "below"
    ok = np.isfinite(crit) & ((crit > 0) if below else True)
    idx_ok = [i for i in range(first_off, d) if ok[i]]
    never = [i for i in range(first_off, d) if not ok[i]]
    noun = "dim" if latent == "z" else f"{latent} dim"
    sign = "<" if below else ">"
    parts = []
    if idx_ok:
        a, b = idx_ok[0], idx_ok[-1]
        verb = "needs" if a == b else "need"
        # "need beta < c" is a necessary condition: round c outwards so it stays one
        side = "up" if below else "down"
        text = (f"{_dims_text(a + 1, b + 1, noun)} {verb} {param} {sign} "
                f"{fmt_bound(crit[a], side)}")
        if b != a:
            text += f" (dim {b + 1}: {sign} {fmt_bound(crit[b], side)})"
        parts.append(text)
    if never:
        a, b = never[0], never[-1]
        parts.append(f"{_dims_text(a + 1, b + 1, noun)} can never be active"
                     + ("" if sol.setting.has_second_latent else " (no data variance left for them)"))
    return "; ".join(parts)


def _latent_words(sol, idx, latent, param):
    d = sol.latent_dims[latent]
    active = _active(sol, idx, latent)
    c = _collapsed(sol, idx, latent)
    name = "latent dims" if latent == "z" else f"{latent} dims"
    if isinstance(c, list) and c[0] == c[1]:
        c = c[0]  # a range that is a single number
    if _learned(sol, latent) and not isinstance(c, list):
        text = f"{c} of {d} {name} collapse"
    elif not isinstance(c, list):
        text = f"{c} of {d} {name} collapse (zero posterior mean)"
    else:
        text = (f"{_range_text(c)} of {d} {name} collapse (zero posterior mean; the count is not "
                f"determined, {active} active mode{'s' if active != 1 else ''})")
    has_crit = (param is not None and latent == critical_latent(sol)
                and param in sol.critical_direction)
    if has_crit and active < d:
        more = _revival_text(sol, idx, latent, param, active, d)
        if more:
            text += "; " + more
    elif has_crit and active == d and d >= 1:
        crit = float(sol.at(idx).critical[param][d - 1])
        if np.isfinite(crit):
            below = sol.critical_direction[param] == "below"
            noun = "dim" if latent == "z" else f"{latent} dim"
            text += (f"; {noun} {d} would collapse at {param} {'>=' if below else '<='} "
                     f"{fmt_bound(crit, 'up' if below else 'down')}")
    return text


def point_summary(sol, idx, label_params: Sequence[str] = (), param: Optional[str] = None,
                  show_dims=False) -> str:
    """One line in words, e.g. ``beta=100: 12 of 16 latent dims collapse; dims 5-16 need beta < 69.47``."""
    param = param or _default_param(sol)
    words = [_latent_words(sol, idx, latent, param) for latent in sol.latent_dims]
    lp = learned_point(sol, idx)
    if lp is not None:
        words.append("no optimum: the loss is unbounded below as eta_dec -> 0" if lp["unbounded"]
                     else f"learned eta_dec = {fmt(lp['eta_dec'], 6)} (u = "
                          f"{fmt(lp['decoder_variance'], 6)}, beta u = {fmt(lp['beta_u'], 6)})")
    return f"{point_label(sol, idx, label_params, show_dims)}: " + "; ".join(words)


def _default_param(sol):
    for name in ("beta", "beta2"):
        if name in sol.critical_direction:
            return name
    return next(iter(sol.critical), None)


def summary_param(sol, swept: Sequence[str]) -> Optional[str]:
    """The hyperparameter to phrase thresholds in: the first swept one with critical values."""
    for name in swept:
        if name in sol.critical_direction:
            return name
    return _default_param(sol)


def _state(sol, idx):
    return tuple((_active(sol, idx, l), str(_collapsed(sol, idx, l))) for l in sol.latent_dims)


def summary_lines(solutions: Sequence, swept: Sequence[str], max_lines=20,
                  param: Optional[str] = None, resolve=None) -> List[str]:
    """One line per grid point; for long sweeps only the points where the outcome changes.

    ``resolve(sol, flat_indices) -> [(solution, index), ...]`` gives the points to word (default:
    the points of ``sol`` itself); the command line passes one that solves only those points, so
    a long sweep never computes its (grid x latent dim) arrays.
    """
    resolve = resolve or _own_points
    show_dims = len(solutions) > 1
    total = sum(int(np.prod(s.grid_shape)) for s in solutions)
    lines, skipped = [], 0
    for sol in solutions:
        p = param or summary_param(sol, swept)
        labels = list(swept) or ([p] if p in sol.params else [])
        flats = (np.arange(int(np.prod(sol.grid_shape))) if total <= max_lines
                 else change_points(sol))
        room = max(0, max_lines - len(lines))
        skipped += max(0, flats.size - room)
        for s2, i2 in resolve(sol, flats[:room]):
            lines.append(point_summary(s2, i2, labels, p, show_dims))
    if total > max_lines:
        head = (f"{total} grid points; showing the first point and each point where the outcome "
                "changes:")
        lines.insert(0, head)
    if skipped:
        lines.append(f"... {skipped} more changes (see the table, or --json for every point)")
    return lines


# ------------------------------------------------------------------------------------------
# tables


def predict_table(solutions: Sequence, swept: Sequence[str], title: Optional[str] = None,
                  rows: Optional[Sequence[Tuple[object, tuple]]] = None) -> Table:
    """One row per grid point: hyperparameters, active/collapsed per latent, ranks, optimal loss.

    ``rows``: the ``(solution, index)`` points to show (default: every point of ``solutions``;
    :func:`summary_rows` picks the changes of a long sweep).
    """
    first = solutions[0]
    show_dims = len(solutions) > 1
    table = _table(title=title, title_justify="left")
    label_params = [p for p in swept if p in first.params] or [_default_param(first) or "beta"]
    label_params = [p for p in label_params if p in first.params]
    for p in label_params:
        table.add_column(p, justify="right", overflow="fold")
    if show_dims:
        for k in first.latent_dims:
            table.add_column(f"d({k})", justify="right", overflow="fold")
    for latent in first.latent_dims:
        table.add_column(f"active {latent}", justify="right", overflow="fold")
        table.add_column(f"collapsed {latent}", justify="right", overflow="fold")
    maps = first.setting.maps
    table.add_column("ranks " + ", ".join(
        (f"{l} " if len(maps) > 1 else "") + "enc/dec" for l in maps), justify="right", overflow="fold")
    learned_dec = first.setting.learned_decoder
    if learned_dec:
        table.add_column("learned eta_dec", justify="right", overflow="fold")
        table.add_column("beta u", justify="right", overflow="fold")
    table.add_column("optimal loss (nats)" if learned_dec else "optimal loss", justify="right",
                     overflow="fold")
    if rows is None:
        rows = [(sol, idx) for sol in solutions for idx in grid_indices(sol)]
    for sol, idx in rows:
        params = point_params(sol, idx)
        row = []
        for p in label_params:
            v = params.get(p)
            row.append(",".join(fmt(x) for x in v) if isinstance(v, list) else fmt(v))
        if show_dims:
            row += [str(d) for d in sol.latent_dims.values()]
        for latent, d in sol.latent_dims.items():
            row.append(f"{_active(sol, idx, latent)}/{d}")
            row.append(_range_text(_collapsed(sol, idx, latent)))
        ranks = sol.at(idx).ranks
        row.append(", ".join("/".join(str(ranks[m]) for m in ms)
                             for ms in maps.values()))
        if learned_dec:
            lp = learned_point(sol, idx)
            row += (["none (unbounded)", "-"] if lp["unbounded"] else
                    [fmt(lp["eta_dec"], 6), fmt(lp["beta_u"], 6)])
        row.append(fmt(sol.at(idx).optimal_loss, 7))
        table.add_row(*row)
    return table


def detail_table(sol, idx, label_params: Sequence[str] = (), show_dims=False) -> Table:
    """Per latent dimension: spectrum, singular values of every map, learned stds, thresholds."""
    spec = sol.spectrum
    width = max(sol.latent_dims.values())
    vals = spec.padded(width)
    vals = vals if spec.kind == "residual" else np.sqrt(vals)
    table = _table(title=f"detail: {point_label(sol, idx, label_params, show_dims)}",
                  title_justify="left",
                  caption="per latent dim in mode order (row i: the dim carrying mode i)",
                  caption_justify="left")
    table.add_column("i", justify="right", overflow="fold")
    table.add_column(_spectrum_symbol(spec), justify="right", overflow="fold")
    cols = []
    pt = sol.at(idx)
    for name, v in pt.singular_values.items():
        table.add_column(name, justify="right", overflow="fold")
        cols.append(v)
    for name, v in pt.posterior_std.items():
        table.add_column(f"std {name}", justify="right", overflow="fold")
        cols.append(v)
    rules = []
    bounds = []
    for name, v in pt.critical.items():
        below = sol.critical_direction[name] == "below"
        sign = "<" if below else ">"
        table.add_column(f"{name}*", justify="right", overflow="fold")
        cols.append(v)
        bounds.append((len(cols) - 1, "down" if below else "up"))
        rules.append(f"{name} {sign} {name}*")
    if rules:
        table.caption += f"; {critical_latent(sol)} dim i is active while " + ", ".join(rules)
    side = dict(bounds)  # "active while beta < shown" must hold at the shown value
    _add_mode_rows(table, ([fmt(vals[i])] + [
        ("" if i >= c.size else fmt_bound(c[i], side[j]) if j in side else fmt(c[i]))
        for j, c in enumerate(cols)] for i in range(width)), width)
    return table


def logged_table(sol, idx, delta=0.01, label_params: Sequence[str] = (), show_dims=False) -> Table:
    """Per latent dim (mode order): what a training log shows at the optimum -- KL (nats),
    ``Var_x E[z_j|x]`` (the active-units quantity) and the posterior std, per latent."""
    log = sol.at(idx).logged(delta)
    width = max(sol.latent_dims.values())
    table = _table(title=f"logged at the optimum: {point_label(sol, idx, label_params, show_dims)}",
                  title_justify="left",
                  caption="mode order; KL in nats" + (" (z1: its z1 term)" if "z1" in
                                                            sol.latent_dims else "")
                          + "; a-b: open under a free rotation",
                  caption_justify="left")
    table.add_column("i", justify="right", overflow="fold")
    cols = []
    for latent, lg in log.latents.items():
        pre = "" if len(log.latents) == 1 else f"{latent} "
        for name, v, rng in ((f"{pre}KL", lg.kl, lg.kl_range),
                             (f"{pre}Var E[z|x]", lg.mean_variance, lg.mean_variance_range),
                             (f"{pre}std", lg.posterior_std, None)):
            if v is None:
                continue
            table.add_column(name, justify="right", overflow="fold")
            cols.append((v, rng))

    def cells(i):
        row = []
        for v, rng in cols:
            if i >= v.size:
                row.append("")
            elif rng is not None and rng[0][i] != rng[1][i]:
                row.append(f"{fmt(rng[0][i])}-{fmt(rng[1][i])}")
            else:
                row.append(fmt(v[i]))
        return row

    _add_mode_rows(table, (cells(i) for i in range(width)), width)
    return table


def logged_lines(sol, idx, delta=0.01, label_params: Sequence[str] = (), show_dims=False) -> List[str]:
    """The totals and the active-dim counts of every rule, each labelled with its rule."""
    log = sol.at(idx).logged(delta)
    label = point_label(sol, idx, label_params, show_dims)
    out = [f"{label}: rate (total KL) {fmt(log.rate, 6)} nats; distortion E||x - x_hat||^2 "
           f"{fmt(log.distortion, 6)}"]
    for latent, lg in log.latents.items():
        c = lg.counts
        parts = [f"theory {_range_text(c['theory'])}"]
        if "au" in c:
            parts.append(f"AU({delta:g}) = #{{Var E[z_j|x] > {delta:g}}} {_range_text(c['au'])}")
        parts.append(f"#{{KL_j > {delta:g}}} {_range_text(c['kl'])}")
        out.append(f"  active {latent} dims of {sol.latent_dims[latent]} by rule: "
                   + "; ".join(parts) + f" ({lg.meaning})")
    return out


# ------------------------------------------------------------------------------------------
# thresholds


def thresholds_point(sol, idx) -> dict:
    """Per-dimension critical values at one point (JSON entry of ``vaetheory thresholds``)."""
    latent = critical_latent(sol)
    d = sol.latent_dims[latent]
    vals = spectrum_values(sol.spectrum)
    padded = np.zeros(d)
    padded[:min(d, vals.size)] = vals[:d]
    learned = learned_point(sol, idx)
    return {
        "params": point_params(sol, idx),
        **({"learned": learned} if learned is not None else {}),
        "latent": latent,
        "spectrum": padded,
        "critical": {name: [float(x) for x in v] for name, v in sol.at(idx).critical.items()},
        "critical_direction": dict(sol.critical_direction),
        "active": _active(sol, idx, latent),
        "collapsed": _collapsed(sol, idx, latent),
    }


def thresholds_document(solutions: Sequence, info: dict, settings: dict, points: List[dict]) -> dict:
    """The JSON document of ``vaetheory thresholds`` (``points`` from :func:`thresholds_point`,
    with ``keep`` answers when asked)."""
    first = solutions[0]
    return {"model": first.model, "variance": first.variance, "theorem": first.theorem,
            "centered": first.spectrum.centered, "n_samples": first.spectrum.n_samples,
            "spectrum_units": spectrum_units(first.spectrum),
            "spectrum": spectrum_values(first.spectrum),
            "spectrum_kind": first.spectrum.kind, "rank": int(first.spectrum.rank),
            "dim": int(first.spectrum.dim), "trace": spectrum_trace(first.spectrum),
            "data": _data(info), "settings": settings,
            "critical_latent": critical_latent(first),
            "critical_direction": dict(first.critical_direction),
            **_learned_doc(first),
            **_scaled_doc(first.spectrum),
            "notes": document_notes(info, notes_of(solutions)) + _scaled_notes(first.spectrum),
            "points": points}


def thresholds_table(sol, idx, label_params: Sequence[str] = (), show_dims=False) -> Table:
    """Rich table: per latent dim (mode order), the critical value of every hyperparameter."""
    latent = critical_latent(sol)
    d = sol.latent_dims[latent]
    spec = sol.spectrum
    vals = spec.padded(d)
    vals = vals if spec.kind == "residual" else np.sqrt(vals)
    table = _table(title=f"thresholds per {latent} dim at {point_label(sol, idx, label_params, show_dims)}",
                  title_justify="left",
                  caption=f"mode i = the {latent} dim carrying the i-th largest {_spectrum_symbol(spec)}; "
                          "others held fixed; - = never active",
                  caption_justify="left")
    table.add_column("mode", justify="right", overflow="fold")
    table.add_column(_spectrum_symbol(spec), justify="right", overflow="fold")
    cols = []
    for name, c in sol.at(idx).critical.items():
        below = sol.critical_direction[name] == "below"
        table.add_column(f"active if {name} {'<' if below else '>'}", justify="right", overflow="fold")
        if below:
            c = np.where(c > 0, c, np.nan)
        cols.append(c)
    active = _active(sol, idx, latent)
    sides = ["down" if sol.critical_direction[n] == "below" else "up" for n in sol.critical]
    _add_mode_rows(table, ([fmt(vals[i]), *[fmt_bound(c[i], sd) for c, sd in zip(cols, sides)]]
                           for i in range(d)), d, style=lambda i: None if i < active else "dim")
    return table


def _add_mode_rows(table, rows, n, style=lambda i: None):
    """One row per mode (``rows`` yields the cells after the mode number), except that a run of
    more than two identical last rows -- the modes past the data's rank, all alike -- is one
    row ``a-b``: a latent dim of 10^6 is a table of a few rows, not 10^6."""
    cells = list(rows)
    tail = n
    while tail > 1 and cells[tail - 2] == cells[n - 1] and style(tail - 2) == style(n - 1):
        tail -= 1
    last = n if n - tail < 2 else tail - 1
    for i in range(last):
        table.add_row(str(i + 1), *cells[i], style=style(i))
    if last < n:
        table.add_row(f"{last + 1}-{n}", *cells[n - 1], style=style(n - 1))


def keep_answer(sol, idx, k: int, param: str) -> dict:
    """The value of ``param`` keeping (at least) ``k`` dims active, others fixed, and the range
    keeping exactly ``k``.

    For a threshold active *below* (beta, beta2, eta_dec) ``value`` is the k-th largest critical
    value (the supremum of the values keeping k dims active); for one active *above* (beta1,
    eta_enc) the k-th smallest (the infimum). ``value`` is None when k dims can never be active at
    the other hyperparameters. Where critical values tie, several dims switch together and
    exactly ``k`` may not be attainable: then ``exactly`` is None, ``exactly_possible`` False and
    ``nearest`` gives the attainable counts just below and above ``k``.
    """
    latent = critical_latent(sol)
    d = sol.latent_dims[latent]
    direction = sol.critical_direction[param]
    below = direction == "below"
    crit = sol.at(idx).critical[param]
    ok = np.isfinite(crit) & ((crit > 0) if below else True)
    c = np.sort(crit[ok])[::-1] if below else np.sort(crit[ok])   # in the order dims turn on
    m = int(c.size)
    out = {"keep": int(k), "param": param, "direction": direction, "latent": latent,
           "latent_dim": int(d), "value": None, "possible": False, "max_active": m,
           "params": point_params(sol, idx)}
    if k > d:
        out["reason"] = f"{k} exceeds the latent dim {d} of {latent}"
        return out
    if k > m:
        out["reason"] = (f"at most {m} of {d} {latent} dims can ever be active by changing "
                         f"{param} alone (the others as given)")
        return out
    out["value"] = float(c[k - 1])
    out["possible"] = True
    nxt = float(c[k]) if k < m else None
    if nxt is not None and nxt == out["value"]:  # dims k and k+1 switch at the same value
        levels = sorted({int(np.count_nonzero(c >= v)) if below else int(np.count_nonzero(c <= v))
                         for v in c} | {0})
        out["exactly"] = None
        out["exactly_possible"] = False
        out["nearest"] = [max(a for a in levels if a < k), min(a for a in levels if a > k)]
        out["reason"] = (f"{latent} dims {_tie_span(c, k)} switch together at {param} = "
                         f"{out['value']:.6g}: exactly {k} is not attainable")
    else:
        out["exactly"] = [nxt, out["value"]] if below else [out["value"], nxt]
        out["exactly_possible"] = True
    return out


def _tie_span(c, k):
    """1-based ``a-b``: the dims (in switching order) tied with the k-th critical value."""
    same = np.flatnonzero(c == c[k - 1])
    return f"{same[0] + 1}-{same[-1] + 1}"


def keep_sentence(ans: dict, label: str = "") -> str:
    """The answer of :func:`keep_answer` in words, each bound rounded so its sentence holds."""
    k, p, d = ans["keep"], ans["param"], ans["latent_dim"]
    noun = "latent dims" if ans["latent"] == "z" else f"{ans['latent']} dims"
    prefix = f"{label}: " if label else ""
    if not ans["possible"]:
        return f"{prefix}no value of {p} keeps {k} {noun} active: {ans['reason']}"
    v = ans["value"]
    below = ans["direction"] == "below"
    keeps, collapses = (fmt_bound(v, "down", 6), fmt_bound(v, "up", 6)) if below else (
        fmt_bound(v, "up", 6), fmt_bound(v, "down", 6))
    if below:
        head = (f"{prefix}{p} < {keeps} keeps {k} of {d} {noun} active (the largest such {p}; "
                f"dim {k} collapses at {p} >= {collapses})")
    else:
        head = (f"{prefix}{p} > {keeps} keeps {k} of {d} {noun} active (the smallest such {p}; "
                f"dim {k} collapses at {p} <= {collapses})")
    if not ans.get("exactly_possible", True):
        lo, hi = ans["nearest"]
        return f"{head}; {ans['reason']} (nearest attainable: {lo} or {hi} active)"
    lo, hi = ans["exactly"]
    if below:
        exact = (f"exactly {k} for {fmt_bound(lo, 'up', 6)} <= {p} < {keeps}" if lo is not None
                 else f"exactly {k} for any {p} < {keeps}")
    else:
        exact = (f"exactly {k} for {keeps} < {p} <= {fmt_bound(hi, 'down', 6)}" if hi is not None
                 else f"exactly {k} for any {p} > {keeps}")
    return f"{head}; {exact}"


# ------------------------------------------------------------------------------------------
# checks (vaetheory check, predict --check): the verdicts of vaetheory.checker / vaetheory.sgd

def worst_verdict(checks: Sequence[dict]) -> Verdict:
    """REFUTED over INCONCLUSIVE over CONFIRMED/CONSISTENT (:meth:`Verdict.worst`)."""
    return Verdict.worst(c["verdict"] for c in checks)


def check_dict(result, mode: str = "exact") -> dict:
    """The ``check`` object of a point.

    ``mode="exact"``: a :class:`~vaetheory.checker.CheckResult`; the fields ``verdict``,
    ``loss_gap``, ``max_singular_value_error``, ``restarts_matching``, ``seconds`` are the contract
    (README), plus ``reason`` and what the best run learned. ``mode="sgd"``: a
    :class:`~vaetheory.sgd.SGDResult`, verdict ``CONSISTENT`` when every latent's collapsed count
    lies in the predicted range and ``INCONCLUSIVE`` otherwise (stochastic training cannot refute
    a claim about the global optimum: it may simply not have got there).
    """
    if mode == "exact":
        out = {"mode": "exact", **result.to_dict()}
        out["reason"] = result.reason
        return out
    out = {"mode": "sgd", **result.to_dict()}
    pred = result.predicted_collapsed or {}
    agree = {k: bool(lo <= result.collapsed[k] <= hi) for k, (lo, hi) in pred.items()
             if k in result.collapsed}
    out["collapsed_agrees"] = agree
    out["verdict"] = (Verdict.CONSISTENT if agree and all(agree.values())
                      and out.get("converged") is not False else Verdict.INCONCLUSIVE)
    if out.get("diverged"):
        out["reason"] = (f"training diverged in epoch {out['diverged_at_epoch'] + 1} of "
                         f"{out['epochs']} (the loss overflowed): the step size {out['lr']:.3g} "
                         "is too large; use a smaller one")
    elif out.get("converged") is False:
        out["reason"] = (f"training did not converge: its exact loss ends {fmt(out['loss_gap'], 3)}"
                         " (relative) above the optimum; train longer or change the step size")
    return out


def _pairs(solutions):
    return [(sol, idx) for sol in solutions for idx in grid_indices(sol)]


def check_table(solutions: Sequence, swept: Sequence[str], checks: Sequence[dict]) -> Table:
    """One row per checked grid point: predicted vs learned collapse, verdict and its numbers."""
    first = solutions[0]
    show_dims = len(solutions) > 1
    mode = checks[0]["mode"] if checks else "exact"
    table = _table(title_justify="left")
    table.add_column("point", overflow="fold")
    latents = list(first.latent_dims)
    for latent in latents:
        table.add_column(f"collapsed {latent} pred/found", justify="right", overflow="fold")
    learned_dec = first.setting.learned_decoder
    if learned_dec:
        table.add_column("u pred/found", justify="right", overflow="fold")
    if mode == "exact":
        for name in ("loss gap", "sv error", "runs at optimum", "seconds"):
            table.add_column(name, justify="right", overflow="fold")
    else:
        for name in ("loss gap", "max |sv diff|", "active units", "seconds"):
            table.add_column(name, justify="right", overflow="fold")
    table.add_column("verdict", overflow="fold")
    for (sol, idx), chk in zip(_pairs(solutions), checks):
        row = [point_label(sol, idx, swept, show_dims)]
        if mode == "exact":
            found = chk["learned"].get("collapsed_prior") or {}
            found_mean = chk["learned"].get("collapsed") or {}
        else:
            found, found_mean = chk.get("collapsed") or {}, {}
        for latent in latents:
            f = found.get(latent, found_mean.get(latent))
            row.append(f"{_range_text(_collapsed(sol, idx, latent))}/{'-' if f is None else f}")
        if learned_dec:
            lp = learned_point(sol, idx)
            found = ((chk.get("decoder_variance") or {}).get("learned") if mode == "exact"
                     else (chk.get("learned") or {}).get("u"))
            pred = "unbounded" if lp["unbounded"] else fmt(lp["decoder_variance"], 6)
            row.append(f"{pred}/{fmt(found, 6)}")
        if mode == "exact":
            row += [fmt(chk["loss_gap"], 2), fmt(chk["max_singular_value_error"], 2),
                    f"{chk['restarts_matching']}/{chk['restarts']}", fmt(chk["seconds"], 3)]
        else:
            errs = chk.get("singular_value_error") or {}
            au = chk.get("active_units") or {}
            row += [fmt(chk["loss_gap"], 2), fmt(max(errs.values(), default=None), 2),
                    ", ".join(f"{k} {v}" for k, v in au.items()), fmt(chk["seconds"], 3)]
        row.append(chk["verdict"])
        table.add_row(*row)
    return table


def check_lines(solutions: Sequence, swept: Sequence[str], checks: Sequence[dict]) -> List[str]:
    """Words under the table: why a point is not confirmed; a refutation's counterexample."""
    show_dims = len(solutions) > 1
    lines = []
    for (sol, idx), chk in zip(_pairs(solutions), checks):
        label = point_label(sol, idx, swept, show_dims)
        v = chk["verdict"]
        if chk["mode"] == "exact" and v != "CONFIRMED":
            lines.append(f"{label}: {v}: {chk.get('reason') or ''}".rstrip(": "))
            if v == "REFUTED":
                sv = chk["learned"]["singular_values"]
                lines.append(f"  counterexample (loss {fmt(chk['learned']['loss'], 10)}): "
                             + "; ".join(f"{m} " + ", ".join(fmt(x, 6) for x in vals)
                                         for m, vals in sv.items()))
        elif chk["mode"] == "sgd" and chk.get("diverged"):
            lines.append(f"{label}: {v}: stochastic training diverged in epoch "
                         f"{chk['diverged_at_epoch'] + 1} of {chk['epochs']} (the loss overflowed):"
                         f" use a smaller --lr than {chk['lr']:.3g}")
        elif chk["mode"] == "sgd" and chk.get("converged") is False:
            lines.append(f"{label}: {v}: stochastic training did not converge: its exact loss "
                         f"ends {fmt(chk['loss_gap'], 3)} (relative) above the optimum (collapsed "
                         + ", ".join(f"{k} {chk['collapsed'].get(k)}" for k in
                                     (chk.get("predicted_collapsed") or {}))
                         + "): train longer (--epochs) or try another --lr")
        elif chk["mode"] == "sgd" and v != "CONSISTENT":
            pred = chk.get("predicted_collapsed") or {}
            lines.append(f"{label}: stochastic training ended with " + ", ".join(
                f"{k}: {chk['collapsed'].get(k)} collapsed (predicted {_range_text(list(r))})"
                for k, r in pred.items()) + f"; its exact loss is {fmt(chk['loss_gap'], 2)} "
                "(relative) above the optimum: train longer (--epochs) or check with --mode exact")
    n = len(checks)
    counts = {}
    for chk in checks:
        counts[chk["verdict"]] = counts.get(chk["verdict"], 0) + 1
    what = ("the closed-form optimum" if checks and checks[0]["mode"] == "exact" else
            "the predicted collapsed counts (stochastic training)")
    lines.append(f"{', '.join(f'{k} {c}' for k, c in counts.items())} of {n} point(s) checked "
                 f"against {what}")
    return lines


def numerical_document(results: Sequence[Tuple[dict, object]], info: dict, settings: dict,
                       spectrum) -> dict:
    """JSON of ``vaetheory check`` on a setting without a closed form: numerical optima only.

    ``results``: ``(params, NumericalResult)`` per point.
    """
    first = results[0][1]
    return {
        "model": first.model, "variance": first.variance, "label": first.label,
        **({"decoder": first.decoder, "learned_hyperparameters": ["eta_dec"]}
           if first.decoder != "fixed" else {}),
        "covered_by_theory": False, "centered": spectrum.centered,
        "n_samples": spectrum.n_samples, "spectrum": spectrum_values(spectrum),
        "spectrum_units": spectrum_units(spectrum), "spectrum_kind": spectrum.kind,
        "data": _data(info), "settings": dict(settings), **_scaled_doc(spectrum),
        "notes": document_notes(info) + _scaled_notes(spectrum),
        "points": [{"params": params, "numerical": num.to_dict(),
                    "check": {"mode": "exact", "verdict": Verdict.NUMERICAL,
                              "seconds": num.seconds}}
                   for params, num in results],
    }


def numerical_table(results: Sequence[Tuple[dict, object]], label_params: Sequence[str]) -> Table:
    """One row per point of a numerical-only check: loss, ranks, collapsed counts, warnings."""
    first = results[0][1]
    table = _table(title=f"{first.label}", title_justify="left")
    table.add_column("point", overflow="fold")
    table.add_column("lowest loss", justify="right", overflow="fold")
    for latent in first.latent_dims:
        table.add_column(f"collapsed {latent}", justify="right", overflow="fold")
    table.add_column("ranks", justify="right", overflow="fold")
    if first.learned:
        table.add_column("learned eta_dec", justify="right", overflow="fold")
    table.add_column("converged", overflow="fold")
    for params, num in results:
        label = ", ".join(f"{k}={fmt(params[k]) if not isinstance(params[k], list) else params[k]}"
                          for k in label_params if k in params) or "-"
        row = [label, fmt(num.loss, 10)]
        for latent in num.latent_dims:
            c = num.collapsed_prior.get(latent, num.collapsed.get(latent))
            row.append("-" if c is None else str(c))
        row.append(", ".join(f"{k} {v}" for k, v in num.ranks.items()))
        if first.learned:
            row.append(fmt(num.learned.get("eta_dec"), 6))
        row.append("no (unbounded below)" if num.unbounded else ("yes" if num.converged else "no"))
        table.add_row(*row)
    return table


def rate_sentence(ans, label: str = "", conversion=None) -> str:
    """The answer of :func:`vaetheory.rates.target_rate` in words."""
    prefix = f"{label}: " if label else ""
    what = "total KL" if ans.latent == "z" else f"KL of {ans.latent}"
    if not ans.possible:
        return f"{prefix}no value of {ans.param} gives a {what} of {fmt(ans.rate, 6)} nats: {ans.reason}"
    text = (f"{prefix}{ans.param} = {ans.value:.10g} gives a {what} of {fmt(ans.rate, 6)} nats at "
            f"the optimum (closed form there: {ans.achieved:.10g}), with {ans.active} of "
            f"{ans.latent_dim} {ans.latent} dims active")
    if conversion is not None and ans.param in conversion.factors:
        w = conversion.weights[ans.param]
        text += f"; in your loss: {w} = {float(conversion.user_weight(ans.param, ans.value)):.10g}"
    return text


# ------------------------------------------------------------------------------------------
# the audit of trained weights (vaetheory.audit)


def _values(v, digits=4):
    return " ".join(fmt(x, digits) for x in np.ravel(v))


def mapping_sentence(audit) -> str:
    """How the parameters were read: ``W <- 'encoder.weight', ...`` and whether it was guessed."""
    order = list(audit.setting.parameters) + list(audit.setting.biases)

    def rank(entry):
        role = entry[0].split(":")[-1].strip("[]").split(",")[0].replace(".T", "")
        return order.index(role) if role in order else len(order)

    parts = [f"{role} <- {name!r}" for role, name, _ in sorted(audit.mapping, key=rank)]
    line = "parameters: " + ", ".join(parts)
    if any(g for _, _, g in audit.mapping):
        line += " (guessed from the names; give a mapping, --map NAME=ROLE, to change it)"
    if audit.ignored:
        line += "; not used: " + ", ".join(repr(n) for n in audit.ignored)
    return line


def _hyper_text(audit) -> str:
    parts = []
    for name, v in audit.hyper.items():
        a = np.asarray(v, dtype=float)
        parts.append(f"{name} = " + (fmt(a) if a.ndim == 0 else
                                     fmt(a[0]) if np.all(a == a.flat[0]) else _values(a)))
    dims = audit.latent_dims
    parts.append("latent dims " + ", ".join(f"{k} = {d}" for k, d in dims.items()))
    return ", ".join(parts)


def _decoder_variance_lines(audit, dv, sv_tol) -> List[str]:
    """A learned decoder variance: u found (or profiled) vs the optimum's (docs/theory.md §12)."""
    if dv["unbounded"]:
        return [f"no optimum: {dv['reason']}; the negative ELBO falls without bound as "
                "eta_dec -> 0 (what is shown below is the limit)"]
    how = ("profiled: the weights carry no decoder variance, so u is the one optimal for them, "
           "R/n (docs/theory.md §12.6)" if dv["profiled"] else "the weights' log_u")
    flag = ("" if sv_tol is None or dv["relative_error"] <= sv_tol else "  <-- off")
    need = "" if sv_tol is None else f"; AT OPTIMUM needs <= {sv_tol:.0%}"
    return [f"decoder variance u = eta_dec^2: {fmt(dv['u'], 6)} ({how}) vs {fmt(dv['optimal_u'], 6)} "
            f"at the optimum (eta_dec {fmt(dv['eta_dec'], 4)} vs {fmt(dv['optimal_eta_dec'], 4)}): "
            f"relative error {dv['relative_error']:.2%}{need}{flag}"]


def audit_lines(audit, mapping=True) -> List[str]:
    """The audit for people (the assertion message of :mod:`vaetheory.testing` and the text of
    ``vaetheory audit``): verdict, loss gap, singular values per map, collapsed dims, hints."""
    s = audit.setting
    tol = audit.tolerances
    lines = [f"audit: {audit.verdict} -- {s.name}, {s.title}, {s.theorem}",
             f"at: {_hyper_text(audit)}; "
             + ("centred data (the model with biases)" if audit.center
                else "raw second moments (the bias-free model)")]
    if mapping:
        lines.append(mapping_sentence(audit))
    dv = audit.decoder_variance
    sv_tol = tol["sv_rtol"]
    if dv:
        lines += _decoder_variance_lines(audit, dv, sv_tol)
    if dv and dv["unbounded"]:
        lines.append(f"loss: {audit.loss:.10g} nats per sample trained; optimal: none -- the loss "
                     "is unbounded below here (docs/theory.md §12.2)")
    else:
        units = " nats per sample" if dv else ""
        lines.append(f"loss: {audit.loss:.10g} trained vs {audit.optimal_loss:.10g} optimal"
                     f"{units}: gap {fmt(audit.gap)}, relative {fmt(audit.relative_gap, 3)} "
                     f"(weights {fmt(audit.gap_weights)}, biases {fmt(audit.gap_biases)}); AT "
                     f"OPTIMUM needs <= {fmt(tol['loss_rtol'])}, NEAR <= {fmt(tol['near_rtol'])}")
    rows = []
    for m, v in audit.singular_values.items():
        flag = "" if sv_tol is None or v["relative"] <= sv_tol else "  <-- off"
        rows.append([m, _values(v["found"]), _values(v["predicted"]),
                     f"{fmt(v['error'], 3)} ({v['relative']:.1%} of {fmt(v['scale'], 3)}){flag}"])
    if dv and dv["unbounded"]:
        lines.append("singular values, sorted (encoders whitened, docs/theory.md §0.5), against "
                     "the limit eta_dec -> 0:")
    else:
        lines.append("singular values, sorted (encoders whitened, docs/theory.md §0.5); AT OPTIMUM "
                     + ("ignores them:" if sv_tol is None else f"needs errors <= {sv_tol:.0%} of "
                        "each map's scale:"))
    lines += ["  " + r for r in text_table(["map", "found", "predicted", "max error"],
                                           rows).splitlines()]
    from .audit import RULES

    lines.append(f"collapse, rule {audit.rule} ({RULES[audit.rule].replace('delta', fmt(audit.delta))}):")
    for z, c in audit.collapse.items():
        d = audit.latent_dims[z]
        lo, hi = c.predicted
        pred = str(lo) if lo == hi else f"{lo} to {hi}"
        modes = (", predicted collapsed modes " + ", ".join(map(str, c.predicted_modes))
                 if lo == hi and c.predicted_modes else
                 "" if lo == hi else " (a free rotation, docs/theory.md §7)")
        dims = ", ".join(map(str, c.found)) or "none"
        lines.append(f"  {z}: collapsed dims {dims} ({len(c.found)} of {d}); predicted {pred} of "
                     f"{d}{modes} -- {'matches' if c.matches else 'DIFFERS'}")
        what = "variance of the mean" if c.rule == "au" else (
            "KL (nats)" if s.latent(z).learned else "mean part of the KL (nats)")
        lines.append(f"     {what} per dim: found {_values(c.values, 3)}; at the optimum (mode "
                     f"order) {_values(c.predicted_values, 3)}")
    for h in audit.hints:
        lines.append(f"hint: {h}")
    return lines


def audit_document(audit, info: Optional[dict] = None, settings: Optional[dict] = None) -> dict:
    """The JSON document of ``vaetheory audit``: the data's provenance, the options and the
    audit (:meth:`vaetheory.audit.Audit.to_dict`)."""
    doc = {"data": info or {}, "settings": settings or {}}
    doc.update(audit.to_dict())
    return doc

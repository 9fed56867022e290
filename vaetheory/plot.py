"""Pictures of the theory: collapse maps, spectra with their water line, KL per dim, the
hierarchical (beta1, beta2) map and check results, as matplotlib Figures.

Every function takes a :class:`~vaetheory.theory.Solution` (or check results) and returns a
:class:`matplotlib.figure.Figure`, drawn with the Agg canvas (no display, no global pyplot state),
which a notebook user can restyle (``fig.axes``) or save (:func:`save`). matplotlib is an optional
extra (``pip install "vaetheory[plot]"``), imported on first use; without it every function here
raises a one-line :class:`~vaetheory.errors.ResourceError` naming the extra, except
:func:`collapse_text`, which draws the collapse map in the terminal with rich.

=====================  ===========================================================  ============
function               what it shows                                                the numbers
=====================  ===========================================================  ============
:func:`collapse_map`   per dim of the critical latent, the range of one             critical
                       hyperparameter where it is active (a bar ending at its        values
                       critical value, log axis), the active-count step curve and
                       the grid values
:func:`spectrum_plot`  the eigenvalues (theta_i^2, or the residual e_i) as bars,     water line
                       the level each dim is compared against, one line per point,   (theory)
                       surviving modes coloured
:func:`kl_plot`        per-dim KL at the optimum (and the total rate) across a       ``kl``
                       sweep, thresholds dashed
:func:`heatmap`        collapsed z2 dims over a (beta1, beta2) grid with the         counts and
                       theory's boundaries                                          critical
                                                                                    values
:func:`check_plot`     predicted vs found singular values per map and point, the     checker /
                       verdict in the title; for stochastic training the training    sgd
                       curve and the per-dim KL against the prediction
:func:`collapse_text`  the collapse map as text (rich), no matplotlib needed
=====================  ===========================================================  ============

Nothing here computes a prediction: every number comes from a Solution (its critical values,
ranks, counts, ``Point.water_line``), from the checker's results, or from a Solution re-solved on a
finer grid by the library (:func:`sweep`). Where each comparison comes from: docs/theory.md §2-§5
(water lines: ``vaetheory.theory.water_*``), §5.4 (the hierarchical boundaries), §7 (KL, collapse).
"""

from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from . import report
from ._validation import output_path
from .errors import ParameterError, ResourceError, Verdict

__all__ = ["FORMATS", "PALETTE", "SIZE", "DPI", "KINDS", "CollapseMap", "collapse_data",
           "collapse_map", "collapse_text", "spectrum_plot", "kl_plot", "heatmap", "check_plot",
           "sweep", "draw", "text", "save", "check_path", "require_matplotlib"]

#: file types :func:`save` writes
FORMATS = (".png", ".svg", ".pdf")
#: Okabe & Ito's colour-blind-safe palette (blue, vermillion, green, purple, orange, sky, yellow)
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442")
#: default figure size (inches) and resolution (PNG)
SIZE = (6.0, 4.0)
DPI = 150
#: the figure kinds of ``vaetheory plot`` (check results: ``vaetheory check --plot``)
KINDS = ("collapse", "spectrum", "kl", "heatmap")
#: sequential colormap of curves ordered by mode (colour-blind safe, readable on white)
_SEQUENTIAL = "viridis"
_GREY = "#9E9E9E"
#: more grid values than this are not drawn one by one (lines in a figure, columns and lines of text)
_MAX_MARKS = 20
_INSTALL = 'pip install "vaetheory[plot]"'


# ------------------------------------------------------------------------------------------
# matplotlib, lazily


def require_matplotlib():
    """``(Figure, FigureCanvasAgg)``; a one-line ResourceError naming the extra if missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ResourceError(f"drawing figures needs matplotlib, which is not installed: "
                            f"{_INSTALL} (or use --plot - / plot --text for the collapse map "
                            "in the terminal)") from None
    return Figure, FigureCanvasAgg


def _size(size, panels=1):
    """(width, height) in inches; a None entry gets the default (height: 3 per stacked panel)."""
    w, h = size if size is not None else (None, None)
    return (SIZE[0] if w is None else w,
            (SIZE[1] if panels == 1 else 3.0 * panels) if h is None else h)


def _figure(size=None, nrows=1, ncols=1, ax=None):
    """A new Agg figure with a grid of axes (or the figure of ``ax``): ``(fig, axes 2-d)``."""
    if ax is not None:
        return ax.figure, np.array([[ax]])
    Figure, Canvas = require_matplotlib()
    w, h = _size(size)
    fig = Figure(figsize=(w, h), layout="constrained")
    Canvas(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _sequential(n):
    """``n`` colours of the sequential map, dark to light (never the pale yellow end)."""
    from matplotlib import colormaps

    cmap = colormaps[_SEQUENTIAL]
    return [cmap(x) for x in (np.linspace(0.0, 0.8, n) if n > 1 else [0.0])]


# ------------------------------------------------------------------------------------------
# what a solution is about: names, titles, grid lines


def _swept(sol) -> List[str]:
    """Grid hyperparameters that take more than one value."""
    return [k for k in sol.setting.axes
            if k in sol.params and np.ptp(np.asarray(sol.params[k], dtype=float)) > 0]


def _param(sol, param):
    """The hyperparameter to draw along: given, else the first swept one with critical values."""
    param = param or report.summary_param(sol, _swept(sol))
    if param not in sol.critical:
        raise ParameterError(f"no critical values for {param} in {sol.setting.name}; choose from "
                             + ", ".join(sol.critical))
    return param


def _index(sol, index):
    return tuple(0 for _ in sol.grid_shape) if index is None else tuple(np.atleast_1d(index))


def _line(sol, index, param) -> List[Tuple[float, tuple]]:
    """Grid points that differ from ``index`` in ``param`` only, sorted by it: ``[(value, idx)]``
    (one per distinct value)."""
    shape = sol.grid_shape
    mask = np.ones(shape, dtype=bool)
    for name, arr in sol.params.items():
        if name == param:
            continue
        a = np.asarray(arr, dtype=float)
        per_dim = a.ndim > len(shape)
        a = np.broadcast_to(a, shape + a.shape[len(shape):]) if per_dim else np.broadcast_to(a, shape)
        same = a == a[index]
        mask &= same.all(axis=-1) if per_dim else same
    vals = np.broadcast_to(np.asarray(sol.params[param], dtype=float), shape)
    out = {}
    for idx in map(tuple, np.argwhere(mask)):
        out.setdefault(float(vals[idx]), idx)
    return sorted(out.items())


def _source(sol) -> str:
    info = sol.spectrum.provenance or {}
    src = str(info.get("source") or "spectrum given directly")
    if os.sep in src or "/" in src:
        src = os.path.basename(src)
    n = sol.spectrum.n_samples
    return f"{src} ({n} samples)" if n else src


def _title(sol, what="") -> str:
    """Two lines: data, model and setting; the theorem (and what is drawn)."""
    s = sol.setting
    first = f"{_source(sol)}: {s.title}, {s.variance} variance"
    return first + "\n" + (f"{what} -- " if what else "") + str(sol.theorem)


def _suptitle(fig, text):
    fig.suptitle(text, fontsize=8.5)


_NAMES = {"beta": r"$\beta$ (KL weight)", "beta1": r"$\beta_1$ (z1 consistency weight)",
          "beta2": r"$\beta_2$ (KL weight of z2)", "eta_dec": r"$\eta_{dec}$ (decoder noise std, "
          "data units)", "eta_enc": r"$\eta_{enc}$ (prior std, latent units)"}


def _axis_name(param) -> str:
    return _NAMES.get(param, param) + ", log scale"


def _others(sol, index, param) -> str:
    """The other hyperparameters at ``index`` that vary over the grid, for a subtitle."""
    others = [k for k in _swept(sol) if k != param]
    return report.point_label(sol, index, others) if others else ""


def _spectrum_axis(spectrum) -> str:
    if spectrum.kind == "residual":
        return "$e_i$: eigenvalue of the residual\ncovariance of y given x (squared units)"
    m = "Cov(x)" if spectrum.centered is not False else r"E[x x$^T$]"
    return r"$\theta_i^2$: eigenvalue of " + m + "\n(squared data units)"


# ------------------------------------------------------------------------------------------
# the collapse map: data (shared by the figure and the terminal), figure, text


@dataclass(frozen=True)
class CollapseMap:
    """What the collapse map draws, at one grid point of a solution (mode order).

    ``intervals[i]`` is the range of ``param`` (within ``xlim``) where dim ``i`` of ``latent`` is
    active, None where it never is; ``critical[i]`` is where it ends (``direction`` "below": the
    dim is active below it). ``edges`` / ``counts`` are the active-count step curve: ``counts[j]``
    dims are active for ``param`` in ``(edges[j], edges[j+1])``. ``marks`` are the grid values of
    ``param`` (the other hyperparameters as at ``index``) with the theory's active count there.
    """

    latent: str
    param: str
    direction: str
    index: tuple
    critical: np.ndarray
    intervals: Tuple[Optional[Tuple[float, float]], ...]
    xlim: Tuple[float, float]
    edges: np.ndarray
    counts: np.ndarray
    marks: Tuple[Tuple[float, int], ...]

    @property
    def never(self) -> List[int]:
        """Modes (1-based) that are never active by changing ``param`` alone."""
        return [i + 1 for i, iv in enumerate(self.intervals) if iv is None]


def _span(values, factor=3.0):
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return 0.1, 10.0
    big = np.finfo(float).max / factor  # stay finite at the ends of float64
    lo = max(float(v.min()) / factor, np.finfo(float).tiny)
    hi = float(v.max()) * factor if v.max() < big else float(v.max())
    return lo, hi


def _short_log_axis(axis, lo, hi):
    """A log axis spanning under two decades gets plain tick labels ("3", "0.6") at 1, 2, 5 x
    10^k: matplotlib's default there labels every minor tick as "3x10^0", and neighbours overlap
    (seen on a KL sweep over beta 0.5..8)."""
    from matplotlib import ticker

    if not (lo > 0 and hi > lo) or math.log10(hi / lo) >= 2.0:
        return
    plain = ticker.FuncFormatter(lambda v, _pos: f"{v:g}")
    axis.set_major_locator(ticker.LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(plain)
    axis.set_minor_locator(ticker.LogLocator(base=10.0, subs=tuple(range(1, 10))))
    axis.set_minor_formatter(ticker.NullFormatter())


def _drawable(lo, hi, what):
    """A log axis matplotlib can draw: within float64 with room for its ticks, under 200
    decades wide; else a one-line ParameterError."""
    if not (1e-290 < lo and hi < 1e290 and math.log10(hi / lo) < 200):
        raise ParameterError(f"cannot draw {what} on a log axis from {lo:.3g} to {hi:.3g}; "
                             "rescale the data or narrow the grid")
    return lo, hi


def collapse_data(solution, index=None, param=None) -> CollapseMap:
    """The collapse map of ``solution`` at grid point ``index`` (default: the first) along
    ``param`` (default: the first swept hyperparameter with critical values, else beta / beta2).

    A dim's state flips at its critical value with the others held fixed (docs/theory.md §2-§5.4),
    and no critical value of ``param`` depends on ``param`` itself, so one map covers the whole
    sweep of ``param``.
    """
    sol = solution
    param = _param(sol, param)
    index = _index(sol, index)
    latent = sol.setting.critical_latent
    direction = sol.critical_direction[param]
    below = direction == "below"
    crit = np.asarray(sol.at(index).critical[param], dtype=float)
    ok = np.isfinite(crit) & ((crit > 0) if below else True)
    line = _line(sol, index, param)
    lo, hi = _drawable(*_span(list(crit[ok]) + [v for v, _ in line]), param)
    intervals = tuple(((lo, float(c)) if below else (float(c), hi)) if good else None
                      for c, good in zip(crit, ok))
    inside = np.unique(crit[ok & (crit > lo) & (crit < hi)])
    edges = np.concatenate([[lo], inside, [hi]])
    mids = np.sqrt(edges[:-1]) * np.sqrt(edges[1:])  # geometric means, no overflow
    counts = np.array([np.count_nonzero(ok & ((crit > x) if below else (crit < x))) for x in mids])
    marks = tuple((v, sol.at(idx).active(latent)) for v, idx in line)
    return CollapseMap(latent, param, direction, index, crit, intervals, (lo, hi), edges, counts,
                       marks)


def collapse_map(solution, index=None, param=None, *, ax=None, size=None):
    """Figure: per dim of the critical latent, the range of ``param`` where it is active.

    One horizontal bar per dim that can be active (mode 1, the largest spectral value, at the
    bottom), ending at its critical value, on a log axis; the number of active dims as a step
    curve (right axis); the solution's grid values of ``param`` as dotted lines, with the theory's
    active count at each as a dot. Arguments as :func:`collapse_data`; ``ax`` draws into existing
    axes, ``size`` is (width, height) in inches.
    """
    sol = solution
    cm = collapse_data(sol, index, param)
    own = ax is None
    fig, axes = _figure(size, ax=ax)
    ax = axes[0, 0]
    d = len(cm.intervals)
    lo, hi = cm.xlim
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)  # before any artist: no autoscaling (it overflows near 1e308)
    _short_log_axis(ax.xaxis, lo, hi)
    for i, iv in enumerate(cm.intervals):
        if iv is not None:
            bar = ax.barh(i + 1, iv[1] - iv[0], left=iv[0], height=0.7, color=PALETTE[0],
                          edgecolor="none", label="_nolegend_" if i else "active range of a dim")
            bar.patches[0].set_gid(f"mode-{i + 1}")
    ax.set_ylim(-0.4, d + 0.7)  # a count of 0 stays visible below mode 1
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel(_axis_name(cm.param))
    ax.set_ylabel(f"mode i ({cm.latent} dim with the i-th largest value)", fontsize=8)
    twin = ax.twinx()
    twin.set_ylim(ax.get_ylim())
    twin.yaxis.get_major_locator().set_params(integer=True)
    twin.set_ylabel(f"active {cm.latent} dims", fontsize=8)
    twin.step(cm.edges, np.append(cm.counts, cm.counts[-1]), where="post", color="black", lw=1.2,
              label=f"active {cm.latent} dims (right axis)", gid="active-count")
    xs = [v for v, _ in cm.marks]
    if len(xs) <= _MAX_MARKS:  # a dense sweep shows as dots on the step curve only
        for v in xs:
            ax.axvline(v, color=PALETTE[1], ls=":", lw=1.0, zorder=0.5)
    twin.plot(xs, [n for _, n in cm.marks], "o", color=PALETTE[1],
              ms=4 if len(xs) <= _MAX_MARKS else 1.5, gid="grid-values",
              label="grid values (theory's count)")
    word = "below" if cm.direction == "below" else "above"
    sub = f"active {word} its critical value"
    others = _others(sol, cm.index, cm.param)
    ax.set_title(f"{cm.latent} dims vs {cm.param}: a dim is {sub}" + (f" ({others})" if others
                                                                    else ""), fontsize=8)
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    labels = handles[1] + more[1]
    hs = handles[0] + more[0]
    if cm.never:
        from matplotlib.patches import Patch

        hs.append(Patch(color="none"))
        labels.append(f"never active: {_modes_text(cm.never)}")
    twin.legend(hs, labels, fontsize=7, loc="upper right" if cm.direction == "below" else
                "upper left", framealpha=0.85)
    if own:
        _suptitle(fig, _title(sol))
    return fig


def _modes_text(modes):
    """'modes 5, 7-9' from 1-based modes."""
    runs, start = [], None
    for i, m in enumerate(modes):
        if start is None:
            start = m
        if i + 1 == len(modes) or modes[i + 1] != m + 1:
            runs.append(str(start) if start == m else f"{start}-{m}")
            start = None
    return ("mode " if len(modes) == 1 else "modes ") + ", ".join(runs)


def collapse_text(solution, index=None, param=None, width=48):
    """The collapse map as rich text (no matplotlib): one row per dim of the critical latent,
    ``█`` where it is active on a log axis of ``param``, ``│`` at the grid values, its critical
    value at the end; then the active count at each grid value. Returns a rich renderable."""
    from rich.console import Group
    from rich.text import Text

    cm = collapse_data(solution, index, param)
    lo, hi = cm.xlim
    llo, lspan = math.log(lo), math.log(hi) - math.log(lo)
    centres = np.exp(llo + (np.arange(width) + 0.5) / width * lspan)

    def col(x):
        return int(min(width - 1, max(0, math.floor((math.log(x) - llo) / lspan * width))))

    marks = {col(v) for v, _ in cm.marks} if len(cm.marks) <= _MAX_MARKS else set()
    word = "below" if cm.direction == "below" else "above"
    lines = [Text(f"collapse map: {cm.latent} dims vs {cm.param}, log scale from "
                  f"{report.fmt(lo, 3)} to {report.fmt(hi, 3)}", style="bold"),
             Text(f"█ active (a dim is active {word} its critical value), │ grid values")]
    axis = [" "] * width
    for k in range(math.ceil(math.log10(lo)), math.floor(math.log10(hi)) + 1):
        label = f"1e{k}" if abs(k) > 2 else f"{10.0 ** k:g}"
        c = col(10.0 ** k)
        if c + len(label) <= width and all(ch == " " for ch in axis[max(0, c - 1):c + len(label)]):
            axis[c:c + len(label)] = list(label)
    pad = len(str(len(cm.intervals)))
    lines.append(Text(" " * (pad + 6) + "".join(axis), style="dim"))
    for i, iv in enumerate(cm.intervals):
        row = Text(f"mode {i + 1:>{pad}} ")
        for j, x in enumerate(centres):
            on = iv is not None and iv[0] < x < iv[1]
            if j in marks:
                row.append("│", style="bold red" if on else "red")
            else:
                row.append("█" if on else "·", style="blue" if on else "dim")
        crit = cm.critical[i]
        row.append("  never" if iv is None else f"  {cm.param}* = {report.fmt(crit)}")
        lines.append(row)
    d = len(cm.intervals)
    shown = cm.marks
    if len(shown) > _MAX_MARKS:  # a dense sweep: the values where the count changes
        shown = [m for k, m in enumerate(shown) if k == 0 or m[1] != shown[k - 1][1]]
        lines.append(Text(f"{len(cm.marks)} grid values of {cm.param}; where the count changes:"))
    for v, n in shown:
        lines.append(Text(f"{cm.param} = {report.fmt(v)}: {n} of {d} {cm.latent} dims active"))
    return Group(*lines)


# ------------------------------------------------------------------------------------------
# the spectrum against its water line


def _spread(sol, n=8) -> List[tuple]:
    """Up to ``n`` grid points, evenly spaced in C order (all when there are fewer)."""
    pts = report.grid_indices(sol)
    if len(pts) <= n:
        return pts
    return [pts[int(round(k))] for k in np.linspace(0, len(pts) - 1, n)]


def spectrum_plot(solution, indices=None, *, ax=None, size=None, max_modes=None):
    """Figure: the eigenvalues as bars (log axis) with the level each dim is compared against.

    The level (:attr:`Point.water_line`, from the setting's theorem: ``beta eta_dec^2`` for a
    learnable variance, ``beta (eta_dec/eta_enc)^2 sigma'_i^2`` for a fixed one, the hierarchical
    branch point of §5.4 for z2) is drawn for every grid point in ``indices`` (default: up to 8
    spread over the grid), dark to light. A bar is coloured like the highest line it clears: the
    dim survives at that point and at every point with a lower line; grey bars are collapsed at
    every drawn point; outlined bars lie beyond what the latent can carry. ``max_modes`` caps the
    bars (default ``max(2 d, d + 8)``, at most the rank).
    """
    sol = solution
    idxs = [tuple(i) for i in indices] if indices is not None else _spread(sol)
    waters = [sol.at(i).water_line for i in idxs]
    latent = waters[0].latent
    d = sol.latent_dims[latent]
    spec = sol.spectrum
    m = min(spec.rank, max_modes or max(2 * d, d + 8))
    m = max(m, min(d, spec.rank))
    vals = spec.eigenvalues[:m]
    order = np.argsort([np.nanmean(np.where(np.isfinite(w.level), w.level, np.nan))
                        if np.any(np.isfinite(w.level)) else -np.inf for w in waters])
    colours = [None] * len(waters)
    for rank_, k in enumerate(order):
        colours[k] = _sequential(len(waters))[rank_] if len(waters) > 1 else PALETTE[0]
    own = ax is None
    fig, axes = _figure(size, ax=ax)
    ax = axes[0, 0]
    x = np.arange(1, m + 1)
    faces, edges = [], []
    for i in range(m):
        carried = i < d and any(np.isfinite(w.level[i]) or w.level[i] < 0 for w in waters)
        if not carried:
            faces.append("none")
            edges.append(_GREY)
            continue
        best = None
        for k, w in enumerate(waters):
            if w.active[i] and (best is None or w.level[i] > waters[best].level[i]):
                best = k
        faces.append(_GREY if best is None else colours[best])
        edges.append("none")
    levels = [np.where(np.isfinite(w.level), w.level, np.nan)[:m] for w in waters]
    shown = np.concatenate([vals[vals > 0]] + [lv[np.isfinite(lv) & (lv > 0)] for lv in levels])
    low, high = (float(shown.min()), float(shown.max())) if shown.size else (1.0, 10.0)
    _drawable(low / 3.0, high * 3.0, "the spectrum")
    ax.set_yscale("log")
    ax.set_ylim(low / 3.0, high * 3.0)  # before any artist
    ax.set_xlim(0.3, m + 0.7)
    bars = ax.bar(x, vals, width=0.8, color=faces, edgecolor=edges, linewidth=0.6)
    for i, b in enumerate(bars.patches):
        b.set_gid(f"mode-{i + 1}")
    labels_seen = False
    for k, (w, idx) in enumerate(zip(waters, idxs)):
        lev = levels[k]
        xs = np.repeat(np.arange(len(lev)) + 1.0, 2) + np.tile([-0.5, 0.5], len(lev))
        label = f"{w.formula} at {report.point_label(sol, idx, _swept(sol))}"
        if np.all(np.isnan(lev)):
            label += f" (every paired {latent} dim active)" if np.any(w.level == -np.inf) else ""
        ax.plot(xs, np.repeat(lev, 2), color=colours[k], lw=1.4, label=label, gid=f"water-{k}")
        labels_seen = True
    ax.set_xlabel("mode i (i-th largest eigenvalue)")
    ax.set_ylabel(_spectrum_axis(spec), fontsize=8)
    zero = d - min(d, spec.rank)
    note = f"; modes {spec.rank + 1}-{d}: value 0" if zero > 0 else ""
    ax.set_title(f"colour: survives up to that line; grey: collapsed at every line; "
                 f"outline: not carried by a {latent} dim{note}", fontsize=7.5)
    if labels_seen:
        ax.legend(fontsize=7, loc="upper right", framealpha=0.85,
                  title=f"water line ({w.section})", title_fontsize=7)
    if own:
        _suptitle(fig, _title(sol))
    return fig


# ------------------------------------------------------------------------------------------
# re-solving on a finer grid (library calls only)


def _solve_like(sol, **hyper):
    dims = [sol.latent_dims[z.name] for z in sol.setting.latents]
    return sol.setting.solve(sol.spectrum, dims[0], dims[1] if len(dims) > 1 else None, **hyper)


def sweep(solution, param, values=None, index=None, n=200):
    """The solution's setting and spectrum re-solved with ``param`` over ``values``, the other
    hyperparameters as at grid point ``index``: a 1-d grid. Default ``values``: ``n`` log-spaced
    values spanning the solution's own values of ``param`` and the critical values at ``index``
    (a factor 3 beyond), plus the solution's values themselves."""
    sol = solution
    index = _index(sol, index)
    hyper = sol.at(index).hyper
    if values is None:
        own = [v for v, _ in _line(sol, index, param)]
        crit = sol.at(index).critical.get(param, np.array([]))
        lo, hi = (min(own), max(own)) if len(own) > 1 else _span(list(crit) + own)
        values = np.unique(np.concatenate([np.geomspace(lo, hi, n), own]))
    hyper[param] = np.asarray(values, dtype=float)
    return _solve_like(sol, **hyper)


# ------------------------------------------------------------------------------------------
# KL per dim at the optimum across a sweep


def _kl_of(sol):
    kl = getattr(sol, "kl", None)
    if kl is None:
        raise ParameterError("this version of vaetheory has no per-dim KL at the optimum "
                             "(Solution.kl): the KL plot needs it")
    return kl


def kl_plot(solution, param=None, index=None, *, marks=None, ax=None, size=None):
    """Figure: per-dim KL at the optimum (nats, ``Solution.kl``, mode order) across the
    solution's values of ``param`` (the other hyperparameters as at ``index``), one curve per
    dim of the critical latent, dark (mode 1) to light; the total rate of that latent on the
    right axis; each dim's critical value dashed in its colour. ``marks``: values of ``param``
    to mark on the total (e.g. the user's grid when ``solution`` is a :func:`sweep`).
    """
    sol = solution
    kl = _kl_of(sol)
    param = _param(sol, param)
    index = _index(sol, index)
    latent = sol.setting.critical_latent
    if latent not in kl:
        latent = next(iter(kl))
    line = _line(sol, index, param)
    if len(line) < 2:
        raise ParameterError(f"the KL plot needs a sweep of {param}: at least two values "
                             f"(e.g. --{param.replace('_', '-')} log:0.1:100:50)")
    xs = np.array([v for v, _ in line])
    ys = np.array([np.asarray(kl[latent])[idx] for _, idx in line])
    d = ys.shape[1]
    own = ax is None
    fig, axes = _figure(size, ax=ax)
    ax = axes[0, 0]
    colours = _sequential(d)
    crit = np.asarray(sol.at(index).critical[param], dtype=float)
    labelled = False  # the legend names the dashed lines once, whichever dim's is drawn first
    for i in range(d):
        ax.plot(xs, ys[:, i], color=colours[i], lw=1.0, gid=f"kl-{i + 1}",
                label="KL of one dim (mode 1 dark)" if i == 0 else "_nolegend_")
        c = crit[i] if i < crit.size else np.nan
        if np.isfinite(c) and xs[0] < c < xs[-1]:
            ax.axvline(c, color=colours[i], ls="--", lw=0.7, gid=f"threshold-{i + 1}",
                       label="_nolegend_" if labelled else "critical value of a dim")
            labelled = True
    ax.set_xscale("log")
    ax.set_xlim(xs[0], xs[-1])
    _short_log_axis(ax.xaxis, xs[0], xs[-1])
    ax.set_ylim(bottom=0)
    ax.set_xlabel(_axis_name(param))
    ax.set_ylabel(f"KL per {latent} dim (nats)")
    twin = ax.twinx()
    total = ys.sum(axis=1)
    twin.plot(xs, total, color="black", lw=1.8, gid="total", label=f"total rate of {latent} "
              "(right axis)")
    if marks is not None:
        mk = [(v, float(np.interp(v, xs, total))) for v in np.atleast_1d(marks)]
        twin.plot([a for a, _ in mk], [b for _, b in mk], "o", color=PALETTE[1], ms=4,
                  gid="marks", label="grid values")
    twin.set_ylim(bottom=0)
    twin.set_ylabel(f"total rate of {latent} (nats)")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = twin.get_legend_handles_labels()
    twin.legend(h1 + h2, l1 + l2, fontsize=7, framealpha=0.85)
    others = _others(sol, index, param)
    ax.set_title(f"KL of each {latent} dim at the optimum vs {param}" + (f" ({others})"
                                                                          if others else ""),
                 fontsize=8)
    if own:
        _suptitle(fig, _title(sol))
    return fig


# ------------------------------------------------------------------------------------------
# the hierarchical VAE over (beta1, beta2)


def _edges(v):
    """Cell edges of log-spaced centres ``v`` (geometric midpoints, ends mirrored)."""
    lv = np.log(v)
    mid = 0.5 * (lv[1:] + lv[:-1])
    return np.exp(np.concatenate([[2 * lv[0] - mid[0]], mid, [2 * lv[-1] - mid[-1]]]))


def heatmap(solution, index=None, *, n=120, ax=None, size=None):
    """Figure: collapsed dims of the critical latent (z2) over a (beta1, beta2) grid.

    The setting is re-solved on ``n x n`` log-spaced (beta1, beta2) values spanning the
    solution's own values and the critical values at ``index`` (other hyperparameters as there);
    each cell is the theory's count there (exact for a learnable Sigma2; ``d2 - rank U2``, the
    most that can have a zero mean, for a fixed one: docs/theory.md §5.4). The boundaries are the
    theory's critical ``beta2`` of each z2 dim as a function of ``beta1`` (§5.4:
    ``beta2*_i = max(beta1 sigma1^2, sqrt(beta1) sigma1 theta_i) / n2``); the solution's own grid
    points are dots.
    """
    sol = solution
    if "beta1" not in sol.critical or "beta2" not in sol.critical:
        raise ParameterError(f"the heatmap is over (beta1, beta2): {sol.setting.name} has no "
                             "such thresholds (use --model mhvae)")
    index = _index(sol, index)
    latent = sol.setting.critical_latent
    pt = sol.at(index)
    given = {p: [v for v, _ in _line(sol, index, p)] for p in ("beta1", "beta2")}
    b1 = np.geomspace(*_drawable(*_span(list(pt.critical["beta1"]) + given["beta1"], 4.0),
                                 "beta1"), n)
    b2 = np.geomspace(*_drawable(*_span(list(pt.critical["beta2"]) + given["beta2"], 4.0),
                                 "beta2"), n)
    hyper = pt.hyper
    hyper.update(beta1=b1[:, None], beta2=b2[None, :])
    grid = _solve_like(sol, **hyper)
    counts = np.asarray(grid.collapsed_max[latent])  # (n1, n2); = min where exact
    hyper.update(beta1=np.geomspace(b1[0], b1[-1], 400), beta2=pt.hyper["beta2"])
    along = _solve_like(sol, **hyper)
    bounds = np.asarray(along.critical["beta2"])  # (400, d2)
    own = ax is None
    fig, axes = _figure(size, ax=ax)
    ax = axes[0, 0]
    d = sol.latent_dims[latent]
    from matplotlib import colormaps
    from matplotlib.colors import BoundaryNorm

    cmap = colormaps["cividis"].resampled(d + 1)
    norm = BoundaryNorm(np.arange(-0.5, d + 1.5), d + 1)
    mesh = ax.pcolormesh(_edges(b1), _edges(b2), counts.T, cmap=cmap, norm=norm,
                         shading="flat", gid="counts", rasterized=True)  # SVG/PDF: an image
    b1f = np.geomspace(b1[0], b1[-1], 400)
    drawn = 0
    for i in range(bounds.shape[1]):
        y = bounds[:, i]
        if np.all(~np.isfinite(y)):
            continue
        ax.plot(b1f, y, color="black", lw=0.7, alpha=0.8, gid=f"boundary-{i + 1}",
                label="theory's boundary (a z2 dim switches)" if drawn == 0 else "_nolegend_")
        drawn += 1
    p1 = np.broadcast_to(np.asarray(sol.params["beta1"], dtype=float), sol.grid_shape)
    p2 = np.broadcast_to(np.asarray(sol.params["beta2"], dtype=float), sol.grid_shape)
    ax.plot(p1.ravel(), p2.ravel(), "o", mfc=PALETTE[1], mec="white", ms=5, gid="grid-values",
            label="grid values")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(_edges(b1)[0], _edges(b1)[-1])
    ax.set_ylim(_edges(b2)[0], _edges(b2)[-1])
    ax.set_xlabel(_axis_name("beta1"))
    ax.set_ylabel(_axis_name("beta2"))
    exact = sol.exact[latent]
    what = (f"collapsed {latent} dims (posterior = prior)" if exact else
            f"inactive {latent} dims (d2 - rank U2)")
    cb = fig.colorbar(mesh, ax=ax, ticks=range(d + 1) if d <= 16 else None)
    cb.set_label(what, fontsize=8)
    others = [k for k in _swept(sol) if k not in ("beta1", "beta2")]
    at = f" at {report.point_label(sol, index, others)}" if others else ""
    ax.set_title(f"{what} over (beta1, beta2){at}", fontsize=8)
    ax.legend(fontsize=7, loc="lower right", framealpha=0.85)
    if own:
        _suptitle(fig, _title(sol))
    return fig


# ------------------------------------------------------------------------------------------
# check results


def _normalise_checks(solutions, results):
    """``[(Point, result)]`` from one Solution or a list, and results aligned with their points
    (C order, solution after solution) or ``(index, result)`` pairs (:func:`checker.check_points`)."""
    sols = [solutions] if not isinstance(solutions, (list, tuple)) else list(solutions)
    results = list(results)
    if results and isinstance(results[0], tuple) and len(sols) == 1:
        return [(sols[0].at(idx), r) for idx, r in results]
    pts = [p for s in sols for p in s.points()]
    if len(pts) != len(results):
        raise ParameterError(f"{len(results)} check results for {len(pts)} grid points")
    return list(zip(pts, results))


def _is_sgd(result):
    return hasattr(result, "loss_history")


def _verdict(result):
    if _is_sgd(result):
        return str(report.check_dict(result, "sgd")["verdict"])
    return str(result.verdict)


def _found_sv(result):
    return (result.singular_values if _is_sgd(result)
            else result.learned.get("singular_values", {}))


def _point_name(pt, swept, several_dims):
    return report.point_label(pt.solution, pt.index, swept, several_dims)


def check_plot(solutions, results, *, size=None, max_points=8):
    """Figure of check results: predicted vs found singular values per map and grid point, the
    verdicts in the title.

    ``solutions``: the checked Solution (or a list, one per latent dim); ``results``: the
    :class:`~vaetheory.checker.CheckResult` or :class:`~vaetheory.sgd.SGDResult` of every grid
    point (C order), or the ``(index, result)`` pairs of :func:`vaetheory.checker.check_points`.
    For stochastic training the figure also shows the training curve (per-epoch sampled loss,
    the closed-form optimum dashed) and the per-dim KL reached against the prediction
    (``Solution.kl`` where the library has it; the predicted number of collapsed dims otherwise).
    At most ``max_points`` points are drawn (evenly spread).
    """
    pairs = _normalise_checks(solutions, results)
    if not pairs:
        raise ParameterError("no check results to draw")
    verdicts = [_verdict(r) for _, r in pairs]
    worst = Verdict.worst(verdicts)
    if len(pairs) > max_points:
        keep = {int(round(k)) for k in np.linspace(0, len(pairs) - 1, max_points)}
        pairs = [p for k, p in enumerate(pairs) if k in keep]
    sol0 = pairs[0][0].solution
    sgd = _is_sgd(pairs[0][1])
    maps = list(sol0.setting.map_names)
    several = len({id(p.solution) for p, _ in pairs}) > 1
    swept = _swept(sol0)
    colours = [PALETTE[k % len(PALETTE)] for k in range(len(pairs))]
    n_sv = len(maps)
    panels = n_sv + (2 if sgd else 0)
    ncols = 2 if panels > 1 else 1
    nrows = math.ceil(panels / ncols)
    w, h = _size(size)
    fig, axes = _figure((w, h if size is not None and size[1] is not None else max(h, 2.2 * nrows)),
                        nrows, ncols)
    flat = list(axes.ravel())
    k = 0
    if sgd:
        _training_panel(flat[0], pairs, colours, swept, several)
        _kl_panel(flat[1], pairs, colours, swept, several)
        k = 2
    for m in maps:
        ax = flat[k]
        k += 1
        for c, (pt, res) in zip(colours, pairs):
            want = np.sort(np.asarray(pt.singular_values[m], dtype=float))[::-1]
            got = np.sort(np.asarray(_found_sv(res).get(m, []), dtype=float))[::-1]
            x = np.arange(1, want.size + 1)
            ax.plot(x, want, "o-", mfc="none", color=c, ms=4, lw=0.8, gid=f"predicted-{m}",
                    label=_point_name(pt, swept, several))
            ax.plot(np.arange(1, got.size + 1), got, "x", color=c, ms=5, gid=f"found-{m}",
                    label="found" if len(pairs) == 1 else "_nolegend_")
        ax.set_title(f"{m}", fontsize=8)
        ax.set_xlabel("index (sorted descending)", fontsize=7)
        ax.set_ylabel("singular value", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if k == (3 if sgd else 1):
            ax.legend(fontsize=6, framealpha=0.85, title="o predicted, x found",
                      title_fontsize=6)
    for ax in flat[k:]:
        ax.set_visible(False)
    counts = {v: verdicts.count(v) for v in dict.fromkeys(verdicts)}
    summary = ", ".join(f"{v} at {n}/{len(verdicts)}" for v, n in counts.items())
    mode = "stochastic training" if sgd else "exact checker"
    head = f"{mode}: {summary} points" + ("" if len(counts) == 1 else f" (worst: {worst})")
    _suptitle(fig, head + "\n" + _title(sol0))
    return fig


def _training_panel(ax, pairs, colours, swept, several):
    lows, highs = [], []
    for c, (pt, res) in zip(colours, pairs):
        hist = np.asarray(res.loss_history, dtype=float)
        ax.plot(np.arange(1, hist.size + 1), hist, color=c, lw=1.0, gid="training",
                label=_point_name(pt, swept, several))
        if res.optimal_loss is not None:
            ax.axhline(res.optimal_loss, color=c, ls="--", lw=0.8, gid="optimum")
        tail = hist[min(max(1, hist.size // 10), hist.size - 1):]
        lows.append(min(float(tail.min()), res.optimal_loss if res.optimal_loss is not None
                        else np.inf))
        highs.append(float(tail.max()))
    lo, hi = min(lows), max(highs)
    pad = 0.1 * (hi - lo) if hi > lo else 0.05 * max(1.0, abs(hi))
    ax.set_ylim(lo - pad, hi + pad)  # the first epochs may run off the top
    ax.set_title("training (loss per epoch; dashed: optimum)", fontsize=7.5)
    ax.set_xlabel("epoch", fontsize=7)
    ax.set_ylabel("loss (docs/theory.md §1)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, framealpha=0.85)


def _kl_panel(ax, pairs, colours, swept, several, floor=1e-6):
    """Learned per-dim KL (sorted descending, nats) against the prediction."""
    latent_used = None
    for c, (pt, res) in zip(colours, pairs):
        setting = pt.solution.setting
        latent = setting.critical_latent if setting.critical_latent in res.kl else next(iter(res.kl))
        latent_used = latent
        got = np.sort(np.asarray(res.kl[latent], dtype=float))[::-1]
        x = np.arange(1, got.size + 1)
        ax.plot(x, np.maximum(got, floor), "x", color=c, ms=5, gid="kl-found")
        kl = getattr(pt.solution, "kl", None)
        if kl is not None and latent in kl:
            want = np.sort(np.asarray(kl[latent], dtype=float)[pt.index])[::-1]
            ax.plot(x[:want.size], np.maximum(want, floor), "o-", mfc="none", color=c, ms=4,
                    lw=0.8, gid="kl-predicted")
        else:  # the prediction of the count: the first (d - collapsed) dims active
            lo, hi = pt.collapsed_range(latent)
            active = got.size - hi
            ax.axvspan(active + 0.5, got.size + 0.5, color=c, alpha=0.12, gid="kl-predicted",
                       label=f"predicted collapsed: {lo}" + ("" if lo == hi else f"-{hi}"))
    thr = float(getattr(pairs[0][1], "kl_threshold", 0.01))
    ax.axhline(thr, color="black", ls=":", lw=0.8, label=f"collapse threshold {thr:g} nats")
    ax.set_yscale("log")
    ax.set_title(f"KL per {latent_used} dim (x learned, o predicted)", fontsize=7.5)
    ax.set_xlabel("dim (sorted by KL)", fontsize=7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("KL (nats)", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, framealpha=0.85)


# ------------------------------------------------------------------------------------------
# one call for the command line: a kind, one Solution per latent dim


def _dims_label(sol):
    return ", ".join(f"{k}={v}" for k, v in sol.latent_dims.items())


def _draw_one(kind, sol, param, ax=None, size=None):
    if kind == "collapse":
        return collapse_map(sol, param=param, ax=ax, size=size)
    if kind == "spectrum":
        return spectrum_plot(sol, ax=ax, size=size)
    if kind == "heatmap":
        return heatmap(sol, ax=ax, size=size)
    if kind == "kl":
        _kl_of(sol)  # before re-solving: say what is missing
        param = _param(sol, param)
        marks = [v for v, _ in _line(sol, _index(sol, None), param)]
        return kl_plot(sweep(sol, param), param, marks=marks, ax=ax, size=size)
    raise ParameterError(f"unknown figure kind {kind!r}; use " + ", ".join(KINDS + ("check",)))


def draw(kind, solutions, *, param=None, results=None, size=None):
    """The figure ``kind`` (:data:`KINDS`, or ``"check"`` with ``results``) of one Solution or a
    list (one per latent dim: one panel each, stacked). ``param``: the hyperparameter along the
    x axis (collapse, kl); the KL plot re-solves the setting on a fine grid (:func:`sweep`) and
    marks the solution's own values. ``size``: the whole figure (inches)."""
    sols = list(solutions) if isinstance(solutions, (list, tuple)) else [solutions]
    if kind == "check":
        return check_plot(sols, results, size=size)
    if len(sols) == 1:
        return _draw_one(kind, sols[0], param, size=size)
    fig, axes = _figure(_size(size, len(sols)), len(sols), 1)
    for ax, sol in zip(axes[:, 0], sols):
        _draw_one(kind, sol, param, ax=ax)
        ax.set_title(f"[{_dims_label(sol)}] " + ax.get_title(), fontsize=7.5)
    _suptitle(fig, _title(sols[0]))
    return fig


def text(solutions, param=None, width=48):
    """The collapse map of one Solution or a list (one per latent dim) as rich text."""
    from rich.console import Group
    from rich.text import Text

    sols = list(solutions) if isinstance(solutions, (list, tuple)) else [solutions]
    parts = []
    for sol in sols:
        if len(sols) > 1:
            parts.append(Text(f"[{_dims_label(sol)}]", style="bold"))
        parts.append(collapse_text(sol, param=param, width=width))
    return Group(*parts)


# ------------------------------------------------------------------------------------------
# files


def check_path(path, *, force=False, inputs=(), flag="-o"):
    """Refuse a figure file that would overwrite something the user gave: a suffix not in
    :data:`FORMATS`, an input file, a directory, an existing file (unless ``force``), a missing
    parent directory. Raises :class:`ParameterError` with a one-line message."""
    return output_path(flag, path, FORMATS, force=force, inputs=inputs)


def save(fig, path, *, force=False, dpi=None):
    """Write ``fig`` to ``path`` (.png, .svg or .pdf, by its suffix); never replaces an existing
    file unless ``force``. Write failures raise a one-line :class:`ResourceError`."""
    check_path(path, force=force, flag="figure")
    fmt = os.path.splitext(str(path))[1].lower()[1:]
    try:
        # matplotlib's log tick locator overflows to inf (and drops those ticks) on axes near
        # the ends of float64: not the user's concern
        with open(path, "wb" if force else "xb") as fh, np.errstate(over="ignore"):
            fig.savefig(fh, format=fmt, dpi=dpi or DPI)
    except FileExistsError:
        raise ParameterError(f"figure {str(path)!r} exists; refusing to overwrite it") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise ResourceError(f"could not write the figure {str(path)!r}: "
                            f"{exc.strerror or exc}") from None
    return str(path)


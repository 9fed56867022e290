"""Command line: ``vaetheory predict | thresholds | spectrum | check | audit | plot | demo``.

Thin by design: option values are parsed by Click parameter types (:class:`HyperValues`,
:class:`LatentDims`, :class:`ImageShapeType`), the cross-option rules turn
them into a :class:`~vaetheory.io.Selection` (what to read) and a
:class:`~vaetheory.settings.Request` (setting, latent dims, hyperparameter grid), and the commands
call the library (:func:`vaetheory.moments.load_spectrum`, :meth:`Request.solve`,
:mod:`vaetheory.checker`, :mod:`vaetheory.sgd`) and render with :mod:`vaetheory.report` (tables)
and :mod:`vaetheory.plot` (figures). No data pipeline and no prediction is computed here.

Exit codes: 0 ok (``check``: CONFIRMED; ``audit``: AT OPTIMUM); 3 REFUTED; 4 INCONCLUSIVE;
5 NEAR, 6 FAR (``audit``); 2 usage (bad option values,
non-positive hyperparameters, latent dim < 1, unknown model, settings the theory does not cover);
1 data (missing/unreadable file, NaN/inf, mismatched rows, too few samples) or resources (memory,
disk); 70 an internal error (a bug: the message says so); 130 interrupted. Errors are one line on
stderr starting with ``error:``; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Optional

import click
import numpy as np

from . import io as vio
from . import plot as vplot
from . import report
from . import settings as vs
from ._grid import MAX_GRID_POINTS, parse_ints, parse_values, parse_vector
from ._validation import output_path
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, NotCoveredError, ParameterError,
                     VaetheoryError)
from .moments import load_spectrum

__all__ = ["main", "model_options", "data_options", "Options", "parse_options"]

#: files larger than this get a progress bar (stderr, interactive, not under --json)
PROGRESS_BYTES = 4 << 20

#: options that select the data of a conditional model (x and y), and of the others
_PAIR_OPTIONS = ("y", "y_key", "x_cols", "y_cols", "quadrant", "image_shape")
_DATA_OPTIONS = ("key", "cols") + _PAIR_OPTIONS
#: options that may not apply to a model, in the order a message lists them
_MODEL_SPECIFIC = _PAIR_OPTIONS + ("beta1", "beta2", "sigma1", "sigma2", "latent_dim2", "beta",
                                   "sigma", "cols")
_HYPER_OPTIONS = ("beta", "beta1", "beta2", "eta_enc", "eta_dec", "sigma", "sigma1", "sigma2")


def _flag(name):
    return "--" + name.replace("_", "-")


# ------------------------------------------------------------------------------------------
# errors: one line on stderr and an exit code


def _one_line(text):
    return " ".join(str(text).split())


class _Main(click.Group):
    """Click group whose errors are one ``error: ...`` line and an exit code, no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        try:
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else self.get_help(click.Context(self)))
            raise SystemExit(0)
        except BrokenPipeError:
            _quiet_pipes()
            raise SystemExit(1)
        except (click.ClickException, click.Abort, KeyboardInterrupt, Exception) as exc:
            code, msg = _error(exc)
            if debug:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            click.echo("error: " + _one_line(msg), err=True)
            raise SystemExit(code)
        if not standalone_mode:
            return rv
        raise SystemExit(rv if isinstance(rv, int) else 0)


def _error(exc):
    """(exit code, message) of an exception that ends the command."""
    if isinstance(exc, click.ClickException):
        msg = exc.format_message()
        if (isinstance(exc, click.UsageError) and not isinstance(exc, _OptionError)
                and exc.ctx is not None):
            msg = f"{msg.rstrip('.')} (see '{exc.ctx.command_path} --help')"
        return exc.exit_code, msg
    if isinstance(exc, click.Abort):
        if isinstance(exc.__cause__, KeyboardInterrupt):
            return EXIT_INTERRUPTED, "interrupted"
        return 1, "aborted"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, VaetheoryError):  # usage (2), data or resources (1): the error says
        return exc.exit_code, exc.cli_message.replace("center=False", "--no-center")
    if isinstance(exc, MemoryError):
        return 1, ("not enough memory for this run (" + (str(exc) or "MemoryError") + "); use a "
                   "smaller grid, fewer latent dims or fewer columns")
    # a bug: say what, on one line, and that it is one
    return EXIT_INTERNAL, (f"internal error: {type(exc).__name__}: {exc} -- this is a bug in "
                           "vaetheory; rerun with --debug for the traceback and please report it")


def _quiet_pipes():
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class _OptionError(click.UsageError):
    """A usage error whose message already says what to do (no '--help' hint added)."""


def _usage(msg):
    return _OptionError(msg)


def _debug_option(f):
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True,
                        help="Show the traceback of an error.")(f)


# ------------------------------------------------------------------------------------------
# option types: each value is parsed and checked where Click reads it


class HyperValues(click.ParamType):
    """Hyperparameter values, parsed by ``parse`` and checked against the setting constraints:
    :data:`GRID` (one number, a comma list, ``a:b:n`` or ``log:a:b:n``: a grid axis) and
    :data:`VECTOR` (one value = isotropic, or a comma list with one per latent dim)."""

    def __init__(self, parse, name):
        self.parse, self.name = parse, name

    def convert(self, value, param, ctx):
        if isinstance(value, np.ndarray):
            return value
        flag = param.opts[0] if param is not None else "value"
        values = self.parse(value, flag)
        vs.check_value(param.name if param is not None else "beta", values, label=flag)
        return values


class LatentDims(click.ParamType):
    """Latent dims: whole numbers >= 1, in the same syntax (duplicates dropped)."""

    name = "dims"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        flag = param.opts[0] if param is not None else "--latent-dim"
        dims = parse_ints(value, flag)
        bad = [d for d in dims if d < 1]
        if bad:
            raise ParameterError(f"{flag} must be an integer >= 1, got {bad[0]}")
        return dims


class ImageShapeType(click.ParamType):
    """``HxW`` or ``HxWxC``."""

    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        return vio.parse_image_shape(value)


GRID = HyperValues(parse_values, "values")
VECTOR = HyperValues(parse_vector, "vector")
DIMS = LatentDims()


# ------------------------------------------------------------------------------------------
# options


def data_options(f):
    """Model choice, centring and the data-selection options (files, columns, quadrants, --key)."""
    decorators = [
        click.option("--model", "-m", type=click.Choice(vs.MODELS), default="vae",
                     show_default=True,
                     help="vae (standard), cvae (conditional: y given x), mhvae (two latents)."),
        click.option("--center/--no-center", default=True, show_default=True,
                     help="Centre the data (covariances; = a model with encoder and decoder "
                          "biases) or use raw second moments (the bias-free model)."),
        click.option("--key", default=None, metavar="NAME",
                     help="Array name inside an .npz DATA file (CVAE default: 'x' and 'y')."),
        click.option("--cols", default=None, metavar="SEL",
                     help="vae/mhvae: use only these columns of DATA, 0-based, end excluded "
                          "(e.g. '0:64' or ':-1' to drop a trailing label column)."),
        click.option("--y", "y", default=None, metavar="FILE",
                     help="cvae: the output y from this file (rows paired with DATA = x)."),
        click.option("--y-key", default=None, metavar="NAME",
                     help="cvae: array name of y inside an .npz (--y FILE, or DATA itself)."),
        click.option("--x-cols", default=None, metavar="SEL",
                     help="cvae: columns of DATA that are the condition x (default with "
                          "--y-cols: the other columns)."),
        click.option("--y-cols", default=None, metavar="SEL",
                     help="cvae: columns that are the output y (default with --x-cols: the "
                          "other columns)."),
        click.option("--quadrant", default=None,
                     type=click.Choice(vio.QUADRANTS, case_sensitive=False),
                     help="cvae on images: this quadrant is x, the other three are y "
                          "(the paper's task)."),
        click.option("--image-shape", default=None, metavar="HxW", type=ImageShapeType(),
                     help="cvae with --quadrant: image shape, e.g. 28x28 or 32x32x3 (default: "
                          "square images inferred from the column count)."),
    ]
    for deco in reversed(decorators):
        f = deco(f)
    return f


def model_options(f):
    """:func:`data_options` plus variance, hyperparameters (grids) and latent dims."""
    grid_help = "One value, a comma list, a:b:n (linear) or log:a:b:n (log-spaced); lists form a grid."
    decorators = [
        click.option("--variance", type=click.Choice(vs.ALL_VARIANCES), default=None,
                     help="Encoder variance: learnable or fixed (vae/cvae; default fixed iff "
                          "--sigma is given); mhvae: sigma2-learnable or sigma2-fixed (default "
                          "sigma2-fixed iff --sigma2 is given), or both-learnable (Sigma1 learned "
                          "too: no closed form, `vaetheory check` only)."),
        click.option("--latent-dim", "-d", default=None, metavar="D", type=DIMS,
                     help="Latent dimension (mhvae: of z1); a list gives one result per value."),
        click.option("--latent-dim2", default=None, metavar="D2", type=DIMS,
                     help="mhvae: dimension of z2 (default: --latent-dim)."),
        click.option("--beta", "-b", default=None, metavar="VALUES", type=GRID,
                     help="KL weight (vae/cvae), default 1. " + grid_help),
        click.option("--beta1", default=None, metavar="VALUES", type=GRID,
                     help="mhvae: weight of the z1 consistency term, default 1. " + grid_help),
        click.option("--beta2", default=None, metavar="VALUES", type=GRID,
                     help="mhvae: KL weight of z2, default 1. " + grid_help),
        click.option("--eta-enc", default=None, metavar="VALUES", type=GRID,
                     help="Prior std eta_enc, default 1. " + grid_help),
        click.option("--eta-dec", default=None, metavar="VALUES", type=GRID,
                     help="Decoder noise std eta_dec, default 1. " + grid_help),
        click.option("--sigma", default=None, metavar="S", type=VECTOR,
                     help="vae/cvae fixed variance: encoder std, one value (isotropic) or a comma "
                          "list with one per latent dim."),
        click.option("--sigma1", default=None, metavar="S", type=VECTOR,
                     help="mhvae: fixed std of z1 given x, default 1 (one value: isotropic; a "
                          "list with distinct values has no closed form: `vaetheory check`)."),
        click.option("--sigma2", default=None, metavar="S", type=VECTOR,
                     help="mhvae: fixed isotropic std of z2 given z1 (omit: Sigma2 learnable)."),
    ]
    f = data_options(f)
    for deco in reversed(decorators):
        f = deco(f)
    return f


def _output_options(f):
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document to stdout (schema: README).")(f)


#: the largest figure (pixels) --width/--height/--dpi may ask for
MAX_FIGURE_PIXELS = 40_000_000


def _figure_options(plot_flag=True, force_flag=True):
    """``--plot FIG`` (with ``plot_flag``), ``--width/--height/--dpi`` and ``--force`` (with
    ``force_flag``) of a figure; the figure is drawn by :mod:`vaetheory.plot`."""
    def deco(f):
        opts = []
        if plot_flag:
            opts.append(click.option(
                "--plot", "plot_to", default=None, metavar="FIG|-",
                help="Also draw this command's figure into FIG (.png, .svg or .pdf; needs "
                     'matplotlib: pip install "vaetheory[plot]"); "-" draws the collapse map '
                     "in the terminal instead."))
        opts += [
            click.option("--width", type=click.FloatRange(min=1, max=50), default=None,
                         metavar="IN", help="Figure width in inches (default 6)."),
            click.option("--height", type=click.FloatRange(min=1, max=50), default=None,
                         metavar="IN", help="Figure height in inches (default 4; 3 per panel "
                                            "with several latent dims)."),
            click.option("--dpi", type=click.IntRange(min=20, max=1200), default=None,
                         help="Resolution of a PNG figure, dots per inch (default 150)."),
        ]
        if force_flag:
            opts.append(click.option("--force", is_flag=True,
                                     help="Let --plot replace an existing file."))
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


@dataclass
class _FigurePlan:
    """Where a figure goes (``path`` None: the terminal), its size (inches) and resolution."""

    path: Optional[str]
    size: Optional[tuple]
    dpi: Optional[int]
    force: bool


def _plan_figure(path, kw, force, as_json, inputs, flag="--plot") -> Optional[_FigurePlan]:
    """Check the figure options before any work (pops width/height/dpi from ``kw``): the file
    must be new (or ``--force``) and not an input, matplotlib must be there; ``-`` is the
    terminal."""
    width, height, dpi = (kw.pop(k, None) for k in ("width", "height", "dpi"))
    if path is None:
        if any(v is not None for v in (width, height, dpi)):
            raise _usage(f"--width/--height/--dpi size the figure of {flag} FIG; give {flag} too")
        return None
    size = None if width is None and height is None else (width, height)
    if path == "-":
        if as_json:
            raise _usage(f"{flag} - draws the collapse map on stdout, which --json needs for "
                         f"the document; give {flag} FIG.png instead")
        return _FigurePlan(None, size, dpi, force)
    w, h = (width or vplot.SIZE[0]), (height or vplot.SIZE[1])
    pixels = w * h * (dpi or vplot.DPI) ** 2
    if pixels > MAX_FIGURE_PIXELS and path.lower().endswith(".png"):
        raise _usage(f"a {w:g} x {h:g} in figure at {dpi or vplot.DPI} dpi has {pixels:.3g} "
                     f"pixels (at most {MAX_FIGURE_PIXELS:.0e}); lower --dpi or the size")
    vplot.check_path(path, force=force, inputs=inputs, flag=flag)
    vplot.require_matplotlib()
    return _FigurePlan(path, size, dpi, force)


def _render_figure(plan, kind, sols, console=None, param=None, results=None):
    """Draw the planned figure: the collapse map as text on ``console``, or a file (its path)."""
    if plan.path is None:
        (console or _console()).print(vplot.text(sols, param))
        return None
    fig = vplot.draw(kind, sols, param=param, results=results, size=plan.size)
    return vplot.save(fig, plan.path, force=plan.force, dpi=plan.dpi)


def _natural_kind(opts) -> str:
    """predict's figure: the (beta1, beta2) heatmap when both are swept and have thresholds,
    else the collapse map."""
    pair = {"beta1", "beta2"}
    if pair <= set(opts.request.swept) and pair <= set(opts.setting.critical):
        return "heatmap"
    return "collapse"


# ------------------------------------------------------------------------------------------
# the cross-option rules: options -> Selection + Request


@dataclass
class Options:
    """What a command was asked: the data selection and (unless data-only) the request."""

    model: str
    selection: vio.Selection
    request: Optional[vs.Request] = None
    given: dict = None

    @property
    def setting(self) -> vs.Setting:
        return self.request.setting

    @property
    def covered(self) -> bool:
        return self.request.covered


def _owners(name):
    """Which models an option belongs to, for messages ("vae/cvae only")."""
    models = []
    for m in vs.MODELS:
        s = vs.get(m, vs.VARIANCES[m][0])
        pairs = s.spectrum_kind == "residual"
        if (name in _PAIR_OPTIONS and pairs) or (name == "cols" and not pairs) or \
                (name == "latent_dim2" and s.has_second_latent) or \
                any(name in vs.get(m, v).names for v in vs.VARIANCES[m]):
            models.append(m)
    return models


def _check_applicable(model, given):
    wrong = [n for n in _MODEL_SPECIFIC if given.get(n) is not None and model not in _owners(n)]
    if wrong:
        listed = ", ".join(f"{_flag(n)} ({'/'.join(_owners(n))} only)" for n in wrong)
        conditional = vs.get(model, vs.VARIANCES[model][0]).spectrum_kind == "residual"
        hint = " (use --x-cols/--y-cols)" if "cols" in wrong and conditional else ""
        raise _usage(f"not an option of --model {model}: {listed}{hint}")


def _resolve_variance(model, variance, given):
    """The setting of --model/--variance and the variance options given (sigma, sigma1, sigma2)."""
    names = {v for v in vs.VARIANCES[model]} | set(vs._ALIASES.get(model, {}))
    if variance is not None and variance not in names:
        owner = next(m for m in vs.MODELS if variance in vs.VARIANCES[m])
        use = " or ".join(vs.VARIANCES[model])
        raise _usage(f"--variance {variance} is for --model {owner}; use {use}")
    setting = vs.resolve(model, variance, given=[k for k in given if given[k] is not None])
    if variance is None:
        return setting
    for spec in setting.hyperparameters:  # a required variance hyperparameter is missing
        if spec.default is None and given.get(spec.name) is None:
            raise _usage(f"--variance {variance} needs {_flag(spec.name)} ({spec.help})")
    for name in ("sigma", "sigma1", "sigma2"):  # given, but this variant learns it
        if given.get(name) is None or name in setting.names:
            continue
        if setting.sigma1_entropy:
            raise _usage(f"--variance {variance} learns Sigma1 and Sigma2: drop --sigma1/--sigma2")
        fixed = vs.resolve(model, None, given=[name])
        if name == "sigma":
            raise _usage(f"--sigma is the fixed encoder std: it needs --variance {fixed.variance} "
                         f"(with --variance {variance} the stds are learned)")
        raise _usage(f"{_flag(name)} fixes the std of z2: it needs --variance {fixed.variance} "
                     "(or leave --variance out)")
    return setting


def parse_options(data, kw: dict, *, need_latent=True, default_latent=None, data_only=False,
                  open_ok=False, label=None) -> Options:
    """Turn DATA and Click's keyword arguments into :class:`Options`; pops the ones it uses from
    ``kw``. ``data`` is a path or (demo) an array named ``label``.

    ``open_ok``: accept settings without a closed form (``both-learnable``, a per-dimension
    ``sigma1`` with distinct values; ``Options.covered`` is then False); otherwise they are a usage
    error pointing at ``vaetheory check``.
    """
    source = data
    model = kw.pop("model", "vae") or "vae"
    center = kw.pop("center", True)
    data = {k: kw.pop(k, None) for k in _DATA_OPTIONS}
    raw = {k: kw.pop(k, None) for k in ("variance", "latent_dim", "latent_dim2") + _HYPER_OPTIONS}
    given = {**{k: v for k, v in raw.items() if v is not None},
             **{k: v for k, v in data.items() if v is not None}}
    _check_applicable(model, given)
    conditional = vs.get(model, vs.VARIANCES[model][0]).spectrum_kind == "residual"
    if data["image_shape"] is not None and data["quadrant"] is None:
        raise _usage("--image-shape is used with --quadrant (which quadrant is x)")
    if conditional and data["quadrant"] is not None and (
            data["x_cols"] is not None or data["y_cols"] is not None or data["y"] is not None):
        raise _usage("--quadrant selects x and y itself; do not combine it with "
                     "--y/--x-cols/--y-cols")
    pair_args = {k: data[k] for k in _PAIR_OPTIONS} if conditional else {}
    selection = vio.Selection(source, key=data["key"], cols=None if conditional else data["cols"],
                              conditional=conditional, center=center, label=label, **pair_args)
    opts = Options(model, selection, None, given)
    if data_only:
        return opts
    setting = _resolve_variance(model, raw["variance"], raw)
    if raw["latent_dim"] is None:
        if default_latent is not None:
            dims = [int(default_latent)]
        elif need_latent:
            raise _usage("--latent-dim is required (e.g. --latent-dim 16, or a list 2,4,8)")
        else:
            dims = []
    else:
        dims = raw["latent_dim"]
    dims2 = raw["latent_dim2"]
    values = {n: raw[n] for n in setting.names if raw.get(n) is not None}
    labels = {n: _flag(n) for n in setting.names}
    request = vs.Request.build(setting, latent_dims=dims, latent_dims2=dims2, labels=labels,
                               **values)
    if request.grid_size > MAX_GRID_POINTS:
        shape = " x ".join(str(s) for s in request.grid_shape)
        raise _usage(f"the hyperparameter grid has {request.grid_size} points ({shape}); at most "
                     f"{MAX_GRID_POINTS} are allowed")
    for name, vec in request.vectors.items():  # one value (isotropic) or one per latent dim
        latent = setting.hyperparameter(name).latent
        per = dims2 if latent == "z2" and dims2 else dims
        wrong = [d for d in per if vec.size > 1 and d != vec.size]
        if wrong:
            raise _usage(f"{_flag(name)} has {vec.size} values but the latent dim is "
                         f"{wrong[0]}: give one value (isotropic) or one per latent dim")
    opts.request = request
    if dims and not request.covered:
        if setting.theory is None:
            reason = (f"--variance {setting.variance} (Sigma1 learned as well) has no closed form "
                      "in the theory; `vaetheory check` reports its numerical optimum")
        else:
            reason = setting.not_covered(request.vectors)
        if not open_ok:
            raise NotCoveredError(reason)
    return opts


def _settings_doc(opts: Options) -> dict:
    """The options as given, for the JSON ``settings``."""
    req, sel = opts.request, opts.selection
    out = {"model": req.setting.model, "variance": req.setting.variance, "center": sel.center,
           "grid": {k: v for k, v in req.axes.items()},
           "grid_shape": list(req.grid_shape), "latent_dims": list(req.latent_dims)}
    if req.latent_dims2 is not None:
        out["latent_dims2"] = list(req.latent_dims2)
    for name in ("sigma", "sigma1", "sigma2"):
        v = req.vectors.get(name)
        if v is not None:
            out[name] = float(v[0]) if v.size == 1 else v
    for name in ("key", "cols", "y", "y_key", "x_cols", "y_cols", "quadrant"):
        if opts.given.get(name) is not None:
            out[name] = opts.given[name]
    if sel.image_shape is not None:
        out["image_shape"] = list(sel.image_shape)
    return out


# ------------------------------------------------------------------------------------------
# data -> spectrum -> solutions


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: Optional[int], what: str, unit: str = "rows"):
    """A rich progress bar on stderr, or nothing; yields the per-block callback (or None)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    console = Console(stderr=True)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=True) as prog:
        task = prog.add_task(what, total=total)
        yield lambda m: prog.advance(task, m)


def _spectrum(selection, as_json, with_basis=False):
    """The selection's spectrum, with a progress bar for large files in a terminal."""
    show = _progress_enabled(as_json)

    def bar(total, nbytes):
        return _progress_bar(show and nbytes > PROGRESS_BYTES, total, f"reading {selection.name}")

    return load_spectrum(selection, with_basis=with_basis, progress=bar)


def _solutions(opts: Options, as_json, with_basis=False, selection=None):
    """Spectrum -> one Solution per latent-dim setting; ``(solutions, provenance)``."""
    spec = _spectrum(selection or opts.selection, as_json, with_basis)
    return opts.request.solve(spec), spec.provenance


# ------------------------------------------------------------------------------------------
# rendering helpers


def _console():
    from rich.console import Console

    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 160  # files and pipes have no width; do not squeeze tables into 80 columns
    return Console(highlight=False, markup=False, emoji=False, width=width)


def _say(console, text, style=None):
    """A line of text: never hard-wrapped (the terminal wraps it; files get one line)."""
    console.print(text, style=style, soft_wrap=True)


def _progress_enabled(as_json):
    return not as_json and sys.stderr.isatty()


def _grid_sentence(opts: Options) -> str:
    req = opts.request
    parts = []
    for name, v in req.axes.items():
        if v.size == 1:
            parts.append(f"{name} = {report.fmt(v[0])}")
        else:
            parts.append(f"{name} = {report.fmt(v[0])} .. {report.fmt(v[-1])} ({v.size} values)")
    for name in ("sigma", "sigma1", "sigma2"):
        v = req.vectors.get(name)
        if v is not None:
            parts.append(f"{name} = " + (report.fmt(v[0]) + " (isotropic)" if v.size == 1
                                         else ",".join(report.fmt(x) for x in v)))
    dims = ", ".join(f"({a}, {b})" if b is not None else str(a) for a, b in req.latent_settings())
    two = req.setting.has_second_latent
    parts.append(("latent dims (z1, z2) = " if two else "latent dim = ") + dims)
    return "; ".join(parts)


def _model_sentence(sol) -> str:
    return f"model: {sol.setting.title}, {sol.variance} variance -- {sol.theorem}"


def _print_notes(console, sols):
    for note in report.notes_of(sols):
        _say(console, f"note: {note}", style="italic")


def _render_predict(console, sols, info, opts, detail):
    _say(console, report.data_sentence(info))
    _say(console, _model_sentence(sols[0]))
    _say(console, "grid: " + _grid_sentence(opts))
    swept = opts.request.swept
    console.print(report.predict_table(sols, swept))
    if detail:
        for sol in sols:
            for idx in report.grid_indices(sol):
                console.print(report.detail_table(sol, idx, swept, len(sols) > 1))
    for line in report.summary_lines(sols, swept):
        _say(console, line)
    _print_notes(console, sols)


def _check_matrices_path(path, force, inputs):
    output_path("--matrices", path, (".npz",), force=force, inputs=inputs)


def _write_matrices(path, sol, force):
    mats = sol.matrices(tuple(0 for _ in sol.grid_shape))
    meta = report.dumps({"model": sol.model, "variance": sol.variance, "theorem": sol.theorem,
                         "params": report.point_params(sol, tuple(0 for _ in sol.grid_shape)),
                         "notes": list(sol.notes)}, indent=None)
    with open(path, "wb" if force else "xb") as fh:
        np.savez(fh, **mats, meta=np.array(meta))
    return sorted(mats)


# ------------------------------------------------------------------------------------------
# options of the numerical checker (vaetheory check, predict --check)

_CHECKER_KEYS = ("mode", "restarts", "seed", "tol", "tol_sv", "max_iter", "epochs", "batch_size",
                 "lr")


def _checker_options(modes=True):
    """Options of the exact checker (and, with ``modes``, of the stochastic-training mode)."""
    def deco(f):
        opts = [
            click.option("--restarts", type=click.IntRange(min=1), default=8, show_default=True,
                         help="Exact checker: random starts per point."),
            click.option("--seed", type=int, default=0, show_default=True,
                         help="Seed of the random starts (and of SGD): same seed, same result."),
            click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=1e-6,
                         show_default=True, help="Relative loss tolerance of the verdict."),
            click.option("--tol-sv", type=click.FloatRange(min=0, min_open=True), default=1e-4,
                         show_default=True,
                         help="Singular-value (and std) tolerance, relative to max(1, largest)."),
            click.option("--max-iter", type=click.IntRange(min=1), default=20000,
                         show_default=True, help="L-BFGS iterations per restart."),
        ]
        if modes:
            opts = [
                click.option("--mode", type=click.Choice(["exact", "sgd"]), default="exact",
                             show_default=True,
                             help="exact: minimise the exact expected loss (from the data's "
                                  "second moments) from random starts; sgd: train on the samples "
                                  "with the stochastic reparameterised beta-ELBO (Adam)."),
                *opts,
                click.option("--epochs", type=click.IntRange(min=1), default=200,
                             show_default=True, help="sgd: passes over the data."),
                click.option("--batch-size", type=click.IntRange(min=1), default=64,
                             show_default=True, help="sgd: minibatch size."),
                click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                             help="sgd: initial Adam step, decayed 100x over training "
                                  "(default: 0.02 x the data's RMS scale)."),
            ]
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def _pop_checker_kwargs(kw):
    return {k: kw.pop(k) for k in _CHECKER_KEYS if k in kw}


# ------------------------------------------------------------------------------------------
# commands


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vaetheory", prog_name="vaetheory")
@_debug_option
def main():
    """Closed-form posterior-collapse predictions for linear VAEs, CVAEs and two-latent
    hierarchical VAEs, from a dataset's spectrum.

    Start with `vaetheory demo`. Data files: .npy, .npz, .csv/.tsv/.txt (optionally .gz); rows are
    samples, images are flattened row-wise. Exit codes: 0 ok, 1 data error, 2 usage error;
    `check` (and `predict --check`): 3 REFUTED, 4 INCONCLUSIVE; `audit`: 5 NEAR, 6 FAR.
    """


@main.command()
@click.argument("data", metavar="DATA")
@model_options
@_output_options
@click.option("--detail", is_flag=True,
              help="Per latent dim: singular values, learned stds and thresholds.")
@click.option("--matrices", default=None, metavar="FILE.npz",
              help="Write the optimal matrices of the (single) grid point to a new .npz file.")
@click.option("--force", is_flag=True, help="Let --matrices / --plot replace an existing file.")
@click.option("--check", "do_check", is_flag=True,
              help="Also confirm every point with the exact numerical checker (as `vaetheory "
                   "check`); exit 0 CONFIRMED, 3 REFUTED, 4 INCONCLUSIVE.")
@_checker_options(modes=False)
@_figure_options(force_flag=False)
@_debug_option
def predict(data, as_json, detail, matrices, force, do_check, plot_to, **kw):
    """Predicted ranks, collapsed latent dims and thresholds for every hyperparameter point.

    \b
    Examples:
      vaetheory predict X.npy --latent-dim 16 --beta log:0.1:100:7
      vaetheory predict X.npy --variance fixed --sigma 0.5 --latent-dim 8 --json
      vaetheory predict imgs.npy --model cvae --quadrant bottom-left --image-shape 28x28 -d 16
      vaetheory predict X.csv --model mhvae -d 8 --beta1 1 --beta2 0.1:2:20 --sigma1 0.5
      vaetheory predict X.npy -d 16 --beta log:1:300:9 --plot collapse.png
    """
    copts = _pop_checker_kwargs(kw)
    opts = parse_options(data, kw)
    if matrices is not None:
        if opts.request.grid_size != 1 or len(opts.request.latent_settings()) != 1:
            raise _usage("--matrices needs a single grid point and latent dim (give one value per "
                         "hyperparameter)")
        _check_matrices_path(matrices, force, opts.selection.inputs)
    figure = _plan_figure(plot_to, kw, force, as_json, opts.selection.inputs)
    if figure is not None and plot_to == matrices:
        raise _usage("--plot and --matrices name the same file")
    sols, info = _solutions(opts, as_json, with_basis=matrices is not None)
    checks = _run_exact_checks(sols, copts, _progress_enabled(as_json)) if do_check else None
    written = _write_matrices(matrices, sols[0], force) if matrices is not None else None
    settings = _settings_doc(opts)
    if written:
        settings["matrices"] = {"file": matrices, "arrays": written}
    if do_check:
        settings["check"] = dict(copts, mode="exact")
    kind = _natural_kind(opts)
    if as_json:
        if figure is not None:
            settings["plot"] = {"file": _render_figure(figure, kind, sols), "kind": kind}
        click.echo(report.dumps(report.predict_document(sols, info, settings, checks)))
    else:
        console = _console()
        _render_predict(console, sols, info, opts, detail)
        if written:
            _say(console, f"wrote the optimal matrices ({', '.join(written)}) and 'meta' (JSON) "
                          f"to {matrices}" + ("; rotations of the latent space give other optima"
                                              if not all(sols[0].exact.values()) else ""))
        if checks is not None:
            console.print(report.check_table(sols, opts.request.swept, checks))
            for line in report.check_lines(sols, opts.request.swept, checks):
                _say(console, line)
        if figure is not None:
            path = _render_figure(figure, kind, sols, console)
            if path:
                _say(console, f"wrote the figure ({kind}) to {path}")
    return report.worst_verdict(checks).exit_code if checks else 0


@main.command()
@click.argument("data", metavar="DATA")
@data_options
@click.option("--top", type=click.IntRange(min=0), default=None, metavar="N",
              help="Show the N largest values (0: all; default: 20 in the table, all in JSON).")
@_output_options
@_debug_option
def spectrum(data, top, as_json, **kw):
    """The spectrum the theory uses (theta_i, or the residual e_i for --model cvae), with the
    data's rank, trace and scale."""
    opts = parse_options(data, kw, data_only=True)
    spec = _spectrum(opts.selection, as_json)
    info = spec.provenance
    if as_json:
        click.echo(report.dumps(report.spectrum_document(spec, info, top)))
        return
    console = _console()
    shown = 20 if top is None else top
    _say(console, report.data_sentence(info))
    _say(console, f"units: {report.spectrum_units(spec)}")
    console.print(report.spectrum_table(spec, shown))
    vals = report.spectrum_values(spec)
    n = vals.size if not shown else min(shown, vals.size)
    if n < vals.size:
        _say(console, f"... {vals.size - n} more (--top 0 shows all)")
    _say(console, f"rank {spec.rank} of {spec.dim}; trace {report.fmt(spec.trace, 6)}; "
                  f"scale (largest value) {report.fmt(vals[0], 6)}; "
                  f"values below {report.fmt(spec.tolerance, 3)} (rank tolerance) count as 0")


@main.command()
@click.argument("data", metavar="DATA")
@model_options
@click.option("--keep", "-k", type=int, default=None, metavar="K",
              help="Answer directly: which value of --param keeps K latent dims active "
                   "(largest beta, or smallest for thresholds active above)?")
@click.option("--param", "-p", default=None, metavar="NAME",
              help="The hyperparameter to solve for (default beta; mhvae: beta2). Any with a "
                   "threshold: beta, eta_dec, eta_enc (fixed variance), beta1, beta2.")
@_output_options
@_figure_options()
@_debug_option
def thresholds(data, keep, param, as_json, plot_to, force, **kw):
    """Per latent dim, the hyperparameter value at which it collapses (others as given).

    \b
    Examples:
      vaetheory thresholds X.npy --keep 16            # what beta keeps 16 dims active?
      vaetheory thresholds X.npy -d 16 --param eta_dec --beta 2
      vaetheory thresholds X.npy --model mhvae --keep 4 --beta1 1 --sigma1 0.5
      vaetheory thresholds X.npy -d 16 --plot -          # the collapse map in the terminal
    """
    if keep is not None and keep < 1:
        raise _usage(f"--keep must be >= 1, got {keep}")
    opts = parse_options(data, kw, default_latent=keep)
    param = _threshold_param(opts, param)
    figure = _plan_figure(plot_to, kw, force, as_json, opts.selection.inputs)
    sols, info = _solutions(opts, as_json)
    show_dims = len(sols) > 1
    points = []
    for sol in sols:
        p = param or report.summary_param(sol, opts.request.swept)
        for idx in report.grid_indices(sol):
            entry = report.thresholds_point(sol, idx)
            if keep is not None:
                entry["keep"] = report.keep_answer(sol, idx, keep, p)
            points.append((sol, idx, entry))
    if as_json:
        settings = _settings_doc(opts)
        if figure is not None:
            settings["plot"] = {"file": _render_figure(figure, "collapse", sols, param=param),
                                "kind": "collapse"}
        click.echo(report.dumps(report.thresholds_document(
            sols, info, settings, [e for _, _, e in points])))
        return
    console = _console()
    _say(console, report.data_sentence(info))
    _say(console, _model_sentence(sols[0]))
    _say(console, "at: " + _grid_sentence(opts))
    max_tables = 10
    if keep is not None:  # the answer is the point; the table only when it is short
        max_tables = 1 if len(points) == 1 and max(sols[0].latent_dims.values()) <= 24 else 0
    for n, (sol, idx, entry) in enumerate(points):
        if n < max_tables:
            console.print(report.thresholds_table(sol, idx, opts.request.swept, show_dims))
    if len(points) > max_tables and keep is None:
        _say(console, f"... {len(points) - max_tables} more grid points (--json prints all)")
    if keep is not None:
        for sol, idx, entry in points:
            label = (report.point_label(sol, idx, opts.request.swept, show_dims)
                     if len(points) > 1 else "")
            _say(console, report.keep_sentence(entry["keep"], label))
    _print_notes(console, sols)
    if figure is not None:
        path = _render_figure(figure, "collapse", sols, console, param=param)
        if path:
            _say(console, f"wrote the figure (collapse) to {path}")


def _threshold_param(opts, param):
    """``--param``: a hyperparameter with critical values in the setting (None: the default)."""
    if param is None:
        return None
    param = param.replace("-", "_")
    known = opts.setting.critical
    if param not in known:
        raise _usage(f"--param {param}: no threshold for it in this setting; choose from "
                     + ", ".join(known))
    return param


@main.command(name="plot")
@click.argument("kind", metavar="KIND", type=click.Choice(vplot.KINDS))
@click.argument("data", metavar="DATA")
@model_options
@click.option("--output", "-o", default=None, metavar="FIG",
              help="The figure file: .png, .svg or .pdf (an existing file is kept unless --force).")
@click.option("--text", is_flag=True,
              help="KIND collapse: draw it in the terminal (rich), no matplotlib needed.")
@click.option("--param", "-p", default=None, metavar="NAME",
              help="collapse, kl: the hyperparameter along the x axis (default: the first swept "
                   "one with thresholds, else beta / beta2).")
@_figure_options(plot_flag=False, force_flag=False)
@click.option("--force", is_flag=True, help="Let -o replace an existing file.")
@_debug_option
def plot_command(kind, data, output, text, param, force, **kw):
    """Draw a figure of the prediction: collapse map, spectrum, KL per dim or heatmap.

    KIND is one of

    \b
      collapse  per latent dim, the range of --param where it is active (a bar ending at its
                critical value, log axis), the active-count step curve, your grid values
      spectrum  the eigenvalues as bars with the level each dim is compared against (the
                "water line": beta*eta_dec^2 for a learnable variance), surviving dims coloured
      kl        per-dim KL at the optimum (and the total rate) across a sweep of --param,
                thresholds dashed (re-solved on a fine grid; your values are marked)
      heatmap   mhvae: collapsed z2 dims over a (beta1, beta2) grid with the theory's boundaries

    The options are those of predict. Figures need matplotlib (pip install "vaetheory[plot]");
    --text draws the collapse map in the terminal without it. For check results use
    `vaetheory check ... --plot FIG`.

    \b
    Examples:
      vaetheory plot collapse X.npy -d 16 --beta 1,10,50 -o collapse.png
      vaetheory plot spectrum X.npy -d 16 --beta 1,30,100 -o spectrum.svg --width 8
      vaetheory plot heatmap X.npy --model mhvae -d 8 --sigma1 0.5 -o z2.pdf
      vaetheory plot collapse X.npy -d 16 --text
    """
    if text and kind != "collapse":
        raise _usage(f"--text draws the collapse map only (KIND collapse), not {kind}")
    if text and output is not None:
        raise _usage("give -o FIG or --text, not both")
    if not text and output is None:
        raise _usage("-o FIG is required (a .png, .svg or .pdf file), or --text for the terminal")
    opts = parse_options(data, kw)
    param = _threshold_param(opts, param)
    if kind == "heatmap" and not {"beta1", "beta2"} <= set(opts.setting.critical):
        raise _usage(f"KIND heatmap is over (beta1, beta2): {opts.setting.name} has no such "
                     "thresholds (use --model mhvae)")
    figure = _plan_figure("-" if text else output, kw, force, False, opts.selection.inputs,
                          flag="-o")
    sols, info = _solutions(opts, False)
    console = _console()
    if figure.path is None:
        _say(console, report.data_sentence(info))
        _say(console, _model_sentence(sols[0]))
        _say(console, "at: " + _grid_sentence(opts))
    path = _render_figure(figure, kind, sols, console, param=param)
    if path:
        _say(console, f"wrote the figure ({kind}) to {path}")


# ------------------------------------------------------------------------------------------
# the numerical checker (vaetheory check, predict --check)

def _run_exact_checks(sols, copts, show_progress, raw=None):
    """One :func:`vaetheory.checker.check` per grid point of every solution -> check dicts (the
    results themselves are appended to ``raw`` when given: the check figure draws them)."""
    from .checker import check

    pairs = [(sol, idx) for sol in sols for idx in report.grid_indices(sol)]
    out = []
    with _progress_bar(show_progress, len(pairs) * copts["restarts"], "checking", "runs") as tick:
        for sol, idx in pairs:
            res = check(sol, idx, restarts=copts["restarts"], seed=copts["seed"],
                        tol_loss=copts["tol"], tol_sv=copts["tol_sv"],
                        max_iter=copts["max_iter"], progress=tick)
            out.append(report.check_dict(res, "exact"))
            if raw is not None:
                raw.append(res)
    return out


def _run_sgd_checks(X, y, sols, opts, copts, show_progress, raw=None):
    """Stochastic training at every grid point, on the samples read once (``X``, ``y``);
    the results are appended to ``raw`` when given."""
    from .sgd import default_lr, train_sgd

    center = opts.selection.center
    lr = copts["lr"] if copts["lr"] is not None else default_lr(X, y, center=center)
    points = [pt for sol in sols for pt in sol.points()]
    out = []
    total = len(points) * copts["epochs"]
    with _progress_bar(show_progress, total, "training (sgd)", "epochs") as tick:
        for pt in points:
            dims = pt.params
            res = train_sgd(pt.solution.model, pt.solution.variance, X, dims["latent_dim"],
                            dims.get("latent_dim2"), y=y, epochs=copts["epochs"],
                            batch_size=copts["batch_size"], lr=lr, seed=copts["seed"],
                            center=center, progress=tick, prediction=pt, **pt.hyper)
            out.append(report.check_dict(res, "sgd"))
            if raw is not None:
                raw.append(res)
    return out, lr


def _check_open(data, opts, copts, as_json):
    """Settings without a closed form: the numerical optimum alone, labelled as such."""
    from .checker import numerical_optimum

    spectrum = _spectrum(opts.selection, as_json)
    info = spectrum.provenance
    setting = opts.setting
    results = []
    points = list(opts.request.points())
    with _progress_bar(_progress_enabled(as_json), len(points) * copts["restarts"],
                       "numerical optimum", "runs") as tick:
        for d1, d2, _, hyper in points:
            num = numerical_optimum(setting.model, setting.variance, spectrum, d1, d2,
                                    restarts=copts["restarts"], seed=copts["seed"],
                                    max_iter=copts["max_iter"], progress=tick, **hyper)
            params = {**{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                         for k, v in hyper.items()}, "latent_dim": d1}
            if d2 is not None:
                params["latent_dim2"] = d2
            results.append((params, num))
    settings = _settings_doc(opts)
    settings["check"] = dict(copts)
    if as_json:
        click.echo(report.dumps(report.numerical_document(results, info, settings, spectrum)))
        return 0
    console = _console()
    _say(console, report.data_sentence(info))
    _say(console, f"model: {setting.model}, {setting.variance} -- no closed form in the theory: "
                  "numerical optimum only (not a prediction, nothing to confirm)")
    req = opts.request
    console.print(report.numerical_table(results, req.swept or list(req.axes)[:1]))
    for params, num in results:
        for w in num.warnings:
            _say(console, f"warning: {w}", style="italic")
    return 0


@main.command()
@click.argument("data", metavar="DATA")
@model_options
@_checker_options()
@_output_options
@_figure_options()
@_debug_option
def check(data, as_json, plot_to, force, **kw):
    """Confirm (or refute) the closed-form optimum numerically, at every grid point.

    \b
    --mode exact (default): minimise the exact expected loss of the setting over all
    parameter matrices from --restarts random starts (Adam, then L-BFGS with analytic
    gradients) and compare the best run with the closed form. Verdicts and exit codes:
      CONFIRMED (0)     the best run matches the closed-form loss and singular values
      REFUTED (3)       a run found a lower loss: its singular values are a counterexample
      INCONCLUSIVE (4)  neither (e.g. did not converge, or a flat family of minimisers)
    The worst verdict over the points sets the exit code.
    --mode sgd: train the linear model on the samples with the stochastic beta-ELBO and
    compare the collapsed counts (CONSISTENT, exit 0, or INCONCLUSIVE, exit 4).

    Settings with no closed form (--model mhvae --variance both-learnable, or --sigma1 with
    distinct per-dim values) get their numerical optimum alone, labelled as such (exit 0).

    \b
    Examples:
      vaetheory check X.npy --latent-dim 16 --beta 1,50
      vaetheory check X.npy --model mhvae -d 4 --beta2 2 --restarts 4 --json
      vaetheory check X.npy -d 8 --mode sgd --epochs 300
      vaetheory check X.npy --model mhvae --variance both-learnable -d 4 --beta1 0.5
      vaetheory check X.npy -d 8 --beta 1,50 --plot check.png
    """
    copts = _pop_checker_kwargs(kw)
    mode = copts["mode"]
    opts = parse_options(data, kw, open_ok=True)
    if not opts.covered:
        if mode == "sgd":
            raise _usage("--mode sgd compares training with a closed form; this setting has none "
                         "(use --mode exact for its numerical optimum)")
        if plot_to is not None:
            raise _usage("--plot draws a check against a closed form; this setting has none")
        return _check_open(data, opts, copts, as_json)
    figure = _plan_figure(plot_to, kw, force, as_json, opts.selection.inputs)
    settings = _settings_doc(opts)
    raw = []
    if mode == "exact":
        sols, info = _solutions(opts, as_json)
        checks = _run_exact_checks(sols, copts, _progress_enabled(as_json), raw)
        settings["check"] = {k: copts[k] for k in ("mode", "restarts", "seed", "tol", "tol_sv",
                                                   "max_iter")}
    else:  # the samples are read once; the spectrum comes from them in memory
        X, y, in_memory = opts.selection.read()
        sols, info = _solutions(opts, as_json, selection=in_memory)
        checks, lr = _run_sgd_checks(X, y, sols, opts, copts, _progress_enabled(as_json), raw)
        settings["check"] = {k: copts[k] for k in ("mode", "seed", "epochs", "batch_size")}
        settings["check"]["lr"] = lr
    code = report.worst_verdict(checks).exit_code
    if as_json:
        if figure is not None:
            settings["plot"] = {"file": _render_figure(figure, "check", sols, results=raw),
                                "kind": "check"}
        click.echo(report.dumps(report.predict_document(sols, info, settings, checks)))
        return code
    console = _console()
    _say(console, report.data_sentence(info))
    _say(console, _model_sentence(sols[0]))
    _say(console, "grid: " + _grid_sentence(opts))
    _say(console, "check: " + ("exact expected loss, " + f"{copts['restarts']} random starts "
                               f"(seed {copts['seed']}), tolerance {copts['tol']:g} on the loss, "
                               f"{copts['tol_sv']:g} on singular values" if mode == "exact" else
                               f"stochastic training, {copts['epochs']} epochs of batches of "
                               f"{copts['batch_size']} (Adam, lr {lr:.3g} decayed 100x, seed "
                               f"{copts['seed']}); collapsed = KL below 0.01"))
    console.print(report.check_table(sols, opts.request.swept, checks))
    for line in report.check_lines(sols, opts.request.swept, checks):
        _say(console, line)
    if figure is not None:
        path = _render_figure(figure, "check", sols, console, results=raw)
        if path:
            _say(console, f"wrote the figure (check) to {path}")
    return code


# ------------------------------------------------------------------------------------------
# the audit of trained weights


def _mapping_option(values):
    """``--map NAME=ROLE`` (repeatable) -> {NAME: ROLE}; ROLE ``-`` ignores NAME."""
    out = {}
    for item in values:
        name, sep, role = item.rpartition("=")
        if not sep or not name or not role:
            raise _usage(f"--map {item}: give NAME=ROLE, e.g. --map encoder.weight=W (ROLE '-' "
                         "ignores NAME)")
        out[name] = None if role.strip() == "-" else role
    return out


def _point_hyper(request):
    """The single hyperparameter point of a request (audit judges one point)."""
    if request.grid_size > 1:
        swept = ", ".join(_flag(n) for n in request.swept)
        raise _usage(f"audit judges one hyperparameter point: give one value to {swept}")
    hyper = {n: float(v[0]) for n, v in request.axes.items()}
    hyper.update({n: (float(v[0]) if v.size == 1 else v) for n, v in request.vectors.items()})
    return hyper


@main.command()
@click.argument("weights", metavar="WEIGHTS")
@click.argument("data", metavar="DATA")
@model_options
@click.option("--map", "mapping", multiple=True, metavar="NAME=ROLE",
              help="Which role a parameter has (repeatable), e.g. --map enc.weight=W, --map "
                   "head.kernel=U.T, --map enc.weight=[W1,W2] (cvae, x first), --map "
                   "log_sigma=log_std:log_var; ROLE - ignores NAME. Unmapped names are guessed "
                   "from common layouts, and the guess is printed.")
@click.option("--layout", type=click.Choice(["out-in", "in-out"]), default="out-in",
              show_default=True,
              help="out-in: matrices are out x in (PyTorch nn.Linear.weight); in-out: every matrix "
                   "is an (in, out) kernel (flax, keras, x @ W).")
@click.option("--tol", type=click.FloatRange(min=0, min_open=True), default=None,
              help="AT OPTIMUM: relative loss gap at most this (default 1e-3).")
@click.option("--near", type=click.FloatRange(min=0, min_open=True), default=None,
              help="NEAR: relative loss gap at most this (default 0.05).")
@click.option("--tol-sv", type=click.FloatRange(min=0, min_open=True), default=None,
              help="AT OPTIMUM: sorted singular values within this fraction of each map's scale "
                   "(default 0.1).")
@click.option("--rule", type=click.Choice(["kl", "au", "exact"]), default="kl", show_default=True,
              help="Collapse rule: kl (KL_j <= delta; fixed variances: its mean part), au "
                   "(Var E[z_j|x] <= delta) or exact (1e-6 nats).")
@click.option("--delta", type=click.FloatRange(min=0, min_open=True), default=0.01,
              show_default=True, help="The delta of --rule kl / au.")
@_output_options
@_debug_option
def audit(weights, data, mapping, layout, tol, near, tol_sv, rule, delta, as_json, **kw):
    """How far trained weights are from the closed-form optimum.

    \b
    WEIGHTS is an .npz (numpy.savez) or .safetensors file (pip install "vaetheory[audit]"; no
    torch needed) of a trained linear model; DATA the data it was trained on (as for predict).
    The exact expected loss of the weights on the data is compared with the optimum of the
    setting at the hyperparameters given (one point): the gap (weights and biases), the
    singular values of every map against the prediction, the collapsed latent dims against the
    predicted ones, and hints at the usual bugs. Matrices are out x in (nn.Linear); the latent
    dims come from the shapes. --center (default) is the model with biases: missing biases
    count as 0.
      AT OPTIMUM (0)  relative loss gap <= --tol and singular values within --tol-sv
      NEAR (5)        relative loss gap <= --near
      FAR (6)         further
      REFUTED (3)     a loss below the closed-form minimum (a counterexample)

    \b
    Examples:
      vaetheory audit vae.npz X.npy --beta 2
      vaetheory audit vae.safetensors X.npy --beta 2 --map fc_mu.weight=W --json
      vaetheory audit cvae.npz X.npy --model cvae --y Y.npy --sigma 0.5 --layout in-out
    """
    from . import audit as vaudit

    names = _mapping_option(mapping)
    opts = parse_options(data, kw, need_latent=False)
    hyper = _point_hyper(opts.request)
    dims = opts.request.latent_dims
    dims2 = opts.request.latent_dims2
    if len(dims) > 1 or (dims2 is not None and len(dims2) > 1):
        raise _usage("audit judges one model: give one --latent-dim (or none: from the weights)")
    params = vaudit.load_weights(weights)
    tolerances = {k: v for k, v in (("loss_rtol", tol), ("near_rtol", near), ("sv_rtol", tol_sv))
                  if v is not None}
    result = vaudit.audit(params, opts.selection, opts.setting, mapping=names,
                          layout=layout.replace("-", "_"), latent_dim=dims[0] if dims else None,
                          latent_dim2=dims2[0] if dims2 else None, rule=rule, delta=delta,
                          **tolerances, **hyper)
    info = result.spectrum.provenance
    if as_json:
        settings = _settings_doc(opts)
        settings.update(weights=str(weights), layout=layout, rule=rule, delta=delta,
                        latent_dims=list(result.latent_dims.values()))
        click.echo(report.dumps(report.audit_document(result, info, settings)))
        return result.verdict.exit_code
    console = _console()
    _say(console, report.data_sentence(info))
    _say(console, f"weights: {weights}")
    for line in report.audit_lines(result):
        _say(console, line)
    return result.verdict.exit_code


def _typed(name, text):
    """An option value as Click would convert it (for the demo's built-in options)."""
    if name in ("latent_dim", "latent_dim2"):
        return parse_ints(text, _flag(name))
    if name in ("sigma", "sigma1", "sigma2"):
        return parse_vector(text, _flag(name))
    if name == "image_shape":
        return vio.parse_image_shape(text)
    if name in _HYPER_OPTIONS:
        return parse_values(text, _flag(name))
    return text


DEMO = {
    "vae": {"latent_dim": "16", "beta": "1,10,20,50,100,150,200"},
    "cvae": {"latent_dim": "16", "quadrant": "bottom-left", "image_shape": "8x8",
             "beta": "1,5,10,20,50,100"},
    "mhvae": {"latent_dim": "8", "beta1": "1", "beta2": "1,7,8,10,12,14", "sigma1": "1"},
}


@main.command()
@click.option("--model", "-m", type=click.Choice(vs.MODELS), default="vae", show_default=True,
              help="Which model to demonstrate.")
@_output_options
@click.option("--detail", is_flag=True, help="Per latent dim details, as in predict.")
@_debug_option
def demo(model, as_json, detail):
    """Run predict on the bundled 8x8 handwritten digits (1797 x 64), no file needed."""
    X, _ = vio.load_digits()
    given = dict(DEMO[model])
    kw = {"model": model, **{k: _typed(k, v) for k, v in given.items()}}
    opts = parse_options(X, kw, label="bundled 8x8 handwritten digits (UCI, CC BY 4.0)")
    sols, info = _solutions(opts, as_json)
    settings = _settings_doc(opts)
    settings["demo"] = True
    if as_json:
        click.echo(report.dumps(report.predict_document(sols, info, settings)))
        return
    console = _console()
    flags = " ".join(f"{_flag(k)} {v}" for k, v in given.items())
    _say(console, f"demo: vaetheory predict <the digits> --model {model} {flags}", style="bold")
    _render_predict(console, sols, info, opts, detail)
    console.print()
    _say(console, "Run it on your own data (rows = samples; .npy, .npz, .csv, .tsv, .txt):")
    _say(console, f"  vaetheory predict YOUR_DATA.npy --model {model} {flags}")
    param = opts.setting.critical[0]
    extra = " --quadrant bottom-left --image-shape 8x8" if opts.selection.conditional else ""
    _say(console, f"  vaetheory thresholds YOUR_DATA.npy --model {model}{extra} --keep 4"
                  f"   # which {param} keeps 4 dims active?")
    _say(console, f"  vaetheory spectrum YOUR_DATA.npy --model {model}{extra}"
                  "   # the spectrum behind the thresholds")
    _say(console, "Add --json for a machine-readable document, --detail for per-dim values.")

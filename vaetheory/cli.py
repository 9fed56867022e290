"""Command line: ``vaetheory predict | thresholds | spectrum | check | audit | plot | demo``.

Thin by design: option values are parsed by Click parameter types (:class:`HyperValues`,
:class:`LatentDims`, :class:`ImageShapeType`), the cross-option rules turn
them into a :class:`~vaetheory.io.Selection` (what to read) and a
:class:`~vaetheory.settings.Request` (setting, latent dims, hyperparameter grid), and the commands
call the library (:func:`vaetheory.moments.load_spectrum`, :meth:`Request.solve`,
:mod:`vaetheory.checker`, :mod:`vaetheory.sgd`) and render with :mod:`vaetheory.report` (tables)
and :mod:`vaetheory.plot` (figures). No data pipeline and no prediction is computed here.

Exit codes: 0 ok (``check``: CONFIRMED; ``audit``: AT OPTIMUM); 3 REFUTED; 4 INCONCLUSIVE;
5 NEAR, 6 FAR, 7 NO OPTIMUM (``audit``); 2 usage (bad option values,
non-positive hyperparameters, latent dim < 1, unknown model, settings the theory does not cover);
1 data (missing/unreadable file, NaN/inf, mismatched rows, too few samples) or resources (memory,
disk, permissions on writing); 70 an internal error (a bug: the message says so); 130 interrupted
(Ctrl-C, SIGINT); 141 the reader of stdout went away (``| head``: 128 + SIGPIPE, silent, as ``cat``
and ``seq`` do). Errors are one line on stderr starting with ``error:``; otherwise stderr holds
only ``warning:`` lines about the data (what a reader was unsure of, a column that dominates the
variance; under ``--json`` they are the document's ``notes``) and progress bars in a terminal.
Warnings from the numerics are never shown (``--debug`` shows them and the traceback).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import math
import os
import signal
import sys
import traceback
import warnings
from dataclasses import dataclass, replace
from typing import Optional

import click
import numpy as np

from . import conventions as vconv
from . import io as vio
from . import plot as vplot
from . import report
from . import settings as vs
from ._grid import MAX_GRID_POINTS, blocks, parse_ints, parse_values, parse_vector, solve_points
from ._resources import require, solution_bytes
from ._validation import output_path
from .errors import (EXIT_INTERNAL, EXIT_INTERRUPTED, NotCoveredError, ParameterError,
                     ResourceError, VaetheoryError)
from .moments import METHODS, load_spectrum

__all__ = ["main", "model_options", "data_options", "Options", "parse_options"]

#: files larger than this get a progress bar (stderr, interactive, not under --json)
PROGRESS_BYTES = 4 << 20

#: options that select the data of a conditional model (x and y), and of the others
_PAIR_OPTIONS = ("y", "y_key", "x_cols", "y_cols", "quadrant", "image_shape")
_DATA_OPTIONS = ("key", "cols") + _PAIR_OPTIONS
#: options that say how files are read (every model)
_READ_OPTIONS = ("header", "delimiter", "format")
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


#: exit code when the reader of stdout goes away (``| head``): 128 + SIGPIPE, the shell convention
EXIT_PIPE = 141

#: library words in messages -> the command line's (options the user can type)
_CLI_WORDS = (("center=False", "--no-center"), ("max_iter", "--max-iter"),
              ("tol_sv", "--tol-sv"), ("batch_size", "--batch-size"))


def _cli_words(text):
    """A library message in the command line's words (its option names)."""
    for lib, cli in _CLI_WORDS:
        text = text.replace(lib, cli)
    return text


class _Interrupted(BaseException):
    """Ctrl-C, raised by our SIGINT handler: not a KeyboardInterrupt, so Click does not turn it
    into Abort (and print an empty line first) and ``except Exception`` does not swallow it."""


class _PipeClosed(Exception):
    """stdout's reader went away (EPIPE); raised past Click, which would exit 1."""


def _on_sigint(owner):
    def handler(signum, frame):
        if os.getpid() != owner:  # a forked worker (the checker's pool): leave quietly
            os._exit(EXIT_INTERRUPTED)
        mp = sys.modules.get("multiprocessing")
        if mp is not None:  # workers may not have seen the signal (kill -INT PID): stop them
            for child in mp.active_children():
                with contextlib.suppress(Exception):
                    child.terminate()
        raise _Interrupted()
    return handler


@contextlib.contextmanager
def _sigint_handler():
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint(os.getpid()))
    except (ValueError, OSError):  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _Main(click.Group):
    """Click group whose errors are one ``error: ...`` line and an exit code, no traceback."""

    def invoke(self, ctx):
        try:
            rv = super().invoke(ctx)
            sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
            return rv
        except KeyboardInterrupt as exc:
            raise _Interrupted() from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise _PipeClosed() from exc
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        caught = []
        try:
            with _sigint_handler(), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                                  standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else self.get_help(click.Context(self)))
            raise SystemExit(0)
        except _PipeClosed:
            _quiet_pipes()
            raise SystemExit(EXIT_PIPE)
        except (click.ClickException, click.Abort, _Interrupted, KeyboardInterrupt,
                Exception) as exc:
            code, msg = _error(exc)
            _show_warnings(caught, debug)
            if debug:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            with contextlib.suppress(OSError):
                click.echo("error: " + _one_line(msg), err=True)
            raise SystemExit(code)
        _show_warnings(caught, debug)
        if not standalone_mode:
            return rv
        raise SystemExit(rv if isinstance(rv, int) else 0)


def _show_warnings(caught, debug):
    """Warnings of the numerics go to stderr only with --debug (stderr holds the error line)."""
    if debug:
        for w in caught or ():
            sys.stderr.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))


#: the packages vaetheory depends on (pyproject.toml); a missing one is the installation's fault
CORE_PACKAGES = ("numpy", "scipy", "click", "rich", "threadpoolctl")


def _error(exc):
    """(exit code, message) of an exception that ends the command."""
    if isinstance(exc, click.ClickException):
        msg = exc.format_message()
        if (isinstance(exc, click.UsageError) and not isinstance(exc, _OptionError)
                and exc.ctx is not None):
            msg = f"{msg.rstrip('.')} (see '{exc.ctx.command_path} --help')"
        return exc.exit_code, msg
    if isinstance(exc, (_Interrupted, KeyboardInterrupt)) or (
            isinstance(exc, click.Abort) and isinstance(exc.__cause__, KeyboardInterrupt)):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(exc, click.Abort):
        return 1, "aborted"
    if isinstance(exc, VaetheoryError):  # usage (2), data or resources (1): the error says
        return exc.exit_code, _cli_words(exc.cli_message)
    if isinstance(exc, MemoryError):
        return 1, ("not enough memory for this run (" + (str(exc) or "MemoryError") + "); use a "
                   "smaller grid, fewer latent dims or fewer columns")
    if isinstance(exc, OSError):  # writing (or reading) failed: the user's situation, not a bug
        return 1, _os_message(exc)
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in CORE_PACKAGES:
        return 1, (f"the package {exc.name.split('.')[0]!r}, a dependency of vaetheory, is not "
                   "installed: install vaetheory with its dependencies (pip install . in the "
                   "repository, or pip install vaetheory)")
    # a bug: say what, on one line, and that it is one
    return EXIT_INTERNAL, (f"internal error: {type(exc).__name__}: {exc} -- this is a bug in "
                           "vaetheory; rerun with --debug for the traceback and please report it")


def _os_message(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{str(exc.filename)!r}: {what}"
    return f"cannot write the output: {what}"


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
        if isinstance(value, np.ndarray) or value is LEARNED:
            return value
        flag = param.opts[0] if param is not None else "value"
        if (param is not None and param.name in LEARNABLE_OPTIONS
                and str(value).strip().lower() == "learned"):
            return LEARNED
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


class PositiveFinite(click.ParamType):
    """A finite number > 0 (``nan`` and ``inf`` are refused: a tolerance or step size of either
    would silently change what a verdict means)."""

    name = "number"

    def convert(self, value, param, ctx):
        if isinstance(value, float):
            return value
        flag = param.opts[0] if param is not None else "value"
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v) or v <= 0:
            raise _usage(f"{flag} must be a finite number > 0, got {value}")
        return v


class ReconType(click.ParamType):
    """``--recon``: sse, mse or gaussian (aliases mse-sum, mse-mean); decoders the theory does
    not cover (bce, categorical, l1 ...) are a one-line usage error (docs/theory.md §10)."""

    name = "KIND"

    def convert(self, value, param, ctx):
        return vconv.recon_kind(value)


class _Learned(str):
    """The value ``learned`` of ``--eta-dec``: the decoder variance is learned (docs §12)."""


#: ``--eta-dec learned``
LEARNED = _Learned("learned")
#: options that take ``learned`` instead of values
LEARNABLE_OPTIONS = ("eta_dec",)

GRID = HyperValues(parse_values, "values")
VECTOR = HyperValues(parse_vector, "vector")
DIMS = LatentDims()
POSITIVE = PositiveFinite()


# ------------------------------------------------------------------------------------------
# options


def _delimiter(ctx, param, value):
    if value is not None:
        vio.parse_delimiter(value)  # a ParameterError naming --delimiter
    return value


class _VarianceChoice(click.Choice):
    """The variances a command offers; a known one it does not offer gets a pointer to the command
    that takes it (both-learnable: ``vaetheory check``), not Click's bare list."""

    def convert(self, value, param, ctx):
        if value in vs.ALL_VARIANCES and value not in self.choices:
            raise _usage(f"--variance {value} (Sigma1 learned as well) has no closed form in the "
                         "theory; `vaetheory check` reports its numerical optimum")
        return super().convert(value, param, ctx)


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
                     help="Array name inside an .npz DATA file (CVAE default: 'x' and 'y'); "
                          "the dataset of an HDF5 file, the array of a zarr group, the column "
                          "name(s) of a Parquet/Arrow file (a comma list)."),
        click.option("--format", "format", default=None,
                     type=click.Choice(vio.FORMATS, case_sensitive=False),
                     help="Read DATA as this format instead of by its extension (DATA '-' is "
                          "stdin: default recognised from its first bytes, else text)."),
        click.option("--header", default=None,
                     type=click.Choice(vio.HEADER_CHOICES, case_sensitive=False),
                     help="Text files: is the first line a header (column names)? auto: when a "
                          "field is not a number, or the fields are 0,1,...,D-1 (pandas) "
                          "[default: auto]."),
        click.option("--delimiter", default=None, metavar="CHAR", callback=_delimiter,
                     help="Text files: the field separator, e.g. ';' or tab or whitespace "
                          "(default: detected; ',' for .csv, tab for .tsv)."),
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
    for deco in reversed(decorators + _MOMENT_OPTIONS):
        f = deco(f)
    return f


#: how the moments are computed (not what is read): docs/theory.md §9
_MOMENT_OPTIONS = [
    click.option("--standardize", is_flag=True,
                 help="vae/mhvae: the spectrum of the correlation matrix (for data standardised "
                      "before training; constant columns stay 0)."),
    click.option("--moments", "moment_method", type=click.Choice(METHODS), default="auto",
                 show_default=True,
                 help="Moment computation: gram (fast), qr (streamed QR: accurate for "
                      "ill-conditioned data), auto (gram, then qr if gram is not accurate)."),
    click.option("--dask-scheduler", default=None, metavar="ADDRESS",
                 help="Run the moment pass on this Dask cluster (e.g. tcp://host:8786; needs "
                      "vaetheory[dask])."),
    click.option("--dask-workers", type=click.IntRange(min=1), default=None, metavar="N",
                 help="Run the moment pass on a local Dask cluster of N processes (needs "
                      "vaetheory[dask])."),
]
_COMPUTE_OPTIONS = ("standardize", "moment_method", "dask_scheduler", "dask_workers")


def model_options(f=None, *, latent_required=True, open_settings=False):
    """:func:`data_options` plus variance, hyperparameters (grids) and latent dims.

    ``latent_required``: --help marks --latent-dim [required] (predict, check; thresholds takes
    it from --keep). ``open_settings``: offer the variances without a closed form (check only).
    """
    if f is None:
        return lambda g: model_options(g, latent_required=latent_required,
                                       open_settings=open_settings)
    grid_help = "One value, a comma list, a:b:n (linear) or log:a:b:n (log-spaced); lists form a grid."
    covered = [v for v in vs.ALL_VARIANCES
               if open_settings or any(s.covered for s in vs.SETTINGS.values() if s.variance == v)]
    open_help = (", or both-learnable (Sigma1 learned too: no closed form, its numerical optimum)"
                 if open_settings else "")
    latent_help = "Latent dimension (mhvae: of z1); a list gives one result per value."
    latent_help += ("  [required]" if latent_required else
                    "  [default: K of --keep]")
    decorators = [
        click.option("--variance", type=_VarianceChoice(covered), default=None,
                     help="Encoder variance: learnable or fixed (vae/cvae; default fixed iff "
                          "--sigma is given); mhvae: sigma2-learnable or sigma2-fixed (default "
                          "sigma2-fixed iff --sigma2 is given; learnable/fixed mean these)"
                          + open_help + "."),
        click.option("--latent-dim", "-d", default=None, metavar="D", type=DIMS,
                     help=latent_help),
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
        click.option("--eta-dec", default=None, metavar="VALUES|learned", type=GRID,
                     help="Decoder noise std eta_dec, default 1. " + grid_help + " 'learned': "
                          "the decoder variance is learned with the model (sigma-VAE, "
                          "probabilistic PCA at beta 1; docs/theory.md §12)."),
        click.option("--sigma", default=None, metavar="S", type=VECTOR,
                     help="vae/cvae fixed variance: encoder std, one value (isotropic) or a comma "
                          "list with one per latent dim."),
        click.option("--sigma1", default=None, metavar="S", type=VECTOR,
                     help="mhvae: fixed std of z1 given x, default 1 (one value: isotropic; a "
                          "list with distinct values has no closed form: `vaetheory check`)."),
        click.option("--sigma2", default=None, metavar="S", type=VECTOR,
                     help="mhvae: fixed isotropic std of z2 given z1 (omit: Sigma2 learnable)."),
        click.option("--eigenvalues", default=None, metavar="VALUES|FILE",
                     help="A spectrum instead of DATA: eigenvalues of Cov(x) as a comma list "
                          "(5.117,3.741,...) or a file of them (cvae: the residual e_i). The loss "
                          "needs the trace: it is taken as their sum (only these modes exist)."),
    ] + _convention_options()
    f = data_options(f)
    for deco in reversed(decorators):
        f = deco(f)
    return f


def _convention_options():
    """Your training loss as written, instead of --beta/--eta-dec (docs/theory.md §10)."""
    return [
        click.option("--recon", default=None, type=ReconType(),
                     help="Your loss's reconstruction term, instead of --beta/--eta-dec: sse "
                          "(squared error summed over the output elements: F.mse_loss(..., "
                          "reduction='sum')), mse (averaged over them: F.mse_loss's default; see "
                          "--output-dim) or gaussian (-log N(x; x_hat, S^2 I), --decoder-std S). "
                          "Bernoulli/BCE, categorical, L1 ... are not covered by the theory. "
                          "With --kl, --kl-weight (and mhvae --kl1-weight, --z1-prior-std); "
                          "--eta-enc is the prior std. The conversion is printed. Example: "
                          "--recon mse --kl sum --kl-weight 2.5e-4."),
        click.option("--recon-weight", default=None, type=click.FloatRange(min=0, min_open=True),
                     metavar="W", help="With --recon: its weight (0.5 for 0.5*SSE), default 1."),
        click.option("--decoder-std", default=None, type=click.FloatRange(min=0, min_open=True),
                     metavar="S", help="With --recon gaussian: the fixed decoder std S."),
        click.option("--kl", "kl_reduction", default=None, type=click.Choice(vconv.KL_REDUCTIONS),
                     help="With --recon: each KL summed (default) or averaged over its latent "
                          "dims."),
        click.option("--kl-weight", default=None, metavar="VALUES", type=GRID,
                     help="With --recon: the weight of the KL to the prior (mhvae: of z2), "
                          "default 1; a list forms a grid."),
        click.option("--kl1-weight", default=None, metavar="VALUES", type=GRID,
                     help="mhvae with --recon: the weight of the z1 term log q(z1|x) - "
                          "log p(z1|z2), default 1."),
        click.option("--z1-prior-std", default=None, type=click.FloatRange(min=0, min_open=True),
                     metavar="S", help="mhvae with --recon: the std of p(z1|z2), default 1."),
        click.option("--output-dim", default=None, type=click.IntRange(min=1), metavar="D",
                     help="With --recon mse: the output elements it averages over (default: the "
                          "data's dimension; needed with --eigenvalues), e.g. 12288 = 3x64x64."),
    ]


#: the options of the loss convention (their keyword names)
_CONVENTION_KEYS = ("recon", "recon_weight", "decoder_std", "kl_reduction", "kl_weight",
                    "kl1_weight", "z1_prior_std", "output_dim")


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
    loss: Optional[vconv.TrainingLoss] = None
    conversion: Optional[vconv.Conversion] = None
    compute: dict = None  # how the moments are computed: load_spectrum's keyword arguments

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


def _resolve_variance(model, variance, given, decoder="fixed"):
    """The setting of --model/--variance and the variance options given (sigma, sigma1, sigma2)."""
    names = {v for v in vs.VARIANCES[model]} | set(vs._ALIASES.get(model, {}))
    if variance is not None and variance not in names:
        owner = next(m for m in vs.MODELS if variance in vs.VARIANCES[m])
        use = " or ".join(vs.VARIANCES[model])
        raise _usage(f"--variance {variance} is for --model {owner}; use {use}")
    setting = vs.resolve(model, variance, given=[k for k in given if given[k] is not None],
                         decoder=decoder)
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
        aliases = {v: k for k, v in vs._ALIASES.get(model, {}).items()}
        if variance in vs._ALIASES.get(model, {}):  # the user's word for it, then ours
            fixed = dataclasses.replace(fixed, variance=f"{aliases[fixed.variance]} (= "
                                                        f"{fixed.variance})")
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
    compute = {k: kw.pop(k, None) for k in _COMPUTE_OPTIONS}
    data = {k: kw.pop(k, None) for k in _DATA_OPTIONS}
    reading = {k: kw.pop(k, None) for k in _READ_OPTIONS}
    raw = {k: kw.pop(k, None) for k in ("variance", "latent_dim", "latent_dim2") + _HYPER_OPTIONS}
    conv = {k: kw.pop(k, None) for k in _CONVENTION_KEYS}
    eigenvalues = kw.pop("eigenvalues", None)
    given = {**{k: v for k, v in raw.items() if v is not None},
             **{k: v for k, v in data.items() if v is not None},
             **{k: v for k, v in reading.items() if v is not None}}
    _check_applicable(model, given)
    conditional = vs.get(model, vs.VARIANCES[model][0]).spectrum_kind == "residual"
    if eigenvalues is not None or source is None:
        if source is not None:
            raise _usage("give DATA or --eigenvalues, not both")
        if eigenvalues is None:
            raise _usage("give DATA (a data file) or --eigenvalues VALUES|FILE (a spectrum)")
        used = [_flag(k) for k, v in {**data, **reading}.items() if v is not None]
        if used:
            raise _usage(f"{', '.join(used)} select or read columns of DATA; --eigenvalues is a "
                         "spectrum")
        how = [_flag(k) for k in ("standardize", "dask_scheduler", "dask_workers") if compute.get(k)]
        how += ["--moments"] if compute.get("moment_method") not in (None, "auto") else []
        if how:
            raise _usage(f"{', '.join(how)} {'chooses' if len(how) == 1 else 'choose'} how the "
                         "moments of DATA are computed; "
                         "--eigenvalues is a spectrum already")
        selection = vio.EigenvalueSelection(eigenvalues, "residual" if conditional else "data",
                                            label=_eigen_label(eigenvalues))
        return _finish_options(Options(model, selection, None, given), raw, conv, need_latent,
                               default_latent, data_only, open_ok)
    if data["image_shape"] is not None and data["quadrant"] is None:
        raise _usage("--image-shape is used with --quadrant (which quadrant is x)")
    if conditional and data["quadrant"] is not None and (
            data["x_cols"] is not None or data["y_cols"] is not None or data["y"] is not None):
        raise _usage("--quadrant selects x and y itself; do not combine it with "
                     "--y/--x-cols/--y-cols")
    pair_args = {k: data[k] for k in _PAIR_OPTIONS} if conditional else {}
    selection = vio.Selection(source, key=data["key"], cols=None if conditional else data["cols"],
                              conditional=conditional, center=center, label=label,
                              header=reading["header"] or "auto",
                              delimiter=reading["delimiter"], format=reading["format"],
                              **pair_args)
    opts = Options(model, selection, None, given,
                   compute=_compute_options(compute, conditional, center))
    return _finish_options(opts, raw, conv, need_latent, default_latent, data_only, open_ok)


def _eigen_label(text):
    return (f"eigenvalues {text}" if vio._looks_numeric(text) else f"eigenvalues from '{text}'")


def _training_loss(conv, raw, setting, dims, dims2):
    """The --recon ... options as a :class:`~vaetheory.conventions.TrainingLoss` (None if not
    given); conflicts with --beta/--eta-dec are usage errors."""
    if all(v is None for v in conv.values()):
        return None
    if conv["recon"] is None:
        listed = ", ".join(_flag(k if k != "kl_reduction" else "kl") for k, v in conv.items()
                           if v is not None)
        raise _usage(f"{listed} describe your training loss: give --recon too (sse, mse or "
                     "gaussian)")
    clash = [_flag(n) for n in vconv.hyper_names() if raw.get(n) is not None]
    if clash:
        raise _usage(f"--recon ... describes your loss, which fixes {', '.join(clash)}: give "
                     "one or the other")
    if not setting.kl_terms or not setting.has_second_latent:
        for k in ("kl1_weight", "z1_prior_std"):
            if conv[k] is not None:
                raise _usage(f"{_flag(k)} is the hierarchical VAE's (--model mhvae)")
    if conv["kl_reduction"] == "mean" and (len(dims) > 1 or (dims2 and len(dims2) > 1)):
        raise _usage("--kl mean divides the KL weight by the latent dim: give one --latent-dim "
                     "(and --latent-dim2)")
    return vconv.TrainingLoss(
        recon=conv["recon"], recon_weight=conv["recon_weight"] or 1.0,
        decoder_std=conv["decoder_std"], kl=conv["kl_reduction"] or "sum",
        kl_weight=1.0 if conv["kl_weight"] is None else conv["kl_weight"],
        kl1_weight=conv["kl1_weight"], z1_prior_std=conv["z1_prior_std"] or 1.0,
        prior_std=1.0 if raw.get("eta_enc") is None else raw["eta_enc"],
        output_dim=conv["output_dim"])


def _finish_options(opts, raw, conv, need_latent, default_latent, data_only, open_ok):
    model = opts.model
    if data_only:
        return opts
    decoder = "fixed"
    if raw.get("eta_dec") is LEARNED:
        decoder = "learned"
        raw["eta_dec"] = None
        if raw["variance"] == "both-learnable":
            raise _usage("--eta-dec learned with --variance both-learnable is not supported "
                         "(Sigma1, Sigma2 and eta_dec all learned); learn at most two of them")
    setting = _resolve_variance(model, raw["variance"], raw, decoder)
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
    opts.loss = _training_loss(conv, raw, setting, dims, dims2)
    if opts.loss is not None:  # the grid's shape now; the values after the data (docs §10)
        for term in setting.kl_terms:
            w = opts.loss.kl1_weight if term.latent == "z1" else opts.loss.kl_weight
            if w is not None:
                values[term.weight] = w
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
        if setting.theory is None and not setting.learned_decoder:
            reason = (f"--variance {setting.variance} (Sigma1 learned as well) has no closed form "
                      "in the theory; `vaetheory check` reports its numerical optimum")
        else:
            reason = setting.not_covered(request.vectors)
        if not open_ok:
            raise NotCoveredError(reason)
    return opts


def _compute_options(compute, conditional, center):
    """--standardize / --moments / --dask-*: checked here, passed to load_spectrum."""
    if compute.get("standardize"):
        if conditional:
            raise _usage("--standardize is for --model vae/mhvae (the data spectrum), not the "
                         "cvae residual")
        if not center:
            raise _usage("--standardize centres the data (the correlation matrix): drop "
                         "--no-center")
    if compute.get("dask_scheduler") is not None and compute.get("dask_workers") is not None:
        raise _usage("--dask-scheduler and --dask-workers are alternatives: give one")
    return {"method": compute.get("moment_method") or "auto",
            "standardize": bool(compute.get("standardize")),
            "dask_scheduler": compute.get("dask_scheduler"),
            "dask_workers": compute.get("dask_workers")}


def _compute_doc(opts: Options) -> dict:
    """The moment options that differ from the defaults (for the JSON ``settings``)."""
    c = opts.compute or {}
    out = {}
    if c.get("method", "auto") != "auto":
        out["moments"] = c["method"]
    if c.get("standardize"):
        out["standardize"] = True
    for k in ("dask_scheduler", "dask_workers"):
        if c.get(k) is not None:
            out[k] = c[k]
    return out


def _settings_doc(opts: Options) -> dict:
    """The options as given, for the JSON ``settings``."""
    req, sel = opts.request, opts.selection
    out = {"model": req.setting.model, "variance": req.setting.variance, "center": sel.center,
           **({"variance_given": opts.given["variance"]}
              if opts.given.get("variance") not in (None, req.setting.variance) else {}),
           **({"decoder": "learned", "learned": list(req.setting.learned_hyperparameters)}
              if req.setting.learned_decoder else {}),
           **_compute_doc(opts),
           "grid": {k: v for k, v in req.axes.items()},
           "grid_shape": list(req.grid_shape), "latent_dims": list(req.latent_dims)}
    if req.latent_dims2 is not None:
        out["latent_dims2"] = list(req.latent_dims2)
    for name in ("sigma", "sigma1", "sigma2"):
        v = req.vectors.get(name)
        if v is not None:
            out[name] = float(v[0]) if v.size == 1 else v
    for name in ("key", "cols", "y", "y_key", "x_cols", "y_cols", "quadrant") + _READ_OPTIONS:
        if opts.given.get(name) is not None:
            out[name] = opts.given[name]
    if getattr(sel, "image_shape", None) is not None:
        out["image_shape"] = list(sel.image_shape)
    if isinstance(sel, vio.EigenvalueSelection):
        out["eigenvalues"] = sel.values
    if opts.conversion is not None:
        out["loss"] = opts.conversion.to_dict()
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


def _spectrum(opts: Options, as_json, with_basis=False, selection=None):
    """The selection's spectrum, with a progress bar for large files in a terminal."""
    from ._dask import connect

    if isinstance(opts, vio.Selection):  # a bare selection: the default moment options
        opts = Options("vae", opts)
    selection = selection or opts.selection
    show = _progress_enabled(as_json)
    compute = dict(opts.compute or {})

    def bar(total, nbytes):
        return _progress_bar(show and nbytes > PROGRESS_BYTES, total, f"reading {selection.name}")

    with connect(compute.pop("dask_scheduler", None), compute.pop("dask_workers", None)) as client:
        spec = load_spectrum(selection, with_basis=with_basis, progress=bar, client=client,
                             **compute)
    if not as_json:  # what the reader was unsure of (under --json: the document's notes)
        for note in (spec.provenance or {}).get("notes", []):
            click.echo("warning: " + _one_line(note), err=True)
    return spec


#: (grid points x latent dims) solved at once for output: a long sweep's per-dim arrays are
#: made one block at a time (about 12 float64 arrays of this many entries: ~100 MiB)
BLOCK_ENTRIES = 1 << 20
#: rough memory of one rich table row (for the guard on --all over a huge grid)
TABLE_ROW_BYTES = 4096


def _dims(d1, d2):
    return int(d1) + int(d2 or 0)


def _block_points(d1, d2, setting=None):
    """Grid points solved at once: BLOCK_ENTRIES / dims; with a learned decoder variance the
    critical values test every dim's candidate against every mode ((points x d x d) arrays in
    theory's learned-decoder critical values), so / dims once more."""
    n = BLOCK_ENTRIES // _dims(d1, d2)
    if setting is not None and setting.learned_decoder:
        n //= _dims(d1, d2)
    return max(1, n)


def _check_memory(opts: Options):
    """Refuse, before solving, a request whose arrays do not fit (ResourceError, exit 1)."""
    req = opts.request
    n = req.grid_size
    need = 0
    for d1, d2 in req.latent_settings():
        dims = _dims(d1, d2)
        need += solution_bytes(n, dims, per_dim=False)
        need = max(need, solution_bytes(min(n, _block_points(d1, d2, req.setting)), dims))
    big = max(req.latent_settings(), key=lambda t: _dims(*t))
    require(need, f"the closed form at latent dim {big[0]}" + (f" / {big[1]}" if big[1] else "")
            + f" over {n} grid point(s)",
            "use a smaller latent dim (dims beyond the data's rank are always collapsed) or a "
            "smaller grid")


def _solutions(opts: Options, as_json, with_basis=False, selection=None):
    """Spectrum -> one Solution per latent-dim setting; ``(solutions, provenance)``."""
    _check_memory(opts)
    sel = selection or opts.selection
    # without centring, Var_x E[z|x] needs the eigenvectors and the mean (vaetheory.logged)
    spec = _spectrum(opts, as_json, with_basis or sel.center is False, selection=sel)
    _convert(opts, spec)
    return opts.request.solve(spec), spec.provenance


def _convert(opts: Options, spec):
    """Put the hyperparameters of the user's training loss into the request (docs §10); the
    output dimension of --recon mse defaults to the data's."""
    if opts.loss is None or opts.conversion is not None:
        return
    req = opts.request
    dims = req.latent_dims
    dims2 = req.latent_dims2
    given = bool((spec.provenance or {}).get("given"))
    conv = vconv.equivalent(opts.loss, req.setting, latent_dim=dims[0] if dims else None,
                            latent_dim2=dims2[0] if dims2 else None,
                            output_dim=None if given else spec.dim)
    axes = dict(req.axes)
    for name, v in conv.hyper.items():
        if name in axes:
            axes[name] = np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel()
    opts.request = replace(req, axes=axes)
    opts.conversion = conv


def _resolver(opts: Options, sols):
    """``resolve(sol, flat_indices)`` for :mod:`vaetheory.report`: the points of a small solution
    itself; of a long sweep's, a solution of just those points (its per-dim arrays are never made
    for the whole grid)."""
    dims = {id(sol): ds for sol, ds in zip(sols, opts.request.latent_settings())}

    def resolve(sol, flats):
        flats = np.asarray(flats, dtype=np.intp)
        d1, d2 = dims[id(sol)]
        if (int(np.prod(sol.grid_shape)) <= _block_points(d1, d2, opts.request.setting)
                or flats.size == 0):
            return report._own_points(sol, flats)
        sub = solve_points(opts.request, sol.spectrum, d1, d2, flats)
        return [(sub, (j,)) for j in range(flats.size)]
    return resolve


def _blocks_of(opts: Options, sols):
    """Every grid point of every solution, in order, as solutions of at most one block each."""
    for sol, (d1, d2) in zip(sols, opts.request.latent_settings()):
        n = int(np.prod(sol.grid_shape))
        size = _block_points(d1, d2, opts.request.setting)
        if n <= size:
            yield sol
            continue
        for r in blocks(n, size):
            yield solve_points(opts.request, sol.spectrum, d1, d2, np.arange(r.start, r.stop))


def _write_stdout(text):
    sys.stdout.write(text)


def _emit(doc, points):
    """A JSON document on stdout with its ``points`` streamed (report.write_json)."""
    report.write_json(_write_stdout, doc, points)
    sys.stdout.write("\n")


def _predict_points(opts: Options, sols, checks=None, delta=0.01):
    """The ``points`` of a predict/check document, streamed (each with its ``logged`` object at
    ``delta``, docs/theory.md §11)."""
    if checks is None:
        for sol in _blocks_of(opts, sols):
            yield from report.encode_points(sol, delta=delta, joined=True)
        return
    pairs = [(sol, idx) for sol in sols for idx in report.grid_indices(sol)]
    for (sol, idx), chk in zip(pairs, checks):
        point = report.point_dict(sol, idx, delta)
        point["check"] = chk
        yield point


# ------------------------------------------------------------------------------------------
# rendering helpers


def _console():
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self):  # rich exits 1 here; the contract is one rule for every output
            raise _PipeClosed()

    width = None
    if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
        width = 160  # files and pipes have no width; do not squeeze tables into 80 columns
    return _Console(highlight=False, markup=False, emoji=False, width=width)


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
    if req.setting.learned_decoder:
        parts.append("eta_dec learned")
    dims = ", ".join(f"({a}, {b})" if b is not None else str(a) for a, b in req.latent_settings())
    two = req.setting.has_second_latent
    parts.append(("latent dims (z1, z2) = " if two else "latent dim = ") + dims)
    return "; ".join(parts)


def _model_sentence(sol) -> str:
    dec = ", decoder variance learned" if sol.setting.learned_decoder else ""
    return f"model: {sol.setting.title}, {sol.variance} variance{dec} -- {sol.theorem}"


def _say_conversion(console, opts):
    """The user's loss and its equivalent hyperparameters (docs/theory.md §10)."""
    if opts.conversion is not None:
        for line in opts.conversion.lines():
            _say(console, line)


def _say_data(console, info):
    """The data sentence (the data's notes -- what the reader was unsure of, a dominant column,
    a second moment pass -- went to stderr as warning lines with the spectrum)."""
    _say(console, report.data_sentence(info))


def _print_notes(console, sols, notes=None):
    for note in report.notes_of(sols) if notes is None else notes:
        _say(console, f"note: {note}", style="italic")


def _print_table(console, table):
    """A table at its natural width when the terminal is narrower: it scrolls (or the terminal
    wraps whole lines) instead of folding cells, so a number is never split across lines."""
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(1 << 16), table).maximum
    if need <= console.width:
        console.print(table)
        return
    width = console.width
    console.width = need
    try:
        console.print(table)
    finally:
        console.width = width


def _shown_rows(opts: Options, sols, all_rows):
    """The (solution, index) rows of the predict table and whether the sweep was summarised."""
    flats, total = report.summary_rows(sols, all_rows=all_rows)
    shown = sum(f.size for f in flats)
    if all_rows and total > 1000:
        require(total * TABLE_ROW_BYTES, f"a table of {total} rows",
                "drop --all (the table then shows each change of the collapsed counts) or use "
                "--json, which streams every point")
    resolve = _resolver(opts, sols)
    rows = [pair for sol, f in zip(sols, flats) for pair in resolve(sol, f)]
    return rows, (shown < total), total


def _render_predict(console, sols, info, opts, detail, all_rows=False, delta=0.01):
    _say_data(console, info)
    _say_conversion(console, opts)
    _say(console, _model_sentence(sols[0]))
    _say(console, "grid: " + _grid_sentence(opts))
    swept = opts.request.swept
    rows, summarised, total = _shown_rows(opts, sols, all_rows)
    _print_table(console, report.predict_table(sols, swept, rows=rows))
    if summarised:
        _say(console, f"{len(rows)} of {total} grid points shown: the first, the last and each "
                      "change of the active or collapsed counts (--all shows every point, --json "
                      "prints every point)")
    if detail:
        for sol, idx in rows:
            _print_table(console, report.detail_table(sol, idx, swept, len(sols) > 1))
            _print_table(console, report.logged_table(sol, idx, delta, swept, len(sols) > 1))
            for line in report.logged_lines(sol, idx, delta, swept, len(sols) > 1):
                _say(console, line)
    for line in report.summary_lines(sols, swept, resolve=_resolver(opts, sols)):
        _say(console, line)
    _print_notes(console, sols, report.prediction_notes(sols))
    _alias_note(console, opts)


def _alias_note(console, opts: Options):
    alias = (opts.given or {}).get("variance")
    setting = opts.request.setting
    if alias is not None and alias != setting.variance:
        _say(console, f"note: --variance {alias} means {setting.variance} for --model "
                      f"{setting.model}", style="italic")


def _check_matrices_path(path, force, inputs):
    output_path("--matrices", path, (".npz",), force=force, inputs=inputs)


def _write_matrices(path, sol, force):
    mats = sol.matrices(tuple(0 for _ in sol.grid_shape))
    idx = tuple(0 for _ in sol.grid_shape)
    meta = {"model": sol.model, "variance": sol.variance, "theorem": sol.theorem,
            "params": report.point_params(sol, idx), "notes": list(sol.notes)}
    if sol.learned:  # a learned decoder variance: the eta_dec these matrices go with
        meta["learned"] = report.learned_point(sol, idx)
    meta = report.dumps(meta, indent=None)
    existed = os.path.exists(path)
    try:
        with open(path, "wb" if force else "xb") as fh:
            np.savez(fh, **mats, meta=np.array(meta))
    except OSError as exc:  # disk full, permission denied, read-only file system
        if not existed:  # a partial file we created; never remove one the user had
            with contextlib.suppress(OSError):
                os.remove(path)
        raise ResourceError(f"cannot write --matrices {path!r}: {exc.strerror or exc}") from exc
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
            click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                         help="Seed of the random starts (and of SGD): same seed, same result."),
            click.option("--tol", type=POSITIVE, default=1e-6,
                         show_default=True, help="Relative loss tolerance of the verdict."),
            click.option("--tol-sv", type=POSITIVE, default=1e-4,
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
                click.option("--lr", type=POSITIVE, default=None,
                             help="sgd: initial Adam step of every map, decayed 100x over "
                                  "training (default: 0.02 x the data's RMS scale, and for the "
                                  "encoder reading the data 0.02 x eta_enc / that scale)."),
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

    Start with `vaetheory demo`. Data files: .npy, .npz, .csv/.tsv/.txt (optionally .gz), '-'
    for stdin; with the formats extra .h5, .zarr, .parquet, .arrow. Rows are samples, images are
    flattened row-wise. Exit codes: 0 ok, 1 data or resource error, 2 usage error; `check` (and
    `predict --check`): 3 REFUTED, 4 INCONCLUSIVE; `audit`: 5 NEAR, 6 FAR, 7 NO OPTIMUM; 130
    interrupted; 141 the reader of the output went away (| head).
    """


def _given_on_command_line(names):
    """Which of these parameters the user typed (or set in the environment), not defaults."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return []
    from click.core import ParameterSource

    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return [n for n in names if ctx.get_parameter_source(n) in typed]


def _refuse_unused(names, why):
    """Options that would be silently ignored are a usage error (exit 2) naming them."""
    given = _given_on_command_line(names)
    if given:
        raise _usage(f"{', '.join(_flag(n) for n in given)}: {why}")


#: options of each checker mode (the others are refused in that mode)
_EXACT_ONLY = ("restarts", "tol", "tol_sv", "max_iter")
_SGD_ONLY = ("epochs", "batch_size", "lr")


def _all_option(f):
    return click.option("--all", "all_rows", is_flag=True,
                        help="Every grid point in the tables (default for more than 20 points: "
                             "the first, the last and each change of the collapsed counts).")(f)


@main.command()
@click.argument("data", metavar="DATA", required=False)
@model_options
@_output_options
@click.option("--detail", is_flag=True,
              help="Per latent dim: singular values, learned stds and thresholds, and what a "
                   "training log shows at the optimum (KL, Var E[z|x], std; the rate, the "
                   "distortion; active dims by rule: theory, AU(delta), KL > delta).")
@click.option("--delta", type=POSITIVE, default=0.01,
              show_default=True,
              help="The threshold of the AU(delta) and KL_j > delta counts (--detail, JSON).")
@_all_option
@click.option("--matrices", default=None, metavar="FILE.npz",
              help="Write the optimal matrices of the (single) grid point to a new .npz file.")
@click.option("--force", is_flag=True, help="Let --matrices / --plot replace an existing file.")
@click.option("--check", "do_check", is_flag=True,
              help="Also confirm every point with the exact numerical checker (as `vaetheory "
                   "check`); exit 0 CONFIRMED, 3 REFUTED, 4 INCONCLUSIVE.")
@_checker_options(modes=False)
@_figure_options(force_flag=False)
@_debug_option
def predict(data, as_json, detail, delta, all_rows, matrices, force, do_check, plot_to, **kw):
    """Predicted ranks, collapsed latent dims and thresholds for every hyperparameter point.

    \b
    Examples:
      vaetheory predict X.npy --latent-dim 16 --beta log:0.1:100:7
      vaetheory predict X.npy --variance fixed --sigma 0.5 --latent-dim 8 --json
      vaetheory predict imgs.npy --model cvae --quadrant bottom-left --image-shape 28x28 -d 16
      vaetheory predict X.csv --model mhvae -d 8 --beta1 1 --beta2 0.1:2:20 --sigma1 0.5
      vaetheory predict X.npy -d 16 --beta log:1:300:9 --plot collapse.png
      vaetheory predict X.npy -d 16 --recon mse --kl sum --kl-weight 2.5e-4   # your loss
      vaetheory predict --eigenvalues 5.117,3.741,3.253,2.842,2.567 -d 5 --beta 3
    """
    copts = _pop_checker_kwargs(kw)
    if not do_check:
        _refuse_unused(("restarts", "seed") + _EXACT_ONLY[1:],
                       "only used with --check (the exact checker); add --check or drop it")
    if force and matrices is None:
        raise _usage("--force has no effect without --matrices")
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
        _emit(report.predict_document(sols, info, settings, points=False),
              _predict_points(opts, sols, checks, delta))
    else:
        console = _console()
        _render_predict(console, sols, info, opts, detail, all_rows, delta)
        if written:
            _say(console, f"wrote the optimal matrices ({', '.join(written)}) and 'meta' (JSON) "
                          f"to {matrices}" + ("; rotations of the latent space give other optima"
                                              if not all(sols[0].exact.values()) else ""))
        if checks is not None:
            _print_table(console, report.check_table(sols, opts.request.swept, checks))
            for line in report.check_lines(sols, opts.request.swept, checks):
                _say(console, _cli_words(line))
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
    spec = _spectrum(opts, as_json)
    info = spec.provenance
    if as_json:
        click.echo(report.dumps(report.spectrum_document(spec, info, top)))
        return
    console = _console()
    shown = 20 if top is None else top
    _say_data(console, info)
    _say(console, f"units: {report.spectrum_units(spec)}")
    _print_table(console, report.spectrum_table(spec, shown))
    for line in report.spectrum_footer(spec, shown):
        _say(console, line)


@main.command()
@click.argument("data", metavar="DATA", required=False)
@model_options(latent_required=False)
@click.option("--keep", "-k", type=int, default=None, metavar="K",
              help="Answer directly: which value of --param keeps K latent dims active "
                   "(largest beta, or smallest for thresholds active above)?")
@click.option("--rate", "-r", "target", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="R",
              help="Answer directly: which value of --param (beta, or eta_dec; mhvae: beta2 or "
                   "eta_dec) makes the optimum's total KL R nats (mhvae: the KL of z2), and how "
                   "many dims are active there (docs/theory.md §11).")
@click.option("--param", "-p", default=None, metavar="NAME",
              help="The hyperparameter to solve for (default beta; mhvae: beta2). Any with a "
                   "threshold: beta, eta_dec, eta_enc (fixed variance), beta1, beta2.")
@_output_options
@_figure_options()
@_all_option
@_debug_option
def thresholds(data, keep, target, param, as_json, plot_to, force, all_rows, **kw):
    """Per latent dim, the hyperparameter value at which it collapses (others as given).

    \b
    Examples:
      vaetheory thresholds X.npy --keep 16            # what beta keeps 16 dims active?
      vaetheory thresholds X.npy -d 16 --param eta_dec --beta 2
      vaetheory thresholds X.npy --model mhvae --keep 4 --beta1 1 --sigma1 0.5
      vaetheory thresholds X.npy -d 16 --plot -          # the collapse map in the terminal
      vaetheory thresholds X.npy -d 16 --rate 20          # the beta giving 20 nats of KL
    """
    if keep is not None and keep < 1:
        raise _usage(f"--keep must be >= 1, got {keep}")
    if keep is not None and target is not None:
        raise _usage("give --keep K or --rate R, not both")
    opts = parse_options(data, kw, default_latent=keep)
    if target is not None:
        from .rates import rate_params

        allowed = rate_params(opts.setting)
        if param is not None and param.replace("-", "_") not in allowed:
            raise _usage(f"--rate solves for {' or '.join(allowed)} (the rate is monotone in them, "
                         f"docs/theory.md §11), not --param {param}")
    param = _threshold_param(opts, param)
    swept = opts.request.swept
    solved = param or opts.setting.critical[0]
    if keep is not None and solved in swept:
        raise _usage(f"--keep solves for {solved}, so the {len(opts.request.axes[solved])} values "
                     f"of {_flag(solved)} would all give the same answer: give one value (or "
                     "none), or solve for another with --param")
    figure = _plan_figure(plot_to, kw, force, as_json, opts.selection.inputs)
    sols, info = _solutions(opts, as_json)
    show_dims = len(sols) > 1
    n_points = sum(int(np.prod(sol.grid_shape)) for sol in sols)

    def entries(limit=None):
        """(solution, index, entry) of every point (at most ``limit``), one block at a time."""
        count = 0
        for sol in _blocks_of(opts, sols):
            p = param or (solved if keep is not None else report.summary_param(sol, swept))
            for idx in report.grid_indices(sol):
                if limit is not None and count >= limit:
                    return
                entry = report.thresholds_point(sol, idx)
                if keep is not None:
                    entry["keep"] = report.keep_answer(sol, idx, keep, p)
                if target is not None:
                    from .rates import target_rate

                    entry["rate"] = target_rate(sol.at(idx), target, param)
                count += 1
                yield sol, idx, entry

    if as_json:
        settings = _settings_doc(opts)
        if figure is not None:
            settings["plot"] = {"file": _render_figure(figure, "collapse", sols, param=param),
                                "kind": "collapse"}
        if keep is None and target is None:   # the points alone: written in bulk
            points = (t for sol in _blocks_of(opts, sols)
                      for t in report.encode_thresholds(sol, joined=True))
        else:
            points = (_rate_json(e, opts) for _, _, e in entries())
        _emit(report.thresholds_document(sols, info, settings, []), points)
        return
    console = _console()
    _say_data(console, info)
    _say_conversion(console, opts)
    _say(console, _model_sentence(sols[0]))
    _say(console, "at: " + _grid_sentence(opts))
    max_tables = n_points if all_rows else 10
    if keep is not None or target is not None:  # the answer is the point; a short table only
        max_tables = 1 if n_points == 1 and max(sols[0].latent_dims.values()) <= 24 else 0
    for sol, idx, _ in entries(max_tables):
        _print_table(console, report.thresholds_table(sol, idx, swept, show_dims))
    if n_points > max_tables and keep is None and target is None:
        _say(console, f"... {n_points - max_tables} more grid points (--all shows them, --json "
                      "prints all)")
    if keep is not None:
        max_lines = n_points if all_rows else 20
        for sol, idx, entry in entries(max_lines):
            label = report.point_label(sol, idx, swept, show_dims) if n_points > 1 else ""
            _say(console, report.keep_sentence(entry["keep"], label))
        if n_points > max_lines:
            _say(console, f"... {n_points - max_lines} more grid points (--all shows them, --json "
                          "prints all)")
    if target is not None:
        max_lines = n_points if all_rows else 20
        for sol, idx, entry in entries(max_lines):
            label = report.point_label(sol, idx, swept, show_dims) if n_points > 1 else ""
            _say(console, report.rate_sentence(entry["rate"], label, opts.conversion))
        if n_points > max_lines:
            _say(console, f"... {n_points - max_lines} more grid points (--all shows them, --json "
                          "prints all)")
    _print_notes(console, sols)
    _alias_note(console, opts)
    if figure is not None:
        path = _render_figure(figure, "collapse", sols, console, param=param)
        if path:
            _say(console, f"wrote the figure (collapse) to {path}")


def _rate_json(entry, opts):
    """A thresholds point for JSON: its ``--rate`` answer as a dict, with the weight of the
    user's own loss (``--recon ...``) that gives it."""
    if "rate" not in entry:
        return entry
    rate = entry["rate"].to_dict()
    conv = opts.conversion
    if conv is not None and rate["param"] in conv.factors:
        value = rate["value"]
        rate["user_weight"] = {conv.weights[rate["param"]]: None if value is None else float(
            conv.user_weight(rate["param"], value))}
    return dict(entry, rate=rate)


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
@click.argument("data", metavar="DATA", required=False)
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
    from .sgd import default_encoder_lr, default_lr, train_sgd

    center = opts.selection.center
    given = copts["lr"] is not None
    lr = copts["lr"] if given else default_lr(X, y, center=center)
    points = [pt for sol in sols for pt in sol.points()]
    out, enc = [], set()
    total = len(points) * copts["epochs"]
    with _progress_bar(show_progress, total, "training (sgd)", "epochs") as tick:
        for pt in points:
            dims = pt.params
            elr = None if given else default_encoder_lr(pt.solution.model, X, center=center,
                                                        eta_enc=pt.hyper["eta_enc"])
            enc.add(elr)
            res = train_sgd(pt.solution.model, pt.solution.variance, X, dims["latent_dim"],
                            dims.get("latent_dim2"), y=y, epochs=copts["epochs"],
                            batch_size=copts["batch_size"], lr=lr, encoder_lr=elr,
                            seed=copts["seed"], center=center, progress=tick, prediction=pt,
                            decoder=pt.solution.decoder, **pt.hyper)
            out.append(report.check_dict(res, "sgd"))
            if raw is not None:
                raw.append(res)
    return out, lr, (enc.pop() if len(enc) == 1 else "per point")


def _check_open(data, opts, copts, as_json):
    """Settings without a closed form: the numerical optimum alone, labelled as such."""
    from .checker import numerical_optimum

    spectrum = _spectrum(opts, as_json)
    _convert(opts, spectrum)
    info = spectrum.provenance
    setting = opts.setting
    results = []
    points = list(opts.request.points())
    with _progress_bar(_progress_enabled(as_json), len(points) * copts["restarts"],
                       "numerical optimum", "runs") as tick:
        for d1, d2, _, hyper in points:
            num = numerical_optimum(setting.model, setting.variance, spectrum, d1, d2,
                                    restarts=copts["restarts"], seed=copts["seed"],
                                    max_iter=copts["max_iter"], progress=tick,
                                    decoder=setting.decoder, **hyper)
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
    _say_data(console, info)
    dec = ", eta_dec learned" if setting.learned_decoder else ""
    _say(console, f"model: {setting.model}, {setting.variance}{dec} -- no closed form in the "
                  "theory: numerical optimum only (not a prediction, nothing to confirm)")
    req = opts.request
    _print_table(console, report.numerical_table(results, req.swept or list(req.axes)[:1]))
    for params, num in results:
        for w in num.warnings:
            _say(console, f"warning: {_cli_words(w)}", style="italic")
    return 0


@main.command()
@click.argument("data", metavar="DATA", required=False)
@model_options(open_settings=True)
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
        _refuse_unused(_SGD_ONLY + ("tol", "tol_sv"),
                       "not used for a setting without a closed form (its numerical optimum has "
                       "no verdict to set a tolerance for, and no training run)")
        return _check_open(data, opts, copts, as_json)
    if mode == "exact":
        _refuse_unused(_SGD_ONLY, "only used by --mode sgd (stochastic training); drop it, or "
                                  "add --mode sgd")
    else:
        _refuse_unused(_EXACT_ONLY, "only used by --mode exact (the exact checker); drop it, or "
                                    "use --mode exact")
    figure = _plan_figure(plot_to, kw, force, as_json, opts.selection.inputs)
    settings = _settings_doc(opts)
    raw = []
    lr = elr = None
    if mode == "exact":
        sols, info = _solutions(opts, as_json)
        checks = _run_exact_checks(sols, copts, _progress_enabled(as_json), raw)
        settings["check"] = {k: copts[k] for k in ("mode", "restarts", "seed", "tol", "tol_sv",
                                                   "max_iter")}
    else:  # the samples are read once; the spectrum comes from them in memory
        X, y, in_memory = opts.selection.read()
        sols, info = _solutions(opts, as_json, selection=in_memory)
        checks, lr, elr = _run_sgd_checks(X, y, sols, opts, copts, _progress_enabled(as_json),
                                          raw)
        settings["check"] = {k: copts[k] for k in ("mode", "seed", "epochs", "batch_size")}
        settings["check"]["lr"] = lr
        settings["check"]["encoder_lr"] = elr
    code = report.worst_verdict(checks).exit_code
    if as_json:
        if figure is not None:
            settings["plot"] = {"file": _render_figure(figure, "check", sols, results=raw),
                                "kind": "check"}
        _emit(report.predict_document(sols, info, settings, points=False),
              _predict_points(opts, sols, checks))
        return code
    console = _console()
    _say_data(console, info)
    _say_conversion(console, opts)
    _say(console, _model_sentence(sols[0]))
    _say(console, "grid: " + _grid_sentence(opts))
    _say(console, "check: " + ("exact expected loss, " + f"{copts['restarts']} random starts "
                               f"(seed {copts['seed']}), tolerance {copts['tol']:g} on the loss, "
                               f"{copts['tol_sv']:g} on singular values" if mode == "exact" else
                               f"stochastic training, {copts['epochs']} epochs of batches of "
                               f"{copts['batch_size']} (Adam, lr {lr:.3g}"
                               + (f", encoder {elr:.3g}" if isinstance(elr, float) else
                                  ", encoder per point" if elr == "per point" else "")
                               + f" decayed 100x, seed {copts['seed']}); collapsed = KL below "
                               "0.01"))
    _print_table(console, report.check_table(sols, opts.request.swept, checks))
    for line in report.check_lines(sols, opts.request.swept, checks):
        _say(console, _cli_words(line))
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
      NO OPTIMUM (7)  --eta-dec learned where the loss has no minimum (docs/theory.md §12.2)
    With --eta-dec learned the loss is the negative beta-ELBO in nats; a trained decoder
    variance (role log_u = log eta_dec^2, e.g. --map log_sigma_x=log_std:log_u) is used if the
    weights carry it, else u is profiled (the optimal u for the weights).

    \b
    Examples:
      vaetheory audit vae.npz X.npy --beta 2
      vaetheory audit vae.safetensors X.npy --beta 2 --map fc_mu.weight=W --json
      vaetheory audit cvae.npz X.npy --model cvae --y Y.npy --sigma 0.5 --layout in-out
      vaetheory audit vae.npz X.npy --beta 2 --eta-dec learned
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
        _emit(report.predict_document(sols, info, settings, points=False),
              _predict_points(opts, sols))
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

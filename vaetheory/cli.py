"""Command line: ``vaetheory predict | thresholds | spectrum | check | demo``.

Thin by design: parse options, call the library (:mod:`vaetheory.io` -> :mod:`vaetheory.moments`
-> :mod:`vaetheory.theory`, and :mod:`vaetheory.checker` / :mod:`vaetheory.sgd` for ``check``),
render with :mod:`vaetheory.report`. No prediction is computed here.

Reusable pieces for other commands (the numerical checker, issue 4):

- :func:`model_options` -- decorator adding the model, variance, hyperparameter-grid, latent-dim,
  centring and data-selection options (plus ``--key``); :meth:`ModelOptions.from_kwargs` turns
  the keyword arguments Click passes into a validated :class:`ModelOptions`.
- :func:`load_spectrum` and :func:`build_solutions` -- data file (or array) -> spectrum ->
  one :class:`~vaetheory.theory.Solution` per latent-dim setting, each covering the whole grid.

Exit codes: 0 ok (``check``: CONFIRMED); 3 REFUTED; 4 INCONCLUSIVE; 2 usage (bad option values, non-positive hyperparameters, latent dim < 1, unknown
model, settings the theory does not cover); 1 data (missing/unreadable file, NaN/inf, mismatched
rows, too few samples). Errors are one line on stderr starting with ``error:``; ``--debug`` adds
the traceback.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import click
import numpy as np

from . import io as vio
from . import report
from ._grid import make_grid, parse_ints, parse_values, parse_vector
from ._validation import DataError, NotCoveredError, positive
from .moments import accumulate_moments, default_chunk_rows, residual_spectrum, spectrum_from_moments
from .moments import spectrum_from_eigenvalues
from .theory import solve

__all__ = ["main", "model_options", "data_options", "ModelOptions", "load_spectrum",
           "build_solutions", "build_solution"]

MODELS = ("vae", "cvae", "mhvae")
VARIANCES = ("learnable", "fixed", "sigma2-learnable", "sigma2-fixed", "both-learnable")
#: settings without a closed form: `vaetheory check` reports their numerical optimum
OPEN_VARIANCES = ("both-learnable",)
HYPERPARAMETERS = {
    "vae": ("beta", "eta_enc", "eta_dec"),
    "cvae": ("beta", "eta_enc", "eta_dec"),
    "mhvae": ("beta1", "beta2", "eta_enc", "eta_dec"),
}
#: files larger than this get a progress bar (stderr, interactive, not under --json)
PROGRESS_BYTES = 4 << 20

_CVAE_ONLY = ("y", "y_key", "x_cols", "y_cols", "quadrant", "image_shape")
_MHVAE_ONLY = ("beta1", "beta2", "sigma1", "sigma2", "latent_dim2")
_FLAT_ONLY = ("beta", "sigma")


def _flag(name):
    return "--" + name.replace("_", "-")


# ------------------------------------------------------------------------------------------
# errors: one line on stderr, exit 2 (usage) or 1 (data)


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
        return 1, "aborted"
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted"
    if isinstance(exc, DataError):  # the data: unreadable, non-finite, mismatched, too few
        return 1, str(exc).replace("center=False", "--no-center")
    if isinstance(exc, ValueError):  # an argument, or a setting the theory does not cover
        return 2, str(exc)
    # a bug: say what, on one line
    return 1, (f"internal error: {type(exc).__name__}: {exc} "
               "(rerun with --debug for the traceback and please report it)")


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
# options


def data_options(f):
    """Model choice, centring and the data-selection options (files, columns, quadrants, --key)."""
    decorators = [
        click.option("--model", "-m", type=click.Choice(MODELS), default="vae", show_default=True,
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
        click.option("--image-shape", default=None, metavar="HxW",
                     help="cvae with --quadrant: image shape, e.g. 28x28 or 32x32x3 (default: "
                          "square images inferred from the column count)."),
    ]
    for deco in reversed(decorators):
        f = deco(f)
    return f


def model_options(f):
    """Everything :class:`ModelOptions` needs: :func:`data_options` plus variance,
    hyperparameters (grids) and latent dims."""
    grid_help = "One value, a comma list, a:b:n (linear) or log:a:b:n (log-spaced); lists form a grid."
    decorators = [
        click.option("--variance", type=click.Choice(VARIANCES), default=None,
                     help="Encoder variance: learnable or fixed (vae/cvae; default fixed iff "
                          "--sigma is given); mhvae: sigma2-learnable or sigma2-fixed (default "
                          "sigma2-fixed iff --sigma2 is given), or both-learnable (Sigma1 learned "
                          "too: no closed form, `vaetheory check` only)."),
        click.option("--latent-dim", "-d", default=None, metavar="D",
                     help="Latent dimension (mhvae: of z1); a list gives one result per value."),
        click.option("--latent-dim2", default=None, metavar="D2",
                     help="mhvae: dimension of z2 (default: --latent-dim)."),
        click.option("--beta", "-b", default=None, metavar="VALUES",
                     help="KL weight (vae/cvae), default 1. " + grid_help),
        click.option("--beta1", default=None, metavar="VALUES", help="mhvae: weight of the z1 "
                     "consistency term, default 1. " + grid_help),
        click.option("--beta2", default=None, metavar="VALUES", help="mhvae: KL weight of z2, "
                     "default 1. " + grid_help),
        click.option("--eta-enc", default=None, metavar="VALUES",
                     help="Prior std eta_enc, default 1. " + grid_help),
        click.option("--eta-dec", default=None, metavar="VALUES",
                     help="Decoder noise std eta_dec, default 1. " + grid_help),
        click.option("--sigma", default=None, metavar="S",
                     help="vae/cvae fixed variance: encoder std, one value (isotropic) or a comma "
                          "list with one per latent dim."),
        click.option("--sigma1", default=None, metavar="S",
                     help="mhvae: fixed std of z1 given x, default 1 (one value: isotropic; a "
                          "list with distinct values has no closed form: `vaetheory check`)."),
        click.option("--sigma2", default=None, metavar="S",
                     help="mhvae: fixed isotropic std of z2 given z1 (omit: Sigma2 learnable)."),
    ]
    f = data_options(f)
    for deco in reversed(decorators):
        f = deco(f)
    return f


def _output_options(f):
    f = click.option("--json", "as_json", is_flag=True,
                     help="Print one JSON document to stdout (schema: README).")(f)
    return f


@dataclass
class ModelOptions:
    """Validated model options (see :func:`model_options`)."""

    model: str = "vae"
    variance: str = "learnable"
    axes: Dict[str, np.ndarray] = field(default_factory=dict)
    latent_dims: List[int] = field(default_factory=list)
    latent_dims2: Optional[List[int]] = None
    sigma: Optional[np.ndarray] = None
    sigma1: Optional[np.ndarray] = None
    sigma2: Optional[np.ndarray] = None
    center: bool = True
    key: Optional[str] = None
    cols: Optional[str] = None
    y: Optional[str] = None
    y_key: Optional[str] = None
    x_cols: Optional[str] = None
    y_cols: Optional[str] = None
    quadrant: Optional[str] = None
    image_shape: Optional[Tuple[int, ...]] = None
    given: Dict[str, str] = field(default_factory=dict)  # raw option text, for settings/echo
    covered: bool = True  # False: no closed form (only `check` accepts it: numerical optimum)

    # ---- construction

    @classmethod
    def from_kwargs(cls, kw: dict, *, need_latent=True, default_latent=None,
                    data_only=False, open_ok=False) -> "ModelOptions":
        """Options from Click's keyword arguments; pops the ones it uses from ``kw``.

        ``open_ok``: accept settings without a closed form (``both-learnable``, a per-dimension
        ``sigma1`` with distinct values) and set ``covered = False``; otherwise they are a usage
        error pointing at ``vaetheory check``. Raises click.UsageError (exit 2) for any bad
        combination or value.
        """
        o = cls()
        o.model = kw.pop("model", "vae") or "vae"
        o.center = kw.pop("center", True)
        for name in ("key", "cols", "y", "y_key", "x_cols", "y_cols", "quadrant"):
            setattr(o, name, kw.pop(name, None))
        shape_text = kw.pop("image_shape", None)
        raw = {k: kw.pop(k, None) for k in ("variance", "latent_dim", "latent_dim2", "beta", "beta1",
                                            "beta2", "eta_enc", "eta_dec", "sigma", "sigma1", "sigma2")}
        o.given = {k: v for k, v in raw.items() if v is not None}
        o.given.update({k: getattr(o, k) for k in ("key", "cols", "y", "y_key", "x_cols", "y_cols",
                                                   "quadrant") if getattr(o, k) is not None})
        if shape_text is not None:
            o.given["image_shape"] = shape_text
        o._check_applicable(shape_text)
        try:
            if shape_text is not None:
                o.image_shape = vio.parse_image_shape(shape_text)
            if data_only:
                return o
            o._parse(raw, need_latent, default_latent)
        except click.UsageError:
            raise
        except ValueError as exc:
            raise _usage(str(exc)) from None
        o._dry_run(open_ok)
        return o

    def _check_applicable(self, shape_text):
        given = dict(self.given)
        m = self.model
        wrong = []
        if m != "cvae":
            wrong += [n for n in _CVAE_ONLY if given.get(n) is not None]
        if m != "mhvae":
            wrong += [n for n in _MHVAE_ONLY if given.get(n) is not None]
        if m == "mhvae":
            wrong += [n for n in _FLAT_ONLY if given.get(n) is not None]
        if m == "cvae" and self.cols is not None:
            wrong.append("cols")
        if wrong:
            hint = {"vae": "", "cvae": " (use --x-cols/--y-cols)", "mhvae": ""}[m]
            owners = []
            for n in wrong:
                owner = ("cvae" if n in _CVAE_ONLY else "mhvae" if n in _MHVAE_ONLY
                         else "vae/mhvae" if n == "cols" else "vae/cvae")
                owners.append(f"{_flag(n)} ({owner} only)")
            raise _usage(f"not an option of --model {m}: {', '.join(owners)}"
                         + (hint if "cols" in wrong else ""))
        if shape_text is not None and self.quadrant is None:
            raise _usage("--image-shape is used with --quadrant (which quadrant is x)")
        if m == "cvae":
            by_cols = self.x_cols is not None or self.y_cols is not None
            if self.quadrant is not None and (by_cols or self.y is not None):
                raise _usage("--quadrant selects x and y itself; do not combine it with "
                             "--y/--x-cols/--y-cols")

    def _parse(self, raw, need_latent, default_latent):
        m = self.model
        # variance
        v = raw["variance"]
        if m in ("vae", "cvae"):
            if v in ("sigma2-learnable", "sigma2-fixed", "both-learnable"):
                raise _usage(f"--variance {v} is for --model mhvae; use learnable or fixed")
            if v is None:
                v = "fixed" if raw["sigma"] is not None else "learnable"
            if v == "fixed" and raw["sigma"] is None:
                raise _usage("--variance fixed needs --sigma (the fixed encoder std)")
            if v == "learnable" and raw["sigma"] is not None:
                raise _usage("--sigma is the fixed encoder std: it needs --variance fixed "
                             "(with --variance learnable the stds are learned)")
        else:
            v = {"learnable": "sigma2-learnable", "fixed": "sigma2-fixed"}.get(v, v)
            if v == "both-learnable" and (raw["sigma1"] is not None or raw["sigma2"] is not None):
                raise _usage("--variance both-learnable learns Sigma1 and Sigma2: drop "
                             "--sigma1/--sigma2")
            if v is None:
                v = "sigma2-fixed" if raw["sigma2"] is not None else "sigma2-learnable"
            if v == "sigma2-fixed" and raw["sigma2"] is None:
                raise _usage("--variance sigma2-fixed needs --sigma2 (the fixed std of z2)")
            if v == "sigma2-learnable" and raw["sigma2"] is not None:
                raise _usage("--sigma2 fixes the std of z2: it needs --variance sigma2-fixed "
                             "(or leave --variance out)")
        self.variance = v
        # hyperparameter grid (order = table column order)
        for name in HYPERPARAMETERS[m]:
            text = raw[name]
            values = np.array([1.0]) if text is None else parse_values(text, _flag(name))
            positive(_flag(name), values)
            self.axes[name] = values
        # latent dims
        if raw["latent_dim"] is None:
            if default_latent is not None:
                self.latent_dims = [int(default_latent)]
            elif need_latent:
                raise _usage("--latent-dim is required (e.g. --latent-dim 16, or a list 2,4,8)")
        else:
            self.latent_dims = parse_ints(raw["latent_dim"], "--latent-dim")
        if raw["latent_dim2"] is not None:
            self.latent_dims2 = parse_ints(raw["latent_dim2"], "--latent-dim2")
        for name, dims in (("--latent-dim", self.latent_dims), ("--latent-dim2", self.latent_dims2 or [])):
            bad = [d for d in dims if d < 1]
            if bad:
                raise _usage(f"{name} must be an integer >= 1, got {bad[0]}")
        # variances (not grid axes: one value = isotropic, or one per latent dim)
        for name in ("sigma", "sigma1", "sigma2"):
            text = raw[name]
            if text is None:
                continue
            vec = parse_vector(text, _flag(name))
            positive(_flag(name), vec)
            dims = self.latent_dims2 if name == "sigma2" and self.latent_dims2 else self.latent_dims
            if vec.size > 1:
                wrong = [d for d in dims if d != vec.size]
                if wrong:
                    raise _usage(f"{_flag(name)} has {vec.size} values but the latent dim is "
                                 f"{wrong[0]}: give one value (isotropic) or one per latent dim")
            setattr(self, name, vec)
        if m == "mhvae" and self.sigma1 is None and v != "both-learnable":
            self.sigma1 = np.array([1.0])

    def latent_settings(self) -> List[Tuple[int, Optional[int]]]:
        """``[(d1, d2), ...]``: one Solution per entry (d2 None for the vae/cvae)."""
        if self.model != "mhvae":
            return [(d, None) for d in self.latent_dims]
        if self.latent_dims2 is None:
            return [(d, d) for d in self.latent_dims]
        return list(itertools.product(self.latent_dims, self.latent_dims2))

    @property
    def swept(self) -> List[str]:
        """Hyperparameters with more than one value."""
        return [k for k, v in self.axes.items() if v.size > 1]

    @property
    def grid_size(self) -> int:
        return int(np.prod([v.size for v in self.axes.values()])) if self.axes else 1

    @property
    def spectrum_kind(self) -> str:
        return "residual" if self.model == "cvae" else "data"

    def theory_kwargs(self, d2=None) -> dict:
        """Keyword arguments of :func:`vaetheory.theory.solve` for the whole grid."""
        _, grid = make_grid(self.axes)
        kw = dict(grid)

        def vec(v):
            return float(v[0]) if v.size == 1 else v

        if self.model in ("vae", "cvae"):
            if self.variance == "fixed":
                kw["sigma"] = vec(self.sigma)
        else:
            kw["latent_dim2"] = d2
            if self.sigma1 is not None:
                kw["sigma1"] = vec(self.sigma1)
            if self.variance == "sigma2-fixed":
                kw["sigma2"] = vec(self.sigma2)
        return kw

    def _dry_run(self, open_ok=False):
        """Let the theory check every hyperparameter on a one-value spectrum before any data
        are read (its ValueError/NotCoveredError messages name the argument)."""
        if not self.latent_dims:
            return
        if self.variance in OPEN_VARIANCES:
            if not open_ok:
                raise NotCoveredError(f"--variance {self.variance} (Sigma1 learned as well) has no "
                                      "closed form in the theory; `vaetheory check` reports its "
                                      "numerical optimum")
            self.covered = False
            return
        spec = spectrum_from_eigenvalues([1.0], kind=self.spectrum_kind)
        d1, d2 = self.latent_settings()[0]
        try:
            solve(self.model, self.variance, spec, d1, **self.theory_kwargs(d2))
        except NotCoveredError:
            if not open_ok:
                raise
            self.covered = False
        except ValueError as exc:
            raise _usage(str(exc)) from None

    def settings(self) -> dict:
        """The options as given, for the JSON ``settings``."""
        out = {
            "model": self.model, "variance": self.variance, "center": self.center,
            "grid": {k: v for k, v in self.axes.items()},
            "grid_shape": [int(v.size) for v in self.axes.values()],
            "latent_dims": list(self.latent_dims),
        }
        if self.latent_dims2 is not None:
            out["latent_dims2"] = list(self.latent_dims2)
        for name in ("sigma", "sigma1", "sigma2"):
            v = getattr(self, name)
            if v is not None:
                out[name] = float(v[0]) if v.size == 1 else v
        for name in ("key", "cols", "y", "y_key", "x_cols", "y_cols", "quadrant"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.image_shape is not None:
            out["image_shape"] = list(self.image_shape)
        return out


# ------------------------------------------------------------------------------------------
# data -> spectrum


@dataclass
class _Stream:
    label: str                  # how messages name it
    n_rows: Optional[int]       # None when unknown up front (text files)
    chunks: Iterator[np.ndarray]
    n_cols: int
    nbytes: int


def _open(source, key=None, label=None) -> _Stream:
    """A stream of row blocks from a file path or an in-memory array; peeks the first block."""
    if isinstance(source, np.ndarray):
        X = source.reshape(source.shape[0], -1) if source.ndim > 2 else (
            source[:, None] if source.ndim == 1 else source)
        rows = default_chunk_rows(X.shape[1])
        chunks = (X[s:s + rows] for s in range(0, X.shape[0], rows))
        n, nbytes, label = X.shape[0], 0, label or "the array"
    else:
        n, chunks = vio.iter_chunks(source, key=key)
        label = label or f"'{source}'" + (f" (array {key!r})" if key else "")
        nbytes = os.path.getsize(source)
    first = next(chunks, None)
    if first is None:
        raise DataError(f"{label} has no rows")
    return _Stream(label, n, itertools.chain([first], chunks), int(first.shape[1]), nbytes)


def _select(stream: _Stream, cols: np.ndarray) -> _Stream:
    stream.chunks = (b[:, cols] for b in stream.chunks)
    stream.n_cols = int(cols.size)
    return stream


def _checked(stream: _Stream, colmap: Optional[np.ndarray] = None) -> Iterator[np.ndarray]:
    """Pass blocks through; at the end raise a DataError naming the count and the first location
    (row and column of the file, 0-based) of non-finite values."""
    row, bad, first = 0, 0, None
    for block in stream.chunks:
        if block.dtype.kind in "fc":
            mask = ~np.isfinite(block)
            k = int(np.count_nonzero(mask))
            if k:
                if first is None:
                    r, c = np.argwhere(mask)[0]
                    first = (row + int(r), int(colmap[c]) if colmap is not None else int(c))
                bad += k
        row += block.shape[0]
        yield block
    if bad:
        raise DataError(f"{stream.label} contains {bad} non-finite value(s) (NaN or inf); first at "
                        f"row {first[0]}, column {first[1]} (0-based)")


def _zip_rows(x: _Stream, y: _Stream, xs, ys) -> Iterator[np.ndarray]:
    """Blocks of [x, y] with paired rows, whatever the block sizes of the two streams."""
    rx = ry = None
    nx = ny = 0
    while True:
        if rx is None or rx.shape[0] == 0:
            rx = next(xs, None)
            nx += 0 if rx is None else rx.shape[0]
        if ry is None or ry.shape[0] == 0:
            ry = next(ys, None)
            ny += 0 if ry is None else ry.shape[0]
        if rx is None or ry is None:
            rest = xs if ry is None else ys
            if rx is not None or ry is not None:
                extra = sum(b.shape[0] for b in rest)
                nx, ny = (nx + extra, ny) if ry is None else (nx, ny + extra)
                raise DataError(f"x ({x.label}) has {nx} rows but y ({y.label}) has {ny}: they "
                                "must be paired samples (row i of x with row i of y)")
            return
        k = min(rx.shape[0], ry.shape[0])
        yield np.concatenate([np.asarray(rx[:k], dtype=np.float64),
                              np.asarray(ry[:k], dtype=np.float64)], axis=1)
        rx, ry = rx[k:], ry[k:]


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


def _source_name(data, label):
    return label if isinstance(data, np.ndarray) else str(data)


def load_spectrum(data, opts: ModelOptions, *, progress: bool = False, with_basis: bool = False,
                  label: Optional[str] = None):
    """Data file (or array) -> :class:`~vaetheory.moments.Spectrum` the model's theorem uses.

    vae/mhvae: the data spectrum of DATA (optionally ``--cols``). cvae: the residual spectrum of
    y given x, with x and y from two files (``--y``), columns of one file (``--x-cols``/``--y-cols``),
    an image quadrant (``--quadrant``), or the arrays ``x``/``y`` of an .npz. Read in chunks, one
    pass; ``progress`` shows a bar on stderr for files over :data:`PROGRESS_BYTES`.

    Returns ``(spectrum, info)``, info being a JSON-able dict describing the data.
    """
    source = _source_name(data, label or "the array")
    info = {"source": source, "centered": bool(opts.center)}
    blocks, streams, name, x_dim = _blocks(data, opts, info, label)
    total = None if any(s.n_rows is None for s in streams) else streams[0].n_rows
    show = progress and sum(s.nbytes for s in streams) > PROGRESS_BYTES
    with _progress_bar(show, total, f"reading {source}") as tick:
        moments = accumulate_moments(blocks, center=opts.center, progress=tick, name=name)
    if opts.model != "cvae":
        spectrum = spectrum_from_moments(moments, with_basis=with_basis)
    else:
        spectrum = residual_spectrum(moments, x_dim, with_basis=with_basis)
    info.update(n_samples=int(spectrum.n_samples), dim=int(spectrum.dim), rank=int(spectrum.rank),
                spectrum_kind=spectrum.kind)
    return spectrum, info


def load_arrays(data, opts: ModelOptions, *, label: Optional[str] = None):
    """The data themselves, as float64 (for stochastic training, which needs the samples).

    Returns ``(X, y)``: vae/mhvae ``y`` is None; cvae ``X`` is the condition x and ``y`` the
    output, selected exactly as :func:`load_spectrum` selects them.
    """
    info = {"source": _source_name(data, label or "the array"), "centered": bool(opts.center)}
    blocks, _, _, x_dim = _blocks(data, opts, info, label)
    parts = [np.asarray(b, dtype=np.float64) for b in blocks]
    Z = np.concatenate(parts, axis=0)
    if opts.model != "cvae":
        return Z, None
    return Z[:, :x_dim], Z[:, x_dim:]


def _blocks(data, opts: ModelOptions, info: dict, label):
    """Row blocks of the data the model uses (cvae: [x, y]); ``(blocks, streams, name, x_dim)``."""
    x_dim = None
    try:
        if opts.model != "cvae":
            s = _open(data, opts.key, label)
            info["features"] = s.n_cols
            colmap = None
            if opts.cols is not None:
                colmap = vio.parse_columns(opts.cols, s.n_cols)
                _select(s, colmap)
                info["selection"] = f"columns {opts.cols} of {info['features']}"
            blocks, streams, name = _checked(s, colmap), [s], s.label
        else:
            blocks, streams, name, x_dim = _cvae_blocks(data, opts, info, label)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise _usage(str(exc)) from None  # column selections, image shapes
    return blocks, streams, name, x_dim


def _cvae_blocks(data, opts: ModelOptions, info: dict, label):
    """Joint [x, y] blocks for the CVAE, and the dimension of x."""
    is_npz = not isinstance(data, np.ndarray) and str(data).lower().endswith(".npz")
    by_cols = opts.x_cols is not None or opts.y_cols is not None
    if opts.y is not None or (is_npz and not by_cols and opts.quadrant is None):
        # two arrays: DATA (x) and --y FILE, or the x/y arrays of one .npz
        if opts.y is not None:
            x = _open(data, opts.key, label and f"{label} (x)")
            y = _open(opts.y, opts.y_key)
        else:
            x = _open(data, opts.key or "x")
            y = _open(data, opts.y_key or "y")
        xc = vio.parse_columns(opts.x_cols, x.n_cols) if opts.x_cols is not None else None
        yc = vio.parse_columns(opts.y_cols, y.n_cols) if opts.y_cols is not None else None
        if xc is not None:
            _select(x, xc)
        if yc is not None:
            _select(y, yc)
        if x.n_rows is not None and y.n_rows is not None and x.n_rows != y.n_rows:
            raise DataError(f"x ({x.label}) has {x.n_rows} rows but y ({y.label}) has {y.n_rows}: "
                            "they must be paired samples (row i of x with row i of y)")
        info.update(x_source=x.label, y_source=y.label, x_dim=x.n_cols, y_dim=y.n_cols)
        info["selection"] = f"x from {x.label}, y from {y.label}"
        blocks = _zip_rows(x, y, _checked(x, xc), _checked(y, yc))
        return blocks, [x, y], "[x, y]", x.n_cols
    if not by_cols and opts.quadrant is None:
        raise _usage("the cvae needs an output y: give --y FILE, --x-cols/--y-cols, --quadrant "
                     "with --image-shape, or an .npz with arrays 'x' and 'y'")
    s = _open(data, opts.key, label)
    D = s.n_cols
    if opts.quadrant is not None:
        shape = opts.image_shape
        if shape is None:
            side = math.isqrt(D)
            if side * side != D or side < 2:
                raise _usage(f"--quadrant: the data have {D} columns, not a square image; "
                             "give --image-shape HxW (or HxWxC)")
            shape = (side, side)
            info["image_shape_inferred"] = True
        xc, yc = vio.quadrant_columns(shape, opts.quadrant, n_cols=D)
        info["image_shape"] = list(shape)
        info["selection"] = (f"x = {opts.quadrant} quadrant of {'x'.join(map(str, shape))} images, "
                             "y = the other three")
    else:
        xc = vio.parse_columns(opts.x_cols, D) if opts.x_cols is not None else None
        yc = vio.parse_columns(opts.y_cols, D) if opts.y_cols is not None else None
        if xc is None:
            xc = np.setdiff1d(np.arange(D), yc)
        if yc is None:
            yc = np.setdiff1d(np.arange(D), xc)
        if xc.size == 0 or yc.size == 0:
            raise _usage(f"the column selection leaves {'x' if xc.size == 0 else 'y'} with no "
                         f"columns (the data have {D})")
        both = np.intersect1d(xc, yc)
        if both.size:
            raise _usage(f"column {int(both[0])} is in both --x-cols and --y-cols")
        info["selection"] = f"x = columns {opts.x_cols or 'not in y'}, y = columns {opts.y_cols or 'not in x'}"
    cols = np.concatenate([xc, yc])
    info.update(features=D, x_dim=int(xc.size), y_dim=int(yc.size))
    _select(s, cols)
    return _checked(s, cols), [s], s.label, int(xc.size)


def build_solutions(data, opts: ModelOptions, *, progress: bool = False, with_basis: bool = False,
                    label: Optional[str] = None):
    """Data -> spectrum -> one Solution per latent-dim setting, each covering the whole grid.

    Returns ``(solutions, info)``. The hyperparameter grid goes to the theory in one call per
    latent-dim setting (no loop over grid points).
    """
    spectrum, info = load_spectrum(data, opts, progress=progress, with_basis=with_basis, label=label)
    sols = []
    for d1, d2 in opts.latent_settings():
        sols.append(solve(opts.model, opts.variance, spectrum, d1, **opts.theory_kwargs(d2)))
    return sols, info


def build_solution(data, opts: ModelOptions, *, progress: bool = False, with_basis: bool = False,
                   label: Optional[str] = None):
    """:func:`build_solutions` for a single latent-dim setting: ``(Solution, info)``."""
    if len(opts.latent_settings()) != 1:
        raise _usage("give a single --latent-dim (and --latent-dim2) here")
    sols, info = build_solutions(data, opts, progress=progress, with_basis=with_basis, label=label)
    return sols[0], info


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


def _grid_sentence(opts: ModelOptions) -> str:
    parts = []
    for name, v in opts.axes.items():
        if v.size == 1:
            parts.append(f"{name} = {report.fmt(v[0])}")
        else:
            parts.append(f"{name} = {report.fmt(v[0])} .. {report.fmt(v[-1])} ({v.size} values)")
    for name in ("sigma", "sigma1", "sigma2"):
        v = getattr(opts, name)
        if v is not None:
            parts.append(f"{name} = " + (report.fmt(v[0]) + " (isotropic)" if v.size == 1
                                         else ",".join(report.fmt(x) for x in v)))
    dims = ", ".join(f"({a}, {b})" if b is not None else str(a) for a, b in opts.latent_settings())
    parts.append(("latent dims (z1, z2) = " if opts.model == "mhvae" else "latent dim = ") + dims)
    return "; ".join(parts)


def _model_sentence(sol) -> str:
    what = {"vae": "standard VAE", "cvae": "conditional VAE (y given x)",
            "mhvae": "two-latent hierarchical VAE"}[sol.model]
    return f"model: {what}, {sol.variance} variance -- {sol.theorem}"


def _print_notes(console, sols):
    for note in report.notes_of(sols):
        _say(console, f"note: {note}", style="italic")


def _render_predict(console, sols, info, opts, detail):
    _say(console, report.data_sentence(info))
    _say(console, _model_sentence(sols[0]))
    _say(console, "grid: " + _grid_sentence(opts))
    swept = opts.swept
    console.print(report.predict_table(sols, swept))
    if detail:
        for sol in sols:
            for idx in report.grid_indices(sol):
                console.print(report.detail_table(sol, idx, swept, len(sols) > 1))
    for line in report.summary_lines(sols, swept):
        _say(console, line)
    _print_notes(console, sols)


def _check_matrices_path(path, force, inputs):
    if not path.lower().endswith(".npz"):
        raise _usage(f"--matrices {path!r}: the file name must end in .npz")
    for src in inputs:
        if src is None or isinstance(src, np.ndarray):
            continue
        same = os.path.abspath(path) == os.path.abspath(str(src))
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(path, src)
        if same:
            raise _usage(f"--matrices {path!r} is an input file; refusing to overwrite it")
    if os.path.isdir(path):
        raise _usage(f"--matrices {path!r} is a directory")
    if os.path.exists(path) and not force:
        raise _usage(f"--matrices {path!r} exists; refusing to overwrite it (use --force)")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _usage(f"--matrices {path!r}: directory {parent!r} does not exist")


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
    `check` (and `predict --check`): 3 REFUTED, 4 INCONCLUSIVE.
    """


@main.command()
@click.argument("data", metavar="DATA")
@model_options
@_output_options
@click.option("--detail", is_flag=True,
              help="Per latent dim: singular values, learned stds and thresholds.")
@click.option("--matrices", default=None, metavar="FILE.npz",
              help="Write the optimal matrices of the (single) grid point to a new .npz file.")
@click.option("--force", is_flag=True, help="Let --matrices replace an existing file.")
@click.option("--check", "do_check", is_flag=True,
              help="Also confirm every point with the exact numerical checker (as `vaetheory "
                   "check`); exit 0 CONFIRMED, 3 REFUTED, 4 INCONCLUSIVE.")
@_checker_options(modes=False)
@_debug_option
def predict(data, as_json, detail, matrices, force, do_check, **kw):
    """Predicted ranks, collapsed latent dims and thresholds for every hyperparameter point.

    \b
    Examples:
      vaetheory predict X.npy --latent-dim 16 --beta log:0.1:100:7
      vaetheory predict X.npy --variance fixed --sigma 0.5 --latent-dim 8 --json
      vaetheory predict imgs.npy --model cvae --quadrant bottom-left --image-shape 28x28 -d 16
      vaetheory predict X.csv --model mhvae -d 8 --beta1 1 --beta2 0.1:2:20 --sigma1 0.5
    """
    copts = _pop_checker_kwargs(kw)
    opts = ModelOptions.from_kwargs(kw)
    if matrices is not None:
        if opts.grid_size != 1 or len(opts.latent_settings()) != 1:
            raise _usage("--matrices needs a single grid point and latent dim (give one value per "
                         "hyperparameter)")
        _check_matrices_path(matrices, force, [data, opts.y])
    sols, info = build_solutions(data, opts, progress=_progress_enabled(as_json),
                                 with_basis=matrices is not None)
    checks = _run_exact_checks(sols, copts, _progress_enabled(as_json)) if do_check else None
    written = _write_matrices(matrices, sols[0], force) if matrices is not None else None
    settings = opts.settings()
    if written:
        settings["matrices"] = {"file": matrices, "arrays": written}
    if do_check:
        settings["check"] = dict(copts, mode="exact")
    if as_json:
        click.echo(report.dumps(report.predict_document(sols, info, settings, checks)))
    else:
        console = _console()
        _render_predict(console, sols, info, opts, detail)
        if written:
            _say(console, f"wrote the optimal matrices ({', '.join(written)}) and 'meta' (JSON) "
                          f"to {matrices}" + ("; rotations of the latent space give other optima"
                                              if not all(sols[0].exact.values()) else ""))
        if checks is not None:
            console.print(report.check_table(sols, opts.swept, checks))
            for line in report.check_lines(sols, opts.swept, checks):
                _say(console, line)
    return report.VERDICT_EXIT[report.worst_verdict(checks)] if checks else 0


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
    opts = ModelOptions.from_kwargs(kw, data_only=True)
    spec, info = load_spectrum(data, opts, progress=_progress_enabled(as_json))
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
@_debug_option
def thresholds(data, keep, param, as_json, **kw):
    """Per latent dim, the hyperparameter value at which it collapses (others as given).

    \b
    Examples:
      vaetheory thresholds X.npy --keep 16            # what beta keeps 16 dims active?
      vaetheory thresholds X.npy -d 16 --param eta_dec --beta 2
      vaetheory thresholds X.npy --model mhvae --keep 4 --beta1 1 --sigma1 0.5
    """
    if keep is not None and keep < 1:
        raise _usage(f"--keep must be >= 1, got {keep}")
    opts = ModelOptions.from_kwargs(kw, default_latent=keep)
    if param is not None:
        param = param.replace("-", "_")
        known = _critical_names(opts)
        if param not in known:
            raise _usage(f"--param {param}: no threshold for it in this setting; choose from "
                         + ", ".join(known))
    sols, info = build_solutions(data, opts, progress=_progress_enabled(as_json))
    show_dims = len(sols) > 1
    points = []
    for sol in sols:
        p = param or report.summary_param(sol, opts.swept)
        for idx in report.grid_indices(sol):
            entry = report.thresholds_point(sol, idx)
            if keep is not None:
                entry["keep"] = report.keep_answer(sol, idx, keep, p)
            points.append((sol, idx, entry))
    if as_json:
        first = sols[0]
        doc = {"model": first.model, "variance": first.variance, "theorem": first.theorem,
               "centered": first.spectrum.centered, "n_samples": first.spectrum.n_samples,
               "spectrum_units": report.spectrum_units(first.spectrum),
               "spectrum": report.spectrum_values(first.spectrum),
               "data": info, "settings": opts.settings(),
               "critical_latent": report.critical_latent(first),
               "critical_direction": dict(first.critical_direction),
               "notes": report.notes_of(sols), "points": [e for _, _, e in points]}
        click.echo(report.dumps(doc))
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
            console.print(report.thresholds_table(sol, idx, opts.swept, show_dims))
    if len(points) > max_tables and keep is None:
        _say(console, f"... {len(points) - max_tables} more grid points (--json prints all)")
    if keep is not None:
        for sol, idx, entry in points:
            label = report.point_label(sol, idx, opts.swept, show_dims) if len(points) > 1 else ""
            _say(console, report.keep_sentence(entry["keep"], label))
    _print_notes(console, sols)


def _critical_names(opts: ModelOptions) -> List[str]:
    spec = spectrum_from_eigenvalues([1.0], kind=opts.spectrum_kind)
    d1, d2 = opts.latent_settings()[0]
    return list(solve(opts.model, opts.variance, spec, d1, **opts.theory_kwargs(d2)).critical)


# ------------------------------------------------------------------------------------------
# the numerical checker (vaetheory check, predict --check)

def _run_exact_checks(sols, copts, show_progress):
    """One :func:`vaetheory.checker.check` per grid point of every solution -> check dicts."""
    from .checker import check

    pairs = [(sol, idx) for sol in sols for idx in report.grid_indices(sol)]
    out = []
    with _progress_bar(show_progress, len(pairs) * copts["restarts"], "checking", "runs") as tick:
        for sol, idx in pairs:
            res = check(sol, idx, restarts=copts["restarts"], seed=copts["seed"],
                        tol_loss=copts["tol"], tol_sv=copts["tol_sv"],
                        max_iter=copts["max_iter"], progress=tick)
            out.append(report.check_dict(res, "exact"))
    return out


def _run_sgd_checks(data, sols, opts, copts, show_progress, label=None):
    """Stochastic training at every grid point (the samples are loaded into memory once)."""
    from .sgd import default_lr, train_sgd

    X, y = load_arrays(data, opts, label=label)
    lr = copts["lr"] if copts["lr"] is not None else default_lr(X, y, center=opts.center)
    pairs = [(sol, idx) for sol in sols for idx in report.grid_indices(sol)]
    out = []
    total = len(pairs) * copts["epochs"]
    with _progress_bar(show_progress, total, "training (sgd)", "epochs") as tick:
        for sol, idx in pairs:
            params = report.point_params(sol, idx)
            d1 = params.pop("latent_dim")
            d2 = params.pop("latent_dim2", None)
            res = train_sgd(sol.model, sol.variance, X, d1, d2, y=y, epochs=copts["epochs"],
                            batch_size=copts["batch_size"], lr=lr, seed=copts["seed"],
                            center=opts.center, progress=tick, **params)
            out.append(report.check_dict(res, "sgd"))
    return out, lr


def _check_open(data, opts, copts, as_json):
    """Settings without a closed form: the numerical optimum alone, labelled as such."""
    from .checker import numerical_optimum

    spectrum, info = load_spectrum(data, opts, progress=_progress_enabled(as_json))
    shape, grid = make_grid(opts.axes)
    results = []
    points = [(d, idx) for d in opts.latent_settings() for idx in np.ndindex(*shape)]
    with _progress_bar(_progress_enabled(as_json), len(points) * copts["restarts"],
                       "numerical optimum", "runs") as tick:
        for (d1, d2), idx in points:
            hyper = {k: float(v[idx]) for k, v in grid.items()}
            extra = {}
            if opts.model == "mhvae" and opts.sigma1 is not None:
                extra["sigma1"] = opts.sigma1 if opts.sigma1.size > 1 else float(opts.sigma1[0])
            if opts.sigma2 is not None:
                extra["sigma2"] = float(opts.sigma2[0]) if opts.sigma2.size == 1 else opts.sigma2
            num = numerical_optimum(opts.model, opts.variance, spectrum, d1, d2,
                                    restarts=copts["restarts"], seed=copts["seed"],
                                    max_iter=copts["max_iter"], progress=tick, **hyper, **extra)
            params = {**hyper, **{k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                  for k, v in extra.items()}, "latent_dim": d1}
            if d2 is not None:
                params["latent_dim2"] = d2
            results.append((params, num))
    settings = opts.settings()
    settings["check"] = dict(copts)
    if as_json:
        click.echo(report.dumps(report.numerical_document(results, info, settings, spectrum)))
        return 0
    console = _console()
    _say(console, report.data_sentence(info))
    _say(console, f"model: {opts.model}, {opts.variance} -- no closed form in the theory: "
                  "numerical optimum only (not a prediction, nothing to confirm)")
    console.print(report.numerical_table(results, opts.swept or list(opts.axes)[:1]))
    for params, num in results:
        for w in num.warnings:
            _say(console, f"warning: {w}", style="italic")
    return 0


@main.command()
@click.argument("data", metavar="DATA")
@model_options
@_checker_options()
@_output_options
@_debug_option
def check(data, as_json, **kw):
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
    """
    copts = _pop_checker_kwargs(kw)
    mode = copts["mode"]
    opts = ModelOptions.from_kwargs(kw, open_ok=True)
    if not opts.covered:
        if mode == "sgd":
            raise _usage("--mode sgd compares training with a closed form; this setting has none "
                         "(use --mode exact for its numerical optimum)")
        return _check_open(data, opts, copts, as_json)
    sols, info = build_solutions(data, opts, progress=_progress_enabled(as_json))
    settings = opts.settings()
    if mode == "exact":
        checks = _run_exact_checks(sols, copts, _progress_enabled(as_json))
        settings["check"] = {k: copts[k] for k in ("mode", "restarts", "seed", "tol", "tol_sv",
                                                   "max_iter")}
    else:
        checks, lr = _run_sgd_checks(data, sols, opts, copts, _progress_enabled(as_json))
        settings["check"] = {k: copts[k] for k in ("mode", "seed", "epochs", "batch_size")}
        settings["check"]["lr"] = lr
    code = report.VERDICT_EXIT[report.worst_verdict(checks)]
    if as_json:
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
    console.print(report.check_table(sols, opts.swept, checks))
    for line in report.check_lines(sols, opts.swept, checks):
        _say(console, line)
    return code


DEMO = {
    "vae": {"latent_dim": "16", "beta": "1,10,20,50,100,150,200"},
    "cvae": {"latent_dim": "16", "quadrant": "bottom-left", "image_shape": "8x8",
             "beta": "1,5,10,20,50,100"},
    "mhvae": {"latent_dim": "8", "beta1": "1", "beta2": "1,7,8,10,12,14", "sigma1": "1"},
}


@main.command()
@click.option("--model", "-m", type=click.Choice(MODELS), default="vae", show_default=True,
              help="Which model to demonstrate.")
@_output_options
@click.option("--detail", is_flag=True, help="Per latent dim details, as in predict.")
@_debug_option
def demo(model, as_json, detail):
    """Run predict on the bundled 8x8 handwritten digits (1797 x 64), no file needed."""
    X, _ = vio.load_digits()
    given = dict(DEMO[model])
    kw = {"model": model, **given}
    opts = ModelOptions.from_kwargs(kw)
    label = "bundled 8x8 handwritten digits (UCI, CC BY 4.0)"
    sols, info = build_solutions(X, opts, label=label)
    settings = opts.settings()
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
    param = "beta2" if model == "mhvae" else "beta"
    extra = " --quadrant bottom-left --image-shape 8x8" if model == "cvae" else ""
    _say(console, f"  vaetheory thresholds YOUR_DATA.npy --model {model}{extra} --keep 4"
                  f"   # which {param} keeps 4 dims active?")
    _say(console, f"  vaetheory spectrum YOUR_DATA.npy --model {model}{extra}"
                  "   # the spectrum behind the thresholds")
    _say(console, "Add --json for a machine-readable document, --detail for per-dim values.")

"""Regenerate (or check) the tool's output shown in README.md, so the README cannot drift.

Every block of real output in README.md follows a marker line ``<!-- output: NAME -->`` and is the
fenced code block right after it. :data:`BLOCKS` says, per NAME, which command makes it (run here,
in a scratch directory holding ``digits.npy`` and ``my_data.csv``, the files the README tells the
reader to make) and which lines of its output are shown (``...`` marks a cut).

    python scripts/readme_outputs.py            # rewrite the blocks of README.md in place
    python scripts/readme_outputs.py --check    # exit 1 and show the differences if any block
                                                # differs (timings of the checker masked)
    python scripts/readme_outputs.py --check --fast   # the blocks without the checker

tests/test_readme.py runs ``--check --fast`` in the suite (the checker's blocks are marked slow).
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import pathlib
import re
import sys
import tempfile
from dataclasses import dataclass
from typing import Callable, List, Optional

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- output: ([\w-]+) -->$")
CUT = "..."


def make_files(d: pathlib.Path):
    """The files the README's reader makes (same commands as in the README)."""
    import numpy as np

    from vaetheory.io import load_digits

    X, y = load_digits()
    np.save(d / "digits.npy", X)
    np.savetxt(d / "my_data.csv", np.c_[X, y], fmt="%d", delimiter=",",
               header=",".join([f"px{i}" for i in range(64)] + ["label"]), comments="")
    # what pandas.DataFrame(X).to_csv() writes: an unnamed index column, column names 0..D-1
    np.savetxt(d / "digits_pandas.csv", np.c_[np.arange(len(X)), X], delimiter=",",
               fmt=["%d"] + ["%.1f"] * X.shape[1],
               header="," + ",".join(str(i) for i in range(X.shape[1])), comments="")


def run(args: List[str], cwd: pathlib.Path, *, stderr: bool = False) -> str:
    """stdout of ``vaetheory ARGS`` run in ``cwd`` as a pipe would get it (no colour, width 160);
    with ``stderr``, its stderr lines (the warnings) first, as a terminal shows them."""
    from click.testing import CliRunner

    from vaetheory.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        r = CliRunner().invoke(main, args, env={"NO_COLOR": "1", "COLUMNS": None})
    finally:
        os.chdir(old)
    if r.exit_code not in (0, 3, 4):
        raise RuntimeError(f"vaetheory {' '.join(args)} failed ({r.exit_code}): {r.stderr}")
    return (r.stderr if stderr else "") + r.stdout


# ------------------------------------------------------------------------------------------
# which lines are shown


def whole(lines):
    return lines


def last(n=1):
    return lambda lines: lines[-n:]


def pick(*rules):
    """Lines chosen by rules, in output order, with ``...`` where lines were left out.

    A rule is ``("head", n)``, ``("tail", n)``, ``("starts", text)`` or ``("contains", text)``.
    """
    def select(lines):
        keep = [False] * len(lines)
        for kind, arg in rules:
            for i, line in enumerate(lines):
                if (kind == "head" and i < arg) or (kind == "tail" and i >= len(lines) - arg) or \
                        (kind == "starts" and line.startswith(arg)) or \
                        (kind == "contains" and arg in line):
                    keep[i] = True
        out, gap = [], False
        for line, k in zip(lines, keep):
            if k:
                if gap:
                    out.append(CUT)
                out.append(line)
                gap = False
            else:
                gap = True
        if gap:
            out.append(CUT)
        return out
    return select


def json_point(index):
    """One point of a JSON document, one key per line (the README's compact form)."""
    def select(lines):
        point = json.loads("\n".join(lines))["points"][index]
        body = [f'  {json.dumps(k)}: {json.dumps(v, separators=(", ", ": "))}'
                for k, v in point.items()]
        return ["{", ",\n".join(body), "}"]
    return select


@dataclass
class Block:
    args: List[str]
    select: Callable = whole
    prompt: bool = False       # show "$ vaetheory ..." as the first line
    slow: bool = False         # runs the numerical checker (seconds, timings in the output)
    stderr: bool = False       # show the warnings on stderr before the output


BLOCKS = {
    "demo": Block(["demo"]),
    "keep-16": Block(["thresholds", "digits.npy", "--keep", "16"], last()),
    "cvae-fixed": Block(["predict", "digits.npy", "--model", "cvae", "--quadrant", "bottom-left",
                         "-d", "16", "--beta", "10,20", "--sigma", "0.5"],
                        pick(("head", 2), ("starts", "beta=10:"), ("starts", "note:"))),
    "tutorial-spectrum": Block(["spectrum", "my_data.csv", "--cols", ":-1", "--top", "4"],
                               pick(("head", 2), ("starts", "│ 1 "), ("starts", "│ 2 "),
                                    ("tail", 1)), prompt=True),
    "tutorial-predict": Block(["predict", "my_data.csv", "--cols", ":-1", "-d", "16", "--beta",
                               "log:1:1000:7"],
                              pick(("starts", "│"), ("starts", "beta=31.62:"),
                                   ("starts", "beta=100:")), prompt=True),
    "tutorial-thresholds": Block(["thresholds", "my_data.csv", "--cols", ":-1", "-d", "16"],
                                 pick(("starts", "┃ mode"), ("starts", "│    1 │"),
                                      ("starts", "│   12 │"), ("starts", "│   13 │")),
                                 prompt=True),
    "tutorial-keep": Block(["thresholds", "my_data.csv", "--cols", ":-1", "--keep", "12"],
                           pick(("tail", 1)), prompt=True),
    "tutorial-check": Block(["check", "my_data.csv", "--cols", ":-1", "-d", "12", "--beta",
                             "25,30", "--restarts", "4"],
                            pick(("starts", "┃ point"), ("starts", "│ beta="), ("tail", 1)),
                            prompt=True, slow=True),
    "pandas-index": Block(["spectrum", "digits_pandas.csv", "--top", "3"],
                          pick(("head", 3), ("starts", "│ 1 ")), prompt=True, stderr=True),
    "pandas-cols": Block(["spectrum", "digits_pandas.csv", "--cols", "1:", "--top", "3"],
                         pick(("head", 1), ("starts", "│ 1 ")), prompt=True, stderr=True),
    "json-point": Block(["predict", "digits.npy", "-d", "3", "--beta", "1,150", "--json"],
                        json_point(1)),
    "long-sweep": Block(["predict", "digits.npy", "-d", "16", "--beta", "1:200:100000"],
                        pick(("starts", "┏"), ("starts", "┃"), ("head", 12), ("tail", 4),
                             ("contains", "grid points shown"))),
}


def render(name: str, cwd: pathlib.Path) -> str:
    block = BLOCKS[name]
    lines = block.select(run(block.args, cwd, stderr=block.stderr).rstrip("\n").split("\n"))
    if block.prompt:
        lines = ["$ vaetheory " + " ".join(block.args)] + lines
    return "\n".join(lines)


_VOLATILE = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


def normalise(name: str, text: str) -> str:
    """Text to compare: the checker's blocks with every number masked and runs of spaces made
    one (seconds, loss gaps and sv errors depend on the machine and BLAS, and change the column
    widths); the verdicts, the words and the layout stay."""
    if not BLOCKS[name].slow:
        return text
    return "\n".join(re.sub(r"([ ━─])\1+", r"\1", _VOLATILE.sub("#", line))
                     for line in text.split("\n"))


# ------------------------------------------------------------------------------------------
# README.md


def blocks_in(text: str):
    """``[(name, start, end)]``: line indices of each marked block's content (fences excluded)."""
    lines = text.split("\n")
    out = []
    for i, line in enumerate(lines):
        m = MARKER.match(line.strip())
        if not m:
            continue
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README.md line {i + 1}: marker {m.group(1)!r} is not followed by "
                             "a code fence")
        end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
        out.append((m.group(1), i + 2, end))
    return out


def update(text: str, cwd: pathlib.Path, *, only: Optional[Callable] = None):
    """``(new README text, {name: (old, new)})`` with every selected block regenerated."""
    lines = text.split("\n")
    changes = {}
    for name, start, end in reversed(blocks_in(text)):
        if name not in BLOCKS:
            raise ValueError(f"README.md has a block {name!r} that scripts/readme_outputs.py "
                             "does not know")
        if only is not None and not only(name):
            continue
        old = "\n".join(lines[start:end])
        new = render(name, cwd)
        if normalise(name, old) != normalise(name, new):
            changes[name] = (old, new)
        lines[start:end] = new.split("\n")
    return "\n".join(lines), changes


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    check, fast = "--check" in argv, "--fast" in argv
    sys.path.insert(0, str(ROOT))
    text = README.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        make_files(d)
        new, changes = update(text, d, only=(lambda n: not BLOCKS[n].slow) if fast else None)
    if check:
        for name, (old, fresh) in changes.items():
            print(f"README block {name!r} differs from the tool's output:")
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True) + ["\n"],
                                                       fresh.splitlines(True) + ["\n"],
                                                       "README.md", "vaetheory"))
        print(f"{len(changes)} of {len(blocks_in(text))} README blocks differ")
        return 1 if changes else 0
    if new != text:
        README.write_text(new)
    print(f"rewrote {len(changes)} README block(s): {', '.join(changes) or 'none changed'}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())

"""Make the README's figures with the command line: ``python docs/figures/make_figures.py``.

Needs the plot extra (``pip install ".[plot]"``). Writes the bundled digits to a temporary
``digits.npy`` (as the README's tutorial does), runs each command below from that directory and
writes the figures next to this script, replacing the committed ones (``--force``). The README
shows each figure with the command that made it (the file name changes only in the ``-o``).
"""

import os
import shlex
import sys
import tempfile

import numpy as np

from vaetheory.cli import main
from vaetheory.io import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))

#: (figure file, command line as the README shows it)
FIGURES = [
    ("collapse.png", "vaetheory plot collapse digits.npy -d 16 --beta 1,10,20,50,100,150,200 "
                     "-o collapse.png"),
    ("spectrum.png", "vaetheory plot spectrum digits.npy -d 16 --beta 1,30,100 -o spectrum.png"),
    ("heatmap.png", "vaetheory plot heatmap digits.npy --model mhvae -d 8 --sigma1 0.5 "
                    "--beta1 0.5,2 --beta2 1,4 -o heatmap.png"),
]
DPI = "100"   # small files: 600 x 400 pixels


def main_(argv=None):
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "digits.npy"), load_digits()[0])
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            for name, command in FIGURES:
                args = shlex.split(command)[1:]
                out = os.path.join(HERE, name)
                args[args.index("-o") + 1] = out
                print(command)
                try:
                    main(args + ["--dpi", DPI, "--force"], standalone_mode=False)
                except SystemExit as exc:
                    if exc.code:
                        return exc.code
        finally:
            os.chdir(cwd)
    return 0


if __name__ == "__main__":
    sys.exit(main_())

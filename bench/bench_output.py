"""Cost per grid point of the command line's output (issue 15.2), as ratios measured in one run.

For a sweep over beta on the bundled digits (latent dim ``-d``, default 16):

* ``theory``   -- the closed form over the whole grid (counts and losses; per-dim arrays lazily);
* ``per-dim``  -- the (grid x latent dim) arrays the JSON needs (solved in blocks, as the CLI does);
* ``streamed`` -- report.encode_points: a point's JSON text from one template per solution;
* ``dicts``    -- the previous path: point_dict + cleaning + json.dumps(indent=2), per point;
* ``floor``    -- json.dumps (the C encoder, compact) of the same numbers as one flat list: the
  cost of writing those floats at all (float repr), the baseline the others are divided by;

then whole ``vaetheory predict`` runs to /dev/null in a subprocess (wall time and peak RSS):
``--json`` and the summarised table at 10^5 and 10^6 points. A shared machine: read the ratios.

    python bench/bench_output.py [-d 16] [--points 100000] [--cli 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vaetheory as vt  # noqa: E402
from vaetheory import report  # noqa: E402
from vaetheory import settings as vs  # noqa: E402
from vaetheory._grid import blocks, solve_points  # noqa: E402
from vaetheory.io import load_digits  # noqa: E402


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def cli_run(args):
    code = ("import resource, sys; from vaetheory.cli import main\n"
            f"sys.argv = ['vaetheory'] + {args!r}\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "sys.stderr.write('\\nRSS %d' % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    rss = int(r.stderr.rsplit("RSS ", 1)[1]) / 1024
    return wall, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-d", type=int, default=16)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--dicts", type=int, default=2_000, help="points for the slow dict path")
    ap.add_argument("--cli", type=int, nargs="*", default=[100_000, 1_000_000])
    a = ap.parse_args()

    X, _ = load_digits()
    spec = vt.empirical_spectrum(X)
    req = vs.Request.build(vs.get("vae", "learnable"), latent_dims=[a.d],
                           beta=np.linspace(1, 200, a.points))
    t_theory, sols = timed(lambda: req.solve(spec))
    sol = sols[0]
    size = max(1, (1 << 20) // a.d)

    def pieces():
        return [solve_points(req, spec, a.d, None, np.arange(r.start, r.stop))
                for r in blocks(a.points, size)]

    def per_dim():
        out = []
        for p in pieces():
            for v in p.critical.values():
                out.append(v.shape)
        return out

    t_perdim, _ = timed(per_dim)
    parts = pieces()
    t_stream, texts = timed(lambda: [t for p in parts for t in report.encode_points(p)])
    n_numbers = sum(t.count("\n") for t in texts[:50]) / 50  # about one number a line
    sub = vt.vae_learnable_sigma(spec, a.d, beta=np.linspace(1, 200, a.dicts))
    t_dicts, _ = timed(lambda: [report._indent(report.dumps(report.point_dict(sub, i)), 4)
                                for i in report.grid_indices(sub)])
    flat = np.concatenate([np.concatenate([np.ravel(p.singular_values[k]) for k in
                                           p.singular_values] +
                                          [np.ravel(p.posterior_std[k]) for k in p.posterior_std]
                                          + [np.ravel(p.critical[k]) for k in p.critical])
                           for p in parts]).tolist()
    t_floor, _ = timed(lambda: json.dumps(flat))

    per = {"theory": t_theory / a.points, "per-dim": t_perdim / a.points,
           "streamed": t_stream / a.points, "dicts": t_dicts / a.dicts,
           "floor": t_floor / a.points}
    print(f"grid of {a.points} points, latent dim {a.d} (~{n_numbers:.0f} lines of JSON a point)")
    print(f"{'step':<10} {'us/point':>10} {'x floor':>9}")
    for k, v in per.items():
        print(f"{k:<10} {v * 1e6:10.2f} {v / per['floor']:9.2f}")
    print(f"streamed is {per['dicts'] / per['streamed']:.1f}x cheaper per point than the dicts")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits.npy")
        np.save(path, X)
        for n in a.cli:
            for extra, what in ((["--json"], "json"), ([], "table")):
                wall, rss = cli_run(["predict", path, "-d", str(a.d), "--beta", f"1:200:{n}"]
                                    + extra)
                print(f"vaetheory predict --beta 1:200:{n} -d {a.d} {what:>5} > /dev/null: "
                      f"{wall:7.2f} s, peak RSS {rss:6.0f} MiB, "
                      f"{wall / n * 1e6:6.2f} us/point")


if __name__ == "__main__":
    main()

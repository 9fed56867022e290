"""Cost per grid point of the command line's output (issue 15.2), as ratios measured in one run.

For a sweep over beta on the bundled digits (latent dim ``-d``, default 16), every setting
(vae/cvae x learnable/fixed encoder variance, mhvae sigma2-learnable/fixed, vae/cvae with
``--eta-dec learned``), in process, per point:

* ``per-dim``  -- the theory's (grid x latent dim) arrays the JSON needs (the closed form in
  blocks, as the CLI solves it, and its lazily made per-mode arrays and critical values);
* ``bulk``     -- report.encode_points with its ``logged`` object: the columns of a block
  (logged.logged_block) and their text (vaetheory/_bulkjson.py), orjson formatting the floats;
* ``bulk-repr``-- the same with ``repr`` formatting the floats (orjson not installed);
* ``dicts``    -- the per-point path (point_dict + cleaning + json.dumps(indent=2)), on
  ``--dicts`` points: what every point cost before;
* ``floor``    -- the baseline: json.dumps (the C encoder, compact) of every number of the
  points (the same arrays' tolist()), i.e. the cost of writing those floats at all;

then whole ``vaetheory predict digits.npy -d 16 --beta 1:200:N --json > /dev/null`` runs in a
subprocess (wall time, points/s, peak RSS, us/point and that over the in-process floor), for
N = 10^3 .. 10^6, and ``thresholds --json`` and the summarised table at the largest N. A
shared machine: read the ratios.

    python bench/bench_output.py [-d 16] [--points 16384] [--cli 1000 10000 100000 1000000]
                                 [--settings vae-learnable ...] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import vaetheory as vt  # noqa: E402
from vaetheory import _bulkjson as bj  # noqa: E402
from vaetheory import report  # noqa: E402
from vaetheory import settings as vs  # noqa: E402
from vaetheory._grid import blocks, solve_points  # noqa: E402
from vaetheory.io import load_digits  # noqa: E402
from vaetheory.logged import logged_block  # noqa: E402

#: name -> (model, variance, decoder, extra hyperparameters, the CLI's options)
SETTINGS = {
    "vae-learnable": ("vae", "learnable", "fixed", {}, []),
    "vae-fixed": ("vae", "fixed", "fixed", {"sigma": np.array([0.5])}, ["--sigma", "0.5"]),
    "cvae-learnable": ("cvae", "learnable", "fixed", {}, ["--model", "cvae", "--x-cols", "0:32"]),
    "cvae-fixed": ("cvae", "fixed", "fixed", {"sigma": np.array([0.5])},
                   ["--model", "cvae", "--x-cols", "0:32", "--sigma", "0.5"]),
    "mhvae-s2-learnable": ("mhvae", "sigma2-learnable", "fixed", {}, ["--model", "mhvae"]),
    "mhvae-s2-fixed": ("mhvae", "sigma2-fixed", "fixed", {"sigma2": np.array([0.5])},
                       ["--model", "mhvae", "--sigma2", "0.5"]),
    "vae-learnable-learned-dec": ("vae", "learnable", "learned", {}, ["--eta-dec", "learned"]),
    "vae-fixed-learned-dec": ("vae", "fixed", "learned", {"sigma": np.array([0.5])},
                              ["--sigma", "0.5", "--eta-dec", "learned"]),
    "cvae-learnable-learned-dec": ("cvae", "learnable", "learned", {},
                                   ["--model", "cvae", "--x-cols", "0:32", "--eta-dec",
                                    "learned"]),
}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def cli_run(args):
    """Wall seconds and peak RSS (MiB) of one CLI run to /dev/null."""
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork + exec)
    code = ("import sys; from vaetheory.cli import main\n"
            f"sys.argv = ['vaetheory'] + {args!r}\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "sys.stderr.write('\\nRSS %d' % int(hwm.split()[1]))\n")
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True, cwd=ROOT)
    wall = time.perf_counter() - t
    if "RSS " not in r.stderr:
        raise SystemExit(f"vaetheory {' '.join(args)} failed: {r.stderr.strip()}")
    return wall, int(r.stderr.rsplit("RSS ", 1)[1]) / 1024


def spectrum_for(kind, X):
    if kind == "residual":
        return vt.empirical_residual_spectrum(X[:, :32], X[:, 32:])
    return vt.empirical_spectrum(X)


def in_process(name, X, d, n, n_dicts):
    """us/point of each step of one setting's streamed JSON (see the module docstring)."""
    model, variance, decoder, extra, _ = SETTINGS[name]
    setting = vs.get(model, variance, decoder)
    spec = spectrum_for("residual" if model == "cvae" else "data", X)
    dims = dict(latent_dims=[d], latent_dims2=[d] if model == "mhvae" else None)
    req = vs.Request.build(setting, beta2=np.linspace(1, 200, n), **dims, **extra) \
        if model == "mhvae" else \
        vs.Request.build(setting, beta=np.linspace(1, 200, n), **dims, **extra)
    d2 = d if model == "mhvae" else None
    size = max(1, (1 << 20) // (d + (d2 or 0)))   # the CLI's blocks (cli.BLOCK_ENTRIES)

    def pieces():
        return [solve_points(req, spec, d, d2, np.arange(r.start, r.stop))
                for r in blocks(n, size)]

    def per_dim(parts):
        for p in parts:   # every lazily made array the JSON reads
            for part in (p.singular_values, p.posterior_std, p.critical, p.kl, p.mean_sq,
                         p._modes):
                for k in part:
                    part[k]
            p.rate, p.distortion
        return parts

    t_perdim, parts = timed(lambda: per_dim(pieces()))

    def stream():
        return sum(len(t.text) for p in parts
                   for t in report.encode_points(p, delta=0.01, joined=True))

    t_bulk, chars = timed(stream)
    saved = list(bj._FAST)
    bj._FAST[:] = [(None, None)]
    try:
        t_repr, _ = timed(stream)
    finally:
        bj._FAST[:] = saved
    sub = solve_points(req, spec, d, d2, np.arange(min(n, n_dicts)))
    t_dicts, _ = timed(lambda: [report._indent(report.dumps(report.point_dict(sub, i, 0.01)), 4)
                                for i in report.grid_indices(sub)])
    # the floor: the C encoder on every number of the points (their arrays' tolist())
    arrays = []
    for p in parts:
        for part in (p.singular_values, p.posterior_std, p.critical, p.kl):
            arrays += [np.ravel(part[k]) for k in part]
        lb = logged_block(p, 0.01)
        for b in lb.latents.values():
            arrays += [np.ravel(b.posterior_std), np.ravel(b.total_kl)]
            if b.mean_variance is not None:
                arrays.append(np.ravel(b.mean_variance))
        arrays += [np.ravel(p.optimal_loss), np.ravel(p.rate), np.ravel(p.distortion)]
    flat = np.concatenate(arrays)
    flat = np.where(np.isfinite(flat), flat, 0.0).tolist()
    t_floor, _ = timed(lambda: json.dumps(flat))
    per = {"per-dim": t_perdim / n, "bulk": t_bulk / n, "bulk-repr": t_repr / n,
           "dicts": t_dicts / min(n, n_dicts), "floor": t_floor / n}
    return per, len(flat) / n, chars / n, req


def profile_cli(args, top=14):
    """cProfile of one CLI run to /dev/null (in process): where the time goes."""
    from vaetheory.cli import main

    sys.argv = ["vaetheory"] + args
    so = sys.stdout
    sys.stdout = open(os.devnull, "w")
    pr = cProfile.Profile()
    pr.enable()
    try:
        main()
    except SystemExit:
        pass
    pr.disable()
    sys.stdout.close()
    sys.stdout = so
    out = io.StringIO()
    pstats.Stats(pr, stream=out).sort_stats("tottime").print_stats(top)
    print(out.getvalue())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-d", type=int, default=16)
    ap.add_argument("--points", type=int, default=16384, help="points of the in-process sweep")
    ap.add_argument("--dicts", type=int, default=500, help="points for the slow dict path")
    ap.add_argument("--cli", type=int, nargs="*", default=[1000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--profile", action="store_true", help="profile one CLI run at 10^5 points")
    a = ap.parse_args()
    print(f"orjson formatter: {'yes' if bj._fast_floats() is not None else 'no (repr)'}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    X, _ = load_digits()
    print(f"\nin process: a sweep of {a.points} points, latent dim {a.d} (us per point; "
          "x floor = over the C encoder writing the same numbers)")
    print(f"{'setting':<27} {'numbers':>7} {'chars':>6} {'per-dim':>8} {'bulk':>8} "
          f"{'x floor':>7} {'bulk-repr':>9} {'dicts':>8} {'x floor':>7} {'floor':>7} "
          f"{'dicts/bulk':>10}")
    for name in a.settings:
        per, numbers, chars, _ = in_process(name, X, a.d, a.points, a.dicts)
        f = per["floor"]
        print(f"{name:<27} {numbers:7.0f} {chars:6.0f} {per['per-dim'] * 1e6:8.2f} "
              f"{per['bulk'] * 1e6:8.2f} {per['bulk'] / f:7.2f} {per['bulk-repr'] * 1e6:9.2f} "
              f"{per['dicts'] * 1e6:8.1f} {per['dicts'] / f:7.1f} {f * 1e6:7.2f} "
              f"{per['dicts'] / per['bulk']:10.0f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits.npy")
        np.save(path, X)
        print(f"\nvaetheory predict digits.npy -d {a.d} --beta 1:200:N --json > /dev/null "
              "(subprocess: wall, points/s, peak RSS; x floor = us/point over the in-process "
              "floor of the same setting)")
        for name in a.settings:
            _, _, _, _, opts = SETTINGS[name]
            floor = in_process(name, X, a.d, min(a.points, 8192), 10)[0]["floor"]
            sweep = "--beta2" if name.startswith("mhvae") else "--beta"

            def run(n):
                return cli_run(["predict", path, "-d", str(a.d), sweep, f"1:200:{n}", "--json"]
                               + opts)

            start, _ = run(1)   # the baseline of a run: start-up, reading, the spectrum
            print(f"{name:<27} N=1        {start:7.2f} s (start-up, data, spectrum)")
            for n in a.cli:
                wall, rss = run(n)
                per = max(wall - start, 0.0) / n
                print(f"{name:<27} N={n:<8d} {wall:7.2f} s {n / wall:10.0f} points/s "
                      f"{rss:6.0f} MiB {per * 1e6:8.2f} us/point after start-up "
                      f"{per / floor:6.2f} x floor")
        n = max(a.cli)
        for what, extra in (("thresholds --json", ["--json"]), ("summarised table", [])):
            cmd = "thresholds" if what.startswith("thresholds") else "predict"
            wall, rss = cli_run([cmd, path, "-d", str(a.d), "--beta", f"1:200:{n}"] + extra)
            print(f"vae-learnable {what:<18} N={n}: {wall:7.2f} s, {rss:6.0f} MiB, "
                  f"{wall / n * 1e6:6.2f} us/point")
        if a.profile:
            print("\nprofile: predict --json at 10^5 points, vae-learnable")
            profile_cli(["predict", path, "-d", str(a.d), "--beta", "1:200:100000", "--json"])


if __name__ == "__main__":
    main()

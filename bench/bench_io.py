"""Reading cost: CSV vs .npy, the new text reader vs the old one, npy read() vs memmap.

Every method computes the same thing -- the centred spectrum of the file's rows -- in its own
subprocess (so its peak memory is its own) on the same files, in one run; ratios are against
naive numpy in that run (``np.loadtxt`` / ``np.load``, float64, ``X.T @ X``, ``eigvalsh``).
Files are written first and read warm (from the page cache). No asserts: machines are noisy.

    python bench/bench_io.py [--rows 1000000] [--cols 100] [--repeat 1] [--dir DIR]

Methods:

- ``naive-csv``: ``np.loadtxt(path, delimiter=",", skiprows=1)``, then the spectrum;
- ``old-csv``: the previous reader re-stated (a Python loop over lines, ``np.loadtxt`` on each
  16 MiB chunk's list of lines), then the streaming moments;
- ``csv-numpy`` / ``csv-pyarrow``: ``load_spectrum(Selection(csv))`` with numpy's parser
  (pyarrow disabled) / with pyarrow's;
- ``naive-npy``: ``np.load`` whole, then the spectrum; ``npy-memmap``: ``load_spectrum`` of the
  .npy (memory map); ``npy-read``: the same with the memory map refused (plain read() blocks).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def naive_spectrum(X):
    X = np.asarray(X, dtype=np.float64)
    X = X - X.mean(axis=0)
    return np.linalg.eigvalsh(X.T @ X / X.shape[0])[::-1]


def old_reader_blocks(path, rows):
    """The previous text reader, re-stated: a Python loop over lines, then np.loadtxt on each
    chunk's list of lines (the header line skipped)."""
    lines = []
    with open(path, encoding="utf-8-sig") as fh:
        next(fh)
        for line in fh:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            lines.append(s)
            if len(lines) >= rows:
                yield np.loadtxt(lines, delimiter=",", comments=None, ndmin=2)
                lines = []
    if lines:
        yield np.loadtxt(lines, delimiter=",", comments=None, ndmin=2)


def run_one(method, csv, npy):
    sys.path.insert(0, ROOT)
    from vaetheory import _text, io
    from vaetheory.moments import accumulate_moments, load_spectrum, spectrum_from_moments

    if method == "naive-csv":
        ev = naive_spectrum(np.loadtxt(csv, delimiter=",", skiprows=1))
    elif method == "old-csv":
        d = np.load(npy, mmap_mode="r").shape[1]
        m = accumulate_moments(old_reader_blocks(csv, (1 << 24) // (8 * d)))
        ev = spectrum_from_moments(m).eigenvalues
    elif method == "csv-numpy":
        _text._pyarrow_csv = lambda: None
        ev = load_spectrum(io.Selection(csv)).eigenvalues
    elif method == "csv-pyarrow":
        if _text._pyarrow_csv() is None:
            return None
        ev = load_spectrum(io.Selection(csv)).eigenvalues
    elif method == "naive-npy":
        ev = naive_spectrum(np.load(npy))
    elif method == "npy-memmap":
        ev = load_spectrum(io.Selection(npy)).eigenvalues
    elif method == "npy-read":
        def refuse(*a, **k):
            raise OSError(12, "Cannot allocate memory")
        io.np.memmap = refuse
        ev = load_spectrum(io.Selection(npy)).eigenvalues
    else:
        raise SystemExit(f"unknown method {method}")
    return ev


METHODS = ["naive-csv", "old-csv", "csv-numpy", "csv-pyarrow", "naive-npy", "npy-memmap",
           "npy-read"]


def measure(method, csv, npy, env=None):
    """Run one method in a fresh process: wall s, CPU s, peak RSS MiB, eigenvalues."""
    out = tempfile.mktemp(suffix=".npy")
    code = (f"import sys, time, numpy as np; sys.path.insert(0, {HERE!r}); import bench_io; "
            f"t = time.perf_counter(); c = time.process_time(); "
            f"ev = bench_io.run_one({method!r}, {csv!r}, {npy!r}); "
            f"w = time.perf_counter() - t; c = time.process_time() - c; "
            f"import re, json; "
            f"rss = int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
            f" / 1024; "
            f"ev is not None and np.save({out!r}, ev); "
            f"print(json.dumps([w, c, rss, ev is not None]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit(f"{method} failed:\n{r.stderr}")
    wall, cpu, rss, ran = json.loads(r.stdout.strip().splitlines()[-1])
    ev = np.load(out) if ran else None
    if ran:
        os.remove(out)
    return wall, cpu, rss, ev


def write_files(d, n, D, seed=0):
    rng = np.random.default_rng(seed)
    csv, npy = os.path.join(d, "x.csv"), os.path.join(d, "x.npy")
    X = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float64, shape=(n, D))
    scale = 1.0 / np.sqrt(np.arange(1, D + 1))
    with open(csv, "w") as fh:
        fh.write(",".join(f"c{j}" for j in range(D)) + "\n")
        for s in range(0, n, 50000):
            m = min(50000, n - s)
            # 5 significant digits, as exported measurements and embeddings often have
            block = np.round(rng.standard_normal((m, D)) * scale + 0.5, 4)
            X[s:s + m] = block
            try:
                import pyarrow as pa
                import pyarrow.csv as pcsv

                table = pa.table({f"c{j}": block[:, j] for j in range(D)})
                sink = pa.BufferOutputStream()
                pcsv.write_csv(table, sink, pcsv.WriteOptions(include_header=False))
                fh.write(sink.getvalue().to_pybytes().decode())
            except ImportError:
                np.savetxt(fh, block, delimiter=",", fmt="%.4f")
    X.flush()
    del X
    return csv, npy


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--cols", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--dir", default=None, help="where to write the files (default: a temp dir)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="BLAS threads of the measured processes (default: the library's own). "
                         "With 2+ threads, BLAS workers spin between the moment updates of a "
                         "streamed text file and bill CPU time that is not the reader's.")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.blas_threads is not None:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.blas_threads)
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        t = time.perf_counter()
        csv, npy = write_files(d, args.rows, args.cols)
        print(f"BLAS threads: {args.blas_threads or 'default'}; "
              f"{args.rows} x {args.cols}: CSV {os.path.getsize(csv) / 2**20:.0f} MiB, .npy "
              f"{os.path.getsize(npy) / 2**20:.0f} MiB "
              f"(written in {time.perf_counter() - t:.0f} s)")
        results = {}
        for _ in range(args.repeat):
            for m in METHODS:
                wall, cpu, rss, ev = measure(m, csv, npy, env)
                best = results.get(m)
                if best is None or cpu < best[1]:
                    results[m] = (wall, cpu, rss, ev)
        ref = results["naive-npy"][3]
        base = {"csv": results["naive-csv"], "npy": results["naive-npy"]}
        print(f"{'method':<12} {'wall s':>8} {'CPU s':>8} {'peak MiB':>9} {'CPU/naive':>10} "
              f"{'rel. error':>11}")
        for m in METHODS:
            wall, cpu, rss, ev = results[m]
            if ev is None:
                print(f"{m:<12} (pyarrow not installed)")
                continue
            b = base["csv" if "csv" in m else "npy"]
            err = float(np.max(np.abs(ev - ref)) / ref[0])
            print(f"{m:<12} {wall:8.2f} {cpu:8.2f} {rss:9.0f} {cpu / b[1]:10.2f} {err:11.1e}")
        r = results
        print("ratios (CPU): new CSV reader / old one: numpy parser "
              f"{r['csv-numpy'][1] / r['old-csv'][1]:.2f}"
              + (f", pyarrow {r['csv-pyarrow'][1] / r['old-csv'][1]:.2f}"
                 if r["csv-pyarrow"][3] is not None else ""))
        print(f"ratios (CPU): CSV / .npy (memmap): numpy parser "
              f"{r['csv-numpy'][1] / r['npy-memmap'][1]:.1f}x"
              + (f", pyarrow {r['csv-pyarrow'][1] / r['npy-memmap'][1]:.1f}x"
                 if r["csv-pyarrow"][3] is not None else ""))
        print(f"ratios (wall): npy read() / memmap {r['npy-read'][0] / r['npy-memmap'][0]:.2f}")


if __name__ == "__main__":
    main()

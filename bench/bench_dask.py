"""The moment pass on a local Dask cluster against the single-process path, on the same file.

Same .npy file, same result (relative difference printed; target <= 1e-12), times in one run:
the single-process ``load_spectrum``, the same selection streamed to a ``LocalCluster`` of
``--workers`` processes (``load_spectrum(..., client=...)``, what ``--dask-workers`` does), and a
Dask array of the memory-mapped file computed on the cluster (``empirical_spectrum(dask_array)``).
Cluster start-up is timed separately. On one 2-core machine the cluster cannot beat the single
process by much (the same cores, plus serialisation); the point is that the result is the same
and the overhead is bounded -- across machines the partials scale out.

    python bench/bench_dask.py [--rows 200000] [--cols 256] [--workers 2] [--repeat 2]
"""

import argparse
import os
import tempfile
import time

import numpy as np

import vaetheory as vt
from vaetheory._dask import connect


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200000)
    ap.add_argument("--cols", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import dask.array as da

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "x.npy")
        X = (rng.standard_normal((args.rows, args.cols), dtype=np.float32)
             * (1.0 / np.arange(1, args.cols + 1, dtype=np.float32)) + 2.0)
        np.save(path, X)
        del X
        sel = vt.Selection(path)
        t = time.perf_counter()
        with connect(workers=args.workers) as client:
            startup = time.perf_counter() - t
            ts, tc, ta = [], [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                single = vt.load_spectrum(sel)
                ts.append(time.perf_counter() - t)
                t = time.perf_counter()
                dist = vt.load_spectrum(sel, client=client)
                tc.append(time.perf_counter() - t)
                t = time.perf_counter()
                arr = da.from_array(np.load(path, mmap_mode="r"), chunks=(50000, args.cols))
                darr = vt.empirical_spectrum(arr)
                ta.append(time.perf_counter() - t)
        top = single.eigenvalues[0]
        d1 = np.max(np.abs(dist.eigenvalues - single.eigenvalues)) / top
        d2 = np.max(np.abs(darr.eigenvalues - single.eigenvalues)) / top
        print(f"{args.rows} x {args.cols} float32, {args.workers} workers (start-up "
              f"{startup:.1f} s): single process {np.median(ts):.2f} s | streamed to the cluster "
              f"{np.median(tc):.2f} s (ratio {np.median(tc) / np.median(ts):.2f}), max rel. diff "
              f"{d1:.1e} | Dask array on the cluster {np.median(ta):.2f} s (ratio "
              f"{np.median(ta) / np.median(ts):.2f}), max rel. diff {d2:.1e} (target <= 1e-12)")


if __name__ == "__main__":
    main()

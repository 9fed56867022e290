"""Spectrum of a 70000 x 784 float32 dataset: vaetheory vs naive numpy, in one process.

Target (issue 2): time <= 0.8x naive (float64 cast, X.T @ X, eigvalsh), relative error <= 1e-9
against a float64 reference. Prints ratios; no asserts (machines are noisy).

    python bench/bench_spectrum.py [--rows 70000] [--cols 784] [--repeat 3]
"""

import argparse
import time

import numpy as np

from vaetheory.moments import empirical_spectrum


def make_data(n, d, seed=0):
    rng = np.random.default_rng(seed)
    # MNIST-like: non-negative, a decaying spectrum, a large common offset (tests centring)
    basis = rng.normal(size=(d, d)).astype(np.float32)
    scale = (1.0 / np.arange(1, d + 1)).astype(np.float32)
    X = (rng.standard_normal((n, d), dtype=np.float32) * scale) @ basis
    X += 3.0 * np.abs(basis[0])
    return X


def naive(X, center):
    X64 = X.astype(np.float64)
    if center:
        X64 -= X64.mean(axis=0)
    return np.linalg.eigvalsh(X64.T @ X64 / X.shape[0])[::-1]


def reference(X, center):
    """float64 two-pass reference with exact centring (mean first, then products)."""
    X64 = X.astype(np.float64)
    if center:
        X64 -= X64.mean(axis=0)
        X64 -= X64.mean(axis=0)
    M = X64.T @ X64 / X.shape[0]
    return np.linalg.eigvalsh((M + M.T) / 2)[::-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=70000)
    ap.add_argument("--cols", type=int, default=784)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    X = make_data(args.rows, args.cols)
    print(f"data: {X.shape} {X.dtype}, {X.nbytes / 2**20:.0f} MiB")
    for center in (True, False):
        ref = reference(X, center)
        times = {"naive": [], "vaetheory": []}
        for _ in range(args.repeat):  # interleaved, so drift in machine load hits both alike
            t = time.perf_counter()
            ev_naive = naive(X, center)
            times["naive"].append(time.perf_counter() - t)
            t = time.perf_counter()
            spec = empirical_spectrum(X, center=center)
            times["vaetheory"].append(time.perf_counter() - t)
        top = ref[0]
        err_ours = np.max(np.abs(spec.eigenvalues - np.where(ref > spec.tolerance, ref, 0))) / top
        err_naive = np.max(np.abs(ev_naive - ref)) / top
        first = times["vaetheory"][0] / times["naive"][0]
        best = min(times["vaetheory"]) / min(times["naive"])
        med = np.median(times["vaetheory"]) / np.median(times["naive"])
        print(f"center={center!s:5}  naive first {times['naive'][0]:.3f} s, best "
              f"{min(times['naive']):.3f} s | vaetheory first {times['vaetheory'][0]:.3f} s, best "
              f"{min(times['vaetheory']):.3f} s | ratio first {first:.2f}, median {med:.2f}, "
              f"best {best:.2f} (target <= 0.80) | rel. error vs float64 reference: "
              f"vaetheory {err_ours:.1e}, naive {err_naive:.1e} (target <= 1e-9)")
    print("peak extra memory: naive holds a float64 copy of X "
          f"({X.size * 8 / 2**20:.0f} MiB); vaetheory one 16 MiB chunk")


if __name__ == "__main__":
    main()

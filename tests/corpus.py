"""The behaviour corpus: recorded outputs of the command line, replayed after every change.

``COMMANDS`` covers every command and model (JSON and text), the option families, and the error
paths. :func:`record` runs them on deterministic data files and writes ``tests/corpus/corpus.json``;
``tests/test_corpus.py`` replays them and compares:

* exit code and stderr: equal;
* JSON documents: every key recorded must still be there with an equal value (keys may be added;
  numbers equal to 1e-9 relative); keys that measure the optimiser's path or time (``seconds``,
  ``iterations``, the learned numbers of the checker) are not compared, only its verdict;
* text: equal, except for commands marked ``text=False`` (their text has timings).

Re-record deliberately (``python tests/corpus.py``) only when a change of behaviour is intended,
and say so in the commit message with the diff (``python tests/corpus.py --diff``).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
CORPUS = HERE / "corpus" / "corpus.json"

#: keys whose values depend on the optimiser's path or the clock: not compared
VOLATILE = {"seconds", "iterations", "loss_gap", "max_singular_value_error", "max_variance_error",
            "per_map", "learned", "run_losses", "reason", "exact_loss", "singular_values_learned",
            "singular_value_error", "singular_value_spread", "runs", "numerical", "kl",
            "active_units", "lr", "loss_history"}


def make_files(d: pathlib.Path):
    """Deterministic inputs: the bundled digits and small random sets."""
    from vaetheory.io import load_digits

    d.mkdir(parents=True, exist_ok=True)
    X, labels = load_digits()
    np.save(d / "digits.npy", X)
    header = ",".join([f"px{i}" for i in range(64)] + ["label"])
    np.savetxt(d / "digits.csv", np.c_[X, labels], fmt="%d", delimiter=",", header=header,
               comments="")
    rng = np.random.default_rng(20261201)
    R = rng.normal(size=(300, 6)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5]) + 3.0
    np.save(d / "r.npy", R)
    np.savetxt(d / "r.tsv", R, delimiter="\t")
    Y = R[:, :2] @ rng.normal(size=(2, 3)) + rng.normal(size=(300, 3)) * np.array([2.0, 1.0, 0.3])
    np.save(d / "ry.npy", Y)
    np.savez(d / "rxy.npz", x=R, y=Y)
    low = rng.normal(size=(200, 3)) @ rng.normal(size=(3, 5))  # rank 3 of 5
    np.save(d / "low.npy", low)
    nan = R.copy()
    nan[4, 1] = np.nan
    np.save(d / "nan.npy", nan)
    (d / "bad.csv").write_text("a,b\n1,2\n3,x\n")


#: (name, args, {"json": bool, "text": bool})
COMMANDS = [
    # demo
    ("demo-vae", ["demo"], {}),
    ("demo-cvae", ["demo", "--model", "cvae"], {}),
    ("demo-mhvae", ["demo", "--model", "mhvae", "--detail"], {}),
    ("demo-vae-json", ["demo", "--json"], {}),
    ("demo-cvae-json", ["demo", "--model", "cvae", "--json"], {}),
    ("demo-mhvae-json", ["demo", "--model", "mhvae", "--json"], {}),
    # predict, every setting
    ("predict-vae", ["predict", "{d}/digits.npy", "-d", "16", "--beta", "log:1:1000:7"], {}),
    ("predict-vae-json", ["predict", "{d}/digits.npy", "-d", "3,8", "--beta", "1,150",
                          "--eta-dec", "0.5,1", "--json"], {}),
    ("predict-vae-detail", ["predict", "{d}/digits.npy", "-d", "5", "--beta", "30", "--detail"], {}),
    ("predict-vae-csv", ["predict", "{d}/digits.csv", "--cols", ":-1", "-d", "12", "--beta",
                         "25,30", "--json"], {}),
    ("predict-vae-nocenter", ["predict", "{d}/r.npy", "-d", "4", "--no-center", "--json"], {}),
    ("predict-vae-lowrank", ["predict", "{d}/low.npy", "-d", "5", "--beta", "0.5,3", "--json"], {}),
    ("predict-vae-tsv", ["predict", "{d}/r.tsv", "-d", "4", "--beta", "2"], {}),
    ("predict-vae-fixed-iso", ["predict", "{d}/digits.npy", "-d", "6", "--sigma", "0.5",
                               "--beta", "10,100", "--json"], {}),
    ("predict-vae-fixed-vec", ["predict", "{d}/r.npy", "-d", "3", "--sigma", "0.5,1,2",
                               "--beta", "1,4", "--json", "--no-center"], {}),
    ("predict-vae-fixed-text", ["predict", "{d}/digits.npy", "-d", "6", "--sigma", "0.5,0.5,1,1,2,2",
                                "--beta", "50", "--detail"], {}),
    ("predict-cvae-quadrant", ["predict", "{d}/digits.npy", "--model", "cvae", "--quadrant",
                               "bottom-left", "-d", "16", "--beta", "10,20", "--sigma", "0.5"], {}),
    ("predict-cvae-quadrant-json", ["predict", "{d}/digits.npy", "--model", "cvae", "--quadrant",
                                    "top-right", "--image-shape", "8x8", "-d", "8", "--beta",
                                    "5,50", "--json"], {}),
    ("predict-cvae-files", ["predict", "{d}/r.npy", "--model", "cvae", "--y", "{d}/ry.npy", "-d",
                            "3", "--beta", "0.5,2", "--json"], {}),
    ("predict-cvae-npz", ["predict", "{d}/rxy.npz", "--model", "cvae", "-d", "2", "--json"], {}),
    ("predict-cvae-cols", ["predict", "{d}/digits.npy", "--model", "cvae", "--x-cols", "0:32",
                           "-d", "4", "--beta", "10", "--detail"], {}),
    ("predict-mhvae-thm3", ["predict", "{d}/digits.npy", "--model", "mhvae", "-d", "8", "--beta1",
                            "1", "--beta2", "1,8,14", "--sigma1", "1", "--json"], {}),
    ("predict-mhvae-thm3-text", ["predict", "{d}/digits.npy", "--model", "mhvae", "-d", "6",
                                 "--latent-dim2", "3", "--beta1", "2", "--beta2", "5",
                                 "--sigma1", "0.7", "--detail"], {}),
    ("predict-mhvae-thm5", ["predict", "{d}/digits.npy", "--model", "mhvae", "-d", "6",
                            "--latent-dim2", "8", "--beta2", "2,10", "--sigma1", "0.5",
                            "--sigma2", "0.7", "--json"], {}),
    ("predict-mhvae-thm5-text", ["predict", "{d}/low.npy", "--model", "mhvae", "-d", "4",
                                 "--beta1", "0.5,2", "--sigma2", "0.3"], {}),
    # thresholds
    ("thresholds-vae", ["thresholds", "{d}/digits.npy", "-d", "16"], {}),
    ("thresholds-keep", ["thresholds", "{d}/digits.npy", "--keep", "12"], {}),
    ("thresholds-keep-json", ["thresholds", "{d}/digits.npy", "--keep", "12", "--json"], {}),
    ("thresholds-param", ["thresholds", "{d}/digits.npy", "-d", "8", "--param", "eta_dec",
                          "--beta", "2", "--json"], {}),
    ("thresholds-fixed", ["thresholds", "{d}/r.npy", "-d", "4", "--sigma", "0.8", "--param",
                          "eta_enc", "--keep", "2"], {}),
    ("thresholds-lowrank", ["thresholds", "{d}/low.npy", "-d", "5", "--json"], {}),
    ("thresholds-cvae", ["thresholds", "{d}/digits.npy", "--model", "cvae", "--quadrant",
                         "bottom-left", "--keep", "4", "--json"], {}),
    ("thresholds-mhvae", ["thresholds", "{d}/digits.npy", "--model", "mhvae", "--keep", "4",
                          "--beta1", "1", "--sigma1", "0.5"], {}),
    ("thresholds-mhvae-beta1", ["thresholds", "{d}/digits.npy", "--model", "mhvae", "-d", "4",
                                "--latent-dim2", "6", "--param", "beta1", "--keep", "5",
                                "--json"], {}),
    # spectrum
    ("spectrum", ["spectrum", "{d}/digits.csv", "--cols", ":-1", "--top", "4"], {}),
    ("spectrum-json", ["spectrum", "{d}/digits.npy", "--json"], {}),
    ("spectrum-cvae", ["spectrum", "{d}/r.npy", "--model", "cvae", "--y", "{d}/ry.npy",
                       "--json"], {}),
    ("spectrum-nocenter", ["spectrum", "{d}/r.npy", "--no-center"], {}),
    # check (volatile numbers are not compared; verdicts are)
    ("check-vae", ["check", "{d}/digits.csv", "--cols", ":-1", "-d", "6", "--beta", "25,60",
                   "--restarts", "2", "--json"], {}),
    ("check-vae-fixed", ["check", "{d}/r.npy", "-d", "3", "--sigma", "0.7", "--restarts", "2",
                         "--json"], {}),
    ("check-cvae", ["check", "{d}/r.npy", "--model", "cvae", "--y", "{d}/ry.npy", "-d", "2",
                    "--restarts", "2", "--json"], {}),
    ("check-mhvae", ["check", "{d}/r.npy", "--model", "mhvae", "-d", "3", "--beta2", "2",
                     "--sigma1", "0.8", "--restarts", "2", "--json"], {}),
    ("check-mhvae-thm5", ["check", "{d}/r.npy", "--model", "mhvae", "-d", "3", "--sigma2", "0.6",
                          "--restarts", "2", "--json"], {}),
    ("check-open", ["check", "{d}/r.npy", "--model", "mhvae", "--variance", "both-learnable",
                    "-d", "2", "--beta1", "0.5", "--restarts", "2", "--json"], {}),
    ("check-sgd", ["check", "{d}/r.npy", "-d", "3", "--mode", "sgd", "--epochs", "20",
                   "--json"], {}),
    ("check-text", ["check", "{d}/r.npy", "-d", "3", "--restarts", "2"], {"text": False}),
    ("predict-check", ["predict", "{d}/r.npy", "-d", "2", "--check", "--restarts", "2",
                       "--json"], {}),
    # errors
    ("err-missing", ["predict", "{d}/missing.npy", "-d", "4"], {}),
    ("err-latent", ["predict", "{d}/r.npy", "-d", "0"], {}),
    ("err-latent-missing", ["predict", "{d}/r.npy"], {}),
    ("err-beta", ["predict", "{d}/r.npy", "-d", "2", "--beta", "-1"], {}),
    ("err-beta-text", ["predict", "{d}/r.npy", "-d", "2", "--beta", "abc"], {}),
    ("err-nan", ["predict", "{d}/nan.npy", "-d", "2"], {}),
    ("err-csv", ["predict", "{d}/bad.csv", "-d", "1"], {}),
    ("err-sigma-len", ["predict", "{d}/r.npy", "-d", "2", "--sigma", "1,2,3"], {}),
    ("err-fixed-nosigma", ["predict", "{d}/r.npy", "-d", "2", "--variance", "fixed"], {}),
    ("err-mhvae-beta", ["predict", "{d}/r.npy", "--model", "mhvae", "-d", "2", "--beta", "2"], {}),
    ("err-sigma1-vec", ["predict", "{d}/r.npy", "--model", "mhvae", "-d", "2", "--sigma1",
                        "0.5,1"], {}),
    ("err-both-learnable", ["predict", "{d}/r.npy", "--model", "mhvae", "--variance",
                            "both-learnable", "-d", "2"], {}),
    ("err-cvae-noy", ["predict", "{d}/r.npy", "--model", "cvae", "-d", "2"], {}),
    ("err-cvae-rows", ["predict", "{d}/r.npy", "--model", "cvae", "--y", "{d}/low.npy", "-d",
                       "2"], {}),
    ("err-quadrant", ["predict", "{d}/r.npy", "--model", "cvae", "--quadrant", "top-left", "-d",
                      "2"], {}),
    ("err-cols", ["predict", "{d}/r.npy", "--cols", "0-3", "-d", "2"], {}),
    ("err-keep", ["thresholds", "{d}/r.npy", "--keep", "0"], {}),
    ("err-param", ["thresholds", "{d}/r.npy", "-d", "2", "--param", "beta2"], {}),
    ("err-matrices", ["predict", "{d}/r.npy", "-d", "2", "--beta", "1,2", "--matrices",
                      "{d}/out.npz"], {}),
    ("err-sgd-open", ["check", "{d}/r.npy", "--model", "mhvae", "--variance", "both-learnable",
                      "-d", "2", "--mode", "sgd"], {}),
    ("err-command", ["nonsense"], {}),
    # issue 11: the loss as written, target rates, given spectra
    ("predict-recon-json", ["predict", "{d}/digits.npy", "-d", "8", "--recon", "mse",
                            "--kl-weight", "0.5,2", "--json"], {}),
    ("predict-recon-mhvae", ["predict", "{d}/digits.npy", "--model", "mhvae", "-d", "4",
                             "--recon", "gaussian", "--decoder-std", "0.5", "--kl1-weight", "1",
                             "--kl-weight", "4", "--sigma1", "0.5"], {}),
    ("thresholds-rate", ["thresholds", "{d}/digits.npy", "-d", "16", "--rate", "20"], {}),
    ("predict-eigenvalues", ["predict", "--eigenvalues", "5.117,3.741,3.253,2.842,2.567", "-d",
                             "5", "--beta", "1,2.75,3,3.5,4,6", "--detail"], {}),
    ("err-recon-bce", ["predict", "{d}/r.npy", "-d", "2", "--recon", "bce"], {}),
]


def _args(args, d):
    return [a.replace("{d}", str(d)) for a in args]


def run_all(d: pathlib.Path, names=None):
    """Run the commands in-process; returns {name: {exit, stdout, stderr}} with paths as {d}."""
    from click.testing import CliRunner

    from vaetheory.cli import main

    env = {"COLUMNS": None, "NO_COLOR": "1"}
    out = {}
    for name, args, _ in COMMANDS:
        if names is not None and name not in names:
            continue
        r = CliRunner().invoke(main, _args(args, d), env=env)
        out[name] = {"exit": r.exit_code, "stdout": r.stdout.replace(str(d), "{d}"),
                     "stderr": r.stderr.replace(str(d), "{d}")}
    return out


def _close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def compare_json(old, new, path="$"):
    """Differences between a recorded JSON value and a new one (added keys allowed)."""
    diffs = []
    if isinstance(old, dict):
        if not isinstance(new, dict):
            return [f"{path}: was an object, now {type(new).__name__}"]
        for k, v in old.items():
            if k in VOLATILE:
                continue
            if k not in new:
                diffs.append(f"{path}.{k}: missing")
            else:
                diffs += compare_json(v, new[k], f"{path}.{k}")
        return diffs
    if isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            return [f"{path}: was a list of {len(old)}, now {new!r:.80}"]
        for i, (a, b) in enumerate(zip(old, new)):
            diffs += compare_json(a, b, f"{path}[{i}]")
        return diffs
    if isinstance(old, bool) or isinstance(new, bool) or old is None or new is None:
        return [] if old == new else [f"{path}: {old!r} -> {new!r}"]
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return [] if _close(float(old), float(new)) else [f"{path}: {old!r} -> {new!r}"]
    return [] if old == new else [f"{path}: {old!r:.120} -> {new!r:.120}"]


def compare(name, old, new):
    """Differences of one command's recorded and new outputs."""
    opts = next(o for n, _, o in COMMANDS if n == name)
    diffs = []
    if old["exit"] != new["exit"]:
        diffs.append(f"exit {old['exit']} -> {new['exit']}")
    if old["stderr"] != new["stderr"]:
        diffs.append(f"stderr {old['stderr']!r} -> {new['stderr']!r}")
    args = next(a for n, a, _ in COMMANDS if n == name)
    if "--json" in args and old["exit"] in (0, 3, 4):
        try:
            diffs += compare_json(json.loads(old["stdout"]), json.loads(new["stdout"]))
        except json.JSONDecodeError as exc:
            diffs.append(f"stdout is not JSON: {exc}")
    elif opts.get("text", True) and old["stdout"] != new["stdout"]:
        a, b = old["stdout"].splitlines(), new["stdout"].splitlines()
        first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        diffs.append(f"text differs from line {first + 1}: "
                     f"{(a[first] if first < len(a) else '<end>')!r} -> "
                     f"{(b[first] if first < len(b) else '<end>')!r}")
    return diffs


def record(d):
    make_files(d)
    data = run_all(d)
    CORPUS.parent.mkdir(exist_ok=True)
    CORPUS.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def load():
    return json.loads(CORPUS.read_text())


if __name__ == "__main__":  # python tests/corpus.py [--diff]
    import tempfile

    sys.path.insert(0, str(HERE.parent))
    with tempfile.TemporaryDirectory() as tmp:
        d = pathlib.Path(tmp)
        if "--diff" in sys.argv:
            make_files(d)
            old, new = load(), run_all(d)
            bad = 0
            for name in old:
                diffs = compare(name, old[name], new[name])
                if diffs:
                    bad += 1
                    print(f"{name}:")
                    for line in diffs[:12]:
                        print(f"  {line}")
                    if len(diffs) > 12:
                        print(f"  ... {len(diffs) - 12} more")
            print(f"{bad} of {len(old)} commands differ")
            sys.exit(1 if bad else 0)
        data = record(d)
        print(f"recorded {len(data)} commands in {os.path.relpath(CORPUS)}")

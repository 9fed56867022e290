"""CVAE quadrant task on the digits: classes with lower residual spectra collapse more.

Claim (Dang et al., ICLR 2024, section 5.2 "Collapse levels on MNIST dataset", Fig. 3(a)): in the
task of predicting three quadrants of a digit image (y) from the bottom-left quadrant (x), Theorem 2
says a CVAE trained on a dataset with lower residual eigenvalues e_i (of y after linear regression on
x, docs/theory.md §4) is more prone to collapse: dim i collapses iff e_i <= beta eta_dec^2. The
paper trains CVAEs on single-digit subsets of MNIST, summarises each subset by the sum of its top-16
e_i, and finds that sum negatively correlated with the degree of collapse.

Data: the bundled 8x8 digits, pixels / 16 (in [0, 1] like MNIST), centred; x = the bottom-left 4x4
quadrant (16 pixels), y = the other 48 pixels (vaetheory.Selection(..., quadrant="bottom-left")). One subset per digit
class 0-9 (174-183 images each; the paper used three single-digit subsets, which digits is lost in
the extracted text). d1 = 16, beta = 0.05, eta_enc = eta_dec = 1 (the digits' e_i are ~0.01-0.4).

Measured per class: exact checker (collapsed = posterior equal to the prior) and stochastic training
(train_sgd, 600 epochs of ~6 minibatches; collapsed = KL < 0.01). The claim is scored by the Spearman
rank correlation between a class's top-16 residual sum and its collapsed count (negative = held).

    python examples/cvae_quadrant_digits.py [--fast]
"""

import argparse
import time

from scipy.stats import spearmanr

import vaetheory as vt
from vaetheory.checker import check
from vaetheory.io import DIGITS_IMAGE_SHAPE, load_digits
from vaetheory.sgd import train_sgd
from vaetheory.report import text_table

D1, BETA, TOP = 16, 0.05, 16
EPOCHS = 600


def main(fast=False, verbose=True):
    t0 = time.perf_counter()
    say = print if verbose else (lambda *a, **k: None)
    X, labels = load_digits()
    X = X / 16.0
    classes = (0, 4, 8) if fast else tuple(range(10))
    rows = []
    for digit in classes:
        x, y, in_memory = vt.Selection(X[labels == digit], conditional=True, quadrant="bottom-left",
                                       image_shape=DIGITS_IMAGE_SHAPE).read()
        spec = vt.load_spectrum(in_memory, with_basis=True)
        sol = vt.cvae_learnable_sigma(spec, D1, beta=BETA)
        e = spec.eigenvalues
        chk = check(sol, restarts=2, seed=0)
        sgd_args = dict(y=y, beta=BETA, batch_size=32, lr=0.03, seed=0)
        run = train_sgd("cvae", "learnable", x, D1, epochs=EPOCHS, **sgd_args)
        pred = int(sol.collapsed())
        sgd = int(run.collapsed["z"])
        sgd_long = None
        if sgd != pred:  # slow convergence or a wrong prediction? train 3x longer, report both
            sgd_long = int(train_sgd("cvae", "learnable", x, D1, epochs=3 * EPOCHS,
                                     **sgd_args).collapsed["z"])
        # modes on which SGD and the theory disagree, as e_i / (beta eta_dec^2) (1 = threshold)
        lo, hi = sorted((D1 - pred, D1 - sgd))
        missed = [float(v) for v in e[lo:hi] / BETA]
        rows.append(dict(
            digit=digit, n=x.shape[0], top_sum=float(e[:TOP].sum()), predicted=pred,
            # how close the boundary modes are to the threshold (e / beta eta_dec^2)
            boundary=(float(e[D1 - pred - 1] / BETA) if pred < D1 else None,
                      float(e[D1 - pred] / BETA) if pred > 0 else None),
            checker_verdict=chk.verdict, checker=int(chk.learned["collapsed_prior"]["z"]),
            sgd=sgd, sgd_au=int(run.active_units["z"]), missed=missed, sgd_long=sgd_long,
            sgd_gap=(run.exact_loss - run.optimal_loss) / abs(run.optimal_loss),
            near_threshold=all(0.8 <= v <= 1.25 for v in missed),
        ))

    say(f"Digits / 16, x = bottom-left quadrant (16 px), y = the other 48 px, one subset per class; "
        f"d1 = {D1}, beta = {BETA}, eta_enc = eta_dec = 1.\n")
    yn = {True: "yes", False: "NO"}
    say(text_table(["digit", "N", f"sum of top-{TOP} e_i", "collapsed pred", "checker", "SGD", "SGD AU",
           "e/beta at the boundary (last active, first collapsed)"],
          [[r["digit"], r["n"], f"{r['top_sum']:.3f}", r["predicted"],
            f"{r['checker']} ({r['checker_verdict']})", r["sgd"], r["sgd_au"],
            ", ".join("-" if b is None else f"{b:.2f}" for b in r["boundary"])]
           for r in sorted(rows, key=lambda r: r["top_sum"])]))

    sums = [r["top_sum"] for r in rows]
    rho = {k: float(spearmanr(sums, [r[k] for r in rows])[0]) for k in ("predicted", "checker", "sgd")}
    exact_checker = all(r["checker"] == r["predicted"] for r in rows)
    exact_sgd = sum(r["sgd"] == r["predicted"] for r in rows)
    say(f"\nSpearman rank correlation of the top-{TOP} sum with the collapsed count: predicted "
        f"{rho['predicted']:+.2f}, checker {rho['checker']:+.2f}, SGD {rho['sgd']:+.2f}.")
    say(f"Checker count = predicted count in {sum(r['checker'] == r['predicted'] for r in rows)}/"
        f"{len(rows)} classes; SGD count = predicted in {exact_sgd}/{len(rows)}.")
    for r in rows:
        if r["sgd"] != r["predicted"]:
            say(f"  SGD disagrees for digit {r['digit']}: {r['sgd']} collapsed, predicted "
                f"{r['predicted']}; the mode(s) in dispute have e/beta = "
                + ", ".join(f"{v:.2f}" for v in r["missed"])
                + (" (within 25 % of the threshold)" if r["near_threshold"] else
                   " (not near the threshold)")
                + f"; SGD's exact loss is still {r['sgd_gap']:.1e} (relative) above the optimum; "
                f"with {3 * EPOCHS} epochs: {r['sgd_long']} collapsed ("
                + ("agrees: slow convergence" if r["sgd_long"] == r["predicted"] else
                   "STILL DISAGREES") + ").")
    held = exact_checker and rho["checker"] < 0 and rho["sgd"] < 0
    say(f"Claim (lower residual spectrum, more collapse): {'HELD' if held else 'NOT HELD'} "
        f"(negative rank correlation: checker {yn[rho['checker'] < 0]}, SGD {yn[rho['sgd'] < 0]}). "
        "The theory itself ties collapse to each e_i against the threshold, not to the sum: a class "
        "can have a larger sum and still more collapse, so |rho| < 1 is expected.")
    say(f"[{time.perf_counter() - t0:.1f} s]")
    return dict(rows=rows, rho=rho, held=held)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="three classes (for the tests)")
    main(fast=ap.parse_args().fast)

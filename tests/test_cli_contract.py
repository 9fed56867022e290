"""The command line's contract (issue 16 items 6, 8-11; issue 15 item 2), one test per class,
through the real CLI -- a subprocess wherever a signal, a pipe, the exit status or stderr of a real
process is what is tested.

Expected values never come from the code under test: sizes are set by the test (a memory limit,
a grid), counts are recounted here from the solution's collapsed counts, and the streamed JSON is
compared with the in-memory document of the same solutions.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

import vaetheory as vt
from vaetheory import report
from vaetheory import settings as vs
from vaetheory.cli import main
from vaetheory.io import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": ROOT}


def cli(*args, env=None, timeout=120, stdin=None):
    """A real ``python -m vaetheory`` process: (exit code, stdout, stderr)."""
    r = subprocess.run([sys.executable, "-m", "vaetheory", *map(str, args)], capture_output=True,
                       text=True, env={**ENV, **(env or {})}, timeout=timeout, cwd=ROOT)
    return r.returncode, r.stdout, r.stderr


def one_error_line(err):
    assert err.startswith("error: ") and err.count("\n") == 1, repr(err)
    assert "Traceback" not in err and "Warning" not in err
    return err


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("contract")
    X, _ = load_digits()
    np.save(d / "digits.npy", X)
    rng = np.random.default_rng(11)
    small = rng.normal(size=(300, 5)) * np.array([3.0, 2.0, 1.5, 1.0, 0.5])
    np.save(d / "small.npy", small)
    # features on wildly different scales (as raw wine: one column 300x the others)
    wide = rng.normal(size=(400, 6)) @ np.diag([300.0, 12.0, 3.0, 2.0, 1.0, 0.5])
    np.save(d / "wide.npy", wide)
    return d


# ------------------------------------------------------------------------------------------
# 16.8: exit codes and stderr


def _interrupt(args, *, group, delay=2.0):
    p = subprocess.Popen([sys.executable, "-m", "vaetheory", *map(str, args)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, cwd=ROOT,
                         start_new_session=True)
    time.sleep(delay)
    assert p.poll() is None, "the command ended before it could be interrupted"
    if group:  # Ctrl-C in a terminal: the whole foreground process group (workers too)
        os.killpg(p.pid, signal.SIGINT)
    else:      # kill -INT PID: the main process alone
        p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        raise
    return p.returncode, err.decode()


@pytest.mark.parametrize("group", [False, True], ids=["main-process", "process-group"])
def test_ctrl_c_exits_130_with_one_error_line(data, group):
    # a long exact check; at latent dim 32 the restarts run in worker processes
    code, err = _interrupt(["check", data / "digits.npy", "-d", "32", "--beta", "1,2,3,4,5,6"],
                           group=group)
    assert code == 130
    assert err == "error: interrupted\n"


# outputs far larger than a pipe's buffer (64 KiB), so the reader closes it mid-write
@pytest.mark.parametrize("args", [["predict", "{d}/digits.npy", "-d", "4", "--beta",
                                   "1:200:3000", "--json"],
                                  ["predict", "{d}/digits.npy", "-d", "4", "--beta",
                                   "1:200:3000", "--all"],
                                  ["thresholds", "{d}/digits.npy", "-d", "64", "--beta",
                                   "1:2:300", "--all"]],
                         ids=["json", "table", "tables"])
def test_a_closed_pipe_exits_141_silently_for_every_output(data, args):
    args = [a.replace("{d}", str(data)) for a in args]
    p = subprocess.Popen([sys.executable, "-m", "vaetheory", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=ENV, cwd=ROOT)
    p.stdout.readline()  # `| head -1`
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141
    assert err == ""


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_on_stdout_is_the_users_situation_exit_1():
    for args in (["demo"], ["demo", "--json"]):
        with open("/dev/full", "w") as full:
            r = subprocess.run([sys.executable, "-m", "vaetheory", *args], stdout=full,
                               stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, timeout=60)
        assert r.returncode == 1
        assert "No space left on device" in one_error_line(r.stderr)


def test_writing_matrices_where_it_is_not_allowed_exits_1_and_leaves_nothing(data, tmp_path):
    target = "/sys/vaetheory-test.npz"  # read-only even for root
    if os.access("/sys", os.W_OK) and not os.path.ismount("/sys"):
        pytest.skip("no read-only directory here")
    code, out, err = cli("predict", data / "small.npy", "-d", "2", "--matrices", target)
    assert code == 1
    assert target in one_error_line(err) and "--matrices" in err
    assert not os.path.exists(target)


def test_sgd_that_diverges_says_so_and_suggests_a_smaller_lr(data):
    code, out, err = cli("check", data / "small.npy", "-d", "2", "--mode", "sgd", "--lr", "1e9",
                         "--epochs", "5")
    assert err == ""  # no RuntimeWarning lines
    assert code == 4  # INCONCLUSIVE: training cannot refute the optimum, and this one failed
    assert "diverged" in out and "smaller --lr" in out


def test_debug_shows_the_warnings_that_are_otherwise_hidden(data):
    code, out, err = cli("check", data / "small.npy", "-d", "2", "--mode", "sgd", "--lr", "1e9",
                         "--epochs", "5", "--json")
    assert code == 4 and err == ""
    chk = json.loads(out)["points"][0]["check"]
    assert chk["diverged"] is True and chk["converged"] is False and chk["verdict"] == "INCONCLUSIVE"


# ------------------------------------------------------------------------------------------
# 16.9: tolerances, step sizes, convergence


@pytest.mark.parametrize("opt,value", [("--tol", "nan"), ("--tol", "inf"), ("--tol", "0"),
                                       ("--tol-sv", "nan"), ("--tol-sv", "-1"),
                                       ("--tol-sv", "inf")])
def test_tolerances_must_be_finite_and_positive(data, opt, value):
    r = run("check", data / "small.npy", "-d", "2", opt, value)
    assert r.exit_code == 2
    assert opt in one_error_line(r.stderr)


@pytest.mark.parametrize("args,flag", [(["--mode", "sgd", "--lr", "nan"], "--lr"),
                                       (["--mode", "sgd", "--lr", "inf"], "--lr"),
                                       (["--seed", "-1"], "--seed")])
def test_step_size_and_seed_are_checked_where_given(data, args, flag):
    r = run("check", data / "small.npy", "-d", "2", *args)
    assert r.exit_code == 2
    assert flag in one_error_line(r.stderr)


def test_default_step_size_follows_the_scale_of_each_map(data):
    from vaetheory.sgd import default_encoder_lr, default_lr, train_sgd

    X = np.load(data / "wide.npy")
    shared = train_sgd("vae", "learnable", X, 3, lr=default_lr(X), epochs=100, beta=1.0)
    split = train_sgd("vae", "learnable", X, 3, lr=default_lr(X), epochs=100, beta=1.0,
                      encoder_lr=default_encoder_lr("vae", X))
    # the optimum is known in closed form: both runs are measured against it
    assert split.loss_gap < shared.loss_gap / 10
    # the default of the command line is the split one
    r = run("check", data / "wide.npy", "-d", "3", "--mode", "sgd", "--epochs", "100", "--json")
    chk = json.loads(r.stdout)["points"][0]["check"]
    assert chk["encoder_lr"] == pytest.approx(default_encoder_lr("vae", X))
    assert chk["loss_gap"] == pytest.approx(split.loss_gap, rel=1e-9)


def test_training_that_clearly_did_not_converge_is_inconclusive_and_says_so(data):
    r = run("check", data / "wide.npy", "-d", "3", "--mode", "sgd", "--epochs", "2")
    # stderr: only the note that one column of this data dominates its variance
    assert r.exit_code == 4 and r.stderr.startswith("warning: column 1 holds 99.84%")
    assert len(r.stderr.splitlines()) == 1
    assert "did not converge" in r.stdout and "--epochs" in r.stdout


# ------------------------------------------------------------------------------------------
# 16.6: resource guards


def test_a_huge_latent_dim_is_refused_before_allocating(data):
    code, out, err = cli("predict", data / "small.npy", "-d", "1000000000",
                         env={"VAETHEORY_MEMORY_LIMIT": str(2 << 30)}, timeout=60)
    assert code == 1
    assert "not enough memory" in one_error_line(err) and "GiB" in err
    assert out == ""


def test_a_huge_grid_is_refused_while_parsing(data):
    code, out, err = cli("predict", data / "small.npy", "-d", "2", "--beta", "1:10:1000000000",
                         env={"VAETHEORY_MEMORY_LIMIT": str(1 << 30)}, timeout=60)
    assert code == 2
    assert "--beta" in one_error_line(err) and "1000000" in err


def test_a_covariance_that_cannot_fit_is_refused_with_the_size_needed(tmp_path):
    D = 3000
    np.lib.format.open_memmap(tmp_path / "tall.npy", mode="w+", dtype=np.float32,
                              shape=(D + 1, D)).flush()  # zeros, sparse on disk
    need = 3 * 8 * D ** 2  # the D x D path: accumulator, eigen-decomposition copy, workspace
    limit = {"VAETHEORY_MEMORY_LIMIT": str(need // 2)}
    code, out, err = cli("spectrum", tmp_path / "tall.npy", env=limit, timeout=60)
    assert code == 1
    assert f"{D} x {D}" in one_error_line(err) and "--cols" in err
    # fewer rows than columns: the dual path needs no D x D matrix and fits the same budget
    np.save(tmp_path / "wide.npy", np.zeros((3, 8000), dtype=np.float32))
    code, out, err = cli("spectrum", tmp_path / "wide.npy", env=limit, timeout=60)
    assert code == 0 and err == "" and "rank 0 of 8000" in out


def test_a_memory_error_is_the_users_situation(data, monkeypatch):
    def boom(*a, **k):
        raise MemoryError("Unable to allocate 9 GiB")

    monkeypatch.setattr(vs.Request, "solve", boom)
    r = run("predict", data / "small.npy", "-d", "2")
    assert r.exit_code == 1
    assert "not enough memory" in one_error_line(r.stderr)


# ------------------------------------------------------------------------------------------
# 15.2: streamed JSON, summarised tables


def _solutions(spec, setting, dims, dims2=None, **values):
    req = vs.Request.build(setting, latent_dims=dims, latent_dims2=dims2, **values)
    return req, req.solve(spec)


CASES = [
    ("vae", "learnable", dict(dims=[3, 70], beta=np.linspace(0.5, 200, 9),
                              eta_dec=np.array([0.5, 1.0]))),
    ("vae", "fixed", dict(dims=[6], sigma=np.array([0.5]), beta=np.array([1.0, 50.0, 300.0]))),
    ("vae", "fixed", dict(dims=[3], sigma=np.array([0.5, 1.0, 2.0]), beta=np.array([1.0, 4.0]))),
    ("mhvae", "sigma2-learnable", dict(dims=[4], dims2=[6], beta2=np.array([1.0, 8.0, 14.0]),
                                       sigma1=np.array([0.5]))),
    ("mhvae", "sigma2-fixed", dict(dims=[6], dims2=[3], beta1=np.array([0.5, 2.0]),
                                   sigma2=np.array([0.3]))),
]


@pytest.mark.parametrize("model,variance,kw", CASES, ids=lambda c: str(c)[:20])
def test_streamed_json_is_the_in_memory_document_exactly(model, variance, kw):
    X, _ = load_digits()
    spec = vt.empirical_spectrum(X)
    kw = dict(kw)
    req, sols = _solutions(spec, vs.get(model, variance), kw.pop("dims"), kw.pop("dims2", None),
                           **kw)
    doc = report.predict_document(sols, {"source": "x"}, {"model": model})
    whole = report.dumps(doc)
    pieces = []
    head = report.predict_document(sols, {"source": "x"}, {"model": model}, points=False)
    points = (t for sol in sols for t in report.encode_points(sol, delta=0.01, block=4, strict=True))
    report.write_json(pieces.append, head, points)
    assert "".join(pieces) == whole
    json.loads(whole)


def test_streamed_json_through_the_cli_equals_the_library_in_blocks(data, monkeypatch):
    from vaetheory import cli as vcli

    args = ["predict", data / "digits.npy", "-d", "5,9", "--beta", "1:120:40", "--eta-dec",
            "0.8,1", "--json"]
    whole = run(*args).stdout
    monkeypatch.setattr(vcli, "BLOCK_ENTRIES", 37)  # blocks of a few points, solved apart
    assert run(*args).stdout == whole
    X, _ = load_digits()
    spec = vt.empirical_spectrum(X)
    req, sols = _solutions(spec, vs.get("vae", "learnable"), [5, 9],
                           beta=np.linspace(1, 120, 40), eta_dec=np.array([0.8, 1.0]))
    assert json.loads(whole)["points"] == json.loads(report.dumps(
        {"p": [report.point_dict(s, i, 0.01) for s in sols for i in report.grid_indices(s)]}))["p"]


def test_learned_decoder_sweeps_are_solved_in_smaller_blocks_with_the_same_output(data,
                                                                                  monkeypatch):
    """A learned decoder's critical values make (points x d x d) arrays: its blocks hold
    BLOCK_ENTRIES / d^2 points (10^5 points at d = 16 peaked at 1.2 GB with / d, 0.19 GB now);
    the output does not depend on the blocking."""
    from vaetheory import cli as vcli

    learned = vs.get("vae", "learnable", decoder="learned")
    assert vcli._block_points(16, None, learned) == vcli._block_points(16, None) // 16
    for extra in ([], ["--sigma", "0.5"]):
        args = ["predict", data / "digits.npy", "-d", "6", "--beta", "0.5:9:30", "--eta-dec",
                "learned", "--json", *extra]
        whole = run(*args).stdout
        monkeypatch.setattr(vcli, "BLOCK_ENTRIES", 6 * 6 * 4)  # blocks of 4 points
        assert run(*args).stdout == whole
        monkeypatch.undo()


def test_large_grid_json_memory_is_flat(data):
    def peak(n):
        code = ("import resource, sys; from vaetheory.cli import main\n"
                f"sys.argv = ['vaetheory', 'predict', {str(data / 'small.npy')!r}, '-d', '1', "
                f"'--beta', '1:9:{n}', '--json']\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "sys.stderr.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n")
        r = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT, timeout=300)
        return int(r.stderr.strip().splitlines()[-1])  # KiB

    small, big = peak(10_000), peak(100_000)
    # the in-memory document held ~2 KiB per point; streamed, 10x the points costs < 30 MiB more
    assert big - small < 30 * 1024, (small, big)


def test_long_sweeps_table_shows_each_change_and_all_shows_every_row(data):
    X, _ = load_digits()
    spec = vt.empirical_spectrum(X)
    betas = np.linspace(1, 200, 5000)
    sol = vt.vae_learnable_sigma(spec, 16, beta=betas)
    counts = np.asarray(sol.collapsed())
    expected = 1 + int(np.count_nonzero(counts[1:] != counts[:-1])) + 1  # first, changes, last
    r = run("predict", data / "digits.npy", "-d", "16", "--beta", "1:200:5000")
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == expected
    assert f"{expected} of 5000 grid points shown" in r.stdout
    r = run("predict", data / "digits.npy", "-d", "16", "--beta", "1:200:60", "--all")
    assert len([line for line in r.stdout.splitlines() if line.startswith("│")]) == 60


def test_a_long_sweep_in_text_never_makes_its_per_dim_arrays(data, monkeypatch):
    seen = []
    real = report.point_summary

    def spy(sol, idx, *a, **k):
        seen.append(int(np.prod(sol.grid_shape)))
        return real(sol, idx, *a, **k)

    monkeypatch.setattr(report, "point_summary", spy)
    r = run("predict", data / "digits.npy", "-d", "16", "--beta", "1:200:200000")
    assert r.exit_code == 0
    assert seen and max(seen) < 1000  # the worded points come from small solutions


# ------------------------------------------------------------------------------------------
# 16.10: help and messages


def test_help_marks_latent_dim_required_and_offers_both_learnable_only_to_check():
    for command, required in (("predict", True), ("check", True), ("thresholds", False)):
        text = " ".join(run(command, "--help").stdout.split())
        latent = text[text.index("-d, --latent-dim"):][:200]
        assert ("[required]" in latent) is required, (command, latent)
        assert ("both-learnable" in text) is (command == "check"), command


@pytest.mark.parametrize("args,flag", [
    (["check", "{d}", "-d", "2", "--epochs", "5"], "--epochs"),
    (["check", "{d}", "-d", "2", "--lr", "0.1"], "--lr"),
    (["check", "{d}", "-d", "2", "--mode", "sgd", "--restarts", "3"], "--restarts"),
    (["check", "{d}", "-d", "2", "--mode", "sgd", "--tol", "1e-3"], "--tol"),
    (["predict", "{d}", "-d", "2", "--restarts", "3"], "--restarts"),
    (["predict", "{d}", "-d", "2", "--force"], "--force"),
    (["thresholds", "{d}", "--keep", "2", "--beta", "1,2"], "--beta"),
    (["thresholds", "{d}", "--keep", "2", "--param", "eta_dec", "--eta-dec", "1,2"],
     "--eta-dec"),
])
def test_options_that_would_be_ignored_are_refused(data, args, flag):
    args = [a.replace("{d}", str(data / "small.npy")) for a in args]
    r = run(*args)
    assert r.exit_code == 2
    assert flag in one_error_line(r.stderr)


def test_keep_solves_for_beta_even_when_another_parameter_is_swept(data):
    r = run("thresholds", data / "small.npy", "--keep", "2", "--eta-dec", "0.5,1", "--json")
    keeps = [p["keep"] for p in json.loads(r.stdout)["points"]]
    assert [k["param"] for k in keeps] == ["beta", "beta"]
    assert keeps[0]["value"] != keeps[1]["value"]  # beta* moves with eta_dec


def test_the_mhvae_variance_alias_is_said(data):
    r = run("predict", data / "small.npy", "--model", "mhvae", "--variance", "fixed", "-d", "2",
            "--sigma2", "0.5")
    assert r.exit_code == 0
    assert "note: --variance fixed means sigma2-fixed for --model mhvae" in r.stdout


def test_library_names_do_not_leak_into_messages(data):
    r = run("check", data / "small.npy", "-d", "2", "--restarts", "1", "--max-iter", "1")
    assert r.exit_code == 4
    assert "--max-iter" in r.stdout and "max_iter" not in r.stdout.replace("--max-iter", "")


NUMBER = re.compile(r"\d+(?:\.\d+)?(?:e[+-]?\d+)?")


@pytest.mark.parametrize("args", [
    ["predict", "{d}", "-d", "16", "--beta", "log:1:1000:7"],
    ["predict", "{d}", "-d", "4", "--beta", "30", "--detail"],
    ["thresholds", "{d}", "-d", "6"],
    ["spectrum", "{d}", "--top", "5"],
])
def test_narrow_terminals_never_split_a_number(data, args):
    args = [a.replace("{d}", str(data / "digits.npy")) for a in args]
    wide = run(*args, env={"COLUMNS": "200"}).stdout
    narrow = run(*args, env={"COLUMNS": "40"}).stdout

    def cells(text):
        return [NUMBER.findall(line) for line in text.splitlines() if line.startswith("│")]

    assert cells(narrow) == cells(wide)  # every table row, every number, whole


def test_a_huge_latent_dim_is_a_table_of_a_few_rows(data):
    # small.npy has 5 features: modes 6..100000 carry no variance and are all alike
    r = run("thresholds", data / "small.npy", "-d", "100000")
    rows = [line for line in r.stdout.splitlines() if line.startswith("│")]
    assert r.exit_code == 0 and len(rows) == 6
    assert rows[-1].split("│")[1].strip() == "6-100000"
    r = run("predict", data / "small.npy", "-d", "100000", "--detail")
    assert r.exit_code == 0 and "6-100000" in r.stdout


def test_an_alias_error_names_the_word_the_user_typed(data):
    r = run("predict", data / "small.npy", "--model", "mhvae", "--variance", "learnable", "-d",
            "2", "--sigma2", "0.5")
    assert r.exit_code == 2
    assert "--variance fixed (= sigma2-fixed)" in one_error_line(r.stderr)

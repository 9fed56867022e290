"""README.md cannot drift from the tool, and every documented command keeps the stderr contract.

* The output blocks of README.md are what ``scripts/readme_outputs.py`` makes from the tool (the
  checker's block, slow, with its numbers masked).
* Every command the README and the ``--help`` texts show runs through the real CLI with the data
  the README tells the reader to make: exit 0 (or a verdict code) and an empty stderr (the
  checker's commands with one restart and few iterations: its stderr, not its optimum, is tested).
"""

import os
import pathlib
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from vaetheory.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import readme_outputs  # noqa: E402  (scripts/readme_outputs.py)

README = (ROOT / "README.md").read_text()
README_LINES = set(README.splitlines())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    readme_outputs.make_files(d)
    # the quick start's "audit WEIGHTS.npz DATA --beta 30": trained weights, here the optimum's
    from vaetheory.testing import optimal_parameters

    X = np.load(d / "digits.npy")
    np.savez(d / "WEIGHTS.npz", **optimal_parameters(X, "vae", 8, beta=30.0))
    # the audit section's files (examples/audit_numpy_vae.py writes trained ones): an optimum and
    # a perturbed one, for the stderr contract and the exit codes
    from safetensors.numpy import save_file

    opt = optimal_parameters(X, "vae", 6, beta=1.0, eta_dec=0.55)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in opt.items()},
              str(d / "vae.safetensors"))
    np.savez(d / "vae_bug.npz", **{k: 0.5 * v for k, v in opt.items()})
    # the --eta-dec learned paragraph (examples/audit_learned_decoder.py writes trained ones)
    from vaetheory import settings as vs

    lu = optimal_parameters(X, vs.get("vae", "learnable", "learned"), 6, beta=5.0)
    lu["log_sigma_x"] = np.atleast_1d(0.5 * lu.pop("log_u"))
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in lu.items()},
              str(d / "vae_u.safetensors"))
    return d


def _differences(workdir, slow):
    _, changes = readme_outputs.update(
        README, workdir, only=lambda n: readme_outputs.BLOCKS[n].slow == slow)
    return {name: f"README:\n{old}\n\ntool:\n{new}" for name, (old, new) in changes.items()}


def test_every_marked_block_is_known_and_every_known_block_is_in_the_readme():
    names = [n for n, _, _ in readme_outputs.blocks_in(README)]
    assert sorted(names) == sorted(readme_outputs.BLOCKS)


def test_readme_output_blocks_are_the_tools_output(workdir):
    assert _differences(workdir, slow=False) == {}


@pytest.mark.slow
def test_readme_checker_block_is_the_tools_output(workdir):
    assert _differences(workdir, slow=True) == {}


def test_a_changed_output_is_caught(workdir):
    broken = README.replace("16.9374 keeps 16 of 16", "16.9375 keeps 16 of 16")
    assert broken != README
    _, changes = readme_outputs.update(broken, workdir, only=lambda n: n == "keep-16")
    assert "keep-16" in changes


# ------------------------------------------------------------------------------------------
# every documented command

_FILES = {"DATA": "digits.npy", "X.npy": "digits.npy", "YOUR_DATA.npy": "digits.npy",
          "X.csv": "my_data.csv", "imgs.npy": "digits.npy"}


def _documented():
    cmds = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        cmds += [line.split("#")[0].strip() for line in block.splitlines()
                 if line.startswith("vaetheory ")]
    cmds += [line[2:].strip() for line in README.splitlines() if line.startswith("$ vaetheory ")]
    for command in ("predict", "thresholds", "spectrum", "check", "demo"):
        text = CliRunner().invoke(main, [command, "--help"]).stdout
        cmds += [line.split("#")[0].strip() for line in text.splitlines()
                 if line.strip().startswith("vaetheory ")]
    out = []
    for c in cmds:
        c = c.replace("[--model vae|cvae|mhvae]", "").replace("--image-shape 28x28",
                                                            "--image-shape 8x8")
        if c not in out:
            out.append(c)
    return out


COMMANDS = _documented()


def _quick(args):
    """The checker's documented commands with one restart and few iterations (or epochs): the
    stderr contract and the exit code are what is tested, not the optimiser."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--restarts", "--epochs", "--max-iter"):
            skip = True
            continue
        out.append(a)
    if "check" in out[:1] or "--check" in out:
        if "sgd" in out:
            out += ["--epochs", "5"]
        else:
            out += ["--restarts", "1", "--max-iter", "50"]
    return out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_documented_command_runs_with_an_empty_stderr(workdir, cmd):
    args = _quick([_FILES.get(a, a) for a in cmd.split()[1:]])
    for made in workdir.glob("*.png"):     # two documented commands write collapse.png
        made.unlink()
    old = os.getcwd()
    os.chdir(workdir)
    try:
        r = CliRunner().invoke(main, args, env={"NO_COLOR": "1"})
    finally:
        os.chdir(old)
    allowed = (0, 5, 6) if cmd.startswith("vaetheory audit") else (0, 3, 4)
    assert r.exit_code in allowed, (cmd, r.exit_code, r.stderr)
    # stderr is empty, except for warning lines the README shows verbatim (the pandas CSV)
    undocumented = [line for line in r.stderr.splitlines() if line not in README_LINES]
    assert undocumented == [], (cmd, r.stderr)


def test_the_documented_commands_were_found():
    assert len(COMMANDS) >= 15
    assert any(c.startswith("vaetheory check") for c in COMMANDS)


def test_no_merge_conflict_markers_were_committed():
    """A merge once left ``<<<<<<< HEAD`` in README.md (the blocks test does not read prose)."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "vaetheory").glob("*.py")), *sorted((ROOT / "tests").glob("*.py"))]
    marked = [f"{f.name}:{i + 1}" for f in files for i, line in
              enumerate(f.read_text(encoding="utf-8").splitlines())
              if line.startswith(("<<<<<<< ", ">>>>>>> "))]
    assert marked == []


def test_ci_runs_the_readme_test_command():
    """The README's second set-up command is what .ci/run runs on a clean clone: the same extras
    installed, the same pytest invocation (a green CI then means the README's command works)."""
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(block) == 2
    install, _, test = block[1].partition(" && ")
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert install.replace("pip install ", "pip install --quiet ") in ci
    assert test in ci

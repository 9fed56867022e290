"""The one-line note on nonlinear VAEs (issue 17): it lives in the setting's record, predict and
demo show it once (text and JSON), other settings do not, and the sections it points to exist."""

import json
import pathlib
import re

from click.testing import CliRunner

from vaetheory import report, settings as vs
from vaetheory.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SECTION = "Nonlinear VAEs (measured, not theory)"


def demo(*args):
    r = CliRunner().invoke(main, ["demo", *args])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r.stdout


def test_the_note_is_in_the_learnable_vae_record_only():
    with_note = [s.name for s in vs.SETTINGS.values() if vs.NONLINEAR_NOTE in s.notes]
    assert with_note == ["vae/learnable"]
    note = vs.NONLINEAR_NOTE
    assert "\n" not in note and SECTION in note and "docs/theory.md §14" in note


def test_predict_text_and_json_show_it_once():
    lines = [ln for ln in demo().splitlines() if "nonlinear VAEs" in ln]
    assert lines == [f"note: {vs.NONLINEAR_NOTE}"]
    doc = json.loads(demo("--json"))
    assert doc["notes"].count(vs.NONLINEAR_NOTE) == 1


def test_other_models_do_not_show_it():
    for model in ("cvae", "mhvae"):
        assert "nonlinear VAEs" not in demo("--model", model)
        assert vs.NONLINEAR_NOTE not in json.loads(demo("--model", model, "--json"))["notes"]


def test_prediction_notes_keep_the_solution_notes_first():
    import vaetheory as vt

    spec = vt.spectrum_from_eigenvalues([4.0, 1.0])
    sol = vt.vae_learnable_sigma(spec, 2)
    assert report.prediction_notes([sol, sol]) == list(sol.notes) + [vs.NONLINEAR_NOTE]
    fixed = vt.vae_fixed_sigma(spec, 2, 0.5)
    assert report.prediction_notes([fixed]) == report.notes_of([fixed])


def test_the_sections_it_points_to_exist_and_are_written():
    readme = (ROOT / "README.md").read_text()
    assert f"## {SECTION}" in readme
    theory = (ROOT / "docs" / "theory.md").read_text()
    m = re.search(r"^## §14 ([^\n]*)\n(.*?)^## ", theory, flags=re.M | re.S)
    assert m and m.group(1) == SECTION
    assert "Placeholder" not in m.group(2) and "|" in m.group(2)  # the measured table is there

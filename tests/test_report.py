"""vaetheory.report: Solutions -> JSON-able dicts, rich tables, summaries (no math of its own).

Every expected number is read from the Solution the theory returns, never hard-coded.
"""

import json
import math

import numpy as np
import pytest
from rich.console import Console

import vaetheory as vt
from vaetheory import report
from vaetheory.moments import spectrum_from_eigenvalues

EIG = np.array([16.0, 9.0, 4.0, 1.0, 0.25])  # theta = 4, 3, 2, 1, 0.5


def data_spec():
    return spectrum_from_eigenvalues(EIG)


def residual_spec():
    return spectrum_from_eigenvalues(EIG, kind="residual")


SETTINGS = {
    "vae-learnable": lambda: vt.vae_learnable_sigma(data_spec(), 4, beta=[0.5, 3.0, 20.0]),
    "vae-fixed-iso": lambda: vt.vae_fixed_sigma(data_spec(), 4, 0.5, beta=[0.5, 3.0, 20.0]),
    "vae-fixed-distinct": lambda: vt.vae_fixed_sigma(data_spec(), 3, [0.2, 0.5, 1.0], beta=[1.0, 9.0]),
    "cvae-learnable": lambda: vt.cvae_learnable_sigma(residual_spec(), 3, beta=[0.5, 5.0]),
    "cvae-fixed": lambda: vt.cvae_fixed_sigma(residual_spec(), 3, 0.5, beta=[0.5, 5.0]),
    "mhvae-learnable": lambda: vt.mhvae_learnable_sigma2(data_spec(), 3, 2, beta2=[0.5, 4.0, 40.0]),
    "mhvae-fixed": lambda: vt.mhvae_fixed_sigma2(data_spec(), 3, 3, beta2=[0.5, 4.0], sigma2=0.5),
}


def render(renderable, width=160):
    console = Console(width=width, record=True, file=open("/dev/null", "w"), color_system=None)
    console.print(renderable)
    return console.export_text()


# ------------------------------------------------------------------------------------------
# JSON


def test_dumps_is_strict_json_with_null_for_nan_and_inf():
    text = report.dumps({"a": float("nan"), "b": [1.0, float("inf"), np.float32(2.5)],
                         "c": np.array([[1, 2]]), "d": np.int64(3), "e": np.bool_(True)})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, 2.5], "c": [[1, 2]], "d": 3, "e": True}


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_point_dict_schema_matches_the_solution(name):
    sol = SETTINGS[name]()
    pts = [report.point_dict(sol, idx) for idx in report.grid_indices(sol)]
    assert len(pts) == int(np.prod(sol.grid_shape))
    for idx, p in zip(report.grid_indices(sol), pts):
        assert set(p) >= {"params", "singular_values", "posterior_std", "collapsed", "critical",
                          "optimal_loss", "ranks"}
        assert set(p["singular_values"]) == set(sol.singular_values)
        for m, vals in p["singular_values"].items():  # mode order, as the Solution
            np.testing.assert_array_equal(vals, sol.singular_values[m][idx])
        for latent, vals in p["posterior_std"].items():
            np.testing.assert_array_equal(vals, sol.posterior_std[latent][idx])
            assert len(vals) == sol.latent_dims[latent]
        assert set(p["posterior_std"]) == set(sol.posterior_std)
        for latent in sol.latent_dims:
            c = p["collapsed"][latent]
            lo, hi = int(sol.collapsed_min[latent][idx]), int(sol.collapsed_max[latent][idx])
            if sol.exact[latent]:
                assert isinstance(c, int) and c == lo
            else:
                assert c == [lo, hi]
        for crit, vals in p["critical"].items():
            np.testing.assert_array_equal(np.asarray(vals, dtype=float), sol.critical[crit][idx])
        assert p["optimal_loss"] == pytest.approx(float(sol.optimal_loss[idx]))
        assert p["ranks"] == {k: int(v[idx]) for k, v in sol.ranks.items()}
        json.loads(report.dumps(p))


def test_singular_value_lists_have_one_entry_per_latent_dim():
    sol = SETTINGS["mhvae-learnable"]()  # d1 = 3, d2 = 2
    p = report.point_dict(sol, (0,))
    assert len(p["singular_values"]["encoder1"]) == 3 and len(p["singular_values"]["decoder1"]) == 3
    assert len(p["singular_values"]["encoder2"]) == 2 and len(p["singular_values"]["decoder2"]) == 2
    assert len(p["posterior_std"]["z2"]) == 2
    assert p["params"]["latent_dim"] == 3 and p["params"]["latent_dim2"] == 2


def test_params_isotropic_sigma_is_a_number_per_dim_sigma_a_list():
    iso = report.point_params(SETTINGS["vae-fixed-iso"](), (0,))
    assert iso["sigma"] == 0.5 and iso["latent_dim"] == 4
    dis = report.point_params(SETTINGS["vae-fixed-distinct"](), (1,))
    assert dis["sigma"] == [0.2, 0.5, 1.0] and dis["beta"] == 9.0


def test_predict_document_top_level():
    sol = SETTINGS["cvae-learnable"]()
    doc = json.loads(report.dumps(report.predict_document([sol], {"source": "x"}, {"k": 1})))
    for key in ("model", "variance", "centered", "n_samples", "spectrum", "points",
                "spectrum_units", "theorem", "notes", "settings", "critical_direction"):
        assert key in doc
    assert doc["model"] == "cvae" and doc["variance"] == "learnable"
    assert doc["spectrum"] == EIG.tolist()  # residual: eigenvalues e_i themselves
    assert doc["spectrum_units"].startswith("e_i")
    vae = report.predict_document([SETTINGS["vae-learnable"]()], {})
    np.testing.assert_allclose(vae["spectrum"], np.sqrt(EIG))  # data: theta_i
    assert vae["spectrum_units"].startswith("theta_i")


def test_spectrum_document_top_and_units():
    doc = report.spectrum_document(data_spec(), {"source": "s"}, top=2)
    assert doc["shown"] == 2 and len(doc["spectrum"]) == 2 and doc["dim"] == 5
    np.testing.assert_allclose(doc["spectrum"], [4.0, 3.0])
    assert doc["scale"] == 4.0 and doc["trace"] == pytest.approx(EIG.sum()) and doc["rank"] == 5
    res = report.spectrum_document(residual_spec())
    assert res["spectrum"].tolist() == EIG.tolist() and res["spectrum_kind"] == "residual"


# ------------------------------------------------------------------------------------------
# words


def test_summary_names_the_collapsed_dims_and_their_threshold():
    sol = vt.vae_learnable_sigma(data_spec(), 4, beta=5.0)  # beta* = theta^2 = 16, 9, 4, 1
    line = report.point_summary(sol, (), ["beta"])
    crit = sol.critical["beta"]
    assert line.startswith("beta=5: 2 of 4 latent dims collapse")
    assert f"dims 3-4 need beta < {report.fmt(crit[2])}" in line
    assert f"dim 4: < {report.fmt(crit[3])}" in line


def test_summary_when_nothing_collapses_gives_the_next_threshold():
    sol = vt.vae_learnable_sigma(data_spec(), 4, beta=0.5)
    line = report.point_summary(sol, (), ["beta"])
    assert "0 of 4 latent dims collapse" in line
    assert f"dim 4 would collapse at beta >= {report.fmt(sol.critical['beta'][3])}" in line


def test_summary_beyond_the_rank_says_never():
    sol = vt.vae_learnable_sigma(data_spec(), 7, beta=0.1)  # rank 5 < 7
    line = report.point_summary(sol, (), ["beta"])
    assert "2 of 7 latent dims collapse" in line and "dims 6-7 can never be active" in line


def test_summary_fixed_isotropic_is_a_range():
    sol = vt.vae_fixed_sigma(data_spec(), 4, 1.0, beta=5.0)
    lo, hi = int(sol.collapsed_min["z"]), int(sol.collapsed_max["z"])
    assert lo < hi
    line = report.point_summary(sol, (), ["beta"])
    assert f"{lo}-{hi} of 4 latent dims collapse (zero posterior mean" in line


def test_summary_mhvae_talks_about_z1_and_z2():
    sol = SETTINGS["mhvae-learnable"]()
    line = report.point_summary(sol, (2,), ["beta2"])
    assert line.startswith("beta2=40: ") and "z1 dims" in line and "z2 dims collapse" in line


def test_summary_lines_for_long_sweeps_keep_only_changes():
    sol = vt.vae_learnable_sigma(data_spec(), 4, beta=np.geomspace(0.1, 100, 60))
    lines = report.summary_lines([sol], ["beta"])
    changes = len(set(sol.collapsed().tolist()))
    assert lines[0].startswith("60 grid points")
    assert len(lines) == 1 + changes


def test_notes_are_deduplicated():
    a, b = SETTINGS["vae-fixed-iso"](), SETTINGS["vae-fixed-iso"]()
    assert report.notes_of([a, b]) == list(a.notes)


# ------------------------------------------------------------------------------------------
# keep / thresholds


def test_keep_answer_is_the_kth_critical_value():
    sol = vt.vae_learnable_sigma(data_spec(), 5, beta=1.0)
    ans = report.keep_answer(sol, (), 3, "beta")
    assert ans["possible"] and ans["value"] == float(sol.critical["beta"][2])
    assert ans["exactly"] == [float(sol.critical["beta"][3]), float(sol.critical["beta"][2])]
    assert "beta < " in report.keep_sentence(ans)


def test_keep_answer_impossible_cases():
    sol = vt.vae_learnable_sigma(data_spec(), 7, beta=1.0)
    over_rank = report.keep_answer(sol, (), 6, "beta")
    assert not over_rank["possible"] and over_rank["value"] is None
    assert over_rank["max_active"] == 5 and "at most 5" in report.keep_sentence(over_rank)
    over_dim = report.keep_answer(sol, (), 9, "beta")
    assert not over_dim["possible"] and "exceeds the latent dim 7" in over_dim["reason"]


def test_keep_answer_above_direction():
    sol = vt.mhvae_learnable_sigma2(data_spec(), 3, beta2=2.0)
    ans = report.keep_answer(sol, (), 2, "beta1")
    assert ans["direction"] == "above" and ans["value"] == float(sol.critical["beta1"][1])
    assert "beta1 > " in report.keep_sentence(ans)


def test_thresholds_point():
    sol = vt.vae_fixed_sigma(data_spec(), 3, 0.5, beta=[1.0, 2.0])
    entry = report.thresholds_point(sol, (1,))
    assert entry["latent"] == "z" and len(entry["spectrum"]) == 3
    assert set(entry["critical"]) == {"beta", "eta_dec", "eta_enc"}
    assert entry["critical_direction"]["eta_enc"] == "above"


# ------------------------------------------------------------------------------------------
# tables


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_tables_render_one_row_per_point(name):
    sol = SETTINGS[name]()
    text = render(report.predict_table([sol], ["beta2" if sol.model == "mhvae" else "beta"]))
    n = int(np.prod(sol.grid_shape))
    body = [ln for ln in text.splitlines() if ln.startswith("│")]
    assert len(body) == n
    for idx in report.grid_indices(sol):
        assert report.fmt(sol.optimal_loss[idx], 7) in text
    detail = render(report.detail_table(sol, (0,)))
    for m in sol.singular_values:
        assert m in detail
    thr = render(report.thresholds_table(sol, (0,)))
    assert "active if" in thr


def test_spectrum_table_and_data_sentence():
    text = render(report.spectrum_table(data_spec(), top=3))
    assert "theta_i" in text and "100.0%" not in text  # only 3 of 5 shown
    assert "4" in text
    s = report.data_sentence({"source": "f.npy", "n_samples": 10, "dim": 5, "rank": 4,
                              "centered": False, "spectrum_kind": "data"})
    assert "not centred" in s and "rank of the data: 4 of 5" in s


def test_fmt():
    assert report.fmt(float("nan")) == "-" and report.fmt(None) == "-"
    assert report.fmt(1234.5678) == "1235" and report.fmt(math.inf) == "inf"


def test_text_table_aligns_columns_under_a_rule():
    from vaetheory.report import text_table

    out = text_table(["a", "bb"], [[123, "x"], ["", None]])
    assert out.splitlines() == ["a    bb", "---  ----", "123  x", "     None"]

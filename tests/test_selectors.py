"""--solvers selectors (names, families, all, globs) and PDS/TDAS filters from a learned model's data."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from solverzoo.bench.selectors import families, select_solvers
from solverzoo.cli import main
from solverzoo.solvers import SOLVERS, list_solvers


def test_family_all_and_glob_selectors():
    assert select_solvers("seeds") == families()["seeds"]
    assert {"seeds1", "seeds2", "seeds3"} <= set(select_solvers("seeds"))
    assert select_solvers("pds,seeds")[0] == "pds"
    assert select_solvers("all") == list_solvers()
    assert select_solvers("dpmpp_*") == [n for n in list_solvers() if n.startswith("dpmpp_")]
    assert select_solvers("dpmpp") == families()["dpm-solver"]
    assert select_solvers("score_sde") == ["euler_maruyama", "pc"]
    assert select_solvers("edm") == ["euler", "heun", "rk2"]
    # order of the items, no duplicates; '-' and '_' alike in family names
    assert select_solvers("heun,edm") == ["heun", "euler", "rk2"]
    assert select_solvers("dpm_solver") == select_solvers("dpm-solver")
    every = {SOLVERS[n].info.family for n in list_solvers()}
    assert set(families()) == every


@pytest.mark.parametrize("spec, message", [("nosuch", "unknown solver or family"), ("zz*", "matches no solver"),
                                           ("", "empty solver selection")])
def test_bad_selectors_name_the_choices(spec, message):
    with pytest.raises(ValueError, match=message):
        select_solvers(spec)


def test_pds_and_tdas_on_a_learned_model_build_filters_from_its_data(tmp_path):
    out = tmp_path / "d"
    result = CliRunner().invoke(main, ["bench", "--model", "digits-unet", "--solvers", "pds,tdas", "--nfe", "6",
                                       "--num-samples", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for name in ("pds", "tdas"):
        path = out / "filters" / f"{name}@6.npz"  # the filters the cells used, saved beside the results
        with np.load(path) as z:
            assert z["space"].shape == (1, 8, 8) and "freq" in z.files
        row = next(r for r in rows if r["solver"] == name)
        assert row["options"]["filters"] == "freq+space" and "filters_used" in row["options"]
    # the PDS filters come from the statistics of a seeded draw of the digits themselves
    from solverzoo.preconditioners import pds_preconditioner, pds_statistics
    from solverzoo.preconditioners.build import draw_data_images
    from solverzoo.sampling import filter_arrays

    stats = pds_statistics(draw_data_images("digits", (1, 8, 8)))
    expected = filter_arrays(pds_preconditioner(stats.freq, stats.space, 5.0).to("cpu", torch.float32))
    with np.load(out / "filters" / "pds@6.npz") as z:
        assert np.array_equal(z["freq"], expected["freq"].numpy()) and np.array_equal(z["space"],
                                                                                      expected["space"].numpy())


def test_default_set_is_the_declared_one():
    """The default sweep runs the solvers declared in_default_bench (and not the reference integrators);
    the others run when named or selected with 'all' / a family."""
    from solverzoo.bench.runner import default_solvers
    from solverzoo.models import get_model
    from solverzoo.solvers import get_solver

    names = default_solvers(get_model("gmm-image"))
    assert names and all(get_solver(n).info.in_default_bench for n in names)
    assert not any(get_solver(n).info.family == "reference" for n in names)
    left_out = [n for n in list_solvers() if not get_solver(n).info.in_default_bench]
    assert "er_sde" in left_out and not set(left_out) & set(names)
    assert set(left_out) <= set(select_solvers("all"))

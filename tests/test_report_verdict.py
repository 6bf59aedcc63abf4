"""The table's verdict: the best solver of each NFE column and those not significantly worse."""

import math

from solverzoo.bench.report import SIGNIFICANCE, table_rows


def _row(solver, nfe, value, unc, repeat=0):
    return {"solver": solver, "nfe_requested": nfe, "repeat": repeat, "nfe": nfe, "status": "ok", "value": value,
            "uncertainty": unc, "oracle_floor": 0.0, "fd": None}


def test_best_tie_and_worse_per_column():
    rows = [_row("a", 10, 1.0, 0.1), _row("b", 10, 1.0 + SIGNIFICANCE * math.sqrt(0.02) - 1e-9, 0.1),
            _row("c", 10, 2.0, 0.1), _row("a", 20, 0.6, 0.1), _row("c", 20, 0.3, 0.05)]
    nfes, cells = table_rows({"rows": rows})
    assert nfes == [10, 20]
    assert [cells[s][10]["verdict"] for s in "abc"] == ["best", "tie", ""]
    assert cells["c"][20]["verdict"] == "best" and cells["a"][20]["verdict"] == ""  # 0.3 > 2 * sqrt(0.0125)


def test_repeats_combine_into_the_mean_and_its_uncertainty():
    rows = [_row("a", 10, 1.0, 0.2, 0), _row("a", 10, 3.0, 0.2, 1)]
    cell = table_rows({"rows": rows})[1]["a"][10]
    assert cell["value"] == 2.0 and cell["repeats"] == 2
    assert math.isclose(cell["uncertainty"], math.sqrt(0.08) / 2) and math.isclose(cell["spread"], math.sqrt(2))


def test_a_failed_repeat_fails_the_cell_and_has_no_verdict():
    rows = [_row("a", 10, 1.0, 0.1), {**_row("b", 10, None, None), "status": "nonfinite", "message": "x"}]
    cells = table_rows({"rows": rows})[1]
    assert cells["a"][10]["verdict"] == "best" and cells["b"][10]["status"] == "nonfinite"
    assert cells["b"][10]["verdict"] == ""


def test_a_cell_over_its_budget_is_shown_but_not_ranked():
    """An adaptive solver that made more counted calls than the column's NFE cannot be its best."""
    over = dict(_row("adaptive", 10, 0.01, 0.01), nfe=345)
    nfes, cells = table_rows({"rows": [over, _row("a", 10, 1.0, 0.1), _row("b", 10, 5.0, 0.1)]})
    assert cells["adaptive"][10]["verdict"] == "" and cells["adaptive"][10]["value"] == 0.01
    assert cells["a"][10]["verdict"] == "best"

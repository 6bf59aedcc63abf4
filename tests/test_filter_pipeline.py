"""One filter pipeline: PDS / TDAS filters for digits-unet at one seed are the same arrays through
every door (``bench`` on the command line, ``run_bench``, ``solverzoo.sample``, ``filters estimate``,
``filters tdas-estimate``), and the bench's rows are the same through the CLI and ``run_bench``."""

from __future__ import annotations

import json

import numpy as np
import torch
from click.testing import CliRunner

import solverzoo
from solverzoo.bench import BenchConfig, run_bench
from solverzoo.cli import main
from solverzoo.metrics.evaluate import make_scorer
from solverzoo.preconditioners import load_filters
from solverzoo.sampling import filter_arrays

NFE, N, SEED = 6, 4, 0
TIMINGS = ("seconds",)


def _rows(results: dict) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in results["rows"]]


def _arrays(operator) -> dict:
    got = filter_arrays(operator)
    return {k: got[k].detach().cpu().to(torch.float32).numpy() for k in ("freq", "space")}


def test_every_door_gives_the_same_filters_and_rows(tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    r = runner.invoke(main, ["bench", "--model", "digits-unet", "--solvers", "pds,tdas", "--nfe", str(NFE),
                             "--num-samples", str(N), "--seed", str(SEED), "--out", str(out)])
    assert r.exit_code == 0, r.output
    cli = json.loads((out / "results.json").read_text())
    api = run_bench(BenchConfig(model="digits-unet", solvers=["pds", "tdas"], nfe=[NFE], num_samples=N, seed=SEED),
                    out=tmp_path / "api")
    assert _rows(cli) == _rows(api)  # the same rows through the CLI and the Python door
    assert [r["status"] for r in cli["rows"]] == ["ok", "ok"]

    model = solverzoo.get_model("digits-unet")
    scorer = make_scorer(model, None, N, SEED)
    shape = tuple(model.shape)
    for name, row in zip(("pds", "tdas"), cli["rows"]):
        direct = solverzoo.sample(model, name, nfe=NFE, num_samples=N, seed=SEED)
        saved = load_filters(out / "filters" / f"{name}@{NFE}.npz", shape, kind="filter")
        for key, value in _arrays(direct.filters).items():  # the bench's saved filters are sample()'s, bit for bit
            stored = getattr(saved, key)
            assert stored is not None and np.array_equal(stored.numpy(), value), (name, key)
        for key, value in _arrays(load_filters(tmp_path / "api" / "filters" / f"{name}@{NFE}.npz", shape,
                                               kind="filter").preconditioner()).items():
            assert np.array_equal(value, _arrays(direct.filters)[key]), (name, key)
        assert scorer.score(direct.samples)["value"] == row["value"]  # sample() is the cell's sampling
        assert row["options"]["filters_used"] == json.loads(json.dumps(direct.options["filters_used"]))

    # filters estimate --data digits: the same statistics, so -o pds.filters=FILE gives the same operator
    stats = tmp_path / "digits_stats.npz"
    r = runner.invoke(main, ["filters", "estimate", "--data", "digits", "--out", str(stats)])
    assert r.exit_code == 0, r.output
    assert f"pds.filters={stats}" in r.output.replace("\n", "")
    from_file = load_filters(stats, shape).preconditioner(5.0).to("cpu", torch.float32)
    pds = solverzoo.sample(model, "pds", nfe=NFE, num_samples=1, seed=SEED).filters
    for key, value in _arrays(pds).items():
        assert np.array_equal(_arrays(from_file)[key], value), key

    # filters tdas-estimate: the pilot, the data draw and the A.2 estimate of the TDAS run
    tdas_file = tmp_path / "tdas.npz"
    r = runner.invoke(main, ["filters", "tdas-estimate", "--model", "digits-unet", "--nfe", str(NFE),
                             "--out", str(tdas_file)])
    assert r.exit_code == 0, r.output
    tdas = solverzoo.sample(model, "tdas", nfe=NFE, num_samples=1, seed=SEED).filters
    estimated = load_filters(tdas_file, shape, kind="filter").preconditioner()
    for key, value in _arrays(tdas).items():
        assert np.array_equal(_arrays(estimated)[key], value), key

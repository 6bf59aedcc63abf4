"""``torchrun --nproc_per_node=2 -m solverzoo bench``: samples sharded over ranks by whole batches,
gathered with torch.distributed (gloo, CPU); the rows equal a one-process run's exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from solverzoo.bench.runner import BenchConfig, run_bench, shard

CONFIG = dict(model="gmm-image", model_options={"resolution": 8, "channels": 1}, solvers=["euler", "seeds1", "pc"],
              nfe=[4], num_samples=24, batch_size=4, seed=3)
ROW_KEYS = ("solver", "nfe_requested", "repeat", "nfe", "steps", "metric", "value", "excess", "oracle_floor",
            "status", "metrics")

WORKER = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method="file://" + sys.argv[1], rank=int(sys.argv[2]), world_size=2)
    from solverzoo.bench.runner import BenchConfig, run_bench
    run_bench(BenchConfig(**json.loads(sys.argv[3])), out=Path(sys.argv[4]))
    dist.barrier()
    dist.destroy_process_group()
''')


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _rows(results: dict) -> list[tuple]:
    return [tuple(row.get(k) for k in ROW_KEYS) for row in results["rows"]]


def test_shards_are_whole_batches_lowest_ranks_first():
    assert [shard(24, 4, r, 2) for r in range(2)] == [(0, 12), (12, 12)]
    assert [shard(25, 4, r, 2) for r in range(2)] == [(0, 16), (16, 9)]
    assert [shard(500, 500, r, 2) for r in range(2)] == [(0, 500), (500, 0)]
    for n, b, w in ((25, 4, 3), (7, 2, 4), (100, 7, 5)):
        parts = [shard(n, b, r, w) for r in range(w)]
        assert sum(c for _, c in parts) == n
        assert all(o % b == 0 for o, c in parts if c)  # every block starts on a batch boundary


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    assert torch.get_num_threads() == 1  # one thread (conftest), as in the worker processes
    single = run_bench(BenchConfig(**CONFIG))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    init = tmp_path / "rendezvous"
    procs = [subprocess.Popen([sys.executable, str(script), str(init), str(rank), json.dumps(CONFIG), str(out)],
                              env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for rank in range(2)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert results["distributed"]["world_size"] == 2
    assert _rows(results) == _rows(single)
    assert results["oracle_floor"] == single["oracle_floor"]
    assert all(r["status"] == "ok" for r in results["rows"])


@pytest.mark.slow
def test_torchrun_cli_matches_single_process(tmp_path):
    args = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "channels=1", "--solvers", "euler,seeds1",
            "--nfe", "4", "--num-samples", "16", "--batch-size", "4", "--seed", "1"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run([sys.executable, "-m", "solverzoo", *args, "--out", str(one)], env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert single.returncode == 0, single.stderr[-2000:]
    dist = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "solverzoo", *args, "--out", str(two)], env=_env(), capture_output=True, text=True,
                          timeout=180)
    assert dist.returncode == 0, dist.stderr[-3000:]
    a = json.loads((one / "results.json").read_text())
    b = json.loads((two / "results.json").read_text())
    assert b["distributed"]["world_size"] == 2 and "distributed" not in a
    assert _rows(a) == _rows(b)
    assert (two / "results.csv").is_file() and (two / "nfe_vs_fd.png").is_file()

"""An output folder belongs to one run: a lock, nothing replaced before the new run has a row, no stale
artefacts, filesystem faults named (exit 2) with nothing already written lost, error rows retried."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from solverzoo.cli import main

TINY = ["bench", "--model", "gmm-image", "-m", "resolution=8", "-m", "num_components=2"]
SLOW = [*TINY, "--solvers", "euler,heun,pc", "--nfe", "6,12,24,48", "--num-samples", "200", "--batch-size", "20"]


def _env() -> dict:
    root = str(Path(__file__).resolve().parent.parent)
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "solverzoo", *args], env=_env(), **kwargs)


def _wait_for(predicate, seconds: float = 120.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.slow
def test_two_runs_on_one_folder_one_runs_the_other_exits_2(tmp_path):
    out = tmp_path / "shared"
    first = _cli(*SLOW, "--out", str(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: (out / ".solverzoo.lock").exists())
    second = subprocess.run([sys.executable, "-m", "solverzoo", *SLOW, "--out", str(out)], env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert first.poll() is None, "the first run ended before the second one started; make it slower"
    assert second.returncode == 2, second.stderr
    assert "in use by another run" in second.stderr and f"pid {first.pid}" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=600) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert len(rows) == 3 * 4 and {r["status"] for r in rows} == {"ok"}  # every row of the running one
    assert not (out / ".solverzoo.lock").exists()


@pytest.mark.slow
def test_interrupted_overwrite_keeps_the_previous_results(tmp_path):
    out = tmp_path / "run"
    old = CliRunner().invoke(main, [*TINY, "--solvers", "euler,heun", "--nfe", "6", "--num-samples", "10",
                                    "--out", str(out)])
    assert old.exit_code == 0, old.output
    before = (out / "results.json").read_bytes()
    assert (out / "samples.png").exists() and (out / "previews.npz").exists()
    # a run of another model with --overwrite, killed before its first row
    new = ["bench", "--model", "gmm-2d", "--solvers", "euler,heun", "--nfe", "6,12", "--num-samples", "400",
           "--overwrite", "--out", str(out)]
    proc = _cli(*new, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert _wait_for(lambda: any(p.name.startswith(".staging-") for p in out.iterdir()))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "results.json").read_bytes() == before
    report = CliRunner().invoke(main, ["report", str(out)])
    assert report.exit_code == 0, report.output
    assert "heun" in report.output and (out / "samples.png").exists()
    # the same command again: the dead run's lock is taken over, its staging folder cleared
    done = CliRunner().invoke(main, new)
    assert done.exit_code == 0, done.output
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["name"] == "gmm-2d" and len(results["rows"]) == 4
    names = {p.name for p in out.iterdir()}
    assert not {"samples.png", "previews.npz", "nfe_vs_spectral_error.png"} & names  # the old run's, gone
    assert not [n for n in names if n.startswith(".staging-") or n == ".solverzoo.lock"]


def test_overwrite_replaces_only_after_the_first_row(tmp_path, monkeypatch):
    """The old results stay readable until the new run's first row is saved; then the new file is there."""
    import solverzoo.bench.outdir as outdir

    out = tmp_path / "r"
    args = [*TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "6", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    before = json.loads((out / "results.json").read_text())
    seen = []
    real = outdir.RunFolder.promote

    def promote(self):
        seen.append(json.loads((out / "results.json").read_text()) == before)  # still the old file
        real(self)
        seen.append(len(json.loads((out / "results.json").read_text())["rows"]) == 1)

    monkeypatch.setattr(outdir.RunFolder, "promote", promote)
    again = CliRunner().invoke(main, [*args, "--overwrite", "--seed", "1"])
    assert again.exit_code == 0, again.output
    assert seen[:2] == [True, True]


@pytest.mark.slow
def test_retry_errors_runs_failed_cells_again_and_the_table_says_why(tmp_path):
    out = tmp_path / "e"
    args = [*TINY, "--solvers", "euler,heun", "--nfe", "4", "--num-samples", "6", "--out", str(out)]
    assert CliRunner().invoke(main, args).exit_code == 0
    saved = json.loads((out / "results.json").read_text())
    saved["rows"][1].update(status="error", message="RuntimeError: out of memory", value=None)
    (out / "results.json").write_text(json.dumps(saved))
    report = CliRunner().invoke(main, ["report", str(out)])
    assert report.exit_code == 0 and "cells that failed" in report.output and "out of memory" in report.output
    kept = CliRunner().invoke(main, [*args, "--resume"])
    assert kept.exit_code == 1  # the error row is kept without --retry-errors
    retried = CliRunner().invoke(main, [*args, "--resume", "--retry-errors"])
    assert retried.exit_code == 0, retried.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [(r["solver"], r["status"]) for r in rows] == [("euler", "ok"), ("heun", "ok")]


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (out / ".solverzoo.lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "start": "x"}))
    (out / f".staging-{dead.pid}").mkdir()
    r = CliRunner().invoke(main, [*TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert not (out / ".solverzoo.lock").exists() and not (out / f".staging-{dead.pid}").exists()


@pytest.mark.parametrize("case", ["file_as_parent", "file_as_out"])
def test_a_file_where_a_folder_must_be_is_named(tmp_path, case):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker / "out" if case == "file_as_parent" else blocker
    r = CliRunner().invoke(main, [*TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "4", "--out", str(out)])
    assert r.exit_code == 2 and str(blocker) in r.output and "Traceback" not in r.output, r.output
    assert blocker.read_text() == "not a folder"


@contextlib.contextmanager
def _small_filesystem(path: Path, size: str = "4m"):
    """A real tmpfs of ``size`` at ``path`` (root only); the test is skipped where it cannot be mounted."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root; chmod covers read-only folders for other users")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_full_and_read_only_filesystems_exit_2_and_lose_nothing(tmp_path):
    with _small_filesystem(tmp_path / "fs") as fs:
        out = fs / "run"
        args = [*TINY, "--solvers", "euler", "--nfe", "4", "--num-samples", "4", "--out", str(out)]
        assert CliRunner().invoke(main, args).exit_code == 0
        before = (out / "results.json").read_bytes()
        filler = fs / "filler"
        with contextlib.suppress(OSError), open(filler, "wb") as fh:  # fill the filesystem to the last block
            while True:
                fh.write(b"\0" * 4096)
                fh.flush()
        full = CliRunner().invoke(main, [*args, "--overwrite", "--seed", "1"])
        assert full.exit_code == 2, full.output
        assert str(out) in full.output and "Traceback" not in full.output
        assert (out / "results.json").read_bytes() == before  # the old results are intact
        assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0  # the tables still print
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        read_only = CliRunner().invoke(main, [*args, "--overwrite"])
        assert read_only.exit_code == 2, read_only.output
        assert "not writable" in read_only.output or "read-only" in read_only.output.lower(), read_only.output
        report = CliRunner().invoke(main, ["report", str(out)])
        assert report.exit_code == 0 and "could not write" in report.output, report.output
        assert (out / "results.json").read_bytes() == before

"""Every ``solverzoo`` command in README.md and docs/*.md is a valid command line of the current CLI
(options exist, values parse), and the README's own commands run: ``bench`` as ``--dry-run`` (the
whole plan built and checked, nothing sampled), the others for real on small inputs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest

from solverzoo.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands(page: Path) -> list[list[str]]:
    """The ``solverzoo ...`` command lines of the page's bash blocks, as argument lists (comments,
    continuations and ``.venv/bin/`` prefixes removed; the part after ``&&`` for install-and-run lines)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words and words[0].endswith("solverzoo"):
                    commands.append(words[1:])
    return commands


def _rest(ctx: click.Context) -> list[str]:
    """The tokens a group left for its subcommand (click 8: ``protected_args`` + ``args``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return [*getattr(ctx, "protected_args", []), *ctx.args]


def _parse(args: list[str]) -> None:
    """Parse ``args`` as ``solverzoo`` would, down to the leaf command, without running it."""
    ctx = main.make_context("solverzoo", list(args))
    command = main
    while isinstance(command, click.Group):
        name, command, rest = command.resolve_command(ctx, _rest(ctx))
        ctx = command.make_context(name, rest, parent=ctx)


CASES = [(page.relative_to(ROOT).as_posix(), args) for page in PAGES for args in documented_commands(page)]


def test_the_pages_document_commands():
    assert len([c for c in CASES if c[0] == "README.md"]) >= 6


@pytest.mark.parametrize(("page", "args"), CASES, ids=[f"{p}:{' '.join(a)[:60]}" for p, a in CASES])
def test_documented_command_parses(page, args):
    try:
        _parse(args)
    except click.exceptions.Exit:
        pass
    except click.UsageError as err:
        pytest.fail(f"{page}: `solverzoo {' '.join(args)}` does not parse: {err.format_message()}")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "solverzoo", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
                                            "PATH": "/usr/bin:/bin", "HOME": str(cwd)})


@pytest.mark.slow
def test_readme_commands_run(tmp_path):
    """The README's commands in order, in a fresh folder: bench lines as --dry-run, the rest as written
    (``report bench-out/`` reads a small real bench made just before it)."""
    for args in documented_commands(ROOT / "README.md"):
        if args[0] == "bench":
            args = [*args, "--dry-run"] + ([] if "--out" in args else ["--out", "dry-run-out"])
        if args[0] == "report" and not (tmp_path / "bench-out" / "results.json").exists():
            made = _run(["bench", "--solvers", "euler,heun", "--nfe", "3,5", "--num-samples", "8", "-m",
                         "resolution=8", "--out", "bench-out"], tmp_path)
            assert made.returncode == 0, made.stderr
        done = _run(args, tmp_path)
        assert done.returncode == 0, f"solverzoo {' '.join(args)}: {done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
    assert (tmp_path / "samples" / "samples.npz").is_file()

"""The benchmarks stay runnable and their write-ups stay linked.

* Every ``benchmarks/**/*.py`` imports (as ``python SCRIPT`` would see it: its own folder first on
  ``sys.path``) without doing anything: no output, no file written, a ``main()`` to call.
* Every study folder under ``benchmarks/`` (found on disk, so a new study is checked as soon as it
  exists) has the layout of ``benchmarks/README.md``: ``README.md``, a ``run.sh`` that bash can parse,
  and a ``results/`` folder holding every run's output.
* Every relative link or image in the benchmarks' markdown, ``README.md`` and ``docs/*.md`` points to
  a file that exists, and so does every ``benchmarks/...`` path the write-ups mention in their text.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"

SCRIPTS = sorted(p for p in BENCHMARKS.rglob("*.py") if "__pycache__" not in p.parts)
STUDIES = sorted(p for p in BENCHMARKS.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
MARKDOWN = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *BENCHMARKS.rglob("*.md")])
#: files a run writes, which belong under the study's results/<run>/
RUN_OUTPUTS = ("results.json", "results.csv")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (outside __pycache__) with its size and modification time."""
    return {_relative(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_benchmarks_have_scripts_and_studies():
    assert len(SCRIPTS) >= 10, SCRIPTS
    assert len(STUDIES) >= 8, STUDIES


@pytest.mark.parametrize("script", SCRIPTS, ids=_relative)
def test_script_imports_without_side_effects(script: Path):
    name = "benchmark_script_" + re.sub(r"\W", "_", _relative(script))
    modules_before, path_before = set(sys.modules), list(sys.path)
    files_before = _tree(BENCHMARKS)
    out, err = io.StringIO(), io.StringIO()
    sys.path.insert(0, str(script.parent))  # what `python SCRIPT` puts first: its sibling scripts import
    try:
        spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # as `python SCRIPT` has __main__: dataclasses look their module up
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            spec.loader.exec_module(module)
    except BaseException as exc:  # SystemExit too: a script that parses sys.argv at import
        pytest.fail(f"{_relative(script)} does not import: {type(exc).__name__}: {exc}")
    finally:
        sys.path[:] = path_before
        sys.modules.pop(name, None)
        for added in set(sys.modules) - modules_before:  # sibling scripts (e.g. perf's `run`) leave with it
            if str(getattr(sys.modules[added], "__file__", None) or "").startswith(str(BENCHMARKS)):
                del sys.modules[added]
    printed = (out.getvalue() + err.getvalue()).strip()
    assert not printed, f"{_relative(script)} prints at import: {printed[:200]!r}"
    assert _tree(BENCHMARKS) == files_before, f"{_relative(script)} writes files at import"
    assert callable(getattr(module, "main", None)), f"{_relative(script)} has no main() (work belongs in main())"


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.name)
def test_study_layout(study: Path):
    name = _relative(study)
    assert (study / "README.md").is_file(), f"{name} has no README.md (the write-up)"
    run_sh = study / "run.sh"
    assert run_sh.is_file(), f"{name} has no run.sh (the commands that re-make its results)"
    assert run_sh.read_text().startswith("#!/usr/bin/env bash"), f"{name}/run.sh: no bash shebang"
    if shutil.which("bash"):
        parsed = subprocess.run(["bash", "-n", str(run_sh)], capture_output=True, text=True)
        assert parsed.returncode == 0, f"{name}/run.sh does not parse: {parsed.stderr}"
    results = study / "results"
    assert results.is_dir(), f"{name} has no results/ folder"
    for output in RUN_OUTPUTS:
        stray = [_relative(p) for p in study.rglob(output) if results not in p.parents]
        assert not stray, f"{name}: run outputs outside results/<run>/: {stray}"
    loose = [p.name for p in study.iterdir() if p.is_file() and p.name not in ("README.md", "run.sh")
             and p.suffix not in (".py", ".toml") and not p.name.startswith(".")]  # scripts and their inputs
    assert not loose, f"{name}: files beside run.sh that belong in results/<run>/: {loose}"


_FENCED = re.compile(r"^```.*?^```", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
#: a repository path in running text; a path that goes on with a placeholder ($W, <run>, *, {..}) is skipped
_REPO_PATH = re.compile(r"(?<![\w./-])benchmarks/[\w./-]*(?![\w$<*{])")


def _links(text: str) -> list[str]:
    prose = _INLINE_CODE.sub("", _FENCED.sub("", text))
    return _LINK.findall(prose) + _REFERENCE.findall(prose)


@pytest.mark.parametrize("page", MARKDOWN, ids=_relative)
def test_markdown_links_point_to_files(page: Path):
    broken = []
    for target in _links(page.read_text()):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue  # a URL, mailto: or an anchor in the same page
        path = target.split("#", 1)[0].split("?", 1)[0]
        if path and not (page.parent / path).exists():
            broken.append(target)
    assert not broken, f"{_relative(page)} links to missing files: {broken}"


@pytest.mark.parametrize("page", [p for p in MARKDOWN if "results" not in p.relative_to(ROOT).parts], ids=_relative)
def test_benchmark_paths_in_text_exist(page: Path):
    """Write-ups only: a run's own output under results/ keeps the command it was made with."""
    missing = []
    for match in _REPO_PATH.finditer(page.read_text()):
        path = match.group(0).rstrip(".")
        if path.endswith("/") and path.count("/") == 1:
            continue  # "benchmarks/" itself
        candidate = ROOT / path
        # an output prefix (fd_vs_steps.py --out DIR/NAME writes NAME.json) counts when a file extends it
        if not candidate.exists() and not any(candidate.parent.glob(candidate.name + ".*")):
            missing.append(path)
    assert not missing, f"{_relative(page)} names benchmark paths that do not exist: {missing}"

"""The mutation lane: apply each curated mutant of mutants.toml to a temporary copy of the repository,
run the tests it names there, and report which test killed it.

The working tree is never modified: the repository (less .git, caches and virtual environments) is
copied once to a temporary folder, each mutant is written into that copy, pytest runs in the copy with
PYTHONPATH pointing at it, and the original file is put back before the next mutant.

A mutant is *killed* when its tests fail (or time out), *survived* when they pass, *equivalent* when it
survives and mutants.toml explains why it cannot change any result, and *stale* when its original
snippet no longer occurs exactly once in the file (the code moved on: update the mutant).

Usage (from the repository root; the lane is slow, run it before a release, not in CI):

    benchmarks/mutation/run.sh                      # every mutant, report into benchmarks/mutation/
    benchmarks/mutation/run.sh --only restart-one-noise,fd-floor-2n --no-report
    python benchmarks/mutation/run.py --list
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the tomli backport
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
IGNORE = shutil.ignore_patterns(".git", "__pycache__", ".venv", "venv", "*.egg-info", ".pytest_cache", ".hypothesis",
                                "runs", "bench-out", "build")
START, END = "<!-- mutation-report:start -->", "<!-- mutation-report:end -->"


@dataclass
class Mutant:
    id: str
    origin: str
    file: str
    original: str
    replacement: str
    description: str
    tests: list[str]
    equivalent: str = ""


@dataclass
class Outcome:
    id: str
    status: str  # killed, survived, equivalent, stale
    killed_by: str = ""
    seconds: float = 0.0
    detail: str = ""
    extra: dict = field(default_factory=dict)


def load_mutants(path: Path) -> list[Mutant]:
    data = tomllib.loads(path.read_text())
    mutants = [Mutant(**m) for m in data["mutant"]]
    ids = [m.id for m in mutants]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"duplicate mutant ids in {path}")
    return mutants


def pytest_command(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-p", "no:cacheprovider", "--no-header", *tests]


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[int | None, str, float]:
    """(return code or None on timeout, output, seconds) of pytest on ``tests`` inside ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(pytest_command(tests), check=False, cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, time.perf_counter() - start
    return proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start


def first_failure(output: str) -> str:
    match = re.search(r"^(?:FAILED|ERROR) (\S+)", output, re.MULTILINE)
    return match.group(1) if match else ""


def apply(copy: Path, mutant: Mutant) -> str | None:
    """Write the mutant into the copy; the original text, or None when the snippet is not there once."""
    target = copy / mutant.file
    text = target.read_text()
    if text.count(mutant.original) != 1:
        return None
    target.write_text(text.replace(mutant.original, mutant.replacement))
    return text


def run_mutant(copy: Path, mutant: Mutant, timeout: float) -> Outcome:
    original = apply(copy, mutant)
    if original is None:
        return Outcome(mutant.id, "stale", detail=f"the original snippet does not occur exactly once in {mutant.file}")
    try:
        code, output, seconds = run_tests(copy, mutant.tests, timeout)
    finally:
        (copy / mutant.file).write_text(original)
    if code is None:
        return Outcome(mutant.id, "killed", "timeout", seconds, f"tests ran past {timeout:.0f} s")
    if code == 0:
        status = "equivalent" if mutant.equivalent else "survived"
        return Outcome(mutant.id, status, seconds=seconds, detail=mutant.equivalent)
    failed = first_failure(output)
    if code == 1 and failed:
        return Outcome(mutant.id, "killed", failed, seconds)
    tail = output.strip().splitlines()[-1] if output.strip() else ""
    return Outcome(mutant.id, "killed", failed or f"pytest exit {code}", seconds, tail)


def markdown(mutants: list[Mutant], outcomes: list[Outcome], meta: dict) -> str:
    by_id = {o.id: o for o in outcomes}
    lines = [
        (f"Run of {meta['date']} on {meta['machine']} (Python {meta['python']}): `{meta['command']}`, "
         f"wall time {meta['wall_seconds'] / 60:.1f} min."),
        "",
        (f"**{meta['killed']} of {meta['scored']} mutants killed: kill rate {100 * meta['kill_rate']:.1f}%** "
         f"({meta['survived']} survived, {meta['equivalent']} equivalent, {meta['stale']} stale; "
         f"{meta['total']} mutants in the list)."),
        "",
        "| # | mutant | origin | file | change | result | killed by / why it survives |",
        "|---|--------|--------|------|--------|--------|-----------------------------|",
    ]
    for k, m in enumerate(mutants, 1):
        o = by_id.get(m.id)
        if o is None:
            continue
        why = o.killed_by if o.status == "killed" else o.detail
        lines.append(f"| {k} | `{m.id}` | {m.origin} | `{m.file.removeprefix('solverzoo/')}` | {m.description} | "
                     f"{o.status} | {why.replace('|', '/')} |")
    return "\n".join(lines)


def write_report(mutants: list[Mutant], outcomes: list[Outcome], meta: dict) -> None:
    out = HERE / "results" / "last" / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "outcomes": [asdict(o) for o in outcomes]},
                                                  indent=1) + "\n")
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else f"# Mutation lane\n\n{START}\n{END}\n"
    if START not in text or END not in text:
        text = text.rstrip() + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + markdown(mutants, outcomes, meta) + "\n" + END + tail)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mutants", type=Path, default=HERE / "mutants.toml")
    parser.add_argument("--only", default="", help="comma-separated mutant ids")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant's test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-report", action="store_true", help="print the results, do not write the report")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)

    mutants = load_mutants(args.mutants)
    if args.list:
        for m in mutants:
            print(f"{m.id:36s} {m.origin:9s} {m.file}: {m.description}")
        return 0
    if args.only:
        wanted = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = wanted - {m.id for m in mutants}
        if unknown:
            parser.error(f"unknown mutant ids: {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.id in wanted]

    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="solverzoo-mutation-"))
    copy = tmp / "repo"
    shutil.copytree(ROOT, copy, ignore=IGNORE)
    try:
        tests = sorted({t for m in mutants for t in m.tests})
        code, output, seconds = run_tests(copy, tests, args.timeout * 2)
        print(f"baseline: {len(tests)} test files, {seconds:.0f} s, exit {code}", flush=True)
        if code != 0:
            print(output[-4000:])
            print("the unmutated tests must pass first", file=sys.stderr)
            return 2
        outcomes = []
        for m in mutants:
            o = run_mutant(copy, m, args.timeout)
            outcomes.append(o)
            print(f"{o.status:10s} {o.seconds:6.1f} s  {m.id}: {o.killed_by or o.detail}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"copy kept in {copy}")
    wall = time.perf_counter() - start
    counts = {s: sum(o.status == s for o in outcomes) for s in ("killed", "survived", "equivalent", "stale")}
    scored = counts["killed"] + counts["survived"]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "command": "benchmarks/mutation/run.sh" + (f" --only {args.only}" if args.only else ""),
        "wall_seconds": round(wall, 1),
        "baseline_seconds": round(seconds, 1),
        "total": len(outcomes),
        "scored": scored,
        **counts,
        "kill_rate": counts["killed"] / scored if scored else 0.0,
    }
    print(f"kill rate {counts['killed']}/{scored} = {100 * meta['kill_rate']:.1f}%; "
          f"equivalent {counts['equivalent']}, stale {counts['stale']}; wall {wall / 60:.1f} min")
    if not args.no_report:
        write_report(mutants, outcomes, meta)
    return 0 if counts["survived"] == 0 and counts["stale"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

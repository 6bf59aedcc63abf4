"""Which solverzoo functions and modules a requested NFE passes through, from ``solverzoo bench --nfe 14``
to the grid and the sampler (a ``sys.settrace`` of one tiny run).

    python benchmarks/bench_plan/trace_nfe.py      (bash benchmarks/bench_plan/run.sh)

A call is counted when an argument whose name contains ``nfe`` carries the value 14 (or a list holding
it), or when a ``config`` / ``plan`` argument carrying it is read for an ``.nfe`` attribute.  It also counts
the calls of ``steps_for_nfe`` (the NFE -> steps conversion).
"""

from __future__ import annotations

import sys
import tempfile

NFE = 14


def _carries(value, depth: int = 0) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == NFE
    if isinstance(value, str):
        return value == str(NFE)
    if isinstance(value, (list, tuple)) and depth < 2:
        return any(_carries(v, depth + 1) for v in value[:50])
    if depth == 0 and hasattr(value, "__dict__") and not isinstance(value, type):
        try:
            return any(_carries(v, 1) for k, v in vars(value).items() if "nfe" in k)
        except TypeError:
            return False
    return False


def trace() -> list[tuple[str, str]]:
    hits: list[tuple[str, str]] = []

    def tracer(frame, event, arg):
        if event != "call":
            return None
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("solverzoo"):
            return None
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        reads = "nfe" in code.co_names
        if any(("nfe" in n or (reads and n in ("config", "plan", "p"))) and _carries(frame.f_locals.get(n))
               for n in names):
            hits.append((module, code.co_name))
        return None

    from solverzoo.cli import main as cli

    out = tempfile.mkdtemp() + "/o"
    sys.argv = ["solverzoo", "bench", "--model", "gmm-2d", "--solvers", "heun", "--nfe", str(NFE), "--num-samples",
                "4", "--out", out]
    sys.settrace(tracer)
    try:
        cli(standalone_mode=False)
    except SystemExit:
        pass
    finally:
        sys.settrace(None)
    return hits


def main() -> None:
    calls = trace()
    modules = []
    for module, _ in calls:
        if not modules or modules[-1] != module:
            modules.append(module)
    print("steps_for_nfe calls:", sum(1 for _, f in calls if f == "steps_for_nfe"))
    print("calls:", len(calls), "distinct functions:", len(set(calls)))
    for module, function in dict.fromkeys(calls):
        print("  ", module, function)
    print("distinct modules:", len(set(modules)), "module visits:", len(modules))


if __name__ == "__main__":
    main()

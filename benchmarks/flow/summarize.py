"""Tables for benchmarks/flow: every run's primary metric per solver and NFE with its rank, and the rank
agreement between pairs of runs (Spearman's rho over the solvers both ran, per NFE; the solvers that move
by MOVE places or more).  Reads results/<run>/results.json, writes results/tables.md.

    python benchmarks/flow/summarize.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent / "results"
MOVE = 5
PAIRS = [
    ("gmm_edm", "gmm_flow"),
    ("gmm_edm", "gmm_flow_shift1"),
    ("gmm_flow_shift1", "gmm_flow_shift3"),
    ("digits_edm", "digits_flow"),
    ("digits_flow", "digits_flow_shift1"),
    ("digits_flow_shift1", "digits_flow_shift3"),
    ("gmm_flow", "digits_flow"),
]


def load(run: str) -> dict | None:
    path = HERE / run / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cells(results: dict) -> dict[tuple[str, int], dict]:
    return {(r["solver"], r["nfe_requested"]): r for r in results["rows"] if r["repeat"] == 0}


def ranks(results: dict, nfe: int) -> dict[str, int]:
    """1 = best (lowest metric) among the solvers whose cell ran at this NFE."""
    ok = sorted((r["value"], r["solver"]) for (s, n), r in cells(results).items()
                if n == nfe and r["status"] == "ok" and r["value"] is not None)
    return {solver: k + 1 for k, (_, solver) in enumerate(ok)}


def spearman(a: dict[str, int], b: dict[str, int]) -> tuple[float, int]:
    common = sorted(set(a) & set(b))
    n = len(common)
    if n < 3:
        return float("nan"), n
    ra = {s: k for k, s in enumerate(sorted(common, key=a.get))}
    rb = {s: k for k, s in enumerate(sorted(common, key=b.get))}
    d2 = sum((ra[s] - rb[s]) ** 2 for s in common)
    return 1 - 6 * d2 / (n * (n * n - 1)), n


def run_table(run: str, results: dict) -> list[str]:
    nfes = sorted({n for _, n in cells(results)})
    rk = {n: ranks(results, n) for n in nfes}
    metric = results["metric"]
    floor = results.get("oracle_floor")
    lines = [f"### {run}", "", f"`{results['command']}`", "",
             f"metric `{metric}` (oracle floor {floor:.4g}; lower is better), rank in brackets", "",
             "| solver | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|" + "---|" * len(nfes)]
    for solver in sorted({s for s, _ in cells(results)}):
        row = []
        for n in nfes:
            c = cells(results).get((solver, n))
            if c is None or c["status"] != "ok":
                row.append("—" if c is None else c["status"])
            else:
                row.append(f"{c['value']:.4g} ({rk[n][solver]})")
        lines.append(f"| {solver} | " + " | ".join(row) + " |")
    return lines + [""]


def pair_table(a_name: str, a: dict, b_name: str, b: dict) -> list[str]:
    lines = [f"### {a_name} -> {b_name}", "", "| NFE | Spearman rho | solvers | moved >= 5 places (rank a -> b) |",
             "|---|---|---|---|"]
    nfes = sorted({n for _, n in cells(a)} & {n for _, n in cells(b)})
    for n in nfes:
        ra, rb = ranks(a, n), ranks(b, n)
        rho, count = spearman(ra, rb)
        moved = [f"{s} {ra[s]}->{rb[s]}" for s in sorted(set(ra) & set(rb), key=ra.get) if abs(ra[s] - rb[s]) >= MOVE]
        lines.append(f"| {n} | {rho:.2f} | {count} | {', '.join(moved) or '—'} |")
    return lines + [""]


def main() -> None:
    runs = sorted(p.name for p in HERE.iterdir() if (p / "results.json").is_file())
    out = ["# benchmarks/flow tables", "",
           "Made by `python benchmarks/flow/summarize.py` from results/<run>/results.json.", "", "## Rank agreement", ""]
    for a, b in PAIRS:
        ra, rb = load(a), load(b)
        if ra is not None and rb is not None:
            out += pair_table(a, ra, b, rb)
    out += ["## Runs", ""]
    for run in runs:
        out += run_table(run, load(run))
    (HERE / "tables.md").write_text("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()

"""Markdown tables of the guidance suite (benchmarks/guidance/results/*/results.json), as in README.md.

    .venv/bin/python benchmarks/guidance/summarize.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str) -> dict | None:
    path = RESULTS / name / "results.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(prefix: str, key: str, fmt: str, weights=(1, 4, 8)) -> str:
    """One row per solver, one column per (w, NFE): the rows' ``key``."""
    runs = {w: _load(f"{prefix}_w{w}") for w in weights}
    runs = {w: r for w, r in runs.items() if r is not None}
    if not runs:
        return f"(no results for {prefix})\n"
    nfes = sorted({row["nfe_requested"] for r in runs.values() for row in r["rows"]})
    solvers = list(dict.fromkeys(row["solver"] for r in runs.values() for row in r["rows"]))
    head = ["solver"] + [f"w={w} NFE {n}" for w in runs for n in nfes]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in solvers:
        cells = [s]
        for r in runs.values():
            rows = {row["nfe_requested"]: row for row in r["rows"] if row["solver"] == s}
            for n in nfes:
                row = rows.get(n)
                if row is None:
                    cells.append("")
                elif row["status"] != "ok":
                    cells.append(row["status"])
                else:
                    v = row.get(key)
                    cells.append("" if v is None else format(v, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    out = sys.stdout
    out.write("gmm-image conditional, path_rms to the guided heun-511 reference (100 samples)\n\n")
    out.write(table("gmm", "path_rms", ".3g"))
    out.write("\ngmm-image conditional, spectral_error\n\n")
    out.write(table("gmm", "spectral_error", ".3f"))
    out.write("\ndigits-cond-unet, fd_digits_classifier\n\n")
    out.write(table("digits", "fd", ".1f"))
    out.write("\ndigits-cond-unet, label_accuracy\n\n")
    out.write(table("digits", "label_accuracy", ".3f"))
    out.write("\ndigits-cond-unet, path_rms to the guided heun-511 reference (100 samples)\n\n")
    out.write(table("digits", "path_rms", ".3g"))


if __name__ == "__main__":
    main()

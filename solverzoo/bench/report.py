"""Tables, CSV and the NFE-versus-FD plot, built from a results dict (or results.json)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["load_results", "write_csv", "plot_nfe_vs_fd", "table_rows", "write_outputs"]

CSV_FIELDS = ("solver", "nfe_requested", "repeat", "nfe", "steps", "metric", "fd", "fd_excess", "oracle_floor",
              "spectral_error", "hf_ratio", "seconds", "status", "message")


def load_results(path: str | Path) -> dict:
    """Read a results.json (or the folder holding one); clear errors for malformed files."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        with open(path) as fh:
            results = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{path}: not a solverzoo results file (no 'rows' list)")
    return results


def write_csv(results: dict, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in results["rows"]:
            writer.writerow({k: row.get(k) for k in CSV_FIELDS})
    tmp.replace(path)


def table_rows(results: dict) -> tuple[list[int], dict[str, dict[int, dict]]]:
    """NFE columns and {solver: {nfe_requested: cell}} in the order solvers ran.

    A cell aggregates the repeats (disjoint seed ranges) of one (solver, NFE): ``fd`` is
    their mean, ``fd_std`` the sample standard deviation (0 for one repeat), ``status``
    is "ok" only if every repeat is.
    """
    nfes = sorted({row["nfe_requested"] for row in results["rows"]})
    grouped: dict[str, dict[int, list[dict]]] = {}
    for row in results["rows"]:
        grouped.setdefault(row["solver"], {}).setdefault(row["nfe_requested"], []).append(row)
    by_solver: dict[str, dict[int, dict]] = {}
    for solver, cells in grouped.items():
        for nfe, rows in cells.items():
            bad = [r for r in rows if r["status"] != "ok"]
            cell = dict(rows[0], repeats=len(rows))
            if bad:
                cell.update(status=bad[0]["status"], message=bad[0].get("message", ""), fd=None, fd_std=None)
            else:
                fds = [r["fd"] for r in rows]
                mean = sum(fds) / len(fds)
                std = (sum((f - mean) ** 2 for f in fds) / (len(fds) - 1)) ** 0.5 if len(fds) > 1 else 0.0
                cell.update(fd=mean, fd_std=std)
            by_solver.setdefault(solver, {})[nfe] = cell
    return nfes, by_solver


def plot_nfe_vs_fd(results: dict, path: Path) -> None:
    """One curve per solver (counted NFE on a log axis), the oracle floor as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    _, by_solver = table_rows(results)
    markers = "osD^v<>phX*"
    for k, (solver, cells) in enumerate(by_solver.items()):
        pts = sorted((r["nfe"], r["fd"], r["fd_std"]) for r in cells.values() if r["status"] == "ok")
        if pts:
            x, y, err = zip(*pts)
            ax.errorbar(x, y, yerr=err if any(err) else None, marker=markers[k % len(markers)], label=solver,
                        linewidth=1.5, markersize=4, capsize=2)
    floor = results.get("oracle_floor")
    if floor:
        ax.axhline(floor, color="black", linestyle="--", linewidth=1, label="oracle floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE (counted model calls)")
    ax.set_ylabel(results.get("metric", "fd"))
    model = results.get("model", {})
    n = results.get("config", {}).get("num_samples")
    ax.set_title(f"{model.get('name', '?')} {tuple(model.get('shape', ()))}, {model.get('process', {}).get('name', '')}"
                 f" process, N = {n}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def write_outputs(results: dict, out: Path) -> None:
    """results.csv and nfe_vs_fd.png beside results.json."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "results.csv")
    plot_nfe_vs_fd(results, out / "nfe_vs_fd.png")

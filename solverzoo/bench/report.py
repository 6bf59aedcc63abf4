"""Tables, CSV, plots and the sample sheet, built from a results dict (or results.json)."""

from __future__ import annotations

import csv
import json
import math
from io import StringIO
from pathlib import Path

from ..io import atomic_write, atomic_write_text, image_grid

__all__ = ["load_results", "load_previews", "write_csv", "plot_metrics", "plot_samples", "table_rows", "write_outputs",
           "SIGNIFICANCE", "READABLE_SCHEMAS"]

#: The CSV's columns before the metrics (one column per declared metric follows).
CSV_FIELDS = ("solver", "nfe_requested", "repeat", "nfe", "steps", "metric", "value", "uncertainty", "excess",
              "oracle_floor", "verdict")
CSV_TAIL = ("seconds", "status", "message")

#: A solver is "not significantly worse" than a column's best when value - best <= SIGNIFICANCE * sqrt(u^2 + u_best^2).
SIGNIFICANCE = 2.0

#: Row fields of schemas 1 and 2 that are metrics (schema 3 keeps them in the row's ``metrics``).
LEGACY_METRICS = ("fd", "fd_excess", "spectral_error", "hf_ratio", "path_rms", "label_accuracy")


#: The results.json schemas this version reads (see solverzoo.bench.schema.SCHEMA).
READABLE_SCHEMAS = (1, 2, 3)
#: Row fields that hold numbers (non-finite values are written as the strings "nan", "inf", "-inf").
NUMERIC_FIELDS = ("value", "uncertainty", "excess", "oracle_floor", "seconds", *LEGACY_METRICS)


def _number(value):
    """A row's number as read back: the strings "nan" / "inf" / "-inf" (how non-finite values are
    written) become floats; anything else that is not a number is left for the row check."""
    if isinstance(value, str) and value.strip().lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(value)
    return value


def _check_row(path: Path, k: int, row) -> dict:
    where = f"{path}: row {k}"
    if not isinstance(row, dict):
        raise ValueError(f"{where} is not an object; the file is not a solverzoo results file (or was edited)")
    for key, kind in (("solver", str), ("nfe_requested", int), ("status", str)):
        if key not in row:
            raise ValueError(f"{where} has no {key!r}; restore the file or run the bench again with --overwrite")
        if not isinstance(row[key], kind) or isinstance(row[key], bool):
            raise ValueError(f"{where}: {key}={row[key]!r} is not a {kind.__name__}")
    for key in NUMERIC_FIELDS:
        if key in row:
            row[key] = _number(row[key])
            if row[key] is not None and (isinstance(row[key], bool) or not isinstance(row[key], (int, float))):
                raise ValueError(f"{where}: {key}={row[key]!r} is not a number")
    metrics = row.get("metrics", {})
    if not isinstance(metrics, dict):
        raise ValueError(f"{where}: metrics={metrics!r} is not an object")
    for key, value in list(metrics.items()):
        value = metrics[key] = _number(value)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{where}: metrics.{key}={value!r} is not a number")
    row["metrics"] = {**{k: row.pop(k) for k in LEGACY_METRICS if k in row}, **metrics}  # schemas 1-2: fields
    row.setdefault("repeat", 0)
    row.setdefault("message", "")
    return row


def load_results(path: str | Path) -> dict:
    """Read a results.json (or the folder holding one); a ValueError naming the file and what to do
    for a missing, unreadable, foreign or malformed file, or a schema this version does not read.

    Files without ``schema_version`` (schema 1: ``fd`` was the primary metric) are read with
    their ``fd`` / ``fd_excess`` as the primary value / excess.  Non-finite numbers, written as the
    strings "nan" / "inf", are read back as floats."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such results file") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder, not a results file") from None
    except PermissionError:
        raise ValueError(f"{path}: cannot be read (permission denied)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: not valid JSON ({str(err)[:200]}); restore it or run again with --overwrite") \
            from None
    except OSError as err:
        raise ValueError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not isinstance(results, dict) or not isinstance(results.get("rows"), list):
        raise ValueError(f"{path}: not a solverzoo results file (no 'rows' list)")
    version = results.get("schema_version", 1)
    if isinstance(version, str) and version.isdigit():
        version = int(version)
    if version not in READABLE_SCHEMAS:
        raise ValueError(f"{path}: results schema {version!r}, this version of solverzoo reads schemas "
                         f"{', '.join(map(str, READABLE_SCHEMAS))}; use the solverzoo version that wrote it")
    if "schema_version" not in results:
        for row in results["rows"]:
            if isinstance(row, dict):
                row.setdefault("value", row.get("fd"))
                row.setdefault("excess", row.get("fd_excess"))
                row.setdefault("uncertainty", None)
    results["rows"] = [_check_row(path, k, row) for k, row in enumerate(results["rows"])]
    if not isinstance(results.get("metrics"), dict):  # schemas 1-2: the metrics the rows hold
        from ..metrics.catalog import describe_metrics

        names = [k for row in results["rows"] for k, v in row["metrics"].items() if v is not None]
        if results.get("fd_metric") in (None, results.get("metric")):
            names = [n for n in names if n not in ("fd", "fd_excess")]
        results["metrics"] = describe_metrics(names)
    if "schema_version" not in results:
        results.setdefault("fd_metric", results.get("metric"))
        results.setdefault("fd_oracle_floor", results.get("oracle_floor"))
    results.setdefault("metric", results["rows"][0].get("metric", "value") if results["rows"] else "value")
    return results


def load_previews(out: Path) -> dict:
    """{(solver, nfe_requested): samples} from OUT/previews.npz ({} when absent); a ValueError naming the
    file when it cannot be read."""
    import zipfile

    import numpy as np
    import torch

    path = Path(out) / "previews.npz"
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            previews = {}
            for key in z.files:
                solver, _, nfe = key.rpartition("@")
                if not solver or not nfe.isdigit():
                    raise ValueError(f"entry {key!r} is not solver@nfe")
                previews[(solver, int(nfe))] = torch.from_numpy(np.asarray(z[key], dtype=np.float32))
            return previews
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: cannot read the sample previews ({type(err).__name__}: {err}); delete it (only "
                         f"samples.png needs it) and run again") from None


def write_csv(results: dict, path: Path) -> None:
    """results.csv: one line per row; the declared metrics as columns."""
    _, by_solver = table_rows(results)
    verdicts = {(s, n): c.get("verdict", "") for s, cells in by_solver.items() for n, c in cells.items()}
    names = list(results.get("metrics", {}))
    fields = [*CSV_FIELDS, *names, *CSV_TAIL]
    text = StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, extrasaction="ignore", lineterminator="\r\n")
    writer.writeheader()
    for row in results["rows"]:
        writer.writerow({k: row.get(k) for k in fields} | {k: row["metrics"].get(k) for k in names}
                        | {"verdict": verdicts.get((row["solver"], row["nfe_requested"]), "")})
    atomic_write_text(path, text.getvalue())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def table_rows(results: dict) -> tuple[list[int], dict[str, dict[int, dict]]]:
    """NFE columns and {solver: {nfe_requested: cell}} in the order solvers ran.

    A cell aggregates the repeats (disjoint seed ranges) of one (solver, NFE): ``value`` (and
    every other metric) is their mean, ``uncertainty`` the standard deviation of that mean
    (the rows' uncertainties combined; the spread across repeats when a row has none),
    ``spread`` the sample standard deviation across repeats (0 for one), ``status`` is "ok"
    only if every repeat is.  ``verdict`` is "best" for the lowest value of an NFE column,
    "tie" for a value not significantly above it (:data:`SIGNIFICANCE`), else "".  Only cells that made at
    most the column's NFE in counted model calls are ranked (an adaptive solver over budget is shown, not
    ranked).
    """
    nfes = sorted({row["nfe_requested"] for row in results["rows"]})
    grouped: dict[str, dict[int, list[dict]]] = {}
    for row in results["rows"]:
        grouped.setdefault(row["solver"], {}).setdefault(row["nfe_requested"], []).append(row)
    by_solver: dict[str, dict[int, dict]] = {}
    for solver, cells in grouped.items():
        for nfe, rows in cells.items():
            bad = [r for r in rows if r["status"] != "ok"]
            cell = dict(rows[0], repeats=len(rows), verdict="")
            if bad or any(r.get("value") is None for r in rows):
                first = bad[0] if bad else rows[0]
                cell.update(status=first["status"], message=first.get("message", ""), value=None, uncertainty=None,
                            spread=None, metrics={})
            else:
                vals = [r["value"] for r in rows]
                mean = _mean(vals)
                spread = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5 if len(vals) > 1 else 0.0
                us = [r.get("uncertainty") for r in rows]
                if all(u is not None for u in us):
                    unc = math.sqrt(sum(u * u for u in us)) / len(us)
                else:
                    unc = spread / math.sqrt(len(vals)) if len(vals) > 1 else None
                cell.update(value=mean, uncertainty=unc, spread=spread)
                floor = cell.get("oracle_floor")
                cell["excess"] = None if floor is None else mean - _mean([r["oracle_floor"] for r in rows])
                names = dict.fromkeys(k for r in rows for k in r.get("metrics", {}))
                got = {k: [r.get("metrics", {}).get(k) for r in rows] for k in names}
                cell["metrics"] = {k: _mean(v) if all(g is not None for g in v) else None for k, v in got.items()}
            by_solver.setdefault(solver, {})[nfe] = cell
    for nfe in nfes:  # the verdict per NFE column, among the cells that kept to the budget
        cells = [c[nfe] for c in by_solver.values()
                 if nfe in c and c[nfe]["value"] is not None and within_budget(c[nfe], nfe)]
        if not cells:
            continue
        best = min(cells, key=lambda c: c["value"])
        best["verdict"] = "best"
        ub = best["uncertainty"] or 0.0
        for c in cells:
            if c is best:
                continue
            u = c["uncertainty"] or 0.0
            if c["value"] - best["value"] <= SIGNIFICANCE * math.sqrt(u * u + ub * ub):
                c["verdict"] = "tie"
    return nfes, by_solver


def within_budget(cell: dict, nfe: int) -> bool:
    """Whether a cell's counted model calls kept to its NFE column's budget (unknown counts do)."""
    counted = cell.get("nfe")
    return counted is None or counted <= nfe


def _family_styles(solvers: list[str]) -> dict[str, tuple]:
    """(colour, marker, family) per solver: one colour per family, one marker per member."""
    from ..solvers import SOLVERS

    families: dict[str, list[str]] = {}
    for s in solvers:
        fam = SOLVERS[s].info.family if s in SOLVERS else "other"
        families.setdefault(fam, []).append(s)
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]
    markers = "osD^v<>phX*P"
    styles = {}
    for k, (fam, members) in enumerate(families.items()):
        for j, s in enumerate(members):
            styles[s] = (palette[k % len(palette)], markers[j % len(markers)], fam)
    return styles


def _cell_value(cell: dict, key: str):
    return cell.get(key) if key == "excess" else cell.get("metrics", {}).get(key)


def _plot_one(results: dict, key: str, label: str, path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfes, by_solver = table_rows(results)
    series = {}
    for solver, cells in by_solver.items():
        pts = sorted((c["nfe"], _cell_value(c, key), c.get("uncertainty") if key == "excess" else None, n)
                     for n, c in cells.items() if c["status"] == "ok" and _cell_value(c, key) is not None)
        if pts:
            series[solver] = pts
    if not series:
        return False
    styles = _family_styles(list(series))
    fig, ax = plt.subplots(figsize=(8 + 3.5 * (1 + len(series) // 18), 6), dpi=110)
    values = [p[1] for pts in series.values() for p in pts]
    positive = [v for v in values if v > 0]
    uncs = [p[2] for pts in series.values() for p in pts if p[2]]
    # symmetric log: values within the noise (around 0 for an unbiased metric) stay visible
    linthresh = (sorted(uncs)[len(uncs) // 2] if uncs else (min(positive) if positive else 1.0)) or 1e-6
    for solver, pts in series.items():
        colour, marker, fam = styles[solver]
        x, y, err = [p[0] for p in pts], [p[1] for p in pts], [p[2] for p in pts]
        ax.errorbar(x, y, yerr=err if all(e is not None for e in err) else None, color=colour, marker=marker,
                    markersize=5, linewidth=1.0, alpha=0.85, capsize=2, label=f"{solver} ({fam})")
    front = []  # the best solver per NFE column
    for n in nfes:
        best = min(((pts_n[1], pts_n[0]) for pts in series.values() for pts_n in pts
                    if pts_n[3] == n and pts_n[0] <= n), default=None)
        if best is not None:
            front.append((best[1], best[0]))
    if front:
        front.sort()
        ax.plot([f[0] for f in front], [f[1] for f in front], color="black", linewidth=3, alpha=0.35, zorder=0,
                label="best per NFE")
        ax.scatter([f[0] for f in front], [f[1] for f in front], s=160, facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=5)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=linthresh)
    lows = [p[1] - (p[2] or 0.0) for pts in series.values() for p in pts]
    ax.set_ylim(bottom=min(0.0, min(lows)) if min(lows) < -linthresh else -0.5 * linthresh)  # no empty negative half
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    over = sorted({p[0] for pts in series.values() for p in pts if p[0] > max(nfes)})  # adaptive solvers' counts
    ax.set_xticks([*nfes, *over])  # the requested budgets (points sit at their counted NFE)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("NFE (counted model calls)")
    ax.set_ylabel(f"{key.replace('_', ' ')} (symlog; lower is better)")
    model = results.get("model", {})
    n = results.get("config", {}).get("num_samples")
    ax.set_title(f"{label}: {model.get('name', '?')} {tuple(model.get('shape', ()))}, N = {n}; "
                 f"colour = family, marker = member, ring = best per NFE", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=1 + len(series) // 18, loc="upper left", bbox_to_anchor=(1.01, 1.0),
              borderaxespad=0.0)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, bbox_inches="tight"))
    plt.close(fig)
    return True


def plot_metrics(results: dict, out: Path) -> list[Path]:
    """One picture per metric: ``nfe_vs_<primary metric>.png`` (excess over the oracle floor), then one
    for each declared metric that has a picture (``plot`` in its declaration: ``nfe_vs_fd.png``,
    ``nfe_vs_spectral_error.png``, ``nfe_vs_path_rms.png``) when the rows have it."""
    metric = results.get("metric", "value")
    plots = [("excess", metric, f"{metric} excess over its oracle floor")]
    for name, info in results.get("metrics", {}).items():
        if isinstance(info, dict) and info.get("plot"):
            label = info.get("title", name).split(" (")[0]
            if name == "fd_excess":
                label = f"{results.get('fd_metric', 'fd')} excess over its oracle floor"
            plots.append((name, info["plot"], label))
    written = []
    for key, stem, label in plots:
        path = out / f"nfe_vs_{stem}.png"
        if path not in written and _plot_one(results, key, label, path):
            written.append(path)
    return written


def plot_samples(results: dict, previews: dict, path: Path) -> bool:
    """samples.png: rows solvers, columns NFE (each cell: the first samples, same initial noise)."""
    previews = {k: v for k, v in previews.items() if getattr(v, "ndim", 0) == 4 and len(v)}
    if not previews:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nfes, by_solver = table_rows(results)
    solvers = [s for s in by_solver if any((s, n) in previews for n in nfes)]
    if not solvers:
        return False
    per = max(len(x) for x in previews.values())
    images = []
    for s in solvers:
        for n in nfes:
            x = previews.get((s, n))
            for j in range(per):
                images.append(None if x is None or j >= len(x) else x[j].numpy())
    canvas = image_grid(images, len(solvers), len(nfes) * per)
    c = canvas.shape[-1]
    h_in = canvas.shape[0] / 100 + 0.6
    w_in = canvas.shape[1] / 100 + 1.6
    fig = plt.figure(figsize=(w_in, h_in), dpi=100)
    ax = fig.add_axes([1.5 / w_in, 0.05 / h_in, canvas.shape[1] / 100 / w_in, canvas.shape[0] / 100 / h_in])
    ax.imshow(canvas[..., 0] if c == 1 else canvas, cmap="gray" if c == 1 else None, interpolation="nearest",
              vmin=0, vmax=1, aspect="auto")  # the axes box already has the canvas's aspect
    cell_h = (canvas.shape[0] - 2) / max(len(solvers), 1)
    cell_w = (canvas.shape[1] - 2) / len(nfes)
    ax.set_yticks([1 + cell_h * (k + 0.5) for k in range(len(solvers))], solvers, fontsize=8)
    ax.set_xticks([1 + cell_w * (k + 0.5) for k in range(len(nfes))], [f"NFE {n}" for n in nfes], fontsize=9)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return True


def write_outputs(results: dict, out: Path) -> list[Path]:
    """results.csv, one plot per metric and samples.png beside results.json; returns the files written.
    Plots and a sample sheet that this results file does not make are removed (never presented as
    its own)."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(results, out / "results.csv")
    written = [out / "results.csv", *plot_metrics(results, out)]
    try:
        previews = load_previews(out)
    except ValueError:
        previews = {}
    previews = {k: v for k, v in previews.items() if any(r["solver"] == k[0] and r["nfe_requested"] == k[1]
                                                         for r in results["rows"])}
    if plot_samples(results, previews, out / "samples.png"):
        written.append(out / "samples.png")
    for stale in [*out.glob("nfe_vs_*.png"), out / "samples.png"]:
        if stale.exists() and stale not in written:
            stale.unlink()
    return written

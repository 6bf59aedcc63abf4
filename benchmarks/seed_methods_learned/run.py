"""The seed methods' claims on a learned score: PDS / TDAS vs PC, SEEDS-1/2/3 vs Euler-Maruyama,
and EDM vs FDM training, on ``patches-unet`` (3 x 32 x 32 photograph patches, EDM process).

Every cell samples the same N initial noises (seed 0, samples 0..N-1) and is scored four ways,
each with its uncertainty:

* ``fd_pool8``: Frechet distance of the samples average-pooled to 8 x 8 (192 features) against the
  statistics of ``--pool-ref`` training patches, with its oracle floor at this N (N held-out
  patches against the rest) and a bootstrap std (solverzoo.evaluate, the bench's scale);
* ``fid_inception``: Frechet distance of Inception-v3 pool features against ``--inception-ref``
  patches, with its oracle floor at this N and a bootstrap std;
* ``spectral_error`` / ``hf_ratio``: radial power spectrum of the samples against 5000 training
  patches', with a bootstrap std over the samples; ``spectral_floor`` in results.json is the
  same scores of disjoint sets of N real patches (mean and std).

Parts: ``seeds`` (euler_maruyama, seeds1, seeds2, seeds3) and ``pds_tdas`` (pc, pds, tdas), both at
NFE 20, 50, 100; ``peers`` (heun, dpmpp_2m, unipc, dpmpp_2m_sde) at NFE 50, the field's usual
choices, for the best sampler at that budget; ``fdm`` samples ``--edm-model`` and ``--fdm-model`` (the
FDM twin) with ``heun`` (EDM's sampler, the one FDM's paper reports) at NFE 20, 50, 100.  A cell
already scored under another part (same model, solver, NFE and seeds: the same samples) is copied.
Rows are appended to OUT/results.json as each cell finishes (rerunning skips done cells);
OUT/<label>_<solver>_<nfe>.png holds each cell's first 16 samples and OUT/sheet_<part>.png each
part's cells side by side.  ``--table OUT`` prints the markdown tables of a results file.

    python benchmarks/seed_methods_learned/run.py --out benchmarks/seed_methods_learned/results/n256 \\
        --parts seeds,pds_tdas --num-samples 256

(run.sh beside this file has the recorded commands).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import torch

import solverzoo
from solverzoo.data import load_patches
from solverzoo.io import atomic_write_json, save_image_grid
from solverzoo.metrics.spectrum import radial_power, spectral_scores

BUDGETS = (20, 50, 100)
#: part -> (solvers, NFE budgets)
PARTS = {
    "seeds": (("euler_maruyama", "seeds1", "seeds2", "seeds3"), BUDGETS),
    "pds_tdas": (("pc", "pds", "tdas"), BUDGETS),
    "peers": (("heun", "dpmpp_2m", "unipc", "dpmpp_2m_sde"), (50,)),
    "fdm": (("heun",), BUDGETS),
}
BOOTSTRAP_ROUNDS = 20
SPECTRAL = ("spectral_error", "hf_ratio")


def reference_file(out: Path, feature: str, count: int) -> str:
    """Statistics (and features) of ``count`` training patches (seed 2) in ``feature`` space, made once."""
    path = out / f"ref_{feature.replace(':', '')}_{count}.npz"
    if not path.exists():
        from solverzoo.metrics.features import build_extractor
        from solverzoo.metrics.fid import save_reference

        feats = build_extractor(feature)(load_patches(count, seed=2))
        save_reference(path, feats, feature, f"patches ({count}, seed 2)")
    return str(path)


def spectral_with_std(x: torch.Tensor, data_power: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """spectral_error and hf_ratio of ``x`` and their bootstrap std over the samples."""
    scores = spectral_scores(x, data_power)
    gen = torch.Generator().manual_seed(seed)
    draws = [spectral_scores(x[torch.randint(len(x), (len(x),), generator=gen)], data_power)
             for _ in range(BOOTSTRAP_ROUNDS)]
    for key in SPECTRAL:
        values = torch.tensor([d[key] for d in draws], dtype=torch.float64)
        scores[f"{key}_std"] = float(values.std())
    return scores


def spectral_floor(n: int, data_power: torch.Tensor, sets: int = 4) -> dict[str, float]:
    """The spectral scores of ``sets`` disjoint sets of N real patches (not those behind data_power)."""
    real = load_patches(n * sets, seed=3)
    scores = [spectral_scores(real[i * n:(i + 1) * n], data_power) for i in range(sets)]
    floor = {"sets": sets}
    for key in SPECTRAL:
        values = torch.tensor([s[key] for s in scores], dtype=torch.float64)
        floor[key], floor[f"{key}_std"] = float(values.mean()), float(values.std())
    return floor


def cells(parts: list[str], args) -> list[tuple[str, str, str, int]]:
    """(part, model label, solver, nfe) of every cell, in run order."""
    plan = []
    for part in parts:
        models = ([("edm", args.edm_model), ("fdm", args.fdm_model)] if part == "fdm" else [("model", args.model)])
        for label, _ in models:
            solvers, budgets = PARTS[part]
            if args.nfe:
                budgets = [n for n in budgets if n in {int(v) for v in args.nfe.split(",")}]
            for solver in solvers:
                plan += [(part, label, solver, nfe) for nfe in budgets]
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="patches-unet", help="the model of the seeds and pds_tdas parts")
    parser.add_argument("--edm-model", help="fdm part: the EDM-trained model (a name or checkpoint)")
    parser.add_argument("--fdm-model", help="fdm part: its FDM twin (a checkpoint)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--num-samples", type=int, default=256)
    parser.add_argument("--parts", default="seeds,pds_tdas")
    parser.add_argument("--nfe", default=None, help="comma-separated NFE budgets: only these of each part's")
    parser.add_argument("--pool-ref", type=int, default=20_000, help="patches behind the pooled statistics")
    parser.add_argument("--inception-ref", type=int, default=2000, help="patches behind the Inception statistics")
    parser.add_argument("--table", type=Path, help="print the markdown tables of OUT/results.json and exit")
    args = parser.parse_args()
    if args.table:
        print(tables(json.loads((args.table / "results.json").read_text())))
        return
    if args.out is None:
        parser.error("--out is required")
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {sorted(PARTS)}")
    if "fdm" in parts and not (args.edm_model and args.fdm_model):
        parser.error("the fdm part needs --edm-model and --fdm-model")
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.json"
    n = args.num_samples
    data_power = radial_power(load_patches(5000, seed=1))
    if results_path.exists():
        results = json.loads(results_path.read_text())
    else:
        results = {"model": args.model, "num_samples": n, "seed": 0, "rows": [],
                   "spectral_floor": spectral_floor(n, data_power)}
    if results["num_samples"] != n:
        parser.error(f"{results_path} holds N = {results['num_samples']}, not {n}")
    done = {(r["part"], r["label"], r["solver"], r["nfe_requested"]) for r in results["rows"]}
    pool_ref = reference_file(args.out, "pool:8", args.pool_ref)
    inception_ref = reference_file(args.out, "inception", args.inception_ref)
    models: dict[str, object] = {}

    for part, label, solver, nfe in cells(parts, args):
        if (part, label, solver, nfe) in done:
            continue
        source = {"model": args.model, "edm": args.edm_model, "fdm": args.fdm_model}[label]
        same = next((r for r in results["rows"] if (r["model"], r["solver"], r["nfe_requested"]) ==
                     (source, solver, nfe)), None)
        if same is not None:  # the same samples, already scored under another part
            results["rows"].append({**same, "part": part, "label": label})
            atomic_write_json(results_path, results)
            shutil.copyfile(args.out / f"{same['label']}_{solver}_{nfe}.png", args.out / f"{label}_{solver}_{nfe}.png")
            continue
        if source not in models:
            models[source] = solverzoo.get_model(source)
        model = models[source]
        start = time.perf_counter()
        result = solverzoo.sample(model, solver, nfe=nfe, num_samples=n, seed=0, batch_size=n)
        seconds = time.perf_counter() - start
        x = result.samples
        row = {"part": part, "label": label, "model": source, "solver": solver, "nfe_requested": nfe,
               "nfe": result.nfe, "steps": result.steps, "num_samples": n, "seconds": round(seconds, 1),
               "options": result.options}
        for name, feature, ref in (("fd_pool8", "pool:8", pool_ref), ("fid_inception", "inception", inception_ref)):
            scored = solverzoo.evaluate(model, x, feature=feature, reference=ref)
            row.update({name: scored["value"], f"{name}_std": scored["uncertainty"],
                        f"{name}_floor": scored["oracle_floor"]})
        row.update(spectral_with_std(x, data_power))
        results["rows"].append(row)
        atomic_write_json(results_path, results)
        save_image_grid(args.out / f"{label}_{solver}_{nfe}.png", x[:16])
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()
                          if k != "options"}), flush=True)
    sheet(results, args.out)


def _cell(row: dict, key: str, digits: int) -> str:
    value, std = row.get(key), row.get(f"{key}_std")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.{digits}f} ± {std:.{digits}f}" if std is not None else f"{value:.{digits}f}"


def tables(results: dict) -> str:
    """One markdown table per part: every cell with its uncertainty, then the floors at this N."""
    n = results["num_samples"]
    lines = []
    floors = {}
    for part in PARTS:
        rows = [r for r in results["rows"] if r["part"] == part]
        if not rows:
            continue
        lines += [f"### {part} (N = {n} per cell)", "",
                  "| model | solver | NFE (counted) | fd_pool8 | fid_inception | spectral_error | hf_ratio | seconds |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['label']} | {r['solver']} | {r['nfe']} | {_cell(r, 'fd_pool8', 2)} | "
                         f"{_cell(r, 'fid_inception', 1)} | {_cell(r, 'spectral_error', 3)} | "
                         f"{_cell(r, 'hf_ratio', 2)} | {r['seconds']} |")
            floors = {"fd_pool8": r["fd_pool8_floor"], "fid_inception": r["fid_inception_floor"]}
        lines.append("")
    spec = results["spectral_floor"]
    def floor(name: str, digits: int) -> str:
        value = floors.get(name)
        return "none (too few reference patches)" if value is None else f"{value:.{digits}f}"

    lines.append(f"Oracle floors at N = {n} (real patches): fd_pool8 {floor('fd_pool8', 2)}, "
                 f"fid_inception {floor('fid_inception', 1)}, spectral_error "
                 f"{spec['spectral_error']:.3f} ± {spec['spectral_error_std']:.3f}, hf_ratio {spec['hf_ratio']:.2f} ± "
                 f"{spec['hf_ratio_std']:.2f} (over {spec['sets']} disjoint sets).")
    return "\n".join(lines)


def sheet(results: dict, out: Path) -> None:
    """OUT/sheet_<part>.png: the first 16 samples of every cell of a part, one row per (model, solver), one
    column per NFE."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    for part, (_, budgets) in PARTS.items():
        rows = [r for r in results["rows"] if r["part"] == part]
        keys = list(dict.fromkeys((r["label"], r["solver"]) for r in rows))
        if not keys:
            continue
        fig, axes = plt.subplots(len(keys), len(budgets), figsize=(2.2 * len(budgets), 2.3 * len(keys)), dpi=110,
                                 squeeze=False)
        for i, (label, solver) in enumerate(keys):
            for j, nfe in enumerate(budgets):
                ax = axes[i][j]
                ax.axis("off")
                png = out / f"{label}_{solver}_{nfe}.png"
                row = next((r for r in rows if (r["label"], r["solver"], r["nfe_requested"]) == (label, solver, nfe)),
                           None)
                if row is None or not png.exists():
                    continue
                ax.imshow(Image.open(png))
                name = solver if label == "model" else f"{label} {solver}"
                ax.set_title(f"{name}, NFE {row['nfe']}\nfd_pool8 {row['fd_pool8']:.1f}", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"sheet_{part}.png")
        plt.close(fig)


if __name__ == "__main__":
    main()

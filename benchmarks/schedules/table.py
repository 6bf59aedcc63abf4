"""Markdown table of the schedules suite: held-out pathwise error (results/pathwise/pathwise.json) and the
bench's metrics (results/bench/<solver>_<schedule>/results.json).  Run from the repository root:
python benchmarks/schedules/table.py"""

import json
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SCHEDULES = {"karras3": "karras(rho=3)", "karras5": "karras(rho=5)", "karras7": "karras(rho=7)",
             "karras9": "karras(rho=9)", "kl_optimal": "kl_optimal", "tuned": "tuned",
             "tuned_fixed_end": "tuned (fixed end)"}


def main() -> None:
    path = json.loads((RESULTS / "pathwise" / "pathwise.json").read_text())
    for solver in ("dpmpp_2m", "unipc"):
        print(f"\n{solver}, NFE 10\n")
        first = None
        for folder, name in SCHEDULES.items():
            results = json.loads((RESULTS / "bench" / f"{solver}_{folder}" / "results.json").read_text())
            row = results["rows"][0]
            if row["nfe"] != 10 or row["status"] != "ok":
                raise RuntimeError(f"{solver}_{folder}: expected one ok row at NFE 10, got {row}")
            if first is None:
                first = results["metric"]
                print(f"| schedule | pathwise RMS (256 held-out) | {first} (500) | bench path_rms (100) | fd_pixels | "
                      f"spectral_error |")
                print("|---|---:|---:|---:|---:|---:|")
            print(f"| {name} | {path['solvers'][solver][name]:.4f} | {row['value']:.3f} ± {row['uncertainty']:.3f} | "
                  f"{row['path_rms']:.4f} | {row['fd']:.2f} | {row['spectral_error']:.4f} |")


if __name__ == "__main__":
    main()

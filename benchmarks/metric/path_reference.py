"""Is heun at 511 model calls converged enough to be the pathwise reference?  (benchmarks/metric)

heun at 511 and at 1023 calls from the same 20 initial noises on the default model: the RMS
per coordinate of their difference, against the path_rms the default sweep reports.

    OMP_NUM_THREADS=1 python benchmarks/metric/path_reference.py \
        > benchmarks/metric/results/path_reference/path_reference.txt
"""

import time

import solverzoo

NUM_SAMPLES, SEED = 20, 0


def main() -> None:
    start = time.process_time()
    model = solverzoo.get_model("gmm-image")
    a = solverzoo.sample(model, "heun", nfe=511, num_samples=NUM_SAMPLES, seed=SEED).samples.double()
    b = solverzoo.sample(model, "heun", nfe=1023, num_samples=NUM_SAMPLES, seed=SEED).samples.double()
    c = solverzoo.sample(model, "dpmpp_2m", nfe=50, num_samples=NUM_SAMPLES, seed=SEED).samples.double()
    print(f"RMS(heun@511 - heun@1023) = {(a - b).pow(2).mean().sqrt():.2e}")
    print(f"RMS(dpmpp_2m@50 - heun@1023) = {(c - b).pow(2).mean().sqrt():.2e}")
    print(f"({NUM_SAMPLES} samples, seed {SEED}; {time.process_time() - start:.1f} s CPU)")


if __name__ == "__main__":
    main()

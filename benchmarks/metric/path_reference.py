"""Is heun at 511 model calls converged enough to be the pathwise reference?  (benchmarks/metric)

heun at 511 and at 1023 calls from the same 20 initial noises on the default model: the RMS
per coordinate of their difference, against the path_rms the default sweep reports.

    OMP_NUM_THREADS=1 python benchmarks/metric/path_reference.py
"""

import torch

import solverzoo

model = solverzoo.get_model("gmm-image")
a = solverzoo.sample(model, "heun", nfe=511, num_samples=20, seed=0).samples.double()
b = solverzoo.sample(model, "heun", nfe=1023, num_samples=20, seed=0).samples.double()
c = solverzoo.sample(model, "dpmpp_2m", nfe=50, num_samples=20, seed=0).samples.double()
print(f"RMS(heun@511 - heun@1023) = {(a - b).pow(2).mean().sqrt():.2e}")
print(f"RMS(dpmpp_2m@50 - heun@1023) = {(c - b).pow(2).mean().sqrt():.2e}")

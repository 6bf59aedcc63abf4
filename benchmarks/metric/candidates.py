"""Candidate metrics on exact vs degraded samples (benchmarks/metric/README.md): unbiased MMD^2 with a
cubic polynomial (KID), Gaussian and distance (energy) kernel, in the whitened (Sigma^-1/2) and half-whitened
(Sigma^-1/4) bases; 6 seeds x N = 500 against 2000 exact samples.  Output: candidates.txt.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/metric/candidates.py > benchmarks/metric/candidates.txt
"""
import math, time, torch, numpy as np, sys
torch.set_num_threads(1)
from solverzoo import get_model
from solverzoo.models.gmm_image import GMMImage
from solverzoo.metrics.kid import whitening_map
def fftblur(x, s):
    H, W = x.shape[-2:]
    fy = torch.fft.fftfreq(H, dtype=torch.float64); fx = torch.fft.rfftfreq(W, dtype=torch.float64)
    f2 = fy[:,None]**2+fx[None,:]**2
    return torch.fft.irfft2(torch.fft.rfft2(x.double())*torch.exp(-2*math.pi**2*s**2*f2), s=(H,W))
def degs(model, x, seed):
    C, H, W = model.shape
    m = model.data_mean().reshape(1,C,H,W)
    g = torch.Generator().manual_seed(1000+seed)
    return {"exact": x, "blur0.6": fftblur(x,0.6), "blur0.4": fftblur(x,0.4), "sharpen": x + 0.5*(x - fftblur(x,1.0)),
      "noise0.05": x + 0.05*torch.randn(x.shape, generator=g, dtype=torch.float64),
      "noise0.1": x + 0.1*torch.randn(x.shape, generator=g, dtype=torch.float64),
      "contract10": m + 0.9*(x-m), "contract5": m + 0.95*(x-m),
      "colour0.05": x + torch.tensor([0.05,0.,-0.05],dtype=torch.float64)[None,:,None,None]}
model = get_model("gmm-image")
C,H,W = model.shape
drop = GMMImage(means=model.means[1:], spectrum=model.power_spectrum())
def stats(gxx, gyy, gxy, nx2, ny2, d):
    n, m = gxy.shape
    out = {}
    def u(k):  # off-diagonal mean
        k = k.clone(); k.fill_diagonal_(0); return k.sum()/(k.shape[0]*(k.shape[0]-1)), k.sum(1)/(k.shape[0]-1)
    dxx = (nx2[:,None]+nx2[None,:]-2*gxx).clamp_min(0); dyy=(ny2[:,None]+ny2[None,:]-2*gyy).clamp_min(0); dxy=(nx2[:,None]+ny2[None,:]-2*gxy).clamp_min(0)
    s2 = float(dyy.sum()/(m*(m-1)))  # mean squared distance of the reference
    for name, f in (("kid", lambda g, dd: (g/d+1)**3), ("rbf", lambda g, dd: torch.exp(-dd/s2)), ("energy", lambda g, dd: -dd.sqrt()/math.sqrt(s2))):
        kxx, kyy, kxy = f(gxx, dxx), f(gyy, dyy), f(gxy, dxy)
        a, ha = u(kxx); b, hb = u(kyy)
        val = a + b - 2*kxy.mean()
        hx = ha - kxy.mean(1); hy = hb - kxy.mean(0)
        std = (4*hx.var()/n + 4*hy.var()/m).sqrt()
        out[name] = (float(val), float(std))
    return out
N=500; M=2000
refraw = model.sample_data(12345, range(M)).double()
res = {}
for p in (0.5, 0.25):
    w = whitening_map(model, p)
    y = w(refraw); gyy = y@y.T; ny2 = (y*y).sum(1)
    for seed in range(6):
        x = model.sample_data(seed, range(N)).double()
        D = degs(model, x, seed); D["drop1"] = drop.sample_data(seed, range(N)).double()
        for name, xs in D.items():
            f = w(xs)
            st = stats(f@f.T, gyy, f@y.T, (f*f).sum(1), ny2, f.shape[1])
            for k, v in st.items():
                res.setdefault(f"{k}_w{p}", {}).setdefault(name, []).append(v)
        print(p, "seed", seed, flush=True)
for key in res:
    print("==", key)
    ex = np.array([v for v,_ in res[key]["exact"]])
    for name in res[key]:
        v = np.array([a for a,_ in res[key][name]]); s = np.array([b for _,b in res[key][name]])
        print(f"{name:12s} mean {v.mean():.4g} sd_seeds {v.std(ddof=1):.3g} est_std {s.mean():.3g} worse_in {(v>ex).sum() if name!='exact' else -1}/6 z {(v.mean()-ex.mean())/ex.std(ddof=1):.1f}")

"""First exploration (benchmarks/metric/README.md): cubic-kernel MMD^2 (KID) in the whitened, half-whitened and
pixel bases and pixel FD, 6 seeds x N = 500 against 2000 exact samples.  Output: candidates_first.txt.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/metric/candidates_first.py 2000 > benchmarks/metric/candidates_first.txt
"""
import math, time, torch, numpy as np, sys
torch.set_num_threads(1)
from solverzoo import get_model
from solverzoo.metrics import exact_reference
from solverzoo.models.gmm_image import GMMImage, half_spectrum_weights
model = get_model("gmm-image")
C,H,W = model.shape
lam = model.power_spectrum(); U = model.colour_matrix; hw = half_spectrum_weights(H,W)
mean = model.data_mean().reshape(1,C,H,W)
def white(x, p):
    x = x.to(torch.float64) - mean
    y = torch.einsum("ij,bjhw->bihw", U, x)
    X = torch.fft.rfft2(y, norm="ortho") * (lam ** -p) * hw.sqrt()
    return torch.view_as_real(X).reshape(len(x), -1)
def fftblur(x, s):
    fy = torch.fft.fftfreq(H, dtype=torch.float64); fx = torch.fft.rfftfreq(W, dtype=torch.float64)
    f2 = fy[:,None]**2+fx[None,:]**2
    return torch.fft.irfft2(torch.fft.rfft2(x.double())*torch.exp(-2*math.pi**2*s**2*f2), s=(H,W))
def degs(x, seed):
    m = model.data_mean().reshape(1,C,H,W)
    g = torch.Generator().manual_seed(1000+seed)
    out = {"exact": x,
      "blur0.6": fftblur(x,0.6),
      "blur0.4": fftblur(x,0.4),
      "sharpen": x + 0.5*(x - fftblur(x,1.0)),
      "noise0.05": x + 0.05*torch.randn(x.shape, generator=g, dtype=torch.float64),
      "noise0.1": x + 0.1*torch.randn(x.shape, generator=g, dtype=torch.float64),
      "contract10": m + 0.9*(x-m),
      "contract5": m + 0.95*(x-m),
      "colour0.05": x + torch.tensor([0.05,0.,-0.05],dtype=torch.float64)[None,:,None,None],
    }
    return out
drop = GMMImage(means=model.means[1:], spectrum=model.power_spectrum())
def kid(fx, fy):
    d = fx.shape[1]; n = len(fx); m = len(fy)
    kxx = (fx@fx.T/d+1)**3; kyy=(fy@fy.T/d+1)**3; kxy=(fx@fy.T/d+1)**3
    kxx.fill_diagonal_(0); kyy.fill_diagonal_(0)
    hx = kxx.sum(1)/(n-1) - kxy.mean(1)
    hy = kyy.sum(1)/(m-1) - kxy.mean(0)
    val = kxx.sum()/(n*(n-1)) + kyy.sum()/(m*(m-1)) - 2*kxy.mean()
    std = (4*hx.var()/n + 4*hy.var()/m).sqrt()
    return float(val), float(std)
N=500; M=int(sys.argv[1]) if len(sys.argv)>1 else 2000
ref = model.sample_data(12345, range(M)).double()
ref_pix = exact_reference(model, "pixels")
res = {}
for seed in range(6):
    x = model.sample_data(seed, range(N)).double()
    D = degs(x, seed); D["drop1"] = drop.sample_data(seed, range(N)).double()
    for name, xs in D.items():
        r = res.setdefault(name, {})
        for p in (0.5, 0.25):
            r.setdefault(f"kid_w{p}", []).append(kid(white(xs,p), white(ref,p)))
        r.setdefault("kid_pix", []).append(kid((xs-mean).reshape(N,-1), (ref-mean).reshape(M,-1)))
        r.setdefault("fd_pix", []).append((ref_pix.distance_samples(xs.reshape(N,-1)),0))
    print("seed", seed, flush=True)
for key in ("kid_w0.5","kid_w0.25","kid_pix","fd_pix"):
    print("==", key)
    ex = np.array([v for v,_ in res["exact"][key]])
    for name in res:
        v = np.array([a for a,_ in res[name][key]]); s = np.array([b for _,b in res[name][key]])
        worse = (v > ex).sum() if name!="exact" else -1
        print(f"{name:12s} mean {v.mean():.4g} sd_seeds {v.std(ddof=1):.3g} est_std {s.mean():.3g} worse_in {worse}/6  min_gap {(v-ex).min():.3g}")

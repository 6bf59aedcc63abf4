"""Exactness tests for the analytic mixtures: GMMImage (FFT denoiser) and GMM2D.

The references here are built independently of the models' FFT code: a dense DFT
matrix, a dense covariance, and brute-force Gaussian algebra with torch.linalg.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from solverzoo.models import GMM2D, AnalyticModel, CountingDenoiser, GMMImage, Model, get_model, list_models
from solverzoo.models.gmm_image import colour_transform, half_spectrum_weights

F64 = torch.float64


# ---------------------------------------------------------------------------------
# independent dense reference
# ---------------------------------------------------------------------------------
def dense_sigma(model: GMMImage) -> torch.Tensor:
    """Sigma = U^T F^H diag(lam_full) F U with explicit DFT matrices (no FFT calls)."""
    C, H, W = model.shape
    lam = model.power_spectrum()
    # expand the half spectrum: column j > W//2 is the mirror (-i, W - j)
    full = torch.empty(C, H, W, dtype=F64)
    for i in range(H):
        for j in range(W):
            full[:, i, j] = lam[:, i, j] if j <= W // 2 else lam[:, (-i) % H, W - j]

    def dft(n):
        t = torch.arange(n, dtype=F64)
        return torch.exp(-2j * math.pi * torch.outer(t, t) / n) / math.sqrt(n)

    F2 = torch.kron(dft(H), dft(W))  # acts on row-major (h, w)
    per_channel = torch.stack(
        [(F2.conj().T @ torch.diag(full[c].reshape(-1).to(torch.complex128)) @ F2) for c in range(C)]
    )
    assert per_channel.imag.abs().max() < 1e-12  # even-symmetric lam -> real Sigma
    U = model.colour_matrix
    sig = torch.einsum("jc,jpq,je->cpeq", U, per_channel.real, U).reshape(C * H * W, C * H * W)
    return sig


def dense_log_prob(x, sigma, means, weights, S):
    """log sum_k w_k N(x; mu_k, S + s^2 I) with a dense Cholesky factor (differentiable in x)."""
    d = S.shape[0]
    out = []
    for b in range(x.shape[0]):
        L = torch.linalg.cholesky(S + sigma[b] ** 2 * torch.eye(d, dtype=F64))
        z = torch.linalg.solve_triangular(L, (x[b] - means).T, upper=False)  # (d, K)
        logdet = 2 * torch.log(torch.diagonal(L)).sum()
        comps = -0.5 * (z**2).sum(0) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
        out.append(torch.logsumexp(torch.log(weights) + comps, 0))
    return torch.stack(out)


def dense_posterior_mean(x, sigma, means, weights, S):
    """sum_k p(k|x) [mu_k + S (S + s^2 I)^-1 (x - mu_k)] with torch.linalg."""
    d = S.shape[0]
    out = []
    for b in range(x.shape[0]):
        V = S + sigma[b] ** 2 * torch.eye(d, dtype=F64)
        L = torch.linalg.cholesky(V)
        diff = (x[b] - means).T  # (d, K)
        sol = torch.cholesky_solve(diff, L)  # V^-1 (x - mu_k)
        logits = torch.log(weights) - 0.5 * (diff * sol).sum(0)
        r = torch.softmax(logits, 0)
        post = means.T + S @ sol  # (d, K)
        out.append(post @ r)
    return torch.stack(out)


@pytest.fixture(scope="module", params=[(1, 8, 8, 3), (3, 8, 9, 4)], ids=["1x8x8", "3x8x9"])
def small(request):
    C, H, W, K = request.param
    model = GMMImage(C, H, W, num_components=K, seed=1, dtype=F64)
    S = dense_sigma(model)
    means = model.means.reshape(K, -1)
    return model, S, means, model.weights


# ---------------------------------------------------------------------------------
# GMMImage: exactness
# ---------------------------------------------------------------------------------
def test_covariance_matches_dense_dft(small):
    model, S, means, w = small
    assert torch.allclose(model.component_cov(), S, atol=1e-12)
    m = (w[:, None] * means).sum(0)
    cov = S + ((means - m).T * w) @ (means - m)
    assert torch.allclose(model.data_cov(), cov, atol=1e-12)
    assert torch.allclose(model.data_mean(), m, atol=1e-14)
    v = torch.randn(5, *model.shape, dtype=F64)
    assert torch.allclose(model.apply_cov(v).reshape(5, -1), v.reshape(5, -1) @ S, atol=1e-12)
    assert np.linalg.eigvalsh(S.numpy()).min() > 0.5 * float(model.power_spectrum().min())


def test_log_prob_matches_dense(small):
    model, S, means, w = small
    x = model.sample_data(3, range(4)) + 0.3 * torch.randn(4, *model.shape, dtype=F64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0], dtype=F64)
    ref = dense_log_prob(x.reshape(4, -1), sigma, means, w, S)
    assert torch.allclose(model.log_prob(x, sigma), ref, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("batch", [2, 6])  # below / above K: both logit branches
def test_score_is_autograd_gradient_of_exact_log_density(small, batch):
    model, S, means, w = small
    torch.manual_seed(batch)
    for sig in (0.02, 0.4, 3.0):
        x0 = model.sample_data(11, range(batch))
        sigma = torch.full((batch,), sig, dtype=F64)
        x = (x0 + sig * torch.randn_like(x0)).requires_grad_(True)
        logp = dense_log_prob(x.reshape(batch, -1), sigma, means, w, S).sum()
        (grad,) = torch.autograd.grad(logp, x)
        score = model.score(x.detach(), sigma)
        assert torch.allclose(score, grad, rtol=1e-7, atol=1e-7 / sig**2), sig


@pytest.mark.parametrize("sigmas", [[1e-3, 1e-3, 1e-3, 1e-3, 1e-3], [0.05] * 5, [0.7] * 5, [80.0] * 5,
                                    [1e-3, 0.05, 0.7, 4.0, 80.0]])
def test_denoiser_equals_dense_posterior_mean(small, sigmas):
    model, S, means, w = small
    sigma = torch.tensor(sigmas, dtype=F64)
    x0 = model.sample_data(5, range(len(sigmas)))
    x = x0 + sigma[:, None, None, None] * torch.randn(x0.shape, dtype=F64, generator=torch.Generator().manual_seed(0))
    ref = dense_posterior_mean(x.reshape(len(sigmas), -1), sigma, means, w, S)
    D = model.denoise(x, sigma).reshape(len(sigmas), -1)
    assert (D - ref).abs().max() < 1e-8


def test_denoiser_orthogonality_monte_carlo():
    """E[(x0 - D(x_hat)) g(x_hat)] = 0 for g = 1 and g = x_hat (defining property of E[x0|x_hat])."""
    model = GMMImage(1, 8, 8, num_components=4, seed=2, dtype=F64)
    N, sig = 6000, 0.6
    x0 = model.sample_data(0, range(N))
    x = x0 + sig * torch.randn(x0.shape, dtype=F64, generator=torch.Generator().manual_seed(1))
    r = model.responsibilities(x, torch.full((N,), sig, dtype=F64))
    assert 0.3 < r.max(1).values.mean() < 0.99  # a genuinely mixed posterior
    e = (x0 - model.denoise(x, torch.full((N,), sig, dtype=F64))).reshape(N, -1)
    g = (x - x.mean(0)).reshape(N, -1)

    def zscores(e):  # g = 1, g = x_hat (linear) and g = p(k | x_hat) (non-linear)
        stats = [e, e * g] + [e * r[:, k : k + 1] for k in range(r.shape[1])]
        return torch.stack([s.mean(0) / (s.std(0) / math.sqrt(N)) for s in stats])

    assert zscores(e).abs().max() < 5
    # the best *linear* denoiser (Wiener filter) passes the linear tests but not the non-linear one
    m, cov = model.data_mean(), model.data_cov()
    wiener = m + (x.reshape(N, -1) - m) @ torch.linalg.solve(cov + sig**2 * torch.eye(64, dtype=F64), cov)
    z2 = zscores(x0.reshape(N, -1) - wiener)
    assert z2[:2].abs().max() < 5 and z2[2:].abs().max() > 5.5
    assert (e**2).sum(1).mean() < ((x0.reshape(N, -1) - wiener) ** 2).sum(1).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_denoiser_limits_and_stability(dtype):
    model = GMMImage(3, 16, 12, num_components=8, seed=0).to("cpu", dtype)
    x0 = model.sample_data(0, range(4))
    assert x0.dtype == dtype
    for sig in (1e-4, 1e-2):
        x = x0 + sig * torch.randn_like(x0)
        D = model.denoise(x, torch.full((4,), sig, dtype=dtype))
        assert torch.isfinite(D).all()
        # only the noise (and high frequencies with lam ~ sigma^2) can be removed
        assert (D - x).abs().max() < 5e-4 + 0.5 * sig
    for sig in (1e3, 1e4):
        x = x0 + sig * torch.randn_like(x0)
        D = model.denoise(x, torch.full((4,), sig, dtype=dtype))
        mean = model.data_mean().reshape(model.shape).to(dtype)
        assert torch.isfinite(D).all()
        assert (D - mean).abs().max() < 1e-2 * (1e3 / sig) + 1e-4
    # extreme spread in one batch, scalar sigma also accepted
    sig = torch.tensor([1e-4, 1.0, 1e4, 0.1], dtype=dtype)
    assert torch.isfinite(model.denoise(x0 + sig[:, None, None, None] * torch.randn_like(x0), sig)).all()
    assert model.denoise(x0, torch.tensor(0.5, dtype=dtype)).shape == x0.shape


def test_float32_agrees_with_float64():
    m64 = GMMImage(3, 32, num_components=8, dtype=F64)
    m32 = GMMImage(3, 32, num_components=8, dtype=torch.float32)
    x0 = m64.sample_data(0, range(8))
    for sig in (0.002, 0.1, 1.0, 5.0, 80.0):
        x = x0 + sig * torch.randn(x0.shape, dtype=F64, generator=torch.Generator().manual_seed(2))
        s = torch.full((8,), sig, dtype=F64)
        D64 = m64.denoise(x, s)
        D32 = m32.denoise(x.float(), s.float())
        assert (D32.double() - D64).abs().max() < 2e-4 * max(1.0, sig), sig


def test_denoiser_autograd_through_model():
    model = GMMImage(1, 8, 8, num_components=3, dtype=F64)
    x = model.sample_data(0, range(2)).requires_grad_(True)
    for sigma in (torch.full((2,), 0.5, dtype=F64), torch.tensor([0.3, 0.9], dtype=F64)):
        model.denoise(x, sigma).sum().backward()
        assert torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------------
# GMMImage: samples and moments
# ---------------------------------------------------------------------------------
def test_sample_moments_match_exact():
    model = GMMImage(3, 8, 8, num_components=3, seed=4, dtype=F64)
    N = 20000
    x = model.sample_data(7, range(N)).reshape(N, -1)
    m, cov = model.data_mean(), model.data_cov()
    se = cov.diag().sqrt() / math.sqrt(N)
    assert ((x.mean(0) - m) / se).abs().max() < 5
    xc = x - m
    emp = xc.T @ xc / N
    # per-entry standard error from the empirical variance of the products
    var_prod = (xc**2).T @ (xc**2) / N - emp**2
    z = (emp - cov) / (var_prod / N).sqrt()
    assert z.abs().max() < 6
    assert torch.linalg.matrix_norm(emp - cov) / torch.linalg.matrix_norm(cov) < 0.03


def test_sample_data_is_per_sample_and_batch_free():
    model = GMMImage(3, 16, num_components=8)
    full = model.sample_data(3, range(10))
    part = model.sample_data(3, [7, 2, 9])
    assert torch.equal(part, full[[7, 2, 9]])
    assert not torch.equal(model.sample_data(4, [7]), full[[7]])
    assert torch.equal(model.sample_data(3, [5]), GMMImage(3, 16, num_components=8).sample_data(3, [5]))
    # all components are used, with the right frequencies
    m2 = GMMImage(1, 8, num_components=4, weights=[0.1, 0.2, 0.3, 0.4], dtype=F64, spectrum_floor=1e-4, pixel_std=0.02)
    x = m2.sample_data(0, range(2000))
    k = ((x[:, None] - m2.means[None]) ** 2).flatten(2).sum(-1).argmin(1)
    freq = torch.bincount(k, minlength=4).double() / 2000
    assert (freq - torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=F64)).abs().max() < 0.04


def test_means_are_deterministic_face_images():
    a = GMMImage(3, 24, 40, num_components=5, seed=3)
    b = GMMImage(3, 24, 40, num_components=5, seed=3)
    c = GMMImage(3, 24, 40, num_components=5, seed=4)
    assert torch.equal(a.means, b.means) and not torch.equal(a.means, c.means)
    assert a.means.shape == (5, 3, 24, 40) and a.means.abs().max() <= 1
    # the same layout at every resolution: the 64x64 means pooled to 16x16 ~ the 16x16 means
    hi = GMMImage(3, 64, num_components=4).means
    lo = GMMImage(3, 16, num_components=4).means
    pooled = torch.nn.functional.avg_pool2d(hi, 4)
    assert (pooled - lo).abs().mean() < 0.15
    assert np.corrcoef(pooled.flatten().numpy(), lo.flatten().numpy())[0, 1] > 0.95
    # distinct components, and a face: the centre (skin) differs from the corners (background)
    assert (a.means[0] - a.means[1]).abs().mean() > 0.05
    # per-pixel std of the data in the advertised range
    m = GMMImage(3, 32)
    x = m.sample_data(0, range(500)).double()
    assert 0.3 < x.std(0).mean() < 0.5


def test_dense_cov_refuses_large_models():
    model = GMMImage(3, 128)
    with pytest.raises(ValueError, match="pool"):
        model.data_cov()


def test_nonsquare_and_device_moves():
    model = GMMImage(1, 10, 17, num_components=2)
    x = model.sample_data(0, range(3))
    assert x.shape == (3, 1, 10, 17) and x.dtype == torch.float32
    assert model.to("cpu", F64) is model and model.dtype == F64
    assert model.sample_data(0, range(3)).dtype == F64
    D = model.denoise(x.double(), torch.ones(3, dtype=F64))
    assert D.dtype == F64 and D.shape == x.shape


# ---------------------------------------------------------------------------------
# GMMImage.fit
# ---------------------------------------------------------------------------------
def test_fit_single_component_recovers_mean_and_spectrum():
    true = GMMImage(1, 16, num_components=1, seed=5, dtype=F64)
    N = 4000
    x = true.sample_data(0, range(N))
    fitted = GMMImage.fit(x.numpy(), num_components=1, process="vp")
    assert fitted.process.name == "vp" and fitted.num_components == 1
    assert torch.allclose(fitted.means[0], x.mean(0), atol=1e-12)
    rel = fitted.power_spectrum() / true.power_spectrum() - 1
    assert rel.abs().mean() < 0.03
    assert rel.abs().max() < 0.2
    # a wrong spectrum (slope 1 instead of 2) would be far off
    other = GMMImage(1, 16, num_components=1, seed=5, spectrum_slope=1.0).power_spectrum()
    assert (other / true.power_spectrum() - 1).abs().mean() > 0.3


def test_fit_mixture_recovers_components_weights_and_spectrum():
    true = GMMImage(3, 16, num_components=3, seed=6, pixel_std=0.1, weights=[0.5, 0.3, 0.2], dtype=F64)
    N = 3000
    x = true.sample_data(1, range(N))
    fitted = GMMImage.fit(x.float(), num_components=3, seed=0)
    assert fitted.num_components == 3
    # match fitted to true components by nearest mean
    d2 = ((fitted.means[:, None] - true.means[None]) ** 2).flatten(2).mean(-1)
    match = d2.argmin(1)
    assert sorted(match.tolist()) == [0, 1, 2]
    assert d2.min(1).values.max().sqrt() < 0.02
    assert (fitted.weights - true.weights[match]).abs().max() < 0.04
    rel = fitted.power_spectrum() / true.power_spectrum() - 1
    assert rel.abs().mean() < 0.04
    assert rel.abs().max() < 0.3
    # the fitted model is a working model
    D = fitted.denoise(x[:4].float(), torch.full((4,), 0.5))
    assert torch.isfinite(D).all()


# ---------------------------------------------------------------------------------
# GMM2D
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["ring", "checkerboard"])
def test_gmm2d_exact(layout):
    model = GMM2D(layout=layout, dtype=F64)
    K = model.num_components
    x0 = model.sample_data(0, range(6))
    for sig in (1e-4, 0.05, 0.5, 3.0, 1e4):
        sigma = torch.full((6,), sig, dtype=F64)
        x = (x0 + sig * torch.randn_like(x0)).requires_grad_(True)
        comps = torch.stack(
            [torch.distributions.MultivariateNormal(
                model.means[k], model.covs[k] + sig**2 * torch.eye(2, dtype=F64)).log_prob(x)
             for k in range(K)], -1)
        logp = torch.logsumexp(comps + torch.log(model.weights), -1)
        (grad,) = torch.autograd.grad(logp.sum(), x)
        score = model.score(x.detach(), sigma)
        assert torch.allclose(score, grad, rtol=1e-7, atol=1e-9 / sig**2), sig
        assert torch.allclose(model.log_prob(x.detach(), sigma), logp.detach(), atol=1e-9)
    assert (model.denoise(x0, torch.full((6,), 1e-6, dtype=F64)) - x0).abs().max() < 1e-9
    assert (model.denoise(x0, torch.full((6,), 1e5, dtype=F64)) - model.data_mean()).abs().max() < 1e-6
    N = 10000
    x = model.sample_data(1, range(N))
    assert torch.equal(model.sample_data(1, [3, 9]), x[[3, 9]])
    assert ((x.mean(0) - model.data_mean()).abs() < 5 * model.data_cov().diag().sqrt() / math.sqrt(N)).all()
    assert torch.allclose(torch.cov(x.T), model.data_cov(), atol=0.02)


# ---------------------------------------------------------------------------------
# conditional (each component a class): exact conditional and unconditional denoisers
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sig", [1e-3, 0.3, 4.0, 80.0])
def test_conditional_denoiser_equals_dense_gaussian_posterior(small, sig):
    """Label k: E[x0 | x_hat, k] = mu_k + S (S + s^2 I)^-1 (x_hat - mu_k) (dense, float64); null label
    and no labels: the mixture's posterior mean; guidance: D_u + w (D_c - D_u) of those."""
    from solverzoo.models.guidance import GuidedModel

    model, S, means, w = small
    K, d = means.shape
    cond = GMMImage(*model.shape, num_components=K, seed=1, dtype=F64, conditional=True)
    assert cond.identity_key() == model.identity_key() and cond.num_classes == K and model.num_classes == 0
    labels = torch.tensor([0, -1, K - 1, 1, -1, 2])
    B = len(labels)
    sigma = torch.full((B,), sig, dtype=F64)
    x0 = model.sample_data(7, range(B))
    x = x0 + sig * torch.randn(x0.shape, dtype=F64, generator=torch.Generator().manual_seed(3))
    flat = x.reshape(B, -1)
    L = torch.linalg.cholesky(S + sig**2 * torch.eye(d, dtype=F64))
    uncond = dense_posterior_mean(flat, sigma, means, w, S)
    exact = torch.stack([means[k] + S @ torch.cholesky_solve((flat[b] - means[k])[:, None], L)[:, 0] if k >= 0
                         else uncond[b] for b, k in enumerate(labels.tolist())])
    D = cond.denoise(x, sigma, labels).reshape(B, -1)
    assert (D - exact).abs().max() < 1e-8
    assert (cond.denoise(x, sigma).reshape(B, -1) - uncond).abs().max() < 1e-8
    # a labelled row is that class's denoiser whatever the other rows are (labels follow the rows)
    assert torch.allclose(cond.denoise(x[:1], sigma[:1], labels[:1]).reshape(-1), exact[0], atol=1e-10)
    guided = GuidedModel(cond, 3.0).denoise(x, sigma, labels.clamp(min=0)).reshape(B, -1)
    cls = labels.clamp(min=0)
    d_c = torch.stack([means[k] + S @ torch.cholesky_solve((flat[b] - means[k])[:, None], L)[:, 0]
                       for b, k in enumerate(cls.tolist())])
    assert (guided - (uncond + 3.0 * (d_c - uncond))).abs().max() < 1e-7
    with pytest.raises(ValueError, match="conditional=true"):
        model.denoise(x, sigma, labels)
    with pytest.raises(ValueError, match="labels must be"):
        cond.denoise(x, sigma, torch.full((B,), K))


def _whitened_power(model: GMMImage, x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """sum_f |F U (x - mu)|^2 / lam / d per sample: 1 in expectation for x ~ N(mu, Sigma)."""
    R = model._to_freq((x - centres).to(F64))
    hw = half_spectrum_weights(*model.shape[1:])
    return (hw * R.abs() ** 2 / model.power_spectrum()).flatten(1).sum(1) / model.dim


def test_conditional_sampling_reaches_each_class_law():
    """dpmpp_2m at 127 NFE with labels cycled over the classes: each sample's residual to its class mean,
    whitened by the shared spectrum, has unit power (x ~ N(mu_k, Sigma)); against another class it
    does not."""
    import solverzoo

    model = GMMImage(3, 8, 8, num_components=4, seed=3, process="edm", dtype=F64, conditional=True)
    N = 200
    res = solverzoo.sample(model, "dpmpp_2m", nfe=127, num_samples=N, seed=0, batch_size=N, dtype=F64, labels="all")
    assert res.describe()["conditioning"] == {"labels": "0,1,2,3", "num_classes": 4}
    labels = torch.arange(N) % 4
    means = model.means
    power = _whitened_power(model, res.samples, means[labels])
    assert abs(float(power.mean()) - 1.0) < 0.03, float(power.mean())
    wrong = _whitened_power(model, res.samples, means[(labels + 1) % 4])
    assert float(wrong.mean()) > 2.5 and float(wrong.min()) > float(power.max())  # every sample fits its class best
    # and the class mean itself (whitened mean residual ~ N(0, 1 / N) per coordinate)
    for k in range(4):
        r = model._to_freq((res.samples[labels == k] - means[k]).to(F64)).mean(0) / model.power_spectrum().sqrt()
        assert float(r.abs().pow(2).mean()) < 3.0 / (N // 4)


# ---------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------
def test_registry():
    assert {"gmm-image", "gmm-2d"} <= set(list_models())
    m = get_model("gmm-image")
    assert isinstance(m, GMMImage) and isinstance(m, AnalyticModel) and isinstance(m, Model)
    assert m.shape == (3, 32, 32) and m.process.name == "ve"
    m = get_model("gmm-image", resolution=64, channels=1, process="vp")
    assert m.shape == (1, 64, 64) and m.process.name == "vp"
    m = get_model("gmm-image", height=16, width=24, num_components=2)
    assert m.shape == (3, 16, 24) and m.num_components == 2
    assert get_model("gmm-2d", process="ve").process.name == "ve"
    with pytest.raises(ValueError, match="gmm-image"):
        get_model("imagenet")
    den = CountingDenoiser(get_model("gmm-2d"))
    den(torch.zeros(3, 2), 1.0)
    assert den.nfe == 1
    assert np.allclose(colour_transform(3) @ colour_transform(3).T, np.eye(3))

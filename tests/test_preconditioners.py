"""Tests for solverzoo.preconditioners (PDS / TDAS noise-shaping operators)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from solverzoo.preconditioners import (
    Composed,
    FrequencyFilter,
    Identity,
    Preconditioner,
    SpaceFilter,
    dct_matrix,
    dense_matrix,
    dft_flip,
    frequency_radius,
    load_filters,
    load_pds_preconditioner,
    pds_alpha_range,
    pds_filter,
    pds_preconditioner,
    pds_statistics,
    save_filters,
    tdas_estimate,
    tdas_frequency_filter,
    tdas_preconditioner,
    tdas_space_filter,
)

SHAPES = [(3, 8, 8), (1, 6, 10)]
D64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- reference matrices
# Built independently of the operators: explicit DFT / DCT matrices and Kronecker products.


def _dft(n):
    k = torch.arange(n, dtype=D64)
    return torch.exp(-2j * math.pi * torch.outer(k, k) / n)


def _block_diag_over_channels(blocks):
    return torch.block_diag(*blocks)


def _ref_freq_matrix(f, basis="dft"):
    c, h, w = f.shape
    blocks = []
    for ch in range(c):
        if basis == "dft":
            F = torch.kron(_dft(h), _dft(w))  # row-major (h, w) flattening
            Finv = F.conj().T / (h * w)
            blocks.append((Finv @ torch.diag(f[ch].flatten().to(torch.complex128)) @ F).real)
        else:
            D = torch.kron(dct_matrix(h), dct_matrix(w))
            blocks.append(D.T @ torch.diag(f[ch].flatten().to(D64)) @ D)
    return _block_diag_over_channels(blocks)


def _ref_space_matrix(s):
    return torch.diag(s.flatten().to(D64))


def _cases(shape, seed=0):
    """(name, operator, reference M) for each filter kind; frequency filters deliberately
    NOT symmetric, so the test covers the documented handling of asymmetric masks."""
    g = _gen(seed)
    c, h, w = shape
    f = 0.5 + torch.rand(shape, generator=g, dtype=D64)
    s = 0.5 + torch.rand(shape, generator=g, dtype=D64)
    f_sym = 0.5 * (f + dft_flip(f))  # what Re(.) sees
    return [
        ("identity", Identity(), torch.eye(c * h * w, dtype=D64)),
        ("space", SpaceFilter(s), _ref_space_matrix(s)),
        ("freq-dft", FrequencyFilter(f), _ref_freq_matrix(f)),
        ("freq-dft-sym", FrequencyFilter(f_sym), _ref_freq_matrix(f_sym)),
        ("freq-dct", FrequencyFilter(f, basis="dct"), _ref_freq_matrix(f, "dct")),
        ("composed-dft", Composed(SpaceFilter(s), FrequencyFilter(f)), _ref_freq_matrix(f) @ _ref_space_matrix(s)),
        (
            "composed-dct",
            Composed(SpaceFilter(s), FrequencyFilter(f, basis="dct")),
            _ref_freq_matrix(f, "dct") @ _ref_space_matrix(s),
        ),
        (
            "composed-bcast",  # (1, H, W) filters broadcast over channels
            Composed(SpaceFilter(s[:1]), FrequencyFilter(f[:1])),
            _ref_freq_matrix(f[:1].expand(shape)) @ _ref_space_matrix(s[:1].expand(shape)),
        ),
    ]


# --------------------------------------------------------------------------- operators vs dense matrices


@pytest.mark.parametrize("shape", SHAPES)
def test_operators_match_dense_matrices(shape):
    g = _gen(1)
    n = math.prod(shape)
    z = torch.randn(4, *shape, generator=g, dtype=D64)
    for name, op, m_ref in _cases(shape):
        assert isinstance(op, Preconditioner), name
        m, mmt = dense_matrix(op, shape)
        assert m.shape == (n, n) and mmt.shape == (n, n)
        # the noise operator is the intended M (independent construction)
        torch.testing.assert_close(m, m_ref, atol=1e-12, rtol=0, msg=name)
        # drift is M M^T, column by column
        torch.testing.assert_close(mmt, m_ref @ m_ref.T, atol=1e-12, rtol=0, msg=name)
        # and on a batch
        flat = z.reshape(4, n)
        torch.testing.assert_close(op.noise(z).reshape(4, n), flat @ m_ref.T, atol=1e-12, rtol=0, msg=name)
        torch.testing.assert_close(op.adjoint(z).reshape(4, n), flat @ m_ref, atol=1e-12, rtol=0, msg=name)
        torch.testing.assert_close(op.drift(z).reshape(4, n), flat @ (m_ref @ m_ref.T).T, atol=1e-12, rtol=0, msg=name)


def test_dct_matrix_is_scipy_orthonormal_dct():
    scipy_fft = pytest.importorskip("scipy.fft")
    x = np.random.default_rng(0).standard_normal(7)
    np.testing.assert_allclose(dct_matrix(7).numpy() @ x, scipy_fft.dct(x, type=2, norm="ortho"), atol=1e-12)


def test_frequency_filter_matches_official_pds_expressions():
    """PDS sampling.py: z = Re idft(dft(z * s) * f); drift = Re idft(f dft(s^2 idft(f dft(v))))."""
    g = _gen(2)
    imgs = torch.rand(16, 3, 8, 8, generator=g, dtype=D64)
    stats = pds_statistics(imgs)
    f = pds_filter(stats.freq, 5.0)
    s = pds_filter(stats.space, 5.0)
    assert float((f - dft_flip(f)).abs().max()) < 1e-12  # PDS masks are even-symmetric
    op = Composed(SpaceFilter(s), FrequencyFilter(f))
    z = torch.randn(5, 3, 8, 8, generator=g, dtype=D64)
    fft2, ifft2 = torch.fft.fft2, torch.fft.ifft2
    official_noise = ifft2(fft2(z * s) * f).real
    official_drift = ifft2(f * fft2(s.square() * ifft2(f * fft2(z)))).real
    torch.testing.assert_close(op.noise(z), official_noise, atol=1e-12, rtol=0)
    torch.testing.assert_close(op.drift(z), official_drift, atol=1e-12, rtol=0)


def test_asymmetric_filter_noise_is_official_drift_is_exact():
    g = _gen(3)
    f = 0.5 + torch.rand(1, 6, 10, generator=g, dtype=D64)
    s = 0.5 + torch.rand(1, 6, 10, generator=g, dtype=D64)
    op = Composed(SpaceFilter(s), FrequencyFilter(f))
    assert op.frequency.asymmetry > 0.01
    z = torch.randn(3, 1, 6, 10, generator=g, dtype=D64)
    fft2, ifft2 = torch.fft.fft2, torch.fft.ifft2
    torch.testing.assert_close(op.noise(z), ifft2(fft2(z * s) * f).real, atol=1e-12, rtol=0)
    m, mmt = dense_matrix(op, (1, 6, 10))
    torch.testing.assert_close(mmt, m @ m.T, atol=1e-12, rtol=0)
    official_drift = ifft2(f * fft2(s.square() * ifft2(f * fft2(z)))).real
    assert float((official_drift - op.drift(z)).abs().max()) > 1e-3  # the official form is not M M^T here


def test_identity_returns_same_tensor():
    z = torch.randn(2, 3, 4, 4)
    for op in (Identity(), Composed(None, None), pds_preconditioner(None, None), tdas_preconditioner((3, 4, 4))):
        assert op.is_identity
        assert op.noise(z) is z and op.drift(z) is z and op.adjoint(z) is z
    stat = torch.rand(3, 4, 4) + 0.1
    op = pds_preconditioner(stat, stat, alpha=math.inf)
    assert isinstance(op, Identity) and op.noise(z) is z
    assert not FrequencyFilter(torch.ones(3, 4, 4)).is_identity


def test_shape_errors_name_both_shapes():
    f = FrequencyFilter(torch.ones(3, 64, 64))
    with pytest.raises(ValueError, match=r"frequency filter has shape \(3, 64, 64\) but images are \(3, 32, 32\)"):
        f.noise(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(3, 64, 64\).*\(3, 32, 32\)"):
        f.check_shape((3, 32, 32))
    s = SpaceFilter(torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match=r"space filter has shape \(3, 8, 8\) but images are \(1, 8, 8\)"):
        s.drift(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(3, 8, 9\)"):
        Composed(s, FrequencyFilter(torch.ones(3, 8, 8))).check_shape((5, 3, 8, 9))
    with pytest.raises(ValueError, match=r"\(2, 8, 8\)"):
        pds_preconditioner(torch.rand(3, 8, 8) + 0.1, image_shape=(2, 8, 8))
    FrequencyFilter(torch.ones(1, 8, 8)).check_shape((3, 8, 8))  # channel broadcast is fine


def test_dtype_device_handling():
    f = FrequencyFilter(torch.rand(3, 8, 8, dtype=D64) + 0.5)
    z32 = torch.randn(2, 3, 8, 8)
    out = f.noise(z32)
    assert out.dtype == torch.float32 and out.device == z32.device
    assert f.noise(z32.half()).dtype == torch.float16
    op = Composed(SpaceFilter(torch.rand(3, 8, 8) + 0.5), f).to("cpu", torch.float32)
    assert op.frequency.values.dtype == torch.float32 and op.space.values.dtype == torch.float32
    assert op.drift(z32.double()).dtype == D64
    json.dumps(op.describe())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_operators_follow_their_input_to_cuda():
    op = Composed(SpaceFilter(torch.rand(3, 8, 8) + 0.5), FrequencyFilter(torch.rand(3, 8, 8, dtype=D64) + 0.5))
    z = torch.randn(2, 3, 8, 8)
    op.to("cuda")
    out = op.noise(z.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), op.to("cpu").noise(z))


# --------------------------------------------------------------------------- PDS statistics and filters


def test_pds_statistics_by_hand():
    # two 1x2x2 images; FFT2 of [[a, b], [c, d]] = [[a+b+c+d, a-b+c-d], [a+b-c-d, a-b-c+d]]
    x = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]], [[[1.0, 0.0], [0.5, 0.25]]]], dtype=D64)

    def fft_by_hand(m):
        (a, b), (c, d) = m
        return np.array([[a + b + c + d, a - b + c - d], [a + b - c - d, a - b - c + d]])

    p = (fft_by_hand(x[0, 0].numpy()) ** 2 + fft_by_hand(x[1, 0].numpy()) ** 2) / 2
    stats = pds_statistics(x)
    np.testing.assert_allclose(stats.freq[0].numpy(), np.log(1 + p), atol=1e-14)
    np.testing.assert_allclose(stats.space[0].numpy(), (x[0, 0].numpy() ** 2 + x[1, 0].numpy() ** 2) / 2, atol=1e-14)
    # streaming (DataLoader-style (images, labels) batches) gives the same
    g = _gen(4)
    imgs = torch.rand(10, 3, 4, 6, generator=g, dtype=D64)
    whole = pds_statistics(imgs)
    parts = pds_statistics([(imgs[:3], None), (imgs[3:7], None), imgs[7:]])
    torch.testing.assert_close(whole.freq, parts.freq)
    torch.testing.assert_close(whole.space, parts.space)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pds_statistics(imgs * 2 - 1)


def test_pds_filter_by_hand_and_official_pipeline():
    stat = torch.tensor([[[0.0, 1.0], [2.0, 4.0]], [[3.0, 2.0], [1.0, 0.5]]], dtype=D64)
    # one global max (4): m_hat = stat / 4; filter = 5 / (m_hat + 4)
    expected = torch.tensor([[[5 / 4, 5 / 4.25], [5 / 4.5, 1.0]],
                             [[5 / 4.75, 5 / 4.5], [5 / 4.25, 5 / 4.125]]], dtype=D64)
    torch.testing.assert_close(pds_filter(stat, 5.0), expected, atol=1e-15, rtol=0)
    # PDS sampling.py: mask /= mask.max(); mask = (mask + alpha - 1) / alpha; mask = mask ** -1
    rng = np.random.default_rng(0)
    mask = rng.random((3, 5, 5)) * 7
    for alpha in (1.5, 5.0, 20.0):
        m = mask / mask.max()
        m = ((m + alpha - 1) / alpha) ** -1
        np.testing.assert_allclose(pds_filter(torch.from_numpy(mask), alpha).numpy(), m, rtol=1e-14)
    f = pds_filter(stat, 5.0)
    assert float(f.min()) >= 1.0 and float(f.max()) <= 5.0 / 4.0 + 1e-15
    torch.testing.assert_close(pds_filter(stat, math.inf), torch.ones_like(stat))


def test_pds_alpha_validation():
    stat = torch.tensor([0.0, 1.0, 2.0])
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            pds_filter(stat, bad)
    with pytest.raises(ValueError, match="non-positive"):
        pds_filter(stat, 0.5)  # min m_hat = 0: need alpha > 1
    with pytest.raises(ValueError):
        pds_filter(stat, 1.0)  # 1 / m_hat is infinite at 0
    positive = torch.tensor([0.6, 1.0])
    assert pds_alpha_range(positive)[0] == pytest.approx(0.4)
    assert torch.all(pds_filter(positive, 0.5) > 0)  # 0.5 > 1 - 0.6
    with pytest.raises(ValueError):
        pds_filter(positive, 0.4)
    with pytest.raises(ValueError, match="maximum"):
        pds_filter(torch.zeros(3), 5.0)


def test_pds_preconditioner_kinds():
    g = _gen(5)
    fs, ss = torch.rand(3, 8, 8, generator=g) + 0.1, torch.rand(3, 8, 8, generator=g) + 0.1
    assert isinstance(pds_preconditioner(fs), FrequencyFilter)
    assert isinstance(pds_preconditioner(None, ss), SpaceFilter)
    op = pds_preconditioner(fs, ss, alpha=3.0)
    assert isinstance(op, Composed)
    torch.testing.assert_close(op.frequency.values, pds_filter(fs, 3.0))
    torch.testing.assert_close(op.space.values, pds_filter(ss, 3.0))
    assert isinstance(pds_preconditioner(fs, ss, alpha=math.inf, space_alpha=2.0), SpaceFilter)


# --------------------------------------------------------------------------- files


def test_save_load_npz_roundtrip(tmp_path):
    g = _gen(6)
    f, s = torch.rand(3, 8, 8, generator=g), torch.rand(3, 8, 8, generator=g)
    path = save_filters(tmp_path / "filters", freq=f, space=s, kind="statistic", dataset="toy", alpha=5.0)
    got = load_filters(path, (3, 8, 8))
    assert got.kind == "statistic" and got.metadata == {"dataset": "toy", "alpha": 5.0}
    torch.testing.assert_close(got.freq, f)
    torch.testing.assert_close(got.space, s)
    op = got.preconditioner(alpha=5.0)
    torch.testing.assert_close(op.frequency.values, pds_filter(f, 5.0))
    path2 = save_filters(tmp_path / "ready.npz", freq=f + 1)
    op2 = load_filters(path2, (3, 8, 8)).preconditioner()
    assert isinstance(op2, FrequencyFilter)
    torch.testing.assert_close(op2.values, f + 1)
    with pytest.raises(ValueError, match=r"\(3, 8, 8\).*\(3, 16, 16\)"):
        load_filters(path, (3, 16, 16))


def test_load_npy_masks(tmp_path):
    g = np.random.default_rng(7)
    hw = g.random((8, 8)).astype(np.float32)
    np.save(tmp_path / "toy_freq.npy", hw)
    got = load_filters(tmp_path / "toy_freq.npy", (3, 8, 8))
    assert got.space is None and got.kind == "statistic" and got.freq.shape == (3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(got.freq[c].numpy(), hw)
    chw = g.random((1, 3, 8, 8))
    np.save(tmp_path / "space_mask.npy", chw)
    got = load_filters(tmp_path / "space_mask.npy", (3, 8, 8))
    np.testing.assert_array_equal(got.space.numpy(), chw[0])
    np.save(tmp_path / "flat_freq.npy", chw.ravel())
    with pytest.warns(UserWarning, match="row-major"):
        got = load_filters(tmp_path / "flat_freq.npy", (3, 8, 8))
    np.testing.assert_array_equal(got.freq.numpy(), chw[0])
    np.save(tmp_path / "bad_freq.npy", g.random((3, 16, 16)))
    with pytest.raises(ValueError, match=r"bad_freq\.npy.*\(3, 16, 16\) but images are \(3, 8, 8\)"):
        load_filters(tmp_path / "bad_freq.npy", (3, 8, 8))
    np.save(tmp_path / "mask.npy", hw)
    with pytest.raises(ValueError, match="role"):
        load_filters(tmp_path / "mask.npy", (3, 8, 8))
    assert load_filters(tmp_path / "mask.npy", (1, 8, 8), role="space").space.shape == (1, 8, 8)
    # PDS-style command line: published statistics -> operator
    op = load_pds_preconditioner((3, 8, 8), tmp_path / "toy_freq.npy", tmp_path / "space_mask.npy", alpha=5.0)
    assert isinstance(op, Composed)
    torch.testing.assert_close(op.frequency.values[1], pds_filter(torch.from_numpy(np.stack([hw] * 3)), 5.0)[1])


# --------------------------------------------------------------------------- TDAS filters


def test_frequency_radius_and_tdas_filter_by_hand():
    rho = frequency_radius(6, 10)
    assert rho[0, 0] == 0
    assert float(rho[3, 5]) == pytest.approx(math.sqrt(0.5**2 + 0.5**2))  # Nyquist corner
    assert float(rho[5, 9]) == pytest.approx(math.sqrt((1 / 6) ** 2 + (1 / 10) ** 2))  # wraps to (1, 1)
    assert float(rho[2, 3]) == pytest.approx(math.sqrt((2 / 6) ** 2 + (3 / 10) ** 2))
    assert float(frequency_radius(6, 10, "dct")[5, 9]) == pytest.approx(math.sqrt((5 / 6) ** 2 + (9 / 10) ** 2))
    f = tdas_frequency_filter((2, 6, 10), radii=[0.2, 0.45], rates=[0.9, 0.5])
    assert f.shape == (2, 6, 10)
    assert float(f[0, 0, 0]) == 1.0 and float(f[1, 0, 1]) == 1.0  # rho = 0.1
    assert float(f[0, 5, 9]) == 1.0  # rho = 0.194
    assert float(f[0, 0, 3]) == pytest.approx(0.9)  # rho = 0.3
    assert float(f[1, 2, 3]) == pytest.approx(0.9)  # rho = sqrt(1/9 + 0.09) = 0.4485 < 0.45
    assert float(f[0, 2, 4]) == pytest.approx(0.5)  # rho = sqrt(1/9 + 0.16) = 0.521
    assert float(f[0, 3, 5]) == pytest.approx(0.5)
    cum = tdas_frequency_filter((6, 10), radii=[0.2, 0.45], rates=[0.9, 0.5], cumulative=True)
    assert cum.shape == (1, 6, 10) and float(cum[0, 3, 5]) == pytest.approx(0.45)
    torch.testing.assert_close(f, dft_flip(f))  # radial filter is even-symmetric: M = M^T exactly
    # units: radius sqrt(0.5 / pi) = 0.399 holds half of the DFT frequencies (Table 4: 0.400)
    half = tdas_frequency_filter((64, 64), [math.sqrt(0.5 / math.pi)], [0.5])
    assert float((half == 1).double().mean()) == pytest.approx(0.5, abs=0.01)


def test_tdas_filter_validation():
    with pytest.raises(ValueError, match="radii"):
        tdas_frequency_filter((8, 8), [-0.1], [0.5])
    for rate in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="rates"):
            tdas_frequency_filter((8, 8), [0.2], [rate])
    with pytest.raises(ValueError, match="non-decreasing"):
        tdas_frequency_filter((8, 8), [0.3, 0.2], [0.9, 0.8])
    with pytest.raises(ValueError, match="one rate per radius"):
        tdas_frequency_filter((8, 8), [0.3], [0.9, 0.8])
    with pytest.raises(ValueError, match="basis"):
        tdas_frequency_filter((8, 8), [0.3], [0.9], basis="dst")


def test_tdas_space_filter_formula():
    m = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]], dtype=D64) * 0.8  # max 0.8
    s = tdas_space_filter(m, softness=5.0)
    torch.testing.assert_close(s, torch.tensor([[[0.8, 0.85], [0.9, 1.0]]], dtype=D64))
    s_g = tdas_space_filter(m, softness=2.0, gamma=0.5)
    torch.testing.assert_close(s_g, (torch.sqrt(m / 0.8) + 1) / 2)
    s_rms = tdas_space_filter(m, normalize="rms")
    assert float(s_rms.square().mean()) == pytest.approx(1.0)
    torch.testing.assert_close(tdas_space_filter(m, math.inf), torch.ones_like(m))
    with pytest.raises(ValueError):
        tdas_space_filter(-m)
    with pytest.raises(ValueError):
        tdas_space_filter(m, softness=1.0)  # zero at the black pixel
    op = tdas_preconditioner((1, 2, 2), [0.3], [0.5], mean_image=m)
    assert isinstance(op, Composed)


# --------------------------------------------------------------------------- TDAS estimator


def _pink(n, shape, seed):
    """Real images with a 1/f amplitude spectrum, roughly in [0, 1]."""
    g = _gen(seed)
    c, h, w = shape
    white = torch.randn(n, c, h, w, generator=g, dtype=D64)
    rho = frequency_radius(h, w)
    spec = torch.fft.fft2(white) / (rho + 1.0 / h)
    x = torch.fft.ifft2(spec).real
    return 0.5 + 0.15 * x / x.std()


def _amplify(x, radii, amps):
    rho = frequency_radius(*x.shape[-2:])
    gain = torch.ones_like(rho)
    for r, a in zip(radii, amps):
        gain[rho >= r] = a
    return torch.fft.ifft2(torch.fft.fft2(x) * gain).real


@pytest.mark.parametrize("same_images", [False, True])
def test_tdas_estimate_recovers_planted_single_zone(same_images):
    shape, r_star, l_star = (3, 32, 32), 0.25, 0.6
    ref = _pink(200, shape, seed=10)
    base = ref if same_images else _pink(200, shape, seed=11)
    fast = _amplify(base, [r_star], [1 / l_star])  # fast sampler: amplitude x 1/l* beyond r*
    est = tdas_estimate(fast, ref, quantiles=(0.4,), exponent=0.5)  # amplitude correction
    assert abs(est.radii[0] - r_star) <= 1.0 / 32 + 1e-9
    assert est.rates[0] == pytest.approx(l_star, rel=0.03)
    est1 = tdas_estimate(fast, ref, quantiles=(0.4,))  # paper: inverse of the power ratio
    assert est1.radii == est.radii
    assert est1.rates[0] == pytest.approx(l_star**2, rel=0.06)
    op = est.preconditioner
    assert isinstance(op, FrequencyFilter)
    torch.testing.assert_close(
        op.values[0], tdas_frequency_filter((32, 32), est.radii, est.rates, dtype=op.values.dtype)[0]
    )
    # applying the estimated filter to the fast images restores the reference spectrum
    fixed = op.noise(fast)
    ratio = torch.fft.fft2(fixed).abs().square().mean((0, 1)) / torch.fft.fft2(ref).abs().square().mean((0, 1))
    rho = frequency_radius(32, 32)
    assert float(ratio[rho >= r_star + 1 / 32].mean()) == pytest.approx(1.0, abs=0.08)


def test_tdas_estimate_recovers_two_zones():
    shape = (3, 32, 32)
    radii, levels = [0.2, 0.35], [0.8, 0.5]
    ref = _pink(200, shape, seed=20)
    fast = _amplify(_pink(200, shape, seed=21), radii, [1 / l for l in levels])
    est = tdas_estimate(fast, ref, quantiles=(0.2, 0.5), exponent=0.5)
    for got, want in zip(est.radii, radii):
        assert abs(got - want) <= 1.0 / 32 + 1e-9
    for got, want in zip(est.rates, levels):
        assert got == pytest.approx(want, rel=0.04)


def test_tdas_estimate_radius_units_match_table4():
    """A ratio growing with the radius gives the geometric quantile radii (0.400 / 0.455)."""
    h = w = 32
    ref = _pink(64, (1, h, w), seed=30)
    rho = frequency_radius(h, w)
    gain = (1 + 2 * rho).sqrt()
    fast = torch.fft.ifft2(torch.fft.fft2(ref) * gain).real
    est = tdas_estimate(fast, ref)
    assert est.radii == pytest.approx([0.400, 0.455], abs=0.01)
    assert 0 < est.rates[1] < est.rates[0] < 1


def test_tdas_estimate_validation():
    x = _pink(4, (1, 8, 8), seed=40)
    with pytest.raises(ValueError, match="quantiles"):
        tdas_estimate(x, x, quantiles=(0.6, 0.5))
    with pytest.raises(ValueError, match="quantiles"):
        tdas_estimate(x, x, quantiles=(1.0,))

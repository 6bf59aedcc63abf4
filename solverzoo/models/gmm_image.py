"""A Gaussian mixture over images with an exact, FFT-speed denoiser.

    x0 ~ sum_k w_k N(mu_k, Sigma),      Sigma = U^T F^H diag(lam) F U

``U`` is a fixed orthonormal colour transform (luminance + two chroma axes for RGB,
the identity for grey images) and ``F`` the unitary 2-D DFT applied per channel, so
``Sigma`` is a stationary (circulant) covariance with a natural-image power spectrum
``lam(f) ~ A_c / (f^2 + f0^2)^(slope/2)`` plus a small floor.  The means are
procedurally drawn "aligned faces", so the law has the coarse layout of a face data
set and the second-order statistics of natural images, and every quantity a
benchmark needs is exact:

* ``denoise``: E[x0 | x0 + sigma n] in O(K d + d log d) (one rfft2, one irfft2 and
  two thin matmuls), stable from sigma = 1e-4 to 1e4;
* ``sample_data``: exact samples, sample ``i`` drawn only from the generator of
  ``(seed, i, DATA)``;
* ``data_mean`` / ``data_cov`` / ``apply_cov`` / ``power_spectrum``: exact moments.

Class-conditional (``conditional=True``): component ``k`` is class ``k``.  Given the class, x0 is
the single Gaussian ``N(mu_k, Sigma)``, whose denoiser is closed-form,
``D(x_hat; sigma, k) = mu_k + Sigma (Sigma + sigma^2 I)^-1 (x_hat - mu_k)``, i.e. the mixture
denoiser with the responsibilities replaced by the one-hot of ``k``; rows with the null label
(or no labels) get the exact unconditional (mixture) denoiser.  Classifier-free guidance
combines the two (solverzoo.models.guidance).

Half-spectrum bookkeeping.  ``rfft2`` keeps columns ``0 .. W//2`` of the full
spectrum.  A column ``0 < j < W/2`` stands for itself and its conjugate mirror
``(-i, W - j)``, so sums over the full spectrum weight it by 2; column 0 and (for
even W) column W/2 hold their own mirrors and get weight 1.  ``lam`` is
even-symmetric (``lam[i, j] == lam[-i, j]`` on those self-mirrored columns), which
makes ``Sigma`` real.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..noise import DATA, sample_seed
from ..processes import Process, get_process
from .base import NULL_LABEL, AnalyticModel
from .faces import face_means
from .gmm_fit import kmeans

__all__ = ["GMMImage", "colour_transform", "face_means", "half_spectrum_weights", "MAX_DENSE_DIM"]

#: Largest dimension for which dense covariances are built (3 x 64 x 64).
MAX_DENSE_DIM = 12288


# ---------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------
def colour_transform(channels: int) -> Tensor:
    """Orthonormal ``C x C`` matrix with rows = (luminance, chroma1, chroma2) axes.

    ``y = U x`` mixes the channels of an image.  For grey images ``U = [[1]]``.
    """
    if channels == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    if channels == 3:
        return torch.tensor(
            [
                [1 / math.sqrt(3), 1 / math.sqrt(3), 1 / math.sqrt(3)],  # luminance
                [1 / math.sqrt(2), 0.0, -1 / math.sqrt(2)],  # red - blue
                [1 / math.sqrt(6), -2 / math.sqrt(6), 1 / math.sqrt(6)],  # magenta - green
            ],
            dtype=torch.float64,
        )
    raise ValueError(f"GMMImage supports 1 or 3 channels, got {channels}")


def half_spectrum_weights(height: int, width: int) -> Tensor:
    """(H, W//2+1) float64 weights: how many full-spectrum bins each rfft2 bin stands for."""
    wh = width // 2 + 1
    w = torch.full((height, wh), 2.0, dtype=torch.float64)
    w[:, 0] = 1.0
    if width % 2 == 0:
        w[:, -1] = 1.0
    return w


def _frequency_radius(height: int, width: int) -> Tensor:
    """|f| in cycles per pixel on the rfft2 grid, (H, W//2+1) float64."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)
    return torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)


def _symmetrize_spectrum(lam: Tensor, width: int) -> Tensor:
    """Make ``lam`` even-symmetric on the self-mirrored columns (0 and, for even W, W/2)."""
    lam = lam.clone()
    cols = [0] + ([lam.shape[-1] - 1] if width % 2 == 0 else [])
    for j in cols:
        col = lam[..., :, j]
        mirrored = torch.roll(torch.flip(col, dims=[-1]), shifts=1, dims=-1)  # index i -> -i mod H
        lam[..., :, j] = 0.5 * (col + mirrored)
    return lam


def _as_float64(x) -> Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x).to(dtype=torch.float64)


# ---------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------
class GMMImage(AnalyticModel):
    """Mixture of K Gaussians over ``C x H x W`` images with a shared stationary covariance.

    Args:
        channels: 1 (grey) or 3 (RGB, correlated through the luminance/chroma basis).
        height, width: image size (``width`` defaults to ``height``).
        num_components: K, the number of face-like means.
        process: the diffusion process (name or :class:`Process`) the model belongs to.
        seed: seed of the procedural means.
        spectrum_slope: power-law exponent of ``lam(f) ~ 1 / (f^2 + f0^2)^(slope/2)``.
        pixel_std: target per-pixel std of the Gaussian part (RGB average).
        chroma_ratio: std of each chroma axis relative to the luminance axis.
        f0_cycles: spectrum knee, in cycles per image (along the shorter side).
        spectrum_floor: variance added to every frequency (keeps Sigma positive definite).
        weights: optional mixture weights (default uniform).
        means: optional explicit means ``(K, C, H, W)`` (overrides the procedural faces).
        spectrum: optional explicit ``lam`` ``(C, H, W//2+1)`` in the colour+Fourier basis.
        colour: use the luminance/chroma transform for RGB (default True).
        dtype, device: working precision / device of the denoiser buffers.
        conditional: each component is a class (``num_classes = K``); ``denoise(x, sigma, labels)``
            is the exact conditional denoiser of each labelled row.
    """

    name = "gmm-image"
    #: Sigma commutes with circular shifts (used by pooled-feature moments in metrics.fd).
    stationary_cov = True

    def __init__(
        self,
        channels: int = 3,
        height: int = 32,
        width: int | None = None,
        num_components: int = 8,
        process: str | Process = "edm",
        seed: int = 0,
        spectrum_slope: float = 2.0,
        *,
        pixel_std: float = 0.25,
        chroma_ratio: float = 0.3,
        f0_cycles: float = 1.5,
        spectrum_floor: float = 1e-4,
        weights=None,
        means=None,
        spectrum=None,
        colour: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        conditional: bool = False,
    ):
        width = height if width is None else width
        channels, height, width = int(channels), int(height), int(width)
        if channels not in (1, 3):
            raise ValueError(f"GMMImage supports 1 or 3 channels, got {channels}")
        if height < 2 or width < 2:
            raise ValueError(f"image size must be at least 2 x 2, got {height} x {width}")
        self.shape = (channels, height, width)
        self.process = get_process(process)
        self.seed = int(seed)
        wh = width // 2 + 1

        # --- means -----------------------------------------------------------------
        if means is None:
            means = face_means(channels, height, width, int(num_components), seed)
        means = _as_float64(means).cpu()
        if means.ndim == 3:
            means = means[None]
        if tuple(means.shape[1:]) != self.shape:
            raise ValueError(f"means must have shape (K, {channels}, {height}, {width}), got {tuple(means.shape)}")
        K = means.shape[0]

        # --- weights -----------------------------------------------------------------
        if weights is None:
            weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
        weights = _as_float64(weights).cpu().reshape(-1)
        if weights.numel() != K or bool((weights < 0).any()) or float(weights.sum()) <= 0:
            raise ValueError(f"weights must be {K} non-negative numbers with a positive sum")
        weights = weights / weights.sum()

        # --- colour transform -----------------------------------------------------
        U = colour_transform(channels) if colour else torch.eye(channels, dtype=torch.float64)

        # --- spectrum ----------------------------------------------------------------
        half_w = half_spectrum_weights(height, width)
        if spectrum is None:
            f = _frequency_radius(height, width)
            f0 = float(f0_cycles) / min(height, width)
            shape_fn = (f**2 + f0**2) ** (-float(spectrum_slope) / 2)
            # per-pixel variance of channel c = (1/HW) sum_full lam_c
            unit = (half_w * shape_fn).sum() / (height * width)
            total = 3 * pixel_std**2 if channels == 3 else pixel_std**2
            if channels == 3 and colour:
                var_lum = total / (1 + 2 * chroma_ratio**2)
                var = torch.tensor([var_lum, chroma_ratio**2 * var_lum, chroma_ratio**2 * var_lum], dtype=torch.float64)
            else:
                var = torch.full((channels,), total / channels, dtype=torch.float64)
            spectrum = var[:, None, None] * shape_fn[None] / unit + float(spectrum_floor)
        spectrum = _as_float64(spectrum).cpu()
        if tuple(spectrum.shape) != (channels, height, wh):
            raise ValueError(f"spectrum must have shape ({channels}, {height}, {wh}), got {tuple(spectrum.shape)}")
        if not bool((spectrum > 0).all()):
            raise ValueError("spectrum must be strictly positive")
        spectrum = _symmetrize_spectrum(spectrum, width)

        self._means = means.contiguous()
        self._weights = weights
        self._U = U
        self._lam = spectrum.contiguous()
        self._half_w = half_w
        self._mean = (weights[:, None, None, None] * means).sum(0)
        self.options = {
            "spectrum_slope": float(spectrum_slope),
            "pixel_std": float(pixel_std),
            "chroma_ratio": float(chroma_ratio),
            "f0_cycles": float(f0_cycles),
            "spectrum_floor": float(spectrum_floor),
            "colour": bool(colour),
        }
        if not isinstance(conditional, bool):
            raise ValueError(f"conditional must be true or false, got {conditional!r}")
        self.conditional = conditional
        self.num_classes = K if conditional else 0
        self._key = self._compute_key()
        self._cache: dict = {}
        self.device = torch.device(device)
        self.dtype = dtype
        self._buffers(self.device, self.dtype)

    # ------------------------------------------------------------------ properties
    @property
    def num_components(self) -> int:
        return self._means.shape[0]

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape))

    @property
    def means(self) -> Tensor:
        """Component means, ``(K, C, H, W)`` float64 (CPU)."""
        return self._means.clone()

    @property
    def weights(self) -> Tensor:
        return self._weights.clone()

    @property
    def colour_matrix(self) -> Tensor:
        """The orthonormal colour transform ``U`` (``y = U x`` per pixel)."""
        return self._U.clone()

    def power_spectrum(self) -> Tensor:
        """``lam``: ``(C, H, W//2+1)`` float64 variances in the colour + unitary-rfft2 basis."""
        return self._lam.clone()

    def identity_key(self) -> str:
        """A hash of the parameters: equal keys mean the same data law."""
        return self._key

    def _compute_key(self) -> str:
        h = hashlib.sha1()
        h.update(type(self).__name__.encode())
        h.update(repr(self.shape).encode())
        for t in (self._means, self._weights, self._U, self._lam):
            h.update(t.numpy().tobytes())
        return h.hexdigest()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "num_components": self.num_components,
            "seed": self.seed,
            **self.options,
            "key": self._key[:12],
            **({"conditional": True} if self.conditional else {}),
        }

    def __repr__(self) -> str:
        C, H, W = self.shape
        return f"GMMImage({C}x{H}x{W}, K={self.num_components}, process={self.process.name})"

    # ------------------------------------------------------------------ device handling
    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> GMMImage:
        self.device = torch.device(device)
        if dtype is not None:
            self.dtype = dtype
        self._cache.clear()
        self._buffers(self.device, self.dtype)
        return self

    def _buffers(self, device: torch.device, dtype: torch.dtype) -> dict:
        """Precomputed denoiser tensors for (device, dtype), built once and cached.

        With ``M_k = F U mu_k``, ``Mbar = sum_k w_k M_k``, ``M'_k = M_k - Mbar`` and the
        half-spectrum weights ``w_f``:

        * ``cross`` (2dh, K): ``w_f * [Re M'_kf, Im M'_kf]``, so that
          ``view_as_real(X) @ cross`` = ``sum_f w_f Re(conj(X_f) M'_kf)``;
        * ``quad`` (dh, K): ``w_f * (Re(conj(Mbar_f) M'_kf) + |M'_kf|^2 / 2)``;
        * ``Mflat`` (K, 2dh): the uncentred ``[Re M_k, Im M_k]``.

        Then ``-1/2 sum_f w_f |X_f - M_kf|^2 / v_f`` equals, up to a k-free term,
        ``(view_as_real(X) / v) @ cross - (1 / v) @ quad`` with ``v = lam + sigma^2``.
        Centring on ``Mbar`` keeps the k-dependent terms small (no cancellation of
        large numbers in float32).
        """
        key = (str(device), dtype)
        buf = self._cache.get(key)
        if buf is not None:
            return buf
        K = self.num_components
        hw = self._half_w  # (H, Wh)
        M = self._to_freq(self._means)  # (K, C, H, Wh) complex128
        Mbar = (self._weights[:, None, None, None] * M).sum(0)
        Mc = M - Mbar
        cross = (torch.view_as_real(Mc) * hw[None, None, :, :, None]).reshape(K, -1).T.contiguous()
        quad = hw * ((Mbar.conj() * Mc).real + 0.5 * Mc.abs() ** 2)
        buf = {
            "U": self._U,
            "UT": self._U.T.contiguous(),
            "lam": self._lam,
            "cross": cross,  # (2dh, K)
            "quad": quad.reshape(K, -1).T.contiguous(),  # (dh, K)
            "Mflat": torch.view_as_real(M).reshape(K, -1).contiguous(),  # (K, 2dh)
            "logw": torch.log(self._weights),  # -inf for an empty component is fine in softmax
        }
        buf = {k: v.to(device=device, dtype=dtype) for k, v in buf.items()}
        self._cache[key] = buf
        return buf

    # ------------------------------------------------------------------ basis changes
    @staticmethod
    def _mix(x: Tensor, U: Tensor) -> Tensor:
        """Apply a C x C matrix to the channel axis of (B, C, H, W)."""
        if x.shape[-3] == 1:  # grey images: U = [[1]]
            return x
        B, C = x.shape[0], x.shape[1]
        return torch.matmul(U.to(x.dtype), x.reshape(B, C, x.shape[-2] * x.shape[-1])).reshape(x.shape)

    def _to_freq(self, x: Tensor) -> Tensor:
        """Real images (B, C, H, W) -> F U x, (B, C, H, Wh) complex."""
        U = self._U.to(device=x.device, dtype=x.dtype)
        return torch.fft.rfft2(self._mix(x, U), norm="ortho")

    def _from_freq(self, X: Tensor) -> Tensor:
        """Inverse of :meth:`_to_freq`: U^T F^-1 X."""
        y = torch.fft.irfft2(X, s=self.shape[1:], norm="ortho")
        return self._mix(y, self._U.T.to(device=y.device, dtype=y.dtype))

    # ------------------------------------------------------------------ denoiser
    def _logits_and_parts(self, x_hat: Tensor, sigma: Tensor):
        """Front half of the denoiser: X = F U x_hat and the component logits."""
        if tuple(x_hat.shape[1:]) != self.shape:
            raise ValueError(f"expected images of shape (B, {', '.join(map(str, self.shape))}), "
                             f"got {tuple(x_hat.shape)}")
        B = x_hat.shape[0]
        buf = self._buffers(x_hat.device, x_hat.dtype)
        sigma = torch.as_tensor(sigma, dtype=x_hat.dtype, device=x_hat.device).reshape(-1)
        if sigma.numel() == 1:
            sigma = sigma.expand(B)
        if sigma.numel() != B:
            raise ValueError(f"sigma must have shape ({B},), got {tuple(sigma.shape)}")
        X = torch.fft.rfft2(self._mix(x_hat, buf["U"]), norm="ortho")  # F U x_hat, (B, C, H, Wh)
        Xv = torch.view_as_real(X).reshape(B, -1, 2)  # (B, dh, 2)
        lam = buf["lam"].reshape(1, -1)  # (1, dh)
        shared = B == 1 or bool(sigma.min() == sigma.max())
        s2 = (sigma[:1] if shared else sigma)[:, None] ** 2  # (1 or B, 1)
        inv = 1.0 / (lam + s2)  # 1 / (lam + sigma^2), (1 or B, dh)
        if shared and B >= self.num_components:  # scale the K columns instead of the B rows
            K = self.num_components
            logits = Xv.reshape(B, -1) @ (buf["cross"].view(-1, 2, K) * inv[0, :, None, None]).view(-1, K)
        else:
            logits = (Xv * inv[:, :, None]).reshape(B, -1) @ buf["cross"]
        logits = logits - inv @ buf["quad"] + buf["logw"]
        return buf, X, Xv, logits, inv, s2, shared

    def denoise(self, x_hat: Tensor, sigma: Tensor, labels: Tensor | None = None) -> Tensor:
        """Exact posterior mean E[x0 | x_hat], x_hat = x0 + sigma n; sigma of shape (B,).

        In the colour + Fourier basis, with responsibilities r_k = p(k | x_hat):
        ``D = lam/(lam+s^2) X + s^2/(lam+s^2) sum_k r_k M_k``.  A conditional model's row with
        label ``k >= 0`` takes ``r = e_k``: E[x0 | x_hat, k], the one Gaussian's denoiser.
        """
        if labels is not None and not self.conditional:
            raise ValueError("labels given to an unconditional gmm-image; use -m conditional=true")
        if x_hat.shape[0] == 0:
            return x_hat.clone()
        buf, X, Xv, logits, inv, s2, shared = self._logits_and_parts(x_hat, sigma)
        B = X.shape[0]
        r = torch.softmax(logits, dim=-1)  # (B, K), log-sum-exp stable
        if labels is not None:
            labels = labels.to(device=r.device, dtype=torch.long).reshape(-1)
            if labels.numel() != B or bool((labels >= self.num_components).any()) or bool((labels < NULL_LABEL).any()):
                raise ValueError(f"labels must be {B} values in 0..{self.num_components - 1} or {NULL_LABEL} (null)")
            onehot = torch.nn.functional.one_hot(labels.clamp(min=0), self.num_components).to(r.dtype)
            r = torch.where((labels >= 0)[:, None], onehot, r)
        b = (s2 * inv)[:, :, None]  # s^2 / (lam + s^2), (1 or B, dh, 1);  a = 1 - b
        if shared:
            # D = a X + r @ (b M): one elementwise product and one in-place addmm
            a = (buf["lam"].reshape(1, -1) * inv)[:, :, None]
            Mb = (buf["Mflat"].view(self.num_components, -1, 2) * b).view(self.num_components, -1)
            D = (Xv * a).view(B, -1).addmm_(r, Mb)
        else:
            RM = (r @ buf["Mflat"]).view(B, -1, 2)  # sum_k r_k M_k
            if x_hat.requires_grad:
                D = Xv + (RM - Xv) * b
            else:
                D = RM.sub_(Xv).mul_(b).add_(Xv)  # a X + b RM, since a + b = 1
        D = torch.view_as_complex(D.reshape(*X.shape, 2))
        d = torch.fft.irfft2(D, s=self.shape[1:], norm="ortho")
        return self._mix(d, buf["UT"])

    def responsibilities(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        """Posterior component probabilities p(k | x_hat), (B, K)."""
        logits = self._logits_and_parts(x_hat, sigma)[3]
        return torch.softmax(logits, dim=-1)

    # ------------------------------------------------------------------ exact samples
    def sample_data(self, seed: int, indices: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """Exact samples; sample ``i`` uses only the generator of ``sample_seed(seed, i, DATA)``.

        From that generator: first one uniform (the component), then the white noise
        ``z`` (float64).  Computed in float64 on the CPU, returned in the model dtype.
        """
        indices = [int(i) for i in indices]
        C, H, W = self.shape
        n = len(indices)
        if n == 0:
            return torch.empty((0, C, H, W), dtype=self.dtype, device=device)
        cdf = torch.cumsum(self._weights, 0)
        comp = torch.empty(n, dtype=torch.long)
        z = torch.empty((n, C, H, W), dtype=torch.float64)
        for row, i in enumerate(indices):
            gen = torch.Generator(device="cpu").manual_seed(sample_seed(seed, i, DATA))
            u = torch.rand((), generator=gen, dtype=torch.float64)
            comp[row] = min(int(torch.searchsorted(cdf, u, right=True)), self.num_components - 1)
            torch.randn((C, H, W), generator=gen, dtype=torch.float64, out=z[row])
        out = self._means[comp] + self._colour_noise(z)
        return out.to(device=device, dtype=self.dtype)

    def _colour_noise(self, z: Tensor) -> Tensor:
        """Sigma^{1/2} z = U^T F^-1 sqrt(lam) F U z (float64)."""
        lam = self._lam.to(z.device)
        return self._from_freq(self._to_freq(z) * torch.sqrt(lam))

    # ------------------------------------------------------------------ moments
    def data_mean(self) -> Tensor:
        """Mixture mean, flat ``(d,)`` float64."""
        return self._mean.reshape(-1).clone()

    def apply_cov(self, v: Tensor) -> Tensor:
        """Sigma v for a batch ``(B, C, H, W)`` or ``(B, d)``, via FFTs (float64 inside).

        This is the shared component covariance; see :meth:`data_cov` for the mixture's.
        """
        shape = v.shape
        dtype = v.dtype
        x = v.to(torch.float64).reshape(-1, *self.shape)
        out = self._from_freq(self._to_freq(x) * self._lam.to(x.device))
        return out.reshape(shape).to(dtype)

    def component_cov(self) -> Tensor:
        """Dense Sigma, ``(d, d)`` float64 (only for d <= MAX_DENSE_DIM)."""
        d = self.dim
        self._check_dense(d)
        cols = []
        for start in range(0, d, 512):
            stop = min(start + 512, d)
            eye = torch.zeros(stop - start, d, dtype=torch.float64)
            eye[torch.arange(stop - start), torch.arange(start, stop)] = 1.0
            cols.append(self.apply_cov(eye))
        S = torch.cat(cols, 0)  # rows = Sigma e_j = columns (Sigma is symmetric)
        return 0.5 * (S + S.T)

    def data_cov(self) -> Tensor:
        """Mixture covariance Sigma + sum_k w_k (mu_k - m)(mu_k - m)^T, ``(d, d)`` float64."""
        S = self.component_cov()
        dm = (self._means - self._mean).reshape(self.num_components, -1)
        return S + (dm.T * self._weights) @ dm

    def _check_dense(self, d: int) -> None:
        if d > MAX_DENSE_DIM:
            C, H, W = self.shape
            raise ValueError(
                f"dense covariance of a {C}x{H}x{W} model has d = {d} > {MAX_DENSE_DIM}; "
                f"use a pooled feature instead, e.g. solverzoo.metrics.feature_moments(model, 'pool:16')"
            )

    def log_prob(self, x_hat: Tensor, sigma: Tensor) -> Tensor:
        """Exact log density of the noisy mixture p_sigma(x_hat) = sum_k w_k N(mu_k, Sigma + s^2 I)."""
        B = x_hat.shape[0]
        dt, dev = x_hat.dtype, x_hat.device
        sigma = torch.as_tensor(sigma, dtype=dt, device=dev).expand(B)
        s2 = (sigma**2)[:, None, None, None]
        lam = self._lam.to(device=dev, dtype=dt)
        hw = self._half_w.to(device=dev, dtype=dt)
        U = self._U.to(device=dev, dtype=dt)
        X = torch.fft.rfft2(self._mix(x_hat, U), norm="ortho")
        M = torch.fft.rfft2(self._mix(self._means.to(device=dev, dtype=dt), U), norm="ortho")
        var = lam + s2  # (B, C, H, Wh)
        diff2 = (X[:, None] - M[None]).abs() ** 2  # (B, K, C, H, Wh)
        maha = (hw * diff2 / var[:, None]).flatten(2).sum(-1)  # (B, K)
        logdet = (hw * torch.log(var)).flatten(1).sum(-1)  # (B,)
        d = self.dim
        logits = torch.log(self._weights.to(device=dev, dtype=dt)) - 0.5 * maha
        return torch.logsumexp(logits, -1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(
        cls,
        images,
        num_components: int = 8,
        process: str | Process = "edm",
        *,
        kmeans_iters: int = 25,
        seed: int = 0,
        spectrum_floor: float = 1e-4,
        colour: bool = True,
        batch_size: int = 1024,
        dtype: torch.dtype = torch.float32,
    ) -> GMMImage:
        """Fit the surrogate to real images ``(N, C, H, W)`` in [-1, 1].

        Means by k-means (:func:`solverzoo.models.gmm_fit.kmeans`: k-means++ seeding from ``seed``,
        Lloyd iterations), weights
        from the cluster sizes (empty clusters are dropped), and the spectrum from the
        mean power spectrum of the residuals ``x - mu_{k(x)}`` in the colour + Fourier
        basis (corrected by N / (N - K) for the fitted means), floored at ``spectrum_floor``.
        """
        x = images
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        x = torch.as_tensor(x)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be (N, C, H, W) with C in (1, 3), got {tuple(x.shape)}")
        N, C, H, W = x.shape
        K = int(num_components)
        if not 1 <= K <= N:
            raise ValueError(f"need 1 <= num_components <= N = {N}, got {K}")
        dev = x.device
        chunks = [slice(s, min(s + batch_size, N)) for s in range(0, N, batch_size)]
        flat = x.reshape(N, -1)

        def chunk64(sl):
            return flat[sl].to(torch.float64)

        centres, assign = kmeans(flat, K, iterations=kmeans_iters, seed=seed, batch_size=batch_size)
        counts = torch.bincount(assign, minlength=centres.shape[0]).to(torch.float64)
        K = centres.shape[0]
        weights = counts / N

        U = colour_transform(C) if colour else torch.eye(C, dtype=torch.float64)
        U = U.to(dev)
        power = torch.zeros(C, H, W // 2 + 1, dtype=torch.float64, device=dev)
        for sl in chunks:
            res = (chunk64(sl) - centres[assign[sl]]).reshape(-1, C, H, W)
            if C == 3:
                res = torch.einsum("ij,bjhw->bihw", U, res)
            power += (torch.fft.rfft2(res, norm="ortho").abs() ** 2).sum(0)
        power = power / max(N - K, 1)
        lam = torch.clamp(_symmetrize_spectrum(power, W), min=float(spectrum_floor))
        return cls(
            channels=C,
            height=H,
            width=W,
            num_components=K,
            process=process,
            seed=seed,
            means=centres.reshape(K, C, H, W).cpu(),
            weights=weights.cpu(),
            spectrum=lam.cpu(),
            colour=colour,
            spectrum_floor=spectrum_floor,
            dtype=dtype,
        )

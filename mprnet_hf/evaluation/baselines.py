"""Classical restoration baselines, run by `python -m mprnet_hf.evaluation.evaluate --baselines` on the same degraded
images as the model.

Every baseline takes a float64 (H, W, 3) image in [0, 1] (scikit-image's convention) and returns one of the same
shape, clipped to [0, 1]. What a method may know about the degradation comes in through keyword arguments: the true
noise level `sigma` (on the [0, 1] scale) for denoising and the true blur `kernel` for Wiener deconvolution. The fixed
parameters were tuned once on crops of the development *training* photos (never the validation photos), see
docs/notes/2026-12-evaluation-runs.md.

    noise: non-local means (true sigma), total variation (weight proportional to sigma)
    blur:  Wiener deconvolution (true kernel), unsharp masking
    rain:  median filter, grey-scale opening (rain streaks are thin and bright)

and the slow ones (`SLOW_BASELINES`, `--bm3d`), the strongest classical methods, from the `bm3d` package (a test and
benchmark dependency, imported only when they run):

    noise: CBM3D (true sigma)
    blur:  BM3D deblurring (true kernel)
"""

import importlib
from collections.abc import Callable

import numpy as np
from scipy import ndimage
from skimage.filters import unsharp_mask
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, wiener

# ---------------------------------------------------------------------------------------------------- parameters
NLM_H_PER_SIGMA = 0.5  # h = 0.5 * sigma: the highest mean PSNR over sigma 15, 25 and 50 / 255 among 0.4..1.0
NLM_PATCH_SIZE = 5
NLM_PATCH_DISTANCE = 6
TV_WEIGHT_PER_SIGMA = 0.8  # weight = 0.8 * sigma: the highest mean PSNR over sigma 15, 25 and 50 / 255 among 0.5..2.0
WIENER_BALANCE = 3e-4  # regularisation against noise; the synthetic blur only adds 8-bit quantisation noise
UNSHARP_RADIUS = 2.0  # Gaussian sigma of the blur that is subtracted
UNSHARP_AMOUNT = 0.6
# The noise level BM3D deblurring assumes. The synthetic blur only adds 8-bit quantisation noise (0.3 / 255), but
# a larger level regularises the inversion: 2 / 255 gained 1.5 dB more than 0.5 / 255 on a training-photo crop.
BM3D_DEBLUR_SIGMA = 2 / 255
MEDIAN_SIZE = 9
OPENING_SIZE = 7


def _per_channel(image: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([function(image[..., channel]) for channel in range(image.shape[-1])], axis=-1)


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Donoho's robust estimate of white-noise sigma: median(|HH|) / 0.6745 over the finest diagonal Haar wavelet
    coefficients of each channel, averaged over channels.

    The estimator of `skimage.restoration.estimate_sigma` (which uses Daubechies-2 wavelets), written out with Haar
    so that PyWavelets is not needed.
    """
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    blocks = image[:height, :width]
    diagonal = (blocks[0::2, 0::2] - blocks[0::2, 1::2] - blocks[1::2, 0::2] + blocks[1::2, 1::2]) / 2
    return float(np.mean(np.median(np.abs(diagonal.reshape(-1, image.shape[-1])), axis=0) / 0.6745))


def noise_sigma(image: np.ndarray, sigma: float | None) -> float:
    """The true sigma when known; otherwise the wavelet estimate (real noise, e.g. SIDD pairs)."""
    return float(sigma) if sigma is not None else estimate_noise_sigma(image)


# ---------------------------------------------------------------------------------------------------- noise
def nlm_denoise(image: np.ndarray, sigma: float | None = None, **_) -> np.ndarray:
    """Non-local means (Buades et al. 2005) in scikit-image's fast mode, given the noise level."""
    sigma = noise_sigma(image, sigma)
    restored = denoise_nl_means(
        image,
        h=NLM_H_PER_SIGMA * sigma,
        sigma=sigma,
        fast_mode=True,
        patch_size=NLM_PATCH_SIZE,
        patch_distance=NLM_PATCH_DISTANCE,
        channel_axis=-1,
    )
    return np.clip(restored, 0, 1)


def tv_denoise(image: np.ndarray, sigma: float | None = None, **_) -> np.ndarray:
    """Total-variation denoising (Chambolle 2004); the weight grows linearly with the noise level."""
    sigma = noise_sigma(image, sigma)
    return np.clip(denoise_tv_chambolle(image, weight=TV_WEIGHT_PER_SIGMA * sigma, channel_axis=-1), 0, 1)


def _bm3d():
    try:
        module = importlib.import_module("bm3d")
    except ImportError:
        raise ImportError("The BM3D baselines need the bm3d package: pip install bm3d (in the dev extra)") from None
    # bm4d 4.2.5 (behind bm3d's deblurring) still calls numpy.trapz, which NumPy 2 renamed to trapezoid.
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    return module


def cbm3d_denoise(image: np.ndarray, sigma: float | None = None, **_) -> np.ndarray:
    """CBM3D (Dabov et al. 2007): BM3D on the opponent colour channels, block matching on luminance."""
    return np.clip(_bm3d().bm3d_rgb(image, noise_sigma(image, sigma)), 0, 1)


# ---------------------------------------------------------------------------------------------------- blur
def wiener_deblur(image: np.ndarray, kernel: np.ndarray, **_) -> np.ndarray:
    """Wiener deconvolution with the true kernel, per channel.

    The FFT behind `skimage.restoration.wiener` assumes a periodic image; mirror-padding by the kernel size first
    (the blur itself mirrors at the borders) keeps the wrap-around from ringing into the result.
    """
    pad = max(kernel.shape)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    restored = _per_channel(padded, lambda channel: wiener(channel, kernel, balance=WIENER_BALANCE, clip=False))
    return np.clip(restored[pad:-pad, pad:-pad], 0, 1)


def unsharp_deblur(image: np.ndarray, **_) -> np.ndarray:
    """Unsharp masking: adds back `amount` times the difference to a Gaussian blur of the image."""
    # channel_axis must be positive: scikit-image 0.26's unsharp_mask slices axis 0 for channel_axis=-1 and returns
    # uninitialised memory for the rest of the image.
    return np.clip(unsharp_mask(image, radius=UNSHARP_RADIUS, amount=UNSHARP_AMOUNT, channel_axis=2), 0, 1)


def bm3d_deblur(image: np.ndarray, kernel: np.ndarray, **_) -> np.ndarray:
    """BM3D deblurring (Mäkinen et al. 2019: regularised inverse, then BM3D on its coloured noise) with the true
    kernel, per channel (the package's colour path fails on deblurring), mirror-padded like `wiener_deblur`."""
    bm3d = _bm3d()
    pad = max(kernel.shape)
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="symmetric")
    restored = _per_channel(
        padded, lambda channel: np.squeeze(bm3d.bm3d_deblurring(channel[..., None], BM3D_DEBLUR_SIGMA, kernel))
    )
    return np.clip(restored[pad:-pad, pad:-pad], 0, 1)


# ---------------------------------------------------------------------------------------------------- rain
def median_derain(image: np.ndarray, **_) -> np.ndarray:
    """A square median filter per channel, kept only where it darkens a pixel.

    Streaks narrower than half the window are voted away. Rain only adds light, so taking the minimum with the input
    leaves the rest of the image untouched (the plain median lowers PSNR on rain-free texture more than it gains).
    """
    median = _per_channel(image, lambda channel: ndimage.median_filter(channel, size=MEDIAN_SIZE, mode="reflect"))
    return np.minimum(image, median)


def opening_derain(image: np.ndarray, **_) -> np.ndarray:
    """Grey-scale opening per channel: erosion then dilation removes bright structures thinner than the window,
    which is what rain streaks are, and keeps dark detail."""
    return _per_channel(image, lambda channel: ndimage.grey_opening(channel, size=OPENING_SIZE, mode="reflect"))


# ---------------------------------------------------------------------------------------------------- registry
BASELINES: dict[str, dict[str, Callable[..., np.ndarray]]] = {
    "denoise": {"nlm": nlm_denoise, "tv": tv_denoise},
    "deblur": {"wiener": wiener_deblur, "unsharp": unsharp_deblur},
    "derain": {"median": median_derain, "opening": opening_derain},
}
# Slow baselines (minutes per photo on a CPU core): run only on request, on a bounded number of photos.
SLOW_BASELINES: dict[str, dict[str, Callable[..., np.ndarray]]] = {
    "denoise": {"cbm3d": cbm3d_denoise},
    "deblur": {"bm3d": bm3d_deblur},
    "derain": {},
}
# Baselines that cannot run without knowing the degradation exactly (skipped on real paired data).
NEEDS_KERNEL = {"wiener", "bm3d"}


__all__ = [
    "BASELINES",
    "NEEDS_KERNEL",
    "SLOW_BASELINES",
    "bm3d_deblur",
    "cbm3d_denoise",
    "estimate_noise_sigma",
    "median_derain",
    "nlm_denoise",
    "noise_sigma",
    "opening_derain",
    "tv_denoise",
    "unsharp_deblur",
    "wiener_deblur",
]

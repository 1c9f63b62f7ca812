"""Synthetic degradations for training and evaluating on clean photos: noise, blur, rain and JPEG re-encoding.

Every function takes a `numpy.random.Generator`, so a degradation is reproducible from its seed
(`degrade(image, task, seed)` gives the same result every time). Images are float32 tensors (3, H, W) in [0, 1].
"""

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models.mprnet.configuration_mprnet import TASKS

# Kernels with more taps than this are applied through the FFT: direct depthwise convolution with a 33x33 camera-shake
# kernel costs a thousand multiply-adds per pixel and would stall the training data pipeline.
DIRECT_CONVOLUTION_MAX_TAPS = 15 * 15


def _filter(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolves each channel with `kernel`, mirroring at the borders so the size is unchanged."""
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    batch = image[None]
    if pad_h or pad_w:
        mode = "reflect" if pad_h < image.shape[-2] and pad_w < image.shape[-1] else "replicate"
        batch = F.pad(batch, (pad_w, pad_w, pad_h, pad_h), mode=mode)
    if kernel.size > DIRECT_CONVOLUTION_MAX_TAPS:
        return _convolve_valid_fft(batch[0], kernel)
    kernel_tensor = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
    channels = image.shape[0]
    weight = kernel_tensor.flip(0, 1).expand(channels, 1, *kernel.shape)
    return F.conv2d(batch, weight, groups=channels)[0]


def _convolve_valid_fft(padded: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """The 'valid' part of the convolution of a padded (C, H, W) image with `kernel`, through a circular convolution
    of the padded size: its last H - kh + 1 rows and W - kw + 1 columns are the ones no wrap-around reaches."""
    height, width = padded.shape[-2:]
    kernel_height, kernel_width = kernel.shape
    spectrum = torch.fft.rfft2(padded.double(), s=(height, width))
    kernel_spectrum = torch.fft.rfft2(torch.from_numpy(kernel.astype(np.float64)), s=(height, width))
    full = torch.fft.irfft2(spectrum * kernel_spectrum, s=(height, width))
    return full[:, kernel_height - 1 :, kernel_width - 1 :].float().contiguous()


# ---------------------------------------------------------------------------------------------------- noise
def add_gaussian_noise(image: torch.Tensor, sigma: float, rng: np.random.Generator, clip: bool = True) -> torch.Tensor:
    """Additive white Gaussian noise of standard deviation `sigma` (on the [0, 1] scale)."""
    noise = torch.from_numpy(rng.standard_normal(image.shape, dtype=np.float32)) * sigma
    noisy = image + noise
    return noisy.clamp(0, 1) if clip else noisy


def add_poisson_gaussian_noise(
    image: torch.Tensor, shot: float, read_sigma: float, rng: np.random.Generator
) -> torch.Tensor:
    """Signal-dependent noise of a camera sensor: variance `shot * x + read_sigma^2`, clipped to [0, 1]."""
    std = torch.sqrt(shot * image.clamp(min=0) + read_sigma**2)
    noise = torch.from_numpy(rng.standard_normal(image.shape, dtype=np.float32))
    return (image + std * noise).clamp(0, 1)


# A typical camera colour-correction matrix (sensor RGB to sRGB; rows sum to 1, so grey stays grey).
COLOUR_CORRECTION = torch.tensor([[1.6, -0.45, -0.15], [-0.25, 1.55, -0.3], [-0.05, -0.55, 1.6]])


# Bilinear demosaicing kernels of red, green and blue (3, 1, 3, 3): green has twice the photosites of red and blue,
# hence its tighter kernel. Built once: the data pipeline applies them to every demosaiced-noise sample.
BILINEAR_DEMOSAIC = torch.stack(
    [
        torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4,
        torch.tensor([[0.0, 1.0, 0.0], [1.0, 4.0, 1.0], [0.0, 1.0, 0.0]]) / 4,
        torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 4,
    ]
)[:, None]


def bayer_mask(height: int, width: int) -> torch.Tensor:
    """(3, H, W): 1 where an RGGB Bayer mosaic has a photosite of that colour, 0 elsewhere."""
    mosaic = torch.zeros(3, height, width)
    mosaic[0, 0::2, 0::2] = 1
    mosaic[1, 0::2, 1::2] = 1
    mosaic[1, 1::2, 0::2] = 1
    mosaic[2, 1::2, 1::2] = 1
    return mosaic


def add_demosaiced_noise(image: torch.Tensor, shot: float, read_sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Sensor noise as a camera's JPEG shows it: Poisson-Gaussian noise drawn on an RGGB Bayer mosaic (one colour per
    photosite), bilinearly demosaiced (so correlated between neighbouring pixels), then mixed by a colour-correction
    matrix (so correlated between channels)."""
    _, height, width = image.shape
    mosaic = bayer_mask(height, width)
    std = torch.sqrt(shot * image.clamp(min=0) + read_sigma**2)
    samples = torch.from_numpy(rng.standard_normal((1, height, width), dtype=np.float32))
    sparse_noise = samples * std * mosaic
    mode = "reflect" if height > 1 and width > 1 else "replicate"
    noise = F.conv2d(F.pad(sparse_noise[None], (1, 1, 1, 1), mode=mode), BILINEAR_DEMOSAIC, groups=3)[0]
    noise = torch.einsum("ij,jhw->ihw", COLOUR_CORRECTION, noise)
    return (image + noise).clamp(0, 1)


NOISE_KINDS = ("gaussian", "poisson-gaussian", "demosaiced")


def random_noise(image: torch.Tensor, rng: np.random.Generator, max_sigma: float = 55 / 255) -> torch.Tensor:
    """Blind denoising training noise: white Gaussian of a random level (half the time), the signal-dependent
    noise of a sensor, or that noise demosaiced (spatially correlated, as in a phone's photo)."""
    kind = rng.choice(NOISE_KINDS, p=[0.5, 0.25, 0.25])
    if kind == "gaussian":
        return add_gaussian_noise(image, sigma=rng.uniform(0, max_sigma), rng=rng)
    shot, read_sigma = rng.uniform(0, 0.03), rng.uniform(0, 0.04)
    if kind == "poisson-gaussian":
        return add_poisson_gaussian_noise(image, shot=shot, read_sigma=read_sigma, rng=rng)
    # Demosaicing averages photosites, which lowers the noise level: drawn higher so the range stays comparable.
    return add_demosaiced_noise(image, shot=2 * shot, read_sigma=2 * read_sigma, rng=rng)


# ---------------------------------------------------------------------------------------------------- blur
TRAJECTORY_STYLES = ("smooth", "jerky", "reversal")
# The largest camera-shake kernel of training: trajectories up to 31 px long, past the 25 px of the quality bars.
MAX_SHAKE_KERNEL = 33


def shake_trajectory(rng: np.random.Generator, style: str = "smooth", steps: int = 256) -> np.ndarray:
    """(steps, 2) positions of a hand-held camera during the exposure, centred on zero, of arbitrary scale.

    smooth: a path with inertia that slowly turns; jerky: sharp turns and uneven speed, with pauses;
    reversal: a smooth path that doubles back one to three times (a hand correcting itself).
    """
    if style not in TRAJECTORY_STYLES:
        raise ValueError(f"Unknown trajectory style {style!r}: expected one of {', '.join(TRAJECTORY_STYLES)}")
    inertia, turn_noise, speed_noise = {
        "smooth": (0.7, 0.15, 0.5),
        "jerky": (0.3, 0.7, 0.9),
        "reversal": (0.7, 0.15, 0.5),
    }[style]
    reversals = (
        set(rng.integers(steps // 8, steps, size=int(rng.integers(1, 4))).tolist()) if style == "reversal" else set()
    )
    direction = rng.uniform(0, 2 * math.pi)
    turn_rate = 0.0
    points = np.zeros((steps, 2))
    for index in range(1, steps):
        turn_rate = inertia * turn_rate + rng.normal(0, turn_noise)
        direction += turn_rate
        if index in reversals:
            direction += math.pi + rng.normal(0, 0.3)
        speed = 1 + speed_noise * rng.normal()
        if style != "smooth":  # smooth keeps the occasional step backwards of the original kernels
            speed = abs(speed)
        if style == "jerky":
            speed *= 0.1 if rng.random() < 0.15 else 1.0
        points[index] = points[index - 1] + speed * np.array([math.cos(direction), math.sin(direction)])
    return points - points.mean(axis=0)


def motion_blur_kernel(
    size: int, rng: np.random.Generator, length: float | None = None, style: str = "smooth"
) -> np.ndarray:
    """A camera-shake kernel: a random trajectory (see `shake_trajectory`) drawn into a `size` x `size` grid, summing
    to 1. `length` is its extent in pixels, twice the largest distance of the path from its centroid (so no side of
    its bounding box is longer), random in [3, size - 2] if not given."""
    points = shake_trajectory(rng, style)
    extent = np.abs(points).max() * 2 + 1e-6
    length = length if length is not None else rng.uniform(3, size - 2)
    points = points * (min(length, size - 2) / extent) + (size - 1) / 2
    # Bilinear splatting keeps sub-pixel positions.
    y, x = points[:, 1], points[:, 0]
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    dy, dx = y - y0, x - x0
    kernel = np.zeros((size, size), dtype=np.float64)
    for oy, wy in ((0, 1 - dy), (1, dy)):
        for ox, wx in ((0, 1 - dx), (1, dx)):
            rows, columns = y0 + oy, x0 + ox
            inside = (rows >= 0) & (rows < size) & (columns >= 0) & (columns < size)
            np.add.at(kernel, (rows[inside], columns[inside]), (wy * wx)[inside])
    return (kernel / kernel.sum()).astype(np.float32)


def gaussian_kernel(sigma: float, size: int | None = None) -> np.ndarray:
    size = size or 2 * math.ceil(3 * sigma) + 1
    axis = np.arange(size) - (size - 1) / 2
    taps = np.exp(-(axis**2) / (2 * sigma**2))
    kernel = np.outer(taps, taps)
    return (kernel / kernel.sum()).astype(np.float32)


def defocus_kernel(radius: float) -> np.ndarray:
    """A disk (out-of-focus blur) with anti-aliased edge."""
    size = 2 * math.ceil(radius) + 1
    axis = np.arange(size) - (size - 1) / 2
    distance = np.hypot(*np.meshgrid(axis, axis))
    kernel = np.clip(radius + 0.5 - distance, 0, 1)
    return (kernel / kernel.sum()).astype(np.float32)


def blur(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    return _filter(image, kernel)


def random_blur(image: torch.Tensor, rng: np.random.Generator, max_kernel: int = MAX_SHAKE_KERNEL) -> torch.Tensor:
    """Deblurring training blur: camera shake of any trajectory style (two times in three) or Gaussian/defocus, then
    slight sensor noise."""
    choice = rng.random()
    if choice < 2 / 3:
        kernel = motion_blur_kernel(max_kernel, rng, style=rng.choice(TRAJECTORY_STYLES))
    elif choice < 5 / 6:
        kernel = gaussian_kernel(rng.uniform(0.8, 2.5))
    else:
        kernel = defocus_kernel(rng.uniform(1.5, 4.0))
    blurred = blur(image, kernel)
    return add_gaussian_noise(blurred, sigma=rng.uniform(0, 2 / 255), rng=rng)


def blur_margin(max_kernel: int = MAX_SHAKE_KERNEL) -> int:
    """Pixels to crop on each side of a blurred training patch so that no output pixel saw the mirrored border."""
    return max(max_kernel, defocus_kernel(4.0).shape[0], gaussian_kernel(2.5).shape[0]) // 2 + 1


# ---------------------------------------------------------------------------------------------------- rain
def segment_axes(length: float, angle_degrees: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(along, across): each tap's distance along and across a segment of `length` at `angle_degrees` from vertical,
    on the smallest odd square grid that holds it and `width` twice on each side."""
    size = 2 * math.ceil(length / 2 + 2 * width) + 1
    axis = np.arange(size) - (size - 1) / 2
    x, y = np.meshgrid(axis, axis)
    angle = math.radians(angle_degrees)
    return x * math.sin(angle) + y * math.cos(angle), x * math.cos(angle) - y * math.sin(angle)


def line_kernel(length: float, angle_degrees: float, width: float) -> np.ndarray:
    """A soft line segment: the shape a falling drop leaves during the exposure."""
    along, across = segment_axes(length, angle_degrees, width)
    kernel = np.exp(-(across**2) / (2 * max(width, 0.3) ** 2)) * (np.abs(along) <= length / 2)
    return (kernel / max(kernel.sum(), 1e-8)).astype(np.float32)


def rain_layer(
    height: int, width: int, rng: np.random.Generator, density: float, length: float, angle: float, streak_width: float
) -> torch.Tensor:
    """A (1, H, W) map of rain streaks in [0, 1]."""
    drops = (rng.random((height, width)) < density) * rng.uniform(0.4, 1.0, (height, width))
    streaks = _filter(torch.from_numpy(drops.astype(np.float32))[None], line_kernel(length, angle, streak_width))
    peak = streaks.amax()
    return (streaks / peak).clamp(0, 1) if peak > 0 else streaks


def add_rain(
    image: torch.Tensor,
    rng: np.random.Generator,
    density: float | None = None,
    length: float | None = None,
    angle: float | None = None,
    streak_width: float | None = None,
    brightness: float | None = None,
) -> torch.Tensor:
    """Adds rain streaks of random (or given) density, length, angle, width and brightness; one or two layers."""
    _, height, width = image.shape
    rainy = image
    for _ in range(1 + int(rng.random() < 0.4)):
        layer = rain_layer(
            height,
            width,
            rng,
            density=density if density is not None else rng.uniform(0.002, 0.03),
            length=length if length is not None else rng.uniform(8, 35),
            angle=angle if angle is not None else rng.uniform(-35, 35),
            streak_width=streak_width if streak_width is not None else rng.uniform(0.5, 1.8),
        )
        strength = brightness if brightness is not None else rng.uniform(0.5, 1.0)
        # Screen blending: streaks brighten dark areas more than bright ones, like light scattered by drops.
        rainy = 1 - (1 - rainy) * (1 - strength * layer)
    return rainy.clamp(0, 1)


# ---------------------------------------------------------------------------------------------------- JPEG
def jpeg_compress(image: torch.Tensor, quality: int) -> torch.Tensor:
    """The image as a JPEG of `quality` (1-95) decodes: quantised to 8 bits, 4:2:0 chroma subsampling as phones and
    browsers save, encoded and decoded with Pillow."""
    if not 1 <= quality <= 95:
        raise ValueError(f"JPEG quality must be between 1 and 95, got {quality}")
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=int(quality), subsampling="4:2:0")
    with Image.open(buffer) as decoded:
        restored = np.asarray(decoded.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(restored).permute(2, 0, 1).contiguous()


# The share of training samples re-encoded as JPEG after their degradation, and the range of qualities: uploads
# from phones and browsers are JPEGs more often than not.
JPEG_SHARE = 0.4
JPEG_QUALITIES = (60, 95)


def maybe_jpeg(image: torch.Tensor, rng: np.random.Generator, share: float = JPEG_SHARE) -> torch.Tensor:
    """`image` re-encoded as JPEG of a random quality in JPEG_QUALITIES, for a `share` of the calls."""
    if rng.random() >= share:
        return image
    return jpeg_compress(image, int(rng.integers(JPEG_QUALITIES[0], JPEG_QUALITIES[1] + 1)))


# ---------------------------------------------------------------------------------------------------- dispatch
def check_task_and_image(task: str, image: torch.Tensor) -> None:
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"Expected a (3, H, W) image, got shape {tuple(image.shape)}")


def degrade(
    image: torch.Tensor, task: str, seed: int | np.random.Generator, jpeg_share: float = JPEG_SHARE
) -> torch.Tensor:
    """Applies the training degradation of `task` to a clean (3, H, W) image, then re-encodes it as JPEG for a
    `jpeg_share` of the seeds; the same seed gives the same result."""
    check_task_and_image(task, image)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if task == "denoise":
        degraded = random_noise(image, rng)
    elif task == "deblur":
        degraded = random_blur(image, rng)
    else:
        degraded = add_rain(image, rng)
    return maybe_jpeg(degraded, rng, jpeg_share)


__all__ = [
    "add_gaussian_noise",
    "add_poisson_gaussian_noise",
    "add_demosaiced_noise",
    "random_noise",
    "shake_trajectory",
    "motion_blur_kernel",
    "gaussian_kernel",
    "defocus_kernel",
    "blur",
    "random_blur",
    "blur_margin",
    "line_kernel",
    "add_rain",
    "jpeg_compress",
    "maybe_jpeg",
    "degrade",
]

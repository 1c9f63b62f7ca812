"""Synthetic degradations for training and evaluating on clean photos: noise, blur and rain.

Every function takes a `numpy.random.Generator`, so a degradation is reproducible from its seed
(`degrade(image, task, seed)` gives the same result every time). Images are float32 tensors (3, H, W) in [0, 1].
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .configuration_mprnet import TASKS


def _filter(image: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolves each channel with `kernel`, mirroring at the borders so the size is unchanged."""
    kernel_tensor = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
    pad_h, pad_w = kernel.shape[0] // 2, kernel.shape[1] // 2
    batch = image[None]
    if pad_h or pad_w:
        mode = "reflect" if pad_h < image.shape[-2] and pad_w < image.shape[-1] else "replicate"
        batch = F.pad(batch, (pad_w, pad_w, pad_h, pad_h), mode=mode)
    channels = image.shape[0]
    weight = kernel_tensor.flip(0, 1).expand(channels, 1, *kernel.shape)
    return F.conv2d(batch, weight, groups=channels)[0]


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


def random_noise(image: torch.Tensor, rng: np.random.Generator, max_sigma: float = 55 / 255) -> torch.Tensor:
    """Blind denoising training noise: Gaussian of a random level, or Poisson-Gaussian, one time in three."""
    if rng.random() < 1 / 3:
        return add_poisson_gaussian_noise(image, shot=rng.uniform(0, 0.03), read_sigma=rng.uniform(0, 0.04), rng=rng)
    return add_gaussian_noise(image, sigma=rng.uniform(0, max_sigma), rng=rng)


# ---------------------------------------------------------------------------------------------------- blur
def motion_blur_kernel(size: int, rng: np.random.Generator, length: float | None = None) -> np.ndarray:
    """A camera-shake kernel: a random trajectory with inertia, drawn into a `size` x `size` grid, summing to 1."""
    steps = 256
    direction = rng.uniform(0, 2 * math.pi)
    turn_rate = 0.0
    points = np.zeros((steps, 2))
    for index in range(1, steps):
        turn_rate = 0.7 * turn_rate + rng.normal(0, 0.15)
        direction += turn_rate
        speed = 1 + 0.5 * rng.normal()
        points[index] = points[index - 1] + speed * np.array([math.cos(direction), math.sin(direction)])
    points -= points.mean(axis=0)
    extent = np.abs(points).max() * 2 + 1e-6
    length = length if length is not None else rng.uniform(3, size - 2)
    points *= min(length, size - 2) / extent
    points += (size - 1) / 2
    kernel = np.zeros((size, size), dtype=np.float64)
    # Bilinear splatting keeps sub-pixel positions.
    for y, x in points[:, ::-1]:
        y0, x0 = int(math.floor(y)), int(math.floor(x))
        dy, dx = y - y0, x - x0
        for oy, wy in ((0, 1 - dy), (1, dy)):
            for ox, wx in ((0, 1 - dx), (1, dx)):
                if 0 <= y0 + oy < size and 0 <= x0 + ox < size:
                    kernel[y0 + oy, x0 + ox] += wy * wx
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


def random_blur(image: torch.Tensor, rng: np.random.Generator, max_kernel: int = 17) -> torch.Tensor:
    """Deblurring training blur: camera shake (two times in three) or Gaussian/defocus, then slight sensor noise."""
    choice = rng.random()
    if choice < 2 / 3:
        kernel = motion_blur_kernel(max_kernel, rng)
    elif choice < 5 / 6:
        kernel = gaussian_kernel(rng.uniform(0.8, 2.5))
    else:
        kernel = defocus_kernel(rng.uniform(1.5, 4.0))
    blurred = blur(image, kernel)
    return add_gaussian_noise(blurred, sigma=rng.uniform(0, 2 / 255), rng=rng)


# ---------------------------------------------------------------------------------------------------- rain
def line_kernel(length: float, angle_degrees: float, width: float) -> np.ndarray:
    """A soft line segment: the shape a falling drop leaves during the exposure."""
    size = 2 * math.ceil(length / 2 + 2 * width) + 1
    axis = np.arange(size) - (size - 1) / 2
    x, y = np.meshgrid(axis, axis)
    angle = math.radians(angle_degrees)
    along = x * math.sin(angle) + y * math.cos(angle)
    across = x * math.cos(angle) - y * math.sin(angle)
    kernel = np.exp(-(across**2) / (2 * max(width, 0.3) ** 2)) * (np.abs(along) <= length / 2)
    return (kernel / max(kernel.sum(), 1e-8)).astype(np.float32)


def rain_layer(height: int, width: int, rng: np.random.Generator, density: float, length: float, angle: float,
               streak_width: float) -> torch.Tensor:
    """A (1, H, W) map of rain streaks in [0, 1]."""
    drops = (rng.random((height, width)) < density) * rng.uniform(0.4, 1.0, (height, width))
    streaks = _filter(torch.from_numpy(drops.astype(np.float32))[None], line_kernel(length, angle, streak_width))
    peak = streaks.amax()
    return (streaks / peak).clamp(0, 1) if peak > 0 else streaks


def add_rain(image: torch.Tensor, rng: np.random.Generator, density: float | None = None, length: float | None = None,
             angle: float | None = None, streak_width: float | None = None, brightness: float | None = None
             ) -> torch.Tensor:
    """Adds rain streaks of random (or given) density, length, angle, width and brightness; one or two layers."""
    _, height, width = image.shape
    rainy = image
    for _ in range(1 + int(rng.random() < 0.4)):
        layer = rain_layer(
            height, width, rng,
            density=density if density is not None else rng.uniform(0.002, 0.03),
            length=length if length is not None else rng.uniform(8, 35),
            angle=angle if angle is not None else rng.uniform(-35, 35),
            streak_width=streak_width if streak_width is not None else rng.uniform(0.5, 1.8),
        )
        strength = brightness if brightness is not None else rng.uniform(0.5, 1.0)
        # Screen blending: streaks brighten dark areas more than bright ones, like light scattered by drops.
        rainy = 1 - (1 - rainy) * (1 - strength * layer)
    return rainy.clamp(0, 1)


# ---------------------------------------------------------------------------------------------------- dispatch
def degrade(image: torch.Tensor, task: str, seed: int | np.random.Generator) -> torch.Tensor:
    """Applies the training degradation of `task` to a clean (3, H, W) image; the same seed gives the same result."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}")
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"Expected a (3, H, W) image, got shape {tuple(image.shape)}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if task == "denoise":
        return random_noise(image, rng)
    if task == "deblur":
        return random_blur(image, rng)
    return add_rain(image, rng)


__all__ = [
    "add_gaussian_noise",
    "add_poisson_gaussian_noise",
    "random_noise",
    "motion_blur_kernel",
    "gaussian_kernel",
    "defocus_kernel",
    "blur",
    "random_blur",
    "line_kernel",
    "add_rain",
    "degrade",
]

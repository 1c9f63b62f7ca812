"""The broad training synthesis: degradations drawn over wider ranges than `degradations.degrade` (the classic ones).

Why it exists: models trained on the classic synthesis learned that generator, not rain, blur or noise. On rain made
by other libraries (opaque grey lines, long thin additive streaks, soft blurred streaks) the derain model scored like
a grey opening, and its last fine-tune on the classic rain lost 0.9 dB there. So each degradation here spans the
kinds of images people and other generators produce, as a distribution rather than one recipe:

- rain: coverage over more than two orders of magnitude, one to three layers at different angles, streaks from short
  drops to long lines, hard one-pixel lines to soft wide ones (drops blurred by their motion), drawn by screen,
  additive or opaque blending toward a streak colour, optionally over a veil of haze;
- blur: camera shake from a few pixels (crops) to the extent of a shaken full phone photo, straight linear motion,
  Gaussian and out-of-focus disks over wider radii;
- noise: white Gaussian, and noise through a camera pipeline (Poisson-Gaussian on a linear raw mosaic, demosaicing,
  white balance, colour correction, tone curve), the classic kinds beside them;
- JPEG at a random quality after any of them.

Every function takes a `numpy.random.Generator`; images are float32 tensors (3, H, W) in [0, 1]. None of this code
comes from the generators the foreign validation sets use (`mprnet_hf.evaluation.foreign`), which never enter training.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from .degradations import (
    BILINEAR_DEMOSAIC,
    COLOUR_CORRECTION,
    TRAJECTORY_STYLES,
    _filter,
    add_gaussian_noise,
    add_poisson_gaussian_noise,
    add_rain,
    bayer_mask,
    blur,
    blur_margin,
    check_task_and_image,
    defocus_kernel,
    degrade,
    gaussian_kernel,
    jpeg_compress,
    motion_blur_kernel,
    random_blur,
    random_noise,
    segment_axes,
)

SYNTHESES = ("broad", "classic")

# ---------------------------------------------------------------------------------------------------- rain
# Coverage: the share of pixels a streak's centre line crosses, summed over the drops of a layer (drops per pixel
# times streak length). Drawn log-uniformly: a drizzle of a few streaks up to a downpour that hides most of the photo.
RAIN_COVERAGE = (0.001, 0.25)
RAIN_LENGTH = (4.0, 160.0)  # pixels; log-uniform, since a streak's length scales with the photo and the exposure
RAIN_WIDTH = (0.3, 2.0)  # Gaussian sigma across the streak, log-uniform: 0.3 is a hard one-pixel line
RAIN_BLENDS = ("screen", "additive", "opaque")
HAZE_SHARE = 0.15  # layers of rain over a veil of scattered light


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def streak_kernel(length: float, angle_degrees: float, width: float) -> np.ndarray:
    """A line segment of peak 1 (not of sum 1): a single drop keeps its own brightness whatever its length."""
    along, across = segment_axes(length, angle_degrees, width)
    # A soft end over one pixel keeps short streaks from aliasing into dots.
    ends = np.clip(length / 2 + 0.5 - np.abs(along), 0, 1)
    return (np.exp(-(across**2) / (2 * width**2)) * ends).astype(np.float32)


def streak_layer(
    height: int,
    width: int,
    rng: np.random.Generator,
    coverage: float,
    length: float,
    angle: float,
    streak_width: float,
    softness: float,
) -> torch.Tensor:
    """A (1, H, W) map of streaks in [0, 1]: drops of random brightness drawn along `angle`, then blurred by
    `softness` (a Gaussian sigma, 0 for none) as drops moving during the exposure are."""
    drops_per_pixel = coverage / length
    drops = rng.random((height, width)) < drops_per_pixel
    brightness = rng.uniform(rng.uniform(0.7, 1.0), 1.0, (height, width))
    seeds = torch.from_numpy((drops * brightness).astype(np.float32))[None]
    streaks = _filter(seeds, streak_kernel(length, angle, streak_width))
    if softness > 0.3:
        streaks = _filter(streaks, gaussian_kernel(softness))
        streaks = streaks * (1 + softness)  # blur spreads the light, it does not remove it all
    return streaks.clamp(0, 1)


def blend_streaks(image: torch.Tensor, layer: torch.Tensor, blend: str, strength: float, colour: float) -> torch.Tensor:
    if blend == "screen":
        return 1 - (1 - image) * (1 - strength * layer)
    if blend == "additive":
        return image + strength * colour * layer
    if blend == "opaque":
        alpha = strength * layer
        return image * (1 - alpha) + colour * alpha
    raise ValueError(f"Unknown blend {blend!r}: expected one of {', '.join(RAIN_BLENDS)}")


def add_haze(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A veil of light scattered by rain: the photo mixed with a bright, slightly uneven airlight."""
    veil = rng.uniform(0.02, 0.2)
    airlight = rng.uniform(0.6, 1.0)
    _, height, width = image.shape
    # A gradient across the frame: rain haze is thicker towards the distance (usually the top of the photo).
    ramp = torch.linspace(1.0, rng.uniform(0.3, 1.0), height)[:, None].expand(height, width)
    transmission = 1 - veil * ramp
    return image * transmission + airlight * (1 - transmission)


# The broad synthesis keeps the classic draws as a share of its own, so a model trained on it keeps what it could do
# (trained on the broad draws alone, the derain model lost 2.7 dB on the classic rain in 600 steps).
CLASSIC_SHARE = 0.3


def broad_rain(image: torch.Tensor, rng: np.random.Generator, classic_share: float = CLASSIC_SHARE) -> torch.Tensor:
    """One to three layers of streaks, each with its own coverage, length, width, softness, blending and angle near
    a shared wind direction, optionally over haze; the classic rain for `classic_share` of the draws."""
    if rng.random() < classic_share:
        return add_rain(image, rng)
    _, height, width = image.shape
    rainy = add_haze(image, rng) if rng.random() < HAZE_SHARE else image
    wind = rng.uniform(-30, 30)
    blend = str(rng.choice(RAIN_BLENDS))  # one storm, one look: layers share the way they are drawn
    colour = rng.uniform(0.7, 1.0)
    for _ in range(int(rng.integers(1, 4))):
        length = log_uniform(rng, *RAIN_LENGTH)
        layer = streak_layer(
            height,
            width,
            rng,
            coverage=log_uniform(rng, *RAIN_COVERAGE),
            length=length,
            angle=wind + rng.normal(0, 8),
            streak_width=log_uniform(rng, *RAIN_WIDTH),
            softness=rng.uniform(0, 3.5) if rng.random() < 0.3 else 0.0,
        )
        rainy = blend_streaks(rainy, layer, blend, strength=rng.uniform(0.5, 1.0), colour=colour)
    return rainy.clamp(0, 1)


# ---------------------------------------------------------------------------------------------------- blur
# Camera shake up to the extent of a shaken full phone photo at the training photos' scale (1024 px), and the
# margin of the largest kernel; straight motion as a style of its own.
BROAD_SHAKE_KERNEL = 49
BROAD_SHAKE_EXTENT = (3.0, 45.0)
BROAD_DEFOCUS_RADIUS = (1.0, 12.0)
BROAD_GAUSSIAN_SIGMA = (0.5, 5.0)


def linear_motion_kernel(length: float, angle_degrees: float) -> np.ndarray:
    """A straight motion path of `length` pixels (a panning or moving subject), summing to 1."""
    kernel = streak_kernel(max(length, 1.0), angle_degrees, 0.4)
    return (kernel / kernel.sum()).astype(np.float32)


def broad_blur_kernel(rng: np.random.Generator) -> np.ndarray:
    choice = rng.random()
    if choice < 0.5:
        length = log_uniform(rng, *BROAD_SHAKE_EXTENT)
        size = 2 * math.ceil((length + 2) / 2) + 1
        return motion_blur_kernel(size, rng, length=length, style=str(rng.choice(TRAJECTORY_STYLES)))
    if choice < 0.7:
        return linear_motion_kernel(log_uniform(rng, *BROAD_SHAKE_EXTENT), rng.uniform(0, 180))
    if choice < 0.85:
        return defocus_kernel(rng.uniform(*BROAD_DEFOCUS_RADIUS))
    return gaussian_kernel(rng.uniform(*BROAD_GAUSSIAN_SIGMA))


def broad_blur(image: torch.Tensor, rng: np.random.Generator, classic_share: float = CLASSIC_SHARE) -> torch.Tensor:
    if rng.random() < classic_share:
        return random_blur(image, rng)
    blurred = blur(image, broad_blur_kernel(rng))
    return add_gaussian_noise(blurred, sigma=rng.uniform(0, 3 / 255), rng=rng)


def broad_blur_margin() -> int:
    """Pixels each side of a blurred training patch that may have seen the mirrored border."""
    return max(BROAD_SHAKE_KERNEL, defocus_kernel(BROAD_DEFOCUS_RADIUS[1]).shape[0]) // 2 + 1


# ---------------------------------------------------------------------------------------------------- noise
def srgb_to_linear(image: torch.Tensor) -> torch.Tensor:
    return torch.where(image <= 0.04045, image / 12.92, ((image + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    image = image.clamp(0, 1)
    return torch.where(image <= 0.0031308, image * 12.92, 1.055 * image ** (1 / 2.4) - 0.055)


def camera_pipeline_noise(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Sensor noise as a camera makes it: the photo taken back to a linear raw RGGB mosaic (undo the tone curve,
    the colour correction and the white balance), Poisson-Gaussian noise drawn per photosite, then bilinear
    demosaicing, white balance, colour correction and the tone curve again. Noise ends up signal dependent,
    strongest in the shadows once toned, and correlated between neighbours and channels."""
    _, height, width = image.shape
    gains = torch.tensor([rng.uniform(1.5, 2.4), 1.0, rng.uniform(1.3, 2.0)])[:, None, None]
    correction = torch.eye(3) + rng.uniform(0.3, 1.0) * (COLOUR_CORRECTION - torch.eye(3))
    linear = srgb_to_linear(image)
    camera_rgb = torch.einsum("ij,jhw->ihw", torch.linalg.inv(correction), linear).clamp(0, 1) / gains
    mosaic_mask = bayer_mask(height, width)
    raw = (camera_rgb * mosaic_mask).sum(0, keepdim=True)
    shot = log_uniform(rng, 1e-4, 4e-2)  # variance per unit of signal: base ISO to a dim room at high ISO
    read = log_uniform(rng, 2e-4, 2.5e-2)
    noisy_raw = add_poisson_gaussian_noise(raw, shot, read, rng)
    mode = "reflect" if height > 1 and width > 1 else "replicate"
    demosaiced = F.conv2d(F.pad((noisy_raw * mosaic_mask)[None], (1, 1, 1, 1), mode=mode), BILINEAR_DEMOSAIC, groups=3)
    balanced = (demosaiced[0] * gains).clamp(0, 1)
    return linear_to_srgb(torch.einsum("ij,jhw->ihw", correction, balanced))


# The bars meet noise up to sigma 50 on the 8-bit scale, and generators' defaults go past it: train a little beyond.
BROAD_MAX_SIGMA = 65 / 255


# Noise keeps less of the classic kinds by default: its broad draws (Gaussian, camera pipeline) include them in spirit.
NOISE_CLASSIC_SHARE = 0.2
# Of the broad noise draws, plain Gaussian noise and camera-pipeline noise in this ratio.
GAUSSIAN_SHARE_OF_BROAD_NOISE = 5 / 8


def broad_noise(
    image: torch.Tensor, rng: np.random.Generator, classic_share: float = NOISE_CLASSIC_SHARE
) -> torch.Tensor:
    """Gaussian noise up to BROAD_MAX_SIGMA or camera-pipeline noise, the classic kinds for `classic_share` of the
    draws."""
    choice = rng.random()
    gaussian = (1 - classic_share) * GAUSSIAN_SHARE_OF_BROAD_NOISE
    if choice < gaussian:
        return add_gaussian_noise(image, sigma=rng.uniform(0, BROAD_MAX_SIGMA), rng=rng)
    if choice < 1 - classic_share:
        return camera_pipeline_noise(image, rng)
    return random_noise(image, rng)


# ---------------------------------------------------------------------------------------------------- dispatch
BROAD_JPEG_SHARE = 0.5
BROAD_JPEG_QUALITIES = (50, 95)
BROAD = {"derain": broad_rain, "deblur": broad_blur, "denoise": broad_noise}


def synthesize(
    image: torch.Tensor,
    task: str,
    rng: np.random.Generator,
    synthesis: str = "broad",
    jpeg_share: float | None = None,
    classic_share: float | None = None,
) -> torch.Tensor:
    """The training degradation of `task` from `synthesis` ("broad", or "classic": `degradations.degrade`); the broad
    synthesis draws the classic one for `classic_share` of the draws (None: the task's default, CLASSIC_SHARE for
    rain and blur, NOISE_CLASSIC_SHARE for noise)."""
    if synthesis not in SYNTHESES:
        raise ValueError(f"Unknown synthesis {synthesis!r}: expected one of {', '.join(SYNTHESES)}")
    if classic_share is not None and not 0.0 <= classic_share <= 1.0:
        raise ValueError(f"classic_share must be between 0 and 1, got {classic_share!r}")
    if jpeg_share is not None and not 0.0 <= jpeg_share <= 1.0:
        raise ValueError(f"jpeg_share must be between 0 and 1, got {jpeg_share!r}")
    check_task_and_image(task, image)
    if synthesis == "classic":
        return degrade(image, task, rng) if jpeg_share is None else degrade(image, task, rng, jpeg_share)
    degraded = BROAD[task](image, rng) if classic_share is None else BROAD[task](image, rng, classic_share)
    share = BROAD_JPEG_SHARE if jpeg_share is None else jpeg_share
    if rng.random() < share:
        quality = int(rng.integers(BROAD_JPEG_QUALITIES[0], BROAD_JPEG_QUALITIES[1] + 1))
        degraded = jpeg_compress(degraded, quality)
    return degraded


def synthesis_margin(task: str, synthesis: str = "broad") -> int:
    """The crop margin a deblurring patch needs under `synthesis` (0 for the other tasks)."""
    if task != "deblur":
        return 0
    return broad_blur_margin() if synthesis == "broad" else blur_margin()


__all__ = [
    "SYNTHESES",
    "broad_rain",
    "broad_blur",
    "broad_noise",
    "camera_pipeline_noise",
    "synthesize",
    "synthesis_margin",
]

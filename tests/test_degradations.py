"""The seeded synthetic degradations: reproducible, valid kernels, the requested noise level, rain only adds light."""

import numpy as np
import pytest
import torch

from mprnet_hf.configuration_mprnet import TASKS
from mprnet_hf.degradations import (
    add_gaussian_noise,
    add_poisson_gaussian_noise,
    add_rain,
    blur,
    defocus_kernel,
    degrade,
    gaussian_kernel,
    line_kernel,
    motion_blur_kernel,
)


def photo_like(height=48, width=40, seed=0) -> torch.Tensor:
    """Smooth gradients plus a bright square: something with flat areas and edges, in [0.1, 0.9]."""
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.5 - 0.3 * x * y])
    image[:, height // 4 : height // 2, width // 4 : width // 2] = 0.9
    return image.clamp(0.1, 0.9).float()


# ---------------------------------------------------------------------------------------------------- dispatch
@pytest.mark.parametrize("task", TASKS)
def test_degrade_is_reproducible_from_its_seed(task):
    image = photo_like()
    first, again, other = degrade(image, task, 7), degrade(image, task, 7), degrade(image, task, 8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    # A Generator seeded the same way gives the same result as the integer seed.
    assert torch.equal(first, degrade(image, task, np.random.default_rng(7)))


@pytest.mark.parametrize("task", TASKS)
def test_degrade_keeps_shape_dtype_and_range(task):
    image = photo_like(37, 29)
    for seed in range(4):
        degraded = degrade(image, task, seed)
        assert degraded.shape == image.shape and degraded.dtype == torch.float32
        assert degraded.min() >= 0 and degraded.max() <= 1
        assert not torch.equal(degraded, image)


def test_degrade_rejects_unknown_tasks_and_bad_shapes():
    with pytest.raises(ValueError, match="Unknown task"):
        degrade(photo_like(), "dehaze", 0)
    with pytest.raises(ValueError, match="3, H, W"):
        degrade(photo_like()[:1], "denoise", 0)
    with pytest.raises(ValueError, match="3, H, W"):
        degrade(photo_like()[None], "denoise", 0)


# ---------------------------------------------------------------------------------------------------- kernels
@pytest.mark.parametrize(
    "kernel",
    [
        motion_blur_kernel(17, np.random.default_rng(0)),
        motion_blur_kernel(9, np.random.default_rng(1), length=5),
        gaussian_kernel(1.5),
        gaussian_kernel(0.8, size=7),
        defocus_kernel(3.0),
        line_kernel(20, 30, 1.0),
    ],
    ids=["motion17", "motion9", "gauss1.5", "gauss0.8", "defocus3", "line"],
)
def test_kernels_are_normalised_and_non_negative(kernel):
    assert kernel.ndim == 2 and kernel.shape[0] % 2 == 1 and kernel.shape[1] % 2 == 1
    assert kernel.min() >= 0
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-5)


def test_motion_kernel_is_reproducible_and_varies_with_the_seed():
    first = motion_blur_kernel(17, np.random.default_rng(3))
    assert first.shape == (17, 17)
    np.testing.assert_array_equal(first, motion_blur_kernel(17, np.random.default_rng(3)))
    assert not np.array_equal(first, motion_blur_kernel(17, np.random.default_rng(4)))
    # A camera-shake trajectory covers several pixels, unlike a delta.
    assert (first > 0).sum() > 5


def test_blur_is_a_true_convolution_and_preserves_flat_images():
    kernel = motion_blur_kernel(9, np.random.default_rng(5))
    delta = torch.zeros(3, 21, 21)
    delta[:, 10, 10] = 1
    # Convolving a centred delta reproduces the kernel unflipped, the model that Wiener deconvolution assumes.
    blurred_delta = blur(delta, kernel)[:, 6:15, 6:15].numpy()
    np.testing.assert_allclose(blurred_delta, np.broadcast_to(kernel, (3, 9, 9)), atol=1e-7)
    flat = torch.full((3, 16, 16), 0.42)
    torch.testing.assert_close(blur(flat, kernel), flat, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------------- noise
@pytest.mark.parametrize("sigma", [5 / 255, 25 / 255, 0.1])
def test_gaussian_noise_has_the_requested_standard_deviation(sigma):
    grey = torch.full((3, 128, 128), 0.5)
    noisy = add_gaussian_noise(grey, sigma, np.random.default_rng(0))
    noise = (noisy - grey).double()
    # 49,152 samples: the sample std is within a few per cent of sigma, the mean close to zero.
    assert noise.std().item() == pytest.approx(sigma, rel=0.03)
    assert abs(noise.mean().item()) < 3 * sigma / np.sqrt(noise.numel()) + 1e-7


def test_gaussian_noise_clips_unless_told_not_to():
    image = torch.full((3, 32, 32), 0.98)
    clipped = add_gaussian_noise(image, 0.2, np.random.default_rng(1))
    raw = add_gaussian_noise(image, 0.2, np.random.default_rng(1), clip=False)
    assert clipped.max() <= 1 and raw.max() > 1
    torch.testing.assert_close(clipped, raw.clamp(0, 1))


def test_poisson_gaussian_noise_grows_with_brightness():
    rng = np.random.default_rng(2)
    dark = add_poisson_gaussian_noise(torch.full((3, 96, 96), 0.1), shot=0.02, read_sigma=0.005, rng=rng) - 0.1
    bright = add_poisson_gaussian_noise(torch.full((3, 96, 96), 0.8), shot=0.02, read_sigma=0.005, rng=rng) - 0.8
    assert bright.std() > 2 * dark.std()


# ---------------------------------------------------------------------------------------------------- rain
@pytest.mark.parametrize("seed", range(4))
def test_rain_only_brightens(seed):
    image = photo_like(64, 64)
    rainy = add_rain(image, np.random.default_rng(seed))
    assert rainy.shape == image.shape
    assert (rainy >= image - 1e-6).all()
    assert (rainy > image + 0.05).float().mean() > 0.001  # some visible streaks
    assert rainy.max() <= 1


def test_rain_parameters_are_respected():
    image = torch.full((3, 64, 64), 0.2)
    sparse = add_rain(image, np.random.default_rng(0), density=0.002, brightness=0.5)
    dense = add_rain(image, np.random.default_rng(0), density=0.03, brightness=0.5)
    assert (dense - image).mean() > (sparse - image).mean()
    # Screen blending with strength 0.5 never lifts a pixel above 1 - (1 - x)(1 - 0.5) per layer (two at most).
    assert (dense <= 1 - (1 - image) * 0.25 + 1e-6).all()

"""The seeded synthetic degradations: reproducible, valid kernels, the requested noise level, rain only adds light."""

import numpy as np
import pytest
import torch

from mprnet_hf.data.degradations import (
    DIRECT_CONVOLUTION_MAX_TAPS,
    MAX_SHAKE_KERNEL,
    TRAJECTORY_STYLES,
    add_demosaiced_noise,
    add_gaussian_noise,
    add_poisson_gaussian_noise,
    add_rain,
    blur,
    blur_margin,
    defocus_kernel,
    degrade,
    gaussian_kernel,
    jpeg_compress,
    line_kernel,
    maybe_jpeg,
    motion_blur_kernel,
    shake_trajectory,
)
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS


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
        motion_blur_kernel(33, np.random.default_rng(2), style="jerky"),
        motion_blur_kernel(33, np.random.default_rng(3), length=31, style="reversal"),
        gaussian_kernel(1.5),
        gaussian_kernel(0.8, size=7),
        defocus_kernel(3.0),
        line_kernel(20, 30, 1.0),
    ],
    ids=["motion17", "motion9", "jerky33", "reversal33", "gauss1.5", "gauss0.8", "defocus3", "line"],
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


# ---------------------------------------------------------------------------------------------------- long shake
def support_extent(kernel: np.ndarray) -> int:
    """The larger side of the bounding box of the kernel's non-zero taps."""
    rows, columns = np.nonzero(kernel > 1e-6)
    return max(rows.max() - rows.min(), columns.max() - columns.min()) + 1


@pytest.mark.parametrize("style", TRAJECTORY_STYLES)
@pytest.mark.parametrize("length", [5, 17, 25, 31])
def test_shake_kernels_have_the_requested_extent(style, length):
    kernel = motion_blur_kernel(MAX_SHAKE_KERNEL, np.random.default_rng(length), length=length, style=style)
    # The extent bounds the path's bounding box (bilinear splatting spreads each end over one more pixel); a path
    # is never much shorter than it.
    assert 0.6 * length <= support_extent(kernel) <= length + 2


def test_trajectory_styles_differ_in_shape():
    def turning(style):
        """Mean absolute change of direction between steps, over many trajectories."""
        angles = []
        for seed in range(20):
            steps = np.diff(shake_trajectory(np.random.default_rng(seed), style), axis=0)
            heading = np.arctan2(steps[:, 1], steps[:, 0])
            angles.append(np.abs(np.angle(np.exp(1j * np.diff(heading)))).mean())
        return float(np.mean(angles))

    assert turning("jerky") > 1.5 * turning("smooth")

    def largest_turn(style, seed):
        steps = np.diff(shake_trajectory(np.random.default_rng(seed), style), axis=0)
        heading = np.arctan2(steps[:, 1], steps[:, 0])
        return np.abs(np.angle(np.exp(1j * np.diff(heading)))).max()

    # Steps never go backwards in the reversal style, so a turn of about half a circle is a reversal.
    assert all(largest_turn("reversal", seed) > 2.5 for seed in range(10))
    with pytest.raises(ValueError, match="trajectory style"):
        shake_trajectory(np.random.default_rng(0), "wobbly")


def test_training_blur_reaches_the_long_shakes_and_the_margin_covers_them():
    extents = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        extents.append(support_extent(motion_blur_kernel(MAX_SHAKE_KERNEL, rng)))
    assert max(extents) >= 27 and min(extents) <= 8
    assert blur_margin() >= MAX_SHAKE_KERNEL // 2 + 1


def test_large_kernels_through_the_fft_match_direct_convolution():
    kernel = motion_blur_kernel(MAX_SHAKE_KERNEL, np.random.default_rng(9), length=29)
    assert kernel.size > DIRECT_CONVOLUTION_MAX_TAPS
    image = photo_like(70, 61)
    padded = torch.nn.functional.pad(image[None], [MAX_SHAKE_KERNEL // 2] * 4, mode="reflect")
    weight = torch.from_numpy(kernel).flip(0, 1).expand(3, 1, *kernel.shape)
    direct = torch.nn.functional.conv2d(padded, weight, groups=3)[0]
    torch.testing.assert_close(blur(image, kernel), direct, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------------------- correlated noise
def neighbour_correlation(noise: torch.Tensor) -> float:
    """Correlation of each pixel's noise with its right-hand neighbour's, averaged over channels."""
    left, right = noise[..., :-1].flatten(), noise[..., 1:].flatten()
    return float(torch.corrcoef(torch.stack([left, right]))[0, 1])


def test_demosaiced_noise_is_spatially_and_cross_channel_correlated():
    grey = torch.full((3, 96, 96), 0.5)
    demosaiced = add_demosaiced_noise(grey, shot=0.02, read_sigma=0.01, rng=np.random.default_rng(0)) - grey
    white = add_poisson_gaussian_noise(grey, shot=0.02, read_sigma=0.01, rng=np.random.default_rng(0)) - grey
    assert neighbour_correlation(demosaiced) > 0.3
    assert abs(neighbour_correlation(white)) < 0.05
    # The colour correction mixes the channels' noise, which independent noise per channel never shows.
    channels = torch.corrcoef(demosaiced.flatten(1))
    assert channels[0, 1].abs() > 0.1 and channels[1, 2].abs() > 0.1
    assert torch.corrcoef(white.flatten(1))[0, 1].abs() < 0.05
    brighter = add_demosaiced_noise(torch.full((3, 96, 96), 0.9), 0.02, 0.01, np.random.default_rng(0)) - 0.9
    assert brighter.std() > demosaiced.std()


# ---------------------------------------------------------------------------------------------------- JPEG
def test_jpeg_compress_adds_block_artefacts_that_grow_as_quality_falls():
    image = photo_like(64, 64) + 0.05 * torch.from_numpy(np.random.default_rng(0).random((3, 64, 64))).float()
    image = image.clamp(0, 1)
    errors = {quality: (jpeg_compress(image, quality) - image).abs().mean().item() for quality in (95, 70, 30)}
    assert 0 < errors[95] < errors[70] < errors[30]
    decoded = jpeg_compress(image, 70)
    assert decoded.shape == image.shape and decoded.dtype == torch.float32
    # The decoded values are 8-bit levels.
    torch.testing.assert_close(decoded * 255, (decoded * 255).round(), atol=1e-4, rtol=0)
    for quality in (0, 96):
        with pytest.raises(ValueError, match="JPEG quality"):
            jpeg_compress(image, quality)


def test_a_share_of_degraded_samples_is_re_encoded_as_jpeg():
    image = photo_like(32, 32)
    reencoded = sum(not torch.equal(maybe_jpeg(image, np.random.default_rng(seed)), image) for seed in range(200))
    assert 0.3 * 200 < reencoded < 0.5 * 200
    for task in TASKS:
        plain = degrade(image, task, 3, jpeg_share=0.0)
        always = degrade(image, task, 3, jpeg_share=1.0)
        assert not torch.equal(plain, always)
        # Only 8-bit levels survive a JPEG round trip.
        torch.testing.assert_close(always * 255, (always * 255).round(), atol=1e-4, rtol=0)

"""The seeded synthetic degradations: reproducible, valid kernels, the requested noise level, rain only adds light."""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

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
    random_blur,
    random_noise,
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


# ---------------------------------------------------------------------------------------------------- exact values
# Against independent references: scipy's convolution (mode "mirror" is torch's reflect padding, "nearest" its
# replicate padding) and the formulas of the docstrings, drawn from a generator seeded as the function's is.
def scipy_blur(image: torch.Tensor, kernel: np.ndarray, mode: str) -> np.ndarray:
    return np.stack(
        [ndimage.convolve(channel.double().numpy(), kernel.astype(np.float64), mode=mode) for channel in image]
    )


@pytest.mark.parametrize("kernel_shape", [(5, 3), (3, 7), (17, 15)], ids=["direct-tall", "direct-wide", "fft"])
def test_blur_of_a_photo_is_scipys_convolution_with_mirrored_borders(kernel_shape):
    kernel = np.random.default_rng(1).random(kernel_shape).astype(np.float32)
    kernel /= kernel.sum()
    image = photo_like(30, 26) + 0.1 * torch.from_numpy(np.random.default_rng(2).random((3, 30, 26))).float()
    np.testing.assert_allclose(blur(image, kernel).numpy(), scipy_blur(image, kernel, "mirror"), atol=2e-6)


def test_images_smaller_than_the_kernel_are_padded_by_repeating_their_edge():
    kernel = np.random.default_rng(3).random((7, 5)).astype(np.float32)
    kernel /= kernel.sum()
    for height, width in ((3, 20), (20, 2), (3, 2)):
        image = torch.from_numpy(np.random.default_rng(height).random((3, height, width))).float()
        np.testing.assert_allclose(blur(image, kernel).numpy(), scipy_blur(image, kernel, "nearest"), atol=2e-6)
    one_row = torch.from_numpy(np.random.default_rng(4).random((3, 1, 9))).float()
    np.testing.assert_allclose(
        blur(one_row, kernel[3:4]).numpy(), scipy_blur(one_row, kernel[3:4], "mirror"), atol=2e-6
    )


def test_gaussian_kernel_taps_are_the_normalised_gaussian():
    kernel = gaussian_kernel(1.5)
    assert kernel.shape == (11, 11) and kernel.dtype == np.float32  # 2 * ceil(4.5) + 1
    taps = np.exp(-(np.arange(-5, 6) ** 2) / (2 * 1.5**2))
    np.testing.assert_allclose(kernel, np.outer(taps, taps) / np.outer(taps, taps).sum(), rtol=1e-6)
    assert gaussian_kernel(0.8).shape == (7, 7) and gaussian_kernel(2.5).shape == (17, 17)
    np.testing.assert_allclose(
        gaussian_kernel(0.8, size=5)[2],
        np.exp(-(np.arange(-2, 3) ** 2) / 1.28) * gaussian_kernel(0.8, size=5)[2, 2],
        rtol=1e-6,
    )


def test_defocus_kernel_is_an_anti_aliased_disk():
    kernel = defocus_kernel(2.0)
    assert kernel.shape == (5, 5) and kernel.dtype == np.float32
    # Coverage of each pixel: 1 inside radius - 0.5, a linear ramp to 0 at radius + 0.5.
    y, x = np.mgrid[-2:3, -2:3]
    coverage = np.clip(2.5 - np.hypot(x, y), 0, 1)
    np.testing.assert_allclose(kernel, coverage / coverage.sum(), rtol=1e-6)
    assert defocus_kernel(1.5).shape == (5, 5) and defocus_kernel(4.0).shape == (9, 9)


def test_line_kernel_is_a_soft_segment_along_its_angle():
    vertical = line_kernel(10, 0, 1.0)
    assert vertical.shape == (15, 15) and vertical.dtype == np.float32  # 2 * ceil(5 + 2) + 1
    axis = np.arange(15) - 7
    across, along = np.meshgrid(axis, axis)
    expected = np.exp(-(across**2) / 2) * (np.abs(along) <= 5)
    np.testing.assert_allclose(vertical, expected / expected.sum(), rtol=1e-6)
    # A quarter turn lays the same segment along the rows; a hair-thin one keeps a width of 0.3.
    np.testing.assert_allclose(line_kernel(10, 90, 1.0), vertical.T, atol=1e-7)
    thin = line_kernel(6, 0, 0.1)
    assert thin.shape == (9, 9)  # 2 * ceil(3 + 0.2) + 1
    np.testing.assert_allclose(
        thin[:, 4], np.r_[0, 1, 1, 1, 1, 1, 1, 1, 0] / (7 * (1 + 2 * np.exp(-1 / 0.18))), rtol=1e-5
    )


def test_blur_margin_covers_the_largest_kernel_of_each_kind():
    assert blur_margin() == 17  # the 33-pixel shake kernel: 16 on each side, and one more
    assert blur_margin(9) == 9  # then a Gaussian of sigma 2.5 (17 pixels) is the largest
    assert blur_margin(41) == 21


def test_noise_is_sigma_times_the_generators_normal_draws():
    image = photo_like(20, 16)
    expected = image + 0.3 * torch.from_numpy(np.random.default_rng(5).standard_normal((3, 20, 16), dtype=np.float32))
    torch.testing.assert_close(add_gaussian_noise(image, 0.3, np.random.default_rng(5), clip=False), expected)
    torch.testing.assert_close(add_gaussian_noise(image, 0.3, np.random.default_rng(5)), expected.clamp(0, 1))


def test_sensor_noise_has_the_variance_of_its_formula():
    image = photo_like(20, 16)
    image[0, :4] = -0.2  # below black: no shot noise
    normal = torch.from_numpy(np.random.default_rng(6).standard_normal((3, 20, 16), dtype=np.float32))
    std = torch.sqrt(0.02 * image.clamp(min=0) + 0.01**2)
    expected = (image + std * normal).clamp(0, 1)
    noisy = add_poisson_gaussian_noise(image, shot=0.02, read_sigma=0.01, rng=np.random.default_rng(6))
    torch.testing.assert_close(noisy, expected)


def demosaiced_noise_numpy(
    image: np.ndarray, shot: float, read_sigma: float, seed: int, mode: str = "mirror"
) -> np.ndarray:
    """An independent reference: RGGB photosites, bilinear interpolation of each colour's samples (scipy, borders
    mirrored, or repeated with mode "nearest"), then the colour-correction matrix."""
    _, height, width = image.shape
    samples = np.random.default_rng(seed).standard_normal((height, width), dtype=np.float32).astype(np.float64)
    std = np.sqrt(shot * np.clip(image, 0, None) + read_sigma**2)
    rows, columns = np.mgrid[:height, :width]
    sites = [
        (rows % 2 == 0) & (columns % 2 == 0),
        (rows + columns) % 2 == 1,
        (rows % 2 == 1) & (columns % 2 == 1),
    ]
    red_blue = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    green = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    noise = np.stack(
        [
            ndimage.convolve(samples * std[channel] * sites[channel], kernel, mode=mode)
            for channel, kernel in enumerate((red_blue, green, red_blue))
        ]
    )
    matrix = np.array([[1.6, -0.45, -0.15], [-0.25, 1.55, -0.3], [-0.05, -0.55, 1.6]])
    return np.clip(image + np.einsum("ij,jhw->ihw", matrix, noise), 0, 1)


def test_demosaiced_noise_matches_a_bayer_reference():
    image = photo_like(12, 10)
    noisy = add_demosaiced_noise(image, shot=0.02, read_sigma=0.01, rng=np.random.default_rng(7))
    expected = demosaiced_noise_numpy(image.double().numpy(), 0.02, 0.01, 7)
    np.testing.assert_allclose(noisy.numpy(), expected, atol=1e-5)
    # A one-row image has no neighbour to mirror: its edge is repeated instead.
    strip = add_demosaiced_noise(photo_like(1, 10), 0.02, 0.01, np.random.default_rng(7))
    assert strip.shape == (3, 1, 10) and not torch.equal(strip, photo_like(1, 10))


def test_jpeg_is_pillows_encoding_at_that_quality_with_4_2_0_chroma():
    image = photo_like(32, 40) + 0.05 * torch.from_numpy(np.random.default_rng(8).random((3, 32, 40))).float()
    image = image.clamp(0, 1)
    for quality in (1, 60, 95):
        buffer = io.BytesIO()
        pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
        expected = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        np.testing.assert_array_equal(jpeg_compress(image, quality).numpy(), expected)
    # Values outside [0, 1] are clipped first, not wrapped round 8 bits.
    assert jpeg_compress(torch.full((3, 16, 16), 1.5), 95).min() > 0.95
    assert jpeg_compress(torch.full((3, 16, 16), -0.5), 95).max() < 0.05


def test_re_encoded_samples_use_a_quality_from_the_training_range():
    image = photo_like(32, 32)
    qualities = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        if rng.random() >= 0.4:
            continue
        quality = int(rng.integers(60, 96))
        qualities.add(quality)
        np.testing.assert_array_equal(maybe_jpeg(image, np.random.default_rng(seed)), jpeg_compress(image, quality))
    assert min(qualities) < 70 and max(qualities) > 85
    assert torch.equal(maybe_jpeg(image, np.random.default_rng(0), share=0.0), image)
    assert not torch.equal(maybe_jpeg(image, np.random.default_rng(0), share=1.0), image)


def test_shake_kernels_are_centred_and_as_long_as_asked():
    """The trajectory is centred on zero and bilinear splatting keeps every point's centre of mass, so the kernel's
    centre of mass is the grid's centre; the path's farthest point from it is at half the length."""
    for style in TRAJECTORY_STYLES:
        for size, length in ((33, 25.0), (17, 9.0), (16, 10.0)):
            kernel = motion_blur_kernel(size, np.random.default_rng(size), length=length, style=style).astype(float)
            rows, columns = np.mgrid[:size, :size]
            assert (kernel * rows).sum() == pytest.approx((size - 1) / 2, abs=1e-4)
            assert (kernel * columns).sum() == pytest.approx((size - 1) / 2, abs=1e-4)
            occupied = np.nonzero(kernel > 1e-7)
            reach = max(np.abs(occupied[0] - (size - 1) / 2).max(), np.abs(occupied[1] - (size - 1) / 2).max())
            assert length / 2 - 1 <= reach <= length / 2 + 1
    # A length beyond the grid is cut to size - 2.
    assert support_extent(motion_blur_kernel(17, np.random.default_rng(0), length=40)) <= 17


def test_trajectories_are_centred_paths_of_unit_steps():
    for style in TRAJECTORY_STYLES:
        points = shake_trajectory(np.random.default_rng(1), style, steps=300)
        assert points.shape == (300, 2)
        np.testing.assert_allclose(points.mean(axis=0), 0, atol=1e-9)
        steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
        # Speeds are 1 + noise: about one pixel a step on average, never a jump.
        assert 0.6 < steps.mean() < 1.6 and steps.max() < 5
    jerky = np.linalg.norm(np.diff(shake_trajectory(np.random.default_rng(2), "jerky", 2000), axis=0), axis=1)
    assert 0.05 < (jerky < 0.2).mean() < 0.3  # pauses: about 15 % of the steps at a tenth of the speed


def test_training_noise_is_one_of_the_three_kinds_at_a_documented_level():
    """Replays the documented draws: the kind (half white Gaussian, a quarter each of sensor noise and demosaiced
    sensor noise), then its level from the generator in the documented ranges."""
    image = photo_like(16, 16)
    kinds = []
    for seed in range(24):
        rng = np.random.default_rng(seed)
        kind = rng.choice(["gaussian", "poisson-gaussian", "demosaiced"], p=[0.5, 0.25, 0.25])
        kinds.append(kind)
        if kind == "gaussian":
            expected = add_gaussian_noise(image, rng.uniform(0, 55 / 255), rng)
        else:
            shot, read_sigma = rng.uniform(0, 0.03), rng.uniform(0, 0.04)
            if kind == "poisson-gaussian":
                expected = add_poisson_gaussian_noise(image, shot, read_sigma, rng)
            else:
                expected = add_demosaiced_noise(image, 2 * shot, 2 * read_sigma, rng)
        torch.testing.assert_close(random_noise(image, np.random.default_rng(seed)), expected, atol=0, rtol=0)
    assert set(kinds) == {"gaussian", "poisson-gaussian", "demosaiced"}


def test_training_blur_is_shake_gaussian_or_defocus_then_slight_noise():
    image = photo_like(40, 40)
    kinds = []
    for seed in range(18):
        rng = np.random.default_rng(seed)
        choice = rng.random()
        if choice < 2 / 3:
            kernel, kind = motion_blur_kernel(33, rng, style=rng.choice(TRAJECTORY_STYLES)), "shake"
        elif choice < 5 / 6:
            kernel, kind = gaussian_kernel(rng.uniform(0.8, 2.5)), "gaussian"
        else:
            kernel, kind = defocus_kernel(rng.uniform(1.5, 4.0)), "defocus"
        kinds.append(kind)
        expected = add_gaussian_noise(blur(image, kernel), rng.uniform(0, 2 / 255), rng)
        torch.testing.assert_close(random_blur(image, np.random.default_rng(seed)), expected, atol=0, rtol=0)
    assert set(kinds) == {"shake", "gaussian", "defocus"}


def test_rain_is_screen_blended_streak_layers():
    image = photo_like(48, 40)
    for seed in range(6):
        rng = np.random.default_rng(seed)
        expected = image
        for _ in range(1 + int(rng.random() < 0.4)):
            density, length = rng.uniform(0.002, 0.03), rng.uniform(8, 35)
            angle, width = rng.uniform(-35, 35), rng.uniform(0.5, 1.8)
            drops = (rng.random((48, 40)) < density) * rng.uniform(0.4, 1.0, (48, 40))
            streaks = blur(torch.from_numpy(drops.astype(np.float32))[None], line_kernel(length, angle, width))
            layer = (streaks / streaks.amax()).clamp(0, 1)
            expected = 1 - (1 - expected) * (1 - rng.uniform(0.5, 1.0) * layer)
        torch.testing.assert_close(add_rain(image, np.random.default_rng(seed)), expected, atol=1e-6, rtol=0)


def test_degrade_is_the_tasks_degradation_then_maybe_jpeg():
    image = photo_like(40, 40)
    for task, degradation in (("denoise", random_noise), ("deblur", random_blur), ("derain", add_rain)):
        for seed in range(3):
            rng = np.random.default_rng(seed)
            expected = maybe_jpeg(degradation(image, rng), rng, 0.5)
            torch.testing.assert_close(degrade(image, task, seed, jpeg_share=0.5), expected, atol=0, rtol=0)


def test_rain_of_given_parameters_and_no_drops():
    image = photo_like(48, 40)
    rng = np.random.default_rng(11)
    expected = image
    for _ in range(1 + int(rng.random() < 0.4)):
        drops = (rng.random((48, 40)) < 0.01) * rng.uniform(0.4, 1.0, (48, 40))
        streaks = blur(torch.from_numpy(drops.astype(np.float32))[None], line_kernel(12, 20, 1.2))
        expected = 1 - (1 - expected) * (1 - 0.7 * (streaks / streaks.amax()).clamp(0, 1))
    rainy = add_rain(
        image, np.random.default_rng(11), density=0.01, length=12, angle=20, streak_width=1.2, brightness=0.7
    )
    torch.testing.assert_close(rainy, expected, atol=1e-6, rtol=0)
    no_drops = add_rain(image, np.random.default_rng(0), density=0.0)
    torch.testing.assert_close(no_drops, image, atol=1e-7, rtol=0)  # no drop, no streak (and no 0 / 0)


# What the validation sets and benchmarks were degraded with (`validation_pairs` degrades photo i with seed i): the
# recorded PSNRs of docs/EVALUATION.md and the training logs compare models on exactly these inputs, so a change to
# any degradation (a range, a probability, a kernel) must come with re-measured tables, and with new values here.
# Each entry: mean, standard deviation and ramp-weighted mean of degrade(photo_like(40, 36), task, seed), seeds 0-5.
RECORDED_DEGRADATIONS = {
    "deblur": [
        [0.48756, 0.146961, 0.247091],
        [0.4868, 0.121066, 0.246419],
        [0.48782, 0.104819, 0.246277],
        [0.4871, 0.129816, 0.246735],
        [0.488273, 0.145134, 0.247453],
        [0.487683, 0.137283, 0.247088],
    ],
    "derain": [
        [0.553377, 0.172137, 0.282853],
        [0.586336, 0.167715, 0.296922],
        [0.685409, 0.140649, 0.344957],
        [0.632117, 0.15365, 0.333961],
        [0.68514, 0.143098, 0.358626],
        [0.612663, 0.156649, 0.304989],
    ],
    "denoise": [
        [0.48685, 0.164085, 0.247348],
        [0.483796, 0.175002, 0.245925],
        [0.487186, 0.171828, 0.246868],
        [0.487804, 0.164009, 0.247587],
        [0.483254, 0.199257, 0.243821],
        [0.481332, 0.243371, 0.244598],
    ],
}
# Second moments (rows^2, columns^2, rows x columns about the centre) of the 33 x 33 training shake kernels, seeds 0-1.
RECORDED_SHAKES = {
    "smooth": [[0.5811, 1.0325, -0.2222], [3.5215, 17.2317, -1.3857]],
    "jerky": [[3.0013, 1.3718, -1.3224], [0.6373, 0.9369, 0.0361]],
    "reversal": [[16.6058, 22.9524, -1.3378], [3.345, 2.1636, 2.0121]],
}


def summary(image: torch.Tensor) -> list[float]:
    image = image.double()
    height, width = image.shape[-2:]
    ramp = torch.arange(height * width, dtype=torch.float64).reshape(height, width) / (height * width)
    return [image.mean().item(), image.std().item(), (image * ramp).mean().item()]


@pytest.mark.parametrize("task", TASKS)
def test_the_same_seed_degrades_as_when_the_quality_tables_were_measured(task):
    image = photo_like(40, 36)
    measured = [summary(degrade(image, task, seed)) for seed in range(6)]
    # 1e-5: a few 8-bit JPEG levels rounding the other way on another CPU; any change of a degradation moves more.
    np.testing.assert_allclose(measured, RECORDED_DEGRADATIONS[task], atol=1e-5, rtol=0)


@pytest.mark.parametrize("style", TRAJECTORY_STYLES)
def test_the_same_seed_shakes_as_when_the_quality_tables_were_measured(style):
    rows, columns = np.mgrid[:33, :33] - 16.0
    moments = []
    for seed in range(2):
        kernel = motion_blur_kernel(33, np.random.default_rng(seed), style=style).astype(np.float64)
        moments.append([(kernel * rows**2).sum(), (kernel * columns**2).sum(), (kernel * rows * columns).sum()])
    np.testing.assert_allclose(moments, RECORDED_SHAKES[style], atol=1e-3, rtol=0)


# ---------------------------------------------------------------------------------------------------- edges and limits
# Written against the survivors of a mutation run (docs/TESTING.md, "Mutation testing"): the kernels' shapes at the
# grid's edge, images too small to mirror, inputs outside [0, 1], and the messages of the refusals.
def reference_shake_kernel(points: np.ndarray, size: int, length: float) -> np.ndarray:
    """The trajectory scaled to `min(length, size - 2)` pixels across, centred on the grid, each point spread over its
    four neighbouring taps by its sub-pixel position."""
    scaled = points * (min(length, size - 2) / (2 * np.abs(points).max())) + (size - 1) / 2
    kernel = np.zeros((size, size))
    for x, y in scaled:
        row, column = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - row, x - column
        kernel[row, column] += (1 - fy) * (1 - fx)
        kernel[row + 1, column] += fy * (1 - fx)
        kernel[row, column + 1] += (1 - fy) * fx
        kernel[row + 1, column + 1] += fy * fx
    return kernel / kernel.sum()


@pytest.mark.parametrize(
    "size, length, style, seed",
    [
        (17, 40.0, "smooth", 0),
        (16, 14.0, "jerky", 1),
        (15, 13.0, "reversal", 2),
        (15, 13.0, "smooth", 5),
        (33, 20.0, "jerky", 3),
    ],
)
def test_shake_kernel_splats_the_scaled_trajectory_up_to_the_grids_edge(size, length, style, seed):
    points = shake_trajectory(np.random.default_rng(seed), style)
    kernel = motion_blur_kernel(size, np.random.default_rng(seed), length=length, style=style)
    np.testing.assert_allclose(kernel, reference_shake_kernel(points, size, length), atol=1e-7)


def test_shake_kernel_of_random_length_and_the_default_style():
    rng = np.random.default_rng(4)
    points = shake_trajectory(rng, "smooth")
    length = rng.uniform(3, 33 - 2)
    np.testing.assert_allclose(
        motion_blur_kernel(33, np.random.default_rng(4)), reference_shake_kernel(points, 33, length), atol=1e-7
    )
    smooth = shake_trajectory(np.random.default_rng(6), "smooth")
    np.testing.assert_array_equal(shake_trajectory(np.random.default_rng(6)), smooth)


def test_cut_shake_kernels_reach_both_edges_of_the_grid():
    """At the largest length a path spans size - 2 pixels: bilinear splatting puts weight on the first or last row and
    column of the grid; over a few seeds both ends of both axes are reached."""
    reached = set()
    for seed in range(12):
        kernel = motion_blur_kernel(15, np.random.default_rng(seed), length=30.0)
        rows, columns = kernel.sum(axis=1), kernel.sum(axis=0)
        reached |= {
            name
            for name, mass in (("top", rows[0]), ("bottom", rows[-1]), ("left", columns[0]), ("right", columns[-1]))
            if mass > 1e-4
        }
    assert reached == {"top", "bottom", "left", "right"}


def test_refusals_name_the_accepted_values():
    with pytest.raises(
        ValueError, match=r"^Unknown trajectory style 'wobbly': expected one of smooth, jerky, reversal$"
    ):
        shake_trajectory(np.random.default_rng(0), "wobbly")
    with pytest.raises(ValueError, match=rf"^Unknown task 'dehaze': expected one of {', '.join(TASKS)}$"):
        degrade(photo_like(), "dehaze", 0)
    with pytest.raises(ValueError, match=r"^Expected a \(3, H, W\) image, got shape \(1, 48, 40\)$"):
        degrade(photo_like()[:1], "denoise", 0)
    with pytest.raises(ValueError, match=r"^JPEG quality must be between 1 and 95, got 96$"):
        jpeg_compress(photo_like(), 96)


def test_blur_takes_double_precision_kernels():
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, 4.0, 6.0, 4.0, 1.0]) / 64  # float64, as numpy builds it
    image = photo_like(12, 11)
    np.testing.assert_allclose(blur(image, kernel).numpy(), scipy_blur(image, kernel, "mirror"), atol=2e-6)
    assert blur(image, kernel).dtype == torch.float32


@pytest.mark.parametrize("height, width", [(2, 2), (2, 7), (7, 2), (9, 1), (1, 1)])
def test_demosaiced_noise_on_images_two_pixels_or_one_pixel_wide(height, width):
    image = torch.from_numpy(np.random.default_rng(height * 10 + width).random((3, height, width))).float()
    noisy = add_demosaiced_noise(image, shot=0.02, read_sigma=0.01, rng=np.random.default_rng(8))
    expected = demosaiced_noise_numpy(
        image.double().numpy(), 0.02, 0.01, 8, mode="mirror" if min(height, width) > 1 else "nearest"
    )
    np.testing.assert_allclose(noisy.numpy(), expected, atol=1e-5)


def test_demosaiced_noise_stays_in_range_and_has_no_shot_noise_below_black():
    image = torch.zeros(3, 16, 16)
    image[:, :8] = -0.3  # below black: only the read noise
    image[:, 8:] = 0.97
    noisy = add_demosaiced_noise(image, shot=0.05, read_sigma=0.05, rng=np.random.default_rng(9))
    expected = demosaiced_noise_numpy(image.double().numpy(), 0.05, 0.05, 9)
    np.testing.assert_allclose(noisy.numpy(), expected, atol=1e-5)
    assert noisy.min() == 0 and noisy.max() == 1  # both clips are reached


def test_rain_output_is_clipped_to_the_valid_range():
    """Screen blending keeps [0, 1] inputs in range; an input that overshoots (a sharpened photo) is clipped too."""
    image = photo_like(32, 32) * 2 - 0.5  # from -0.1 to 1.3
    rainy = add_rain(image, np.random.default_rng(2), density=0.01, brightness=0.8)
    assert rainy.min() == 0 and rainy.max() == 1
    rng = np.random.default_rng(2)
    layers = 1 + int(rng.random() < 0.4)
    expected = image
    for _ in range(layers):
        density, length = 0.01, rng.uniform(8, 35)
        angle, width = rng.uniform(-35, 35), rng.uniform(0.5, 1.8)
        drops = (rng.random((32, 32)) < density) * rng.uniform(0.4, 1.0, (32, 32))
        streaks = blur(torch.from_numpy(drops.astype(np.float32))[None], line_kernel(length, angle, width))
        expected = 1 - (1 - expected) * (1 - 0.8 * (streaks / streaks.amax()).clamp(0, 1))
    torch.testing.assert_close(rainy, expected.clamp(0, 1), atol=1e-6, rtol=0)


def test_reversal_paths_double_back_at_the_drawn_steps():
    """One to three reversals, at steps drawn from the last seven eighths of the path: each is a turn of about half a
    circle (turns between other steps stay far smaller), at exactly the steps the generator draws first."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        drawn = set(rng.integers(256 // 8, 256, size=int(rng.integers(1, 4))).tolist())
        steps = np.diff(shake_trajectory(np.random.default_rng(seed), "reversal"), axis=0)
        heading = np.arctan2(steps[:, 1], steps[:, 0])
        turns = np.abs(np.angle(np.exp(1j * np.diff(heading))))
        # turns[j] is the change of direction made at step j + 2 of the path.
        assert {int(j) + 2 for j in np.nonzero(turns > 1.5)[0]} == drawn

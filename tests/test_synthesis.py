"""The broad training synthesis: reproducible, spanning the ranges it claims, and the classic one left unchanged."""

import numpy as np
import pytest
import torch

from mprnet_hf.data import synthesis
from mprnet_hf.data.degradations import degrade
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS


def photo_like(height=96, width=80) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    image = torch.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.5 - 0.3 * x * y])
    image[:, height // 4 : height // 2, width // 4 : width // 2] = 0.9
    return image.clamp(0.05, 0.95).float()


@pytest.mark.parametrize("task", TASKS)
def test_broad_synthesis_is_reproducible_and_changes_the_photo(task):
    image = photo_like()
    first = synthesis.synthesize(image, task, np.random.default_rng(3))
    again = synthesis.synthesize(image, task, np.random.default_rng(3))
    other = synthesis.synthesize(image, task, np.random.default_rng(4))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.shape == image.shape and first.dtype == torch.float32
    assert first.min() >= 0 and first.max() <= 1
    assert (first - image).abs().mean() > 1e-3


@pytest.mark.parametrize("task", TASKS)
def test_classic_synthesis_is_the_earlier_degrade(task):
    image = photo_like()
    assert torch.equal(
        synthesis.synthesize(image, task, np.random.default_rng(5), "classic"),
        degrade(image, task, np.random.default_rng(5)),
    )


@pytest.mark.parametrize(
    ("task", "classic_draw"), [("derain", "add_rain"), ("deblur", "random_blur"), ("denoise", "random_noise")]
)
def test_classic_share_one_draws_only_the_classic_degradation(task, classic_draw):
    image = photo_like()
    rng = np.random.default_rng(7)
    rng.random()  # the draw that picks classic or broad
    expected = getattr(synthesis, classic_draw)(image, rng)
    drawn = synthesis.synthesize(image, task, np.random.default_rng(7), jpeg_share=0.0, classic_share=1.0)
    assert torch.equal(drawn, expected)
    broad_only = synthesis.synthesize(image, task, np.random.default_rng(7), jpeg_share=0.0, classic_share=0.0)
    assert not torch.equal(broad_only, expected)


@pytest.mark.parametrize(
    ("task", "default"), [("derain", synthesis.CLASSIC_SHARE), ("denoise", synthesis.NOISE_CLASSIC_SHARE)]
)
def test_no_classic_share_means_the_tasks_default(task, default):
    image = photo_like()
    for seed in range(12):  # enough draws that a different share picks a different kind on some of them
        assert torch.equal(
            synthesis.synthesize(image, task, np.random.default_rng(seed)),
            synthesis.synthesize(image, task, np.random.default_rng(seed), classic_share=default),
        )


def test_classic_or_jpeg_share_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="classic_share"):
        synthesis.synthesize(photo_like(), "derain", np.random.default_rng(0), classic_share=1.5)
    with pytest.raises(ValueError, match="jpeg_share"):
        synthesis.synthesize(photo_like(), "denoise", np.random.default_rng(0), jpeg_share=-0.1)


def test_unknown_synthesis_or_task_is_refused():
    with pytest.raises(ValueError, match="synthesis"):
        synthesis.synthesize(photo_like(), "derain", np.random.default_rng(0), "fancy")
    with pytest.raises(ValueError, match="task"):
        synthesis.synthesize(photo_like(), "dehaze", np.random.default_rng(0))


def test_rain_spans_two_orders_of_magnitude_of_streak_cover():
    image = torch.full((3, 128, 128), 0.3)
    covered = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        rainy = synthesis.broad_rain(image, rng)
        covered.append(float(((rainy - image).abs().amax(0) > 0.05).float().mean()))
    covered = np.array(covered)
    assert covered.min() < 0.02 and covered.max() > 0.5
    assert covered.max() / max(covered.min(), 1e-4) > 100


def test_streak_blends_brighten_add_or_cover_with_the_streak_colour():
    image = torch.tensor([0.2, 0.9]).view(1, 1, 2).expand(3, 1, 2)
    layer = torch.ones(1, 1, 2)
    screen = synthesis.blend_streaks(image, layer, "screen", strength=0.5, colour=0.8)
    additive = synthesis.blend_streaks(image, layer, "additive", strength=0.5, colour=0.8)
    opaque = synthesis.blend_streaks(image, layer, "opaque", strength=1.0, colour=0.8)
    assert torch.all(screen >= image) and torch.all(additive > image)
    # An opaque streak hides what is behind it: a bright sky behind a grey streak gets darker.
    assert torch.allclose(opaque, torch.full_like(opaque, 0.8))
    with pytest.raises(ValueError, match="blend"):
        synthesis.blend_streaks(image, layer, "multiply", 1.0, 1.0)


def test_streaks_keep_their_brightness_whatever_their_length():
    for length in (5.0, 40.0, 150.0):
        kernel = synthesis.streak_kernel(length, 10.0, 0.3)
        assert kernel.max() == pytest.approx(1.0, abs=0.05)


def test_blur_reaches_full_photo_camera_shake_and_the_margin_covers_it():
    extents = []
    for seed in range(80):
        kernel = synthesis.broad_blur_kernel(np.random.default_rng(seed))
        assert kernel.sum() == pytest.approx(1.0, abs=1e-4)
        assert max(kernel.shape) // 2 + 1 <= synthesis.broad_blur_margin()
        rows, columns = np.nonzero(kernel > 1e-3)
        extents.append(max(np.ptp(rows), np.ptp(columns)) + 1)
    assert min(extents) <= 6 and max(extents) >= 30


def test_camera_pipeline_noise_is_correlated_between_neighbours_and_keeps_the_photo():
    image = photo_like(128, 128)
    noisy = synthesis.camera_pipeline_noise(image, np.random.default_rng(1))
    residual = (noisy - image)[1]
    assert abs(float(noisy.mean() - image.mean())) < 0.03
    # Demosaicing spreads each photosite's noise to its neighbours: white noise would correlate near 0.
    flat = residual[40:, 70:]
    correlation = np.corrcoef(flat[:, :-1].flatten().numpy(), flat[:, 1:].flatten().numpy())[0, 1]
    assert correlation > 0.2


def test_jpeg_share_re_encodes_that_share_of_samples():
    image = photo_like()
    always = [synthesis.synthesize(image, "denoise", np.random.default_rng(seed), jpeg_share=1.0) for seed in range(3)]
    for sample in always:  # JPEG decodes to multiples of 1/255
        assert torch.allclose(sample * 255, (sample * 255).round(), atol=1e-4)

"""Tiled restoration: tile layout, and whole-image channel-attention statistics that make tiles agree with the
untiled output."""

import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.data.degradations import degrade
from mprnet_hf.models.mprnet.inference import (
    Tiling,
    blend_window,
    check_tiling,
    passes_over_image,
    restore_image,
    restore_tensor,
    tile_starts,
)
from mprnet_hf.models.mprnet.modeling_mprnet import ChannelAttention, MPRNetOutput
from mprnet_hf.models.mprnet.whole_image_statistics import WholeImageStatistics, owned_spans, part_origins, part_size

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1 / ((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean())).item()


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    config = MPRNetConfig(**TINY, reduction=2)
    return MPRNetModel(config).eval()


class PointwiseRestorer(torch.nn.Module):
    """A stand-in for MPRNetModel whose stages restore every pixel from that pixel alone (a 1x1 convolution mixing
    the channels, a different one per stage): its output cannot depend on how the image is cut into tiles, so any
    difference between tiled and untiled output is the tiler's."""

    def __init__(self):
        super().__init__()
        self.config = MPRNetConfig()
        self.mix = torch.nn.Conv2d(3, 9, 1)
        with torch.no_grad():
            self.mix.weight.copy_(torch.randn(9, 3, 1, 1, generator=torch.Generator().manual_seed(0)))

    def forward(self, pixel_values):
        stages = tuple(torch.tanh(stage) for stage in self.mix(pixel_values).chunk(3, dim=1))
        return MPRNetOutput(reconstruction=stages[-1], stage_reconstructions=stages)


class TileMeanRestorer(PointwiseRestorer):
    """A stand-in whose every output pixel is its tile's mean colour: tiled, each pixel shows how much of each
    tile's output the cross-fade gave it."""

    def forward(self, pixel_values):
        means = pixel_values.mean(dim=(2, 3), keepdim=True).expand_as(pixel_values)
        return MPRNetOutput(reconstruction=means, stage_reconstructions=(means, means, means))


def test_blend_window_is_the_hand_computed_ramp():
    # Distance to the nearest edge plus half a pixel, over the overlap, at most 1: 0.5/2, 1.5/2, 2.5/2 -> 1, ...
    ramp_4 = torch.tensor([0.25, 0.75, 0.75, 0.25])
    ramp_6 = torch.tensor([0.25, 0.75, 1.0, 1.0, 0.75, 0.25])
    torch.testing.assert_close(blend_window(4, 6, 2, "cpu"), ramp_4[:, None] * ramp_6[None, :], atol=0, rtol=0)
    third = torch.tensor([0.5, 1.5, 2.5, 3, 3, 2.5, 1.5, 0.5]) / 3
    torch.testing.assert_close(blend_window(1, 8, 3, "cpu"), (third.clamp(max=1) / 6)[None, :], atol=1e-7, rtol=0)
    # Without overlap every tile pixel still counts, the outermost ones half.
    torch.testing.assert_close(blend_window(2, 4, 0, "cpu")[0], torch.tensor([0.25, 0.5, 0.5, 0.25]), atol=0, rtol=0)
    assert blend_window(3, 5, 4, "cpu", dtype=torch.float64).dtype == torch.float64


def test_tiles_cross_fade_linearly_over_the_overlap():
    """Two tiles side by side (columns 0-31 and 24-55) with different outputs: the restored row goes from the first
    tile's value to the second's in equal steps over the 8 overlapping columns, and shows each alone elsewhere."""
    image = torch.zeros(1, 3, 8, 56)
    image[..., 24:32] = 0.5
    image[..., 32:] = 1.0
    left, right = (24 * 0 + 8 * 0.5) / 32, (8 * 0.5 + 24 * 1.0) / 32  # the two tiles' means: 0.125 and 0.875
    expected = torch.full((56,), left)
    expected[24:32] = left + (right - left) * (torch.arange(8) + 0.5) / 8
    expected[32:] = right
    (restored,) = restore_tensor(
        TileMeanRestorer(), image, tile_size=32, tile_overlap=8, return_stages=False, statistics_passes=0
    )
    torch.testing.assert_close(restored, expected.expand(1, 3, 8, 56), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "height,width,tile,overlap",
    [
        (70, 90, 48, 8),  # a 2 x 2 grid whose last tiles overlap more than asked
        (48, 97, 48, 16),  # exactly one tile high; 97 = 48 + 49: three columns
        (33, 200, 64, 0),  # lower than a tile; tiles that only touch
        (129, 65, 64, 31),  # one pixel more than two tiles; the largest overlap allowed
        (16, 16, 16, 4),  # exactly one tile: restored whole
        (200, 3, 16, 4),  # a strip narrower than a tile
    ],
)
def test_tiled_output_equals_untiled_for_a_pointwise_model(height, width, tile, overlap):
    model = PointwiseRestorer()
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    untiled = restore_tensor(model, images)
    tiled = restore_tensor(model, images, tile_size=tile, tile_overlap=overlap, statistics_passes=0)
    assert len(tiled) == 3
    for tiled_stage, untiled_stage in zip(tiled, untiled):
        torch.testing.assert_close(tiled_stage, untiled_stage, atol=1e-6, rtol=0)
    assert not torch.allclose(untiled[0], untiled[2], atol=0.1)  # the three stages are told apart


def test_batch_is_tiled_like_the_untiled_reference():
    """Each image of a tiled batch against the model run on that image alone, untiled."""
    model = PointwiseRestorer()
    images = torch.rand(3, 3, 70, 90, generator=torch.Generator().manual_seed(9))
    images[1] *= 0.5  # different content per image, so that a mix-up between batch entries shows
    (batched,) = restore_tensor(model, images, tile_size=48, tile_overlap=8, return_stages=False, statistics_passes=0)
    for index in range(3):
        with torch.no_grad():
            alone = model(images[index : index + 1]).reconstruction
        torch.testing.assert_close(batched[index : index + 1], alone, atol=1e-6, rtol=0)


def test_restore_image_tiles_as_asked_and_reports_progress():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 56, 3), dtype=np.uint8))
    calls = []
    restored = restore_image(
        TileMeanRestorer(),
        image,
        tile_size=32,
        tile_overlap=8,
        statistics_passes=0,
        progress=lambda done, total: calls.append((done, total)),
    )
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    (expected,) = restore_tensor(
        TileMeanRestorer(), pixels, tile_size=32, tile_overlap=8, return_stages=False, statistics_passes=0
    )
    expected = expected[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255
    # To the 8-bit level: a tile mean of exactly 123.5 / 255 rounds either way depending on float32 rounding.
    np.testing.assert_allclose(np.asarray(restored.image), expected, atol=0.5 + 1e-3, rtol=0)
    assert calls == [(1, 2), (2, 2)] and restored.input_mode == "RGB" and len(restored.stages) == 3
    with pytest.raises(ValueError, match="fp16 autocast is only supported on GPU"):  # the precision reaches it too
        restore_image(TileMeanRestorer(), image, precision="fp16")


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 32), (257, 256, 64), (512, 128, 0), (97, 48, 16)])
def test_tiles_cover_each_axis_and_owned_spans_split_it(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    assert all(next_start - start <= tile - overlap for start, next_start in zip(starts, starts[1:]))
    spans = owned_spans(starts, tile, length)
    assert spans[0].start == 0 and spans[-1].stop == length
    assert all(span.stop == following.start for span, following in zip(spans, spans[1:]))
    for start, span in zip(starts, spans):
        assert start <= span.start < span.stop <= start + tile


def test_one_tile_records_exactly_the_untiled_models_means(tiny_model):
    """The bookkeeping (which batch entry is which quarter or half, at which scale, over which pixels) checked against
    the means the untiled model computes: a single tile covering the image must record exactly those."""
    images = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    untiled_means = []

    def remember_mean(block, inputs):
        features = inputs[0]
        untiled_means.append(features.mean(dim=(2, 3)).unflatten(0, (-1, 2)).transpose(0, 1))

    blocks = [module for module in tiny_model.modules() if isinstance(module, ChannelAttention)]
    # Before the block runs: in inference it gates its input in place.
    handles = [block.register_forward_pre_hook(remember_mean) for block in blocks]
    with torch.inference_mode():
        tiny_model(images)
    for handle in handles:
        handle.remove()

    statistics = WholeImageStatistics(tiny_model, 48, 64, batch_size=2)
    statistics.start_pass(record=True)
    with statistics.attached(), torch.inference_mode():
        statistics.start_tile(0, 0, 48, 64, range(48), range(64))
        tiny_model(images)
    statistics.start_pass(record=False)

    assert len(statistics.means) == len(untiled_means) == len(blocks)
    assert {means.shape[1] for means in statistics.means} == {1, 2, 4}  # the whole, halves and quarters all occur
    for recorded, expected in zip(statistics.means, untiled_means):
        torch.testing.assert_close(recorded.float(), expected, atol=1e-6, rtol=1e-5)


def test_part_layout_follows_the_models_batch_order():
    assert part_origins(48, 64, 4) == [(0, 0), (0, 32), (24, 0), (24, 32)]
    assert part_origins(48, 64, 2) == [(0, 0), (24, 0)]
    assert part_size(48, 64, 4) == (24, 32) and part_size(48, 64, 2) == (24, 64) and part_size(48, 64, 1) == (48, 64)


@pytest.fixture(scope="module")
def building():
    """A held-out example photo at 512 x 354, larger than two tiles of 256 in each direction."""
    with Image.open(REPO_ROOT / "examples" / "clean" / "building.png") as image:
        image = image.convert("RGB").resize((512, 354), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.slow
@pytest.mark.parametrize("task", ["deblur", "denoise"])
def test_whole_image_statistics_make_tiles_agree_with_the_untiled_output(building, task):
    model = MPRNetModel.from_pretrained(REPO_ROOT / "checkpoints" / f"mprnet-{task}-small").eval()
    degraded = degrade(building, task, seed=0)[None]
    untiled = restore_tensor(model, degraded, return_stages=False)[0]
    own_statistics = restore_tensor(
        model, degraded, tile_size=256, tile_overlap=32, return_stages=False, statistics_passes=0
    )[0]
    whole_statistics = restore_tensor(model, degraded, tile_size=256, tile_overlap=32, return_stages=False)[0]
    # How far tiles with their own statistics stray depends on the weights (the deblur weights of 2026-12-07 stray
    # less than earlier ones); the whole image's statistics must still bring them close and at least halve the error.
    assert psnr(untiled, whole_statistics) > 45
    assert psnr(untiled, whole_statistics) > psnr(untiled, own_statistics) + 3


@pytest.mark.slow
def test_batch_is_tiled_as_each_image_alone(tiny_model):
    """With whole-image statistics each image of a batch must get its own: compared with each image alone, tiled,
    and with the untiled output (which tiles only approximate, and which a batch mix-up would be far from)."""
    images = torch.rand(2, 3, 70, 90, generator=torch.Generator().manual_seed(2))
    images[1] = images[1] * 0.3 + 0.6  # a brighter, flatter image: other channel statistics
    batched = restore_tensor(tiny_model, images, tile_size=48, tile_overlap=8, return_stages=False)[0]
    untiled = restore_tensor(tiny_model, images, return_stages=False)[0]
    for index in range(2):
        alone = restore_tensor(
            tiny_model, images[index : index + 1], tile_size=48, tile_overlap=8, return_stages=False
        )[0]
        torch.testing.assert_close(batched[index : index + 1], alone, atol=1e-5, rtol=1e-5)
        other = 1 - index
        assert psnr(batched[index], untiled[index]) > psnr(batched[index], untiled[other]) + 10


@pytest.mark.slow
def test_statistics_passes_change_only_tiled_restores(tiny_model):
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    one_tile = [
        restore_tensor(tiny_model, images, tile_size=96, tile_overlap=8, statistics_passes=passes)[-1]
        for passes in (0, 1)
    ]
    torch.testing.assert_close(one_tile[0], one_tile[1], atol=0, rtol=0)
    tiled = [
        restore_tensor(tiny_model, images, tile_size=48, tile_overlap=8, statistics_passes=passes)
        for passes in (0, 1, 2)
    ]
    assert all(len(stages) == 3 for stages in tiled)
    assert not torch.equal(tiled[0][-1], tiled[1][-1])
    assert not torch.equal(tiled[1][-1], tiled[2][-1])


def test_progress_counts_every_pass(tiny_model):
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(4))
    calls = []
    restore_tensor(
        tiny_model, images, tile_size=48, tile_overlap=8, progress=lambda done, total: calls.append((done, total))
    )
    tiles = len(tile_starts(70, 48, 8)) * len(tile_starts(90, 48, 8))
    assert calls == [(done, 2 * tiles) for done in range(1, 2 * tiles + 1)]


def test_image_a_few_pixels_wide_is_tiled(tiny_model):
    """Its right half after padding holds no real pixel: no statistics exist for it, and tiles keep their own."""
    strip = torch.rand(1, 3, 200, 3, generator=torch.Generator().manual_seed(5))
    restored = restore_tensor(tiny_model, strip, tile_size=64, tile_overlap=16, return_stages=False)[0]
    untiled = restore_tensor(tiny_model, strip, return_stages=False)[0]
    assert restored.shape == strip.shape
    assert psnr(restored, untiled) > 28  # measured 32.4 dB: tiles 64 rows high see less of the strip's context


def test_local_attention_statistics_need_no_extra_pass():
    torch.manual_seed(0)
    config = MPRNetConfig(**TINY, reduction=2, local_attention_window=32)
    model = MPRNetModel(config).eval()
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(6))
    calls = []
    outputs = [
        restore_tensor(
            model,
            images,
            tile_size=48,
            tile_overlap=8,
            return_stages=False,
            statistics_passes=passes,
            progress=lambda done, total: calls.append(total),
        )[0]
        for passes in (0, 1)
    ]
    torch.testing.assert_close(outputs[0], outputs[1], atol=0, rtol=0)
    assert set(calls) == {len(tile_starts(70, 48, 8)) * len(tile_starts(90, 48, 8))}


@pytest.mark.parametrize("height, width", [(48, 40), (40, 48), (48, 48)])
def test_an_image_exactly_one_tile_high_or_wide_is_restored_whole(tiny_model, height, width):
    calls = []
    restore_tensor(
        tiny_model,
        torch.rand(1, 3, height, width),
        tile_size=48,
        tile_overlap=8,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(1, 1)]  # one pass over one tile: no statistics pass


@pytest.mark.parametrize(
    "tile_size, tile_overlap, message",
    [
        (8, 0, "tile_size must be a multiple of 8 and at least 16, got 8"),
        (12, 0, "tile_size must be a multiple of 8 and at least 16, got 12"),
        (52, 0, "tile_size must be a multiple of 8 and at least 16, got 52"),
        (16, 8, "tile_overlap must be between 0 and tile_size / 2 (8), got 8"),
        (64, -1, "tile_overlap must be between 0 and tile_size / 2 (32), got -1"),
    ],
)
def test_unusable_tilings_are_refused(tile_size, tile_overlap, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_tiling(tile_size, tile_overlap)
    check_tiling(16, 7)
    check_tiling(512, 255)


@pytest.mark.parametrize(
    "tiling, message",
    [
        (dict(size="512"), "tile_size must be a whole number, None (whole images) or 'auto', got '512'"),
        (dict(size=True), "tile_size must be a whole number"),
        (dict(size=64, overlap=32), "tile_overlap must be between 0 and tile_size / 2 (32), got 32"),
        (
            dict(overlap=128),
            "tile_overlap must be between 0 and 128 with automatic tiles (at least 256 pixels), got 128",
        ),
        (dict(size=None, statistics_passes=-1), "statistics_passes must be a whole number"),
    ],
)
def test_tiling_options_are_checked_when_made(tiling, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Tiling(**tiling)


def test_every_tile_size_has_a_valid_default_overlap(tiny_model):
    assert [Tiling(size=size).overlap_for(size) for size in (16, 128, 200, 256, 1024)] == [4, 32, 50, 64, 64]
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(9))
    calls = []
    restore_tensor(
        tiny_model, images, tile_size=48, statistics_passes=0, progress=lambda done, total: calls.append(total)
    )
    assert calls[-1] == len(tile_starts(70, 48, 12)) * len(tile_starts(90, 48, 12))


def test_automatic_tiles_restore_whole_when_memory_allows(tiny_model):
    """The default of restore_tensor, restore_image and the pipeline: a small image on this machine is not tiled."""
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(10))
    calls = []
    automatic = restore_tensor(tiny_model, images, progress=lambda done, total: calls.append((done, total)))
    whole = restore_tensor(tiny_model, images, tile_size=None)
    assert calls == [(1, 1)]
    torch.testing.assert_close(automatic[-1], whole[-1], atol=0, rtol=0)
    assert not tiny_model.forward_is_compiled


@pytest.mark.parametrize("passes", [-1, 1.5, True, "1"])
def test_bad_statistics_passes_are_refused(tiny_model, passes):
    with pytest.raises(ValueError, match="statistics_passes must be a whole number"):
        restore_tensor(tiny_model, torch.rand(1, 3, 32, 32), tile_size=16, tile_overlap=4, statistics_passes=passes)


@pytest.mark.slow
def test_passes_over_image_match_what_restore_tensor_runs(tiny_model):
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(7))
    for tile_size, statistics_passes in [(None, 1), (96, 1), (48, 0), (48, 1), (48, 2)]:
        calls = []
        restore_tensor(
            tiny_model,
            images,
            tile_size=tile_size,
            tile_overlap=8,
            statistics_passes=statistics_passes,
            progress=lambda done, total, calls=calls: calls.append(total),
        )
        tiles = 1 if tile_size in (None, 96) else len(tile_starts(70, 48, 8)) * len(tile_starts(90, 48, 8))
        assert calls[-1] == tiles * passes_over_image(tiny_model, 70, 90, tile_size, statistics_passes)
    local = MPRNetModel(MPRNetConfig(**TINY, reduction=2, local_attention_window=32))
    assert passes_over_image(local, 70, 90, 48) == 1


@pytest.mark.slow
def test_concurrent_restores_with_one_model_keep_their_own_statistics(tiny_model):
    """The app restores two requests with the same model at once: each thread's hooks must gate its own tiles only."""
    generator = torch.Generator().manual_seed(8)
    jobs = [
        (torch.rand(1, 3, 150, 190, generator=generator), 64),
        (torch.rand(1, 3, 120, 100, generator=generator), 48),
        (torch.rand(1, 3, 90, 70, generator=generator), None),
    ]

    def restore(images, tile_size):
        return restore_tensor(tiny_model, images, tile_size=tile_size, tile_overlap=8, return_stages=False)[0]

    alone = [restore(*job) for job in jobs]
    start = threading.Barrier(len(jobs))
    results, errors = {}, []

    def worker(index):
        start.wait()
        try:
            for _ in range(3):
                results.setdefault(index, []).append(restore(*jobs[index]))
        except Exception as error:  # reported below with the thread's job
            errors.append((index, error))

    threads = [threading.Thread(target=worker, args=(index,)) for index in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for index, expected in enumerate(alone):
        for restored in results[index]:
            torch.testing.assert_close(restored, expected, atol=1e-6, rtol=1e-6)

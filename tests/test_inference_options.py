"""The choices `restore_tensor` makes before it restores: precision, tile size from memory, tile plans, whether
recorded statistics apply, and which runtime runs the model; each against hand-computed values."""

import builtins
import contextlib
import inspect
import logging
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mprnet_hf
from conftest import TINY
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.detection import Detection
from mprnet_hf.models.mprnet import inference
from mprnet_hf.models.mprnet.inference import (
    AUTOMATIC,
    TilePlan,
    Tiling,
    autocast_context,
    balanced_tile_size,
    choose_tile_size,
    default_tile_overlap,
    estimated_peak_bytes,
    free_memory_bytes,
    plan_tiles,
    restore_image,
    restore_tensor,
    takes_recorded_statistics,
    tile_starts,
    why_no_recorded_statistics,
)
from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetOutput
from mprnet_hf.models.mprnet.whole_image_statistics import owned_spans

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The tiny variant's n_feat (8) + ORSNet width (12), times the 40 bytes per pixel and channel of the estimate.
TINY_PEAK_BYTES_PER_PIXEL = 40 * (8 + 12)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig(**TINY, reduction=2)).eval()


class ScaledRestorer(torch.nn.Module):
    """A stand-in without MPRNetModel's inference features: stage k returns the input times k / 4."""

    def __init__(self):
        super().__init__()
        self.config = MPRNetConfig()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, pixel_values):
        stages = tuple(pixel_values * self.scale * k / 4 for k in (1, 2, 3))
        return MPRNetOutput(reconstruction=stages[-1], stage_reconstructions=stages)


# ---------------------------------------------------------------------------------------------------- precision
def test_each_precision_gets_its_autocast():
    assert isinstance(autocast_context(torch.device("cpu"), "fp32"), contextlib.nullcontext)
    bf16 = autocast_context(torch.device("cpu"), "bf16")
    assert isinstance(bf16, torch.autocast) and bf16.device == "cpu" and bf16.fast_dtype == torch.bfloat16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no CUDA here: torch warns that it disables the context
        fp16 = autocast_context(torch.device("cuda"), "fp16")
        cuda_bf16 = autocast_context(torch.device("cuda"), "bf16")
    assert isinstance(fp16, torch.autocast) and fp16.device == "cuda" and fp16.fast_dtype == torch.float16
    assert cuda_bf16.fast_dtype == torch.bfloat16  # not CUDA autocast's default of fp16
    with pytest.raises(ValueError) as refused:
        autocast_context(torch.device("cpu"), "fp16")
    assert str(refused.value) == "fp16 autocast is only supported on GPU; use bf16 on CPU"
    with pytest.raises(ValueError, match=re.escape("precision must be one of fp32, bf16, fp16, got 'fp8'")):
        autocast_context(torch.device("cpu"), "fp8")


def test_bf16_restores_come_back_as_float32_close_to_fp32(tiny_model):
    images = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(1))
    full = restore_tensor(tiny_model, images, tile_size=None)
    half = restore_tensor(tiny_model, images, tile_size=None, precision="bf16")
    assert [stage.dtype for stage in half] == [torch.float32] * 3
    for half_stage, full_stage in zip(half, full):
        assert 0 < (half_stage - full_stage).abs().max() < 0.05  # bf16 arithmetic ran, and stayed close


# ---------------------------------------------------------------------------------------------------- memory
def test_peak_estimate_counts_padded_pixels(tiny_model):
    # 37 x 45 pads to 40 x 48 (multiples of 8); 40 x 48 needs no padding.
    assert estimated_peak_bytes(tiny_model, 37, 45) == TINY_PEAK_BYTES_PER_PIXEL * 40 * 48
    assert estimated_peak_bytes(tiny_model, 40, 48) == TINY_PEAK_BYTES_PER_PIXEL * 40 * 48
    assert estimated_peak_bytes(tiny_model, 41, 1) == TINY_PEAK_BYTES_PER_PIXEL * 48 * 8


def test_tile_size_from_memory_is_hand_computed(tiny_model):
    whole = estimated_peak_bytes(tiny_model, 1000, 800)
    # Whole while the estimate fits in 40 % of the memory available, to the byte.
    assert choose_tile_size(tiny_model, 1000, 800, available_bytes=whole / 0.4) is None
    # Just short of that: the largest tile that fits is 832 (sqrt(800000) = 894, rounded down to a multiple of 64);
    # 832 takes the 800 columns in one tile and the 1000 rows in two, and no smaller multiple of 64 does both.
    assert choose_tile_size(tiny_model, 1000, 800, available_bytes=whole / 0.4 - 10) == 832
    # A budget of a 700 x 700 restore: tiles of 640 would be 2 x 2 (rows from 0 and 360, columns from 0 and 160);
    # 2 x 2 tiles overlapping by 64 need only ceil((1000 - 64) / 2) + 64 = 532 rows, so 576.
    budget_700 = 700**2 * TINY_PEAK_BYTES_PER_PIXEL / 0.4
    assert choose_tile_size(tiny_model, 1000, 800, available_bytes=budget_700) == 576
    budget_844 = 844**2 * TINY_PEAK_BYTES_PER_PIXEL / 0.4  # 844 = 13 x 64 + 12: largest 832, 2 x 2 tiles, so 576
    assert choose_tile_size(tiny_model, 1000, 900, available_bytes=budget_844) == 576
    # The same budget with a larger share of it allowed: 1000 x 900 fits whole.
    assert choose_tile_size(tiny_model, 1000, 900, available_bytes=budget_844, memory_share=0.8) is None
    assert choose_tile_size(tiny_model, 1000, 800, available_bytes=1) == 256  # never below 256
    # Without a figure it asks the model's device: this machine fits a small image whole.
    assert choose_tile_size(tiny_model, 70, 90) is None
    assert choose_tile_size(tiny_model, 1, 1, available_bytes=0) == 256
    with pytest.raises(ValueError, match=re.escape("height and width must be at least 1, got 0x10")):
        choose_tile_size(tiny_model, 0, 10, available_bytes=2**30)
    with pytest.raises(ValueError, match=re.escape("height and width must be at least 1, got 10x0")):
        choose_tile_size(tiny_model, 10, 0, available_bytes=2**30)
    with pytest.raises(ValueError, match=re.escape("memory_share must be in (0, 1], got 0")):
        choose_tile_size(tiny_model, 10, 10, available_bytes=2**30, memory_share=0)


def test_tile_size_honours_the_share_and_bytes_per_channel_it_is_given(tiny_model):
    whole = estimated_peak_bytes(tiny_model, 1000, 800)
    # A share of 1 (all of the memory available) is allowed; more than all of it is not.
    assert choose_tile_size(tiny_model, 1000, 800, available_bytes=whole, memory_share=1) is None
    with pytest.raises(ValueError, match=re.escape("memory_share must be in (0, 1], got 1.5")):
        choose_tile_size(tiny_model, 1000, 800, available_bytes=whole, memory_share=1.5)
    # Memory for a whole restore at 40 bytes per pixel and channel is short at 64 (a serving process): the largest
    # tile is then sqrt(800000 * 40 / 64) = 707, so 704, which takes 1000 x 800 in 2 x 2 tiles of 532 rows, so 576
    # (at 40 it would be 832).
    tile = choose_tile_size(tiny_model, 1000, 800, available_bytes=whole / 0.4, bytes_per_channel=64)
    assert tile == 576 and isinstance(tile, int)


def test_largest_automatic_tile_is_rounded_down_before_it_is_balanced(tiny_model):
    # Memory for an 844-pixel square: the largest tile is 832, so an 840-pixel-wide image takes two columns and its
    # 2000 rows three: ceil((2000 - 64) / 3) + 64 = 710 rows, so 768. Unrounded, 840 columns would fit one tile.
    budget_844 = 844**2 * TINY_PEAK_BYTES_PER_PIXEL / 0.4
    tile = choose_tile_size(tiny_model, 2000, 840, available_bytes=budget_844)
    assert tile == 768 and isinstance(tile, int)


@pytest.mark.parametrize("height, width", [(2048, 2048), (4000, 3000), (1000, 257), (5000, 300), (700, 9000)])
@pytest.mark.parametrize("largest", [256, 512, 1664])
def test_balanced_tiles_are_as_few_as_the_largest_and_no_larger_than_needed(height, width, largest):
    tile = balanced_tile_size(height, width, largest)
    assert isinstance(tile, int) and tile % 64 == 0 and 256 <= tile <= largest  # a float tile cannot slice tensors

    def tile_count(side):
        overlap = default_tile_overlap(largest)
        return len(tile_starts(height, side, overlap)) * len(tile_starts(width, side, overlap))

    assert tile_count(tile) == tile_count(largest)
    if tile > 256:
        assert tile_count(tile - 64) > tile_count(largest)


def test_a_2048_photo_whose_largest_tile_is_1664_gets_four_tiles_of_1088():
    # Four tiles of 1664 would restore 11.1 megapixels for a 4.2-megapixel photo; four of 1088, 4.7.
    assert balanced_tile_size(2048, 2048, 1664) == 1088


def meminfo_available_bytes() -> int:
    with open("/proc/meminfo") as meminfo:
        line = next(line for line in meminfo if line.startswith("MemAvailable:"))
    return int(line.split()[1]) * 1024


def test_free_memory_is_what_the_system_reports(monkeypatch):
    psutil = pytest.importorskip("psutil")
    assert free_memory_bytes(torch.device("cpu")) == pytest.approx(psutil.virtual_memory().available, rel=0.2)
    # Without psutil, /proc/meminfo; without either, a small machine's 4 GiB.
    monkeypatch.setitem(sys.modules, "psutil", None)
    assert free_memory_bytes(torch.device("cpu")) == pytest.approx(meminfo_available_bytes(), rel=0.2)

    def no_file(*args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(builtins, "open", no_file)
    assert free_memory_bytes(torch.device("cpu")) == 4 * 2**30


# ---------------------------------------------------------------------------------------------------- tiling options
def test_tiling_accepts_the_edges_of_what_is_valid(tiny_model):
    assert Tiling(overlap=127).overlap_for(256) == 127  # automatic tiles are at least 256: overlaps up to 127
    assert Tiling(overlap=0).overlap_for(256) == 0
    for overlap in (-1, 128):
        with pytest.raises(
            ValueError, match=re.escape(f"between 0 and 128 with automatic tiles (at least 256 pixels), got {overlap}")
        ):
            Tiling(overlap=overlap)
    assert Tiling(size=None, overlap=1000).tile_size_for(tiny_model, 5000, 5000) is None  # whole: overlap unused
    assert Tiling(size=16).overlap_for(16) == 4 and Tiling(size=16, overlap=7).overlap_for(16) == 7
    assert Tiling(size=48).tile_size_for(tiny_model, 70, 90) == 48
    assert Tiling(statistics_passes=0).statistics_passes == 0
    with pytest.raises(ValueError, match=re.escape("tile_size must be a multiple of 8 and at least 16, got 8")):
        Tiling(size=8)
    with pytest.raises(
        ValueError, match=re.escape("tile_size must be a whole number, None (whole images) or 'auto', got 64.0")
    ):
        Tiling(size=64.0)
    with pytest.raises(
        ValueError, match=re.escape("statistics_passes must be a whole number >= 0 (1 by default), got -1")
    ):
        Tiling(size=None, statistics_passes=-1)


def test_automatic_tiles_follow_the_memory_estimate(tiny_model):
    assert Tiling().size == AUTOMATIC
    assert Tiling().tile_size_for(tiny_model, 70, 90) is None
    huge = 200_000  # 40 gigapixels: no machine restores that whole
    assert Tiling().tile_size_for(tiny_model, huge, huge) == choose_tile_size(tiny_model, huge, huge)
    assert Tiling().tile_size_for(tiny_model, huge, huge) is not None


# ---------------------------------------------------------------------------------------------------- tile plans
def test_tile_plan_is_hand_computed(tiny_model):
    plan = plan_tiles(tiny_model, Tiling(size=48, overlap=8), 70, 90)
    # Rows start at 0 and 70 - 48; columns at 0, 40 (a stride of 48 - 8) and 90 - 48.
    assert plan == TilePlan(
        48, 48, 8, [0, 22], [0, 40, 42], [range(0, 35), range(35, 70)], [range(0, 44), range(44, 65), range(65, 90)], 1
    )
    assert plan.tiles == 6
    assert [(top, left) for top, left, _, _ in plan.tile_windows()] == [
        (0, 0),
        (0, 40),
        (0, 42),
        (22, 0),
        (22, 40),
        (22, 42),
    ]
    assert list(plan.tile_windows())[4] == (22, 40, range(35, 70), range(44, 65))
    assert plan_tiles(tiny_model, Tiling(size=48, overlap=8, statistics_passes=3), 70, 90).statistics_passes == 3


def test_tiles_of_a_strip_are_cut_to_its_height(tiny_model):
    plan = plan_tiles(tiny_model, Tiling(size=64, overlap=16, statistics_passes=0), 30, 200)
    assert (plan.tile_height, plan.tile_width, plan.rows, plan.columns) == (30, 64, [0], [0, 48, 96, 136])
    assert plan.owned_columns == owned_spans([0, 48, 96, 136], 64, 200)
    plan = plan_tiles(tiny_model, Tiling(size=64, overlap=16), 200, 30)
    assert (plan.tile_height, plan.tile_width, plan.rows, plan.columns) == (64, 30, [0, 48, 96, 136], [0])
    assert plan.overlap == 16 and plan.owned_rows == owned_spans([0, 48, 96, 136], 64, 200)


def test_images_that_fit_one_tile_get_no_plan(tiny_model):
    assert plan_tiles(tiny_model, Tiling(size=48), 48, 48) is None
    assert plan_tiles(tiny_model, Tiling(size=None), 5000, 5000) is None
    assert plan_tiles(tiny_model, Tiling(size=48), 49, 48) is not None


def test_stand_ins_tile_on_their_own_statistics_and_say_why(caplog):
    with caplog.at_level(logging.WARNING, logger=inference.logger.name):
        plan = plan_tiles(ScaledRestorer(), Tiling(size=16, overlap=4), 40, 40)
    assert plan.statistics_passes == 0
    assert caplog.messages == [
        "Tiles are restored on their own channel statistics (statistics_passes=0): its code has no "
        "MPRNetModel.channel_statistics() (remote code saved before it existed; install mprnet_hf)."
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=inference.logger.name):
        plan = plan_tiles(ScaledRestorer(), Tiling(size=16, overlap=4, statistics_passes=0), 40, 40)
    assert plan.statistics_passes == 0 and caplog.messages == []  # nothing asked, nothing to say


def test_local_statistics_need_no_pass_and_no_warning(caplog):
    local = MPRNetModel(MPRNetConfig(**TINY, reduction=2, local_attention_window=32))
    with caplog.at_level(logging.WARNING, logger=inference.logger.name):
        plan = plan_tiles(local, Tiling(size=48, overlap=8), 70, 90)
    assert plan.statistics_passes == 0 and caplog.messages == []


def test_why_tiles_cannot_take_recorded_statistics(tiny_model):
    assert why_no_recorded_statistics(tiny_model) is None and takes_recorded_statistics(tiny_model)
    local = MPRNetModel(MPRNetConfig(**TINY, reduction=2, local_attention_window=32))
    assert why_no_recorded_statistics(local) == "test-time local statistics are local already"
    assert not takes_recorded_statistics(local)
    assert why_no_recorded_statistics(ScaledRestorer()) == (
        "its code has no MPRNetModel.channel_statistics() (remote code saved before it existed; install mprnet_hf)"
    )
    compiled = MPRNetModel(MPRNetConfig(**TINY, reduction=2))
    compiled.forward_is_compiled = True  # what compile_forward() sets; compiling itself takes minutes
    assert why_no_recorded_statistics(compiled) == (
        "its forward is compiled with torch.compile, which does not run the override that records them"
    )


# ---------------------------------------------------------------------------------------------------- runtimes
class ConstantRuntime:
    """A whole-image runtime (what `prepare_for_serving` chooses and a server passes) returning float64 stages of
    known values."""

    def __init__(self):
        self.calls = 0

    def __call__(self, images):
        self.calls += 1
        return [torch.full(images.shape, value, dtype=torch.float64) for value in (0.1, 0.2, 0.3)]


@pytest.mark.slow
def test_whole_image_runtime_serves_fp32_whole_restores_only(tiny_model):
    model = MPRNetModel(MPRNetConfig(**TINY, reduction=2)).eval()
    model.load_state_dict(tiny_model.state_dict())
    images = torch.rand(1, 3, 40, 48, generator=torch.Generator().manual_seed(2))
    runtime = ConstantRuntime()

    stages = restore_tensor(model, images, tile_size=None, whole_image_runtime=runtime)
    assert runtime.calls == 1 and [stage.dtype for stage in stages] == [torch.float32] * 3
    for stage, value in zip(stages, (0.1, 0.2, 0.3)):
        torch.testing.assert_close(stage, torch.full_like(stage, value))
    (last,) = restore_tensor(model, images, tile_size=None, return_stages=False, whole_image_runtime=runtime)
    torch.testing.assert_close(last, torch.full_like(last, 0.3))

    # bf16 is PyTorch's own autocast: the runtime is not asked.
    restore_tensor(model, images, tile_size=None, precision="bf16", whole_image_runtime=runtime)
    assert runtime.calls == 2
    # Tiles with a statistics pass need PyTorch's hooks; tiles on their own statistics take the runtime.
    tiled = restore_tensor(model, images, tile_size=16, tile_overlap=4, whole_image_runtime=runtime)
    assert runtime.calls == 2
    torch.testing.assert_close(tiled[-1], restore_tensor(tiny_model, images, tile_size=16, tile_overlap=4)[-1])
    on_own = restore_tensor(
        model, images, tile_size=16, tile_overlap=4, statistics_passes=0, whole_image_runtime=runtime
    )
    assert runtime.calls == 2 + 3 * 4  # 40 x 48 in tiles of 16 overlapping by 4: 3 rows, 4 columns
    torch.testing.assert_close(on_own[-1], torch.full_like(on_own[-1], 0.3))


def test_photos_restore_on_the_runtime_a_server_passes(tiny_model):
    """A server passes the runtime its trial chose for each task (`ServingReport.runtimes`) with every photo: 8-bit
    and 16-bit photos alike, and each step of auto mode gets its own task's."""
    from mprnet_hf.auto import restore_photo_auto
    from mprnet_hf.data.image_io import Photo, restore_photo

    runtime = ConstantRuntime()
    eight_bit = Photo(Image.new("RGB", (24, 16), (90, 120, 150)))
    restored, _ = restore_photo(tiny_model, eight_bit, tile_size=None, whole_image_runtime=runtime)
    assert runtime.calls == 1 and np.asarray(restored.pixels).max() == round(0.3 * 255)
    sixteen_bit = Photo(np.full((16, 24, 4), 30000, dtype=np.uint16))
    restored, _ = restore_photo(tiny_model, sixteen_bit, tile_size=None, whole_image_runtime=runtime)
    assert runtime.calls == 2 and restored.pixels[..., 0].max() == round(0.3 * 65535)
    assert (restored.pixels[..., 3] == 30000).all()

    class LooksNoisy:
        def detect(self, pixels, after=None):
            return Detection({"blur": 0.0, "noise": 1.0, "rain": 0.0, "jpeg": 0.0, "clean": 0.0})

    by_task = {"denoise": ConstantRuntime(), "deblur": ConstantRuntime()}
    models = dict.fromkeys(("deblur", "derain", "denoise"), tiny_model)
    restore_photo_auto(models, eight_bit, LooksNoisy(), by_task, tile_size=None)
    assert by_task["denoise"].calls == 1 and by_task["deblur"].calls == 0


def test_stages_are_returned_in_order_on_the_input_device():
    images = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(3))
    for tile_size in (None, 16):
        stages = restore_tensor(ScaledRestorer(), images, tile_size=tile_size, tile_overlap=4)
        for stage, k in zip(stages, (1, 2, 3)):
            torch.testing.assert_close(stage, images * k / 4, atol=1e-6, rtol=0)
            assert stage.device == images.device and stage.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- restore_image
def test_restore_image_returns_every_stage_as_an_image():
    pixels = np.random.default_rng(4).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    restored = mprnet_hf.restore_image(ScaledRestorer(), Image.fromarray(pixels), task="denoise")
    for stage, k in zip(restored.stages, (1, 2, 3)):
        assert stage.mode == "RGB" and stage.size == (28, 20)
        np.testing.assert_allclose(np.asarray(stage), pixels.astype(float) * k / 4, atol=0.5 + 1e-3)
    assert np.array_equal(np.asarray(restored.image), np.asarray(restored.stages[-1]))


def test_restore_image_gives_the_result_in_the_inputs_mode():
    rgba = np.random.default_rng(5).integers(0, 256, (12, 10, 4), dtype=np.uint8)
    restored = restore_image(ScaledRestorer(), Image.fromarray(rgba, "RGBA"))
    assert restored.input_mode == "RGBA" and restored.image.mode == "RGBA"
    assert np.array_equal(np.asarray(restored.image)[..., 3], rgba[..., 3])  # the alpha comes back untouched
    np.testing.assert_allclose(np.asarray(restored.image)[..., :3], rgba[..., :3] * 0.75, atol=0.5 + 1e-3)
    assert all(stage.mode == "RGB" for stage in restored.stages)
    grey = restore_image(ScaledRestorer(), Image.new("L", (9, 7), 200))
    assert grey.image.mode == "L" and np.asarray(grey.image).max() == 150


def test_restore_image_refuses_unknown_tasks():
    with pytest.raises(
        ValueError, match=re.escape("Unknown task 'dehaze': 'auto', or the model's own task (deblur, derain, denoise)")
    ):
        mprnet_hf.restore_image(ScaledRestorer(), Image.new("RGB", (8, 8)), task="dehaze")


def test_auto_mode_comes_from_the_installed_package(tiny_model):
    """The model folder (what a Hub repo carries) has no detector: its pipeline refuses task="auto" before reading
    the image and says what adds it; the installed package's pipeline and restore_image have auto mode."""
    from mprnet_hf.models.mprnet.pipeline_mprnet import ImageRestorationPipeline

    folder_pipeline = ImageRestorationPipeline(model=tiny_model, image_processor=mprnet_hf.MPRNetImageProcessor())
    with pytest.raises(ValueError, match=re.escape("task='auto' needs the mprnet_hf package (pip install mprnet-hf")):
        folder_pipeline("no such file.png", task="auto")
    assert "task" not in inspect.signature(inference.restore_image).parameters
    assert mprnet_hf.AutoImageRestorationPipeline.restore_auto is mprnet_hf.restore_image_auto


@pytest.mark.slow
def test_auto_mode_passes_every_option_on_to_its_steps(tiny_model):
    """A noisy example through task="auto", with tiny models for every task: each step tiles as asked (the tile
    grid and the statistics passes show in the progress counts), and the pixel limit and precision reach it."""
    from mprnet_hf.models.mprnet.configuration_mprnet import TASKS
    from mprnet_hf.models.mprnet.inference import tile_starts

    models = dict.fromkeys(TASKS, tiny_model)
    with Image.open(REPO_ROOT / "examples" / "denoise" / "monarch_noise.png") as photo:
        photo = photo.convert("RGB")
    totals = []
    restored = mprnet_hf.restore_image(
        models,
        photo,
        task="auto",
        tile_size=64,
        tile_overlap=8,
        statistics_passes=2,
        progress=lambda done, total: totals.append(total),
        max_megapixels=0.05,
    )
    assert restored.steps and restored.steps[0] == "denoise" and restored.image.size == photo.size
    # The first step is the given model's restore (not a bundled model's), with the options given.
    denoised = restore_image(tiny_model, photo, tile_size=64, tile_overlap=8, statistics_passes=2).image
    assert np.array_equal(np.asarray(restored.step_images[0]), np.asarray(denoised))
    tiles = len(tile_starts(171, 64, 8)) * len(tile_starts(256, 64, 8))
    assert totals and set(totals) == {tiles * 3}
    totals.clear()
    restore_image(
        tiny_model,
        photo,
        tile_size=64,
        tile_overlap=8,
        statistics_passes=2,
        progress=lambda done, total: totals.append(total),
    )
    assert totals == [tiles * 3] * (tiles * 3)  # the same options without auto mode
    with pytest.raises(ValueError, match=re.escape("above the limit of 0.04 megapixels")):
        mprnet_hf.restore_image(models, photo, task="auto", max_megapixels=0.04)
    with pytest.raises(ValueError, match="fp16 autocast is only supported on GPU"):
        mprnet_hf.restore_image(models, photo, task="auto", precision="fp16")

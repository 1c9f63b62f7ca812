"""Every fast inference path gives the official results (fixtures in ../shared/reference, max error 1e-5), and
test-time local statistics (TLC) behave as specified."""

import json
import resource
import statistics
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import (
    FIXTURES,
    PARITY_TOLERANCE,
    REPO_ROOT,
    TINY,
    assert_within_tolerance,
    fixture_errors,
    fixture_model,
)
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.inference import autocast_context, restore_tensor
from mprnet_hf.models.mprnet.modeling_mprnet import ChannelAttention, box_mean
from mprnet_hf.speed.fast import optimize_for_inference, reuse_freed_memory, to_channels_last


@pytest.mark.parametrize("name", FIXTURES)
def test_channels_last_fast_path_matches_fixtures(reference_dir, name):
    model = optimize_for_inference(fixture_model(reference_dir, name))
    assert model.stage3_orsnet.orb1.conv.weight.is_contiguous(memory_format=torch.channels_last)
    io = load_file(reference_dir / f"fixture_{name}_io.safetensors")

    def restore(images):
        with torch.inference_mode():
            return model(to_channels_last(images)).stage_reconstructions

    assert_within_tolerance(fixture_errors(restore, io))


@pytest.mark.slow
def test_training_path_matches_fixtures_and_inference_leaves_its_input_alone(reference_dir):
    """With autograd recording, the blocks sum and gate out of place (training must backpropagate through them); in
    inference they write into feature maps they made. Both must give the official results, and neither may write
    into the caller's images."""
    model = fixture_model(reference_dir, "deblur")
    io = load_file(reference_dir / "fixture_deblur_io.safetensors")

    def restore_with_autograd(images):
        images = images.clone().requires_grad_(True)
        stages = model(images).stage_reconstructions
        stages[-1].sum().backward()
        assert images.grad is not None and torch.isfinite(images.grad).all()
        return [stage.detach() for stage in stages]

    assert_within_tolerance(fixture_errors(restore_with_autograd, io))
    images = io["input_0"].clone()
    with torch.inference_mode():
        model(images)
    assert torch.equal(images, io["input_0"])


@pytest.mark.parametrize("name", FIXTURES)
def test_eager_benchmark_baseline_matches_fixtures(reference_dir, name):
    """The benchmarks' looped, official-schedule baseline computes the same thing as the library."""
    sys.path.insert(0, str(REPO_ROOT))
    from benchmarks.eager_baseline import official_style_restore

    model = fixture_model(reference_dir, name)
    io = load_file(reference_dir / f"fixture_{name}_io.safetensors")
    assert_within_tolerance(fixture_errors(lambda images: official_style_restore(model, images), io))


# The allocator settings are process-wide, so their tests run in a child process to leave the test process untouched.
needs_glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reuse_freed_memory needs glibc (Linux)")


def output_of_child(script: str, timeout: float) -> str:
    """What a Python child process running `script` from the repository root printed; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip()


REUSE_MEMORY_SCRIPT = """
import sys, torch
from safetensors.torch import load_file
sys.path.insert(0, {tests_dir!r})
from conftest import REFERENCE_DIR, assert_within_tolerance, fixture_errors, fixture_model
from mprnet_hf.speed.fast import optimize_for_inference, reuse_freed_memory
assert reuse_freed_memory() is True
model = optimize_for_inference(fixture_model(REFERENCE_DIR, "deblur"))
io = load_file(REFERENCE_DIR / "fixture_deblur_io.safetensors")
def restore(images):
    with torch.inference_mode():
        return model(images).stage_reconstructions
for _ in range(2):  # the second pass runs on reused memory
    assert_within_tolerance(fixture_errors(restore, io))
print("ok")
"""


@needs_glibc
@pytest.mark.slow
def test_fast_path_with_reused_memory_matches_fixtures(reference_dir):
    script = REUSE_MEMORY_SCRIPT.format(tests_dir=str(REPO_ROOT / "tests"))
    assert output_of_child(script, timeout=300).endswith("ok")


THREAD_REUSE_SCRIPT = """
import json, resource, threading, torch
from mprnet_hf.speed.fast import reuse_freed_memory
assert reuse_freed_memory() is True
faults = []
def feature_maps(channels):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(channels, 1024, 1024)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
# A 48 MiB map fits one of a thread arena's heaps, a 96 MiB one does not; a fresh thread per call, as
# asyncio.to_thread may give each request.
for channels in (12, 24) * 6:
    thread = threading.Thread(target=feature_maps, args=(channels,))
    thread.start()
    thread.join()
print(json.dumps(faults))
"""


@needs_glibc
@pytest.mark.slow
def test_worker_threads_reuse_freed_memory_too():
    """The app restores in worker threads: their feature maps must come from freed memory, not fresh pages (each
    page the kernel zeroes and maps again is a page fault)."""
    faults = json.loads(output_of_child(THREAD_REUSE_SCRIPT, timeout=120))
    pages_of_96_mib = 96 * 2**20 // resource.getpagesize()
    # The first two maps (48 and 96 MiB) need at least 96 MiB of fresh pages, or the count measures nothing.
    assert faults[0] + faults[1] > 0.9 * pages_of_96_mib, faults
    # Each later 96 MiB map, unreused, faults all its pages in again; reused, few (glibc's placement of the two sizes
    # leaves an occasional one half fresh).
    assert statistics.median(faults[3::2]) < pages_of_96_mib // 10, faults


LARGE_REUSE_SCRIPT = """
import json, resource, torch
from mprnet_hf.speed.fast import heap_bytes_free_for_reuse, reuse_freed_memory
assert reuse_freed_memory() is True
faults = []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(640, 1024, 1024)  # 2.5 GiB: a 2048² restore's feature maps add up to several GiB
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"faults": faults, "free_in_heap": heap_bytes_free_for_reuse()}))
"""


@needs_glibc
@pytest.mark.slow
def test_freed_memory_is_kept_beyond_2_gib_and_counted_as_free():
    child = json.loads(output_of_child(LARGE_REUSE_SCRIPT, timeout=120))
    first, *later = child["faults"]
    pages = 640 * 2**20 * 4 // resource.getpagesize()
    # A freed block is reused once it borders the heap's free top (the aligned request of the same size is a few
    # bytes larger than the block itself, so the first repeat may still extend the heap); trimmed, none ever is.
    assert first > pages // 2 and min(later) < pages // 100, (first, later)
    # What serving_tile_size adds to the system's available memory: the freed 2.5 GiB, held for reuse.
    assert child["free_in_heap"] >= 640 * 2**20 * 4


def test_reuse_freed_memory_reports_unavailability(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert reuse_freed_memory() is False


def skip_unless_compiler_available():
    pytest.importorskip("torch._inductor")
    import shutil

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("torch.compile on CPU needs a C++ compiler")


@pytest.mark.slow
def test_compiled_fast_path_matches_fixtures(reference_dir):
    skip_unless_compiler_available()
    # `variant` covers bias, a 5x5 kernel and reduction 2; one input size, because every new size compiles again.
    model = optimize_for_inference(fixture_model(reference_dir, "variant"), compile=True)
    io = load_file(reference_dir / "fixture_variant_io.safetensors")
    with torch.inference_mode():
        stages = model(io["input_0"]).stage_reconstructions
    errors = {
        f"output_0_{j}": (stage - io[f"output_0_{j}"]).abs().max().item() for j, stage in enumerate(reversed(stages))
    }
    assert_within_tolerance(errors)


@pytest.mark.slow
def test_compiled_model_tiles_on_their_own_statistics_and_says_so(caplog):
    """A compiled graph does not run the hooks that record whole-image statistics: tiled restores of a compiled model
    must fall back to tile-local statistics, and say so, rather than record nothing or bake the hooks into the graph."""
    skip_unless_compiler_available()
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(**TINY)).eval()
    images = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(3))
    tile_local = restore_tensor(model, images, tile_size=48, tile_overlap=8, return_stages=False, statistics_passes=0)
    compiled = optimize_for_inference(model, compile=True)
    with caplog.at_level("WARNING", logger="mprnet_hf.models.mprnet.inference"):
        restored = restore_tensor(compiled, images, tile_size=48, tile_overlap=8, return_stages=False)
    torch.testing.assert_close(restored[0], tile_local[0], atol=1e-5, rtol=0)
    assert "statistics_passes=0" in caplog.text and "torch.compile" in caplog.text


@pytest.mark.slow
def test_channels_last_model_saves_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(**TINY)).eval()
    images = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        expected = model(images).reconstruction
    optimize_for_inference(model).save_pretrained(tmp_path)
    reloaded = MPRNetModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(images).reconstruction, expected, atol=PARITY_TOLERANCE, rtol=0)


@pytest.mark.slow
def test_bf16_autocast_on_cpu_stays_close_to_fp32(reference_dir):
    model = fixture_model(reference_dir, "deblur")
    images = load_file(reference_dir / "fixture_deblur_io.safetensors")["input_0"]
    with torch.inference_mode():
        reference = model(images).reconstruction
        with autocast_context(torch.device("cpu"), "bf16"):
            half = model(images).reconstruction
    error = (half.float() - reference).abs().max().item()
    # bf16 keeps 8 significant bits: the rounding shows (so autocast really ran), but stays far from the 1e-1 and
    # more of a structural error.
    assert 1e-4 < error < 5e-2, error


# ---------------------------------------------------------------------------------------------------- TLC
def test_tlc_window_larger_than_image_equals_global_attention(reference_dir):
    io = load_file(reference_dir / "fixture_deblur_io.safetensors")
    default = fixture_model(reference_dir, "deblur")
    # 64 px exceeds every fixture input (at most 64x56 padded), at every level.
    local = fixture_model(reference_dir, "deblur", local_attention_window=64)
    assert local.stage1_encoder.level1[0].channel_attention.local_window == 64
    with torch.inference_mode():
        for key in ("input_0", "input_1", "demo_input"):
            expected = default(io[key]).stage_reconstructions
            actual = local(io[key]).stage_reconstructions
            for stage_expected, stage_actual in zip(expected, actual):
                assert torch.equal(stage_expected, stage_actual)


def test_tlc_window_smaller_than_image_changes_the_result(reference_dir):
    io = load_file(reference_dir / "fixture_deblur_io.safetensors")
    default = fixture_model(reference_dir, "deblur")
    local = fixture_model(reference_dir, "deblur", local_attention_window=16)
    with torch.inference_mode():
        difference = (default(io["input_0"]).reconstruction - local(io["input_0"]).reconstruction).abs().max()
    assert difference > 1e-4


def test_tlc_window_scales_with_unet_level():
    model = MPRNetModel(MPRNetConfig(**TINY, local_attention_window=96))
    for encoder_or_decoder in (model.stage1_encoder, model.stage1_decoder, model.stage2_encoder, model.stage2_decoder):
        assert encoder_or_decoder.level1[0].channel_attention.local_window == 96
        assert encoder_or_decoder.level2[0].channel_attention.local_window == 48
        assert encoder_or_decoder.level3[0].channel_attention.local_window == 24
    assert model.stage1_decoder.skip_attention2.channel_attention.local_window == 48
    assert model.stage3_orsnet.orb1.blocks[0].channel_attention.local_window == 96
    assert model.stage1_shallow.attention_block.channel_attention.local_window == 96


def test_tlc_pooling_is_the_mean_of_the_nearest_window_inside_the_image():
    attention = ChannelAttention(MPRNetConfig(**TINY, local_attention_window=4), channels=8, downscale=1)
    features = torch.rand(1, 8, 10, 7)
    pooled = attention.pooled(features)
    assert pooled.shape == features.shape
    for row, column in ((0, 0), (5, 3), (9, 6), (2, 5)):
        # The window centred on the pixel (top-left of the two centres for an even size), shifted inside the image.
        top = min(max(row - 1, 0), 10 - 4)
        left = min(max(column - 1, 0), 7 - 4)
        expected = features[0, :, top : top + 4, left : left + 4].mean(dim=(1, 2))
        torch.testing.assert_close(pooled[0, :, row, column], expected, atol=1e-6, rtol=0)
    # Where the window covers the whole image in one direction, that direction falls back to the full extent.
    tall = torch.rand(1, 8, 12, 3)
    expected_column_means = F.avg_pool2d(tall, (4, 3), stride=1)
    torch.testing.assert_close(attention.pooled(tall)[:, :, 1:10], expected_column_means.expand(-1, -1, -1, 3))


@pytest.mark.parametrize("window", [(1, 1), (4, 4), (37, 96), (120, 9)])
def test_tlc_summed_area_mean_equals_average_pooling(window):
    features = torch.rand(2, 5, 120, 97) * 4 - 1
    expected = F.avg_pool2d(features.double(), window, stride=1).float()
    torch.testing.assert_close(box_mean(features, *window), expected, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_pipeline_precision_option():
    from PIL import Image
    from transformers import pipeline

    from mprnet_hf.evaluation.evaluate import psnr

    # device="cpu": on a GPU machine the pipeline would pick the GPU, where fp16 is allowed.
    restorer = pipeline(
        model=str(REPO_ROOT / "checkpoints" / "mprnet-denoise-small"), trust_remote_code=True, device="cpu"
    )
    photo = Image.open(REPO_ROOT / "examples" / "denoise" / "monarch_noise.png").convert("RGB").crop((0, 0, 96, 80))
    full = restorer(photo)
    half = restorer(photo, precision="bf16")
    assert half.size == full.size == photo.size
    similarity = psnr(np.asarray(half), np.asarray(full))
    # bf16 rounding shows (so autocast ran) but the 8-bit images stay close.
    assert 35 < similarity < float("inf"), similarity
    with pytest.raises(ValueError, match="fp16 autocast is only supported on GPU"):
        restorer(photo, precision="fp16")


@pytest.mark.slow
def test_inference_on_cpu_allocates_full_size_maps_only_for_convolutions_resizes_and_concatenations():
    """Every feature-map-sized sum, gate and sigmoid of an inference call is written into a map the block made (on a
    large photo each fresh map costs page faults); with autograd recording they allocate, as training needs."""
    from benchmarks.large_allocations import large_allocations

    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(**TINY)).eval()
    images = torch.rand(1, 3, 64, 64)
    one_map = 64 * 64 * model.config.n_feat * 4
    with torch.inference_mode():
        inference = large_allocations(model, images, one_map)
    assert set(inference) == {"aten::conv2d", "aten::upsample_bilinear2d", "aten::cat"}, inference.keys()
    with torch.enable_grad():
        recorded = large_allocations(model.requires_grad_(True), images, one_map)
    assert {"aten::add", "aten::mul"} <= set(recorded), recorded.keys()

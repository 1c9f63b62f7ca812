"""The fast default paths and the serving preparation: channels-last by default on CPU, tile sizes from memory, and
the onnxruntime backend, all within 1e-5 of the official fixtures."""

import re
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, assert_within_tolerance, fixture_errors, fixture_model
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.inference import (
    balanced_tile_size,
    choose_tile_size,
    estimated_peak_bytes,
    restore_tensor,
)
from mprnet_hf.speed.serving_speed import (
    model_fingerprint,
    prepare_for_serving,
    serving_tile_size,
    time_backends_side_by_side,
)

BUNDLED_SIZE = MPRNetConfig.size_widths("small")
GIB = 2**30


def tiny_model(**overrides):
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig(**{**TINY, **overrides})).eval()


def test_model_call_on_cpu_switches_to_channels_last_and_still_trains():
    model = tiny_model()
    images = torch.rand(1, 3, 24, 32)
    with torch.no_grad():
        nchw = model.restore_padded(images)[-1]
    assert not model.tail.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = model(images).reconstruction
    assert model.tail.weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, nchw, atol=1e-5, rtol=0)
    # The switched weights were made outside inference mode: training after an inference call still works.
    model.train()
    loss = model(images, labels=torch.rand(1, 3, 24, 32)).loss
    loss.backward()
    assert model.tail.weight.grad is not None


def test_training_mode_keeps_the_layout_it_was_given():
    model = tiny_model().train()
    model(torch.rand(1, 3, 16, 16))
    assert not model.tail.weight.is_contiguous(memory_format=torch.channels_last)


def test_a_megapixel_photo_on_a_cpu_with_gigabytes_free_is_not_tiled():
    model = tiny_model(**BUNDLED_SIZE)
    assert choose_tile_size(model, 1024, 1024, available_bytes=8 * GIB) is None
    assert serving_tile_size(model, 1024, 1024, requested_tile_size=512, available_bytes=8 * GIB) is None


@pytest.mark.parametrize("available_gib", [0.25, 1, 4])
def test_tiles_fit_the_memory_and_are_as_few_as_fit(available_gib):
    model = tiny_model(**BUNDLED_SIZE)
    available = int(available_gib * GIB)
    tile = choose_tile_size(model, 8000, 6000, available_bytes=available)
    assert tile is not None and tile % 64 == 0 and tile >= 256
    if tile > 256:
        assert estimated_peak_bytes(model, tile, tile) <= 0.4 * available
        largest = (tile // 64) * 64
        while estimated_peak_bytes(model, largest + 64, largest + 64) <= 0.4 * available:
            largest += 64
        assert balanced_tile_size(8000, 6000, largest) == tile


def test_a_serving_process_splits_its_memory_share_between_concurrent_restores():
    model = tiny_model(**BUNDLED_SIZE)
    channels = 16 + 24  # n_feat + ORSNet width of the bundled size
    pixel_channels = 2048 * 2048 * channels
    assert estimated_peak_bytes(model, 2048, 2048) == 40 * pixel_channels
    # 90 bytes per pixel and channel available: a library call plans on 40 % of it (36 < 40 needed: tiles); a
    # server, whose estimate is 64 (it reuses freed memory), on 80 % with one restore at a time (72: whole) and 40 %
    # each with two (36: tiles).
    available = 90 * pixel_channels
    assert choose_tile_size(model, 2048, 2048, available_bytes=available) is not None
    assert serving_tile_size(model, 2048, 2048, available_bytes=available) is None
    assert serving_tile_size(model, 2048, 2048, available_bytes=available, concurrent_restores=2) is not None
    with pytest.raises(ValueError, match="concurrent_restores must be a whole number of at least 1, got 0"):
        serving_tile_size(model, 2048, 2048, available_bytes=available, concurrent_restores=0)


def test_bad_sizes_and_backends_are_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="at least 1"):
        choose_tile_size(model, 0, 10, available_bytes=GIB)
    with pytest.raises(ValueError, match="backend"):
        prepare_for_serving({"deblur": model}, backend="tensorrt")
    with pytest.raises(ValueError, match="at least one model"):
        prepare_for_serving({})


def test_torch_serving_path_matches_fixtures(reference_dir):
    model = fixture_model(reference_dir, "deblur")
    # allocator=False: the glibc setting is process-wide, and test_fast_paths covers it in a child process.
    report = prepare_for_serving({"deblur": model}, backend="torch", allocator=False)
    assert report.backends == {"deblur": "torch channels-last"} and not report.reused_freed_memory
    io = load_file(reference_dir / "fixture_deblur_io.safetensors")
    assert_within_tolerance(fixture_errors(lambda images: tuple(restore_tensor(model, images)), io))


@pytest.mark.slow
def test_onnxruntime_serving_path_matches_fixtures_and_is_cached(reference_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    model = fixture_model(reference_dir, "derain")
    untiled_reference = restore_tensor(model, torch.rand(1, 3, 72, 88, generator=torch.Generator().manual_seed(2)))
    tiled_images = torch.rand(1, 3, 72, 88, generator=torch.Generator().manual_seed(2))
    tiled_reference = restore_tensor(model, tiled_images, tile_size=48, tile_overlap=8)
    report = prepare_for_serving({"derain": model}, backend="onnxruntime", cache_dir=tmp_path, allocator=False)
    assert report.backends == {"derain": "onnxruntime"} and report.prepared.is_set()
    assert len(list(tmp_path.glob("*.onnx"))) == 1 and not list(tmp_path.glob("*.partial"))
    io = load_file(reference_dir / "fixture_derain_io.safetensors")
    assert_within_tolerance(fixture_errors(lambda images: tuple(restore_tensor(model, images)), io))
    torch.testing.assert_close(
        restore_tensor(model, tiled_images.clone())[-1], untiled_reference[-1], atol=1e-5, rtol=0
    )
    # Tiled restores with the statistics pass need PyTorch's hooks, and get them.
    tiled = restore_tensor(model, tiled_images, tile_size=48, tile_overlap=8)
    torch.testing.assert_close(tiled[-1], tiled_reference[-1], atol=1e-5, rtol=0)
    # A second start-up reuses the export.
    again = fixture_model(reference_dir, "derain")
    prepare_for_serving({"derain": again}, backend="onnxruntime", cache_dir=tmp_path, allocator=False)
    assert len(list(tmp_path.glob("*.onnx"))) == 1


class ModelWithOtherCode(MPRNetModel):
    """The same weights and config as an MPRNetModel, under code from another file (this one)."""


def test_exports_are_keyed_by_the_model_code_too():
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    other_code = ModelWithOtherCode(model.config).eval()
    other_code.load_state_dict(model.state_dict())
    assert model_fingerprint(model) == model_fingerprint(tiny_model())
    assert model_fingerprint(other_code) != model_fingerprint(model)


class StubRuntime:
    """A whole-image runtime whose speed the test sets: it sleeps, then returns blank stages."""

    def __init__(self, delay_s):
        self.delay_s, self.calls = delay_s, 0

    def __call__(self, images):
        self.calls += 1
        time.sleep(self.delay_s)
        return tuple(torch.zeros_like(images) for _ in range(3))


@pytest.mark.parametrize("runtime_delay_s, runtime_wins", [(0.0, True), (1.0, False)])
def test_backends_are_timed_by_turns_and_the_model_is_left_on_pytorch(runtime_delay_s, runtime_wins):
    model = tiny_model()
    runtime = StubRuntime(runtime_delay_s)
    torch_seconds, runtime_seconds = time_backends_side_by_side(model, runtime, size=256, rounds=3)
    assert runtime.calls == 3
    assert (runtime_seconds < torch_seconds) == runtime_wins
    assert torch_seconds > 0 and runtime_seconds >= runtime_delay_s
    assert model.whole_image_runtime is None


@pytest.mark.slow
def test_auto_backend_serves_with_the_one_it_measured_faster(tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    report = prepare_for_serving(
        {"derain": model}, backend="auto", cache_dir=tmp_path, allocator=False, background=True
    )
    assert report.prepared.wait(600), "the background export and timing did not finish"
    (note,) = [note for note in report.notes if note.startswith("derain:")]
    onnx_seconds, torch_seconds = (float(value) for value in re.findall(r"([0-9.]+) s on", note))
    chosen_onnxruntime = onnx_seconds < torch_seconds
    assert note.endswith("serving with onnxruntime" if chosen_onnxruntime else "serving with PyTorch")
    assert (report.backends["derain"] == "onnxruntime") == chosen_onnxruntime
    assert (getattr(model, "whole_image_runtime", None) is not None) == chosen_onnxruntime

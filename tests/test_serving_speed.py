"""The fast default paths and the serving preparation: channels-last by default on CPU, tile sizes from memory, and
the onnxruntime backend, all within 1e-5 of the official fixtures; the "auto" backend keeps the fastest candidate
that agrees with PyTorch fp32, bf16 among them only on a CPU with native bf16 (simulated with MPRNET_CPU_BF16)."""

import re
import time

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, assert_within_tolerance, fixture_errors, fixture_model
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.inference import (
    AGREEMENT_THRESHOLD_DB,
    balanced_tile_size,
    choose_tile_size,
    estimated_peak_bytes,
    restore_tensor,
)
from mprnet_hf.speed import serving_speed
from mprnet_hf.speed.serving_speed import (
    ONNXRUNTIME_BACKEND,
    TORCH_BACKEND,
    TORCH_FP32,
    BackendCandidate,
    backend_candidates,
    choose_serving_backend,
    model_fingerprint,
    prepare_for_serving,
    serving_tile_size,
    time_candidates,
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


class SameModelRuntime:
    """A whole-image runtime that runs the model itself in PyTorch fp32: it agrees exactly."""

    def __init__(self, model):
        self.model = model

    def __call__(self, images):
        return self.model(images).stage_reconstructions


def names(candidates):
    return [candidate.name for candidate in candidates]


@pytest.mark.parametrize("runtime_delay_s, runtime_wins", [(0.0, True), (1.0, False)])
@pytest.mark.slow
def test_backends_are_timed_by_turns_and_the_model_is_left_on_pytorch(runtime_delay_s, runtime_wins):
    model = tiny_model()
    runtime = StubRuntime(runtime_delay_s)
    seconds = time_candidates(model, [TORCH_FP32, BackendCandidate(ONNXRUNTIME_BACKEND, "fp32", runtime)], 256, 3)
    assert runtime.calls == 3
    assert (seconds["onnxruntime fp32"] < seconds["torch fp32"]) == runtime_wins
    assert seconds["torch fp32"] > 0 and seconds["onnxruntime fp32"] >= runtime_delay_s
    assert not hasattr(model, "whole_image_runtime")  # passed to each restore, never attached to the model


def test_a_faster_candidate_that_disagrees_is_left_out_and_one_that_agrees_is_timed():
    model = tiny_model()
    fast_but_wrong = StubRuntime(0.0)  # blank stages, at once: the fastest there is
    agreeing = SameModelRuntime(model)
    candidates = [
        TORCH_FP32,
        BackendCandidate(ONNXRUNTIME_BACKEND, "fp32", fast_but_wrong),
        BackendCandidate("other", "fp32", agreeing),
    ]
    choice = choose_serving_backend(model, candidates, size=64, rounds=1)
    assert choice.agreement_db["onnxruntime fp32"] < AGREEMENT_THRESHOLD_DB
    assert choice.agreement_db["other fp32"] >= AGREEMENT_THRESHOLD_DB
    assert fast_but_wrong.calls == 1  # the agreement check only: a candidate that disagrees is never timed
    assert set(choice.seconds) == {"torch fp32", "other fp32"}
    assert choice.chosen in (candidates[0], candidates[2])
    assert choice.chosen.name == min(choice.seconds, key=choice.seconds.get)
    description = choice.describe()
    assert re.search(
        r"onnxruntime fp32 left out: it agreed with torch fp32 by -?[0-9.]+ dB .* below the 45 dB", description
    )
    assert description.endswith(f"serving with {choice.chosen.name}")
    assert not hasattr(model, "whole_image_runtime")
    # With nothing else agreeing, PyTorch fp32 serves.
    alone = choose_serving_backend(model, candidates[1:2], size=32, rounds=1)
    assert alone.chosen == TORCH_FP32 and list(alone.seconds) == ["torch fp32"]


def test_bf16_is_a_candidate_only_on_a_cpu_with_native_bf16_and_for_precision_auto(monkeypatch):
    runtime = StubRuntime(0.0)
    monkeypatch.setenv("MPRNET_CPU_BF16", "0")
    assert names(backend_candidates("auto")) == ["torch fp32"]
    assert names(backend_candidates("auto", runtime)) == ["torch fp32", "onnxruntime fp32"]
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    assert names(backend_candidates("auto", runtime)) == ["torch fp32", "onnxruntime fp32", "torch bf16"]
    # Forced precisions are kept: fp32 never gets bf16, bf16 runs on PyTorch alone (onnxruntime graphs are fp32).
    assert names(backend_candidates("fp32", runtime)) == ["torch fp32", "onnxruntime fp32"]
    assert names(backend_candidates("bf16", runtime)) == ["torch bf16"]
    assert names(backend_candidates("auto", native_bf16=False)) == ["torch fp32"]


@pytest.mark.parametrize("native_bf16", ["0", "1"])
@pytest.mark.slow
def test_the_auto_choice_reports_the_backend_and_precision_it_serves(monkeypatch, native_bf16):
    monkeypatch.setenv("MPRNET_CPU_BF16", native_bf16)
    # Small trial images: on a CPU without native bf16 the simulated one runs bf16 emulated, many times slower.
    monkeypatch.setattr(serving_speed, "BACKEND_TRIAL_SIZE", 32)
    monkeypatch.setattr(serving_speed, "BACKEND_TRIAL_ROUNDS", 1)
    # Test-time local statistics cannot be exported: the candidates are PyTorch's alone, with no export to wait for.
    model = tiny_model(reduction=2, local_attention_window=32)
    report = prepare_for_serving({"derain": model}, backend="auto", precision="auto", allocator=False)
    assert report.prepared.is_set() and report.backends == {"derain": TORCH_BACKEND}
    precision = report.precisions["derain"]
    assert f"derain: {TORCH_BACKEND} {precision} (" in report.summary()
    trials = [note for note in report.notes if note.startswith("derain: 32² restore")]
    if native_bf16 == "0":
        assert precision == "fp32" and not trials
        return
    (trial,) = trials
    assert "s on torch fp32" in trial and "s on torch bf16" in trial
    assert trial.endswith(f"serving with torch {precision}")
    assert report.precisions == {"derain": precision} and precision in ("fp32", "bf16")


@pytest.mark.slow
def test_forced_precisions_bound_the_candidates_and_are_checked(monkeypatch):
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    model = tiny_model(reduction=2, local_attention_window=32)
    report = prepare_for_serving({"derain": model}, backend="auto", precision="fp32", allocator=False)
    assert report.precisions == {"derain": "fp32"} and not [n for n in report.notes if "restore in" in n]
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        prepare_for_serving({"derain": model}, precision="fp16", allocator=False)
    with pytest.raises(ValueError, match="onnxruntime' runs fp32 graphs only"):
        prepare_for_serving({"derain": model}, backend="onnxruntime", precision="bf16", allocator=False)
    with pytest.raises(ValueError, match="precision must be one of"):
        prepare_for_serving({"derain": model}, precision="int8", allocator=False)


@pytest.mark.slow
def test_auto_backend_serves_with_the_one_it_measured_faster(tmp_path):
    pytest.importorskip("onnxruntime")
    model = tiny_model()
    report = prepare_for_serving(
        {"derain": model}, backend="auto", cache_dir=tmp_path, allocator=False, background=True
    )
    assert report.prepared.wait(600), "the background export and timing did not finish"
    (note,) = [note for note in report.notes if note.startswith("derain:")]
    seconds = {name: float(value) for value, name in re.findall(r"([0-9.]+) s on (\w+ fp32)", note)}
    assert set(seconds) == {"torch fp32", "onnxruntime fp32"}
    chosen_onnxruntime = seconds["onnxruntime fp32"] < seconds["torch fp32"]
    assert note.endswith("serving with onnxruntime fp32" if chosen_onnxruntime else "serving with torch fp32")
    assert (report.backends["derain"] == "onnxruntime") == chosen_onnxruntime
    assert report.precisions == {"derain": "fp32"}
    assert ("derain" in report.runtimes) == chosen_onnxruntime


EXITS_DURING_THE_BACKEND_TRIAL = """
import atexit, json, sys, time
from pathlib import Path

import torch

from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.stopping import make_stoppable

state = {}


def after_the_library_stopped_its_work():
    # Registered before serving_speed is imported, so it runs after serving_speed's own exit handler.
    (thread,) = serving_speed._BACKGROUND_PREPARATIONS
    print(json.dumps({"alive": thread.is_alive(), "prepared": state["report"].prepared.is_set(),
                      "notes": state["report"].notes}), flush=True)


atexit.register(after_the_library_stopped_its_work)
from mprnet_hf.speed import serving_speed  # noqa: E402

serving_speed.BACKEND_TRIAL_ROUNDS = 10_000  # a trial that would outlast any test: only a stop ends it
torch.manual_seed(0)
model = make_stoppable(MPRNetModel(MPRNetConfig(**json.loads(sys.argv[1]))).eval())
state["report"] = serving_speed.prepare_for_serving(
    {"derain": model}, backend="auto", cache_dir=sys.argv[2], allocator=False, background=True
)
while not list(Path(sys.argv[2]).glob("*.onnx")):
    time.sleep(0.2)
time.sleep(2)  # into the trial's restores
print("leaving", flush=True)
"""


@pytest.mark.slow
def test_a_script_that_ends_during_the_background_trial_exits_cleanly(tmp_path):
    """A daemon thread still inside torch or onnxruntime when the interpreter finalizes aborts the process (exit 134)
    after the script's own work succeeded; the exit stops the background preparation and waits for it instead."""
    import json
    import subprocess
    import sys

    pytest.importorskip("onnxruntime")
    finished = subprocess.run(
        [sys.executable, "-c", EXITS_DURING_THE_BACKEND_TRIAL, json.dumps(TINY), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "terminate called" not in finished.stderr
    lines = finished.stdout.splitlines()
    assert "leaving" in lines
    at_exit = json.loads(lines[-1])
    assert at_exit["alive"] is False and at_exit["prepared"] is True
    assert "the interpreter exited before every backend was settled" in at_exit["notes"]

"""The serving helpers in-process (the app tests drive the same code through a server): which model serves a task,
numbers from the environment, safe echoes, which payloads name an upload, reading uploads, and the cost of a
request, against hand-computed values."""

import math
import re
import struct
import subprocess
import sys
import textwrap
import time
import warnings

import psutil
import pytest
import torch
from PIL import Image

from mprnet_hf.data.safe_open import open_image_file, short_repr
from mprnet_hf.hub.bundled import JPEG_DENOISE, bundled_checkpoint
from mprnet_hf.models.mprnet.configuration_mprnet import MPRNetConfig
from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel, MPRNetOutput
from mprnet_hf.serving import (
    CALIBRATION_SIDE,
    UPLOAD_REFUSED,
    CostBound,
    MemoryCeiling,
    check_costs,
    cpu_cost_bound,
    cpu_cost_bounds,
    default_device,
    environment_number,
    flops_per_pixel,
    gpu_duration,
    heap_bytes_free,
    in_upload_words,
    load_models,
    measured_rates,
    measured_seconds_per_megapixel,
    memory_limit_bytes,
    model_source,
    resident_bytes,
    served_file_path,
    total_memory_bytes,
    uploaded_file,
    zerogpu_cost_bound,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class ChannelMixer(torch.nn.Module):
    """A stand-in model of known cost: one 1x1 convolution from 3 to 9 channels, 3 * 9 multiply-adds per pixel."""

    def __init__(self):
        super().__init__()
        self.config = MPRNetConfig()
        self.mix = torch.nn.Conv2d(3, 9, 1, bias=False)

    def forward(self, pixel_values):
        stages = tuple(self.mix(pixel_values).chunk(3, dim=1))
        return MPRNetOutput(reconstruction=stages[-1], stage_reconstructions=stages)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig.for_task("denoise", size="tiny")).eval()


# ------------------------------------------------------------------------------------------------ models
def test_each_task_is_served_by_its_bundled_checkpoint_unless_told_otherwise(monkeypatch, tmp_path):
    for task in ("deblur", "derain", "denoise"):
        monkeypatch.delenv(f"MPRNET_{task.upper()}_MODEL", raising=False)
        assert model_source(task) == str(bundled_checkpoint(task))
    monkeypatch.setenv("MPRNET_DERAIN_MODEL", "someone/mprnet-derain")
    assert model_source("derain") == "someone/mprnet-derain"
    assert model_source("deblur") == str(bundled_checkpoint("deblur"))
    monkeypatch.setenv("MPRNET_DEBLUR_MODEL", "")  # set but empty: the default
    assert model_source("deblur") == str(bundled_checkpoint("deblur"))
    with pytest.raises(ValueError, match=re.escape("Unknown task 'dehaze': choose one of deblur, derain, denoise")):
        model_source("dehaze")


@pytest.mark.slow
def test_models_load_in_eval_mode_and_a_mismatched_task_is_warned_about(monkeypatch):
    monkeypatch.delenv("MPRNET_DENOISE_MODEL", raising=False)
    monkeypatch.delenv("MPRNET_DERAIN_MODEL", raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        models = load_models(("denoise",), device=torch.device("cpu"))
    assert list(models) == ["denoise", JPEG_DENOISE]  # the bundled denoise model brings the JPEG denoiser
    for model in models.values():
        assert model.config.task == "denoise" and not model.training
        assert next(model.parameters()).device == torch.device("cpu")
    # A denoise model of one's own is served alone, on every photo.
    monkeypatch.setenv("MPRNET_DENOISE_MODEL", str(bundled_checkpoint("denoise").parent / "mprnet-denoise-jpeg-small"))
    assert list(load_models(("denoise",))) == ["denoise"]
    monkeypatch.setenv("MPRNET_DERAIN_MODEL", str(bundled_checkpoint("denoise")))
    with pytest.warns(UserWarning, match=re.escape("was trained for 'denoise' but serves 'derain'")):
        assert list(load_models(("derain",))) == ["derain"]


def test_the_default_device_is_the_gpu_when_there_is_one():
    assert default_device() == torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------ environment
def test_numbers_from_the_environment(monkeypatch):
    monkeypatch.delenv("MPRNET_TEST_NUMBER", raising=False)
    assert environment_number("MPRNET_TEST_NUMBER", 7.5) == 7.5
    monkeypatch.setenv("MPRNET_TEST_NUMBER", "")
    assert environment_number("MPRNET_TEST_NUMBER", 7.5) == 7.5
    monkeypatch.setenv("MPRNET_TEST_NUMBER", "0.25")
    assert environment_number("MPRNET_TEST_NUMBER", 7.5) == 0.25
    for value in ("0", "-1", "nan", "inf", "-inf", "ten"):
        monkeypatch.setenv("MPRNET_TEST_NUMBER", value)
        with pytest.raises(ValueError, match=re.escape(f"MPRNET_TEST_NUMBER must be a positive number, got {value!r}")):
            environment_number("MPRNET_TEST_NUMBER", 7.5)


def test_echoes_are_short_and_safe():
    assert short_repr("deblur") == "'deblur'"
    assert short_repr(["a", 1]) == "['a', 1]"
    assert short_repr("<b>&") == "'&lt;b&gt;&amp;'"
    # 40 characters of the repr, then an ellipsis; a string is cut before repr() sees the rest.
    assert short_repr("x" * 10_000) == "'" + "x" * 39 + "…"
    assert short_repr("x" * 38) == "'" + "x" * 38 + "'"  # exactly 40 characters: whole
    assert short_repr("x" * 39) == "'" + "x" * 39 + "…"
    assert short_repr(list(range(100)), limit=10) == "[0, 1, 2, …"
    assert short_repr(12345, limit=3) == "123…"


# ------------------------------------------------------------------------------------------------ uploads
@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "photo.png").write_bytes(b"not looked at")
    (tmp_path / "secret.png").write_bytes(b"outside")
    (folder / "link.png").symlink_to(tmp_path / "secret.png")
    return folder


def test_payloads_naming_an_uploaded_file_give_its_path(uploads):
    photo = uploads / "photo.png"
    assert uploaded_file(None, [uploads]) is None
    assert uploaded_file(str(photo), [uploads]) == photo
    assert uploaded_file({"path": str(photo), "meta": {}}, [uploads]) == photo
    assert uploaded_file(str(uploads / "sub" / ".." / "photo.png"), [uploads / "elsewhere", uploads]) == photo
    served = f"http://127.0.0.1:9/gradio_api/file={photo}"
    assert uploaded_file({"path": served}, [str(uploads)]) == photo


@pytest.mark.parametrize(
    "payload",
    [
        "",
        5,
        {"url": "http://127.0.0.1:9/photo.png"},
        "{folder}/../secret.png",
        "{folder}/link.png",
        "{folder}/missing.png",
        "{folder}",
        "{folder}/photo.png\0.png",
        "/" + "a" * 5000,
        "file://{folder}/photo.png",
        "ftp://127.0.0.1/gradio_api/file={folder}/photo.png",
    ],
)
def test_other_payloads_are_refused_with_one_message(uploads, payload):
    if isinstance(payload, str):
        payload = payload.format(folder=uploads)
    with pytest.raises(ValueError, match=re.escape(UPLOAD_REFUSED)):
        uploaded_file(payload, [uploads])


def test_served_urls_give_the_local_path():
    assert served_file_path("https://host/gradio_api/file=/tmp/a%20b.png") == "/tmp/a b.png"
    assert served_file_path("http://host/prefix/gradio_api/file=/tmp/x.png") == "/tmp/x.png"
    assert served_file_path("http://host/gradio_api/file=/up/gradio_api/file=x") == "/up/gradio_api/file=x"
    for url in ("https://host/file=/tmp/x.png", "file:///gradio_api/file=/tmp/x.png", "/gradio_api/file=/tmp/x"):
        with pytest.raises(ValueError, match=re.escape(UPLOAD_REFUSED)):
            served_file_path(url)


def test_uploads_are_opened_fully_decoded(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (30, 20), (10, 200, 30)).save(path)
    sizes = []
    image, notes = open_image_file(path, check_size=lambda width, height: sizes.append((width, height)))
    assert image.size == (30, 20) and image.getpixel((29, 19)) == (10, 200, 30) and notes == []
    assert sizes == [(30, 20)]


def test_uploads_pillow_only_warns_about_are_opened(tmp_path):
    """Only the decompression-bomb warning refuses an upload: a JPEG with a broken multi-picture (MPF) header, which
    Pillow reads as a plain JPEG after a warning, is opened like the same JPEG without that header."""
    plain = tmp_path / "plain.jpg"
    Image.new("RGB", (24, 16), (200, 40, 90)).save(plain)
    data = plain.read_bytes()
    # An APP2 "MPF" segment holding a TIFF header and an empty directory: no number of pictures.
    segment = b"MPF\x00" + b"II*\x00\x08\x00\x00\x00" + b"\x00\x00" + b"\x00\x00\x00\x00"
    broken = tmp_path / "broken_mpf.jpg"
    broken.write_bytes(data[:2] + b"\xff\xe2" + struct.pack(">H", len(segment) + 2) + segment + data[2:])
    with pytest.warns(UserWarning, match="malformed MPO"):
        image, notes = open_image_file(broken)
    assert image.format == "JPEG" and image.size == (24, 16) and notes == []
    with Image.open(plain) as expected:
        assert image.tobytes() == expected.convert("RGB").tobytes()


def test_animations_are_read_at_their_first_frame_and_say_so(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image, notes = open_image_file(path)
    assert image.tell() == 0 and image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
    assert notes == ["'anim.gif' is animated (2 frames); only the first frame was restored."]
    Image.new("RGB", (8, 8)).save(tmp_path / "still.gif")
    assert open_image_file(tmp_path / "still.gif")[1] == []
    Image.new("RGB", (8, 8)).save(tmp_path / "still.bmp")  # a format without frames at all
    assert open_image_file(tmp_path / "still.bmp")[1] == []


def test_bad_files_get_a_message_saying_what_to_do_and_the_app_words_it_as_an_upload(tmp_path):
    with pytest.raises(ValueError) as refused:
        open_image_file(None)
    assert str(refused.value) == "No image was uploaded. Upload a photo (PNG, JPEG, WebP, ...) first."
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.png").write_bytes(b"just some text, no image")
    cases = {
        "gone.png": (
            "'gone.png' could not be found. Check the path.",
            "'gone.png' could not be found. Upload it again.",
        ),
        "empty.png": (
            "The file 'empty.png' is empty (0 bytes). Use a valid image file.",
            "The file 'empty.png' is empty (0 bytes). Upload a valid image file.",
        ),
        "notes.png": (
            "'notes.png' is not an image file of a format read here. Convert it to PNG, JPEG, WebP, BMP, TIFF, GIF or "
            "PPM.",
            "'notes.png' is not an image file of a format read here. Upload a PNG, JPEG, WebP, BMP, TIFF, GIF or PPM "
            "file.",
        ),
    }
    for name, (library_words, upload_words) in cases.items():
        with pytest.raises(ValueError) as refused:
            open_image_file(tmp_path / name)
        assert (str(refused.value), in_upload_words(refused.value)) == (library_words, upload_words)
        assert "pload" not in library_words
    Image.new("1", (30, 20)).save(tmp_path / "large.png")
    with pytest.raises(ValueError) as refused:
        open_image_file(tmp_path / "large.png", limit_megapixels=0.0005)
    assert str(refused.value).endswith(
        "above the limit of 0.0005 megapixels. Downscale it, or raise the limit (max_megapixels)."
    )
    assert in_upload_words(refused.value).endswith(
        "above the limit of 0.0005 megapixels. Downscale it and upload it again."
    )
    # An EPS file would be handed to Ghostscript: never even tried.
    (tmp_path / "drawing.eps").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ValueError, match="is not an image file of a format read here"):
        open_image_file(tmp_path / "drawing.eps")
    Image.new("RGB", (64, 64), (1, 2, 3)).save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:-60])
    with pytest.raises(ValueError) as refused:
        open_image_file(tmp_path / "cut.png")
    message = str(refused.value)
    assert message.startswith("'cut.png' is corrupt or truncated (image file is truncated")  # Pillow's reason
    assert message.endswith("). Re-export or re-download the image.")


def test_size_checks_run_before_decoding(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (30, 20)).save(path)

    def too_large(width, height):
        raise ValueError(f"{width}x{height} costs too much")

    with pytest.raises(ValueError, match="30x20 costs too much"):
        open_image_file(path, check_size=too_large)
    with pytest.raises(ValueError, match=re.escape("30x20 (0.0 megapixels), above the limit of 0.0005 megapixels")):
        open_image_file(path, limit_megapixels=0.0005)
    assert open_image_file(path, limit_megapixels=0.0006)[0].size == (30, 20)


def test_headers_past_pillows_bomb_warning_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (200, 200)).save(path)
    monkeypatch.delenv("MPRNET_MAX_MEGAPIXELS", raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)  # Pillow warns above 30,000 and refuses above 60,000
    with pytest.raises(ValueError) as refused:
        open_image_file(path)
    assert str(refused.value) == (
        "'bomb.png' declares more pixels than the limit of 16 megapixels (a possible decompression bomb). "
        "Downscale the image and try again."
    )
    Image.new("1", (200, 100)).save(path)  # 20,000: no warning
    assert open_image_file(path)[0].size == (200, 100)


# ------------------------------------------------------------------------------------------------ cost
def test_flops_are_counted_per_pixel():
    # A 1x1 convolution from 3 to 9 channels: 27 multiply-adds, 54 floating-point operations per pixel.
    assert flops_per_pixel(ChannelMixer()) == 54
    assert flops_per_pixel(ChannelMixer(), side=16) == 54
    # The model itself, on a batch of one: its convolutions cost about the same per pixel at any side.
    tiny = MPRNetModel(MPRNetConfig.for_task("denoise", size="tiny")).eval()
    assert flops_per_pixel(tiny, side=32) == pytest.approx(flops_per_pixel(tiny), rel=0.1)


class SleepingModel(torch.nn.Module):
    """Takes a set time per call, longer for the first: what a model's first call (allocation, weight layout) does."""

    def __init__(self, first_call_s: float, later_calls_s: float):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.first_call_s, self.later_calls_s, self.inputs = first_call_s, later_calls_s, []

    def forward(self, images):
        self.inputs.append(tuple(images.shape))
        time.sleep(self.first_call_s if len(self.inputs) == 1 else self.later_calls_s)
        return images


@pytest.mark.slow
def test_seconds_per_megapixel_are_the_best_warm_call_over_the_image_area():
    model = SleepingModel(first_call_s=1.0, later_calls_s=0.05)
    seconds = measured_seconds_per_megapixel(model, side=100, repeats=3)
    assert model.inputs == [(1, 3, 100, 100)] * 4  # one warm-up call, then the repeats
    # 0.05 s over 0.01 megapixels: at least 5 s per megapixel; the 1 s warm-up (100 s per megapixel) is left out.
    assert 5.0 <= seconds < 100.0


def test_a_request_costs_seconds_per_pass_over_its_megapixels(tiny_model):
    bound = CostBound(budget_s=10.0, seconds_per_megapixel=4.0, overhead_s=1.5)
    # Untiled, or one tile: one pass; in tiles: a statistics pass as well.
    assert bound.seconds(tiny_model, 1000, 500, None) == pytest.approx(1.5 + 4.0 * 0.5, rel=1e-12)
    assert bound.seconds(tiny_model, 500, 200, 512) == pytest.approx(1.5 + 4.0 * 0.1, rel=1e-12)
    assert bound.seconds(tiny_model, 1000, 500, 256) == pytest.approx(1.5 + 4.0 * 2 * 0.5, rel=1e-12)
    # (10 - 1.5) / 4 = 2.125 megapixels in one pass; half that when tiled.
    assert bound.largest_megapixels(tiny_model, None) == pytest.approx(2.125)
    assert bound.largest_megapixels(tiny_model, 256) == pytest.approx(2.125 / 2)
    assert bound.largest_megapixels(tiny_model, 2048) == pytest.approx(2.125)  # a 1458-pixel square fits one tile


def test_a_request_over_its_budget_is_refused_naming_the_largest_size(tiny_model):
    bound = CostBound(budget_s=10.0, seconds_per_megapixel=10.0)
    bound.check(tiny_model, 1000, 1000, None, "here")  # exactly the budget
    bound.check(tiny_model, 1000, 800, None, "here")
    with pytest.raises(ValueError, match=re.escape("1000x800 (0.8 megapixels): restoring it would take longer")):
        bound.check(tiny_model, 1000, 800, 512, "here")  # in tiles: a statistics pass as well, 16 s
    with pytest.raises(ValueError, match=re.escape("The image is 1000x750 (0.8 megapixels)")):  # 0.75 rounds to even
        CostBound(budget_s=1.0, seconds_per_megapixel=10.0).check(tiny_model, 1000, 750, None, "here")
    with pytest.raises(ValueError) as refused:
        bound.check(tiny_model, 2000, 1000, 512, "on this server")
    assert str(refused.value) == (
        "The image is 2000x1000 (2.0 megapixels): restoring it would take longer than the 10 s one request may use "
        "on this server. The largest photo accepted is about 0.5 megapixels (for this photo's shape, 1000x500). "
        "Downscale or crop it and try again."
    )


def test_zerogpu_asks_are_estimated_from_flops_within_the_floor_and_cap():
    bound = zerogpu_cost_bound(ChannelMixer())
    # 2 (margin) * 54 operations per pixel * 1e6 pixels / 50e12 operations per second, after 5 s of start-up.
    assert (bound.budget_s, bound.overhead_s) == (60, 5.0)
    assert bound.seconds_per_megapixel == pytest.approx(2 * 54e6 / 50e12, rel=1e-9)
    slow = CostBound(budget_s=60, seconds_per_megapixel=10.0, overhead_s=0.0)
    model = ChannelMixer()
    assert gpu_duration(slow, model, 100, 100, None) == 10  # 0.1 s: the floor
    assert gpu_duration(slow, model, 1000, 1210, None) == 13  # 12.1 s, rounded up
    assert gpu_duration(slow, model, 1000, 1000, None) == 10
    assert gpu_duration(slow, model, 3000, 3000, None) == 60  # 90 s: the cap


@pytest.mark.slow
def test_cpu_bound_is_twice_the_rate_measured_here_within_the_configured_seconds(monkeypatch):
    monkeypatch.setenv("MPRNET_MAX_SECONDS", "12.5")
    model = SleepingModel(first_call_s=1.0, later_calls_s=0.05)
    bound = cpu_cost_bound(model)
    assert bound.budget_s == 12.5 and bound.overhead_s == 0
    assert model.inputs == [(1, 3, CALIBRATION_SIDE, CALIBRATION_SIDE)] * 2  # two rounds
    # Calls of at least 0.05 s on 512 x 512 (0.262144 megapixels), the 1 s first call left out, times the margin of 2.
    assert 2 * 0.05 / 0.262144 <= bound.seconds_per_megapixel < 2 * 1.0 / 0.262144
    monkeypatch.delenv("MPRNET_MAX_SECONDS")
    assert cpu_cost_bound(SleepingModel(first_call_s=0, later_calls_s=0)).budget_s == 90
    assert math.isfinite(bound.seconds_per_megapixel)


class ScheduledModel(torch.nn.Module):
    """An MPRNet stand-in (its config says what it costs) whose calls take the seconds `durations` lists, in turn."""

    def __init__(self, config: MPRNetConfig, durations: list[float]):
        super().__init__()
        self.config, self.durations, self.calls = config, durations, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, images):
        time.sleep(self.durations[min(self.calls, len(self.durations) - 1)])
        self.calls += 1
        return images


@pytest.mark.slow
def test_models_of_one_size_get_one_rate_whatever_their_task_and_however_their_calls_went():
    """The three bundled models have one size, but each was timed on its own, and the limits were
    0.7 megapixels for denoise and 2.8 for deblur. Every model of one size now gets the fastest call of them all."""
    small = {task: MPRNetConfig.for_task(task, size="tiny") for task in ("deblur", "derain", "denoise")}
    models = {
        "deblur": ScheduledModel(small["deblur"], [0.03, 0.2]),
        "derain": ScheduledModel(small["derain"], [0.2, 0.2]),  # every call slowed by other work
        "denoise": ScheduledModel(small["denoise"], [0.2, 0.02]),
        "larger": ScheduledModel(MPRNetConfig.for_task("deblur", size="small"), [0.2, 0.1]),
    }
    rates = measured_rates(models, side=100, rounds=2)
    assert rates["deblur"] == rates["derain"] == rates["denoise"]
    assert 2.0 <= rates["deblur"] < 3.0  # the 0.02 s call over 0.01 megapixels, not the 0.2 s ones
    assert 10.0 <= rates["larger"] < 20.0  # a model of another size is timed on its own calls
    assert all(model.calls == 2 for model in models.values())  # two rounds, in turns


def test_max_seconds_off_bounds_nothing_and_measures_nothing(monkeypatch):
    model = ScheduledModel(MPRNetConfig.for_task("denoise", size="tiny"), [0.01])
    monkeypatch.setenv("MPRNET_MAX_SECONDS", " OFF ")
    assert cpu_cost_bounds({"denoise": model}) == {} and cpu_cost_bound(model) is None
    assert model.calls == 0  # no start-up measurement
    check_costs({}, 20_000, 20_000, lambda *_: None, "on this server")  # nothing to refuse with
    monkeypatch.setenv("MPRNET_MAX_SECONDS", "of")
    with pytest.raises(ValueError, match="MPRNET_MAX_SECONDS must be a positive number"):
        cpu_cost_bounds({"denoise": model})


@pytest.mark.slow
def test_a_slow_moment_during_calibration_does_not_shrink_the_limit(monkeypatch, tiny_model):
    """A busy moment (another process, a background export) slows some calls: the bound is the same as on an idle
    machine as long as one call of one model of that size ran undisturbed, so repeated start-ups agree."""
    monkeypatch.setenv("MPRNET_MAX_SECONDS", "10")
    config = MPRNetConfig.for_task("denoise", size="tiny")

    def limits(durations_per_model):
        models = {task: ScheduledModel(config, durations) for task, durations in durations_per_model.items()}
        bounds = cpu_cost_bounds(models, side=100, rounds=4)
        return {task: bound.largest_megapixels(tiny_model, None) for task, bound in bounds.items()}

    idle = limits({"deblur": [0.05] * 4, "denoise": [0.05] * 4})
    for slow_moment in (
        {"deblur": [0.3, 0.3, 0.05, 0.3], "denoise": [0.3, 0.3, 0.3, 0.3]},  # most calls ten times slower
        {"deblur": [0.05, 0.3, 0.3, 0.3], "denoise": [0.3, 0.3, 0.3, 0.05]},  # slow warm-ups and first rounds
    ):
        busy = limits(slow_moment)
        assert busy["deblur"] == busy["denoise"]
        assert busy["deblur"] == pytest.approx(idle["deblur"], rel=0.3)  # sleep's own jitter, not a 6x smaller limit


# ------------------------------------------------------------------------------------------------ memory ceiling
def test_the_memory_ceiling_is_read_from_the_environment_and_defaults_to_half_the_machine(monkeypatch):
    monkeypatch.delenv("MPRNET_MEMORY_LIMIT_MB", raising=False)
    assert memory_limit_bytes() == int(0.5 * total_memory_bytes())
    assert 0 < total_memory_bytes() <= psutil.virtual_memory().total
    monkeypatch.setenv("MPRNET_MEMORY_LIMIT_MB", "1536")
    assert memory_limit_bytes() == 1536 * 2**20
    assert MemoryCeiling.from_environment().limit_bytes == 1536 * 2**20
    monkeypatch.setenv("MPRNET_MEMORY_LIMIT_MB", " OFF ")
    assert memory_limit_bytes() is None
    assert MemoryCeiling(None).available_bytes() is None and not MemoryCeiling(None).after_request()


@pytest.mark.parametrize("value", ["lots", "2GB", "0", "-512", "nan", "inf", "<b>" * 100])
def test_a_memory_ceiling_that_is_not_a_number_of_megabytes_is_refused_saying_what_to_set(monkeypatch, value):
    monkeypatch.setenv("MPRNET_MEMORY_LIMIT_MB", value)
    with pytest.raises(ValueError) as refused:
        memory_limit_bytes()
    message = str(refused.value)
    assert message.startswith("MPRNET_MEMORY_LIMIT_MB must be a positive number of megabytes (e.g. 4096) or 'off'")
    assert len(message) < 300 and "<b>" not in message


def test_a_restore_that_would_pass_the_ceiling_is_refused_with_what_it_needs_and_what_to_do():
    # 100 MB more than this process holds in use (resident less the heap it keeps free for reuse: after earlier
    # tests that can be a gigabyte); other threads of the test process may move it by tens of MB meanwhile.
    ceiling = MemoryCeiling(max(0, resident_bytes() - heap_bytes_free()) + 100 * 2**20)
    assert 0 < ceiling.available_bytes() < 400 * 2**20
    ceiling.check(10 * 2**20, "A small photo")
    with pytest.raises(ValueError) as refused:
        ceiling.check(4 * 2**30, "Restoring this 8000x8000 photo whole")
    assert re.match(
        r"Restoring this 8000x8000 photo whole needs about 4,096 MB, more than the \d+ MB this server may still use "
        r"under its memory ceiling of [\d,]+ MB \(MPRNET_MEMORY_LIMIT_MB\)\. Choose a smaller tile size",
        str(refused.value),
    )


@pytest.mark.slow
def test_memory_is_handed_back_above_half_the_ceiling_after_a_request():
    """What a large restore leaves behind when the process keeps freed memory for reuse (`reuse_freed_memory`, which
    the app applies) goes back to the system: RSS falls by most of it. Checked in a fresh process, where the
    allocator's settings are the app's."""
    script = textwrap.dedent("""
        import torch
        from mprnet_hf.serving import MemoryCeiling, resident_bytes
        from mprnet_hf.speed.fast import reuse_freed_memory

        assert reuse_freed_memory()
        before = resident_bytes()
        blocks = [torch.ones(16, 2**20) for _ in range(16)]  # 16 blocks of 64 MiB, as a restore's feature maps
        del blocks
        kept = resident_bytes()
        assert not MemoryCeiling(4 * kept).after_request()  # under half of a high ceiling: kept for reuse
        assert resident_bytes() > before + 900 * 2**20
        assert MemoryCeiling(kept).after_request()  # above half the ceiling: handed back
        print(before >> 20, kept >> 20, resident_bytes() >> 20)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    before, kept, after = map(int, result.stdout.split())
    assert kept - before >= 900 and after - before < 200, (before, kept, after)

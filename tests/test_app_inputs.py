"""The app's input handling called in-process (test_app.py drives the same functions through a real server): task,
tile and upload checks, and the GPU time a request asks for, against hand-computed values.

app.py is imported at module level: mutation runs fork every mutant from a process that has imported the tests, so
the app's start-up (loading the models, about half a minute here) happens once, not once per mutant.
"""

import re
from pathlib import Path

import gradio as gr
import pytest
from gradio.utils import get_upload_folder
from PIL import Image

import app
from mprnet_hf.serving import UPLOAD_REFUSED, CostBound
from mprnet_hf.speed.serving_speed import serving_tile_size

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TILE_SIZE_MESSAGE = "Tile size must be 0 (automatic) or a whole number from 256 to 1024, got {}."
TILE_OVERLAP_MESSAGE = "Tile overlap must be a whole number from 0 to 96, got {}."


def refusal(call, *args, **kwargs) -> gr.Error:
    with pytest.raises(gr.Error) as refused:
        call(*args, **kwargs)
    return refused.value


@pytest.fixture
def uploaded(tmp_path):
    """A real file in Gradio's upload folder, where the app reads uploads from."""
    folder = get_upload_folder()
    path = tmp_path / "outside.png"
    Image.new("RGB", (12, 10)).save(path)
    inside = Path(folder) / "mprnet-test-inputs" / "photo.png"
    inside.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10)).save(inside)
    yield inside.resolve(), path
    inside.unlink(missing_ok=True)


@pytest.mark.parametrize("value, expected", [(512, 512), ("512", 512), (512.0, 512), (0, 0), (256, 256), (1024, 1024)])
def test_tile_sizes_in_range_or_automatic_are_taken_as_whole_numbers(value, expected):
    number = app.whole_number_in(value, app.TILE_SIZE_RANGE, "Tile size", also=app.AUTOMATIC_TILES)
    assert number == expected and type(number) is int


@pytest.mark.parametrize("value", [255, 1025, 512.5, -1, None, "abc", "", 10**400, [512], float("nan")])
def test_other_tile_sizes_are_refused_naming_the_range(value):
    error = refusal(app.whole_number_in, value, app.TILE_SIZE_RANGE, "Tile size", also=app.AUTOMATIC_TILES)
    expected = TILE_SIZE_MESSAGE.format(app.short_repr(value))
    assert error.message == expected and error.print_exception is False


def test_overlaps_have_no_automatic_value():
    assert app.whole_number_in(0, app.TILE_OVERLAP_RANGE, "Tile overlap") == 0
    assert app.whole_number_in(96, app.TILE_OVERLAP_RANGE, "Tile overlap") == 96
    for value in (-1, 97, 8.5):
        assert refusal(app.whole_number_in, value, app.TILE_OVERLAP_RANGE, "Tile overlap").message == (
            TILE_OVERLAP_MESSAGE.format(value)
        )


def test_a_request_is_checked_before_anything_is_read(uploaded):
    inside, outside = uploaded
    assert app.checked_request({"path": str(inside)}, "denoise", "0", 64.0) == (inside, "denoise", 0, 64)
    assert app.checked_request(str(inside), "auto", 1024, 0) == (inside, "auto", 1024, 0)
    assert app.checked_request(None, "deblur", 256, 96) == (None, "deblur", 256, 96)
    for task in ("dehaze", ["deblur"], None, "Deblur"):
        error = refusal(app.checked_request, str(inside), task, 512, 64)
        assert error.message == f"Unknown task {app.short_repr(task)}: choose one of auto, deblur, derain, denoise."
    assert refusal(app.checked_request, str(inside), "derain", 100, 64).message == TILE_SIZE_MESSAGE.format(100)
    assert refusal(app.checked_request, str(inside), "derain", 512, 100).message == TILE_OVERLAP_MESSAGE.format(100)
    error = refusal(app.checked_request, str(outside), "derain", 512, 64)
    assert error.message == UPLOAD_REFUSED and error.print_exception is False


def test_file_payloads_are_told_from_other_values(uploaded):
    inside, _ = uploaded
    for payload in ({"path": "x"}, {"url": "x"}, {"meta": {}}, {"path": None, "orig_name": "x"}):
        assert app.is_file_payload(payload)
    for payload in ({"name": "x"}, {}, "x", ["x"], None, 5):
        assert not app.is_file_payload(payload)
    served = {"path": f"http://127.0.0.1:9/gradio_api/file={inside}", "url": "http://127.0.0.1:9/x", "size": 5}
    assert app.as_local_upload(served) == {"path": str(inside), "url": None, "size": 5}
    assert app.upload_folders() == [get_upload_folder()]
    with pytest.raises(ValueError, match=re.escape(UPLOAD_REFUSED)):
        app.as_local_upload({"path": "/etc/passwd"})


def test_requests_tile_as_asked_or_as_the_server_chooses(monkeypatch):
    model = app.MODELS["denoise"]
    assert app.tile_size_for((3000, 2000), "denoise", 512) == 512
    # The server plans on the memory its ceiling leaves (the same figure for both calls here: it moves by the second).
    available = 8 * 2**30
    monkeypatch.setattr(app, "memory_for_restores", lambda: available)
    for size in ((100, 80), (30_000, 20_000), (40_000, 10)):
        chosen = serving_tile_size(model, *size, app.DEFAULT_TILE_SIZE, available_bytes=available)
        assert app.tile_size_for(size, "denoise", 0) == chosen
    assert app.tile_size_for((30_000, 20_000), "deblur", 0) is not None  # too large to restore whole on any machine


def test_gpu_time_asked_is_the_cost_of_the_photo_as_it_will_be_tiled(monkeypatch):
    monkeypatch.setitem(app.COST_BOUNDS, "denoise", CostBound(budget_s=60, seconds_per_megapixel=10.0))
    photo = Image.new("RGB", (1000, 1210))
    # Whole on this CPU (one pass): 12.1 s, asked as 13; in tiles of 256, two passes: 24.2 s, asked as 25.
    assert app.gpu_seconds(photo, "denoise", 0, 64) == 13
    assert app.gpu_seconds(photo, "denoise", 256, 64) == 25
    assert app.gpu_seconds(Image.new("RGB", (10, 10)), "denoise", 256, 64) == 10  # the floor

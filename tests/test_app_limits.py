"""The upload size limit, with real decodable images just under and just over it: the default 16 megapixels, and
MPRNET_MAX_MEGAPIXELS, in the library and through a real app server started with a small limit."""

import importlib.util
import io
import re
import socket
import warnings

import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import REPO_ROOT, progressive_jpeg_repeating_its_last_scan
from mprnet_hf import MPRNetModel
from mprnet_hf.data.safe_open import MAX_JPEG_SCANS, open_image_file
from mprnet_hf.models.mprnet.inference import DEFAULT_MAX_MEGAPIXELS, check_pixel_count, restore_image
from mprnet_hf.serving import max_megapixels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_LIMIT = "0.01"  # megapixels: 10,000 pixels, so 100 x 100 is just under and 101 x 100 just over


def blank_png(path, width: int, height: int):
    """A real 1-bit PNG: a few kilobytes whatever its size, and fully decodable."""
    Image.new("1", (width, height)).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------------------------------------ library
def test_default_limit_is_sixteen_megapixels_inclusive():
    assert DEFAULT_MAX_MEGAPIXELS == 16
    check_pixel_count(Image.new("1", (4000, 4000)))
    with pytest.raises(ValueError, match=re.escape("4001x4000 (16.0 megapixels), above the limit of 16 megapixels")):
        check_pixel_count(Image.new("1", (4001, 4000)))
    with pytest.raises(ValueError, match=re.escape("1616x9901 (16.0 megapixels)")):
        check_pixel_count(Image.new("1", (1616, 9901)))  # 16,000,016 pixels: 16 over the limit


def test_uploads_just_under_the_default_limit_are_decoded_and_just_over_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MPRNET_MAX_MEGAPIXELS", raising=False)
    image, notes = open_image_file(blank_png(tmp_path / "under.png", 4000, 4000))
    assert image.size == (4000, 4000) and image.getpixel((3999, 3999)) == 0 and notes == []
    with pytest.raises(ValueError, match=re.escape("above the limit of 16 megapixels")):
        open_image_file(blank_png(tmp_path / "over.png", 4000, 4001))


def test_a_bomb_under_pillows_own_threshold_is_refused_by_the_limit(tmp_path, monkeypatch):
    """81 megapixels: Pillow opens it without a warning, so only the limit stands between it and 81 MB of pixels."""
    monkeypatch.delenv("MPRNET_MAX_MEGAPIXELS", raising=False)
    path = blank_png(tmp_path / "bomb.png", 9000, 9000)
    assert path.stat().st_size < 50_000
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as header:
            assert header.size == (9000, 9000)
    with pytest.raises(ValueError, match=re.escape("9000x9000 (81.0 megapixels), above the limit of 16 megapixels")):
        open_image_file(path)


def test_environment_variable_sets_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("MPRNET_MAX_MEGAPIXELS", SMALL_LIMIT)
    assert max_megapixels() == 0.01
    # The server reads the variable and passes its limit on, as the app does (open_image_file alone knows no variable).
    image, _ = open_image_file(blank_png(tmp_path / "under.png", 100, 100), max_megapixels())
    assert image.size == (100, 100)
    over = blank_png(tmp_path / "over.png", 101, 100)
    with pytest.raises(ValueError, match=re.escape("101x100 (0.0 megapixels), above the limit of 0.01 megapixels")):
        open_image_file(over, max_megapixels())
    assert open_image_file(over, limit_megapixels=1)[0].size == (101, 100)  # an explicit limit wins


@pytest.mark.parametrize("value", ["lots", "16MP", "0", "-3", "nan", "inf"])
def test_a_limit_that_is_not_a_positive_number_is_refused(monkeypatch, value):
    monkeypatch.setenv("MPRNET_MAX_MEGAPIXELS", value)
    with pytest.raises(ValueError, match=re.escape(f"MPRNET_MAX_MEGAPIXELS must be a positive number, got {value!r}")):
        max_megapixels()


def test_restore_image_checks_the_limit_it_is_given(tiny_config):
    torch.manual_seed(0)
    model = MPRNetModel(tiny_config(reduction=2)).eval()
    assert restore_image(model, Image.new("RGB", (100, 100)), max_megapixels=0.01).image.size == (100, 100)
    with pytest.raises(ValueError, match=re.escape("above the limit of 0.01 megapixels")):
        restore_image(model, Image.new("RGB", (101, 100)), max_megapixels=0.01)
    assert restore_image(model, Image.new("RGB", (101, 100)), max_megapixels=None).image.size == (101, 100)


def test_a_progressive_jpeg_scan_bomb_is_refused_before_decoding(tmp_path):
    """The issue's file: 609 KB, 1200x1200, its last scan 50,000 times over (a minute of decoding unchecked)."""
    bomb = tmp_path / "scans.jpg"
    bomb.write_bytes(progressive_jpeg_repeating_its_last_scan(1200, 1200, 50_000))
    with pytest.raises(ValueError, match=re.escape("'scans.jpg' is a JPEG with more than 256 scans (progressive")):
        open_image_file(bomb)


@pytest.mark.timeout(5)
def test_a_jpeg_with_a_megabyte_of_fill_bytes_is_handled_quickly(tmp_path):
    """0xFF fill bytes before a marker cost the scan counter nothing: a marker pattern matching `\\xff+` backtracked
    quadratically over them (20 KB of 0xFF took 3.7 s, 1 MB would take hours) before any decoding. The bound is
    generous: it takes a few hundredths of a second."""
    header = io.BytesIO()
    Image.new("RGB", (64, 48), "white").save(header, "JPEG", progressive=True)
    data = header.getvalue()
    start = data.index(b"\xff\xda")  # the first scan's header, then a megabyte of 0xFF as its data
    path = tmp_path / "fill.jpg"
    path.write_bytes(data[: start + 2 + int.from_bytes(data[start + 2 : start + 4], "big")] + b"\xff" * (1 << 20))
    try:
        assert open_image_file(path)[0].size == (64, 48)
    except ValueError as refused:
        assert "fill.jpg" in str(refused)


def test_jpegs_with_the_scans_encoders_write_open_up_to_the_limit(tmp_path):
    for mode in ("L", "RGB", "CMYK"):  # libjpeg's progressive scripts: 6, 10 and 18 scans
        Image.new(mode, (64, 48), "white").save(tmp_path / f"{mode}.jpg", progressive=True)
        assert open_image_file(tmp_path / f"{mode}.jpg")[0].size == (64, 48)
    at_limit, over = tmp_path / "256.jpg", tmp_path / "257.jpg"
    at_limit.write_bytes(progressive_jpeg_repeating_its_last_scan(400, 300, MAX_JPEG_SCANS - 10))  # 10 of its own
    over.write_bytes(progressive_jpeg_repeating_its_last_scan(400, 300, MAX_JPEG_SCANS - 9))
    assert open_image_file(at_limit)[0].size == (400, 300)
    with pytest.raises(ValueError, match="more than 256 scans"):
        open_image_file(over)


def test_large_jpegs_may_have_fewer_scans(tmp_path):
    """Scans times megapixels is bounded too: 16 megapixels may have 64 scans, about a second of decoding."""
    path = tmp_path / "large.jpg"
    path.write_bytes(progressive_jpeg_repeating_its_last_scan(4000, 4000, 55))
    with pytest.raises(ValueError, match=re.escape("more than 64 scans")):
        open_image_file(path)


# ------------------------------------------------------------------------------------------------ the app
@pytest.fixture(scope="module")
def small_limit_client():
    """app.py imported anew (as another module) with MPRNET_MAX_MEGAPIXELS set, and served on its own port."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPRNET_MAX_MEGAPIXELS", SMALL_LIMIT)
        spec = importlib.util.spec_from_file_location("app_with_a_small_limit", REPO_ROOT / "app.py")
        app = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(app)
        port = free_port()
        app.demo.launch(
            server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH_OPTIONS
        )
        try:
            yield Client(f"http://127.0.0.1:{port}/", verbose=False)
        finally:
            app.demo.close()


def restore(client, path):
    return client.predict(handle_file(str(path)), "denoise", 512, 64, api_name="/restore")


@pytest.mark.server
@pytest.mark.slow
def test_app_restores_just_under_its_configured_limit_and_refuses_just_over(small_limit_client, tmp_path):
    restored, *_ = restore(small_limit_client, blank_png(tmp_path / "under.png", 100, 100))
    assert Image.open(restored).size == (100, 100)
    with pytest.raises(AppError, match=re.escape("101x100 (0.0 megapixels), above the limit of 0.01 megapixels")):
        restore(small_limit_client, blank_png(tmp_path / "over.png", 101, 100))
    restored, *_ = restore(small_limit_client, blank_png(tmp_path / "again.png", 50, 200))
    assert Image.open(restored).size == (50, 200)  # still serving

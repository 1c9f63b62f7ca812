"""The Gradio app over HTTP, as its users call it: a real server on 127.0.0.1 and the real gradio_client.

Every task restores its examples (lossless PNG, input size, PSNR better than the degraded input), every kind of odd
upload is handled, and every bad one is refused with a clear message while the server keeps serving.
"""

import io
import re
import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from conftest import REPO_ROOT

from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from mprnet_hf.inference import restore_image

EXAMPLES = REPO_ROOT / "examples"
# (task, degraded example, clean source) for the synthetic examples
SYNTHETIC_EXAMPLES = [
    ("deblur", "coffee_motion", "coffee"),
    ("derain", "fruits_rain", "fruits"),
    ("derain", "building_rain", "building"),
    ("denoise", "monarch_noise", "monarch"),
    ("denoise", "squirrel_noise", "squirrel_cls"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def app_module():
    import app

    return app


@pytest.fixture(scope="module")
def client(app_module):
    port = free_port()
    app_module.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app_module.LAUNCH_OPTIONS
    )
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app_module.demo.close()


def restore(client, path, task="denoise", tile_size=512, tile_overlap=64):
    return client.predict(handle_file(str(path)), task, tile_size, tile_overlap, api_name="/restore")


def png_bit_depth(path) -> int:
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG file"
    return data[24]  # IHDR: length, type, width, height, then the bit depth


def assert_still_serving(client, tmp_path):
    """After a refused upload, a good one must still be answered."""
    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (120, 80, 40)).save(good)
    restored, *_ = restore(client, good)
    assert Image.open(restored).size == (16, 16)


# ------------------------------------------------------------------------------------------------ good requests
def test_api_returns_file_slider_stages_and_status(client):
    degraded = EXAMPLES / "denoise" / "monarch_noise.png"
    restored, (before, after), stages, status = restore(client, degraded, "denoise")

    assert Path(restored).name == "monarch_noise_denoise.png"
    assert Image.open(before).size == Image.open(degraded).size
    # The slider and the gallery are PNG too (Gradio's default would be lossy WebP), and the slider shows the very
    # pixels of the download.
    for path in [before, after, *(stage["image"] for stage in stages)]:
        assert Path(path).read_bytes()[:8] == PNG_SIGNATURE
    assert np.array_equal(np.asarray(Image.open(after)), np.asarray(Image.open(restored)))
    assert [stage["caption"] for stage in stages] == ["Stage 1", "Stage 2", "Stage 3 (final)"]
    assert "denoise" in status and "256×171" in status


def test_download_is_the_lossless_library_result(client, app_module):
    degraded = EXAMPLES / "derain" / "fruits_rain.png"
    restored, *_ = restore(client, degraded, "derain")
    expected = restore_image(app_module.MODELS["derain"], Image.open(degraded)).image
    # Any lossy step (JPEG, WebP) on the way would change pixels of this rainy, high-frequency image.
    assert np.array_equal(np.asarray(Image.open(restored)), np.asarray(expected))


@pytest.mark.parametrize("task, degraded_name, clean_name", SYNTHETIC_EXAMPLES)
def test_restoration_improves_psnr(client, task, degraded_name, clean_name):
    degraded_path = EXAMPLES / task / f"{degraded_name}.png"
    clean = np.asarray(Image.open(EXAMPLES / "clean" / f"{clean_name}.png").convert("RGB"))
    degraded = np.asarray(Image.open(degraded_path).convert("RGB"))
    restored_path, *_ = restore(client, degraded_path, task)

    assert Path(restored_path).read_bytes()[:8] == PNG_SIGNATURE
    restored_image = Image.open(restored_path)
    assert restored_image.format == "PNG" and restored_image.size == Image.open(degraded_path).size
    restored = np.asarray(restored_image.convert("RGB"))
    psnr_before = peak_signal_noise_ratio(clean, degraded)
    psnr_after = peak_signal_noise_ratio(clean, restored)
    assert psnr_after > psnr_before, f"{task} made {degraded_name} worse: {psnr_before:.2f} -> {psnr_after:.2f} dB"


def test_real_blurred_photo(client):
    degraded = EXAMPLES / "deblur" / "licenseplate_motion.png"
    restored, *_ = restore(client, degraded, "deblur")
    image = Image.open(restored)
    assert image.format == "PNG" and image.size == Image.open(degraded).size


def test_every_task_has_examples(app_module):
    for task in ("deblur", "derain", "denoise"):
        rows = app_module.example_rows(task)
        assert len(rows) >= 2 and all(row[1] == task for row in rows)
        for path, _ in rows:
            width, height = Image.open(path).size
            assert max(width, height) <= 256


# ------------------------------------------------------------------------------------------------ odd but valid inputs
def test_one_pixel_image(client, tmp_path):
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 90)).save(path)
    restored, *_ = restore(client, path)
    assert Image.open(restored).size == (1, 1)


def test_sixteen_bit_png_comes_back_sixteen_bit(client, tmp_path):
    gradient = (np.linspace(0, 65535, 48 * 40).reshape(40, 48)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(gradient, mode="I;16").save(path)
    assert png_bit_depth(path) == 16
    restored, *_ = restore(client, path)
    assert png_bit_depth(restored) == 16
    image = Image.open(restored)
    assert image.mode.startswith("I") and image.size == (48, 40)
    # Values beyond 8 bits survive: a 16-bit gradient has far more than 256 distinct levels.
    assert len(np.unique(np.asarray(image))) > 256


def test_cmyk_jpeg(client, tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (40, 24), (10, 200, 30, 20)).save(path, format="JPEG", quality=95)
    restored, (before, _), _, status = restore(client, path)
    image = Image.open(restored)
    assert image.mode == "RGB" and image.size == (40, 24)
    assert Image.open(before).mode == "RGB"
    assert "CMYK in" in status


def test_rgba_keeps_its_alpha(client, tmp_path):
    rgba = np.zeros((32, 48, 4), dtype=np.uint8)
    rgba[..., :3] = 140
    rgba[..., 3] = np.tile(np.linspace(0, 255, 48).astype(np.uint8), (32, 1))
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    restored, *_ = restore(client, path)
    image = Image.open(restored)
    assert image.mode == "RGBA"
    assert np.array_equal(np.asarray(image)[..., 3], rgba[..., 3])


def test_grayscale_stays_grayscale(client, tmp_path):
    path = tmp_path / "gray.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1)), mode="L").save(path)
    restored, *_ = restore(client, path)
    image = Image.open(restored)
    assert image.mode == "L" and image.size == (64, 32)


def test_exif_rotated_photo_comes_out_upright(client, tmp_path):
    # Stored 64 wide and 32 tall, top half white; orientation 6 means "rotate 90° clockwise to view", so the upright
    # photo is 32 wide and 64 tall with the white half on the right.
    stored = np.zeros((32, 64, 3), dtype=np.uint8)
    stored[:16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, format="JPEG", quality=95, exif=exif)
    restored, (before, _), _, _ = restore(client, path)

    upright = np.asarray(Image.open(restored).convert("L"), dtype=np.float32)
    assert upright.shape == (64, 32)
    assert upright[:, 16:].mean() > upright[:, :16].mean() + 100
    assert Image.open(before).size == (32, 64)


def test_animated_gif_uses_first_frame_and_says_so(client, tmp_path):
    frames = [Image.new("RGB", (24, 20), colour) for colour in [(250, 250, 250), (0, 0, 0), (0, 0, 0)]]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    restored, _, _, status = restore(client, path)
    image = np.asarray(Image.open(restored).convert("L"), dtype=np.float32)
    assert image.shape == (20, 24)
    assert image.mean() > 200, "the first frame (white) should have been restored, not a black one"
    assert "animated" in status and "first frame" in status


# ------------------------------------------------------------------------------------------------ refused inputs
def tiny_png_declaring(width: int, height: int) -> bytes:
    """A few dozen bytes whose PNG header claims `width` x `height` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def blank_png(width: int, height: int) -> bytes:
    """A real, decodable 1-bit PNG of `width` x `height` pixels: a few kilobytes, whatever its size."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def truncated_png(tmp_path) -> bytes:
    full = tmp_path / "full.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    return data[: len(data) // 2]


BAD_UPLOADS = {
    "corrupt": ("photo.png", lambda tmp: np.random.default_rng(1).bytes(3000), "not an image file"),
    "not an image": ("notes.txt", lambda tmp: b"these are my holiday notes, not a photo\n" * 20, "not an image file"),
    "truncated": ("cut.png", truncated_png, "corrupt or truncated"),
    "empty": ("empty.png", lambda tmp: b"", "empty (0 bytes)"),
    "decompression bomb": ("bomb.png", lambda tmp: tiny_png_declaring(20000, 20000), "decompression bomb"),
    # Real images, so that nothing but the app's own limit can refuse them.
    "just over the megapixel limit": ("huge.png", lambda tmp: blank_png(4001, 4000),
                                      "4001x4000 (16.0 megapixels), above the limit of 16 megapixels"),
    # 81 megapixels, under Pillow's own bomb threshold (89.5): the app's limit must stop it before decoding.
    "bomb Pillow lets through": ("bomb81.png", lambda tmp: blank_png(9000, 9000),
                                 "9000x9000 (81.0 megapixels), above the limit of 16 megapixels"),
}


@pytest.mark.parametrize("kind", list(BAD_UPLOADS))
def test_bad_upload_is_refused_clearly_and_server_keeps_serving(client, tmp_path, kind):
    name, make_bytes, message = BAD_UPLOADS[kind]
    path = tmp_path / name
    path.write_bytes(make_bytes(tmp_path))
    with pytest.raises(AppError, match=re.escape(message)):
        restore(client, path)
    assert_still_serving(client, tmp_path)


def test_no_image_is_refused(client, tmp_path):
    with pytest.raises(AppError, match="No image was uploaded"):
        client.predict(None, "denoise", 512, 64, api_name="/restore")
    assert_still_serving(client, tmp_path)


def test_unknown_task_is_refused_naming_the_valid_ones(client, tmp_path):
    with pytest.raises(AppError, match=re.escape("Unknown task 'dehaze': choose one of deblur, derain, denoise")):
        restore(client, EXAMPLES / "denoise" / "monarch_noise.png", "dehaze")
    assert_still_serving(client, tmp_path)


def test_bad_tile_settings_are_refused(client, tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (400, 40), (90, 90, 90)).save(wide)
    # Within the slider's range but not a size the tiler can use: the library's own message reaches the user.
    with pytest.raises(AppError, match="tile_size must be a multiple of 8"):
        restore(client, wide, tile_size=300)
    with pytest.raises(AppError, match=re.escape("Tile size must be a whole number from 256 to 1024, got 100000")):
        restore(client, wide, tile_size=100000)
    with pytest.raises(AppError, match=re.escape("Tile overlap must be a whole number from 0 to 96, got 'lots'")):
        restore(client, wide, tile_overlap="lots")
    assert_still_serving(client, tmp_path)


def test_image_wider_than_a_tile_is_restored_in_tiles(client, tmp_path):
    path = tmp_path / "panorama.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (48, 300, 3), dtype=np.uint8)).save(path)
    restored, *_ = restore(client, path, tile_size=256, tile_overlap=32)
    assert Image.open(restored).size == (300, 48)


def test_gpu_time_asked_for_counts_the_statistics_pass(app_module):
    """ZeroGPU reserves what `gpu_seconds` asks: a photo larger than a tile is run over twice (the pass recording
    whole-image statistics, then the restoring pass), one that fits in a tile once."""
    fits_in_a_tile = Image.new("RGB", (512, 384))
    two_megapixels = Image.new("RGB", (2000, 1000))
    assert app_module.gpu_seconds(fits_in_a_tile, "deblur", 512, 64) == 20 + 1  # 0.2 megapixels, rounded up
    assert app_module.gpu_seconds(two_megapixels, "deblur", 512, 64) == 20 + 4 * 2 * 2
    assert app_module.gpu_seconds(two_megapixels, "deblur", 1024, 64) == 20 + 4 * 2 * 2  # still wider than a tile
    largest = Image.new("RGB", (4000, 4000))  # 16 megapixels, the default upload limit
    assert app_module.gpu_seconds(largest, "denoise", 512, 64) == 20 + 4 * 16 * 2  # under the cap of 180 s

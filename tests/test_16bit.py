"""16-bit colour photos (PNG and TIFF, which Pillow decodes to 8 bits) are read, restored and written at 16 bits,
with alpha, EXIF and ICC profile; EXIF orientation is applied to 16-bit pixels as Pillow applies it to 8-bit ones."""

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageOps

from conftest import REPO_ROOT
from mprnet_hf import MPRNetModel
from mprnet_hf.data.image_io import ORIENTATION, Photo, orient, read_image, restore_photo, write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def fine_gradient(height=24, width=40, channels=3) -> np.ndarray:
    """uint16 pixels whose low byte matters: an 8-bit round trip (x // 257 * 257) changes almost every value."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    assert np.mean(pixels // 257 * 257 != pixels) > 0.99
    return pixels


def exif_with(**tags) -> bytes:
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[{"make": 0x010F, "orientation": ORIENTATION}[tag]] = value
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [3, 4])
def test_round_trip_keeps_all_16_bits_alpha_icc(tmp_path, suffix, channels):
    pixels = fine_gradient(channels=channels)
    path = write_image(Photo(pixels, icc_profile=SRGB_PROFILE, exif=exif_with(make="Scanner")), tmp_path / f"a{suffix}")

    photo = read_image(path)

    assert isinstance(photo.pixels, np.ndarray) and photo.pixels.dtype == np.uint16
    np.testing.assert_array_equal(photo.pixels, pixels)
    assert photo.bit_depth == 16 and photo.size == (40, 24)
    assert photo.icc_profile == SRGB_PROFILE
    # Pillow alone reads the same file at 8 bits: what the 16-bit reader exists for.
    assert np.asarray(Image.open(path)).dtype == np.uint8


def test_png_keeps_exif(tmp_path):
    path = write_image(Photo(fine_gradient(), exif=exif_with(make="Scanner")), tmp_path / "a.png")
    assert Image.open(path).getexif()[0x010F] == "Scanner"
    restored_exif = Image.Exif()
    restored_exif.load(read_image(path).exif)
    assert restored_exif[0x010F] == "Scanner"


def test_lzw_tiff_from_a_camera_or_scanner_is_read_at_16_bits(tmp_path):
    pixels = fine_gradient()
    tifffile.imwrite(tmp_path / "scan.tif", pixels, photometric="rgb", compression="lzw")
    np.testing.assert_array_equal(read_image(tmp_path / "scan.tif").pixels, pixels)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_of_16_bit_pixels_matches_pillow(orientation):
    pixels = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(buffer)))
    np.testing.assert_array_equal(orient(pixels, orientation), upright)


def test_16_bit_png_with_orientation_is_read_upright_and_written_with_orientation_1(tmp_path):
    pixels = fine_gradient()
    path = write_image(Photo(pixels, exif=exif_with(orientation=6)), tmp_path / "rotated.png")
    photo = read_image(path)
    np.testing.assert_array_equal(photo.pixels, np.rot90(pixels, -1))
    exif = Image.Exif()
    exif.load(photo.exif)
    assert exif[ORIENTATION] == 1


@pytest.fixture(scope="module")
def denoiser():
    return MPRNetModel.from_pretrained(REPO_ROOT / "checkpoints" / "mprnet-denoise-small").eval()


def test_restoration_stays_16_bit_and_agrees_with_the_8_bit_path(denoiser):
    rng = np.random.default_rng(1)
    smooth = np.linspace(0, 60000, 48 * 40, dtype=np.float64).reshape(48, 40)
    rgb = np.stack([smooth, smooth[::-1], np.full_like(smooth, 30000)], axis=-1)
    noisy = np.clip(rgb + rng.normal(0, 3000, rgb.shape), 0, 65535).astype(np.uint16)
    alpha = rng.integers(0, 65536, (48, 40, 1), dtype=np.uint16)

    restored, stages = restore_photo(denoiser, Photo(np.concatenate([noisy, alpha], axis=-1)))
    eight_bit, _ = restore_photo(denoiser, Photo(Image.fromarray((noisy // 257).astype(np.uint8))))

    assert restored.pixels.dtype == np.uint16 and restored.pixels.shape == (48, 40, 4)
    np.testing.assert_array_equal(restored.pixels[..., 3:], alpha)  # alpha untouched, all 16 bits
    assert np.mean(restored.pixels[..., :3] % 257 != 0) > 0.9  # not 8-bit values scaled up
    assert len(stages) == 3 and all(stage.pixels.shape == (48, 40, 3) for stage in stages)
    # The same photo at 8 bits restores to nearly the same image (the input differs by its low bits only).
    difference = np.abs(restored.pixels[..., :3] / 257 - np.asarray(eight_bit.pixels, dtype=np.float64))
    assert difference.mean() < 1.5, difference.mean()


def test_16_bit_written_as_jpeg_is_refused_with_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="PNG or TIFF only"):
        write_image(Photo(fine_gradient()), tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []  # no partial file left behind


@pytest.mark.parametrize("pixels", [fine_gradient(), Image.new("RGB", (40, 24))], ids=["16-bit", "8-bit"])
def test_a_png_whose_profile_pillow_would_refuse_is_not_written(tmp_path, pixels):
    """Pillow refuses to open a PNG whose ICC profile is over 1 MiB; no such file is written."""
    oversized = Photo(pixels, icc_profile=b"\0" * ((1 << 20) + 1))
    with pytest.raises(ValueError, match="over the 1 MB that PNG readers such as Pillow open"):
        write_image(oversized, tmp_path / "a.png")
    assert list(tmp_path.iterdir()) == []
    # A TIFF carries it, and a profile of 1 MiB is written and read back.
    assert read_image(write_image(oversized, tmp_path / "a.tif")).icc_profile is None  # over the limit: left out
    within = Photo(pixels, icc_profile=b"\0" * (1 << 20))
    assert Image.open(write_image(within, tmp_path / "b.png")).info["icc_profile"] == within.icc_profile

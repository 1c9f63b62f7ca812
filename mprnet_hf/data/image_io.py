"""Reading and writing photo files with what a restored copy must keep: bit depth (16-bit colour included), mode,
alpha, EXIF (orientation normalised) and ICC profile.

Pillow decodes 16-bit colour PNG and TIFF to 8 bits, so those two are decoded again at 16 bits with imagecodecs (PNG)
and tifffile (TIFF), and written back with them. Everything else goes through Pillow.

    photo = read_image("scan.tif")                      # Photo: pixels upright, metadata kept aside
    restored, stages = restore_photo(model, photo)      # same size, mode, alpha, bit depth and metadata
    write_image(restored, "out/scan.png")               # or .tif: 16 bits stay 16 bits
"""

import os
import secrets
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image, ImageOps

from ..models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from ..models.mprnet.inference import AUTOMATIC, DEFAULT_STATISTICS_PASSES, WholeImageRuntime, restore_image
from ..models.mprnet.modeling_mprnet import MPRNetModel
from .safe_open import MAX_ICC_PROFILE_BYTES, open_image_file

ORIENTATION = 0x0112
# TIFF tags that describe a TIFF file's own pixel layout: Pillow lists them with the EXIF of a TIFF, but they must not
# travel to another file (its ICC profile travels separately).
_TIFF_LAYOUT_TAGS = {
    256,
    257,
    258,
    259,
    262,
    266,
    273,
    277,
    278,
    279,
    284,
    317,
    320,
    322,
    323,
    324,
    325,
    338,
    339,
    530,
    531,
    532,
    34675,
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_RGB, _PNG_RGBA = 2, 6
# zlib's fastest level: a few percent larger files than the default level, several times faster to write.
_PNG_LEVEL = 1
# Pillow's save options that keep quality where the format is lossy, and the metadata each format can carry.
_SAVE_OPTIONS = {
    "JPEG": {"quality": 95, "subsampling": 0},
    "WEBP": {"lossless": True},
    "TIFF": {"compression": "tiff_deflate"},
}
_FORMATS_WITH_METADATA = {"PNG", "JPEG", "MPO", "TIFF", "WEBP"}
_CMYK_FORMATS = {"JPEG", "MPO", "TIFF"}
# Modes the processor returns as RGB that convert back without loss of meaning. Palette and 1-bit images stay RGB(A)
# and 8-bit grey: the restored pixels no longer fit a palette or two levels.
_MODES_KEPT_BY_CONVERSION = {"CMYK"}


@dataclass
class Photo:
    """A decoded photo: upright pixels plus the metadata a restored copy carries over.

    `pixels` is a PIL image, or for 16-bit colour (which PIL cannot hold) a uint16 (H, W, 3) or (H, W, 4) array, alpha
    last. `exif` is the EXIF block with its orientation set to 1 (the pixels are already upright), or None.
    """

    pixels: Image.Image | np.ndarray
    format: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL gives it."""
        if isinstance(self.pixels, np.ndarray):
            return self.pixels.shape[1], self.pixels.shape[0]
        return self.pixels.size

    @property
    def bit_depth(self) -> int:
        if isinstance(self.pixels, np.ndarray) or self.pixels.mode.startswith("I;16") or self.pixels.mode == "I":
            return 16
        return 8


def read_image(
    path, max_megapixels: float | None = None, check_size: Callable[[int, int], None] | None = None
) -> Photo:
    """Reads a photo file at its own bit depth, upright, with its EXIF and ICC profile, or raises ValueError saying
    what is wrong with it (missing, empty, not an image, corrupt, more pixels than `max_megapixels`, or refused by
    `check_size(width, height)`, which runs on the header before any pixel is decoded)."""
    image, notes = open_image_file(path, max_megapixels, check_size)
    exif = image.getexif()
    orientation = exif.get(ORIENTATION, 1)
    sixteen_bit = read_sixteen_bit_colour(Path(path), image)
    pixels = ImageOps.exif_transpose(image) if sixteen_bit is None else orient(sixteen_bit, orientation)
    return Photo(pixels, image.format, image.info.get("icc_profile") or None, portable_exif(exif, image.format), notes)


def read_sixteen_bit_colour(path: Path, image: Image.Image) -> np.ndarray | None:
    """The uint16 (H, W, 3|4) pixels of a 16-bit RGB(A) PNG or TIFF that Pillow opened as `image`, else None."""
    if image.mode not in ("RGB", "RGBA"):
        return None
    try:
        if image.format == "PNG" and png_bit_depth(path) == 16:
            pixels = imagecodecs.png_decode(path.read_bytes())
        elif image.format == "TIFF" and tiff_is_sixteen_bit_colour(path):
            pixels = tifffile.imread(path, key=0)
        else:
            return None
    except (imagecodecs.PngError, tifffile.TiffFileError, ValueError, OSError) as error:
        raise ValueError(f"{path.name} is a 16-bit image that could not be decoded ({error}). Re-export it.") from None
    if pixels.dtype != np.uint16 or pixels.ndim != 3 or pixels.shape[-1] not in (3, 4):
        return None
    return pixels


def png_bit_depth(path: Path) -> int | None:
    """The bit depth in a PNG's IHDR chunk (which always comes first), for colour PNGs; None for other files."""
    with open(path, "rb") as file:
        header = file.read(29)
    if len(header) < 29 or not header.startswith(_PNG_SIGNATURE) or header[12:16] != b"IHDR":
        return None
    bit_depth, colour_type = header[24], header[25]
    return bit_depth if colour_type in (_PNG_RGB, _PNG_RGBA) else None


def tiff_is_sixteen_bit_colour(path: Path) -> bool:
    with tifffile.TiffFile(path) as tiff:
        page = tiff.pages[0]
        return (
            page.bitspersample == 16
            and page.photometric == tifffile.PHOTOMETRIC.RGB
            and page.samplesperpixel in (3, 4)
            and page.dtype == np.uint16
        )


def orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Turns (H, W, C) pixels upright as the EXIF orientation tag (1-8) says, as `ImageOps.exif_transpose` does."""
    transforms = {
        2: lambda array: array[:, ::-1],
        3: lambda array: array[::-1, ::-1],
        4: lambda array: array[::-1],
        5: lambda array: array.swapaxes(0, 1),
        6: lambda array: np.rot90(array, -1),
        7: lambda array: array[::-1, ::-1].swapaxes(0, 1),
        8: lambda array: np.rot90(array, 1),
    }
    transform = transforms.get(orientation)
    return np.ascontiguousarray(transform(pixels)) if transform else pixels


def portable_exif(exif: Image.Exif, source_format: str | None) -> bytes | None:
    """The EXIF block to write with the restored pixels: orientation 1 (they are upright), and for a TIFF source
    without the tags that describe the source file's own layout."""
    if not exif:
        return None
    if source_format == "TIFF":
        for tag in _TIFF_LAYOUT_TAGS & set(exif):
            del exif[tag]
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    return exif.tobytes() if exif else None


def restore_photo(
    model: MPRNetModel,
    photo: Photo,
    tile_size: int | str | None = AUTOMATIC,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    progress: Callable[[int, int], None] | None = None,
    statistics_passes: int = DEFAULT_STATISTICS_PASSES,
    whole_image_runtime: WholeImageRuntime | None = None,
) -> tuple[Photo, tuple[Photo, ...]]:
    """Restores `photo`; returns the restored photo (same size, mode, alpha, bit depth and metadata) and the RGB
    image of every stage at the same bit depth. The size limit is the reader's (`read_image`). A serving process
    passes the runtime it chose for the model (`ServingReport.runtimes`)."""
    options = dict(
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        precision=precision,
        progress=progress,
        statistics_passes=statistics_passes,
        whole_image_runtime=whole_image_runtime,
    )
    if isinstance(photo.pixels, np.ndarray):
        final, stages = restore_sixteen_bit(model, photo.pixels, **options)
    else:
        restoration = restore_image(model, photo.pixels, max_megapixels=None, **options)
        final, stages = restoration.image, restoration.stages
        if photo.pixels.mode in _MODES_KEPT_BY_CONVERSION:
            final = final.convert(photo.pixels.mode)
    return replace(photo, pixels=final, notes=[]), tuple(replace(photo, pixels=stage, notes=[]) for stage in stages)


def restore_sixteen_bit(model, pixels: np.ndarray, **restore_options):
    """Restores uint16 (H, W, 3|4) pixels at 16 bits, through `restore_image` as 8-bit photos are, but with float
    outputs; the alpha channel is kept exactly as it was."""
    restoration = restore_image(
        model,
        pixels[..., :3],
        MPRNetImageProcessor(apply_exif_orientation=False),  # the reader has turned the pixels upright
        max_megapixels=None,
        output_type="np",
        **restore_options,
    )
    arrays = [to_uint16(stage) for stage in restoration.stages]
    final = np.concatenate([arrays[-1], pixels[..., 3:]], axis=-1)
    return final, tuple(arrays)


def to_uint16(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0, 1) * 65535).astype(np.uint16)


def format_for_path(path) -> str:
    """Pillow's format name for a file name's extension (".tif" -> "TIFF"), or ValueError when Pillow has none."""
    suffix = Path(path).suffix.lower()
    image_format = Image.registered_extensions().get(suffix)
    if image_format is None or image_format not in Image.SAVE:
        raise ValueError(
            f"Cannot write {Path(path).name}: Pillow cannot write {suffix or 'files without an extension'}"
            "; write PNG (--format png) instead"
        )
    return image_format


def new_partial_file(path: Path) -> str:
    """Creates an empty, uniquely named file beside `path` to write it in, with the permissions an ordinary new file
    gets (0o666 less the umask): tempfile.mkstemp's are owner-only, and they would stay so once renamed to `path`."""
    for _ in range(100):
        temporary = path.parent / f".{path.stem}.{secrets.token_hex(4)}{path.suffix}.part"
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(temporary)
    raise FileExistsError(f"Cannot write {path}: no free temporary name beside it")


def write_image(photo: Photo, path, image_format: str | None = None) -> Path:
    """Writes `photo` to `path` with its bit depth, alpha, EXIF and ICC profile, in `image_format` (default: from the
    extension). The file appears whole or not at all: it is written beside `path` and renamed into place."""
    path = Path(path)
    image_format = (image_format or format_for_path(path)).upper()
    check_png_profile(photo, image_format)
    temporary = new_partial_file(path)
    try:
        if isinstance(photo.pixels, np.ndarray):
            write_sixteen_bit_colour(photo, Path(temporary), image_format)
        else:
            save_with_pillow(photo, temporary, image_format)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def check_png_profile(photo: Photo, image_format: str) -> None:
    """Raises ValueError rather than write a PNG that Pillow refuses to open: one whose ICC profile is over
    `MAX_ICC_PROFILE_BYTES` (`read_image` never keeps such a profile; a Photo built by hand may hold one)."""
    profile = photo.icc_profile
    if image_format != "PNG" or not profile or len(profile) <= MAX_ICC_PROFILE_BYTES:
        return
    if as_written(photo, image_format).icc_profile is None:  # a CMYK profile is left behind with the CMYK pixels
        return
    raise ValueError(
        f"The ICC profile is {len(profile) / 2**20:.1f} MB, over the {MAX_ICC_PROFILE_BYTES / 2**20:g} MB that "
        "PNG readers such as Pillow open: leave it out (icc_profile=None) or convert the photo to sRGB first."
    )


def as_written(photo: Photo, image_format: str) -> Photo:
    """`photo` as `write_image` writes it in `image_format` (Pillow's name, e.g. "PNG"), so that what is said about a
    written file (its mode) is what the file holds: CMYK becomes RGB in a format without CMYK (PNG, WebP), its CMYK
    profile left behind since it would mislabel the RGB pixels, and JPEG takes RGB, L or CMYK only."""
    if isinstance(photo.pixels, np.ndarray):
        return photo
    image, icc_profile, image_format = photo.pixels, photo.icc_profile, image_format.upper()
    if image.mode == "CMYK" and image_format not in _CMYK_FORMATS:
        image, icc_profile = image.convert("RGB"), None
    if image_format in ("JPEG", "MPO") and image.mode not in ("RGB", "L", "CMYK"):
        image = image.convert("RGB")
    return replace(photo, pixels=image, icc_profile=icc_profile)


def save_with_pillow(photo: Photo, path, image_format: str) -> None:
    written = as_written(photo, image_format)
    image = written.pixels
    options = dict(_SAVE_OPTIONS.get(image_format, {}))
    if image_format in _FORMATS_WITH_METADATA:
        options.update(
            {key: value for key, value in (("exif", written.exif), ("icc_profile", written.icc_profile)) if value}
        )
    if image_format == "MPO" and image.mode != photo.pixels.mode:
        image_format = "JPEG"  # converted for JPEG: written as a plain one
    image.save(path, format=image_format, **options)


def write_sixteen_bit_colour(photo: Photo, path: Path, image_format: str) -> None:
    pixels = np.ascontiguousarray(photo.pixels)
    if image_format == "PNG":
        path.write_bytes(with_png_metadata(imagecodecs.png_encode(pixels, level=_PNG_LEVEL), photo))
    elif image_format == "TIFF":
        # tifffile writes the ICC profile; the EXIF block has no place in the TIFF it writes and stays behind.
        tifffile.imwrite(
            path,
            pixels,
            photometric="rgb",
            compression="zlib",
            iccprofile=photo.icc_profile,
            extrasamples=("unassalpha",) if pixels.shape[-1] == 4 else None,
            metadata=None,
        )
    else:
        raise ValueError(f"16-bit colour can be written as PNG or TIFF only, not {image_format}; use --format png")


def with_png_metadata(png: bytes, photo: Photo) -> bytes:
    """`png` with the photo's ICC profile (iCCP) and EXIF (eXIf) chunks placed right after its IHDR chunk."""
    extra = []
    if photo.icc_profile:
        extra.append(png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(photo.icc_profile)))
    if photo.exif:
        exif = photo.exif[6:] if photo.exif.startswith(b"Exif\x00\x00") else photo.exif
        extra.append(png_chunk(b"eXIf", exif))
    ihdr_end = len(_PNG_SIGNATURE) + 8 + struct.unpack(">I", png[8:12])[0] + 4
    return png[:ihdr_end] + b"".join(extra) + png[ihdr_end:]


def png_chunk(chunk_type: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + chunk_type + data + struct.pack(">I", zlib.crc32(chunk_type + data))


__all__ = ["Photo", "read_image", "write_image", "as_written", "restore_photo", "format_for_path"]

"""Opening an image file that nobody vouches for (an upload, a file named on the command line): only formats Pillow
decodes itself, the pixel limit checked on the header before any pixel is decoded, PNG text chunks and progressive
JPEG scans that would cost minutes to decode refused, ICC profiles too large to write back left out. The app and
`image_io.read_image` open files through `open_image_file`.
"""

import io
import os
import re
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, PngImagePlugin, UnidentifiedImageError

from ..models.mprnet.inference import DEFAULT_MAX_MEGAPIXELS, ImageRefused, check_pixel_count

# Raster formats Pillow decodes itself. Everything else (EPS, PDF, ...) would hand the upload to an external
# interpreter such as Ghostscript, so it is never even tried. MPO is how Pillow names many phone JPEGs.
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "BMP", "TIFF", "GIF", "PPM")
ALLOWED_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, TIFF, GIF or PPM"
NO_IMAGE = "No image was uploaded. Upload a photo (PNG, JPEG, WebP, ...) first."

# Values echoed back in messages are cut to this many characters (a client may send megabytes).
ECHO_LIMIT = 40
# A progressive JPEG is decoded scan by scan, and every scan is a pass over the coefficients of its components, so its
# decoding cost is its scans times its pixels, and nothing but the file size bounds the scans: 600 KB that repeat an
# empty scan 50,000 times cost half a minute of CPU at 1200x1200. Encoders write about 10 (libjpeg's progressive script:
# 10 for colour, 6 for grey, 18 for CMYK); 256 is the limit NVIDIA's nvImageCodec applies by default against such
# files, and scans times megapixels is held to 1024 as well (64 scans at 16 megapixels), about a second of decoding
# at worst here (docs/APP.md).
MAX_JPEG_SCANS = 256
MAX_JPEG_SCAN_MEGAPIXELS = 1024
# Photos have a few dozen markers (APPn, DQT, DHT, SOF, SOS); this bounds the walk that counts the scans.
MAX_JPEG_MARKERS = 4096
# A marker as libjpeg finds one: 0xFF, fill 0xFF bytes, then a code. 0x00 after 0xFF is a stuffed data byte, and the
# restart (0xD0-0xD7) and TEM (0x01) markers carry nothing, so all of them are skipped at C speed. Only the last 0xFF
# before the code is matched: a leading `\xff+` backtracked quadratically over a long run of fill bytes (a 20 KB file
# took 3.7 s, 1 MB would take hours), and the fill bytes change nothing.
_JPEG_MARKER = re.compile(rb"\xff([\x02-\xcf\xd8-\xfe])")
_JPEG_SOS, _JPEG_EOI, _JPEG_SOI = 0xDA, 0xD9, 0xD8
# An ICC colour profile is kept with the restored photo up to 1 MiB (real profiles are a few KB, at most a few hundred
# KB for large lookup tables): Pillow refuses to open a PNG whose profile inflates past its MAX_TEXT_CHUNK, 1 MiB by
# default, so a larger one would make the restored PNG a file that Pillow, and this app, cannot read again. A larger
# profile is left out and the user told so.
MAX_ICC_PROFILE_BYTES = 1 << 20
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT_CHUNKS = (b"tEXt", b"zTXt", b"iTXt")


def short_repr(value, limit: int = ECHO_LIMIT) -> str:
    """`repr(value)` cut to about `limit` characters, safe to show in a message (no HTML, no control characters)."""
    text = repr(value) if not isinstance(value, str) else repr(value[: limit + 1])
    if len(text) > limit:
        text = text[:limit] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def open_image_file(
    path, limit_megapixels: float | None = None, check_size: Callable[[int, int], None] | None = None
) -> tuple[Image.Image, list[str]]:
    """Opens an image file (an upload, a file named on the command line) as a fully decoded PIL image, or raises
    ValueError saying what is wrong (`ImageRefused`, whose advice each front end words its own way, for a missing,
    empty, unreadable or too large file).

    Only `ALLOWED_FORMATS` are tried. The pixel limit (`limit_megapixels`, 16 by default: a server passes its own),
    and `check_size(width, height)` when given (e.g. a
    `CostBound.check`), run on the header, before any pixel is decoded. Returns the image and notes for the user
    (e.g. that only the first frame of an animation was used).
    """
    limit_megapixels = DEFAULT_MAX_MEGAPIXELS if limit_megapixels is None else limit_megapixels
    if path is None:
        raise ValueError(NO_IMAGE)
    path = Path(path)
    name = short_repr(path.name)
    if not path.is_file():
        raise ImageRefused(f"{name} could not be found", "Check the path.", kind="missing")
    if path.stat().st_size == 0:
        raise ImageRefused(f"The file {name} is empty (0 bytes)", "Use a valid image file.", kind="empty")
    notes = []
    source = path
    if is_png(path):
        # Metadata chunks Pillow would refuse the whole file for are left out first (see `png_without_refused_chunks`).
        readable, dropped_profile = png_without_refused_chunks(path)
        if readable is not None:
            source = io.BytesIO(readable)
        if dropped_profile:
            notes.append(icc_profile_note(name))
    # Image.open reads only the header, so the size is checked before any pixel is decoded; PIL itself refuses
    # headers past twice its own bomb limit.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source, formats=_allowed_formats())
            if getattr(image, "n_frames", 1) > 1:
                notes.append(f"{name} is animated ({image.n_frames} frames); only the first frame was restored.")
                image.seek(0)
            check_pixel_count(image, limit_megapixels)
            if check_size is not None:
                check_size(*image.size)
            if image.format in ("JPEG", "MPO"):
                check_jpeg_decoding_cost(path, name, *image.size)
            image.load()
        # JPEG, WebP and TIFF carry profiles of any size (a JPEG up to 16 MB); Pillow reads them whole.
        profile = image.info.get("icc_profile")
        if profile and len(profile) > MAX_ICC_PROFILE_BYTES:
            del image.info["icc_profile"]
            notes.append(icc_profile_note(name, len(profile)))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"{name} declares more pixels than the limit of {limit_megapixels:g} megapixels "
            "(a possible decompression bomb). Downscale the image and try again."
        ) from None
    except UnidentifiedImageError:
        raise ImageRefused(
            f"{name} is not an image file of a format read here",
            f"Convert it to {ALLOWED_FORMAT_NAMES}.",
            kind="format",
        ) from None
    except OSError as error:
        reason = short_repr(str(error), 80).strip("'\"")
        raise ValueError(f"{name} is corrupt or truncated ({reason}). Re-export or re-download the image.") from None
    return image, notes


def icc_profile_note(name: str, size: int | None = None) -> str:
    """What a user is told when the photo's ICC profile (of `size` bytes, when known) is too large to keep."""
    limit = MAX_ICC_PROFILE_BYTES / 2**20
    size_text = f"of {size / 2**20:.1f} MB" if size else f"larger than {limit:g} MB"
    return (
        f"{name} has an ICC colour profile {size_text}; profiles over {limit:g} MB are not kept (PNG readers refuse "
        "them), so the restored PNG has no colour profile and its colours are read as sRGB. Convert the photo to "
        "sRGB (or a smaller profile) before restoring to keep its colours exact."
    )


def is_png(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE


def inflated_size(data: bytes, limit: int) -> int | None:
    """The size `data` (zlib) inflates to, or None past `limit` bytes, found as Pillow finds it (at most `limit`
    bytes are inflated). Data that is no zlib stream counts as empty: Pillow ignores it."""
    inflater = zlib.decompressobj()
    try:
        inflated = inflater.decompress(data, limit)
    except zlib.error:
        return 0
    return None if inflater.unconsumed_tail else len(inflated)


def png_without_refused_chunks(path: Path) -> tuple[bytes | None, bool]:
    """The PNG at `path` without the metadata chunks for which Pillow refuses the whole file with a bare "Decompressed
    data too large ..." or "Too much memory used in text chunks": an ICC profile (iCCP) over `MAX_ICC_PROFILE_BYTES`,
    a compressed text chunk over `PngImagePlugin.MAX_TEXT_CHUNK`, and text past `PngImagePlugin.MAX_TEXT_MEMORY` in
    all. Returns (the file's bytes without them, or None when none is left out; whether the profile was left out).
    Text chunks never travel to the restored photo, so leaving them out changes nothing the user gets back."""
    left_out, text_bytes, dropped_profile = [], 0, False
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        position = len(_PNG_SIGNATURE)
        # A chunk: length, type, data, CRC. The walk stops at IEND or at the first chunk that does not fit the file
        # (Pillow then says the file is truncated).
        while position + 12 <= size:
            file.seek(position)
            length, kind = struct.unpack(">I4s", file.read(8))
            end = position + 12 + length
            if kind == b"IEND" or end > size:
                break
            if kind == b"iCCP":
                data = file.read(length)
                separator = data.find(b"\0")
                if separator >= 0 and inflated_size(data[separator + 2 :], MAX_ICC_PROFILE_BYTES) is None:
                    left_out.append((position, end))
                    dropped_profile = True
            elif kind in _PNG_TEXT_CHUNKS:
                text = png_text_size(kind, file.read(length)) if kind != b"tEXt" else length
                if text is None or text_bytes + text > PngImagePlugin.MAX_TEXT_MEMORY:
                    left_out.append((position, end))
                else:
                    text_bytes += text
            position = end
        if not left_out:
            return None, False
        file.seek(0)
        data = file.read()
    kept, start = [], 0
    for chunk_start, chunk_end in left_out:
        kept.append(data[start:chunk_start])
        start = chunk_end
    kept.append(data[start:])
    return b"".join(kept), dropped_profile


def png_text_size(kind: bytes, data: bytes) -> int | None:
    """The bytes of text a zTXt or iTXt chunk holds, or None when it inflates past `PngImagePlugin.MAX_TEXT_CHUNK`."""
    keyword_end = data.find(b"\0")
    if keyword_end < 0:
        return len(data)
    if kind == b"zTXt":
        return inflated_size(data[keyword_end + 2 :], PngImagePlugin.MAX_TEXT_CHUNK)
    compressed = data[keyword_end + 1 : keyword_end + 2] == b"\1"
    # After the compression flag and method: a language tag and a translated keyword, each ended by a NUL.
    fields = data[keyword_end + 3 :].split(b"\0", 2)
    if not compressed or len(fields) < 3:
        return len(data)
    return inflated_size(fields[2], PngImagePlugin.MAX_TEXT_CHUNK)


def jpeg_scans_and_markers(data: bytes) -> tuple[int, int]:
    """(scans, markers) of the JPEG image that `data` starts with, up to its EOI: the scans are the SOS markers libjpeg
    decodes, found as libjpeg finds them (segments skipped by their length, entropy-coded data up to the next marker).
    It stops after `MAX_JPEG_SCANS` + 1 scans or `MAX_JPEG_MARKERS` + 1 markers, so it costs little on any file."""
    position, scans, markers = 2, 0, 0  # after SOI
    while scans <= MAX_JPEG_SCANS and markers <= MAX_JPEG_MARKERS:
        found = _JPEG_MARKER.search(data, position)
        if found is None:
            break
        markers += 1
        marker, position = found.group(1)[0], found.end()
        if marker == _JPEG_EOI:
            break
        if marker == _JPEG_SOI:
            continue
        scans += marker == _JPEG_SOS
        position += int.from_bytes(data[position : position + 2], "big")
    return scans, markers


def jpeg_scan_limit(width: int, height: int) -> int:
    """The most scans a `width` x `height` JPEG may have: `MAX_JPEG_SCANS`, fewer past 4 megapixels, where scans times
    megapixels reaches `MAX_JPEG_SCAN_MEGAPIXELS`."""
    return min(MAX_JPEG_SCANS, int(MAX_JPEG_SCAN_MEGAPIXELS * 1e6 / max(1, width * height)))


def check_jpeg_decoding_cost(path: Path, name: str, width: int, height: int) -> None:
    """Raises ValueError for a JPEG with more scans than `jpeg_scan_limit` (or markers than `MAX_JPEG_MARKERS`),
    before any of it is decoded. The decoder runs only the scans in the file, all counted here, so this bounds the
    decoding to that many passes over pixels that the size limits already bound."""
    limit = jpeg_scan_limit(width, height)
    scans, markers = jpeg_scans_and_markers(path.read_bytes())
    if scans > limit:
        what = f"more than {limit} scans (progressive passes; photos have about 10)"
    elif markers > MAX_JPEG_MARKERS:
        what = f"more than {MAX_JPEG_MARKERS} markers (photos have a few dozen)"
    else:
        return
    raise ValueError(
        f"{name} is a JPEG with {what}, which makes it very slow to decode, so it is refused. Re-save it (as a "
        "baseline JPEG or a PNG) and try again."
    )


def _allowed_formats() -> list[str]:
    Image.init()  # Pillow registers its format plugins lazily, on first use
    return [name for name in ALLOWED_FORMATS if name in Image.OPEN]


__all__ = [
    "ALLOWED_FORMATS",
    "ALLOWED_FORMAT_NAMES",
    "MAX_ICC_PROFILE_BYTES",
    "MAX_JPEG_SCANS",
    "NO_IMAGE",
    "open_image_file",
    "icc_profile_note",
    "short_repr",
]

"""Whether a photo was saved as a JPEG, read from its pixels: the 8×8 grid that JPEG compression leaves.

A JPEG stores each 8×8 block of its luma as DCT coefficients rounded to multiples of a quantisation step, so the
blocks of a decoded JPEG have coefficients that sit on a lattice (up to the decoder's rounding). A photo never
compressed, or resized since, has coefficients spread evenly. The test measures, for each DCT frequency, how closely
the coefficients of the blocks cluster on the best-fitting lattice, once on the JPEG grid and once on grids shifted
off it, and reads the difference: a compressed photo clusters on its own grid only, while what clusters everywhere
alike (flat regions, a coarse tone scale) cancels out.

Noise added after compression hides the grid, and noise before it does not (the quantisation comes last). That is the
case the detector cannot tell apart (its JPEG label reads blocking artefacts, which noisy JPEGs at high quality do not
show) and the one that matters for denoising: noise that went through a JPEG encoder is no longer white.
"""

import numpy as np
import scipy.fft
from PIL import Image

BLOCK = 8
# Quantisation steps tried for each frequency. A coarser step of the photo's table is a multiple of one of these,
# and its lattice is then a sub-lattice of theirs, so the best fit still finds it.
STEPS = np.arange(2, 25)
# A frequency counts for a step only where this many blocks have a coefficient beyond half the step: fewer say
# nothing about a lattice (a flat photo has almost none).
MIN_COEFFICIENTS = 50
# Grids moved off the JPEG grid by these (rows, columns), the reference a compressed photo stands out from.
SHIFTS = ((4, 4), (0, 4), (4, 0), (3, 5))
# The largest square read, centred and kept on the grid: enough blocks for the statistics, a bounded cost.
MAX_SIDE = 256
# PIL modes a JPEG decodes to (and their palette and alpha relatives); others hold 16-bit or floating-point values.
EIGHT_BIT_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1"}
# The contrast at which the grid counts as found. Noisy photos never compressed score at most 0.00, the same
# photos saved by Pillow as JPEG of quality 95 at least 0.12 (docs/notes/2026-12-evaluation-runs.md).
JPEG_GRID_THRESHOLD = 0.06


def luma_of(pixels) -> np.ndarray:
    """The luma (as JPEG's YCbCr computes it, 0-255 centred on 0) of an RGB or L PIL image or an (H, W[, C]) array
    of uint8 values or floats in [0, 1]."""
    array = np.asarray(pixels)
    values = array.astype(np.float32) * (255.0 if np.issubdtype(array.dtype, np.floating) else 1.0)
    if values.ndim == 3:
        values = values[..., 0] if values.shape[-1] < 3 else values[..., :3] @ np.float32([0.299, 0.587, 0.114])
    return values - 128.0


def block_coefficients(luma: np.ndarray, row: int, column: int) -> np.ndarray:
    """The 63 AC coefficients (orthonormal DCT-II, JPEG's transform) of each whole 8×8 block of the grid starting
    at (row, column): an (n_blocks, 63) array."""
    area = luma[row:, column:]
    height, width = (area.shape[0] // BLOCK) * BLOCK, (area.shape[1] // BLOCK) * BLOCK
    blocks = area[:height, :width].reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK).swapaxes(1, 2)
    coefficients = scipy.fft.dctn(blocks.reshape(-1, BLOCK, BLOCK), axes=(1, 2), norm="ortho")
    return coefficients.reshape(-1, BLOCK * BLOCK)[:, 1:]


def lattice_fit(coefficients: np.ndarray) -> float:
    """How closely the coefficients sit on a lattice of some step, from 0 (spread evenly) to 1 (exactly on one):
    for each frequency, the best over STEPS of the length of the mean phasor exp(2πi c / step) of the coefficients
    beyond half the step; averaged over the frequencies."""
    best = np.zeros(coefficients.shape[1], np.float32)
    coefficients = coefficients.astype(np.float32)
    magnitude = np.abs(coefficients)
    for step in STEPS:
        counted = magnitude > step / 2
        counts = counted.sum(axis=0)
        if counts.max() < MIN_COEFFICIENTS:
            break  # a larger step counts fewer coefficients still
        angle = np.float32(2 * np.pi / step) * coefficients
        weights = counted.astype(np.float32)
        length = np.hypot((np.cos(angle) * weights).sum(axis=0), (np.sin(angle) * weights).sum(axis=0))
        fit = np.where(counts >= MIN_COEFFICIENTS, length / np.maximum(counts, 1), 0.0)
        best = np.maximum(best, fit)
    return float(best.mean())


def central_corner(height: int, width: int) -> tuple[int, int]:
    """The top-left corner of the square read: centred, at a multiple of BLOCK from the photo's top-left corner, so
    that every grid of the photo keeps its offset in the square."""
    top = max(0, (height - MAX_SIDE) // 2) // BLOCK * BLOCK
    left = max(0, (width - MAX_SIDE) // 2) // BLOCK * BLOCK
    return top, left


def jpeg_grid_contrast(pixels) -> float:
    """How much better the block coefficients of `pixels` (a PIL image, or an (H, W[, C]) array of uint8, uint16 or
    floats in [0, 1]) sit on a lattice on a JPEG grid than off it (about 0: no trace of JPEG; up to 1; 0 for 16-bit
    photos, which no JPEG decoder makes). The grid is tried from each corner of the photo, since a photo turned
    upright from its EXIF orientation has its grid start at another corner."""
    if isinstance(pixels, Image.Image):
        width, height = pixels.size
        if pixels.mode not in EIGHT_BIT_MODES:
            return 0.0  # 16-bit and floating-point photos never came out of a JPEG decoder
        top, left = central_corner(height, width)
        # Only the square read is converted: a large photo is never copied whole.
        square = pixels.crop((left, top, min(width, left + MAX_SIDE + BLOCK), min(height, top + MAX_SIDE + BLOCK)))
        luma = luma_of(square if square.mode in ("RGB", "L") else square.convert("RGB"))
    else:
        array = np.asarray(pixels)
        if array.ndim not in (2, 3):
            raise ValueError(f"Expected an (H, W) or (H, W, C) image, got shape {array.shape}")
        if array.dtype == np.uint16:
            return 0.0
        height, width = array.shape[:2]
        top, left = central_corner(height, width)
        luma = luma_of(array[top : top + MAX_SIDE + BLOCK, left : left + MAX_SIDE + BLOCK])
    if height < 2 * BLOCK or width < 2 * BLOCK:
        return 0.0
    fits = {}

    def fit(row: int, column: int) -> float:
        offset = (row % BLOCK, column % BLOCK)
        if offset not in fits:
            fits[offset] = lattice_fit(block_coefficients(luma, *offset))
        return fits[offset]

    origins = {(0, 0), (height % BLOCK, 0), (0, width % BLOCK), (height % BLOCK, width % BLOCK)}
    return max(
        fit(row, column) - max(fit(row + down, column + across) for down, across in SHIFTS) for row, column in origins
    )


def shows_jpeg_grid(pixels, threshold: float = JPEG_GRID_THRESHOLD) -> bool:
    """Whether `pixels` (PIL image or array) carry the grid of JPEG compression (`jpeg_grid_contrast`)."""
    return jpeg_grid_contrast(pixels) >= threshold


__all__ = ["JPEG_GRID_THRESHOLD", "jpeg_grid_contrast", "shows_jpeg_grid"]

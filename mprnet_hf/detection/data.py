"""Labelled photos for the degradation detector: the development photos degraded with the project's own synthetic
degradations (`mprnet_hf.data.degradations`), alone, in pairs, JPEG-compressed, or left clean.

A photo's labels are the degradations applied (multi-hot over `LABELS`; "clean" when none). They are applied in the
order a camera would: optics and shake blur, sensor noise, rain over the scene, then JPEG compression on saving, so
auto mode undoes them in reverse (derain, denoise, deblur). Light JPEG compression (quality 60-95, what most photos
carry, and the restoration models are trained with) is not an artefact: it leaves the label unchanged.
"""

from pathlib import Path

import numpy as np
import torch

from ..data.degradations import JPEG_QUALITIES, add_rain, jpeg_compress, random_blur, random_noise
from .detector import CROP_SIZE, CROPS_PER_PHOTO, LABELS, as_rgb_array, crop_positions, cut_crops

JPEG_ARTEFACT_QUALITY = (10, 40)
LIGHT_JPEG_QUALITY = JPEG_QUALITIES
LIGHT_JPEG_SHARE = 0.3
SINGLE = (("blur",), ("noise",), ("rain",), ("jpeg",))
PAIRS = (("blur", "noise"), ("noise", "rain"), ("blur", "rain"), ("blur", "jpeg"), ("noise", "jpeg"), ("rain", "jpeg"))
# How often each kind of photo is drawn for training.
CONDITION_SHARES = {"clean": 0.2, "single": 0.5, "pair": 0.3}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def list_photos(folder) -> list[Path]:
    photos = sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise ValueError(f"No photos in {folder}: pass a folder of clean photos (PNG, JPEG, ...)")
    return photos


def load_rgb(path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def multi_hot(kinds: tuple[str, ...]) -> np.ndarray:
    present = set(kinds) or {"clean"}
    return np.array([label in present for label in LABELS], dtype=np.float32)


def apply_degradations(
    image: torch.Tensor,
    kinds: tuple[str, ...],
    rng: np.random.Generator,
    jpeg_quality: int | None = None,
    light_jpeg_share: float = LIGHT_JPEG_SHARE,
) -> torch.Tensor:
    """`image` with the degradations `kinds` (labels from `LABELS`) applied in camera order, each drawn over its
    whole training range. Without "jpeg", a light JPEG compression is added `light_jpeg_share` of the time."""
    if "blur" in kinds:
        image = random_blur(image, rng)
    if "noise" in kinds:
        image = random_noise(image, rng)
    if "rain" in kinds:
        image = add_rain(image, rng)
    if "jpeg" in kinds:
        quality = jpeg_quality or int(rng.integers(JPEG_ARTEFACT_QUALITY[0], JPEG_ARTEFACT_QUALITY[1] + 1))
        image = jpeg_compress(image, quality)
    elif rng.random() < light_jpeg_share:
        image = jpeg_compress(image, int(rng.integers(LIGHT_JPEG_QUALITY[0], LIGHT_JPEG_QUALITY[1] + 1)))
    return image


def draw_kinds(rng: np.random.Generator) -> tuple[str, ...]:
    draw = rng.random()
    if draw < CONDITION_SHARES["clean"]:
        return ()
    if draw < CONDITION_SHARES["clean"] + CONDITION_SHARES["single"]:
        return SINGLE[rng.integers(len(SINGLE))]
    return PAIRS[rng.integers(len(PAIRS))]


def build_crop_set(
    folder, variants_per_photo: int, crops_per_variant: int, seed: int, crop: int = CROP_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(crops (N, crop, crop, 3) uint8, labels (N, len(LABELS)) float32): every photo of `folder` degraded
    `variants_per_photo` times with drawn conditions, `crops_per_variant` crops of each drawn from those the
    detector would read."""
    rng = np.random.default_rng(seed)
    crops, labels = [], []
    for path in list_photos(folder):
        clean = load_rgb(path)
        for _ in range(variants_per_photo):
            kinds = draw_kinds(rng)
            pixels = as_rgb_array(apply_degradations(clean, kinds, rng))
            positions = crop_positions(pixels, crop, CROPS_PER_PHOTO)
            picked = rng.choice(len(positions), size=min(crops_per_variant, len(positions)), replace=False)
            crops.append(cut_crops(pixels, [positions[index] for index in picked], crop))
            labels.append(np.repeat(multi_hot(kinds)[None], len(picked), axis=0))
    return np.concatenate(crops), np.concatenate(labels)


def cached_crop_set(cache_dir, folder, variants_per_photo: int, crops_per_variant: int, seed: int):
    """`build_crop_set`, kept in `cache_dir` (an .npz per folder and settings) so training again starts at once."""
    name = f"{Path(folder).name}-v{variants_per_photo}-c{crops_per_variant}-s{seed}.npz"
    path = Path(cache_dir) / name
    if path.is_file():
        with np.load(path) as stored:
            return stored["crops"], stored["labels"]
    crops, labels = build_crop_set(folder, variants_per_photo, crops_per_variant, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=crops, labels=labels)
    return crops, labels

"""Labelled photos for the degradation detector: clean photos degraded with the project's own synthetic
degradations (`mprnet_hf.data.degradations`), alone, in pairs, JPEG-compressed, or left clean.

A photo's labels are the degradations applied (multi-hot over `LABELS`; "clean" when none). They are applied in the
order a camera would: optics and shake blur, sensor noise, rain over the scene, then JPEG compression on saving, so
auto mode undoes them in reverse (derain, denoise, deblur). Light JPEG compression (quality 60-95, what most photos
carry, and the restoration models are trained with) is not an artefact: it leaves the label unchanged.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.degradations import JPEG_QUALITIES, add_rain, jpeg_compress, random_blur, random_noise
from ..data.synthesis import SYNTHESES, broad_blur, broad_noise, broad_rain
from ..hub.bundled import bundled_models
from ..models.mprnet.inference import restore_image
from .detector import CROP_SIZE, LABEL_UNDONE_BY, LABELS, as_rgb_array, crop_positions, cut_crops
from .overlap import overlapping_photos

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
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def multi_hot(kinds: tuple[str, ...]) -> np.ndarray:
    present = set(kinds) or {"clean"}
    return np.array([label in present for label in LABELS], dtype=np.float32)


CLASSIC = (random_blur, random_noise, add_rain)


def apply_degradations(
    image: torch.Tensor,
    kinds: tuple[str, ...],
    rng: np.random.Generator,
    jpeg_quality: int | None = None,
    light_jpeg_share: float = LIGHT_JPEG_SHARE,
    synthesis: str = "classic",
) -> torch.Tensor:
    """`image` with the degradations `kinds` (labels from `LABELS`) applied in camera order, each drawn over its
    whole training range of `synthesis` (`data.synthesis`: the broad ranges, or the classic `data.degradations`).
    Without "jpeg", a light JPEG compression is added `light_jpeg_share` of the time."""
    if synthesis not in SYNTHESES:
        raise ValueError(f"Unknown synthesis {synthesis!r}: expected one of {', '.join(SYNTHESES)}")
    blur, noise, rain = (broad_blur, broad_noise, broad_rain) if synthesis == "broad" else CLASSIC
    if "blur" in kinds:
        image = blur(image, rng)
    if "noise" in kinds:
        image = noise(image, rng)
    if "rain" in kinds:
        image = rain(image, rng)
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


# A training sample reads a region of a photo, not all of it: degrading a whole 1024-pixel photo to cut six crops
# out of it would spend most of the time on pixels never read. The region is degraded with a margin that is cut
# away afterwards, so no crop sees a blur mirrored at the region's border; the margin is a whole number of JPEG
# blocks.
REGION_SIDE = 320
# The crops of a region are drawn from its 32 most contrasted of a 10x10 grid, as the bundled detector was trained
# (it now reads 64 of a 14x14 grid of a whole photo: the same most contrasted third, more of them).
TRAINING_CROP_POOL = 32
TRAINING_GRID_SIDE = 10
REGION_MARGIN = 24
# Of a few random regions of a photo the most contrasted is read, as the detector reads the most contrasted crops.
REGION_CANDIDATES = 3
# Auto mode looks again at the result of deraining and of denoising (`mprnet_hf.auto`): what it must see there is
# what remains, not the leftovers of the step that ran. Each kind of second look, by name: (degradations,
# restorations run before the second look). A draw cycles through all of them, or through those it names.
SECOND_LOOKS = {
    "rain/derain": (("rain",), ("derain",)),
    "noise/denoise": (("noise",), ("denoise",)),
    "noise+blur/denoise": (("noise", "blur"), ("denoise",)),
    "noise+rain/derain": (("noise", "rain"), ("derain",)),
    "blur+rain/derain": (("blur", "rain"), ("derain",)),
    "noise+rain/derain+denoise": (("noise", "rain"), ("derain", "denoise")),
}
ALL_SECOND_LOOKS = tuple(SECOND_LOOKS)
SECOND_LOOK_SIDE = 256
# The restorations' own border (they see a padded image there) is cut away before the crops are read.
SECOND_LOOK_MARGIN = 24


def second_look_targets(kinds: tuple[str, ...], restorations: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(labels, weights) of a photo degraded by `kinds` and restored by `restorations`: what remains is labelled;
    the labels undone are left out of the loss (weight 0): whether streaks or noise are left after their restoration
    is not known here (a restoration removes them only in part), so no label is taught for them. Auto mode's second
    pass of deraining does act on what the look after deraining reads of rain: that reading is the detector's
    untaught one, and is measured on the foreign and validation sets (docs/DETECTION.md), not trained. "Clean" is
    left out too when nothing remains (the leftovers may still show)."""
    undone = {LABEL_UNDONE_BY[task] for task in restorations}
    remaining = tuple(kind for kind in kinds if kind not in undone)
    labels = multi_hot(remaining)
    weights = np.array([label not in undone for label in LABELS], dtype=np.float32)
    if not remaining:
        weights[LABELS.index("clean")] = 0
    return labels, weights


def textured_region(image: torch.Tensor, side: int, rng: np.random.Generator) -> torch.Tensor:
    """The most contrasted of a few random `side` x `side` regions of `image` (all of it, if smaller)."""
    _, height, width = image.shape
    if height <= side and width <= side:
        return image
    regions = []
    for _ in range(REGION_CANDIDATES):
        top, left = int(rng.integers(0, max(height - side, 0) + 1)), int(rng.integers(0, max(width - side, 0) + 1))
        regions.append(image[:, top : top + side, left : left + side])
    return max(regions, key=lambda region: float(region[1, ::4, ::4].std()))


def trimmed(pixels: np.ndarray, margin: int) -> np.ndarray:
    height, width = pixels.shape[:2]
    if min(height, width) - 2 * margin < CROP_SIZE:
        return pixels
    return pixels[margin : height - margin, margin : width - margin]


def pick_crops(pixels: np.ndarray, count: int, rng: np.random.Generator, crop: int = CROP_SIZE) -> np.ndarray:
    """`count` random crops among the most contrasted of a grid over `pixels` (a region of a photo), as the
    detector reads a photo."""
    positions = crop_positions(pixels, crop, TRAINING_CROP_POOL, TRAINING_GRID_SIDE)
    picked = rng.choice(len(positions), size=min(count, len(positions)), replace=False)
    return cut_crops(pixels, [positions[index] for index in picked], crop)


def restore_region(models, pixels: np.ndarray, restorations: tuple[str, ...]) -> np.ndarray:
    """`pixels` restored by each of `restorations` in turn, through auto mode's own path (8-bit between steps)."""
    image = Image.fromarray(pixels)
    for task in restorations:
        image = restore_image(models[task], image, tile_size=None).image
    return np.asarray(image.convert("RGB"))


def check_second_look_kinds(kinds) -> tuple[str, ...]:
    """`kinds` as a tuple of `SECOND_LOOKS` names (a name given twice is drawn twice as often), or a ValueError."""
    kinds = tuple(kinds)
    if not kinds:
        raise ValueError(f"name at least one kind of second look: {', '.join(ALL_SECOND_LOOKS)}")
    if unknown := [kind for kind in kinds if kind not in SECOND_LOOKS]:
        raise ValueError(f"unknown kind of second look {unknown[0]!r}: choose among {', '.join(ALL_SECOND_LOOKS)}")
    return kinds


def build_crop_set(
    photos,
    variants_per_photo: int,
    crops_per_variant: int,
    seed: int,
    second_looks_per_photo: int = 0,
    second_look_kinds=ALL_SECOND_LOOKS,
    synthesis: str = "classic",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crops (N, 96, 96, 3) uint8, labels (N, len(LABELS)) float32, loss weights (N, len(LABELS)) float32):
    every photo degraded `variants_per_photo` times with drawn conditions (a region of it, see `REGION_SIDE`),
    `crops_per_variant` crops of each drawn from those the detector would read; and `second_looks_per_photo`
    photos degraded and then restored as auto mode does before it looks again, cycling through
    `second_look_kinds` (names of `SECOND_LOOKS`)."""
    second_look_kinds = check_second_look_kinds(second_look_kinds)
    rng = np.random.default_rng(seed)
    models = None
    crops, labels, weights = [], [], []
    for photo_index, path in enumerate(photos):
        clean = load_rgb(path)
        for _ in range(variants_per_photo):
            kinds = draw_kinds(rng)
            region = textured_region(clean, REGION_SIDE + 2 * REGION_MARGIN, rng)
            pixels = trimmed(as_rgb_array(apply_degradations(region, kinds, rng, synthesis=synthesis)), REGION_MARGIN)
            picked = pick_crops(pixels, crops_per_variant, rng)
            crops.append(picked)
            labels.append(np.repeat(multi_hot(kinds)[None], len(picked), axis=0))
            weights.append(np.ones((len(picked), len(LABELS)), dtype=np.float32))
        for look in range(second_looks_per_photo):
            if models is None:
                models = bundled_models()
            cycle = photo_index * second_looks_per_photo + look
            kinds, restorations = SECOND_LOOKS[second_look_kinds[cycle % len(second_look_kinds)]]
            region = textured_region(clean, SECOND_LOOK_SIDE + 2 * SECOND_LOOK_MARGIN, rng)
            degraded = as_rgb_array(apply_degradations(region, kinds, rng, synthesis=synthesis))
            pixels = trimmed(restore_region(models, degraded, restorations), SECOND_LOOK_MARGIN)
            picked = pick_crops(pixels, crops_per_variant, rng)
            target, weight = second_look_targets(kinds, restorations)
            crops.append(picked)
            labels.append(np.repeat(target[None], len(picked), axis=0))
            weights.append(np.repeat(weight[None], len(picked), axis=0))
    return np.concatenate(crops), np.concatenate(labels), np.concatenate(weights)


def photo_set_key(photos) -> str:
    """A short digest of which photos (by name and size) a crop set was made from, for its cache file's name."""
    digest = hashlib.sha1()
    for path in photos:
        digest.update(f"{Path(path).name}:{Path(path).stat().st_size};".encode())
    return digest.hexdigest()[:10]


def second_look_kinds_key(kinds) -> str:
    """'' for the default cycle through every kind of second look (cache names made before the choice existed stay
    valid), else a short digest of the cycle."""
    kinds = tuple(kinds)
    if kinds == ALL_SECOND_LOOKS:
        return ""
    return "-k" + hashlib.sha1(",".join(kinds).encode()).hexdigest()[:8]


def cached_crop_set(
    cache_dir,
    photos,
    variants_per_photo: int,
    crops_per_variant: int,
    seed: int,
    second_looks_per_photo: int = 0,
    second_look_kinds=ALL_SECOND_LOOKS,
    synthesis: str = "classic",
):
    """`build_crop_set`, kept in `cache_dir` (an .npz per photo set and settings) so training again starts at once."""
    kinds_key = second_look_kinds_key(second_look_kinds) if second_looks_per_photo else ""
    synthesis_key = "" if synthesis == "classic" else f"-{synthesis}"  # names made before the choice stay valid
    name = (
        f"{photo_set_key(photos)}-v{variants_per_photo}-c{crops_per_variant}-l{second_looks_per_photo}{kinds_key}"
        f"-s{seed}-r{REGION_SIDE}{synthesis_key}.npz"
    )
    path = Path(cache_dir) / name
    if path.is_file():
        with np.load(path) as stored:
            return stored["crops"], stored["labels"], stored["weights"]
    crops, labels, weights = build_crop_set(
        photos, variants_per_photo, crops_per_variant, seed, second_looks_per_photo, second_look_kinds, synthesis
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, crops=crops, labels=labels, weights=weights)
    return crops, labels, weights


def split_photos(args) -> tuple[list[Path], list[Path], dict]:
    """(training photos, held-out photos, {left-out photo: (evaluation photo, why)}). The comparison by pixels takes
    minutes: its result is kept in --cache-dir."""
    photos = list_photos(args.train_dir)
    references = [path for folder in args.exclude_like for path in list_photos(folder)]
    cache = Path(args.cache_dir) / f"overlaps-{photo_set_key(photos)}-{photo_set_key(references)}.json"
    if cache.is_file():
        overlaps = {Path(photo): (Path(reference), why) for photo, (reference, why) in json.loads(cache.read_text())}
    else:
        overlaps = overlapping_photos(photos, references) if references else {}
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps([[str(photo), [str(ref), why]] for photo, (ref, why) in overlaps.items()]))
    for photo, (reference, why) in overlaps.items():
        print(f"left out {photo}: like {reference} ({why})", flush=True)
    kept = [photo for photo in photos if photo not in overlaps]
    held_out = kept[args.holdout_every - 1 :: args.holdout_every] if args.holdout_every else []
    return [photo for photo in kept if photo not in held_out], held_out, overlaps

"""Training and validation data: paired folders in the standard layouts, and clean photos degraded on the fly."""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ..data.synthesis import synthesis_margin, synthesize

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# Folder names of the degraded and clean images in the layouts of the standard datasets.
PAIRED_LAYOUTS = {
    "gopro": ("blur", "sharp"),  # GoPro: train/<scene>/blur/*.png and train/<scene>/sharp/*.png
    "rain": ("input", "target"),  # the combined deraining set: input/ and target/
    "sidd": ("input", "target"),  # SIDD patches: input/ and target/
}
# Every degraded/clean folder pair a paired folder may use: the layouts above, plus 'groundtruth', which the official
# SIDD patch script writes.
FOLDER_PAIRS = tuple(dict.fromkeys([*PAIRED_LAYOUTS.values(), ("input", "groundtruth")]))


def list_images(folder: Path) -> list[Path]:
    return sorted(path for path in Path(folder).rglob("*") if path.suffix.lower() in IMAGE_SUFFIXES)


def _clean_counterpart(clean_folder: Path, relative: Path) -> Path | None:
    """The clean image at the same relative path, or failing that with the same stem (e.g. .jpg input, .png target)."""
    exact = clean_folder / relative
    if exact.is_file():
        return exact
    for suffix in sorted(IMAGE_SUFFIXES):
        candidate = (clean_folder / relative).with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def find_pairs(root, folder_pairs=FOLDER_PAIRS) -> list[tuple[str, Path, Path]]:
    """(name, degraded, clean) for every degraded image under `root` whose clean twin exists, in any of the
    (degraded, clean) folder names of `folder_pairs`, at any depth: `root/input/x.png` + `root/target/x.png`, or
    `root/scene/blur/x.png` + `root/scene/sharp/x.png`. The name is the relative path without the degraded folder."""
    root = Path(root)
    pairs = []
    for degraded_path in list_images(root):
        parts = degraded_path.relative_to(root).parts
        for degraded_name, clean_name in folder_pairs:
            if degraded_name not in parts[:-1]:
                continue
            position = len(parts) - 1 - parts[::-1].index(degraded_name)
            clean_path = _clean_counterpart(root.joinpath(*parts[:position], clean_name), Path(*parts[position + 1 :]))
            if clean_path is not None:
                pairs.append(("/".join(parts[:position] + parts[position + 1 :]), degraded_path, clean_path))
                break
    return pairs


def load_rgb(path: Path) -> torch.Tensor:
    with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def augment(image: torch.Tensor, index: int) -> torch.Tensor:
    """The official 8-way geometric augmentation: index 0..8, where 0 and 8 leave the patch unchanged."""
    if index == 1:
        return image.flip(-2)
    if index == 2:
        return image.flip(-1)
    if index in (3, 4, 5):
        return torch.rot90(image, index - 2, dims=(-2, -1))
    if index == 6:
        return torch.rot90(image.flip(-2), 1, dims=(-2, -1))
    if index == 7:
        return torch.rot90(image.flip(-1), 1, dims=(-2, -1))
    return image


def random_crop(images: list[torch.Tensor], size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """The same random crop of every image; images smaller than `size` are reflect-padded first."""
    height, width = images[0].shape[-2:]
    while height < size or width < size:
        # A reflection adds at most the side less a pixel: a crop more than twice a small photo's size (a patch with
        # its blur margin) reflects again; a one-pixel side has nothing to mirror and is repeated.
        if min(height, width) < 2:
            mode, pad_h, pad_w = "replicate", max(size - height, 0), max(size - width, 0)
        else:
            mode = "reflect"
            pad_h, pad_w = min(max(size - height, 0), height - 1), min(max(size - width, 0), width - 1)
        images = [F.pad(image[None], (0, pad_w, 0, pad_h), mode=mode)[0] for image in images]
        height, width = images[0].shape[-2:]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    return [image[:, top : top + size, left : left + size] for image in images]


class SyntheticPairs(Dataset):
    """Random patches of clean photos with a freshly drawn degradation; item `i` is the same for a given `seed`.

    Blur is applied to a larger crop and the centre is kept, so patch borders hold real blurred content (the margin
    covers the largest training kernel: no output pixel saw the mirrored border).
    """

    def __init__(
        self,
        folder,
        task: str,
        patch_size: int,
        length: int,
        seed: int = 1234,
        synthesis: str = "classic",
        classic_share: float | None = None,
        jpeg_share: float | None = None,
    ):
        self.paths = list_images(folder)
        if not self.paths:
            raise ValueError(f"No images found in {folder}")
        self.images = [load_rgb(path) for path in self.paths]
        # Larger photos are sampled more often, in proportion to their area.
        areas = np.array([image.shape[-1] * image.shape[-2] for image in self.images], dtype=np.float64)
        self.weights = areas / areas.sum()
        self.task, self.patch_size, self.length, self.seed = task, patch_size, length, seed
        self.synthesis, self.classic_share, self.jpeg_share = synthesis, classic_share, jpeg_share
        self.margin = synthesis_margin(task, synthesis)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        image = self.images[int(rng.choice(len(self.images), p=self.weights))]
        (clean,) = random_crop([image], self.patch_size + 2 * self.margin, rng)
        clean = augment(clean, int(rng.integers(0, 9)))
        degraded = synthesize(
            clean, self.task, rng, self.synthesis, jpeg_share=self.jpeg_share, classic_share=self.classic_share
        )
        if self.margin:
            inner = slice(self.margin, self.margin + self.patch_size)
            clean, degraded = clean[:, inner, inner], degraded[:, inner, inner]
        return {"pixel_values": degraded.contiguous(), "labels": clean.contiguous()}


class PairedFolder(Dataset):
    """Degraded/clean pairs in a standard layout (see `PAIRED_LAYOUTS`), matched by relative path (`find_pairs`)."""

    def __init__(self, root, layout: str, patch_size: int | None, seed: int = 1234, length: int | None = None):
        if layout not in PAIRED_LAYOUTS:
            raise ValueError(f"Unknown layout {layout!r}: expected one of {', '.join(PAIRED_LAYOUTS)}")
        degraded_name, clean_name = PAIRED_LAYOUTS[layout]
        self.pairs = [(degraded, clean) for _, degraded, clean in find_pairs(root, [PAIRED_LAYOUTS[layout]])]
        if not self.pairs:
            raise ValueError(f"No {degraded_name}/{clean_name} pairs found under {root} (layout {layout!r})")
        self.patch_size, self.seed = patch_size, seed
        self.length = length or len(self.pairs)

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        degraded_path, clean_path = self.pairs[index % len(self.pairs)]
        degraded, clean = load_rgb(degraded_path), load_rgb(clean_path)
        if self.patch_size:
            rng = np.random.default_rng([self.seed, index])
            degraded, clean = random_crop([degraded, clean], self.patch_size, rng)
            flip = int(rng.integers(0, 9))
            degraded, clean = augment(degraded, flip), augment(clean, flip)
        return {"pixel_values": degraded.contiguous(), "labels": clean.contiguous()}


def centre_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The central `size` x `size` window of a (C, H, W) image (the whole side where it is shorter)."""
    height, width = image.shape[-2:]
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    return image[:, top : top + size, left : left + size].contiguous()


def validation_pairs(
    folder,
    task: str,
    crop: int = 256,
    seed: int = 0,
    synthesis: str = "classic",
    classic_share: float | None = None,
    jpeg_share: float | None = None,
) -> list[dict]:
    """Fixed degraded/clean centre crops of the validation photos (the same every run)."""
    pairs = []
    for index, path in enumerate(list_images(folder)):
        clean = centre_crop(load_rgb(path), crop)
        rng = np.random.default_rng(seed + index)
        degraded = synthesize(clean, task, rng, synthesis, jpeg_share=jpeg_share, classic_share=classic_share)
        pairs.append({"name": path.stem, "pixel_values": degraded, "labels": clean})
    return pairs

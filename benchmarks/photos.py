"""Test images for the benchmarks, made from the development photos (data/dev/val)."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import REPO_ROOT

VAL_DIR = REPO_ROOT / "data" / "dev" / "val"
DEFAULT_PHOTO = VAL_DIR / "building.png"


def to_tensor(image: Image.Image) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def square_photo(size: int, photo: Path = DEFAULT_PHOTO) -> torch.Tensor:
    """The photo scaled (Lanczos) so its short side is `size`, centre-cropped to size x size; (3, size, size)."""
    with Image.open(photo) as image:
        image = image.convert("RGB")
        scale = size / min(image.size)
        resized = image.resize(
            (max(size, round(image.width * scale)), max(size, round(image.height * scale))), Image.Resampling.LANCZOS
        )
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return to_tensor(resized.crop((left, top, left + size, top + size)))


def val_photos() -> list[Path]:
    return sorted(VAL_DIR.glob("*.png"))

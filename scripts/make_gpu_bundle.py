"""Packs the training and validation photos into a folder small enough to travel with a device call (docs/TRAINING.md,
"Training on a lent GPU"): the device tool carries at most 64 MiB of working tree and carried paths together.

    python scripts/make_gpu_bundle.py [--train data/dev/train] [--val data/dev/val] [--output runs/gpu-bundle]

Training photos become JPEG, quality 95 without chroma subsampling (4:4:4), which keeps them close to the originals,
far closer than the degradations trained on (docs/TRAINING.md gives the error). Validation photos stay lossless
PNG, so the scores compare with those of scripts/quality_report.py, unless they alone would take more than half the
budget (then JPEG too). When the photos still do not fit in --max-mib, every training photo is shrunk by one common
factor until they do. `manifest.json` records what was done.
"""

import argparse
import io
import json
import math
import shutil
import sys
from pathlib import Path

from PIL import Image

# Run as a script from the repository root, where mprnet_hf may not be installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mprnet_hf.training.data import list_images

MIB = 1024 * 1024
JPEG_SETTINGS = {"format": "JPEG", "quality": 95, "subsampling": 0, "optimize": True}


def encode(image: Image.Image, lossless: bool) -> tuple[bytes, str]:
    buffer = io.BytesIO()
    if lossless:
        image.save(buffer, format="PNG", optimize=True)
        return buffer.getvalue(), ".png"
    image.save(buffer, **JPEG_SETTINGS)
    return buffer.getvalue(), ".jpg"


def load_photos(folder: Path) -> list[tuple[Path, Image.Image]]:
    photos = []
    for path in list_images(folder):
        with Image.open(path) as image:
            photos.append((path.relative_to(folder), image.convert("RGB")))
    if not photos:
        raise ValueError(f"No photos found in {folder}")
    return photos


def encode_all(photos, lossless: bool, scale: float = 1.0) -> list[tuple[Path, bytes]]:
    encoded = []
    for relative, image in photos:
        if scale < 1:
            size = (max(round(image.width * scale), 64), max(round(image.height * scale), 64))
            image = image.resize(size, Image.Resampling.LANCZOS)
        data, suffix = encode(image, lossless)
        encoded.append((relative.with_suffix(suffix), data))
    return encoded


def total(encoded) -> int:
    return sum(len(data) for _, data in encoded)


def fit_training_photos(photos, budget: int) -> tuple[list, float]:
    """JPEG-encoded training photos within `budget` bytes, and the common scale factor that took (1: none)."""
    scale, encoded = 1.0, encode_all(photos, lossless=False)
    while total(encoded) > budget:
        # JPEG size grows about with the pixel count: shrink both sides by the square root of the excess, a little more.
        scale *= 0.97 * math.sqrt(budget / total(encoded))
        encoded = encode_all(photos, lossless=False, scale=scale)
    return encoded, scale


def write(encoded, folder: Path) -> None:
    for relative, data in encoded:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_bytes(data)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", default="data/dev/train", help="clean training photos")
    parser.add_argument("--val", default="data/dev/val", help="clean validation photos")
    parser.add_argument("--output", default="runs/gpu-bundle", help="the folder to carry (emptied first)")
    parser.add_argument(
        "--max-mib",
        type=float,
        default=52.0,
        help="size budget of the bundle; the working tree travels with it, within 64 MiB together",
    )
    args = parser.parse_args(argv)
    budget = int(args.max_mib * MIB)
    val_photos, train_photos = load_photos(Path(args.val)), load_photos(Path(args.train))
    val = encode_all(val_photos, lossless=True)
    if total(val) > budget // 2:
        val = encode_all(val_photos, lossless=False)
    train, scale = fit_training_photos(train_photos, budget - total(val))
    output = Path(args.output)
    shutil.rmtree(output, ignore_errors=True)
    write(train, output / "train")
    write(val, output / "val")
    manifest = {
        "train": {
            "source": str(args.train),
            "photos": len(train),
            "bytes": total(train),
            "scale": scale,
            "encoding": "JPEG quality 95, 4:4:4",
        },
        "val": {
            "source": str(args.val),
            "photos": len(val),
            "bytes": total(val),
            "encoding": "PNG" if val[0][0].suffix == ".png" else "JPEG quality 95, 4:4:4",
        },
        "mib": round((total(train) + total(val)) / MIB, 2),
    }
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    print(json.dumps(manifest, indent=2))
    return manifest


if __name__ == "__main__":
    main()

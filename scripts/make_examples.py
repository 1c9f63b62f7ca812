"""Makes the app's example images in examples/: two degraded photos per task, and the clean source of every synthetic
one (the app tests measure PSNR against it). Re-running it gives byte-identical files: every degradation is seeded.

Sources (see examples/SOURCES.md): the development validation photos in data/dev/val (made by
scripts/prepare_dev_photos.py) and one real motion-blurred photo from Debian's opencv-doc examples.

    python scripts/make_examples.py                       # fetches opencv-doc with apt-get download if needed
    python scripts/make_examples.py --opencv-data DIR     # DIR holding licenseplate_motion.jpg
"""

import argparse
import glob
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mprnet_hf.data.degradations import add_gaussian_noise, add_rain, blur, jpeg_compress, motion_blur_kernel  # noqa: E402

MAX_SIDE = 256


def motion_blurred(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    # A long shake so the blur is plain to see at 256 pixels, plus the faint sensor noise of a real photo.
    blurred = blur(image, motion_blur_kernel(17, rng, length=9))
    return add_gaussian_noise(blurred, sigma=1 / 255, rng=rng)


def rainy(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    return add_rain(image, rng, density=0.012, length=22, angle=-12, streak_width=1.0, brightness=0.8)


def noisy(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    return add_gaussian_noise(image, sigma=25 / 255, rng=rng)


def noisy_and_shaken(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    # A low-light hand-held shot: shaken, then the sensor's noise on top.
    return add_gaussian_noise(blur(image, motion_blur_kernel(17, rng, length=9)), sigma=15 / 255, rng=rng)


def jpeg_artefacts(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    return jpeg_compress(image, quality=15)


# (task, development photo, example name, degradation, seed); "auto" holds mixed degradations for auto mode, and
# "detector" the kinds no restoration undoes (only the detector's tests use them).
SYNTHETIC = [
    ("deblur", "coffee", "coffee_motion", motion_blurred, 11),
    ("derain", "fruits", "fruits_rain", rainy, 21),
    ("derain", "building", "building_rain", rainy, 22),
    ("denoise", "monarch", "monarch_noise", noisy, 31),
    ("denoise", "squirrel_cls", "squirrel_noise", noisy, 32),
    ("auto", "coffee", "coffee_noise_motion", noisy_and_shaken, 41),
    ("detector", "fruits", "fruits_jpeg", jpeg_artefacts, 51),
]
# (task, OpenCV sample, example name, crop box): real degradations, so there is no clean source.
REAL = [
    ("deblur", "licenseplate_motion.jpg", "licenseplate_motion", (172, 110, 428, 366)),
]


def fit_within(image: Image.Image, side: int) -> Image.Image:
    scale = side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    return Image.fromarray(np.round(tensor.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8))


def save_png(image: Image.Image, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG", optimize=True)
    print(f"{path}  {image.size[0]}x{image.size[1]}  {path.stat().st_size / 1024:.0f} KiB")


def opencv_data_folder(given: str | None, workdir: Path) -> Path:
    if given:
        return Path(given)
    installed = glob.glob("/usr/share/doc/opencv-doc*/examples/data") + glob.glob(
        "/tmp/devdata/ocv/usr/share/doc/opencv-doc*/examples/data"
    )
    if installed:
        return Path(installed[0])
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=workdir, check=True)
    package = next(workdir.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg", "-x", str(package), str(workdir / "opencv")], check=True)
    return Path(glob.glob(str(workdir / "opencv/usr/share/doc/opencv-doc*/examples/data"))[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev-dir", default="data/dev/val", help="folder of the clean development photos")
    parser.add_argument("--opencv-data", help="folder of OpenCV's samples/data (default: find or apt-get download)")
    parser.add_argument("--output", default="examples")
    parser.add_argument("--synthetic-only", action="store_true", help="leave the real photos (OpenCV's) as they are")
    args = parser.parse_args()
    output = Path(args.output)

    for task, photo, name, degradation, seed in SYNTHETIC:
        clean = fit_within(Image.open(Path(args.dev_dir) / f"{photo}.png").convert("RGB"), MAX_SIDE)
        degraded = degradation(to_tensor(clean), np.random.default_rng(seed))
        save_png(clean, output / "clean" / f"{photo}.png")
        save_png(to_image(degraded), output / task / f"{name}.png")

    if args.synthetic_only:
        return
    with tempfile.TemporaryDirectory() as temp:
        folder = opencv_data_folder(args.opencv_data, Path(temp))
        for task, sample, name, box in REAL:
            save_png(Image.open(folder / sample).convert("RGB").crop(box), output / task / f"{name}.png")

    total = sum(path.stat().st_size for path in output.rglob("*.png"))
    print(f"examples total: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()

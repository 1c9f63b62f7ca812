"""Collects the development photos into DIR/train and DIR/val: the 36-photo set the bundled weights were first trained
on and the quality rows of docs/EVALUATION.md score (the later fine-tunes used the larger set of
scripts/prepare_photos.py, docs/PHOTOS.md).

Sources, all from package registries:
  * the colour photos shipped inside scikit-image;
  * the five PNGs of the `sporco` wheel (downloaded with `pip download --no-deps`, never installed);
  * the natural photos among Debian's `opencv-doc` examples/data (downloaded with `apt-get download`).

    python scripts/prepare_dev_photos.py --output data/dev
"""

import argparse
import glob
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from PIL import Image

SKIMAGE = [
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
]
SPORCO = ["barbara.png", "kodim23.png", "monarch.png", "sail.png", "tulips.png"]
OPENCV = [
    "aero1.jpg",
    "aero3.jpg",
    "aloeL.jpg",
    "apple.jpg",
    "baboon.jpg",
    "board.jpg",
    "building.jpg",
    "butterfly.jpg",
    "ela_original.jpg",
    "fruits.jpg",
    "graf1.png",
    "home.jpg",
    "leuvenA.jpg",
    "messi5.jpg",
    "orange.jpg",
    "pca_test1.jpg",
    "rubberwhale1.png",
    "smarties.png",
    "squirrel_cls.jpg",
    "starry_night.jpg",
    "stuff.jpg",
    "HappyFish.jpg",
    "pic1.png",
    "pic3.png",
]
# Held out for validation and the README's quality table: photos of different kinds from every source.
VALIDATION = {"coffee.png", "monarch.png", "baboon.jpg", "fruits.jpg", "building.jpg", "squirrel_cls.jpg"}


def skimage_photos():
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return {name: folder / name for name in SKIMAGE}


def sporco_photos(workdir: Path):
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(workdir), "sporco"], check=True
    )
    wheel = next(workdir.glob("sporco-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for name in SPORCO:
            archive.extract(f"sporco/data/{name}", workdir)
    return {name: workdir / "sporco" / "data" / name for name in SPORCO}


def opencv_photos(workdir: Path):
    subprocess.run(["apt-get", "download", "opencv-doc"], cwd=workdir, check=True)
    package = next(workdir.glob("opencv-doc_*.deb"))
    subprocess.run(["dpkg", "-x", str(package), str(workdir / "opencv")], check=True)
    folder = next(Path(p) for p in glob.glob(str(workdir / "opencv" / "usr/share/doc/opencv-doc*/examples/data")))
    return {name: folder / name for name in OPENCV}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="data/dev")
    args = parser.parse_args()
    output = Path(args.output)
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        photos = {**skimage_photos(), **sporco_photos(temp), **opencv_photos(temp)}
        for name, path in sorted(photos.items()):
            split = "val" if name in VALIDATION else "train"
            target = output / split / (Path(name).stem + ".png")
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").save(target)
            print(f"{split:5s} {target}")
    print(f"{len(photos)} photos in {output}")


if __name__ == "__main__":
    main()

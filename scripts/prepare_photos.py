"""Collects the training photos into DIR/train and DIR/val and writes their manifest (source package, version,
original path and licence of every photo).

Every photo comes from a package registry: Debian packages fetched with `apt-get download` and unpacked with
`dpkg -x` (never installed), wheels fetched with `pip download --no-deps` (never installed), and the photos that
ship inside the installed scikit-image. The 36 development photos of `prepare_dev_photos.py` are part of this set
(less the drawings, the painting and the second photo of stereo pairs), and its 6 validation photos stay in the
validation split so that earlier quality rows stay comparable.

Each photo is turned upright (EXIF orientation), converted to RGB, shrunk by an integer box filter (area averaging,
which also averages sensor noise away) until its longer side is at most 1024 px, and saved as PNG. A photo whose
shorter side is then under 256 px is skipped.

    python scripts/prepare_photos.py --output data/photos --manifest data_sources/photos.json
"""

import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile
import urllib.parse
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import prepare_dev_photos
from PIL import Image, ImageOps

# Reserved for an independent evaluation set: no photo of theirs may ever be trained on.
FORBIDDEN_PACKAGES = frozenset({"palapeli-data", "plasma-workspace-wallpapers", "mate-backgrounds"})
MAX_SIDE = 1024
MIN_SIDE = 256


@dataclass(frozen=True)
class DebianPhotos:
    """Photos inside one Debian package."""

    package: str
    tag: str  # prefix of the output names, so that photos of different packages never share a name
    folder: str  # where the photos lie in the unpacked package
    copyright_folder: str  # the same folder as the package's debian/copyright names it
    photos: tuple
    licence: str = ""  # only for packages whose copyright file is not machine-readable
    clockwise_turns: dict = field(default_factory=dict)  # degrees, for photos stored sideways without EXIF orientation


@dataclass(frozen=True)
class GComprisPhotos:
    """Photos of one GCompris activity: they lie inside the activity's Qt resource file (.rcc)."""

    activity: str
    photos: tuple
    package: str = field(default="gcompris-qt-data")


@dataclass(frozen=True)
class WheelPhotos:
    """Photos inside one wheel of PyPI."""

    package: str
    tag: str
    folder: str
    photos: tuple
    licence: str


DEBIAN_SOURCES = (
    DebianPhotos(
        "kphotoalbum",
        "kphotoalbum",
        "usr/share/kphotoalbum/demo",
        "demo",
        (
            "anne_helene.jpg",
            "bar55.jpg",
            "blackie.jpg",
            "cold_water.jpg",
            "donna.jpg",
            "donna_2.jpg",
            "grand_canyon_1.jpg",
            "grand_canyon_2.jpg",
            "jesper.jpg",
            "jesper_2.jpg",
            "new_wave_1.jpg",
            "new_wave_2.jpg",
            "pool.jpg",
            "pool_2.jpg",
            "qt-logo.jpg",
            "skagen.jpg",
            "skagen_2.jpg",
            "snow.jpg",
            "spiff.jpg",
            "spiff_2.jpg",
            "sunset.jpg",
            "wayne.jpg",
        ),
        licence="GPL-2+",
        # KPhotoAlbum keeps these turns in the demo's index.xml (attribute angle) rather than in the files.
        clockwise_turns={"new_wave_1.jpg": 90, "grand_canyon_1.jpg": 180, "wayne.jpg": 90, "pool_2.jpg": 270},
    ),
    DebianPhotos(
        "lxqt-themes",
        "lxqt",
        "usr/share/lxqt/wallpapers",
        "wallpapers",
        (
            "Butterfly-Kenneth-Wimer.jpg",
            "Valendas.png",
            "after-the-rain.jpg",
            "appleflower.png",
            "beam.png",
            "butterfly.png",
            "cloud.png",
            "drop.png",
            "flowers.png",
            "fog.jpg",
            "this-is-not-windows.jpg",
        ),
    ),
    DebianPhotos(
        "lomiri-wallpapers-16.04",
        "lomiri",
        "usr/share/backgrounds",
        "16.04",
        (
            "Dragonfly_by_Bolly.jpg",
            "Picture_0B_by_freespace.jpg",
            "Picture_1A_by_freespace.jpg",
            "Wine_by_Jakkub_Mede.jpg",
            "aitzgorri_by_Aitzol_Berasategi.jpg",
            "friends_by_Aitzol_Berasategi.jpg",
            "life_by_Aitzol_Berasategi.jpg",
            "picosdeeuropa_by_Aitzol_Berasategi.jpg",
            "seeding_by_Clements_Engelhardt.jpg",
            "sunset_by_Aitzol_Berasategi.jpg",
        ),
    ),
    DebianPhotos(
        "lomiri-wallpapers-20.04", "lomiri", "usr/share/backgrounds", "20.04", ("Kleiber_by_Lukas_Baubkus.jpg",)
    ),
    DebianPhotos(
        "libelementary-data",
        "efl",
        "usr/share/elementary/images",
        "data/elementary/images",
        (
            "insanely_huge_test_image.jpg",
            "mystrale.jpg",
            "mystrale_2.jpg",
            "panel_01.jpg",
            "plant_01.jpg",
            "rock_01.jpg",
            "rock_02.jpg",
            "sky_01.jpg",
            "sky_03.jpg",
            "twofish.jpg",
            "wood_01.jpg",
        ),
    ),
    DebianPhotos(
        "tuxpaint-data",
        "tuxpaint",
        "usr/share/tuxpaint/templates",
        "templates",
        (
            "burnt_bark.jpg",
            "cliff.jpg",
            "corn_maze.jpg",
            "jellyfish.jpg",
            "lighthouse.jpg",
            "mossy_bark.jpg",
            "mossy_log.jpg",
            "mudstone.jpg",
            "ocean_splash.jpg",
            "ocean_waves.jpg",
            "redwoods_above.jpg",
            "rocks.jpg",
            "sheep.jpg",
            "spiders_web.jpg",
            "sun_behind_clouds.jpg",
            "sun_behind_leaves.jpg",
            "trees_above.jpg",
            "trees_at_dusk.jpg",
            "wool_mill_machine.jpg",
        ),
    ),
    DebianPhotos("cimg-examples", "cimg", "usr/share/doc/cimg-dev/examples/img", "examples/img", ("parrot.ppm",)),
)

GCOMPRIS_SOURCES = (
    GComprisPhotos(
        "erase",
        tuple(
            f"{name}.webp"
            for name in (
                "alpaca",
                "bee",
                "butterfly",
                "calf",
                "camels",
                "caterpillar",
                "chamaeleon",
                "cheetah",
                "crab",
                "dolphin",
                "flying_fox",
                "gibbon",
                "giraffe",
                "goat",
                "gorilla",
                "gosling",
                "heron",
                "horse",
                "kingfisher",
                "kitten",
                "long_nosed_monkey",
                "macaque",
                "meerkats",
                "northern_harrier",
                "nubian_ibex",
                "penguin",
                "pika",
                "red_panda",
                "rhinoceros",
                "spoonbills",
                "squirrel",
                "swans",
                "toucan",
            )
        ),
    ),
    # castleClinton is left out: a grey historic print, not a colour photo.
    GComprisPhotos(
        "explore_monuments",
        tuple(
            f"{name}.webp"
            for name in (
                "egypt/bentPyramid",
                "egypt/greatPyramidOfGiza",
                "egypt/meidumPyramid",
                "france/arlesAmphitheater",
                "france/chateaudeChambord",
                "france/chateaudeChenonceau",
                "france/citedeCarcassonne",
                "france/eiffelTower",
                "france/montStMichel",
                "france/palaisdesPapes",
                "france/pontduGard",
                "france/reimsCathedral",
                "france/rocamadour",
                "germany/aulaPalatina",
                "germany/berlinCathedral",
                "germany/brandenburgGate",
                "germany/neuschwansteinCastle",
                "germany/schwerinPalace",
                "germany/trierImperialBaths",
                "germany/wormsCathedral",
                "india/ajantaCave",
                "india/charminar",
                "india/gatewayofIndia",
                "india/goldenTemple",
                "india/greatStupa",
                "india/hawaMahal",
                "india/konarkSunTemple",
                "india/mysorePalace",
                "india/qutubMinar",
                "india/rangGhar",
                "usa/canyondeChelly",
                "usa/castillodeSanMarcos",
                "usa/fortSumter",
                "usa/georgeWashingtonBirthplace",
                "usa/lincolnMemorial",
                "usa/mountRushmore",
                "usa/navajo",
                "usa/statueofLiberty",
                "wonders/chichenItza",
                "wonders/christTheRedeemer",
                "wonders/colosseum",
                "wonders/greatWallofChina",
                "wonders/machuPicchu",
                "wonders/petra",
                "wonders/tajMahal",
            )
        ),
    ),
    GComprisPhotos(
        "explore_world_animals",
        tuple(
            f"animals/{name}.webp"
            for name in (
                "bison",
                "chameleon",
                "crocodile",
                "dragon",
                "giraffe",
                "hedgehog",
                "jaguar",
                "kangaroo",
                "koala",
                "lemur",
                "moose",
                "narwhal",
                "panda",
                "polar_bear",
            )
        ),
    ),
    GComprisPhotos(
        "explore_farm_animals",
        tuple(f"animals/{name}.webp" for name in ("chicken", "cow", "dog", "horse", "pig", "sheep")),
    ),
    GComprisPhotos(
        "explore_world_music",
        tuple(f"music/{name}.webp" for name in ("africa", "america", "australia", "japan", "mexico", "orchestra")),
    ),
    GComprisPhotos("clickgame", tuple(f"sea{number}.webp" for number in range(1, 7))),
)

WHEEL_SOURCES = (
    WheelPhotos(
        "scikit-learn",
        "sklearn",
        "sklearn/datasets/images",
        ("china.jpg", "flower.jpg"),
        licence="CC-BY-2.0 (sklearn/datasets/images/README.txt)",
    ),
    WheelPhotos(
        "matplotlib",
        "mpl",
        "matplotlib/mpl-data/sample_data",
        ("grace_hopper.jpg",),
        licence="public domain (US Navy photo; matplotlib ships it without a licence note)",
    ),
)

# The development photos (prepare_dev_photos.py) that are not natural photos or repeat another photo's scene.
DEV_PHOTOS_LEFT_OUT = {
    "HappyFish.jpg": "drawing",
    "pic1.png": "drawing",
    "pic3.png": "drawing",
    "starry_night.jpg": "painting",
    "pca_test1.jpg": "synthetic shapes on a light box",
    "motorcycle_right.png": "stereo pair of motorcycle_left",
    "aero3.jpg": "same aerial scene as aero1",
}
SKIMAGE_LICENCES = {
    "astronaut.png": "public domain (NASA)",
    "chelsea.png": "CC0 (Stefan van der Walt)",
    "coffee.png": "CC0 (Rachel Michetti)",
    "rocket.jpg": "public domain (SpaceX)",
    "motorcycle_left.png": "Middlebury 2014 stereo benchmark, research use (skimage.data.stereo_motorcycle)",
    "hubble_deep_field.jpg": "public domain (NASA)",
}
SPORCO_LICENCE = "BSD-3-Clause (sporco package licence; image credits in the sporco documentation)"

# The development validation photos stay, and a few photos of every new source join them.
VALIDATION = {Path(name).stem for name in prepare_dev_photos.VALIDATION} | {
    "gcompris_erase_kingfisher",
    "gcompris_erase_meerkats",
    "gcompris_erase_red_panda",
    "gcompris_erase_swans",
    "gcompris_explore_monuments_colosseum",
    "gcompris_explore_monuments_pontduGard",
    "gcompris_explore_monuments_goldenTemple",
    "gcompris_explore_monuments_machuPicchu",
    "gcompris_explore_world_animals_panda",
    "gcompris_explore_world_animals_moose",
    "gcompris_explore_farm_animals_sheep",
    "gcompris_explore_world_music_orchestra",
    "gcompris_clickgame_sea3",
    "kphotoalbum_skagen",
    "kphotoalbum_pool",
    "lxqt_flowers",
    "lxqt_fog",
    "lomiri_life_by_Aitzol_Berasategi",
    "lomiri_Wine_by_Jakkub_Mede",
    "efl_twofish",
    "tuxpaint_lighthouse",
    "tuxpaint_corn_maze",
    "sklearn_china",
}


@dataclass
class Photo:
    name: str  # output file stem
    path: Path  # the photo as extracted
    package: str
    version: str
    original_path: str
    licence: str
    licence_source: str
    clockwise_turn: int = 0


def refuse_forbidden(package: str):
    if package in FORBIDDEN_PACKAGES:
        raise ValueError(f"{package} is reserved for independent evaluation: its photos must never be trained on.")


def download_debian_package(package: str, workdir: Path) -> tuple:
    """Fetches and unpacks a Debian package; returns its folder and version."""
    refuse_forbidden(package)
    subprocess.run(["apt-get", "download", "-q", package], cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    deb = next(workdir.glob(f"{package}_*.deb"))
    version = urllib.parse.unquote(deb.name.split("_")[1])  # apt writes an epoch's colon as %3a
    folder = workdir / "deb" / package
    folder.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg", "-x", str(deb), str(folder)], check=True)
    return folder, version


def download_wheel(package: str, workdir: Path) -> tuple:
    refuse_forbidden(package)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--only-binary=:all:",
            "-d",
            str(workdir / "wheels"),
            package,
        ],
        check=True,
    )
    wheel = next((workdir / "wheels").glob(f"{package.replace('-', '_')}-*.whl"))
    return wheel, wheel.name.split("-")[1]


def copyright_licence(package_folder: Path, package: str, paths: list) -> tuple:
    """Licence of the first of `paths` that a Files paragraph of the package's DEP-5 copyright file names more
    precisely than `*`, else of `*`; returns (licence, where it was read)."""
    from debian.copyright import Copyright, globs_to_re

    copyright_file = package_folder / "usr/share/doc" / package / "copyright"
    with open(copyright_file, encoding="utf-8") as handle:
        parsed = Copyright(handle, strict=False)
    fallback = None
    for path in paths:
        paragraph = parsed.find_files_paragraph(path)
        if paragraph is None:
            continue
        if tuple(paragraph.files) != ("*",):
            pattern = next(glob for glob in paragraph.files if globs_to_re([glob]).match(path))
            return paragraph.license.synopsis, f"debian/copyright, Files: {pattern}"
        fallback = fallback or (paragraph.license.synopsis, "debian/copyright, Files: *")
    if fallback is None:
        raise ValueError(f"{copyright_file} names no licence for {paths[0]}")
    return fallback


def read_qt_resources(blob: bytes) -> dict:
    """Files of a Qt resource file (.rcc), by their resource path (Qt's rcc lists such a file but cannot unpack it)."""
    magic, version, tree, data, names = struct.unpack(">4sIIII", blob[:20])
    if magic != b"qres":
        raise ValueError("not a Qt resource file")
    entry_size = 14 if version == 1 else 22

    def name_at(offset):
        length = struct.unpack(">H", blob[names + offset : names + offset + 2])[0]
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    files = {}

    def walk(index, prefix):
        entry = tree + index * entry_size
        name_offset, flags = struct.unpack(">IH", blob[entry : entry + 6])
        path = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & 2:  # a directory: its children are consecutive entries
            count, first = struct.unpack(">II", blob[entry + 6 : entry + 14])
            for child in range(first, first + count):
                walk(child, path)
            return
        offset = data + struct.unpack(">I", blob[entry + 10 : entry + 14])[0]
        size = struct.unpack(">I", blob[offset : offset + 4])[0]
        payload = blob[offset + 4 : offset + 4 + size]
        if flags & 4:
            raise ValueError(f"{path} is zstd-compressed, which this reader does not handle")
        files[path] = zlib.decompress(payload[4:]) if flags & 1 else payload

    walk(0, "")
    return files


def debian_photos(workdir: Path) -> list:
    photos = []
    for source in DEBIAN_SOURCES:
        folder, version = download_debian_package(source.package, workdir)
        for name in source.photos:
            if not (folder / source.folder / name).is_file():
                raise ValueError(f"{source.package} {version} has no /{source.folder}/{name}: update DEBIAN_SOURCES")
            if source.licence:
                licence, licence_source = source.licence, "debian/copyright (not machine-readable), package licence"
            else:
                licence, licence_source = copyright_licence(
                    folder, source.package, [f"{source.copyright_folder}/{name}"]
                )
            photos.append(
                Photo(
                    f"{source.tag}_{Path(name).stem}",
                    folder / source.folder / name,
                    source.package,
                    version,
                    f"/{source.folder}/{name}",
                    licence,
                    licence_source,
                    source.clockwise_turns.get(name, 0),
                )
            )
    return photos


def gcompris_photos(workdir: Path) -> list:
    photos = []
    folder, version = download_debian_package("gcompris-qt-data", workdir)
    for source in GCOMPRIS_SOURCES:
        rcc = folder / "usr/share/gcompris-qt/rcc" / f"{source.activity}.rcc"
        resources = read_qt_resources(rcc.read_bytes())
        for name in source.photos:
            resource = f"/gcompris/src/activities/{source.activity}/resource/{name}"
            target = workdir / "gcompris" / source.activity / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if resource not in resources:
                raise ValueError(f"gcompris-qt-data {version} has no {resource}: update GCOMPRIS_SOURCES")
            target.write_bytes(resources[resource])
            # debian/copyright names the upstream sources, which were JPEG or PNG before the build made them WebP.
            source_path = resource.removeprefix("/gcompris/")
            candidates = [str(Path(source_path).with_suffix(suffix)) for suffix in (".jpg", ".png", ".webp")]
            licence, licence_source = copyright_licence(folder, "gcompris-qt-data", candidates)
            stem = Path(name).stem
            photos.append(
                Photo(
                    f"gcompris_{source.activity}_{stem}",
                    target,
                    "gcompris-qt-data",
                    version,
                    f"/usr/share/gcompris-qt/rcc/{source.activity}.rcc:{resource}",
                    licence,
                    licence_source,
                )
            )
    return photos


def wheel_photos(workdir: Path) -> list:
    photos = []
    for source in WHEEL_SOURCES:
        wheel, version = download_wheel(source.package, workdir)
        with zipfile.ZipFile(wheel) as archive:
            for name in source.photos:
                member = f"{source.folder}/{name}"
                archive.extract(member, workdir / "wheel-files" / source.package)
                path = workdir / "wheel-files" / source.package / member
                photos.append(
                    Photo(
                        f"{source.tag}_{Path(name).stem}",
                        path,
                        source.package,
                        version,
                        member,
                        source.licence,
                        "package documentation",
                    )
                )
    return photos


def development_photos(workdir: Path) -> list:
    import skimage

    photos = []
    for name, path in prepare_dev_photos.skimage_photos().items():
        if name in DEV_PHOTOS_LEFT_OUT:
            continue
        photos.append(
            Photo(
                Path(name).stem,
                path,
                "scikit-image",
                skimage.__version__,
                f"skimage/data/{name}",
                SKIMAGE_LICENCES[name],
                "skimage.data docstrings",
            )
        )
    sporco_dir = workdir / "sporco"
    sporco_dir.mkdir()
    sporco = prepare_dev_photos.sporco_photos(sporco_dir)
    sporco_version = next(sporco_dir.glob("sporco-*.whl")).name.split("-")[1]
    for name, path in sporco.items():
        photos.append(
            Photo(
                Path(name).stem, path, "sporco", sporco_version, f"sporco/data/{name}", SPORCO_LICENCE, "PyPI metadata"
            )
        )
    opencv_dir = workdir / "opencv"
    opencv_dir.mkdir()
    opencv = prepare_dev_photos.opencv_photos(opencv_dir)
    opencv_version = next(opencv_dir.glob("opencv-doc_*.deb")).name.split("_")[1]
    for name, path in opencv.items():
        if name in DEV_PHOTOS_LEFT_OUT:
            continue
        licence, licence_source = copyright_licence(opencv_dir / "opencv", "opencv-doc", [f"samples/data/{name}"])
        photos.append(
            Photo(
                Path(name).stem,
                path,
                "opencv-doc",
                opencv_version,
                "/" + str(path.relative_to(opencv_dir / "opencv")),
                licence,
                licence_source,
            )
        )
    return photos


def shrink(image: Image.Image) -> Image.Image:
    """Integer box reduction: each output pixel is the mean of a factor x factor block of the original."""
    factor = math.ceil(max(image.size) / MAX_SIDE)
    return image.reduce(factor) if factor > 1 else image


def prepare(photo: Photo, output: Path, split: str):
    with Image.open(photo.path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB").rotate(-photo.clockwise_turn, expand=True)
    image = shrink(image)
    if min(image.size) < MIN_SIDE:
        return None
    target = output / split / f"{photo.name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target)
    return image.size


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="data/photos", help="folder that receives train/ and val/")
    parser.add_argument("--manifest", default="data_sources/photos.json")
    args = parser.parse_args()
    output = Path(args.output)
    with tempfile.TemporaryDirectory() as temp:
        temp = Path(temp)
        photos = development_photos(temp) + debian_photos(temp) + gcompris_photos(temp) + wheel_photos(temp)
        names = [photo.name for photo in photos]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"two photos would share the names {duplicates}")
        entries = []
        for photo in sorted(photos, key=lambda photo: photo.name):
            split = "val" if photo.name in VALIDATION else "train"
            size = prepare(photo, output, split)
            if size is None:
                print(f"skipped {photo.name}: shorter side under {MIN_SIDE} px")
                continue
            entries.append(
                {
                    "file": f"{photo.name}.png",
                    "split": split,
                    "package": photo.package,
                    "version": photo.version,
                    "original_path": photo.original_path,
                    "licence": photo.licence,
                    "licence_source": photo.licence_source,
                    "width": size[0],
                    "height": size[1],
                }
            )
            print(f"{split:5s} {photo.name}")
    manifest = Path(args.manifest)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"max_side": MAX_SIDE, "min_side": MIN_SIDE, "photos": entries}, indent=1) + "\n")
    counts = {split: sum(entry["split"] == split for entry in entries) for split in ("train", "val")}
    print(f"{counts['train']} train and {counts['val']} validation photos in {output}; manifest {manifest}")


if __name__ == "__main__":
    main()

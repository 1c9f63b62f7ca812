"""The training photo set's manifest (data_sources/photos.json, written by scripts/prepare_photos.py) records a set
that is large enough, keeps the development validation photos in validation, names every photo's package and licence
and holds nothing from the packages reserved for independent evaluation. Reads only committed files."""

import json
import sys

import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "scripts"))
import prepare_photos  # noqa: E402

MANIFEST = json.loads((REPO_ROOT / "data_sources" / "photos.json").read_text())
PHOTOS = MANIFEST["photos"]
RESERVED = {"palapeli-data", "plasma-workspace-wallpapers", "mate-backgrounds"}
DEVELOPMENT_VALIDATION = {"coffee", "monarch", "baboon", "fruits", "building", "squirrel_cls"}


def split(name):
    return [photo for photo in PHOTOS if photo["split"] == name]


def test_enough_photos_in_each_split():
    assert len(split("train")) >= 150
    assert len(split("val")) >= 20
    assert len(split("train")) + len(split("val")) == len(PHOTOS)


def test_names_are_distinct_pngs():
    names = [photo["file"] for photo in PHOTOS]
    assert len(set(names)) == len(names)
    assert all(name.endswith(".png") for name in names)


def test_every_photo_names_its_package_version_path_and_licence():
    for photo in PHOTOS:
        for key in ("package", "version", "original_path", "licence", "licence_source"):
            assert photo[key].strip(), f"{photo['file']} has no {key}"


def test_no_photo_from_the_reserved_packages():
    assert not {photo["package"] for photo in PHOTOS} & RESERVED


def test_development_validation_photos_stay_in_validation():
    validation = {photo["file"].removesuffix(".png") for photo in split("val")}
    assert validation >= DEVELOPMENT_VALIDATION


def test_validation_draws_on_several_packages():
    assert len({photo["package"] for photo in split("val")}) >= 8


def test_sizes_follow_the_preparation_rules():
    for photo in PHOTOS:
        assert max(photo["width"], photo["height"]) <= MANIFEST["max_side"] == 1024, photo["file"]
        assert min(photo["width"], photo["height"]) >= MANIFEST["min_side"] == 256, photo["file"]


def test_manifest_matches_the_script_validation_choice():
    assert {photo["file"].removesuffix(".png") for photo in split("val")} == prepare_photos.VALIDATION


@pytest.mark.parametrize("package", sorted(RESERVED))
def test_script_refuses_reserved_packages(package):
    assert prepare_photos.FORBIDDEN_PACKAGES == RESERVED
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        prepare_photos.download_debian_package(package, REPO_ROOT)
    with pytest.raises(ValueError, match="reserved for independent evaluation"):
        prepare_photos.download_wheel(package, REPO_ROOT)

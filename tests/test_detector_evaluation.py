"""The detector evaluation's own bookkeeping: how routing is counted and binned by how strong a degradation was, and
what routing a clean photo to a restoration costs it."""

import numpy as np
import pytest
from PIL import Image

from mprnet_hf.detection.data import apply_degradations, load_rgb
from mprnet_hf.detection.detector import DegradationDetector, as_rgb_array
from mprnet_hf.detection.evaluate import (
    centre_crop,
    foreign_routing,
    foreign_routing_table,
    misroute_cost_table,
    misroute_costs,
    misses_by_photo,
    psnr,
    routing_by_strength,
    routing_summary,
    worth_following,
)
from mprnet_hf.evaluation import foreign
from mprnet_hf.hub.bundled import bundled_model
from mprnet_hf.models.mprnet.inference import restore_image

EXAMPLE = "examples/clean/building.png"


def single(kind, tasks, input_psnr):
    return {"group": "single", "kinds": (kind,), "tasks": tasks, "input_psnr": input_psnr, "found": []}


def test_singles_are_counted_in_the_bin_of_their_input_psnr():
    records = [
        single("noise", ["denoise"], 22.0),
        single("noise", [], 41.5),  # faint noise read as clean: a miss, in the faintest bin
        single("blur", ["deblur"], 41.0),
        single("rain", ["derain", "denoise"], 27.0),
        {"group": "pair", "kinds": ("blur", "noise"), "tasks": [], "input_psnr": 20.0, "found": []},
        single("jpeg", [], 33.0),  # JPEG artefacts route nowhere: not part of this table
    ]
    rows = routing_by_strength(records).splitlines()
    assert rows[0] == "| degraded photo's PSNR | blur | noise | rain | all |"
    assert rows[2] == "| under 25 dB | - | 1/1 | - | 1/1 |"
    assert rows[3] == "| 25-30 dB | - | - | 0/1 | 0/1 |"
    assert rows[-1] == "| 40 dB and more | 1/1 | 0/1 | - | 1/2 |"


def test_input_psnr_is_the_degraded_photo_against_the_clean_one():
    clean = load_rgb(EXAMPLE)
    shifted = as_rgb_array(clean).copy()
    value = int(shifted[0, 0, 0])
    shifted[0, 0, 0] = value + 10 if value < 246 else value - 10
    mean_squared_error = 10**2 / shifted.size  # in 8-bit levels: one value off by 10
    assert abs(psnr(clean, shifted) - 10 * np.log10(255**2 / mean_squared_error)) < 1e-6
    noisy = as_rgb_array(apply_degradations(clean, ("noise",), np.random.default_rng(0), light_jpeg_share=0.0))
    assert 10 < psnr(clean, noisy) < 60


def pair(kinds, tasks, auto_steps=None):
    record = {"group": "pair", "kinds": kinds, "tasks": tasks, "found": [], "input_psnr": 20.0}
    if auto_steps is not None:
        record["auto_steps"] = auto_steps
    return record


def test_a_pair_is_followed_through_auto_mode_only_where_a_second_look_comes():
    assert worth_following("pair", ("blur", "noise"), ["denoise"], seed=5, follow_seeds=0, follow_pairs=True)
    assert worth_following("pair", ("noise", "rain"), ["derain", "denoise"], 0, 0, follow_pairs=True)
    # Deblurring is the last step and nothing at all runs on a photo read as clean: no look could change them.
    assert not worth_following("pair", ("blur", "rain"), ["deblur"], 0, 0, follow_pairs=True)
    assert not worth_following("pair", ("blur", "noise"), [], 0, 0, follow_pairs=True)
    assert not worth_following("pair", ("blur", "noise"), ["denoise"], 0, 0)


def test_pairs_are_counted_by_what_auto_mode_ran_where_it_was_followed():
    singles = [single("noise", ["denoise"], 22.0), single("blur", [], 41.0)]
    pairs = [
        pair(("blur", "noise"), ["denoise"], auto_steps=["denoise", "deblur"]),  # blur found by the second look
        pair(("noise", "rain"), ["derain", "denoise"], auto_steps=["derain", "denoise", "deblur"]),  # one step too many
        pair(("blur", "rain"), ["deblur"]),  # not followed: its first look is what auto mode runs
        pair(("blur", "jpeg"), ["deblur"]),
        pair(("blur", "noise"), ["denoise", "deblur"], auto_steps=["denoise", "deblur"]),
        pair(("blur", "rain"), ["derain"], auto_steps=["derain", "deblur"]),
    ]
    summary = routing_summary(singles + pairs, follow_seeds=0, auto_followed=False, pairs_followed=True)
    assert "exactly the right restorations by the first look: 3/6 (50%)" in summary
    assert "(run on the 4 pairs whose first step is followed by a second look): **4/6 (67%)**" in summary
    assert "by auto mode, which looks again (run on" not in routing_summary(singles + pairs, 0, auto_followed=False)


@pytest.mark.slow
def test_misroute_cost_is_each_restoration_of_a_clean_photo_scored_against_that_photo():
    photos = [EXAMPLE, "examples/clean/fruits.png"]
    costs = misroute_costs(photos, side=48)
    for task, values in costs.items():
        for path, value in zip(photos, values):
            clean = centre_crop(load_rgb(path), 48)
            restored = restore_image(bundled_model(task), as_rgb_array(clean), tile_size=None).image
            assert value == psnr(clean, restored)
            assert 15 < value < 60  # the restoration changed the photo, without wrecking it
    table = misroute_cost_table(photos, costs).splitlines()
    assert len(table) == 2 + len(costs)
    for task, values in costs.items():
        worst = min(range(2), key=values.__getitem__)
        name = ("building", "fruits")[worst]
        assert f"| {task} | {(values[0] + values[1]) / 2:.2f} | {values[worst]:.2f} ({name}) |" in table


def test_photos_with_misses_are_listed_most_misses_first():
    def of(photo, record):
        return {**record, "photo_name": photo}

    clean = {"group": "clean", "kinds": (), "tasks": [], "found": []}
    light_clean = {**clean, "group": "clean + light JPEG"}
    records = [
        of("panda", single("noise", ["deblur", "denoise"], 22.0)),
        of("panda", single("rain", ["deblur", "derain"], 22.0)),
        of("panda", single("blur", ["deblur"], 22.0)),
        of("panda", {**clean, "tasks": ["deblur"]}),
        of("panda", {**light_clean, "tasks": ["deblur"]}),
        of("panda", {"group": "pair", "kinds": ("blur", "noise"), "tasks": ["denoise", "deblur"], "found": []}),
        of("sheep", single("rain", ["derain"], 22.0)),
        of("sheep", {"group": "pair", "kinds": ("noise", "rain"), "tasks": ["derain"], "found": []}),
        of("sheep", single("jpeg", ["derain"], 30.0)),  # JPEG alone is not a restoration's single: not counted
        of("sheep", {"group": "single + light JPEG", "kinds": ("rain",), "tasks": [], "found": []}),  # nor this
        of("moose", single("noise", [], 45.0)),
        of("baboon", {**light_clean, "tasks": ["denoise"]}),  # misses only a clean version
        of("fruits", single("blur", ["deblur"], 25.0)),
        of("fruits", clean),
    ]
    assert misses_by_photo(records).splitlines() == [
        "| photo | singles routed right | pairs | clean |",
        "|---|---|---|---|",
        "| panda | 1/3 | 1/1 | 0/2 |",
        "| baboon | 0/0 | 0/0 | 0/1 |",  # ties go in the order of names
        "| moose | 0/1 | 0/0 | 0/0 |",
    ]


@pytest.fixture
def kornia_photo_and_detector(tmp_path):
    """One clean example photo saved as a file, and the bundled detector; skipped where kornia does not import."""
    if foreign.available("kornia"):
        pytest.skip(foreign.available("kornia"))
    photo = tmp_path / "building.png"
    with Image.open(EXAMPLE) as image:
        image.convert("RGB").save(photo)
    return photo, DegradationDetector.from_pretrained("checkpoints/mprnet-detector")


@pytest.mark.slow
def test_foreign_routing_counts_each_sets_decisions_and_the_clean_photos(kornia_photo_and_detector):
    photo, detector = kornia_photo_and_detector
    rows = foreign_routing([detector], [photo], ["kornia/gaussian-noise"], seeds=2)
    assert [row["set"] for row in rows] == ["clean photos", "kornia/gaussian-noise"]
    assert rows[0]["total"] == 1 and rows[1]["total"] == 2
    noisy = foreign.degrade(foreign.get("kornia/gaussian-noise"), np.asarray(Image.open(photo)), 0)
    assert rows[1]["right"] >= (detector.detect(noisy).tasks == ["denoise"])
    table = foreign_routing_table(rows, 1).splitlines()
    assert table[0].startswith("| foreign set | role | routed right |")
    assert table[3].startswith("| kornia/gaussian-noise | foreign-test | ")
    assert f"{rows[1]['right']}/2" in table[3]


def test_foreign_routing_looks_once_at_a_motion_blur_whose_centred_twin_has_the_same_photos(kornia_photo_and_detector):
    photo, detector = kornia_photo_and_detector
    rows = foreign_routing([detector], [photo], ["kornia/motion-blur*"], seeds=1)
    assert [row["set"] for row in rows] == ["clean photos", "kornia/motion-blur (as drawn)"]

"""The foreign validation sets: degradations drawn by third-party libraries, seeded, scored through the evaluation
CLI and the quality report like the own rows."""

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from mprnet_hf.evaluation import evaluate as ev
from mprnet_hf.evaluation import foreign

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import quality_report  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EXAMPLES = REPO_ROOT / "examples" / "clean"


def clean_photo(size: tuple[int, int] | None = (96, 80)) -> np.ndarray:
    """The first clean example photo, resized to `size` (width, height), or at its own size."""
    with Image.open(sorted(EXAMPLES.glob("*.png"))[0]) as photo:
        photo = photo.convert("RGB")
        return np.asarray(photo.resize(size) if size else photo, dtype=np.uint8).copy()


def needs(generator: str):
    reason = foreign.available(generator)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("key", list(foreign.foreign_sets()))
def test_every_set_is_seeded_and_degrades_the_photo(key):
    item = foreign.get(key)
    needs(item.generator)
    clean = clean_photo()
    first, again = foreign.degrade(item, clean, 4), foreign.degrade(item, clean, 4)
    assert first.shape == clean.shape and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert np.abs(first.astype(int) - clean).mean() > 0.5
    assert item.role in ("foreign-dev", "foreign-test") and item.task in ("derain", "deblur", "denoise")


def test_albumentations_is_the_only_dev_generator_and_every_task_has_foreign_test_sets():
    roles = {item.generator: item.role for item in foreign.foreign_sets().values()}
    assert [generator for generator, role in roles.items() if role == "foreign-dev"] == ["albumentations"]
    for task in ("derain", "deblur", "denoise"):
        assert foreign.select(task=task, role="foreign-test")
        assert foreign.select(task=task, role="foreign-dev")


def test_streaks_only_rain_only_adds_light_while_the_drawn_one_darkens_the_frame():
    needs("albumentations")
    clean = clean_photo()
    streaks = foreign.degrade(foreign.get("albumentations/rain-heavy-streaks"), clean, 0)
    drawn = foreign.degrade(foreign.get("albumentations/rain-heavy"), clean, 0)
    assert np.all(streaks >= clean) and (streaks > clean).any()
    assert drawn.mean() < clean.mean() - 10
    assert foreign.get("albumentations/rain-heavy").whole_frame
    assert not foreign.get("albumentations/rain-heavy-streaks").whole_frame


def shifted(image: np.ndarray, down: int, right: int) -> np.ndarray:
    """`image` moved `down` and `right` pixels, its edges repeated into the space left behind."""
    padded = np.pad(image, ((abs(down),) * 2, (abs(right),) * 2, (0, 0)), mode="edge")
    height, width = image.shape[:2]
    return padded[abs(down) - down : abs(down) - down + height, abs(right) - right : abs(right) - right + width]


def test_a_centred_set_is_scored_against_the_clean_photo_moved_as_far_as_its_blur_moves_the_light():
    needs("albumentations")  # `degrade` checks the generator, whose code this blur does not use
    mover = foreign.ForeignDegradation(
        "albumentations", "move", "deblur", "moves the photo 2 down, 3 left", lambda image, seed: shifted(image, 2, -3)
    )
    centred = dataclasses.replace(mover, centred=True)
    clean = clean_photo()
    assert foreign.blur_centre(mover, clean.shape, 0) == (2.0, -3.0)
    assert foreign.reference(mover, clean, 0) is clean
    assert np.array_equal(foreign.reference(centred, clean, 0), foreign.degrade(centred, clean, 0))


@pytest.mark.parametrize("generator", ["albumentations", "kornia", "imagecorruptions"])
def test_every_motion_blur_is_drawn_twice_and_its_centred_reference_lies_closer_to_the_blurred_photo(generator):
    needs(generator)
    drawn, centred = foreign.get(f"{generator}/motion-blur"), foreign.get(f"{generator}/motion-blur-centred")
    assert drawn.whole_frame and not drawn.centred and centred.centred and not centred.whole_frame
    clean = clean_photo(size=None)
    closer = []
    for seed in range(3):
        blurred = foreign.degrade(drawn, clean, seed)
        assert np.array_equal(blurred, foreign.degrade(centred, clean, seed))
        reference = foreign.reference(centred, clean, seed)
        closer.append(ev.psnr(blurred, reference) - ev.psnr(blurred, clean))
    assert min(closer) > -0.05 and max(closer) > 0.3, closer


def test_a_photo_the_library_refuses_ends_the_evaluation_with_one_line_naming_the_set(tmp_path, capsys):
    needs("imagecorruptions")
    Image.fromarray(clean_photo()[:20, :20]).save(tmp_path / "small.png")  # imagecorruptions wants 32 px or more
    with pytest.raises(ValueError, match=r"imagecorruptions refused a 20x20 photo for imagecorruptions/motion-blur "):
        foreign.degrade(foreign.get("imagecorruptions/motion-blur"), clean_photo()[:20, :20], 0)
    arguments = ["--model", str(REPO_ROOT / "checkpoints" / "mprnet-deblur-small"), "--data", str(tmp_path)]
    with pytest.raises(SystemExit, match=r"^mprnet-evaluate: error: imagecorruptions refused a 20x20 photo for "):
        ev.command([*arguments, "--foreign", "imagecorruptions/motion-blur-centred"])


def test_the_centre_of_a_blur_is_refused_where_the_blur_reaches_the_border():
    needs("imagecorruptions")  # its kernel does not shrink with the photo: up to 45 px on a 96x80 one
    with pytest.raises(ValueError, match="cannot be measured"):
        for seed in range(5):
            foreign.blur_centre(foreign.get("imagecorruptions/motion-blur-centred"), (80, 96, 3), seed)


@pytest.mark.parametrize("seed", range(4))
def test_the_measured_centre_of_imagecorruptions_motion_blur_is_that_of_its_exact_kernel(seed):
    """Its uint8 output truncates the blur's faint tail; the measured centre must still be that of the kernel the
    library applies, computed here by its own blur in floating point on an impulse."""
    needs("imagecorruptions")
    from imagecorruptions.corruptions import _motion_blur

    item, shape = foreign.get("imagecorruptions/motion-blur-centred"), (300, 320, 3)
    # `_corruption`'s draws for this seed: the severity, then the library's angle from NumPy's global generator.
    severity = int(np.random.default_rng(seed).choice((1, 2, 3, 4, 5)))
    state = np.random.get_state()
    np.random.seed(seed)
    angle = np.random.uniform(-45, 45)
    np.random.set_state(state)
    radius, sigma = [(10, 3), (15, 5), (15, 8), (15, 12), (20, 15)][severity - 1]
    impulse = np.zeros((shape[0], shape[1]), dtype=np.float64)
    impulse[150, 160] = 1.0
    kernel = _motion_blur(impulse, radius=radius, sigma=sigma, angle=angle)
    exact = np.subtract(ndimage.center_of_mass(kernel), (150, 160))
    assert foreign.blur_centre(item, shape, seed) == pytest.approx(exact, abs=0.05)


def test_kornia_rain_writes_opaque_grey_drops():
    needs("kornia")
    clean = clean_photo()
    rainy = foreign.degrade(foreign.get("kornia/rain"), clean, 1)
    changed = np.any(rainy != clean, axis=-1)
    assert changed.any()
    assert np.all(rainy[changed] == 200)


def test_unknown_sets_and_bad_photos_are_refused():
    with pytest.raises(ValueError, match="Unknown foreign set"):
        foreign.get("albumentations/snow")
    with pytest.raises(ValueError, match="No foreign set"):
        foreign.select(["nothing/*"])
    with pytest.raises(ValueError, match="Unknown generator"):
        foreign.available("imgaug")
    with pytest.raises(ValueError, match="uint8"):
        foreign.degrade(foreign.get("kornia/rain"), clean_photo().astype(np.float32), 0)


def test_evaluate_scores_a_foreign_set_and_records_it(tmp_path):
    needs("albumentations")
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(clean_photo()).save(photos / "a.png")
    result = tmp_path / "result.json"
    evaluation = ev.main(
        [
            "--model",
            str(REPO_ROOT / "checkpoints" / "mprnet-derain-small"),
            "--data",
            str(photos),
            "--foreign",
            "albumentations/rain-drizzle-streaks",
            "--baselines",
            "--json",
            str(result),
        ]
    )
    assert evaluation.task == "derain" and evaluation.protocol == "y"
    saved = json.loads(result.read_text())
    assert saved["foreign"] == "albumentations/rain-drizzle-streaks"
    assert {"input", "median", "opening"} <= set(saved["summary"])
    clean = clean_photo()
    degraded = foreign.degrade(foreign.get("albumentations/rain-drizzle-streaks"), clean, 0)
    assert saved["summary"]["input"]["psnr"] == pytest.approx(ev.psnr(degraded, clean, "y"))


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--foreign", "albumentations/snow"], "Unknown foreign set"),
        (["--foreign", "kornia/rain", "--synthetic"], "give one"),
        (["--foreign", "kornia/rain", "--task", "denoise"], "derain set"),
    ],
)
def test_evaluate_refuses_contradictory_foreign_arguments(arguments, message, capsys):
    with pytest.raises(SystemExit):
        ev.parse_args(["--data", "x", *arguments])
    assert message in capsys.readouterr().err


def test_quality_report_has_a_row_per_foreign_set_after_the_own_rows():
    rows = quality_report.foreign_rows()
    assert len(rows) == len(foreign.foreign_sets())
    assert len({row["name"] for row in rows} | {row["name"] for row in quality_report.all_rows()}) == len(rows) + 27
    roles = [row["set"] for row in rows]
    assert roles == sorted(roles)  # foreign-dev first
    assert all(row["extra"][0] == "--foreign" for row in rows)

"""Auto mode and its degradation detector: the bundled detector on the committed examples of every kind, auto mode
through `restore_image`, the pipeline and the CLI (the app's is in tests/test_app.py), and a clean photo unchanged."""

import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio
from transformers import ResNetForImageClassification, pipeline

from conftest import REPO_ROOT
from mprnet_hf import AutoImageRestorationPipeline, cli, restore_image
from mprnet_hf.auto import auto_message, run_steps
from mprnet_hf.detection import LABELS, DegradationDetector, Detection, bundled_detector_path
from mprnet_hf.detection.detector import (
    STEP_ORDER,
    STEPS_LOOKED_AFTER,
    crop_positions,
    cut_crops,
    distinct_restorations,
)
from mprnet_hf.hub.bundled import bundled_models

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = REPO_ROOT / "examples"
# (example, the restorations auto mode must run): one of every kind the detector knows, and a mixed one.
EXAMPLE_ROUTES = [
    ("deblur/coffee_motion.png", ["deblur"]),
    ("denoise/monarch_noise.png", ["denoise"]),
    ("denoise/squirrel_noise.png", ["denoise"]),
    ("derain/fruits_rain.png", ["derain"]),
    ("derain/building_rain.png", ["derain"]),
    ("detector/fruits_jpeg.png", []),
    ("auto/coffee_noise_motion.png", ["denoise", "deblur"]),
    *((f"clean/{path.name}", []) for path in sorted((EXAMPLES / "clean").glob("*.png"))),
]
EXPECTED_LABELS = {
    "deblur": {"blur"},
    "denoise": {"noise"},
    "derain": {"rain"},
    "detector": {"jpeg"},
    "auto": {"noise", "blur"},
    "clean": set(),
}


@pytest.fixture(scope="module")
def detector():
    return DegradationDetector.from_pretrained()


@pytest.fixture(scope="module")
def models():
    return bundled_models()


def rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# ------------------------------------------------------------------------------------------------ the detector
def test_bundled_detector_is_a_small_transformers_classifier_with_a_card():
    folder = bundled_detector_path()
    model = ResNetForImageClassification.from_pretrained(folder)
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[index] for index in range(len(LABELS))] == list(LABELS)
    weights = folder / "model.safetensors"
    # Compact: a fraction of one restoration checkpoint (each at most 20 MB), read on every auto-mode call.
    assert weights.is_file() and weights.stat().st_size < 6 * 2**20
    card = (folder / "README.md").read_text()
    facts = ("data/photos/train", "held out", "minutes", "precision", "recall", "python -m mprnet_hf.detection.train")
    for fact in facts:
        assert fact in card
    config = json.loads((folder / "config.json").read_text())
    assert config["crop_size"] == 96 and set(config["detection_thresholds"]) == set(LABELS)


@pytest.mark.parametrize("example, tasks", EXAMPLE_ROUTES, ids=[name for name, _ in EXAMPLE_ROUTES])
def test_detector_routes_every_kind_of_example(detector, models, example, tasks):
    """The first look finds the example's degradation and asks for its restoration; a mixed photo's blur shows, at the
    latest, once it is denoised. OpenCV's photos were JPEGs, so JPEG artefacts may show beside anything (they change
    no route)."""
    image = Image.open(EXAMPLES / example)
    detection = detector.detect(image)
    expected = EXPECTED_LABELS[example.split("/")[0]]
    if example.startswith("auto/"):
        # Blur under strong noise may show only once the noise is gone: the first look must ask for denoising
        # first, and the look at the denoised photo for deblurring.
        assert detection.tasks[:1] == ["denoise"] and "noise" in detection.found, detection.describe()
        denoised = restore_image(models["denoise"], image).image
        assert detector.detect(denoised, after="denoise").tasks == ["deblur"]
    else:
        assert detection.tasks == tasks, detection.describe()
        assert expected <= set(detection.found) <= expected | {"jpeg"}, detection.describe()


def test_crops_are_native_scale_and_prefer_texture():
    flat_left = np.full((300, 600, 3), 128, np.uint8)
    flat_left[:, 300:] = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    positions = crop_positions(flat_left, crop=96, count=8)
    assert len(positions) == 8 and all(left >= 300 - 96 // 2 for _top, left in positions)
    crops = cut_crops(flat_left, positions, crop=96)
    assert crops.shape == (8, 96, 96, 3)
    top, left = positions[0]
    assert np.array_equal(crops[0], flat_left[top : top + 96, left : left + 96])  # pixels as they are, no resizing


def test_the_checkpoint_says_how_many_crops_are_read_and_of_which_grid():
    photo = np.random.default_rng(1).integers(0, 256, (700, 900, 3), dtype=np.uint8)
    config = ResNetForImageClassification.from_pretrained(bundled_detector_path()).config
    config.crops_per_photo, config.crop_grid_side = 5, 3
    crops = DegradationDetector(ResNetForImageClassification(config)).read_crops(photo)
    assert crops.shape == (5, 96, 96, 3)
    # A 3x3 grid over 700x900 pixels: squares start at 0, 302 and 604 down, at 0, 402 and 804 across.
    grid = [photo[top : top + 96, left : left + 96] for top in (0, 302, 604) for left in (0, 402, 804)]
    assert all(any(np.array_equal(crop, square) for square in grid) for crop in crops)
    assert len(DegradationDetector(ResNetForImageClassification(config)).read_crops(Image.fromarray(photo))) == 5
    for grid_side, crops_per_photo in ((0, 5), (10**6, 5), (True, 5), (3.5, 5), (3, 10**6), (3, "5")):
        config.crop_grid_side, config.crops_per_photo = grid_side, crops_per_photo
        with pytest.raises(ValueError, match="crops_per_photo and crop_grid_side must be whole numbers"):
            DegradationDetector(ResNetForImageClassification(config))


def test_photo_smaller_than_a_crop_is_read(detector):
    detection = detector.detect(Image.new("RGB", (20, 7), (90, 140, 30)))
    assert set(detection.probabilities) == set(LABELS)


def test_detector_refuses_what_is_not_a_photo(detector):
    with pytest.raises(ValueError, match="RGB array"):
        detector.detect(np.zeros((4, 4)))


def test_message_names_what_was_found_and_done():
    probabilities = {"blur": 0.9, "noise": 0.8, "rain": 0.01, "jpeg": 0.6, "clean": 0.02}
    message = auto_message(Detection(probabilities), ("denoise", "deblur"))
    assert message.startswith("Detected blur (0.90), noise (0.80), JPEG artefacts (0.60)")
    assert "Ran denoise, then deblur." in message and "JPEG artefacts are only reported" in message
    first = Detection({"blur": 0.2, "noise": 0.99, "rain": 0.0, "jpeg": 0.0, "clean": 0.0})
    after_denoise = Detection({"blur": 0.84, "noise": 0.01, "rain": 0.0, "jpeg": 0.1, "clean": 0.1})
    message = auto_message([first, after_denoise], ("denoise", "deblur"))
    assert "Detected noise (0.99)" in message and "After denoise: blur (0.84). Ran denoise, then deblur." in message


def test_steps_follow_the_order_and_look_again_after_each():
    looks = iter(
        [
            {"blur": 0.9, "noise": 0.9, "rain": 0.9},
            {"blur": 0.9, "noise": 0.9, "rain": 0.0},
            {"blur": 0.9, "noise": 0.0, "rain": 0.9},
        ]
    )

    looked_after = []

    def look(image, after):
        looked_after.append(after)
        return Detection({**next(looks), "jpeg": 0.0, "clean": 0.0})

    results, detections = run_steps("photo", look, lambda task, image: (f"{image}>{task}", ()))
    # Each task runs in order, once here (the look after deraining finds no rain left), even when a later look still
    # sees what an earlier step addressed; each look knows the step it follows (its thresholds may be its own).
    assert [task for task, *_ in results] == ["derain", "denoise", "deblur"]
    assert looked_after == [None, "derain", "denoise"]
    assert STEP_ORDER[:-1] == STEPS_LOOKED_AFTER
    assert results[-1][1] == "photo>derain>denoise>deblur" and len(detections) == 3
    clean = auto_message(Detection({"blur": 0.1, "noise": 0.0, "rain": 0.0, "jpeg": 0.1, "clean": 0.9}), ())
    assert "looks clean (clean 0.90" in clean and "returned unchanged" in clean


def test_rain_left_after_deraining_is_derained_once_more_and_no_other_step_repeats():
    looked_after = []

    def look_finding(labels):
        def look(image, after):
            looked_after.append(after)
            return Detection({"blur": 0.0, "noise": 0.0, "rain": 0.0, "jpeg": 0.0, "clean": 0.0, **labels})

        return look

    def restore(task, image):
        return f"{image}>{task}", ()

    # Rain and noise in every look: deraining runs twice (MAX_PASSES), then denoising once; the detector looks after
    # every run of a step that may be followed (deraining, denoising).
    results, detections = run_steps("photo", look_finding({"rain": 0.9, "noise": 0.9}), restore)
    assert [task for task, *_ in results] == ["derain", "derain", "denoise"]
    assert looked_after == [None, "derain", "derain", "denoise"] and len(detections) == 4
    assert distinct_restorations(task for task, *_ in results) == ("derain", "denoise")
    message = auto_message(detections, ("derain", "derain", "denoise"))
    assert "After derain: rain still (0.90), so derain ran again." in message
    assert "Ran derain twice, then denoise." in message
    # Noise found after denoising is not denoised again.
    looked_after.clear()
    results, _ = run_steps("photo", look_finding({"noise": 0.9}), restore)
    assert [task for task, *_ in results] == ["denoise"] and looked_after == [None, "denoise"]
    # What a look after the second pass finds is said of that pass.
    looks = iter([{"rain": 0.9}, {"rain": 0.8, "blur": 0.9}, {"noise": 0.9, "blur": 0.9}, {"blur": 0.9}])
    results, detections = run_steps("photo", lambda image, after: look_finding(next(looks))(image, after), restore)
    assert [task for task, *_ in results] == ["derain", "derain", "denoise", "deblur"]
    message = auto_message(detections, tuple(task for task, *_ in results))
    assert (
        "After derain: blur (0.90). After derain: rain still (0.80), so derain ran again. After derain again: noise "
        "(0.90). Ran derain twice, then denoise, then deblur." in message
    )
    # No rain left after the first pass: one pass.
    looks = iter([{"rain": 0.9}, {"rain": 0.1}])
    results, _ = run_steps("photo", lambda image, after: look_finding(next(looks))(image, after), restore)
    assert [task for task, *_ in results] == ["derain"]


# ------------------------------------------------------------------------------------------------ auto mode
@pytest.mark.slow
def test_auto_restores_a_noisy_and_shaken_photo_in_two_steps(models):
    degraded = Image.open(EXAMPLES / "auto" / "coffee_noise_motion.png")
    restored = restore_image(models, degraded, task="auto")
    assert restored.steps == ("denoise", "deblur")
    assert len(restored.stages) == 2 and restored.stages[-1] is restored.image
    assert "noise" in restored.message and "blur" in restored.message and "Ran denoise, then deblur" in restored.message
    clean = rgb(EXAMPLES / "clean" / "coffee.png")
    before = peak_signal_noise_ratio(clean, rgb(EXAMPLES / "auto" / "coffee_noise_motion.png"))
    after = peak_signal_noise_ratio(clean, np.asarray(restored.image))
    assert after > before + 1, f"{before:.2f} -> {after:.2f} dB"


def test_auto_returns_a_clean_photo_unchanged(models):
    clean = Image.open(EXAMPLES / "clean" / "monarch.png")
    restored = restore_image(models, clean, task="auto")
    assert restored.steps == () and restored.stages == ()
    assert np.array_equal(np.asarray(restored.image), np.asarray(clean.convert("RGB")))
    assert "returned unchanged" in restored.message


@pytest.mark.slow
def test_auto_with_one_model_fills_in_the_bundled_others(models):
    restored = restore_image(models["deblur"], Image.open(EXAMPLES / "denoise" / "monarch_noise.png"), task="auto")
    assert restored.steps == ("denoise",) and len(restored.stages) == 3


def test_unknown_task_is_refused(models):
    with pytest.raises(ValueError, match="Unknown task 'dehaze'"):
        restore_image(models["denoise"], Image.new("RGB", (8, 8)), task="dehaze")


@pytest.mark.slow
def test_pipeline_auto():
    restorer = pipeline(
        "image-restoration",
        model=str(REPO_ROOT / "checkpoints" / "mprnet-denoise-small"),
        pipeline_class=AutoImageRestorationPipeline,
    )
    degraded = EXAMPLES / "derain" / "fruits_rain.png"
    restored = restorer(Image.open(degraded), task="auto")
    clean = rgb(EXAMPLES / "clean" / "fruits.png")
    assert peak_signal_noise_ratio(clean, np.asarray(restored)) > peak_signal_noise_ratio(clean, rgb(degraded))
    with pytest.raises(ValueError, match="this pipeline restores 'denoise'"):
        restorer(Image.open(degraded), task="derain")


# ------------------------------------------------------------------------------------------------ the CLI
@pytest.mark.slow
def test_cli_auto_restores_the_mixed_photo_and_copies_the_clean_one(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "mixed.png").write_bytes((EXAMPLES / "auto" / "coffee_noise_motion.png").read_bytes())
    (photos / "clean.png").write_bytes((EXAMPLES / "clean" / "squirrel_cls.png").read_bytes())
    out = tmp_path / "out"
    status = cli.main([str(photos), "--task", "auto", "--output", str(out), "--stages"])
    captured = capsys.readouterr()

    assert status == 0 and captured.out.startswith("2 restored, 0 skipped")
    assert "mixed.png: Detected noise (" in captured.err and "Ran denoise, then deblur." in captured.err
    assert "clean.png: The photo looks clean" in captured.err and "returned unchanged" in captured.err
    assert np.array_equal(rgb(out / "clean.png"), rgb(photos / "clean.png"))
    clean = rgb(EXAMPLES / "clean" / "coffee.png")
    assert peak_signal_noise_ratio(clean, rgb(out / "mixed.png")) > peak_signal_noise_ratio(
        clean, rgb(photos / "mixed.png")
    )
    assert (out / "mixed.step1-denoise.png").is_file()


def test_cli_auto_refuses_a_model(tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(tmp_path / "a.png"), "--task", "auto", "--output", str(tmp_path / "out"), "--model", "x"])
    assert exit_info.value.code == 2
    assert "--task auto uses the bundled model of every task" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

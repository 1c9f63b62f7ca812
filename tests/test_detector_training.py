"""What the degradation detector is trained and calibrated from: training photos that share content with evaluation
photos are found by their pixels, second-look samples are labelled with what remains, per-label thresholds are chosen
from held-out records and read back from a checkpoint's config."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ResNetForImageClassification

from conftest import REPO_ROOT
from mprnet_hf.detection import LABELS, DegradationDetector, Detection, detector_config
from mprnet_hf.detection.calibrate import (
    choose_thresholds,
    choose_thresholds_after,
    fit_routing,
    rerouted,
    right_next_steps,
    routed_right_count,
)
from mprnet_hf.detection.calibrate import main as calibrate_main
from mprnet_hf.detection.data import build_crop_set, second_look_targets
from mprnet_hf.detection.detector import EMBEDDING_SIZE, HIDDEN_SIZES
from mprnet_hf.detection.overlap import overlapping_photos

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLEAN = REPO_ROOT / "examples" / "clean"


@pytest.mark.slow
def test_a_cropped_and_resized_copy_of_an_evaluation_photo_is_found(tmp_path):
    coffee = Image.open(CLEAN / "coffee.png").convert("RGB").resize((768, 513), Image.Resampling.BICUBIC)
    coffee.save(tmp_path / "evaluation.png")
    coffee.crop((100, 60, 700, 480)).resize((450, 315), Image.Resampling.BOX).save(tmp_path / "renamed_crop.png")
    coffee.resize((600, 401)).save(tmp_path / "same.jpg", quality=80)
    overlaps = overlapping_photos(
        [tmp_path / "renamed_crop.png", tmp_path / "same.jpg", CLEAN / "monarch.png"],
        [tmp_path / "evaluation.png", CLEAN / "building.png"],
    )
    assert set(overlaps) == {tmp_path / "renamed_crop.png", tmp_path / "same.jpg"}
    assert all(reference == tmp_path / "evaluation.png" for reference, _why in overlaps.values())
    assert "keypoints agree" in overlaps[tmp_path / "renamed_crop.png"][1]


def test_second_looks_label_what_remains_and_leave_out_what_was_restored():
    labels, weights = second_look_targets(("noise", "blur"), ("denoise",))
    assert dict(zip(LABELS, labels)) == {"blur": 1, "noise": 0, "rain": 0, "jpeg": 0, "clean": 0}
    assert dict(zip(LABELS, weights)) == {"blur": 1, "noise": 0, "rain": 1, "jpeg": 1, "clean": 1}
    labels, weights = second_look_targets(("rain",), ("derain",))
    assert labels[LABELS.index("blur")] == labels[LABELS.index("noise")] == 0
    assert weights[LABELS.index("rain")] == weights[LABELS.index("clean")] == 0
    assert weights[LABELS.index("blur")] == weights[LABELS.index("noise")] == 1


@pytest.mark.slow
def test_crop_set_reads_native_scale_crops_of_degraded_regions_and_second_looks():
    photos = [CLEAN / "coffee.png"]
    crops, labels, weights = build_crop_set(photos, variants_per_photo=3, crops_per_variant=2, seed=0)
    assert crops.shape == (6, 96, 96, 3) and crops.dtype == np.uint8
    assert labels.shape == weights.shape == (6, len(LABELS)) and (weights == 1).all()
    assert (labels.sum(axis=1) >= 1).all()  # every crop is degraded by something or clean
    crops, labels, weights = build_crop_set(photos, 1, 2, seed=0, second_looks_per_photo=1)
    assert len(crops) == 4 and (weights[2:, LABELS.index("rain")] == 0).all()  # a derained photo: rain left out


def test_thresholds_are_chosen_to_route_held_out_photos_right():
    faint_rain = {"blur": 0.05, "noise": 0.05, "rain": 0.4, "jpeg": 0.1, "clean": 0.3}
    clean = {"blur": 0.05, "noise": 0.05, "rain": 0.1, "jpeg": 0.1, "clean": 0.9}
    records = [{"kinds": ("rain",), "probabilities": faint_rain}] * 5 + [{"kinds": (), "probabilities": clean}] * 5
    thresholds = choose_thresholds(records)
    assert 0.1 < thresholds["rain"] <= 0.4 and thresholds["blur"] == thresholds["noise"] == 0.5
    assert routed_right_count(records, thresholds) == 10 > routed_right_count(records, dict.fromkeys(LABELS, 0.5))


def test_per_label_thresholds_are_read_from_the_checkpoint(tmp_path):
    probabilities = {"blur": 0.1, "noise": 0.1, "rain": 0.35, "jpeg": 0.45, "clean": 0.2}
    assert Detection(probabilities).found == []
    assert Detection(probabilities, {"rain": 0.3, "jpeg": 0.5}).found == ["rain"]
    config = detector_config()
    config.detection_thresholds = {"rain": 0.3}
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    assert DegradationDetector.from_pretrained(tmp_path).threshold["rain"] == 0.3
    assert DegradationDetector.from_pretrained(tmp_path, threshold=0.5).threshold == 0.5
    config.detection_thresholds = {"rain": 1.5}
    with pytest.raises(ValueError, match="detection_thresholds must map labels"):
        DegradationDetector(ResNetForImageClassification(config))


def look_after(step: str, kinds: tuple[str, ...], next_step: str | None, **probabilities) -> dict:
    """An `after_step_records` record: what the detector read after `step` of a photo degraded by `kinds`."""
    read = {"blur": 0.05, "noise": 0.05, "rain": 0.05, "jpeg": 0.05, "clean": 0.5, **probabilities}
    return {
        "group": "single" if len(kinds) == 1 else "pair",
        "kinds": kinds,
        "after": step,
        "next": next_step,
        "probabilities": read,
    }


def test_looks_after_a_step_get_thresholds_that_send_them_to_the_right_next_step():
    # Derained rain reads blur 0.7 (the deraining's smoothing); derained rain over a shaken photo reads 0.9.
    derained = [look_after("derain", ("rain",), None, blur=0.7)] * 5
    derained += [look_after("derain", ("blur", "rain"), "deblur", blur=0.9)] * 3
    derained += [look_after("derain", ("noise", "rain"), "denoise", noise=0.85, blur=0.3)] * 2
    denoised = [look_after("denoise", ("noise",), None, blur=0.5)] * 4
    denoised += [look_after("denoise", ("blur", "noise"), "deblur", blur=0.6)] * 4
    first = {"blur": 0.65, "noise": 0.8, "rain": 0.5, "jpeg": 0.45, "clean": 0.5}
    chosen = choose_thresholds_after(derained + denoised, first)
    assert set(chosen) == {"derain", "denoise"}
    assert set(chosen["derain"]) == {"noise", "blur"} and set(chosen["denoise"]) == {"blur"}  # what may follow
    assert 0.7 < chosen["derain"]["blur"] <= 0.9 and 0.5 < chosen["denoise"]["blur"] <= 0.6
    assert chosen["derain"]["noise"] == 0.8  # already right: the first look's value stays
    assert right_next_steps(derained, first) == 5 and right_next_steps(derained, {**first, **chosen["derain"]}) == 10
    assert right_next_steps(denoised, {**first, **chosen["denoise"]}) == 8
    # A pair the first look's thresholds send on right is not traded for singles: derained rain reading blur 0.7
    # cannot be told from a derained, slightly shaken rainy photo reading 0.72 with the grid's thresholds.
    traded = [look_after("derain", ("rain",), None, blur=0.7)] * 5 + [
        look_after("derain", ("blur", "rain"), "deblur", blur=0.72)
    ]
    assert choose_thresholds_after(traded, first)["derain"]["blur"] == 0.65


@pytest.mark.slow
def test_thresholds_after_a_step_are_read_from_the_checkpoint_and_checked(tmp_path):
    config = detector_config()
    config.detection_thresholds = {"blur": 0.65}
    config.detection_thresholds_after = {"derain": {"blur": 0.9}}
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    detector = DegradationDetector.from_pretrained(tmp_path)
    grey = np.full((120, 120, 3), 128, np.uint8)
    assert detector.detect(grey).threshold["blur"] == 0.65
    assert detector.detect(grey, after="derain").threshold["blur"] == 0.9
    assert detector.detect(grey, after="derain").threshold["noise"] == 0.5  # not named: the first look's
    assert detector.detect(grey, after="denoise").threshold == detector.threshold
    with pytest.raises(ValueError, match="looks again only after derain or denoise"):
        detector.detect(grey, after="deblur")
    for wrong in ({"deblur": {"blur": 0.9}}, {"derain": {"blur": 1.5}}, {"derain": 0.9}):
        config.detection_thresholds_after = wrong
        with pytest.raises(ValueError, match="detection_thresholds_after must map steps"):
            DegradationDetector(ResNetForImageClassification(config))


@pytest.mark.slow
def test_calibrating_the_looks_after_a_step_keeps_the_first_look_and_says_so_in_the_card(tmp_path):
    """End to end on two small held-out photos: the bundled restorations run, the folder gains thresholds after
    derain and denoise and a card section with the command; a plain recalibration of the first look drops them
    (they were chosen alongside the first look's earlier thresholds)."""
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    for index, name in enumerate(("coffee", "monarch", "building", "coffee")):
        photo = Image.open(CLEAN / f"{name}.png").convert("RGB")
        photo.crop((index * 20, 0, index * 20 + 160, 128)).save(train_dir / f"photo{index}.png")
    folder = tmp_path / "detector"
    config = detector_config()
    config.detection_thresholds = {"blur": 0.65, "noise": 0.8}
    ResNetForImageClassification(config).save_pretrained(folder)
    original_card = "# A detector\n\n## Limits\n\nSynthetic degradations only.\n"
    (folder / "README.md").write_text(original_card)
    common = [
        "--detector",
        str(folder),
        "--train-dir",
        str(train_dir),
        "--exclude-like",
        "--holdout-every",
        "2",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--seeds-single",
        "1",
        "--seeds-pair",
        "1",
        "--seeds-light-jpeg",
        "1",
    ]
    calibrate_main([*common, "--after-steps"])
    saved = json.loads((folder / "config.json").read_text())
    assert saved["detection_thresholds"] == {"blur": 0.65, "noise": 0.8}
    assert set(saved["detection_thresholds_after"]) == {"derain", "denoise"}
    assert set(saved["detection_thresholds_after"]["denoise"]) == {"blur"}
    card = (folder / "README.md").read_text()
    assert card.index("## Looks after a restoration") < card.index("## Limits")
    assert "python -m mprnet_hf.detection.calibrate --detector" in card and "--after-steps" in card
    calibrate_main([*common, "--after-steps"])  # again: the section is replaced, not repeated
    assert (folder / "README.md").read_text().count("## Looks after a restoration") == 1
    calibrate_main(common)
    assert "detection_thresholds_after" not in json.loads((folder / "config.json").read_text())
    assert (folder / "README.md").read_text() == original_card


def pooled(mean_logits: dict[str, float]) -> tuple[float, ...]:
    """`pooled_features` of crops that all give these logits (no spread)."""
    return tuple(mean_logits.get(label, -4.0) for label in LABELS) + (0.0,) * len(LABELS)


def test_a_routing_rule_learns_how_much_blur_strong_noise_explains():
    # Strong noise raises the blur logit of a sharp photo to 1; a noisy and shaken one reads blur 3.
    noisy = [{"kinds": ("noise",), "features": pooled({"noise": 6 + i % 3, "blur": 1.0})} for i in range(30)]
    shaken = [{"kinds": ("blur",), "features": pooled({"blur": 1.0 + i % 2})} for i in range(30)]
    both = [{"kinds": ("blur", "noise"), "features": pooled({"noise": 6 + i % 3, "blur": 3.0})} for i in range(30)]
    records = noisy + shaken + both
    alone = rerouted(records, None)
    routing = fit_routing(records)
    routed = rerouted(records, routing)
    # Each label alone cannot route both the noisy and the shaken photos right: their blur logits are the same.
    assert routed_right_count(alone, choose_thresholds(alone)) < len(records)
    assert routed_right_count(routed, choose_thresholds(routed)) == len(records)
    assert routing["blur"]["weights"][LABELS.index("noise")] < 0


def test_a_routing_rule_is_read_from_the_checkpoint_and_checked(tmp_path):
    config = detector_config()
    weights = [0.0] * (2 * len(LABELS))
    config.detection_routing = {
        label: {"weights": weights[:index] + [1.0] + weights[index + 1 :], "bias": -1.0}
        for index, label in enumerate(("blur", "noise", "rain"))
    }
    ResNetForImageClassification(config).save_pretrained(tmp_path)
    detector = DegradationDetector.from_pretrained(tmp_path)
    detection = detector.detect(np.full((120, 120, 3), 128, np.uint8))
    mean_logits = detection.features[: len(LABELS)]
    # blur's routed probability is the sigmoid of its mean logit minus 1; JPEG's is its mean logit's own.
    assert detection.probabilities["blur"] == pytest.approx(1 / (1 + np.exp(1 - mean_logits[0])), abs=1e-6)
    assert detection.probabilities["jpeg"] == pytest.approx(1 / (1 + np.exp(-mean_logits[3])), abs=1e-6)
    assert DegradationDetector.from_pretrained(tmp_path, routing=False).routing is None
    config.detection_routing = {"blur": {"weights": [1.0], "bias": 0.0}}
    with pytest.raises(ValueError, match="detection_routing must give"):
        DegradationDetector(ResNetForImageClassification(config))


def test_calibration_changes_only_a_folder_it_is_given(capsys):
    """The calibration rewrites its detector's config.json: with no --detector it must refuse, not recalibrate the
    bundled checkpoint."""
    with pytest.raises(SystemExit):
        calibrate_main([])
    assert "--detector" in capsys.readouterr().err


@pytest.mark.parametrize("weight_decay", ["-0.1", "inf", "nan"])
def test_calibration_refuses_a_weight_decay_that_is_not_finite_and_positive_before_touching_the_folder(
    tmp_path, capsys, weight_decay
):
    with pytest.raises(SystemExit):
        calibrate_main(["--detector", str(tmp_path), "--fit-routing", "--routing-l2", weight_decay])
    assert "--routing-l2 must be a finite number, 0 or more" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_fine_tuning_starts_from_the_given_detector_and_drops_its_calibration(tmp_path):
    from mprnet_hf.detection.train import initial_model

    config = detector_config()
    config.detection_thresholds = {"rain": 0.3}
    config.detection_routing = {"blur": {"weights": [0.0] * (2 * len(LABELS)), "bias": 0.0}}
    config.detection_thresholds_after = {"derain": {"blur": 0.9}}
    earlier = ResNetForImageClassification(config)
    earlier.save_pretrained(tmp_path / "earlier")
    started = initial_model(tmp_path / "earlier")
    assert all(torch.equal(weight, started.state_dict()[name]) for name, weight in earlier.state_dict().items()), (
        "fine-tuning must start from the earlier detector's weights"
    )
    # Its thresholds and routing rule were chosen for the earlier weights: read by the detector, they would decide
    # the new thresholds' calibration.
    assert DegradationDetector(started).threshold == 0.5 and DegradationDetector(started).routing is None
    assert DegradationDetector(started).thresholds_after == {}
    fresh = initial_model(None)
    assert not torch.equal(fresh.classifier[1].weight, earlier.classifier[1].weight)


def test_fine_tuning_refuses_what_is_not_a_degradation_detector(tmp_path):
    from mprnet_hf.detection.train import initial_model

    with pytest.raises(ValueError, match="no config.json there"):
        initial_model(tmp_path / "missing")
    config = detector_config()
    config.id2label = {0: "cat", 1: "dog"}
    config.label2id, config.num_labels = {"cat": 0, "dog": 1}, 2
    ResNetForImageClassification(config).save_pretrained(tmp_path / "animals")
    with pytest.raises(ValueError, match="not a degradation detector"):
        initial_model(tmp_path / "animals")


def test_the_card_of_a_fine_tuned_detector_says_where_it_started():
    from mprnet_hf.detection.train import origin_sentence

    assert origin_sentence(None) == "Trained from scratch"
    sentence = origin_sentence(
        {"folder": "checkpoints/mprnet-detector", "epochs": 6, "minutes": 17.49, "train_crops": 36630, "seed": 0}
    )
    assert "`checkpoints/mprnet-detector`" in sentence and "6 epochs, 17.5 minutes, 36630 crops, seed 0" in sentence
    assert "trained from scratch here" in sentence
    chained = origin_sentence(
        {
            "folder": "runs/ft",
            "epochs": 1,
            "minutes": 8.8,
            "train_crops": 54450,
            "seed": 1,
            "fine_tuned_from": "checkpoints/mprnet-detector",
        }
    )
    assert "itself fine-tuned here from `checkpoints/mprnet-detector`" in chained and "from scratch" not in chained
    assert "1 epoch, 8.8 minutes" in chained  # one epoch, not "1 epochs"


def test_several_seeds_train_on_every_draw_each_cached_on_its_own(tmp_path):
    from mprnet_hf.detection.data import cached_crop_set
    from mprnet_hf.detection.train import Draw, crop_set_draws, parse_args, training_crop_set

    args = parse_args(["--seed", "0", "1", "--variants-per-photo", "2", "3", "--second-looks-per-photo", "0"])
    assert args.draws == [Draw(0, 2, 0), Draw(1, 3, 0)]
    assert parse_args(["--seed", "4", "5"]).draws == [Draw(4, 36, 1), Draw(5, 36, 1)]
    photos = [CLEAN / "coffee.png"]
    crops, labels, weights = training_crop_set(tmp_path, photos, args.draws, crops_per_variant=1)
    assert len(list(tmp_path.glob("*.npz"))) == 2, "each draw is cached on its own, so a later run can add a draw"
    first, second = (
        cached_crop_set(tmp_path, photos, draw.variants, 1, draw.seed, 0, synthesis=draw.synthesis)
        for draw in args.draws
    )
    assert crops.shape == (5, 96, 96, 3) and labels.shape == weights.shape == (5, len(LABELS))
    assert np.array_equal(crops, np.concatenate([first[0], second[0]]))
    assert np.array_equal(labels, np.concatenate([first[1], second[1]]))
    assert not np.array_equal(first[0][:2], second[0][:2]), "two seeds must draw different degradations"
    with pytest.raises(ValueError, match="--variants-per-photo takes one value for every seed or one per seed"):
        crop_set_draws([0, 1, 2], [36, 54], [1])
    with pytest.raises(ValueError, match="--second-looks-per-photo takes one value for every seed"):
        crop_set_draws([0, 1, 2], [36], [1, 12])
    with pytest.raises(ValueError, match="a seed given twice"):
        crop_set_draws([1, 1], [36], [1])
    with pytest.raises(ValueError, match="seed 3 draws nothing"):
        crop_set_draws([0, 3], [36, 0], [1, 0])
    with pytest.raises(ValueError, match="first seed's --variants-per-photo"):
        crop_set_draws([3, 0], [0, 36], [12, 1])


def test_draws_of_each_synthesis_train_together_and_the_card_names_both(tmp_path):
    """A detector fine-tuned on the broad synthesis alone lost some of the classic rain it found: a draw of each
    keeps both, each cached under its own name."""
    from mprnet_hf.detection.train import Draw, crop_set_draws, parse_args, synthesis_text, training_command

    argv = ["--seed", "0", "1", "--variants-per-photo", "1", "--second-looks-per-photo", "0"]
    args = parse_args([*argv, "--synthesis", "broad", "classic"])
    assert [draw.synthesis for draw in args.draws] == ["broad", "classic"]
    assert args.draws[1] == Draw(1, 1, 0, synthesis="classic")
    assert training_command(args, "out").endswith("--synthesis broad classic")
    assert training_command(parse_args(argv), "out").endswith("--synthesis broad")
    text = synthesis_text(args.draws)
    assert text.startswith("seed 0: broad synthetic") and "seed 1: synthetic degradations" in text
    with pytest.raises(ValueError, match="--synthesis fancy: expected one of"):
        crop_set_draws([0], [36], [1], ["all"], ["fancy"])
    with pytest.raises(ValueError, match="--synthesis takes one value for every seed or one per seed"):
        crop_set_draws([0, 1, 2], [36], [1], ["all"], ["broad", "classic"])


@pytest.mark.slow
def test_a_draw_of_second_looks_only_adds_photos_restored_before_a_second_look(tmp_path):
    """A draw may give only second looks (no first-look versions), to train more of what auto mode's look after
    deraining or denoising must tell: what remains."""
    from mprnet_hf.detection.train import Draw, parse_args, training_crop_set

    argv = ["--seed", "0", "3", "--variants-per-photo", "1", "0", "--second-looks-per-photo", "0", "3"]
    args = parse_args(argv)
    assert args.draws == [Draw(0, 1, 0), Draw(3, 0, 3)]
    crops, labels, weights = training_crop_set(tmp_path, [CLEAN / "coffee.png"], args.draws, crops_per_variant=1)
    assert len(crops) == 4
    restored = weights[1:]
    # Looks 0-2 of the cycle: derained rain, denoised noise, denoised noise and blur; what was restored is left out.
    assert restored[0, LABELS.index("rain")] == 0 and restored[1:, LABELS.index("noise")].max() == 0
    assert labels[3, LABELS.index("blur")] == 1, "blur remains after denoising a noisy and shaken photo"


@pytest.mark.slow
def test_a_draw_can_choose_and_weight_its_kinds_of_second_look(tmp_path):
    """The misroutes left are second looks at derained rain and denoised noise that still see blur: a draw of second
    looks can cycle through the kinds it names, a name given twice coming twice as often."""
    from mprnet_hf.detection.data import ALL_SECOND_LOOKS
    from mprnet_hf.detection.train import crop_set_draws, parse_args, training_crop_set

    argv = ["--seed", "0", "4", "--variants-per-photo", "1", "0", "--second-looks-per-photo", "0", "3"]
    argv += ["--second-look-kinds", "all", "noise+blur/denoise,noise+blur/denoise,rain/derain"]
    args = parse_args(argv)
    assert args.draws[0].second_look_kinds == ALL_SECOND_LOOKS
    assert args.draws[1].second_look_kinds == ("noise+blur/denoise", "noise+blur/denoise", "rain/derain")
    crops, labels, weights = training_crop_set(tmp_path, [CLEAN / "coffee.png"], args.draws, crops_per_variant=1)
    blur, noise, rain = (LABELS.index(label) for label in ("blur", "noise", "rain"))
    assert labels[1:3, blur].tolist() == [1, 1] and weights[1:3, noise].max() == 0, "blur remains after denoising"
    assert labels[3, blur] == 0 and weights[3, rain] == 0, "a derained rainy photo: nothing remains"
    # The same seed with the default cycle is another draw, cached under another name.
    default = parse_args(["--seed", "0", "4", "--variants-per-photo", "1", "0", "--second-looks-per-photo", "0", "3"])
    training_crop_set(tmp_path, [CLEAN / "coffee.png"], default.draws, crops_per_variant=1)
    assert len(list(tmp_path.glob("*-s4-*.npz"))) == 2
    with pytest.raises(ValueError, match="unknown kind of second look 'blur/deblur': choose among rain/derain"):
        crop_set_draws([0], [36], [1], ["rain/derain,blur/deblur"])
    with pytest.raises(ValueError, match="--second-look-kinds takes one value for every seed or one per seed"):
        crop_set_draws([0, 1, 2], [36], [1], ["all", "rain/derain"])


def test_the_card_names_every_draw_of_a_run_over_several_seeds():
    from mprnet_hf.detection.train import Draw, draws_sentence, origin_sentence, second_looks_sentence, seeds_text

    assert seeds_text(0) == "seed 0" and seeds_text([0]) == "seed 0" and seeds_text([0, 1]) == "seeds 0, 1"
    assert draws_sentence([Draw(0, 36, 1)]) == "36 times per photo"
    assert draws_sentence([Draw(0, 36, 1), Draw(1, 54, 1)]) == "36 + 54 times per photo in 2 draws"
    assert second_looks_sentence([Draw(0, 36, 1)]) == "1 more version"
    assert second_looks_sentence([Draw(0, 36, 1), Draw(1, 54, 1)]) == "1 more version in each of 2 draws"
    assert second_looks_sentence([Draw(0, 36, 1), Draw(3, 0, 12)]) == "1 + 12 more versions in 2 draws"
    sentence = origin_sentence(
        {"folder": "runs/ft3", "epochs": 4, "minutes": 33.0, "train_crops": 91080, "seed": [0, 1]}
    )
    assert "4 epochs, 33.0 minutes, 91080 crops, seeds 0, 1" in sentence


def training_facts(**changes) -> dict:
    """What `train` hands `save` after a run (metrics, times, counts, thresholds), for the card tests."""
    facts = {
        "metrics": {label: {"precision": 0.9, "recall": 0.8, "support": 10} for label in LABELS},
        "minutes": 10.0,
        "data_minutes": 1.0,
        "epochs": 1,
        "train_photos": 165,
        "holdout_photos": 23,
        "excluded": {},
        "train_crops": 1000,
        "val_crops": 100,
        "thresholds": dict.fromkeys(LABELS, 0.5),
        "calibration_photos": 529,
        "init_from": None,
    }
    return facts | changes


def test_the_card_gives_a_command_that_trains_the_same_way(tmp_path):
    """The card's command is how a reader retrains the detector: parsed back, it must give the same draws, epochs,
    learning rate and time limit (a default --max-minutes would stop a longer run early)."""
    from mprnet_hf.detection.train import parse_args, save

    argv = ["--seed", "0", "1", "2", "3", "--variants-per-photo", "36", "54", "54", "0", "--epochs", "6"]
    argv += ["--second-looks-per-photo", "1", "1", "1", "12"]
    argv += ["--max-minutes", "90", "--learning-rate", "1e-3", "--output-dir", str(tmp_path / "mprnet-detector")]
    args = parse_args(argv)
    save(ResNetForImageClassification(detector_config()), args, training_facts(minutes=49.9, epochs=6))
    card = (tmp_path / "mprnet-detector" / "README.md").read_text()
    assert "Trained from scratch" in card and "36 + 54 + 54 + 0 times per photo in 4 draws" in card
    assert "also gives 1 + 1 + 1 + 12 more versions in 4 draws" in " ".join(card.split())
    command = next(line for line in card.splitlines() if "python -m mprnet_hf.detection.train" in line)
    again = parse_args(command.split("mprnet_hf.detection.train", 1)[1].split())
    assert again.draws == args.draws and again.epochs == 6 and again.max_minutes == 90
    assert again.learning_rate == 1e-3 and str(again.output_dir) == "checkpoints/mprnet-detector"
    log = json.loads((tmp_path / "mprnet-detector" / "training_log.json").read_text())
    assert log["seed"] == [0, 1, 2, 3]


def test_a_wider_network_trains_from_scratch_and_its_card_gives_the_options_that_shape_it(tmp_path):
    """A detector of other widths or depths must be made again by its card's command (the network's shape is not
    in the draws), and a fine-tuning cannot reshape the network it starts from."""
    from mprnet_hf.detection.train import initial_model, network_shape, parse_args, save

    argv = ["--embedding-size", "16", "--hidden-sizes", "16", "32", "64", "128", "--depths", "1", "2", "1", "1"]
    args = parse_args([*argv, "--output-dir", str(tmp_path / "mprnet-detector")])
    model = initial_model(None, network_shape(args))
    assert model.config.hidden_sizes == [16, 32, 64, 128] and model.config.depths == [1, 2, 1, 1]
    assert model.config.embedding_size == 16 and len(model.resnet.encoder.stages[1].layers) == 2
    save(model, args, training_facts())
    card = (tmp_path / "mprnet-detector" / "README.md").read_text()
    command = next(line for line in card.splitlines() if "python -m mprnet_hf.detection.train" in line)
    again = parse_args(command.split("mprnet_hf.detection.train", 1)[1].split())
    assert (again.embedding_size, again.hidden_sizes, again.depths) == (16, [16, 32, 64, 128], [1, 2, 1, 1])
    reloaded = DegradationDetector.from_pretrained(tmp_path / "mprnet-detector")
    assert reloaded.model.config.hidden_sizes == [16, 32, 64, 128]
    # The default shape is written out too: the command keeps its network when the defaults change.
    default_card_args = parse_args(["--output-dir", str(tmp_path / "default")])
    save(ResNetForImageClassification(detector_config()), default_card_args, training_facts())
    default_card = (tmp_path / "default" / "README.md").read_text()
    shape = f"--embedding-size {EMBEDDING_SIZE} --hidden-sizes {' '.join(map(str, HIDDEN_SIZES))} --depths"
    assert shape in default_card
    # A fine-tuning keeps the network of --init-from, so its command gives no shape (parse_args would refuse it).
    tuned_args = parse_args(["--output-dir", str(tmp_path / "tuned"), "--init-from", str(tmp_path / "default")])
    save(ResNetForImageClassification(detector_config()), tuned_args, training_facts())
    tuned_command = next(
        line for line in (tmp_path / "tuned" / "README.md").read_text().splitlines() if "--init-from" in line
    )
    assert not any(option in tuned_command for option in ("--embedding-size", "--hidden-sizes", "--depths"))
    parse_args(tuned_command.split("mprnet_hf.detection.train", 1)[1].split())


def test_the_card_says_on_how_many_threads_it_trained_and_its_command_asks_for_as_many(tmp_path):
    """Minutes mean little without the threads they ran on; the command's OMP_NUM_THREADS is what `main` reads."""
    from mprnet_hf.detection.train import parse_args, save, threads_asked

    args = parse_args(["--output-dir", str(tmp_path / "mprnet-detector")])
    save(ResNetForImageClassification(detector_config()), args, training_facts(minutes=24.6) | {"threads": 2})
    card = " ".join((tmp_path / "mprnet-detector" / "README.md").read_text().split())
    assert "on 2 CPU threads in 24.6 minutes" in card
    assert "OMP_NUM_THREADS=2 nice -n 10 python -m mprnet_hf.detection.train" in card
    log = json.loads((tmp_path / "mprnet-detector" / "training_log.json").read_text())
    assert log["threads"] == 2 and log["command"].startswith("OMP_NUM_THREADS=2 ")
    assert threads_asked({"OMP_NUM_THREADS": "2"}) == 2
    assert threads_asked({}) == threads_asked({"OMP_NUM_THREADS": "0"}) == threads_asked({"OMP_NUM_THREADS": "x"}) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden-sizes", "16", "32", "64", "128", "--init-from", "runs/earlier"], "keeps the network"),
        # The default shape given explicitly is refused as well: it would be silently ignored.
        (["--embedding-size", str(EMBEDDING_SIZE), "--init-from", "runs/earlier"], "keeps the network"),
        (["--depths", "1", "0", "1", "1"], "must be positive"),
    ],
)
def test_the_network_options_refuse_a_fine_tuning_or_an_empty_stage(argv, message, capsys):
    from mprnet_hf.detection.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(argv)
    assert message in capsys.readouterr().err


def test_a_fine_tuned_detector_card_also_gives_the_command_of_the_detector_it_starts_from(tmp_path):
    """A fine-tuning's command names its starting folder (--init-from); the card must also say how that folder was
    made, or a reader cannot run it. The starting detector's log keeps its command as run."""
    from mprnet_hf.detection.train import parse_args, save, starting_point

    facts = training_facts()
    first_dir = tmp_path / "runs" / "detector-first"
    first = parse_args(["--seed", "0", "1", "--epochs", "6", "--output-dir", str(first_dir)])
    save(ResNetForImageClassification(detector_config()), first, facts)
    argv = ["--seed", "0", "3", "--variants-per-photo", "36", "0", "--second-looks-per-photo", "1", "12"]
    argv += ["--init-from", str(first_dir), "--output-dir", str(tmp_path / "mprnet-detector")]
    tuned = parse_args(argv)
    save(ResNetForImageClassification(detector_config()), tuned, facts | {"init_from": starting_point(first_dir)})
    card = (tmp_path / "mprnet-detector" / "README.md").read_text()
    commands = [line for line in card.splitlines() if "python -m mprnet_hf.detection.train" in line]
    assert len(commands) == 2, card
    tuning, earlier = (parse_args(line.split("mprnet_hf.detection.train", 1)[1].split()) for line in commands)
    assert tuning.draws == tuned.draws and tuning.init_from == first_dir
    assert earlier.output_dir == first_dir and earlier.draws == first.draws and earlier.epochs == 6


def test_a_detector_fine_tuned_twice_gives_every_command_in_order_and_its_chosen_second_looks(tmp_path):
    """The bundled detector is a chain: from scratch, fine-tuned, fine-tuned again with a draw of chosen second
    looks. Its card must give all three commands in the order a reader runs them, each parsed back to its run."""
    from mprnet_hf.detection.train import parse_args, save, starting_point

    facts = training_facts()
    first_dir, second_dir = tmp_path / "detector-first", tmp_path / "detector-second"
    first = parse_args(["--seed", "0", "1", "--epochs", "6", "--output-dir", str(first_dir)])
    save(ResNetForImageClassification(detector_config()), first, facts)
    second_argv = ["--seed", "0", "3", "--variants-per-photo", "36", "0", "--second-looks-per-photo", "1", "12"]
    second = parse_args(second_argv + ["--init-from", str(first_dir), "--output-dir", str(second_dir)])
    save(ResNetForImageClassification(detector_config()), second, facts | {"init_from": starting_point(first_dir)})
    third_argv = ["--seed", "0", "4", "--variants-per-photo", "36", "0", "--second-looks-per-photo", "1", "12"]
    third_argv += ["--second-look-kinds", "all", "rain/derain,rain/derain,noise/denoise"]
    third = parse_args(third_argv + ["--init-from", str(second_dir), "--output-dir", str(tmp_path / "mprnet-detector")])
    save(ResNetForImageClassification(detector_config()), third, facts | {"init_from": starting_point(second_dir)})
    card = (tmp_path / "mprnet-detector" / "README.md").read_text()
    commands = [line for line in card.splitlines() if "python -m mprnet_hf.detection.train" in line]
    assert len(commands) == 3, card
    own, *earlier = (parse_args(line.split("mprnet_hf.detection.train", 1)[1].split()) for line in commands)
    assert own.draws == third.draws and own.init_from == second_dir
    assert [run.output_dir for run in earlier] == [first_dir, second_dir] and earlier[1].init_from == first_dir
    assert earlier[0].draws == first.draws and earlier[1].draws == second.draws
    assert "made first by these 2 commands, in order" in card
    assert "those of seed 4 cycle through rain/derain x2, noise/denoise x1" in " ".join(card.split())

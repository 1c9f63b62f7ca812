r"""How the detector turns its crops into restorations, chosen on photos held out of its training (never the reported
validation photos):

- a routing rule per restoration's label (blur, noise, rain): a logistic regression over every label's mean crop
  logit and their spread over the crops (`detector.pooled_features`). Labels read alone confuse one degradation with
  another (strong noise raises the blur logit of a sharp photo); the rule learns how much of a label the others
  explain;
- per-label thresholds: for blur, noise and rain those that route the most held-out photos to exactly the right
  restorations, for JPEG the best F1 (JPEG artefacts change no route, auto mode only reports them);
- with `--after-steps`, thresholds of their own for the looks auto mode takes after deraining and denoising: the
  held-out photos are degraded, restored by the bundled models as auto mode restores them (each step once), and
  looked at again; for each step, the thresholds of the labels whose restorations may follow it that send the most
  single-degradation photos on to the right next step without sending fewer pairs right than the first look's
  thresholds. A restoration leaves its own traces (its smoothing can read as blur), which the first look never sees.

Recalibrate a trained detector in place (its weights unchanged); the folder is named, never defaulted, so the bundled
checkpoint changes only when asked for, and the routing rule is fitted only with `--fit-routing` (it measured better
on one validation set and worse on the other, docs/DETECTION.md):

    cp -r checkpoints/mprnet-detector runs/detector-calibrated
    OMP_NUM_THREADS=1 python -m mprnet_hf.detection.calibrate --detector runs/detector-calibrated \
        --train-dir data/photos/train --exclude-like data/dev/val data/photos/val --holdout-every 8 [--fit-routing]
    # then, or alone: the looks after a step (the first look's thresholds and routing stay as they are)
    OMP_NUM_THREADS=1 python -m mprnet_hf.detection.calibrate --detector runs/detector-calibrated --after-steps
"""

import argparse
import itertools
import math
import shlex
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import ResNetForImageClassification

from ..data.synthesis import SYNTHESES
from ..hub.bundled import bundled_models
from ..models.mprnet.inference import restore_image
from .data import split_photos
from .detector import (
    DETECTION_THRESHOLD,
    LABELS,
    ROUTED_LABELS,
    STEP_ORDER,
    STEPS_LOOKED_AFTER,
    TASK_OF_LABEL,
    DegradationDetector,
    Detection,
    config_thresholds,
    next_task,
    routed_probabilities,
    thresholds_by_label,
)
from .evaluate import degraded_versions, evaluate_detector, right_tasks

THRESHOLD_GRID = tuple(round(float(value), 2) for value in np.arange(0.2, 0.81, 0.05))
# A look after a step may need a label nearly certain before it asks for another restoration: a restoration's own
# traces can raise a label (smoothing reads as a little blur) well above where the first look's threshold lies.
AFTER_STEP_GRID = tuple(round(float(value), 2) for value in np.arange(0.2, 0.96, 0.05))
# Weight decay of the routing regression: keeps the rule close to "each label alone" where the records say little.
ROUTING_L2 = 1e-2


def tasks_of(labels) -> set[str]:
    return {TASK_OF_LABEL[label] for label in labels if label in TASK_OF_LABEL}


def routed_right_count(records, thresholds: dict[str, float]) -> int:
    """How many records (`evaluate.evaluate_detector`'s: kinds applied, probabilities) the thresholds route to
    exactly the restorations their degradations need."""
    right = 0
    for record in records:
        found = [label for label in ROUTED_LABELS if record["probabilities"][label] >= thresholds[label]]
        right += tasks_of(found) == tasks_of(record["kinds"])
    return right


def jpeg_f1(records, threshold: float) -> float:
    truth = np.array(["jpeg" in record["kinds"] for record in records])
    predicted = np.array([record["probabilities"]["jpeg"] >= threshold for record in records])
    hits = float((truth & predicted).sum())
    return 2 * hits / max(float(truth.sum() + predicted.sum()), 1)


def choose_thresholds(records, passes: int = 3) -> dict[str, float]:
    """Coordinate ascent over `THRESHOLD_GRID` from 0.5 for every label; ties go to the value nearest 0.5."""
    thresholds = dict.fromkeys(LABELS, DETECTION_THRESHOLD)
    for _ in range(passes):
        for label in ROUTED_LABELS:
            thresholds[label] = max(
                THRESHOLD_GRID,
                key=lambda value: (
                    routed_right_count(records, {**thresholds, label: value}),
                    -abs(value - DETECTION_THRESHOLD),
                ),
            )
    thresholds["jpeg"] = max(
        THRESHOLD_GRID, key=lambda value: (jpeg_f1(records, value), -abs(value - DETECTION_THRESHOLD))
    )
    return thresholds


def logistic_regression(features: np.ndarray, targets: np.ndarray, l2: float = ROUTING_L2) -> tuple[list, float]:
    """(weights, bias) minimising the binary cross-entropy plus `l2` times the squared weights (L-BFGS, float64)."""
    inputs = torch.as_tensor(features, dtype=torch.float64)
    truth = torch.as_tensor(targets, dtype=torch.float64)
    weights = torch.zeros(inputs.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights, bias], max_iter=500, tolerance_grad=1e-9, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(inputs @ weights + bias, truth)
        loss = loss + l2 * weights.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return [round(value, 6) for value in weights.detach().tolist()], round(bias.item(), 6)


def fit_routing(records, l2: float = ROUTING_L2) -> dict[str, dict]:
    """A routing rule per label of `ROUTED_LABELS` from records that carry the detector's `features`."""
    if not records or any(record.get("features") is None for record in records):
        raise ValueError("Fitting a routing rule needs records with the detector's pooled features")
    features = np.array([record["features"] for record in records], dtype=np.float64)
    routing = {}
    for label in ROUTED_LABELS:
        targets = np.array([label in record["kinds"] for record in records], dtype=np.float64)
        weights, bias = logistic_regression(features, targets, l2)
        routing[label] = {"weights": weights, "bias": bias}
    return routing


def rerouted(records, routing: dict[str, dict] | None) -> list[dict]:
    """The records with the probabilities `routing` gives their features."""
    return [
        {**record, "probabilities": routed_probabilities(torch.tensor(record["features"]), routing)}
        for record in records
    ]


def calibrate_detector(
    model,
    photos,
    seeds_single: int,
    seeds_pair: int,
    seeds_light_jpeg: int,
    with_routing: bool = False,
    routing_l2: float = ROUTING_L2,
    synthesis: str = "classic",
):
    """(routing or None, thresholds, number of degraded versions) for `model` on the held-out `photos` degraded by
    `synthesis`; the thresholds apply to the routed probabilities when `with_routing`, else to each label's own."""
    detector = DegradationDetector(model, threshold=DETECTION_THRESHOLD, routing=False)
    records, _ = evaluate_detector(detector, photos, seeds_single, seeds_pair, seeds_light_jpeg, synthesis=synthesis)
    routing = fit_routing(records, routing_l2) if with_routing else None
    return routing, choose_thresholds(rerouted(records, routing)), len(records)


def after_step_records(
    detector,
    photos,
    seeds_single: int,
    seeds_pair: int,
    seeds_light_jpeg: int,
    models=None,
    synthesis: str = "classic",
) -> list[dict]:
    """What `detector` sees after each step auto mode looks again after: `photos` degraded as the evaluation degrades
    them (`evaluate.degraded_versions`, the conditions a step of `STEPS_LOOKED_AFTER` restores), restored by their
    right steps in order with `models` (default: the bundled ones) and looked at after each. A record per look:
    kinds, `after` (the step just run), `next` (the right next step, or None) and the probabilities."""

    def looked_after(kinds) -> list[str]:
        return [task for task in right_tasks(kinds) if task in STEPS_LOOKED_AFTER]

    models = models or bundled_models()
    records = []
    versions = degraded_versions(
        photos,
        seeds_single,
        seeds_pair,
        seeds_light_jpeg,
        wanted=lambda _group, kinds: bool(looked_after(kinds)),
        synthesis=synthesis,
    )
    for version in versions:
        group, kinds = version.group, version.kinds
        image, right = Image.fromarray(version.degraded), right_tasks(kinds)
        for task in looked_after(kinds):
            image = restore_image(models[task], image, tile_size=None).image
            later = right[right.index(task) + 1 :]
            probabilities = detector.detect(image).probabilities
            records.append(
                {
                    "group": group,
                    "kinds": kinds,
                    "after": task,
                    "next": later[0] if later else None,
                    "probabilities": probabilities,
                }
            )
    return records


def right_next_steps(records, thresholds: dict[str, float]) -> int:
    """How many looks after a step (`after_step_records`) the thresholds send on to exactly the right next step."""
    return sum(
        next_task(Detection(record["probabilities"], thresholds), after=record["after"]) == record["next"]
        for record in records
    )


def looks_after(records, step: str) -> tuple[list[dict], list[dict]]:
    """(single-degradation looks, pair looks) of `after_step_records` taken after `step`."""
    looks = [record for record in records if record["after"] == step]
    return [record for record in looks if len(record["kinds"]) == 1], [
        record for record in looks if len(record["kinds"]) > 1
    ]


def choose_thresholds_for_step(singles, pairs, labels, first_thresholds: dict[str, float]) -> dict[str, float]:
    """Of every combination of `AFTER_STEP_GRID` values for `labels` (and the first look's), the one that sends the
    most `singles` on to the right next step while sending no fewer `pairs` right than the first look's thresholds;
    ties go to more pairs, then to the combination nearest the first look's."""
    pairs_floor = right_next_steps(pairs, first_thresholds)

    def merit(values):
        thresholds = {**first_thresholds, **dict(zip(labels, values))}
        pairs_right = right_next_steps(pairs, thresholds)
        distance = sum(abs(value - first_thresholds[label]) for label, value in zip(labels, values))
        return (pairs_right >= pairs_floor, right_next_steps(singles, thresholds), pairs_right, -round(distance, 6))

    candidates = [tuple(first_thresholds[label] for label in labels)]
    candidates += itertools.product(AFTER_STEP_GRID, repeat=len(labels))
    return dict(zip(labels, max(candidates, key=merit)))


def choose_thresholds_after(records, first_thresholds: float | dict[str, float]) -> dict:
    """{step: {label: threshold}} for each step of `STEPS_LOOKED_AFTER` the records look after, over the labels whose
    restorations may follow it (`choose_thresholds_for_step`).

    Where a restoration's traces and a faint remaining degradation read alike (derained rain and derained rain over
    a slightly shaken photo), a threshold can only trade one for the other; the pairs' floor keeps mixed photos,
    the reason auto mode looks again at all, from paying for the singles."""
    first_thresholds = thresholds_by_label(first_thresholds)
    chosen = {}
    for step in STEPS_LOOKED_AFTER:
        singles, pairs = looks_after(records, step)
        if singles or pairs:
            later = STEP_ORDER[STEP_ORDER.index(step) + 1 :]
            labels = [label for label in ROUTED_LABELS if TASK_OF_LABEL[label] in later]
            chosen[step] = choose_thresholds_for_step(singles, pairs, labels, first_thresholds)
    return chosen


AFTER_STEPS_HEADING = "## Looks after a restoration"


def after_steps_section(thresholds_after: dict, count: int, photos: int, command: str) -> str:
    """The model card's section on the thresholds of the looks after a step, with the command that chose them."""
    steps = "; ".join(
        f"after {step}: " + ", ".join(f"{label} {value:.2f}" for label, value in thresholds.items())
        for step, thresholds in thresholds_after.items()
    )
    paragraph = (
        "Auto mode looks again after deraining and denoising. Those looks have thresholds of their own "
        f"(`detection_thresholds_after` in `config.json`), chosen on {count} looks at the {photos} held-out training "
        "photos, degraded and then restored by the bundled models as auto mode restores them: those that send the most "
        "singly degraded photos on to the right next step without sending fewer pairs right than the first look's "
        f"thresholds do. {steps[0].upper() + steps[1:]}; the other labels keep the first look's. Command:"
    )
    return f"{AFTER_STEPS_HEADING}\n\n{textwrap.fill(paragraph, 116)}\n\n```\n{command}\n```\n"


def rewrite_card_section(folder, section: str) -> None:
    """Puts `section` (or, empty, removes it) under `AFTER_STEPS_HEADING` in the model card of `folder`, if any."""
    card_path = Path(folder) / "README.md"
    if card_path.is_file():
        card_path.write_text(card_with_section(card_path.read_text(), AFTER_STEPS_HEADING, section))


def card_with_section(card: str, heading: str, section: str) -> str:
    """`card` with the section under `heading` replaced by `section` (removed when it is empty), or `section` added
    before "## Limits"."""
    start = card.find(heading + "\n")
    if start < 0 and not section:
        return card
    if start >= 0:
        end = card.find("\n## ", start + len(heading))
        rest = card[end + 1 :] if end >= 0 else ""
        return card[:start] + (section + "\n" if section and rest else section) + rest
    limits = card.find("## Limits")
    return card[:limits] + section + "\n" + card[limits:] if limits >= 0 else card.rstrip("\n") + "\n\n" + section


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--detector",
        type=Path,
        required=True,
        help="the detector folder to recalibrate in place (copy checkpoints/mprnet-detector to try a calibration)",
    )
    parser.add_argument(
        "--fit-routing",
        action="store_true",
        help="also fit a routing rule per restoration's label (stored as detection_routing); without it any rule "
        "the folder carries is removed and thresholds apply to each label alone",
    )
    parser.add_argument(
        "--after-steps",
        action="store_true",
        help="choose only the thresholds of the looks after deraining and denoising (stored as "
        "detection_thresholds_after; the first look's thresholds and routing stay as the folder has them); it restores "
        "the held-out photos with the bundled models, which takes tens of minutes on one thread. Without it, the first "
        "look is calibrated and any thresholds after a step are removed",
    )
    parser.add_argument(
        "--routing-l2",
        type=float,
        default=ROUTING_L2,
        help="weight decay of the routing rule's regression (with --fit-routing; smaller lets it follow the held-out "
        "photos more closely)",
    )
    parser.add_argument("--train-dir", type=Path, default=Path("data/photos/train"))
    parser.add_argument("--exclude-like", type=Path, nargs="*", default=[Path("data/dev/val"), Path("data/photos/val")])
    parser.add_argument("--holdout-every", type=int, default=8, help="as the detector was trained with")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/detector-crops"))
    parser.add_argument("--seeds-single", type=int, default=6, help="draws per held-out photo and degradation")
    parser.add_argument("--seeds-pair", type=int, default=2)
    parser.add_argument("--seeds-light-jpeg", type=int, default=2)
    parser.add_argument(
        "--synthesis",
        choices=SYNTHESES,
        default="broad",
        help="how the held-out photos are degraded: as the detector's first training draw was (`detection.train` "
        "calibrates on it; broad for the bundled detector)",
    )
    args = parser.parse_args(argv)
    if not (math.isfinite(args.routing_l2) and args.routing_l2 >= 0):
        parser.error(f"--routing-l2 must be a finite number, 0 or more, got {args.routing_l2}")
    torch.set_num_threads(1)
    _, held_out, _ = split_photos(args)
    model = ResNetForImageClassification.from_pretrained(str(args.detector))
    if args.after_steps:
        calibrate_after_steps(model, held_out, args, argv)
        return
    routing, thresholds, count = calibrate_detector(
        model,
        held_out,
        args.seeds_single,
        args.seeds_pair,
        args.seeds_light_jpeg,
        with_routing=args.fit_routing,
        routing_l2=args.routing_l2,
        synthesis=args.synthesis,
    )
    model.config.detection_routing, model.config.detection_thresholds = routing, thresholds
    if hasattr(model.config, "detection_thresholds_after"):  # chosen with the first look's earlier calibration
        del model.config.detection_thresholds_after
    model.config.save_pretrained(args.detector)
    rewrite_card_section(args.detector, "")
    print(f"{len(held_out)} held-out photos, {count} degraded versions: thresholds {thresholds}, routing {routing}")


def calibrate_after_steps(model, held_out, args, argv) -> None:
    """Chooses and saves the thresholds of the looks after a step for the detector folder `args.detector`."""
    detector = DegradationDetector(model, thresholds_after={})
    records = after_step_records(
        detector, held_out, args.seeds_single, args.seeds_pair, args.seeds_light_jpeg, synthesis=args.synthesis
    )
    command = "OMP_NUM_THREADS=1 python -m mprnet_hf.detection.calibrate " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    save_thresholds_after(model, args.detector, records, len(held_out), command)


def save_thresholds_after(model, folder, records, photos: int, command: str) -> dict:
    """Chooses the thresholds after each step from `records` (`after_step_records` of `photos` held-out photos),
    saves them in the config of the detector folder `folder` and says so, with `command`, in its model card."""
    first = thresholds_by_label(config_thresholds(model.config))
    thresholds_after = choose_thresholds_after(records, first)
    for step, thresholds in thresholds_after.items():
        for group, looks in zip(("singles", "pairs"), looks_after(records, step)):
            before, after = right_next_steps(looks, first), right_next_steps(looks, {**first, **thresholds})
            print(f"after {step}, {group}: right next step {after}/{len(looks)} ({before} with the first look's)")
        print(f"after {step}: {thresholds}")
    model.config.detection_thresholds_after = thresholds_after
    model.config.save_pretrained(folder)
    rewrite_card_section(folder, after_steps_section(thresholds_after, len(records), photos, command))
    return thresholds_after


if __name__ == "__main__":
    main()


__all__ = [
    "choose_thresholds",
    "routed_right_count",
    "fit_routing",
    "calibrate_detector",
    "after_step_records",
    "choose_thresholds_after",
    "right_next_steps",
]

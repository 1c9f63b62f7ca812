"""How the detector turns its crops into restorations, chosen on photos held out of its training (never the reported
validation photos):

- a routing rule per restoration's label (blur, noise, rain): a logistic regression over every label's mean crop
  logit and their spread over the crops (`detector.pooled_features`). Labels read alone confuse one degradation with
  another (strong noise raises the blur logit of a sharp photo); the rule learns how much of a label the others
  explain;
- per-label thresholds: for blur, noise and rain those that route the most held-out photos to exactly the right
  restorations, for JPEG the best F1 (JPEG artefacts change no route, auto mode only reports them).

Recalibrate a trained detector in place (its weights unchanged); the folder is named, never defaulted, so the bundled
checkpoint changes only when asked for, and the routing rule is fitted only with `--fit-routing` (it measured better
on one validation set and worse on the other, docs/DETECTION.md):

    cp -r checkpoints/mprnet-detector runs/detector-calibrated
    OMP_NUM_THREADS=1 python -m mprnet_hf.detection.calibrate --detector runs/detector-calibrated \
        --train-dir data/photos/train --exclude-like data/dev/val data/photos/val --holdout-every 8 [--fit-routing]
"""

import argparse
from pathlib import Path

import numpy as np
import torch

from .detector import DETECTION_THRESHOLD, LABELS, ROUTED_LABELS, TASK_OF_LABEL, routed_probabilities

THRESHOLD_GRID = tuple(round(float(value), 2) for value in np.arange(0.2, 0.81, 0.05))
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
    model, photos, seeds_single: int, seeds_pair: int, seeds_light_jpeg: int, with_routing: bool = False
):
    """(routing or None, thresholds, number of degraded versions) for `model` on the held-out `photos`; the
    thresholds apply to the routed probabilities when `with_routing`, else to each label's own."""
    from .detector import DegradationDetector
    from .evaluate import evaluate_detector

    detector = DegradationDetector(model, threshold=DETECTION_THRESHOLD, routing=False)
    records, _ = evaluate_detector(detector, photos, seeds_single, seeds_pair, seeds_light_jpeg)
    routing = fit_routing(records) if with_routing else None
    return routing, choose_thresholds(rerouted(records, routing)), len(records)


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
    parser.add_argument("--train-dir", type=Path, default=Path("data/photos/train"))
    parser.add_argument("--exclude-like", type=Path, nargs="*", default=[Path("data/dev/val"), Path("data/photos/val")])
    parser.add_argument("--holdout-every", type=int, default=8, help="as the detector was trained with")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/detector-crops"))
    parser.add_argument("--seeds-single", type=int, default=6, help="draws per held-out photo and degradation")
    parser.add_argument("--seeds-pair", type=int, default=2)
    parser.add_argument("--seeds-light-jpeg", type=int, default=2)
    args = parser.parse_args(argv)
    from transformers import ResNetForImageClassification

    from .train import split_photos

    torch.set_num_threads(1)
    _, held_out, _ = split_photos(args)
    model = ResNetForImageClassification.from_pretrained(str(args.detector))
    routing, thresholds, count = calibrate_detector(
        model, held_out, args.seeds_single, args.seeds_pair, args.seeds_light_jpeg, with_routing=args.fit_routing
    )
    model.config.detection_routing, model.config.detection_thresholds = routing, thresholds
    model.config.save_pretrained(args.detector)
    print(f"{len(held_out)} held-out photos, {count} degraded versions: thresholds {thresholds}, routing {routing}")


if __name__ == "__main__":
    main()


__all__ = ["choose_thresholds", "routed_right_count", "fit_routing", "calibrate_detector"]

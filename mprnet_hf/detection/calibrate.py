"""Per-label detection thresholds, chosen on photos held out of the detector's training (never the reported
validation photos): the thresholds of blur, noise and rain that route the most held-out photos to exactly the right
restorations, and the JPEG threshold of best F1 (JPEG artefacts change no route, auto mode only reports them)."""

import numpy as np

from .detector import DETECTION_THRESHOLD, LABELS, TASK_OF_LABEL

THRESHOLD_GRID = tuple(round(float(value), 2) for value in np.arange(0.2, 0.81, 0.05))
ROUTING_LABELS = ("blur", "noise", "rain")


def tasks_of(labels) -> set[str]:
    return {TASK_OF_LABEL[label] for label in labels if label in TASK_OF_LABEL}


def routed_right_count(records, thresholds: dict[str, float]) -> int:
    """How many records (`evaluate.evaluate_detector`'s: kinds applied, probabilities) the thresholds route to
    exactly the restorations their degradations need."""
    right = 0
    for record in records:
        found = [label for label in ROUTING_LABELS if record["probabilities"][label] >= thresholds[label]]
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
        for label in ROUTING_LABELS:
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


__all__ = ["choose_thresholds", "routed_right_count"]

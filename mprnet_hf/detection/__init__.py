"""Degradation detection for auto mode: which of blur, noise, rain and JPEG artefacts a photo shows."""

from .detector import LABEL_WORDS, LABELS, DegradationDetector, Detection, bundled_detector_path, detector_config

__all__ = ["LABELS", "LABEL_WORDS", "Detection", "DegradationDetector", "bundled_detector_path", "detector_config"]

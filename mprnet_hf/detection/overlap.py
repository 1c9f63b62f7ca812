"""Find training photos that show the same content as evaluation photos, by their pixels rather than their names.

The photo sets were gathered from many packages: the same photo can come twice under different names, resized, cropped
or recompressed (the development photos reappear in the larger set). A training photo that shares content with an
evaluation photo would inflate the evaluation, so training leaves it out.

Two checks, on grey thumbnails: the whole photos look alike (a resized or recompressed copy), or ORB keypoints of one
match the other under a single similarity transform (a crop, a shifted or rescaled copy).
"""

from pathlib import Path

import numpy as np
from PIL import Image

THUMBNAIL_SIDE = 32
# Correlation of two whole-photo thumbnails above which they are taken as the same photo.
SAME_PHOTO_CORRELATION = 0.95
FEATURE_SIDE = 384
ORB_KEYPOINTS = 400
# Keypoint matches that agree on one similarity transform, above which two photos are taken to share content.
SHARED_CONTENT_INLIERS = 25


def grey(path, longest_side: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("L")
        image.thumbnail((longest_side, longest_side), Image.Resampling.BOX)
        return np.asarray(image, dtype=np.float32) / 255


def thumbnail_signature(path) -> np.ndarray:
    """The photo squeezed to a small square, zero mean and unit norm, so that correlation is a dot product."""
    with Image.open(path) as image:
        small = np.asarray(
            image.convert("L").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX), dtype=np.float32
        )
    small = small - small.mean()
    return small.ravel() / max(float(np.linalg.norm(small)), 1e-6)


def keypoints(path):
    """(positions, binary descriptors) of ORB keypoints on a grey thumbnail; empty arrays for a featureless photo."""
    # scikit-image's feature module takes about a second to import, and only the detector's training split
    # compares photos.
    from skimage.feature import ORB

    extractor = ORB(n_keypoints=ORB_KEYPOINTS, fast_threshold=0.05)
    try:
        extractor.detect_and_extract(grey(path, FEATURE_SIDE))
    except RuntimeError:  # no keypoint at all
        return np.zeros((0, 2)), np.zeros((0, 256), dtype=bool)
    return extractor.keypoints, extractor.descriptors


def consistent_matches(first, second) -> int:
    """How many keypoint matches between two photos one similarity transform explains (RANSAC inliers)."""
    from skimage.feature import match_descriptors
    from skimage.measure import ransac
    from skimage.transform import SimilarityTransform

    (positions_a, descriptors_a), (positions_b, descriptors_b) = first, second
    if len(descriptors_a) < 3 or len(descriptors_b) < 3:
        return 0
    matches = match_descriptors(descriptors_a, descriptors_b, cross_check=True, max_ratio=0.8)
    if len(matches) < SHARED_CONTENT_INLIERS:
        return 0
    source, target = positions_a[matches[:, 0]][:, ::-1], positions_b[matches[:, 1]][:, ::-1]
    _model, inliers = ransac(
        (source, target), SimilarityTransform, min_samples=3, residual_threshold=3, max_trials=500, rng=0
    )
    return 0 if inliers is None else int(inliers.sum())


def overlapping_photos(candidates, references) -> dict[Path, tuple[Path, str]]:
    """{candidate: (reference, why)} for every candidate photo that shows the content of a reference photo."""
    candidates, references = [Path(path) for path in candidates], [Path(path) for path in references]
    reference_signatures = np.stack([thumbnail_signature(path) for path in references])
    reference_keypoints = [keypoints(path) for path in references]
    overlaps = {}
    for candidate in candidates:
        correlations = reference_signatures @ thumbnail_signature(candidate)
        best = int(np.argmax(correlations))
        if correlations[best] >= SAME_PHOTO_CORRELATION:
            overlaps[candidate] = (references[best], f"thumbnails correlate {correlations[best]:.3f}")
            continue
        features = keypoints(candidate)
        for reference, reference_features in zip(references, reference_keypoints):
            inliers = consistent_matches(features, reference_features)
            if inliers >= SHARED_CONTENT_INLIERS:
                overlaps[candidate] = (reference, f"{inliers} keypoints agree on one similarity transform")
                break
    return overlaps


__all__ = ["overlapping_photos"]

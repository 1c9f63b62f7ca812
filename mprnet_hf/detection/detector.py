"""The degradation detector: a small `transformers` ResNet that looks at crops of a photo at its native scale and says
which of blur, noise, rain and JPEG artefacts it shows, or that it looks clean.

Downscaling a photo to a thumbnail hides exactly what the detector must see (fine noise, a few pixels of blur), so it
reads full-resolution crops instead: the most contrasted squares of a grid over the photo (flat sky says little about
blur), and averages their logits. A checkpoint may also carry a routing rule (`detection_routing`): the probability of
each restoration's label then comes from all labels' pooled logits and their spread over the crops, so that e.g. blur
read alongside strong noise counts only when clearly above what noise alone gives.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from transformers import ResNetConfig, ResNetForImageClassification

from ..hub.bundled import bundled_checkpoints_dir

# The detector's outputs, in order; the first three name the MPRNet task that undoes them.
LABELS = ("blur", "noise", "rain", "jpeg", "clean")
TASK_OF_LABEL = {"blur": "deblur", "noise": "denoise", "rain": "derain"}
LABEL_UNDONE_BY = {task: label for label, task in TASK_OF_LABEL.items()}
ROUTED_LABELS = tuple(TASK_OF_LABEL)
# What a routing rule reads of a photo: the mean of each label's crop logits, then their spread over the crops.
ROUTING_FEATURES = 2 * len(LABELS)
# Words for people: the status of the app and the CLI.
LABEL_WORDS = {"blur": "blur", "noise": "noise", "rain": "rain", "jpeg": "JPEG artefacts", "clean": "looks clean"}
CROP_SIZE = 96
# Candidate crops form a grid of at most GRID_SIDE per side; the most contrasted CROPS_PER_PHOTO are read (about a
# third of them: the detector learned on such crops). A checkpoint's config keeps both (`crops_per_photo`,
# `crop_grid_side`); a config without a grid side was made when the grid was 10x10.
CROPS_PER_PHOTO = 64
GRID_SIDE = 14
GRID_SIDE_BEFORE_CONFIGS_KEPT_IT = 10
# A checkpoint's config is an external input: a grid or crop count far beyond these would cut thousands of crops
# (gigabytes) out of every photo.
MAX_GRID_SIDE, MAX_CROPS_PER_PHOTO = 32, 1024
# Pixel scaling of the crops: batch norm does the rest.
PIXEL_MEAN, PIXEL_SCALE = 0.5, 0.25
# A label counts when its probability reaches its threshold: 0.5 unless the checkpoint's config gives its own
# (`detection_thresholds`, calibrated on training photos held out of training, never on the reported validation).
DETECTION_THRESHOLD = 0.5
# The steps auto mode looks again after. A look at a derained or denoised photo sees what the step left behind (its
# smoothing can read as a little blur), so a checkpoint may give such a look thresholds of its own
# (`detection_thresholds_after`: step -> label -> threshold, calibrated on held-out looks after that step); labels it
# does not name keep the first look's.
STEPS_LOOKED_AFTER = ("derain", "denoise")
# The order auto mode restores a mixed photo in, the reverse of the order a camera degrades it: rain lies on top of
# everything, and deblurring first would sharpen noise into artefacts.
STEP_ORDER = ("derain", "denoise", "deblur")
# How many times auto mode may run each restoration. Dense rain outlives one pass of deraining: run again where the
# look after deraining still finds rain, a second pass recovers much of what the first left (measured in the detection
# notes). Denoising and deblurring run once: a second pass only smooths away more detail (deblurring, the last step,
# is never looked after anyway).
MAX_PASSES = {"derain": 2, "denoise": 1, "deblur": 1}
DETECTOR_FOLDER = "mprnet-detector"
EXIF_ORIENTATION = 0x0112


# The bundled detector's network: a ResNet-10 of narrow stages, about a million weights, fast on crops on a CPU. The
# narrower one bundled before (24, 48, 96, 160) found faint blur less often on photos it never saw (docs/DETECTION.md).
EMBEDDING_SIZE = 32
HIDDEN_SIZES = (32, 64, 128, 256)
DEPTHS = (1, 1, 1, 1)


def detector_config(embedding_size: int = EMBEDDING_SIZE, hidden_sizes=HIDDEN_SIZES, depths=DEPTHS) -> ResNetConfig:
    """The detector's `ResNetConfig`: its network (the stem's channels, each stage's channels and blocks) and how
    it reads a photo."""
    return ResNetConfig(
        num_channels=3,
        embedding_size=embedding_size,
        hidden_sizes=list(hidden_sizes),
        depths=list(depths),
        layer_type="basic",
        hidden_act="relu",
        downsample_in_first_stage=False,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: index for index, label in enumerate(LABELS)},
        problem_type="multi_label_classification",
        # How the detector reads a photo, kept with its weights.
        crop_size=CROP_SIZE,
        crops_per_photo=CROPS_PER_PHOTO,
        crop_grid_side=GRID_SIDE,
        pixel_mean=PIXEL_MEAN,
        pixel_scale=PIXEL_SCALE,
    )


def valid_thresholds(thresholds) -> bool:
    """Whether `thresholds` (read from a config, an external input) maps labels of `LABELS` to numbers in (0, 1)."""
    return isinstance(thresholds, dict) and all(
        label in LABELS and isinstance(value, (int, float)) and 0 < value < 1 for label, value in thresholds.items()
    )


def thresholds_by_label(threshold: float | dict[str, float]) -> dict[str, float]:
    """One threshold for every label, or per-label thresholds, as per-label thresholds."""
    return dict(threshold) if isinstance(threshold, dict) else dict.fromkeys(LABELS, threshold)


def config_thresholds(config) -> float | dict[str, float]:
    """The per-label thresholds a checkpoint carries, checked (a config is an external input), or 0.5 for all."""
    thresholds = getattr(config, "detection_thresholds", None)
    if thresholds is None:
        return DETECTION_THRESHOLD
    if not valid_thresholds(thresholds):
        raise ValueError(
            f"The detector's detection_thresholds must map labels of {list(LABELS)} to numbers between 0 and 1, "
            f"got {thresholds!r}"
        )
    return {label: float(thresholds.get(label, DETECTION_THRESHOLD)) for label in LABELS}


def config_thresholds_after(config) -> dict[str, dict[str, float]]:
    """The thresholds a checkpoint gives the looks after a step (`detection_thresholds_after`), checked, or none."""
    after = getattr(config, "detection_thresholds_after", None)
    if after is None:
        return {}
    steps_known = isinstance(after, dict) and set(after) <= set(STEPS_LOOKED_AFTER)
    if not steps_known or not all(map(valid_thresholds, after.values())):
        raise ValueError(
            f"The detector's detection_thresholds_after must map steps of {list(STEPS_LOOKED_AFTER)} to thresholds "
            f"by label of {list(LABELS)}, each between 0 and 1; got {after!r}. Recalibrate it with python -m "
            "mprnet_hf.detection.calibrate --after-steps"
        )
    return {step: {label: float(value) for label, value in thresholds.items()} for step, thresholds in after.items()}


def config_routing(config) -> dict[str, dict] | None:
    """The routing rule a checkpoint carries (`detection_routing`: per label of `ROUTED_LABELS`, `weights` over the
    `pooled_features` and a `bias`), checked, or None."""
    routing = getattr(config, "detection_routing", None)
    if routing is None:
        return None

    def valid(rule) -> bool:
        if not isinstance(rule, dict) or not isinstance(rule.get("bias"), (int, float)):
            return False
        weights = rule.get("weights")
        return (
            isinstance(weights, list)
            and len(weights) == ROUTING_FEATURES
            and all(isinstance(value, (int, float)) and np.isfinite(value) for value in weights)
        )

    if not isinstance(routing, dict) or set(routing) != set(ROUTED_LABELS) or not all(map(valid, routing.values())):
        raise ValueError(
            f"The detector's detection_routing must give, for each of {list(ROUTED_LABELS)}, {ROUTING_FEATURES} "
            f"weights and a bias; got {routing!r}. Recalibrate it with python -m mprnet_hf.detection.calibrate"
        )
    return {
        label: {"weights": list(map(float, rule["weights"])), "bias": float(rule["bias"])}
        for label, rule in routing.items()
    }


def pooled_features(crop_logits: torch.Tensor) -> torch.Tensor:
    """(2 * len(LABELS),): each label's mean logit over the crops, then its spread (one crop: no spread)."""
    return torch.cat([crop_logits.mean(dim=0), crop_logits.std(dim=0, correction=0)])


def routed_probabilities(features: torch.Tensor, routing: dict[str, dict] | None) -> dict[str, float]:
    """Each label's probability: the sigmoid of its mean crop logit, or of its routing rule over `features`."""
    probabilities = dict(zip(LABELS, torch.sigmoid(features[: len(LABELS)]).tolist()))
    for label, rule in (routing or {}).items():
        logit = float(features.double() @ torch.tensor(rule["weights"], dtype=torch.float64)) + rule["bias"]
        probabilities[label] = float(torch.sigmoid(torch.tensor(logit)))
    return probabilities


def bundled_detector_path() -> Path:
    folder = bundled_checkpoints_dir() / DETECTOR_FOLDER
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"The bundled degradation detector is missing ({folder}); reinstall mprnet-hf, or train it "
            "with python -m mprnet_hf.detection.train"
        )
    return folder


def as_rgb_array(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image (upright per EXIF), a (3, H, W) float tensor in [0, 1] or an array."""
    if isinstance(image, Image.Image):
        image = ImageOps.exif_transpose(image)
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"Expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
        return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"Expected an (H, W, 3) RGB array, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)
    return array


def grid_starts(length: int, crop: int, count: int) -> list[int]:
    if length <= crop:
        return [0]
    return sorted(set(np.linspace(0, length - crop, count).round().astype(int).tolist()))


def candidate_positions(
    height: int, width: int, crop: int = CROP_SIZE, grid_side: int = GRID_SIDE
) -> list[tuple[int, int]]:
    return [(top, left) for top in grid_starts(height, crop, grid_side) for left in grid_starts(width, crop, grid_side)]


def most_contrasted(crops: np.ndarray, count: int) -> np.ndarray:
    """Indices, in order, of the `count` crops (N, h, w, 3) of most contrast: the spread of the green channel on
    every fourth pixel. It puts the crops on edges and texture, where blur shows, rather than on flat areas that look
    the same sharp or blurred."""
    if len(crops) <= count:
        return np.arange(len(crops))
    spread = crops[:, ::4, ::4, 1].reshape(len(crops), -1).std(axis=1)
    return np.sort(np.argsort(spread, kind="stable")[::-1][:count])


def crop_positions(
    pixels: np.ndarray, crop: int = CROP_SIZE, count: int = CROPS_PER_PHOTO, grid_side: int = GRID_SIDE
) -> list[tuple[int, int]]:
    """(top, left) of the `count` most contrasted crops of a grid over the photo (all of them when fewer)."""
    candidates = candidate_positions(*pixels.shape[:2], crop, grid_side)
    if len(candidates) <= count:
        return candidates
    crops = np.stack([pixels[top : top + crop, left : left + crop] for top, left in candidates])
    return [candidates[index] for index in most_contrasted(crops, count)]


def cut_crops(pixels: np.ndarray, positions, crop: int = CROP_SIZE) -> np.ndarray:
    """(N, crop, crop, 3) uint8 crops; a photo smaller than a crop is mirrored out to the crop's size."""
    height, width = pixels.shape[:2]
    if height < crop or width < crop:
        pad = ((0, max(crop - height, 0)), (0, max(crop - width, 0)), (0, 0))
        pixels = np.pad(pixels, pad, mode="symmetric" if min(height, width) > 1 else "edge")
    return np.stack([pixels[top : top + crop, left : left + crop] for top, left in positions])


def crops_to_batch(crops: np.ndarray, mean: float = PIXEL_MEAN, scale: float = PIXEL_SCALE) -> torch.Tensor:
    batch = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float() / 255
    return (batch - mean) / scale


@dataclass(frozen=True)
class Detection:
    """What the detector sees in a photo: a probability per label (`LABELS`), and what follows from them."""

    probabilities: dict[str, float]
    threshold: float | dict[str, float] = DETECTION_THRESHOLD
    # `pooled_features` of the crops, what a routing rule reads (kept for calibrating one).
    features: tuple[float, ...] | None = None

    def threshold_of(self, label: str) -> float:
        if isinstance(self.threshold, dict):
            return self.threshold.get(label, DETECTION_THRESHOLD)
        return self.threshold

    @property
    def found(self) -> list[str]:
        """The degradations at or above their threshold, most confident first."""
        found = [label for label in LABELS[:-1] if self.probabilities[label] >= self.threshold_of(label)]
        return sorted(found, key=lambda label: -self.probabilities[label])

    @property
    def tasks(self) -> list[str]:
        """The restorations to run, in the order that undoes a mixed photo (`STEP_ORDER`)."""
        wanted = {TASK_OF_LABEL[label] for label in self.found if label in TASK_OF_LABEL}
        return [task for task in STEP_ORDER if task in wanted]

    @property
    def looks_clean(self) -> bool:
        return not self.found

    def describe(self) -> str:
        """e.g. "noise (0.97), blur (0.81)", or "looks clean (0.93)"; the other labels follow in brackets."""
        shown = self.found or ["clean"]
        rest = [label for label in LABELS if label not in shown]
        main = ", ".join(f"{LABEL_WORDS[label]} ({self.probabilities[label]:.2f})" for label in shown)
        others = ", ".join(f"{LABEL_WORDS[label]} {self.probabilities[label]:.2f}" for label in rest)
        return f"{main} [{others}]"


def next_task(detection: Detection, after: str | None = None) -> str | None:
    """The first restoration `detection` asks for that comes after the step `after` in `STEP_ORDER`, or None."""
    start = 0 if after is None else STEP_ORDER.index(after) + 1
    return next((task for task in STEP_ORDER[start:] if task in detection.tasks), None)


def runs_again(detection: Detection, task: str, passes: int) -> bool:
    """Whether the look after the `passes`-th run of `task` asks for `task` once more (within MAX_PASSES)."""
    return passes < MAX_PASSES[task] and task in detection.tasks


def distinct_restorations(steps: Iterable[str]) -> tuple[str, ...]:
    """The restorations among auto mode's steps, each once in the order they first ran: ("derain", "derain",
    "denoise") is derain, then denoise."""
    return tuple(dict.fromkeys(steps))


def looks_again_after(task: str) -> bool:
    """Whether another step may follow `task`, so the detector should look at its result."""
    return task in STEPS_LOOKED_AFTER


class DegradationDetector:
    """Loads the detector (the bundled one by default) and tells what degrades a photo.

    ```python
    detector = DegradationDetector.from_pretrained()
    detection = detector.detect(Image.open("photo.jpg"))
    detection.found, detection.tasks   # ["noise", "blur"], ["denoise", "deblur"]
    ```
    """

    def __init__(
        self,
        model: ResNetForImageClassification,
        threshold: float | dict[str, float] | None = None,
        routing: dict[str, dict] | bool | None = None,
        thresholds_after: dict[str, dict[str, float]] | None = None,
    ):
        """`threshold`: one for every label, or one per label; by default the checkpoint's own
        (`config.detection_thresholds`), else 0.5. `routing`: a rule per restoration's label (`config_routing`); by
        default (None or True) the checkpoint's own, if any; False reads every label's mean crop logit alone.
        `thresholds_after`: the thresholds of a look after a step (`config_thresholds_after`), by default the
        checkpoint's own; {} gives every look the first look's."""
        # Channels-last convolutions read the crops about a quarter faster on a CPU.
        self.model = model.eval().to(memory_format=torch.channels_last)
        config = model.config
        self.threshold = threshold if threshold is not None else config_thresholds(config)
        self.routing = config_routing(config) if routing in (None, True) else (routing or None)
        self.thresholds_after = config_thresholds_after(config) if thresholds_after is None else thresholds_after
        self.crop_size = getattr(config, "crop_size", CROP_SIZE)
        self.crops_per_photo = getattr(config, "crops_per_photo", CROPS_PER_PHOTO)
        self.crop_grid_side = getattr(config, "crop_grid_side", GRID_SIDE_BEFORE_CONFIGS_KEPT_IT)
        bounded = ((self.crops_per_photo, MAX_CROPS_PER_PHOTO), (self.crop_grid_side, MAX_GRID_SIDE))
        if not all(type(value) is int and 1 <= value <= most for value, most in bounded):
            raise ValueError(
                f"The detector's crops_per_photo and crop_grid_side must be whole numbers from 1 to "
                f"{MAX_CROPS_PER_PHOTO} and from 1 to {MAX_GRID_SIDE}, got {self.crops_per_photo!r} and "
                f"{self.crop_grid_side!r}"
            )
        self.pixel_mean = getattr(config, "pixel_mean", PIXEL_MEAN)
        self.pixel_scale = getattr(config, "pixel_scale", PIXEL_SCALE)
        if tuple(config.id2label[index] for index in range(config.num_labels)) != LABELS:
            raise ValueError(
                f"Not a degradation detector: its labels are {list(config.id2label.values())}, expected {list(LABELS)}"
            )

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path | None = None,
        threshold: float | dict[str, float] | None = None,
        routing: dict[str, dict] | bool | None = None,
        thresholds_after: dict[str, dict[str, float]] | None = None,
    ):
        model = ResNetForImageClassification.from_pretrained(str(source or bundled_detector_path()))
        return cls(model, threshold, routing, thresholds_after)

    @torch.inference_mode()
    def crop_logits(self, crops: np.ndarray) -> torch.Tensor:
        batch = crops_to_batch(crops, self.pixel_mean, self.pixel_scale).to(self.model.device)
        return self.model(pixel_values=batch).logits.float().cpu()

    def read_crops(self, image) -> np.ndarray:
        """The crops the detector reads, (N, crop, crop, 3) uint8. A large RGB PIL image is cropped as it is, without
        converting all of its pixels (a 12-megapixel photo would take longer to convert than to detect)."""
        if isinstance(image, Image.Image):
            if image.getexif().get(EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
            width, height = image.size
            if image.mode == "RGB" and min(width, height) >= self.crop_size:
                candidates = candidate_positions(height, width, self.crop_size, self.crop_grid_side)
                crops = np.stack(
                    [
                        np.asarray(image.crop((left, top, left + self.crop_size, top + self.crop_size)))
                        for top, left in candidates
                    ]
                )
                return crops[most_contrasted(crops, self.crops_per_photo)]
        pixels = as_rgb_array(image)
        if pixels.shape[0] < 1 or pixels.shape[1] < 1:
            raise ValueError(f"The image is empty ({pixels.shape[1]}x{pixels.shape[0]} pixels)")
        positions = crop_positions(pixels, self.crop_size, self.crops_per_photo, self.crop_grid_side)
        return cut_crops(pixels, positions, self.crop_size)

    def thresholds_of_look(self, after: str | None = None) -> float | dict[str, float]:
        """The thresholds of the first look at a photo (`after` None), or of the look after the step `after`."""
        if after is not None and after not in STEPS_LOOKED_AFTER:
            raise ValueError(f"Auto mode looks again only after {' or '.join(STEPS_LOOKED_AFTER)}, not after {after!r}")
        own = self.thresholds_after.get(after) if after else None
        if not own:
            return self.threshold
        return {**thresholds_by_label(self.threshold), **own}

    def detect(self, image, after: str | None = None) -> Detection:
        """Detects the degradations of one photo (PIL image, (H, W, 3) array or (3, H, W) tensor in [0, 1]);
        `after` names the step auto mode ran just before this look (None: the photo as it came)."""
        threshold = self.thresholds_of_look(after)
        features = pooled_features(self.crop_logits(self.read_crops(image)))
        probabilities = routed_probabilities(features, self.routing)
        return Detection(probabilities, threshold, tuple(features.tolist()))


__all__ = [
    "LABELS",
    "LABEL_WORDS",
    "STEPS_LOOKED_AFTER",
    "Detection",
    "STEP_ORDER",
    "next_task",
    "runs_again",
    "LABEL_UNDONE_BY",
    "distinct_restorations",
    "MAX_PASSES",
    "looks_again_after",
    "DegradationDetector",
    "detector_config",
    "crop_positions",
]

"""Auto mode: detect what degrades a photo, then run the MPRNet restorations that undo it, one after the other.

    from mprnet_hf import restore_image
    restored = restore_image(None, Image.open("photo.jpg"), task="auto")   # the bundled models and detector
    restored.message                     # "Detected noise (0.99) [...]. After denoise: blur (0.84). Ran ..."
    restored.steps                       # ("denoise", "deblur"); restored.stages: each step's result

Mixed photos are restored in the reverse of the order a camera degrades them (`STEP_ORDER`): derain, denoise, then
deblur. The detector looks again after each step but the last, since rain and noise hide blur: a noisy and shaken
photo often shows only its noise until it is denoised. Each restoration runs once, except deraining, which runs a
second time when the look after it still finds rain (`MAX_PASSES`: dense rain outlives one pass). A photo that looks
clean, or shows only JPEG artefacts (no restoration here undoes them), comes back unchanged, with a message saying
so.

Auto mode lives here, in the installed package, not in the model folder a Hub repo carries: it needs the detector
and every task's model. `restore_image` and `AutoImageRestorationPipeline` (what `import mprnet_hf` registers for the
`image-restoration` task) are the model folder's with `task="auto"` added.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from itertools import groupby

import numpy as np
from PIL import Image

from .data.image_io import restore_photo
from .detection.detector import (
    LABEL_UNDONE_BY,
    LABEL_WORDS,
    LABELS,
    TASK_OF_LABEL,
    DegradationDetector,
    Detection,
    as_rgb_array,
    looks_again_after,
    next_task,
    runs_again,
)
from .detection.jpeg_grid import shows_jpeg_grid
from .hub.bundled import JPEG_DENOISE, complete_models, with_jpeg_denoiser
from .models.mprnet import inference
from .models.mprnet.configuration_mprnet import TASKS
from .models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from .models.mprnet.inference import (
    AUTO_PRECISION,
    DEFAULT_MAX_MEGAPIXELS,
    WholeImageRuntime,
    check_pixel_count,
    check_precision,
)
from .models.mprnet.modeling_mprnet import MPRNetModel
from .models.mprnet.pipeline_mprnet import ImageRestorationPipeline

AUTO = "auto"
# PIL modes whose RGB conversion keeps what the detector must see; other modes (16-bit and float grey) go through the
# image processor, which scales them to [0, 1] first.
_DIRECT_MODES = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "CMYK", "YCbCr", "1"}


@lru_cache(maxsize=1)
def bundled_detector() -> DegradationDetector:
    return DegradationDetector.from_pretrained()


def detector_pixels(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a photo as the detector reads it: PIL image, 16-bit (H, W, 3|4) array, or tensor."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint16:
        return (image[..., :3] >> 8).astype(np.uint8)
    if isinstance(image, Image.Image) and image.mode not in _DIRECT_MODES:
        pixel_values = MPRNetImageProcessor()(images=image, return_tensors="pt")["pixel_values"][0]
        return as_rgb_array(pixel_values)
    return as_rgb_array(image)


def detect(image, detector: DegradationDetector | None = None, after: str | None = None) -> Detection:
    """The detector's look at a photo as it came (`after` None), or at the result of the step `after`."""
    return (detector or bundled_detector()).detect(detector_pixels(image), after=after)


class ModelChoice:
    """Which of `models` restores each step of one photo: the model of the step's task, except that denoising a
    photo saved as JPEG uses the JPEG denoiser where one is loaded (`JPEG_DENOISE`). The JPEG grid is read once, on
    the photo as it came: a step's output has lost the grid, not the JPEG-compressed look of its noise."""

    def __init__(self, models: Mapping[str, object], photo):
        self.models, self.photo = models, photo
        self.jpeg_denoised = False

    @cached_property
    def carries_jpeg_grid(self) -> bool:
        return shows_jpeg_grid(self.photo)

    def key(self, task: str) -> str:
        """The key of `models` that restores `task` on this photo."""
        if task == "denoise" and JPEG_DENOISE in self.models and self.carries_jpeg_grid:
            self.jpeg_denoised = True
            return JPEG_DENOISE
        return task


JPEG_DENOISE_NOTE = (
    " The photo was saved as JPEG (its 8×8 grid shows), so denoising used the weights for JPEG-compressed noise."
)


def newly_found(detections: list[Detection], steps: tuple[str, ...]) -> str:
    """ " After denoise: blur (0.84)." for every restoration a later look found that the first did not, and " After
    derain: rain still (0.62), so derain ran again." where a step ran a second time; a look after that second run is
    " After derain again: ..."."""
    notes, seen = [], set(detections[0].tasks)
    for index, (task, detection) in enumerate(zip(steps, detections[1:])):
        step = f"{task} again" if steps[index - 1 : index] == (task,) else task
        fresh = [label for label in detection.found if label in TASK_OF_LABEL and TASK_OF_LABEL[label] not in seen]
        seen.update(TASK_OF_LABEL[label] for label in fresh)
        if fresh:
            words = ", ".join(f"{LABEL_WORDS[label]} ({detection.probabilities[label]:.2f})" for label in fresh)
            notes.append(f" After {step}: {words}.")
        if steps[index + 1 : index + 2] == (task,):
            label = LABEL_UNDONE_BY[task]
            still = f"{LABEL_WORDS[label]} still ({detection.probabilities[label]:.2f})"
            notes.append(f" After {step}: {still}, so {task} ran again.")
    return "".join(notes)


def steps_in_words(steps: tuple[str, ...]) -> str:
    """ "derain twice, then denoise" for the steps ("derain", "derain", "denoise")."""
    runs = [(task, len(list(repeats))) for task, repeats in groupby(steps)]
    return ", then ".join(
        task if count == 1 else f"{task} {count} times" if count > 2 else f"{task} twice" for task, count in runs
    )


def auto_message(detection: Detection | list[Detection], steps: tuple[str, ...], jpeg_denoised: bool = False) -> str:
    """What auto mode saw and did, in words a visitor knows (blur / noise / rain / JPEG); `detection` is the first
    look, or every look in order (the first, then one after each step but the last); `jpeg_denoised`: the denoise
    step used the JPEG denoiser (`ModelChoice`)."""
    detections = detection if isinstance(detection, list) else [detection]
    detection = detections[0]
    probability = detection.probabilities
    if detection.looks_clean:
        others = ", ".join(f"{LABEL_WORDS[label]} {probability[label]:.2f}" for label in LABELS[:-1])
        return (
            f"The photo looks clean (clean {probability['clean']:.2f}; {others}): returned unchanged. Pick a task "
            "by hand to restore it anyway."
        )
    message = f"Detected {detection.describe()}." + newly_found(detections, steps)
    if steps:
        message += f" Ran {steps_in_words(steps)}."
    if jpeg_denoised:
        message += JPEG_DENOISE_NOTE
    if "jpeg" in detection.found:
        message += " JPEG artefacts are only reported: no restoration here undoes them."
    if not steps:
        message += " The photo is returned unchanged."
    return message


def run_steps(
    image, look: Callable[[object, str | None], Detection], restore_step: Callable[[str, object], tuple]
) -> tuple[list[tuple[str, object, tuple]], list[Detection]]:
    """Auto mode's loop: `look(image, after)` detects (`after`: the step just run, None at first),
    `restore_step(task, image) -> (restored, stages)` restores; each step runs on the previous one's result and the
    detector looks again while a later step may follow. Returns (task, restored, stages) per step and every
    detection in order."""
    detections, results = [look(image, None)], []
    task = next_task(detections[0])
    while task is not None:
        image, stages = restore_step(task, image)
        results.append((task, image, stages))
        if not looks_again_after(task):
            break
        detections.append(look(image, task))
        passes = sum(done == task for done, *_ in results)
        task = task if runs_again(detections[-1], task, passes) else next_task(detections[-1], after=task)
    return results, detections


@dataclass
class AutoRestoration:
    """Result of auto mode on a PIL image: the final image, what the detector saw, the steps run in order and each
    step's result (`stages`: every step's final image when several ran, the stages of the one step otherwise)."""

    image: Image.Image
    stages: tuple[Image.Image, ...]
    input_mode: str
    detections: list[Detection]
    steps: tuple[str, ...]
    step_images: tuple[Image.Image, ...]
    # The denoise step used the JPEG denoiser (`ModelChoice`).
    jpeg_denoised: bool = False

    @property
    def detection(self) -> Detection:
        """The first look, at the photo as it came."""
        return self.detections[0]

    @property
    def message(self) -> str:
        return auto_message(self.detections, self.steps, self.jpeg_denoised)


def restore_image_auto(
    models: Mapping[str, MPRNetModel] | MPRNetModel | None,
    image,
    detector: DegradationDetector | None = None,
    processor: MPRNetImageProcessor | None = None,
    **restore_options,
) -> AutoRestoration:
    """Auto mode over `restore_image`: detects, then restores with the model of each task found (`complete_models`
    fills in the bundled ones; where the denoise model is the bundled one, a photo saved as JPEG is denoised by the
    bundled JPEG denoiser, `ModelChoice`). `restore_options` are `restore_image`'s (tile_size, precision, ...)."""
    processor = processor or MPRNetImageProcessor()
    max_megapixels = restore_options.pop("max_megapixels", None)
    if max_megapixels is not None and isinstance(image, Image.Image):
        check_pixel_count(image, max_megapixels)
    inputs = processor(images=image, return_tensors="pt")
    unchanged = processor.postprocess(inputs["pixel_values"], inputs)[0]
    input_mode = inputs["original_modes"][0]
    loaded = {}
    choice = ModelChoice(loaded, unchanged)

    def restore_step(task, current):
        if not loaded:  # models are loaded when a step needs them: a clean photo needs none
            loaded.update(with_jpeg_denoiser(complete_models(models)))
        model = loaded[choice.key(task)]
        restoration = inference.restore_image(model, current, processor, max_megapixels=None, **restore_options)
        return restoration.image, restoration.stages

    results, detections = run_steps(unchanged, lambda current, after: detect(current, detector, after), restore_step)
    if not results:
        return AutoRestoration(unchanged, (), input_mode, detections, (), ())
    step_images = tuple(restored for _task, restored, _stages in results)
    stages = step_images if len(results) > 1 else results[0][2]
    steps = tuple(task for task, _restored, _stages in results)
    return AutoRestoration(step_images[-1], stages, input_mode, detections, steps, step_images, choice.jpeg_denoised)


def restore_photo_auto(
    models: Mapping[str, MPRNetModel],
    photo,
    detector: DegradationDetector | None = None,
    whole_image_runtimes: Mapping[str, WholeImageRuntime] | None = None,
    *,
    model_choice: ModelChoice | None = None,
    **restore_options,
):
    """Auto mode over `image_io.restore_photo` (bit depth, mode and metadata kept): returns (restored photo,
    [(task, restored photo, stage photos)] per step, every detection). A clean-looking photo comes back as it is.
    `models` are by task, with the JPEG denoiser under `JPEG_DENOISE` if it is to be used; `model_choice` (a
    `ModelChoice` of `models` and this photo) then tells afterwards whether it ran. `whole_image_runtimes` are a
    serving process's runtimes by the same keys (`ServingReport.runtimes`)."""
    runtimes = whole_image_runtimes or {}
    choice = model_choice or ModelChoice(models, photo.pixels)

    def restore_step(task, current):
        key = choice.key(task)
        return restore_photo(models[key], current, whole_image_runtime=runtimes.get(key), **restore_options)

    results, detections = run_steps(photo, lambda current, after: detect(current.pixels, detector, after), restore_step)
    restored = results[-1][1] if results else replace(photo, notes=[])
    return restored, results, detections


def restore_image(model, image, processor: MPRNetImageProcessor | None = None, *, task: str | None = None, **options):
    """Restores one image (PIL, numpy or tensor) end to end: the model folder's `restore_image` (EXIF orientation,
    any mode, tiling, precision; `options` are its tile_size, tile_overlap, precision, max_megapixels, progress and
    statistics_passes), with auto mode.

    `task="auto"` detects what degrades the image and runs the restorations found: `model` is then a mapping of
    models by task, one model (it serves its own task, the bundled ones the others) or None (all bundled), and the
    result an `AutoRestoration` saying what was detected and done. Any other task must be the model's own."""
    if task == AUTO:
        check_precision(options.get("precision", AUTO_PRECISION))
        options.setdefault("max_megapixels", DEFAULT_MAX_MEGAPIXELS)
        return restore_image_auto(model, image, processor=processor, **options)
    if task is not None and task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: 'auto', or the model's own task ({', '.join(TASKS)})")
    return inference.restore_image(model, image, processor, **options)


class AutoImageRestorationPipeline(ImageRestorationPipeline):
    """The `image-restoration` pipeline with `task="auto"`: the pipeline's model serves its own task and the bundled
    models the others; a photo that looks clean comes back unchanged. `import mprnet_hf` registers it for the task.

    ```python
    restorer = pipeline("image-restoration", model="checkpoints/mprnet-denoise-small")
    restored = restorer("photo.png", task="auto")          # detect blur / noise / rain and run what undoes them
    ```
    """

    restore_auto = staticmethod(restore_image_auto)

    def save_pretrained(self, save_directory, **kwargs):
        # As the model folder's pipeline: a saved folder's config.json names its pipeline class, and the folder
        # carries the code of that class only, which must load where this package is not installed.
        base = ImageRestorationPipeline(model=self.model, image_processor=self.image_processor, device=self.device)
        base.save_pretrained(save_directory, **kwargs)


__all__ = [
    "AUTO",
    "restore_image",
    "AutoImageRestorationPipeline",
    "AutoRestoration",
    "restore_image_auto",
    "restore_photo_auto",
    "detect",
    "auto_message",
    "run_steps",
    "ModelChoice",
    "bundled_detector",
]

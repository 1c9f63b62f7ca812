"""Serving helpers shared by the Gradio app and scripts: which model serves each task, loading them once,
reading uploaded files safely, and the GPU time a request needs.
"""

import math
import os
import warnings
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError

from .configuration_mprnet import TASKS
from .inference import DEFAULT_MAX_MEGAPIXELS, check_pixel_count
from .modeling_mprnet import MPRNetModel

BUNDLED_CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"


def model_source(task: str) -> str:
    """The Hub id or folder serving `task`: `MPRNET_<TASK>_MODEL` if set, else the bundled small checkpoint."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}")
    return os.environ.get(f"MPRNET_{task.upper()}_MODEL") or str(BUNDLED_CHECKPOINTS / f"mprnet-{task}-small")


def max_megapixels() -> float:
    value = os.environ.get("MPRNET_MAX_MEGAPIXELS")
    try:
        return float(value) if value else DEFAULT_MAX_MEGAPIXELS
    except ValueError:
        raise ValueError(f"MPRNET_MAX_MEGAPIXELS must be a number, got {value!r}") from None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_models(tasks=TASKS, device: torch.device | None = None) -> dict[str, MPRNetModel]:
    """Loads the model of every task once, in eval mode, on `device` (CUDA when present)."""
    device = device or default_device()
    models = {}
    for task in tasks:
        source = model_source(task)
        model = MPRNetModel.from_pretrained(source).eval().to(device)
        if model.config.task != task:
            warnings.warn(f"{source} was trained for {model.config.task!r} but serves {task!r}", stacklevel=2)
        models[task] = model
    return models


def gpu_duration(width: int, height: int, passes: int = 1, seconds_per_megapixel: float = 4.0, minimum: int = 20,
                 maximum: int = 180) -> int:
    """Seconds of ZeroGPU time to ask for: grows with the pixels the model runs over (`passes` times the image, see
    `inference.passes_over_image`), with a floor for start-up. The cap stays below the few minutes ZeroGPU grants a
    call, and above what the largest accepted photo asks for (16 megapixels, two passes: 148 s)."""
    megapixels = passes * width * height / 1e6
    return int(min(maximum, max(minimum, math.ceil(minimum + seconds_per_megapixel * megapixels))))


def open_image_file(path, limit_megapixels: float | None = None) -> tuple[Image.Image, list[str]]:
    """Opens an uploaded file as a fully decoded PIL image, or raises ValueError saying what is wrong.

    Returns the image and notes for the user (e.g. that only the first frame of an animation was used).
    """
    limit_megapixels = max_megapixels() if limit_megapixels is None else limit_megapixels
    if path is None:
        raise ValueError("No image was uploaded. Upload a photo (PNG, JPEG, WebP, ...) first.")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"The uploaded file {path.name} could not be found; upload it again.")
    if path.stat().st_size == 0:
        raise ValueError(f"The file {path.name} is empty (0 bytes). Upload a valid image file.")
    notes = []
    # Image.open reads only the header, so the size is checked before any pixel is decoded; PIL itself refuses
    # headers past twice its own bomb limit.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if getattr(image, "n_frames", 1) > 1:
                notes.append(f"{path.name} is animated ({image.n_frames} frames); only the first frame was restored.")
                image.seek(0)
            check_pixel_count(image, limit_megapixels)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(
            f"{path.name} declares more pixels than the limit of {limit_megapixels:g} megapixels "
            "(a possible decompression bomb). Downscale the image and try again."
        ) from None
    except UnidentifiedImageError:
        raise ValueError(f"{path.name} is not an image file Pillow can read. Upload a PNG, JPEG, WebP, BMP or TIFF.") from None
    except OSError as error:
        raise ValueError(f"{path.name} is corrupt or truncated ({error}). Re-export or re-download the image.") from None
    return image, notes


__all__ = ["model_source", "load_models", "gpu_duration", "open_image_file", "max_megapixels", "BUNDLED_CHECKPOINTS"]

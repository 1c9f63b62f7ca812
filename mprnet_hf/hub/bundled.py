"""Where the bundled small checkpoints (mprnet-{task}-small) are, in a checkout and in an installed package.

A checkout keeps them in `checkpoints/` beside the package; the wheel carries them inside it, in
`mprnet_hf/checkpoints/` (pyproject.toml maps one to the other at build time).
"""

import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError

from ..models.mprnet.configuration_mprnet import TASKS
from ..models.mprnet.modeling_mprnet import MPRNetModel

# This module lives in mprnet_hf/hub/; the checkpoints sit beside (checkout) or inside (wheel) mprnet_hf/.
PACKAGE_DIR = Path(__file__).resolve().parents[1]
INSTALLED_CHECKPOINTS = PACKAGE_DIR / "checkpoints"
CHECKOUT_CHECKPOINTS = PACKAGE_DIR.parent / "checkpoints"
BUNDLED_SIZE = "small"
# What loading saved weights raises when they do not load (`from_pretrained` of MPRNetModel or of the detector): a
# missing or unreadable folder (OSError), a config or state dict that does not fit (ValueError), a damaged weights
# file (SafetensorError).
WEIGHT_LOAD_ERRORS = (OSError, ValueError, SafetensorError)
# The denoiser for noise that went through a JPEG encoder, bundled beside the model of each task: restorations of the
# bundled denoise model use it instead on photos that carry JPEG's 8×8 grid (`detection.jpeg_grid`). Noise saved as
# JPEG is no longer white, and weights that restore it best lose on noise never compressed (docs/MODEL.md).
JPEG_DENOISE = "denoise-jpeg"


def checkpoint_name(task: str, size: str = BUNDLED_SIZE) -> str:
    """The folder (and Hub repo) name of a trained variant: `mprnet-deblur-small` for the bundled deblurring model."""
    return f"mprnet-{task}-{size}"


def bundled_checkpoints_dir() -> Path:
    """The folder holding the bundled checkpoints: inside the installed package, else the checkout's."""
    return INSTALLED_CHECKPOINTS if INSTALLED_CHECKPOINTS.is_dir() else CHECKOUT_CHECKPOINTS


def bundled_checkpoint(task: str) -> Path:
    """The bundled small checkpoint of `task`, or ValueError when the task is unknown or its folder is missing."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}")
    folder = bundled_checkpoints_dir() / checkpoint_name(task)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"The bundled {task} checkpoint is missing ({folder}); reinstall mprnet-hf, or pass --model "
            "with a model folder or Hub id"
        )
    return folder


def bundled_jpeg_denoiser(device: torch.device | str = "cpu") -> MPRNetModel | None:
    """The bundled denoiser for JPEG-compressed noise (`JPEG_DENOISE`) in eval mode on `device`, or None when this
    install carries none (restorations then use the denoise model on every photo)."""
    folder = bundled_checkpoints_dir() / checkpoint_name(JPEG_DENOISE)
    if not (folder / "config.json").is_file():
        return None
    model = MPRNetModel.from_pretrained(folder).eval().to(device)
    if model.config.task != "denoise":
        raise ValueError(f"{folder} was trained for {model.config.task!r}, not for denoising")
    return model


def with_jpeg_denoiser(models: dict[str, MPRNetModel]) -> dict[str, MPRNetModel]:
    """`models` (by task) with the bundled JPEG denoiser added under `JPEG_DENOISE` where the denoise model is the
    bundled one: a denoise model of someone's own choosing is used as it is, on every photo."""
    denoiser = models.get("denoise")
    if denoiser is None or JPEG_DENOISE in models or not is_bundled(denoiser, "denoise"):
        return models
    try:
        jpeg_denoiser = bundled_jpeg_denoiser(next(denoiser.parameters()).device)
    except WEIGHT_LOAD_ERRORS as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        warnings.warn(
            f"The bundled JPEG denoiser could not be loaded ({reason}); photos saved as JPEG are denoised by the "
            "denoise model. Reinstall mprnet-hf to get it back.",
            stacklevel=2,
        )
        return models
    return models if jpeg_denoiser is None else {**models, JPEG_DENOISE: jpeg_denoiser}


def is_bundled(model: MPRNetModel, task: str) -> bool:
    """Whether `model` was loaded from the bundled checkpoint of `task`."""
    source = getattr(model.config, "_name_or_path", "") or ""
    try:
        return Path(source).resolve() == (bundled_checkpoints_dir() / checkpoint_name(task)).resolve()
    except (OSError, ValueError):
        return False


def bundled_model(task: str, device: torch.device | str = "cpu") -> MPRNetModel:
    """The bundled small model of `task`, in eval mode on `device`."""
    return MPRNetModel.from_pretrained(bundled_checkpoint(task)).eval().to(device)


def bundled_models(device: torch.device | str = "cpu") -> dict[str, MPRNetModel]:
    """The bundled small model of every task, in eval mode on `device`."""
    return {task: bundled_model(task, device) for task in TASKS}


def complete_models(models: Mapping[str, MPRNetModel] | MPRNetModel | None) -> dict[str, MPRNetModel]:
    """A model per task: those given (a mapping by task, or one model serving its own `config.task`; a JPEG
    denoiser may come under `JPEG_DENOISE`), the bundled ones for the rest, on the device of the given ones."""
    if isinstance(models, MPRNetModel):
        models = {models.config.task: models}
    models = dict(models or {})
    unknown = set(models) - set(TASKS) - {JPEG_DENOISE}
    if unknown:
        raise ValueError(f"Auto mode takes a model per task ({', '.join(TASKS)}), got {', '.join(sorted(unknown))}")
    device = next(next(iter(models.values())).parameters()).device if models else torch.device("cpu")
    for task in TASKS:
        if task not in models:
            models[task] = bundled_model(task, device)
    return models


__all__ = [
    "BUNDLED_SIZE",
    "JPEG_DENOISE",
    "bundled_jpeg_denoiser",
    "with_jpeg_denoiser",
    "is_bundled",
    "checkpoint_name",
    "bundled_checkpoint",
    "bundled_checkpoints_dir",
    "bundled_model",
    "bundled_models",
    "complete_models",
]

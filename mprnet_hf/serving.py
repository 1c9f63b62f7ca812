"""Serving helpers shared by the Gradio app and scripts: which model serves each task, loading them once, accepting
only files that arrived as uploads, reading them safely, and bounding what one request may cost (CPU seconds, or
ZeroGPU seconds). Files are opened with `mprnet_hf.data.safe_open.open_image_file`.
"""

import ctypes
import ctypes.util
import gc
import math
import os
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from .data.safe_open import ALLOWED_FORMAT_NAMES, NO_IMAGE, short_repr
from .hub.bundled import bundled_checkpoint, with_jpeg_denoiser
from .models.mprnet.configuration_mprnet import TASKS
from .models.mprnet.inference import (
    AUTO_PRECISION,
    DEFAULT_MAX_MEGAPIXELS,
    PRECISION_CHOICES,
    ImageRefused,
    choose_precision,
    cpu_has_native_bf16,
    passes_over_image,
)
from .models.mprnet.modeling_mprnet import MPRNetModel
from .speed.fast import heap_bytes_free_for_reuse

# One message for every payload that does not name an uploaded file, so that the answer never tells whether some
# path exists on the server.
UPLOAD_REFUSED = (
    "The image did not arrive as an upload. Upload the photo itself (in the page, or with gradio_client's "
    "handle_file()) and try again."
)
LONGEST_PATH = 4096


def model_source(task: str) -> str:
    """The Hub id or folder serving `task`: `MPRNET_<TASK>_MODEL` if set, else the bundled small checkpoint."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {short_repr(task)}: choose one of {', '.join(TASKS)}")
    return os.environ.get(f"MPRNET_{task.upper()}_MODEL") or str(bundled_checkpoint(task))


def environment_number(name: str, default: float) -> float:
    """A positive number from the environment variable `name`, or `default` when it is unset."""
    value = os.environ.get(name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be a positive number, got {short_repr(value)}")
    return number


def max_megapixels() -> float:
    return environment_number("MPRNET_MAX_MEGAPIXELS", DEFAULT_MAX_MEGAPIXELS)


def serving_precisions(models: dict[str, MPRNetModel], on_gpu: bool) -> dict[str, str]:
    """The precision each model serves with: `MPRNET_PRECISION` (auto, fp32, bf16, fp16; default auto), with auto
    resolved now, at start-up, by `inference.choose_precision` (its agreement check included) on a CPU. On a GPU auto
    is bf16, as the app always served there: on ZeroGPU the models reach the GPU only inside a request. ValueError
    naming the allowed values for anything else, and for fp16 without a GPU."""
    precision = os.environ.get("MPRNET_PRECISION", "").strip() or AUTO_PRECISION
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"MPRNET_PRECISION must be one of {', '.join(PRECISION_CHOICES)}, got {short_repr(precision)}")
    if on_gpu:
        return {task: "bf16" if precision == AUTO_PRECISION else precision for task in models}
    if precision == "fp16":
        raise ValueError("MPRNET_PRECISION=fp16 needs a GPU; use auto, fp32 or bf16 on a CPU")
    if precision == AUTO_PRECISION:  # the only precision that reads it
        cpu_has_native_bf16()  # a wrong MPRNET_CPU_BF16 is refused here, at start-up, not on the first request
    return {task: choose_precision(model, precision).precision for task, model in models.items()}


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_models(tasks=TASKS, device: torch.device | None = None) -> dict[str, MPRNetModel]:
    """Loads the model of every task once, in eval mode, on `device` (CUDA when present), and the bundled JPEG
    denoiser under `JPEG_DENOISE` where the denoise model is the bundled one (`hub.bundled.with_jpeg_denoiser`)."""
    device = device or default_device()
    models = {}
    for task in tasks:
        source = model_source(task)
        model = MPRNetModel.from_pretrained(source).eval().to(device)
        if model.config.task != task:
            warnings.warn(f"{source} was trained for {model.config.task!r} but serves {task!r}", stacklevel=2)
        models[task] = model
    return with_jpeg_denoiser(models)


# ------------------------------------------------------------------------------------------------ uploads
def uploaded_file(payload, allowed_folders) -> Path | None:
    """The file a request's image payload names, if it lies (links resolved) inside one of `allowed_folders`.

    `payload` is what a client sent: None (nothing uploaded), a path string, or a Gradio FileData dict; a path may be
    the URL Gradio serves an upload at (see `served_file_path`). Anything else (another folder, `..`, a link out of
    the folder, any other URL, a missing file, a folder, a NUL byte, a huge string) raises ValueError(UPLOAD_REFUSED),
    the same message whatever the reason, before any file is opened.
    """
    if payload is None:
        return None
    path = payload.get("path") if isinstance(payload, dict) else payload
    if not isinstance(path, str) or not path or len(path) > LONGEST_PATH or "\0" in path:
        raise ValueError(UPLOAD_REFUSED)
    if "://" in path:
        path = served_file_path(path)
    try:
        resolved = Path(os.path.realpath(path))
        inside = any(resolved.is_relative_to(os.path.realpath(folder)) for folder in allowed_folders)
        if inside and resolved.is_file():
            return resolved
    except (OSError, ValueError):
        pass
    raise ValueError(UPLOAD_REFUSED)


def served_file_path(url: str) -> str:
    """The local path behind a URL of the form `<server>/gradio_api/file=<path>` (how Gradio serves an uploaded file,
    and how MCP clients name one), so that it is read from disk, never downloaded; any other URL is refused."""
    parts = urllib.parse.urlsplit(url)
    prefix = "/gradio_api/file="
    if parts.scheme not in ("http", "https") or prefix not in parts.path:
        raise ValueError(UPLOAD_REFUSED)
    return urllib.parse.unquote(parts.path.split(prefix, 1)[1])


# What a visitor of the app can do about a refused photo: upload another (the library's advice names a path, a
# conversion, the max_megapixels argument). The server's MPRNET_MAX_MEGAPIXELS is not the visitor's to raise.
UPLOAD_ADVICE = {
    "missing": "Upload it again.",
    "empty": "Upload a valid image file.",
    "format": f"Upload a {ALLOWED_FORMAT_NAMES} file.",
    "too_large": "Downscale it and upload it again.",
}


def in_upload_words(error: ValueError) -> str:
    """`error`'s message for the app's page and API, its advice worded as an upload (`UPLOAD_ADVICE`)."""
    return error.advised(UPLOAD_ADVICE) if isinstance(error, ImageRefused) else str(error)


# ------------------------------------------------------------------------------------------------ cost per request
# ZeroGPU grants a slot for the seconds a call asks; on its newer GPUs it charges 1.5 times that against the
# visitor's daily quota (about 2 minutes anonymous, 5 minutes on a free account), so the asks are kept small.
ZEROGPU_FLOOR_S = 10
ZEROGPU_CAP_S = 60
ZEROGPU_START_S = 5.0
# A conservative sustained rate for these small-channel convolutions under bf16 on a ZeroGPU card (an estimate from
# the model's FLOPs; see docs/DEPLOYMENT.md), and a margin for everything around the model call.
ZEROGPU_FLOPS_PER_S = 50e12
ZEROGPU_MARGIN = 2.0
DEFAULT_CPU_SECONDS = 90.0
# The calibration restores a CALIBRATION_SIDE² image: per pixel it costs what a large photo restored whole costs (a
# 256² call costs more per pixel and varies more, its per-call overhead counting for more), and it is the size the
# serving preparation's backend trial times. The rate is doubled for what a large photo may cost beyond it (tiles'
# overlaps, the statistics pass's hooks, a busier machine while it is restored); docs/APP.md measures both.
CALIBRATION_SIDE = 512
CALIBRATION_ROUNDS = 2
CPU_MARGIN = 2.0


def flops_per_pixel(model: MPRNetModel, side: int = 64) -> float:
    """Floating-point operations per input pixel of one forward pass, counted on a `side` x `side` input."""
    device = next(model.parameters()).device
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, side, side, device=device))
    return counter.get_total_flops() / side**2


def timed_call(model: MPRNetModel, image: torch.Tensor) -> float:
    """Wall-clock seconds of one forward pass of `model` on `image`."""
    started = time.perf_counter()
    with torch.inference_mode():
        model(image)
    if image.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def measured_seconds_per_megapixel(model: MPRNetModel, side: int = CALIBRATION_SIDE, repeats: int = 3) -> float:
    """Wall-clock seconds per megapixel of one forward pass on this machine (best of `repeats`, after one warm-up
    call: other work on the machine only ever slows a call down)."""
    image = torch.rand(1, 3, side, side, device=next(model.parameters()).device)
    timings = [timed_call(model, image) for _ in range(repeats + 1)]
    return min(timings[1:]) / (side * side / 1e6)


def cost_architecture(model: MPRNetModel) -> tuple:
    """What a forward pass's cost depends on: the config's sizes (not its task or loss settings, nor the weights),
    the dtype and the device. Models with the same key cost the same and get the same bound."""
    config = getattr(model, "config", None)
    if config is None:  # not an MPRNet: nothing says it costs what another model costs
        return (id(model),)
    sizes = {name: getattr(config, name, None) for name in _COST_CONFIG_FIELDS}
    parameter = next(model.parameters())
    return (tuple(sizes.items()), str(parameter.dtype), parameter.device.type)


# The config fields that set what one forward pass computes (the task and the loss settings do not).
_COST_CONFIG_FIELDS = (
    "in_channels",
    "out_channels",
    "n_feat",
    "scale_unetfeats",
    "scale_orsnetfeats",
    "num_cab",
    "kernel_size",
    "reduction",
    "bias",
    "local_attention_window",
)


def measured_rates(
    models: dict[str, MPRNetModel], side: int = CALIBRATION_SIDE, rounds: int = CALIBRATION_ROUNDS
) -> dict[str, float]:
    """Seconds per megapixel of one forward pass of each model (by name), measured now: `rounds` timed calls of each,
    in turns, and for each architecture (`cost_architecture`) the fastest call of all its models. Models of one
    architecture so get the same rate, from `rounds` times as many calls as they are models, and a call slowed by
    other work (start-up, a background export, a busy moment) or by being a model's first changes nothing unless
    every call was slowed. No separate warm-up call: the fastest call is a warm one."""
    images = {
        name: torch.rand(1, 3, side, side, device=next(model.parameters()).device) for name, model in models.items()
    }
    fastest: dict[tuple, float] = {}
    for _ in range(rounds):
        for name, model in models.items():
            key = cost_architecture(model)
            fastest[key] = min(fastest.get(key, math.inf), timed_call(model, images[name]))
    return {name: fastest[cost_architecture(model)] / (side * side / 1e6) for name, model in models.items()}


@dataclass
class CostBound:
    """What one request may cost: `budget_s` seconds of compute, at `seconds_per_megapixel` per pass of the model."""

    budget_s: float
    seconds_per_megapixel: float
    overhead_s: float = 0.0

    def seconds(self, model: MPRNetModel, width: int, height: int, tile_size: int | None) -> float:
        passes = passes_over_image(model, height, width, tile_size)
        return self.overhead_s + self.seconds_per_megapixel * passes * width * height / 1e6

    def largest_megapixels(self, model: MPRNetModel, tile_size: int | None) -> float:
        """The largest photo this bound accepts, counting the passes a photo of that size needs."""
        single_pass = (self.budget_s - self.overhead_s) / self.seconds_per_megapixel
        side = math.isqrt(int(single_pass * 1e6))
        return single_pass / passes_over_image(model, side, side, tile_size)

    def check(self, model: MPRNetModel, width: int, height: int, tile_size: int | None, where: str) -> None:
        """Raises ValueError, giving the largest size accepted, when the photo would cost more than the budget."""
        check_costs({"": (self, model)}, width, height, lambda _name, _width, _height: tile_size, where)


def largest_size_accepted(width: int, height: int, accepts: Callable[[int, int], bool]) -> tuple[int, int]:
    """The largest size of a `width` x `height` photo's shape, scaled down, that `accepts` (at least 1x1). Its cost
    grows with its size, tiles included (a larger photo never gets fewer passes), so a bisection over the longer side
    finds it."""
    longer = max(width, height)

    def scaled(side: int) -> tuple[int, int]:
        return max(1, width * side // longer), max(1, height * side // longer)

    low, high = 1, longer  # accepts(*scaled(low)) is assumed: a pixel costs next to nothing
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if accepts(*scaled(middle)) else (low, middle - 1)
    return scaled(low)


def check_costs(
    bounds: dict[str, tuple[CostBound, MPRNetModel]],
    width: int,
    height: int,
    tile_for: Callable[[str, int, int], int | None],
    where: str,
) -> None:
    """Raises ValueError when restoring the photo with any of `bounds` (name -> (bound, model)) would cost more than
    that bound allows (auto mode runs one model per step, each held to its own task's bound), naming the largest size
    of the photo's shape that every one of them accepts, each at the tile size `tile_for(name, width, height)` it
    would get at that size: the size named is then accepted when sent, whichever bound refused first."""

    def over_budget(name: str, width: int, height: int) -> bool:
        bound, model = bounds[name]
        return bound.seconds(model, width, height, tile_for(name, width, height)) > bound.budget_s

    refusing = [bounds[name][0] for name in bounds if over_budget(name, width, height)]
    if not refusing:
        return
    largest = largest_size_accepted(width, height, lambda w, h: not any(over_budget(name, w, h) for name in bounds))
    raise ValueError(
        f"The image is {width}x{height} ({width * height / 1e6:.1f} megapixels): restoring it would take longer "
        f"than the {refusing[0].budget_s:g} s one request may use {where}. The largest photo accepted is about "
        f"{largest[0] * largest[1] / 1e6:.1f} megapixels (for this photo's shape, {largest[0]}x{largest[1]}). "
        "Downscale or crop it and try again."
    )


def zerogpu_cost_bound(model: MPRNetModel) -> CostBound:
    """ZeroGPU seconds per megapixel estimated from the model's FLOPs, capped at the seconds one call may ask for."""
    seconds_per_megapixel = ZEROGPU_MARGIN * flops_per_pixel(model) * 1e6 / ZEROGPU_FLOPS_PER_S
    return CostBound(budget_s=ZEROGPU_CAP_S, seconds_per_megapixel=seconds_per_megapixel, overhead_s=ZEROGPU_START_S)


def cpu_seconds_budget() -> float | None:
    """`MPRNET_MAX_SECONDS` (90 by default), or None when it is `off`: no request is refused for its cost (a private
    server whose users may wait; the pixel limit `MPRNET_MAX_MEGAPIXELS` and the memory ceiling still hold)."""
    if os.environ.get("MPRNET_MAX_SECONDS", "").strip().lower() == "off":
        return None
    return environment_number("MPRNET_MAX_SECONDS", DEFAULT_CPU_SECONDS)


def cpu_cost_bounds(
    models: dict[str, MPRNetModel], side: int = CALIBRATION_SIDE, rounds: int = CALIBRATION_ROUNDS
) -> dict[str, CostBound]:
    """Each model's (by name) CPU seconds per megapixel, measured on this machine now (`measured_rates`: models of
    one architecture get one rate) with `CPU_MARGIN`, bounded by `MPRNET_MAX_SECONDS` (90 by default). Empty, and
    nothing measured, when `MPRNET_MAX_SECONDS` is `off`."""
    budget = cpu_seconds_budget()
    if budget is None:
        return {}
    rates = measured_rates(models, side, rounds)
    return {name: CostBound(budget_s=budget, seconds_per_megapixel=CPU_MARGIN * rate) for name, rate in rates.items()}


def cpu_cost_bound(model: MPRNetModel) -> CostBound | None:
    """`cpu_cost_bounds` of one model (None when `MPRNET_MAX_SECONDS` is `off`)."""
    return cpu_cost_bounds({"": model}).get("")


def gpu_duration(bound: CostBound, model: MPRNetModel, width: int, height: int, tile_size: int | None) -> int:
    """Seconds of ZeroGPU time to ask for: the estimate for this photo, at least the floor, at most the cap."""
    seconds = bound.seconds(model, width, height, tile_size)
    return int(min(ZEROGPU_CAP_S, max(ZEROGPU_FLOOR_S, math.ceil(seconds))))


# ------------------------------------------------------------------------------------------------ memory ceiling
# A serving process may hold this share of the machine's memory (or of its container's limit) by default: two serving
# processes and the rest of the machine still fit beside it.
DEFAULT_MEMORY_SHARE = 0.5
# After a request, freed memory is handed back to the system once the process holds more than this share of its
# ceiling: below it the freed blocks are kept, and the next request reuses them without faulting in fresh pages.
HAND_BACK_ABOVE_SHARE = 0.5
# The restore's own copies of the photo beside the model's feature maps, per pixel: the decoded upload, the input
# tensor, the three stage outputs and the converted result.
PHOTO_BYTES_PER_PIXEL = 3 * 4 * 6
MEMORY_LIMIT_VARIABLE = "MPRNET_MEMORY_LIMIT_MB"
NO_MEMORY_LIMIT = "off"


def total_memory_bytes() -> int:
    """The memory this process may use in all: the machine's, or its cgroup's limit (a container) when lower."""
    try:
        import psutil

        total = psutil.virtual_memory().total
    except ImportError:
        total = _meminfo_bytes("MemTotal") or 4 * 2**30  # unknown: assume a small machine
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            limit = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return total


def _meminfo_bytes(field: str) -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields[field].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


def memory_limit_bytes() -> int | None:
    """The serving memory ceiling in bytes from `MPRNET_MEMORY_LIMIT_MB` (megabytes, or "off" for none); unset, half
    of `total_memory_bytes`. ValueError saying what to set for anything else."""
    value = os.environ.get(MEMORY_LIMIT_VARIABLE, "").strip()
    if not value:
        return int(DEFAULT_MEMORY_SHARE * total_memory_bytes())
    if value.lower() == NO_MEMORY_LIMIT:
        return None
    try:
        megabytes = float(value)
    except ValueError:
        megabytes = math.nan
    if not math.isfinite(megabytes) or megabytes <= 0:
        raise ValueError(
            f"{MEMORY_LIMIT_VARIABLE} must be a positive number of megabytes (e.g. 4096) or {NO_MEMORY_LIMIT!r}, "
            f"got {short_repr(value)}"
        )
    return int(megabytes * 2**20)


def resident_bytes() -> int:
    """This process's resident memory (RSS)."""
    try:
        import psutil

        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _glibc_malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return getattr(libc, "malloc_trim", None)


def hand_back_memory() -> bool:
    """Returns the memory this process holds free to the system: Python's garbage first, then glibc's free heap pages
    (`malloc_trim(0)`, which releases them wherever they lie in the heap, whatever the trim threshold). Returns
    whether glibc was asked (False where it is not the C library)."""
    gc.collect()
    malloc_trim = _glibc_malloc_trim()
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


def heap_bytes_free() -> int:
    """Bytes glibc holds free for this process's next allocations (0 where that is unknown)."""
    return heap_bytes_free_for_reuse()


@dataclass
class MemoryCeiling:
    """The most memory a serving process may hold, `limit_bytes` (None: no ceiling). A request whose estimated peak
    does not fit under it beside what the process already uses is tiled (`available_bytes`) or refused (`check`);
    after a request the process hands freed memory back once it holds more than `HAND_BACK_ABOVE_SHARE` of it."""

    limit_bytes: int | None

    @classmethod
    def from_environment(cls) -> "MemoryCeiling":
        return cls(memory_limit_bytes())

    def in_use_bytes(self) -> int:
        """What the process holds and cannot give a restore: its RSS less the blocks glibc keeps free for reuse."""
        return max(0, resident_bytes() - heap_bytes_free())

    def available_bytes(self) -> int | None:
        """Memory a restore may still take under the ceiling (None: no ceiling)."""
        if self.limit_bytes is None:
            return None
        return max(0, self.limit_bytes - self.in_use_bytes())

    def check(self, needed_bytes: int, what: str) -> None:
        """Raises ValueError when `needed_bytes` more would pass the ceiling."""
        available = self.available_bytes()
        if available is None or needed_bytes <= available:
            return
        raise ValueError(
            f"{what} needs about {needed_bytes / 2**20:,.0f} MB, more than the {available / 2**20:,.0f} MB this "
            f"server may still use under its memory ceiling of {self.limit_bytes / 2**20:,.0f} MB "
            f"({MEMORY_LIMIT_VARIABLE}). Choose a smaller tile size under Advanced, or downscale the photo, and "
            "try again."
        )

    def after_request(self) -> bool:
        """Hands freed memory back when the process holds more than `HAND_BACK_ABOVE_SHARE` of the ceiling; returns
        whether it did."""
        if self.limit_bytes is None or resident_bytes() <= HAND_BACK_ABOVE_SHARE * self.limit_bytes:
            return False
        return hand_back_memory()


def photo_bytes(width: int, height: int) -> int:
    """Memory a restore holds for the photo itself, beside the model's feature maps (`PHOTO_BYTES_PER_PIXEL`)."""
    return PHOTO_BYTES_PER_PIXEL * width * height


__all__ = [
    "model_source",
    "load_models",
    "uploaded_file",
    "in_upload_words",
    "UPLOAD_ADVICE",
    "max_megapixels",
    "CostBound",
    "check_costs",
    "zerogpu_cost_bound",
    "cpu_cost_bound",
    "cpu_cost_bounds",
    "MemoryCeiling",
    "memory_limit_bytes",
    "hand_back_memory",
    "resident_bytes",
    "gpu_duration",
    "UPLOAD_REFUSED",
    "NO_IMAGE",
]

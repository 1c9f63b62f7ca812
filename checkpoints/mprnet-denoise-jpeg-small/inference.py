"""Inference helpers: tiled restoration with blended overlaps (bounded memory at any size), half precision,
and a one-call `restore_image` for PIL images that the app, the pipeline and scripts share.
"""

import contextlib
import functools
import logging
import math
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .image_processing_mprnet import MPRNetImageProcessor
from .modeling_mprnet import SIZE_MULTIPLE, MPRNetModel
from .whole_image_statistics import WholeImageStatistics, owned_spans

logger = logging.getLogger(__name__)

DEFAULT_TILE_SIZE = 512
DEFAULT_TILE_OVERLAP = 64
DEFAULT_STATISTICS_PASSES = 1
DEFAULT_MAX_MEGAPIXELS = 16.0
# The tile size meaning "let the memory available decide" (`choose_tile_size`): the default of every entry point.
AUTOMATIC = "auto"
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# The precision meaning "bf16 where the hardware runs it natively and it agrees with fp32, else fp32"
# (`choose_precision`): the default of `restore_image`, the pipeline, the CLI and the app.
AUTO_PRECISION = "auto"
PRECISION_CHOICES = (AUTO_PRECISION, *PRECISIONS)
# `auto` keeps bf16 only when its restore of a probe image agrees with fp32's by at least this PSNR. The bundled
# models agree at 50-61 dB on photos (the mprnet_hf project's performance docs); 45 dB is still far below what 8-bit
# output can show, and a model whose bf16 arithmetic goes wrong (overflowing activations, a layer that loses its
# precision) lands far below.
AGREEMENT_THRESHOLD_DB = 45.0
PROBE_SIDE = 96
# "1" or "0" declares whether this CPU runs bf16 natively instead of detecting it (`cpu_has_native_bf16`): a way to
# force fp32 process-wide, and what the tests use to simulate a CPU with or without it.
CPU_BF16_VARIABLE = "MPRNET_CPU_BF16"


def autocast_context(device: torch.device, precision: str):
    """Autocast for `precision` ("fp32", "bf16", "fp16") on `device`; fp16 is GPU-only."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is only supported on GPU; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=PRECISIONS[precision])


def check_precision(precision) -> None:
    """Raises ValueError naming the allowed values unless `precision` is one of `PRECISION_CHOICES`."""
    if not isinstance(precision, str) or precision not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")


def cpu_flags() -> set[str]:
    """The feature flags /proc/cpuinfo lists for this CPU (empty where there is no such file)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=1)
def detected_native_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic instructions (AVX512-BF16 or AMX), as PyTorch's own CPU probe and the
    kernel's flags report them. Not `torch.ops.mkldnn._is_mkldnn_bf16_supported()`: it is true on every AVX-512 CPU,
    where oneDNN only emulates bf16 by converting to fp32 (slower than fp32, not faster); nor the CPU's name."""
    probes = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(probes, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # a PyTorch build without the probe's backing library
            continue
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_has_native_bf16() -> bool:
    """`detected_native_bf16()`, unless the `MPRNET_CPU_BF16` environment variable ("1" or "0") says otherwise."""
    declared = os.environ.get(CPU_BF16_VARIABLE, "").strip()
    if not declared:
        return detected_native_bf16()
    if declared not in ("0", "1"):
        raise ValueError(f"{CPU_BF16_VARIABLE} must be 1, 0 or unset (detect), got {declared!r}")
    return declared == "1"


@dataclass(frozen=True)
class PrecisionChoice:
    """What `choose_precision` picked: a precision `autocast_context` takes, why, and the agreement it measured."""

    precision: str
    reason: str
    agreement_db: float | None = None


# Per model, the outcome of its agreement check (a model whose weights change after it was checked keeps it).
_AGREEMENT_CHECKS: "weakref.WeakKeyDictionary[torch.nn.Module, dict]" = weakref.WeakKeyDictionary()
# One check per model even when concurrent requests (the app's) ask at once.
_AGREEMENT_LOCK = threading.Lock()


def probe_image(side: int = PROBE_SIDE) -> torch.Tensor:
    """A (1, 3, side, side) image with what the models act on: smooth gradients, sharp edges at several
    orientations, fine noise; the same on every machine."""
    rows, columns = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    gradients = torch.stack([columns, rows, 1 - (rows + columns) / 2])
    squares = ((rows * 6).floor() + (columns * 6).floor()) % 2
    stripes = (torch.sin((rows + 2 * columns) * 40) > 0).float()
    noise = torch.rand(3, side, side, generator=torch.Generator().manual_seed(0))
    return (0.45 * gradients + 0.2 * squares + 0.15 * stripes + 0.2 * noise).clamp(0, 1)[None]


def psnr_db(first: torch.Tensor, second: torch.Tensor) -> float:
    """PSNR of two images in [0, 1] (clamped first: what 8-bit output keeps), inf when they are equal."""
    mse = (first.clamp(0, 1) - second.clamp(0, 1)).double().pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def bf16_agreement_db(model: MPRNetModel, side: int = PROBE_SIDE) -> float:
    """PSNR between the final stage of `model`'s bf16 and fp32 restores of `probe_image(side)`, untiled."""
    images = probe_image(side).to(next(model.parameters()).device)
    full = restore_tensor(model, images, tile_size=None, precision="fp32", return_stages=False)[-1]
    half = restore_tensor(model, images, tile_size=None, precision="bf16", return_stages=False)[-1]
    return psnr_db(half, full)


def choose_precision(
    model: MPRNetModel,
    precision: str = AUTO_PRECISION,
    agreement_threshold_db: float = AGREEMENT_THRESHOLD_DB,
    native_bf16: bool | None = None,
) -> PrecisionChoice:
    """The precision `model` restores with when asked for `precision`: any but "auto" as given; "auto" is bf16
    where the model's device runs bf16 natively (a CUDA GPU that supports it; a CPU with AVX512-BF16 or AMX,
    `cpu_has_native_bf16`, or `native_bf16` when given) and fp32 elsewhere (emulated bf16 is slower than fp32).

    Before "auto" first picks bf16 for a model, an agreement check restores `probe_image()` both ways: below
    `agreement_threshold_db` of PSNR between the two, the model stays on fp32 (a warning says so). The outcome is
    kept per model, so the check costs two small restores once per model and process."""
    check_precision(precision)
    if precision != AUTO_PRECISION:
        return PrecisionChoice(precision, "asked for")
    device = next(model.parameters()).device
    if device.type == "cuda":
        # Without including_emulation=False it is true on GPUs that only emulate bf16 (T4, V100), slower than fp32;
        # it asks the current device, so the model's is made current.
        with torch.cuda.device(device):
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        if not native:
            return PrecisionChoice("fp32", "this GPU has no native bf16")
    elif device.type == "cpu":
        if not (cpu_has_native_bf16() if native_bf16 is None else native_bf16):
            return PrecisionChoice("fp32", "this CPU has no native bf16 instructions (AVX512-BF16 or AMX)")
    else:
        return PrecisionChoice("fp32", f"bf16 is not used on {device.type}")
    key = (str(device), float(agreement_threshold_db))
    with _AGREEMENT_LOCK:
        checked = _AGREEMENT_CHECKS.setdefault(model, {})
        if key not in checked:
            agreement = bf16_agreement_db(model)
            if agreement >= agreement_threshold_db:
                checked[key] = PrecisionChoice("bf16", f"native bf16 on {device.type}", agreement)
            else:
                checked[key] = PrecisionChoice(
                    "fp32",
                    f"bf16 agreed with fp32 by {agreement:.1f} dB on the probe image, below the "
                    f"{agreement_threshold_db:g} dB required",
                    agreement,
                )
                logger.warning(f"precision='auto' keeps this model on fp32: {checked[key].reason}")
        return checked[key]


def resolve_precision(model: MPRNetModel, precision: str) -> str:
    """The precision `autocast_context` gets for `precision` ("auto" resolved by `choose_precision`)."""
    return choose_precision(model, precision).precision


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering `length`, neighbours overlapping by at least `overlap`."""
    if length <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_window(tile_h: int, tile_w: int, overlap: int, device, dtype=torch.float32) -> torch.Tensor:
    """Weights that ramp linearly over `overlap` pixels from each edge, so overlapping tiles cross-fade seamlessly."""

    def ramp(length):
        positions = torch.arange(length, device=device, dtype=dtype)
        distance_to_edge = torch.minimum(positions, length - 1 - positions) + 0.5
        return (distance_to_edge / max(overlap, 1)).clamp(1e-3, 1)

    return ramp(tile_h)[:, None] * ramp(tile_w)[None, :]


def check_tiling(tile_size: int, tile_overlap: int) -> None:
    """Raises ValueError unless the tile size and overlap can be used by `restore_tensor`."""
    if tile_size < 2 * SIZE_MULTIPLE or tile_size % SIZE_MULTIPLE:
        raise ValueError(
            f"tile_size must be a multiple of {SIZE_MULTIPLE} and at least {2 * SIZE_MULTIPLE}, got {tile_size}"
        )
    if not 0 <= tile_overlap < tile_size // 2:
        raise ValueError(f"tile_overlap must be between 0 and tile_size / 2 ({tile_size // 2}), got {tile_overlap}")


def check_statistics_passes(statistics_passes) -> None:
    if isinstance(statistics_passes, bool) or not isinstance(statistics_passes, int) or statistics_passes < 0:
        raise ValueError(
            f"statistics_passes must be a whole number >= 0 ({DEFAULT_STATISTICS_PASSES} by default), "
            f"got {statistics_passes!r}"
        )


def why_no_recorded_statistics(model: MPRNetModel) -> str | None:
    """Why tiled restores of `model` cannot take recorded whole-image statistics, or None when they can."""
    if model.config.local_attention_window:
        return "test-time local statistics are local already"
    if not callable(getattr(model, "channel_statistics", None)):
        # Stand-ins, and remote code saved before MPRNetModel declared its optional inference features.
        return (
            "its code has no MPRNetModel.channel_statistics() (remote code saved before it existed; install mprnet_hf)"
        )
    if model.forward_is_compiled:
        return "its forward is compiled with torch.compile, which does not run the override that records them"
    return None


def takes_recorded_statistics(model: MPRNetModel) -> bool:
    return why_no_recorded_statistics(model) is None


def fits_in_one_tile(height: int, width: int, tile_size: int | None) -> bool:
    """Whether `restore_tensor` restores the image whole: untiled, or no larger than one tile."""
    return tile_size is None or (height <= tile_size and width <= tile_size)


# Peak memory of an untiled fp32 CPU restore per pixel and per channel of (n_feat + ORSNet width), with a margin over
# what the mprnet_hf project's performance docs measure for the bundled and the released configurations: for a plain
# call, and in a process that reuses freed memory (`fast.reuse_freed_memory`, which the serving processes apply), where
# freed blocks fragment and the peak is higher.
PEAK_BYTES_PER_PIXEL_AND_CHANNEL = 40
PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY = 64
# Share of the free memory one restore may plan to use when nothing else is known: a library call runs in someone
# else's process, which may restore two images at once and needs memory of its own. Serving processes, which know how
# many restores they run at once, pass their own share (`serving_speed.serving_tile_size`).
MEMORY_SHARE_PER_RESTORE = 0.4
SMALLEST_AUTOMATIC_TILE = 256
# Automatic tile sides are multiples of this.
AUTOMATIC_TILE_STEP = 64


def peak_bytes_per_pixel(model: MPRNetModel, bytes_per_channel: int = PEAK_BYTES_PER_PIXEL_AND_CHANNEL) -> int:
    return bytes_per_channel * (model.config.n_feat + model.config.orsnet_width)


def estimated_peak_bytes(
    model: MPRNetModel, height: int, width: int, bytes_per_channel: int = PEAK_BYTES_PER_PIXEL_AND_CHANNEL
) -> int:
    """A generous estimate of the memory an untiled fp32 restore of a `height` x `width` image needs, at
    `bytes_per_channel` per pixel and channel (`PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY` in a process
    that reuses freed memory)."""
    padded_pixels = (height + -height % SIZE_MULTIPLE) * (width + -width % SIZE_MULTIPLE)
    return peak_bytes_per_pixel(model, bytes_per_channel) * padded_pixels


def free_memory_bytes(device: torch.device) -> int:
    """Memory a restore on `device` can use now: free GPU memory on CUDA, else the system's available memory."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    try:
        import psutil

        return psutil.virtual_memory().available
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as meminfo:
            fields = dict(line.split(":", 1) for line in meminfo)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 4 * 2**30  # unknown: assume a small machine


def choose_tile_size(
    model: MPRNetModel,
    height: int,
    width: int,
    device: torch.device | None = None,
    available_bytes: int | None = None,
    memory_share: float = MEMORY_SHARE_PER_RESTORE,
    bytes_per_channel: int = PEAK_BYTES_PER_PIXEL_AND_CHANNEL,
) -> int | None:
    """The tile size for restoring a `height` x `width` image from the memory available, or None to restore it
    whole (the fastest and exact path: no seams, no statistics pass).

    Whole when the estimated peak (`estimated_peak_bytes` at `bytes_per_channel`) fits in `memory_share` of the free
    memory of `device` (the model's device by default) or of `available_bytes`. Otherwise as few tiles as the largest
    square tile that fits allows, each made as small as that count permits (`balanced_tile_size`): a 2048² photo
    whose largest fitting tile is 1664 gets four tiles of 1088, not four of 1664 that overlap by more than half.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be at least 1, got {height}x{width}")
    if not 0 < memory_share <= 1:
        raise ValueError(f"memory_share must be in (0, 1], got {memory_share!r}")
    device = device or next(model.parameters()).device
    available = free_memory_bytes(device) if available_bytes is None else available_bytes
    budget = memory_share * available
    if estimated_peak_bytes(model, height, width, bytes_per_channel) <= budget:
        return None
    side_that_fits = int((budget / peak_bytes_per_pixel(model, bytes_per_channel)) ** 0.5)
    largest = max(SMALLEST_AUTOMATIC_TILE, side_that_fits // AUTOMATIC_TILE_STEP * AUTOMATIC_TILE_STEP)
    return balanced_tile_size(height, width, largest)


def balanced_tile_size(height: int, width: int, largest: int) -> int:
    """The smallest square tile side, a multiple of `AUTOMATIC_TILE_STEP` and at most `largest`, that covers a
    `height` x `width` image in as few tiles as tiles of `largest` do (with the default overlap). Fewer pixels are
    then restored twice: the work of a tiled restore is the tiles' total area."""
    overlap = default_tile_overlap(largest)

    def smallest_side_for(length: int) -> int:
        count = len(tile_starts(length, largest, overlap))
        if count == 1:
            return length
        return -(-(length - overlap) // count) + overlap  # the count's tiles, overlapping by `overlap`, cover it

    side = max(smallest_side_for(height), smallest_side_for(width))
    side = -(-side // AUTOMATIC_TILE_STEP) * AUTOMATIC_TILE_STEP
    return max(SMALLEST_AUTOMATIC_TILE, min(largest, side))


def passes_over_image(
    model: MPRNetModel,
    height: int,
    width: int,
    tile_size: int | None,
    statistics_passes: int = DEFAULT_STATISTICS_PASSES,
) -> int:
    """How many times `restore_tensor` runs `model` over every pixel of a `height` x `width` image: once untiled or
    when the image fits in one tile, else once per statistics pass plus the final one (what GPU time scales with)."""
    check_statistics_passes(statistics_passes)
    if fits_in_one_tile(height, width, tile_size) or not takes_recorded_statistics(model):
        return 1
    return 1 + statistics_passes


def default_tile_overlap(tile_size: int) -> int:
    """The overlap every entry point uses when none is given: `DEFAULT_TILE_OVERLAP`, at most a quarter of the tile
    (so every valid tile size has a valid default)."""
    return min(DEFAULT_TILE_OVERLAP, tile_size // 4)


@dataclass(frozen=True)
class Tiling:
    """How `restore_tensor` cuts an image into tiles, checked once when made (ValueError saying what is wrong).

    Args:
        size: the side of square tiles (a multiple of 8, at least 16); None restores images whole; `AUTOMATIC` (the
            default of every entry point) lets `choose_tile_size` decide from the memory available: whole when the
            image fits, else the largest tile that does.
        overlap: pixels over which neighbouring tiles cross-fade; None: `default_tile_overlap(size)`.
        statistics_passes: passes over the tiles that record the whole-image channel statistics the untiled model
            uses, before the final pass that uses them (see `restore_tensor`).
    """

    size: int | str | None = AUTOMATIC
    overlap: int | None = None
    statistics_passes: int = DEFAULT_STATISTICS_PASSES

    def __post_init__(self):
        if (
            self.size is not None
            and self.size != AUTOMATIC
            and (isinstance(self.size, bool) or not isinstance(self.size, int))
        ):
            raise ValueError(
                f"tile_size must be a whole number, None (whole images) or {AUTOMATIC!r}, got {self.size!r}"
            )
        if self.size == AUTOMATIC and self.overlap is not None and not 0 <= self.overlap < SMALLEST_AUTOMATIC_TILE // 2:
            # An automatic size is at least SMALLEST_AUTOMATIC_TILE: an overlap valid for it is valid for any.
            raise ValueError(
                f"tile_overlap must be between 0 and {SMALLEST_AUTOMATIC_TILE // 2} with automatic tiles "
                f"(at least {SMALLEST_AUTOMATIC_TILE} pixels), got {self.overlap}; or give a tile_size"
            )
        if self.size not in (None, AUTOMATIC):
            self.check_size(self.size)
        check_statistics_passes(self.statistics_passes)

    def check_size(self, tile_size: int) -> None:
        check_tiling(tile_size, self.overlap_for(tile_size))

    def overlap_for(self, tile_size: int) -> int:
        return default_tile_overlap(tile_size) if self.overlap is None else self.overlap

    def tile_size_for(self, model: MPRNetModel, height: int, width: int) -> int | None:
        """The tile size for a `height` x `width` image, or None to restore it whole."""
        return choose_tile_size(model, height, width) if self.size == AUTOMATIC else self.size


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one image lie, and how many statistics passes run over them."""

    tile_height: int
    tile_width: int
    overlap: int
    rows: list[int]
    columns: list[int]
    owned_rows: list[range]
    owned_columns: list[range]
    statistics_passes: int

    @property
    def tiles(self) -> int:
        return len(self.rows) * len(self.columns)

    def tile_windows(self):
        """(top, left, owned rows, owned columns) of every tile, row by row."""
        for top, row_span in zip(self.rows, self.owned_rows):
            for left, column_span in zip(self.columns, self.owned_columns):
                yield top, left, row_span, column_span


def plan_tiles(model: MPRNetModel, tiling: Tiling, height: int, width: int) -> TilePlan | None:
    """The tiles `restore_tensor` restores a `height` x `width` image in, or None when it restores it whole."""
    tile_size = tiling.tile_size_for(model, height, width)
    if fits_in_one_tile(height, width, tile_size):
        return None
    overlap = tiling.overlap_for(tile_size)
    tile_height, tile_width = min(tile_size, height), min(tile_size, width)
    rows, columns = tile_starts(height, tile_height, overlap), tile_starts(width, tile_width, overlap)
    statistics_passes = tiling.statistics_passes
    reason = why_no_recorded_statistics(model)
    if statistics_passes and reason:
        if not model.config.local_attention_window:
            logger.warning(f"Tiles are restored on their own channel statistics (statistics_passes=0): {reason}.")
        statistics_passes = 0
    return TilePlan(
        tile_height,
        tile_width,
        overlap,
        rows,
        columns,
        owned_spans(rows, tile_height, height),
        owned_spans(columns, tile_width, width),
        statistics_passes,
    )


StageRunner = Callable[[torch.Tensor, bool], list[torch.Tensor]]
# Another runner of the same model's fp32 arithmetic, (N, 3, H, W) images in, the stage images out, faster where it
# was chosen (a serving process passes its onnxruntime session). It knows no whole-image statistics override.
WholeImageRuntime = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


def stage_runner(
    model: MPRNetModel,
    precision: str,
    return_stages: bool,
    output_device,
    whole_image_runtime: WholeImageRuntime | None = None,
) -> StageRunner:
    """A function restoring a batch to its stage images (or the last only), float32 on `output_device`.

    At fp32 it runs through `whole_image_runtime` when given, unless asked for PyTorch: only PyTorch runs the
    whole-image statistics override.
    """
    device = next(model.parameters()).device
    precision = resolve_precision(model, precision)
    autocast = autocast_context(device, precision)
    runtime = whole_image_runtime if precision == "fp32" else None

    def run(images: torch.Tensor, needs_pytorch: bool = False) -> list[torch.Tensor]:
        if runtime is not None and not needs_pytorch:
            stages = runtime(images)
        else:
            with autocast:
                stages = model(images.to(device)).stage_reconstructions
        stages = stages if return_stages else stages[-1:]
        return [stage.float().to(output_device) for stage in stages]

    return run


def restore_whole(run: StageRunner, pixel_values: torch.Tensor, progress=None) -> tuple[torch.Tensor, ...]:
    outputs = run(pixel_values)
    if progress:
        progress(1, 1)
    return tuple(outputs)


def restore_tiled(
    model: MPRNetModel, run: StageRunner, pixel_values: torch.Tensor, plan: TilePlan, progress=None
) -> tuple[torch.Tensor, ...]:
    """Restores tile by tile, after `plan.statistics_passes` passes recording whole-image statistics, and
    cross-fades the final pass's tiles."""
    batch, _, height, width = pixel_values.shape
    tile_height, tile_width = plan.tile_height, plan.tile_width
    window = blend_window(tile_height, tile_width, plan.overlap, pixel_values.device)
    accumulated = None
    weights = torch.zeros(1, 1, height, width, device=pixel_values.device)
    statistics = WholeImageStatistics(model, height, width, batch)
    total, done = plan.tiles * (plan.statistics_passes + 1), 0
    with statistics.attached() if plan.statistics_passes else contextlib.nullcontext():
        for pass_index in range(plan.statistics_passes + 1):
            final = pass_index == plan.statistics_passes
            statistics.start_pass(record=not final)
            for top, left, row_span, column_span in plan.tile_windows():
                statistics.start_tile(top, left, tile_height, tile_width, row_span, column_span)
                tile = pixel_values[:, :, top : top + tile_height, left : left + tile_width]
                outputs = run(tile, plan.statistics_passes > 0)
                if final:
                    if accumulated is None:
                        accumulated = [
                            torch.zeros(batch, 3, height, width, device=pixel_values.device) for _ in outputs
                        ]
                    for buffer, output in zip(accumulated, outputs):
                        buffer[:, :, top : top + tile_height, left : left + tile_width] += output * window
                    weights[:, :, top : top + tile_height, left : left + tile_width] += window
                done += 1
                if progress:
                    progress(done, total)
    return tuple(buffer / weights for buffer in accumulated)


@torch.inference_mode()
def restore_tensor(
    model: MPRNetModel,
    pixel_values: torch.Tensor,
    tile_size: int | str | None = AUTOMATIC,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    return_stages: bool = True,
    progress: Callable[[int, int], None] | None = None,
    statistics_passes: int = DEFAULT_STATISTICS_PASSES,
    whole_image_runtime: WholeImageRuntime | None = None,
) -> tuple[torch.Tensor, ...]:
    """Restores a (N, 3, H, W) batch in [0, 1]; returns the stage images (stage 1, 2, 3) or only the final one.

    Images larger than a tile (`Tiling`: automatic by default, None for whole) are processed tile by tile and the
    tiles cross-faded over `tile_overlap` pixels, so peak memory depends on the tile size, not on the image size.
    Outputs are float32 on the CPU-side device of the input, not clamped.

    Tiled, each channel-attention block would average over the tile only; `statistics_passes` first runs that many
    passes over the tiles to record the whole-image averages the untiled model uses, and the final pass uses them
    (see `whole_image_statistics.py`). One pass (the default) doubles the time of a tiled restore and brings it
    much closer to the untiled output; 0 restores each tile on its own statistics (faster, less exact); more passes
    help only with tiles much smaller than the image. The mprnet_hf project's performance docs measure it.

    `precision` is "fp32" (the default here, exact), "bf16", "fp16" (GPU only) or "auto" (`choose_precision`: bf16
    where the hardware has it natively and the model agrees with fp32 on a probe image, else fp32).
    `whole_image_runtime` (`WholeImageRuntime`) runs the fp32 passes that need no recorded statistics.
    """
    MPRNetModel._check_pixel_values(pixel_values)
    tiling = Tiling(tile_size, tile_overlap, statistics_passes)
    run = stage_runner(model, precision, return_stages, pixel_values.device, whole_image_runtime)
    plan = plan_tiles(model, tiling, *pixel_values.shape[-2:])
    if plan is None:
        return restore_whole(run, pixel_values, progress)
    return restore_tiled(model, run, pixel_values, plan, progress)


@dataclass
class Restoration:
    """Result of `restore_image`: the restored image in the input's mode (alpha re-attached), and the RGB image of
    every stage; float32 (H, W, 3) arrays in [0, 1] instead when asked for `output_type="np"`."""

    image: Image.Image | np.ndarray
    stages: tuple[Image.Image | np.ndarray, ...]
    input_mode: str


class ImageRefused(ValueError):
    """An image refused for what it is (too large, missing, empty, unreadable). Its message says what is wrong and
    what to do in the library's terms; a front end words the advice in its own (a command-line flag, an upload) with
    `advised`, keyed by `kind`."""

    def __init__(self, problem: str, advice: str, kind: str):
        super().__init__(f"{problem}. {advice}")
        self.problem, self.advice, self.kind = problem, advice, kind

    def advised(self, advice: dict[str, str]) -> str:
        """The message with the front end's advice for this kind of refusal, or as it stands when it has none."""
        return f"{self.problem}. {advice[self.kind]}" if self.kind in advice else str(self)


def check_pixel_count(image: Image.Image, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> None:
    megapixels = image.size[0] * image.size[1] / 1e6
    if megapixels > max_megapixels:
        raise ImageRefused(
            f"The image is {image.size[0]}x{image.size[1]} ({megapixels:.1f} megapixels), above the limit of "
            f"{max_megapixels:g} megapixels",
            "Downscale it, or raise the limit (max_megapixels).",
            kind="too_large",
        )


def restore_image(
    model: MPRNetModel,
    image,
    processor: MPRNetImageProcessor | None = None,
    tile_size: int | str | None = AUTOMATIC,
    tile_overlap: int | None = None,
    precision: str = AUTO_PRECISION,
    max_megapixels: float | None = DEFAULT_MAX_MEGAPIXELS,
    progress: Callable[[int, int], None] | None = None,
    statistics_passes: int = DEFAULT_STATISTICS_PASSES,
    output_type: str = "pil",
    whole_image_runtime: WholeImageRuntime | None = None,
) -> Restoration:
    """Restores one image (PIL, numpy or tensor) end to end: EXIF orientation, any mode, tiling, back to PIL.
    `output_type="np"` returns float32 RGB arrays in [0, 1] instead, for a caller keeping more than 8 bits (it
    re-attaches any alpha itself).

    `precision="auto"` (the default) runs bf16 on hardware with native bf16 where the model passes the agreement
    check (`choose_precision`), fp32 elsewhere; "fp32" forces exact float32 arithmetic.
    """
    check_precision(precision)
    processor = processor or MPRNetImageProcessor()
    if max_megapixels is not None and isinstance(image, Image.Image):
        check_pixel_count(image, max_megapixels)
    inputs = processor(images=image, return_tensors="pt")
    stages = restore_tensor(
        model,
        inputs["pixel_values"],
        tile_size,
        tile_overlap,
        precision,
        progress=progress,
        statistics_passes=statistics_passes,
        whole_image_runtime=whole_image_runtime,
    )
    restored = processor.postprocess(stages[-1], inputs, output_type=output_type)[0]
    sizes = inputs["original_sizes"]
    stage_images = tuple(processor.postprocess(stage, sizes, output_type=output_type)[0] for stage in stages)
    return Restoration(image=restored, stages=stage_images, input_mode=inputs["original_modes"][0])


__all__ = [
    "restore_tensor",
    "restore_image",
    "Restoration",
    "ImageRefused",
    "check_pixel_count",
    "check_tiling",
    "Tiling",
    "WholeImageRuntime",
    "AUTOMATIC",
    "autocast_context",
    "AUTO_PRECISION",
    "PRECISION_CHOICES",
    "AGREEMENT_THRESHOLD_DB",
    "PrecisionChoice",
    "choose_precision",
    "resolve_precision",
    "check_precision",
    "cpu_has_native_bf16",
    "detected_native_bf16",
    "bf16_agreement_db",
    "tile_starts",
    "passes_over_image",
    "choose_tile_size",
    "balanced_tile_size",
    "estimated_peak_bytes",
]

r"""PSNR/SSIM of a restoration model, the degraded input and classical baselines, with the official protocols.

    # paired folder: input/ + target/ (deraining sets, SIDD) or GoPro-style <scene>/blur + <scene>/sharp
    python -m mprnet_hf.evaluation.evaluate --model checkpoints/mprnet-derain-small --task derain --data Rain100L \
        --baselines
    # clean photos degraded with the library's seeded degradations (seed = image index in sorted order)
    python -m mprnet_hf.evaluation.evaluate --model checkpoints/mprnet-denoise-small --task denoise \
        --data data/dev/val --synthetic --sigma 25 --baselines --json results/denoise-25.json

Protocols of the official evaluation scripts (MATLAB for deblurring and deraining). Every image is scored as 8-bit:
restored outputs are clamped to [0, 1] and rounded to uint8 (round half to even, as `img_as_ubyte` does when the
official scripts save PNGs).
  rgb  PSNR and SSIM on the RGB uint8 arrays, data range 255 (deblurring and denoising; no border crop).
  y    PSNR and SSIM on the luma of BT.601 (`skimage.color.rgb2ycbcr`, Y in [16, 235]) rounded to integers, as
       MATLAB's `rgb2ycbcr` returns for uint8 input, data range 255 (deraining).
PSNR is `skimage.metrics.peak_signal_noise_ratio`. SSIM is `skimage.metrics.structural_similarity` pinned to the
original Wang et al. (2004) index that the official scripts use: Gaussian-weighted 11x11 window with sigma 1.5,
K1 = 0.01, K2 = 0.03, `use_sample_covariance=False`, the mean over the valid part of the map (scikit-image crops
the window radius), and for RGB the mean over channels (`channel_axis=-1`). See `SSIM_SETTINGS`.

Synthetic degradations (`--synthetic`), on the clean photo as loaded (8-bit), re-quantised to uint8 afterwards as if
saved to PNG so that model, baselines and the "input" row see the same pixels:
  denoise  additive white Gaussian noise of `--sigma` (8-bit scale, default 25), clipped;
  deblur   a random camera-shake kernel (`motion_blur_kernel`, 17x17) applied with `blur`; the kernel is kept so the
           Wiener baseline can use it. With `--shake-extent MIN-MAX` the extent is drawn in [MIN, MAX] pixels, the
           trajectory style at random, on a grid just large enough to hold it;
  derain   `add_rain` with random streaks.
`--jpeg Q` then re-encodes every degraded input as a JPEG of quality Q (`jpeg_compress`), as photos arrive from
phones and browsers; the baselines are still told the true sigma or kernel of the degradation before it.
"""

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ..auto import restore_image_auto
from ..data.degradations import TRAJECTORY_STYLES, add_gaussian_noise, add_rain, blur, jpeg_compress, motion_blur_kernel
from ..detection.detector import DegradationDetector
from ..detection.jpeg_grid import shows_jpeg_grid
from ..hub.bundled import JPEG_DENOISE, WEIGHT_LOAD_ERRORS
from ..models.mprnet.configuration_mprnet import TASKS
from ..models.mprnet.inference import AUTOMATIC, DEFAULT_TILE_OVERLAP, default_tile_overlap, restore_tensor
from ..models.mprnet.modeling_mprnet import MPRNetModel
from ..training.data import FOLDER_PAIRS, find_pairs, list_images
from . import foreign
from .baselines import BASELINES, NEEDS_KERNEL, SLOW_BASELINES

PROTOCOLS = ("rgb", "y")
DEFAULT_PROTOCOL = {"deblur": "rgb", "denoise": "rgb", "derain": "y"}
DEFAULT_SIGMA = 25.0
MOTION_KERNEL_SIZE = 17  # the size of the first training blur kernels, kept so the "deblur" row stays comparable
# The original SSIM index (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5, truncated at 3.5 sigma -> radius 5).
SSIM_SETTINGS = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "K1": 0.01, "K2": 0.03}
DATA_RANGE = 255.0


# ---------------------------------------------------------------------------------------------------- images
@dataclass
class Sample:
    """One evaluation image: the degraded and clean uint8 (H, W, 3) arrays, and what is known of the degradation."""

    name: str
    degraded: np.ndarray
    clean: np.ndarray
    sigma: float | None = None  # noise level on the [0, 1] scale, when known
    kernel: np.ndarray | None = None  # blur kernel, when known


def load_uint8(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def to_uint8(image) -> np.ndarray:
    """(3, H, W) tensor or (H, W, 3) float array in [0, 1] to uint8 (H, W, 3): clamp, scale, round half to even."""
    if isinstance(image, torch.Tensor):
        image = image.detach().float().cpu().permute(1, 2, 0).numpy()
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def to_float(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1).contiguous()


# ---------------------------------------------------------------------------------------------------- metrics
def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 Y in [16, 235] of a uint8 RGB image, rounded to integers like MATLAB's rgb2ycbcr on uint8 input."""
    return np.round(rgb2ycbcr(image)[..., 0])


def prepare(image: np.ndarray, protocol: str) -> np.ndarray:
    if protocol not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if image.dtype != np.uint8:
        raise ValueError(f"Metrics are computed on uint8 images, got {image.dtype}")
    return luma(image) if protocol == "y" else image


def psnr(result: np.ndarray, reference: np.ndarray, protocol: str = "rgb") -> float:
    reference, result = prepare(reference, protocol), prepare(result, protocol)
    return float(peak_signal_noise_ratio(reference, result, data_range=DATA_RANGE))


def ssim(result: np.ndarray, reference: np.ndarray, protocol: str = "rgb") -> float:
    channel_axis = -1 if protocol == "rgb" else None
    return float(
        structural_similarity(
            prepare(reference, protocol),
            prepare(result, protocol),
            data_range=DATA_RANGE,
            channel_axis=channel_axis,
            **SSIM_SETTINGS,
        )
    )


# ---------------------------------------------------------------------------------------------------- data
def paired_samples(root, sigma: float | None = None, limit: int | None = None) -> Iterator[Sample]:
    """The pairs under `root`, loaded one at a time (a test set of full-HD pairs does not fit in memory at once)."""
    pairs = find_pairs(root)
    if not pairs:
        layouts = ", ".join(f"{degraded}/ + {clean}/" for degraded, clean in FOLDER_PAIRS)
        raise ValueError(
            f"No degraded/clean pairs under {root} (looked for {layouts}); "
            "for a folder of clean photos, add --synthetic"
        )

    def load(name, degraded_path, clean_path) -> Sample:
        degraded, clean = load_uint8(degraded_path), load_uint8(clean_path)
        if degraded.shape != clean.shape:
            raise ValueError(f"{degraded_path} is {degraded.shape[:2]} but {clean_path} is {clean.shape[:2]}")
        return Sample(name, degraded, clean, sigma=sigma)

    return (load(*pair) for pair in pairs[:limit])


def shake_kernel(rng: np.random.Generator, extent: tuple[float, float]) -> np.ndarray:
    """A camera-shake kernel of an extent drawn in [min, max] pixels and a random trajectory style, on the smallest
    odd grid that holds the largest extent (motion_blur_kernel keeps a pixel of margin on each side)."""
    low, high = extent
    length = rng.uniform(low, high)
    style = str(rng.choice(TRAJECTORY_STYLES))
    size = 2 * math.ceil((high + 2) / 2) + 1
    return motion_blur_kernel(size, rng, length=length, style=style)


def parse_extent(text: str) -> tuple[float, float]:
    """'MIN-MAX' in pixels, 1 <= MIN <= MAX <= 64."""
    try:
        low, high = (float(value) for value in text.split("-"))
    except ValueError:
        raise ValueError(f"Shake extent {text!r} is not MIN-MAX in pixels, e.g. 10-17") from None
    if not 1 <= low <= high <= 64:
        raise ValueError(f"Shake extent {text!r}: need 1 <= MIN <= MAX <= 64 pixels")
    return low, high


def synthetic_degradation(
    clean: torch.Tensor,
    task: str,
    seed: int,
    sigma: float = DEFAULT_SIGMA,
    shake_extent: tuple[float, float] | None = None,
) -> tuple[torch.Tensor, np.ndarray | None]:
    """The evaluation degradation of a clean (3, H, W) image and the blur kernel (None unless deblurring).

    `sigma` is on the 8-bit scale; `shake_extent` (deblurring) draws the shake's extent in that range of pixels
    instead of the 17x17 kernels. Same seed, same result.
    """
    rng = np.random.default_rng(seed)
    if task == "denoise":
        return add_gaussian_noise(clean, sigma / 255, rng), None
    if task == "deblur":
        kernel = shake_kernel(rng, shake_extent) if shake_extent else motion_blur_kernel(MOTION_KERNEL_SIZE, rng)
        return blur(clean, kernel), kernel
    if task == "derain":
        return add_rain(clean, rng), None
    raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}")


def synthetic_samples(
    folder,
    task: str,
    sigma: float = DEFAULT_SIGMA,
    limit: int | None = None,
    shake_extent: tuple[float, float] | None = None,
) -> Iterator[Sample]:
    """The clean photos in `folder` with their seeded degradation (seed = index in sorted order), one at a time."""
    paths = list_images(folder)[:limit]
    if not paths:
        raise ValueError(f"No images found in {folder}")
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}")

    def load(index, path) -> Sample:
        clean = load_uint8(path)
        degraded, kernel = synthetic_degradation(
            to_tensor(clean), task, seed=index, sigma=sigma, shake_extent=shake_extent
        )
        known_sigma = sigma / 255 if task == "denoise" else None
        return Sample(str(path.relative_to(folder)), to_uint8(degraded), clean, known_sigma, kernel)

    return (load(index, path) for index, path in enumerate(paths))


def foreign_samples(folder, key: str, limit: int | None = None) -> Iterator[Sample]:
    """The clean photos in `folder` degraded by the foreign set `key` (`evaluation.foreign`; seed = index in sorted
    order), one at a time, each with the photo it is scored against (`foreign.reference`: for a centred motion-blur set,
    the clean photo moved to the centre of the blur). Nothing of the degradation is known to the baselines: the noise
    level is estimated."""
    item = foreign.get(key)
    reason = foreign.available(item.generator)
    if reason:
        raise ValueError(reason)
    paths = list_images(folder)[:limit]
    if not paths:
        raise ValueError(f"No images found in {folder}")

    def load(index, path) -> Sample:
        clean = load_uint8(path)
        degraded = foreign.degrade(item, clean, index)
        return Sample(str(path.relative_to(folder)), degraded, foreign.reference(item, clean, index))

    return (load(index, path) for index, path in enumerate(paths))


def as_jpeg(samples: Iterable[Sample], quality: int) -> Iterator[Sample]:
    """The samples with their degraded image re-encoded as a JPEG of `quality`; what is known of the degradation
    before it (sigma, kernel) is kept."""
    for sample in samples:
        yield replace(sample, degraded=to_uint8(jpeg_compress(to_tensor(sample.degraded), quality)))


# ---------------------------------------------------------------------------------------------------- methods
Method = Callable[[Sample], np.ndarray | None]  # returns the restored uint8 image, or None when it cannot run


def model_method(
    model,
    tile_size: int | str | None = AUTOMATIC,
    tile_overlap: int | None = None,
    precision: str = "fp32",
    jpeg_model=None,
) -> Method:
    """The model as a row; with `jpeg_model` (a JPEG denoiser), that model restores the photos that carry JPEG's
    grid, as the app and the command line do (`auto.ModelChoice`). `restore.jpeg_photos` counts those photos."""

    def restore(sample: Sample) -> np.ndarray:
        chosen = model
        if jpeg_model is not None and shows_jpeg_grid(sample.degraded):
            chosen = jpeg_model
            restore.jpeg_photos += 1
        (restored,) = restore_tensor(
            chosen, to_tensor(sample.degraded)[None], tile_size, tile_overlap, precision, return_stages=False
        )
        return to_uint8(restored[0])

    restore.jpeg_photos = 0
    return restore


AUTO_MODE = "auto mode"


class AutoModeMethod:
    """Auto mode as a row (`restore_image_auto`): the detector looks at the degraded photo and the restorations it
    asks for run in order, the photo coming back unchanged when it looks clean. The model evaluated serves its own
    task, the bundled models the others. `steps` keeps what ran on each photo, by sample name."""

    def __init__(
        self,
        model: MPRNetModel | None = None,
        detector: DegradationDetector | None = None,
        tile_size: int | str | None = AUTOMATIC,
        tile_overlap: int | None = None,
        jpeg_model: MPRNetModel | None = None,
    ):
        self.model, self.detector, self.tile_size, self.tile_overlap = model, detector, tile_size, tile_overlap
        self.jpeg_model = jpeg_model
        self.steps: dict[str, list[str]] = {}

    def __call__(self, sample: Sample) -> np.ndarray:
        models = self.model
        if self.jpeg_model is not None:
            models = {self.model.config.task: self.model, JPEG_DENOISE: self.jpeg_model}
        restoration = restore_image_auto(
            models,
            Image.fromarray(sample.degraded),
            self.detector,
            tile_size=self.tile_size,
            tile_overlap=self.tile_overlap,
            precision="fp32",  # as the model's row
            max_megapixels=None,
        )
        self.steps[sample.name] = list(restoration.steps)
        return np.asarray(restoration.image.convert("RGB"))


def baseline_method(name: str, function) -> Method:
    def restore(sample: Sample) -> np.ndarray | None:
        if name in NEEDS_KERNEL and sample.kernel is None:
            return None
        return to_uint8(function(to_float(sample.degraded), sigma=sample.sigma, kernel=sample.kernel))

    return restore


def first_images_only(method: Method, limit: int) -> Method:
    """`method` on the first `limit` samples it is given, None (not scored) after that: bounds a slow baseline."""
    calls = 0

    def restore(sample: Sample) -> np.ndarray | None:
        nonlocal calls
        calls += 1
        return method(sample) if calls <= limit else None

    return restore


def methods_for(
    task: str,
    model=None,
    model_name: str = "mprnet",
    baselines: bool = False,
    tile_size: int | str | None = AUTOMATIC,
    tile_overlap: int | None = None,
    slow_baselines: bool = False,
    slow_limit: int | None = None,
    auto: bool = False,
    detector: DegradationDetector | None = None,
    jpeg_model=None,
) -> dict[str, Method]:
    """The rows of the table in order: the degraded input, the model, auto mode (with `auto`: `AutoModeMethod`),
    the task's baselines, then its slow baselines (BM3D: about a minute per photo and channel), on the first
    `slow_limit` images when given."""
    methods: dict[str, Method] = {"input": lambda sample: sample.degraded}
    if model is not None:
        methods[model_name] = model_method(model, tile_size, tile_overlap, jpeg_model=jpeg_model)
    if auto:
        methods[AUTO_MODE] = AutoModeMethod(model, detector, tile_size, tile_overlap, jpeg_model)
    if baselines:
        methods.update({name: baseline_method(name, function) for name, function in BASELINES[task].items()})
    if slow_baselines:
        for name, function in SLOW_BASELINES[task].items():
            method = baseline_method(name, function)
            methods[name] = first_images_only(method, slow_limit) if slow_limit is not None else method
    return methods


# ---------------------------------------------------------------------------------------------------- evaluation
@dataclass
class MethodSummary:
    psnr: float
    ssim: float
    seconds_per_image: float
    images: int


@dataclass
class Evaluation:
    task: str
    protocol: str
    per_image: list[dict] = field(default_factory=list)  # {"name", "height", "width", "scores": {method: {psnr, ssim}}}
    summary: dict[str, MethodSummary] = field(default_factory=dict)

    def to_json(self, **extra) -> dict:
        return {
            "task": self.task,
            "protocol": self.protocol,
            "ssim_settings": {**SSIM_SETTINGS, "win_size": 11},
            **extra,
            "summary": {name: vars(item) for name, item in self.summary.items()},
            "images": self.per_image,
        }


def evaluate(
    samples: Iterable[Sample],
    methods: dict[str, Method],
    task: str,
    protocol: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Runs every method on every sample and scores the uint8 results against the clean images."""
    protocol = protocol or DEFAULT_PROTOCOL[task]
    evaluation = Evaluation(task, protocol)
    seconds = {name: 0.0 for name in methods}
    for sample in samples:
        scores = {}
        for name, method in methods.items():
            start = time.perf_counter()
            restored = method(sample)
            seconds[name] += time.perf_counter() - start
            if restored is not None:
                scores[name] = {
                    "psnr": psnr(restored, sample.clean, protocol),
                    "ssim": ssim(restored, sample.clean, protocol),
                }
        height, width = sample.clean.shape[:2]
        entry = {"name": sample.name, "height": height, "width": width, "scores": scores}
        steps = {
            name: method.steps[sample.name] for name, method in methods.items() if isinstance(method, AutoModeMethod)
        }
        if steps:
            entry["steps"] = steps  # the restorations auto mode ran on this photo
        evaluation.per_image.append(entry)
        if progress:
            progress(sample.name)
    for name in methods:
        scored = [image["scores"][name] for image in evaluation.per_image if name in image["scores"]]
        if scored:
            evaluation.summary[name] = MethodSummary(
                psnr=float(np.mean([score["psnr"] for score in scored])),
                ssim=float(np.mean([score["ssim"] for score in scored])),
                seconds_per_image=seconds[name] / len(scored),
                images=len(scored),
            )
    return evaluation


def format_tables(evaluation: Evaluation) -> str:
    """Markdown: the mean per method, then PSNR / SSIM per image and method."""
    names = list(evaluation.summary)
    lines = [
        f"Task {evaluation.task}, protocol {evaluation.protocol} "
        f"({'Y of BT.601' if evaluation.protocol == 'y' else 'RGB'}, uint8), {len(evaluation.per_image)} images",
        "",
        "| method | PSNR (dB) | SSIM | seconds / image |",
        "|---|---|---|---|",
    ]
    for name, item in evaluation.summary.items():
        lines.append(f"| {name} | {item.psnr:.2f} | {item.ssim:.4f} | {item.seconds_per_image:.2f} |")
    lines += ["", "| image | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for image in evaluation.per_image:
        cells = [
            f"{image['scores'][name]['psnr']:.2f} / {image['scores'][name]['ssim']:.4f}"
            if name in image["scores"]
            else "-"
            for name in names
        ]
        lines.append(f"| {image['name']} | " + " | ".join(cells) + " |")
    means = [f"{evaluation.summary[name].psnr:.2f} / {evaluation.summary[name].ssim:.4f}" for name in names]
    lines.append("| **mean** | " + " | ".join(means) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model",
        help="model folder or Hub id (MPRNetModel.from_pretrained); omit to score only the input and the baselines",
    )
    parser.add_argument("--task", choices=TASKS, help="default: the model's config.task")
    parser.add_argument("--data", required=True, help="a paired folder, or clean photos with --synthetic")
    parser.add_argument("--synthetic", action="store_true", help="degrade the clean photos in --data (seed = index)")
    parser.add_argument(
        "--foreign",
        metavar="GENERATOR/SET",
        help="degrade the clean photos in --data with a third-party library instead (mprnet_hf.evaluation.foreign; "
        "e.g. albumentations/rain-heavy-streaks, kornia/motion-blur); the task is the set's",
    )
    parser.add_argument("--protocol", choices=PROTOCOLS, help="default: y for derain, rgb otherwise")
    parser.add_argument(
        "--sigma",
        type=float,
        help=f"noise level on the 8-bit scale: with --synthetic the Gaussian "
        f"noise added (default {DEFAULT_SIGMA:g}); on paired data the level given to the denoising "
        "baselines (default: estimated per image)",
    )
    parser.add_argument(
        "--shake-extent",
        help="with --synthetic --task deblur: camera shake of an extent drawn in "
        "MIN-MAX pixels (e.g. 10-17) and a random trajectory style, instead of the 17x17 kernels",
    )
    parser.add_argument(
        "--jpeg",
        type=int,
        metavar="QUALITY",
        help="re-encode every degraded input as a JPEG of this quality (1-95) before restoring it",
    )
    parser.add_argument("--baselines", action="store_true", help="also run the classical baselines of the task")
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also score auto mode: the degradation detector chooses the restorations (--model serves its own task, "
        "the bundled models the others); the JSON result keeps the steps run on each photo",
    )
    parser.add_argument("--detector", help="the detector folder of --auto (default: the bundled one)")
    parser.add_argument(
        "--jpeg-model",
        help="with denoising: a JPEG denoiser folder that restores the photos carrying JPEG's 8×8 grid, in the model's "
        "row and in auto mode, as the app does with the bundled one (default: none in the model's row; auto mode "
        "adds the bundled one where --model is the bundled denoise model)",
    )
    parser.add_argument(
        "--bm3d",
        action="store_true",
        help="also run BM3D (CBM3D with the true or estimated sigma "
        "for denoising, BM3D deblurring with the true kernel): slow, needs `pip install bm3d`",
    )
    parser.add_argument("--bm3d-limit", type=int, metavar="N", help="run BM3D on the first N images only")
    parser.add_argument(
        "--tile-size",
        type=int,
        help="restore in tiles of this size (multiple of 8; default: "
        "automatic, whole images when memory allows; 0: always whole images)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        help=f"overlap of neighbouring tiles (default "
        f"{DEFAULT_TILE_OVERLAP}, at most a quarter of the tile: inference.default_tile_overlap)",
    )
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--json", help="write the per-image and mean scores to this file")
    parser.add_argument("--num-threads", type=int, help="CPU threads (torch.set_num_threads)")
    args = parser.parse_args(argv)
    if args.foreign:
        if args.synthetic:
            parser.error("--foreign and --synthetic each choose how the clean photos are degraded: give one")
        try:
            item = foreign.get(args.foreign)
        except ValueError as error:
            parser.error(str(error))
        if args.task and args.task != item.task:
            parser.error(f"{args.foreign} is a {item.task} set, --task says {args.task}")
        args.task = item.task
        generator = args.foreign.split("/")[0]
        if importlib.util.find_spec(generator) is None:
            parser.error(f'--foreign {args.foreign} needs {generator}: pip install "mprnet-hf[eval]" (the eval extra)')
    if not args.model and not args.task:
        parser.error("give --task (or --model, whose config names the task)")
    if args.detector and not args.auto:
        parser.error("--detector is auto mode's: give --auto too")
    if args.sigma is not None and args.sigma <= 0:
        parser.error("--sigma must be positive")
    if args.jpeg is not None and not 1 <= args.jpeg <= 95:
        parser.error("--jpeg must be a quality between 1 and 95")
    if args.bm3d_limit is not None and args.bm3d_limit < 0:
        parser.error("--bm3d-limit must be 0 or more")
    if args.shake_extent:
        if not args.synthetic or args.foreign:
            parser.error("--shake-extent needs --synthetic (it chooses how the clean photos are blurred)")
        try:
            args.shake_extent = parse_extent(args.shake_extent)
        except ValueError as error:
            parser.error(str(error))
    return args


def load_or_exit(load: Callable, source: str, option: str):
    """`load(source)`, or the command's exit with what was given and what to give instead."""
    try:
        return load(source)
    except WEIGHT_LOAD_ERRORS as error:
        raise SystemExit(
            f"mprnet-evaluate: error: {option} {source!r} could not be loaded ({error}). Give a folder written by "
            "save_pretrained, or a Hub id (online, or already in the cache)."
        ) from None


def main(argv=None) -> Evaluation:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    model = None
    if args.model:
        model = load_or_exit(MPRNetModel.from_pretrained, args.model, "--model").eval()
    detector = load_or_exit(DegradationDetector.from_pretrained, args.detector, "--detector") if args.detector else None
    jpeg_model = None
    if args.jpeg_model:
        jpeg_model = load_or_exit(MPRNetModel.from_pretrained, args.jpeg_model, "--jpeg-model").eval()
    task = args.task or model.config.task
    if model is not None and model.config.task != task:
        print(f"warning: the model was trained for {model.config.task!r}, evaluated on {task!r}", file=sys.stderr)
    if args.shake_extent and task != "deblur":
        raise ValueError(f"--shake-extent is a deblurring protocol, the task is {task!r}")
    if args.jpeg_model and (task != "denoise" or model is None):
        raise ValueError("--jpeg-model goes with denoising and a --model")
    if args.synthetic:
        samples = synthetic_samples(args.data, task, args.sigma or DEFAULT_SIGMA, args.limit, args.shake_extent)
    elif args.foreign:
        samples = foreign_samples(args.data, args.foreign, args.limit)
    else:
        samples = paired_samples(args.data, args.sigma / 255 if args.sigma else None, args.limit)
    if args.jpeg:
        samples = as_jpeg(samples, args.jpeg)
    model_name = Path(args.model.rstrip("/")).name if args.model else "mprnet"
    tile_size = AUTOMATIC if args.tile_size is None else args.tile_size or None
    tile_overlap = args.tile_overlap
    if tile_overlap is None and args.tile_size:
        tile_overlap = default_tile_overlap(args.tile_size)
    methods = methods_for(
        task,
        model,
        model_name,
        baselines=args.baselines,
        tile_size=tile_size,
        tile_overlap=tile_overlap,
        slow_baselines=args.bm3d,
        slow_limit=args.bm3d_limit,
        auto=args.auto,
        detector=detector,
        jpeg_model=jpeg_model,
    )
    evaluation = evaluate(
        samples, methods, task, args.protocol, progress=lambda name: print(f"  scored {name}", file=sys.stderr)
    )
    print(format_tables(evaluation))
    if args.json:
        extra = {
            "model": args.model,
            "data": str(args.data),
            "synthetic": args.synthetic,
            "foreign": args.foreign,
            "sigma": (args.sigma or DEFAULT_SIGMA) if args.synthetic and task == "denoise" else args.sigma,
            "tile_size": args.tile_size,
            "tile_overlap": tile_overlap,
            "jpeg_quality": args.jpeg,
            "shake_extent": list(args.shake_extent) if args.shake_extent else None,
            "bm3d_limit": args.bm3d_limit if args.bm3d else None,
            "detector": (args.detector or "bundled") if args.auto else None,
            "jpeg_model": args.jpeg_model,
            "jpeg_photos": getattr(methods.get(model_name), "jpeg_photos", None) if args.jpeg_model else None,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(evaluation.to_json(**extra), indent=2))
    return evaluation


def command(argv=None) -> None:
    """The command line (`mprnet-evaluate`, `python -m`): `main`, with the library's ValueError for bad input (an
    empty folder, unpaired files) said in one line instead of a traceback."""
    try:
        main(argv)
    except ValueError as error:
        raise SystemExit(f"mprnet-evaluate: error: {error}") from None


if __name__ == "__main__":
    command()

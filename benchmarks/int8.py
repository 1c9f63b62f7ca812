"""onnxruntime int8 (static quantization) against onnxruntime fp32 and PyTorch fp32, side by side in one process:
speed of a whole-image restore, and agreement with PyTorch fp32 (the probe image of the serving check, which must
reach `AGREEMENT_THRESHOLD_DB` for a backend to be offered, and the photos) and PSNR against the clean photo.

The int8 graph is the serving export (`serving_speed.exported_model_path`) quantized by
`onnxruntime.quantization.quantize_static`: QDQ format, per-channel weights, MinMax calibration on crops of the task's
bundled examples (examples/<task>/*.png). The photos measured are the bundled examples that have a clean original
(examples/clean) and centre crops of the development validation photos (data/dev/val) degraded by the library's
seeded degradation of the task; the calibration never sees those crops.

Examples:
  python -m benchmarks.int8                                # the three bundled small models, 512² timing, 2 threads
  python -m benchmarks.int8 --tasks deblur --size 256 --variants s8s8
Results are merged into benchmarks/results/int8.json.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.common import RESULTS_DIR, format_table, merge_results, parse_list, run_metadata
from benchmarks.photos import square_photo, to_tensor, val_photos

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "examples"
# The degraded examples made from a clean photo (examples/SOURCES.md); the real blurred licence plate has none.
CLEAN_OF_EXAMPLE = {
    "coffee_motion.png": "coffee.png",
    "fruits_rain.png": "fruits.png",
    "building_rain.png": "building.png",
    "monarch_noise.png": "monarch.png",
    "squirrel_noise.png": "squirrel_cls.png",
}
# Instruction sets that decide how fast onnxruntime's int8 kernels can be: VNNI does a u8 x s8 dot product in one
# instruction; without it AVX2 needs three and can saturate (onnxruntime's reason for reduce_range).
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")
VARIANTS = {
    # onnxruntime's default: signed activations and weights.
    "s8s8": dict(activation="QInt8", weight="QInt8", reduce_range=False),
    # The combination onnxruntime advises on x86 CPUs without VNNI: 7-bit weights keep AVX2's u8 x s8 sums in range.
    "u8s8-reduced": dict(activation="QUInt8", weight="QInt8", reduce_range=True),
}


def calibration_crops(task: str, crop: int) -> list[np.ndarray]:
    """The four corner crops of each bundled example of `task`, as (1, 3, crop, crop) float32 arrays."""
    crops = []
    for path in sorted((EXAMPLES / task).glob("*.png")):
        image = to_tensor(Image.open(path))
        _, height, width = image.shape
        for top, left in ((0, 0), (0, width - crop), (height - crop, 0), (height - crop, width - crop)):
            crops.append(image[None, :, top : top + crop, left : left + crop].numpy().copy())
    return crops


class CropReader:
    """The `CalibrationDataReader` protocol of onnxruntime.quantization over a list of crops."""

    def __init__(self, crops: list[np.ndarray]):
        self.crops = iter(crops)

    def get_next(self):
        crop = next(self.crops, None)
        return None if crop is None else {"pixel_values": crop}


def quantize(fp32_path: Path, output: Path, crops: list[np.ndarray], variant: str) -> float:
    """Writes the int8 graph of `variant` to `output`; returns the seconds calibration and quantization took."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    settings = VARIANTS[variant]
    started = time.perf_counter()
    # onnxruntime's advised pre-processing (graph optimization, shapes); the export without it where it fails.
    prepared = output.with_name(f"{output.stem}-prepared.onnx")
    try:
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    except Exception as error:  # any failure leaves the plain export, said here
        print(f"pre-processing failed ({type(error).__name__}: {error}); quantizing the export as it is")
        prepared = fp32_path
    quantize_static(
        str(prepared),
        str(output),
        CropReader(crops),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        reduce_range=settings["reduce_range"],
        activation_type=getattr(QuantType, settings["activation"]),
        weight_type=getattr(QuantType, settings["weight"]),
        calibrate_method=CalibrationMethod.MinMax,
    )
    return time.perf_counter() - started


def photos(task: str, crop: int) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(name, degraded (1, 3, H, W), clean (1, 3, H, W)) of the bundled examples and the validation crops."""
    from mprnet_hf.data.degradations import degrade

    found = []
    for path in sorted((EXAMPLES / task).glob("*.png")):
        if path.name in CLEAN_OF_EXAMPLE:
            degraded = to_tensor(Image.open(path))[None]
            clean = to_tensor(Image.open(EXAMPLES / "clean" / CLEAN_OF_EXAMPLE[path.name]))[None]
            found.append((f"examples/{task}/{path.name}", degraded, clean))
    for path in val_photos():
        clean = square_photo(crop, path)
        found.append((f"val/{path.name}", degrade(clean, task, seed=0)[None], clean[None]))
    return found


def best_and_median(function, images, rounds: int) -> tuple[float, float]:
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        function(images)
        seconds.append(time.perf_counter() - started)
    return min(seconds), statistics.median(seconds)


def measure_task(task: str, args, int8_dir: Path) -> list[dict]:
    from benchmarks.common import psnr
    from mprnet_hf.hub.bundled import bundled_checkpoint
    from mprnet_hf.models.mprnet.inference import cpu_has_native_bf16, probe_image, psnr_db, restore_tensor
    from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel
    from mprnet_hf.speed.fast import optimize_for_inference
    from mprnet_hf.speed.serving_speed import OnnxRuntimeRestorer, exported_model_path

    model = optimize_for_inference(MPRNetModel.from_pretrained(bundled_checkpoint(task)).eval())
    fp32_path = exported_model_path(model)  # the serving cache: the graph the app would serve
    crops = calibration_crops(task, args.calibration_crop)

    def torch_restore(precision):
        return lambda images: restore_tensor(model, images, tile_size=None, precision=precision)[-1]

    def onnx_restore(restorer):
        return lambda images: restorer(images)[-1]

    backends = {"torch fp32": (torch_restore("fp32"), None)}
    if cpu_has_native_bf16():
        backends["torch bf16"] = (torch_restore("bf16"), None)
    backends["onnxruntime fp32"] = (onnx_restore(OnnxRuntimeRestorer(fp32_path, args.threads)), None)
    for variant in args.variants:
        int8_path = int8_dir / f"{fp32_path.stem}-int8-{variant}.onnx"
        quantize_seconds = quantize(fp32_path, int8_path, crops, variant)
        backends[f"onnxruntime int8 {variant}"] = (
            onnx_restore(OnnxRuntimeRestorer(int8_path, args.threads)),
            round(quantize_seconds, 1),
        )

    probe = probe_image()
    measured = photos(task, args.photo_size)
    reference_probe = backends["torch fp32"][0](probe)
    reference_photos = [backends["torch fp32"][0](degraded) for _, degraded, _ in measured]
    timing_images = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    rows = []
    for name, (restore, quantize_seconds) in backends.items():
        restore(timing_images[:, :, :64, :64])  # a first call's set-up is not what serving pays
        # Each backend's calls back to back: a runtime's worker threads spin on after a call and would slow another's.
        best_s, median_s = best_and_median(restore, timing_images, args.rounds)
        outputs = [restore(degraded) for _, degraded, _ in measured]
        agreement = [psnr_db(output, reference) for output, reference in zip(outputs, reference_photos)]
        to_clean = [psnr(clean, output.clamp(0, 1)) for output, (_, _, clean) in zip(outputs, measured)]
        reference_to_clean = [psnr(clean, ref.clamp(0, 1)) for ref, (_, _, clean) in zip(reference_photos, measured)]
        probe_agreement = psnr_db(restore(probe), reference_probe)
        reference = name == "torch fp32"
        rows.append(
            dict(
                task=task,
                backend=name,
                size=args.size,
                threads=args.threads,
                best_s=round(best_s, 3),
                median_s=round(median_s, 3),
                probe_agreement_db=None if reference else round(probe_agreement, 2),
                worst_photo_agreement_db=None if reference else round(min(agreement), 2),
                mean_psnr_vs_clean=round(statistics.mean(to_clean), 2),
                worst_change_vs_clean_db=round(min(a - b for a, b in zip(to_clean, reference_to_clean)), 2),
                photos=len(measured),
                quantize_s=quantize_seconds,
            )
        )
    fp32_best = rows[0]["best_s"]
    for row in rows:
        row["speed_vs_torch_fp32"] = round(fp32_best / row["best_s"], 2)
        agreement = row["probe_agreement_db"]
        row["offered"] = "reference" if agreement is None else ("yes" if agreement >= args.threshold else "no")
    return rows


COLUMNS = [
    ("task", "task", ""),
    ("backend", "backend", ""),
    ("best s", "best_s", ".3f"),
    ("median s", "median_s", ".3f"),
    ("× torch fp32", "speed_vs_torch_fp32", ".2f"),
    ("probe agreement dB", "probe_agreement_db", ".1f"),
    ("worst photo agreement dB", "worst_photo_agreement_db", ".1f"),
    ("mean PSNR vs clean", "mean_psnr_vs_clean", ".2f"),
    ("worst change vs clean dB", "worst_change_vs_clean_db", "+.2f"),
    ("passes the check", "offered", ""),
    ("quantize s", "quantize_s", ".1f"),
]


def main(argv=None):
    from mprnet_hf.models.mprnet.inference import AGREEMENT_THRESHOLD_DB, cpu_flags

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="deblur,derain,denoise")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"int8 settings among {', '.join(VARIANTS)}")
    parser.add_argument("--size", type=int, default=512, help="side of the timed whole-image restore")
    parser.add_argument("--rounds", type=int, default=3, help="timed calls per backend (best and median reported)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calibration-crop", type=int, default=128)
    parser.add_argument("--photo-size", type=int, default=256, help="side of the validation crops measured")
    parser.add_argument("--threshold", type=float, default=AGREEMENT_THRESHOLD_DB)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "int8.json")
    args = parser.parse_args(argv)
    args.variants = parse_list(args.variants)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown --variants {', '.join(sorted(unknown))}: choose among {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    present = [flag for flag in INT8_FLAGS if flag in flags]
    meta = run_metadata("benchmarks.int8", argv, cpu_flags=present)
    found = ", ".join(present) or "none"
    print(f"{meta['cpu']}, {meta['logical_cpus']} logical CPUs; int8/bf16 flags present: {found}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mprnet-int8-") as folder:
        for task in parse_list(args.tasks):
            rows += measure_task(task, args, Path(folder))
            print(format_table([row for row in rows if row["task"] == task], COLUMNS), flush=True)
    merge_results(args.output, rows, ("task", "backend", "size", "threads"), meta)
    print(f"\n{format_table(rows, COLUMNS)}")


if __name__ == "__main__":
    main()

"""Which model size to bundle: for each preset, its weights (parameters, MB of fp32 safetensors), its training
throughput on the CPU (samples per second and per CPU-second of one optimizer step, batch 4 x 128²), the time of one
512² photo, and, from training logs given with --curves, the validation PSNR it reached per CPU-hour. bf16 rows are
measured only where the CPU has native bf16 (`cpu_has_native_bf16`); elsewhere autocast emulates it slowly.

Examples:
  python -m benchmarks.model_sizes                                     # tiny, small, released derain widths
  python -m benchmarks.model_sizes --presets small --threads 1 \\
      --curves small=checkpoints/mprnet-derain-small/training_log.jsonl
Results are merged into benchmarks/results/model_sizes.json. The bundle's limits: at most 20 MB of weights, and a
512² photo in at most 3 s on two cores.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS_DIR,
    emit_result,
    format_table,
    merge_results,
    parse_list,
    row_with_load,
    run_metadata,
    run_worker,
)
from mprnet_hf.models.mprnet.inference import autocast_context, cpu_has_native_bf16

BUNDLE_MEGABYTES = 20.0
BUNDLE_SECONDS_AT_512 = 3.0
CURVE_HOURS = (0.25, 0.5, 1.0, 2.0)


def fits_the_bundle(megabytes: float, photo_512_s: float, threads: int) -> str:
    """Whether a size fits the bundle's limits; its speed counts only when measured on the two cores the limit is
    set for."""
    if megabytes > BUNDLE_MEGABYTES:
        return "no (size)"
    if threads != 2:
        return "size yes; speed: measure with --threads 2"
    return "yes" if photo_512_s <= BUNDLE_SECONDS_AT_512 else "no (speed)"


def worker(spec: dict) -> dict:
    from mprnet_hf.models.mprnet.configuration_mprnet import MPRNetConfig
    from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig.for_task(spec["task"], size=spec["preset"]))
    model.to(memory_format=torch.channels_last)
    device = torch.device("cpu")
    parameters = sum(parameter.numel() for parameter in model.parameters())

    def timed(step, repeats: int, warmup: int) -> tuple[float, float]:
        for _ in range(warmup):
            step()
        walls, cpus = [], []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            step()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        return statistics.median(walls), statistics.median(cpus)

    batch = torch.rand(spec["batch_size"], 3, spec["patch_size"], spec["patch_size"])
    batch = batch.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def training_step():
        with autocast_context(device, spec["precision"]):
            loss = model(pixel_values=batch, labels=batch.flip(-1)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    step_wall, step_cpu = timed(training_step, spec["steps"], 2)

    model.eval()
    photo = torch.rand(1, 3, 512, 512).contiguous(memory_format=torch.channels_last)

    def restore_photo():
        with torch.inference_mode(), autocast_context(device, spec["precision"]):
            model(pixel_values=photo)

    photo_wall, _ = timed(restore_photo, spec["photo_repeats"], 1)
    samples = spec["batch_size"]
    return {
        "row": dict(
            task=spec["task"],
            preset=spec["preset"],
            precision=spec["precision"],
            threads=spec["threads"],
            parameters=parameters,
            megabytes=round(parameters * 4 / 1e6, 2),
            step_s=round(step_wall, 3),
            samples_per_s=round(samples / step_wall, 2),
            samples_per_cpu_s=round(samples / max(step_cpu, 1e-9), 2),
            photo_512_s=round(photo_wall, 3),
        )
    }


def psnr_at_hours(log_path: Path, threads: int = 1) -> dict[str, float]:
    """The best validation PSNR a training log had reached by each of `CURVE_HOURS` CPU-hours (its `seconds` are
    wall-clock seconds of a run on `threads` threads), and its last point."""
    points = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    points = [(point["seconds"] * threads / 3600, point["val_psnr"]) for point in points if "val_psnr" in point]
    if not points:
        raise ValueError(f"{log_path} holds no validation points (lines with 'seconds' and 'val_psnr')")
    reached = {}
    for hours in CURVE_HOURS:
        seen = [psnr for when, psnr in points if when <= hours]
        reached[f"psnr_at_{hours:g}h"] = round(max(seen), 2) if seen else None
    reached["cpu_hours_logged"] = round(points[-1][0], 2)
    reached["best_psnr"] = round(max(psnr for _, psnr in points), 2)
    return reached


def parse_curves(text: str | None) -> dict[str, Path]:
    curves = {}
    for item in parse_list(text or ""):
        preset, _, path = item.partition("=")
        if not path:
            raise ValueError(f"--curves item {item!r}: expected PRESET=PATH to a training_log.jsonl")
        curves[preset.strip()] = Path(path.strip())
    return curves


COLUMNS = [
    ("task", "task", ""),
    ("preset", "preset", ""),
    ("precision", "precision", ""),
    ("threads", "threads", ""),
    ("parameters", "parameters", ",d"),
    ("MB", "megabytes", ".2f"),
    ("s/step (4x128²)", "step_s", ".3f"),
    ("samples/s", "samples_per_s", ".2f"),
    ("samples/CPU-s", "samples_per_cpu_s", ".2f"),
    ("512² photo s", "photo_512_s", ".3f"),
    ("fits the bundle", "fits", ""),
]
CURVE_COLUMNS = [("preset", "preset", ""), ("log", "log", "")] + [
    (f"PSNR by {hours:g} CPU-h", f"psnr_at_{hours:g}h", ".2f") for hours in CURVE_HOURS
]
CURVE_COLUMNS += [("CPU-h logged", "cpu_hours_logged", ".2f"), ("best PSNR", "best_psnr", ".2f")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="tiny,small,released", help="comma-separated: tiny, small, released")
    parser.add_argument("--task", default="derain", help="whose released widths the 'released' preset takes")
    parser.add_argument("--precisions", default="fp32,bf16", help="bf16 is skipped where the CPU lacks native bf16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed training steps per case (median reported)")
    parser.add_argument("--photo-repeats", type=int, default=3)
    parser.add_argument("--curves", help="PRESET=training_log.jsonl,... : validation PSNR per CPU-hour from these logs")
    parser.add_argument("--curve-threads", type=int, default=1, help="threads the logged runs trained on")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return
    try:
        curves = parse_curves(args.curves)
    except ValueError as error:
        parser.error(str(error))
    precisions = parse_list(args.precisions)
    if "bf16" in precisions and not cpu_has_native_bf16():
        print("bf16 skipped: this CPU has no native bf16 (avx512_bf16 or AMX)")
        precisions.remove("bf16")
    new_rows = []
    for preset in parse_list(args.presets):
        for precision in precisions:
            spec = dict(
                task=args.task,
                preset=preset,
                precision=precision,
                threads=args.threads,
                batch_size=args.batch_size,
                patch_size=args.patch_size,
                steps=args.steps,
                photo_repeats=args.photo_repeats,
            )
            result = run_worker("benchmarks.model_sizes", spec)
            row = row_with_load(result)
            row["fits"] = fits_the_bundle(row["megabytes"], row["photo_512_s"], args.threads)
            new_rows.append(row)
            print(f"{preset} {precision}: {row['step_s']:.3f} s/step, 512² in {row['photo_512_s']:.3f} s", flush=True)
    meta = run_metadata("benchmarks.model_sizes", argv, cpu_capability=torch.backends.cpu.get_cpu_capability())
    output = RESULTS_DIR / "model_sizes.json"
    keys = ("task", "preset", "precision", "threads", "batch_size")
    rows = merge_results(output, [dict(row, batch_size=args.batch_size) for row in new_rows], keys, meta)
    print(format_table(rows, COLUMNS))
    if curves:
        curve_rows = [
            dict(preset=preset, log=str(path), **psnr_at_hours(path, args.curve_threads))
            for preset, path in curves.items()
        ]
        print(format_table(curve_rows, CURVE_COLUMNS))
    print(f"results: {output}")


if __name__ == "__main__":
    main()

"""Half precision: what `mprnet_hf.models.mprnet.inference.autocast_context` supports here, and how far bf16 (CPU) or
bf16/fp16 (GPU) autocast output is from float32 on a photo.

Examples:
  python -m benchmarks.precision                          # the three small checkpoints, bf16 on CPU
  python -m benchmarks.precision --configs deblur --size 256   # released deblur config, random weights
  python -m benchmarks.precision --device cuda --precision bf16,fp16
Results are merged into benchmarks/results/precision.json.
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
    psnr,
    run_metadata,
    run_worker,
)
from benchmarks.tiled import SMALL_CHECKPOINTS, load_model

PRECISIONS = ("fp32", "bf16", "fp16")


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def support_rows() -> list[dict]:
    """One row per (device, precision): whether autocast_context accepts it and whether the hardware has native
    support (otherwise the arithmetic is emulated and slow)."""
    from mprnet_hf.models.mprnet.inference import autocast_context

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for precision in PRECISIONS:
            try:
                autocast_context(torch.device(device), precision)
                accepted, note = True, ""
            except ValueError as error:
                accepted, note = False, str(error)
            if device == "cpu" and precision == "bf16":
                native = bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})
                note = note or (
                    "native bf16 instructions (avx512_bf16/amx_bf16)"
                    if native
                    else "no native bf16 instructions: emulated, slower than fp32"
                )
            elif device == "cuda" and precision == "bf16":
                note = note or ("supported by this GPU" if torch.cuda.is_bf16_supported() else "needs Ampere or newer")
            rows.append(dict(device=device, precision=precision, accepted=accepted, note=note))
    return rows


def worker(spec: dict) -> dict:
    from benchmarks.photos import square_photo
    from mprnet_hf.data.degradations import degrade
    from mprnet_hf.models.mprnet.inference import autocast_context

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    model = load_model(spec["model"], spec["config"]).to(device)
    task = model.config.task
    clean = square_photo(spec["size"])
    images = degrade(clean, task, seed=0)[None].to(device)

    def restore(precision):
        seconds = []
        for _ in range(spec["repeats"]):
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            with torch.inference_mode(), autocast_context(device, precision):
                output = model(images).reconstruction.float()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - started)
        return output.clamp(0, 1).cpu(), statistics.median(seconds)

    reference, fp32_seconds = restore("fp32")
    rows = []
    for precision in spec["precisions"]:
        output, seconds = restore(precision)
        rows.append(
            dict(
                model=spec["model"] or f"{spec['config']} (released, random weights)",
                task=task,
                device=spec["device"],
                size=spec["size"],
                precision=precision,
                psnr_vs_fp32=round(psnr(reference, output), 2),
                max_abs_diff=round((output - reference).abs().max().item(), 5),
                psnr_vs_clean=round(psnr(clean[None], output), 2),
                fp32_psnr_vs_clean=round(psnr(clean[None], reference), 2),
                median_s=round(seconds, 3),
                fp32_median_s=round(fp32_seconds, 3),
            )
        )
    return {"rows": rows}


COLUMNS = [
    ("model", "model", ""),
    ("device", "device", ""),
    ("size", "size", ""),
    ("precision", "precision", ""),
    ("PSNR vs fp32 dB", "psnr_vs_fp32", ".2f"),
    ("max abs diff", "max_abs_diff", ".4f"),
    ("PSNR vs clean", "psnr_vs_clean", ".2f"),
    ("fp32 vs clean", "fp32_psnr_vs_clean", ".2f"),
    ("median s", "median_s", ".3f"),
    ("fp32 median s", "fp32_median_s", ".3f"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated checkpoint folders (default: the three small ones)")
    parser.add_argument("--configs", help="comma-separated released configs with random weights, instead of --models")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", default=None, help="comma-separated, default bf16 on CPU, bf16,fp16 on GPU")
    parser.add_argument("--size", type=int, default=512, help="square crop of the photo")
    parser.add_argument("--repeats", type=int, default=2, help="runs per precision (median time; first is warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return

    print(
        format_table(
            support_rows(),
            [
                ("device", "device", ""),
                ("precision", "precision", ""),
                ("autocast_context", "accepted", ""),
                ("note", "note", ""),
            ],
        )
    )
    precisions = parse_list(args.precision or ("bf16" if args.device == "cpu" else "bf16,fp16"))
    sources = (
        [(None, config) for config in parse_list(args.configs)]
        if args.configs
        else [(model, None) for model in (parse_list(args.models) if args.models else SMALL_CHECKPOINTS.values())]
    )
    new_rows = []
    for model, config in sources:
        spec = dict(
            model=model,
            config=config,
            device=args.device,
            size=args.size,
            precisions=precisions,
            repeats=args.repeats,
            threads=args.threads,
        )
        result = run_worker("benchmarks.precision", spec)
        for row in result["rows"]:
            new_rows.append(dict(row, load_before=result["load_before"]))
            print(f"{row['model']} {row['precision']}: {row['psnr_vs_fp32']:.2f} dB vs fp32", flush=True)
    meta = run_metadata("benchmarks.precision", argv, support=support_rows())
    output = RESULTS_DIR / "precision.json"
    rows = merge_results(output, new_rows, ("model", "device", "size", "precision"), meta)
    print(format_table(rows, COLUMNS))
    print(f"results: {output}")


if __name__ == "__main__":
    main()

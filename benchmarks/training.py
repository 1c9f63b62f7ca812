"""Training speed: the median time of one optimizer step (forward with the training loss, backward, Adam) for a
preset, precision and memory layout, each case in a fresh process.

Examples:
  python -m benchmarks.training                                  # small preset, 4x128², fp32/bf16 x both layouts
  python -m benchmarks.training --presets small --precisions bf16 --layouts channels_last --batch-size 8 --patch-size 64
  python -m benchmarks.training --device cuda --presets released --batch-size 16 --patch-size 256 --precisions bf16
Results are merged into benchmarks/results/training.json.
"""

import argparse
import json
import statistics
import time

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
from mprnet_hf.models.mprnet.inference import autocast_context

LAYOUTS = ("contiguous", "channels_last")


def worker(spec: dict) -> dict:
    from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel
    from mprnet_hf.training.train import build_config

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    model = MPRNetModel(build_config("deblur", spec["preset"])).to(device).train()
    shape = (spec["batch_size"], 3, spec["patch_size"], spec["patch_size"])
    degraded, clean = torch.rand(shape, device=device), torch.rand(shape, device=device)
    if spec["layout"] == "channels_last":
        model.to(memory_format=torch.channels_last)
        degraded = degraded.contiguous(memory_format=torch.channels_last)
        clean = clean.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    # fp16 needs loss scaling, as `accelerate` does it; bf16 and fp32 do not.
    scaler = torch.amp.GradScaler(device.type, enabled=spec["precision"] == "fp16")

    def step():
        with autocast_context(device, spec["precision"]):
            loss = model(pixel_values=degraded, labels=clean).loss
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(spec["warmup"]):
        step()
    seconds = []
    for _ in range(spec["steps"]):
        synchronize()
        started = time.perf_counter()
        step()
        synchronize()
        seconds.append(time.perf_counter() - started)
    median = statistics.median(seconds)
    pixels = spec["batch_size"] * spec["patch_size"] ** 2
    return {
        "row": dict(
            preset=spec["preset"],
            device=spec["device"],
            batch_size=spec["batch_size"],
            patch_size=spec["patch_size"],
            precision=spec["precision"],
            layout=spec["layout"],
            threads=spec["threads"],
            median_ms=round(median * 1000, 1),
            min_ms=round(min(seconds) * 1000, 1),
            steps_per_s=round(1 / median, 2),
            megapixels_per_s=round(pixels / median / 1e6, 3),
            parameters=sum(parameter.numel() for parameter in model.parameters()),
        )
    }


COLUMNS = [
    ("preset", "preset", ""),
    ("device", "device", ""),
    ("batch", "batch_size", ""),
    ("patch", "patch_size", ""),
    ("precision", "precision", ""),
    ("layout", "layout", ""),
    ("median ms/step", "median_ms", ".1f"),
    ("steps/s", "steps_per_s", ".2f"),
    ("training MP/s", "megapixels_per_s", ".3f"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="small", help="comma-separated: small, released, tiny")
    parser.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16 (GPU)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="comma-separated: " + ", ".join(LAYOUTS))
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--patch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return
    layouts = parse_list(args.layouts)
    precisions = parse_list(args.precisions)
    unknown = set(layouts) - set(LAYOUTS)
    if unknown:
        parser.error(f"unknown layout {', '.join(sorted(unknown))}: expected {', '.join(LAYOUTS)}")
    for precision in precisions:
        try:  # the library's own check: known precision, and no fp16 on CPU
            autocast_context(torch.device(args.device), precision)
        except ValueError as error:
            parser.error(str(error))

    new_rows = []
    for preset in parse_list(args.presets):
        for precision in precisions:
            for layout in layouts:
                spec = dict(
                    preset=preset,
                    precision=precision,
                    layout=layout,
                    device=args.device,
                    batch_size=args.batch_size,
                    patch_size=args.patch_size,
                    steps=args.steps,
                    warmup=args.warmup,
                    threads=args.threads,
                )
                result = run_worker("benchmarks.training", spec)
                row = row_with_load(result)
                new_rows.append(row)
                print(f"{preset} {precision} {layout}: {row['median_ms']:.1f} ms/step", flush=True)
    meta = run_metadata("benchmarks.training", argv)
    output = RESULTS_DIR / "training.json"
    keys = ("preset", "device", "batch_size", "patch_size", "precision", "layout", "threads")
    rows = merge_results(output, new_rows, keys, meta)
    print(format_table(rows, COLUMNS))
    print(f"results: {output}")


if __name__ == "__main__":
    main()

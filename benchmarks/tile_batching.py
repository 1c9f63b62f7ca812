"""Whether restoring tiles in batches would pay: N tiles of one size through the model one at a time against the same
N tiles as one batch, side by side in one process (the two take turns round by round, so a drift of the machine's
speed falls on both).

    python -m benchmarks.tile_batching --tile 512 --tiles 4 --rounds 5 [--reuse-freed-memory]
    python -m benchmarks.tile_batching --device cuda --precision bf16 --tile 512 --tiles 8

Channel attention is per sample, so a batch gives each tile the same output as alone (checked here, printed as the
largest difference). Prints the medians, the paired ratio batched / one at a time, and the peak memory of each way on
a GPU.
"""

import argparse
import statistics
import time

import torch

from benchmarks.common import format_table
from mprnet_hf import MPRNetModel
from mprnet_hf.hub.bundled import bundled_checkpoint
from mprnet_hf.models.mprnet.inference import autocast_context
from mprnet_hf.speed.fast import reuse_freed_memory


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(restore, device: torch.device) -> tuple[float, torch.Tensor]:
    synchronize(device)
    started = time.perf_counter()
    output = restore()
    synchronize(device)
    return time.perf_counter() - started, output


def peak_gpu_bytes(restore, device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats(device)
    restore()
    return torch.cuda.max_memory_allocated(device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="deblur", choices=("deblur", "derain", "denoise"))
    parser.add_argument("--tile", type=int, default=512, help="side of each square tile, px")
    parser.add_argument("--tiles", type=int, default=4, help="tiles per batch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    parser.add_argument(
        "--reuse-freed-memory", action="store_true", help="apply the app's and the CLI's allocator setting first"
    )
    args = parser.parse_args(argv)
    if args.reuse_freed_memory:
        reuse_freed_memory()

    device = torch.device(args.device)
    model = MPRNetModel.from_pretrained(bundled_checkpoint(args.task)).eval().to(device)
    tiles = torch.rand(args.tiles, 3, args.tile, args.tile, generator=torch.Generator().manual_seed(0)).to(device)
    precision = autocast_context(device, args.precision)

    def one_at_a_time():
        with torch.inference_mode(), precision:
            return torch.cat([model(tile[None]).reconstruction for tile in tiles])

    def batched():
        with torch.inference_mode(), precision:
            return model(tiles).reconstruction

    one_at_a_time(), batched()  # warm-up: layouts, kernels
    times = {"one at a time": [], "batched": []}
    difference = 0.0
    for round_index in range(args.rounds):
        order = ("one at a time", "batched") if round_index % 2 == 0 else ("batched", "one at a time")
        outputs = {}
        for name in order:
            seconds, outputs[name] = timed(one_at_a_time if name == "one at a time" else batched, device)
            times[name].append(seconds)
        difference = max(difference, (outputs["batched"] - outputs["one at a time"]).abs().max().item())
    ratios = [batched_s / alone_s for batched_s, alone_s in zip(times["batched"], times["one at a time"])]

    allocator = ", freed memory reused" if args.reuse_freed_memory else ""
    setting = f"{device.type}, {args.precision}{allocator}"
    print(f"{args.task}, {args.tiles} tiles of {args.tile}², {setting}, {args.rounds} rounds")
    rows = []
    for name, restore in (("one at a time", one_at_a_time), ("batched", batched)):
        peak = peak_gpu_bytes(restore, device)
        median = statistics.median(times[name])
        rows.append({"way": name, "median": median, "per_tile": median / args.tiles, "peak": peak and peak // 2**20})
    columns = [("way", "way", ""), ("median s", "median", ".3f"), ("per tile s", "per_tile", ".3f")]
    print(format_table(rows, [*columns, ("peak GPU memory MiB", "peak", "")]))
    print(
        f"paired batched / one at a time: median {statistics.median(ratios):.3f} "
        f"(range {min(ratios):.3f}-{max(ratios):.3f}); largest output difference {difference:.2e}"
    )


if __name__ == "__main__":
    main()

"""How many feature maps one inference call allocates above glibc's mmap limit, by top-level operation, and the page
faults and time of a warm call.

    python -m benchmarks.large_allocations --checkpoint checkpoints/mprnet-deblur-small --size 1024

Under the default allocator each allocation above 32 MiB (glibc's largest automatic mmap threshold on 64-bit Linux)
is a fresh memory mapping whose pages fault in one by one, so their count and bytes say what a plain `model(x)` pays
that a process with `speed.fast.reuse_freed_memory()` does not. The allocations are read from the PyTorch profiler
(`profile_memory=True`): every operation that allocates at least `--threshold-mib` itself, credited to the top-level
operation it ran under. Prints a table; run it in a process of its own (it changes nothing, but the profiler's
overhead would distort other measurements).
"""

import argparse
import collections
import resource
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import format_table
from mprnet_hf import MPRNetModel

MIB = 2**20


def top_level(event):
    while event.cpu_parent is not None:
        event = event.cpu_parent
    return event


def large_allocations(model: MPRNetModel, images: torch.Tensor, threshold_bytes: int) -> dict[str, list[int]]:
    """Sizes of the allocations of at least `threshold_bytes` made by one call, keyed by top-level operation."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        model(images)
    allocations = collections.defaultdict(list)
    for event in profiler.events():
        # Frees show as negative "[memory]" events; an operation's own allocations as its self memory usage.
        if event.name != "[memory]" and event.self_cpu_memory_usage >= threshold_bytes:
            allocations[top_level(event).name].append(event.self_cpu_memory_usage)
    return allocations


def faults_and_seconds(model: MPRNetModel, images: torch.Tensor) -> tuple[int, float]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    model(images)
    seconds = time.perf_counter() - started
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="checkpoints/mprnet-deblur-small")
    parser.add_argument("--size", type=int, default=1024, help="side of the square input, px")
    parser.add_argument("--threshold-mib", type=float, default=32.0)
    parser.add_argument("--calls", type=int, default=2, help="timed warm calls")
    args = parser.parse_args(argv)

    model = MPRNetModel.from_pretrained(args.checkpoint).eval()
    images = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model(images)
        allocations = large_allocations(model, images, int(args.threshold_mib * MIB))
        timings = [faults_and_seconds(model, images) for _ in range(args.calls)]

    print(f"{args.checkpoint}, {args.size}x{args.size}, allocations of at least {args.threshold_mib:g} MiB per call")
    every = [size for sizes in allocations.values() for size in sizes]
    rows = [
        {"operation": name, "allocations": len(sizes), "gib": sum(sizes) / 2**30}
        for name, sizes in [*sorted(allocations.items(), key=lambda item: -sum(item[1])), ("all", every)]
    ]
    columns = [("top-level operation", "operation", ""), ("allocations", "allocations", ""), ("GiB", "gib", ".2f")]
    print(format_table(rows, columns))
    for faults, seconds in timings:
        gib = faults * 4096 / 2**30
        print(f"warm call: {seconds:.2f} s, {faults} minor page faults ({gib:.2f} GiB of 4 KiB pages)")


if __name__ == "__main__":
    main()

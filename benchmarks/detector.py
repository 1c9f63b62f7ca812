"""Time of the degradation detector on large photos: choosing the crops, cutting them, and the network on them.

Reading the crops (choosing the most contrasted squares of a grid and cutting them out of the PIL image) and the
network on them are also timed apart. The photo is an example photo enlarged to the size (a 12-megapixel 4000x3000
by default) and held as a PIL image, as the app and the CLI hold a decoded upload; decoding the file is not counted.
Each thread count is timed after a warm-up call, the best and the median of `--repeats` calls.

    python -m benchmarks.detector                       # 12 megapixels, 1 and 2 threads
    python -m benchmarks.detector --sizes 4000x3000,6000x4000 --threads 2
"""

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from benchmarks.common import REPO_ROOT, format_table, load_average, other_busy_processes, parse_list
from mprnet_hf.detection import DegradationDetector


def large_photo(width: int, height: int) -> Image.Image:
    source = Image.open(REPO_ROOT / "examples" / "clean" / "monarch.png").convert("RGB")
    return source.resize((width, height), Image.Resampling.BICUBIC)


def time_calls(function, repeats: int) -> list[float]:
    function()  # warm-up
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4000x3000", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    detector = DegradationDetector.from_pretrained()
    busy = other_busy_processes()
    rows = []
    for size in parse_list(args.sizes):
        width, height = (int(side) for side in size.split("x"))
        photo = large_photo(width, height)
        for threads in parse_list(args.threads, int):
            torch.set_num_threads(threads)
            # Each lambda is called at once, inside this iteration, so binding the loop's photo late is harmless.
            whole = time_calls(lambda: detector.detect(photo), args.repeats)  # noqa: B023
            choosing = time_calls(lambda: detector.read_crops(photo), args.repeats)  # noqa: B023
            crops = detector.read_crops(photo)
            network = time_calls(lambda: detector.crop_logits(crops), args.repeats)  # noqa: B023
            rows.append(
                {
                    "size": f"{width}x{height}",
                    "megapixels": width * height / 1e6,
                    "threads": threads,
                    "best_ms": min(whole) * 1000,
                    "median_ms": statistics.median(whole) * 1000,
                    "crops_ms": statistics.median(choosing) * 1000,
                    "network_ms": statistics.median(network) * 1000,
                }
            )
    print(
        format_table(
            rows,
            [
                ("photo", "size", ""),
                ("MP", "megapixels", ".1f"),
                ("threads", "threads", ""),
                ("detect best ms", "best_ms", ".0f"),
                ("detect median ms", "median_ms", ".0f"),
                ("reading crops ms", "crops_ms", ".0f"),
                ("network ms", "network_ms", ".0f"),
            ],
        )
    )
    weights = sum(parameter.numel() for parameter in detector.model.parameters())
    print(
        f"\n{detector.crops_per_photo} crops of {detector.crop_size} px, {weights:,} weights; "
        f"load average {load_average()}; other busy processes: {len(busy)}"
    )


if __name__ == "__main__":
    np.random.seed(0)
    main()

"""Time of the degradation detector on large photos: choosing the crops, cutting them, and the network on them.

Reading the crops (choosing the most contrasted squares of a grid and cutting them out of the PIL image) and the
network on them are also timed apart. The photo is an example photo enlarged to the size (a 12-megapixel 4000x3000
by default) and held as a PIL image, as the app and the CLI hold a decoded upload; decoding the file is not counted.
Each thread count is timed after a warm-up call, the best and the median of `--repeats` calls.

    python -m benchmarks.detector                       # 12 megapixels, 1 and 2 threads
    python -m benchmarks.detector --sizes 4000x3000,6000x4000 --threads 2
    python -m benchmarks.detector --detectors bundled,runs/detector-candidate   # side by side, in one run
"""

import argparse
import itertools
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


def time_detector(detector, photo, repeats: int) -> dict[str, float]:
    """Milliseconds of a whole detection (best and median), of reading the crops and of the network on them."""
    whole = time_calls(lambda: detector.detect(photo), repeats)
    choosing = time_calls(lambda: detector.read_crops(photo), repeats)
    crops = detector.read_crops(photo)
    network = time_calls(lambda: detector.crop_logits(crops), repeats)
    return {
        "best_ms": min(whole) * 1000,
        "median_ms": statistics.median(whole) * 1000,
        "crops_ms": statistics.median(choosing) * 1000,
        "network_ms": statistics.median(network) * 1000,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="4000x3000", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--detectors", default="bundled", help="comma-separated detector folders, or bundled (the shipped one)"
    )
    args = parser.parse_args(argv)
    detectors = {
        name: DegradationDetector.from_pretrained(None if name == "bundled" else name)
        for name in parse_list(args.detectors)
    }
    # Each size is enlarged once, for every detector and thread count.
    photos = {size: large_photo(*(int(side) for side in size.split("x"))) for size in parse_list(args.sizes)}
    busy = other_busy_processes()
    rows = []
    for (size, photo), (name, detector), threads in itertools.product(
        photos.items(), detectors.items(), parse_list(args.threads, int)
    ):
        torch.set_num_threads(threads)
        grid = f"{detector.crops_per_photo} of {detector.crop_grid_side}x{detector.crop_grid_side}"
        megapixels = photo.width * photo.height / 1e6
        row = {"detector": f"{name} ({grid})", "size": size, "megapixels": megapixels, "threads": threads}
        rows.append(row | time_detector(detector, photo, args.repeats))
    print(
        format_table(
            rows,
            [
                ("detector (crops read of the grid)", "detector", ""),
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
    print(f"\nload average {load_average()}; other busy processes: {len(busy)}")


if __name__ == "__main__":
    np.random.seed(0)
    main()

"""Samples per second of the training data pipeline (`SyntheticPairs`: crop, flip, degrade, JPEG), one process, one
thread, for each task and patch size: how many CPU cores it takes to keep a training step fed.

    python -m benchmarks.degradations [--photos data/dev/train] [--patch-sizes 64,128,256] [--samples 64]
"""

import argparse
import time

import torch

from benchmarks.common import format_table, parse_list
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS
from mprnet_hf.training.data import SyntheticPairs


def samples_per_second(dataset: SyntheticPairs, samples: int) -> float:
    dataset[0]  # the first call pays for imports and allocator warm-up
    start = time.perf_counter()
    for index in range(1, samples + 1):
        dataset[index]
    return samples / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="data/dev/train", help="clean training photos")
    parser.add_argument("--patch-sizes", default="64,128,256")
    parser.add_argument("--samples", type=int, default=64)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    for task in TASKS:
        for patch_size in parse_list(args.patch_sizes, int):
            dataset = SyntheticPairs(args.photos, task, patch_size, length=args.samples + 1)
            rows.append({"task": task, "patch": patch_size, "rate": samples_per_second(dataset, args.samples)})
    print(format_table(rows, [("task", "task", ""), ("patch", "patch", "d"), ("samples/s (1 thread)", "rate", ".1f")]))


if __name__ == "__main__":
    main()

"""Whether our training synthesis spans what the foreign generators draw: statistics of the degradations each one
makes on the same clean photos, as 5th / 50th / 95th percentiles over photos and seeds.

    python -m benchmarks.synthesis_coverage [--photos data/dev/val] [--seeds 4]

rain   cover: share of pixels whose luma the rain changes by more than 10/255;
       change: mean luma change on those pixels (positive: brighter streaks, negative: streaks darker than the scene)
noise  sigma: standard deviation of the degraded minus clean photo on the 8-bit scale;
       correlation: between horizontal neighbours of that residual (0 for white noise, higher once demosaiced
       or compressed)
blur   sharpness kept: gradient energy of the blurred photo over that of the clean one (1: no blur)

The foreign sets whose draw also changes the whole frame (albumentations' rain as drawn) are left out: their cover
is the whole photo. The statistics are measured on the photos as the libraries draw at their size, and ours on the
same photos at the same size.
"""

import argparse

import numpy as np
import torch

from benchmarks.common import format_table
from mprnet_hf.data.synthesis import synthesize
from mprnet_hf.evaluation import foreign
from mprnet_hf.evaluation.evaluate import load_uint8, to_tensor, to_uint8
from mprnet_hf.training.data import list_images

LUMA = np.array([0.299, 0.587, 0.114])


def rain_statistics(degraded: np.ndarray, clean: np.ndarray) -> dict:
    change = (degraded.astype(np.float64) - clean) @ LUMA
    covered = np.abs(change) > 10
    return {"cover": float(covered.mean()), "change": float(change[covered].mean()) if covered.any() else 0.0}


def noise_statistics(degraded: np.ndarray, clean: np.ndarray) -> dict:
    residual = degraded.astype(np.float64) - clean
    left, right = residual[:, :-1].ravel(), residual[:, 1:].ravel()
    return {"sigma": float(residual.std()), "correlation": float(np.corrcoef(left, right)[0, 1])}


def gradient_energy(image: np.ndarray) -> float:
    grey = image.astype(np.float64) @ LUMA
    return float((np.diff(grey, axis=0) ** 2).mean() + (np.diff(grey, axis=1) ** 2).mean())


def blur_statistics(degraded: np.ndarray, clean: np.ndarray) -> dict:
    return {"kept": gradient_energy(degraded) / gradient_energy(clean)}


STATISTICS = {"derain": rain_statistics, "denoise": noise_statistics, "deblur": blur_statistics}
COLUMNS = {"derain": ("cover", "change"), "denoise": ("sigma", "correlation"), "deblur": ("kept",)}


def percentiles(values: list[float]) -> str:
    low, middle, high = np.percentile(values, [5, 50, 95])
    return f"{low:.3g} / {middle:.3g} / {high:.3g}"


def measure(photos: list[np.ndarray], task: str, degrade, seeds: int) -> dict:
    records = [STATISTICS[task](degrade(photo, seed), photo) for photo in photos for seed in range(seeds)]
    return {key: percentiles([record[key] for record in records]) for key in COLUMNS[task]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", default="data/dev/val", help="clean photos")
    parser.add_argument("--seeds", type=int, default=4, help="draws per photo and generator")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    photos = [load_uint8(path) for path in list_images(args.photos)]
    for task in ("derain", "denoise", "deblur"):
        rows = []

        def ours(photo, seed, synthesis, task=task):
            degraded = synthesize(to_tensor(photo), task, np.random.default_rng(seed), synthesis, jpeg_share=0.0)
            return to_uint8(degraded)

        for synthesis in ("classic", "broad"):
            statistics = measure(photos, task, lambda photo, seed, s=synthesis: ours(photo, seed, s), args.seeds)
            rows.append({"generator": f"ours ({synthesis})", **statistics})
        for item in foreign.select(task=task):
            if item.whole_frame or foreign.available(item.generator):
                continue
            statistics = measure(photos, task, lambda photo, seed, i=item: foreign.degrade(i, photo, seed), args.seeds)
            rows.append({"generator": f"{item.key} [{item.role}]", **statistics})
        columns = [("generator", "generator", "")] + [(f"{key} (p5 / p50 / p95)", key, "") for key in COLUMNS[task]]
        print(f"\n{task}, {len(photos)} photos x {args.seeds} draws\n")
        print(format_table(rows, columns))


if __name__ == "__main__":
    main()

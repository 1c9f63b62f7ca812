"""Test-time local statistics (TLC, Chu et al., ECCV 2022) on the bundled checkpoints: PSNR on the full-size
validation photos with channel attention pooling globally (off) and over a local window (on).

The photos (data/dev/val/*.png) are degraded as in the README's quality table (`mprnet_hf.evaluation.evaluate.
synthetic_samples`: camera shake, rain streaks, Gaussian noise of sigma 25, seeded by the photo's position) and scored
with each task's protocol (RGB, or BT.601 Y for deraining) on uint8 images. The checkpoints were trained on 64x64
patches (the deblur one then on 128x128); the TLC paper recommends a window of about 1.5x the training patch. Each
model restores the whole photo at once (no tiling), so the only difference between the columns is the pooling.

  python -m benchmarks.tlc                       # the three small checkpoints, windows 96 and 192
  python -m benchmarks.tlc --windows 64,96,128 --tasks deblur
Results are merged (by task and photo) into benchmarks/results/tlc.json (tlc_max_side_N.json with --max-side N).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    REPO_ROOT,
    RESULTS_DIR,
    format_table,
    merge_results,
    parse_list,
    run_metadata,
)
from benchmarks.photos import VAL_DIR
from benchmarks.tiled import SMALL_CHECKPOINTS


def training_summary(task: str) -> dict:
    """The checkpoint's own record of its training (steps, validation PSNR), to tie the numbers to the weights."""
    path = REPO_ROOT / SMALL_CHECKPOINTS[task] / "training_summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@torch.inference_mode()
def restore(model, degraded: np.ndarray) -> np.ndarray:
    from mprnet_hf.evaluation.evaluate import to_tensor, to_uint8

    return to_uint8(model(to_tensor(degraded)[None]).reconstruction[0])


def score(sample, task: str, protocol: str, models: dict, max_side: int | None) -> dict:
    """PSNR of the degraded photo and of each model's restoration (keyed by TLC window, 0 = off)."""
    from mprnet_hf.evaluation.evaluate import psnr

    height, width = sample.clean.shape[:2]
    row = dict(
        task=task,
        protocol=protocol,
        photo=sample.name,
        size=f"{width}x{height}",
        max_side=max_side,
        psnr_degraded=round(psnr(sample.degraded, sample.clean, protocol), 3),
    )
    for window, model in models.items():
        row[f"psnr_window_{window}"] = round(psnr(restore(model, sample.degraded), sample.clean, protocol), 3)
    print(" ".join(f"{key}={value}" for key, value in row.items()), flush=True)
    return row


def evaluate(task: str, windows: list[int], max_side: int | None = None) -> list[dict]:
    from mprnet_hf import MPRNetModel
    from mprnet_hf.evaluation.evaluate import DEFAULT_PROTOCOL, synthetic_samples

    checkpoint = REPO_ROOT / SMALL_CHECKPOINTS[task]
    models = {0: MPRNetModel.from_pretrained(checkpoint).eval()}
    for window in windows:
        models[window] = MPRNetModel.from_pretrained(checkpoint, local_attention_window=window).eval()
    protocol = DEFAULT_PROTOCOL[task]
    with tempfile.TemporaryDirectory(prefix="tlc-") as scratch:
        # Quick checks only: the published numbers use the full-size photos.
        folder = downscaled_copy(VAL_DIR, max_side, Path(scratch)) if max_side else VAL_DIR
        rows = [score(sample, task, protocol, models, max_side) for sample in synthetic_samples(folder, task)]
    mean = dict(
        task=task,
        protocol=protocol,
        photo="mean",
        size="",
        max_side=max_side,
        psnr_degraded=round(statistics.mean(row["psnr_degraded"] for row in rows), 3),
    )
    for window in models:
        mean[f"psnr_window_{window}"] = round(statistics.mean(row[f"psnr_window_{window}"] for row in rows), 3)
    return rows + [mean]


def downscaled_copy(folder: Path, max_side: int, target: Path) -> Path:
    from PIL import Image

    for path in sorted(folder.glob("*.png")):
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((max_side, max_side))
            image.save(target / path.name)
    return target


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="deblur,derain,denoise")
    parser.add_argument("--windows", default="96,192", help="comma-separated TLC windows in input pixels (0 = off)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-side", type=int, help="downscale the photos to this size (quick checks only)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    windows = [window for window in parse_list(args.windows, int) if window > 0]
    meta = run_metadata(
        "benchmarks.tlc",
        argv,
        max_side=args.max_side,
        checkpoints={task: training_summary(task) for task in parse_list(args.tasks)},
    )
    new_rows = []
    for task in parse_list(args.tasks):
        new_rows += [dict(row, windows=windows) for row in evaluate(task, windows, args.max_side)]
    for row in new_rows:
        for window in windows:
            row[f"gain_window_{window}"] = round(row[f"psnr_window_{window}"] - row["psnr_window_0"], 3)
    # Merged by task and photo, so tasks can be measured in separate runs (each run's meta names its checkpoints);
    # quick checks on downscaled photos go to a file of their own.
    output = RESULTS_DIR / ("tlc.json" if not args.max_side else f"tlc_max_side_{args.max_side}.json")
    rows = merge_results(output, new_rows, ("task", "photo"), meta)
    all_windows = sorted({window for row in rows for window in row.get("windows", [])})
    columns = [
        ("task", "task", ""),
        ("photo", "photo", ""),
        ("size", "size", ""),
        ("degraded", "psnr_degraded", ".2f"),
        ("TLC off", "psnr_window_0", ".2f"),
    ]
    for window in all_windows:
        columns += [
            (f"TLC {window}", f"psnr_window_{window}", ".2f"),
            (f"gain {window}", f"gain_window_{window}", "+.2f"),
        ]
    print(format_table(rows, columns))
    print(f"results: {output}")


if __name__ == "__main__":
    main()

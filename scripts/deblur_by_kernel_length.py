"""Deblurring gain per camera-shake length: where a deblurring model helps and where it does not yet.

Centre crops of the held-out photos, each blurred with a seeded random camera-shake trajectory of a fixed length
(`motion_blur_kernel(MOTION_KERNEL_SIZE, rng, length=L)`, the evaluation's 17x17 grid), re-quantised to 8 bits; mean
RGB PSNR of the blurry crop and of the model's output against the clean crop, per length.

    python scripts/deblur_by_kernel_length.py [--model checkpoints/mprnet-deblur-small] [--lengths 3,6,9,12,15]
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

# Run as a script from the repository root, where mprnet_hf is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mprnet_hf import MPRNetModel  # noqa: E402
from mprnet_hf.data.degradations import blur, motion_blur_kernel  # noqa: E402
from mprnet_hf.evaluation.evaluate import MOTION_KERNEL_SIZE, psnr, to_tensor, to_uint8  # noqa: E402
from mprnet_hf.training.data import centre_crop, list_images, load_rgb  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="checkpoints/mprnet-deblur-small")
    parser.add_argument("--data", default="data/dev/val", help="clean photos")
    parser.add_argument("--lengths", default="3,6,9,12,15", help="trajectory lengths in pixels (at most 15)")
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = MPRNetModel.from_pretrained(args.model).eval()
    crops = [centre_crop(load_rgb(path), args.crop) for path in list_images(args.data)]
    if not crops:
        raise SystemExit(f"No images found in {args.data}")

    print("| length | blurry input | model | gain |\n|---|---|---|---|")
    for length in (int(value) for value in args.lengths.split(",")):
        blurry_scores, restored_scores = [], []
        for index, clean in enumerate(crops):
            kernel = motion_blur_kernel(MOTION_KERNEL_SIZE, np.random.default_rng(100 + index), length=length)
            blurry = to_uint8(blur(clean, kernel))
            with torch.inference_mode():
                restored = model(to_tensor(blurry)[None]).reconstruction[0]
            blurry_scores.append(psnr(blurry, to_uint8(clean)))
            restored_scores.append(psnr(to_uint8(restored), to_uint8(clean)))
        blurry_mean, restored_mean = np.mean(blurry_scores), np.mean(restored_scores)
        print(
            f"| {length} px | {blurry_mean:.2f} | {restored_mean:.2f} | {restored_mean - blurry_mean:+.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()

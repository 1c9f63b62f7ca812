"""Side-by-side speed of two copies of the library (before and after a change): one user path (`restore_image`, the
`image-restoration` pipeline, the plain `model(pixel_values)` call or the CLI's per-file step) of a bundled checkpoint
on a square photo, each with its own defaults (precision included: a change of default shows as a change of speed).

  git archive BASE | tar -x -C /tmp/old && git archive HEAD | tar -x -C /tmp/new
  python -m benchmarks.compare_versions /tmp/old /tmp/new --calls 20
  python -m benchmarks.compare_versions /tmp/old /tmp/new --path pipeline --size 1024 --checkpoint mprnet-denoise-small

Each copy runs in its own long-lived subprocess, and the two take turns call by call (old, new, new, old, ...), so
a drift in the machine's speed (this shared virtual machine drifts by 10-30 % over minutes) or another job's load
falls on both alike. Prints each copy's median, and the median and geometric mean of the paired ratios new / old.
"""

import argparse
import math
import statistics
import subprocess
import sys

WORKER = r"""
import sys, time
root, threads, path, size, checkpoint = sys.argv[1:6]
sys.path.insert(0, root)
import torch
torch.set_num_threads(int(threads))
from PIL import Image
import mprnet_hf
assert mprnet_hf.__file__.startswith(root), mprnet_hf.__file__
from mprnet_hf import MPRNetImageProcessor, MPRNetModel
try:
    from mprnet_hf import restore_image
except ImportError:  # a copy from before restore_image was exported at the top
    from mprnet_hf.inference import restore_image
folder = root + "/checkpoints/" + checkpoint
model = MPRNetModel.from_pretrained(folder).eval()
photo = Image.open(root + "/examples/clean/building.png").convert("RGB").resize((int(size), int(size)))
if path == "pipeline":
    from transformers import pipeline
    restore = pipeline("image-restoration", model=model, image_processor=MPRNetImageProcessor.from_pretrained(folder))
elif path == "model_call":
    pixels = MPRNetImageProcessor.from_pretrained(folder)(photo, return_tensors="pt")["pixel_values"]
    def restore(_):
        with torch.inference_mode():
            return model(pixels).reconstruction
elif path == "cli":
    # The command's per-file step (decode, tile choice, restore, write the PNG) with its default options.
    import tempfile
    from pathlib import Path
    from mprnet_hf import cli
    folder = Path(tempfile.mkdtemp(prefix="compare-versions-cli-"))
    photo.save(folder / "photo.png")
    options = cli.build_parser().parse_args(
        [str(folder / "photo.png"), "--task", model.config.task, "--output", str(folder / "out")]
    )
    options.max_megapixels = 16.0
    job = cli.Job(folder / "photo.png", folder / "out" / "photo.png")
    def restore(_):
        with torch.inference_mode():
            cli.restore_file(model, job, options)
else:
    restore = lambda photo: restore_image(model, photo)
restore(photo)
print("ready", flush=True)
for _ in sys.stdin:
    started = time.perf_counter()
    restore(photo)
    print(time.perf_counter() - started, flush=True)
"""


def start_worker(root: str, args: argparse.Namespace) -> subprocess.Popen:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, root, str(args.threads), args.path, str(args.size), args.checkpoint],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd="/tmp",
    )
    if worker.stdout.readline().strip() != "ready":
        sys.exit(f"the worker for {root} failed to start (run its {args.path} by hand to see why)")
    return worker


def timed_call(worker: subprocess.Popen) -> float:
    worker.stdin.write("go\n")
    worker.stdin.flush()
    return float(worker.stdout.readline())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="root of the copy before the change")
    parser.add_argument("new", help="root of the copy after the change")
    parser.add_argument("--calls", type=int, default=20, help="timed calls of each copy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--path", choices=("restore_image", "pipeline", "model_call", "cli"), default="restore_image")
    parser.add_argument("--size", type=int, default=512, help="side of the square photo, px")
    parser.add_argument("--checkpoint", default="mprnet-deblur-small", help="folder under each copy's checkpoints/")
    args = parser.parse_args(argv)
    workers = {"old": start_worker(args.old, args), "new": start_worker(args.new, args)}
    times = {"old": [], "new": []}
    for call in range(args.calls):
        # Alternating which copy goes first cancels any advantage of running right after the other one.
        for name in ("old", "new") if call % 2 == 0 else ("new", "old"):
            times[name].append(timed_call(workers[name]))
        print(f"call {call:2d}  old {times['old'][-1]:.3f} s  new {times['new'][-1]:.3f} s", flush=True)
    for worker in workers.values():
        worker.stdin.close()
        worker.wait()
    ratios = [new / old for new, old in zip(times["new"], times["old"])]
    geometric_mean = math.exp(statistics.fmean(math.log(ratio) for ratio in ratios))
    print(
        f"median old {statistics.median(times['old']):.3f} s, new {statistics.median(times['new']):.3f} s; "
        f"paired new/old: median {statistics.median(ratios):.3f}, geometric mean {geometric_mean:.3f} "
        f"over {len(ratios)} pairs (quartiles {statistics.quantiles(ratios, n=4)[0]:.3f}-"
        f"{statistics.quantiles(ratios, n=4)[2]:.3f})"
    )


if __name__ == "__main__":
    main()

"""Side-by-side speed of two copies of the library (before and after a change): `restore_image` of the bundled
deblur checkpoint on a 512x512 photo.

  git archive BASE | tar -x -C /tmp/old && git archive HEAD | tar -x -C /tmp/new
  python -m benchmarks.compare_versions /tmp/old /tmp/new --calls 20

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
root = sys.argv[1]
sys.path.insert(0, root)
import torch
torch.set_num_threads(int(sys.argv[2]))
from PIL import Image
import mprnet_hf
assert mprnet_hf.__file__.startswith(root), mprnet_hf.__file__
from mprnet_hf import MPRNetModel
from mprnet_hf.inference import restore_image  # the path both versions have
model = MPRNetModel.from_pretrained(root + "/checkpoints/mprnet-deblur-small").eval()
photo = Image.open(root + "/examples/clean/building.png").convert("RGB").resize((512, 512))
restore_image(model, photo)
print("ready", flush=True)
for _ in sys.stdin:
    started = time.perf_counter()
    restore_image(model, photo)
    print(time.perf_counter() - started, flush=True)
"""


def start_worker(root: str, threads: int) -> subprocess.Popen:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, root, str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd="/tmp",
    )
    if worker.stdout.readline().strip() != "ready":
        sys.exit(f"the worker for {root} failed to start (run its restore_image by hand to see why)")
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
    args = parser.parse_args(argv)
    workers = {"old": start_worker(args.old, args.threads), "new": start_worker(args.new, args.threads)}
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

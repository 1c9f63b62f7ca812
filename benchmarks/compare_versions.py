"""Side-by-side speed of two copies of the library (before and after a change): `restore_image` of the bundled
deblur checkpoint on a 512x512 photo, each copy in its own subprocess, alternating, several rounds.

  git archive BASE | tar -x -C /tmp/old && git archive HEAD | tar -x -C /tmp/new
  python -m benchmarks.compare_versions /tmp/old /tmp/new --rounds 3 [--new-first]

Each subprocess times `--calls` calls after one warm-up and reports their median. The machine's speed drifts by
10-30 % over minutes (a shared virtual machine), so the verdict is the geometric mean of the paired ratios (new / old
of each round, old and new run back to back), printed with their spread; the ratio of the best times is printed too.
"""

import argparse
import json
import math
import statistics
import subprocess
import sys

WORKER = r"""
import json, sys, time
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
times = []
for _ in range(int(sys.argv[3])):
    started = time.perf_counter()
    restore_image(model, photo)
    times.append(time.perf_counter() - started)
print(json.dumps(sorted(times)[len(times) // 2]))
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", help="root of the copy before the change")
    parser.add_argument("new", help="root of the copy after the change")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=5, help="timed calls per subprocess (their median is used)")
    parser.add_argument("--new-first", action="store_true", help="run the new copy first in each round")
    args = parser.parse_args(argv)
    order = [("new", args.new), ("old", args.old)] if args.new_first else [("old", args.old), ("new", args.new)]
    best = {"old": [], "new": []}
    for round_index in range(args.rounds):
        for name, root in order:
            result = subprocess.run(
                [sys.executable, "-c", WORKER, root, str(args.threads), str(args.calls)],
                capture_output=True,
                text=True,
                cwd="/tmp",
            )
            if result.returncode:
                sys.exit(result.stderr)
            best[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
            print(f"round {round_index}  {name}  median {best[name][-1]:.3f} s", flush=True)
    old, new = min(best["old"]), min(best["new"])
    paired = [new_time / old_time for new_time, old_time in zip(best["new"], best["old"])]
    geometric_mean = math.exp(statistics.fmean(math.log(ratio) for ratio in paired))
    print(f"old best {old:.3f} s, new best {new:.3f} s, new/old of the best = {new / old:.3f}")
    print(
        f"paired new/old: geometric mean {geometric_mean:.3f} over {len(paired)} rounds "
        f"(range {min(paired):.3f}-{max(paired):.3f})"
    )


if __name__ == "__main__":
    main()

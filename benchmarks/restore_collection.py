"""One collection restored by one process and by several (torchrun), side by side in one run, the real command each
time: `mprnet-restore` as a user starts it, start-up included.

  python -m benchmarks.restore_collection                       # 24 photos of 192-320 pixels a side, denoise
  python -m benchmarks.restore_collection --files 48 --rounds 3 --task deblur

Settings (--settings, PROCESSESxTHREADS), each into a fresh output folder, taken in turn round by round so that a
drift in this shared machine's speed falls on all alike. The default, 1x1,1x2,2x1:

* `1 x 1`: one process, OMP_NUM_THREADS=1 (the reference: the others' outputs are compared with its outputs);
* `1 x 2`: one process with two threads (what one process makes of the same two cores);
* `2 x 1`: `python -m torch.distributed.run --nproc-per-node 2 -m mprnet_hf.restore`, one thread per process.

All restore with PyTorch (MPRNET_BACKEND=torch): a single process would otherwise start an ONNX export in the
background from 10 files on, on the cores being measured. Prints the median wall time of the whole command and the
restoring time of its summary line per setting, and whether the outputs of each setting are bit-identical to the
one-process, one-thread run's (the thread count of a process can change the last bit of PyTorch's CPU arithmetic).
"""

import argparse
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import REPO_ROOT, cpu_model, format_table, load_average

SUMMARY = re.compile(r"^(\d+) restored, \d+ skipped \(already done\), (\d+) failed in ([\d.]+) s", re.MULTILINE)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def make_photos(folder: Path, count: int, smallest: int, largest: int) -> None:
    """Noisy gradients of mixed sizes, PNG and JPEG by turns."""
    rng = np.random.default_rng(0)
    for index in range(count):
        width, height = (int(side) for side in rng.integers(smallest, largest + 1, size=2))
        gradient = np.linspace(40, 200, width)[None, :, None] + np.zeros((height, 1, 3))
        pixels = np.clip(gradient + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        name = folder / f"photo{index:03d}.{'jpg' if index % 2 else 'png'}"
        Image.fromarray(pixels).save(name, **({"quality": 90} if index % 2 else {}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(processes: int, photos: Path, output: Path, task: str) -> list[str]:
    restore = ["-m", "mprnet_hf.restore", str(photos), "--task", task, "--output", str(output)]
    if processes == 1:
        return [sys.executable, *restore]
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", str(processes), "--master-port", str(free_port())]
    return [sys.executable, *launcher, *restore]


def run_once(processes: int, threads: int, photos: Path, output: Path, task: str) -> dict:
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MPRNET_BACKEND": "torch",
    }
    started = time.perf_counter()
    result = subprocess.run(
        command(processes, photos, output, task), capture_output=True, text=True, env=environment, timeout=3600
    )
    wall = time.perf_counter() - started
    summary = SUMMARY.search(result.stdout)
    if result.returncode != 0 or summary is None or summary.group(2) != "0":
        sys.exit(f"the {processes} x {threads} run failed (exit status {result.returncode}):\n{result.stderr[-3000:]}")
    return {"wall": wall, "restoring": float(summary.group(3)), "restored": int(summary.group(1))}


def outputs(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def difference(produced: dict[str, bytes], reference: dict[str, bytes]) -> tuple[int, int]:
    """(files whose bytes differ, largest pixel difference in 8-bit levels) against the reference run's outputs."""
    if produced.keys() != reference.keys():
        sys.exit(f"the runs wrote different files: {sorted(produced.keys() ^ reference.keys())}")
    files, largest = 0, 0
    for name, data in produced.items():
        if data != reference[name]:
            files += 1
            pixels = [np.asarray(Image.open(io.BytesIO(raw)), dtype=np.int16) for raw in (data, reference[name])]
            largest = max(largest, int(np.abs(pixels[0] - pixels[1]).max()))
    return files, largest


def describe(files: int, largest: int, total: int) -> str:
    return "bit-identical" if files == 0 else f"{files} of {total} files differ, by up to {largest}/255"


def parse_settings(text: str) -> list[tuple[int, int]]:
    settings = []
    for item in text.split(","):
        try:
            processes, threads = (int(part) for part in item.strip().lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not PROCESSESxTHREADS, such as 2x1") from None
        if processes < 1 or threads < 1:
            raise argparse.ArgumentTypeError(f"{item!r}: processes and threads must be at least 1")
        settings.append((processes, threads))
    if settings[0] != (1, 1):
        raise argparse.ArgumentTypeError("the first setting is the reference and must be 1x1")
    return settings


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=positive, default=24)
    parser.add_argument("--smallest", type=positive, default=192, help="pixels, the shortest side drawn")
    parser.add_argument("--largest", type=positive, default=320, help="pixels, the longest side drawn")
    parser.add_argument(
        "--settings",
        type=parse_settings,
        default=parse_settings("1x1,1x2,2x1"),
        help="PROCESSESxTHREADS, comma-separated, 1x1 first (default 1x1,1x2,2x1)",
    )
    parser.add_argument("--rounds", type=positive, default=2, help="times each setting runs, in turn")
    parser.add_argument("--task", choices=("deblur", "derain", "denoise"), default="denoise")
    args = parser.parse_args(argv)
    if args.smallest > args.largest:
        parser.error(f"--smallest {args.smallest} is above --largest {args.largest}")

    settings = list(dict.fromkeys(args.settings))
    times = {setting: [] for setting in settings}
    differences = {setting: (0, 0) for setting in settings}
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="restore-collection-") as scratch:
        photos = Path(scratch) / "photos"
        photos.mkdir()
        make_photos(photos, args.files, args.smallest, args.largest)
        reference = None
        for round_number in range(args.rounds):
            for processes, threads in settings:
                output = Path(scratch) / f"out-{round_number}-{processes}x{threads}"
                times[processes, threads].append(run_once(processes, threads, photos, output, args.task))
                produced = outputs(output)
                reference = reference or produced  # the first run: one process, one thread
                files, largest = difference(produced, reference)
                before = differences[processes, threads]
                differences[processes, threads] = (max(before[0], files), max(before[1], largest))
                print(f"round {round_number + 1}: {processes} x {threads} done", file=sys.stderr)

    baseline = statistics.median(run["wall"] for run in times[1, 1])
    rows = []
    for processes, threads in settings:
        wall = statistics.median(run["wall"] for run in times[processes, threads])
        restoring = statistics.median(run["restoring"] for run in times[processes, threads])
        rows.append(
            {
                "setting": f"{processes} x {threads}",
                "wall": wall,
                "restoring": restoring,
                "per_second": args.files / restoring,
                "speed_up": baseline / wall,
                "identical": describe(*differences[processes, threads], args.files),
            }
        )
    print(
        f"{args.files} photos of {args.smallest}-{args.largest} pixels a side, {args.task}, {args.rounds} rounds "
        f"(medians); {cpu_model()}, {os.cpu_count()} logical CPUs, load average {load_before} at the start and "
        f"{load_average()} at the end"
    )
    columns = [
        ("processes x threads", "setting", ""),
        ("wall s (command)", "wall", ".1f"),
        ("restoring s (summary)", "restoring", ".1f"),
        ("photos/s restoring", "per_second", ".2f"),
        ("wall vs 1 x 1", "speed_up", ".2f"),
        ("outputs as 1 x 1", "identical", ""),
    ]
    print(format_table(rows, columns))


if __name__ == "__main__":
    main()

"""The app's memory under a soak of mixed requests, with its memory ceiling (MPRNET_MEMORY_LIMIT_MB) on and off, side
by side in one run.

Starts two real app servers (`app.py` in subprocesses on 127.0.0.1), one with the ceiling at `--ceiling-mb` and one
with `MPRNET_MEMORY_LIMIT_MB=off`, and sends every request of one seeded plan of mixed requests (tasks, auto
included, and sizes from 256² to 1024x768, the example photos resized) through the real `gradio_client` to both, one
request at a time, alternating which server gets it first so that a change in the machine's load falls on both. Each
server's resident memory (psutil, its children included) is sampled every 0.25 s. Prints one table: RSS at start
(when the server first answers), after start-up (after one warm-up request per task), the highest and at the end, and
the mean request time of each server over the same requests.

    nice -n 5 .venv/bin/python benchmarks/memory_soak.py --requests 200 --ceiling-mb 3072

Both servers serve with PyTorch (`MPRNET_BACKEND=torch`): with "auto" each would time its backends at start-up and
might choose differently, and the comparison would then measure the backends rather than the ceiling. Both allow
`MPRNET_MAX_SECONDS=600`, so that a busy machine's cost bound refuses none of the plan's photos.
"""

import argparse
import contextlib
import datetime
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
from load_test import (  # noqa: E402  (the load test's server plumbing, shared)
    MemorySampler,
    free_port,
    start_server,
    stop_server,
    wait_until_serving,
)

TASKS = ("auto", "deblur", "derain", "denoise")
# (width, height, weight): mostly the small and medium photos visitors send, now and then a large one, whose feature
# maps (gigabytes restored whole) are what the allocator keeps afterwards.
SIZES = ((256, 256, 40), (512, 384, 30), (768, 576, 22), (1024, 768, 8))
# The cost bound is raised so that the large photos are restored, tiled or not, on a machine as busy as any: the soak
# measures memory, not which photos a busy machine refuses.
SOAK_MAX_SECONDS = "600"
REQUEST_TIMEOUT_S = 900


def request_plan(count: int, seed: int = 0) -> list[tuple[str, int, int]]:
    generator = random.Random(seed)
    sizes = [(width, height) for width, height, _ in SIZES]
    weights = [weight for *_, weight in SIZES]
    return [(generator.choice(TASKS), *generator.choices(sizes, weights)[0]) for _ in range(count)]


def photo_for(task: str, width: int, height: int, folder: Path) -> Path:
    """An example photo of the task (a noisy one for auto) resized to `width` x `height`, written once."""
    path = folder / f"{task}_{width}x{height}.png"
    if not path.exists():
        examples = sorted((REPO_ROOT / "examples" / ("denoise" if task == "auto" else task)).glob("*.png"))
        Image.open(examples[0]).convert("RGB").resize((width, height), Image.BICUBIC).save(path)
    return path


class Server:
    def __init__(self, name: str, memory_limit: str, folder: Path):
        self.name, self.folder = name, folder
        folder.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = folder / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115  (open for the server's life, closed in stop)
        os.environ["MPRNET_MEMORY_LIMIT_MB"] = memory_limit
        os.environ["MPRNET_BACKEND"] = "torch"
        os.environ["MPRNET_MAX_SECONDS"] = SOAK_MAX_SECONDS
        self.process = start_server(self.port, self.log, folder)
        self.sampler = MemorySampler(psutil.Process(self.process.pid))
        self.sampler.start()
        self.rss = {}
        self.seconds, self.outcomes = [], {"answered": 0, "refused": 0, "failed": 0}
        self.client = None

    def ready(self, timeout_s: float = 900):
        wait_until_serving(self.url, self.process, timeout_s)
        self.rss["at start"] = self.sampler.samples[-1][1]
        self.client = Client(self.url, verbose=False)

    def send(self, path: Path, task: str, record: bool = True) -> float:
        started = time.perf_counter()
        try:
            self.client.predict(handle_file(str(path)), task, 0, 64, api_name="/restore")
            outcome = "answered"
        except AppError as refused:
            outcome = "refused"
            print(f"  {self.name}: refused {path.name} {task}: {str(refused)[:200]}", flush=True)
        except Exception as error:  # noqa: BLE001  (a soak counts every failure and goes on)
            outcome = "failed"
            print(f"  {self.name}: failed {path.name} {task}: {type(error).__name__}: {error}", flush=True)
        seconds = time.perf_counter() - started
        if record:
            self.outcomes[outcome] += 1
            if outcome == "answered":
                self.seconds.append(seconds)
        return seconds

    def stop(self):
        self.rss["end"] = self.sampler.samples[-1][1] if self.sampler.samples else 0
        self.rss["max"] = self.sampler.peak()
        self.sampler.stopped.set()
        stop_server(self.process)
        self.log.close()


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200, help="mixed requests, each sent to both servers")
    parser.add_argument("--ceiling-mb", type=float, default=3072, help="MPRNET_MEMORY_LIMIT_MB of the server with it")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mprnet-memory-soak-") as temporary:
        folder = Path(temporary)
        servers = {}
        try:
            # Started together: their start-ups overlap, as the requests will not.
            servers["on"] = Server("ceiling-on", f"{args.ceiling_mb:g}", folder / "on")
            servers["off"] = Server("ceiling-off", "off", folder / "off")
        except BaseException:
            for server in servers.values():
                server.stop()
            raise
        try:
            for server in servers.values():
                server.ready()
            photos = folder / "photos"
            photos.mkdir()
            for server in servers.values():
                for task in TASKS:
                    server.send(photo_for(task, 256, 256, photos), task, record=False)
                server.rss["after start-up"] = server.sampler.samples[-1][1]
            plan = request_plan(args.requests, args.seed)
            for number, (task, width, height) in enumerate(plan, start=1):
                path = photo_for(task, width, height, photos)
                order = ("on", "off") if number % 2 else ("off", "on")
                seconds = {name: servers[name].send(path, task) for name in order}
                if number % 10 == 0 or width * height >= 1e6:
                    print(
                        f"{number}/{len(plan)} {task} {width}x{height}: "
                        + ", ".join(
                            f"{name} {seconds[name]:.1f} s, RSS {mib(servers[name].sampler.samples[-1][1])}"
                            for name in ("on", "off")
                        ),
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()

    on, off = servers["on"], servers["off"]
    rows = [
        ("", f"ceiling on ({args.ceiling_mb:g} MB)", "ceiling off"),
        *((f"RSS {moment}", mib(on.rss[moment]), mib(off.rss[moment])) for moment in ("at start", "after start-up")),
        ("RSS max", mib(on.rss["max"]), mib(off.rss["max"])),
        ("RSS at the end", mib(on.rss["end"]), mib(off.rss["end"])),
        *(
            (f"requests {outcome}", str(on.outcomes[outcome]), str(off.outcomes[outcome]))
            for outcome in ("answered", "refused", "failed")
        ),
        ("mean request time", f"{statistics.mean(on.seconds):.2f} s", f"{statistics.mean(off.seconds):.2f} s"),
        ("median request time", f"{statistics.median(on.seconds):.2f} s", f"{statistics.median(off.seconds):.2f} s"),
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    lines = [f"| {' | '.join(cell.ljust(widths[column]) for column, cell in enumerate(row))} |" for row in rows]
    lines.insert(1, f"|{'|'.join('-' * (width + 2) for width in widths)}|")
    print(
        f"\n{args.requests} mixed requests to each server (seed {args.seed}), {datetime.date.today()}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, {(time.monotonic() - started) / 60:.0f} min in all"
    )
    print("\n".join(lines))
    with contextlib.suppress(OSError):
        print(f"load average at the end: {os.getloadavg()}")
    if on.outcomes["failed"] or off.outcomes["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

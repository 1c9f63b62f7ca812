"""Bounded load and soak test of the Gradio app on loopback: N concurrent clients send valid and hostile requests.

Starts `app.py` in a subprocess on 127.0.0.1 (a free port), with its temporary files (the app's results folder and
Gradio's upload cache) in a fresh folder of its own so that their disk use can be measured. Warms the server up with
one request of every kind, then lets the clients send requests: the small example images for every task, and with
`--hostile-share` that share of hostile ones (corrupt, empty, truncated and non-image files named .png, an EPS
renamed .png, PNG headers declaring 20000x20000 and 6000x4000 pixels, a 16-megapixel photo over the cost one request
may use, odd task and tile values, and raw HTTP payloads naming server files that were never uploaded). Either a
number of requests in all (`--requests`) or as many as fit in `--soak-minutes`.

Every outcome is classified: answered (a restored PNG came back), refused (an error whose message is non-empty,
short and of the kind expected for that request) or failed (anything else: a blank or unexpected error, an answer
where a refusal was due, an exception, a timeout, a request never sent). Reports latency p50/p95/max of answers and
of refusals, the server's resident memory (after warm-up, half-way, at its peak, at the end) and the bytes and files
in the app's results folder and Gradio's cache (at start, after warm-up, after the run and, with `--settle-seconds`,
after the app has had time to prune its results). Stops by itself: every request has a timeout and the whole run a
deadline; the server is stopped at the end. Exits non-zero if any request failed or was lost.

    python scripts/load_test.py                                                  # 16 clients, 64 valid requests
    python scripts/load_test.py --clients 4 --requests 8                         # a quick check
    python scripts/load_test.py --clients 4 --soak-minutes 3 --hostile-share 0.5 --settle-seconds 370   # soak
"""

import argparse
import contextlib
import itertools
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    ("deblur", "examples/deblur/coffee_motion.png"),
    ("derain", "examples/derain/fruits_rain.png"),
    ("denoise", "examples/denoise/monarch_noise.png"),
    ("deblur", "examples/deblur/licenseplate_motion.png"),
    ("derain", "examples/derain/building_rain.png"),
    ("denoise", "examples/denoise/squirrel_noise.png"),
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The app's one answer to every image payload that is not an upload, whatever the path (see mprnet_hf.serving).
NOT_AN_UPLOAD = "did not arrive as an upload"
# A refusal is meant to be read by a person: a message longer than this echoes too much of what was sent.
LONGEST_REFUSAL = 600


# ------------------------------------------------------------------------------------------------ server
def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, log, temp_dir: Path) -> subprocess.Popen:
    """The app on 127.0.0.1:`port`, its temporary files (results folder, Gradio's cache) under `temp_dir`."""
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TMPDIR": str(temp_dir),
        "GRADIO_TEMP_DIR": str(gradio_cache(temp_dir)),
        "PYTHONFAULTHANDLER": "1",  # a crash in native code leaves its stack in the log
    }
    return subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def gradio_cache(temp_dir: Path) -> Path:
    return temp_dir / "gradio"


def wait_until_serving(url: str, server: subprocess.Popen, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited with code {server.returncode} before serving")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"the app did not answer at {url} within {timeout_s:.0f} s")


def stop_server(server: subprocess.Popen):
    server.terminate()
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=15)


def server_rss(process: psutil.Process) -> int:
    """Resident memory of the server and any children it started (0 once it has exited)."""
    try:
        total = process.memory_info().rss
    except psutil.Error:
        return 0
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


class MemorySampler(threading.Thread):
    """Samples the server's resident memory every `interval_s` seconds: (seconds since start, bytes)."""

    def __init__(self, process: psutil.Process, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.process, self.interval_s, self.samples = process, interval_s, []
        self.started_at = time.monotonic()
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.samples.append((time.monotonic() - self.started_at, server_rss(self.process)))
            except psutil.NoSuchProcess:
                return
            self.stopped.wait(self.interval_s)

    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    def at(self, seconds: float) -> int:
        """The sample nearest to `seconds` after the start."""
        return min(self.samples, key=lambda sample: abs(sample[0] - seconds))[1] if self.samples else 0


def disk_use(folders) -> tuple[int, int]:
    """Bytes and number of files under `folders`."""
    size = count = 0
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                try:
                    size += os.lstat(os.path.join(root, name)).st_size
                    count += 1
                except OSError:
                    pass  # pruned while we looked
    return size, count


def measure_disk(temp_dir: Path) -> dict[str, tuple[int, int]]:
    return {
        "results": disk_use(temp_dir.glob("mprnet-results-*")),
        "gradio": disk_use([gradio_cache(temp_dir)]),
        "all": disk_use([temp_dir]),
    }


# ------------------------------------------------------------------------------------------------ requests
@dataclass(frozen=True)
class Probe:
    """One kind of request: what is sent, and the refusal that must come back if it is hostile."""

    name: str
    file: Path | None = None  # uploaded with gradio_client
    task: object = "denoise"
    tile_size: object = 512
    raw_image: object = None  # sent as the image payload as it is, over plain HTTP, with nothing uploaded
    refusal: str | None = None  # a fragment of the message the app must refuse this request with
    may_answer: bool = False  # a photo that is refused only where restoring it would cost too much

    @property
    def hostile(self) -> bool:
        return self.refusal is not None


def png_declaring(width: int, height: int) -> bytes:
    """A few dozen bytes whose PNG header claims `width` x `height` pixels (a decompression bomb's calling card)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def write_hostile_files(folder: Path) -> dict[str, Path]:
    """Upload files that must each be refused with a reason; a few kilobytes each but the 16-megapixel photo."""
    folder.mkdir(parents=True, exist_ok=True)
    random_bytes = np.random.default_rng(1)
    photo = folder / "photo-64.png"
    Image.fromarray(random_bytes.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photo)
    ramp = np.linspace(0, 255, 4000, dtype=np.float32)
    large = np.stack(np.broadcast_arrays(ramp[:, None], ramp[None, :], (ramp[:, None] + ramp[None, :]) / 2), -1)
    contents = {
        "corrupt.png": random_bytes.bytes(3000),
        "notes.txt": b"these are my holiday notes, not a photo\n" * 20,
        "empty.png": b"",
        "truncated.png": photo.read_bytes()[: photo.stat().st_size // 2],
        "drawing-eps.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto\n",
        "bomb-20000x20000.png": png_declaring(20000, 20000),
        "header-6000x4000.png": png_declaring(6000, 4000),
    }
    paths = {}
    for name, content in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(content)
    paths["large-4000x4000.png"] = folder / "large-4000x4000.png"
    Image.fromarray(large.astype(np.uint8)).save(paths["large-4000x4000.png"])
    return paths


def valid_probes() -> list[Probe]:
    return [Probe(f"valid {task} {Path(image).stem}", file=REPO_ROOT / image, task=task) for task, image in EXAMPLES]


def hostile_probes(files: dict[str, Path], url: str, temp_dir: Path) -> list[Probe]:
    example = REPO_ROOT / EXAMPLES[2][1]
    not_uploaded = {
        "raw path /etc/hostname": {"path": "/etc/hostname", "meta": {"_type": "gradio.FileData"}},
        "raw path to a PNG outside the uploads": {"path": str(example), "meta": {"_type": "gradio.FileData"}},
        "raw path ../ out of the cache": {
            "path": f"{gradio_cache(temp_dir)}/../../../../../../../etc/hostname",
            "meta": {"_type": "gradio.FileData"},
        },
        "raw URL of a server file": {
            "path": f"{url}gradio_api/file=/etc/hostname",
            "meta": {"_type": "gradio.FileData"},
        },
        "raw path as a bare string": "/etc/hostname",
    }
    return [
        Probe("corrupt bytes named .png", file=files["corrupt.png"], refusal="is not an image file this app reads"),
        Probe("text file", file=files["notes.txt"], refusal="is not an image file this app reads"),
        Probe("empty file", file=files["empty.png"], refusal="is empty (0 bytes)"),
        Probe("truncated PNG", file=files["truncated.png"], refusal="is corrupt or truncated"),
        Probe("EPS renamed .png", file=files["drawing-eps.png"], refusal="is not an image file this app reads"),
        Probe("PNG header 20000x20000", file=files["bomb-20000x20000.png"], refusal="a possible decompression bomb"),
        Probe("PNG header 6000x4000", file=files["header-6000x4000.png"], refusal="above the limit of"),
        Probe(
            "photo 4000x4000 (cost)",
            file=files["large-4000x4000.png"],
            refusal="restoring it would take longer than",
            may_answer=True,
        ),
        Probe("task ['x']", file=example, task=["x"], refusal="Unknown task ['x']: choose one of"),
        Probe("task {'a': 1}", file=example, task={"a": 1}, refusal="Unknown task {'a': 1}: choose one of"),
        Probe("task 'x' * 10000", file=example, task="x" * 10_000, refusal="Unknown task 'xxxxxxxxxxxxxxxx"),
        Probe(
            "tile size 10**400",
            file=example,
            tile_size=10**400,
            refusal="Tile size must be 0 (automatic) or a whole number",
        ),
        *(Probe(name, raw_image=payload, refusal=NOT_AN_UPLOAD) for name, payload in not_uploaded.items()),
    ]


def choose_probe(request_id: int, share: float, valid: list[Probe], hostile: list[Probe]) -> Probe:
    """The same request for the same id, so that runs are repeatable; valid ones cycle through the examples."""
    chooser = random.Random(request_id)
    if hostile and chooser.random() < share:
        return chooser.choice(hostile)
    return valid[request_id % len(valid)]


def judge(probe: Probe, answer: Path | None, error: str | None) -> tuple[str, str]:
    """(answered / refused / failed, detail) for what came back: a restored file or an error message."""
    if error is None:
        if answer is None or Path(answer).read_bytes()[:8] != PNG_SIGNATURE:
            return "failed", f"the answer is not a PNG: {str(answer)[:120]}"
        if probe.hostile and not probe.may_answer:
            return "failed", "answered, but it must be refused"
        return "answered", ""
    if not probe.hostile:
        return "failed", f"a valid request was refused: {error[:200]!r}"
    if not error.strip():
        return "failed", "blank error message"
    if probe.refusal not in error:
        return "failed", f"unexpected error message: {error[:200]!r}"
    if len(error) > LONGEST_REFUSAL:
        return "failed", f"refusal {len(error)} characters long: {error[:120]!r}…"
    return "refused", error


def send_with_client(client, probe: Probe, timeout_s: float) -> tuple[str, str]:
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    job = client.submit(handle_file(str(probe.file)), probe.task, probe.tile_size, 64, api_name="/restore")
    try:
        return judge(probe, job.result(timeout=timeout_s)[0], None)
    except TimeoutError:
        job.cancel()
        return "lost", f"no answer within {timeout_s:.0f} s"
    except AppError as error:
        return judge(probe, None, str(error))


def send_raw(http, url: str, probe: Probe, timeout_s: float) -> tuple[str, str]:
    """Posts the payload as it is (gradio_client would upload a local file first) and reads the event stream."""
    posted = http.post(f"{url}gradio_api/call/restore", json={"data": [probe.raw_image, probe.task, 512, 64]})
    if posted.status_code != 200:
        return "failed", f"HTTP {posted.status_code}: {posted.text[:200]!r}"
    deadline = time.monotonic() + timeout_s
    event = None
    with http.stream("GET", f"{url}gradio_api/call/restore/{posted.json()['event_id']}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:") and event in ("error", "complete"):
                data = json.loads(line.removeprefix("data:").strip() or "null")
                if event == "complete":
                    return "failed", f"answered, but it must be refused: {str(data)[:120]}"
                message = data.get("error") if isinstance(data, dict) else data
                return judge(probe, None, message if isinstance(message, str) else "")
            if time.monotonic() > deadline:
                return "lost", f"no answer within {timeout_s:.0f} s"
    return "failed", f"the event stream ended without an answer (last event {event!r})"


def send(client, http, url: str, probe: Probe, timeout_s: float) -> dict:
    sent_at, started = time.monotonic(), time.perf_counter()
    try:
        if probe.raw_image is not None:
            status, detail = send_raw(http, url, probe, timeout_s)
        else:
            status, detail = send_with_client(client, probe, timeout_s)
    except Exception as error:  # the load test reports every failure instead of stopping at the first
        status, detail = ("lost" if "timeout" in type(error).__name__.lower() else "failed"), repr(error)[:300]
    return {
        "probe": probe.name,
        "status": status,
        "detail": detail,
        "seconds": time.perf_counter() - started,
        "sent_at": sent_at,
    }


class RequestPlan:
    """Hands out request ids to the clients until `total` are sent or, in a soak, until `until` (monotonic); none
    once the server has exited, whose every later request would fail the same way."""

    def __init__(self, total: int | None, until: float, server: subprocess.Popen):
        self.total, self.until, self.server = total, until, server
        self.ids = itertools.count()
        self.lock = threading.Lock()

    def next_id(self) -> int | None:
        with self.lock:
            request_id = next(self.ids)
        if self.total is not None and request_id >= self.total or self.server.poll() is not None:
            return None
        return request_id if time.monotonic() < self.until else None


def run_client(url: str, plan: RequestPlan, choose, timeout_s: float, downloads: Path) -> list[dict]:
    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(downloads))
    outcomes = []
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10)) as http:
        while (request_id := plan.next_id()) is not None:
            outcomes.append({"id": request_id, **send(client, http, url, choose(request_id), timeout_s)})
    return outcomes


def warm_up(url: str, probes: list[Probe], timeout_s: float, downloads: Path) -> list[dict]:
    """Sends every kind of request once, so that later memory and disk growth is the run's, not first use's."""
    import httpx
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=str(downloads))
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=10)) as http:
        return [{"id": "warm-up", **send(client, http, url, probe, timeout_s)} for probe in probes]


# ------------------------------------------------------------------------------------------------ report
def format_table(rows: list[tuple[str, ...]], header: tuple[str, ...] = ("metric", "value")) -> str:
    rows = [header, *rows]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
    return "\n".join(lines)


def percentiles(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    values = np.array(seconds)
    return f"{np.percentile(values, 50):.2f} / {np.percentile(values, 95):.2f} / {values.max():.2f} s"


def disk_cell(disk: dict[str, tuple[int, int]], area: str) -> str:
    size, count = disk[area]
    return f"{size / 1024:.0f} KiB in {count} files"


def per_probe_table(outcomes: list[dict]) -> str:
    names = sorted({outcome["probe"] for outcome in outcomes}, key=lambda name: (not name.startswith("valid"), name))
    rows = []
    for name in names:
        mine = [outcome for outcome in outcomes if outcome["probe"] == name]
        counts = [sum(outcome["status"] == status for outcome in mine) for status in ("answered", "refused")]
        failed = len(mine) - sum(counts)
        rows.append((name, str(len(mine)), str(counts[0]), str(counts[1]), str(failed)))
    return format_table(rows, ("request", "sent", "answered", "refused", "failed or lost"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64, help="requests in all (ignored with --soak-minutes)")
    parser.add_argument("--soak-minutes", type=float, help="send requests for this long instead of --requests")
    parser.add_argument("--hostile-share", type=float, default=0.0, help="share of hostile requests, 0 to 1")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=0,
        help="wait this long after the run and measure disk and memory again (the app prunes its result files older "
        "than 300 s every 60 s, so 370 shows them gone)",
    )
    parser.add_argument("--request-timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--deadline", type=float, default=1200, help="seconds the whole run may take")
    parser.add_argument("--startup-timeout", type=float, default=300)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 1000:
        parser.error("keep it bounded: 1-64 clients and 1-1000 requests")
    if args.soak_minutes is not None and not 0 < args.soak_minutes <= 60:
        parser.error("keep it bounded: --soak-minutes between 0 and 60")
    if not 0 <= args.hostile_share <= 1 or not 0 <= args.settle_seconds <= 1800:
        parser.error("--hostile-share is from 0 to 1 and --settle-seconds at most 1800")

    work = Path(tempfile.mkdtemp(prefix="mprnet-load-test-"))
    temp_dir, downloads = work / "server-tmp", work / "client-downloads"
    temp_dir.mkdir()
    files = write_hostile_files(work / "hostile-files")
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = work / "server.log"
    with open(log_path, "wb") as log:
        server = start_server(port, log, temp_dir)
    disk, rss = {}, {}
    try:
        wait_until_serving(url, server, args.startup_timeout)
        process = psutil.Process(server.pid)
        disk["at start"] = measure_disk(temp_dir)
        valid = valid_probes()
        hostile = hostile_probes(files, url, temp_dir) if args.hostile_share > 0 else []
        warm_outcomes = warm_up(url, valid + hostile, args.request_timeout, downloads)
        disk["after warm-up"] = measure_disk(temp_dir)
        rss["after warm-up"] = server_rss(process)
        memory = MemorySampler(process)
        memory.start()

        started = time.monotonic()
        soak_s = args.soak_minutes * 60 if args.soak_minutes is not None else None
        plan = RequestPlan(None if soak_s else args.requests, started + (soak_s or args.deadline), server)
        timeout_s = min(args.request_timeout, args.deadline)

        def choose(request_id: int) -> Probe:
            return choose_probe(request_id, args.hostile_share, valid, hostile)

        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [pool.submit(run_client, url, plan, choose, timeout_s, downloads) for _ in range(args.clients)]
            outcomes = [outcome for future in futures for outcome in future.result()]
        wall_s = time.monotonic() - started
        memory.stopped.set()
        memory.join()
        rss["half-way"] = memory.at(wall_s / 2)
        rss["peak"] = max(memory.peak(), rss["after warm-up"])
        rss["at the end"] = server_rss(process)
        disk["after the run"] = measure_disk(temp_dir)
        if args.settle_seconds and server.poll() is None:
            time.sleep(args.settle_seconds)
            rss[f"after {args.settle_seconds:.0f} s idle"] = server_rss(process)
            disk[f"after {args.settle_seconds:.0f} s idle"] = measure_disk(temp_dir)
        exit_code = server.poll()
    finally:
        stop_server(server)

    not_sent = (
        []
        if soak_s
        else [{"probe": "-", "status": "lost", "detail": "not sent before the deadline"}]
        * max(0, args.requests - len(outcomes))
    )
    outcomes += not_sent
    by_status = {status: [o for o in outcomes if o["status"] == status] for status in ("answered", "refused")}
    failed = [o for o in warm_outcomes + outcomes if o["status"] not in ("answered", "refused")]
    lost = [o for o in failed if o["status"] == "lost"]
    not_uploaded = {
        o["detail"] for o in warm_outcomes + outcomes if o["probe"].startswith("raw ") and o["status"] == "refused"
    }
    tracebacks = log_path.read_text(errors="replace").count("Traceback")
    mib = 1024 * 1024
    rows = [
        ("mode", f"soak {args.soak_minutes:g} min" if soak_s else f"{args.requests} requests"),
        ("clients / hostile share", f"{args.clients} / {args.hostile_share:g}"),
        ("server concurrency", os.environ.get("MPRNET_CONCURRENCY", "app default (1 on CPU, 2 on GPU)")),
        ("server MPRNET_MAX_SECONDS", os.environ.get("MPRNET_MAX_SECONDS", "app default (90)")),
        ("warm-up requests (failed)", f"{len(warm_outcomes)} ({sum(o in failed for o in warm_outcomes)})"),
        ("requests sent", f"{len(outcomes) - len(not_sent)} in {wall_s:.1f} s"),
        ("answered (restored)", str(len(by_status["answered"]))),
        ("refused with the expected message", str(len(by_status["refused"]))),
        ("failed (incl. warm-up)", str(len(failed) - len(lost))),
        ("lost (timeout, not sent)", str(len(lost))),
        ("messages for paths not uploaded", f"{len(not_uploaded)} distinct" if not_uploaded else "-"),
        ("latency answered p50 / p95 / max", percentiles([o["seconds"] for o in by_status["answered"]])),
        ("latency refused p50 / p95 / max", percentiles([o["seconds"] for o in by_status["refused"]])),
        ("throughput", f"{(len(by_status['answered']) + len(by_status['refused'])) / wall_s:.2f} answers/s"),
        *((f"server RSS {moment}", f"{value / mib:.0f} MiB") for moment, value in rss.items()),
        ("RSS growth, second half", f"{(rss['at the end'] - rss['half-way']) / mib:+.0f} MiB"),
        *((f"results folder {moment}", disk_cell(value, "results")) for moment, value in disk.items()),
        *((f"Gradio cache {moment}", disk_cell(value, "gradio")) for moment, value in disk.items()),
        ("server alive at the end", "yes" if exit_code is None else f"no: it exited with code {exit_code}"),
        ("tracebacks in the server log", str(tracebacks)),
    ]
    print(format_table(rows))
    if hostile:
        print()
        print(per_probe_table(outcomes))
    grown = disk["after the run"]["gradio"][0] - disk["after warm-up"]["gradio"][0]
    if grown > 0:
        print(
            f"\nGradio's cache grew by {grown / 1024:.0f} KiB during the run: it keeps uploads and the files it "
            "returned for an hour (the app's delete_cache), deduplicated by content."
        )
    if len(not_uploaded) > 1:
        failed.append({"probe": "raw paths", "status": "failed", "detail": f"{len(not_uploaded)} different messages"})
    if exit_code is not None:
        failed.append({"probe": "server", "status": "failed", "detail": f"the server exited (code {exit_code})"})
    for outcome in failed[:15]:
        print(f"{outcome.get('id', '-')} {outcome['probe']}: {outcome['status']}: {outcome['detail']}")
    if failed or tracebacks:
        print(f"server log: {log_path}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        results = {
            "rows": dict(rows),
            "outcomes": outcomes,
            "warm_up": warm_outcomes,
            "rss_bytes": rss,
            "rss_timeline": [(round(seconds, 1), value) for seconds, value in memory.samples[::4]],
            "run_started_monotonic": started,
            "disk": {moment: value for moment, value in disk.items()},
        }
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

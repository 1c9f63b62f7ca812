"""Bounded load test of the Gradio app on loopback: N concurrent gradio_client clients send M requests in all.

Starts `app.py` in a subprocess on 127.0.0.1 (a free port), warms it up with one request, then lets the clients share
the requests (small example images, every task) and reports: all answered / none lost, latency p50/p95/max,
throughput, and the server's resident memory after warm-up, at half-way, at the end and at its peak, so memory growth
would show. Stops by itself: every request has a timeout and the whole run a deadline; the server is stopped at the
end. Exits non-zero if any request failed or was lost.

    python scripts/load_test.py                              # 16 clients, 64 requests
    python scripts/load_test.py --clients 4 --requests 8     # a quick check
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [
    ("deblur", "examples/deblur/coffee_motion.png"),
    ("derain", "examples/derain/fruits_rain.png"),
    ("denoise", "examples/denoise/monarch_noise.png"),
    ("deblur", "examples/deblur/licenseplate_motion.png"),
    ("derain", "examples/derain/building_rain.png"),
    ("denoise", "examples/denoise/squirrel_noise.png"),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(port: int, log) -> subprocess.Popen:
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    return subprocess.Popen([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


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
    """Resident memory of the server and any children it started."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


class PeakMemory(threading.Thread):
    def __init__(self, process: psutil.Process, interval_s: float = 0.25):
        super().__init__(daemon=True)
        self.process, self.interval_s, self.peak = process, interval_s, 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            try:
                self.peak = max(self.peak, server_rss(self.process))
            except psutil.NoSuchProcess:
                return
            self.stopped.wait(self.interval_s)


def run_client(url: str, request_ids: list[int], request_timeout_s: float, deadline: float, on_done) -> list[dict]:
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    outcomes = []
    for request_id in request_ids:
        task, image = EXAMPLES[request_id % len(EXAMPLES)]
        if time.monotonic() > deadline:
            outcomes.append({"id": request_id, "status": "not sent (deadline)"})
            continue
        started = time.perf_counter()
        try:
            job = client.submit(handle_file(str(REPO_ROOT / image)), task, 512, 64, api_name="/restore")
            restored = job.result(timeout=request_timeout_s)[0]
            status = "ok" if Path(restored).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" else "bad output"
        except TimeoutError:
            status = "lost (timeout)"
        except Exception as error:  # the load test reports every failure instead of stopping at the first
            status = f"error: {type(error).__name__}: {error}"
        outcomes.append({"id": request_id, "status": status, "seconds": time.perf_counter() - started})
        on_done()
    return outcomes


def format_table(rows: list[tuple[str, str]]) -> str:
    rows = [("metric", "value"), *rows]
    name_width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    lines = [f"| {name.ljust(name_width)} | {value.ljust(value_width)} |" for name, value in rows]
    lines.insert(1, f"|{'-' * (name_width + 2)}|{'-' * (value_width + 2)}|")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--request-timeout", type=float, default=300, help="seconds one request may take")
    parser.add_argument("--deadline", type=float, default=1200, help="seconds the whole run may take")
    parser.add_argument("--startup-timeout", type=float, default=180)
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 1 <= args.requests <= 1000:
        parser.error("keep it bounded: 1-64 clients and 1-1000 requests")

    from gradio_client import Client, handle_file

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = Path(tempfile.gettempdir()) / f"mprnet_load_test_server_{port}.log"
    with open(log_path, "wb") as log:
        server = start_server(port, log)
    try:
        wait_until_serving(url, server, args.startup_timeout)
        process = psutil.Process(server.pid)
        task, image = EXAMPLES[0]
        Client(url, verbose=False).predict(handle_file(str(REPO_ROOT / image)), task, 512, 64, api_name="/restore")
        rss_warm = server_rss(process)
        peak = PeakMemory(process)
        peak.start()

        rss_half = {}
        finished = [0]
        lock = threading.Lock()

        def on_done():
            with lock:
                finished[0] += 1
                if finished[0] == args.requests // 2:
                    rss_half["value"] = server_rss(process)

        shares = [list(range(index, args.requests, args.clients)) for index in range(args.clients)]
        deadline = time.monotonic() + args.deadline
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            futures = [
                pool.submit(run_client, url, share, args.request_timeout, deadline, on_done)
                for share in shares
                if share
            ]
            outcomes = [outcome for future in futures for outcome in future.result()]
        wall_s = time.perf_counter() - started
        peak.stopped.set()
        peak.join()
        rss_end = server_rss(process)
    finally:
        stop_server(server)

    answered = [outcome for outcome in outcomes if outcome["status"] == "ok"]
    failed = [outcome for outcome in outcomes if outcome["status"] != "ok"]
    lost = [outcome for outcome in failed if outcome["status"].startswith(("lost", "not sent"))]
    latencies = np.array([outcome["seconds"] for outcome in answered]) if answered else np.array([np.nan])
    mib = 1024 * 1024
    results = {
        "clients": args.clients,
        "requests": args.requests,
        "answered_ok": len(answered),
        "failed": len(failed) - len(lost),
        "lost": len(lost),
        "latency_p50_s": float(np.percentile(latencies, 50)),
        "latency_p95_s": float(np.percentile(latencies, 95)),
        "latency_max_s": float(latencies.max()),
        "wall_s": wall_s,
        "throughput_rps": len(answered) / wall_s,
        "rss_after_warmup_mib": rss_warm / mib,
        "rss_half_way_mib": rss_half.get("value", rss_end) / mib,
        "rss_end_mib": rss_end / mib,
        "rss_peak_mib": max(peak.peak, rss_end) / mib,
    }
    rows = [
        ("clients / requests", f"{args.clients} / {args.requests}"),
        ("answered OK", f"{len(answered)}"),
        ("failed (error answer)", f"{results['failed']}"),
        ("lost (no answer)", f"{results['lost']}"),
        ("latency p50", f"{results['latency_p50_s']:.2f} s"),
        ("latency p95", f"{results['latency_p95_s']:.2f} s"),
        ("latency max", f"{results['latency_max_s']:.2f} s"),
        ("throughput", f"{results['throughput_rps']:.2f} requests/s ({wall_s:.1f} s in all)"),
        ("server RSS after warm-up", f"{results['rss_after_warmup_mib']:.0f} MiB"),
        ("server RSS half-way", f"{results['rss_half_way_mib']:.0f} MiB"),
        ("server RSS at the end", f"{results['rss_end_mib']:.0f} MiB"),
        ("server RSS peak", f"{results['rss_peak_mib']:.0f} MiB"),
        ("RSS growth, second half", f"{results['rss_end_mib'] - results['rss_half_way_mib']:+.0f} MiB"),
    ]
    print(format_table(rows))
    for outcome in failed[:10]:
        print(f"request {outcome['id']}: {outcome['status']}")
    if failed:
        print(f"server log: {log_path}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

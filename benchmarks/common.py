"""Shared benchmark plumbing: one subprocess per measurement, machine and load records, FLOP counts, JSON results
and plain-text tables."""

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# The worker prints its result on a line starting with this marker, so library output on stdout cannot confuse it.
RESULT_MARKER = "BENCHMARK-RESULT "


def parse_list(text: str, cast=str) -> list:
    return [cast(item) for item in text.split(",") if item.strip()]


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    info = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def other_busy_processes(threshold_percent: float = 20.0) -> list[str]:
    """Command lines of other processes using noticeable CPU right now (a warning sign for timings)."""
    try:
        import psutil
    except ImportError:
        return []
    own = {os.getpid()}
    processes = list(psutil.process_iter(["pid", "cmdline"]))
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.cpu_percent(None)
    time.sleep(0.5)
    busy = []
    for process in processes:
        try:
            if process.pid not in own and process.cpu_percent(None) >= threshold_percent:
                busy.append(" ".join(process.info["cmdline"] or [])[:120])
        except psutil.Error:
            pass
    return busy


def run_metadata(module: str, argv: list[str] | None, busy: list[str] | None = None, **extra) -> dict:
    """What a benchmark run records beside its rows: machine, command line, start time, load and other busy
    processes (`busy` when the caller already looked them up), plus `extra`."""
    arguments = argv if argv is not None else sys.argv[1:]
    return dict(
        machine_info(),
        command=f"python -m {module} " + " ".join(arguments),
        started_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        load_at_start=load_average(),
        other_busy_processes=other_busy_processes() if busy is None else busy,
        **extra,
    )


def summarize_latencies(seconds: list[float]) -> dict:
    return {
        "latencies_s": [round(value, 4) for value in seconds],
        "median_s": round(statistics.median(seconds), 4),
        "min_s": round(min(seconds), 4),
    }


def count_conv_flops(config, height: int, width: int) -> int:
    """Convolution FLOPs (2 per multiply-accumulate) of one forward pass at this size, counted on the meta device
    so that no arithmetic runs; FlopCounterMode counts only convolutions and matrix products, which is all MPRNet
    has."""
    from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel, pad_to_multiple

    with torch.device("meta"):
        meta_model = MPRNetModel(config).eval()
    images = pad_to_multiple(torch.zeros(1, 3, height, width)).to("meta")
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        meta_model.restore_padded(images)
    return counter.get_total_flops()


def system_busy_seconds() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat; 0 where unavailable)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_worker(module: str, spec: dict, timeout: float | None = None, env: dict | None = None) -> dict:
    """Runs `python -m module --worker JSON` in a fresh process and returns the JSON it prints.

    A fresh process per measurement keeps peak RSS (ru_maxrss) and allocator state from leaking between cases.
    """
    command = [sys.executable, "-m", module, "--worker", json.dumps(spec)]
    load_before = load_average()
    busy_before, children_before = system_busy_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    completed = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            result = json.loads(line[len(RESULT_MARKER) :])
            break
    else:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise RuntimeError(f"worker {spec} failed with exit code {completed.returncode}:\n{tail}")
    wall = time.perf_counter() - started
    # CPU time used on the machine during the measurement by anything but the worker: other jobs steal cores from
    # a 2-thread benchmark, so a share above a few percent marks the timing as disturbed.
    others = (system_busy_seconds() - busy_before) - (children_cpu_seconds() - children_before)
    result.update(
        load_before=load_before,
        load_after=load_average(),
        process_wall_s=round(wall, 2),
        other_cpu_share=round(max(others, 0.0) / (wall * (os.cpu_count() or 1)), 3),
    )
    return result


def row_with_load(result: dict) -> dict:
    """A worker's `row` with the load `run_worker` recorded around it, so a disturbed timing shows in the table."""
    return dict(result["row"], load_before=result["load_before"], other_cpu_share=result["other_cpu_share"])


def emit_result(result: dict) -> None:
    print(RESULT_MARKER + json.dumps(result), flush=True)


def merge_results(path: Path, new_rows: list[dict], key_fields: tuple[str, ...], meta: dict) -> list[dict]:
    """Adds `new_rows` to the JSON file at `path`, replacing rows with the same key, so runs can be made in pieces.

    `meta` (machine, command, load) is appended to the file's list of runs; each row also names its own load.
    """
    rows, runs = [], []
    if path.is_file():
        existing = json.loads(path.read_text())
        rows, runs = existing.get("rows", []), existing.get("runs", [])
    if meta not in runs:
        runs.append(meta)

    def key(row):
        return tuple(row.get(field) for field in key_fields)

    replaced = {key(row) for row in new_rows}
    rows = [row for row in rows if key(row) not in replaced] + new_rows
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs, "rows": rows}, indent=1) + "\n")
    return rows


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """A Markdown table; `columns` holds (header, key, format spec) and missing values print as '-'."""

    def cell(row, key, spec):
        value = row.get(key)
        if value is None:
            return "-"
        return format(value, spec) if spec else str(value)

    lines = ["| " + " | ".join(header for header, _, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(cell(row, key, spec) for _, key, spec in columns) + " |")
    return "\n".join(lines)


def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> float:
    """PSNR in dB between two images in [0, data_range] (infinite when identical)."""
    mse = torch.mean((reference.double() - estimate.double()) ** 2).item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(data_range**2 / mse)).item()

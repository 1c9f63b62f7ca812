r"""Latency, throughput and peak memory of the released MPRNet configurations, fast path against an eager baseline.

Every (config, size, path, precision) case runs in its own subprocess with `torch.set_num_threads(--threads)`,
random weights (seed 0) and a random input, batch 1: `--warmup` untimed runs, then `--repeats` timed runs.

Paths:
  official       the official MPRNet.py from `--official PATH` (its folder), `model(x)` under torch.no_grad; without
                 `--official` it is not run and the ratios use the eager stand-in below, which the output says
  eager          the official schedule (quarters and halves one at a time), NCHW, torch.no_grad
                 (benchmarks/eager_baseline.py): a clean-room stand-in for the official code
  nchw           `model.restore_padded` on NCHW weights and activations: what `model(x)` ran before it switched to
                 channels-last on CPU by itself
  library        `model(x)` as shipped, torch.no_grad: the default path of `from_pretrained` + call (channels-last
                 on CPU, chosen by the model itself)
  pipeline       `pipeline("image-restoration", model=model)(photo)` as shipped (a PIL photo in and out)
  channels_last  `mprnet_hf.speed.fast.optimize_for_inference(model)` under torch.inference_mode
  fast           channels_last plus `mprnet_hf.speed.fast.reuse_freed_memory()` (the recommended CPU setting)
  compiled       fast plus torch.compile (opt-in; compiles on the first run, which the warm-up absorbs)

With `--interleave` the paths of each case run side by side: one long-lived worker per path, taking turns round by
round, and "x side by side" is the median of the per-round ratios, so a drift of the machine's speed or another job's
load falls on every path alike (the way to compare on a shared machine).

Examples:
  python -m benchmarks.speed --configs deblur --sizes 256,512 --paths official,library,pipeline \
      --official ../MPRNet/Deblurring --interleave --repeats 5
  python -m benchmarks.speed --configs deblur --sizes 256,512 --paths eager,fast
  python -m benchmarks.speed --configs derain,denoise --sizes 1024 --paths eager,fast --warmup 0 --repeats 1
  python -m benchmarks.speed --device cuda --precision fp32,bf16,fp16 --paths eager,fast --sizes 256,512,1024
  python -m benchmarks.speed --configs deblur --sizes 256,512 --paths official,pipeline --precision fp32,auto \
      --official ../MPRNet/Deblurring --interleave     # "runs as" says what auto chose here
Every path but the pipeline runs under `autocast_context` of the case's precision ("auto" resolved first, by
`inference.choose_precision` on a model of the configuration); the pipeline is passed the precision.
Results are merged into benchmarks/results/speed_<device>.json (same case = replaced), and the table is printed.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import (
    REPO_ROOT,
    RESULT_MARKER,
    RESULTS_DIR,
    count_conv_flops,
    current_rss_mib,
    emit_result,
    format_table,
    load_average,
    merge_results,
    other_busy_processes,
    parse_list,
    peak_rss_mib,
    run_metadata,
    run_worker,
    summarize_latencies,
)

PATHS = ("official", "eager", "nchw", "library", "pipeline", "channels_last", "fast", "compiled")
CONFIGS = ("deblur", "derain", "denoise")
# Official code on the reference machine (2 cores, /work/shared/reference/README.md): median seconds and peak RSS.
OFFICIAL_CPU_MEDIAN_S = {
    ("deblur", 256): 8.87,
    ("deblur", 512): 45.09,
    ("derain", 256): 2.61,
    ("derain", 512): 15.59,
    ("denoise", 256): 7.91,
    ("denoise", 512): 41.33,
}
OFFICIAL_CPU_PEAK_MIB = {
    ("deblur", 256): 1021,
    ("deblur", 512): 2757,
    ("derain", 256): 576,
    ("derain", 512): 1398,
    ("denoise", 256): 996,
    ("denoise", 512): 2366,
}
RESULT_KEY = ("device", "config", "size", "path", "precision", "threads", "env")
READY = "BENCHMARK-READY"


# ---------------------------------------------------------------------------------------------------- worker side
def build_model(config_name: str, device: torch.device):
    from mprnet_hf import MPRNetConfig, MPRNetModel

    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig.for_task(config_name)).eval().to(device)


def build_official_model(folder: str, config_name: str, device: torch.device):
    """The official `MPRNet` class from `folder`/MPRNet.py, built with the released configuration (random weights)."""
    import importlib.util

    from mprnet_hf import MPRNetConfig

    source = Path(folder) / "MPRNet.py"
    if not source.is_file():
        raise FileNotFoundError(f"--official {folder}: no MPRNet.py there; give the folder of the official MPRNet.py")
    module_spec = importlib.util.spec_from_file_location("official_mprnet", source)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    config = MPRNetConfig.for_task(config_name)
    torch.manual_seed(0)
    return (
        module.MPRNet(
            in_c=3,
            out_c=3,
            n_feat=config.n_feat,
            scale_unetfeats=config.scale_unetfeats,
            scale_orsnetfeats=config.scale_orsnetfeats,
            num_cab=config.num_cab,
            kernel_size=config.kernel_size,
            reduction=config.reduction,
            bias=config.bias,
        )
        .eval()
        .to(device)
    )


def pipeline_forward(model, precision: str):
    """The pipeline as users call it: a PIL photo in, a PIL photo out (tensor -> 8-bit photo outside the timing), with
    the case's precision passed to it (the pipeline applies it, "auto" included)."""
    from transformers import pipeline

    from mprnet_hf import MPRNetImageProcessor

    restorer = pipeline("image-restoration", model=model, image_processor=MPRNetImageProcessor())
    photos = {}

    def forward(images):
        key = id(images)
        if key not in photos:
            from PIL import Image

            pixels = (images[0].permute(1, 2, 0).clamp(0, 1) * 255).round().byte().cpu().numpy()
            photos[key] = Image.fromarray(pixels)
        return restorer(photos[key], precision=precision)

    return forward


def prepare_path(path: str, model, spec: dict | None = None):
    """Applies the path's settings to the model; returns (model, grad context factory, forward function)."""
    from benchmarks.eager_baseline import official_style_restore
    from mprnet_hf.models.mprnet.modeling_mprnet import pad_to_multiple
    from mprnet_hf.speed.fast import optimize_for_inference, reuse_freed_memory

    if path == "official":
        official = build_official_model(spec["official"], spec["config"], spec["device"])
        return official, torch.no_grad, lambda images: official(images)[0]
    if path == "eager":
        return model, torch.no_grad, lambda images: official_style_restore(model, images)[-1]
    if path == "nchw":
        return model, torch.no_grad, lambda images: model.restore_padded(pad_to_multiple(images))[-1]
    if path == "library":
        return model, torch.no_grad, lambda images: model(images).reconstruction
    if path == "pipeline":
        return model, torch.no_grad, pipeline_forward(model, spec["precision"])
    if path in ("fast", "compiled") and model.device.type == "cpu" and not reuse_freed_memory():
        print("warning: reuse_freed_memory() is not available here (not glibc)")
    optimize_for_inference(model, channels_last=True, compile=path == "compiled")
    return model, torch.inference_mode, lambda images: model(images).reconstruction


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def configure_device(device: torch.device, precision: str) -> None:
    if device.type == "cuda":
        # fp32 numbers must match the official float32 results (TF32 changes outputs by ~1e-3); bf16/fp16 run under
        # autocast, where TF32 does not apply to the autocast convolutions anyway.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        # Fixed input size per process, so let cuDNN pick the fastest algorithm once during the warm-up.
        torch.backends.cudnn.benchmark = True


def runs_as(spec: dict, model, device: torch.device) -> str:
    """The precision a case computes in: "auto" resolved as the library resolves it for this configuration
    (`inference.choose_precision`, its agreement check included; the official code gets its twin's choice)."""
    from mprnet_hf.models.mprnet.inference import choose_precision

    if spec["precision"] != "auto":
        return spec["precision"]
    return choose_precision(model if model is not None else build_model(spec["config"], device)).precision


def prepare_case(spec: dict):
    """Builds the case's model and input; returns (timed_run, result) where `timed_run()` runs the path once and
    returns its seconds, and `result(warmup_s, latencies)` the row."""
    from mprnet_hf.models.mprnet.inference import autocast_context

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    configure_device(device, spec["precision"])
    # The official path builds its own model: a second one would only add to its peak memory.
    model = build_model(spec["config"], device) if spec["path"] != "official" else None
    precision = runs_as(spec, model, device)
    model, grad_context, forward = prepare_path(spec["path"], model, dict(spec, device=device))
    rss_after_model = current_rss_mib()
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(1, 3, spec["size"], spec["size"], generator=generator).to(device)
    if spec["path"] in ("channels_last", "fast", "compiled"):
        images = images.contiguous(memory_format=torch.channels_last)
    # The pipeline applies the case's precision itself: an autocast around it would override its "fp32".
    autocast = autocast_context(device, "fp32" if spec["path"] == "pipeline" else precision)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    finite = []

    def timed_run() -> float:
        synchronize(device)
        started = time.perf_counter()
        with grad_context(), autocast:
            output = forward(images)
        synchronize(device)
        elapsed = time.perf_counter() - started
        # Random weights can overflow in fp16; the time still counts, but the row says so.
        finite.append(True if spec["path"] == "pipeline" else bool(torch.isfinite(output).all()))
        return elapsed

    def result(warmup_s: list[float], latencies: list[float]) -> dict:
        row = dict(
            spec,
            **summarize_latencies(latencies),
            warmup_s=[round(value, 3) for value in warmup_s],
            rss_after_model_mib=round(rss_after_model, 1),
            peak_rss_mib=round(peak_rss_mib(), 1),
            finite_output=all(finite),
            runs_as=precision,
        )
        if device.type == "cuda":
            row["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        return row

    return timed_run, result


def worker(spec: dict) -> dict:
    timed_run, result = prepare_case(spec)
    warmup_s = [timed_run() for _ in range(spec["warmup"])]
    return result(warmup_s, [timed_run() for _ in range(spec["repeats"])])


def serve(spec: dict) -> None:
    """The interleaved worker: warms up, prints READY, then runs once per line read from stdin and prints the
    seconds; at the end of stdin it prints its row."""
    timed_run, result = prepare_case(spec)
    warmup_s = [timed_run() for _ in range(spec["warmup"])]
    print(READY, flush=True)
    latencies = []
    for _ in sys.stdin:
        latencies.append(timed_run())
        print(latencies[-1], flush=True)
    emit_result(result(warmup_s, latencies))


# ---------------------------------------------------------------------------------------------------- parent side
def start_serving_worker(spec: dict, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "benchmarks.speed", "--serve", json.dumps(spec)]
    worker_process = subprocess.Popen(
        command, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}
    )
    for line in worker_process.stdout:
        if line.strip() == READY:
            return worker_process
    raise RuntimeError(f"worker {spec} exited with code {worker_process.wait()} before it was ready")


def run_interleaved(specs: list[dict], env: dict) -> list[dict]:
    """Runs the cases of one (config, size, precision) side by side: one long-lived worker per path, warmed up, then
    `repeats` rounds in which every path runs once, in an order that rotates from round to round. A drift of the
    machine's speed or another job's load then falls on all paths alike. Each row gets its per-round times
    (`round_s`); the ratios to the baseline path are taken round by round (see `add_side_by_side_ratios`)."""
    load_before = load_average()
    workers = [start_serving_worker(spec, env) for spec in specs]
    times = [[] for _ in specs]
    for round_index in range(specs[0]["repeats"]):
        shift = round_index % len(specs)
        for index in list(range(len(specs)))[shift:] + list(range(len(specs)))[:shift]:
            workers[index].stdin.write("run\n")
            workers[index].stdin.flush()
            times[index].append(float(workers[index].stdout.readline()))
    rows = []
    for spec, worker_process, round_s in zip(specs, workers, times):
        worker_process.stdin.close()
        results = [line for line in worker_process.stdout if line.startswith(RESULT_MARKER)]
        if worker_process.wait() or not results:
            # Without this a failed worker would silently reuse the previous path's row.
            raise RuntimeError(f"worker {spec} exited with code {worker_process.returncode} without its row")
        row = json.loads(results[-1][len(RESULT_MARKER) :])
        rows.append(dict(row, round_s=[round(value, 3) for value in round_s], interleaved=True))
        rows[-1].update(load_before=load_before, load_after=load_average())
    return rows


def add_derived_numbers(row: dict, flops: int) -> dict:
    pixels = row["size"] ** 2
    row["conv_gflops"] = round(flops / 1e9, 2)
    row["megapixels_per_s"] = round(pixels / 1e6 / row["median_s"], 4)
    row["achieved_gflops_per_s"] = round(flops / 1e9 / row["median_s"], 1)
    official = OFFICIAL_CPU_MEDIAN_S.get((row["config"], row["size"])) if row["device"] == "cpu" else None
    if official and row["precision"] == "fp32":
        row["official_median_s"] = official
        row["speedup_vs_official"] = round(official / row["median_s"], 3)
        row["official_peak_rss_mib"] = OFFICIAL_CPU_PEAK_MIB[(row["config"], row["size"])]
    return row


def add_speedups_vs_eager(rows: list[dict]) -> None:
    eager = {
        (r["device"], r["config"], r["size"], r["precision"], r["threads"]): r["median_s"]
        for r in rows
        if r["path"] == "eager" and not r.get("env")
    }
    for row in rows:
        baseline = eager.get((row["device"], row["config"], row["size"], row["precision"], row["threads"]))
        row["speedup_vs_eager"] = round(baseline / row["median_s"], 3) if baseline else None


def add_side_by_side_ratios(rows: list[dict], run_started: str) -> str:
    """Sets `x_side_by_side` on the rows of this run: official median / row median, against the official code run
    in this same run, else against the eager stand-in of this run. Returns what the baseline was."""

    def case(row):
        return row["device"], row["config"], row["size"], row["precision"], row["threads"], row.get("env", "")

    this_run = [row for row in rows if row.get("run_started") == run_started]
    official = {case(row): row for row in this_run if row["path"] == "official"}
    eager = {case(row): row for row in this_run if row["path"] == "eager"}
    for row in this_run:
        baseline = official.get(case(row)) or eager.get(case(row))
        if baseline is None:
            row["x_side_by_side"] = None
        elif row.get("interleaved") and baseline.get("interleaved"):
            # Round by round: both ran within seconds of each other, so the machine's drift cancels.
            paired = [base / value for base, value in zip(baseline["round_s"], row["round_s"])]
            row["x_side_by_side"] = round(statistics.median(paired), 3)
        else:
            row["x_side_by_side"] = round(baseline["median_s"] / row["median_s"], 3)
    if official:
        return "the official code (--official), run in this run"
    return (
        "the eager stand-in (benchmarks/eager_baseline.py) run in this run: no --official PATH was given"
        if eager
        else "nothing: add --paths official (with --official PATH) or eager for side-by-side ratios"
    )


TABLE_COLUMNS = [
    ("config", "config", ""),
    ("size", "size", ""),
    ("path", "path", ""),
    ("env", "env", ""),
    ("precision", "precision", ""),
    ("runs as", "runs_as", ""),
    ("median s", "median_s", ".3f"),
    ("min s", "min_s", ".3f"),
    ("MP/s", "megapixels_per_s", ".4f"),
    ("GFLOP/s", "achieved_gflops_per_s", ".1f"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"),
    ("peak GPU MiB", "peak_gpu_mib", ".0f"),
    ("x eager", "speedup_vs_eager", ".2f"),
    ("x side by side", "x_side_by_side", ".2f"),
    ("x official (ref. machine)", "speedup_vs_official", ".2f"),
    ("load", "load_before", ".2f"),
    ("others' CPU", "other_cpu_share", ".0%"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: deblur,derain,denoise")
    parser.add_argument("--sizes", default="256,512,1024", help="comma-separated square sizes")
    parser.add_argument("--paths", default="eager,fast", help=f"comma-separated, from {','.join(PATHS)}")
    parser.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated: auto,fp32,bf16,fp16 (fp16 on GPU only; auto: what the library picks on this machine, "
        "the table's 'runs as')",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads in each worker")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", help="JSON file (default benchmarks/results/speed_<device>.json)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    parser.add_argument(
        "--env",
        default="",
        help="NAME=VALUE[,NAME=VALUE] set in each worker before torch loads, "
        "e.g. THP_MEM_ALLOC_ENABLE=1 (recorded with the row)",
    )
    parser.add_argument("--official", help="folder holding the official MPRNet.py, for the 'official' path")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="run the paths of each case side by side, taking turns round by round (ratios paired per round); "
        "the way to compare paths on a machine whose speed drifts or that other jobs share",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return
    if args.serve:
        serve(json.loads(args.serve))
        return

    from mprnet_hf import MPRNetConfig

    configs, sizes = parse_list(args.configs), parse_list(args.sizes, int)
    paths, precisions = parse_list(args.paths), parse_list(args.precision)
    for name, values, allowed in (
        ("configs", configs, CONFIGS),
        ("paths", paths, PATHS),
        ("precision", precisions, ("auto", "fp32", "bf16", "fp16")),
    ):
        if unknown := sorted(set(values) - set(allowed)):
            parser.error(f"unknown {name}: {', '.join(unknown)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.device == "cpu" and "fp16" in precisions:
        parser.error("fp16 autocast is GPU-only; use bf16 on CPU")
    if "official" in paths and not args.official:
        print(
            "note: no --official PATH given: the official code is not run, and 'x side by side' compares with the "
            "eager stand-in (benchmarks/eager_baseline.py) instead"
        )
        paths = [path for path in paths if path != "official"] + ([] if "eager" in paths else ["eager"])
        paths.sort(key=PATHS.index)

    worker_env = dict(item.split("=", 1) for item in parse_list(args.env))
    busy = other_busy_processes()
    if busy:
        print("warning: other processes are using the CPU, timings will be slower and noisier:\n  " + "\n  ".join(busy))
    output = Path(args.output) if args.output else RESULTS_DIR / f"speed_{args.device}.json"
    meta = run_metadata("benchmarks.speed", argv, busy=busy)
    new_rows = []
    for config_name in configs:
        for size in sizes:
            flops = count_conv_flops(MPRNetConfig.for_task(config_name), size, size)
            for precision in precisions:
                specs = [
                    dict(
                        device=args.device,
                        config=config_name,
                        size=size,
                        path=path,
                        precision=precision,
                        threads=args.threads,
                        warmup=args.warmup,
                        repeats=args.repeats,
                        env=args.env,
                        official=args.official,
                    )
                    for path in paths
                ]
                if args.interleave:
                    case_rows = run_interleaved(specs, worker_env)
                else:
                    case_rows = [
                        run_worker("benchmarks.speed", spec, timeout=args.timeout, env=worker_env) for spec in specs
                    ]
                for row in case_rows:
                    row = add_derived_numbers(row, flops)
                    row["run_started"] = meta["started_utc"]
                    new_rows.append(row)
                    print(
                        f"{config_name} {size}x{size} {row['path']} {precision}: median {row['median_s']:.3f} s, "
                        f"peak RSS {row['peak_rss_mib']:.0f} MiB, load {row['load_before']}",
                        flush=True,
                    )
    rows = merge_results(output, new_rows, RESULT_KEY, meta)
    add_speedups_vs_eager(rows)
    baseline = add_side_by_side_ratios(rows, meta["started_utc"])
    merge_results(output, rows, RESULT_KEY, meta)
    shown = [row for row in rows if (row["config"], row["size"]) in {(c, s) for c in configs for s in sizes}]
    shown.sort(
        key=lambda r: (
            r["device"],
            CONFIGS.index(r["config"]),
            r["size"],
            r["precision"],
            PATHS.index(r["path"]),
            r.get("env", ""),
        )
    )
    print(format_table(shown, TABLE_COLUMNS))
    print(f"'x side by side' is against {baseline}.")
    print(f"results: {output}")


if __name__ == "__main__":
    main()

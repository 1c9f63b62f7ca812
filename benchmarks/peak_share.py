"""How close each way of running the bundled models comes to the machine's fp32 matrix-multiply peak on CPU.

Every (model, size, path) case runs in its own process (so peak RSS and the process-wide allocator setting belong to
that path alone), which measures the fp32 matmul peak (2048² products, best of 5) right before and right after its
timed runs: on a shared machine the share of peak is then taken against the capacity the case actually had.
Time counts the model's work once (convolution FLOPs of one untiled pass), so a path that tiles, or runs a statistics
pass, shows a lower share for the same model.

Models: the bundled ones (deblur, derain, denoise) and the released configurations with seeded random weights
(deblur-released, ...): what converted official checkpoints run.

Paths:
  model_nchw       `model.restore_padded` on NCHW weights and activations: what `model(x)` ran before it switched
                   to channels-last on CPU by itself (the "before" of the plain model call)
  model_call       `MPRNetModel.from_pretrained(...)` then `model(pixel_values)` under torch.no_grad (the default)
  pipeline         `pipeline("image-restoration", model=...)(photo)`, untiled (its default)
  restore_before   `inference.restore_image(model, photo, tile_size=512, tile_overlap=64)`: the app's call before
                   serving preparation (tiles of 512 and the whole-image statistics pass)
  served_torch     `serving_speed.prepare_for_serving(models, backend="torch")`, then `restore_image` with
                   `serving_tile_size` (channels-last, reused freed memory, tiles only when memory requires)
  served           the same on onnxruntime (`backend="onnxruntime"`); the serving default, "auto", times both at
                   start-up and serves with the faster
  compiled         served_torch's preparation (channels-last, reused freed memory), then `torch.compile` of the
                   forward (`optimize_for_inference(compile=True)`, inductor with frozen weights) at the photo's fixed
                   size, compiled by one call at start-up (its "start-up s"); opt-in, never used by the app or the CLI
  cli              `mprnet-restore PHOTO --task TASK` for one photo, warm: the command's own preparation once (for a
                   few photos it serves with PyTorch channels-last), then its per-file step per call
                   (`cli.restore_file`: decode, tile choice, restore, write the PNG)
  app              the app's API as a script calls it: app.py's server started in the worker and `gradio_client`
                   (a PNG uploaded, the restored PNG and stage previews written and sent back), timed once the
                   backends of all its models are settled (`ServingReport.prepared`); `MPRNET_MAX_SECONDS` is raised so
                   that large photos are served

Every case runs at one `--precision` (the "precision" column): auto (the default of every user path: bf16 where the
CPU runs it natively and the model agrees with fp32, else fp32; "runs as" says which), fp32 or bf16. The model calls
run under `autocast_context` of it, the pipeline, `restore_image`, the served paths and the CLI are passed it, and the
app is started with `MPRNET_PRECISION` set to it.

Other ways of running a model can be registered in `EXTRA_PATHS` (name -> function(task, model) returning a function
of a PIL photo) to add their rows.

    python -m benchmarks.peak_share --sizes 1024 --models deblur,derain,denoise
    python -m benchmarks.peak_share --sizes 512,1024,2048 --paths model_call,served --repeats 1
    python -m benchmarks.peak_share --sizes 1024 --models deblur --paths pipeline,app --precision fp32,auto
Results go to benchmarks/results/peak_share.json (same case replaced) and a table is printed.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    RESULTS_DIR,
    count_conv_flops,
    emit_result,
    format_table,
    merge_results,
    other_busy_processes,
    parse_list,
    peak_rss_mib,
    run_metadata,
    run_worker,
    summarize_latencies,
)

MODELS = ("deblur", "derain", "denoise")
# The official widths with seeded random weights: what converted official checkpoints run (speed does not depend on
# the weights' values). The app serves only the bundled models, so these have no `app` row.
RELEASED_MODELS = tuple(f"{task}-released" for task in MODELS)
PATHS = ("model_nchw", "model_call", "pipeline", "restore_before", "served_torch", "served", "compiled", "cli", "app")
# The app exports its models to ONNX in the background at start-up (minutes each when not cached).
APP_READY_TIMEOUT_S = 1800
# Hook for the app's and the CLI's own restore functions: name -> builder(task, model) -> function(PIL image).
EXTRA_PATHS: dict = {}
RESULT_KEY = ("model", "size", "path", "threads", "precision")
PRECISION_CHOICES = ("auto", "fp32", "bf16")
MATMUL_SIZE = 2048


def matmul_peak_gflops(size: int = MATMUL_SIZE, repeats: int = 5) -> float:
    """Best fp32 matrix-multiply rate of this process's threads, in GFLOP/s."""
    left, right = torch.randn(size, size), torch.randn(size, size)
    left @ right
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        left @ right
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


# ---------------------------------------------------------------------------------------------------- worker side
def model_folder(task: str) -> str:
    from mprnet_hf.hub.bundled import bundled_checkpoint

    return str(bundled_checkpoint(task))


def task_of(model_name: str) -> str:
    return model_name.removesuffix("-released")


def model_config(model_name: str):
    from mprnet_hf import MPRNetConfig

    if model_name in RELEASED_MODELS:
        return MPRNetConfig.for_task(task_of(model_name), "released")
    return MPRNetConfig.from_pretrained(model_folder(model_name))


def load_model(model_name: str):
    from mprnet_hf import MPRNetModel

    if model_name in RELEASED_MODELS:
        torch.manual_seed(0)
        return MPRNetModel(model_config(model_name)).eval()
    return MPRNetModel.from_pretrained(model_folder(model_name)).eval()


def build_path(path: str, task: str, model, spec: dict):
    """Returns (function of a PIL photo, start-up report or None)."""
    from mprnet_hf.models.mprnet.image_processing_mprnet import MPRNetImageProcessor
    from mprnet_hf.models.mprnet.inference import autocast_context, choose_precision, restore_image
    from mprnet_hf.models.mprnet.modeling_mprnet import pad_to_multiple

    processor = MPRNetImageProcessor()

    def pixel_values(photo):
        return processor(images=photo, return_tensors="pt")["pixel_values"]

    precision = spec["precision"]
    autocast = autocast_context(next(model.parameters()).device, choose_precision(model, precision).precision)

    def model_call(call):
        with autocast:
            return _no_grad(call)

    if path == "model_nchw":
        return lambda photo: model_call(lambda: model.restore_padded(pad_to_multiple(pixel_values(photo)))), None
    if path == "model_call":
        return lambda photo: model_call(lambda: model(pixel_values(photo))), None
    if path == "pipeline":
        from transformers import pipeline

        restorer = pipeline("image-restoration", model=model, image_processor=processor)
        return lambda photo: restorer(photo, precision=precision), None
    if path == "restore_before":
        return lambda photo: restore_image(model, photo, tile_size=512, tile_overlap=64, precision=precision), None
    if path in ("served", "served_torch"):
        from mprnet_hf.speed.serving_speed import prepare_for_serving, serving_tile_size

        report = prepare_for_serving(
            {task: model}, backend="torch" if path == "served_torch" else "onnxruntime", cache_dir=spec.get("cache_dir")
        )

        def served(photo):
            tile_size = serving_tile_size(model, photo.width, photo.height)
            runtime = report.runtimes.get(task)
            return restore_image(
                model, photo, tile_size=tile_size, tile_overlap=64, precision=precision, whole_image_runtime=runtime
            )

        return served, report
    if path == "compiled":
        return compiled_restore(task, model, spec["size"], autocast), None
    if path == "cli":
        return cli_restore(task, model, precision), None
    if path == "app":
        return app_restore(task, precision)
    return EXTRA_PATHS[path](task, model), None


def _photo_file(folder: Path):
    """Writes the benchmark's photo to `folder`/photo.png on first use (the same photo on every call)."""
    source = folder / "photo.png"

    def saved(photo) -> Path:
        if not source.exists():
            photo.save(source)
        return source

    return saved


def compiled_restore(task: str, model, size: int, autocast):
    from mprnet_hf.models.mprnet.image_processing_mprnet import MPRNetImageProcessor
    from mprnet_hf.speed.fast import optimize_for_inference
    from mprnet_hf.speed.serving_speed import prepare_for_serving

    prepare_for_serving({task: model}, background=False, backend="torch")
    optimize_for_inference(model, compile=True)
    processor = MPRNetImageProcessor()
    with torch.inference_mode(), autocast:
        model(torch.rand(1, 3, size, size))  # compiles for this size

    def restore(photo):
        with torch.inference_mode(), autocast:
            return model(processor(images=photo, return_tensors="pt")["pixel_values"])

    return restore


def cli_restore(task: str, model, precision: str):
    import tempfile

    from mprnet_hf import cli
    from mprnet_hf.serving import max_megapixels
    from mprnet_hf.speed.serving_speed import prepare_for_serving

    folder = Path(tempfile.mkdtemp(prefix="peak-share-cli-"))
    saved = _photo_file(folder)
    args = cli.build_parser().parse_args(
        [str(folder / "photo.png"), "--task", task, "--output", str(folder / "out"), "--precision", precision]
    )
    args.max_megapixels = max_megapixels()
    prepare_for_serving({task: model}, background=False, backend="torch")  # what `cli.run` does for a few photos

    def restore(photo):
        job = cli.Job(saved(photo), folder / "out" / "photo.png")
        with torch.inference_mode():
            cli.restore_file(model, job, args)

    return restore


def import_app(precision: str):
    import os

    os.environ["MPRNET_MAX_SECONDS"] = "100000"  # the app's per-request CPU bound would refuse 2048² photos
    os.environ["MPRNET_PRECISION"] = precision
    import app

    return app


def app_restore(task: str, precision: str):
    import socket
    import tempfile

    from gradio_client import Client, handle_file

    app = import_app(precision)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app.demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, **app.LAUNCH_OPTIONS
    )
    # Until every served model's backend is settled: exports (and, with MPRNET_BACKEND=auto, the backend timings)
    # would otherwise run in the background during the timed calls.
    app.SERVING.prepared.wait(APP_READY_TIMEOUT_S)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    saved = _photo_file(Path(tempfile.mkdtemp(prefix="peak-share-app-")))

    def restore(photo):
        return client.predict(handle_file(str(saved(photo))), task, 0, 64, api_name="/restore")

    return restore, app.SERVING


def app_precision(task: str) -> str:
    import app

    return app.SERVING.precisions[task]


def _no_grad(function):
    with torch.no_grad():
        return function()


def worker(spec: dict) -> dict:
    from PIL import Image

    from mprnet_hf.models.mprnet.inference import choose_precision, choose_tile_size

    torch.set_num_threads(spec["threads"])
    if spec["path"] == "app":
        # First, as when app.py is the process's main module: it sets the allocator before any other thread
        # allocates, and threads that allocated before would keep arenas of their own.
        import_app(spec["precision"])
    model = load_model(spec["model"])
    pixels = np.random.default_rng(1).integers(0, 256, (spec["size"], spec["size"], 3), dtype=np.uint8)
    photo = Image.fromarray(pixels)
    started = time.perf_counter()
    restore, report = build_path(spec["path"], task_of(spec["model"]), model, spec)
    start_up_s = time.perf_counter() - started
    peak_before = matmul_peak_gflops()
    warmup_s, latencies = [], []
    for index in range(spec["warmup"] + spec["repeats"]):
        started = time.perf_counter()
        restore(photo)
        (warmup_s if index < spec["warmup"] else latencies).append(time.perf_counter() - started)
    peak_after = matmul_peak_gflops()
    result = dict(
        spec,
        **summarize_latencies(latencies),
        warmup_s=[round(value, 2) for value in warmup_s],
        start_up_s=round(start_up_s, 2),
        peak_rss_mib=round(peak_rss_mib(), 1),
        matmul_gflops_before=round(peak_before, 1),
        matmul_gflops_after=round(peak_after, 1),
        auto_tile=choose_tile_size(model, spec["size"], spec["size"]),
        runs_as=app_precision(task_of(spec["model"]))
        if spec["path"] == "app"
        else choose_precision(model, spec["precision"]).precision,
    )
    if report is not None:
        result.update(backend=report.backends[task_of(spec["model"])], reused_freed_memory=report.reused_freed_memory)
    return result


# ---------------------------------------------------------------------------------------------------- parent side
def add_derived_numbers(row: dict, flops: int) -> dict:
    row["conv_gflop"] = round(flops / 1e9, 1)
    row["achieved_gflops_per_s"] = round(flops / 1e9 / row["median_s"], 1)
    # The better of the two matmul measurements: the capacity the machine offered around this case.
    row["matmul_peak_gflops"] = max(row["matmul_gflops_before"], row["matmul_gflops_after"])
    row["share_of_peak"] = round(row["achieved_gflops_per_s"] / row["matmul_peak_gflops"], 3)
    return row


TABLE_COLUMNS = [
    ("model", "model", ""),
    ("size", "size", ""),
    ("path", "path", ""),
    ("precision", "precision", ""),
    ("runs as", "runs_as", ""),
    ("backend", "backend", ""),
    ("median s", "median_s", ".2f"),
    ("GFLOP", "conv_gflop", ".0f"),
    ("GFLOP/s", "achieved_gflops_per_s", ".1f"),
    ("matmul peak GFLOP/s", "matmul_peak_gflops", ".0f"),
    ("share of peak", "share_of_peak", ".0%"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"),
    ("start-up s", "start_up_s", ".1f"),
    ("load", "load_before", ".1f"),
    ("others' CPU", "other_cpu_share", ".0%"),
]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, from {','.join(MODELS + RELEASED_MODELS)} (released: official widths, random weights)",
    )
    parser.add_argument("--sizes", default="512,1024,2048", help="comma-separated square sizes")
    parser.add_argument(
        "--paths",
        default=",".join(path for path in PATHS if path != "compiled"),  # compiling takes minutes per shape
        help=f"comma-separated, from {','.join(PATHS)} (all but compiled by default)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--precision",
        default="auto",
        help=f"comma-separated, from {','.join(PRECISION_CHOICES)} (auto: what the user paths default to)",
    )
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cache-dir", help="ONNX export cache for the served path (default: the serving default)")
    parser.add_argument("--output", default=str(RESULTS_DIR / "peak_share.json"))
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        emit_result(worker(json.loads(args.worker)))
        return

    models, sizes, paths = parse_list(args.models), parse_list(args.sizes, int), parse_list(args.paths)
    precisions = parse_list(args.precision)
    allowed_models = MODELS + RELEASED_MODELS
    for name, values, allowed in (
        ("models", models, allowed_models),
        ("paths", paths, PATHS + tuple(EXTRA_PATHS)),
        ("precision", precisions, PRECISION_CHOICES),
    ):
        if unknown := sorted(set(values) - set(allowed)):
            parser.error(f"unknown {name}: {', '.join(unknown)}")
    if "app" in paths and set(models) & set(RELEASED_MODELS):
        parser.error("the app serves only the bundled models: leave out the app path or the released models")
    busy = other_busy_processes()
    if busy:
        print(
            "warning: other processes are using the CPU; shares are taken against the matmul rate measured "
            "beside each case, but timings stay noisy:\n  " + "\n  ".join(busy)
        )
    meta = run_metadata("benchmarks.peak_share", argv, busy=busy)
    new_rows = []
    for task in models:
        config = model_config(task)
        for size in sizes:
            flops = count_conv_flops(config, size, size)
            for path, precision in [(path, precision) for path in paths for precision in precisions]:
                spec = dict(
                    model=task,
                    size=size,
                    path=path,
                    precision=precision,
                    threads=args.threads,
                    warmup=args.warmup,
                    repeats=args.repeats,
                    cache_dir=args.cache_dir,
                )
                row = add_derived_numbers(run_worker("benchmarks.peak_share", spec, timeout=args.timeout), flops)
                new_rows.append(row)
                print(
                    f"{task} {size}² {path} {precision} (runs as {row['runs_as']}): {row['median_s']:.2f} s, "
                    f"{row['share_of_peak']:.0%} of "
                    f"{row['matmul_peak_gflops']:.0f} GFLOP/s, peak RSS {row['peak_rss_mib']:.0f} MiB",
                    flush=True,
                )
    rows = merge_results(Path(args.output), new_rows, RESULT_KEY, meta)
    for row in rows:
        if row.get("precision") is None:
            # Measured before this column existed, when every path ran fp32.
            row.update(precision="fp32", runs_as="fp32")
    rows = merge_results(Path(args.output), rows, RESULT_KEY, meta)
    shown = [row for row in rows if row["model"] in models and row["size"] in sizes]
    order = PATHS + tuple(EXTRA_PATHS)
    shown.sort(
        key=lambda r: (
            allowed_models.index(r["model"]),
            r["size"],
            order.index(r["path"]) if r["path"] in order else len(order),
            PRECISION_CHOICES.index(r["precision"]),
        )
    )
    print(format_table(shown, TABLE_COLUMNS))
    print(f"results: {args.output}")


if __name__ == "__main__":
    main()

r"""Trains the three bundled models (deblur, derain, denoise) one after another in one time budget, scores them against
the bundled weights on the validation photos, and packs the new model folders and the report.

    # on a lent GPU, through scripts/train_on_gpu.sh (docs/TRAINING.md gives the device call)
    python -m mprnet_hf.training.train_all --train-dir runs/gpu-bundle/train --val-dir runs/gpu-bundle/val \
        --output-dir /tmp/train-all --archive $OUT/checkpoints.tar --report-dir $OUT
    # anywhere, a handful of steps of each task (what the test suite runs)
    python -m mprnet_hf.training.train_all --smoke --train-dir data/dev/train --val-dir data/dev/val \
        --output-dir runs/train-all-smoke

Each task is one run of `mprnet_hf.training.train` from the bundled weights (`--init-from`, unless
`--from-scratch`) with a warm-up + cosine schedule over `--minutes-per-task` of wall-clock time, bf16 autocast,
`--num-workers` processes cutting and degrading the patches, and validation every `--val-every` steps; the best
validating weights are exported as today's bundled folders are (`mprnet-<task>-small/`). Then each is scored with
the evaluation protocol of `scripts/quality_report.py` (the degraded input, the bundled weights, the new weights; no
classical baselines, which do not change) on the GPU when there is one. Before the real run, a GPU run first goes
through the whole pipeline in smoke mode (`--preflight`), so a broken step fails within a minute, not after the
budget is spent.

Written to `--report-dir`: quality_report.json (every score), quality_report.md (the table, also printed) and
training_runs.json (per task: seconds, steps, patches per second, the share of time spent waiting for batches).
`--archive` packs the model folders into one tar file (the device returns at most 8 files).
"""

import argparse
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import accelerate
import torch
import transformers

from ..evaluation.evaluate import DEFAULT_SIGMA, evaluate, methods_for, model_method, synthetic_samples
from ..hub.bundled import bundled_checkpoint
from ..models.mprnet.configuration_mprnet import TASKS
from ..models.mprnet.modeling_mprnet import MPRNetModel
from . import train

# (name, task, noise level) of each scored run: the rows of scripts/quality_report.py.
QUALITY_RUNS = (
    ("denoise-sigma15", "denoise", 15.0),
    ("denoise-sigma25", "denoise", 25.0),
    ("denoise-sigma50", "denoise", 50.0),
    ("deblur", "deblur", None),
    ("derain", "derain", None),
)
# Training settings of the GPU run, and of the smoke run that checks the same pipeline in seconds on a CPU.
GPU_SETTINGS = {"patch_size": 256, "batch_size": 32, "lr": 4e-4, "mixed_precision": "bf16", "val_every": 200}
SMOKE_SETTINGS = {
    "patch_size": 64,
    "batch_size": 2,
    "lr": 2e-4,
    "mixed_precision": "no",
    "val_every": 2,
    "steps": 2,
    "eval_limit": 2,
}
# With --time-schedule the warm-up is this share of the time budget (train.py takes it as warmup_steps / steps).
WARMUP_SHARE = 0.03
SCHEDULE_STEPS = 1_000_000  # the dataset's length in batches: more than a time budget can train


def default_workers() -> int:
    """One data worker per core, less one for the training process and one for the rest of the machine."""
    return max((os.cpu_count() or 1) - 2, 0)


def train_argv(task: str, settings: dict, train_dir, val_dir, output: Path, state: Path, init_from) -> list[str]:
    """The command line of `mprnet_hf.training.train` for one task."""
    argv = [
        "--task",
        task,
        "--train-dir",
        str(train_dir),
        "--val-dir",
        str(val_dir),
        "--output-dir",
        str(output),
        "--state-dir",
        str(state),
        "--preset",
        settings["preset"],
        "--patch-size",
        str(settings["patch_size"]),
        "--batch-size",
        str(settings["batch_size"]),
        "--lr",
        str(settings["lr"]),
        "--mixed-precision",
        settings["mixed_precision"],
        "--val-every",
        str(settings["val_every"]),
        "--num-workers",
        str(settings["num_workers"]),
        "--seed",
        str(settings["seed"]),
    ]
    if init_from:
        argv += ["--init-from", str(init_from)]
    if settings.get("minutes_per_task") is not None:
        warmup = max(int(WARMUP_SHARE * SCHEDULE_STEPS), 1)
        argv += [
            "--steps",
            str(SCHEDULE_STEPS),
            "--warmup-steps",
            str(warmup),
            "--time-schedule",
            "--max-minutes",
            str(settings["minutes_per_task"]),
        ]
    else:
        argv += ["--steps", str(settings["steps"]), "--warmup-steps", "1"]
    return argv


def train_task(task: str, settings: dict, train_dir, val_dir, work_dir: Path) -> dict:
    """Trains one task into work_dir/mprnet-<task>-small and returns what the run measured."""
    output, state = work_dir / f"mprnet-{task}-small", work_dir / "state" / task
    # A fresh run: no files of an earlier one left in the folder that is packed, nor a state that is not resumed.
    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(state, ignore_errors=True)
    init_from = None if settings["from_scratch"] else bundled_checkpoint(task)
    start = time.perf_counter()
    run = train.main(train_argv(task, settings, train_dir, val_dir, output, state, init_from))
    seconds = time.perf_counter() - start
    summary = json.loads((output / "training_summary.json").read_text())
    return {
        "task": task,
        "seconds": round(seconds, 1),
        "training_loop_seconds": round(run.seconds, 1),
        "steps": run.steps,
        "patches": run.samples,
        "patch_size": settings["patch_size"],
        "batch_size": settings["batch_size"],
        "patches_per_second": round(run.samples / max(run.seconds, 1e-9), 3),
        "data_wait_share": round(run.data_wait_seconds / max(run.seconds, 1e-9), 3),
        "best_val_psnr": summary["best_val_psnr"],
        "init_from": str(init_from) if init_from else None,
    }


def load_for_scoring(folder, device: torch.device) -> MPRNetModel:
    return MPRNetModel.from_pretrained(folder).eval().to(device)


def score_task(task: str, new_folder: Path, val_dir, device: torch.device, limit: int | None) -> dict:
    """The quality runs of `task`: PSNR/SSIM of the degraded input, the bundled weights and the new ones."""
    new_model = load_for_scoring(new_folder, device)
    methods = methods_for(task, new_model, model_name="new")
    methods = {
        "input": methods["input"],
        "bundled": model_method(load_for_scoring(bundled_checkpoint(task), device)),
        "new": methods["new"],
    }
    results = {}
    for name, run_task, sigma in QUALITY_RUNS:
        if run_task == task:
            samples = synthetic_samples(val_dir, task, sigma or DEFAULT_SIGMA, limit)
            results[name] = evaluate(samples, methods, task).to_json(sigma=sigma, data=str(val_dir), limit=limit)
    return results


def quality_table(results: dict) -> str:
    lines = ["| run (protocol) | degraded input | bundled weights | new weights | change |", "|---|---|---|---|---|"]
    for name, result in results.items():
        summary = result["summary"]
        cells = [f"{summary[key]['psnr']:.2f} / {summary[key]['ssim']:.4f}" for key in ("input", "bundled", "new")]
        change = summary["new"]["psnr"] - summary["bundled"]["psnr"]
        lines.append(f"| {name} ({result['protocol']}) | " + " | ".join(cells) + f" | {change:+.2f} dB |")
    return "\n".join(lines)


def training_table(runs: list[dict]) -> str:
    lines = ["| task | seconds | steps | patches/s | waiting for data | best val PSNR |", "|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run['task']} | {run['seconds']:.0f} | {run['steps']} | {run['patches_per_second']:.1f} | "
            f"{run['data_wait_share']:.0%} | {run['best_val_psnr']:.2f} dB |"
        )
    return "\n".join(lines)


def pack(work_dir: Path, tasks, archive: Path) -> None:
    """The model folders in one tar file, each under its own name (`tar -xf ARCHIVE -C checkpoints` replaces the
    bundled ones)."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w") as tar:
        for task in tasks:
            tar.add(work_dir / f"mprnet-{task}-small", arcname=f"mprnet-{task}-small")


def run_all(
    settings: dict,
    tasks,
    train_dir,
    val_dir,
    work_dir: Path,
    device: torch.device,
    archive: Path | None = None,
    report_dir: Path | None = None,
) -> tuple[list, dict]:
    """Trains every task, then scores each; returns the training measurements and the quality results. The archive
    and training_runs.json are rewritten after each task, so a call cut short by its time limit still returns the
    tasks it finished."""
    runs = []
    for task in tasks:
        print(
            f"== training {task} ({settings['preset']} preset, {settings['patch_size']}² patches, batch "
            f"{settings['batch_size']}, {settings['num_workers']} data workers)",
            flush=True,
        )
        runs.append(train_task(task, settings, train_dir, val_dir, work_dir))
        print(f"== {task}: {json.dumps(runs[-1])}", flush=True)
        if archive:
            pack(work_dir, [run["task"] for run in runs], archive)
        if report_dir:
            report_dir.mkdir(parents=True, exist_ok=True)
            (report_dir / "training_runs.json").write_text(json.dumps(runs, indent=2))
    results = {}
    for task in tasks:
        results.update(score_task(task, work_dir / f"mprnet-{task}-small", val_dir, device, settings["eval_limit"]))
    return runs, results


def write_report(report_dir: Path, settings: dict, runs: list, results: dict, environment: dict) -> str:
    report_dir.mkdir(parents=True, exist_ok=True)
    tables = (
        f"Training ({settings['preset']} preset, {settings['patch_size']}² patches, batch "
        f"{settings['batch_size']}, {environment['device_name']}):\n\n{training_table(runs)}\n\n"
        "PSNR (dB) / SSIM on the validation photos at full resolution, seeded degradations:\n\n"
        f"{quality_table(results)}\n"
    )
    (report_dir / "quality_report.md").write_text(tables)
    (report_dir / "quality_report.json").write_text(
        json.dumps({"environment": environment, "settings": settings, "training": runs, "quality": results}, indent=2)
    )
    (report_dir / "training_runs.json").write_text(json.dumps(runs, indent=2))
    return tables


def environment_summary(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores"
    return {
        "device_name": name,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", required=True, help="clean training photos (degraded on the fly)")
    parser.add_argument("--val-dir", required=True, help="clean validation photos")
    parser.add_argument("--output-dir", required=True, help="work folder: mprnet-<task>-small/ and training states")
    parser.add_argument("--report-dir", help="where the report files go (default: --output-dir)")
    parser.add_argument("--archive", help="also pack the model folders into this tar file")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a handful of steps of each task on 64² patches, to check "
        "the pipeline (the default where there is no GPU)",
    )
    parser.add_argument(
        "--preflight",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the pipeline in smoke mode on the GPU first (default: on a GPU, unless --smoke)",
    )
    parser.add_argument("--minutes-per-task", type=float, default=2.2, help="training budget of each task")
    parser.add_argument("--batch-size", type=int, default=GPU_SETTINGS["batch_size"])
    parser.add_argument("--patch-size", type=int, default=GPU_SETTINGS["patch_size"])
    parser.add_argument("--lr", type=float, default=GPU_SETTINGS["lr"], help="peak learning rate")
    parser.add_argument("--num-workers", type=int, default=None, help="data workers (default: CPU cores - 2)")
    parser.add_argument(
        "--preset",
        default="small",
        choices=train.PRESETS,
        help="size of a model trained --from-scratch (from the bundled weights, theirs)",
    )
    parser.add_argument("--from-scratch", action="store_true", help="fresh weights instead of the bundled ones")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--eval-limit", type=int, help="score only the first N validation photos")
    args = parser.parse_args(argv)
    if args.minutes_per_task <= 0:
        parser.error("--minutes-per-task must be positive")
    return args


def settings_from(args, smoke: bool) -> dict:
    settings = {
        "preset": args.preset,
        "from_scratch": args.from_scratch,
        "seed": args.seed,
        "eval_limit": args.eval_limit,
    }
    if smoke:
        # Two data workers on a GPU, so that the preflight goes through the worker processes too.
        workers = min(2 if args.num_workers is None and torch.cuda.is_available() else args.num_workers or 0, 2)
        return {
            **settings,
            **SMOKE_SETTINGS,
            "num_workers": workers,
            "minutes_per_task": None,
            "mixed_precision": "bf16" if torch.cuda.is_available() else "no",
            "eval_limit": args.eval_limit or SMOKE_SETTINGS["eval_limit"],
        }
    workers = default_workers() if args.num_workers is None else args.num_workers
    return {
        **settings,
        **GPU_SETTINGS,
        "patch_size": args.patch_size,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "num_workers": workers,
        "minutes_per_task": args.minutes_per_task,
        "steps": None,
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    smoke = args.smoke or device.type != "cuda"
    if smoke and not args.smoke:
        print("No GPU: running the smoke version (a handful of steps of each task)", flush=True)
    environment = environment_summary(device)
    print(f"Environment: {json.dumps(environment)}", flush=True)
    work_dir, report_dir = Path(args.output_dir), Path(args.report_dir or args.output_dir)
    if args.preflight if args.preflight is not None else device.type == "cuda" and not smoke:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mprnet-preflight-") as preflight_dir:
            run_all(
                settings_from(args, smoke=True), args.tasks, args.train_dir, args.val_dir, Path(preflight_dir), device
            )
        print(f"== preflight passed in {time.perf_counter() - start:.0f} s", flush=True)
    settings = settings_from(args, smoke)
    archive = Path(args.archive) if args.archive else None
    runs, results = run_all(settings, args.tasks, args.train_dir, args.val_dir, work_dir, device, archive, report_dir)
    print(write_report(report_dir, settings, runs, results, environment), flush=True)
    if archive:
        print(f"Model folders packed into {archive}", flush=True)
    return {"training": runs, "quality": results}


if __name__ == "__main__":
    main()

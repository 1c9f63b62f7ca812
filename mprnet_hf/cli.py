"""mprnet-restore: restore photos, folders of photos or globs with MPRNet, offline on the bundled weights by default.

    mprnet-restore photo.jpg --task denoise --output out/
    mprnet-restore scans/ "more/**/*.tif" --task deblur --output restored/ --format same
    mprnet-restore photos/ --task auto --output restored/     # detect blur / noise / rain per photo, undo each

With --task auto each photo goes through the degradation detector and the restorations it finds (derain, denoise,
then deblur); what was detected and done is printed per photo, and a photo that looks clean is written unchanged.

Folders are walked recursively and their tree is mirrored under the output folder (a glob's tree from its first
wildcard on). Finished outputs are skipped unless --overwrite, so an interrupted run resumes where it stopped; an input
is never overwritten. A file that fails is reported with the reason and the others are still restored. Exit status:
0 when every file was restored or skipped, 1 when any failed, 2 for bad arguments (nothing is written then).

Started by a launcher on many processes (accelerate launch --multi_gpu --num_processes N -m mprnet_hf.restore ...,
or torchrun), the processes share the files out, each file once, and the main one prints the summary of all; every
process exits 1 if a file failed on any of them (docs/DEPLOYMENT.md).
"""

import argparse
import glob
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers.utils import logging as transformers_logging

from .auto import AUTO, JPEG_DENOISE_NOTE, ModelChoice, auto_message, restore_photo_auto
from .collection import Share, ShareError, device_for
from .data.image_io import format_for_path, read_image, restore_photo, write_image
from .detection import DegradationDetector
from .hub.bundled import WEIGHT_LOAD_ERRORS, bundled_checkpoint, with_jpeg_denoiser
from .models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from .models.mprnet.inference import (
    AUTO_PRECISION,
    AUTOMATIC,
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    PRECISION_CHOICES,
    ImageRefused,
    Tiling,
    choose_precision,
    cpu_has_native_bf16,
)
from .models.mprnet.modeling_mprnet import MPRNetModel
from .serving import max_megapixels
from .speed.serving_speed import (
    BACKENDS,
    ServingReport,
    onnxruntime_available,
    prepare_for_serving,
    serving_tile_size,
)

DEVICES = ("auto", "cpu", "cuda", "mps")
FORMATS = ("png", "same")
GLOB_CHARACTERS = set("*?[")
STAGE_SUFFIXES = (".stage1", ".stage2")
ONNX_EXPORT_WORTH_IT = 10  # files in a run
# The library's advice in this command's terms (a refused photo's limit is a flag here, not an argument).
ADVICE = {"too_large": "Downscale it, or raise the limit with --max-megapixels."}


class UsageError(Exception):
    """Bad arguments: reported on one line, exit status 2, nothing written."""


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}. See {self.prog} --help.\n")


@dataclass(frozen=True)
class Job:
    """One input file and the output it is restored to."""

    source: Path
    output: Path


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="mprnet-restore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or globs")
    parser.add_argument(
        "--task",
        required=True,
        choices=(*TASKS, AUTO),
        help="what to undo; auto: detect it per photo with the bundled detector",
    )
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder to write the results to")
    parser.add_argument("--model", help="model folder or Hugging Face Hub id (default: the bundled small checkpoint)")
    parser.add_argument(
        "--tile-size",
        type=int,
        default=None,
        help="restore larger images tile by tile (default: automatic, whole images when memory allows "
        f"on a CPU, tiles of {DEFAULT_TILE_SIZE} on a GPU; 0: always whole images)",
    )
    parser.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        help=f"pixels neighbouring tiles share and cross-fade over (default {DEFAULT_TILE_OVERLAP}, "
        "at most a quarter of the tile)",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA, else MPS, else CPU")
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=AUTO_PRECISION,
        help="auto (default): bf16 on a GPU with bf16 or a CPU with native bf16 instructions (AVX512-BF16, AMX) once "
        "the model agrees with fp32 on a probe image, else fp32; fp32 forces exact float32; fp16 needs a GPU",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="png",
        help="png (lossless, the default) or same: the input's own format and extension",
    )
    parser.add_argument(
        "--stages",
        action="store_true",
        help="also write the stage-1 and stage-2 images (NAME.stage1.EXT, NAME.stage2.EXT)",
    )
    parser.add_argument("--overwrite", action="store_true", help="restore again files whose output already exists")
    parser.add_argument(
        "--max-megapixels", type=float, default=None, help="refuse larger photos (default: MPRNET_MAX_MEGAPIXELS or 16)"
    )
    return parser


def choose_device(name: str) -> torch.device:
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise UsageError("--device cuda: no CUDA GPU is available to PyTorch here; use --device cpu (or auto)")
    if name == "mps" and not mps:
        raise UsageError("--device mps: Apple's MPS backend is not available here; use --device cpu (or auto)")
    return torch.device(name)


def check_settings(args, device: torch.device) -> None:
    try:
        Tiling(AUTOMATIC if args.tile_size is None else args.tile_size or None, args.tile_overlap)
    except ValueError as error:
        raise UsageError(f"--tile-size/--tile-overlap: {error}") from None
    if args.precision == "fp16" and device.type == "cpu":
        raise UsageError("--precision fp16 needs a GPU; use bf16 or fp32 on CPU")
    if args.precision == AUTO_PRECISION and device.type == "cpu":
        try:
            cpu_has_native_bf16()  # reads MPRNET_CPU_BF16, which must be 0, 1 or unset
        except ValueError as error:
            raise UsageError(f"--precision auto: {error}") from None
    if args.max_megapixels is not None and args.max_megapixels <= 0:
        raise UsageError(f"--max-megapixels must be positive, got {args.max_megapixels:g}")
    if args.task == AUTO and args.model is not None:
        raise UsageError("--model names one task's model; --task auto uses the bundled model of every task")
    if args.output.exists() and not args.output.is_dir():
        raise UsageError(f"--output {args.output} is a file, not a folder; name a folder (it is created if missing)")


def image_suffixes() -> set[str]:
    """Extensions Pillow can open: what a folder walk picks up (sidecar files are left alone)."""
    return {suffix for suffix, image_format in Image.registered_extensions().items() if image_format in Image.OPEN}


def glob_base(pattern: str) -> Path:
    """The folder a glob's matches are mirrored from: its path up to the first part with a wildcard."""
    fixed = []
    for part in Path(pattern).parts:
        if GLOB_CHARACTERS & set(part):
            break
        fixed.append(part)
    return Path(*fixed)


def expand_inputs(inputs: list[str], output_dir: Path) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for every input; files under the output folder are never inputs,
    so running again over the same folder does not restore the restored photos."""
    suffixes, output_dir = image_suffixes(), output_dir.resolve()
    found = []

    def walk(folder: Path):
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in suffixes and output_dir not in path.resolve().parents:
                found.append((path, path.relative_to(folder)))

    for name in inputs:
        path = Path(name)
        if path.is_dir():
            walk(path)
        elif path.is_file():
            found.append((path, Path(path.name)))
        elif GLOB_CHARACTERS & set(name):
            matches = sorted(Path(match) for match in glob.glob(name, recursive=True))
            if not matches:
                raise UsageError(f"{name} matches no file; check the pattern (quote it so the shell leaves it alone)")
            base = glob_base(name)
            for match in matches:
                if match.is_dir():
                    walk(match)
                elif output_dir not in match.resolve().parents:
                    found.append((match, match.relative_to(base)))
        else:
            raise UsageError(f"input {name} does not exist; pass image files, folders or globs")
    if not found:
        raise UsageError(
            f"no image file found in {' '.join(inputs)} (files under --output {output_dir} are left "
            "out); pass image files, folders holding images, or globs"
        )
    return found


def plan_jobs(found: list[tuple[Path, Path]], output_dir: Path, output_format: str) -> list[Job]:
    """The output of every input; refuses two inputs that would write the same output."""
    jobs, owners = [], {}
    for source, relative in found:
        output = output_dir / (relative if output_format == "same" else relative.with_suffix(".png"))
        key = output.resolve()
        if key in owners and owners[key] != source.resolve():
            raise UsageError(
                f"{source} and {owners[key]} would both be written to {output}; restore them in separate "
                "runs or to separate --output folders"
            )
        owners[key] = source.resolve()
        jobs.append(Job(source, output))
    return jobs


def check_model_folder(source: str) -> None:
    folder = Path(source)
    config = folder / "config.json"
    try:
        model_type = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    except (OSError, ValueError, AttributeError):
        model_type = None
    if not folder.is_dir() or model_type != MPRNetConfig.model_type:
        raise UsageError(
            f"--model {source} is not an MPRNet model folder (no config.json with model_type "
            f"'{MPRNetConfig.model_type}'); pass a folder written by save_pretrained or mprnet-convert, "
            "or a Hub id"
        )


def load_model(source: str | None, task: str, device: torch.device) -> MPRNetModel:
    if source is None:
        source = str(bundled_checkpoint(task))
    elif Path(source).exists() or source.startswith((".", "/", "~")):
        check_model_folder(source)
    transformers_logging.disable_progress_bar()  # one bar per run is the files' bar
    try:
        model = MPRNetModel.from_pretrained(source)
    except WEIGHT_LOAD_ERRORS as error:
        reason = str(error).strip().splitlines()[0]
        raise UsageError(
            f"--model {source} could not be loaded ({reason}); pass an MPRNet folder or a Hub id that "
            "is downloaded (or reachable)"
        ) from None
    if model.config.task != task:
        tqdm.write(f"warning: {source} was trained for {model.config.task}, restoring for {task}", file=sys.stderr)
    return model.eval().to(device)


def stage_path(output: Path, stage: int) -> Path:
    return output.with_name(output.stem + STAGE_SUFFIXES[stage] + output.suffix)


def step_path(output: Path, step: int, task: str) -> Path:
    return output.with_name(f"{output.stem}.step{step}-{task}{output.suffix}")


def restore_file_auto(models, detector, job: Job, args, whole_image_runtimes=None) -> None:
    """Auto mode on one file: detects, restores with each task found (on the serving runtime of each task, when
    given), says what it saw and did."""
    format_for_path(job.output)
    photo = read_image(job.source, args.max_megapixels)
    model = next(iter(models.values()))
    tile_size = serving_tile_size(model, *photo.size) if args.tile_size is None else args.tile_size or None
    choice = ModelChoice(models, photo.pixels)
    restored, steps, detections = restore_photo_auto(
        models,
        photo,
        detector,
        whole_image_runtimes,
        model_choice=choice,
        tile_size=tile_size,
        tile_overlap=args.tile_overlap,
        precision=args.precision,
    )
    job.output.parent.mkdir(parents=True, exist_ok=True)
    if args.stages and len(steps) > 1:
        for number, (task, step_photo, _stages) in enumerate(steps[:-1], start=1):
            write_image(step_photo, step_path(job.output, number, task))
    write_image(restored, job.output)
    message = auto_message(detections, tuple(task for task, *_ in steps), choice.jpeg_denoised)
    tqdm.write(f"{job.source}: {message}", file=sys.stderr)
    for note in photo.notes:
        tqdm.write(f"note: {note}", file=sys.stderr)


def restore_file(models, job: Job, args, serving: ServingReport | None = None) -> None:
    """Restores one file with the model of `args.task` (`models`: one model, or models by key with the JPEG denoiser
    for a photo saved as JPEG: `auto.ModelChoice`), at the precision and on the runtime the serving report holds for
    it (else `--precision`, on PyTorch); raises ValueError (or OSError, RuntimeError) saying why it could not."""
    format_for_path(job.output)
    photo = read_image(job.source, args.max_megapixels)
    models = {args.task: models} if isinstance(models, MPRNetModel) else models
    key = ModelChoice(models, photo.pixels).key(args.task)
    precisions, runtimes = (serving.precisions, serving.runtimes) if serving is not None else ({}, {})
    model, precision, whole_image_runtime = models[key], precisions.get(key), runtimes.get(key)
    tiles = None

    def tile_progress(done: int, total: int):
        nonlocal tiles
        if total > 1:
            tiles = tiles or tqdm(
                total=total, desc=job.source.name, unit="tile", leave=False, file=sys.stderr, disable=None
            )
            tiles.update(done - tiles.n)

    try:
        tile_size = serving_tile_size(model, *photo.size) if args.tile_size is None else args.tile_size or None
        restored, stages = restore_photo(
            model,
            photo,
            tile_size=tile_size,
            tile_overlap=args.tile_overlap,
            precision=args.precision if precision is None else precision,
            progress=tile_progress,
            whole_image_runtime=whole_image_runtime,
        )
    finally:
        if tiles is not None:
            tiles.close()
    job.output.parent.mkdir(parents=True, exist_ok=True)
    if args.stages:
        for index, stage in enumerate(stages[:-1]):
            write_image(stage, stage_path(job.output, index))
    write_image(restored, job.output)
    if key != args.task:
        tqdm.write(f"{job.source}:{JPEG_DENOISE_NOTE}", file=sys.stderr)
    for note in photo.notes:
        tqdm.write(f"note: {note}", file=sys.stderr)


@dataclass
class Plan:
    """What a run found and loaded before restoring anything."""

    found: list[tuple[Path, Path]]
    jobs: list[Job]
    device: torch.device
    models: dict
    # Restores a job with what the serving report holds for its task by then (precision, runtime).
    restore_one: Callable[[Job, ServingReport], None]
    backend: str


def serving_backend(share: Share, files: int) -> str:
    """MPRNET_BACKEND if set (as in the app), else an onnxruntime export in the background for a folder of photos in
    one process. In a run of many processes every process would export the same weights at once, on the cores the
    restoring needs, and could switch runtimes partway, so they restore with PyTorch."""
    chosen = os.environ.get("MPRNET_BACKEND") or None
    if chosen is not None and chosen not in BACKENDS:
        raise UsageError(f"MPRNET_BACKEND={chosen!r} is not one of {', '.join(BACKENDS)}")
    if chosen == "onnxruntime" and not onnxruntime_available():
        raise UsageError("MPRNET_BACKEND=onnxruntime needs onnxruntime, onnx and onnxscript installed")
    if chosen is not None:
        return chosen
    return "auto" if not share.many and files >= ONNX_EXPORT_WORTH_IT else "torch"


def prepare_run(args, share: Share) -> Plan:
    """Everything that can be a usage error (exit status 2, nothing written), in each process."""
    if args.max_megapixels is None:
        try:
            args.max_megapixels = max_megapixels()
        except ValueError as error:
            raise UsageError(str(error)) from None
    device = device_for(share, choose_device(args.device))
    check_settings(args, device)
    found = expand_inputs(args.inputs, args.output)
    jobs = plan_jobs(found, args.output, args.format)
    backend = serving_backend(share, len(jobs))
    if args.task == AUTO:
        models = with_jpeg_denoiser({task: load_model(None, task, device) for task in TASKS})
        detector = DegradationDetector.from_pretrained()

        def restore_one(job, serving):
            restore_file_auto(models, detector, job, args, serving.runtimes)
    else:
        models = with_jpeg_denoiser({args.task: load_model(args.model, args.task, device)})

        def restore_one(job, serving):
            restore_file(models, job, args, serving)

    return Plan(found, jobs, device, models, restore_one, backend)


def run(args, share: Share | None = None) -> int:
    """Restores the inputs; with `share` (a launcher's process), only this process's share of them, and the main
    process prints the summary of all (mprnet_hf.collection)."""
    share = share or Share()
    plan, error = None, None
    try:
        plan = prepare_run(args, share)
    except UsageError as failure:
        error = str(failure)
    error = share.agree(error, plan.found if plan else [])
    if error is not None:
        raise UsageError(error)
    jobs, models = plan.jobs, plan.models

    # precision auto's agreement check, once per model before the first photo; said only when one ran (on hardware
    # with native bf16), so that on the others the output stays as it was.
    for task, model in models.items():
        choice = choose_precision(model, args.precision)
        if choice.agreement_db is not None and share.is_main:
            print(f"{task}: precision {choice.precision} ({choice.reason})", file=sys.stderr)
    # Process-wide speed-ups belong to the command, not to the library import; an onnxruntime export (once per
    # weights, cached) pays off over a folder of photos, not over a few.
    # The serving trial may settle on onnxruntime fp32 where bf16 would lose to it: each file restores at the
    # precision the trial's report holds for its task by then.
    serving = prepare_for_serving(
        models, device=plan.device, background=True, backend=plan.backend, precision=args.precision
    )
    input_paths = {job.source.resolve() for job in jobs}
    args.output.mkdir(parents=True, exist_ok=True)
    # One process goes through every file and its skip logic below; many share out the files not done yet (an
    # output that is an input is not done: it fails below, in the process it goes to).
    pending = [
        not share.many or args.overwrite or job.output.resolve() in input_paths or not job.output.exists()
        for job in jobs
    ]
    mine = [jobs[index] for index in share.assign(pending, [job.source for job in jobs])]
    restored = skipped = 0
    if share.many:
        done = len(jobs) - sum(pending)
        skipped = done if share.is_main else 0  # counted once, in the summary
        print(
            f"process {share.rank} of {share.world_size}: {len(mine)} of {len(jobs)} files to restore, {done} "
            f"already done",
            file=sys.stderr,
        )
    failed = []
    start = time.perf_counter()
    bar = {"desc": f"{args.task} [{share.rank}]", "position": share.local_rank} if share.many else {}
    with torch.inference_mode():
        for job in tqdm(mine, **{"desc": args.task, **bar}, unit="file", file=sys.stderr, disable=None):
            if job.output.resolve() in input_paths:
                reason = (
                    f"its output {job.output} is an input file, which is never overwritten; choose another "
                    "--output folder"
                )
                failed.append((job.source, reason))
                tqdm.write(f"failed: {job.source}: {reason}", file=sys.stderr)
                continue
            if job.output.exists() and not args.overwrite:
                skipped += 1
                continue
            try:
                plan.restore_one(job, serving)
                restored += 1
            except (ValueError, OSError, RuntimeError, MemoryError) as error:
                reason = error.advised(ADVICE) if isinstance(error, ImageRefused) else str(error)
                failed.append((job.source, reason))
                tqdm.write(f"failed: {job.source}: {reason}", file=sys.stderr)
    totals = share.total(restored, skipped, failed)
    seconds = time.perf_counter() - start
    if share.is_main:
        processes = f" on {share.world_size} processes" if share.many else ""
        print(
            f"{totals.restored} restored, {totals.skipped} skipped (already done), {len(totals.failures)} failed in "
            f"{seconds:.1f} s{processes}; output in {args.output}",
            flush=True,
        )
        # Processes on other machines wrote their failures to their own terminals: the main one repeats them.
        for failure in totals.failures:
            if failure.node != share.node:
                print(
                    f"failed on process {failure.rank} (machine {failure.node}): {failure.source}: {failure.reason}",
                    file=sys.stderr,
                    flush=True,
                )
    share.finish()
    return 1 if totals.failures else 0


def end_process_before_background_threads_can_abort(status: int) -> None:
    """Exits now with `status` if a daemon thread (the onnxruntime export and timing, minutes long) is still running.
    Left to the interpreter's own exit, such a thread that returns from a native call (torch, onnxruntime) while the
    interpreter finalizes is stopped inside C++ code that may not be unwound, and the process dies of SIGABRT
    ("terminate called without an active exception", exit 134) after a successful run. Its work is only lost: an
    export is renamed into the cache once complete, so a later run exports again."""
    if not any(thread.daemon and thread.is_alive() for thread in threading.enumerate()):
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def main(argv=None) -> int:
    """The command. With `argv` None it is the process's own command line (the console script, `python -m`), and
    a run ends the process with its exit status even while background work is still running; called with a list,
    as from Python, it returns the status and leaves the caller's process and threads alone."""
    parser = build_parser()
    try:
        share = Share.from_environment()  # a launcher's processes (mprnet_hf.collection), or one process
    except ShareError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    try:
        share.start()
    except ShareError as error:
        parser.exit(2, f"{parser.prog}: error (process {share.rank} of {share.world_size}): {error}\n")
    # An argument error or --help, and a usage error that run() has every process agree on, are the same in every
    # process: the main one says it, and the others wait until it has, since a launcher stops the processes still
    # running (the main one too, maybe before it printed) as soon as one exits with an error.
    try:
        with share.quiet_unless_main():
            args = parser.parse_args(argv)
        status = run(args, share)
    except (SystemExit, UsageError) as error:
        if isinstance(error, UsageError) and share.is_main:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        share.finish()
        share.stop()
        if isinstance(error, SystemExit):
            raise
        parser.exit(2)
    share.stop()
    if argv is None:
        end_process_before_background_threads_can_abort(status)
    return status


def evaluate_main(argv=None) -> None:
    """mprnet-evaluate: `python -m mprnet_hf.evaluation.evaluate`, whose main() returns the evaluation (a console
    script would take that for an exit status)."""
    # Only this command loads the evaluation (baselines, foreign sets): mprnet-restore starts without it.
    from .evaluation import evaluate

    evaluate.command(argv)


def train_main(argv=None) -> None:
    """mprnet-train: `python -m mprnet_hf.training.train`, whose main() returns the run (a console script would take
    that for an exit status). Without the train extra it says, in one line, what to install."""
    try:
        from .training import train
    except ImportError as error:
        if "accelerate" not in str(error):
            raise
        sys.exit(f"mprnet-train: error: {error}")
    train.main(argv)


if __name__ == "__main__":
    sys.exit(main())

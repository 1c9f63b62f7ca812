r"""Train MPRNet with the paper's objective, on paired folders or on clean photos degraded on the fly.

    # on the development photos, synthetic degradations (what the bundled checkpoints were trained with)
    python -m mprnet_hf.training.train --task denoise --train-dir data/dev/train --val-dir data/dev/val \
        --preset small --output-dir runs/mprnet-denoise-small --steps 6000
    # on GoPro, 4 GPUs: --batch-size per process, so --steps counts steps of the global batch of 4 x 4 = 16
    accelerate launch --multi_gpu --num_processes 4 -m mprnet_hf.training.train --task deblur \
        --paired-dir GoPro/train --layout gopro --val-dir data/dev/val --preset released --patch-size 256 \
        --batch-size 4 --mixed-precision bf16 ...

Adam (0.9, 0.999), learning rate 2e-4 with linear warm-up and cosine decay to 1e-6, Charbonnier + 0.05 edge loss
over the three stages (MPRNetConfig.edge_loss_weight), 8-way flips/rotations. Distributed and mixed-precision
training come from `accelerate`: every process runs the same `--steps` optimizer steps of the global batch
(`--batch-size` x processes); the schedule and the time budget follow the main process's clock, and the logged loss
and validation PSNR are taken over all processes (docs/TRAINING.md). Weights and batches are kept channels-last
(`--no-channels-last` to turn it off; `python -m benchmarks.training` measures both). The best checkpoint by
validation PSNR is exported with `save_pretrained`.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch

try:
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, broadcast, set_seed
except ImportError as error:
    # The app's and mprnet-restore's install (.[app,onnx]) leaves training's dependencies out.
    raise ImportError(
        f'training needs accelerate ({error}); install the train extra: pip install "mprnet-hf[train]" '
        '(in a checkout: pip install -c requirements-cpu.txt -e ".[train]")'
    ) from error
from skimage.metrics import peak_signal_noise_ratio
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.degradations import JPEG_SHARE
from ..data.synthesis import BROAD_JPEG_SHARE, CLASSIC_SHARE, NOISE_CLASSIC_SHARE, SYNTHESES
from ..hub.model_cards import save_model_card, trained_model_card
from ..hub.remote_code import save_model_folder
from ..models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from ..models.mprnet.modeling_mprnet import MPRNetModel
from ..speed.fast import to_channels_last
from .data import PAIRED_LAYOUTS, PairedFolder, SyntheticPairs, list_images, validation_pairs

# The model sizes (configuration_mprnet.SIZES), small first: the default.
SMALL = MPRNetConfig.size_widths("small")
TINY = MPRNetConfig.size_widths("tiny")
PRESETS = ("small", "released", "medium", "tiny")
# How --lr-scaling turns --lr (the peak learning rate of one process's batch) into the peak of the global batch.
LR_SCALINGS = {"none": lambda processes: 1.0, "linear": float, "sqrt": math.sqrt}


class TrainingRun(NamedTuple):
    """What `main` ran on this process: its optimizer steps (counting those before --resume) and its final model;
    the patches of the global batch trained on in this run, its seconds in the training loop (validation and export
    included) and those of them spent waiting for batches."""

    steps: int
    stopped_early: bool
    model: MPRNetModel
    samples: int = 0
    seconds: float = 0.0
    data_wait_seconds: float = 0.0


def build_config(task: str, preset: str) -> MPRNetConfig:
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")
    return MPRNetConfig.for_task(task, size=preset)


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0, then cosine annealing down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def default_state_dir(output_dir: Path) -> Path:
    """<output_dir>-state beside an output folder under runs/, else runs/<name of output_dir> (a model folder such as
    checkpoints/mprnet-deblur-small stays free of training state). Never output_dir itself, where each saved state's
    model.safetensors (the latest weights) would overwrite the exported best checkpoint, nor runs/<name> for a folder
    deeper in runs/: runs/reproduce/mprnet-denoise-small's state would land in another run's output folder,
    runs/mprnet-denoise-small."""
    if output_dir.resolve().is_relative_to(Path("runs").resolve()):
        return output_dir.with_name(f"{output_dir.name}-state")
    return Path("runs") / output_dir.name


def earlier_phases(previous: dict) -> list[dict]:
    """The training phases of the weights a run starts from (--init-from), so the exported summary covers them all.
    Summaries written before phases were recorded describe a single phase."""
    if "phases" in previous:
        return previous["phases"]
    if not previous.get("steps"):
        return []
    return [{key: previous.get(key) for key in ("steps", "seconds", "patch_size", "batch_size")}]


def carry_earlier_log(earlier: Path, log_path: Path, up_to_step: int) -> None:
    """Starts the log of a continued run with the records of the weights it starts from (those up to their step:
    an earlier run may have gone on past its best checkpoint), so one log tells the whole history."""
    if not earlier.is_file() or earlier.resolve() == log_path.resolve():
        return
    records = [line for line in earlier.read_text().splitlines() if line.strip()]
    kept = [line for line in records if json.loads(line)["step"] <= up_to_step]
    log_path.write_text("".join(line + "\n" for line in kept))


@torch.inference_mode()
def psnr_scores(model, pairs) -> list[float]:
    """PSNR (RGB, data range 1) of each pair's clamped final output, as the official training loop measures it."""
    model.eval()
    scores = []
    for pair in pairs:
        restored = model(pair["pixel_values"][None].to(next(model.parameters()).device)).reconstruction
        restored = restored.float().clamp(0, 1)[0].cpu().numpy()
        scores.append(peak_signal_noise_ratio(pair["labels"].numpy(), restored, data_range=1.0))
    model.train()
    return scores


def validate(accelerator: Accelerator, model, pairs) -> float:
    """Mean validation PSNR, each process restoring every num_processes-th pair. The scores are summed into one
    tensor in pair order, so every process gets the mean that one process alone would compute."""
    scores = torch.zeros(len(pairs), dtype=torch.float64, device=accelerator.device)
    share = range(accelerator.process_index, len(pairs), accelerator.num_processes)
    for index, score in zip(share, psnr_scores(model, [pairs[index] for index in share])):
        scores[index] = score
    return float(accelerator.reduce(scores, reduction="sum").mean())


def mean_over_processes(accelerator: Accelerator, value: float) -> float:
    return accelerator.reduce(torch.tensor(value, dtype=torch.float64, device=accelerator.device), "mean").item()


def main_process_clock(accelerator: Accelerator, seconds: float) -> float:
    """The main process's `seconds`, on every process: decisions taken from a clock (the learning rate of
    --time-schedule, the end of the --max-minutes budget) must be the same on all of them, or their weights drift
    apart and one stops while the others wait for it."""
    return broadcast(torch.tensor([seconds], dtype=torch.float64, device=accelerator.device), from_process=0).item()


def check_launched_world_size(accelerator: Accelerator) -> None:
    """Refuses processes that were launched together but did not join one group (on a machine without GPUs,
    `accelerate launch --multi_gpu` without ACCELERATE_USE_CPU=true starts lone processes that would each train
    alone and overwrite each other's files), and warns where `accelerate launch` was asked for several processes but
    started one (its `--cpu` flag does that without MPI)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise ValueError(
            f"{launched} processes were launched (WORLD_SIZE={launched}) but accelerate joined "
            f"{accelerator.num_processes} into one training (distributed type {accelerator.distributed_type.value}). "
            "On a machine without GPUs set ACCELERATE_USE_CPU=true: `ACCELERATE_USE_CPU=true accelerate launch "
            "--multi_gpu --num_processes N -m mprnet_hf.training.train ...`."
        )
    if accelerator.num_processes == 1 and "MASTER_ADDR" in os.environ and "WORLD_SIZE" not in os.environ:
        warnings.warn(
            "A rendezvous address (MASTER_ADDR) is set but only this one process was started: "
            "`accelerate launch --cpu --num_processes N` starts a single process unless MPI is set up. For several "
            "CPU processes use `ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N ...`.",
            stacklevel=2,
        )


def export_atomically(model, training: dict, output_dir: Path) -> None:
    """Writes the model folder next to `output_dir`, then moves each file in, so a reader (the app, tests) never
    sees a half-written `model.safetensors`."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir.parent))
    try:
        save_model_folder(model, staging)
        (staging / "training_summary.json").write_text(json.dumps(training, indent=2))
        save_model_card(trained_model_card(model.config, training), staging)
        for file in staging.iterdir():
            os.replace(file, output_dir / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def training_data_text(args) -> str:
    """What a phase trained on, for its summary and model card."""
    if args.paired_dir:
        return f"paired folder ({args.layout} layout)"
    text = (
        f"{args.synthesis} synthetic degradations of the {len(list_images(args.train_dir))} photos in {args.train_dir}"
    )
    if args.synthesis == "broad" and args.classic_share is not None:
        text += f", the classic ones for {args.classic_share:.0%} of the draws"
    if args.jpeg_share is not None:
        text += f", re-encoded as JPEG {args.jpeg_share:.0%} of the time"
    return text


def training_summary(
    args, previous: dict, step: int, seconds: float, psnr: float, processes: int, device: str = "cpu"
) -> dict:
    """training_summary.json of the checkpoint exported at `step`: batch sizes are global (all processes together),
    `lr` is the peak learning rate applied, after any --lr-scaling; each phase says what it trained on and where."""
    global_batch = args.batch_size * processes
    data = training_data_text(args)
    phase = {
        "steps": step,
        "seconds": round(seconds, 1),
        "patch_size": args.patch_size,
        "batch_size": global_batch,
        "processes": processes,
        "batch_size_per_process": args.batch_size,
        "lr": args.lr * LR_SCALINGS[args.lr_scaling](processes),
        "lr_scaling": args.lr_scaling,
        "mixed_precision": args.mixed_precision,
        "data": data,
        "device": device,
    }
    return {
        "task": args.task,
        "steps": previous["steps"] + step,
        "seconds": previous["seconds"] + seconds,
        "best_val_psnr": psnr,
        "patch_size": args.patch_size,
        "batch_size": global_batch,
        "processes": processes,
        "phases": earlier_phases(previous) + [phase],
        "data": data,
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, required=True)
    parser.add_argument("--train-dir", help="clean photos, degraded on the fly")
    parser.add_argument("--paired-dir", help="degraded/clean pairs in a standard layout (see --layout)")
    parser.add_argument("--layout", choices=sorted(PAIRED_LAYOUTS), help="layout of --paired-dir")
    parser.add_argument("--val-dir", required=True, help="clean validation photos (degraded with fixed seeds)")
    parser.add_argument("--output-dir", required=True, help="where the best model is exported (save_pretrained)")
    parser.add_argument("--preset", default="small", choices=PRESETS)
    parser.add_argument("--init-from", help="start from these weights (a model folder), e.g. to continue training")
    parser.add_argument(
        "--state-dir",
        help="training state (optimizer, step) for --resume; default OUTPUT_DIR-state beside an OUTPUT_DIR under "
        "runs/, else runs/<name of OUTPUT_DIR>",
    )
    parser.add_argument("--resume", action="store_true", help="continue from the state in --state-dir")
    parser.add_argument(
        "--steps",
        type=int,
        default=6000,
        help="optimizer steps of the global batch (the cosine schedule's length); every process runs all of them",
    )
    parser.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="training time budget in minutes, resumed "
        "runs included, by the main process's clock; the state is saved when it runs out",
    )
    parser.add_argument(
        "--time-schedule",
        action="store_true",
        help="run the warm-up + cosine schedule over --max-minutes of wall-clock time instead of over "
        "--steps (for a fixed CPU time budget: the learning rate is annealed whenever training stops)",
    )
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="patches per process and step; the global batch is this times the number of processes",
    )
    parser.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (see --lr-scaling)")
    parser.add_argument(
        "--lr-scaling",
        default="none",
        choices=sorted(LR_SCALINGS),
        help="multiply --lr by the number of processes (linear) or its square root (sqrt), taking "
        "--lr as the rate for one process's batch; none: --lr is the rate of the global batch",
    )
    parser.add_argument("--min-lr", type=float, default=1e-6)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num-threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument(
        "--num-workers",
        type=int,
        default=0,
        help="processes that cut and degrade the training "
        "patches (DataLoader workers; 0: the training process itself); on a GPU, one per spare core",
    )
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument(
        "--synthesis",
        default="broad",
        choices=SYNTHESES,
        help="how --train-dir photos and the validation crops are degraded: broad (mprnet_hf.data.synthesis, the "
        "default) or classic (mprnet_hf.data.degradations.degrade, what the first bundled weights trained on)",
    )
    parser.add_argument(
        "--classic-share",
        type=float,
        default=None,
        help="with --synthesis broad, the share of draws (training and validation) taken from the classic "
        "synthesis, so a model fine-tuned on the broad draws keeps what it does on the classic ones (default: "
        f"{CLASSIC_SHARE:g} for rain and blur, {NOISE_CLASSIC_SHARE:g} for noise)",
    )
    parser.add_argument(
        "--jpeg-share",
        type=float,
        default=None,
        help="the share of draws (training and validation) re-encoded as JPEG after the degradation, so the model "
        "meets compressed photos as often as it should (default: the synthesis's own share, "
        f"{BROAD_JPEG_SHARE:g} broad, {JPEG_SHARE:g} classic)",
    )
    parser.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep weights and batches channels-last (1.4x faster training steps on CPU, measured on "
        "the small preset; the layout tensor cores prefer too)",
    )
    args = parser.parse_args(argv)
    if bool(args.train_dir) == bool(args.paired_dir):
        parser.error("give exactly one of --train-dir (synthetic degradations) or --paired-dir")
    if args.paired_dir and not args.layout:
        parser.error("--paired-dir needs --layout")
    if args.time_schedule and args.max_minutes is None:
        parser.error("--time-schedule needs --max-minutes")
    if args.patch_size % 8:
        parser.error("--patch-size must be a multiple of 8")
    if args.steps < 1 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1")
    if args.num_workers < 0:
        parser.error("--num-workers must be 0 or more")
    if args.classic_share is not None and not 0.0 <= args.classic_share <= 1.0:
        parser.error("--classic-share must be between 0 and 1")
    if args.jpeg_share is not None and not 0.0 <= args.jpeg_share <= 1.0:
        parser.error("--jpeg-share must be between 0 and 1")
    if args.jpeg_share is not None and args.paired_dir:
        parser.error("--jpeg-share is for --train-dir photos degraded here; --paired-dir pairs come degraded")
    return args


class Progress(NamedTuple):
    """Where a run starts: its optimizer step, best validation PSNR and training seconds so far (0 unless resumed)."""

    step: int
    best_psnr: float
    seconds: float


def read_training_summary(folder) -> dict:
    """training_summary.json of exported weights; weights without one count as untrained (no steps, no time)."""
    path = Path(folder) / "training_summary.json"
    return json.loads(path.read_text()) if path.exists() else {"steps": 0, "seconds": 0.0}


def build_model(args) -> tuple[MPRNetModel, dict]:
    """The model to train (fresh, or --init-from exported weights) and the training summary of those weights."""
    if not args.init_from:
        return MPRNetModel(build_config(args.task, args.preset)), {"steps": 0, "seconds": 0.0}
    return MPRNetModel.from_pretrained(args.init_from), read_training_summary(args.init_from)


def build_data(args, global_batch: int) -> tuple[DataLoader, list[dict]]:
    """The training batches and the fixed validation pairs. With --num-workers, patches are cut and degraded in that
    many worker processes (each item is seeded by its index, so the batches are the same as without them) and, on a
    GPU, pinned for an asynchronous copy."""
    # Each process gets every num_processes-th batch, so --steps batches per process.
    length = args.steps * global_batch
    if args.train_dir:
        dataset = SyntheticPairs(
            args.train_dir,
            args.task,
            args.patch_size,
            length,
            seed=args.seed,
            synthesis=args.synthesis,
            classic_share=args.classic_share,
            jpeg_share=args.jpeg_share,
        )
    else:
        dataset = PairedFolder(args.paired_dir, args.layout, args.patch_size, seed=args.seed, length=length)
    val_pairs = validation_pairs(
        args.val_dir,
        args.task,
        synthesis=args.synthesis,
        classic_share=args.classic_share,
        jpeg_share=args.jpeg_share,
    )
    workers = {}
    if args.num_workers:
        workers = {
            "num_workers": args.num_workers,
            "persistent_workers": True,
            "prefetch_factor": 4,
            "pin_memory": torch.cuda.is_available(),
        }
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, drop_last=True, **workers)
    return loader, val_pairs


def build_optimizer(args, model, peak_lr: float):
    """Adam and the warm-up + cosine schedule over --steps (which --time-schedule replaces by one over time)."""
    optimizer = torch.optim.Adam(
        model.parameters(), lr=peak_lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, args.warmup_steps, args.steps, args.min_lr / peak_lr)
    )
    return optimizer, scheduler


def resume(args, accelerator: Accelerator, state_dir: Path, global_batch: int, loader):
    """The saved state of --resume (weights, optimizer, scheduler, random states) and the loader past its batches;
    a fresh start when there is none."""
    if not (args.resume and (state_dir / "progress.json").exists()):
        return Progress(0, -math.inf, 0.0), loader
    progress = json.loads((state_dir / "progress.json").read_text())
    # Earlier states were saved by single-process runs.
    saved_batch = progress.get("global_batch", args.batch_size)
    if saved_batch != global_batch:
        raise ValueError(
            f"{state_dir} was saved by a run with a global batch of {saved_batch}, this one has {global_batch} "
            f"({accelerator.num_processes} processes x --batch-size {args.batch_size}): resume with the same number of "
            "processes and --batch-size, or start anew with --init-from an exported model"
        )
    accelerator.load_state(str(state_dir))
    step = progress["step"]
    accelerator.print(f"Resumed at step {step} (best validation PSNR {progress['best_psnr']:.2f} dB)")
    return Progress(step, progress["best_psnr"], progress["seconds"]), accelerator.skip_first_batches(loader, step)


class Trainer:
    """The training loop of `main`: one optimizer step per batch, validation, export of the best weights and the
    saved state every --val-every steps, and the time budget."""

    def __init__(
        self,
        args,
        accelerator,
        model,
        optimizer,
        scheduler,
        val_pairs,
        progress: Progress,
        previous: dict,
        output_dir: Path,
        state_dir: Path,
        peak_lr: float,
    ):
        self.args, self.accelerator = args, accelerator
        self.model, self.optimizer, self.scheduler, self.val_pairs = model, optimizer, scheduler, val_pairs
        self.unwrapped = accelerator.unwrap_model(model)
        self.step, self.best_psnr, self.elapsed_before = progress
        self.previous, self.output_dir, self.state_dir, self.peak_lr = previous, output_dir, state_dir, peak_lr
        self.log_path = output_dir / "training_log.jsonl"
        self.global_batch = args.batch_size * accelerator.num_processes
        self.running_loss, self.steps_since_log = 0.0, 0
        self.start = time.time()

    def seconds_so_far(self) -> float:
        """Training seconds, resumed runs included, by the main process's clock (the same on every process)."""
        return main_process_clock(self.accelerator, self.elapsed_before + time.time() - self.start)

    def set_time_based_lr(self, seconds: float) -> None:
        args = self.args
        fraction = seconds / (args.max_minutes * 60)
        warmup_fraction = args.warmup_steps / max(args.steps, 1)
        ratio = warmup_cosine(int(fraction * 10_000), int(warmup_fraction * 10_000), 10_000, args.min_lr / self.peak_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.peak_lr * ratio

    def train_step(self, batch: dict) -> None:
        args, accelerator = self.args, self.accelerator
        if args.time_schedule:
            self.set_time_based_lr(self.seconds_so_far())
        if args.channels_last:
            batch = {key: to_channels_last(value) for key, value in batch.items()}
        with accelerator.autocast():
            loss = self.model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
        accelerator.backward(loss)
        self.optimizer.step()
        if not args.time_schedule and not accelerator.optimizer_step_was_skipped:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.running_loss += loss.item()
        self.steps_since_log += 1

    def validate_and_export(self) -> dict:
        """Validates, logs, exports the weights when they validate best so far, and saves the training state."""
        accelerator = self.accelerator
        psnr = validate(accelerator, self.unwrapped, self.val_pairs)
        seconds = self.seconds_so_far()
        # Averaged over the steps actually run since the last record (fewer than val_every at the end,
        # after --resume or when stopping early), and over the processes' batches.
        record = {
            "step": self.previous["steps"] + self.step,
            "loss": mean_over_processes(accelerator, self.running_loss / self.steps_since_log),
            "val_psnr": psnr,
            "lr": self.optimizer.param_groups[0]["lr"],
            "seconds": round(self.previous["seconds"] + seconds, 1),
        }
        self.running_loss, self.steps_since_log = 0.0, 0
        improved, self.best_psnr = psnr > self.best_psnr, max(psnr, self.best_psnr)
        if accelerator.is_main_process:
            with self.log_path.open("a") as log:
                log.write(json.dumps(record) + "\n")
            if improved:
                summary = training_summary(
                    self.args,
                    self.previous,
                    self.step,
                    seconds,
                    psnr,
                    accelerator.num_processes,
                    accelerator.device.type,
                )
                export_atomically(self.unwrapped, summary, self.output_dir)
        self.save_state(seconds)
        return record

    def save_state(self, seconds: float) -> None:
        self.accelerator.save_state(str(self.state_dir))
        if self.accelerator.is_main_process:
            progress = {
                "step": self.step,
                "best_psnr": self.best_psnr,
                "seconds": seconds,
                "global_batch": self.global_batch,
            }
            (self.state_dir / "progress.json").write_text(json.dumps(progress))

    def run(self, loader) -> TrainingRun:
        args, accelerator = self.args, self.accelerator
        first_step = self.step
        bar = tqdm(total=args.steps, initial=self.step, disable=not accelerator.is_local_main_process, mininterval=30)
        if self.step == 0:
            initial_psnr = validate(accelerator, self.unwrapped, self.val_pairs)
            accelerator.print(f"Validation PSNR before training: {initial_psnr:.2f} dB")
        self.model.train()
        stopped_early, data_wait, loop_start = False, 0.0, time.perf_counter()
        batches = iter(loader)
        while True:
            # Time spent waiting for the next batch: the share of the run the data loading could not hide.
            fetch_start = time.perf_counter()
            batch = next(batches, None)
            data_wait += time.perf_counter() - fetch_start
            if batch is None:
                break
            self.train_step(batch)
            bar.update(1)
            # The budget covers resumed runs too, like the time-based schedule.
            out_of_time = args.max_minutes is not None and self.seconds_so_far() > args.max_minutes * 60
            if self.step % args.val_every == 0 or self.step == args.steps or out_of_time:
                record = self.validate_and_export()
                bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{record['val_psnr']:.2f}")
            if out_of_time:
                stopped_early = True
                break
        bar.close()
        accelerator.print(
            f"{'Stopped early' if stopped_early else 'Finished'} at step {self.step}; best validation PSNR "
            f"{self.best_psnr:.2f} dB; model in {self.output_dir}"
        )
        return TrainingRun(
            steps=self.step,
            stopped_early=stopped_early,
            model=self.unwrapped,
            samples=(self.step - first_step) * self.global_batch,
            seconds=time.perf_counter() - loop_start,
            data_wait_seconds=data_wait,
        )


def main(argv=None) -> TrainingRun:
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    # Pinned batches (--num-workers on a GPU) are copied to the device without blocking the training step.
    pinned = bool(args.num_workers) and torch.cuda.is_available()
    accelerator = Accelerator(
        mixed_precision=args.mixed_precision, dataloader_config=DataLoaderConfiguration(non_blocking=pinned)
    )
    check_launched_world_size(accelerator)
    # Every batch has the same shape: let cuDNN pick its fastest convolution algorithms once.
    torch.backends.cudnn.benchmark = accelerator.device.type == "cuda"
    global_batch = args.batch_size * accelerator.num_processes
    peak_lr = args.lr * LR_SCALINGS[args.lr_scaling](accelerator.num_processes)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(output_dir)

    model, previous = build_model(args)
    loader, val_pairs = build_data(args, global_batch)
    optimizer, scheduler = build_optimizer(args, model, peak_lr)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    # The scheduler is not prepared: accelerate would step it once per process at every step. It is stepped here,
    # once per optimizer step, and saved with the state once (custom_checkpoint_0.pkl; states saved before this also
    # hold a scheduler.bin, which loading ignores).
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.register_for_checkpointing(scheduler)
    progress, loader = resume(args, accelerator, state_dir, global_batch, loader)
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.init_from and progress.step == 0 and accelerator.is_main_process:
        carry_earlier_log(
            Path(args.init_from) / "training_log.jsonl", output_dir / "training_log.jsonl", up_to_step=previous["steps"]
        )
    trainer = Trainer(
        args, accelerator, model, optimizer, scheduler, val_pairs, progress, previous, output_dir, state_dir, peak_lr
    )
    try:
        return trainer.run(loader)
    finally:
        torch.backends.cudnn.benchmark = False


if __name__ == "__main__":
    main()

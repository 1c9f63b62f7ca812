"""Train MPRNet with the paper's objective, on paired folders or on clean photos degraded on the fly.

    # on the development photos, synthetic degradations (what the bundled checkpoints were trained with)
    python -m mprnet_hf.training.train --task denoise --train-dir data/dev/train --val-dir data/dev/val \
        --preset small --output-dir checkpoints/mprnet-denoise-small --steps 6000
    # on GoPro, several GPUs
    accelerate launch -m mprnet_hf.training.train --task deblur --paired-dir GoPro/train --layout gopro \
        --val-dir data/dev/val --preset released --patch-size 256 --batch-size 16 --mixed-precision bf16 ...

Adam (0.9, 0.999), learning rate 2e-4 with linear warm-up and cosine decay to 1e-6, Charbonnier + 0.05 edge loss
over the three stages (MPRNetConfig.edge_loss_weight), 8-way flips/rotations. Distributed and mixed-precision
training come from `accelerate`. Weights and batches are kept channels-last (`--no-channels-last` to turn it off;
`python -m benchmarks.training` measures both). The best checkpoint by validation PSNR is exported with
`save_pretrained`.
"""

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from skimage.metrics import peak_signal_noise_ratio
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..configuration_mprnet import TASKS, MPRNetConfig
from ..fast import to_channels_last
from ..hub import save_model_card, trained_model_card
from ..image_processing_mprnet import MPRNetImageProcessor
from ..modeling_mprnet import MPRNetModel
from .data import PAIRED_LAYOUTS, PairedFolder, SyntheticPairs, validation_pairs

# Compact configuration of the bundled checkpoints: restores a 512x512 photo in about 1.3 s on 2 CPU cores.
SMALL = {"n_feat": 16, "scale_unetfeats": 8, "scale_orsnetfeats": 8, "num_cab": 2}
# The smallest sensible network, for tests and smoke runs of the training loop (seconds per step on CPU).
TINY = {"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, "num_cab": 1}
PRESETS = ("small", "released", "tiny")


def build_config(task: str, preset: str) -> MPRNetConfig:
    if preset == "released":
        return MPRNetConfig.for_task(task)
    if preset == "small":
        return MPRNetConfig.for_task(task, **SMALL)
    if preset == "tiny":
        return MPRNetConfig.for_task(task, **TINY)
    raise ValueError(f"Unknown preset {preset!r}: expected one of {', '.join(PRESETS)}")


def warmup_cosine(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Learning-rate multiplier: linear warm-up from 0, then cosine annealing down to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def default_state_dir(output_dir: Path) -> Path:
    """runs/<name of output_dir>; never output_dir itself, where each saved state's model.safetensors (the latest
    weights) would overwrite the exported best checkpoint."""
    state_dir = Path("runs") / output_dir.name
    if state_dir.resolve() == output_dir.resolve():
        state_dir = state_dir.with_name(f"{output_dir.name}-state")
    return state_dir


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
def validate(model, pairs) -> float:
    """Mean PSNR (RGB, data range 1) of the clamped final outputs, as the official training loop measures it."""
    model.eval()
    scores = []
    for pair in pairs:
        restored = model(pair["pixel_values"][None].to(next(model.parameters()).device)).reconstruction
        restored = restored.float().clamp(0, 1)[0].cpu().numpy()
        scores.append(peak_signal_noise_ratio(pair["labels"].numpy(), restored, data_range=1.0))
    model.train()
    return float(np.mean(scores))


def export_atomically(model, training: dict, output_dir: Path) -> None:
    """Writes the model folder next to `output_dir`, then moves each file in, so a reader (the app, tests) never
    sees a half-written `model.safetensors`."""
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir.parent))
    try:
        model.save_pretrained(staging)
        MPRNetImageProcessor().save_pretrained(staging)
        (staging / "training_summary.json").write_text(json.dumps(training, indent=2))
        save_model_card(trained_model_card(model.config, training), staging)
        for file in staging.iterdir():
            os.replace(file, output_dir / file.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


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
    parser.add_argument("--state-dir", help="training state (optimizer, step) for --resume; default runs/<name of "
                        "OUTPUT_DIR>, or runs/<name>-state when that is OUTPUT_DIR itself")
    parser.add_argument("--resume", action="store_true", help="continue from the state in --state-dir")
    parser.add_argument("--steps", type=int, default=6000, help="optimizer steps (the cosine schedule's length)")
    parser.add_argument("--max-minutes", type=float, default=None, help="training time budget in minutes, resumed runs included; the state is saved when it runs out")
    parser.add_argument("--time-schedule", action="store_true",
                        help="run the warm-up + cosine schedule over --max-minutes of wall-clock time instead of over "
                        "--steps (for a fixed CPU time budget: the learning rate is annealed whenever training stops)")
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--min-lr", type=float, default=1e-6)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--val-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--num-threads", type=int, default=None, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="keep weights and batches channels-last (1.4x faster training steps on CPU, measured on "
                        "the small preset; the layout tensor cores prefer too)")
    args = parser.parse_args(argv)
    if bool(args.train_dir) == bool(args.paired_dir):
        parser.error("give exactly one of --train-dir (synthetic degradations) or --paired-dir")
    if args.paired_dir and not args.layout:
        parser.error("--paired-dir needs --layout")
    if args.time_schedule and args.max_minutes is None:
        parser.error("--time-schedule needs --max-minutes")
    if args.patch_size % 8:
        parser.error("--patch-size must be a multiple of 8")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    accelerator = Accelerator(mixed_precision=args.mixed_precision)
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    state_dir = Path(args.state_dir) if args.state_dir else default_state_dir(output_dir)

    previous = {"steps": 0, "seconds": 0.0}
    if args.init_from:
        model = MPRNetModel.from_pretrained(args.init_from)
        summary = Path(args.init_from) / "training_summary.json"
        if summary.exists():
            previous = json.loads(summary.read_text())
    else:
        model = MPRNetModel(build_config(args.task, args.preset))
    length = args.steps * args.batch_size
    if args.train_dir:
        dataset = SyntheticPairs(args.train_dir, args.task, args.patch_size, length, seed=args.seed)
    else:
        dataset = PairedFolder(args.paired_dir, args.layout, args.patch_size, seed=args.seed, length=length)
    val_pairs = validation_pairs(args.val_dir, args.task)

    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False, num_workers=0, drop_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, args.warmup_steps, args.steps, args.min_lr / args.lr)
    )
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    accelerator.register_for_checkpointing(scheduler)

    step, best_psnr, elapsed_before = 0, -math.inf, 0.0
    log_path = output_dir / "training_log.jsonl"
    if args.resume and (state_dir / "progress.json").exists():
        accelerator.load_state(str(state_dir))
        progress = json.loads((state_dir / "progress.json").read_text())
        step, best_psnr, elapsed_before = progress["step"], progress["best_psnr"], progress["seconds"]
        loader = accelerator.skip_first_batches(loader, step)
        accelerator.print(f"Resumed at step {step} (best validation PSNR {best_psnr:.2f} dB)")
    output_dir.mkdir(parents=True, exist_ok=True)
    if args.init_from and step == 0 and accelerator.is_main_process:
        carry_earlier_log(Path(args.init_from) / "training_log.jsonl", log_path, up_to_step=previous["steps"])
    unwrapped = accelerator.unwrap_model(model)
    start = time.time()
    bar = tqdm(total=args.steps, initial=step, disable=not accelerator.is_local_main_process, mininterval=30)
    initial_psnr = validate(unwrapped, val_pairs) if step == 0 else None
    if initial_psnr is not None:
        accelerator.print(f"Validation PSNR before training: {initial_psnr:.2f} dB")

    def save_state():
        accelerator.save_state(str(state_dir))
        if accelerator.is_main_process:
            seconds = elapsed_before + time.time() - start
            (state_dir / "progress.json").write_text(json.dumps({"step": step, "best_psnr": best_psnr, "seconds": seconds}))

    def set_time_based_lr():
        fraction = (elapsed_before + time.time() - start) / (args.max_minutes * 60)
        warmup_fraction = args.warmup_steps / max(args.steps, 1)
        ratio = warmup_cosine(int(fraction * 10_000), int(warmup_fraction * 10_000), 10_000, args.min_lr / args.lr)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * ratio

    model.train()
    running_loss, steps_since_log, stopped_early = 0.0, 0, False
    for batch in loader:
        if args.time_schedule:
            set_time_based_lr()
        if args.channels_last:
            batch = {key: to_channels_last(value) for key, value in batch.items()}
        with accelerator.autocast():
            loss = model(pixel_values=batch["pixel_values"], labels=batch["labels"]).loss
        accelerator.backward(loss)
        optimizer.step()
        if not args.time_schedule:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        running_loss += loss.item()
        steps_since_log += 1
        bar.update(1)
        # The budget covers resumed runs too, like the time-based schedule.
        out_of_time = args.max_minutes is not None and elapsed_before + time.time() - start > args.max_minutes * 60
        if step % args.val_every == 0 or step == args.steps or out_of_time:
            psnr = validate(unwrapped, val_pairs)
            seconds = elapsed_before + time.time() - start
            # Averaged over the steps actually run since the last record (fewer than val_every at the end,
            # after --resume or when stopping early).
            record = {"step": previous["steps"] + step, "loss": running_loss / steps_since_log, "val_psnr": psnr,
                      "lr": optimizer.param_groups[0]["lr"], "seconds": round(previous["seconds"] + seconds, 1)}
            running_loss, steps_since_log = 0.0, 0
            bar.set_postfix(loss=f"{record['loss']:.4f}", psnr=f"{psnr:.2f}")
            if accelerator.is_main_process:
                with log_path.open("a") as log:
                    log.write(json.dumps(record) + "\n")
                if psnr > best_psnr:
                    best_psnr = psnr
                    phase = {"steps": step, "seconds": round(seconds, 1), "patch_size": args.patch_size,
                             "batch_size": args.batch_size, "lr": args.lr, "mixed_precision": args.mixed_precision}
                    training = {"task": args.task, "steps": previous["steps"] + step,
                                "seconds": previous["seconds"] + seconds, "best_val_psnr": psnr,
                                "patch_size": args.patch_size, "batch_size": args.batch_size,
                                "phases": earlier_phases(previous) + [phase],
                                "data": "synthetic degradations of development photos" if args.train_dir
                                else f"paired folder ({args.layout} layout)"}
                    export_atomically(unwrapped, training, output_dir)
            save_state()
        if out_of_time:
            stopped_early = True
            break
    bar.close()
    accelerator.print(
        f"{'Stopped early' if stopped_early else 'Finished'} at step {step}; best validation PSNR {best_psnr:.2f} dB; "
        f"model in {output_dir}"
    )


if __name__ == "__main__":
    main()

r"""Train the degradation detector from scratch on the training photos, on a CPU in minutes.

    OMP_NUM_THREADS=1 nice -n 10 python -m mprnet_hf.detection.train \
        --train-dir data/photos/train --exclude-like data/dev/val data/photos/val \
        --output-dir checkpoints/mprnet-detector

Training photos that show the content of an evaluation photo (`--exclude-like`, compared by pixels:
`detection.overlap`) are left out; every `--holdout-every`-th of the rest is held out to measure the crops and to
calibrate the per-label thresholds (`detection.calibrate`), never the evaluation photos. The labelled crops
(`detection.data`) are generated once and cached under --cache-dir, so every epoch is only the network's time. AdamW
with a one-cycle schedule, binary cross-entropy per label with the labels a second look cannot know left out,
horizontal and vertical flips. The folder is written with `save_pretrained` (safetensors) and a model card.

`--init-from FOLDER` fine-tunes a detector trained here before: its weights start the training, and its thresholds
and any routing rule, chosen for those weights, are chosen again. Give it the same split (`--train-dir`,
`--exclude-like`, `--holdout-every`) so that the calibration photos stay unseen.

Several seeds (`--seed 0 1 --variants-per-photo 36 54`) train on several draws of degradations of the same photos
together, each drawn and cached on its own: a crop set made for one run is reused by a later run that adds a draw.
A draw may hold second looks only (`--variants-per-photo 0`) and choose which kinds of them it cycles through
(`--second-look-kinds`, names of `detection.data.SECOND_LOOKS`), to train more of the looks auto mode gets wrong.
"""

import argparse
import json
import math
import os
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from transformers import ResNetForImageClassification, set_seed

from ..hub.model_cards import save_detector_card
from ..hub.remote_code import give_weights_ordinary_permissions
from .calibrate import calibrate_detector
from .data import (
    ALL_SECOND_LOOKS,
    CONDITION_SHARES,
    JPEG_ARTEFACT_QUALITY,
    LIGHT_JPEG_QUALITY,
    REGION_SIDE,
    SYNTHESES,
    cached_crop_set,
    check_second_look_kinds,
    split_photos,
)
from .detector import DEPTHS, EMBEDDING_SIZE, HIDDEN_SIZES, LABELS, crops_to_batch, detector_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", type=Path, default=Path("data/photos/train"))
    parser.add_argument(
        "--exclude-like",
        type=Path,
        nargs="*",
        default=[Path("data/dev/val"), Path("data/photos/val")],
        help="evaluation folders: training photos showing the content of one of their photos are left out",
    )
    parser.add_argument("--holdout-every", type=int, default=8, help="every n-th photo is held out for calibration")
    parser.add_argument("--output-dir", type=Path, default=Path("checkpoints/mprnet-detector"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/detector-crops"))
    parser.add_argument(
        "--variants-per-photo",
        type=int,
        nargs="+",
        default=[36],
        help="degraded versions per photo: one number for every seed, or one per seed",
    )
    parser.add_argument("--crops-per-variant", type=int, default=6)
    parser.add_argument(
        "--second-looks-per-photo",
        type=int,
        nargs="+",
        default=[1],
        help="versions per photo degraded, then derained or denoised as auto mode does before it looks again: one "
        "number for every seed, or one per seed",
    )
    parser.add_argument(
        "--second-look-kinds",
        nargs="+",
        default=["all"],
        help="which second looks a draw cycles through: 'all', or names joined by commas (a name given twice comes "
        f"twice as often) among {', '.join(ALL_SECOND_LOOKS)}; one for every seed, or one per seed",
    )
    parser.add_argument("--calibration-seeds", type=int, default=3, help="draws per held-out photo and degradation")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop after the epoch that passes this")
    parser.add_argument(
        "--synthesis",
        nargs="+",
        default=["broad"],
        help="how the photos are degraded: broad (mprnet_hf.data.synthesis, the default) or classic (what detectors "
        "before it trained on); one for every seed, or one per seed (a draw of each trains on both). The first "
        "seed's also degrades the held-out photos the thresholds are chosen on",
    )
    parser.add_argument(
        "--seed",
        type=int,
        nargs="+",
        default=[0],
        help="one draw of degradations per seed; the first also seeds the weights, the order and the held-out crops",
    )
    parser.add_argument(
        "--embedding-size", type=int, help=f"channels of the network's stem (from scratch; default {EMBEDDING_SIZE})"
    )
    parser.add_argument(
        "--hidden-sizes",
        type=int,
        nargs=len(HIDDEN_SIZES),
        help=f"channels of the network's four stages (from scratch; default {' '.join(map(str, HIDDEN_SIZES))})",
    )
    parser.add_argument(
        "--depths",
        type=int,
        nargs=len(DEPTHS),
        help=f"residual blocks in each of the four stages (from scratch; default {' '.join(map(str, DEPTHS))})",
    )
    parser.add_argument(
        "--init-from",
        type=Path,
        help="a detector folder trained here before, to fine-tune (hold out the same photos: same --holdout-every, "
        "--train-dir and --exclude-like, so the calibration photos stay unseen)",
    )
    args = parser.parse_args(argv)
    try:
        args.draws = crop_set_draws(
            args.seed, args.variants_per_photo, args.second_looks_per_photo, args.second_look_kinds, args.synthesis
        )
    except ValueError as error:
        parser.error(str(error))
    shape_given = [value for value in (args.embedding_size, args.hidden_sizes, args.depths) if value is not None]
    if args.init_from is not None and shape_given:
        parser.error(
            "--embedding-size, --hidden-sizes and --depths shape a detector trained from scratch; a fine-tuned one "
            "keeps the network of --init-from"
        )
    if args.init_from is None:
        args.embedding_size = EMBEDDING_SIZE if args.embedding_size is None else args.embedding_size
        args.hidden_sizes = list(HIDDEN_SIZES) if args.hidden_sizes is None else args.hidden_sizes
        args.depths = list(DEPTHS) if args.depths is None else args.depths
        if min(args.embedding_size, *args.hidden_sizes, *args.depths) < 1:
            parser.error("--embedding-size, --hidden-sizes and --depths must be positive")
    return args


def network_shape(args) -> dict | None:
    """`detector_config`'s keyword arguments for the network a run trains from scratch; None for a fine-tuning (it
    keeps the network of --init-from)."""
    if args.init_from is not None:
        return None
    return {"embedding_size": args.embedding_size, "hidden_sizes": args.hidden_sizes, "depths": args.depths}


def network_options(args) -> str:
    """The options that shape a network trained from scratch, as a command line gives them; always written, so that
    a recorded command keeps its network when the defaults change. '' for a fine-tuning (it keeps its network)."""
    if args.init_from is not None:
        return ""
    return (
        f"--embedding-size {args.embedding_size} --hidden-sizes {' '.join(map(str, args.hidden_sizes))} "
        f"--depths {' '.join(map(str, args.depths))}"
    )


class Draw(NamedTuple):
    """One crop set of a training run: its seed, how many versions of each photo it degrades (`variants`) and
    degrades then restores before looking again (`second_looks`, cycling through `second_look_kinds`), and the
    synthesis that degrades them."""

    seed: int
    variants: int
    second_looks: int
    second_look_kinds: tuple[str, ...] = ALL_SECOND_LOOKS
    synthesis: str = "broad"


def per_seed(option: str, values: list, seeds: list[int]) -> list:
    if len(values) == 1:
        return values * len(seeds)
    if len(values) != len(seeds):
        raise ValueError(
            f"{option} takes one value for every seed or one per seed: {len(values)} values for {len(seeds)} seeds"
        )
    return values


def parse_second_look_kinds(text: str) -> tuple[str, ...]:
    """'all', or names of second looks joined by commas, as a tuple of names."""
    if text == "all":
        return ALL_SECOND_LOOKS
    try:
        return check_second_look_kinds(name.strip() for name in text.split(",") if name.strip())
    except ValueError as error:
        raise ValueError(f"--second-look-kinds {text}: {error}") from None


def crop_set_draws(
    seeds: list[int],
    variants_per_photo: list[int],
    second_looks_per_photo: list[int],
    second_look_kinds: list[str] = ("all",),
    syntheses: list[str] = ("broad",),
) -> list[Draw]:
    """The crop sets that train together, one per seed."""
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seed {' '.join(map(str, seeds))}: a seed given twice would train on the same draw twice")
    variants_per_photo = per_seed("--variants-per-photo", variants_per_photo, seeds)
    second_looks_per_photo = per_seed("--second-looks-per-photo", second_looks_per_photo, seeds)
    kinds = [parse_second_look_kinds(text) for text in per_seed("--second-look-kinds", list(second_look_kinds), seeds)]
    syntheses = per_seed("--synthesis", list(syntheses), seeds)
    if unknown := sorted(set(syntheses) - set(SYNTHESES)):
        raise ValueError(f"--synthesis {unknown[0]}: expected one of {', '.join(SYNTHESES)}")
    if min(variants_per_photo) < 0 or min(second_looks_per_photo) < 0:
        raise ValueError("--variants-per-photo and --second-looks-per-photo cannot be negative")
    draws = [Draw(*values) for values in zip(seeds, variants_per_photo, second_looks_per_photo, kinds, syntheses)]
    if empty := [draw.seed for draw in draws if draw.variants + draw.second_looks == 0]:
        raise ValueError(f"seed {empty[0]} draws nothing: give it --variants-per-photo or --second-looks-per-photo")
    if draws[0].variants == 0:
        # The first draw's versions per photo also size the held-out crop set.
        raise ValueError("the first seed's --variants-per-photo must be at least 1")
    return draws


def training_crop_set(cache_dir, photos, draws: list[Draw], crops_per_variant: int):
    """The crop sets of every draw, each cached on its own (`cached_crop_set`) with its synthesis, one after the
    other."""
    sets = [
        cached_crop_set(
            cache_dir,
            photos,
            draw.variants,
            crops_per_variant,
            draw.seed,
            draw.second_looks,
            draw.second_look_kinds,
            draw.synthesis,
        )
        for draw in draws
    ]
    return tuple(np.concatenate(parts) for parts in zip(*sets))


def flipped(crops: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal and vertical flips (not rotations: rain falls roughly downwards)."""
    crops = crops.copy()
    horizontal, vertical = rng.random(len(crops)) < 0.5, rng.random(len(crops)) < 0.5
    crops[horizontal] = crops[horizontal, :, ::-1]
    crops[vertical] = crops[vertical, ::-1]
    return crops


@torch.inference_mode()
def predict(model, crops: np.ndarray, batch_size: int = 256) -> np.ndarray:
    model.eval()
    logits = [
        model(pixel_values=crops_to_batch(crops[start : start + batch_size])).logits
        for start in range(0, len(crops), batch_size)
    ]
    return torch.sigmoid(torch.cat(logits)).numpy()


def crop_metrics(
    probabilities: np.ndarray, labels: np.ndarray, weights: np.ndarray, threshold: float = 0.5
) -> dict[str, dict]:
    """Precision and recall per label over the crops whose label counts (weight > 0)."""
    counted = weights > 0
    predicted, truth = (probabilities >= threshold) & counted, (labels >= 0.5) & counted
    metrics = {}
    for index, label in enumerate(LABELS):
        hits = float((predicted[:, index] & truth[:, index]).sum())
        metrics[label] = {
            "precision": hits / max(predicted[:, index].sum(), 1),
            "recall": hits / max(truth[:, index].sum(), 1),
            "support": int(truth[:, index].sum()),
        }
    return metrics


def metrics_table(metrics: dict[str, dict]) -> str:
    rows = ["| label | precision | recall | crops |", "|---|---|---|---|"]
    rows += [f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['support']} |" for label, m in metrics.items()]
    return "\n".join(rows)


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per label, over the labels that count (weight > 0)."""
    losses = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    return (losses * weights).sum() / weights.sum().clamp_min(1)


# What a checkpoint's config carries that was chosen for its own weights: a fine-tuned detector chooses them again.
CALIBRATED_CONFIG_KEYS = ("detection_thresholds", "detection_routing", "detection_thresholds_after")


def initial_model(init_from: Path | None, network: dict | None = None) -> ResNetForImageClassification:
    """A fresh detector (`detector_config`, shaped by `network`: its keyword arguments), or the detector in
    `init_from` to fine-tune, checked and stripped of its calibration."""
    if init_from is None:
        return ResNetForImageClassification(detector_config(**(network or {})))
    if not (Path(init_from) / "config.json").is_file():
        raise ValueError(
            f"--init-from {init_from}: no config.json there; pass a detector folder saved by this training "
            "(e.g. checkpoints/mprnet-detector)"
        )
    model = ResNetForImageClassification.from_pretrained(str(init_from))
    config = model.config
    labels = tuple(config.id2label[index] for index in range(config.num_labels))
    if labels != LABELS or config.problem_type != "multi_label_classification":
        raise ValueError(
            f"--init-from {init_from}: not a degradation detector (labels {list(labels)}, problem type "
            f"{config.problem_type}); expected multi-label {list(LABELS)}"
        )
    for key in CALIBRATED_CONFIG_KEYS:
        if hasattr(config, key):
            delattr(config, key)
    return model


def commands_of(log: dict) -> list[str]:
    """The commands that trained the detector a training log describes, from scratch to its own, as far as the logs
    kept them (a log keeps its own command and those of the detector it was fine-tuned from)."""
    if not log.get("command"):
        return []
    start = log.get("init_from") or {}
    earlier = start.get("commands") or ([start["command"]] if start.get("command") else [])
    return [*earlier, log["command"]]


def starting_point(init_from: Path | None) -> dict | None:
    """What the fine-tuned detector's own training log says of it (epochs, minutes, seed, the commands that made
    it), for the model card."""
    if init_from is None:
        return None
    log_path = Path(init_from) / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    facts = {key: log.get(key) for key in ("epochs", "minutes", "train_crops", "seed", "command")}
    facts["commands"] = commands_of(log)
    # A chain of fine-tunings names the folder the earlier one started from.
    facts["fine_tuned_from"] = (log.get("init_from") or {}).get("folder")
    return {"folder": str(init_from), **facts}


def train(args) -> dict:
    first_seed, first_variants = args.draws[0].seed, args.draws[0].variants
    set_seed(first_seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    train_photos, held_out, overlaps = split_photos(args)
    train_crops, train_labels, train_weights = training_crop_set(
        args.cache_dir, train_photos, args.draws, args.crops_per_variant
    )
    held_out_synthesis = args.draws[0].synthesis
    val_crops, val_labels, val_weights = cached_crop_set(
        args.cache_dir,
        held_out,
        max(first_variants // 4, 1),
        args.crops_per_variant,
        first_seed + 1,
        1,
        synthesis=held_out_synthesis,
    )
    data_minutes = (time.perf_counter() - started) / 60
    print(
        f"{len(train_photos)} training photos, {len(held_out)} held out, {len(overlaps)} left out; "
        f"{len(train_crops)} training crops, {len(val_crops)} held-out crops ({data_minutes:.1f} min)",
        flush=True,
    )

    # Channels-last convolutions train about a quarter faster on a CPU; the saved weights are the same.
    model = initial_model(args.init_from, network_shape(args)).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_crops) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.learning_rate, total_steps=args.epochs * steps_per_epoch, pct_start=0.1
    )
    rng = np.random.default_rng(first_seed)
    training_started, epochs_run = time.perf_counter(), 0
    for epoch in range(args.epochs):
        model.train()
        order, losses = rng.permutation(len(train_crops)), []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            pixels = crops_to_batch(flipped(train_crops[batch], rng)).contiguous(memory_format=torch.channels_last)
            logits = model(pixel_values=pixels).logits
            loss = weighted_loss(logits, torch.from_numpy(train_labels[batch]), torch.from_numpy(train_weights[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        epochs_run += 1
        metrics = crop_metrics(predict(model, val_crops), val_labels, val_weights)
        recalls = " ".join(f"{label} {m['recall']:.2f}" for label, m in metrics.items())
        minutes = (time.perf_counter() - training_started) / 60
        print(f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, held-out recall {recalls} ({minutes:.1f} min)")
        if minutes > args.max_minutes:
            break
    minutes = (time.perf_counter() - training_started) / 60
    # Per-label thresholds chosen on the held-out photos, for each label read alone (no routing rule).
    _, thresholds, calibration_photos = calibrate_detector(
        model, held_out, args.calibration_seeds, 1, 1, synthesis=held_out_synthesis
    )
    print(f"thresholds {thresholds} (from {calibration_photos} held-out degraded photos)", flush=True)
    model.config.detection_thresholds = thresholds
    facts = {
        "metrics": metrics,
        "minutes": minutes,
        "data_minutes": data_minutes,
        "epochs": epochs_run,
        "train_photos": len(train_photos),
        "holdout_photos": len(held_out),
        "excluded": {str(photo): f"like {reference} ({why})" for photo, (reference, why) in overlaps.items()},
        "train_crops": len(train_crops),
        "val_crops": len(val_crops),
        "thresholds": thresholds,
        "calibration_photos": calibration_photos,
        "init_from": starting_point(args.init_from),
        "threads": torch.get_num_threads(),
    }
    save(model, args, facts)
    return metrics


def as_in_checkout(folder: Path) -> str:
    """A photo folder as a checkout names it (data/dev/train, data/photos/val), wherever this run read it from."""
    folder = Path(folder)
    if folder.parent.name in ("dev", "photos") and folder.parent.parent.name == "data":
        return f"data/{folder.parent.name}/{folder.name}"
    return str(folder)


def origin_sentence(start: dict | None) -> str:
    """How the card's training paragraph begins: from scratch, or fine-tuned from which earlier detector."""
    if start is None:
        return "Trained from scratch"
    earlier = ", ".join(
        text
        for text, value in (
            (epochs_text(start["epochs"]), start["epochs"]),
            (f"{start['minutes']:.1f} minutes" if start["minutes"] else "", start["minutes"]),
            (f"{start['train_crops']} crops", start["train_crops"]),
            (seeds_text(start["seed"]), start["seed"] is not None),
        )
        if value
    )
    how = (
        f"itself fine-tuned here from `{start['fine_tuned_from']}`"
        if start.get("fine_tuned_from")
        else "itself trained from scratch here"
    )
    return (
        f"Fine-tuned from the weights of an earlier detector (`{start['folder']}`, {how} on the same training "
        f"photos{': ' + earlier if earlier else ''}; no weights from outside the project), trained further"
    )


def epochs_text(epochs: int) -> str:
    return f"{epochs} epoch" if epochs == 1 else f"{epochs} epochs"


def seeds_text(seed: int | list[int]) -> str:
    """'seed 0', or 'seeds 0, 1' for a run over several draws (a log keeps a list then)."""
    if isinstance(seed, list):
        return f"seed {seed[0]}" if len(seed) == 1 else "seeds " + ", ".join(map(str, seed))
    return f"seed {seed}"


def draws_sentence(draws: list[Draw]) -> str:
    """How many degraded versions per photo the card's training paragraph names."""
    if len(draws) == 1:
        return f"{draws[0].variants} times per photo"
    return " + ".join(str(draw.variants) for draw in draws) + f" times per photo in {len(draws)} draws"


def second_looks_sentence(draws: list[Draw]) -> str:
    """How many versions per photo, restored before a second look, the card's training paragraph names."""
    counts = [draw.second_looks for draw in draws]
    if len(set(counts)) > 1:
        sentence = " + ".join(map(str, counts)) + f" more versions in {len(draws)} draws"
    else:
        versions = f"{counts[0]} more version{'' if counts[0] == 1 else 's'}"
        sentence = versions if len(draws) == 1 else f"{versions} in each of {len(draws)} draws"
    return sentence + chosen_kinds_clause(draws)


def chosen_kinds_clause(draws: list[Draw]) -> str:
    """' (those of seed 4: rain/derain x3, ...)' for the draws that chose their kinds of second look."""
    chosen = [draw for draw in draws if draw.second_looks and draw.second_look_kinds != ALL_SECOND_LOOKS]
    if not chosen:
        return ""
    parts = []
    for draw in chosen:
        kinds = ", ".join(f"{name} x{count}" for name, count in Counter(draw.second_look_kinds).items())
        parts.append(f"those of seed {draw.seed} cycle through {kinds}")
    return " (" + "; ".join(parts) + ")"


def second_look_kinds_option(draws: list[Draw]) -> str:
    """'--second-look-kinds ... ' where a draw chose its kinds of second look, '' where every draw cycles through
    them all."""
    if all(draw.second_look_kinds == ALL_SECOND_LOOKS for draw in draws):
        return ""
    texts = [
        "all" if draw.second_look_kinds == ALL_SECOND_LOOKS else ",".join(draw.second_look_kinds) for draw in draws
    ]
    return f"--second-look-kinds {' '.join(texts)} "


def training_command(args, output_dir: str, threads: int = 1) -> str:
    """The command line that trains a detector as `args` did, into `output_dir`, on `threads` CPU threads."""
    exclude_dirs = " ".join(as_in_checkout(folder) for folder in args.exclude_like)
    command = (
        f"OMP_NUM_THREADS={threads} nice -n 10 python -m mprnet_hf.detection.train --train-dir "
        f"{as_in_checkout(args.train_dir)} --exclude-like {exclude_dirs} --output-dir {output_dir} "
        f"--variants-per-photo {' '.join(str(draw.variants) for draw in args.draws)} "
        f"--second-looks-per-photo {' '.join(str(draw.second_looks) for draw in args.draws)} "
        f"{second_look_kinds_option(args.draws)}"
        f"--holdout-every {args.holdout_every} --epochs {args.epochs} "
        f"--seed {' '.join(str(draw.seed) for draw in args.draws)}"
    )
    defaults = parse_args([])
    if args.learning_rate != defaults.learning_rate:
        command += f" --learning-rate {args.learning_rate:g}"
    if args.max_minutes != defaults.max_minutes:
        # Without it a longer run stops early, after the epoch that passes the default.
        command += f" --max-minutes {args.max_minutes:g}"
    if network := network_options(args):
        command += f" {network}"
    if args.init_from is not None:
        command += f" --init-from {args.init_from}"
    syntheses = [draw.synthesis for draw in args.draws]
    return command + f" --synthesis {' '.join(dict.fromkeys(syntheses) if len(set(syntheses)) == 1 else syntheses)}"


def earlier_command_paragraph(start: dict | None) -> str:
    """For a fine-tuned detector, the commands that trained the detector it starts from (its log keeps them), so
    the card's command can be run after them."""
    commands = (start or {}).get("commands")
    if not commands:
        return ""
    if len(commands) == 1:
        return f"\n`--init-from {start['folder']}` is the detector trained first, with:\n\n```\n{commands[0]}\n```\n"
    listed = "\n".join(commands)
    return (
        f"\n`--init-from {start['folder']}` is the detector made first by these {len(commands)} commands, in "
        f"order (the first from scratch, each later one fine-tuning the one before):\n\n```\n{listed}\n```\n"
    )


SYNTHESIS_TEXT = {
    "classic": "synthetic degradations (`mprnet_hf/data/degradations.py`): camera shake, Gaussian and defocus blur;\n"
    "Gaussian, Poisson-Gaussian and demosaiced noise; rain streaks",
    "broad": "broad synthetic degradations (`mprnet_hf/data/synthesis.py`): camera shake up to full-photo extents,\n"
    "straight motion, Gaussian and defocus blur; Gaussian and camera-pipeline noise beside the classic kinds; one to\n"
    "three layers of rain streaks from sparse to dense, screen, additive or opaque, sharp or soft, over haze",
}


def synthesis_text(draws: list[Draw]) -> str:
    """The card's description of the degradations, with the seeds of each synthesis where the draws mix them."""
    syntheses = list(dict.fromkeys(draw.synthesis for draw in draws))
    if len(syntheses) == 1:
        return SYNTHESIS_TEXT[syntheses[0]]
    return ";\n".join(
        seeds_text([draw.seed for draw in draws if draw.synthesis == synthesis]) + ": " + SYNTHESIS_TEXT[synthesis]
        for synthesis in syntheses
    )


def save(model, args, facts: dict) -> None:
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir, safe_serialization=True)
    give_weights_ordinary_permissions(args.output_dir)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    config = model.config
    seeds = [draw.seed for draw in args.draws]
    threads = facts.get("threads", 1)
    command = training_command(args, f"checkpoints/{args.output_dir.name}", threads)
    save_detector_card(
        args.output_dir,
        synthesis_text=synthesis_text(args.draws),
        threads="one CPU thread" if threads == 1 else f"{threads} CPU threads",
        origin=origin_sentence(facts["init_from"]),
        parameters=parameters,
        megabytes=(args.output_dir / "model.safetensors").stat().st_size / 2**20,
        crop=config.crop_size,
        crops=config.crops_per_photo,
        grid=config.crop_grid_side,
        train_photos=facts["train_photos"],
        train_dir=as_in_checkout(args.train_dir),
        excluded=len(facts["excluded"]),
        exclude_dirs=", ".join(f"`{as_in_checkout(folder)}`" for folder in args.exclude_like),
        earlier_command=earlier_command_paragraph(facts["init_from"]),
        holdout_photos=facts["holdout_photos"],
        jpeg_low=JPEG_ARTEFACT_QUALITY[0],
        jpeg_high=JPEG_ARTEFACT_QUALITY[1],
        light_low=LIGHT_JPEG_QUALITY[0],
        light_high=LIGHT_JPEG_QUALITY[1],
        clean=CONDITION_SHARES["clean"],
        single=CONDITION_SHARES["single"],
        pair=CONDITION_SHARES["pair"],
        variants=draws_sentence(args.draws),
        region=REGION_SIDE,
        crops_per_variant=args.crops_per_variant,
        second_looks=second_looks_sentence(args.draws),
        train_crops=facts["train_crops"],
        epochs=epochs_text(facts["epochs"]),
        batch_size=args.batch_size,
        minutes=facts["minutes"],
        data_minutes=facts["data_minutes"],
        seed=seeds_text(seeds),
        command=command,
        val_crops=facts["val_crops"],
        crop_table=metrics_table(facts["metrics"]),
        calibration_photos=facts["calibration_photos"],
        thresholds=", ".join(f"{label} {value:.2f}" for label, value in facts["thresholds"].items()),
    )
    log = {key: value for key, value in facts.items() if key != "metrics"}
    log.update(
        seed=seeds[0] if len(seeds) == 1 else seeds,
        crop_metrics=facts["metrics"],
        minutes=round(facts["minutes"], 2),
        data_minutes=round(facts["data_minutes"], 2),
        # As run, into this folder: a detector fine-tuned from it names the folder in --init-from.
        command=training_command(args, str(args.output_dir), threads),
    )
    (args.output_dir / "training_log.json").write_text(json.dumps(log, indent=2) + "\n")
    print(f"saved to {args.output_dir} ({parameters:,} weights, {facts['minutes']:.1f} min)")


def threads_asked(environ=os.environ) -> int:
    """The CPU threads to train on: OMP_NUM_THREADS when it is a positive number, else one (the machine is shared)."""
    text = environ.get("OMP_NUM_THREADS", "")
    return int(text) if text.isdigit() and int(text) > 0 else 1


def main(argv=None):
    torch.set_num_threads(threads_asked())
    train(parse_args(argv))


if __name__ == "__main__":
    main()

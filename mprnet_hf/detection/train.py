"""Train the degradation detector from scratch on the development photos, on a CPU in minutes.

    OMP_NUM_THREADS=1 nice -n 10 python -m mprnet_hf.detection.train \
        --train-dir data/dev/train --val-dir data/dev/val --output-dir checkpoints/mprnet-detector

The labelled crops (`mprnet_hf.detection.data`) are generated once and cached under --cache-dir, so every epoch is
only the network's time. AdamW with cosine decay, binary cross-entropy per label (the model's own multi-label loss),
horizontal and vertical flips. The folder is written with `save_pretrained` (safetensors) and a model card.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import ResNetForImageClassification, set_seed

from .data import cached_crop_set
from .detector import LABELS, crops_to_batch, detector_config

CARD_TEMPLATE = """---
library_name: transformers
pipeline_tag: image-classification
tags:
- image-quality
- degradation-detection
- mprnet
---

# MPRNet degradation detector

A small ResNet ({parameters:,} weights, {megabytes:.1f} MB) that tells which of **blur, noise, rain and JPEG
artefacts** a photo shows, or that it **looks clean** (multi-label: a photo can be noisy and blurred). The
`mprnet_hf` library uses it for `task="auto"`: it runs the MPRNet restorations the detector finds.

It reads crops of {crop}x{crop} pixels at the photo's native scale (the {crops} most contrasted of a grid; a
downscaled thumbnail would hide noise and blur) and averages their logits:

```python
from mprnet_hf.detection import DegradationDetector

detection = DegradationDetector.from_pretrained("checkpoints/mprnet-detector").detect(Image.open("photo.jpg"))
detection.probabilities, detection.found, detection.tasks
```

Plain `ResNetForImageClassification.from_pretrained` loads the weights; the crop reading is the library's.

## Training

Trained from scratch on {train_photos} development photos (`data/dev/train`, public-domain and permissively licensed
test images) degraded with the project's synthetic degradations (`mprnet_hf/data/degradations.py`): camera shake,
Gaussian and defocus blur; Gaussian, Poisson-Gaussian and demosaiced noise; rain streaks; JPEG compression at quality
{jpeg_low}-{jpeg_high} (the "jpeg" label). Light JPEG compression (quality {light_low}-{light_high}) is applied to
a share of every kind without changing its label. Photos are clean ({clean:.0%}), singly degraded ({single:.0%})
or degraded twice ({pair:.0%}). {train_crops} labelled crops, {epochs} epochs, batch {batch_size}, on one CPU thread
in {minutes:.1f} minutes (seed {seed}). Command:

```
{command}
```

## Accuracy

Per crop on the validation photos (`data/dev/val`, {val_crops} crops, threshold 0.5):

{crop_table}

Per photo (crops pooled, what auto mode sees): see `docs/DETECTION.md` in the project, made with
`python -m mprnet_hf.detection.evaluate`.

## Limits

Synthetic degradations only: real photos with other defects (haze, low light without noise, heavy compression of
other codecs) are outside what it learned. It has no restoration for JPEG artefacts; auto mode only reports them.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-dir", type=Path, default=Path("data/dev/train"))
    parser.add_argument("--val-dir", type=Path, default=Path("data/dev/val"))
    parser.add_argument("--output-dir", type=Path, default=Path("checkpoints/mprnet-detector"))
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/detector-crops"))
    parser.add_argument("--variants-per-photo", type=int, default=64)
    parser.add_argument("--crops-per-variant", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--max-minutes", type=float, default=30.0, help="stop after the epoch that passes this")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


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


def crop_metrics(probabilities: np.ndarray, labels: np.ndarray, threshold: float = 0.5) -> dict[str, dict]:
    predicted, truth = probabilities >= threshold, labels >= 0.5
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


def train(args) -> dict:
    set_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    started = time.perf_counter()
    train_crops, train_labels = cached_crop_set(
        args.cache_dir, args.train_dir, args.variants_per_photo, args.crops_per_variant, args.seed
    )
    val_crops, val_labels = cached_crop_set(
        args.cache_dir, args.val_dir, args.variants_per_photo // 2, args.crops_per_variant, args.seed + 1
    )
    print(
        f"{len(train_crops)} training crops, {len(val_crops)} validation crops ({time.perf_counter() - started:.0f} s)",
        flush=True,
    )

    model = ResNetForImageClassification(detector_config())
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(train_crops) / args.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, args.learning_rate, total_steps=args.epochs * steps_per_epoch, pct_start=0.1
    )
    rng = np.random.default_rng(args.seed)
    training_started, epochs_run = time.perf_counter(), 0
    for epoch in range(args.epochs):
        model.train()
        order, losses = rng.permutation(len(train_crops)), []
        for start in range(0, len(order), args.batch_size):
            batch = order[start : start + args.batch_size]
            pixels = crops_to_batch(flipped(train_crops[batch], rng))
            loss = model(pixel_values=pixels, labels=torch.from_numpy(train_labels[batch])).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        epochs_run += 1
        metrics = crop_metrics(predict(model, val_crops), val_labels)
        recalls = " ".join(f"{label} {m['recall']:.2f}" for label, m in metrics.items())
        minutes = (time.perf_counter() - training_started) / 60
        print(
            f"epoch {epoch + 1}: loss {np.mean(losses):.4f}, validation recall {recalls} ({minutes:.1f} min)",
            flush=True,
        )
        if minutes > args.max_minutes:
            break
    minutes = (time.perf_counter() - training_started) / 60
    save(model, args, metrics, minutes, epochs_run, len(train_crops), len(val_crops))
    return metrics


def as_in_checkout(folder: Path) -> str:
    """The development photos' folder as a checkout names it (data/dev/train), wherever this run read it from."""
    folder = Path(folder)
    return (
        f"data/dev/{folder.name}"
        if folder.parent.name == "dev" and folder.parent.parent.name == "data"
        else str(folder)
    )


def save(model, args, metrics, minutes, epochs, train_crops, val_crops) -> None:
    from .data import CONDITION_SHARES, JPEG_ARTEFACT_QUALITY, LIGHT_JPEG_QUALITY, list_photos

    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir, safe_serialization=True)
    parameters = sum(parameter.numel() for parameter in model.parameters())
    config = model.config
    command = (
        f"OMP_NUM_THREADS=1 nice -n 10 python -m mprnet_hf.detection.train --train-dir "
        f"{as_in_checkout(args.train_dir)} --val-dir {as_in_checkout(args.val_dir)} --output-dir "
        f"checkpoints/{args.output_dir.name} --epochs {args.epochs} --seed {args.seed}"
    )
    card = CARD_TEMPLATE.format(
        parameters=parameters,
        megabytes=(args.output_dir / "model.safetensors").stat().st_size / 2**20,
        crop=config.crop_size,
        crops=config.crops_per_photo,
        train_photos=len(list_photos(args.train_dir)),
        jpeg_low=JPEG_ARTEFACT_QUALITY[0],
        jpeg_high=JPEG_ARTEFACT_QUALITY[1],
        light_low=LIGHT_JPEG_QUALITY[0],
        light_high=LIGHT_JPEG_QUALITY[1],
        clean=CONDITION_SHARES["clean"],
        single=CONDITION_SHARES["single"],
        pair=CONDITION_SHARES["pair"],
        train_crops=train_crops,
        epochs=epochs,
        batch_size=args.batch_size,
        minutes=minutes,
        seed=args.seed,
        command=command,
        val_crops=val_crops,
        crop_table=metrics_table(metrics),
    )
    (args.output_dir / "README.md").write_text(card)
    (args.output_dir / "training_log.json").write_text(
        json.dumps(
            {
                "epochs": epochs,
                "minutes": round(minutes, 2),
                "train_crops": train_crops,
                "val_crops": val_crops,
                "seed": args.seed,
                "crop_metrics": metrics,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"saved to {args.output_dir} ({parameters:,} weights, {minutes:.1f} min)")


def main(argv=None):
    torch.set_num_threads(1)
    train(parse_args(argv))


if __name__ == "__main__":
    main()

"""Model cards with Hugging Face Hub metadata for converted and self-trained MPRNet checkpoints."""

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..models.mprnet.configuration_mprnet import MPRNetConfig
from ..models.mprnet.modeling_mprnet import MPRNetModel
from .bundled import JPEG_DENOISE, checkpoint_name

OFFICIAL_LICENSE_NAME = "academic-public-license"
OFFICIAL_LICENSE_LINK = "https://github.com/swz30/MPRNet/blob/main/LICENSE.md"
PAPER = "arXiv:2102.02808"

# Results the paper (arXiv:2102.02808) reports for the released models. The deraining numbers could not be re-checked
# against the paper's text when this was written; the card says so.
PAPER_RESULTS = {
    "deblur": [("GoPro", "gopro", 32.66, 0.959), ("HIDE", "hide", 30.96, 0.939)],
    "derain": [
        ("Test100", "test100", 30.27, 0.897),
        ("Rain100H", "rain100h", 30.41, 0.890),
        ("Rain100L", "rain100l", 36.40, 0.965),
        ("Test2800", "test2800", 33.64, 0.938),
        ("Test1200", "test1200", 32.91, 0.916),
    ],
    "denoise": [("SIDD", "sidd", 39.71, 0.958), ("DND", "dnd", 39.80, 0.954)],
}

TRAINING_DATA = {
    "deblur": "the GoPro training set (2,103 blurry/sharp pairs from a GoPro Hero 4 camera)",
    "derain": "13,712 synthetic rainy/clean pairs collected from several deraining datasets (Rain14000, Rain1800, Rain800, Rain12)",
    "denoise": "SIDD-Medium sRGB (smartphone photos with real noise and their ground truth)",
}

TASK_NAMES = {"deblur": "Image Deblurring", "derain": "Image Deraining", "denoise": "Image Denoising"}

USAGE = """```python
from PIL import Image
from mprnet_hf import MPRNetModel, MPRNetImageProcessor

model = MPRNetModel.from_pretrained("{repo}")
processor = MPRNetImageProcessor.from_pretrained("{repo}")
image = Image.open("photo.png")
inputs = processor(images=image, return_tensors="pt")
restored = processor.postprocess(model(**inputs).reconstruction, inputs["original_sizes"])[0]
restored.save("restored.png")
```

Without installing `mprnet_hf`: `AutoModel.from_pretrained("{repo}", trust_remote_code=True)`."""


def official_model_card(config: MPRNetConfig, repo_id: str | None = None) -> ModelCard:
    """A card for weights converted from an official MPRNet checkpoint."""
    task = config.task
    eval_results = []
    for dataset_name, dataset_type, psnr, ssim in PAPER_RESULTS[task]:
        for metric, value in (("psnr", psnr), ("ssim", ssim)):
            eval_results.append(
                EvalResult(
                    task_type="image-to-image",
                    task_name=TASK_NAMES[task],
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    metric_type=metric,
                    metric_value=value,
                    source_name="MPRNet paper (reported)",
                    source_url="https://arxiv.org/abs/2102.02808",
                )
            )
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-to-image",
        license="other",
        license_name=OFFICIAL_LICENSE_NAME,
        license_link=OFFICIAL_LICENSE_LINK,
        tags=["mprnet", "image-restoration", TASK_NAMES[task].lower().replace(" ", "-"), PAPER.lower()],
        model_name=f"MPRNet ({TASK_NAMES[task].lower()})",
        eval_results=eval_results,
    )
    repo = repo_id or f"org/mprnet-{task}"
    caveat = (
        "\nThe deraining numbers are quoted from memory of the paper and have not been re-checked against its text.\n"
        if task == "derain"
        else ""
    )
    content = f"""---
{data.to_yaml()}
---

# MPRNet: {TASK_NAMES[task]}

The official weights of MPRNet (Zamir et al., "Multi-Stage Progressive Image Restoration", CVPR 2021,
[{PAPER}](https://arxiv.org/abs/2102.02808)) for {TASK_NAMES[task].lower()}, converted to the Hugging Face format
with `python -m mprnet_hf.hub.convert`. Outputs match the official implementation to within 1e-5.

- Trained on: {TRAINING_DATA[task]} by the paper's authors.
- Configuration: n_feat={config.n_feat}, scale_unetfeats={config.scale_unetfeats}, scale_orsnetfeats={config.scale_orsnetfeats}, num_cab={config.num_cab}.
- Licence: the official MPRNet code and weights are under the ACADEMIC PUBLIC LICENSE (non-commercial use only;
  see {OFFICIAL_LICENSE_LINK}). Contact the authors for commercial use.

## Results reported in the paper
| dataset | PSNR | SSIM |
|---|---|---|
{chr(10).join(f"| {name} | {psnr:.2f} | {ssim:.3f} |" for name, _, psnr, ssim in PAPER_RESULTS[task])}
{caveat}
## Usage
{USAGE.format(repo=repo)}

## Citation
```bibtex
@inproceedings{{Zamir2021MPRNet,
  title={{Multi-Stage Progressive Image Restoration}},
  author={{Syed Waqas Zamir and Aditya Arora and Salman Khan and Munawar Hayat and Fahad Shahbaz Khan and Ming-Hsuan Yang and Ling Shao}},
  booktitle={{CVPR}},
  year={{2021}}
}}
```
"""
    return ModelCard(content)


# What the card of a bundled variant (a second model of a task, mprnet-{variant}-small) says it is for.
VARIANT_ROLES = {
    JPEG_DENOISE: (
        "Image Denoising of JPEG-compressed noise",
        "It denoises photos whose noise went through a JPEG encoder. `mprnet_hf` (the app, `mprnet-restore` and "
        "auto mode) uses it in place of `mprnet-denoise-small` on photos that carry JPEG's 8×8 grid "
        "(`mprnet_hf.detection.jpeg_grid`). On noise never compressed the denoise model does better.",
    ),
}


def trained_model_card(
    config: MPRNetConfig,
    training: dict,
    evaluation: str | None = None,
    repo_id: str | None = None,
    variant: str | None = None,
) -> ModelCard:
    """A card for weights trained by this project (not the paper's weights), saying what they were trained on;
    `variant` names a second model of the task (`VARIANT_ROLES`), e.g. the JPEG denoiser."""
    task = config.task
    title, role = VARIANT_ROLES[variant] if variant else (TASK_NAMES[task], "")
    data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-to-image",
        license="apache-2.0",
        tags=["mprnet", "image-restoration", TASK_NAMES[task].lower().replace(" ", "-"), PAPER.lower()],
        model_name=f"MPRNet small ({title.replace(TASK_NAMES[task], TASK_NAMES[task].lower())}, trained on "
        "development photos)",
    )
    repo = repo_id or f"checkpoints/{checkpoint_name(variant or task)}"
    parameters = _count_parameters(config)
    minutes = training.get("seconds", 0) / 60
    content = f"""---
{data.to_yaml()}
---

# MPRNet small: {title} (trained by mprnet_hf, not the paper's weights)

A compact MPRNet ({parameters:,} parameters: n_feat={config.n_feat}, scale_unetfeats={config.scale_unetfeats},
scale_orsnetfeats={config.scale_orsnetfeats}, num_cab={config.num_cab}) trained from scratch by this project's
training code. It is the offline default of the `mprnet_hf` demo. For paper-quality results convert the official
weights with `python -m mprnet_hf.hub.convert`.{" " + role if role else ""}

## Training
- Data of the last training phase: {training.get("data", "")}. The clean photos come from Debian and PyPI packages (scikit-image, the `sporco`
  wheel, Debian's `opencv-doc` and, for the larger set, GCompris, KPhotoAlbum, Tux Paint and desktop wallpapers), each
  listed with its licence in the project's `data_sources/photos.json`; validation photos are held out.
- Degradation ({task}): {_degradation_text(task, training)}
  Phases that name no data (the first ones) trained on the 30 development photos with the earlier degradations:
  no JPEG, camera shake up to 15 px, no demosaiced noise.
- Objective: {"Charbonnier on clamped outputs (the official denoising recipe)" if config.clamp_outputs_in_loss else "Charbonnier + 0.05 x edge loss"}, summed over the three stages;
  Adam with warm-up and cosine decay, random patches, 8-way flips and rotations.
- Length: {training.get("steps")} steps, {minutes:.0f} minutes on {_devices_text(training)}{_phases_text(training)}.
- {_validation_text(training)}{_shipped_text(training)}

## Evaluation
{evaluation or "See the project README for PSNR/SSIM against classical baselines on the held-out photos."}

## Usage
{USAGE.format(repo=repo)}

## Limitations
Trained for a few CPU-hours on at most a couple of hundred photos with synthetic degradations: it generalises far
less than the paper's models and is meant as a working demo, not as a state-of-the-art restorer.
"""
    return ModelCard(content)


def _validation_text(training: dict) -> str:
    """The best validation PSNR of the last phase, which interpolated weights never had: they were not trained."""
    best = f"{training.get('best_val_psnr', float('nan')):.2f} dB"
    phases = training.get("phases") or [{}]
    if "interpolation" in phases[-1]:
        return (
            "Validation PSNR: not measured for these interpolated weights, which were chosen on the rows under "
            f"Evaluation (the fine-tune they lie on the way to reached {best} on its own validation crops)."
        )
    return f"Best validation PSNR during the last training phase (256x256 centre crops of its held-out photos): {best}."


def _shipped_text(training: dict) -> str:
    if "final_val_psnr" not in training:
        return ""
    return (
        f"\n- Shipped: the final weights of the last phase (validation PSNR {training['final_val_psnr']:.2f} dB), not "
        "the best-validating ones: six validation crops are too few to choose between checkpoints a few tenths of a "
        "dB apart."
    )


def _phases_text(training: dict) -> str:
    phases = training.get("phases") or [
        {key: training.get(key) for key in ("steps", "seconds", "patch_size", "batch_size")}
    ]
    parts = []
    for phase in phases:
        if "interpolation" in phase:
            parts.append(_interpolation_text(phase["interpolation"]))
            continue
        text = f"{phase['steps']} steps of batch {phase['batch_size']}"
        if phase.get("processes", 1) > 1:
            text += f" ({phase['processes']} processes x {phase['batch_size_per_process']})"
        text += f" at {phase['patch_size']}x{phase['patch_size']}"
        if phase.get("lr"):
            text += f", peak learning rate {phase['lr']:g}"
            if phase.get("lr_scaling") not in (None, "none"):
                text += f" ({phase['lr_scaling']}-scaled with the number of processes)"
        if phase.get("mixed_precision") not in (None, "no"):
            text += f", {phase['mixed_precision']} autocast"
        if phase.get("data"):
            text += f", on {phase['data'].removeprefix('synthetic degradations of ')}"
        parts.append(f"{text} ({phase['seconds'] / 60:.0f} min)")
    return ": " + "; then ".join(parts) if len(parts) > 1 else f": {parts[0]}"


def _interpolation_text(mix: dict) -> str:
    text = (
        f"the weights {mix['weight']:g} of the way from `{mix['start']}` (as it was then) to `{mix['end']}`, two "
        "descendants of the same weights (every tensor interpolated linearly, `python -m mprnet_hf.training.interpolate`)"
    )
    if mix.get("start_phases"):
        text += f", the start after {_phases_text({'phases': mix['start_phases']}).removeprefix(': ')} of its own"
    return text


def _devices_text(training: dict) -> str:
    """Where the phases ran: phases recorded before devices were recorded ran on CPU."""
    devices = sorted({phase.get("device", "cpu") for phase in training.get("phases") or [{}]})
    return " and ".join("GPU" if device == "cuda" else device.upper() for device in devices)


def _degradation_text(task: str, training: dict) -> str:
    """The classic synthesis's degradation, and the broad one's where a phase trained on it."""
    text = (
        f"{_DEGRADATION_TEXT[task]} 40 % of samples (or the share a phase names) re-encoded as JPEG (quality 60-95) "
        "afterwards."
    )
    phases = training.get("phases") or []
    if any(phase.get("data", "").startswith("broad") for phase in phases):
        text += (
            f" The phases on the broad synthesis (`mprnet_hf/data/synthesis.py`): {_BROAD_DEGRADATION_TEXT[task]} "
            "mixed with the classic degradation in the share each phase names; half of the samples (or the share a "
            "phase names) saved as JPEG (quality 50-95) afterwards."
        )
    return text


_BROAD_DEGRADATION_TEXT = {
    "denoise": "Gaussian noise with sigma up to 65/255, or sensor noise through a camera pipeline (Poisson-Gaussian "
    "on a raw Bayer mosaic, demosaicing, white balance, colour correction, tone curve),",
    "deblur": "camera shake up to 45 px (the extent of a shaken full phone photo), straight motion, defocus or "
    "Gaussian blur, then Gaussian noise up to 3/255,",
    "derain": "one to three layers of streaks, each with its own density (over two orders of magnitude), length "
    "(4-160 px), width, softness and angle near a shared wind direction, blended additively, as a screen or opaquely, "
    "sometimes over haze,",
}

_DEGRADATION_TEXT = {
    "denoise": "blind additive Gaussian noise with sigma uniform in [0, 55]/255 (half the samples), Poisson-Gaussian "
    "sensor noise, or that noise demosaiced from a Bayer mosaic and colour-corrected (spatially correlated).",
    "deblur": "random camera-shake trajectories up to 31 px, smooth, jerky or doubling back (2/3), Gaussian or defocus "
    "blur (1/3), then Gaussian noise up to 2/255.",
    "derain": "one or two layers of synthetic rain streaks of random density, length, angle, width and brightness.",
}


def _count_parameters(config: MPRNetConfig) -> int:
    return sum(parameter.numel() for parameter in MPRNetModel(config).parameters())


# The degradation detector's card: `detection.train` words the facts of its run (photos, draws, epochs, metrics).
DETECTOR_CARD_TEMPLATE = """---
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

It reads crops of {crop}x{crop} pixels at the photo's native scale (the {crops} most contrasted of a grid of up to
{grid}x{grid}; a downscaled thumbnail would hide noise and blur) and averages their logits:

```python
from mprnet_hf.detection import DegradationDetector

detection = DegradationDetector.from_pretrained("checkpoints/mprnet-detector").detect(Image.open("photo.jpg"))
detection.probabilities, detection.found, detection.tasks
```

Plain `ResNetForImageClassification.from_pretrained` loads the weights; the crop reading is the library's.

## Training

{origin} on {train_photos} photos of `{train_dir}` (natural photos with recorded licences,
`docs/PHOTOS.md`; {excluded} left out because they show the content of an evaluation photo of
{exclude_dirs}, compared by pixels; {holdout_photos} more held out for calibration) degraded with the project's
{synthesis_text}; JPEG compression at quality {jpeg_low}-{jpeg_high}
(the "jpeg" label). Light JPEG compression (quality {light_low}-{light_high}) is applied to
a share of every kind without changing its label. Photos are clean ({clean:.0%}), singly degraded ({single:.0%})
or degraded twice ({pair:.0%}), {variants} (a {region}-pixel region of it, {crops_per_variant} crops
each). Auto mode looks again at derained and denoised photos, so each training photo also gives {second_looks}
degraded and then derained and/or denoised by the bundled restoration models and labelled with what
remains (rain and noise that were restored, and "clean" when nothing remains, are left out of the loss).
{train_crops} labelled crops, {epochs}, batch {batch_size}, on {threads} in {minutes:.1f} minutes plus
{data_minutes:.1f} minutes making the crops ({seed}). Command:

```
{command}
```
{earlier_command}
## Accuracy

Per crop on the {holdout_photos} held-out training photos ({val_crops} crops, threshold 0.5):

{crop_table}

Per-label thresholds, chosen on the held-out training photos ({calibration_photos} degraded versions; blur, noise
and rain: the most routed to exactly the right restorations; JPEG: best F1), kept in `config.json` as
`detection_thresholds`: {thresholds}.

Per photo (crops pooled, what auto mode sees): see `docs/DETECTION.md` in the project, made with
`python -m mprnet_hf.detection.evaluate`.

## Limits

Synthetic degradations only: real photos with other defects (haze, low light without noise, heavy compression of
other codecs) are outside what it learned. It has no restoration for JPEG artefacts; auto mode only reports them.
"""


def save_detector_card(output_dir: str | Path, **facts) -> Path:
    """Writes the degradation detector's card (README.md) into `output_dir`; `facts` fill `DETECTOR_CARD_TEMPLATE`."""
    path = Path(output_dir) / "README.md"
    path.write_text(DETECTOR_CARD_TEMPLATE.format(**facts))
    return path


def save_model_card(card: ModelCard, output_dir: str | Path) -> Path:
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


__all__ = ["official_model_card", "trained_model_card", "save_model_card", "save_detector_card", "PAPER_RESULTS"]

"""The bundled checkpoints (checkpoints/mprnet-{task}-small, and the JPEG denoiser mprnet-denoise-jpeg-small): load
cleanly, stay small, say what they are, and restore.

The restoration check uses committed images, found in this order:
  1. every synthetic example of the app, examples/<task>/<photo>_<degradation>.png, with its clean source
     examples/clean/<photo>[_suffix].png (made by scripts/make_examples.py; real photos without a source are left out);
  2. the first clean photo in examples/clean/, degraded here with the evaluation's seeded degradation;
  3. a held-out development photo in data/dev/val/ (not committed; present where the photos were prepared);
and the test is skipped, saying so, when none exists.
"""

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from conftest import REPO_ROOT
from mprnet_hf import MPRNetModel
from mprnet_hf.evaluation import evaluate as ev
from mprnet_hf.hub.bundled import JPEG_DENOISE
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS
from mprnet_hf.training.data import list_images

CHECKPOINTS = REPO_ROOT / "checkpoints"
EXAMPLES = REPO_ROOT / "examples"
DEV_VAL = REPO_ROOT / "data" / "dev" / "val"
MAX_BYTES = 10 * 1024 * 1024
CROP = 256  # a centre crop keeps the test fast (the examples are at most 256 pixels already)
SEED = 0
# A restoration must beat the degraded input by this much (an identity output gains nothing). Set per task a little
# below what the bundled weights reach on the examples (deblur +1.91, derain >= +3.8, denoise >= +7.7 dB), so a
# retrained checkpoint that restores worse fails here.
MIN_GAIN_DB = {"deblur": 1.5, "derain": 3.0, "denoise": 6.0}
# Each bundled folder by its name in mprnet-{name}-small, and the task it restores.
BUNDLED = {**{task: task for task in TASKS}, JPEG_DENOISE: "denoise"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def checkpoint_dir(task: str) -> Path:
    path = CHECKPOINTS / f"mprnet-{task}-small"
    if not (path / "config.json").is_file():
        pytest.fail(f"bundled checkpoint {path} is missing")
    return path


def centre_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max((height - size) // 2, 0), max((width - size) // 2, 0)
    return image[top : top + size, left : left + size]


def clean_source(degraded_path: Path) -> Path | None:
    """The clean photo an example was made from: examples/<task>/<photo>_<degradation>.png comes from
    examples/clean/<photo>.png, where the clean name may carry a suffix of its own (squirrel_noise <- squirrel_cls).
    Real degraded photos have none."""
    photo = degraded_path.stem.rsplit("_", 1)[0]
    clean_dir = EXAMPLES / "clean"
    candidates = [path for path in list_images(clean_dir) if path.stem == photo or path.stem.startswith(photo + "_")]
    return candidates[0] if len(candidates) == 1 else None


def example_samples(task: str) -> list[ev.Sample]:
    """Degraded/clean pairs for `task` from the committed examples (see the module docstring)."""
    samples = []
    for degraded_path in list_images(EXAMPLES / task) if (EXAMPLES / task).is_dir() else []:
        clean_path = clean_source(degraded_path)
        if clean_path is not None:
            degraded, clean = ev.load_uint8(degraded_path), ev.load_uint8(clean_path)
            if degraded.shape == clean.shape:
                samples.append(ev.Sample(degraded_path.name, centre_crop(degraded), centre_crop(clean)))
    if samples:
        return samples
    for source in (EXAMPLES / "clean", DEV_VAL):
        photos = list_images(source) if source.is_dir() else []
        if photos:
            clean = centre_crop(ev.load_uint8(photos[0]))
            degraded, kernel = ev.synthetic_degradation(ev.to_tensor(clean), task, seed=SEED)
            return [ev.Sample(photos[0].name, ev.to_uint8(degraded), clean, kernel=kernel)]
    pytest.skip(
        f"no example image for {task}: expected examples/{task}/<photo>_<degradation>.png with "
        f"examples/clean/<photo>.png, or clean photos in examples/clean/ or data/dev/val/"
    )


@pytest.fixture(scope="module", params=list(BUNDLED))
def task(request):
    """The name of a bundled folder (mprnet-{name}-small): a task, or the JPEG denoiser."""
    return request.param


def test_checkpoint_loads_without_missing_or_unexpected_keys(task):
    model, info = MPRNetModel.from_pretrained(checkpoint_dir(task), output_loading_info=True)
    assert not info["missing_keys"], info["missing_keys"]
    assert not info["unexpected_keys"], info["unexpected_keys"]
    assert not info["mismatched_keys"], info["mismatched_keys"]
    assert model.config.task == BUNDLED[task]


def test_checkpoint_is_small_and_float32(task):
    files = sorted(checkpoint_dir(task).glob("*.safetensors"))
    assert files, "no safetensors weights"
    assert sum(path.stat().st_size for path in files) <= MAX_BYTES
    with safe_open(files[0], framework="pt") as weights:
        dtypes = {weights.get_slice(name).get_dtype() for name in weights.keys()}  # noqa: SIM118 (the handle has keys())
    assert dtypes == {"F32"}


def test_model_card_says_these_are_not_the_papers_weights(task):
    card = (checkpoint_dir(task) / "README.md").read_text()
    assert "not the paper's weights" in card
    assert "library_name: transformers" in card and "pipeline_tag: image-to-image" in card


@pytest.mark.slow
def test_checkpoint_improves_psnr_on_the_examples(task):
    samples = example_samples(BUNDLED[task])
    model = MPRNetModel.from_pretrained(checkpoint_dir(task)).eval()
    restore = ev.model_method(model)
    protocol = ev.DEFAULT_PROTOCOL[BUNDLED[task]]
    scores = {
        sample.name: (
            ev.psnr(sample.degraded, sample.clean, protocol),
            ev.psnr(restore(sample), sample.clean, protocol),
        )
        for sample in samples
    }
    report = ", ".join(f"{name}: {before:.2f} -> {after:.2f} dB" for name, (before, after) in scores.items())
    gain = MIN_GAIN_DB[BUNDLED[task]]
    assert all(after > before + gain for before, after in scores.values()), f"{report} ({protocol} PSNR)"

"""The one-command GPU training (scripts/train_on_gpu.sh, mprnet_hf.training.train_all) and the photo bundle it
carries, run end to end on CPU with a handful of steps so that they cannot rot between lent GPUs."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from mprnet_hf import MPRNetModel
from mprnet_hf.hub.bundled import bundled_checkpoint
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS

REPO = Path(__file__).resolve().parents[1]


def textured_photo(height: int, width: int, seed: int) -> np.ndarray:
    """Smooth colour gradients under fine noise: a stand-in photo that JPEG cannot shrink to nothing."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([0.3 + 0.3 * np.cos(rng.uniform(2, 6) * x + rng.uniform(0, 3) * y) for _ in range(3)], axis=-1)
    image += rng.normal(0, 0.02, image.shape)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def write_photos(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(textured_photo(*size, seed=seed + index)).save(folder / f"{index}.png")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A photo bundle made by scripts/make_gpu_bundle.py from small photos."""
    root = tmp_path_factory.mktemp("photos")
    write_photos(root / "train", 3, (56, 64), seed=0)
    write_photos(root / "val", 2, (40, 48), seed=10)
    output = root / "bundle"
    subprocess.run(
        [
            sys.executable,
            "scripts/make_gpu_bundle.py",
            "--train",
            str(root / "train"),
            "--val",
            str(root / "val"),
            "--output",
            str(output),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return output


@pytest.mark.slow
def test_bundle_holds_jpeg_training_photos_and_lossless_validation_photos(bundle, tmp_path):
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert sorted(path.name for path in (bundle / "train").iterdir()) == ["0.jpg", "1.jpg", "2.jpg"]
    assert manifest["train"]["scale"] == 1.0 and manifest["val"]["encoding"] == "PNG"
    original = textured_photo(40, 48, seed=10)
    np.testing.assert_array_equal(np.asarray(Image.open(bundle / "val" / "0.png")), original)
    with Image.open(bundle / "train" / "0.jpg") as image:
        assert image.size == (64, 56)
        assert JpegImagePlugin.get_sampling(image) == 0  # 4:4:4, no chroma subsampling
        # Quality 95 on this noisy stand-in: about 3 grey levels off on average (0.9 on the development photos).
        assert np.abs(np.asarray(image, dtype=float) - textured_photo(56, 64, seed=0)).mean() < 4


def test_bundle_shrinks_the_training_photos_to_fit_its_budget(tmp_path):
    write_photos(tmp_path / "train", 2, (512, 512), seed=0)
    write_photos(tmp_path / "val", 1, (64, 64), seed=5)
    output = tmp_path / "bundle"
    budget_mib = 0.1
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import make_gpu_bundle
    finally:
        sys.path.remove(str(REPO / "scripts"))
    manifest = make_gpu_bundle.main(
        [
            "--train",
            str(tmp_path / "train"),
            "--val",
            str(tmp_path / "val"),
            "--output",
            str(output),
            "--max-mib",
            str(budget_mib),
        ]
    )
    files = [path for path in output.rglob("*") if path.suffix in (".jpg", ".png")]
    assert sum(path.stat().st_size for path in files) <= budget_mib * 1024 * 1024
    assert 0 < manifest["train"]["scale"] < 1
    with Image.open(output / "train" / "0.jpg") as image:
        assert image.width == image.height < 512


@pytest.mark.slow
def test_train_on_gpu_script_runs_end_to_end_on_cpu(bundle, tmp_path):
    out = tmp_path / "out"
    # The smoke version (a handful of steps of each task), as where there is no GPU; one thread, as on a busy CI box.
    env = {
        **os.environ,
        "OUT": str(out),
        "BUNDLE": str(bundle),
        "PYTHON": sys.executable,
        "WORK": str(tmp_path / "work"),
        "TRAIN_ALL_ARGS": "--smoke",
        "OMP_NUM_THREADS": "1",
    }
    subprocess.run(["bash", "scripts/train_on_gpu.sh"], cwd=REPO, env=env, check=True, capture_output=True, text=True)

    # What comes back from the device: at most 8 files, none in a folder.
    assert sorted(path.name for path in out.iterdir()) == [
        "checkpoints.tar",
        "quality_report.json",
        "quality_report.md",
        "train_on_gpu.log",
        "training_runs.json",
    ]
    unpacked = tmp_path / "checkpoints"
    with tarfile.open(out / "checkpoints.tar") as tar:
        tar.extractall(unpacked, filter="data")
    for task in TASKS:
        folder = unpacked / f"mprnet-{task}-small"
        model, info = MPRNetModel.from_pretrained(folder, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]
        assert model.config.task == task
        assert {"README.md", "preprocessor_config.json", "training_log.jsonl"} <= {
            path.name for path in folder.iterdir()
        }
        # Trained on from the bundled weights: their phases, then this run's two steps of 64x64 patches.
        bundled = json.loads((bundled_checkpoint(task) / "training_summary.json").read_text())
        summary = json.loads((folder / "training_summary.json").read_text())
        assert summary["steps"] == bundled["steps"] + 2
        assert summary["phases"][-1]["patch_size"] == 64

    report = json.loads((out / "quality_report.json").read_text())
    assert [run["task"] for run in report["training"]] == list(TASKS)
    assert all(
        run["steps"] == 2 and run["patches"] == 4 and run["patches_per_second"] > 0 for run in report["training"]
    )
    assert set(report["quality"]) == {"deblur", "derain", "denoise-sigma15", "denoise-sigma25", "denoise-sigma50"}
    for result in report["quality"].values():
        assert set(result["summary"]) == {"input", "bundled", "new"}
        assert all(np.isfinite(score["psnr"]) for score in result["summary"].values())
    table = (out / "quality_report.md").read_text()
    assert "| denoise-sigma25 (rgb) |" in table and "| derain (y) |" in table
    assert "patches_per_second" in (out / "train_on_gpu.log").read_text()

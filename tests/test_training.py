"""Training: the loss goes down on a fixed batch, and the CLI trains, exports a loadable model and resumes."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from mprnet_hf import MPRNetModel
from mprnet_hf.degradations import degrade
from mprnet_hf.training.train import TINY, build_config, default_state_dir, main, warmup_cosine


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 image with smooth colour gradients and a few sharp-edged rectangles (a stand-in for a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([rng.uniform(0.1, 0.5) + rng.uniform(0.2, 0.5) * np.cos(3 * x + rng.uniform(0, 3) * y)
                      for _ in range(3)], axis=-1)
    for _ in range(3):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[top : top + rng.integers(4, 20), left : left + rng.integers(4, 20)] = rng.uniform(0, 1, 3)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    for split, count, size in (("train", 3, (56, 64)), ("val", 1, (40, 40))):
        (root / split).mkdir()
        for index in range(count):
            Image.fromarray(smooth_photo(*size, seed=10 * count + index)).save(root / split / f"{index}.png")
    return root


def test_tiny_preset():
    config = build_config("derain", "tiny")
    assert (config.n_feat, config.scale_unetfeats, config.scale_orsnetfeats, config.num_cab) == tuple(TINY.values())
    assert config.task == "derain"
    with pytest.raises(ValueError, match="preset"):
        build_config("derain", "huge")


def test_warmup_then_cosine_schedule():
    assert warmup_cosine(0, 10, 100, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_cosine(100, 10, 100, 0.01) == pytest.approx(0.01)
    assert warmup_cosine(500, 10, 100, 0.01) == pytest.approx(0.01)


@pytest.mark.parametrize("task", ["deblur", "denoise"])
def test_adam_steps_reduce_the_loss_on_a_fixed_batch(task):
    torch.manual_seed(0)
    model = MPRNetModel(build_config(task, "tiny")).train()
    clean = torch.stack([torch.from_numpy(smooth_photo(32, 32, seed)).permute(2, 0, 1).float() / 255
                         for seed in range(2)])
    degraded = torch.stack([degrade(image, task, seed) for seed, image in enumerate(clean)])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(20):
        loss = model(pixel_values=degraded, labels=clean).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


def run_cli(photo_dirs, output_dir, state_dir, *extra):
    main(["--task", "denoise", "--train-dir", str(photo_dirs / "train"), "--val-dir", str(photo_dirs / "val"),
          "--output-dir", str(output_dir), "--state-dir", str(state_dir), "--preset", "tiny", "--steps", "4",
          "--patch-size", "32", "--batch-size", "2", "--warmup-steps", "1", "--lr", "1e-3", "--val-every", "2",
          "--num-threads", "1", *extra])


def read_log(output_dir):
    return [json.loads(line) for line in (output_dir / "training_log.jsonl").read_text().splitlines()]


def test_cli_trains_exports_and_resumes(photo_dirs, tmp_path, capsys):
    # Uninterrupted: 4 steps, validated and logged every 2.
    full_out, full_state = tmp_path / "full", tmp_path / "full-state"
    run_cli(photo_dirs, full_out, full_state)
    log = read_log(full_out)
    assert [record["step"] for record in log] == [2, 4]
    assert all(np.isfinite(record["loss"]) and np.isfinite(record["val_psnr"]) for record in log)

    model, info = MPRNetModel.from_pretrained(full_out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.task == "denoise" and model.config.n_feat == TINY["n_feat"]
    card = (full_out / "README.md").read_text()
    assert "not the paper's weights" in card and "library_name: transformers" in card
    assert (full_out / "preprocessor_config.json").is_file()
    summary = json.loads((full_out / "training_summary.json").read_text())
    assert summary["best_val_psnr"] == pytest.approx(max(record["val_psnr"] for record in log))
    assert json.loads((full_state / "progress.json").read_text())["step"] == 4

    # Interrupted after the first step (a zero time budget), then resumed to the same 4 steps.
    part_out, part_state = tmp_path / "part", tmp_path / "part-state"
    run_cli(photo_dirs, part_out, part_state, "--max-minutes", "0")
    assert json.loads((part_state / "progress.json").read_text())["step"] == 1
    capsys.readouterr()
    run_cli(photo_dirs, part_out, part_state, "--resume")
    assert "Resumed at step 1" in capsys.readouterr().out
    assert [record["step"] for record in read_log(part_out)] == [1, 2, 4]
    assert json.loads((part_state / "progress.json").read_text())["step"] == 4

    # Same data order, optimizer and schedule state: the resumed run ends with the uninterrupted run's weights.
    full_weights = load_file(full_state / "model.safetensors")
    resumed_weights = load_file(part_state / "model.safetensors")
    assert full_weights.keys() == resumed_weights.keys()
    for name, weight in full_weights.items():
        torch.testing.assert_close(resumed_weights[name], weight, rtol=1e-5, atol=1e-6, msg=name)


def test_init_from_continues_the_step_count_and_records_every_phase(photo_dirs, tmp_path):
    first_out, second_out = tmp_path / "first", tmp_path / "second"
    run_cli(photo_dirs, first_out, tmp_path / "first-state")
    first = json.loads((first_out / "training_summary.json").read_text())
    run_cli(photo_dirs, second_out, tmp_path / "second-state", "--init-from", str(first_out), "--patch-size", "48")

    # The second run's log starts with the first run's records, and log and summary count on from the first run's
    # exported steps and seconds.
    # (Only up to the step of the first run's exported best checkpoint, which the second run starts from.)
    first_steps = [record["step"] for record in read_log(first_out) if record["step"] <= first["steps"]]
    assert [record["step"] for record in read_log(second_out)] == first_steps + [first["steps"] + 2, first["steps"] + 4]
    summary = json.loads((second_out / "training_summary.json").read_text())
    assert summary["steps"] == first["steps"] + summary["phases"][1]["steps"]
    assert summary["seconds"] > first["seconds"]
    assert summary["phases"][0] == first["phases"][0]
    assert [phase["patch_size"] for phase in summary["phases"]] == [32, 48]
    assert "32x32" in (second_out / "README.md").read_text() and "then" in (second_out / "README.md").read_text()


def test_channels_last_changes_the_memory_layout_not_the_training(photo_dirs, tmp_path):
    run_cli(photo_dirs, tmp_path / "last", tmp_path / "last-state")
    run_cli(photo_dirs, tmp_path / "plain", tmp_path / "plain-state", "--no-channels-last")
    channels_last = load_file(tmp_path / "last" / "model.safetensors")
    contiguous = load_file(tmp_path / "plain" / "model.safetensors")
    assert channels_last.keys() == contiguous.keys()
    for name, weight in contiguous.items():
        torch.testing.assert_close(channels_last[name], weight, rtol=1e-4, atol=1e-5, msg=name)


def test_default_state_dir_never_is_the_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_state_dir(Path("checkpoints/mprnet-deblur-small")) == Path("runs/mprnet-deblur-small")
    # Exporting into runs/ must not put the training state (whose weights are the latest) over the best checkpoint.
    assert default_state_dir(Path("runs/deblur-phase2")) == Path("runs/deblur-phase2-state")

"""Training: the loss goes down on a fixed batch, and the CLI trains, exports a loadable model and resumes, in one
process and in two (real gloo process groups on CPU)."""

import contextlib
import json
import os
import socket
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from PIL import Image
from safetensors.torch import load_file, save_file
from torch.multiprocessing import start_processes

from mprnet_hf import MPRNetModel
from mprnet_hf.data.degradations import degrade
from mprnet_hf.training.data import random_crop
from mprnet_hf.training.train import (
    TINY,
    build_config,
    check_launched_world_size,
    default_state_dir,
    main,
    warmup_cosine,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def smooth_photo(height: int, width: int, seed: int) -> np.ndarray:
    """A uint8 image with smooth colour gradients and a few sharp-edged rectangles (a stand-in for a photo)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack(
        [rng.uniform(0.1, 0.5) + rng.uniform(0.2, 0.5) * np.cos(3 * x + rng.uniform(0, 3) * y) for _ in range(3)],
        axis=-1,
    )
    for _ in range(3):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[top : top + rng.integers(4, 20), left : left + rng.integers(4, 20)] = rng.uniform(0, 1, 3)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    # Three validation photos: two processes split them unevenly.
    for split, count, size in (("train", 3, (56, 64)), ("val", 3, (40, 40))):
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
@pytest.mark.slow
def test_adam_steps_reduce_the_loss_on_a_fixed_batch(task):
    torch.manual_seed(0)
    model = MPRNetModel(build_config(task, "tiny")).train()
    clean = torch.stack(
        [torch.from_numpy(smooth_photo(32, 32, seed)).permute(2, 0, 1).float() / 255 for seed in range(2)]
    )
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
    """A few steps of the tiny preset on 32x32 patches, batch 2 (later arguments win, so `extra` can override)."""
    return main(cli_args(photo_dirs, output_dir, state_dir, "--patch-size", "32", "--batch-size", "2", *extra))


def read_log(output_dir):
    return [json.loads(line) for line in (output_dir / "training_log.jsonl").read_text().splitlines()]


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_channels_last_changes_the_memory_layout_not_the_training(photo_dirs, tmp_path):
    run_cli(photo_dirs, tmp_path / "last", tmp_path / "last-state")
    run_cli(photo_dirs, tmp_path / "plain", tmp_path / "plain-state", "--no-channels-last")
    channels_last = load_file(tmp_path / "last" / "model.safetensors")
    contiguous = load_file(tmp_path / "plain" / "model.safetensors")
    assert channels_last.keys() == contiguous.keys()
    for name, weight in contiguous.items():
        torch.testing.assert_close(channels_last[name], weight, rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.slow
def test_data_workers_change_who_degrades_the_patches_not_the_training(photo_dirs, tmp_path):
    # Each patch is seeded by its index, so two worker processes draw the same batches as the training process.
    serial = run_cli(photo_dirs, tmp_path / "serial", tmp_path / "serial-state")
    parallel = run_cli(photo_dirs, tmp_path / "workers", tmp_path / "workers-state", "--num-workers", "2")
    assert parallel.steps == serial.steps == 4 and parallel.samples == serial.samples == 8
    assert 0 <= parallel.data_wait_seconds <= parallel.seconds
    assert read_log(tmp_path / "workers") == [
        {**record, "seconds": record_w["seconds"]}
        for record, record_w in zip(read_log(tmp_path / "serial"), read_log(tmp_path / "workers"))
    ]
    for name, weight in load_file(tmp_path / "serial" / "model.safetensors").items():
        torch.testing.assert_close(load_file(tmp_path / "workers" / "model.safetensors")[name], weight, msg=name)


def test_default_state_dir_never_is_the_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_state_dir(Path("checkpoints/mprnet-deblur-small")) == Path("runs/mprnet-deblur-small")
    # Exporting into runs/ must not put the training state (whose weights are the latest) over the best checkpoint.
    assert default_state_dir(Path("runs/deblur-phase2")) == Path("runs/deblur-phase2-state")
    # Nested: not runs/mprnet-denoise-small, which another documented run (docs/TRAINING.md) writes its model to.
    nested = Path("runs/reproduce/mprnet-denoise-small")
    assert default_state_dir(nested) == Path("runs/reproduce/mprnet-denoise-small-state")


# Two processes, launched as torchrun and `accelerate launch --multi_gpu` launch them (RANK, WORLD_SIZE, MASTER_ADDR
# and MASTER_PORT in the environment, ACCELERATE_USE_CPU=true for gloo on CPU), but forked from this process so that
# they start without importing torch and transformers again (a minute and more on a busy 2-core machine).
TWO_PROCESS_DEADLINE_S = 300  # only so that a hung collective fails the test instead of blocking the suite


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def train_as_rank(rank, world_size, port, argv, results):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        ACCELERATE_USE_CPU="true",
        GLOO_SOCKET_IFNAME="lo",
    )
    # The fork inherits this process's single-process accelerate state; each rank sets up its own.
    AcceleratorState._reset_state(reset_partial_state=True)
    with (results / f"rank{rank}.out").open("w") as stdout, contextlib.redirect_stdout(stdout):
        run = main(argv)
    save_file(
        {name: weight.contiguous() for name, weight in run.model.state_dict().items()},
        results / f"rank{rank}.safetensors",
    )
    (results / f"rank{rank}.json").write_text(json.dumps({"steps": run.steps, "stopped_early": run.stopped_early}))


def train_on_two_processes(argv, results: Path) -> list[dict]:
    """Each rank's step count, whether it stopped early, final weights and printed output."""
    results.mkdir()
    ranks = start_processes(
        train_as_rank, args=(2, free_port(), argv, results), nprocs=2, start_method="fork", join=False
    )
    deadline = time.monotonic() + TWO_PROCESS_DEADLINE_S
    try:
        # join() returns as soon as one process ends (raising if it failed), False while the other runs on.
        while not ranks.join(timeout=max(deadline - time.monotonic(), 0)):
            assert time.monotonic() < deadline, "the two training processes did not finish"
    finally:
        for process in ranks.processes:
            if process.is_alive():
                process.kill()
    return [
        {
            **json.loads((results / f"rank{rank}.json").read_text()),
            "weights": load_file(results / f"rank{rank}.safetensors"),
            "stdout": (results / f"rank{rank}.out").read_text(),
        }
        for rank in (0, 1)
    ]


def cli_args(photo_dirs, output_dir, state_dir, *extra):
    return [
        "--task",
        "denoise",
        "--train-dir",
        str(photo_dirs / "train"),
        "--val-dir",
        str(photo_dirs / "val"),
        "--output-dir",
        str(output_dir),
        "--state-dir",
        str(state_dir),
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--patch-size",
        "16",
        "--warmup-steps",
        "1",
        "--lr",
        "1e-3",
        "--val-every",
        "2",
        "--num-threads",
        "1",
        *extra,
    ]


def assert_same_weights(actual, expected, **tolerance):
    assert actual.keys() == expected.keys()
    for name, weight in expected.items():
        if tolerance:
            torch.testing.assert_close(actual[name], weight, msg=name, **tolerance)
        else:
            assert torch.equal(actual[name], weight), name


@pytest.mark.slow
def test_two_processes_run_every_step_of_the_global_batch_agree_and_resume(photo_dirs, tmp_path):
    # Uninterrupted: 4 steps of a global batch of 2 (1 per process), validated and logged every 2.
    full_out, full_state = tmp_path / "full", tmp_path / "full-state"
    ranks = train_on_two_processes(
        cli_args(photo_dirs, full_out, full_state, "--batch-size", "1"), tmp_path / "full-ranks"
    )
    assert [(rank["steps"], rank["stopped_early"]) for rank in ranks] == [(4, False), (4, False)]
    assert_same_weights(ranks[1]["weights"], ranks[0]["weights"])
    # One record per validation, one message per event, all from the main process.
    log = read_log(full_out)
    assert [record["step"] for record in log] == [2, 4]
    assert ranks[0]["stdout"].count("Finished at step 4;") == 1 and ranks[1]["stdout"] == ""
    progress = json.loads((full_state / "progress.json").read_text())
    assert (progress["step"], progress["global_batch"]) == (4, 2)
    assert_same_weights(load_file(full_state / "model.safetensors"), ranks[0]["weights"])
    # The state holds the scheduler once, and each process's random state.
    assert sorted(path.name for path in full_state.iterdir()) == [
        "custom_checkpoint_0.pkl",
        "model.safetensors",
        "optimizer.bin",
        "progress.json",
        "random_states_0.pkl",
        "random_states_1.pkl",
    ]

    # The export is the best-validating step's; on this data the last one validates best.
    assert max(log, key=lambda record: record["val_psnr"])["step"] == 4
    summary = json.loads((full_out / "training_summary.json").read_text())
    assert (summary["steps"], summary["batch_size"], summary["processes"]) == (4, 2, 2)
    assert summary["phases"][-1]["batch_size_per_process"] == 1
    assert "4 steps of batch 2 (2 processes x 1)" in (full_out / "README.md").read_text()
    model, info = MPRNetModel.from_pretrained(full_out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert_same_weights(model.state_dict(), ranks[0]["weights"])

    # One process with the global batch sees the same patches: same schedule, and the same loss, PSNR and weights
    # up to the order of floating-point sums.
    single_out = tmp_path / "single"
    main(cli_args(photo_dirs, single_out, tmp_path / "single-state", "--batch-size", "2"))
    single_log = read_log(single_out)
    assert [(record["step"], record["lr"]) for record in single_log] == [(r["step"], r["lr"]) for r in log]
    for single, record in zip(single_log, log):
        assert record["loss"] == pytest.approx(single["loss"], rel=1e-6)
        assert record["val_psnr"] == pytest.approx(single["val_psnr"], abs=1e-5)
    assert_same_weights(load_file(single_out / "model.safetensors"), ranks[0]["weights"], rtol=1e-4, atol=5e-6)

    # Interrupted after the first step (a zero time budget, ended on both processes by the main one's clock),
    # then resumed to the same 4 steps: the uninterrupted run's weights, bit for bit.
    part_out, part_state = tmp_path / "part", tmp_path / "part-state"
    part_args = cli_args(photo_dirs, part_out, part_state, "--batch-size", "1")
    stopped = train_on_two_processes(part_args + ["--max-minutes", "0"], tmp_path / "part-ranks")
    assert [(rank["steps"], rank["stopped_early"]) for rank in stopped] == [(1, True), (1, True)]
    resumed = train_on_two_processes(part_args + ["--resume"], tmp_path / "resumed-ranks")
    assert [(rank["steps"], rank["stopped_early"]) for rank in resumed] == [(4, False), (4, False)]
    assert "Resumed at step 1" in resumed[0]["stdout"]
    assert [record["step"] for record in read_log(part_out)] == [1, 2, 4]
    assert_same_weights(resumed[1]["weights"], resumed[0]["weights"])
    assert_same_weights(resumed[0]["weights"], ranks[0]["weights"])


@pytest.mark.slow
def test_two_processes_share_the_time_schedule_and_budget(photo_dirs, tmp_path):
    # The learning rate follows the clock and the budget ends the run: both must be the main process's, or the
    # processes' weights drift apart and one stops while the other waits for it.
    out = tmp_path / "timed"
    ranks = train_on_two_processes(
        cli_args(
            photo_dirs,
            out,
            tmp_path / "timed-state",
            "--batch-size",
            "1",
            "--steps",
            "400",
            "--time-schedule",
            "--max-minutes",
            "0.05",
            "--lr-scaling",
            "sqrt",
        ),
        tmp_path / "timed-ranks",
    )
    assert ranks[0]["steps"] == ranks[1]["steps"] > 1
    assert ranks[0]["stopped_early"] and ranks[1]["stopped_early"]
    assert_same_weights(ranks[1]["weights"], ranks[0]["weights"])
    assert read_log(out)[-1]["step"] == ranks[0]["steps"]
    # --lr-scaling sqrt: the peak learning rate applied, and recorded, is --lr x sqrt(2 processes).
    phase = json.loads((out / "training_summary.json").read_text())["phases"][-1]
    assert (phase["lr"], phase["lr_scaling"]) == (pytest.approx(1e-3 * 2**0.5), "sqrt")
    assert max(record["lr"] for record in read_log(out)) <= phase["lr"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="WORLD_SIZE=2 would make accelerate wait for a second GPU rank")
def test_a_launch_that_accelerate_did_not_join_is_refused(monkeypatch):
    # What `accelerate launch --multi_gpu --num_processes 2` gives each process on a machine without GPUs when
    # ACCELERATE_USE_CPU is not set: torchrun's WORLD_SIZE=2, but a single-process accelerator.
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    accelerator = Accelerator()
    assert accelerator.num_processes == 1
    with pytest.raises(ValueError, match="ACCELERATE_USE_CPU=true"):
        check_launched_world_size(accelerator)

    # What `accelerate launch --cpu --num_processes 2` gives its one process: a rendezvous address, no world size.
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    with pytest.warns(UserWarning, match="only this one process was started"):
        check_launched_world_size(accelerator)
    monkeypatch.delenv("MASTER_ADDR")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_launched_world_size(accelerator)


@pytest.mark.parametrize("height, width", [(56, 64), (20, 120), (1, 5), (3, 1)])
def test_a_crop_larger_than_twice_a_small_photo_mirrors_again(height, width):
    # A deblurring patch with the broad synthesis's blur margin is 64 + 2 x 25 pixels: more than twice a 56-px photo.
    photo = torch.rand(3, height, width)
    (crop,) = random_crop([photo], 114, np.random.default_rng(0))
    # NumPy's reflection goes on reflecting past the photo's size; a one-pixel side can only repeat its pixel.
    mode = "edge" if min(height, width) < 2 else "reflect"
    padding = ((0, 0), (0, max(114 - height, 0)), (0, max(114 - width, 0)))
    padded = np.pad(photo.numpy(), padding, mode=mode)
    rng = np.random.default_rng(0)  # the crop's own draws, after the padding
    top, left = int(rng.integers(0, padded.shape[1] - 113)), int(rng.integers(0, padded.shape[2] - 113))
    expected = padded[:, top : top + 114, left : left + 114]
    assert crop.shape == (3, 114, 114)
    assert np.array_equal(crop.numpy(), expected)


def test_jpeg_share_reaches_the_training_patches_and_the_validation_crops(photo_dirs):
    from mprnet_hf.training.data import SyntheticPairs, validation_pairs

    def patches(jpeg_share):
        data = SyntheticPairs(photo_dirs / "train", "denoise", 32, 6, seed=3, synthesis="broad", jpeg_share=jpeg_share)
        return [data[index]["pixel_values"] for index in range(len(data))]

    def crops(jpeg_share):
        pairs = validation_pairs(photo_dirs / "val", "denoise", crop=32, synthesis="broad", jpeg_share=jpeg_share)
        return [pair["pixel_values"] for pair in pairs]

    # The same draws up to the JPEG step: every patch differs once all are compressed, none when none are (the
    # synthesis's own share compresses some of these six).
    never, always, default = patches(0.0), patches(1.0), patches(None)
    assert all(not torch.equal(plain, compressed) for plain, compressed in zip(never, always))
    assert 0 < sum(not torch.equal(plain, drawn) for plain, drawn in zip(never, default)) < len(never)
    assert all(not torch.equal(plain, compressed) for plain, compressed in zip(crops(0.0), crops(1.0)))


def test_jpeg_share_outside_zero_to_one_is_refused(photo_dirs, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--task", "denoise", "--train-dir", str(photo_dirs / "train"), "--val-dir", str(photo_dirs / "val"),
              "--output-dir", str(tmp_path / "out"), "--jpeg-share", "1.5"])  # fmt: skip
    assert "--jpeg-share must be between 0 and 1" in capsys.readouterr().err
    # Pairs come degraded: a JPEG share would change only the validation crops.
    with pytest.raises(SystemExit):
        main(["--task", "denoise", "--paired-dir", str(photo_dirs), "--layout", "sidd", "--val-dir",
              str(photo_dirs / "val"), "--output-dir", str(tmp_path / "out"), "--jpeg-share", "0.2"])  # fmt: skip
    assert "--paired-dir pairs come degraded" in capsys.readouterr().err

"""mprnet-restore on two CPU processes (gloo), started by the real launchers as a user starts them: torchrun
(`python -m torch.distributed.run`) and `accelerate launch`. A folder of a dozen small photos of mixed sizes and
formats: every output once and bit-identical to one process's; a stopped run resumed without redoing finished files;
a corrupt file in one process's share reported and making the run exit 1; a usage error said once."""

import os
import re
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT
from mprnet_hf import cli
from mprnet_hf.collection import Share, ShareError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The environment of every command: offline, one thread per process (two processes on a 2-core machine), and the
# PyTorch backend in the one-process reference too: from 10 files on, one process would otherwise export to ONNX in
# the background and may switch runtimes partway, which is not the same arithmetic to the last bit.
ENVIRONMENT = {
    **os.environ,
    "PYTHONPATH": str(REPO_ROOT),
    "HF_HUB_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MPRNET_BACKEND": "torch",
    "MPRNET_CPU_BF16": "0",
}
ONE_PROCESS = [sys.executable, "-m", "mprnet_hf.restore"]


def free_port() -> int:
    # Each launch gets its own rendezvous port: the default 29500 may be taken by another run on this machine.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(*argv):
    return [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(free_port())),
        *("-m", "mprnet_hf.restore", *map(str, argv)),
    ]


def accelerate_launch(*argv):
    # --multi_gpu starts one process per --num_processes through torchrun, on CPUs when there is no GPU
    # (`--cpu --num_processes 2` would start one process: accelerate leaves many CPU processes to mpirun).
    return [
        *(sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"),
        *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
        *("--main_process_port", str(free_port()), "-m", "mprnet_hf.restore", *map(str, argv)),
    ]


def launch(command) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT, timeout=600, cwd=REPO_ROOT)


def files(folder) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    """photos/: 12 noisy photos 40-90 pixels a side, PNG (RGB, RGBA, grey) and JPEG, four in nested/; reference/: what
    one process restores from them."""
    root = tmp_path_factory.mktemp("collection")
    photos = root / "photos"
    (photos / "nested").mkdir(parents=True)
    rng = np.random.default_rng(37)
    for index in range(12):
        width, height = (int(side) for side in rng.integers(40, 91, size=2))
        gradient = np.linspace(40, 200, width)[None, :, None] + np.zeros((height, 1, 3))
        image = Image.fromarray(np.clip(gradient + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8))
        folder = photos / "nested" if index % 3 == 0 else photos
        if index % 2:
            image.save(folder / f"photo{index:02d}.jpg", quality=90)
        else:
            image = {0: image, 2: image.convert("L")}.get(index % 6, image.convert("RGBA"))
            image.save(folder / f"photo{index:02d}.png")
    reference = root / "reference"
    result = launch([*ONE_PROCESS, photos, "--task", "denoise", "--output", reference])
    assert result.returncode == 0, result.stderr
    assert len(files(reference)) == 12
    return photos, reference


def shares(stderr: str) -> list[int]:
    """How many files each process was given, from its 'process R of 2: N of M files to restore' line, in the order
    of the ranks. Two processes write to one stderr, so their lines may come out joined: matched anywhere."""
    found = re.findall(r"process (\d+) of \d+: (\d+) of \d+ files to restore", stderr)
    return [int(count) for _, count in sorted(found, key=lambda match: int(match[0]))]


@pytest.mark.slow
def test_two_processes_restore_every_file_once_bit_identical_to_one_process(collection, tmp_path):
    photos, reference = collection
    out = tmp_path / "out"
    result = launch(torchrun(photos, "--task", "denoise", "--output", out))

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("12 restored, 0 skipped (already done), 0 failed in ")
    assert " on 2 processes; " in result.stdout
    given = shares(result.stderr)
    assert len(given) == 2 and sum(given) == 12 and min(given) > 0, result.stderr
    assert files(out) == files(reference)  # the same names (nothing twice, no leftovers) and the same bytes


@pytest.mark.slow
def test_a_stopped_run_resumes_without_redoing_finished_files_and_a_corrupt_file_exits_1(collection, tmp_path):
    photos, reference = collection
    inputs = tmp_path / "photos"
    shutil.copytree(photos, inputs)
    (inputs / "broken.png").write_bytes((inputs / "photo02.png").read_bytes()[:150])
    # What a run stopped after five files leaves (outputs are renamed into place whole), dated in the past so that
    # rewriting any of them would show.
    out = tmp_path / "out"
    finished = sorted(reference.rglob("*.png"))[:5]
    for path in finished:
        target = out / path.relative_to(reference)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
        os.utime(target, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))

    result = launch(accelerate_launch(inputs, "--task", "denoise", "--output", out))

    assert result.returncode == 1, result.stderr
    assert "7 restored, 5 skipped (already done), 1 failed in " in result.stdout
    assert sum(shares(result.stderr)) == 8  # the 7 left and the corrupt one, shared out
    assert "failed: " in result.stderr and "broken.png" in result.stderr and "truncated" in result.stderr
    for path in finished:
        assert (out / path.relative_to(reference)).stat().st_mtime_ns == 1_000_000_000_000_000_000
    assert files(out) == files(reference)


@pytest.mark.slow
def test_a_usage_error_is_said_once_by_the_main_process_without_a_traceback_of_ours(collection, tmp_path):
    photos, _reference = collection
    result = launch(torchrun(photos, "--task", "denoise", "--output", tmp_path / "out", "--tile-size", "-5"))

    assert result.returncode != 0  # the launcher's own status for a process that exits 2
    assert result.stderr.count("mprnet-restore: error: --tile-size/--tile-overlap:") == 1, result.stderr
    assert "mprnet_hf" + os.sep not in result.stderr  # no frame of this package: the launcher's report only
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"WORLD_SIZE": "2"}, "RANK is not set"),
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE='two' is not a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is outside 0..1"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE=0 must be at least 1"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"}, "LOCAL_RANK=-1 must not be negative"),
    ],
)
def test_a_broken_launcher_environment_is_one_line_and_exit_2(environment, message, photos_dir, monkeypatch, capsys):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(photos_dir), "--task", "denoise", "--output", str(photos_dir.parent / "out")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("mprnet-restore: error: ") and message in error and error.count("\n") == 1
    assert not (photos_dir.parent / "out").exists()


def test_no_launcher_is_one_process_and_world_size_1_too():
    assert Share.from_environment({}) == Share()
    assert Share.from_environment({"WORLD_SIZE": "1", "RANK": "0"}) == Share()
    assert Share.from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "GROUP_RANK": "1"}) == Share(
        rank=3, world_size=4, local_rank=1, node=1
    )
    with pytest.raises(ShareError):
        Share.from_environment({"WORLD_SIZE": "4", "RANK": "1", "GROUP_RANK": "x"})


def test_master_address_missing_is_a_usage_error_not_a_hang(photos_dir, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(photos_dir), "--task", "denoise", "--output", str(photos_dir.parent / "out")])
    assert exit_info.value.code == 2
    assert "MASTER_ADDR is not set" in capsys.readouterr().err


@pytest.fixture
def photos_dir(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (40, 40), (90, 120, 150)).save(folder / "a.png")
    return folder

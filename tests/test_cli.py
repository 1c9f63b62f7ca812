"""mprnet-restore on real files with the bundled weights: folders, globs, resuming, failures, what outputs keep, and
bad arguments (one line, exit status 2, nothing written)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image, ImageCms

from conftest import REPO_ROOT, damaged_model_folder
from mprnet_hf import cli
from mprnet_hf.data.image_io import ORIENTATION

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SRGB_PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
MAKE = 0x010F


def noisy_photo(width=40, height=32, mode="RGB", seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    gradient = np.linspace(40, 200, width)[None, :, None] + np.zeros((height, 1, 3))
    pixels = np.clip(gradient + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    if mode == "RGBA":
        image.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)))
    return image.convert(mode) if mode not in ("RGB", "RGBA") else image


@pytest.fixture
def photos(tmp_path):
    """photos/a.png, photos/nested/b.jpg, photos/nested/broken.png (corrupt), photos/notes.txt (ignored)."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    noisy_photo().save(folder / "a.png")
    noisy_photo(seed=1).save(folder / "nested" / "b.jpg", quality=95)
    png = (folder / "a.png").read_bytes()
    (folder / "nested" / "broken.png").write_bytes(png[: len(png) // 2])
    (folder / "notes.txt").write_text("not a photo")
    return folder


def restore(*argv) -> int:
    return cli.main([str(arg) for arg in argv])


@pytest.mark.slow
def test_folder_with_a_corrupt_file_restores_the_rest_mirrors_the_tree_and_exits_1(photos, tmp_path, capsys):
    out = tmp_path / "out"
    status = restore(photos, "--task", "denoise", "--output", out)
    captured = capsys.readouterr()

    assert status == 1
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()) == [
        "a.png",
        "nested/b.png",
    ]
    assert "failed: " in captured.err and "broken.png" in captured.err and "truncated" in captured.err
    assert "notes.txt" not in captured.err
    assert captured.out.startswith("2 restored, 0 skipped (already done), 1 failed in ")
    restored = Image.open(out / "a.png")
    assert restored.size == (40, 32) and restored.mode == "RGB"
    original = np.asarray(Image.open(photos / "a.png"), dtype=np.float64)
    assert np.abs(np.asarray(restored, dtype=np.float64) - original).mean() > 2  # it did change the noisy photo


@pytest.mark.slow
def test_second_run_skips_finished_outputs_unless_overwrite(photos, tmp_path, capsys):
    out = tmp_path / "out"
    (photos / "nested" / "broken.png").unlink()
    assert restore(photos, "--task", "denoise", "--output", out) == 0
    finished = {path: path.stat().st_mtime_ns for path in out.rglob("*.png")}
    capsys.readouterr()

    assert restore(photos, "--task", "denoise", "--output", out) == 0
    assert capsys.readouterr().out.startswith("0 restored, 2 skipped")
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*.png")} == finished

    assert restore(photos, "--task", "denoise", "--output", out, "--overwrite") == 0
    assert capsys.readouterr().out.startswith("2 restored, 0 skipped")


def test_glob_mirrors_from_its_first_wildcard_and_format_same_keeps_jpeg(photos, tmp_path):
    out = tmp_path / "out"
    assert restore(f"{photos}/**/*.jpg", "--task", "denoise", "--output", out, "--format", "same") == 0
    assert [path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()] == ["nested/b.jpg"]
    assert Image.open(out / "nested" / "b.jpg").format == "JPEG"


def test_outputs_keep_mode_alpha_size_and_carry_exif_and_icc_with_orientation_normalised(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    exif = Image.Exif()
    exif[ORIENTATION], exif[MAKE] = 6, "Phone"
    noisy_photo(40, 32).save(inputs / "rotated.jpg", exif=exif, icc_profile=SRGB_PROFILE, quality=95)
    rgba = noisy_photo(mode="RGBA", seed=2)
    rgba.save(inputs / "alpha.png")
    noisy_photo(mode="L", seed=3).save(inputs / "grey.png")
    sixteen = (np.asarray(noisy_photo(seed=4), dtype=np.uint16) * 257 + 123).astype(np.uint16)
    tifffile.imwrite(inputs / "scan.tif", sixteen, photometric="rgb", iccprofile=SRGB_PROFILE)

    out = tmp_path / "out"
    assert restore(inputs, "--task", "denoise", "--output", out, "--format", "same") == 0

    rotated = Image.open(out / "rotated.jpg")
    assert rotated.size == (32, 40)  # turned upright: the EXIF said 90 degrees clockwise
    assert rotated.getexif()[ORIENTATION] == 1 and rotated.getexif()[MAKE] == "Phone"
    assert rotated.info["icc_profile"] == SRGB_PROFILE
    alpha = Image.open(out / "alpha.png")
    assert alpha.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(alpha.getchannel("A")), np.asarray(rgba.getchannel("A")))
    assert Image.open(out / "grey.png").mode == "L"
    scan = tifffile.imread(out / "scan.tif")
    assert scan.dtype == np.uint16 and scan.shape == sixteen.shape
    with tifffile.TiffFile(out / "scan.tif") as tiff:
        assert tiff.pages[0].tags["InterColorProfile"].value == SRGB_PROFILE


def test_cmyk_stays_cmyk_where_the_format_holds_it_and_becomes_rgb_in_png(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    noisy_photo().convert("CMYK").save(inputs / "print.jpg", quality=95)
    assert restore(inputs, "--task", "denoise", "--output", tmp_path / "same", "--format", "same") == 0
    assert restore(inputs, "--task", "denoise", "--output", tmp_path / "png") == 0
    assert Image.open(tmp_path / "same" / "print.jpg").mode == "CMYK"
    assert Image.open(tmp_path / "png" / "print.png").mode == "RGB"


@pytest.mark.slow
def test_stages_and_tiles(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    noisy_photo(80, 72).save(inputs / "big.png")
    out = tmp_path / "out"
    assert (
        restore(
            inputs / "big.png",
            "--task",
            "denoise",
            "--output",
            out,
            "--stages",
            "--tile-size",
            "32",
            "--tile-overlap",
            "8",
        )
        == 0
    )
    assert sorted(path.name for path in out.iterdir()) == ["big.png", "big.stage1.png", "big.stage2.png"]
    assert all(Image.open(path).size == (80, 72) for path in out.iterdir())


def test_an_output_that_would_overwrite_its_input_fails_and_leaves_the_input_alone(photos, capsys):
    before = (photos / "a.png").read_bytes()
    assert restore(photos / "a.png", "--task", "denoise", "--output", photos) == 1
    assert "is an input file, which is never overwritten" in capsys.readouterr().err
    assert (photos / "a.png").read_bytes() == before


def not_a_model(tmp_path):
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert"}')
    return folder


BAD_ARGUMENTS = {
    "unknown task": (lambda tmp, photos: [photos, "--task", "sharpen"], "invalid choice: 'sharpen'"),
    "missing input": (lambda tmp, photos: [tmp / "nope.jpg", "--task", "denoise"], "does not exist"),
    "glob matching nothing": (lambda tmp, photos: [f"{photos}/*.webp", "--task", "denoise"], "matches no file"),
    "output is a file": (
        lambda tmp, photos: [photos, "--task", "denoise", "--output", photos / "a.png"],
        "is a file, not a folder",
    ),
    "model not MPRNet": (
        lambda tmp, photos: [photos, "--task", "denoise", "--model", not_a_model(tmp)],
        "is not an MPRNet model folder",
    ),
    "model folder missing": (
        lambda tmp, photos: [photos, "--task", "denoise", "--model", tmp / "missing"],
        "is not an MPRNet model folder",
    ),
    "damaged weights": (
        lambda tmp, photos: [photos, "--task", "denoise", "--model", damaged_model_folder(tmp)],
        "could not be loaded",
    ),
    "hub id not downloaded": (
        lambda tmp, photos: [photos, "--task", "denoise", "--model", "nobody/no-such-model"],
        "could not be loaded",
    ),
    "bad tiling": (lambda tmp, photos: [photos, "--task", "denoise", "--tile-size", "30"], "multiple of"),
    "fp16 on cpu": (
        lambda tmp, photos: [photos, "--task", "denoise", "--device", "cpu", "--precision", "fp16"],
        "needs a GPU",
    ),
}


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_bad_arguments_give_one_line_exit_2_and_write_nothing(case, photos, tmp_path, capsys):
    make_argv, expected = BAD_ARGUMENTS[case]
    argv = make_argv(tmp_path, photos)
    if "--output" not in argv:
        argv += ["--output", tmp_path / "out"]
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        restore(*argv)
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert expected in error and len(error.splitlines()) == 1, error
    assert sorted(tmp_path.rglob("*")) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_usage_error(photos, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        restore(photos, "--task", "denoise", "--output", tmp_path / "out", "--device", "cuda")
    assert exit_info.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_python_dash_m_alias_runs_the_same_command(photos, tmp_path):
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mprnet_hf.restore",
            str(photos / "a.png"),
            "--task",
            "derain",
            "--output",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 restored") and (tmp_path / "out" / "a.png").is_file()


def stand_in_export(path) -> None:
    """A valid graph with the exported model's inputs and outputs (each stage returns the input). A real export takes
    a minute even for the tiny model; with this in the cache, the run's background thread goes straight to loading
    it and timing both backends, native code the whole while, which is where an exiting interpreter used to abort."""
    import onnx
    from onnx import TensorProto, helper

    shape = ["batch", 3, "height", "width"]
    outputs = ("reconstruction", "stage1", "stage2")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixel_values"], [name]) for name in outputs],
        "stand-in",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.slow
def test_a_run_with_background_onnx_work_still_in_flight_exits_with_its_own_status(tmp_path):
    """From ONNX_EXPORT_WORTH_IT files on, the command prepares onnxruntime in a daemon thread; it must not take the
    process down with SIGABRT when the run ends first, whether every file was restored or not."""
    pytest.importorskip("onnxruntime")
    from mprnet_hf.hub.bundled import bundled_checkpoint
    from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel
    from mprnet_hf.speed.serving_speed import model_fingerprint

    cache = tmp_path / "onnx"
    cache.mkdir()
    # The denoise model and the JPEG denoiser that comes with it: neither is exported for real here.
    for weights in (bundled_checkpoint("denoise"), bundled_checkpoint("denoise").parent / "mprnet-denoise-jpeg-small"):
        model = MPRNetModel.from_pretrained(weights)
        stand_in_export(cache / f"mprnet-denoise-{model_fingerprint(model)}.onnx")
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(cli.ONNX_EXPORT_WORTH_IT):
        noisy_photo(seed=seed).save(folder / f"{seed}.png")
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "HF_HUB_OFFLINE": "1",
        "MPRNET_ONNX_CACHE": str(cache),
        # The command's own choice (the background export from ONNX_EXPORT_WORTH_IT files on), not conftest's torch.
        "MPRNET_BACKEND": "",
        "OMP_NUM_THREADS": "1",
    }

    def run_command():
        command = [sys.executable, "-m", "mprnet_hf.cli", str(folder), "--task", "denoise", "--output"]
        return subprocess.run(
            [*command, str(tmp_path / "out")], capture_output=True, text=True, env=environment, timeout=600
        )

    result = run_command()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{cli.ONNX_EXPORT_WORTH_IT} restored, 0 skipped (already done), 0 failed")
    assert "terminate called" not in result.stderr

    # Everything already done but one broken file: the run ends right after starting the thread, and says 1.
    (folder / "broken.png").write_bytes((folder / "0.png").read_bytes()[:100])
    result = run_command()
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith(f"0 restored, {cli.ONNX_EXPORT_WORTH_IT} skipped (already done), 1 failed")
    assert "terminate called" not in result.stderr


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_restored_files_get_ordinary_permissions_under_the_umask(photos, tmp_path, umask, mode):
    """Written to a temporary file and renamed into place; the temporary file's owner-only mode must not survive."""
    previous = os.umask(umask)
    try:
        assert restore(photos / "a.png", "--task", "denoise", "--output", tmp_path / "out", "--stages") == 0
    finally:
        os.umask(previous)
    written = sorted((tmp_path / "out").iterdir())
    assert [path.name for path in written] == ["a.png", "a.stage1.png", "a.stage2.png"]
    assert {path.name: path.stat().st_mode & 0o777 for path in written} == dict.fromkeys(
        (path.name for path in written), mode
    )


def test_a_photo_over_the_limit_is_refused_in_the_commands_own_words(photos, tmp_path, capsys):
    assert (
        restore(photos / "a.png", "--task", "denoise", "--output", tmp_path / "out", "--max-megapixels", "0.001") == 1
    )
    error = capsys.readouterr().err
    assert (
        "40x32 (0.0 megapixels), above the limit of 0.001 megapixels. Downscale it, or raise the limit with " in error
    )
    assert "--max-megapixels." in error
    assert "MPRNET_MAX_MEGAPIXELS" not in error and "pload" not in error


def test_a_file_that_is_not_an_image_is_refused_without_the_apps_words(tmp_path, capsys):
    (tmp_path / "notes.png").write_text("not a photo")
    assert restore(tmp_path / "notes.png", "--task", "denoise", "--output", tmp_path / "out") == 1
    error = capsys.readouterr().err
    assert "'notes.png' is not an image file of a format read here. Convert it to PNG, JPEG, WebP" in error
    assert "pload" not in error and "this app" not in error


def test_mprnet_train_without_the_train_extra_says_which_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed: importing it raises ImportError
    monkeypatch.delitem(sys.modules, "mprnet_hf.training.train", raising=False)
    # An earlier test's import leaves the module on its package too, where `from .training import train` finds it.
    import mprnet_hf.training

    monkeypatch.delattr(mprnet_hf.training, "train", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--help"])
    message = str(exit_info.value.code)
    assert message.startswith("mprnet-train: error: training needs accelerate")
    assert 'pip install "mprnet-hf[train]"' in message
    assert "usage:" not in capsys.readouterr().out

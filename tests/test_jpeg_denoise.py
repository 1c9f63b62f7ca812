"""Noisy photos saved as JPEG: the 8×8 grid is found in the pixels of JPEGs written by Pillow and OpenCV (libjpeg,
code we did not write) and not in the same noise never compressed; the bundled JPEG denoiser restores them, in auto
mode, the command line and the evaluation rows, and is left out where someone chose their own denoise model."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from conftest import REPO_ROOT
from mprnet_hf import MPRNetConfig, MPRNetModel, cli, restore_image
from mprnet_hf.auto import JPEG_DENOISE_NOTE, ModelChoice, auto_message
from mprnet_hf.detection import Detection
from mprnet_hf.detection.jpeg_grid import JPEG_GRID_THRESHOLD, jpeg_grid_contrast, shows_jpeg_grid
from mprnet_hf.hub.bundled import JPEG_DENOISE, bundled_jpeg_denoiser, bundled_model, with_jpeg_denoiser
from mprnet_hf.models.mprnet.inference import restore_image as restore_with

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLEAN = sorted((REPO_ROOT / "examples" / "clean").glob("*.png"))


def noisy(path, sigma: float, seed: int = 0) -> np.ndarray:
    clean = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, sigma, clean.shape)
    return np.clip(clean + noise, 0, 255).round().astype(np.uint8)


def pillow_jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def opencv_jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    ok, encoded = cv2.imencode(".jpg", pixels[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)[..., ::-1].copy()


@pytest.mark.parametrize("sigma", [10, 25, 50])
def test_the_grid_shows_in_noisy_jpegs_and_not_in_the_same_noise_uncompressed(sigma):
    for index, path in enumerate(CLEAN):
        pixels = noisy(path, sigma, seed=index)
        assert jpeg_grid_contrast(pixels) < JPEG_GRID_THRESHOLD / 2, path.name
        for quality in (95, 90, 70):
            assert shows_jpeg_grid(pillow_jpeg(pixels, quality)), (path.name, quality)
        assert shows_jpeg_grid(opencv_jpeg(pixels, 90)), path.name


def test_the_grid_is_found_from_any_corner_and_lost_by_resizing():
    pixels = pillow_jpeg(noisy(CLEAN[0], 25)[:-3, :-5], 90)  # a size that is no multiple of 8
    for turned in (np.rot90(pixels), np.rot90(pixels, 2), pixels[::-1], pixels[:, ::-1]):
        assert shows_jpeg_grid(np.ascontiguousarray(turned))
    height, width = pixels.shape[:2]
    resized = np.asarray(Image.fromarray(pixels).resize((width * 3 // 4, height * 3 // 4), Image.BICUBIC))
    assert not shows_jpeg_grid(resized)


def test_the_grid_reads_any_photo_without_failing():
    assert jpeg_grid_contrast(np.zeros((5, 5, 3), np.uint8)) == 0.0  # smaller than two blocks
    assert jpeg_grid_contrast(np.full((64, 64), 128, np.uint8)) == 0.0  # flat: no coefficient to read
    assert not shows_jpeg_grid(Image.new("I;16", (40, 40)))
    assert not shows_jpeg_grid(np.random.default_rng(0).random((48, 40, 4)))  # floats in [0, 1] with alpha
    with pytest.raises(ValueError, match="Expected an"):
        jpeg_grid_contrast(np.zeros((2, 8, 8, 3)))


def test_only_denoising_a_jpeg_switches_to_the_jpeg_denoiser():
    jpeg, png = pillow_jpeg(noisy(CLEAN[1], 25), 90), noisy(CLEAN[1], 25)
    models = {"deblur": "deblur model", "denoise": "denoise model", JPEG_DENOISE: "JPEG denoiser"}
    choice = ModelChoice(models, jpeg)
    assert choice.key("derain") == "derain" and not choice.jpeg_denoised
    assert choice.key("denoise") == JPEG_DENOISE and choice.jpeg_denoised
    assert ModelChoice(models, png).key("denoise") == "denoise"
    without = ModelChoice({"denoise": "denoise model"}, jpeg)
    assert without.key("denoise") == "denoise" and not without.jpeg_denoised


def test_the_bundled_jpeg_denoiser_joins_the_bundled_denoise_model_only():
    jpeg_denoiser = bundled_jpeg_denoiser()
    assert jpeg_denoiser is not None and jpeg_denoiser.config.task == "denoise"
    bundled = {"denoise": bundled_model("denoise")}
    assert set(with_jpeg_denoiser(bundled)) == {"denoise", JPEG_DENOISE}
    own = MPRNetModel(MPRNetConfig(task="denoise", n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4)).eval()
    assert set(with_jpeg_denoiser({"denoise": own})) == {"denoise"}
    assert set(with_jpeg_denoiser({"deblur": bundled_model("deblur")})) == {"deblur"}


def test_the_message_says_when_the_jpeg_denoiser_ran():
    detection = Detection({"blur": 0.0, "noise": 0.99, "rain": 0.0, "jpeg": 0.0, "clean": 0.0})
    assert auto_message(detection, ("denoise",), jpeg_denoised=True).endswith(JPEG_DENOISE_NOTE)
    assert JPEG_DENOISE_NOTE not in auto_message(detection, ("denoise",))


@pytest.mark.slow
def test_auto_mode_denoises_noisy_jpegs_better_with_the_jpeg_denoiser():
    """On noise saved by Pillow as JPEG 90, auto mode picks the JPEG denoiser and scores higher than the denoise model
    on the same photos; the same noise never compressed keeps the denoise model."""
    denoise = bundled_model("denoise")
    gains = []
    for index, path in enumerate(CLEAN[:3]):
        clean = np.asarray(Image.open(path).convert("RGB"))
        photo = Image.fromarray(pillow_jpeg(noisy(path, 25, seed=index), 90))
        restored = restore_image(None, photo, task="auto", tile_size=None)
        assert restored.steps == ("denoise",) and restored.jpeg_denoised and JPEG_DENOISE_NOTE in restored.message
        plain = np.asarray(restore_with(denoise, photo, tile_size=None).image)
        gains.append(peak_signal_noise_ratio(clean, np.asarray(restored.image)) - peak_signal_noise_ratio(clean, plain))
        uncompressed = restore_image(None, Image.fromarray(noisy(path, 25, seed=index)), task="auto", tile_size=None)
        assert uncompressed.steps == ("denoise",) and not uncompressed.jpeg_denoised
    assert np.mean(gains) > 0.15, gains  # 0.25 dB with the bundled weights


@pytest.mark.slow
def test_cli_denoises_a_jpeg_with_the_jpeg_denoiser_unless_given_a_model(tmp_path, capsys):
    Image.fromarray(noisy(CLEAN[0], 25)).save(tmp_path / "noisy.jpg", quality=90)
    assert cli.main([str(tmp_path / "noisy.jpg"), "--task", "denoise", "--output", str(tmp_path / "out")]) == 0
    assert f"noisy.jpg:{JPEG_DENOISE_NOTE}" in capsys.readouterr().err
    own = tmp_path / "own-denoiser"
    MPRNetModel(MPRNetConfig(task="denoise", n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4)).save_pretrained(own)
    arguments = [str(tmp_path / "noisy.jpg"), "--task", "denoise", "--model", str(own), "--output", str(tmp_path / "o")]
    assert cli.main(arguments) == 0
    assert JPEG_DENOISE_NOTE not in capsys.readouterr().err


@pytest.mark.slow
def test_the_evaluation_row_restores_jpegs_with_the_jpeg_denoiser(tmp_path):
    from mprnet_hf.evaluation import evaluate as ev

    photos = tmp_path / "photos"
    photos.mkdir()
    for path in CLEAN[:2]:
        Image.open(path).convert("RGB").crop((0, 0, 96, 96)).save(photos / path.name)
    checkpoints = REPO_ROOT / "checkpoints"
    common = ["--task", "denoise", "--data", str(photos), "--synthetic", "--sigma", "25", "--num-threads", "1"]
    models = ["--model", str(checkpoints / "mprnet-denoise-small")]
    jpeg_model = ["--jpeg-model", str(checkpoints / "mprnet-denoise-jpeg-small")]
    for quality, expected in ((None, 0), (90, 2)):
        jpeg = ["--jpeg", str(quality)] if quality else []
        report = tmp_path / f"{quality}.json"
        aware = ev.main([*common, *models, *jpeg_model, *jpeg, "--json", str(report)])
        plain = ev.main([*common, *models, *jpeg])
        assert json.loads(report.read_text())["jpeg_photos"] == expected
        same = aware.summary["mprnet-denoise-small"].psnr == plain.summary["mprnet-denoise-small"].psnr
        assert same == (expected == 0)
    with pytest.raises(ValueError, match="--jpeg-model goes with denoising"):
        ev.main(["--task", "deblur", "--data", str(photos), "--synthetic", *jpeg_model])


def test_a_damaged_jpeg_denoiser_is_left_out_with_a_warning(tmp_path, monkeypatch):
    import shutil

    from mprnet_hf.hub import bundled

    checkpoints = REPO_ROOT / "checkpoints"
    for name in ("mprnet-denoise-small", "mprnet-denoise-jpeg-small"):
        shutil.copytree(checkpoints / name, tmp_path / name)
    (tmp_path / "mprnet-denoise-jpeg-small" / "model.safetensors").write_bytes(b"not weights")
    monkeypatch.setattr(bundled, "bundled_checkpoints_dir", lambda: tmp_path)
    denoiser = MPRNetModel.from_pretrained(tmp_path / "mprnet-denoise-small").eval()
    with pytest.warns(UserWarning, match="The bundled JPEG denoiser could not be loaded"):
        assert set(with_jpeg_denoiser({"denoise": denoiser})) == {"denoise"}

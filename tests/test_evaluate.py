"""The evaluation script: metrics equal the library's and an independent implementation of the official protocols,
paired layouts are found, baselines help on easy cases, and the CLI reports what it computed."""

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from scipy.signal import convolve2d
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import damaged_model_folder
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.evaluation import baselines as baseline_functions
from mprnet_hf.evaluation import evaluate as ev
from mprnet_hf.models.mprnet.inference import restore_tensor
from mprnet_hf.training.data import PairedFolder

pytestmark = pytest.mark.usefixtures("one_torch_thread")
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "clean"


def smooth_image(height=48, width=56, seed=0) -> np.ndarray:
    """A uint8 photo stand-in: smooth colour gradients, a flat square with sharp edges and some fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([0.2 + 0.6 * x, 0.3 + 0.5 * y, 0.6 - 0.4 * x * y], axis=-1)
    image[height // 4 : height // 2, width // 3 : 2 * width // 3] = [0.85, 0.55, 0.35]
    image += 0.03 * np.sin(x * 40 + rng.uniform(0, 6))[..., None]
    return ev.to_uint8(image)


def noisy_pair(seed=0):
    clean = smooth_image(seed=seed)
    noise = np.random.default_rng(seed + 100).normal(0, 12, clean.shape)
    return np.clip(np.round(clean + noise), 0, 255).astype(np.uint8), clean


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


# ---------------------------------------------------------------------------------------------------- independent code
def bt601_luma(image: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr on uint8 input, Y only: 16 + (65.481 R + 128.553 G + 24.966 B) with RGB in [0, 1], rounded."""
    rgb = image.astype(np.float64) / 255
    return np.round(16 + rgb @ np.array([65.481, 128.553, 24.966]))


def wang_ssim(a: np.ndarray, b: np.ndarray, data_range=255.0) -> float:
    """SSIM_index of Wang et al. (2004): 11x11 Gaussian window (sigma 1.5), 'valid' filtering, mean of the map."""
    axis = np.arange(11) - 5
    window = np.exp(-(axis[:, None] ** 2 + axis[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()

    def filt(image):
        return convolve2d(image, window, mode="valid")

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b, cov = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2, filt(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


# ---------------------------------------------------------------------------------------------------- metrics
def test_rgb_metrics_equal_the_library_on_uint8_images():
    degraded, clean = noisy_pair()
    assert ev.psnr(degraded, clean, "rgb") == peak_signal_noise_ratio(clean, degraded, data_range=255)
    mse = np.mean((degraded.astype(np.float64) - clean) ** 2)
    assert ev.psnr(degraded, clean) == pytest.approx(10 * np.log10(255**2 / mse), rel=1e-12)
    expected_ssim = structural_similarity(
        clean, degraded, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ev.ssim(degraded, clean, "rgb") == pytest.approx(expected_ssim, rel=1e-12)


def test_rgb_ssim_is_the_channel_mean_of_wang_ssim():
    degraded, clean = noisy_pair(1)
    per_channel = [wang_ssim(clean[..., c].astype(np.float64), degraded[..., c].astype(np.float64)) for c in range(3)]
    assert ev.ssim(degraded, clean, "rgb") == pytest.approx(np.mean(per_channel), abs=1e-9)


def test_y_protocol_matches_a_direct_computation_and_differs_from_rgb():
    degraded, clean = noisy_pair(2)
    np.testing.assert_array_equal(ev.luma(clean), bt601_luma(clean))
    y_degraded, y_clean = bt601_luma(degraded), bt601_luma(clean)
    rmse = np.sqrt(np.mean((y_degraded - y_clean) ** 2))
    assert ev.psnr(degraded, clean, "y") == pytest.approx(20 * np.log10(255 / rmse), rel=1e-12)
    assert ev.ssim(degraded, clean, "y") == pytest.approx(wang_ssim(y_clean, y_degraded), abs=1e-9)
    # Luma averages the independent channel noise, so the Y scores are higher than the RGB ones.
    assert ev.psnr(degraded, clean, "y") > ev.psnr(degraded, clean, "rgb") + 1
    assert ev.ssim(degraded, clean, "y") != pytest.approx(ev.ssim(degraded, clean, "rgb"), abs=1e-3)


def test_metrics_reject_float_images_and_unknown_protocols():
    degraded, clean = noisy_pair()
    with pytest.raises(ValueError, match="uint8"):
        ev.psnr(degraded / 255, clean)
    with pytest.raises(ValueError, match="protocol"):
        ev.ssim(degraded, clean, "lab")


def test_to_uint8_clamps_and_rounds_like_saving_a_png():
    tensor = torch.tensor([-0.2, 0.0, 0.5, 100.4 / 255, 100.6 / 255, 1.0, 1.3]).reshape(1, 1, 7).expand(3, 1, 7)
    np.testing.assert_array_equal(ev.to_uint8(tensor)[0, :, 0], [0, 0, 128, 100, 101, 255, 255])


# ---------------------------------------------------------------------------------------------------- data
def test_paired_layouts_are_found_and_matched_by_name(tmp_path):
    image = smooth_image()
    # Deraining / SIDD layout, including a .jpg input with a .png target and an input without a target.
    for name in ("a.png", "b.png"):
        write_png(tmp_path / "rain" / "input" / name, image)
        write_png(tmp_path / "rain" / "target" / name, image)
    write_png(tmp_path / "rain" / "input" / "c.jpg", image)
    write_png(tmp_path / "rain" / "target" / "c.png", image)
    write_png(tmp_path / "rain" / "input" / "orphan.png", image)
    # GoPro layout: <scene>/blur and <scene>/sharp.
    for scene in ("GOPR0001", "GOPR0002"):
        write_png(tmp_path / "gopro" / scene / "blur" / "000001.png", image)
        write_png(tmp_path / "gopro" / scene / "sharp" / "000001.png", image)

    rain = ev.find_pairs(tmp_path / "rain")
    assert [name for name, _, _ in rain] == ["a.png", "b.png", "c.jpg"]
    assert all(degraded.parent.name == "input" and clean.parent.name == "target" for _, degraded, clean in rain)
    assert rain[2][2].name == "c.png"
    gopro = ev.find_pairs(tmp_path / "gopro")
    assert [name for name, _, _ in gopro] == ["GOPR0001/000001.png", "GOPR0002/000001.png"]
    assert all(clean == degraded.parent.parent / "sharp" / "000001.png" for _, degraded, clean in gopro)

    samples = list(ev.paired_samples(tmp_path / "gopro"))
    assert len(samples) == 2 and samples[0].degraded.dtype == np.uint8 and samples[0].kernel is None

    # Training reads the same pairs (one reader for both), restricted to its layout's folder names.
    training_rain = PairedFolder(tmp_path / "rain", "rain", patch_size=None)
    assert training_rain.pairs == [(degraded, clean) for _, degraded, clean in rain]
    assert PairedFolder(tmp_path / "gopro", "gopro", patch_size=None).pairs == [pair[1:] for pair in gopro]
    with pytest.raises(ValueError, match="No blur/sharp pairs"):
        PairedFolder(tmp_path / "rain", "gopro", patch_size=None)


def test_clean_photos_without_pairs_point_to_synthetic(tmp_path):
    write_png(tmp_path / "photo.png", smooth_image())
    with pytest.raises(ValueError, match="--synthetic"):
        ev.paired_samples(tmp_path)


@pytest.mark.parametrize("task", ["denoise", "deblur", "derain"])
def test_synthetic_samples_are_seeded_by_index_and_keep_what_baselines_need(tmp_path, task):
    write_png(tmp_path / "a.png", smooth_image(seed=1))
    write_png(tmp_path / "b.png", smooth_image(seed=2))
    first = list(ev.synthetic_samples(tmp_path, task, sigma=15))
    again = list(ev.synthetic_samples(tmp_path, task, sigma=15))
    assert [sample.name for sample in first] == ["a.png", "b.png"]
    for one, other in zip(first, again):
        np.testing.assert_array_equal(one.degraded, other.degraded)
        assert one.degraded.dtype == np.uint8 and not np.array_equal(one.degraded, one.clean)
    assert (first[0].sigma == pytest.approx(15 / 255)) if task == "denoise" else first[0].sigma is None
    assert (first[0].kernel is not None) == (task == "deblur")
    if task == "denoise":
        residual = first[0].degraded.astype(np.float64) - first[0].clean
        assert residual.std() == pytest.approx(15, rel=0.15)


# ---------------------------------------------------------------------------------------------------- baselines
def easy_sample(task: str) -> ev.Sample:
    clean = smooth_image(64, 64, seed=3)
    degraded, kernel = ev.synthetic_degradation(ev.to_tensor(clean), task, seed=0, sigma=25)
    return ev.Sample("easy", ev.to_uint8(degraded), clean, 25 / 255 if task == "denoise" else None, kernel)


@pytest.mark.parametrize(
    "task, name, gain",
    [
        ("denoise", "nlm", 8.0),
        ("denoise", "tv", 6.0),
        ("deblur", "wiener", 5.0),
        ("deblur", "unsharp", 0.1),
        ("derain", "median", 1.0),
        ("derain", "opening", 3.0),
    ],
)
def test_baselines_improve_psnr_on_an_easy_case(task, name, gain):
    sample = easy_sample(task)
    restored = ev.baseline_method(name, baseline_functions.BASELINES[task][name])(sample)
    assert restored.shape == sample.clean.shape and restored.dtype == np.uint8
    assert ev.psnr(restored, sample.clean) > ev.psnr(sample.degraded, sample.clean) + gain


def test_wiener_is_skipped_without_a_kernel_and_nlm_estimates_sigma():
    sample = easy_sample("denoise")
    assert ev.baseline_method("wiener", baseline_functions.wiener_deblur)(sample) is None
    unknown_sigma = ev.Sample("easy", sample.degraded, sample.clean)
    restored = ev.baseline_method("nlm", baseline_functions.nlm_denoise)(unknown_sigma)
    assert ev.psnr(restored, sample.clean) > ev.psnr(sample.degraded, sample.clean) + 6


def test_noise_estimate_recovers_the_level_of_white_noise():
    rng = np.random.default_rng(4)
    for sigma in (5 / 255, 25 / 255, 0.1):
        noisy = ev.to_float(smooth_image(128, 128)) + rng.normal(0, sigma, (128, 128, 3))
        assert baseline_functions.estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.1)


def test_unsharp_mask_uses_every_channel():
    """Against unsharp masking written out per channel (scipy's Gaussian, mirrored at the edges as scikit-image does):
    guards the workaround for scikit-image 0.26, whose unsharp_mask mishandles channel_axis=-1."""
    image = ev.to_float(smooth_image(40, 40))
    restored = baseline_functions.unsharp_deblur(image)
    expected = np.empty_like(image)
    for channel in range(3):
        plane = image[..., channel]
        blurred = ndimage.gaussian_filter(plane, sigma=baseline_functions.UNSHARP_RADIUS, mode="reflect")
        expected[..., channel] = np.clip(plane + baseline_functions.UNSHARP_AMOUNT * (plane - blurred), 0, 1)
    np.testing.assert_allclose(restored, expected, atol=1e-12)
    assert all(np.abs(restored - image)[..., channel].max() > 0.01 for channel in range(3))


def test_rain_baselines_filter_each_channel_alone():
    """Median (kept where it darkens) and opening against scipy's filters over a window one channel deep."""
    image = ev.to_float(easy_sample("derain").degraded)
    median = ndimage.median_filter(image, size=(baseline_functions.MEDIAN_SIZE,) * 2 + (1,), mode="reflect")
    np.testing.assert_array_equal(baseline_functions.median_derain(image), np.minimum(image, median))
    opened = ndimage.grey_opening(image, size=(baseline_functions.OPENING_SIZE,) * 2 + (1,), mode="reflect")
    np.testing.assert_array_equal(baseline_functions.opening_derain(image), opened)


# Measured per-channel gains (dB): nlm 11.2-11.7, tv 11.6-12.8, wiener 2.6-8.4 (green starts at 44 dB), unsharp
# 0.6-0.9, median 3.1-4.4, opening 8.1-9.6.
@pytest.mark.parametrize(
    "task, name, gain",
    [
        ("denoise", "nlm", 8.0),
        ("denoise", "tv", 8.0),
        ("deblur", "wiener", 1.5),
        ("deblur", "unsharp", 0.3),
        ("derain", "median", 2.0),
        ("derain", "opening", 5.0),
    ],
)
def test_baselines_improve_every_channel(task, name, gain):
    """A baseline that forgot a channel (or mixed them up) would leave that channel's PSNR where it was."""
    sample = easy_sample(task)
    restored = ev.baseline_method(name, baseline_functions.BASELINES[task][name])(sample)
    for channel in range(3):
        before = peak_signal_noise_ratio(sample.clean[..., channel], sample.degraded[..., channel], data_range=255)
        after = peak_signal_noise_ratio(sample.clean[..., channel], restored[..., channel], data_range=255)
        assert after > before + gain, f"{name}, channel {channel}: {before:.2f} -> {after:.2f} dB"


# ---------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    torch.manual_seed(0)
    config = MPRNetConfig.for_task("denoise", size="tiny")
    folder = tmp_path_factory.mktemp("model")
    MPRNetModel(config).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_cli_reports_the_library_metrics_of_the_model_outputs(tmp_path, tiny_model_dir, capsys):
    photos = tmp_path / "photos"
    write_png(photos / "a.png", smooth_image(40, 48, seed=4))
    write_png(photos / "b.png", smooth_image(33, 45, seed=5))  # not a multiple of 8: the model pads and crops
    out = tmp_path / "scores.json"
    ev.main(
        [
            "--model",
            str(tiny_model_dir),
            "--data",
            str(photos),
            "--synthetic",
            "--sigma",
            "15",
            "--baselines",
            "--json",
            str(out),
        ]
    )
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    model_name = tiny_model_dir.name
    assert report["task"] == "denoise" and report["protocol"] == "rgb" and report["sigma"] == 15
    assert list(report["summary"]) == ["input", model_name, "nlm", "tv"]
    assert "| **mean** |" in table and "| nlm |" in table

    model = MPRNetModel.from_pretrained(tiny_model_dir).eval()
    for image, sample in zip(report["images"], ev.synthetic_samples(photos, "denoise", sigma=15)):
        (restored,) = restore_tensor(model, ev.to_tensor(sample.degraded)[None], return_stages=False)
        restored = np.round(restored[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        scores = image["scores"][model_name]
        assert scores["psnr"] == pytest.approx(peak_signal_noise_ratio(sample.clean, restored, data_range=255))
        assert scores["ssim"] == pytest.approx(
            structural_similarity(
                sample.clean,
                restored,
                data_range=255,
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
            )
        )
    mean_psnr = np.mean([image["scores"]["nlm"]["psnr"] for image in report["images"]])
    assert report["summary"]["nlm"]["psnr"] == pytest.approx(mean_psnr)


def test_cli_defaults_to_the_y_protocol_for_deraining_and_tiles_on_request(tmp_path, tiny_model_dir):
    pairs = tmp_path / "pairs"
    degraded, clean = noisy_pair(3)
    write_png(pairs / "input" / "x.png", degraded)
    write_png(pairs / "target" / "x.png", clean)
    evaluation = ev.main(
        ["--model", str(tiny_model_dir), "--task", "derain", "--data", str(pairs), "--tile-size", "32"]
    )
    assert evaluation.protocol == "y"
    assert evaluation.per_image[0]["scores"]["input"]["psnr"] == pytest.approx(ev.psnr(degraded, clean, "y"))
    rgb = ev.main(["--task", "derain", "--data", str(pairs), "--protocol", "rgb"])
    assert rgb.protocol == "rgb" and list(rgb.summary) == ["input"]
    assert rgb.summary["input"].psnr == pytest.approx(ev.psnr(degraded, clean, "rgb"))


# ---------------------------------------------------------------------------------------------------- what users send
def photo_crop(name="coffee.png", size=48) -> np.ndarray:
    """A small crop of a committed example photo (real texture, fast to restore)."""
    photo = ev.load_uint8(EXAMPLES / name)
    top, left = (photo.shape[0] - size) // 2, (photo.shape[1] - size) // 2
    return np.ascontiguousarray(photo[top : top + size, left : left + size])


@pytest.mark.parametrize("extent", [(5, 10), (10, 17), (17, 25)])
def test_shake_kernels_have_an_extent_in_their_bin_on_a_grid_that_holds_it(extent):
    for seed in range(4):
        kernel = ev.shake_kernel(np.random.default_rng(seed), extent)
        assert kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1 and kernel.shape[0] >= extent[1] + 2
        assert kernel.sum() == pytest.approx(1, abs=1e-5)
        rows, columns = np.nonzero(kernel > 0)
        # Bilinear splatting spreads the trajectory by up to a pixel on each side of its extent.
        longest_side = max(np.ptp(rows), np.ptp(columns))
        assert extent[0] - 1 <= longest_side <= extent[1] + 1
        np.testing.assert_array_equal(kernel, ev.shake_kernel(np.random.default_rng(seed), extent))


def test_shake_extent_is_parsed_and_checked():
    assert ev.parse_extent("10-17") == (10, 17)
    for text in ("17", "17-10", "0-5", "a-b"):
        with pytest.raises(ValueError, match="extent"):
            ev.parse_extent(text)


def test_jpeg_rows_restore_a_jpeg_of_the_same_degraded_input(tmp_path):
    write_png(tmp_path / "a.png", photo_crop())
    (plain,) = ev.synthetic_samples(tmp_path, "deblur", shake_extent=(10, 17))
    (jpeg,) = ev.as_jpeg(ev.synthetic_samples(tmp_path, "deblur", shake_extent=(10, 17)), 70)
    assert jpeg.degraded.dtype == np.uint8 and not np.array_equal(jpeg.degraded, plain.degraded)
    np.testing.assert_array_equal(jpeg.clean, plain.clean)
    np.testing.assert_array_equal(jpeg.kernel, plain.kernel)  # the baselines still know the blur
    with Image.open(_jpeg_bytes(plain.degraded, 70)) as decoded:
        np.testing.assert_array_equal(jpeg.degraded, np.asarray(decoded.convert("RGB")))


def _jpeg_bytes(image: np.ndarray, quality: int):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling="4:2:0")
    buffer.seek(0)
    return buffer


def test_cli_jpeg_and_shake_rows_score_other_inputs_than_the_plain_row(tmp_path):
    photos = tmp_path / "photos"
    for name in ("coffee.png", "fruits.png"):
        write_png(photos / name, photo_crop(name))
    common = ["--task", "deblur", "--data", str(photos), "--synthetic"]
    plain = ev.main([*common, "--shake-extent", "17-25"])
    jpeg90 = ev.main([*common, "--shake-extent", "17-25", "--jpeg", "90", "--json", str(tmp_path / "j.json")])
    jpeg70 = ev.main([*common, "--shake-extent", "17-25", "--jpeg", "70"])
    short = ev.main([*common, "--shake-extent", "5-10"])
    scores = [evaluation.summary["input"].psnr for evaluation in (plain, jpeg90, jpeg70, short)]
    assert len(set(scores)) == 4
    assert short.summary["input"].psnr > plain.summary["input"].psnr + 2  # a short shake blurs less
    report = json.loads((tmp_path / "j.json").read_text())
    assert report["jpeg_quality"] == 90 and report["shake_extent"] == [17, 25]
    with pytest.raises(SystemExit):
        ev.parse_args([*common, "--jpeg", "100"])
    with pytest.raises(ValueError, match="deblurring"):
        ev.main(["--task", "denoise", "--data", str(photos), "--synthetic", "--shake-extent", "5-10"])


# Measured on the 48x48 crop: CBM3D +8.5 dB at sigma 25; BM3D deblurring +3.4 dB on a 10-17 px shake.
@pytest.mark.slow
def test_cbm3d_with_the_true_sigma_improves_psnr_over_the_noisy_input(tmp_path):
    pytest.importorskip("bm3d")
    write_png(tmp_path / "a.png", photo_crop())
    (sample,) = ev.synthetic_samples(tmp_path, "denoise", sigma=25)
    restored = ev.baseline_method("cbm3d", baseline_functions.cbm3d_denoise)(sample)
    assert restored.shape == sample.clean.shape and restored.dtype == np.uint8
    assert ev.psnr(restored, sample.clean) > ev.psnr(sample.degraded, sample.clean) + 5


@pytest.mark.slow
def test_bm3d_deblurring_with_the_true_kernel_improves_psnr_and_needs_the_kernel(tmp_path):
    pytest.importorskip("bm3d")
    write_png(tmp_path / "a.png", photo_crop())
    (sample,) = ev.synthetic_samples(tmp_path, "deblur", shake_extent=(10, 17))
    method = ev.baseline_method("bm3d", baseline_functions.bm3d_deblur)
    restored = method(sample)
    assert ev.psnr(restored, sample.clean) > ev.psnr(sample.degraded, sample.clean) + 1
    assert method(ev.Sample("no kernel", sample.degraded, sample.clean)) is None


@pytest.mark.slow
def test_bm3d_limit_scores_only_the_first_images(tmp_path):
    pytest.importorskip("bm3d")
    photos = tmp_path / "photos"
    for name in ("coffee.png", "fruits.png"):
        write_png(photos / name, photo_crop(name, size=32))
    evaluation = ev.main(["--task", "denoise", "--data", str(photos), "--synthetic", "--bm3d", "--bm3d-limit", "1"])
    assert list(evaluation.summary) == ["input", "cbm3d"] and evaluation.summary["cbm3d"].images == 1
    assert [list(image["scores"]) for image in evaluation.per_image] == [["input", "cbm3d"], ["input"]]


def test_a_detector_without_auto_mode_is_refused(capsys):
    with pytest.raises(SystemExit):
        ev.parse_args(["--task", "denoise", "--data", "photos", "--synthetic", "--detector", "checkpoints/x"])
    assert "--detector is auto mode's: give --auto too" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--model", "--detector"])
def test_weights_that_do_not_load_end_the_command_with_what_to_give(tmp_path, option):
    missing = str(tmp_path / "no-such-folder")
    arguments = ["--task", "denoise", "--data", str(tmp_path), "--synthetic", option, missing]
    with pytest.raises(SystemExit) as stopped:
        ev.main([*arguments, "--auto"] if option == "--detector" else arguments)
    message = str(stopped.value)
    assert message.startswith(f"mprnet-evaluate: error: {option} '{missing}' could not be loaded")
    assert "Give a folder written by save_pretrained, or a Hub id" in message


def test_damaged_weights_end_the_command_with_what_to_give(tmp_path):
    damaged = damaged_model_folder(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        ev.main(["--task", "denoise", "--data", str(tmp_path), "--synthetic", "--model", str(damaged)])
    assert str(stopped.value).startswith(f"mprnet-evaluate: error: --model '{damaged}' could not be loaded")


def test_the_command_says_what_is_wrong_with_its_photos_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as stopped:
        ev.command(["--task", "denoise", "--data", str(tmp_path), "--synthetic"])
    assert str(stopped.value) == f"mprnet-evaluate: error: No images found in {tmp_path}"

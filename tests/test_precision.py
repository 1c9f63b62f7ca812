"""precision="auto": bf16 only on hardware with native bf16 and only for a model that agrees with fp32 on a probe
image, fp32 elsewhere; the same choice in restore_image, the pipeline, the CLI and the app; fp32 can always be
forced; the plain model call stays exact fp32. The suite's conftest declares a CPU without bf16 (MPRNET_CPU_BF16=0);
tests here declare the CPU they simulate, and the quality guard at the end reads the real hardware."""

import logging
import re

import pytest
import torch
from PIL import Image
from transformers import pipeline

from conftest import REPO_ROOT
from mprnet_hf import MPRNetImageProcessor, MPRNetModel, cli
from mprnet_hf.hub.bundled import bundled_checkpoint
from mprnet_hf.models.mprnet import inference
from mprnet_hf.models.mprnet.inference import (
    AGREEMENT_THRESHOLD_DB,
    choose_precision,
    cpu_flags,
    detected_native_bf16,
    psnr_db,
    restore_image,
    restore_tensor,
)
from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetOutput
from mprnet_hf.serving import serving_precisions

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EXAMPLES = REPO_ROOT / "examples"


@pytest.fixture(scope="module")
def deblur_model():
    return MPRNetModel.from_pretrained(bundled_checkpoint("deblur")).eval()


@pytest.fixture(scope="module")
def photo():
    return Image.open(EXAMPLES / "deblur" / "coffee_motion.png").convert("RGB").crop((0, 0, 96, 80))


def pixels(image: Image.Image) -> bytes:
    return image.tobytes()


class RoundingAmplifier(torch.nn.Module):
    """A model whose bf16 arithmetic goes wrong: a 1x1 convolution by 1.001 minus 1.001 x, times 200, is ~0 in fp32;
    under bf16 autocast the weight rounds to 1.0 and the output to 8 bits, and the amplified error shows."""

    def __init__(self):
        super().__init__()
        self.config = MPRNetModel.config_class()
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3)[:, :, None, None] * 1.001)

    def forward(self, pixel_values):
        error = self.conv(pixel_values).float() - 1.001 * pixel_values
        restored = pixel_values + 200 * error
        return MPRNetOutput(reconstruction=restored, stage_reconstructions=(restored,) * 3)


# ---------------------------------------------------------------------------------------------------- the choice
@pytest.mark.slow
def test_auto_is_fp32_on_a_cpu_without_native_bf16(deblur_model, photo, monkeypatch):
    monkeypatch.setenv("MPRNET_CPU_BF16", "0")
    choice = choose_precision(deblur_model)
    assert (choice.precision, choice.agreement_db) == ("fp32", None)  # no agreement check runs: it would cost time
    assert "no native bf16" in choice.reason
    automatic = restore_image(deblur_model, photo)  # the default
    assert pixels(automatic.image) == pixels(restore_image(deblur_model, photo, precision="fp32").image)
    # bf16 would have changed the output: the equality above tells the two apart.
    assert pixels(automatic.image) != pixels(restore_image(deblur_model, photo, precision="bf16").image)


@pytest.mark.slow
def test_auto_is_bf16_on_a_cpu_with_native_bf16_once_the_model_agrees(deblur_model, photo, monkeypatch):
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    choice = choose_precision(deblur_model)
    assert choice.precision == "bf16" and choice.agreement_db >= AGREEMENT_THRESHOLD_DB
    automatic = restore_image(deblur_model, photo)
    assert pixels(automatic.image) == pixels(restore_image(deblur_model, photo, precision="bf16").image)
    assert pixels(automatic.image) != pixels(restore_image(deblur_model, photo, precision="fp32").image)
    # Forcing fp32 still wins over the hardware.
    assert choose_precision(deblur_model, "fp32").precision == "fp32"


def test_a_model_that_disagrees_in_bf16_stays_on_fp32_and_is_checked_once(monkeypatch, caplog):
    model = RoundingAmplifier()
    checks = []
    measure = inference.bf16_agreement_db
    monkeypatch.setattr(inference, "bf16_agreement_db", lambda model: checks.append(1) or measure(model))
    with caplog.at_level(logging.WARNING, logger=inference.__name__):
        choice = choose_precision(model, native_bf16=True)
    assert choice.precision == "fp32" and choice.agreement_db < AGREEMENT_THRESHOLD_DB
    assert f"below the {AGREEMENT_THRESHOLD_DB:g} dB required" in choice.reason
    assert "keeps this model on fp32" in caplog.text
    images = inference.probe_image()
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    automatic = restore_tensor(model, images, tile_size=None, precision="auto")[-1]
    assert torch.equal(automatic, restore_tensor(model, images, tile_size=None, precision="fp32")[-1])
    assert checks == [1]  # the restore reused the outcome
    # The same model passes a threshold below its agreement: the threshold is what decides.
    assert choose_precision(model, agreement_threshold_db=choice.agreement_db - 1, native_bf16=True).precision == "bf16"


@pytest.mark.slow
def test_the_pipeline_defaults_to_auto_and_takes_fp32(deblur_model, photo, monkeypatch):
    restorer = pipeline("image-restoration", model=deblur_model, image_processor=MPRNetImageProcessor())
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    bf16 = pixels(restorer(photo, precision="bf16"))
    assert pixels(restorer(photo)) == bf16
    assert pixels(restorer(photo, precision="fp32")) != bf16
    monkeypatch.setenv("MPRNET_CPU_BF16", "0")
    assert pixels(restorer(photo)) == pixels(restorer(photo, precision="fp32"))


@pytest.mark.slow
def test_the_plain_model_call_stays_exact_fp32(deblur_model, photo, monkeypatch):
    inputs = MPRNetImageProcessor()(images=photo, return_tensors="pt")
    with torch.no_grad():
        before = deblur_model(**inputs).reconstruction
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    restore_image(deblur_model, photo)  # ran in bf16 (previous tests)
    with torch.no_grad():
        after = deblur_model(**inputs).reconstruction
    assert after.dtype == torch.float32 and {p.dtype for p in deblur_model.parameters()} == {torch.float32}
    assert torch.equal(after, before)
    assert not torch.is_autocast_enabled("cpu")


# ---------------------------------------------------------------------------------------------------- refused values
def test_unknown_precisions_are_refused_naming_the_allowed_ones(deblur_model, photo, monkeypatch):
    allowed = "auto, fp32, bf16, fp16"
    with pytest.raises(ValueError, match=f"precision must be one of {allowed}, got 'fp8'"):
        restore_image(deblur_model, photo, precision="fp8")
    with pytest.raises(ValueError, match=f"precision must be one of {allowed}, got 'half'"):
        pipeline("image-restoration", model=deblur_model, image_processor=MPRNetImageProcessor())(
            photo, precision="half"
        )
    monkeypatch.setenv("MPRNET_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="MPRNET_CPU_BF16 must be 1, 0 or unset"):
        choose_precision(deblur_model)


def test_the_cli_defaults_to_auto_and_refuses_bad_values(tmp_path, capsys, monkeypatch):
    photo_path = EXAMPLES / "deblur" / "coffee_motion.png"
    args = cli.build_parser().parse_args([str(photo_path), "--task", "deblur", "--output", str(tmp_path)])
    assert args.precision == "auto"
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(photo_path), "--task", "deblur", "--output", str(tmp_path / "a"), "--precision", "fp8"])
    assert exit_info.value.code == 2
    # Python 3.12.8 and later quote the choices.
    listed = r"invalid choice: 'fp8' \(choose from '?auto'?, '?fp32'?, '?bf16'?, '?fp16'?\)"
    assert re.search(listed, capsys.readouterr().err)
    monkeypatch.setenv("MPRNET_CPU_BF16", "maybe")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(photo_path), "--task", "deblur", "--output", str(tmp_path / "b"), "--device", "cpu"])
    assert exit_info.value.code == 2
    assert "--precision auto: MPRNET_CPU_BF16 must be 1, 0 or unset" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_the_serving_precision_follows_the_hardware_and_mprnet_precision(deblur_model, monkeypatch):
    models = {"deblur": deblur_model}
    monkeypatch.setenv("MPRNET_CPU_BF16", "0")
    assert serving_precisions(models, on_gpu=False) == {"deblur": "fp32"}
    monkeypatch.setenv("MPRNET_CPU_BF16", "1")
    assert serving_precisions(models, on_gpu=False) == {"deblur": "bf16"}
    monkeypatch.setenv("MPRNET_PRECISION", "fp32")  # what an operator sets to force fp32
    assert serving_precisions(models, on_gpu=False) == {"deblur": "fp32"}
    assert serving_precisions(models, on_gpu=True) == {"deblur": "fp32"}
    monkeypatch.setenv("MPRNET_PRECISION", "auto")
    assert serving_precisions(models, on_gpu=True) == {"deblur": "bf16"}  # what the app always ran on a GPU
    monkeypatch.setenv("MPRNET_PRECISION", "fp16")
    with pytest.raises(ValueError, match="MPRNET_PRECISION=fp16 needs a GPU"):
        serving_precisions(models, on_gpu=False)
    monkeypatch.setenv("MPRNET_PRECISION", "double")
    with pytest.raises(ValueError, match="MPRNET_PRECISION must be one of auto, fp32, bf16, fp16, got 'double'"):
        serving_precisions(models, on_gpu=False)
    # MPRNET_CPU_BF16 is read only by auto: a malformed one is refused there, at start-up, and ignored otherwise.
    monkeypatch.setenv("MPRNET_CPU_BF16", "yes")
    for precision in ("fp32", "bf16"):
        monkeypatch.setenv("MPRNET_PRECISION", precision)
        assert serving_precisions(models, on_gpu=False) == {"deblur": precision}
    monkeypatch.setenv("MPRNET_PRECISION", "auto")
    with pytest.raises(ValueError, match="MPRNET_CPU_BF16 must be 1, 0 or unset"):
        serving_precisions(models, on_gpu=False)


# ---------------------------------------------------------------------------------------------------- quality guard
def native_bf16_reason() -> str:
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    return (
        f"this CPU has no native bf16 instructions (AVX512-BF16 or AMX; its flags here: {', '.join(flags) or 'none'}): "
        "bf16 is emulated, precision='auto' runs fp32, and bf16's agreement on real hardware cannot be measured"
    )


@pytest.mark.skipif(not detected_native_bf16(), reason=native_bf16_reason())
@pytest.mark.parametrize("task", ["deblur", "derain", "denoise"])
def test_bf16_agrees_with_fp32_on_every_bundled_example(task):
    model = MPRNetModel.from_pretrained(bundled_checkpoint(task)).eval()
    assert choose_precision(model, native_bf16=detected_native_bf16()).precision == "bf16"
    processor = MPRNetImageProcessor()
    examples = sorted((EXAMPLES / task).glob("*.png"))
    assert examples
    for path in examples:
        images = processor(images=Image.open(path), return_tensors="pt")["pixel_values"]
        full = restore_tensor(model, images, tile_size=None, precision="fp32", return_stages=False)[-1]
        half = restore_tensor(model, images, tile_size=None, precision="bf16", return_stages=False)[-1]
        assert psnr_db(half, full) >= AGREEMENT_THRESHOLD_DB, path.name

"""The converter: hyper-parameters inferred from shapes, both checkpoint forms, clear refusals."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.hub.convert import (
    convert_checkpoint,
    convert_state_dict,
    infer_config,
    load_official_checkpoint,
    official_to_hf_key,
)

OFFICIAL_PARAMETERS = {"deblur": 20_127_073, "derain": 3_637_249, "denoise": 15_741_025}


@pytest.mark.parametrize("task", ["deblur", "derain", "denoise"])
def test_full_size_keys_convert_to_the_released_presets(reference_dir, task):
    shapes = json.loads((reference_dir / f"keys_{task}.json").read_text())
    config = infer_config(shapes, task=task)
    preset = MPRNetConfig.for_task(task)
    fields = ("n_feat", "scale_unetfeats", "scale_orsnetfeats", "num_cab", "kernel_size", "reduction", "bias")
    assert {f: getattr(config, f) for f in fields} == {f: getattr(preset, f) for f in fields}
    with torch.device("meta"):
        model = MPRNetModel(preset)
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_PARAMETERS[task]
    # Every official key maps onto the model, the 55 PReLU copies onto the one shared slope, with its shape.
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    mapped = {official_to_hf_key(key, config.num_cab): tuple(shape) for key, shape in shapes.items()}
    assert mapped == expected


def test_module_prefixed_training_dict_loads(reference_dir):
    state = load_official_checkpoint(reference_dir / "fixture_derain_checkpoint.pth")
    assert not any(key.startswith("module.") for key in state)
    assert "shallow_feat1.0.weight" in state


def test_unequal_prelu_copies_are_refused(reference_dir):
    official = load_file(reference_dir / "fixture_deblur_state.safetensors")
    config = infer_config({k: tuple(v.shape) for k, v in official.items()})
    official["stage1_encoder.encoder_level1.0.body.1.weight"] = torch.tensor([0.9])
    with pytest.raises(ValueError, match="PReLU"):
        convert_state_dict(official, config)


def test_not_an_mprnet_state_dict_names_missing_keys(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(8, 3, 3, 3)}}, path)
    with pytest.raises(ValueError, match="Not an MPRNet checkpoint: missing keys .*shallow_feat1.0.weight"):
        convert_checkpoint(path)


def test_missing_block_is_named(reference_dir, tmp_path):
    official = load_file(reference_dir / "fixture_deblur_state.safetensors")
    del official["stage2_encoder.csff_enc2.weight"]
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": official}, path)
    with pytest.raises(ValueError, match="missing .*stage2_encoder.csff_enc2.weight"):
        convert_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"this is not a checkpoint", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64])
def test_non_checkpoint_files_are_refused(tmp_path, content):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="could not be read as a PyTorch checkpoint"):
        load_official_checkpoint(path)


def test_pickled_code_is_not_executed(tmp_path):
    """weights_only=True: a checkpoint carrying arbitrary objects is refused, not unpickled."""

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": Exploit()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_official_checkpoint(path)


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.slow
def test_cli_reports_errors_without_traceback(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mprnet_hf.hub.convert",
            "--checkpoint",
            str(path),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_model_card_metadata(reference_dir, tmp_path):
    convert_checkpoint(reference_dir / "fixture_denoise_checkpoint.pth", tmp_path, task="denoise")
    card = (tmp_path / "README.md").read_text()
    header = card.split("---")[1]
    for expected in (
        "library_name: transformers",
        "pipeline_tag: image-to-image",
        "license: other",
        "license_name: academic-public-license",
        "model-index",
        "SIDD",
        "39.71",
    ):
        assert expected in header or expected in card, expected
    assert "2102.02808" in card and "SIDD-Medium" in card

"""Numerical parity with the official implementation, on the fixtures it produced (../shared/reference)."""

import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import FIXTURES, fixture_config
from mprnet_hf import MPRNetModel
from mprnet_hf.convert import convert_state_dict, infer_config

TOLERANCE = 1e-5


def model_from_state(reference_dir, name) -> MPRNetModel:
    official = load_file(reference_dir / f"fixture_{name}_state.safetensors")
    config = infer_config({key: tuple(value.shape) for key, value in official.items()})
    model = MPRNetModel(config).eval()
    model.load_state_dict(convert_state_dict(official, config), strict=True)
    return model


def assert_matches_fixture(model, io):
    errors = {}
    with torch.no_grad():
        for i in (0, 1):
            stages = model(io[f"input_{i}"]).stage_reconstructions
            # The official model returns [stage 3, stage 2, stage 1].
            for j, stage in enumerate(reversed(stages)):
                errors[f"output_{i}_{j}"] = (stage - io[f"output_{i}_{j}"]).abs().max().item()
        demo = model(io["demo_input"]).reconstruction.clamp(0, 1)
        errors["demo_output"] = (demo - io["demo_output"]).abs().max().item()
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOLERANCE, f"{worst} differs by {errors[worst]:.3g}: {errors}"
    return errors


@pytest.mark.parametrize("name", FIXTURES)
def test_state_dict_fixture_parity(reference_dir, name):
    model = model_from_state(reference_dir, name)
    io = load_file(reference_dir / f"fixture_{name}_io.safetensors")
    assert_matches_fixture(model, io)


@pytest.mark.parametrize("name", FIXTURES)
def test_inferred_config_and_parameter_count(reference_dir, name):
    meta = fixture_config(reference_dir, name)
    model = model_from_state(reference_dir, name)
    expected = meta["constructor_kwargs"]
    config = model.config
    assert (config.n_feat, config.scale_unetfeats, config.scale_orsnetfeats, config.num_cab, config.kernel_size,
            config.reduction, config.bias) == (expected["n_feat"], expected["scale_unetfeats"],
                                               expected["scale_orsnetfeats"], expected["num_cab"],
                                               expected["kernel_size"], expected["reduction"], expected["bias"])
    assert sum(p.numel() for p in model.parameters()) == meta["num_unique_parameters"]
    assert model.prelu.weight.item() == pytest.approx(meta["prelu_value"], abs=1e-7)


@pytest.mark.parametrize("name", ["deblur", "derain", "denoise"])
def test_converter_cli_end_to_end(reference_dir, name, tmp_path):
    """The .pth checkpoint (plain, or module-prefixed training dict) through the CLI, loaded back from disk."""
    output = tmp_path / name
    result = subprocess.run(
        [sys.executable, "-m", "mprnet_hf.convert", "--checkpoint", str(reference_dir / f"fixture_{name}_checkpoint.pth"),
         "--output-dir", str(output), "--task", name if name != "variant" else "deblur"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for filename in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (output / filename).is_file(), filename
    model, info = MPRNetModel.from_pretrained(output, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.task == name
    io = load_file(reference_dir / f"fixture_{name}_io.safetensors")
    assert_matches_fixture(model.eval(), io)


def test_intermediates_match(reference_dir):
    """Stage-1 SAM images per half and the tail output, for debugging-level confidence in the patch split."""
    model = model_from_state(reference_dir, "deblur")
    inter = load_file(reference_dir / "fixture_deblur_intermediates.safetensors")
    with torch.no_grad():
        stages = model(inter["inter_input"]).stage_reconstructions
    top = inter["sam12.call0.out1"]
    bottom = inter["sam12.call1.out1"]
    assert (torch.cat([top, bottom], dim=2) - stages[0]).abs().max() <= TOLERANCE
    assert (inter["inter_output_0"] - stages[2]).abs().max() <= TOLERANCE

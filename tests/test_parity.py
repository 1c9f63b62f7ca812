"""Numerical parity with the official implementation, on the fixtures it produced (../shared/reference)."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import (
    FIXTURES,
    PARITY_TOLERANCE,
    assert_within_tolerance,
    fixture_config,
    fixture_errors,
    fixture_model,
)
from mprnet_hf import MPRNetModel


def assert_matches_fixture(model, io):
    def restore(images):
        with torch.no_grad():
            return model(images).stage_reconstructions

    assert_within_tolerance(fixture_errors(restore, io))


@pytest.mark.parametrize("name", FIXTURES)
def test_state_dict_fixture_parity(reference_dir, name):
    model = fixture_model(reference_dir, name)
    io = load_file(reference_dir / f"fixture_{name}_io.safetensors")
    assert_matches_fixture(model, io)


@pytest.mark.parametrize("name", FIXTURES)
def test_inferred_config_and_parameter_count(reference_dir, name):
    meta = fixture_config(reference_dir, name)
    model = fixture_model(reference_dir, name)
    expected = meta["constructor_kwargs"]
    config = model.config
    assert (
        config.n_feat,
        config.scale_unetfeats,
        config.scale_orsnetfeats,
        config.num_cab,
        config.kernel_size,
        config.reduction,
        config.bias,
    ) == (
        expected["n_feat"],
        expected["scale_unetfeats"],
        expected["scale_orsnetfeats"],
        expected["num_cab"],
        expected["kernel_size"],
        expected["reduction"],
        expected["bias"],
    )
    assert sum(p.numel() for p in model.parameters()) == meta["num_unique_parameters"]
    assert model.prelu.weight.item() == pytest.approx(meta["prelu_value"], abs=1e-7)


@pytest.mark.parametrize("name", ["deblur", "derain", "denoise"])
@pytest.mark.slow
def test_converter_cli_end_to_end(reference_dir, name, tmp_path):
    """The .pth checkpoint (plain, or module-prefixed training dict) through the CLI, loaded back from disk."""
    output = tmp_path / name
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mprnet_hf.hub.convert",
            "--checkpoint",
            str(reference_dir / f"fixture_{name}_checkpoint.pth"),
            "--output-dir",
            str(output),
            "--task",
            name if name != "variant" else "deblur",
        ],
        capture_output=True,
        text=True,
        timeout=300,
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
    model = fixture_model(reference_dir, "deblur")
    inter = load_file(reference_dir / "fixture_deblur_intermediates.safetensors")
    with torch.no_grad():
        stages = model(inter["inter_input"]).stage_reconstructions
    top = inter["sam12.call0.out1"]
    bottom = inter["sam12.call1.out1"]
    assert (torch.cat([top, bottom], dim=2) - stages[0]).abs().max() <= PARITY_TOLERANCE
    assert (inter["inter_output_0"] - stages[2]).abs().max() <= PARITY_TOLERANCE


@pytest.mark.parametrize("height, width", [(9, 15), (17, 10), (41, 33), (8, 63), (63, 8), (23, 23)])
def test_odd_sizes_are_restored_as_the_official_demo_does(reference_dir, height, width):
    """The official demo mirrors the bottom and right up to a multiple of 8 (numpy's 'reflect' here), restores, and
    crops; the model must give the same at sizes other than the one odd fixture input. Restoring the padded image
    itself is what the fixtures check."""
    model = fixture_model(reference_dir, "denoise")
    images = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * 100 + width))
    padding = ((0, 0), (0, 0), (0, -height % 8), (0, -width % 8))
    padded = torch.from_numpy(np.pad(images.numpy(), padding, mode="reflect"))
    with torch.no_grad():
        stages = model(images).stage_reconstructions
        official = model(padded).stage_reconstructions
    for stage, official_stage in zip(stages, official):
        assert stage.shape == images.shape
        assert (stage - official_stage[..., :height, :width]).abs().max() <= PARITY_TOLERANCE

"""The package layout's old module paths: after the move into sub-packages, old imports and `python -m` commands
keep working, and each old path is the moved module itself (so patching or reading one attribute sees the other)."""

import importlib
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

OLD_TO_NEW = {
    "configuration_mprnet": "models.mprnet.configuration_mprnet",
    "modeling_mprnet": "models.mprnet.modeling_mprnet",
    "image_processing_mprnet": "models.mprnet.image_processing_mprnet",
    "pipeline_mprnet": "models.mprnet.pipeline_mprnet",
    "losses": "models.mprnet.losses",
    "inference": "models.mprnet.inference",
    "whole_image_statistics": "models.mprnet.whole_image_statistics",
    "degradations": "data.degradations",
    "image_io": "data.image_io",
    "evaluate": "evaluation.evaluate",
    "baselines": "evaluation.baselines",
    "convert": "hub.convert",
    "remote_code": "hub.remote_code",
    "bundled": "hub.bundled",
    "fast": "speed.fast",
    "export_onnx": "speed.export_onnx",
    "serving_speed": "speed.serving_speed",
}


@pytest.mark.parametrize("old", sorted(OLD_TO_NEW))
def test_old_module_path_is_the_moved_module(old):
    moved = importlib.import_module(f"mprnet_hf.{OLD_TO_NEW[old]}")
    assert importlib.import_module(f"mprnet_hf.{old}") is moved
    assert getattr(importlib.import_module("mprnet_hf"), old) is moved


def test_old_names_import_from_old_paths():
    from mprnet_hf.hub import save_model_card
    from mprnet_hf.hub.model_cards import save_model_card as moved_save_model_card
    from mprnet_hf.inference import restore_image
    from mprnet_hf.models.mprnet.inference import restore_image as moved_restore_image

    assert restore_image is moved_restore_image
    assert save_model_card is moved_save_model_card


@pytest.mark.parametrize("old", ["evaluate", "convert", "remote_code", "export_onnx"])
def test_old_python_dash_m_commands_run_the_moved_main(old):
    result = subprocess.run(
        [sys.executable, "-m", f"mprnet_hf.{old}", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")

"""Loading paths users take: save/from_pretrained, the Hub cache offline, Auto classes, pipeline, remote code."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageToImage, pipeline

from conftest import REPO_ROOT, TINY
from mprnet_hf import ImageRestorationPipeline, MPRNetConfig, MPRNetImageProcessor, MPRNetModel


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(task="derain", **TINY)).eval()
    folder = tmp_path_factory.mktemp("tiny-mprnet")
    model.save_pretrained(folder)
    MPRNetImageProcessor().save_pretrained(folder)
    return model, folder


@pytest.mark.slow
def test_round_trip_is_clean_and_exact(saved_model):
    model, folder = saved_model
    assert (folder / "model.safetensors").is_file()
    assert not list(folder.glob("*.bin")), "weights must be saved as safetensors only"
    loaded, info = MPRNetModel.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == set() or not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # The shared PReLU is still one parameter after loading: every block sees the loaded value.
    block = loaded.stage3_orsnet.orb2.blocks[0]
    assert block.activation is loaded.prelu
    image = torch.rand(1, 3, 21, 30)
    with torch.no_grad():
        assert torch.equal(model(image).reconstruction, loaded.eval()(image).reconstruction)


@pytest.mark.slow
def test_auto_classes_and_pipeline(saved_model):
    _, folder = saved_model
    assert isinstance(AutoConfig.from_pretrained(folder), MPRNetConfig)
    assert isinstance(AutoModel.from_pretrained(folder), MPRNetModel)
    assert isinstance(AutoModelForImageToImage.from_pretrained(folder), MPRNetModel)
    assert isinstance(AutoImageProcessor.from_pretrained(folder), MPRNetImageProcessor)
    restorer = pipeline("image-restoration", model=str(folder))
    assert isinstance(restorer, ImageRestorationPipeline)
    for size, mode in [((45, 37), "RGB"), ((1, 1), "RGB"), ((60, 40), "L"), ((33, 17), "RGBA")]:
        result = restorer(Image.new(mode, size))
        assert result.size == size and result.mode == mode
    batch = restorer([Image.new("RGB", (20, 10)), Image.new("RGB", (9, 31))])
    assert [image.size for image in batch] == [(20, 10), (9, 31)]
    tiled = restorer(Image.new("RGB", (70, 50)), tile_size=32, tile_overlap=8)
    assert tiled.size == (70, 50)


def test_saved_config_carries_remote_code_map(saved_model):
    _, folder = saved_model
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "mprnet"
    assert config["auto_map"]["AutoModel"] == "modeling_mprnet.MPRNetModel"
    assert json.loads((folder / "preprocessor_config.json").read_text())["auto_map"]["AutoImageProcessor"]
    for code in ("configuration_mprnet.py", "modeling_mprnet.py", "losses.py", "image_processing_mprnet.py"):
        assert (folder / code).is_file(), code


# The checkout is on sys.path of an editable install (a .pth file): scripts that must not see mprnet_hf drop it first.
WITHOUT_THE_CHECKOUT = f"""
import os, sys
sys.path[:] = [entry for entry in sys.path if os.path.realpath(entry or ".") != {str(REPO_ROOT)!r}]
"""


def run_isolated(script: str, cwd, env_extra: dict) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(env_extra, HF_HUB_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_CHECKOUT + textwrap.dedent(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_trust_remote_code_without_the_package(saved_model, tmp_path):
    model, folder = saved_model
    image = torch.rand(1, 3, 24, 19)
    with torch.no_grad():
        expected = model(image).reconstruction
    torch.save({"image": image, "expected": expected}, tmp_path / "io.pt")
    output = run_isolated(
        f"""
        import importlib.util, torch
        assert importlib.util.find_spec("mprnet_hf") is None, "mprnet_hf must not be importable here"
        from transformers import AutoModel, AutoImageProcessor
        model = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        io = torch.load("io.pt", weights_only=True)
        with torch.no_grad():
            error = (model(io["image"]).reconstruction - io["expected"]).abs().max().item()
        print(type(model).__name__, type(processor).__name__, error)
        """,
        cwd=tmp_path,
        env_extra={"HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    name, processor_name, error = output.split()
    assert name == "MPRNetModel" and processor_name == "MPRNetImageProcessor"
    # The same code and weights; the two processes may run oneDNN with different thread counts (an earlier test
    # may have set this one's), which sums convolutions in another order: rounding, far below parity's 1e-5.
    assert float(error) < 1e-6


@pytest.mark.slow
def test_from_pretrained_hub_id_offline_from_cache(saved_model, tmp_path):
    """A model in the Hugging Face cache layout loads by its Hub id with HF_HUB_OFFLINE=1 (no network)."""
    _, folder = saved_model
    cache = tmp_path / "hub"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = cache / "models--org--mprnet-deblur" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        (snapshot / file.name).write_bytes(file.read_bytes())
    (cache / "models--org--mprnet-deblur" / "refs").mkdir()
    (cache / "models--org--mprnet-deblur" / "refs" / "main").write_text(commit)
    output = run_isolated(
        f"""
        import sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        from mprnet_hf import MPRNetModel, MPRNetImageProcessor
        from transformers import pipeline
        from PIL import Image
        model = MPRNetModel.from_pretrained("org/mprnet-deblur")
        processor = MPRNetImageProcessor.from_pretrained("org/mprnet-deblur")
        restored = pipeline("image-restoration", model="org/mprnet-deblur")(Image.new("RGB", (13, 9)))
        print(model.config.task, restored.size)
        """,
        cwd=tmp_path,
        env_extra={"HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "home")},
    )
    assert output.strip() == "derain (13, 9)"


def test_saved_folder_records_the_pipeline_for_remote_code(saved_model, tmp_path):
    from mprnet_hf.hub.remote_code import CUSTOM_PIPELINES, remote_code_files, save_model_folder

    model, _ = saved_model
    folder = save_model_folder(model, tmp_path / "saved")
    assert json.loads((folder / "config.json").read_text())["custom_pipelines"] == CUSTOM_PIPELINES
    for code in remote_code_files():
        assert (folder / code.name).read_bytes() == code.read_bytes(), code.name
    assert {"pipeline_mprnet.py", "inference.py", "modeling_mprnet.py"} <= {code.name for code in remote_code_files()}


def test_bundled_checkpoints_carry_the_librarys_code():
    from mprnet_hf.hub.remote_code import bundled_folders, stale_files

    folders = bundled_folders()
    assert len(folders) == 4  # a model per task and the JPEG denoiser
    for folder in folders:
        assert stale_files(folder) == [], f"{folder.name} is stale: run `make sync-remote-code`"


@pytest.mark.slow
def test_pipeline_from_a_bundled_folder_without_the_package(tmp_path):
    """What a Hub user without mprnet_hf runs: no task named, the code comes from the folder."""
    import shutil

    from mprnet_hf.hub.remote_code import bundled_folders

    folder = shutil.copytree(
        next(folder for folder in bundled_folders() if folder.name.endswith("denoise-small")),
        tmp_path / "mprnet-denoise",
    )
    photo = Image.fromarray(
        torch.randint(0, 256, (29, 37, 3), generator=torch.Generator().manual_seed(4), dtype=torch.uint8).numpy()
    )
    photo.save(tmp_path / "odd.png")
    expected = pipeline("image-restoration", model=str(folder), pipeline_class=ImageRestorationPipeline)(photo)
    output = run_isolated(
        f"""
        import importlib.util
        assert importlib.util.find_spec("mprnet_hf") is None, "mprnet_hf must not be importable here"
        from PIL import Image
        from transformers import pipeline
        restorer = pipeline(model={str(folder)!r}, trust_remote_code=True)
        restored = restorer(Image.open("odd.png"))
        restored.save("restored.png")
        print(type(restorer).__name__, restored.size, restored.mode)
        """,
        cwd=tmp_path,
        env_extra={"HF_MODULES_CACHE": str(tmp_path / "modules")},
    )
    assert output.strip() == "ImageRestorationPipeline (37, 29) RGB"
    restored = Image.open(tmp_path / "restored.png")
    assert list(restored.getdata()) == list(expected.getdata())


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_saved_model_folders_get_ordinary_permissions(tmp_path, tiny_config, umask, mode):
    """safetensors writes its files owner-only whatever the umask; a model folder's weights are for sharing."""
    from mprnet_hf.hub.remote_code import save_model_folder

    previous = os.umask(umask)
    try:
        folder = save_model_folder(MPRNetModel(tiny_config()).eval(), tmp_path / "saved")
    finally:
        os.umask(previous)
    assert {path.name: path.stat().st_mode & 0o777 for path in folder.glob("*.safetensors")} == {
        "model.safetensors": mode
    }

"""mprnet-convert --to-official: this library's weights in the official key layout, which the official code and
spandrel (and so ComfyUI and chaiNNer) load. The round trips run on the official fixtures and the bundled weights; the
last tests load the exports with the real spandrel and spandrel-extra-arches."""

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import FIXTURES, PARITY_TOLERANCE, REPO_ROOT, assert_within_tolerance, fixture_config, fixture_errors
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.hub.convert import (
    PRELU_KEY,
    convert_checkpoint,
    convert_state_dict,
    export_to_official,
    hf_to_official_key,
    infer_config,
    load_official_checkpoint,
    main,
    official_to_hf_key,
    to_official_state_dict,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TASKS = ("deblur", "derain", "denoise")
ARCHITECTURE = ("n_feat", "scale_unetfeats", "scale_orsnetfeats", "num_cab", "kernel_size", "reduction", "bias")
# Channel-attention blocks of the bundled (small, num_cab 2) configs, each with its own copy of the PReLU slope.
SMALL_PRELU_COPIES = 37


def bundled(task: str) -> str:
    return str(REPO_ROOT / "checkpoints" / f"mprnet-{task}-small")


def prelu_copies(official: dict) -> dict:
    return {key: value for key, value in official.items() if key.endswith(".body.1.weight")}


@pytest.mark.parametrize("task", TASKS)
def test_released_layout_is_reproduced_key_for_key(reference_dir, task):
    """The released models' full key lists: every name maps back to itself, and exporting a model of the released
    config gives exactly the official keys and shapes, 55 PReLU copies included."""
    shapes = {key: tuple(shape) for key, shape in json.loads((reference_dir / f"keys_{task}.json").read_text()).items()}
    num_cab = MPRNetConfig.for_task(task).num_cab
    for key in shapes:
        if official_to_hf_key(key, num_cab) != PRELU_KEY:
            assert hf_to_official_key(official_to_hf_key(key, num_cab), num_cab) == key
    with torch.device("meta"):
        model = MPRNetModel(MPRNetConfig.for_task(task))
    exported = to_official_state_dict(model.state_dict(), model.config)
    assert {key: tuple(value.shape) for key, value in exported.items()} == shapes
    assert len(prelu_copies(exported)) == 55


@pytest.mark.parametrize("name", FIXTURES)
def test_official_fixture_weights_come_back_unchanged(reference_dir, name):
    """Official weights converted here and exported again are the official state dict, tensor for tensor (the
    `variant` fixture covers bias=True, a 5x5 kernel, reduction 2 and num_cab 1)."""
    official = load_file(reference_dir / f"fixture_{name}_state.safetensors")
    config = infer_config({key: tuple(value.shape) for key, value in official.items()})
    exported = to_official_state_dict(convert_state_dict(official, config), config)
    assert set(exported) == set(official)
    for key, value in official.items():
        assert torch.equal(exported[key], value), key


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.slow
def test_export_then_convert_back_gives_identical_tensors_and_config(tmp_path, task, suffix):
    model = MPRNetModel.from_pretrained(bundled(task))
    path, config, count = export_to_official(bundled(task), tmp_path / f"model{suffix}")
    assert path == tmp_path / f"model{suffix}" and config.task == task
    back = convert_checkpoint(path, task=task)
    assert {field: getattr(back.config, field) for field in ARCHITECTURE + ("task",)} == {
        field: getattr(model.config, field) for field in ARCHITECTURE + ("task",)
    }
    original, returned = model.state_dict(), back.state_dict()
    assert set(returned) == set(original)
    for key, value in original.items():
        assert torch.equal(returned[key], value), key
    assert count == len(original) - 1 + SMALL_PRELU_COPIES


def test_prelu_copies_are_separate_equal_tensors(tmp_path):
    """The official layout stores the shared slope once per block: 37 equal copies, none sharing memory (safetensors
    refuses shared tensors, and an edit of one copy must not change the others)."""
    model = MPRNetModel.from_pretrained(bundled("derain"))
    exported = to_official_state_dict(model.state_dict(), model.config)
    copies = prelu_copies(exported)
    assert len(copies) == SMALL_PRELU_COPIES
    assert len({value.data_ptr() for value in copies.values()}) == SMALL_PRELU_COPIES
    assert all(torch.equal(value, model.prelu.weight.detach()) for value in copies.values())
    export_to_official(bundled("derain"), tmp_path / "model.safetensors")
    written = load_file(tmp_path / "model.safetensors")
    assert set(written) == set(exported)
    assert all(torch.equal(written[key], value) for key, value in exported.items())


def test_pth_export_is_an_official_style_checkpoint_readable_with_weights_only(tmp_path):
    """The official scripts read checkpoint["state_dict"]; the file needs nothing beyond weights_only loading."""
    export_to_official(bundled("denoise"), tmp_path / "model.pth")
    checkpoint = torch.load(tmp_path / "model.pth", map_location="cpu", weights_only=True)
    assert set(checkpoint) == {"state_dict"}
    assert "shallow_feat1.0.weight" in checkpoint["state_dict"]
    assert load_official_checkpoint(tmp_path / "model.pth").keys() == checkpoint["state_dict"].keys()


def test_local_attention_window_is_refused_with_the_reason(tmp_path):
    model = MPRNetModel.from_pretrained(bundled("deblur"))
    model.config.local_attention_window = 96
    model.save_pretrained(tmp_path / "windowed")
    with pytest.raises(ValueError, match="local_attention_window=96: the official channel attention .* whole image"):
        export_to_official(str(tmp_path / "windowed"), tmp_path / "model.safetensors")
    assert not list(tmp_path.glob("*.safetensors")) and not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("field", ["in_channels", "out_channels"])
def test_other_than_three_channels_is_refused_with_the_reason(tiny_config, field):
    # MPRNetConfig itself refuses such a config; a config edited after construction must not slip through either.
    config = tiny_config()
    model = MPRNetModel(config)
    setattr(config, field, 1)
    with pytest.raises(ValueError, match=f"{field}=1: the official model has exactly 3 \\(RGB\\) channels"):
        to_official_state_dict(model.state_dict(), config)


def test_a_name_that_does_not_map_back_is_refused(tiny_config):
    # An official name left in this library's state dict (a half-converted dict) would read back as another key.
    model = MPRNetModel(tiny_config())
    state = dict(model.state_dict(), **{"stage1_encoder.level1.0.body.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"stage1_encoder.level1.0.body.0.weight has no official MPRNet name"):
        to_official_state_dict(state, model.config)


def cli_error(capsys, *arguments) -> str:
    """The message of a refused command line, checked to be one plain line on stderr with exit status 2."""
    with pytest.raises(SystemExit) as exit_info:
        main(list(arguments))
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == "" and "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize(
    ("model", "output", "message"),
    [
        ("no/such-folder/here", "model.safetensors", "Model no/such-folder/here does not exist"),
        ("org/not-downloaded", "model.safetensors", "Model org/not-downloaded could not be loaded .*Hub id\\): "),
        ("{bundled}", "{bundled}/model.safetensors", "is a file of the model folder .*; write the export elsewhere"),
        ("{tmp}", "model.safetensors", "is not a model folder: it has no config.json"),
        ("{bundled}/model.safetensors", "model.safetensors", "is not a model folder: it has no config.json"),
        ("{detector}", "model.safetensors", "holds a '.+' model, not an MPRNet one"),
        ("{bundled}", "model.ckpt", "must end in .safetensors or .pth .* not '.ckpt'"),
        ("{bundled}", "model", "must end in .safetensors or .pth .* not 'no suffix'"),
        ("{bundled}", "missing/model.pth", "Cannot write missing/model.pth: the folder missing does not exist"),
        ("{bundled}", "folder.safetensors", "is a folder; name the file to write"),
    ],
)
def test_cli_names_what_is_wrong(tmp_path, capsys, monkeypatch, model, output, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder.safetensors").mkdir()
    places = {"tmp": tmp_path, "bundled": bundled("deblur"), "detector": REPO_ROOT / "checkpoints" / "mprnet-detector"}
    model, output = model.format(**places), output.format(**places)
    weights = (REPO_ROOT / "checkpoints" / "mprnet-deblur-small" / "model.safetensors").read_bytes()
    error = cli_error(capsys, "--to-official", model, "-o", output)
    assert error.startswith("error: ") and re.search(message, error), error
    assert not list(tmp_path.glob("**/*.pth")) and not list(tmp_path.glob("*.safetensors/*"))
    assert (REPO_ROOT / "checkpoints" / "mprnet-deblur-small" / "model.safetensors").read_bytes() == weights


@pytest.mark.skipif(not os.path.isdir("/sys"), reason="needs /sys, where no one may create files")
def test_cli_reports_an_unwritable_output(capsys):
    # /sys refuses new files even to root, which CI runs as (a read-only temporary folder would not stop root).
    error = cli_error(capsys, "--to-official", bundled("deblur"), "-o", "/sys/model.safetensors")
    assert error.startswith("error: Cannot write /sys/model.safetensors: "), error


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--to-official", "m"], "--to-official needs -o/--output"),
        (["--to-official", "m", "-o", "x.pth", "--task", "derain"], "--task only apply to --checkpoint"),
        (["--to-official", "m", "-o", "x.pth", "--output-dir", "d"], "--output-dir only apply to --checkpoint"),
        (["--checkpoint", "c.pth"], "--checkpoint needs --output-dir"),
        (["--checkpoint", "c.pth", "--output-dir", "d", "-o", "x.pth"], "-o/--output is for --to-official"),
        (["--checkpoint", "c.pth", "--to-official", "m"], "not allowed with argument"),
        ([], "one of the arguments --checkpoint --to-official is required"),
    ],
)
def test_cli_refuses_options_of_the_other_mode(capsys, arguments, message):
    error = cli_error(capsys, *arguments)
    assert message in error, error


@pytest.mark.slow
def test_console_command_exports(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mprnet_hf.hub.convert", "--to-official", bundled("derain"), "-o", "model.pth"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"to model.pth: {189 + SMALL_PRELU_COPIES} tensors in the official MPRNet layout" in result.stdout
    assert (tmp_path / "model.pth").is_file() and not list(tmp_path.glob(".*"))


# The real spandrel, as ComfyUI and chaiNNer run it: MPRNet comes from spandrel-extra-arches, added to spandrel's
# registry. `make install-dev` installs both from requirements-spandrel.txt, so these tests run wherever the suite does.


def pinned_versions(name: str) -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in (REPO_ROOT / name).read_text().splitlines())
    return dict(line.split("==") for line in lines if line)


@pytest.fixture(scope="module")
def spandrel_loader():
    from torchvision_stand_in import lent_while_importing

    with lent_while_importing():
        import spandrel
        import spandrel_extra_arches
    # The stand-in (a module without a spec) left with the import: nothing else in this process sees it.
    assert sys.modules.get("torchvision") is None or sys.modules["torchvision"].__spec__ is not None
    pins = pinned_versions("requirements-spandrel.txt")
    assert {name: version(name) for name in pins} == pins
    registry = spandrel.MAIN_REGISTRY.copy()
    registry.add(*spandrel_extra_arches.EXTRA_REGISTRY)
    return spandrel.ModelLoader(registry=registry)


def max_difference(first, second) -> float:
    return max((a - b).abs().max().item() for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.slow
def test_spandrel_detects_the_export_and_restores_as_this_library_does(tmp_path, spandrel_loader, task, suffix):
    model = MPRNetModel.from_pretrained(bundled(task)).eval()
    path, config, _ = export_to_official(bundled(task), tmp_path / f"model{suffix}")
    descriptor = spandrel_loader.load_from_file(path)  # loads the weights with strict=True
    assert descriptor.architecture.id == "MPRNet"
    expected = {"in_c": 3, "out_c": 3, **{field: getattr(config, field) for field in ARCHITECTURE}}
    assert descriptor.model.hyperparameters == expected
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        # A multiple of 8: every stage straight from spandrel's network (official order: final stage first).
        images = torch.rand(2, 3, 64, 96, generator=generator)
        stages = max_difference(descriptor.model(images), reversed(model(images).stage_reconstructions))
        # Any other size through spandrel's call, which pads by reflection to a multiple of 8 and clamps to [0, 1].
        images = torch.rand(1, 3, 37, 53, generator=generator)
        called = max_difference([descriptor(images)], [model(images).reconstruction.clamp(0, 1)])
    assert stages <= PARITY_TOLERANCE and called <= PARITY_TOLERANCE, (stages, called)


@pytest.mark.parametrize("name", FIXTURES)
def test_export_loads_strictly_into_the_official_structure_and_reproduces_its_outputs(
    reference_dir, spandrel_loader, name
):
    """spandrel-extra-arches' MPRNet class is the official architecture; built with the fixture's official constructor
    arguments, it takes the export of the fixture's converted weights with strict=True and computes the outputs the
    official code stored, the official demo's padding included."""
    from spandrel_extra_arches.architectures.MPRNet import MPRNet

    official = load_file(reference_dir / f"fixture_{name}_state.safetensors")
    config = infer_config({key: tuple(value.shape) for key, value in official.items()})
    network = MPRNet(**fixture_config(reference_dir, name)["constructor_kwargs"]).eval()
    network.load_state_dict(to_official_state_dict(convert_state_dict(official, config), config), strict=True)

    def restore(images):
        height, width = images.shape[-2:]
        padded = F.pad(images, (0, -width % 8, 0, -height % 8), mode="reflect")
        with torch.no_grad():
            return [stage[..., :height, :width] for stage in reversed(network(padded))]

    assert_within_tolerance(fixture_errors(restore, load_file(reference_dir / f"fixture_{name}_io.safetensors")))

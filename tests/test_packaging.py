"""The mprnet-hf distribution: pyproject.toml agrees with the Space's requirements.txt, every tool has a console
script, and a built wheel installed into a fresh virtual environment restores a photo offline outside the checkout."""

import os
import subprocess
import sys
import tomllib
import zipfile
from importlib import import_module

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO_ROOT
from mprnet_hf.hub.bundled import CHECKOUT_CHECKPOINTS, bundled_checkpoint

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
SCRIPTS = {"mprnet-restore", "mprnet-convert", "mprnet-train", "mprnet-evaluate", "mprnet-export-onnx"}


def requirements_file(name: str) -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in (REPO_ROOT / name).read_text().splitlines())
    requirements = [Requirement(line) for line in lines if line and not line.startswith("-")]
    return {canonicalize_name(requirement.name): requirement for requirement in requirements}


def pyproject_requirements(*groups: str) -> dict[str, Requirement]:
    """Requirements of the runtime (group "") and of the named extras, the package's own extras left out."""
    extras = PYPROJECT["optional-dependencies"]
    lists = [PYPROJECT["dependencies"] if group == "" else extras[group] for group in groups]
    requirements = [Requirement(text) for texts in lists for text in texts]
    return {canonicalize_name(req.name): req for req in requirements if canonicalize_name(req.name) != "mprnet-hf"}


def test_space_requirements_agree_with_pyproject():
    space = requirements_file("requirements.txt")
    declared = pyproject_requirements("", *PYPROJECT["optional-dependencies"])
    torch = space.pop("torch")
    for name, requirement in space.items():
        assert name in declared, f"requirements.txt lists {name}, which pyproject.toml does not"
        assert requirement.specifier == declared[name].specifier, f"{name}: {requirement} vs {declared[name]}"
    # The Space pins its own torch build; it must still be one that pyproject.toml accepts.
    assert declared["torch"].specifier.contains(next(iter(torch.specifier)).version), torch
    missing = set(pyproject_requirements("", "app")) - set(space) - {"torch"}
    assert not missing, f"the Space would miss {sorted(missing)} (add them to requirements.txt)"


def test_local_torch_pin_is_accepted_by_pyproject():
    torch = requirements_file("requirements-cpu.txt")["torch"]
    assert str(torch.specifier) == "==2.13.0"
    assert pyproject_requirements("")["torch"].specifier.contains("2.13.0")


@pytest.mark.slow
def test_every_tool_has_a_console_script_whose_help_works(capsys):
    scripts = PYPROJECT["scripts"]
    assert set(scripts) == SCRIPTS
    for name, target in scripts.items():
        module, function = target.split(":")
        with pytest.raises(SystemExit) as exit_info:
            getattr(import_module(module), function)(["--help"])
        assert exit_info.value.code == 0, name
        assert "usage:" in capsys.readouterr().out, name


def test_bundled_checkpoints_are_found_in_the_checkout():
    assert bundled_checkpoint("denoise") == CHECKOUT_CHECKPOINTS / "mprnet-denoise-small"
    with pytest.raises(ValueError, match="Unknown task 'sharpen'"):
        bundled_checkpoint("sharpen")


def build_wheel(destination) -> os.PathLike:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(destination),
            str(REPO_ROOT),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = destination.glob("mprnet_hf-*.whl")
    return wheel


def install_into_fresh_venv(wheel, folder):
    """Installs `wheel` alone into a new virtual environment, then lets it see this environment's installed
    dependencies (torch alone is gigabytes) through a .pth file, but not the checkout: a path in a .pth file is added
    as it stands, and the .pth files inside it (an editable install of this repository) are not read. The wheel goes
    in first, so pip does not take the editable install for it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=300)
    python = folder / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    new_site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dependencies = [path for path in sys.path if os.path.basename(path) in ("site-packages", "dist-packages")]
    (folder / new_site / "test_dependencies.pth").write_text("\n".join(dependencies) + "\n")
    return python


@pytest.mark.slow
def test_built_wheel_restores_offline_in_a_fresh_venv_outside_the_repository(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for task in ("deblur", "derain", "denoise"):
        assert f"mprnet_hf/checkpoints/mprnet-{task}-small/model.safetensors" in names
    assert not any(name.startswith(("tests/", "app.py", "benchmarks/")) for name in names)

    python = install_into_fresh_venv(wheel, tmp_path / "venv")
    work = tmp_path / "elsewhere"
    work.mkdir()
    from PIL import Image

    Image.open(REPO_ROOT / "examples" / "denoise" / "monarch_noise.png").crop((0, 0, 64, 48)).save(work / "photo.jpg")
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")

    where = subprocess.run(
        [python, "-c", "import mprnet_hf.hub.bundled as b; print(b.__file__); print(b.bundled_checkpoints_dir())"],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(path.startswith(str(tmp_path / "venv")) for path in where), where

    result = subprocess.run(
        [tmp_path / "venv" / "bin" / "mprnet-restore", "photo.jpg", "--task", "denoise", "--output", "out/"],
        cwd=work,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("1 restored, 0 skipped (already done), 0 failed")
    assert Image.open(work / "out" / "photo.png").size == (64, 48)

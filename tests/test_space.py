"""The Hugging Face Space installs and starts as its card says: a Python ZeroGPU offers, a torch ZeroGPU offers,
requirements.txt resolvable for that Python and platform, and every project file valid Python there."""

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import RepoCard
from packaging.requirements import Requirement

from conftest import REPO_ROOT

# What ZeroGPU offers (huggingface.co/docs/hub/spaces-zerogpu).
ZEROGPU_PYTHONS = {"3.10", "3.12"}
ZEROGPU_TORCHES = {"2.8.0", "2.9.1", "2.10.0", "2.11.0"}
SPACE_PLATFORM = "x86_64-manylinux_2_28"
CARD = RepoCard.load(REPO_ROOT / "README.md").data


def space_requirements() -> dict[str, Requirement]:
    lines = (line.split("#")[0].strip() for line in (REPO_ROOT / "requirements.txt").read_text().splitlines())
    return {Requirement(line).name: Requirement(line) for line in lines if line}


def test_card_names_a_python_and_torch_zerogpu_offers():
    assert CARD.sdk == "gradio" and CARD.app_file == "app.py"
    assert CARD.python_version in ZEROGPU_PYTHONS, CARD.python_version
    requirements = space_requirements()
    torch_pin = str(requirements["torch"].specifier).removeprefix("==")
    assert torch_pin in ZEROGPU_TORCHES, torch_pin
    assert str(requirements["gradio"].specifier) == f"=={CARD.sdk_version}"


@pytest.mark.slow
def test_space_requirements_resolve_for_its_python_and_platform(tmp_path):
    """A real resolver over the registry's metadata (no download of the wheels themselves)."""
    uv = str(Path(sys.executable).parent / "uv")  # the dev extra installs it beside this interpreter
    result = subprocess.run(
        [
            uv,
            "pip",
            "compile",
            str(REPO_ROOT / "requirements.txt"),
            "--python-version",
            CARD.python_version,
            "--python-platform",
            SPACE_PLATFORM,
            "--no-header",
            "--no-annotate",
            "--quiet",
            "--cache-dir",
            str(tmp_path / "uv-cache"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = dict(line.split("==") for line in result.stdout.splitlines() if "==" in line)
    assert resolved["torch"] == str(space_requirements()["torch"].specifier).removeprefix("==")
    assert resolved["transformers"] == "5.23.0" and "mcp" in resolved


def space_python() -> str | None:
    """An interpreter of the card's Python version: on PATH, or one pyenv installed."""
    version = CARD.python_version
    pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    candidates = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python{version}"))
    candidates.append(shutil.which(f"python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            return candidate
    return None


@pytest.mark.slow
def test_every_project_file_compiles_under_the_space_python():
    python = space_python()
    if python is None:
        pytest.skip(f"no Python {CARD.python_version} interpreter here (pyenv install {CARD.python_version})")
    files = [str(path) for path in REPO_ROOT.rglob("*.py") if not {".venv", "build", "dist"} & set(path.parts)]
    assert len(files) > 30
    compile_all = "import sys\nfor name in sys.argv[1:]:\n    compile(open(name).read(), name, 'exec')"
    result = subprocess.run([python, "-c", compile_all, *files], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

"""Shared test set-up: offline Hugging Face, the official reference fixtures, tiny configs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# The app bounds each request by CPU seconds measured at start-up; on a machine busy with the tests themselves that
# measure would refuse the larger test photos. Tests of the bound set their own.
os.environ.setdefault("MPRNET_MAX_SECONDS", "3600")
# The app serves with PyTorch in tests: the onnxruntime export it would start in the background takes minutes of CPU
# (tests/test_serving_speed.py covers that backend).
os.environ.setdefault("MPRNET_BACKEND", "torch")
# precision="auto" (the default of restore_image, the pipeline, the CLI and the app) runs as on a CPU without native
# bf16, fp32, whatever machine runs the suite: outputs compared with exact fp32 numbers stay exact. Tests of "auto"
# itself declare the CPU they simulate, and tests/test_precision.py's quality guard reads the real hardware.
os.environ.setdefault("MPRNET_CPU_BF16", "0")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
FIXTURES = ("deblur", "derain", "denoise", "variant")
PARITY_TOLERANCE = 1e-5  # max abs error allowed against the official fixtures


def _tiny_widths() -> dict:
    from mprnet_hf.models.mprnet.configuration_mprnet import MPRNetConfig

    return MPRNetConfig.size_widths("tiny")


# The widths of the tiny variant (`MPRNetConfig.for_task(task, size="tiny")`), which most tests build models from.
TINY = _tiny_widths()


@pytest.fixture
def tiny_config():
    """Makes a tiny-variant config with overrides: `tiny_config(reduction=2, task="derain")`."""
    from mprnet_hf.models.mprnet.configuration_mprnet import MPRNetConfig

    return lambda **overrides: MPRNetConfig(**{**TINY, **overrides})


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "README.md").is_file():
        pytest.skip(
            f"official reference fixtures not found at {REFERENCE_DIR} (they live beside the repo in ../shared)"
        )
    return REFERENCE_DIR


def fixture_config(reference_dir: Path, name: str) -> dict:
    return json.loads((reference_dir / f"fixture_{name}_config.json").read_text())


def fixture_model(reference_dir: Path, name: str, **config_overrides):
    """The MPRNetModel holding fixture `name`'s official weights (config inferred from their shapes), in eval mode."""
    from safetensors.torch import load_file

    from mprnet_hf import MPRNetModel
    from mprnet_hf.hub.convert import convert_state_dict, infer_config

    official = load_file(reference_dir / f"fixture_{name}_state.safetensors")
    config = infer_config({key: tuple(value.shape) for key, value in official.items()})
    for key, value in config_overrides.items():
        setattr(config, key, value)
    model = MPRNetModel(config).eval()
    model.load_state_dict(convert_state_dict(official, config), strict=True)
    return model


def fixture_errors(restore, io) -> dict[str, float]:
    """Max abs error of every fixture output; `restore(images)` returns the stage-1, 2 and 3 images."""
    errors = {}
    for i in (0, 1):
        stages = restore(io[f"input_{i}"])
        # The fixtures hold the official return order: final stage first.
        for j, stage in enumerate(reversed(stages)):
            errors[f"output_{i}_{j}"] = (stage.float() - io[f"output_{i}_{j}"]).abs().max().item()
    demo = restore(io["demo_input"])[-1].clamp(0, 1)
    errors["demo_output"] = (demo - io["demo_output"]).abs().max().item()
    return errors


def assert_within_tolerance(errors: dict[str, float]) -> None:
    worst = max(errors, key=errors.get)
    assert errors[worst] <= PARITY_TOLERANCE, f"{worst} differs by {errors[worst]:.3g}: {errors}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models on small tensors gain nothing from threads, and on a busy 2-core machine a thread pool makes them
    crawl (10x and more). Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def damaged_model_folder(tmp_path: Path) -> Path:
    """An MPRNet folder whose weights file was cut short or overwritten: its config reads, its weights do not."""
    folder = tmp_path / "damaged-model"
    folder.mkdir()
    (folder / "config.json").write_bytes(
        (REPO_ROOT / "checkpoints" / "mprnet-denoise-small" / "config.json").read_bytes()
    )
    (folder / "model.safetensors").write_bytes(b"not weights")
    return folder


def progressive_jpeg_repeating_its_last_scan(width: int, height: int, repeats: int) -> bytes:
    """A real progressive JPEG of one grey level whose last scan (a dozen bytes) is repeated `repeats` more times
    before its end: every copy costs the decoder a pass over the image, the calling card of a scan bomb."""
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    last_scan = data.rindex(b"\xff\xda")  # SOS of the last scan; the file ends with EOI (ff d9)
    return data[:-2] + data[last_scan:-2] * repeats + data[-2:]

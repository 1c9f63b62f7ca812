"""Shared test set-up: offline Hugging Face, the official reference fixtures, tiny configs."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference"
FIXTURES = ("deblur", "derain", "denoise", "variant")


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "README.md").is_file():
        pytest.skip(f"official reference fixtures not found at {REFERENCE_DIR} (they live beside the repo in ../shared)")
    return REFERENCE_DIR


def fixture_config(reference_dir: Path, name: str) -> dict:
    return json.loads((reference_dir / f"fixture_{name}_config.json").read_text())


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small models on small tensors gain nothing from threads, and on a busy 2-core machine a thread pool makes them
    crawl (10x and more). Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""The code a model folder carries so that it loads where `mprnet_hf` is not installed (`trust_remote_code=True`):
`AutoModel`, `AutoImageProcessor` and `pipeline(model=folder)`, with no task named.

`save_model_folder` writes a folder with all of it (the converter and the training export use it). The bundled
checkpoints' copies of the code are refreshed from the library with one command, and a test fails when they differ:

    make sync-remote-code        # python -m mprnet_hf.hub.remote_code
"""

import argparse
import json
import os
import shutil
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files

from ..models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from ..models.mprnet.modeling_mprnet import MPRNetModel
from ..models.mprnet.pipeline_mprnet import TASK, ImageRestorationPipeline
from .bundled import bundled_checkpoints_dir

# The model's own files sit flat in one folder, as they do in a Hub repo, and import each other relatively.
MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "mprnet"
# The modules a Hub repo loads by name (config.json's auto_map and custom_pipelines, preprocessor_config.json's
# auto_map); the modules they import come along.
ENTRY_MODULES = ("configuration_mprnet.py", "modeling_mprnet.py", "image_processing_mprnet.py", "pipeline_mprnet.py")
# What `Pipeline.save_pretrained` records for this pipeline in config.json (tests check the two agree).
CUSTOM_PIPELINES = {TASK: {"impl": "pipeline_mprnet.ImageRestorationPipeline", "pt": ["AutoModel"], "type": "image"}}


def remote_code_files() -> list[Path]:
    """The library files a model folder carries: the entry modules and everything they import relatively."""
    files = {MODEL_DIR / name for name in ENTRY_MODULES}
    for name in ENTRY_MODULES:
        files.update(Path(path) for path in get_relative_import_files(str(MODEL_DIR / name)))
    return sorted(files)


def save_model_folder(model: MPRNetModel, output_dir, processor: MPRNetImageProcessor | None = None) -> Path:
    """Saves `model` and its processor with everything `pipeline(model=output_dir, trust_remote_code=True)` needs:
    weights (safetensors), configs with their auto maps and `custom_pipelines`, and the code."""
    processor = processor or MPRNetImageProcessor()
    ImageRestorationPipeline(model=model, image_processor=processor).save_pretrained(output_dir)
    give_weights_ordinary_permissions(output_dir)
    return Path(output_dir)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux shows it (os.umask sets it, briefly, for every
    thread)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def give_weights_ordinary_permissions(folder) -> None:
    """safetensors (0.8) writes its files owner-only (0o600) whatever the umask; a model folder is there to be shared
    and served, so its weights get what any new file gets (0o666 less the umask)."""
    mode = 0o666 & ~current_umask()
    for path in Path(folder).glob("*.safetensors"):
        os.chmod(path, mode)


def stale_files(folder) -> list[str]:
    """Names of the remote-code files in `folder` that differ from the library's (or are missing)."""
    folder = Path(folder)
    stale = [
        path.name
        for path in remote_code_files()
        if not (folder / path.name).is_file() or (folder / path.name).read_bytes() != path.read_bytes()
    ]
    config = json.loads((folder / "config.json").read_text())
    if config.get("custom_pipelines") != CUSTOM_PIPELINES:
        stale.append("config.json")
    return stale


def sync_folder(folder) -> list[str]:
    """Copies the library's remote-code files into `folder` and records the pipeline in its config.json; returns
    the names of the files that changed."""
    folder = Path(folder)
    changed = stale_files(folder)
    for path in remote_code_files():
        shutil.copyfile(path, folder / path.name)
    if "config.json" in changed:
        config = json.loads((folder / "config.json").read_text())
        config["custom_pipelines"] = CUSTOM_PIPELINES
        (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return changed


def bundled_folders() -> list[Path]:
    """The bundled MPRNet folders (the degradation detector beside them is a plain transformers ResNet, no code)."""
    configs = bundled_checkpoints_dir().glob("*/config.json")
    return sorted(
        path.parent
        for path in configs
        if json.loads(path.read_text()).get("model_type") == MPRNetModel.config_class.model_type
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Refresh the remote-code copies in model folders from the library.")
    parser.add_argument("folders", nargs="*", type=Path, help="model folders (default: the bundled checkpoints)")
    args = parser.parse_args(argv)
    for folder in args.folders or bundled_folders():
        if not (folder / "config.json").is_file():
            parser.error(f"{folder} is not a model folder (no config.json)")
        changed = sync_folder(folder)
        print(f"{folder}: {', '.join(changed) if changed else 'up to date'}")


if __name__ == "__main__":
    main()

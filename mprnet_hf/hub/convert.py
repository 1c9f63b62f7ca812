"""Convert an official MPRNet checkpoint (`model_deblurring.pth` etc.) to a Hugging Face model folder, and back.

    mprnet-convert --checkpoint model_deblurring.pth --output-dir mprnet-deblur [--task deblur]
        [--push-to-hub org/mprnet-deblur]
    mprnet-convert --to-official MODEL -o model.safetensors   # or model.pth

Every hyper-parameter is inferred from the tensor shapes, so non-default variants convert too. --to-official writes
the weights of a model folder or Hub id under the official key names, which the official code and spandrel (ComfyUI,
chaiNNer) load.
"""

import argparse
import contextlib
import json
import os
import re
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from transformers.utils import logging as transformers_logging

from ..models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from ..models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from ..models.mprnet.modeling_mprnet import MPRNetModel
from ..models.mprnet.pipeline_mprnet import ImageRestorationPipeline
from .model_cards import official_model_card, save_model_card
from .remote_code import save_model_folder

PRELU_KEY = "prelu.weight"
# Keys every MPRNet checkpoint has; the hyper-parameters are read from their shapes.
ANCHOR_KEYS = (
    "shallow_feat1.0.weight",
    "shallow_feat1.1.CA.conv_du.0.weight",
    "stage1_encoder.down12.down.1.weight",
    "stage1_encoder.encoder_level2.0.CA.conv_du.0.weight",
    "stage1_encoder.encoder_level3.0.CA.conv_du.0.weight",
    "stage3_orsnet.orb1.body.0.CA.conv_du.0.weight",
    "concat23.weight",
    "tail.weight",
)


def official_to_hf_key(key: str, num_cab: int) -> str:
    """Maps an official state-dict key to this library's name; every PReLU copy maps to the one shared slope."""
    key = re.sub(r"^shallow_feat(\d)\.0\.", r"stage\1_shallow.conv.", key)
    key = re.sub(r"^shallow_feat(\d)\.1\.", r"stage\1_shallow.attention_block.", key)
    key = re.sub(r"\.(?:encoder|decoder)_level(\d)\.", r".level\1.", key)
    key = key.replace(".skip_attn", ".skip_attention")
    key = re.sub(r"\.(?:down|up)\.1\.", ".conv.", key)
    orb = re.match(r"^(stage3_orsnet\.orb\d)\.body\.(\d+)\.(.*)$", key)
    if orb:
        prefix, index, rest = orb.groups()
        key = f"{prefix}.conv.{rest}" if int(index) == num_cab else f"{prefix}.blocks.{index}.{rest}"
    if key.endswith(".body.1.weight"):
        return PRELU_KEY
    key = key.replace(".body.0.", ".conv1.").replace(".body.2.", ".conv2.")
    return key.replace(".CA.conv_du.0.", ".channel_attention.squeeze.").replace(
        ".CA.conv_du.2.", ".channel_attention.excite."
    )


def load_official_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads an official checkpoint (plain, `{'state_dict': ...}`, DataParallel `module.` keys) or a safetensors
    file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Checkpoint {path} does not exist or is not a file")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except Exception as error:
            raise ValueError(f"{path} is not a readable safetensors file: {error}") from error
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint with weights_only=True ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Pass an official MPRNet .pth file."
        ) from error
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise ValueError(f"{path} holds no state dict (expected a mapping of parameter names to tensors)")
    not_tensors = [key for key, value in checkpoint.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path} is not an MPRNet checkpoint: entries that are not tensors: {not_tensors[:5]}")
    if all(key.startswith("module.") for key in checkpoint):
        checkpoint = {key[len("module.") :]: value for key, value in checkpoint.items()}
    return dict(checkpoint)


def _infer_reduction(squeeze_widths: dict[int, int]) -> int:
    widest = max(squeeze_widths)
    for reduction in range(1, widest + 1):
        if all(width // reduction == squeezed for width, squeezed in squeeze_widths.items()):
            return reduction
    raise ValueError(f"No channel-attention reduction fits the squeeze widths {squeeze_widths}")


def infer_config(shapes: Mapping[str, tuple[int, ...]], task: str = "deblur") -> MPRNetConfig:
    """Builds the config that a state dict with these key -> shape entries was trained with."""
    missing = [key for key in ANCHOR_KEYS if key not in shapes]
    if missing:
        raise ValueError(f"Not an MPRNet checkpoint: missing keys {missing}")
    shapes = {key: tuple(shape) for key, shape in shapes.items()}
    n_feat, in_channels, kernel_size, _ = shapes["shallow_feat1.0.weight"]
    width2 = shapes["stage1_encoder.down12.down.1.weight"][0]
    width3 = shapes["stage1_encoder.encoder_level3.0.CA.conv_du.0.weight"][1]
    orsnet_width = shapes["concat23.weight"][0]
    orb_indices = {int(m.group(1)) for key in shapes if (m := re.match(r"^stage3_orsnet\.orb1\.body\.(\d+)\.", key))}
    squeeze_widths = {
        n_feat: shapes["shallow_feat1.1.CA.conv_du.0.weight"][0],
        width2: shapes["stage1_encoder.encoder_level2.0.CA.conv_du.0.weight"][0],
        width3: shapes["stage1_encoder.encoder_level3.0.CA.conv_du.0.weight"][0],
        orsnet_width: shapes["stage3_orsnet.orb1.body.0.CA.conv_du.0.weight"][0],
    }
    if width3 - width2 != width2 - n_feat:
        raise ValueError(f"Not an MPRNet checkpoint: U-Net widths {n_feat}, {width2}, {width3} do not grow evenly")
    return MPRNetConfig(
        in_channels=in_channels,
        out_channels=shapes["tail.weight"][0],
        n_feat=n_feat,
        scale_unetfeats=width2 - n_feat,
        scale_orsnetfeats=orsnet_width - n_feat,
        num_cab=max(orb_indices),
        kernel_size=kernel_size,
        reduction=_infer_reduction(squeeze_widths),
        bias=any(key.endswith(".bias") for key in shapes),
        task=task,
    )


def convert_state_dict(official: Mapping[str, torch.Tensor], config: MPRNetConfig) -> dict[str, torch.Tensor]:
    """Renames official keys, folds the PReLU copies into one after checking they agree."""
    converted, prelu_values = {}, {}
    for key, tensor in official.items():
        new_key = official_to_hf_key(key, config.num_cab)
        if new_key == PRELU_KEY:
            prelu_values[key] = tensor
        else:
            converted[new_key] = tensor.detach().to(torch.float32).contiguous()
    if not prelu_values:
        raise ValueError("Not an MPRNet checkpoint: no PReLU (`*.body.1.weight`) entries found")
    reference_key, reference = next(iter(prelu_values.items()))
    differing = [
        key
        for key, value in prelu_values.items()
        if value.shape != reference.shape or not torch.equal(value, reference)
    ]
    if differing:
        raise ValueError(
            f"MPRNet shares one PReLU across all blocks, but {len(differing)} of the {len(prelu_values)} copies differ "
            f"from {reference_key} (e.g. {differing[:3]}); this checkpoint was not trained with the official model"
        )
    converted[PRELU_KEY] = reference.detach().to(torch.float32).reshape(1).clone()
    return converted


def convert_checkpoint(checkpoint_path, output_dir=None, task: str | None = None, push_to_hub: str | None = None):
    """Converts, verifies that every key is used, saves the folder (and pushes it); returns the loaded model."""
    official = load_official_checkpoint(checkpoint_path)
    task = task or _guess_task(Path(checkpoint_path).name)
    config = infer_config({key: tuple(value.shape) for key, value in official.items()}, task=task)
    state_dict = convert_state_dict(official, config)

    model = MPRNetModel(config).eval()
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = sorted(key for key in set(expected) & set(state_dict) if expected[key].shape != state_dict[key].shape)
    if missing or unexpected or wrong_shape:
        raise ValueError(
            "Checkpoint does not match the MPRNet architecture inferred from it: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, wrong shape {wrong_shape[:5]}"
        )
    model.load_state_dict(state_dict, strict=True)

    if output_dir is not None:
        save_model_folder(model, output_dir)
        save_model_card(official_model_card(config, push_to_hub), output_dir)
    if push_to_hub:
        # The pipeline pushes the model, its processor and the code that loads them without mprnet_hf.
        ImageRestorationPipeline(model=model, image_processor=MPRNetImageProcessor()).push_to_hub(push_to_hub)
        official_model_card(config, push_to_hub).push_to_hub(push_to_hub)
    return model


def _guess_task(filename: str) -> str:
    for keyword, task in (("deblur", "deblur"), ("derain", "derain"), ("denois", "denoise")):
        if keyword in filename.lower():
            return task
    return "deblur"


# Export to the official layout: the inverse of the conversion above, so the weights trained or converted here load
# where only the official architecture is known (the official code, spandrel and with it ComfyUI and chaiNNer).

OFFICIAL_SUFFIXES = (".safetensors", ".pth")
# A Hub id is owner/name; anything else that is not an existing path is a mistyped folder, not worth a network try.
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
CAB_FIRST_CONV = ".body.0.weight"
CAB_PRELU = ".body.1.weight"


def official_layout_problems(config: MPRNetConfig) -> list[str]:
    """What the official architecture cannot express about `config`; empty when the export is faithful."""
    problems = []
    if config.local_attention_window:
        problems.append(
            f"local_attention_window={config.local_attention_window}: the official channel attention always averages "
            "over the whole image, so the exported weights would restore differently there (set it to 0 in "
            "config.json to export with the official global statistics)"
        )
    problems.extend(
        f"{name}={getattr(config, name)}: the official model has exactly 3 (RGB) channels"
        for name in ("in_channels", "out_channels")
        if getattr(config, name) != 3
    )
    return problems


def hf_to_official_key(key: str, num_cab: int) -> str:
    """This library's name of a parameter -> its official name: `official_to_hf_key` undone, step by step in reverse.
    The shared PReLU has no single official name (see `to_official_state_dict`)."""
    key = key.replace(".channel_attention.squeeze.", ".CA.conv_du.0.").replace(
        ".channel_attention.excite.", ".CA.conv_du.2."
    )
    # Only the channel-attention blocks had their body renamed; the supervised attention modules' conv1..3 are
    # official names.
    if not re.match(r"^sam\d+\.", key):
        key = key.replace(".conv1.", ".body.0.").replace(".conv2.", ".body.2.")
    orb = re.match(r"^(stage3_orsnet\.orb\d)\.(?:blocks\.(\d+)|conv)\.(.*)$", key)
    if orb:
        prefix, index, rest = orb.groups()
        # An original-resolution block's last convolution follows its num_cab attention blocks in one Sequential.
        key = f"{prefix}.body.{num_cab if index is None else index}.{rest}"
    # Resize modules: the official ones wrap their convolution in a Sequential after the resize (`down.1`, `up.1`).
    key = re.sub(r"\.(down[^.]*(?:\.\d+)?)\.conv\.", r".\1.down.1.", key)
    key = re.sub(r"\.(up[^.]*(?:\.\d+)?)\.conv\.", r".\1.up.1.", key)
    key = key.replace(".skip_attention", ".skip_attn")
    key = re.sub(r"^(stage\d_(encoder|decoder))\.level(\d)\.", r"\1.\2_level\3.", key)
    key = re.sub(r"^stage(\d)_shallow\.conv\.", r"shallow_feat\1.0.", key)
    return re.sub(r"^stage(\d)_shallow\.attention_block\.", r"shallow_feat\1.1.", key)


def to_official_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: MPRNetConfig
) -> "OrderedDict[str, torch.Tensor]":
    """This library's state dict under the official names, in float32, with the shared PReLU slope cloned into every
    channel-attention block as the official model stores it (clones: safetensors refuses tensors sharing memory).
    Every name is checked to convert back to the one it came from."""
    problems = official_layout_problems(config)
    if problems:
        raise ValueError("The official MPRNet architecture cannot express this model: " + "; ".join(problems))
    if PRELU_KEY not in state_dict or state_dict[PRELU_KEY].numel() != 1:
        raise ValueError(f"Not an MPRNet state dict: no single shared PReLU slope ({PRELU_KEY})")
    slope = state_dict[PRELU_KEY].detach().to(torch.float32).reshape(1)
    official = OrderedDict()
    for key, tensor in state_dict.items():
        if key == PRELU_KEY:
            continue
        official_key = hf_to_official_key(key, config.num_cab)
        if official_key in official or official_to_hf_key(official_key, config.num_cab) != key:
            raise ValueError(f"{key} has no official MPRNet name (it would be written as {official_key})")
        official[official_key] = tensor.detach().to(torch.float32, copy=True).contiguous()
        if official_key.endswith(CAB_FIRST_CONV):
            # Right after the block's first convolution, where the official block applies the activation.
            official[official_key.removesuffix(CAB_FIRST_CONV) + CAB_PRELU] = slope.clone()
    return official


def load_model_for_export(source: str):
    """Loads a model folder (bundled, trained, converted) or a Hub id, with errors that name what is wrong."""
    folder = Path(source).expanduser()
    if folder.exists():
        check_model_folder(folder)
    elif not HUB_ID.match(source):
        raise ValueError(
            f"Model {source} does not exist: pass a model folder (written by save_pretrained, mprnet-train or "
            "mprnet-convert) or a Hub id such as org/mprnet-deblur"
        )
    try:
        return MPRNetModel.from_pretrained(str(folder) if folder.exists() else source).eval()
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        # A mistyped relative folder such as checkpoints/mprnet-deblur also reads as a Hub id.
        where = "" if folder.exists() else " (no such folder here, so it was tried as a Hub id)"
        raise ValueError(f"Model {source} could not be loaded{where}: {reason}") from error


def check_model_folder(folder: Path) -> None:
    config = folder / "config.json"
    if not config.is_file():
        raise ValueError(f"{folder} is not a model folder: it has no config.json (pass the folder, not a file in it)")
    try:
        model_type = json.loads(config.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ValueError(f"{config} is not a readable config.json: {error}") from error
    if model_type != MPRNetConfig.model_type:
        raise ValueError(f"{folder} holds a {model_type!r} model, not an MPRNet one")


def check_output_path(output: str | Path) -> Path:
    """The file to export to, refused before any model is loaded when its name or folder cannot work."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in OFFICIAL_SUFFIXES:
        raise ValueError(
            f"Output {output} must end in .safetensors or .pth (what the official code and spandrel read), "
            f"not {path.suffix or 'no suffix'!r}"
        )
    if path.is_dir():
        raise ValueError(f"Output {output} is a folder; name the file to write, such as {path / 'model.safetensors'}")
    if not path.parent.is_dir():
        raise ValueError(f"Cannot write {output}: the folder {path.parent} does not exist")
    return path


def save_official_checkpoint(state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Writes beside `path`, then renames into place: a failed write never leaves a truncated file under the name
    ComfyUI or chaiNNer would pick up. The file is opened here, so every failure to write is one OSError."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as file:
            if path.suffix.lower() == ".safetensors":
                file.write(save(dict(state), metadata={"format": "pt"}))
            else:
                # The official demo and test scripts read checkpoint["state_dict"]; spandrel unwraps it as well.
                torch.save({"state_dict": OrderedDict(state)}, file)
        os.replace(partial, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        raise ValueError(f"Cannot write {path}: {error.strerror or error}") from error


def export_to_official(source: str, output: str | Path) -> tuple[Path, MPRNetConfig, int]:
    """Writes the weights of `source` in the official layout to `output` (.safetensors or .pth); returns the path,
    the model's config and the number of tensors written."""
    path = check_output_path(output)
    folder = Path(source).expanduser()
    if path.is_file() and folder.is_dir() and path.resolve().parent == folder.resolve():
        # Over model.safetensors this would destroy the very model it exports.
        raise ValueError(f"Output {output} is a file of the model folder {source}; write the export elsewhere")
    model = load_model_for_export(source)
    state = to_official_state_dict(model.state_dict(), model.config)
    save_official_checkpoint(state, path)
    return path, model.config, len(state)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", help="official .pth checkpoint (or a safetensors state dict) to convert")
    mode.add_argument(
        "--to-official",
        metavar="MODEL",
        help="model folder or Hub id to export to the official layout (for spandrel, ComfyUI, chaiNNer)",
    )
    parser.add_argument("--output-dir", help="with --checkpoint: folder to write the Hugging Face model to")
    parser.add_argument("-o", "--output", help="with --to-official: file to write, ending in .safetensors or .pth")
    parser.add_argument("--task", choices=TASKS, help="task of the weights (default: guessed from the file name)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload to this Hub repository")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args) -> None:
    """Each mode's options, refused in the other mode rather than silently ignored."""
    if args.checkpoint is not None:
        if args.output_dir is None:
            parser.error("--checkpoint needs --output-dir")
        if args.output is not None:
            parser.error("-o/--output is for --to-official; --checkpoint writes a folder given by --output-dir")
        return
    if args.output is None:
        parser.error("--to-official needs -o/--output (a .safetensors or .pth file)")
    extra = [name for name in ("output_dir", "task", "push_to_hub") if getattr(args, name) is not None]
    if extra:
        options = ", ".join("--" + name.replace("_", "-") for name in extra)
        parser.error(f"{options} only apply to --checkpoint, not to --to-official")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_arguments(parser, args)
    try:
        if args.to_official is not None:
            # A bar for reading a few hundred tensors from disk is noise beside the one line this command prints.
            transformers_logging.disable_progress_bar()
            path, config, tensors = export_to_official(args.to_official, args.output)
        else:
            model = convert_checkpoint(args.checkpoint, args.output_dir, args.task, args.push_to_hub)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    if args.to_official is not None:
        print(
            f"Exported {args.to_official} ({config.task}, n_feat {config.n_feat}) to {path}: {tensors} tensors "
            "in the official MPRNet layout"
        )
        return
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"Converted {args.checkpoint} ({model.config.task}, {parameters:,} parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()

"""Convert an official MPRNet checkpoint (`model_deblurring.pth` etc.) to a Hugging Face model folder.

    python -m mprnet_hf.hub.convert --checkpoint model_deblurring.pth --output-dir mprnet-deblur [--task deblur]
        [--push-to-hub org/mprnet-deblur]

Every hyper-parameter is inferred from the tensor shapes, so non-default variants convert too.
"""

import argparse
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from ..models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from .model_cards import official_model_card, save_model_card

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
        from safetensors.torch import load_file

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
    from ..models.mprnet.image_processing_mprnet import MPRNetImageProcessor
    from ..models.mprnet.modeling_mprnet import MPRNetModel
    from ..models.mprnet.pipeline_mprnet import ImageRestorationPipeline
    from .remote_code import save_model_folder

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="official .pth checkpoint (or a safetensors state dict)")
    parser.add_argument("--output-dir", required=True, help="folder to write the Hugging Face model to")
    parser.add_argument("--task", choices=TASKS, help="task of the weights (default: guessed from the file name)")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", help="also upload to this Hub repository")
    args = parser.parse_args(argv)
    try:
        model = convert_checkpoint(args.checkpoint, args.output_dir, args.task, args.push_to_hub)
    except ValueError as error:
        parser.exit(2, f"error: {error}\n")
    parameters = sum(parameter.numel() for parameter in model.parameters())
    print(f"Converted {args.checkpoint} ({model.config.task}, {parameters:,} parameters) to {args.output_dir}")


if __name__ == "__main__":
    main()

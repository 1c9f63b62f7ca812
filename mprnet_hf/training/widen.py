"""Widen trained MPRNet weights into a wider network that computes the same restoration, to train further from there.

A wider preset trained from scratch needs hours of CPU before it catches up with the weights it would replace. A
widened copy starts where those weights are: every channel of the narrow network keeps its place (the first
channels of each feature map of the wide one), the added channels start from the model's usual random
initialisation, and every weight that reads an added channel into an original one starts at zero. So the added
channels compute something from the start but change nothing until training moves those zero weights, and the wide
network's output equals the narrow one's (to float rounding) before its first step.

    python -m mprnet_hf.training.widen checkpoints/mprnet-deblur-small runs/mprnet-deblur-medium --size medium

(`--size medium` is `--n-feat 20 --scale-unetfeats 10 --scale-orsnetfeats 10`: any wider widths may be given.)

Then train it with `python -m mprnet_hf.training.train --init-from runs/mprnet-deblur-medium ...`.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch

from ..hub.bundled import WEIGHT_LOAD_ERRORS
from ..hub.remote_code import save_model_folder
from ..models.mprnet.configuration_mprnet import MPRNetConfig
from ..models.mprnet.modeling_mprnet import MPRNetModel
from .interpolate import load_model
from .train import read_training_summary

WIDTH_FIELDS = ("n_feat", "scale_unetfeats", "scale_orsnetfeats")
# Convolutions whose input is two n_feat-wide feature maps side by side (stage shallow features, then the previous
# stage's): in the wide network the second map starts at the wide n_feat, not right after the narrow one's channels.
CONCATENATED_INPUTS = ("concat12.weight", "concat23.weight")


def wider_config(config: MPRNetConfig, **widths: int) -> MPRNetConfig:
    """`config` with the widths in `widths` (`WIDTH_FIELDS`) changed; each may only grow."""
    unknown = set(widths) - set(WIDTH_FIELDS)
    if unknown:
        raise ValueError(f"Only {', '.join(WIDTH_FIELDS)} can be widened, not {', '.join(sorted(unknown))}")
    for name, value in widths.items():
        if value < getattr(config, name):
            raise ValueError(
                f"{name}={value} is narrower than the weights' {getattr(config, name)}: widening only grows"
            )
    return MPRNetConfig.from_dict({**config.to_dict(), **widths})


def input_channel_places(name: str, narrow: int, narrow_n_feat: int, wide_n_feat: int) -> torch.Tensor:
    """Where each of a narrow weight's `narrow` input channels sits among the wide weight's input channels."""
    places = torch.arange(narrow)
    if name in CONCATENATED_INPUTS:
        second = places >= narrow_n_feat
        places[second] += wide_n_feat - narrow_n_feat
    return places


@torch.no_grad()
def widen(model: MPRNetModel, seed: int = 0, **widths: int) -> MPRNetModel:
    """A wider `MPRNetModel` (`widths`: new values of `WIDTH_FIELDS`) that restores exactly as `model` does until it
    is trained; the added channels are randomly initialised (`seed`), and the weights reading them into the original
    channels are zero."""
    config = wider_config(model.config, **widths)
    torch.manual_seed(seed)
    wide = MPRNetModel(config).eval()
    narrow_state = model.state_dict()
    wide_state = wide.state_dict()
    if narrow_state.keys() != wide_state.keys():
        raise ValueError("The weights and the wider network have different layers: only widths may change")
    for name, narrow_tensor in narrow_state.items():
        target = wide_state[name]
        if target.ndim != narrow_tensor.ndim or any(w < n for w, n in zip(target.shape, narrow_tensor.shape)):
            raise ValueError(f"{name}: {tuple(narrow_tensor.shape)} does not fit in {tuple(target.shape)}")
        outputs = narrow_tensor.shape[0]
        if target.ndim < 2:  # biases and the PReLU slope: the original channels keep their values
            target[:outputs] = narrow_tensor
            continue
        places = input_channel_places(name, narrow_tensor.shape[1], model.config.n_feat, config.n_feat)
        target[:outputs] = 0
        target[:outputs, places, : narrow_tensor.shape[2], : narrow_tensor.shape[3]] = narrow_tensor
    wide.load_state_dict(wide_state)
    return wide


def carry_training_history(source: Path, output_dir: Path, narrow: MPRNetConfig, wide: MPRNetConfig) -> None:
    """The widened weights carry the training of the weights they come from (its log and summary, so that a run
    continuing from them counts every CPU-hour), with the widening recorded in the summary."""
    log = source / "training_log.jsonl"
    if log.is_file():
        shutil.copyfile(log, output_dir / log.name)
    summary = read_training_summary(source)
    summary["widened"] = {
        "from": {name: getattr(narrow, name) for name in WIDTH_FIELDS},
        "to": {name: getattr(wide, name) for name in WIDTH_FIELDS},
        "at_step": summary.get("steps", 0),
    }
    (output_dir / "training_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("weights", help="a model folder (save_pretrained), e.g. checkpoints/mprnet-deblur-small")
    parser.add_argument("output_dir", help="where the widened model is saved")
    parser.add_argument("--size", choices=("medium", "small"), help="the widths of this size (MPRNetConfig.SIZES)")
    for name in WIDTH_FIELDS:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, dest=name)
    parser.add_argument("--seed", type=int, default=0, help="seed of the added channels' initialisation")
    args = parser.parse_args(argv)
    size = MPRNetConfig.size_widths(args.size) if args.size else {}
    widths = {name: getattr(args, name) or size.get(name) for name in WIDTH_FIELDS}
    widths = {name: value for name, value in widths.items() if value is not None}
    if not widths:
        parser.error(f"give --size or at least one of {', '.join('--' + n.replace('_', '-') for n in WIDTH_FIELDS)}")
    try:
        model = load_model(Path(args.weights))
    except WEIGHT_LOAD_ERRORS as error:
        raise SystemExit(f"Cannot widen {args.weights}: {error}") from None
    if args.size and model.config.num_cab != size["num_cab"]:
        raise SystemExit(
            f"Cannot widen {args.weights} to {args.size}: it has {model.config.num_cab} attention blocks per level, "
            f"{args.size} has {size['num_cab']}, and widening adds channels, not blocks"
        )
    try:
        wide = widen(model, seed=args.seed, **widths)
    except ValueError as error:
        raise SystemExit(f"Cannot widen {args.weights}: {error}") from None
    output_dir = save_model_folder(wide, args.output_dir)
    carry_training_history(Path(args.weights), output_dir, model.config, wide.config)
    narrow_count = sum(p.numel() for p in model.parameters())
    wide_count = sum(p.numel() for p in wide.parameters())
    print(f"Saved {args.output_dir}: {wide_count:,} weights (from {narrow_count:,})")


if __name__ == "__main__":
    main()

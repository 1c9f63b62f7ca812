r"""Weights part of the way between a model and its own fine-tune, or between two fine-tunes of one model
(weight-space interpolation, as in WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot models", CVPR 2022).

A fine-tune on the broad synthesis gains on degradations nobody here made and loses a little on the ones the
starting weights specialised in; the weights between the two often keep most of both, because a fine-tune stays in
the same basin of the loss. Each `--weight` writes one model folder, scored like any other candidate:

    python -m mprnet_hf.training.interpolate --start checkpoints/mprnet-derain-small \
        --end runs/candidates/mprnet-derain-small --weight 0.5 --weight 0.7 --output-dir runs/soups
    # -> runs/soups/w0.5/mprnet-derain-small, runs/soups/w0.7/mprnet-derain-small
    python scripts/quality_report.py --checkpoints runs/soups/w0.5 --tasks derain ...

Only weights of one architecture mix: the two configs must agree on every field but the bookkeeping ones.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch

from ..hub.bundled import WEIGHT_LOAD_ERRORS, checkpoint_name
from ..hub.model_cards import save_model_card, trained_model_card
from ..hub.remote_code import save_model_folder
from ..models.mprnet.modeling_mprnet import MPRNetModel
from .train import earlier_phases, read_training_summary

# Config fields that say where weights came from, not what they compute.
BOOKKEEPING_FIELDS = {"_name_or_path", "transformers_version", "architectures", "auto_map", "custom_pipelines"}


def architecture_fields(model: MPRNetModel) -> dict:
    return {key: value for key, value in model.config.to_dict().items() if key not in BOOKKEEPING_FIELDS}


def interpolate_models(start: MPRNetModel, end: MPRNetModel, weight: float) -> MPRNetModel:
    """A new model whose every tensor is `(1 - weight) * start + weight * end` (0: `start`, 1: `end`)."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be between 0 (the start) and 1 (the end), got {weight!r}")
    start_fields, end_fields = architecture_fields(start), architecture_fields(end)
    differing = sorted(
        key for key in start_fields.keys() | end_fields.keys() if start_fields.get(key) != end_fields.get(key)
    )
    if differing:
        raise ValueError(
            f"The two models differ in {', '.join(differing)}: only weights of one architecture and task can be "
            "interpolated. Give a model and a fine-tune of it."
        )
    end_state = end.state_dict()
    mixed = {}
    for name, tensor in start.state_dict().items():
        if tensor.is_floating_point():
            mixed[name] = torch.lerp(tensor, end_state[name].to(tensor.dtype), weight)
        else:  # counters and the like: the fine-tune's own
            mixed[name] = end_state[name].clone()
    model = MPRNetModel(end.config)
    model.load_state_dict(mixed)
    return model.eval()


def interpolated_summary(start_dir: Path, end_dir: Path, weight: float) -> dict:
    """The end's training summary with the interpolation as its last phase, so the model card and any later
    fine-tune's summary tell it. Phases of the start that the end does not share (two fine-tunes of one model) go
    into that phase, and their time into the total."""
    start, summary = read_training_summary(start_dir), read_training_summary(end_dir)
    end_phases = earlier_phases(summary)
    start_only = [phase for phase in earlier_phases(start) if phase not in end_phases]
    interpolation = {"start": str(start_dir), "end": str(end_dir), "weight": weight}
    if start_only:
        interpolation["start_phases"] = start_only
    seconds = sum(phase.get("seconds", 0.0) for phase in start_only)
    summary["phases"] = end_phases + [{"steps": 0, "seconds": seconds, "interpolation": interpolation}]
    summary["seconds"] = summary.get("seconds", 0.0) + seconds
    summary["steps"] = summary.get("steps", 0) + sum(phase.get("steps", 0) for phase in start_only)
    return summary


def load_model(folder: Path) -> MPRNetModel:
    if not (folder / "config.json").is_file():
        raise ValueError(f"{folder} is not a model folder (no config.json): give a folder written by save_pretrained")
    return MPRNetModel.from_pretrained(folder).eval()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--start", required=True, help="weight 0: e.g. the weights a fine-tune started from (a model folder)"
    )
    parser.add_argument("--end", required=True, help="weight 1: e.g. the fine-tuned weights (a model folder)")
    parser.add_argument(
        "--weight",
        type=float,
        action="append",
        required=True,
        help="how far towards --end, 0 to 1; repeat for several (each gets OUTPUT_DIR/w{weight}/)",
    )
    parser.add_argument("--output-dir", required=True, help="where the model folders are written")
    args = parser.parse_args(argv)
    for weight in args.weight:
        if not 0.0 <= weight <= 1.0:
            parser.error(f"--weight must be between 0 and 1, got {weight}")
    return args


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    start_dir, end_dir = Path(args.start), Path(args.end)
    try:
        start, end = load_model(start_dir), load_model(end_dir)
        models = [(weight, interpolate_models(start, end, weight)) for weight in args.weight]
    except WEIGHT_LOAD_ERRORS as error:
        raise SystemExit(f"error: {error}") from None
    written = []
    for weight, model in models:
        folder = Path(args.output_dir) / f"w{weight:g}" / checkpoint_name(model.config.task)
        save_model_folder(model, folder)
        summary = interpolated_summary(start_dir, end_dir, weight)
        (folder / "training_summary.json").write_text(json.dumps(summary, indent=2))
        save_model_card(trained_model_card(model.config, summary), folder)
        if (end_dir / "training_log.jsonl").is_file():  # the history of the training behind these weights
            shutil.copyfile(end_dir / "training_log.jsonl", folder / "training_log.jsonl")
        written.append(folder)
        print(folder)
    return written


if __name__ == "__main__":
    main()

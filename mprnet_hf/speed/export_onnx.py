"""Exports an MPRNet model to ONNX with dynamic batch, height and width.

    python -m mprnet_hf.speed.export_onnx --model checkpoints/mprnet-deblur-small --output model.onnx [--opset 18]

The ONNX graph takes `pixel_values` (batch, 3, height, width) in [0, 1], any height and width from 1 up, and returns
`reconstruction` of the same shape (and, with `--stages`, `stage1` and `stage2`). Like the PyTorch model, it
mirror-pads to a multiple of 8 inside and crops back, and does not clamp.

Exporting dynamic shapes needs care in three places:
* the padding is an index gather (a periodic mirror), because `F.pad` needs a Python-int amount (this wrapper);
* the stage-1 quarters and stage-2 halves are split with `unflatten`, because `chunk` on a symbolic batch leaves a
  guard the exporter cannot prove and it would fix the batch size (`MPRNetModel.restore_padded` does so itself, so
  the exported graph runs the model's own three-stage schedule);
* guards about the resized sizes (true for every size, but stated with float arithmetic the exporter cannot reason
  about) are deferred to run time instead of specialising the sizes.
"""

import argparse
import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..models.mprnet.configuration_mprnet import MPRNetConfig
from ..models.mprnet.modeling_mprnet import SIZE_MULTIPLE, MPRNetModel

DEFAULT_OPSET = 18
# Example size for tracing: not 0 or 1 (those get specialised) and not a multiple of 8, so the padding is traced.
EXAMPLE_SHAPE = (2, 3, 37, 45)
DIMENSION_NAMES = ("batch", "height", "width")


def mirror_indices(length, padded_length, device) -> torch.Tensor:
    """Indices that mirror `length` rows out to `padded_length`, as `mirror_pad` does: reflection without repeating
    the edge, repeated as often as needed (a triangle wave of period 2 * (length - 1)); a single row repeats."""
    # The period is made a tensor: the ONNX translation of `tensor % symbolic int` fails, `tensor % tensor` works.
    period = torch.full((), torch.sym_max(2 * (length - 1), 1), dtype=torch.long, device=device)
    positions = torch.arange(padded_length, device=device) % period
    return torch.where(positions < length, positions, period - positions)


class ExportableMPRNet(nn.Module):
    """`MPRNetModel.forward` (pad, three stages, crop) with the padding as an export-friendly gather; the stages are
    the model's own `restore_padded`, so the weights and results are the same."""

    def __init__(self, model: MPRNetModel, return_stages: bool = False):
        super().__init__()
        if model.config.local_attention_window:
            # TLC picks global or windowed pooling from the feature size, a branch an exported graph would freeze
            # at the example size.
            raise ValueError(
                "Models with local_attention_window > 0 (TLC) cannot be exported with dynamic sizes; load the model "
                "with local_attention_window=0"
            )
        self.model = model
        self.return_stages = return_stages

    def pad(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2], images.shape[-1]
        padded_height = (height + SIZE_MULTIPLE - 1) // SIZE_MULTIPLE * SIZE_MULTIPLE
        padded_width = (width + SIZE_MULTIPLE - 1) // SIZE_MULTIPLE * SIZE_MULTIPLE
        images = images.index_select(2, mirror_indices(height, padded_height, images.device))
        return images.index_select(3, mirror_indices(width, padded_width, images.device))

    def forward(self, pixel_values: torch.Tensor):
        height, width = pixel_values.shape[-2], pixel_values.shape[-1]
        stages = [stage[:, :, :height, :width] for stage in self.model.restore_padded(self.pad(pixel_values))]
        return (stages[2], stages[0], stages[1]) if self.return_stages else stages[2]


def output_names(return_stages: bool) -> list[str]:
    return ["reconstruction", "stage1", "stage2"] if return_stages else ["reconstruction"]


def _name_dynamic_dimensions(onnx_model, input_name: str) -> None:
    """Renames the exporter's symbolic dimensions (s0, s53, ...) of the input to batch/height/width, everywhere."""
    input_dims = next(value for value in onnx_model.graph.input if value.name == input_name).type.tensor_type.shape.dim
    renames = {
        input_dims[axis].dim_param: name for axis, name in zip((0, 2, 3), DIMENSION_NAMES) if input_dims[axis].dim_param
    }
    for value in [*onnx_model.graph.input, *onnx_model.graph.output, *onnx_model.graph.value_info]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renames:
                dim.dim_param = renames[dim.dim_param]


def export_onnx(
    model: MPRNetModel,
    output: str | Path,
    opset: int = DEFAULT_OPSET,
    return_stages: bool = False,
    max_size: int = 16384,
) -> Path:
    """Exports `model` (float32, CPU) to `output`; returns the path. Shapes are dynamic up to `max_size` pixels."""
    import onnx  # the onnx extra: the rest of the package runs without it

    exportable = ExportableMPRNet(model.float().cpu().eval(), return_stages).eval()
    example = torch.rand(*EXAMPLE_SHAPE, generator=torch.Generator().manual_seed(0))
    batch, height, width = (torch.export.Dim(name, min=1, max=max_size) for name in DIMENSION_NAMES)
    with torch.no_grad():
        program = torch.export.export(
            exportable,
            (example,),
            dynamic_shapes={"pixel_values": {0: batch, 2: height, 3: width}},
            prefer_deferred_runtime_asserts_over_guards=True,
        )
        onnx_program = torch.onnx.export(
            program,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["pixel_values"],
            output_names=output_names(return_stages),
        )
    onnx_model = onnx_program.model_proto
    _name_dynamic_dimensions(onnx_model, "pixel_values")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(onnx_model, output)
    onnx.checker.check_model(str(output))
    return output


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export an MPRNet model to ONNX (dynamic batch, height and width).")
    parser.add_argument("--model", required=True, help="model folder (save_pretrained) or Hugging Face Hub id")
    parser.add_argument("--output", required=True, help="where to write the .onnx file")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--stages", action="store_true", help="also output the stage-1 and stage-2 images")
    parser.add_argument("--revision", help="Hub revision (branch, tag or commit)")
    args = parser.parse_args(argv)
    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        parser.error(f'the export needs {" and ".join(missing)}: pip install "mprnet-hf[onnx]" (the onnx extra)')

    config = MPRNetConfig.from_pretrained(args.model, revision=args.revision)
    if config.local_attention_window:
        print(
            f"Note: exporting without test-time local statistics (local_attention_window was "
            f"{config.local_attention_window}); they cannot be exported with dynamic sizes."
        )
    model = MPRNetModel.from_pretrained(args.model, revision=args.revision, local_attention_window=0)
    path = export_onnx(model, args.output, opset=args.opset, return_stages=args.stages)
    print(
        f"Wrote {path} ({path.stat().st_size / 2**20:.1f} MiB): inputs pixel_values (batch, 3, height, width), "
        f"outputs {', '.join(output_names(args.stages))}"
    )


if __name__ == "__main__":
    main()

"""The straightforward eager forward pass that the official code runs: one stage-1 quarter at a time and one
stage-2 half at a time, NCHW, under `torch.no_grad`.

It reuses the library's submodules (so the weights and the per-block arithmetic are shared) and only changes the
schedule, which makes it the baseline for the library's batched, channels-last fast path.
"""

import torch

from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel, pad_to_multiple


def _split_halves(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half_height = images.shape[-2] // 2
    return images[:, :, :half_height], images[:, :, half_height:]


def _split_columns(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    half_width = images.shape[-1] // 2
    return images[:, :, :, :half_width], images[:, :, :, half_width:]


def _concat_levels(first: list[torch.Tensor], second: list[torch.Tensor], dim: int) -> list[torch.Tensor]:
    return [torch.cat([a, b], dim=dim) for a, b in zip(first, second)]


@torch.no_grad()
def official_style_restore_padded(model: MPRNetModel, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Stage-1, stage-2 and stage-3 images of a batch whose height and width are multiples of 8."""
    top, bottom = _split_halves(images)
    left_top, right_top = _split_columns(top)
    left_bottom, right_bottom = _split_columns(bottom)

    # Stage 1: encoder per quarter, merged along the width into halves; decoder and SAM per half.
    encoded = [
        model.stage1_encoder(model.stage1_shallow(quarter))
        for quarter in (left_top, right_top, left_bottom, right_bottom)
    ]
    encoder_top = _concat_levels(encoded[0], encoded[1], dim=3)
    encoder_bottom = _concat_levels(encoded[2], encoded[3], dim=3)
    decoder_top = model.stage1_decoder(encoder_top)
    decoder_bottom = model.stage1_decoder(encoder_bottom)
    features_top, image_top = model.sam12(decoder_top[0], top)
    features_bottom, image_bottom = model.sam12(decoder_bottom[0], bottom)

    # Stage 2: one half at a time, fused with the same half's stage-1 features; merged along the height.
    stage2_top = model.concat12(torch.cat([model.stage2_shallow(top), features_top], dim=1))
    stage2_bottom = model.concat12(torch.cat([model.stage2_shallow(bottom), features_bottom], dim=1))
    encoder2_top = model.stage2_encoder(stage2_top, encoder_top, decoder_top)
    encoder2_bottom = model.stage2_encoder(stage2_bottom, encoder_bottom, decoder_bottom)
    encoder2 = _concat_levels(encoder2_top, encoder2_bottom, dim=2)
    decoder2 = model.stage2_decoder(encoder2)
    features2, stage2_image = model.sam23(decoder2[0], images)

    # Stage 3: the whole image.
    stage3 = model.concat23(torch.cat([model.stage3_shallow(images), features2], dim=1))
    stage3 = model.stage3_orsnet(stage3, encoder2, decoder2)
    stage3_image = model.tail(stage3) + images
    return torch.cat([image_top, image_bottom], dim=2), stage2_image, stage3_image


@torch.no_grad()
def official_style_restore(model: MPRNetModel, pixel_values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pads to a multiple of 8 like the official demo, runs the looped forward, crops back; stages 1, 2, 3."""
    height, width = pixel_values.shape[-2:]
    stages = official_style_restore_padded(model, pad_to_multiple(pixel_values))
    return tuple(stage[:, :, :height, :width] for stage in stages)

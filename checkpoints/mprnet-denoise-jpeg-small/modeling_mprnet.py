"""PyTorch MPRNet: Multi-Stage Progressive Image Restoration (Zamir et al., CVPR 2021, arXiv 2102.02808).

The module layout follows the paper: every stage starts from shallow features of the degraded image; stage 1 runs an
encoder-decoder on four non-overlapping quarters, stage 2 on two halves, stage 3 an original-resolution subnetwork on
the whole image. Supervised attention modules pass features from one stage to the next, and cross-stage feature fusion
feeds the encoder-decoder features of one stage into the next.
"""

import contextlib
import contextvars
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_mprnet import MPRNetConfig
from .losses import MPRNetLoss

# The patch split and the two x0.5 resizes inside each quarter need sizes divisible by 8.
SIZE_MULTIPLE = 8

# What gates the channel-attention blocks of the forward running in this thread (or asyncio task) instead of their own
# statistics: set by `MPRNetModel.channel_statistics` for tiled restores (see `whole_image_statistics`). A context
# variable rather than an attribute of the blocks, because a server restores several requests with one model at once.
_STATISTICS_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("mprnet_channel_statistics", default=None)


@dataclass
class MPRNetOutput(ModelOutput):
    """
    Output of [`MPRNetModel`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is given):
            Sum over the three stages of Charbonnier loss plus `config.edge_loss_weight` times the edge loss.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
            The restored image of the last stage, in [0, 1] up to overshoot: it is not clamped.
        stage_reconstructions (`tuple(torch.FloatTensor)` of three tensors of shape `(batch_size, 3, height, width)`):
            The restored images of stage 1, stage 2 and stage 3, in that order (the last equals `reconstruction`).
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    stage_reconstructions: tuple[torch.FloatTensor, ...] | None = None


def conv(in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> nn.Conv2d:
    """A stride-1 convolution that keeps the spatial size."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias)


def mirror_pad(images: torch.Tensor, bottom: int, right: int) -> torch.Tensor:
    """Pads the bottom and right by mirroring without repeating the edge (numpy's 'reflect').

    Images smaller than the padding they need are mirrored repeatedly, and a single row or column is repeated, so any
    size from 1x1 up works.
    """
    while bottom or right:
        step_bottom = min(bottom, images.shape[-2] - 1)
        step_right = min(right, images.shape[-1] - 1)
        if step_bottom == 0 and step_right == 0:
            # A 1-pixel-wide image has nothing to mirror.
            return F.pad(images, (0, right, 0, bottom), mode="replicate")
        images = F.pad(images, (0, step_right, 0, step_bottom), mode="reflect")
        bottom -= step_bottom
        right -= step_right
    return images


def pad_to_multiple(images: torch.Tensor, multiple: int = SIZE_MULTIPLE) -> torch.Tensor:
    """Pads bottom and right up to the next multiple, as the official demo does."""
    return mirror_pad(images, -images.shape[-2] % multiple, -images.shape[-1] % multiple)


def box_mean(features: torch.Tensor, window_h: int, window_w: int) -> torch.Tensor:
    """Mean over every `window_h` x `window_w` window that fits inside the image (a "valid" stride-1 average pool).

    Summed-area table: constant cost per pixel whatever the window, where `avg_pool2d` costs window_h * window_w
    (9,216 additions per pixel for a 96 px window). The table is accumulated in float64 so that differences of
    large running sums stay exact to float32 precision on large images (so not on Apple MPS, which has no float64);
    it is built and combined in place to hold about two float64 copies of the features at most.
    """
    *leading, height, width = features.shape
    table = features.new_zeros((*leading, height + 1, width + 1), dtype=torch.float64)
    table[..., 1:, 1:] = features
    table.cumsum_(-2).cumsum_(-1)
    sums = table[..., window_h:, window_w:] - table[..., :-window_h, window_w:]
    sums -= table[..., window_h:, :-window_w]
    sums += table[..., :-window_h, :-window_w]
    return sums.div_(window_h * window_w).to(features.dtype)


def _tracing() -> bool:
    """Whether an exporter or compiler is tracing the forward: parameters must not be swapped and
    per-call overrides must not be baked in under it."""
    # is_compiling first: torch.compile folds it to a constant, so the rest is never traced.
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _writes_in_place(features: torch.Tensor) -> bool:
    """Whether a block may write into `features`, a fresh tensor it made itself: only on CPU, only when autograd
    records nothing (so no result requires grad), and never under a tracer (ONNX export, torch.compile keep the plain
    graph). On CPU every feature map allocated anew is a fresh memory mapping whose pages fault in one by one (large
    maps are never reused by the allocator unless `speed.fast.reuse_freed_memory()` is on), so writing in place saves
    time as well as memory; that was measured on CPU only, and GPUs keep the path they had (one fused `addcmul` per
    block, and PReLU, whose slope would otherwise be read back and synchronise the GPU at every block)."""
    return features.is_cpu and not torch.is_grad_enabled() and not _tracing()


def _sum_into(fresh: torch.Tensor, *others: torch.Tensor) -> torch.Tensor:
    """`fresh + others[0] + others[1] + ...`, summed in that order; written into `fresh` when `_writes_in_place`
    allows, so the caller must have made `fresh` itself and must not read it again."""
    if _writes_in_place(fresh):
        for other in others:
            fresh.add_(other)
        return fresh
    for other in others:
        fresh = fresh + other
    return fresh


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation gate: average each channel, squeeze, expand, sigmoid, and rescale the channels.

    With `config.local_attention_window > 0` the average is taken over a sliding window instead of the whole image
    (test-time local statistics, TLC), so the statistics match those of the training patches on large images.
    """

    def __init__(self, config: MPRNetConfig, channels: int, downscale: int):
        super().__init__()
        squeezed = channels // config.reduction
        self.squeeze = nn.Conv2d(channels, squeezed, 1, bias=config.bias)
        self.excite = nn.Conv2d(squeezed, channels, 1, bias=config.bias)
        self.local_window = config.local_attention_window // downscale if config.local_attention_window else 0

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        height, width = features.shape[-2:]
        if not self.local_window or (height <= self.local_window and width <= self.local_window):
            return features.mean(dim=(2, 3), keepdim=True)
        window_h, window_w = min(self.local_window, height), min(self.local_window, width)
        local_mean = box_mean(features, window_h, window_w)
        # Windows stay inside the image: border pixels reuse the nearest full window's statistics.
        pad_h, pad_w = window_h - 1, window_w - 1
        return F.pad(local_mean, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        """Per-channel weights in (0, 1) from pooled statistics, (batch, channels, 1, 1) or a per-pixel map."""
        return torch.sigmoid(self.excite(F.relu(self.squeeze(pooled))))

    def forward(self, features: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """`features` gated channel by channel, plus `residual` when given (then written into `features` when
        `_writes_in_place` allows: the caller hands over a fresh tensor of its own)."""
        # Tracers (ONNX export, torch.compile) never see the override: it is a per-call Python object.
        override = None if _tracing() else _STATISTICS_OVERRIDE.get()
        if override is not None:
            gated = override.channel_attention(self, features)
            return gated if residual is None else gated + residual
        gate = self.gate(self.pooled(features))
        if residual is not None and _writes_in_place(features):
            return features.mul_(gate).add_(residual)
        # addcmul gates and adds in one pass over the feature map, where `features * gate + residual` makes two.
        return features * gate if residual is None else torch.addcmul(residual, features, gate)


class ChannelAttentionBlock(nn.Module):
    """conv -> PReLU -> conv -> channel attention, plus the input (CAB in the paper)."""

    def __init__(self, config: MPRNetConfig, channels: int, activation: nn.PReLU, downscale: int = 1):
        super().__init__()
        self.conv1 = conv(channels, channels, config.kernel_size, config.bias)
        self.conv2 = conv(channels, channels, config.kernel_size, config.bias)
        self.channel_attention = ChannelAttention(config, channels, downscale)
        # MPRNet shares one PReLU slope across every block. It is registered once, on the model, so the state dict
        # holds a single copy; here it is only referenced, hence set outside nn.Module's registration.
        object.__setattr__(self, "activation", activation)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(features)
        if _writes_in_place(hidden) and self.activation.weight.numel() == 1:
            # MPRNet's PReLU has one slope: a leaky ReLU with that slope, written into the convolution's output.
            hidden = F.leaky_relu_(hidden, self.activation.weight.item())
        else:
            hidden = self.activation(hidden)
        return self.channel_attention(self.conv2(hidden), residual=features)


def attention_blocks(config, channels, activation, count, downscale=1) -> nn.Sequential:
    return nn.Sequential(*(ChannelAttentionBlock(config, channels, activation, downscale) for _ in range(count)))


class ShallowFeatures(nn.Module):
    """The first features of each stage: a convolution from RGB followed by one attention block."""

    def __init__(self, config: MPRNetConfig, activation: nn.PReLU):
        super().__init__()
        self.conv = conv(config.in_channels, config.n_feat, config.kernel_size, config.bias)
        self.attention_block = ChannelAttentionBlock(config, config.n_feat, activation)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.attention_block(self.conv(images))


class DownSample(nn.Module):
    """Bilinear x0.5, then a bias-free 1x1 convolution that widens the features."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(features, scale_factor=0.5, mode="bilinear", align_corners=False))


class UpSample(nn.Module):
    """Bilinear x2 and a bias-free 1x1 convolution that narrows the features.

    The official code resizes first. Here the convolution runs first, at the lower resolution: the convolution mixes
    channels pixel by pixel and the resize mixes pixels channel by channel, both linearly, so they commute and the
    order changes nothing but float rounding, while convolving a quarter of the pixels and resizing fewer channels
    saves work and a full-resolution feature map.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(features), scale_factor=2, mode="bilinear", align_corners=False)


class MPRNetEncoder(nn.Module):
    """Three-level U-Net encoder of two attention blocks per level.

    With `cross_stage_fusion` (stage 2), each level adds 1x1-projected encoder and decoder features of the previous
    stage after its blocks and before down-sampling.
    """

    def __init__(self, config: MPRNetConfig, activation: nn.PReLU, cross_stage_fusion: bool = False):
        super().__init__()
        width1, width2, width3 = config.unet_widths
        self.level1 = attention_blocks(config, width1, activation, 2, downscale=1)
        self.level2 = attention_blocks(config, width2, activation, 2, downscale=2)
        self.level3 = attention_blocks(config, width3, activation, 2, downscale=4)
        self.down12 = DownSample(width1, width2)
        self.down23 = DownSample(width2, width3)
        self.cross_stage_fusion = cross_stage_fusion
        if cross_stage_fusion:
            self.csff_enc1 = nn.Conv2d(width1, width1, 1, bias=config.bias)
            self.csff_enc2 = nn.Conv2d(width2, width2, 1, bias=config.bias)
            self.csff_enc3 = nn.Conv2d(width3, width3, 1, bias=config.bias)
            self.csff_dec1 = nn.Conv2d(width1, width1, 1, bias=config.bias)
            self.csff_dec2 = nn.Conv2d(width2, width2, 1, bias=config.bias)
            self.csff_dec3 = nn.Conv2d(width3, width3, 1, bias=config.bias)

    def forward(self, features, previous_encoder=None, previous_decoder=None) -> list[torch.Tensor]:
        fuse = self.cross_stage_fusion and previous_encoder is not None and previous_decoder is not None
        # Each level's blocks return a fresh tensor, which the fusion may add into.
        level1 = self.level1(features)
        if fuse:
            level1 = _sum_into(level1, self.csff_enc1(previous_encoder[0]), self.csff_dec1(previous_decoder[0]))
        level2 = self.level2(self.down12(level1))
        if fuse:
            level2 = _sum_into(level2, self.csff_enc2(previous_encoder[1]), self.csff_dec2(previous_decoder[1]))
        level3 = self.level3(self.down23(level2))
        if fuse:
            level3 = _sum_into(level3, self.csff_enc3(previous_encoder[2]), self.csff_dec3(previous_decoder[2]))
        return [level1, level2, level3]


class MPRNetDecoder(nn.Module):
    """Three-level U-Net decoder; skip connections pass through an attention block before being added."""

    def __init__(self, config: MPRNetConfig, activation: nn.PReLU):
        super().__init__()
        width1, width2, width3 = config.unet_widths
        self.level1 = attention_blocks(config, width1, activation, 2, downscale=1)
        self.level2 = attention_blocks(config, width2, activation, 2, downscale=2)
        self.level3 = attention_blocks(config, width3, activation, 2, downscale=4)
        self.skip_attention1 = ChannelAttentionBlock(config, width1, activation, downscale=1)
        self.skip_attention2 = ChannelAttentionBlock(config, width2, activation, downscale=2)
        self.up21 = UpSample(width2, width1)
        self.up32 = UpSample(width3, width2)

    def forward(self, encoder_features: list[torch.Tensor]) -> list[torch.Tensor]:
        encoder1, encoder2, encoder3 = encoder_features
        level3 = self.level3(encoder3)
        level2 = self.level2(_sum_into(self.up32(level3), self.skip_attention2(encoder2)))
        level1 = self.level1(_sum_into(self.up21(level2), self.skip_attention1(encoder1)))
        return [level1, level2, level3]


class SupervisedAttentionModule(nn.Module):
    """Predicts the stage's restored image and uses it to gate the features passed to the next stage (SAM)."""

    def __init__(self, config: MPRNetConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(config.n_feat, config.n_feat, 1, bias=config.bias)
        self.conv2 = nn.Conv2d(config.n_feat, config.out_channels, 1, bias=config.bias)
        self.conv3 = nn.Conv2d(config.out_channels, config.n_feat, 1, bias=config.bias)

    def forward(self, features: torch.Tensor, degraded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        restored = self.conv2(features) + degraded
        attention = self.conv3(restored)
        gated = self.conv1(features)
        if _writes_in_place(gated):
            return gated.mul_(attention.sigmoid_()).add_(features), restored
        return gated * torch.sigmoid(attention) + features, restored


class OriginalResolutionBlock(nn.Module):
    """`num_cab` attention blocks and a bias-free convolution, with a residual connection (ORB)."""

    def __init__(self, config: MPRNetConfig, activation: nn.PReLU):
        super().__init__()
        width = config.orsnet_width
        self.blocks = attention_blocks(config, width, activation, config.num_cab)
        self.conv = conv(width, width, config.kernel_size, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return _sum_into(self.conv(self.blocks(features)), features)


class OriginalResolutionSubnetwork(nn.Module):
    """Stage 3 (ORSNet): three original-resolution blocks, each followed by fusion of the stage-2 U-Net features,
    brought to full resolution and to the subnetwork's width."""

    def __init__(self, config: MPRNetConfig, activation: nn.PReLU):
        super().__init__()
        width1, width2, width3 = config.unet_widths
        width = config.orsnet_width
        self.orb1 = OriginalResolutionBlock(config, activation)
        self.orb2 = OriginalResolutionBlock(config, activation)
        self.orb3 = OriginalResolutionBlock(config, activation)
        self.up_enc1 = UpSample(width2, width1)
        self.up_dec1 = UpSample(width2, width1)
        self.up_enc2 = nn.Sequential(UpSample(width3, width2), UpSample(width2, width1))
        self.up_dec2 = nn.Sequential(UpSample(width3, width2), UpSample(width2, width1))
        self.conv_enc1 = nn.Conv2d(width1, width, 1, bias=config.bias)
        self.conv_enc2 = nn.Conv2d(width1, width, 1, bias=config.bias)
        self.conv_enc3 = nn.Conv2d(width1, width, 1, bias=config.bias)
        self.conv_dec1 = nn.Conv2d(width1, width, 1, bias=config.bias)
        self.conv_dec2 = nn.Conv2d(width1, width, 1, bias=config.bias)
        self.conv_dec3 = nn.Conv2d(width1, width, 1, bias=config.bias)

    def forward(self, features, encoder_features, decoder_features) -> torch.Tensor:
        encoder1, encoder2, encoder3 = encoder_features
        decoder1, decoder2, decoder3 = decoder_features
        # Each block returns a fresh tensor, which the fusion may add into.
        features = _sum_into(self.orb1(features), self.conv_enc1(encoder1), self.conv_dec1(decoder1))
        features = _sum_into(
            self.orb2(features), self.conv_enc2(self.up_enc1(encoder2)), self.conv_dec2(self.up_dec1(decoder2))
        )
        features = _sum_into(
            self.orb3(features), self.conv_enc3(self.up_enc2(encoder3)), self.conv_dec3(self.up_dec2(decoder3))
        )
        return features


def _split_batch(features: torch.Tensor, parts: int) -> tuple[torch.Tensor, ...]:
    # unflatten/unbind rather than chunk: it keeps the batch size symbolic, so the ONNX export has a dynamic batch.
    return features.unflatten(0, (parts, -1)).unbind(0)


def _merge_quarters_into_halves(features: torch.Tensor) -> torch.Tensor:
    """(4N, C, h, w) stacked as [left-top, right-top, left-bottom, right-bottom] -> (2N, C, h, 2w) as [top, bottom]."""
    left_top, right_top, left_bottom, right_bottom = _split_batch(features, 4)
    return torch.cat([torch.cat([left_top, right_top], dim=3), torch.cat([left_bottom, right_bottom], dim=3)], dim=0)


def _merge_halves(features: torch.Tensor) -> torch.Tensor:
    """(2N, C, h, w) stacked as [top, bottom] -> (N, C, 2h, w)."""
    top, bottom = _split_batch(features, 2)
    return torch.cat([top, bottom], dim=2)


class MPRNetPreTrainedModel(PreTrainedModel):
    config: MPRNetConfig
    config_class = MPRNetConfig
    base_model_prefix = "mprnet"
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    supports_gradient_checkpointing = False
    _no_split_modules = ["MPRNetModel"]

    @torch.no_grad()
    def _init_weights(self, module):
        # PyTorch's default initialisation, which the official training starts from.
        if isinstance(module, nn.Conv2d):
            init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.PReLU):
            init.constant_(module.weight, 0.25)


class MPRNetModel(MPRNetPreTrainedModel):
    """MPRNet image restoration model: degraded RGB images in [0, 1] in, restored images out, at any size.

    Optional inference features are declared here, each switched by one call: `compile_forward()` (torch.compile of
    the three-stage forward; `forward_is_compiled` says whether it ran) and `channel_statistics(override)` (what a
    tiled restore gates the channel-attention blocks with). Test-time local statistics are a config field
    (`local_attention_window`), because they change what the weights compute and are saved with them.
    """

    # Set by `compile_forward`: a compiled graph does not run the per-call statistics override.
    forward_is_compiled: bool = False

    def __init__(self, config: MPRNetConfig):
        super().__init__(config)
        self.prelu = nn.PReLU(num_parameters=1, init=0.25)
        self.stage1_shallow = ShallowFeatures(config, self.prelu)
        self.stage2_shallow = ShallowFeatures(config, self.prelu)
        self.stage3_shallow = ShallowFeatures(config, self.prelu)
        self.stage1_encoder = MPRNetEncoder(config, self.prelu, cross_stage_fusion=False)
        self.stage1_decoder = MPRNetDecoder(config, self.prelu)
        self.stage2_encoder = MPRNetEncoder(config, self.prelu, cross_stage_fusion=True)
        self.stage2_decoder = MPRNetDecoder(config, self.prelu)
        self.stage3_orsnet = OriginalResolutionSubnetwork(config, self.prelu)
        self.sam12 = SupervisedAttentionModule(config)
        self.sam23 = SupervisedAttentionModule(config)
        self.concat12 = conv(2 * config.n_feat, config.n_feat, config.kernel_size, config.bias)
        self.concat23 = conv(2 * config.n_feat, config.orsnet_width, config.kernel_size, config.bias)
        self.tail = conv(config.orsnet_width, config.out_channels, config.kernel_size, config.bias)
        self.restoration_loss = MPRNetLoss(
            config.charbonnier_epsilon, config.edge_loss_weight, config.clamp_outputs_in_loss
        )
        self.post_init()

    @staticmethod
    def _check_pixel_values(pixel_values, name="pixel_values") -> None:
        if not isinstance(pixel_values, torch.Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor of shape (batch, 3, height, width), got {type(pixel_values).__name__}"
            )
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(
                f"{name} must have shape (batch, 3, height, width) with RGB channels, got {tuple(pixel_values.shape)}; "
                "use MPRNetImageProcessor to convert images"
            )
        if pixel_values.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(pixel_values.shape)}); every dimension must be at least 1")
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"{name} must be floating point in [0, 1], got {pixel_values.dtype}; divide 8-bit images by 255"
            )
        if not torch.isfinite(pixel_values).all():
            raise ValueError(f"{name} contains NaN or infinite values")

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, return_dict: bool | None = None, **kwargs
    ):
        r"""
        pixel_values (`torch.FloatTensor` of shape `(batch_size, 3, height, width)`):
            Degraded RGB images in [0, 1]. Any height and width: the model pads to a multiple of 8 as the official
            demo does (reflect, bottom and right) and crops its outputs back.
        labels (`torch.FloatTensor` of the same shape, *optional*):
            Clean images; when given, the training loss is returned.
        """
        self._check_pixel_values(pixel_values)
        if labels is not None:
            self._check_pixel_values(labels, "labels")
            if labels.shape != pixel_values.shape:
                raise ValueError(
                    f"labels shape {tuple(labels.shape)} differs from pixel_values shape {tuple(pixel_values.shape)}"
                )
        return_dict = return_dict if return_dict is not None else self.config.return_dict

        height, width = pixel_values.shape[-2:]
        stages = self.restore_padded(self._in_fastest_layout(pad_to_multiple(pixel_values)))
        stages = tuple(stage[:, :, :height, :width] for stage in stages)
        loss = self.restoration_loss(stages, labels) if labels is not None else None
        if not return_dict:
            return (loss, stages[-1], stages) if loss is not None else (stages[-1], stages)
        return MPRNetOutput(loss=loss, reconstruction=stages[-1], stage_reconstructions=stages)

    def _in_fastest_layout(self, images: torch.Tensor) -> torch.Tensor:
        """Inference on CPU runs channels-last, weights and activations: oneDNN then convolves NHWC directly, where
        NCHW tensors are reordered into its blocked layout and back around each of the ~300 convolutions. Same
        arithmetic up to float rounding. The weights are switched once, in place (parameters keep their identity, so
        optimizers and `save_pretrained` are unaffected); GPUs and training keep the layout they were given."""
        if self.training or images.device.type != "cpu" or _tracing():
            return images
        if not self.tail.weight.is_contiguous(memory_format=torch.channels_last):
            # Outside inference mode, or the new weights would be inference tensors that training could not use.
            with torch.inference_mode(False):
                self.to(memory_format=torch.channels_last)
        return images.contiguous(memory_format=torch.channels_last)

    def compile_forward(self, options: dict | None = None) -> None:
        """Wraps the three-stage forward (`restore_padded`) in `torch.compile` with static shapes and the inductor
        `options`. Only the tensor part is compiled: `forward`'s input checks read values (isfinite) and would break
        the graph. Tiled restores of a compiled model keep each tile's own channel statistics."""
        self.restore_padded = torch.compile(self.restore_padded, dynamic=False, options=options or {})
        self.forward_is_compiled = True

    @contextlib.contextmanager
    def channel_statistics(self, override):
        """Within the block, every channel-attention block of a forward run by the calling thread returns
        `override.channel_attention(block, features)` instead of gating `features` by their own mean; other threads
        running the model meanwhile are unaffected. For `whole_image_statistics.WholeImageStatistics`."""
        token = _STATISTICS_OVERRIDE.set(override)
        try:
            yield override
        finally:
            _STATISTICS_OVERRIDE.reset(token)

    def restore_padded(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The three-stage forward pass on images whose height and width are multiples of 8.

        Returns the stage-1, stage-2 and stage-3 images. The four stage-1 quarters and the two stage-2 halves are
        processed as one batch each; every operation is per sample, so this equals processing them one by one.
        Written with export-friendly operations only: `mprnet_hf.speed.export_onnx` traces it as it is.
        """
        half_height, half_width = images.shape[-2] // 2, images.shape[-1] // 2
        top, bottom = images[:, :, :half_height], images[:, :, half_height:]
        halves = torch.cat([top, bottom], dim=0)
        quarters = torch.cat(
            [top[..., :half_width], top[..., half_width:], bottom[..., :half_width], bottom[..., half_width:]], dim=0
        )

        # Stage 1: encode each quarter, decode each half.
        stage1_encoder = [
            _merge_quarters_into_halves(level) for level in self.stage1_encoder(self.stage1_shallow(quarters))
        ]
        stage1_decoder = self.stage1_decoder(stage1_encoder)
        stage1_features, stage1_images = self.sam12(stage1_decoder[0], halves)

        # Stage 2: each half, fused with the stage-1 features of the same half.
        stage2_input = self.concat12(torch.cat([self.stage2_shallow(halves), stage1_features], dim=1))
        stage2_encoder = self.stage2_encoder(stage2_input, stage1_encoder, stage1_decoder)
        stage2_encoder = [_merge_halves(level) for level in stage2_encoder]
        stage2_decoder = self.stage2_decoder(stage2_encoder)
        stage2_features, stage2_image = self.sam23(stage2_decoder[0], images)

        # Stage 3: the full image at its original resolution.
        stage3_input = self.concat23(torch.cat([self.stage3_shallow(images), stage2_features], dim=1))
        stage3_features = self.stage3_orsnet(stage3_input, stage2_encoder, stage2_decoder)
        stage3_image = self.tail(stage3_features) + images

        return _merge_halves(stage1_images), stage2_image, stage3_image


__all__ = ["MPRNetModel", "MPRNetPreTrainedModel", "MPRNetOutput", "mirror_pad", "pad_to_multiple", "SIZE_MULTIPLE"]

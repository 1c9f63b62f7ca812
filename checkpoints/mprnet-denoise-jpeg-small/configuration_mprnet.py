"""MPRNet model configuration."""

from transformers import PreTrainedConfig

TASKS = ("deblur", "derain", "denoise")

# The official repository ships one model file per task (Deblurring/, Deraining/ and Denoising/MPRNet.py); they
# differ only in the defaults of these widths. Everything else is shared.
_RELEASED_WIDTHS = {
    "deblur": {"n_feat": 96, "scale_unetfeats": 48, "scale_orsnetfeats": 32},
    "derain": {"n_feat": 40, "scale_unetfeats": 20, "scale_orsnetfeats": 16},
    "denoise": {"n_feat": 80, "scale_unetfeats": 48, "scale_orsnetfeats": 32},
}
# The variants this project trains, the same widths for every task: "small" is the bundled checkpoints' size, "tiny"
# the smallest sensible network (tests and smoke runs of the training loop), "medium" a wider one that still fits the
# app's time budget on two CPU cores, reached from small weights by `training.widen`. The mprnet_hf project's
# performance docs measure them.
_SMALLER_WIDTHS = {
    "small": {"n_feat": 16, "scale_unetfeats": 8, "scale_orsnetfeats": 8, "num_cab": 2},
    "medium": {"n_feat": 20, "scale_unetfeats": 10, "scale_orsnetfeats": 10, "num_cab": 2},
    "tiny": {"n_feat": 8, "scale_unetfeats": 4, "scale_orsnetfeats": 4, "num_cab": 1},
}
SIZES = ("released", *_SMALLER_WIDTHS)


class MPRNetConfig(PreTrainedConfig):
    r"""
    Configuration of an [`MPRNetModel`]. The defaults reproduce the released deblurring model
    (`MPRNetConfig.for_task("deblur")`); use [`MPRNetConfig.for_task`] for the other released models.

    Args:
        in_channels (`int`, *optional*, defaults to 3):
            Channels of the input image. MPRNet's supervised attention module and global residual assume RGB, so
            only 3 is accepted.
        out_channels (`int`, *optional*, defaults to 3):
            Channels of the restored image. Only 3 is accepted, for the same reason.
        n_feat (`int`, *optional*, defaults to 96):
            Width of the full-resolution features (U-Net level 1, the supervised attention modules, shallow features).
        scale_unetfeats (`int`, *optional*, defaults to 48):
            Channels added per U-Net level: level 2 has `n_feat + scale_unetfeats`, level 3
            `n_feat + 2 * scale_unetfeats`.
        scale_orsnetfeats (`int`, *optional*, defaults to 32):
            Channels added in the original-resolution subnetwork of stage 3, whose width is
            `n_feat + scale_orsnetfeats`.
        num_cab (`int`, *optional*, defaults to 8):
            Channel attention blocks inside each original-resolution block.
        kernel_size (`int`, *optional*, defaults to 3):
            Kernel size of every spatial convolution (odd). The supervised attention modules always use 1x1
            convolutions.
        reduction (`int`, *optional*, defaults to 4):
            Squeeze ratio of channel attention: a block of width C squeezes to `C // reduction` channels.
        bias (`bool`, *optional*, defaults to `False`):
            Whether the convolutions that follow this flag have a bias. The resize convolutions and the last
            convolution of each original-resolution block never have one, as in the official code.
        task (`str`, *optional*, defaults to `"deblur"`):
            The restoration task the weights were trained for: `"deblur"`, `"derain"` or `"denoise"`. Informational for
            the model; the app and pipeline use it to pick the right model.
        charbonnier_epsilon (`float`, *optional*, defaults to 1e-3):
            Epsilon of the Charbonnier loss, `sqrt((x - y)^2 + epsilon^2)`.
        edge_loss_weight (`float`, *optional*, defaults to 0.05):
            Weight of the Laplacian edge loss added to the Charbonnier loss for each stage. The official denoising
            recipe uses 0 (no edge loss).
        clamp_outputs_in_loss (`bool`, *optional*, defaults to `False`):
            Clamp every stage output to [0, 1] before the loss, as the official denoising recipe does.
        local_attention_window (`int`, *optional*, defaults to 0):
            Test-time local statistics (TLC, Chu et al. 2022). When positive, channel attention averages each
            feature over a sliding window of this many pixels of the *input image* (scaled to each feature level)
            instead of over the whole image, which matches the statistics seen on training patches. 0 keeps the
            official global average. Typically set to 1.5x the training patch size.
    """

    model_type = "mprnet"

    in_channels: int = 3
    out_channels: int = 3
    n_feat: int = 96
    scale_unetfeats: int = 48
    scale_orsnetfeats: int = 32
    num_cab: int = 8
    kernel_size: int = 3
    reduction: int = 4
    bias: bool = False
    task: str = "deblur"
    charbonnier_epsilon: float = 1e-3
    edge_loss_weight: float = 0.05
    clamp_outputs_in_loss: bool = False
    local_attention_window: int = 0

    def __post_init__(self, **kwargs):
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self):
        problems = []
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) != 3:
                problems.append(f"{name}={getattr(self, name)!r}: MPRNet only supports 3 (RGB) channels")
        for name in ("n_feat", "num_cab", "reduction"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name}={value!r}: must be a positive integer")
        for name in ("scale_unetfeats", "scale_orsnetfeats", "local_attention_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                problems.append(f"{name}={value!r}: must be a non-negative integer")
        kernel_size = self.kernel_size
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            problems.append(f"kernel_size={self.kernel_size!r}: must be a positive odd integer")
        if not isinstance(self.bias, bool):
            problems.append(f"bias={self.bias!r}: must be True or False")
        if self.task not in TASKS:
            problems.append(f"task={self.task!r}: must be one of {', '.join(TASKS)}")
        if not problems and self.n_feat // self.reduction < 1:
            problems.append(
                f"reduction={self.reduction} squeezes n_feat={self.n_feat} to zero channels; use reduction <= n_feat"
            )
        if problems:
            raise ValueError("Invalid MPRNetConfig: " + "; ".join(problems))

    @classmethod
    def for_task(cls, task: str, size: str = "released", **overrides) -> "MPRNetConfig":
        """The configuration of `task` ("deblur", "derain" or "denoise") at `size` ("released": the official widths,
        "small": the bundled checkpoints', "medium", "tiny"), with optional overrides."""
        if task not in _RELEASED_WIDTHS:
            raise ValueError(f"Unknown task {task!r}: expected one of {', '.join(TASKS)}")
        if size not in SIZES:
            raise ValueError(f"Unknown size {size!r}: expected one of {', '.join(SIZES)}")
        values = dict(_RELEASED_WIDTHS[task] if size == "released" else _SMALLER_WIDTHS[size], task=task)
        if task == "denoise":
            # The official denoising training script clamps the stage outputs to [0, 1] before its Charbonnier loss
            # and has no edge loss (deblurring and deraining add 0.05 x the edge loss).
            values.update(edge_loss_weight=0.0, clamp_outputs_in_loss=True)
        values.update(overrides)
        return cls(**values)

    @property
    def unet_widths(self) -> tuple[int, int, int]:
        """Channel widths of the three U-Net levels, finest first."""
        return (self.n_feat, self.n_feat + self.scale_unetfeats, self.n_feat + 2 * self.scale_unetfeats)

    @property
    def orsnet_width(self) -> int:
        """Channel width of the stage-3 original-resolution subnetwork."""
        return self.n_feat + self.scale_orsnetfeats

    @staticmethod
    def size_widths(size: str) -> dict:
        """The widths `for_task` sets for a smaller `size` ("small", "medium" or "tiny"), the same for every task."""
        if size not in _SMALLER_WIDTHS:
            raise ValueError(f"Unknown size {size!r}: expected one of {', '.join(_SMALLER_WIDTHS)}")
        return dict(_SMALLER_WIDTHS[size])


__all__ = ["MPRNetConfig", "TASKS", "SIZES"]

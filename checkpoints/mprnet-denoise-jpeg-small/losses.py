"""Training losses of MPRNet (Zamir et al. 2021, section 3.4): Charbonnier and Laplacian edge loss."""

import torch
import torch.nn.functional as F
from torch import nn


class CharbonnierLoss(nn.Module):
    """Mean of `sqrt((x - y)^2 + epsilon^2)`, a differentiable L1."""

    def __init__(self, epsilon: float = 1e-3):
        super().__init__()
        self.epsilon = epsilon

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((prediction - target) ** 2 + self.epsilon**2).mean()


class EdgeLoss(nn.Module):
    """Charbonnier loss between the Laplacian-pyramid residuals (one level) of prediction and target.

    The residual is `image - gauss(upsampled(downsampled(gauss(image))))`, where down/up-sampling keeps the even pixels
    and scales them by 4, with the 5-tap binomial-like kernel [0.05, 0.25, 0.4, 0.25, 0.05] and replicate padding.
    """

    TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)

    def __init__(self, epsilon: float = 1e-3):
        super().__init__()
        self.charbonnier = CharbonnierLoss(epsilon)

    def gaussian_blur(self, image: torch.Tensor) -> torch.Tensor:
        # Built per call rather than held as a buffer, so the loss adds nothing to the model's state.
        taps = torch.tensor(self.TAPS, dtype=image.dtype, device=image.device)
        channels = image.shape[1]
        kernel = torch.outer(taps, taps).expand(channels, 1, 5, 5)
        padded = F.pad(image, (2, 2, 2, 2), mode="replicate")
        return F.conv2d(padded, kernel, groups=channels)

    def laplacian(self, image: torch.Tensor) -> torch.Tensor:
        blurred = self.gaussian_blur(image)
        upsampled = torch.zeros_like(blurred)
        upsampled[:, :, ::2, ::2] = blurred[:, :, ::2, ::2] * 4
        return image - self.gaussian_blur(upsampled)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.charbonnier(self.laplacian(prediction), self.laplacian(target))


class MPRNetLoss(nn.Module):
    """The paper's objective: sum over the stage outputs of Charbonnier + `edge_weight` * edge loss.

    With `clamp_outputs=True` the outputs are clamped to [0, 1] first (the official denoising recipe, which also uses
    `edge_weight=0`).
    """

    def __init__(self, epsilon: float = 1e-3, edge_weight: float = 0.05, clamp_outputs: bool = False):
        super().__init__()
        self.charbonnier = CharbonnierLoss(epsilon)
        self.edge = EdgeLoss(epsilon)
        self.edge_weight = edge_weight
        self.clamp_outputs = clamp_outputs

    def forward(self, stage_outputs, target: torch.Tensor) -> torch.Tensor:
        total = target.new_zeros(())
        for output in stage_outputs:
            if self.clamp_outputs:
                output = output.clamp(0, 1)
            total = total + self.charbonnier(output, target)
            if self.edge_weight:
                total = total + self.edge_weight * self.edge(output, target)
        return total


__all__ = ["CharbonnierLoss", "EdgeLoss", "MPRNetLoss"]

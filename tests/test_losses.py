"""The training losses against values computed independently: by hand, or with numpy as the official losses.py
computes them."""

import math

import numpy as np
import pytest
import torch

from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.losses import CharbonnierLoss, EdgeLoss, MPRNetLoss

EPSILON = 1e-3
TAPS = np.array([0.05, 0.25, 0.4, 0.25, 0.05])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------------------------------------------- numpy reference
def gauss_numpy(image: np.ndarray) -> np.ndarray:
    """5x5 outer(TAPS, TAPS) filter of each (H, W) plane of a (C, H, W) array, after replicate padding of 2."""
    kernel = np.outer(TAPS, TAPS)
    padded = np.pad(image, ((0, 0), (2, 2), (2, 2)), mode="edge")
    height, width = image.shape[1:]
    out = np.zeros_like(image)
    for dy in range(5):
        for dx in range(5):
            out += kernel[dy, dx] * padded[:, dy : dy + height, dx : dx + width]
    return out


def laplacian_numpy(image: np.ndarray) -> np.ndarray:
    filtered = gauss_numpy(image)
    stuffed = np.zeros_like(filtered)
    stuffed[:, ::2, ::2] = 4 * filtered[:, ::2, ::2]
    return image - gauss_numpy(stuffed)


def charbonnier_numpy(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.sqrt((x - y) ** 2 + EPSILON**2)))


def edge_numpy(x: np.ndarray, y: np.ndarray) -> float:
    return charbonnier_numpy(np.stack([laplacian_numpy(i) for i in x]), np.stack([laplacian_numpy(i) for i in y]))


def random_pair(seed=0, shape=(2, 3, 9, 12)):
    rng = np.random.default_rng(seed)
    return rng.random(shape), rng.random(shape)


# ---------------------------------------------------------------------------------------------------- Charbonnier
@pytest.mark.parametrize("difference", [0.0, 0.3, -0.7, 2.0])
def test_charbonnier_of_a_constant_difference(difference):
    target = torch.zeros(1, 3, 4, 5, dtype=torch.float64)
    loss = CharbonnierLoss()(target + difference, target)
    assert loss.item() == pytest.approx(math.sqrt(difference**2 + 1e-6), rel=1e-12)


def test_charbonnier_averages_over_elements():
    prediction = torch.tensor([0.0, 0.5, -2.0, 0.001], dtype=torch.float64)
    by_hand = (math.sqrt(1e-6) + math.sqrt(0.25 + 1e-6) + math.sqrt(4 + 1e-6) + math.sqrt(2e-6)) / 4
    loss = CharbonnierLoss()(prediction, torch.zeros(4, dtype=torch.float64))
    assert loss.item() == pytest.approx(by_hand, rel=1e-12)


def test_charbonnier_gradient_is_finite_and_zero_at_zero_difference():
    prediction = torch.zeros(3, requires_grad=True)
    CharbonnierLoss()(prediction, torch.zeros(3)).backward()
    assert torch.equal(prediction.grad, torch.zeros(3))


# ---------------------------------------------------------------------------------------------------- edge loss
def test_edge_loss_of_identical_images_is_epsilon():
    image = torch.full((1, 3, 10, 10), 0.37, dtype=torch.float64)
    assert EdgeLoss()(image, image.clone()).item() == pytest.approx(EPSILON, rel=1e-12)


def test_laplacian_of_a_constant_is_zero_away_from_the_borders():
    # At the borders the replicate padding of the zero-stuffed image breaks the symmetry, as in the official code.
    laplacian = EdgeLoss().laplacian(torch.full((1, 3, 12, 14), 0.8, dtype=torch.float64))
    assert laplacian[..., 2:-2, 2:-2].abs().max().item() < 1e-12
    np.testing.assert_allclose(laplacian[0].numpy(), laplacian_numpy(np.full((3, 12, 14), 0.8)), atol=1e-12)


@pytest.mark.parametrize("shape", [(2, 3, 9, 12), (1, 3, 8, 8)])
def test_laplacian_and_edge_loss_match_numpy(shape):
    x, y = random_pair(1, shape)
    edge = EdgeLoss()
    np.testing.assert_allclose(edge.laplacian(torch.from_numpy(x))[0].numpy(), laplacian_numpy(x[0]), atol=1e-12)
    assert edge(torch.from_numpy(x), torch.from_numpy(y)).item() == pytest.approx(edge_numpy(x, y), rel=1e-10)


def test_edge_loss_in_float32_matches_float64():
    x, y = random_pair(2)
    single = EdgeLoss()(torch.from_numpy(x).float(), torch.from_numpy(y).float()).item()
    assert single == pytest.approx(edge_numpy(x, y), rel=1e-5)


# ---------------------------------------------------------------------------------------------------- MPRNet loss
def three_stages(seed=3, shape=(2, 3, 8, 10)):
    rng = np.random.default_rng(seed)
    # Values outside [0, 1] make the clamp of the denoising variant matter.
    stages = [rng.uniform(-0.3, 1.3, shape) for _ in range(3)]
    return stages, rng.random(shape)


def test_mprnet_loss_sums_charbonnier_and_weighted_edge_over_three_stages():
    stages, target = three_stages()
    expected = sum(charbonnier_numpy(stage, target) + 0.05 * edge_numpy(stage, target) for stage in stages)
    loss = MPRNetLoss()([torch.from_numpy(stage) for stage in stages], torch.from_numpy(target))
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_denoising_variant_clamps_outputs_and_drops_the_edge_loss():
    stages, target = three_stages()
    expected = sum(charbonnier_numpy(np.clip(stage, 0, 1), target) for stage in stages)
    loss_function = MPRNetLoss(edge_weight=0.0, clamp_outputs=True)
    loss = loss_function([torch.from_numpy(stage) for stage in stages], torch.from_numpy(target))
    assert loss.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("task", ["deblur", "denoise"])
def test_model_loss_is_the_configured_mprnet_loss_of_its_stages(task):
    torch.manual_seed(0)
    config = MPRNetConfig.for_task(task, size="tiny")
    model = MPRNetModel(config).eval()
    pixel_values, labels = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        output = model(pixel_values=pixel_values, labels=labels)
    stages, target = [stage.double().numpy() for stage in output.stage_reconstructions], labels.double().numpy()
    if task == "denoise":
        expected = sum(charbonnier_numpy(np.clip(stage, 0, 1), target) for stage in stages)
    else:
        expected = sum(charbonnier_numpy(stage, target) + 0.05 * edge_numpy(stage, target) for stage in stages)
    assert output.loss.item() == pytest.approx(expected, rel=1e-5)

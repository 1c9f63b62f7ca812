"""The model at any size, its outputs and loss, and clear errors for bad configs and inputs."""

import pytest
import torch

from conftest import TINY
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.hub.bundled import checkpoint_name
from mprnet_hf.models.mprnet.losses import MPRNetLoss
from mprnet_hf.models.mprnet.modeling_mprnet import mirror_pad, pad_to_multiple


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig(**TINY)).eval()


@pytest.mark.parametrize("task,widths", [("deblur", (96, 48, 32)), ("derain", (40, 20, 16)), ("denoise", (80, 48, 32))])
def test_presets_match_the_released_models(task, widths):
    config = MPRNetConfig.for_task(task)
    assert (config.n_feat, config.scale_unetfeats, config.scale_orsnetfeats) == widths
    assert (config.num_cab, config.kernel_size, config.reduction, config.bias) == (8, 3, 4, False)
    assert config.task == task
    expected = (0.0, True) if task == "denoise" else (0.05, False)
    assert (config.edge_loss_weight, config.clamp_outputs_in_loss) == expected


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"n_feat": 0}, "n_feat"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"in_channels": 1}, "in_channels"),
        ({"reduction": 64, "n_feat": 16}, "reduction"),
        ({"task": "sharpen"}, "task"),
        ({"scale_unetfeats": -1}, "scale_unetfeats"),
        ({"num_cab": 2.5}, "num_cab"),
    ],
)
def test_invalid_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        MPRNetConfig(**overrides)


def test_unknown_task_preset():
    with pytest.raises(ValueError, match="Unknown task"):
        MPRNetConfig.for_task("colorize")


def test_sizes_share_widths_across_tasks_and_keep_the_task_recipe():
    small = MPRNetConfig.for_task("denoise", size="small")
    assert (small.n_feat, small.scale_unetfeats, small.scale_orsnetfeats, small.num_cab) == (16, 8, 8, 2)
    assert small.task == "denoise" and small.edge_loss_weight == 0.0 and small.clamp_outputs_in_loss
    tiny = MPRNetConfig.for_task("derain", size="tiny", reduction=2)
    assert (tiny.n_feat, tiny.num_cab, tiny.reduction) == (8, 1, 2)
    medium = MPRNetConfig.for_task("deblur", size="medium")
    assert (medium.n_feat, medium.unet_widths, medium.orsnet_width, medium.num_cab) == (20, (20, 30, 40), 30, 2)
    assert MPRNetConfig.for_task("deblur", size="released").to_dict() == MPRNetConfig.for_task("deblur").to_dict()
    assert checkpoint_name("derain") == "mprnet-derain-small"
    with pytest.raises(ValueError, match="Unknown size 'huge': expected one of released, small, medium, tiny"):
        MPRNetConfig.for_task("deblur", size="huge")


def test_config_round_trip(tmp_path):
    config = MPRNetConfig.for_task("derain", num_cab=3, local_attention_window=96)
    config.save_pretrained(tmp_path)
    loaded = MPRNetConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (37, 45), (8, 8), (2, 200), (64, 48)])
def test_any_size_gives_the_same_size(model, size):
    image = torch.rand(2, 3, *size)
    with torch.no_grad():
        output = model(image)
    assert output.reconstruction.shape == image.shape
    assert len(output.stage_reconstructions) == 3
    assert all(stage.shape == image.shape for stage in output.stage_reconstructions)
    assert output.reconstruction is output.stage_reconstructions[-1]
    assert torch.isfinite(output.reconstruction).all()


def test_batch_elements_are_independent(model):
    first, second = torch.rand(1, 3, 24, 40), torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        together = model(torch.cat([first, second])).reconstruction
        alone = model(second).reconstruction
    assert (together[1:] - alone).abs().max() < 1e-5


def test_padding_mirrors_bottom_right():
    image = torch.arange(12.0).reshape(1, 1, 3, 4)
    padded = pad_to_multiple(image)
    assert padded.shape[-2:] == (8, 8)
    assert torch.equal(padded[..., :3, :4], image)
    assert torch.equal(padded[0, 0, 3, :4], image[0, 0, 1])  # reflect, without repeating the edge row
    assert torch.equal(mirror_pad(torch.ones(1, 3, 1, 1), 7, 7), torch.ones(1, 3, 8, 8))


def test_loss_is_returned_with_labels_and_trains(model):
    image, target = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    output = model(pixel_values=image, labels=target)
    expected = MPRNetLoss(edge_weight=0.05)(output.stage_reconstructions, target)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    output.loss.backward()
    assert model.prelu.weight.grad is not None and model.tail.weight.grad is not None
    model.zero_grad()


def test_tuple_output(model):
    with torch.no_grad():
        reconstruction, stages = model(torch.rand(1, 3, 8, 8), return_dict=False)
    assert reconstruction.shape == (1, 3, 8, 8) and len(stages) == 3


@pytest.mark.parametrize(
    "pixel_values,message",
    [
        (torch.rand(3, 16, 16), "shape"),
        (torch.rand(1, 1, 16, 16), "shape"),
        (torch.rand(1, 4, 16, 16), "shape"),
        (torch.rand(0, 3, 16, 16), "empty"),
        (torch.rand(1, 3, 0, 16), "empty"),
        (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "floating point"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        ([[0.5]], "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_value_errors(model, pixel_values, message):
    with pytest.raises(ValueError, match=message):
        model(pixel_values)


def test_mismatched_labels(model):
    with pytest.raises(ValueError, match="labels shape"):
        model(torch.rand(1, 3, 8, 8), labels=torch.rand(1, 3, 8, 16))


def test_tlc_with_a_window_larger_than_the_image_equals_global_pooling(model):
    config = MPRNetConfig(**TINY, local_attention_window=512)
    local = MPRNetModel(config).eval()
    local.load_state_dict(model.state_dict())
    image = torch.rand(1, 3, 48, 40)
    with torch.no_grad():
        assert torch.equal(local(image).reconstruction, model(image).reconstruction)
        small_window = MPRNetModel(MPRNetConfig(**TINY, local_attention_window=8)).eval()
        small_window.load_state_dict(model.state_dict())
        assert not torch.allclose(small_window(image).reconstruction, model(image).reconstruction)

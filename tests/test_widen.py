"""Widening trained weights (`training.widen`): the wider network restores exactly as the narrow one until trained,
and its added channels can learn."""

import json

import pytest
import torch

from mprnet_hf.models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from mprnet_hf.models.mprnet.modeling_mprnet import MPRNetModel
from mprnet_hf.training.widen import main, widen

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_looking(config) -> MPRNetModel:
    """A tiny model whose every weight is random, biases and PReLU slope included, so no channel is special."""
    torch.manual_seed(3)
    model = MPRNetModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return model


@pytest.mark.parametrize(
    "widths",
    [
        {"n_feat": 12, "scale_unetfeats": 6, "scale_orsnetfeats": 6},
        {"n_feat": 10},  # the concatenated inputs move while the U-Net steps stay
        {"scale_unetfeats": 7, "scale_orsnetfeats": 5},
    ],
)
def test_widened_model_restores_every_stage_as_before(tiny_config, widths):
    narrow = trained_looking(tiny_config(task="derain"))
    wide = widen(narrow, **widths)
    # In float64: the added zero terms change the convolutions' summation order, and random weights make features of
    # thousands, so float32 rounding alone reaches 1e-4; a channel out of place changes outputs by whole units.
    images = torch.rand(2, 3, 40, 56, dtype=torch.float64)
    with torch.inference_mode():
        before, after = narrow.double()(images), wide.double()(images)
    for stage_before, stage_after in zip(before.stage_reconstructions, after.stage_reconstructions, strict=True):
        torch.testing.assert_close(stage_after, stage_before, rtol=1e-8, atol=1e-9)
    for name, value in widths.items():
        assert getattr(wide.config, name) == value
    assert wide.config.task == "derain" and wide.config.num_cab == narrow.config.num_cab
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in narrow.parameters())


def test_added_channels_learn(tiny_config):
    narrow = trained_looking(tiny_config())
    wide = widen(narrow, n_feat=12).train()
    images = torch.rand(1, 3, 32, 32)
    wide(images, labels=images.flip(-1)).loss.backward()
    # The weights that read added channels into the original ones start at zero and must get a gradient.
    gradient = wide.tail.weight.grad[:, narrow.config.orsnet_width :]
    assert wide.tail.weight[:, narrow.config.orsnet_width :].abs().max() == 0
    assert gradient.abs().max() > 0


def test_widening_refuses_narrowing_and_other_fields(tiny_config):
    narrow = trained_looking(tiny_config())
    with pytest.raises(ValueError, match="narrower"):
        widen(narrow, n_feat=4)
    with pytest.raises(ValueError, match="Only n_feat"):
        widen(narrow, num_cab=3)


def test_command_saves_a_loadable_model_with_its_history(tiny_config, tmp_path, capsys):
    source = tmp_path / "narrow"
    narrow = trained_looking(tiny_config())
    narrow.save_pretrained(source)
    (source / "training_summary.json").write_text(json.dumps({"steps": 120, "seconds": 30.0}))
    (source / "training_log.jsonl").write_text('{"step": 100, "val_psnr": 20.0}\n')

    main([str(source), str(tmp_path / "wide"), "--n-feat", "12"])

    wide = MPRNetModel.from_pretrained(tmp_path / "wide").eval()
    # A whole model folder, as training exports one: the image processor travels with the weights.
    assert MPRNetImageProcessor.from_pretrained(tmp_path / "wide") is not None
    images = torch.rand(1, 3, 24, 24, dtype=torch.float64)
    with torch.inference_mode():
        torch.testing.assert_close(wide.double()(images).reconstruction, narrow.double()(images).reconstruction)
    summary = json.loads((tmp_path / "wide" / "training_summary.json").read_text())
    assert summary["steps"] == 120
    assert summary["widened"]["from"]["n_feat"] == 8 and summary["widened"]["to"]["n_feat"] == 12
    assert (tmp_path / "wide" / "training_log.jsonl").read_text() == '{"step": 100, "val_psnr": 20.0}\n'
    assert "weights (from" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="narrower"):
        main([str(source), str(tmp_path / "bad"), "--n-feat", "4"])
    # Not model folders: a missing path, and a folder whose config is not JSON.
    with pytest.raises(SystemExit, match="no config.json"):
        main([str(tmp_path / "missing"), str(tmp_path / "bad"), "--n-feat", "12"])
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(SystemExit, match="Cannot widen"):
        main([str(broken), str(tmp_path / "bad"), "--n-feat", "12"])
    assert not (tmp_path / "bad").exists()
    # Tiny has one attention block per level, medium two: widening cannot add blocks.
    with pytest.raises(SystemExit, match="adds channels, not blocks"):
        main([str(source), str(tmp_path / "bad"), "--size", "medium"])


def test_command_widens_small_weights_to_medium(tmp_path):
    from mprnet_hf.models.mprnet.configuration_mprnet import MPRNetConfig

    source = tmp_path / "small"
    trained_looking(MPRNetConfig.for_task("derain", size="small")).save_pretrained(source)
    main([str(source), str(tmp_path / "medium"), "--size", "medium"])
    wide = MPRNetConfig.from_pretrained(tmp_path / "medium")
    expected = MPRNetConfig.for_task("derain", size="medium")
    assert (wide.n_feat, wide.scale_unetfeats, wide.scale_orsnetfeats, wide.num_cab) == (
        expected.n_feat,
        expected.scale_unetfeats,
        expected.scale_orsnetfeats,
        expected.num_cab,
    )

"""Weight-space interpolation between a model and its fine-tune: the ends are the two models, the middle is the
tensor-wise mean, different architectures are refused, and the CLI writes loadable folders with a card saying so."""

import json

import pytest
import torch

from conftest import damaged_model_folder
from mprnet_hf import MPRNetModel
from mprnet_hf.training.interpolate import interpolate_models, main
from mprnet_hf.training.train import earlier_phases

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def two_models(tiny_config, **end_overrides):
    torch.manual_seed(0)
    start = MPRNetModel(tiny_config(task="derain")).eval()
    torch.manual_seed(1)
    end = MPRNetModel(tiny_config(**{"task": "derain", **end_overrides})).eval()
    return start, end


def test_the_ends_are_the_two_models_and_the_middle_is_their_mean(tiny_config):
    start, end = two_models(tiny_config)
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(interpolate_models(start, end, 0.0)(image).reconstruction, start(image).reconstruction)
        assert torch.allclose(
            interpolate_models(start, end, 1.0)(image).reconstruction, end(image).reconstruction, atol=1e-6
        )
    middle = interpolate_models(start, end, 0.5).state_dict()
    start_state, end_state = start.state_dict(), end.state_dict()
    for name, tensor in middle.items():
        if tensor.is_floating_point():
            torch.testing.assert_close(tensor, (start_state[name] + end_state[name]) / 2)


def test_different_architectures_or_tasks_are_refused(tiny_config):
    start, wider = two_models(tiny_config, n_feat=tiny_config().n_feat + 8)
    with pytest.raises(ValueError, match="n_feat"):
        interpolate_models(start, wider, 0.5)
    _, denoiser = two_models(tiny_config, task="denoise")
    with pytest.raises(ValueError, match="task"):
        interpolate_models(start, denoiser, 0.5)


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_weight_outside_zero_to_one_is_refused(tiny_config, weight):
    start, end = two_models(tiny_config)
    with pytest.raises(ValueError, match="between 0"):
        interpolate_models(start, end, weight)


def test_cli_writes_one_loadable_folder_per_weight_with_its_card(tiny_config, tmp_path, capsys):
    start, end = two_models(tiny_config)
    start.save_pretrained(tmp_path / "start")
    end.save_pretrained(tmp_path / "end")
    (tmp_path / "end" / "training_log.jsonl").write_text('{"step": 120, "val_psnr": 25.0}\n')
    (tmp_path / "end" / "training_summary.json").write_text(
        json.dumps({"task": "derain", "steps": 120, "seconds": 600.0, "best_val_psnr": 25.0})
    )
    weights = "--weight 0.25 --weight 0.75"
    written = main(f"--start {tmp_path}/start --end {tmp_path}/end {weights} --output-dir {tmp_path}/mixed".split())
    assert written == [tmp_path / "mixed" / f"w{w}" / "mprnet-derain-small" for w in ("0.25", "0.75")]
    loaded = MPRNetModel.from_pretrained(written[0])
    expected = interpolate_models(start, end, 0.25).state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, expected[name])
    summary = json.loads((written[0] / "training_summary.json").read_text())
    assert summary["steps"] == 120 and summary["phases"][-1]["interpolation"]["weight"] == 0.25
    card = (written[0] / "README.md").read_text()
    assert "0.25 of the way from" in card
    # The interpolated weights were never validated: the card does not give them the end's best validation PSNR.
    assert "Best validation PSNR" not in card
    assert "not measured for these interpolated weights" in card and "reached 25.00 dB" in card
    assert (written[1] / "training_log.jsonl").read_text() == (tmp_path / "end" / "training_log.jsonl").read_text()


def test_two_fine_tunes_of_one_model_count_both_and_a_later_fine_tune_keeps_the_interpolation(tiny_config, tmp_path):
    start, end = two_models(tiny_config)
    shared = {"steps": 100, "seconds": 600.0, "patch_size": 64, "batch_size": 8}
    for name, model, extra in (("a", start, 30), ("b", end, 50)):
        model.save_pretrained(tmp_path / name)
        own = {"steps": extra, "seconds": 60.0 * extra, "patch_size": 128, "batch_size": 4, "data": name}
        summary = {"task": "derain", "steps": 100 + extra, "seconds": 600.0 + 60.0 * extra, "phases": [shared, own]}
        (tmp_path / name / "training_summary.json").write_text(json.dumps(summary))
    (written,) = main(f"--start {tmp_path}/a --end {tmp_path}/b --weight 0.5 --output-dir {tmp_path}/mixed".split())
    summary = json.loads((written / "training_summary.json").read_text())
    assert (summary["steps"], summary["seconds"]) == (100 + 50 + 30, 600.0 + 3000.0 + 1800.0)
    assert summary["phases"][-1]["interpolation"]["start_phases"][0]["data"] == "a"
    card = (written / "README.md").read_text()
    assert "0.5 of the way from" in card and "30 steps of batch 4 at 128x128" in card
    assert "interpolation" in earlier_phases(summary)[-1]  # what a fine-tune from these weights starts its log with


def test_cli_says_what_is_wrong_with_a_folder_that_is_not_a_model(tiny_config, tmp_path):
    start, _ = two_models(tiny_config)
    start.save_pretrained(tmp_path / "start")
    with pytest.raises(SystemExit, match="not a model folder"):
        main(f"--start {tmp_path}/start --end {tmp_path}/nowhere --weight 0.5 --output-dir {tmp_path}/mixed".split())
    damaged = damaged_model_folder(tmp_path)
    with pytest.raises(SystemExit, match="error: "):
        main(f"--start {tmp_path}/start --end {damaged} --weight 0.5 --output-dir {tmp_path}/mixed".split())
    with pytest.raises(SystemExit):
        main(f"--start {tmp_path}/start --end {tmp_path}/start --weight 2 --output-dir {tmp_path}/mixed".split())

"""scripts/quality_report.py: every row of the quality table (protocols, shake by extent, JPEG re-encoding) is
computed for weights in any folder, one JSON per row, reused when it is for the same weights and photos, and the model
cards are rewritten only on request."""

import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mprnet_hf import MPRNetConfig, MPRNetModel

REPO_ROOT = Path(__file__).resolve().parents[1]
# Each test restores and scores a set of photos (BM3D in one): 2-7 s apiece on 2 cores.
pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]


def load_script():
    spec = importlib.util.spec_from_file_location("quality_report", REPO_ROOT / "scripts" / "quality_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


quality_report = load_script()


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """A folder of tiny mprnet-{task}-small models, with the bundled training summaries (the cards read them)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    for task in ("deblur", "denoise", "derain"):
        config = MPRNetConfig.for_task(task, size="tiny")
        MPRNetModel(config).save_pretrained(folder / f"mprnet-{task}-small")
        shutil.copy(
            REPO_ROOT / "checkpoints" / f"mprnet-{task}-small" / "training_summary.json",
            folder / f"mprnet-{task}-small",
        )
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two 40x40 crops of committed example photos."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("coffee.png", "fruits.png"):
        with Image.open(REPO_ROOT / "examples" / "clean" / name) as photo:
            photo.convert("RGB").crop((100, 60, 140, 100)).save(folder / name)
    return folder


def test_rows_cover_every_protocol_shake_extent_and_jpeg_quality():
    names = [row["name"] for row in quality_report.all_rows()]
    assert len(names) == len(set(names)) == 9 * 3
    for base in (
        "denoise-sigma15",
        "deblur",
        "derain",
        "deblur-shake-5-10",
        "deblur-shake-10-17",
        "deblur-shake-17-25",
        "deblur-shake-5-25",
    ):
        assert {base, f"{base}-jpeg90", f"{base}-jpeg70"} <= set(names)
    selected = quality_report.select_rows(quality_report.all_rows(), ["deblur"], ["deblur-shake-*", "*-jpeg70"])
    assert all(row["task"] == "deblur" for row in selected)
    assert {row["name"] for row in selected} >= {"deblur-shake-5-10", "deblur-jpeg70", "deblur-shake-5-25-jpeg70"}
    with pytest.raises(SystemExit, match="No row"):
        quality_report.select_rows(quality_report.all_rows(), ["derain"], ["deblur*"])


def test_report_writes_a_json_per_row_for_other_weights_and_reuses_it(tiny_checkpoints, photos, tmp_path, capsys):
    output = tmp_path / "results"
    arguments = [
        "--checkpoints",
        str(tiny_checkpoints),
        "--data",
        str(photos),
        "--output",
        str(output),
        "--rows",
        "deblur-shake-17-25*",
        "--bm3d-limit",
        "0",
    ]
    quality_report.main(arguments)
    table = capsys.readouterr().out
    assert sorted(path.name for path in output.iterdir()) == [
        "deblur-shake-17-25-jpeg70.json",
        "deblur-shake-17-25-jpeg90.json",
        "deblur-shake-17-25.json",
    ]
    for suffix in ("", " + JPEG 90", " + JPEG 70"):
        assert f"| deblur, camera shake 17-25 px (RGB){suffix} |" in table
    plain = json.loads((output / "deblur-shake-17-25.json").read_text())
    jpeg70 = json.loads((output / "deblur-shake-17-25-jpeg70.json").read_text())
    assert plain["model"] == str(tiny_checkpoints / "mprnet-deblur-small") and plain["shake_extent"] == [17, 25]
    assert jpeg70["jpeg_quality"] == 70 and plain["jpeg_quality"] is None
    assert jpeg70["summary"]["input"]["psnr"] != plain["summary"]["input"]["psnr"]
    assert set(plain["summary"]) == {"input", "mprnet-deblur-small", "wiener", "unsharp"}

    # --reuse takes the JSON as it is (a marked one shows it was not recomputed) ...
    plain["summary"]["input"]["psnr"] = 99.0
    (output / "deblur-shake-17-25.json").write_text(json.dumps(plain))
    quality_report.main([*arguments, "--reuse"])
    assert "| deblur, camera shake 17-25 px (RGB) | 99.00 /" in capsys.readouterr().out
    # ... but not one computed on other photos.
    other_photos = tmp_path / "other"
    shutil.copytree(photos, other_photos)
    quality_report.main([*arguments[:2], "--data", str(other_photos), *arguments[4:], "--reuse"])
    assert "99.00" not in capsys.readouterr().out


def test_bm3d_runs_on_its_rows_within_the_limit(tiny_checkpoints, photos, tmp_path, capsys):
    pytest.importorskip("bm3d")
    quality_report.main(
        [
            "--checkpoints",
            str(tiny_checkpoints),
            "--data",
            str(photos),
            "--output",
            str(tmp_path),
            "--rows",
            "denoise-sigma50,denoise-sigma50-jpeg90",
            "--bm3d-limit",
            "1",
        ]
    )
    table = capsys.readouterr().out
    result = json.loads((tmp_path / "denoise-sigma50.json").read_text())
    assert result["summary"]["cbm3d"]["images"] == 1 and result["summary"]["nlm"]["images"] == 2
    cbm3d = result["images"][0]["scores"]["cbm3d"]["psnr"]
    assert cbm3d > result["images"][0]["scores"]["input"]["psnr"] + 5
    assert "CBM3D (true σ)" in table and "on 1 of 2 photos, where ours is" in table
    assert "cbm3d" not in json.loads((tmp_path / "denoise-sigma50-jpeg90.json").read_text())["summary"]


def test_cards_are_rewritten_only_with_update_cards(tiny_checkpoints, photos, tmp_path):
    card = tiny_checkpoints / "mprnet-derain-small" / "README.md"
    card.unlink(missing_ok=True)
    arguments = [
        "--checkpoints",
        str(tiny_checkpoints),
        "--data",
        str(photos),
        "--output",
        str(tmp_path),
        "--bm3d-limit",
        "0",
    ]
    quality_report.main([*arguments, "--tasks", "derain"])
    assert not card.exists()
    with pytest.raises(SystemExit):
        quality_report.main([*arguments, "--rows", "derain", "--update-cards"])
    quality_report.main([*arguments, "--tasks", "derain", "--reuse", "--update-cards"])
    evaluation = card.read_text().split("## Evaluation")[1].split("## Usage")[0]
    for label in ("derain, synthetic streaks (Y) |", "derain, synthetic streaks (Y) + JPEG 70 |"):
        assert label in evaluation
    assert "deblur" not in evaluation and str(photos) in evaluation
    assert not (tiny_checkpoints / "mprnet-deblur-small" / "README.md").exists()


def test_new_weights_take_the_baselines_of_earlier_results_and_show_the_change(
    tiny_checkpoints, photos, tmp_path, capsys
):
    earlier = tmp_path / "earlier"
    common = ["--data", str(photos), "--rows", "derain,derain-jpeg90", "--bm3d-limit", "0"]
    quality_report.main(["--checkpoints", str(tiny_checkpoints), "--output", str(earlier), *common])
    # Other weights: the same architecture, other values.
    candidates = tmp_path / "candidates"
    torch.manual_seed(1)
    MPRNetModel(MPRNetConfig.for_task("derain", size="tiny")).save_pretrained(candidates / "mprnet-derain-small")
    capsys.readouterr()
    quality_report.main(
        [
            "--checkpoints",
            str(candidates),
            "--output",
            str(tmp_path / "new"),
            *common,
            "--baselines-from",
            str(earlier),
            "--compare-with",
            str(earlier),
        ]
    )
    out = capsys.readouterr().out
    before = json.loads((earlier / "derain.json").read_text())
    after = json.loads((tmp_path / "new" / "derain.json").read_text())
    # The baselines' scores are the earlier ones, per photo and in the summary; the model's are its own.
    assert set(after["summary"]) == set(before["summary"]) == {"input", "mprnet-derain-small", "median", "opening"}
    for name in ("median", "opening"):
        assert after["summary"][name] == before["summary"][name]
        assert [image["scores"][name] for image in after["images"]] == [
            image["scores"][name] for image in before["images"]
        ]
    assert after["summary"]["input"]["psnr"] == before["summary"]["input"]["psnr"]
    old_psnr, new_psnr = (result["summary"]["mprnet-derain-small"]["psnr"] for result in (before, after))
    assert old_psnr != new_psnr
    assert (
        f"| {before['summary']['input']['psnr']:.2f} | {old_psnr:.2f} | {new_psnr:.2f} | "
        f"{new_psnr - old_psnr:+.2f} |" in out
    )
    assert "derain, synthetic streaks (Y) + JPEG 90 |" in out.split("same photos and seeds")[1]


def test_auto_mode_is_scored_on_the_foreign_rows_with_the_steps_it_ran(tiny_checkpoints, photos, tmp_path, capsys):
    """With --auto a foreign row scores auto mode too (the weights given serve their task, the bundled ones the
    others): the same pixels `restore_image_auto` returns, the steps run per photo, and the table of the auto bars."""
    pytest.importorskip("albumentations")
    from mprnet_hf import restore_image_auto
    from mprnet_hf.evaluation import evaluate as ev

    output = tmp_path / "results"
    common = ["--checkpoints", str(tiny_checkpoints), "--output", str(output), "--data", str(photos)]
    quality_report.main([*common, "--rows", "albumentations-gauss-noise,derain", "--bm3d-limit", "0", "--auto"])
    out = capsys.readouterr().out
    result = json.loads((output / "albumentations-gauss-noise.json").read_text())
    assert list(result["summary"]) == ["input", "mprnet-denoise-small", "auto mode", "nlm", "tv"]
    assert result["detector"] == "bundled"
    model = MPRNetModel.from_pretrained(tiny_checkpoints / "mprnet-denoise-small").eval()
    samples = list(ev.foreign_samples(photos, "albumentations/gauss-noise"))
    for image, sample in zip(result["images"], samples, strict=True):
        restoration = restore_image_auto(model, Image.fromarray(sample.degraded), precision="fp32", max_megapixels=None)
        assert image["steps"] == {"auto mode": list(restoration.steps)}
        restored = ev.to_uint8(np.asarray(restoration.image.convert("RGB")) / 255.0)
        assert image["scores"]["auto mode"]["psnr"] == pytest.approx(ev.psnr(restored, sample.clean))
    # The own rows are not foreign: no auto mode there.
    assert "auto mode" not in json.loads((output / "derain.json").read_text())["summary"]
    routed = sum(steps["auto mode"] == ["denoise"] for steps in (image["steps"] for image in result["images"]))
    assert f"| {routed}/2 |" in out
    assert f"Given exactly the right restoration, on the rows drawn without whole-frame changes: {routed}/2" in out
    # The baselines' column does not take auto mode for one.
    assert "auto mode" not in out.split("classical baselines |")[1].split("\n\n")[0]
    # A run without --auto says that it drops auto mode's scores from the row's result.
    quality_report.main([*common, "--rows", "albumentations-gauss-noise", "--bm3d-limit", "0"])
    assert "holds auto mode's scores too" in capsys.readouterr().err
    assert "auto mode" not in json.loads((output / "albumentations-gauss-noise.json").read_text())["summary"]


def test_auto_table_counts_a_restoration_run_twice_as_that_restoration():
    """Deraining run a second time (rain left after the first pass) is still the row's one restoration; a step of
    another restoration is not."""

    def row(steps_per_photo):
        images = [
            {"name": f"{index}.png", "steps": {"auto mode": steps}} for index, steps in enumerate(steps_per_photo)
        ]
        summary = {"input": {"psnr": 20.0}, "auto mode": {"psnr": 25.0}}
        return {"task": "derain", "foreign": "kornia/rain", "summary": summary, "images": images}

    results = {"kornia-rain": row([["derain"], ["derain", "derain"], ["derain", "denoise"], []])}
    table = quality_report.auto_table(results, {"kornia-rain": "derain, kornia rain [foreign-test]"})
    assert "| 2/4 | derain + denoise, none |" in table
    assert "on the rows drawn without whole-frame changes: 2/4 (50.0 %" in table

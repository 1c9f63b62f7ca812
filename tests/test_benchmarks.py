"""The benchmarks' own logic: interleaved workers and per-round ratios; the peak-share runner's models."""

import json

import pytest

from benchmarks.speed import add_side_by_side_ratios, run_interleaved


def row(path, median_s, round_s=None, run="now"):
    case = dict(device="cpu", config="deblur", size=256, precision="fp32", threads=2, env="", run_started=run)
    interleaved = {"interleaved": True, "round_s": round_s} if round_s else {}
    return dict(case, path=path, median_s=median_s, **interleaved)


def test_interleaved_ratios_are_taken_round_by_round():
    # Round 2 ran while the machine was slow for both: its pair says 1.33, where the medians alone say 1.0.
    official = row("official", 12.0, [10.0, 40.0, 12.0])
    library = row("library", 12.0, [5.0, 30.0, 12.0])
    baseline = add_side_by_side_ratios([official, library], "now")
    assert baseline.startswith("the official code")
    assert library["x_side_by_side"] == pytest.approx(1.333, abs=1e-3)
    assert official["x_side_by_side"] == 1.0


def test_rows_of_separate_processes_compare_medians_and_other_runs_are_left_alone():
    eager, library, older = row("eager", 12.0), row("library", 8.0), row("library", 1.0, run="before")
    baseline = add_side_by_side_ratios([eager, library, older], "now")
    assert baseline.startswith("the eager stand-in")
    assert library["x_side_by_side"] == 1.5
    assert "x_side_by_side" not in older


@pytest.mark.slow
def test_interleaved_workers_take_turns_and_report_every_round():
    specs = [
        dict(
            device="cpu",
            config="derain",
            size=16,
            path=path,
            precision="fp32",
            threads=1,
            warmup=0,
            repeats=3,
            env="",
            official=None,
        )
        for path in ("eager", "library")
    ]
    rows = run_interleaved(specs, env={})
    assert [row["path"] for row in rows] == ["eager", "library"]
    for result in rows:
        assert len(result["round_s"]) == 3 and all(seconds > 0 for seconds in result["round_s"])
        assert result["interleaved"] and result["finite_output"]
        assert result["median_s"] == pytest.approx(sorted(result["round_s"])[1], abs=1e-3)


@pytest.mark.slow
def test_peak_share_runs_the_released_configuration_with_its_own_flop_count(tmp_path, capsys):
    from benchmarks.common import count_conv_flops
    from benchmarks.peak_share import main
    from mprnet_hf import MPRNetConfig

    output = tmp_path / "peak_share.json"
    main(
        ["--models", "derain-released", "--sizes", "16", "--paths", "model_call", "--threads", "1"]
        + ["--warmup", "0", "--repeats", "1", "--output", str(output)]
    )
    rows = json.loads(output.read_text())["rows"]
    assert [(r["model"], r["size"], r["path"]) for r in rows] == [("derain-released", 16, "model_call")]
    released_flops = count_conv_flops(MPRNetConfig.for_task("derain", "released"), 16, 16)
    assert rows[0]["conv_gflop"] == round(released_flops / 1e9, 1)
    assert "derain-released" in capsys.readouterr().out


def test_peak_share_refuses_the_app_path_for_released_models(capsys):
    from benchmarks.peak_share import main

    with pytest.raises(SystemExit):
        main(["--models", "deblur-released", "--paths", "app"])
    assert "the app serves only the bundled models" in capsys.readouterr().err


def test_model_sizes_reads_the_psnr_reached_per_cpu_hour_from_a_training_log(tmp_path):
    from benchmarks.model_sizes import parse_curves, psnr_at_hours

    log = tmp_path / "training_log.jsonl"
    points = [(900, 21.0), (1800, 22.5), (2700, 22.0), (5400, 24.0)]
    log.write_text(
        "".join(json.dumps({"step": i, "seconds": s, "val_psnr": p}) + "\n" for i, (s, p) in enumerate(points))
    )
    reached = psnr_at_hours(log)
    assert reached["psnr_at_0.25h"] == 21.0 and reached["psnr_at_0.5h"] == 22.5
    assert reached["psnr_at_1h"] == 22.5, "the best reached by then, not the last point"
    assert reached["psnr_at_2h"] == 24.0 and reached["cpu_hours_logged"] == 1.5
    assert psnr_at_hours(log, threads=2)["psnr_at_0.5h"] == 21.0, "two threads spend CPU-hours twice as fast"
    assert parse_curves(f"small={log}") == {"small": log}
    with pytest.raises(ValueError, match="PRESET=PATH"):
        parse_curves("small")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no validation points"):
        psnr_at_hours(tmp_path / "empty.jsonl")


def test_a_size_fits_the_bundle_only_by_a_speed_measured_on_two_threads():
    from benchmarks.model_sizes import fits_the_bundle

    assert fits_the_bundle(1.7, 1.8, threads=2) == "yes"
    assert fits_the_bundle(14.6, 9.0, threads=2) == "no (speed)"
    assert fits_the_bundle(25.0, 1.0, threads=2) == "no (size)"
    # One thread's 16.5 s says nothing of two cores: the speed is left to be measured, never called a fit.
    assert fits_the_bundle(14.6, 16.5, threads=1) == "size yes; speed: measure with --threads 2"

"""Tiled inference (`mprnet_hf.models.mprnet.inference.restore_tensor`): bounded memory, linear time, and seamless
blending.

  scaling   time and peak RSS against the pixel count, one subprocess per size; tiled and (optionally) untiled
  psnr      PSNR between tiled and untiled outputs of a 1024x1024 photo, for several tile sizes and overlaps

Examples:
  python -m benchmarks.tiled scaling --model checkpoints/mprnet-deblur-small --sizes 256,512,1024,2048,4096
  python -m benchmarks.tiled scaling --model checkpoints/mprnet-deblur-small --sizes 256,512,1024,2048 --modes untiled
  python -m benchmarks.tiled scaling --config deblur --sizes 512,1024 --tile 256 --overlap 32
  python -m benchmarks.tiled psnr --settings 512:64,512:128,256:32,256:64 --statistics-passes 0,1
Results are merged into benchmarks/results/tiled_scaling.json (scaling --output names another file) and
tiled_psnr.json.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

from benchmarks.common import (
    RESULTS_DIR,
    current_rss_mib,
    emit_result,
    format_table,
    merge_results,
    parse_list,
    peak_rss_mib,
    psnr,
    run_metadata,
    run_worker,
)
from mprnet_hf.hub.bundled import checkpoint_name
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS

SMALL_CHECKPOINTS = {task: f"checkpoints/{checkpoint_name(task)}" for task in TASKS}


def load_model(model: str | None, config: str | None, **config_overrides):
    """A trained checkpoint folder, or a released configuration with random weights (seed 0)."""
    from mprnet_hf import MPRNetConfig, MPRNetModel

    if model:
        return MPRNetModel.from_pretrained(model, **config_overrides).eval()
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig.for_task(config, **config_overrides)).eval()


# ---------------------------------------------------------------------------------------------------- scaling
def scaling_worker(spec: dict) -> dict:
    from benchmarks.photos import square_photo
    from mprnet_hf.models.mprnet.inference import restore_tensor
    from mprnet_hf.speed.fast import optimize_for_inference, reuse_freed_memory

    torch.set_num_threads(spec["threads"])
    model = load_model(spec["model"], spec["config"])
    if spec["fast"]:
        reuse_freed_memory()
        optimize_for_inference(model)
    rss_after_model = current_rss_mib()
    images = square_photo(spec["size"])[None]
    tile_size = spec["tile"] if spec["tiled"] else None
    started = time.perf_counter()
    restored = restore_tensor(
        model,
        images,
        tile_size=tile_size,
        tile_overlap=spec["overlap"],
        return_stages=False,
        statistics_passes=spec["statistics_passes"],
    )[0]
    seconds = time.perf_counter() - started
    assert restored.shape == images.shape and torch.isfinite(restored).all()
    return dict(
        spec,
        seconds=round(seconds, 3),
        peak_rss_mib=round(peak_rss_mib(), 1),
        rss_after_model_mib=round(rss_after_model, 1),
        **tile_work(spec),
    )


def tile_work(spec: dict) -> dict:
    """How many tiles restore_tensor runs and how many pixels the model processes: tiles overlap, so more than the
    image has (most at sizes just above one tile), and each pass recording whole-image statistics processes them
    all once more."""
    from mprnet_hf.models.mprnet.inference import tile_starts

    size = spec["size"]
    if not spec["tiled"] or size <= spec["tile"]:
        return {"tiles": 1, "processed_megapixels": round(size * size / 1e6, 3)}
    starts = tile_starts(size, spec["tile"], spec["overlap"])
    passes = 1 + spec.get("statistics_passes", 0)
    return {
        "tiles": len(starts) ** 2,
        "processed_megapixels": round(passes * (len(starts) * spec["tile"]) ** 2 / 1e6, 3),
    }


SCALING_COLUMNS = [
    ("model", "model_name", ""),
    ("size", "size", ""),
    ("tiled", "tiled", ""),
    ("tile/overlap", "tiling", ""),
    ("statistics passes", "statistics_passes", ""),
    ("tiles", "tiles", ""),
    ("processed MP", "processed_megapixels", ".2f"),
    ("seconds", "seconds", ".2f"),
    ("s per image MP", "seconds_per_megapixel", ".3f"),
    ("s per processed MP", "seconds_per_processed_megapixel", ".3f"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"),
    ("RSS after load MiB", "rss_after_model_mib", ".0f"),
    ("load", "load_before", ".2f"),
    ("others' CPU", "other_cpu_share", ".0%"),
]


def run_scaling(args) -> None:
    sizes = parse_list(args.sizes, int)
    model_name = args.model or f"{args.config} (released, random weights)"
    modes = [mode.strip().lower() for mode in parse_list(args.modes)]
    if not modes or set(modes) - {"tiled", "untiled"}:
        raise SystemExit(f"--modes takes tiled and/or untiled, got {args.modes!r}")
    new_rows = []
    for tiled in [mode == "tiled" for mode in modes]:
        for size in sizes:
            spec = dict(
                model=args.model,
                config=args.config,
                size=size,
                tiled=tiled,
                tile=args.tile,
                overlap=args.overlap,
                threads=args.threads,
                fast=args.fast,
                statistics_passes=args.statistics_passes if tiled else 0,
            )
            row = run_worker("benchmarks.tiled", dict(spec, mode="scaling"), timeout=args.timeout)
            row.update(
                model_name=model_name,
                tiling=f"{args.tile}/{args.overlap}" if tiled else "-",
                megapixels=size * size / 1e6,
                seconds_per_megapixel=round(row["seconds"] / (size * size / 1e6), 4),
                seconds_per_processed_megapixel=round(row["seconds"] / row["processed_megapixels"], 4),
            )
            new_rows.append(row)
            print(
                f"{model_name} {size}x{size} tiled={tiled}: {row['seconds']:.2f} s, "
                f"peak RSS {row['peak_rss_mib']:.0f} MiB",
                flush=True,
            )
    output = RESULTS_DIR / args.output
    key = ("model_name", "size", "tiled", "tiling", "fast", "threads", "statistics_passes")
    rows = merge_results(output, new_rows, key, run_metadata("benchmarks.tiled", args.argv))
    shown = sorted(
        (row for row in rows if row["model_name"] == model_name), key=lambda row: (not row["tiled"], row["size"])
    )
    print(format_table(shown, SCALING_COLUMNS))
    print(f"results: {output}")


# ---------------------------------------------------------------------------------------------------- psnr
def parse_settings(text: str) -> list[tuple[int, int]]:
    return [tuple(int(part) for part in item.split(":")) for item in parse_list(text)]


def psnr_worker(spec: dict) -> dict:
    from benchmarks.photos import square_photo
    from mprnet_hf.data.degradations import degrade
    from mprnet_hf.models.mprnet.inference import restore_tensor

    torch.set_num_threads(spec["threads"])
    window = spec.get("local_attention_window", 0)
    model = load_model(spec["model"], None, **({"local_attention_window": window} if window else {}))
    task = model.config.task
    clean = square_photo(spec["size"], Path(spec["photo"]))
    degraded = degrade(clean, task, seed=0)[None]
    untiled = restore_tensor(model, degraded, return_stages=False)[0].clamp(0, 1)
    rows = []
    for (tile, overlap), passes in itertools.product(spec["settings"], spec["statistics_passes"]):
        started = time.perf_counter()
        tiled = restore_tensor(
            model, degraded, tile_size=tile, tile_overlap=overlap, return_stages=False, statistics_passes=passes
        )[0]
        tiled = tiled.clamp(0, 1)
        rows.append(
            dict(
                model=spec["model"],
                task=task,
                size=spec["size"],
                photo=Path(spec["photo"]).name,
                tile=tile,
                overlap=overlap,
                local_attention_window=model.config.local_attention_window,
                statistics_passes=passes,
                psnr_tiled_vs_untiled=round(psnr(untiled, tiled), 2),
                max_abs_diff=round((tiled - untiled).abs().max().item(), 5),
                psnr_tiled_vs_clean=round(psnr(clean[None], tiled), 2),
                psnr_untiled_vs_clean=round(psnr(clean[None], untiled), 2),
                seconds=round(time.perf_counter() - started, 2),
            )
        )
    return {"rows": rows}


PSNR_COLUMNS = [
    ("model", "task", ""),
    ("tile", "tile", ""),
    ("overlap", "overlap", ""),
    ("TLC window", "local_attention_window", ""),
    ("statistics passes", "statistics_passes", ""),
    ("PSNR tiled vs untiled dB", "psnr_tiled_vs_untiled", ".2f"),
    ("max abs diff", "max_abs_diff", ".4f"),
    ("PSNR vs clean: tiled", "psnr_tiled_vs_clean", ".2f"),
    ("untiled", "psnr_untiled_vs_clean", ".2f"),
]


def run_psnr(args) -> None:
    models = parse_list(args.models) if args.models else list(SMALL_CHECKPOINTS.values())
    new_rows = []
    for model in models:
        spec = dict(
            mode="psnr",
            model=model,
            size=args.size,
            photo=str(args.photo),
            threads=args.threads,
            settings=parse_settings(args.settings),
            local_attention_window=args.local_attention_window,
            statistics_passes=parse_list(args.statistics_passes, int),
        )
        result = run_worker("benchmarks.tiled", spec, timeout=args.timeout)
        for row in result["rows"]:
            row["load_before"] = result["load_before"]
            new_rows.append(row)
            print(
                f"{row['task']} tile {row['tile']} overlap {row['overlap']} "
                f"statistics passes {row['statistics_passes']}: "
                f"{row['psnr_tiled_vs_untiled']:.2f} dB",
                flush=True,
            )
    output = RESULTS_DIR / "tiled_psnr.json"
    rows = merge_results(
        output,
        new_rows,
        ("model", "size", "photo", "tile", "overlap", "local_attention_window", "statistics_passes"),
        run_metadata("benchmarks.tiled", args.argv),
    )
    print(
        format_table(
            sorted(
                rows,
                key=lambda row: (
                    row["task"],
                    row["local_attention_window"],
                    -row["tile"],
                    row["overlap"],
                    row["statistics_passes"],
                ),
            ),
            PSNR_COLUMNS,
        )
    )
    print(f"results: {output}")


def main(argv=None):
    import sys

    from benchmarks.photos import DEFAULT_PHOTO
    from mprnet_hf.models.mprnet.inference import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command")
    scaling = commands.add_parser("scaling", help="time and memory against the pixel count")
    source = scaling.add_mutually_exclusive_group()
    source.add_argument("--model", help="checkpoint folder (default checkpoints/mprnet-deblur-small)")
    source.add_argument("--config", choices=["deblur", "derain", "denoise"], help="released config, random weights")
    scaling.add_argument("--sizes", default="256,512,1024,2048,4096")
    scaling.add_argument("--tile", type=int, default=DEFAULT_TILE_SIZE)
    scaling.add_argument("--overlap", type=int, default=DEFAULT_TILE_OVERLAP)
    scaling.add_argument("--modes", default="tiled", help="comma-separated: tiled,untiled (untiled memory grows!)")
    scaling.add_argument("--fast", action="store_true", help="use mprnet_hf.speed.fast (channels-last, reused memory)")
    psnr_parser = commands.add_parser("psnr", help="tiled against untiled output on a photo")
    psnr_parser.add_argument("--models", help="comma-separated checkpoint folders (default: the three small ones)")
    psnr_parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    psnr_parser.add_argument("--size", type=int, default=1024)
    psnr_parser.add_argument(
        "--settings", default=f"{DEFAULT_TILE_SIZE}:{DEFAULT_TILE_OVERLAP}", help="comma-separated tile:overlap pairs"
    )
    psnr_parser.add_argument(
        "--local-attention-window",
        type=int,
        default=0,
        help="TLC window for both runs (default: the checkpoint's own setting)",
    )
    psnr_parser.add_argument(
        "--statistics-passes",
        default="1",
        help="comma-separated passes recording whole-image statistics (restore_tensor's default: 1)",
    )
    scaling.add_argument(
        "--statistics-passes",
        type=int,
        default=1,
        help="passes recording whole-image statistics before the tiled restore (default 1)",
    )
    scaling.add_argument(
        "--output",
        default="tiled_scaling.json",
        help="results file under benchmarks/results (another one keeps a separate set of rows, e.g. "
        "measured on another machine)",
    )
    for sub in (scaling, psnr_parser):
        sub.add_argument("--threads", type=int, default=2)
        sub.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])
    if args.worker:
        spec = json.loads(args.worker)
        emit_result(scaling_worker(spec) if spec["mode"] == "scaling" else psnr_worker(spec))
    elif args.command == "scaling":
        if not args.model and not args.config:
            args.model = SMALL_CHECKPOINTS["deblur"]
        run_scaling(args)
    elif args.command == "psnr":
        run_psnr(args)
    else:
        parser.print_help()


if __name__ == "__main__":
    main()

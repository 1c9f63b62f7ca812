r"""Scores restoration weights against the degraded input and the classical baselines on held-out photos, writes one
JSON result per row and prints the quality table (docs/EVALUATION.md); with --update-cards it also puts each task's
rows into its model card.

    python scripts/prepare_dev_photos.py --output data/dev      # once
    python scripts/quality_report.py [--data data/dev/val] [--reuse] [--rows 'deblur-shake-*'] [--bm3d-limit 1]
    # new weights (a folder of mprnet-{task}-small folders) on the same photos, without touching the bundled cards;
    # the baselines' scores taken from the bundled weights' results, and the change against them printed
    python scripts/quality_report.py --checkpoints runs/candidates --output runs/candidates/evaluation \
        --baselines-from benchmarks/evaluation --compare-with benchmarks/evaluation

Rows: each task's protocol (Gaussian noise of three levels, 17x17 camera shake, rain streaks), camera shake by extent
(5-10, 10-17, 17-25 px, and 5-25 px), and every one of them again with its degraded input re-encoded as JPEG at
quality 90 and 70. BM3D (`--bm3d-limit N`, the first N photos) runs on the rows without JPEG of the four main
protocols only: it takes minutes per photo on a CPU core.
"""

import argparse
import fnmatch
import json
import sys
from pathlib import Path

# Run as a script from the repository root, where mprnet_hf is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mprnet_hf import MPRNetConfig  # noqa: E402
from mprnet_hf.detection.detector import distinct_restorations  # noqa: E402
from mprnet_hf.evaluation import foreign  # noqa: E402
from mprnet_hf.evaluation.evaluate import AUTO_MODE  # noqa: E402
from mprnet_hf.evaluation.evaluate import main as evaluate  # noqa: E402
from mprnet_hf.hub import save_model_card, trained_model_card  # noqa: E402
from mprnet_hf.hub.bundled import JPEG_DENOISE, checkpoint_name  # noqa: E402
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS  # noqa: E402

BUNDLED_CHECKPOINTS = "checkpoints"
BUNDLED_OUTPUT = "benchmarks/evaluation"
JPEG_QUALITIES = (90, 70)
SHAKE_BINS = ("5-10", "10-17", "17-25")
SHAKE_RANGE = "5-25"
# (name, task, label, extra evaluate arguments) of each protocol before JPEG re-encoding; BM3D runs on these names.
PROTOCOLS = [
    ("denoise-sigma15", "denoise", "denoise, Gaussian σ=15 (RGB)", ["--sigma", "15"]),
    ("denoise-sigma25", "denoise", "denoise, Gaussian σ=25 (RGB)", ["--sigma", "25"]),
    ("denoise-sigma50", "denoise", "denoise, Gaussian σ=50 (RGB)", ["--sigma", "50"]),
    ("deblur", "deblur", "deblur, random camera shake (RGB)", []),
    *[
        (f"deblur-shake-{extent}", "deblur", f"deblur, camera shake {extent} px (RGB)", ["--shake-extent", extent])
        for extent in (*SHAKE_BINS, SHAKE_RANGE)
    ],
    ("derain", "derain", "derain, synthetic streaks (Y)", []),
]
SETS = ("own", "foreign-dev", "foreign-test")
BM3D_ROWS = {"denoise-sigma15", "denoise-sigma25", "denoise-sigma50", "deblur"}
BASELINE_NAMES = {
    "nlm": "non-local means (true σ)",
    "tv": "TV (true σ)",
    "wiener": "Wiener (true kernel)",
    "unsharp": "unsharp masking",
    "median": "median",
    "opening": "grey opening",
    "cbm3d": "CBM3D (true σ)",
    "bm3d": "BM3D deblurring (true kernel)",
}


def all_rows() -> list[dict]:
    """Every row of the own synthesis in order: each protocol, then the same with JPEG at each quality."""
    rows = []
    for name, task, label, extra in PROTOCOLS:
        own = ["--synthetic", *extra]
        rows.append({"name": name, "task": task, "label": label, "extra": own, "bm3d": name in BM3D_ROWS, "set": "own"})
        for quality in JPEG_QUALITIES:
            rows.append(
                {
                    "name": f"{name}-jpeg{quality}",
                    "task": task,
                    "label": f"{label} + JPEG {quality}",
                    "extra": [*own, "--jpeg", str(quality)],
                    "bm3d": False,
                    "set": "own",
                }
            )
    return rows


def foreign_rows() -> list[dict]:
    """A row per foreign set (mprnet_hf.evaluation.foreign): degradations made by third-party libraries that never
    enter training, foreign-dev (may guide choices) before foreign-test (only reported)."""
    rows = []
    for item in sorted(foreign.foreign_sets().values(), key=lambda item: item.role):
        frame = ", as drawn (whole frame changed too)" if item.whole_frame else ""
        protocol = "Y" if item.task == "derain" else "RGB"
        rows.append(
            {
                "name": f"{item.generator}-{item.name}",
                "task": item.task,
                "label": f"{item.task}, {item.generator} {item.name}{frame} ({protocol}) [{item.role}]",
                "extra": ["--foreign", item.key],
                "bm3d": False,
                "set": item.role,
                "generator": item.generator,
            }
        )
    return rows


def select_rows(rows: list[dict], tasks: list[str] | None, patterns: list[str] | None) -> list[dict]:
    """The rows of the given tasks whose names match any of the shell-style patterns (all rows when not given)."""
    selected = [
        row
        for row in rows
        if (not tasks or row["task"] in tasks)
        and (not patterns or any(fnmatch.fnmatchcase(row["name"], pattern) for pattern in patterns))
    ]
    if not selected:
        names = ", ".join(row["name"] for row in rows)
        raise SystemExit(f"No row matches --tasks/--rows; the rows are: {names}")
    return selected


def model_key(result: dict) -> str:
    """The model's method name in a row's JSON result (the weights' folder name, mprnet-<task>-small)."""
    names = [key for key in result["summary"] if key.startswith("mprnet-")]
    if not names:
        raise SystemExit(f"A result of {result.get('model')} on {result.get('data')} holds no model's scores")
    return names[0]


def earlier_baselines(row: dict, data: str, folder: Path | None) -> dict | None:
    """The row's result in `folder` when it scored the same photos: its baselines need not run again, since the
    degraded inputs depend only on the photos and the seeds."""
    if folder is None:
        return None
    path = folder / f"{row['name']}.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    return result if result.get("data") == str(data) else None


def baseline_names(summary: dict) -> list[str]:
    """The classical baselines among a result's methods: not the input, a model (mprnet-*) or auto mode."""
    return [key for key in summary if key not in ("input", AUTO_MODE) and not key.startswith("mprnet-")]


def with_baselines_of(result: dict, earlier: dict) -> dict:
    """`result` (the input and the model) with the baseline scores of `earlier`, per photo and in the summary."""
    baselines = baseline_names(earlier["summary"])
    earlier_images = {image["name"]: image for image in earlier["images"]}
    for image in result["images"]:
        for name in baselines:
            if name in earlier_images[image["name"]]["scores"]:
                image["scores"][name] = earlier_images[image["name"]]["scores"][name]
    result["summary"].update({name: earlier["summary"][name] for name in baselines})
    result["baselines_from"] = earlier.get("model")
    return result


def holds_auto_mode(path: Path) -> bool:
    """Whether the JSON result at `path` has auto mode's scores (False when it is missing or unreadable)."""
    try:
        return AUTO_MODE in json.loads(path.read_text())["summary"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def jpeg_denoiser_folder(checkpoints: Path) -> Path | None:
    """The JPEG denoiser beside the denoise model in `checkpoints`, if there is one: it restores the noisy photos saved
    as JPEG in the denoise rows, as in the app."""
    folder = checkpoints / checkpoint_name(JPEG_DENOISE)
    return folder if (folder / "config.json").is_file() else None


def run(
    row: dict,
    data: str,
    output: Path,
    checkpoints: Path,
    reuse: bool,
    bm3d_limit: int,
    threads: int | None,
    baselines_from: Path | None = None,
    auto: bool = False,
    detector: str | None = None,
) -> dict:
    """The JSON result of one row, computed unless --reuse finds one for the same weights and photos; with
    `baselines_from`, only the model runs and the baselines' scores are taken from the earlier result of the row.
    With `auto`, a foreign row scores auto mode too (with `detector`, or the bundled one)."""
    auto = auto and "generator" in row
    path = output / f"{row['name']}.json"
    model = str(checkpoints / f"mprnet-{row['task']}-small")
    jpeg_folder = jpeg_denoiser_folder(checkpoints) if row["task"] == "denoise" else None
    jpeg_model = str(jpeg_folder) if jpeg_folder else None
    if reuse and path.exists():
        result = json.loads(path.read_text())
        same_auto = not auto or result.get("detector") == (detector or "bundled")
        same_models = result.get("model") == model and result.get("jpeg_model") == jpeg_model
        if same_models and result.get("data") == str(data) and same_auto:
            return result
        print(f"  {path} is for other weights or photos: running it again", file=sys.stderr)
    if not auto and "generator" in row and holds_auto_mode(path):
        print(
            f"  {path} holds auto mode's scores too; this run without --auto writes it without them "
            "(run the foreign rows with --auto to keep them)",
            file=sys.stderr,
        )
    earlier = earlier_baselines(row, data, baselines_from)
    arguments = [
        "--model",
        model,
        "--task",
        row["task"],
        "--data",
        str(data),
        "--json",
        str(path),
        *row["extra"],
    ]
    if earlier is None:
        arguments.append("--baselines")
        if row["bm3d"] and bm3d_limit > 0:
            arguments += ["--bm3d", "--bm3d-limit", str(bm3d_limit)]
    if jpeg_model:
        arguments += ["--jpeg-model", jpeg_model]
    if threads:
        arguments += ["--num-threads", str(threads)]
    if auto:
        arguments += ["--auto", *(["--detector", detector] if detector else [])]
    print(f"row {row['name']}", file=sys.stderr, flush=True)
    evaluate(arguments)
    result = json.loads(path.read_text())
    if earlier is not None:
        result = with_baselines_of(result, earlier)
        path.write_text(json.dumps(result, indent=2))
    return result


def comparison(results: dict, labels: dict, earlier_folder: Path, data: str) -> str:
    """Each row's model PSNR against the same row's earlier result (other weights, same photos and seeds)."""
    lines = ["| task (protocol) | degraded input | earlier weights | these weights | change |", "|---|---|---|---|---|"]
    for name, result in results.items():
        path = earlier_folder / f"{name}.json"
        earlier = json.loads(path.read_text()) if path.exists() else None
        if earlier is None or earlier.get("data") != str(data):
            continue
        model = model_key(result)
        before, after = earlier["summary"][model]["psnr"], result["summary"][model]["psnr"]
        lines.append(
            f"| {labels[name]} | {result['summary']['input']['psnr']:.2f} | {before:.2f} | {after:.2f} | "
            f"{after - before:+.2f} |"
        )
    return "\n".join(lines)


def cell(score: dict) -> str:
    return f"{score['psnr']:.2f} / {score['ssim']:.3f}"


def subset_mean(result: dict, method: str, names: set[str]) -> dict:
    scores = [image["scores"][method] for image in result["images"] if image["name"] in names]
    return {key: sum(score[key] for score in scores) / len(scores) for key in ("psnr", "ssim")}


def baseline_cell(result: dict, name: str, model: str) -> str:
    """A baseline's mean; one scored on fewer photos than the others (BM3D) says on how many, the model's mean on
    the same photos and its seconds per photo."""
    item = result["summary"][name]
    label = BASELINE_NAMES.get(name, name)
    if result.get("foreign"):  # nothing of a foreign degradation is known: the denoisers estimate sigma
        label = label.replace("true σ", "estimated σ")
    text = f"{label} {cell(item)}"
    if item["images"] < len(result["images"]):
        scored = {image["name"] for image in result["images"] if name in image["scores"]}
        text += (
            f" (on {item['images']} of {len(result['images'])} photos, where ours is "
            f"{cell(subset_mean(result, model, scored))}; {item['seconds_per_image']:.0f} s per photo)"
        )
    return text


def table(results: dict, labels: dict) -> str:
    lines = ["| task (protocol) | degraded input | MPRNet small (ours) | classical baselines |", "|---|---|---|---|"]
    for name, result in results.items():
        summary = result["summary"]
        model = model_key(result)
        baselines = "; ".join(baseline_cell(result, key, model) for key in baseline_names(summary))
        lines.append(f"| {labels[name]} | {cell(summary['input'])} | **{cell(summary[model])}** | {baselines} |")
    return "\n".join(lines)


# Issue 34's bars on the foreign rows: the least gain over the degraded input, and over the named baseline.
BARS = {"derain": (4.0, "opening", 2.0), "deblur": (2.0, None, None), "denoise": (None, "nlm", 0.0)}


def bar_row(name: str, label: str, result: dict) -> str:
    """One foreign row against its task's bar: the model's gain over the input and over the bar's baseline, the
    photos it made worse, and whether the bar is met."""
    summary = result["summary"]
    model = model_key(result)
    gain = summary[model]["psnr"] - summary["input"]["psnr"]
    over_input, baseline, over_baseline = BARS[result["task"]]
    baseline_gain = summary[model]["psnr"] - summary[baseline]["psnr"] if baseline in summary else None
    worse = sum(image["scores"][model]["psnr"] < image["scores"]["input"]["psnr"] for image in result["images"])
    met = (over_input is None or gain >= over_input) and (
        baseline is None or (baseline_gain is not None and baseline_gain > over_baseline)
    )
    if result["task"] == "deblur":
        met = met and worse == 0
    baseline_text = f"{baseline_gain:+.2f} over {baseline}" if baseline_gain is not None else "-"
    return (
        f"| {label} | {gain:+.2f} | {baseline_text} | {worse}/{len(result['images'])} | {'met' if met else 'missed'} |"
    )


def bars_table(results: dict, labels: dict) -> str:
    """The foreign rows (those drawn by another library's code) against issue 34's bars; rows whose draw also
    changes the whole frame are listed but the bars hold on the others."""
    lines = [
        "| foreign row | gain over input | gain over baseline | photos made worse | bar |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if result.get("foreign"):
            lines.append(bar_row(name, labels[name], result))
    return "\n".join(lines)


# The auto-mode bars on the foreign rows: no set's mean below the degraded input's by more than this, and this share
# of the photos given exactly the set's restoration.
AUTO_LOSS_ALLOWED_DB = 0.1
AUTO_ROUTED_SHARE = 0.9


def auto_table(results: dict, labels: dict) -> str:
    """Auto mode on each foreign row it ran on: its mean against the degraded input's (the bar: at most 0.1 dB
    below), the photos given exactly the row's restoration, and what ran on the others; then the share routed right
    over the rows whose draw changes only what the task removes (the bar: 90 %; a draw that also changes the whole
    frame, albumentations' rain and every library's motion blur as drawn, is listed but not counted)."""
    lines = [
        "| foreign row | degraded input | auto mode | change | given exactly the row's restoration | other steps run |",
        "|---|---|---|---|---|---|",
    ]
    right = total = 0
    for name, result in results.items():
        summary = result["summary"]
        if AUTO_MODE not in summary:
            continue
        change = summary[AUTO_MODE]["psnr"] - summary["input"]["psnr"]
        # A restoration run twice (deraining again where rain was left) is still that restoration.
        steps = [distinct_restorations(image["steps"][AUTO_MODE]) for image in result["images"]]
        routed = sum(ran == (result["task"],) for ran in steps)
        others = sorted({" + ".join(ran) or "none" for ran in steps if ran != (result["task"],)})
        if not foreign.get(result["foreign"]).whole_frame:
            right, total = right + routed, total + len(steps)
        mark = "" if change >= -AUTO_LOSS_ALLOWED_DB else " (below the input)"
        lines.append(
            f"| {labels[name]} | {summary['input']['psnr']:.2f} | {summary[AUTO_MODE]['psnr']:.2f} | "
            f"{change:+.2f}{mark} | {routed}/{len(steps)} | {', '.join(others) or '-'} |"
        )
    if total:
        met = "met" if right >= AUTO_ROUTED_SHARE * total else "missed"
        lines.append(
            f"\nGiven exactly the right restoration, on the rows drawn without whole-frame changes: {right}/{total} "
            f"({100 * right / total:.1f} %, bar {100 * AUTO_ROUTED_SHARE:.0f} %: {met})."
        )
    return "\n".join(lines)


def update_cards(results: dict, labels: dict, checkpoints: Path, data: str) -> None:
    """Each task's rows into the quality section of its model card."""
    for task in TASKS:
        rows = {name: result for name, result in results.items() if result["task"] == task}
        if not rows:
            continue
        folder = checkpoints / f"mprnet-{task}-small"
        own = {name: result for name, result in rows.items() if not result.get("foreign")}
        foreign_rows = {name: result for name, result in rows.items() if result.get("foreign")}
        parts = [
            f"PSNR (dB) / SSIM on the held-out development photos (`{data}`) at full resolution "
            "(`python scripts/quality_report.py`)."
        ]
        if own:
            parts.append("Degraded with the library's seeded degradations:\n\n" + table(own, labels))
        if foreign_rows:
            parts.append(
                "Degraded by other libraries, which the model never trained on (albumentations: foreign-dev, "
                "may guide choices; kornia and imagecorruptions: foreign-test, only reported):\n\n"
                + table(foreign_rows, labels)
            )
        evaluation = "\n\n".join(parts)
        jpeg_folder = jpeg_denoiser_folder(checkpoints) if task == "denoise" else None
        own_card_evaluation = evaluation
        if jpeg_folder:
            own_card_evaluation = (
                f"As `mprnet_hf` does, the photos saved as JPEG (the rows with JPEG) were restored by "
                f"`{jpeg_folder.name}`, the others by this model.\n\n" + evaluation
            )
        config = MPRNetConfig.from_pretrained(folder)
        training = json.loads((folder / "training_summary.json").read_text())
        save_model_card(trained_model_card(config, training, own_card_evaluation), folder)
        if jpeg_folder:
            # Its scores are the denoise rows' (it restores the photos saved as JPEG in them).
            training = json.loads((jpeg_folder / "training_summary.json").read_text())
            jpeg_evaluation = (
                "It restores the photos saved as JPEG in the denoise rows below, where the model column is what "
                "`mprnet_hf` gives: this model on the photos carrying JPEG's grid, `mprnet-denoise-small` on the "
                "others.\n\n" + evaluation
            )
            card = trained_model_card(
                MPRNetConfig.from_pretrained(jpeg_folder), training, jpeg_evaluation, None, JPEG_DENOISE
            )
            save_model_card(card, jpeg_folder)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/dev/val", help="the clean held-out photos")
    parser.add_argument(
        "--checkpoints",
        default=BUNDLED_CHECKPOINTS,
        help="folder holding mprnet-{task}-small model folders (default: the bundled weights)",
    )
    parser.add_argument(
        "--output",
        help=f"folder of the JSON results, one per row (default: {BUNDLED_OUTPUT} for "
        "the bundled weights, CHECKPOINTS/evaluation for others)",
    )
    parser.add_argument("--tasks", help="comma-separated tasks to run (default: all)")
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help="comma-separated row sets: own (this project's synthesis), foreign-dev (albumentations), "
        "foreign-test (kornia, imagecorruptions); default: all three",
    )
    parser.add_argument("--rows", help="comma-separated row names or shell patterns, e.g. 'deblur-shake-*,*-jpeg70'")
    parser.add_argument(
        "--bm3d-limit",
        type=int,
        default=1,
        metavar="N",
        help="run BM3D on the first N photos of its rows (0: not at all; default 1)",
    )
    parser.add_argument("--num-threads", type=int, help="CPU threads of the model (torch.set_num_threads)")
    parser.add_argument("--reuse", action="store_true", help="reuse JSON results of the same weights and photos")
    parser.add_argument(
        "--baselines-from",
        metavar="DIR",
        help="take the classical baselines' scores from the "
        "JSON results in DIR (the same rows on the same photos, e.g. benchmarks/evaluation) and run "
        "only the model",
    )
    parser.add_argument(
        "--compare-with",
        metavar="DIR",
        help="also print each row's PSNR change against the JSON "
        "results in DIR (other weights on the same photos, e.g. benchmarks/evaluation)",
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="also score auto mode on the foreign rows (the detector chooses the restorations; the weights in "
        "--checkpoints serve their task) and print its table against the auto-mode bars",
    )
    parser.add_argument("--detector", help="the detector folder of --auto (default: the bundled one)")
    parser.add_argument(
        "--update-cards",
        action="store_true",
        help="write each task's rows into its model card in --checkpoints, replacing its whole quality section (not "
        "with --rows: a card gets all of its task's rows of the --sets run)",
    )
    args = parser.parse_args(argv)
    tasks = args.tasks.split(",") if args.tasks else None
    unknown = set(tasks or []) - set(TASKS)
    if unknown:
        parser.error(f"unknown task(s) {', '.join(sorted(unknown))}: expected some of {', '.join(TASKS)}")
    if args.detector and not args.auto:
        parser.error("--detector is auto mode's: give --auto too")
    if args.update_cards and args.rows:
        parser.error("--update-cards writes each task's whole quality section: run it without --rows")
    checkpoints = Path(args.checkpoints)
    bundled = checkpoints.resolve() == Path(BUNDLED_CHECKPOINTS).resolve()
    output = Path(args.output or (BUNDLED_OUTPUT if bundled else checkpoints / "evaluation"))
    sets = args.sets.split(",")
    if set(sets) - set(SETS):
        parser.error(f"unknown set(s) in --sets {args.sets!r}: expected some of {', '.join(SETS)}")
    candidates = [row for row in [*all_rows(), *foreign_rows()] if row["set"] in sets]
    rows = select_rows(candidates, tasks, args.rows.split(",") if args.rows else None)
    # Only the libraries of the rows asked for are imported (seconds each).
    skipped = {row["name"]: foreign.available(row["generator"]) for row in rows if "generator" in row}
    for name, reason in skipped.items():
        if reason:
            print(f"skipping {name}: {reason}", file=sys.stderr)
    rows = [row for row in rows if not skipped.get(row["name"])]
    labels = {row["name"]: row["label"] for row in rows}
    baselines_from = Path(args.baselines_from) if args.baselines_from else None
    results = {
        row["name"]: run(
            row,
            args.data,
            output,
            checkpoints,
            args.reuse,
            args.bm3d_limit,
            args.num_threads,
            baselines_from,
            args.auto,
            args.detector,
        )
        for row in rows
    }
    print(f"\nPSNR (dB) / SSIM, mean over the photos in {args.data} at full resolution ({checkpoints}):\n")
    print(table(results, labels))
    if any(result.get("foreign") for result in results.values()):
        print(
            "\nThe foreign rows against issue 34's bars (derain +4 dB over the input and +2 over grey opening; deblur "
            "+2 dB and no photo made worse; denoise above non-local means):\n"
        )
        print(bars_table(results, labels))
    if any(AUTO_MODE in result["summary"] for result in results.values()):
        print(
            f"\nAuto mode on the foreign rows ({args.detector or 'the bundled detector'}; bars: no set more than "
            f"{AUTO_LOSS_ALLOWED_DB} dB below its input, {AUTO_ROUTED_SHARE:.0%} of the photos given exactly the "
            "right restoration):\n"
        )
        print(auto_table(results, labels))
    if args.compare_with:
        print(f"\nPSNR (dB) of these weights against those of {args.compare_with}, same photos and seeds:\n")
        print(comparison(results, labels, Path(args.compare_with), args.data))
    if args.update_cards:
        update_cards(results, labels, checkpoints, args.data)


if __name__ == "__main__":
    main()

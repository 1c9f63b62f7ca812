"""Scores the bundled checkpoints against the degraded input and the classical baselines on the held-out development
photos, writes the JSON results, prints the README's quality table and puts each task's rows into its model card.

    python scripts/prepare_dev_photos.py --output data/dev      # once
    python scripts/quality_report.py [--data data/dev/val] [--reuse]
"""

import argparse
import json
import sys
from pathlib import Path

# Run as a script from the repository root, where mprnet_hf is not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mprnet_hf import MPRNetConfig  # noqa: E402
from mprnet_hf.evaluate import main as evaluate  # noqa: E402
from mprnet_hf.hub import save_model_card, trained_model_card  # noqa: E402

RUNS = [  # (name, task, extra evaluate arguments)
    ("denoise-sigma15", "denoise", ["--sigma", "15"]),
    ("denoise-sigma25", "denoise", ["--sigma", "25"]),
    ("denoise-sigma50", "denoise", ["--sigma", "50"]),
    ("deblur", "deblur", []),
    ("derain", "derain", []),
]
LABELS = {
    "denoise-sigma15": "denoise, Gaussian σ=15 (RGB)",
    "denoise-sigma25": "denoise, Gaussian σ=25 (RGB)",
    "denoise-sigma50": "denoise, Gaussian σ=50 (RGB)",
    "deblur": "deblur, random camera shake (RGB)",
    "derain": "derain, synthetic streaks (Y)",
}
BASELINE_NAMES = {"nlm": "non-local means (true σ)", "tv": "TV (true σ)", "wiener": "Wiener (true kernel)",
                  "unsharp": "unsharp masking", "median": "median", "opening": "grey opening"}


def run(name, task, extra, data, output, checkpoints, reuse):
    path = output / f"{name}.json"
    if not (reuse and path.exists()):
        evaluate(["--model", str(checkpoints / f"mprnet-{task}-small"), "--task", task, "--data", str(data),
                  "--synthetic", "--baselines", "--json", str(path), *extra])
    return json.loads(path.read_text())


def cell(score):
    return f"{score['psnr']:.2f} / {score['ssim']:.3f}"


def table(results: dict) -> str:
    lines = ["| task (protocol) | degraded input | MPRNet small (ours) | classical baselines |", "|---|---|---|---|"]
    for name, result in results.items():
        summary = result["summary"]
        model = next(key for key in summary if key.startswith("mprnet-"))
        baselines = "; ".join(f"{BASELINE_NAMES.get(key, key)} {cell(value)}" for key, value in summary.items()
                              if key not in ("input", model))
        lines.append(f"| {LABELS[name]} | {cell(summary['input'])} | **{cell(summary[model])}** | {baselines} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/dev/val")
    parser.add_argument("--output", default="benchmarks/evaluation")
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--reuse", action="store_true", help="reuse JSON results that already exist")
    args = parser.parse_args()
    output, checkpoints = Path(args.output), Path(args.checkpoints)
    results = {name: run(name, task, extra, args.data, output, checkpoints, args.reuse) for name, task, extra in RUNS}
    print("\nPSNR (dB) / SSIM, mean over the held-out development photos at full resolution:\n")
    print(table(results))
    for task in ("deblur", "derain", "denoise"):
        folder = checkpoints / f"mprnet-{task}-small"
        rows = {name: result for name, result in results.items() if result["task"] == task}
        evaluation = (
            "PSNR (dB) / SSIM on the six held-out development photos at full resolution, degraded with the library's "
            "seeded degradations (`python scripts/quality_report.py`):\n\n" + table(rows)
        )
        config = MPRNetConfig.from_pretrained(folder)
        training = json.loads((folder / "training_summary.json").read_text())
        save_model_card(trained_model_card(config, training, evaluation), folder)


if __name__ == "__main__":
    main()

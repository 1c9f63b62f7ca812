"""Measure the degradation detector and auto mode on the validation photos; prints markdown tables: their current
figures are in docs/DETECTION.md ("Accuracy on the validation photos"), every set's tables and earlier detectors' in
docs/notes/2026-12-detection-experiments.md.

    OMP_NUM_THREADS=2 python -m mprnet_hf.detection.evaluate --val-dir data/dev/val

Every photo is degraded with seeded draws over each degradation's whole training range (`detection.data`): single
degradations, pairs, single degradations saved again as light JPEG (quality 60-95), and clean photos (as they are
and light JPEG). For each the detector's decision is recorded: the labels it finds and the restorations auto mode
would run. Auto mode itself (restorations and second looks) is run on the single-degradation photos whose first look
asked for the right first step and more, and on `--follow-seeds` draws of each rain and noise photo routed right (does
the second look add a step?); with `--follow-pairs`, also on every pair whose first step is followed by a second look
(blur under noise or rain is often found only then). `--compare-detector` measures another detector on the same
degraded photos. Then auto mode's PSNR on noisy and shaken photos is compared with every single task and with the
hand-picked chain (denoise, then deblur). `--misroute-cost` instead measures what each restoration does to the clean
photos themselves: what auto mode costs a photo that needed nothing when it routes it to a restoration.
"""

import argparse
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio

from ..auto import restore_image_auto
from ..evaluation import foreign
from ..hub.bundled import bundled_models, complete_models
from ..models.mprnet.configuration_mprnet import TASKS
from ..models.mprnet.inference import restore_image
from .data import PAIRS, SINGLE, apply_degradations, list_photos, load_rgb
from .detector import (
    LABELS,
    TASK_OF_LABEL,
    DegradationDetector,
    as_rgb_array,
    distinct_restorations,
    looks_again_after,
)

CONFUSION_COLUMNS = ("blur", "noise", "rain", "jpeg", "clean", "two or more")
# Bins of the degraded photo's PSNR against the clean one (dB): how strong a single degradation was. The draws span
# each degradation's whole training range, whose faint end may leave a photo indistinguishable from a clean one.
STRENGTH_BINS = ((None, 25.0), (25.0, 30.0), (30.0, 35.0), (35.0, 40.0), (40.0, None))


def conditions(seeds_single: int, seeds_pair: int, seeds_light_jpeg: int) -> list[tuple[str, tuple, float, int]]:
    """(group, kinds, light JPEG share, seeds) of every evaluated condition."""
    rows = [("single", kinds, 0.0, seeds_single) for kinds in SINGLE]
    rows += [("pair", kinds, 0.0, seeds_pair) for kinds in PAIRS]
    rows += [("single + light JPEG", kinds, 1.0, seeds_light_jpeg) for kinds in SINGLE[:3]]
    rows += [("clean", (), 0.0, 1), ("clean + light JPEG", (), 1.0, seeds_light_jpeg)]
    return rows


def right_tasks(kinds) -> list[str]:
    wanted = {TASK_OF_LABEL[kind] for kind in kinds if kind in TASK_OF_LABEL}
    return [task for task in ("derain", "denoise", "deblur") if task in wanted]


def restoration_single(record) -> bool:
    """Whether a record is a single blur, noise or rain photo: those the routing bar counts (JPEG artefacts alone
    have no restoration)."""
    return record["group"] == "single" and record["kinds"][0] in TASK_OF_LABEL


def decision(found: list[str]) -> str:
    if len(found) > 1:
        return "two or more"
    return found[0] if found else "clean"


def worth_following(
    group: str, kinds, tasks: list[str], seed: int, follow_seeds: int, follow_pairs: bool = False
) -> bool:
    """Whether auto mode itself should be run on a photo. A single degradation: its first look asked for the right
    first step and more (does the second look stop there?), or it was routed right and its step is followed by a
    second look (`follow_seeds` draws of each photo: does that look add a step?). A pair (`follow_pairs`): whenever
    its first step is followed by a second look, which may find what the first missed or add a step; otherwise the
    first look's restorations are what auto mode runs."""
    if group == "pair":
        return follow_pairs and bool(tasks) and looks_again_after(tasks[0])
    right = right_tasks(kinds)
    if group != "single" or not right:
        return False
    if tasks != right:
        return tasks[:1] == right
    return seed < follow_seeds and looks_again_after(right[0])


class DegradedVersion(NamedTuple):
    """One evaluated condition of one photo: its degraded pixels and what made them."""

    group: str
    kinds: tuple[str, ...]
    seed: int
    path: Path
    clean: np.ndarray  # (H, W, 3) uint8
    degraded: np.ndarray  # (H, W, 3) uint8


def degraded_versions(
    photos, seeds_single: int, seeds_pair: int, seeds_light_jpeg: int, wanted=None, synthesis: str = "classic"
):
    """Every evaluated condition of every photo (`DegradedVersion`), seeded by the photo's place in `photos`;
    `wanted(group, kinds)` may skip conditions (not drawn at all)."""
    for group, kinds, light_share, seeds in conditions(seeds_single, seeds_pair, seeds_light_jpeg):
        if wanted is not None and not wanted(group, kinds):
            continue
        for photo_index, path in enumerate(photos):
            clean = load_rgb(path)
            for seed in range(seeds):
                rng = np.random.default_rng([photo_index, seed, LABELS.index(kinds[0]) if kinds else 4, len(kinds)])
                degraded = apply_degradations(clean, kinds, rng, light_jpeg_share=light_share, synthesis=synthesis)
                yield DegradedVersion(group, kinds, seed, path, clean, as_rgb_array(degraded))


def evaluate_detectors(
    detectors,
    photos,
    seeds_single,
    seeds_pair,
    seeds_light_jpeg,
    follow_seeds: int = 0,
    follow_pairs: bool = False,
    synthesis: str = "classic",
):
    """Each detector's records (and detection times) on the same degraded photos, degraded once for all."""
    records, seconds = [[] for _ in detectors], [[] for _ in detectors]
    versions = degraded_versions(photos, seeds_single, seeds_pair, seeds_light_jpeg, synthesis=synthesis)
    for version in versions:
        group, kinds = version.group, version.kinds
        input_psnr = psnr(version.clean, version.degraded) if kinds else None
        for index, detector in enumerate(detectors):
            started = time.perf_counter()
            detection = detector.detect(version.degraded)
            seconds[index].append(time.perf_counter() - started)
            record = {
                "group": group,
                "kinds": kinds,
                "photo_name": Path(version.path).stem,
                "found": detection.found,
                "tasks": detection.tasks,
                "probabilities": detection.probabilities,
                "features": detection.features,
                "input_psnr": input_psnr,
            }
            if worth_following(group, kinds, detection.tasks, version.seed, follow_seeds, follow_pairs):
                record["photo"] = version.degraded
            records[index].append(record)
    return records, seconds


def evaluate_detector(
    detector, photos, seeds_single, seeds_pair, seeds_light_jpeg, follow_seeds: int = 0, synthesis: str = "classic"
):
    records, seconds = evaluate_detectors(
        [detector], photos, seeds_single, seeds_pair, seeds_light_jpeg, follow_seeds, synthesis=synthesis
    )
    return records[0], seconds[0]


def condition_name(record) -> str:
    name = " + ".join(record["kinds"]) or "clean"
    suffix = {"single + light JPEG": " (light JPEG)", "clean + light JPEG": " (light JPEG)"}.get(record["group"], "")
    return name + suffix


def confusion_table(records) -> str:
    counts, order = defaultdict(Counter), []
    for record in records:
        name = condition_name(record)
        if name not in counts:
            order.append(name)
        counts[name][decision(record["found"])] += 1
    lines = [
        "| photos \\ detector found | " + " | ".join(CONFUSION_COLUMNS) + " | routed right |",
        "|---" * (len(CONFUSION_COLUMNS) + 2) + "|",
    ]
    routed = defaultdict(lambda: [0, 0])
    for record in records:
        tally = routed[condition_name(record)]
        tally[0] += record["tasks"] == right_tasks(record["kinds"])
        tally[1] += 1
    for name in order:
        cells = " | ".join(str(counts[name][column]) for column in CONFUSION_COLUMNS)
        right, total = routed[name]
        lines.append(f"| {name} | {cells} | {right}/{total} ({right / total:.0%}) |")
    return "\n".join(lines)


def per_label_table(records) -> str:
    lines = ["| label | precision | recall | photos with it |", "|---|---|---|---|"]
    for label in LABELS:
        truth = [label in (record["kinds"] or ("clean",)) for record in records]
        predicted = [label in (record["found"] or ["clean"]) for record in records]
        hits = sum(t and p for t, p in zip(truth, predicted))
        lines.append(
            f"| {label} | {hits / max(sum(predicted), 1):.3f} | {hits / max(sum(truth), 1):.3f} | {sum(truth)} |"
        )
    return "\n".join(lines)


def misses_by_photo(records) -> str:
    """Markdown: the photos with single blur, noise or rain or clean versions the first look routed wrong, most misses
    first: whether the misses spread over the set or come from a few photos."""
    tallies = defaultdict(lambda: {"singles": [0, 0], "pairs": [0, 0], "clean": [0, 0]})
    for record in records:
        column = {"pair": "pairs", "clean": "clean", "clean + light JPEG": "clean"}.get(record["group"])
        if restoration_single(record):
            column = "singles"
        if column is None:
            continue
        tally = tallies[record["photo_name"]][column]
        tally[0] += record["tasks"] == right_tasks(record["kinds"])
        tally[1] += 1

    def misses(name: str) -> int:
        return sum(total - right for right, total in (tallies[name]["singles"], tallies[name]["clean"]))

    missed = sorted((name for name in tallies if misses(name)), key=lambda name: (-misses(name), name))
    lines = ["| photo | singles routed right | pairs | clean |", "|---|---|---|---|"]
    for name in missed:
        cells = " | ".join(f"{right}/{total}" for right, total in tallies[name].values())
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)


def strength_bin_name(low, high) -> str:
    if low is None:
        return f"under {high:g} dB"
    return f"{low:g} dB and more" if high is None else f"{low:g}-{high:g} dB"


def routing_by_strength(records) -> str:
    """Single blur, noise and rain routed right by the first look, by how far the degraded photo is from the clean
    one (its PSNR): whether the misses are the faint end of the ranges."""
    kinds = ("blur", "noise", "rain")
    singles = [record for record in records if restoration_single(record)]
    lines = [
        "| degraded photo's PSNR | " + " | ".join(kinds) + " | all |",
        "|---" * (len(kinds) + 2) + "|",
    ]
    for low, high in STRENGTH_BINS:
        in_bin = [
            record
            for record in singles
            if (low is None or record["input_psnr"] >= low) and (high is None or record["input_psnr"] < high)
        ]
        cells = []
        for group in [[record for record in in_bin if record["kinds"][0] == kind] for kind in kinds] + [in_bin]:
            right = sum(record["tasks"] == right_tasks(record["kinds"]) for record in group)
            cells.append(f"{right}/{len(group)}" if group else "-")
        lines.append(f"| {strength_bin_name(low, high)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def follow_auto(records, detector) -> None:
    """Runs auto mode itself (restorations and second looks) on the photos `worth_following`; records the steps it
    ran."""
    if not any("photo" in record for record in records):
        return
    models = bundled_models()
    for record in records:
        if "photo" in record:
            restored = restore_image_auto(models, Image.fromarray(record.pop("photo")), detector, tile_size=None)
            record["auto_steps"] = list(distinct_restorations(restored.steps))


def auto_routing(record) -> list[str]:
    """The restorations auto mode ran: followed, or else the first look's (no second look could change them)."""
    return record.get("auto_steps", record["tasks"])


def routing_summary(records, follow_seeds: int, auto_followed: bool = True, pairs_followed: bool = False) -> str:
    """The routing of single degradations (first look, and auto mode's when `auto_followed`) and of pairs (first
    look, and auto mode's when `pairs_followed`)."""
    singles = [record for record in records if restoration_single(record)]
    right = sum(record["tasks"] == right_tasks(record["kinds"]) for record in singles)
    followed = [record for record in singles if "auto_steps" in record]
    extra = [record for record in followed if record["tasks"] != right_tasks(record["kinds"])]
    checked = [record for record in followed if record["tasks"] == right_tasks(record["kinds"])]
    auto_right = sum(auto_routing(record) == right_tasks(record["kinds"]) for record in singles)
    kept = sum(record["auto_steps"] == right_tasks(record["kinds"]) for record in checked)
    pairs = [record for record in records if record["group"] == "pair"]
    both = sum(set(record["kinds"]) <= set(record["found"]) for record in pairs)
    pair_right = sum(record["tasks"] == right_tasks(record["kinds"]) for record in pairs)
    second_looks = (
        f" Of the {len(checked)} rain and noise photos routed right by the first look and followed through auto mode "
        f"(the first {follow_seeds} draws of each photo), {kept} kept to their one step."
        if follow_seeds
        else ""
    )
    count = f"{right}/{len(singles)} ({right / len(singles):.1%})"
    lead = "Single blur, noise or rain routed to exactly the right restoration by the detector's first look"
    if auto_followed:
        first_look = (
            f"{lead}: {count}; by auto mode, which looks again after each step (run on the {len(extra)} photos whose "
            f"first look asked for the right first step and more, and on the {len(checked)} below): "
            f"**{auto_right}/{len(singles)} ({auto_right / len(singles):.1%})**.{second_looks}"
        )
    else:
        first_look = f"{lead}: **{count}** (auto mode itself, with its second looks, was not run here)."
    pair_auto = ""
    if pairs_followed:
        pair_auto_right = sum(auto_routing(record) == right_tasks(record["kinds"]) for record in pairs)
        followed_pairs = sum("auto_steps" in record for record in pairs)
        pair_auto = (
            f"; by auto mode, which looks again (run on the {followed_pairs} pairs whose first step is followed by a "
            f"second look): **{pair_auto_right}/{len(pairs)} ({pair_auto_right / len(pairs):.0%})**"
        )
    return (
        f"{first_look} Pairs with both degradations found: {both}/{len(pairs)} "
        f"({both / len(pairs):.0%}); pairs given exactly the right restorations by the first look: "
        f"{pair_right}/{len(pairs)} ({pair_right / len(pairs):.0%}){pair_auto}."
    )


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    height, width = image.shape[-2:]
    top, left = max((height - side) // 2, 0), max((width - side) // 2, 0)
    return image[:, top : top + side, left : left + side]


def psnr(clean: torch.Tensor, image) -> float:
    reference = as_rgb_array(clean)
    return peak_signal_noise_ratio(
        reference, np.asarray(image.convert("RGB")) if hasattr(image, "convert") else as_rgb_array(image)
    )


def mixed_comparison(detector, photos, seeds: int, side: int) -> str:
    """PSNR on noisy and shaken photos: the degraded photo, each single task, the hand-picked chain, auto."""
    models = bundled_models()
    columns = ["degraded", *TASKS, "denoise, then deblur", "auto"]
    scores, auto_steps = defaultdict(list), Counter()
    for photo_index, path in enumerate(photos):
        clean = centre_crop(load_rgb(path), side)
        for seed in range(seeds):
            rng = np.random.default_rng([100 + photo_index, seed])
            degraded = Image.fromarray(
                as_rgb_array(apply_degradations(clean, ("blur", "noise"), rng, light_jpeg_share=0.0))
            )
            scores["degraded"].append(psnr(clean, degraded))
            for task in TASKS:
                scores[task].append(psnr(clean, restore_image(models[task], degraded, tile_size=None).image))
            denoised = restore_image(models["denoise"], degraded, tile_size=None).image
            chained = restore_image(models["deblur"], denoised, tile_size=None).image
            scores["denoise, then deblur"].append(psnr(clean, chained))
            auto = restore_image_auto(models, degraded, detector, tile_size=None)
            scores["auto"].append(psnr(clean, auto.image))
            auto_steps[", ".join(auto.steps) or "none"] += 1
    header = "| " + " | ".join(columns) + " |"
    row = "| " + " | ".join(f"{np.mean(scores[column]):.2f}" for column in columns) + " |"
    steps = ", ".join(f"{name}: {count}" for name, count in auto_steps.most_common())
    return (
        f"Mean PSNR (dB) over {len(scores['auto'])} noisy and shaken {side}x{side} crops of the validation "
        f"photos (blur, then noise, each over its training range), bundled small models:\n\n"
        f"{header}\n|{'---|' * len(columns)}\n{row}\n\nAuto's steps: {steps}."
    )


def misroute_costs(photos, models=None, side: int | None = None) -> dict[str, list[float]]:
    """PSNR of each clean photo restored by each task against itself, per task (in the order of `photos`): what auto
    mode costs a photo that needed nothing when it routes it to that restoration. `side` centre-crops the photos."""
    models = complete_models(models)
    costs = {task: [] for task in TASKS}
    for path in photos:
        clean = load_rgb(path)
        if side:
            clean = centre_crop(clean, side)
        for task in TASKS:
            restored = restore_image(models[task], as_rgb_array(clean), tile_size=None).image
            costs[task].append(psnr(clean, restored))
    return costs


def misroute_cost_table(photos, costs: dict[str, list[float]]) -> str:
    """Markdown: each task's mean and lowest PSNR over the clean photos it restored, and the photo of the lowest."""
    lines = [
        "| restoration run on a clean photo | mean PSNR against the photo (dB) | lowest (photo) |",
        "|---|---|---|",
    ]
    for task, values in costs.items():
        worst = int(np.argmin(values))
        lines.append(f"| {task} | {np.mean(values):.2f} | {values[worst]:.2f} ({Path(photos[worst]).stem}) |")
    return "\n".join(lines)


def report(
    records, seconds, photos, follow_seeds: int, auto_followed: bool, title: str, pairs_followed: bool = False
) -> None:
    print(f"### {title} on {len(photos)} validation photos ({len(records)} degraded versions)\n")
    print(routing_summary(records, follow_seeds, auto_followed, pairs_followed) + "\n")
    print(confusion_table(records) + "\n")
    print("Single degradations routed right by the first look, by strength:\n")
    print(routing_by_strength(records) + "\n")
    print(per_label_table(records) + "\n")
    print("Photos with single degradations or clean versions routed wrong by the first look:\n")
    print(misses_by_photo(records) + "\n")
    print(
        f"Detection time per photo here ({torch.get_num_threads()} threads): median {np.median(seconds) * 1000:.0f} "
        "ms.\n"
    )


def foreign_routing(detectors, photos, patterns: list[str] | None, seeds: int) -> list[dict]:
    """Each detector's first-look routing of the photos degraded by the foreign sets (degradations made by
    third-party libraries, `evaluation.foreign`) and of the clean photos: one row per set and detector. Every photo
    is degraded once, for all detectors; sets whose library does not import are left out with the reason. Centred
    sets are left out too: their photos are their as-drawn twins', only scored against another reference."""
    sets = []
    for item in foreign.select(patterns):
        if item.centred:
            print(f"skipping {item.key}: its photos are those of {item.key.removesuffix('-centred')}", file=sys.stderr)
            continue
        if reason := foreign.available(item.generator):
            print(f"skipping {item.key}: {reason}", file=sys.stderr)
        else:
            sets.append(item)
    cleans = []
    for path in photos:
        with Image.open(path) as photo:
            cleans.append(np.asarray(photo.convert("RGB")))
    versions = {"clean photos": cleans}
    for item in sets:
        versions[item.key] = [
            foreign.degrade(item, clean, index * seeds + seed)
            for index, clean in enumerate(cleans)
            for seed in range(seeds)
        ]
    rows = []
    for index, detector in enumerate(detectors):
        for key, images in versions.items():
            decisions = Counter(", ".join(detector.detect(image).tasks) or "returned unchanged" for image in images)
            item = foreign.get(key) if key in foreign.foreign_sets() else None
            right = item.task if item else "returned unchanged"
            rows.append(
                {
                    "set": key + (" (as drawn)" if item and item.whole_frame else ""),
                    "role": item.role if item else "-",
                    "detector": index,
                    "right": decisions[right],
                    "total": len(images),
                    "wrong": ", ".join(f"{name} {count}" for name, count in decisions.most_common() if name != right),
                }
            )
    return rows


def foreign_routing_table(rows: list[dict], detectors: int) -> str:
    """Markdown of `foreign_routing`: per set, the share the first look routes to exactly the set's restoration (for
    clean photos: returned unchanged), per detector."""
    header = "| foreign set | role | " + " | ".join(
        "routed right" + (f" (detector {index + 1})" if detectors > 1 else "") for index in range(detectors)
    )
    lines = [header + " | other decisions (first detector) |", "|---|---|" + "---|" * detectors + "---|"]
    by_set: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_set[row["set"]].append(row)
    for name, items in by_set.items():
        cells = " | ".join(f"{row['right']}/{row['total']} ({row['right'] / row['total']:.0%})" for row in items)
        lines.append(f"| {name} | {items[0]['role']} | {cells} | {items[0].get('wrong', '') or '-'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--val-dir", type=Path, default=Path("data/dev/val"))
    parser.add_argument("--detector", help="detector folder (default: the bundled one)")
    parser.add_argument("--compare-detector", help="another detector folder, measured on the same degraded photos")
    parser.add_argument("--seeds-single", type=int, default=20, help="draws per photo of each single degradation")
    parser.add_argument("--seeds-pair", type=int, default=4)
    parser.add_argument("--seeds-light-jpeg", type=int, default=4)
    parser.add_argument(
        "--follow-seeds", type=int, default=2, help="rain and noise draws per photo routed right to follow through auto"
    )
    parser.add_argument(
        "--first-look-only", action="store_true", help="do not run auto mode itself (its restorations take long)"
    )
    parser.add_argument(
        "--follow-pairs",
        action="store_true",
        help="run auto mode on the pairs whose first step is followed by a second look (also with --first-look-only)",
    )
    parser.add_argument("--mixed-seeds", type=int, default=2, help="noisy and shaken draws per photo (0: skip)")
    parser.add_argument("--mixed-side", type=int, default=256)
    parser.add_argument(
        "--misroute-cost",
        action="store_true",
        help="only measure what each bundled restoration does to the clean photos of --val-dir (what routing a clean "
        "photo costs); the detector and draw options are not used",
    )
    parser.add_argument(
        "--foreign",
        nargs="?",
        const="*",
        metavar="PATTERNS",
        help="only measure the first look on the photos degraded by the foreign sets (evaluation.foreign; optionally "
        "comma-separated shell patterns such as 'kornia/*') and on the clean photos",
    )
    parser.add_argument("--foreign-seeds", type=int, default=2, help="draws per photo of each foreign set")
    args = parser.parse_args(argv)
    if args.foreign:
        detectors = [DegradationDetector.from_pretrained(args.detector)]
        if args.compare_detector:
            detectors.append(DegradationDetector.from_pretrained(args.compare_detector))
        photos = list_photos(args.val_dir)
        try:
            patterns = foreign.select(args.foreign.split(","))
        except ValueError as error:
            parser.error(str(error))
        rows = foreign_routing(detectors, photos, [item.key for item in patterns], args.foreign_seeds)
        print(f"### First look on foreign degradations ({len(photos)} photos of {args.val_dir})\n")
        print(foreign_routing_table(rows, len(detectors)))
        return
    if args.misroute_cost:
        photos = list_photos(args.val_dir)
        print(f"### Restoring photos that needed nothing ({len(photos)} clean validation photos)\n")
        print(misroute_cost_table(photos, misroute_costs(photos)))
        return
    detectors = [DegradationDetector.from_pretrained(args.detector)]
    if args.compare_detector:
        detectors.append(DegradationDetector.from_pretrained(args.compare_detector))
    photos = list_photos(args.val_dir)
    follow_seeds = 0 if args.first_look_only else args.follow_seeds
    all_records, all_seconds = evaluate_detectors(
        detectors, photos, args.seeds_single, args.seeds_pair, args.seeds_light_jpeg, follow_seeds, args.follow_pairs
    )
    titles = ["Detector", f"Compared detector ({args.compare_detector})"]
    for detector, records, seconds, title in zip(detectors, all_records, all_seconds, titles):
        if args.first_look_only:
            for record in records:
                if record["group"] != "pair":
                    record.pop("photo", None)
        follow_auto(records, detector)
        report(records, seconds, photos, follow_seeds, not args.first_look_only, title, args.follow_pairs)
    if args.mixed_seeds:
        print("### Auto mode on mixed noise + blur\n")
        print(mixed_comparison(detectors[0], photos, args.mixed_seeds, args.mixed_side))


if __name__ == "__main__":
    main()

"""The detector evaluation's own bookkeeping: how routing is counted and binned by how strong a degradation was."""

import numpy as np

from mprnet_hf.detection.data import apply_degradations, load_rgb
from mprnet_hf.detection.detector import as_rgb_array
from mprnet_hf.detection.evaluate import psnr, routing_by_strength

EXAMPLE = "examples/clean/building.png"


def single(kind, tasks, input_psnr):
    return {"group": "single", "kinds": (kind,), "tasks": tasks, "input_psnr": input_psnr, "found": []}


def test_singles_are_counted_in_the_bin_of_their_input_psnr():
    records = [
        single("noise", ["denoise"], 22.0),
        single("noise", [], 41.5),  # faint noise read as clean: a miss, in the faintest bin
        single("blur", ["deblur"], 41.0),
        single("rain", ["derain", "denoise"], 27.0),
        {"group": "pair", "kinds": ("blur", "noise"), "tasks": [], "input_psnr": 20.0, "found": []},
        single("jpeg", [], 33.0),  # JPEG artefacts route nowhere: not part of this table
    ]
    rows = routing_by_strength(records).splitlines()
    assert rows[0] == "| degraded photo's PSNR | blur | noise | rain | all |"
    assert rows[2] == "| under 25 dB | - | 1/1 | - | 1/1 |"
    assert rows[3] == "| 25-30 dB | - | - | 0/1 | 0/1 |"
    assert rows[-1] == "| 40 dB and more | 1/1 | 0/1 | - | 1/2 |"


def test_input_psnr_is_the_degraded_photo_against_the_clean_one():
    clean = load_rgb(EXAMPLE)
    shifted = as_rgb_array(clean).copy()
    value = int(shifted[0, 0, 0])
    shifted[0, 0, 0] = value + 10 if value < 246 else value - 10
    mean_squared_error = 10**2 / shifted.size  # in 8-bit levels: one value off by 10
    assert abs(psnr(clean, shifted) - 10 * np.log10(255**2 / mean_squared_error)) < 1e-6
    noisy = as_rgb_array(apply_degradations(clean, ("noise",), np.random.default_rng(0), light_jpeg_share=0.0))
    assert 10 < psnr(clean, noisy) < 60

"""What `precision="auto"` decides on this machine, and what deciding costs a restore.

For the CPU: its name, the flags that matter (avx2, avx512f, avx512_bf16, amx_bf16, amx_tile), PyTorch's capability
string and `inference.detected_native_bf16()`. For each bundled model: what `choose_precision(model, "auto")` picks
and why, and the probe image's bf16-vs-fp32 agreement (computed with PyTorch's bf16 autocast whatever the hardware:
where bf16 is not native the rounding is bf16's but the instructions are emulated). Then, in one process, the median
time of the choice itself (`choose_precision`, as every `restore_image` / pipeline / CLI call makes it) against the
median time of one default `restore_image` of the deblurring model, as a ratio; and `restore_image` with
precision="auto" against "fp32" in turns, pair by pair.

    python -m benchmarks.precision_auto --threads 1 --size 512
"""

import argparse
import statistics
import time

import torch

from benchmarks.common import cpu_model


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=512, help="side of the square photo restore_image is timed on")
    parser.add_argument("--restores", type=int, default=3)
    parser.add_argument("--choices", type=int, default=10000, help="calls of choose_precision timed")
    parser.add_argument("--pairs", type=int, default=20, help="restore_image auto / fp32 pairs timed in turns")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from PIL import Image

    from mprnet_hf import MPRNetModel
    from mprnet_hf.hub.bundled import bundled_checkpoint
    from mprnet_hf.models.mprnet.inference import (
        bf16_agreement_db,
        choose_precision,
        cpu_flags,
        detected_native_bf16,
        restore_image,
    )

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    print(f"CPU: {cpu_model()}; flags: {', '.join(flags) or 'none'}")
    print(f"PyTorch {torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"native bf16 detected: {detected_native_bf16()}")
    models = {}
    for task in ("deblur", "derain", "denoise"):
        models[task] = MPRNetModel.from_pretrained(bundled_checkpoint(task)).eval()
        choice = choose_precision(models[task])
        print(
            f"{task}: auto -> {choice.precision} ({choice.reason}); probe agreement bf16 vs fp32 "
            f"{bf16_agreement_db(models[task]):.2f} dB"
        )

    model = models["deblur"]
    pixels = torch.rand(args.size, args.size, 3, generator=torch.Generator().manual_seed(0))
    photo = Image.fromarray((pixels * 255).byte().numpy())
    restore_image(model, photo)  # warm-up
    restores, choices = [], []
    for _ in range(args.restores):
        started = time.perf_counter()
        restore_image(model, photo)
        restores.append(time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(args.choices):
            choose_precision(model)
        choices.append((time.perf_counter() - started) / args.choices)
    restore_s, choice_s = statistics.median(restores), statistics.median(choices)
    print(
        f"restore_image {args.size}² (deblur, {args.threads} thread(s)): median {restore_s:.3f} s; "
        f"choose_precision: median {choice_s * 1e6:.1f} µs a call, {choice_s / restore_s:.2e} of a restore"
    )
    # precision="auto" against "fp32" in turns, in this process: the whole cost of deciding, on the same model and
    # photo, free of the between-process differences two copies of the library would add.
    ratios = []
    for pair in range(args.pairs):
        seconds = {}
        for precision in ("auto", "fp32") if pair % 2 == 0 else ("fp32", "auto"):
            started = time.perf_counter()
            restore_image(model, photo, precision=precision)
            seconds[precision] = time.perf_counter() - started
        ratios.append(seconds["auto"] / seconds["fp32"])
    if ratios:
        quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        print(
            f"restore_image auto / fp32, {len(ratios)} pairs in turns: median {statistics.median(ratios):.3f} "
            f"(quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f})"
        )


if __name__ == "__main__":
    main()

"""Inference speed-ups. None of them changes the arithmetic beyond float rounding: every fast path stays within 1e-5
of the official fixtures (tests/test_fast_paths.py). Channels-last is also what `MPRNetModel` switches to by itself
on its first eval-mode CPU call; serving processes get the rest through `serving_speed.prepare_for_serving`. The
measurements are in docs/PERFORMANCE.md (the runs behind each change in docs/notes/2026-12-performance-runs.md).

* `optimize_for_inference(model)`: eval mode, no gradients, and channels-last weights. With channels-last weights
  oneDNN runs each convolution on NHWC activations directly; with the default NCHW layout PyTorch reorders every
  activation into oneDNN's blocked layout and back, around each of the ~300 convolutions.
* `reuse_freed_memory()`: process-wide glibc setting. By default glibc hands every large tensor (> 32 MiB) back to the
  kernel when it is freed and maps fresh pages for the next one; the kernel then zeroes and faults in every page
  again, a large share of the CPU time of a restore (docs/PERFORMANCE.md). Keeping freed memory in the heap removes
  it, at the price of a higher peak resident memory (fragmentation) that is never returned to the system. It also
  makes every thread allocate from the one main heap: a thread's own glibc arena grows in heaps of at most 64 MiB
  and unmaps each heap as soon as it is empty, whatever the trim setting, so a restore in a worker thread (the app's
  requests) would otherwise re-fault its feature maps on every call.
* `compile=True`: `torch.compile` of the three-stage forward. Off by default: ZeroGPU forbids it, the first call at
  each input size compiles for a long time on a small CPU, and it needs a C++ compiler.
"""

import ctypes
import ctypes.util
import sys

import torch

from ..models.mprnet.modeling_mprnet import MPRNetModel

# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
# -1 disables trimming altogether (mallopt(3)); the largest positive int would still hand back anything above 2 GiB
# of free memory, which a 2048² restore, with several GiB of feature maps, then faults in again on its next call.
_NEVER_TRIM = -1


def optimize_for_inference(
    model: MPRNetModel, channels_last: bool = True, compile: bool = False, compile_options: dict | None = None
) -> MPRNetModel:
    """Prepares `model` for fast inference, in place, and returns it.

    Outputs equal the default path up to float rounding. Call the model as usual, preferably under
    `torch.inference_mode()`; inputs may stay NCHW (the first convolution switches to channels-last because its
    weight is). Gradients are switched off; `save_pretrained` still writes ordinary weights.

    Args:
        channels_last: store the convolution weights channels-last (the main CPU speed-up; also right for GPUs
            with tensor cores under bf16/fp16).
        compile: wrap the three-stage forward in `torch.compile` (inductor, weights frozen into the graph on CPU).
            Shapes are static: the first call at each new padded input size compiles again (slowly), so use it
            with a fixed size, e.g. tiled inference (whose tiles then keep their own channel statistics: the
            override that records whole-image ones does not run inside a compiled graph). (Dynamic-shape
            compilation failed with torch 2.13 inside inductor's handling of the symbolic sizes, so it is not
            offered.) See `MPRNetModel.compile_forward`.
        compile_options: inductor options passed to `torch.compile`, overriding the defaults chosen here.
    """
    model.eval()
    model.requires_grad_(False)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        device_type = next(model.parameters()).device.type
        # Freezing turns the weights into constants so inductor can pre-pack them for oneDNN and fuse element-wise
        # work into the convolutions; it requires inference_mode or no_grad at call time.
        options = {"freezing": True} if device_type == "cpu" else {}
        options.update(compile_options or {})
        model.compile_forward(options)
    return model


def to_channels_last(pixel_values: torch.Tensor) -> torch.Tensor:
    """The input in the memory format an `optimize_for_inference` model prefers (saves one reorder)."""
    return pixel_values.contiguous(memory_format=torch.channels_last)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # musl and other C libraries have no mallopt with these parameters.
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "gnu_get_libc_version") else None


def reuse_freed_memory() -> bool:
    """Makes glibc keep freed memory for reuse instead of returning it to the kernel. Process-wide; returns whether
    it could be applied (Linux with glibc only).

    Large allocations then come from the heap and are reused by the next tensor of a similar size, so the kernel no
    longer zeroes and faults in fresh pages for every large activation. Peak resident memory grows (freed blocks
    fragment), and memory freed after inference stays with the process until it exits.

    All threads then share glibc's main arena (threads already holding an arena of their own keep it), so call this
    early, before the threads that will run inference first allocate. Large allocations are few and slow to compute,
    so the shared arena's lock costs nothing measurable.
    """
    libc = _glibc()
    if libc is None:
        return False
    no_mmap = libc.mallopt(_M_MMAP_MAX, 0)
    no_trim = libc.mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM)
    one_arena = libc.mallopt(_M_ARENA_MAX, 1)
    return bool(no_mmap and no_trim and one_arena)


class _MallInfo2(ctypes.Structure):
    # glibc's struct mallinfo2 (2.33 and later): every field a size_t.
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def heap_bytes_free_for_reuse() -> int:
    """Bytes glibc's heaps hold free for this process's next allocations (0 without glibc 2.33+).

    After `reuse_freed_memory()` a restore's feature maps stay with the process when freed, so the system reports
    them as used; a serving process deciding whether its next photo fits adds them back to the available memory.
    """
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return 0
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


__all__ = ["optimize_for_inference", "to_channels_last", "reuse_freed_memory", "heap_bytes_free_for_reuse"]

"""Start-up preparation that makes the serving processes (the app, the CLI) fast, and the tile size they restore with.

    models = load_models()
    report = prepare_for_serving(models)            # once, at start-up, before the first request
    tile = serving_tile_size(model, width, height, requested_tile_size)
    restore_image(model, photo, tile_size=tile, ...)

What `prepare_for_serving` does on CPU (docs/PERFORMANCE.md measures each part):

* process-wide: `fast.reuse_freed_memory()` (glibc keeps freed memory for reuse instead of re-faulting fresh pages).
  It belongs to the serving process, never to `import mprnet_hf`: it raises the peak memory of every later
  allocation and is never undone;
* per model: `fast.optimize_for_inference` (eval, no gradients, channels-last weights);
* per model, with onnxruntime installed: the model is exported to ONNX once (cached on disk, keyed by the weights, the
  config, the model's code and the library versions) and whole-image restores can run through an onnxruntime session,
  which fuses the element-wise work into the convolutions. Tiled restores that record whole-image statistics keep using
  PyTorch (they need its hooks). Same arithmetic up to float rounding (tests/test_serving_speed.py);
* per model, with `backend="auto"`: which backend and precision is fastest depends on the processor (onnxruntime won
  on an AVX-512 Intel machine, PyTorch with reused memory on an AVX2 AMD one, bf16 only where the CPU has native bf16
  instructions), so every candidate the precision request allows (`backend_candidates`: PyTorch fp32, onnxruntime
  fp32, and PyTorch bf16 on a CPU with native bf16 when the request is "auto") restores the same image, and the fastest
  of those whose restore of the probe image agrees with PyTorch fp32 by `AGREEMENT_THRESHOLD_DB` (the check of
  precision "auto") serves (`choose_serving_backend`). The report gives each task's backend and precision, and its
  notes the timings and agreements. The timing runs in the export thread: it measures what requests in other threads
  get only once `reuse_freed_memory()` has put every thread on glibc's main heap (docs/PERFORMANCE.md). onnxruntime's
  int8 quantization is not a candidate: it fails the agreement check (docs/PERFORMANCE.md, benchmarks/int8.py);
* a warm-up restore per model, so no request pays for a first call's set-up.

On CUDA only eval mode is set: the GPU path (bf16 autocast on ZeroGPU) stays as it is, uncompiled.
"""

import atexit
import copy
import hashlib
import inspect
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.mprnet.inference import (
    AGREEMENT_THRESHOLD_DB,
    AUTO_PRECISION,
    DEFAULT_TILE_SIZE,
    PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY,
    check_precision,
    choose_precision,
    choose_tile_size,
    cpu_has_native_bf16,
    free_memory_bytes,
    probe_image,
    psnr_db,
    restore_tensor,
)
from ..models.mprnet.modeling_mprnet import MPRNetModel
from ..stopping import current_stop_check, stop_checks
from .fast import heap_bytes_free_for_reuse, optimize_for_inference, reuse_freed_memory

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torch")
WARM_UP_SIZE = 64
# The side-by-side timing of "auto": large enough that the convolutions dominate, as in the photos served, and small
# enough to cost seconds once per model at start-up.
BACKEND_TRIAL_SIZE = 512
BACKEND_TRIAL_ROUNDS = 3
# Share of the available memory a serving process's restores may plan on together; the rest is the headroom of the
# process's own buffers (decoded photos, PNG encoding) and of the machine.
SERVER_MEMORY_SHARE = 0.8
# How often a stoppable onnxruntime run polls its stop check: a stop takes at most this plus one graph node.
STOP_POLL_S = 0.1


# A daemon thread that returns from torch or onnxruntime while the interpreter finalizes is stopped inside C++ code
# that cannot be unwound, and the process dies of SIGABRT (exit 134) after the caller's own work succeeded: a script
# that imports the app and ends while the background preparation runs. At exit the preparation is asked to stop (at
# its next step, or module of a stoppable model, or onnxruntime node) and the exit waits for it. An ONNX export in
# progress runs outside the stop checks (the exporter would trace them into the graph): the exit waits for it.
_INTERPRETER_EXITING = threading.Event()
_BACKGROUND_PREPARATIONS: list[threading.Thread] = []


class _InterpreterExiting(BaseException):
    """Raised into the background preparation when the interpreter exits; a BaseException so that the handlers that
    keep serving after a failed export or trial (`except Exception`) do not take it for one."""


def _raise_if_interpreter_exiting() -> None:
    if _INTERPRETER_EXITING.is_set():
        raise _InterpreterExiting


@atexit.register
def _stop_background_preparations() -> None:
    _INTERPRETER_EXITING.set()
    for thread in _BACKGROUND_PREPARATIONS:
        thread.join()


def onnx_cache_dir() -> Path:
    """`MPRNET_ONNX_CACHE` if set, else `$XDG_CACHE_HOME/mprnet_hf/onnx` (~/.cache/mprnet_hf/onnx)."""
    if os.environ.get("MPRNET_ONNX_CACHE"):
        return Path(os.environ["MPRNET_ONNX_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mprnet_hf" / "onnx"


def onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401  (the exporter writes with it)
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError:
        return False
    return True


def model_fingerprint(model: MPRNetModel) -> str:
    """Identifies what an exported graph depends on: weights, config, the model's code (a graph traced from older code
    would keep serving what that code computed) and the versions of the exporting libraries."""
    import onnxruntime  # the onnx extra: serving falls back to PyTorch without it (`onnxruntime_available`)

    digest = hashlib.sha256()
    digest.update(Path(inspect.getfile(type(model))).read_bytes())
    digest.update(model.config.to_json_string(use_diff=False).encode())
    digest.update(f"torch {torch.__version__} onnxruntime {onnxruntime.__version__}".encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def exported_model_path(model: MPRNetModel, cache_dir: Path | None = None) -> Path:
    """The cached ONNX export of `model` with its stage outputs, exporting it first if it is not cached."""
    from .export_onnx import export_onnx  # imports torch.onnx's exporter: only when a graph is missing from the cache

    cache_dir = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    path = cache_dir / f"mprnet-{model.config.task or 'model'}-{model_fingerprint(model)}.onnx"
    if path.is_file():
        return path
    # Written under another name and renamed, so that a crash or a second process never leaves half a file behind.
    partial = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.partial")
    # A copy: tracing must not touch the model that may be serving requests meanwhile (background=True).
    export_onnx(copy.deepcopy(model), partial, return_stages=True)
    partial.replace(path)
    return path


class OnnxRuntimeRestorer:
    """Runs an exported MPRNet graph: (N, 3, H, W) float32 images in, the stage-1, stage-2 and stage-3 images out,
    as `MPRNetModel.restore_padded` returns them but at any size (the graph pads and crops itself)."""

    def __init__(self, path: Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feed = {"pixel_values": images.detach().float().cpu().contiguous().numpy()}
        names = ["reconstruction", "stage1", "stage2"]
        check = current_stop_check()
        if check is None:
            reconstruction, stage1, stage2 = self.session.run(names, feed)
        else:
            reconstruction, stage1, stage2 = self._run_stoppable(names, feed, check)
        return torch.from_numpy(stage1), torch.from_numpy(stage2), torch.from_numpy(reconstruction)

    def _run_stoppable(self, names: list[str], feed: dict, check) -> list:
        """`session.run`, stopped when `check` (the calling thread's stop check, see `mprnet_hf.stopping`) raises:
        onnxruntime runs no Python between its nodes, so a watcher thread calls `check` every `STOP_POLL_S` and, once
        it raises, sets the run's terminate flag, which onnxruntime reads before each node; the run then fails and
        what `check` raised is raised here instead."""
        import onnxruntime

        check()
        options = onnxruntime.RunOptions()
        finished, stopped = threading.Event(), []

        def watch():
            while not finished.wait(STOP_POLL_S):
                try:
                    check()
                except BaseException as error:  # whatever the check raises is how the caller asked to stop
                    stopped.append(error)
                    options.terminate = True
                    return

        watcher = threading.Thread(target=watch, daemon=True, name="mprnet-onnx-stop")
        watcher.start()
        try:
            return self.session.run(names, feed, options)
        except Exception:
            if stopped:
                raise stopped[0] from None
            raise
        finally:
            finished.set()
            watcher.join()


@dataclass
class ServingReport:
    """What `prepare_for_serving` did: the backend, precision and whole-image runtime of each task and the seconds each
    model's preparation took. Serving code reads `precisions[task]` and `runtimes.get(task)` on each request and
    passes them to `restore_photo`: with `background=True` the backend trial may change them once it is done."""

    device: str
    reused_freed_memory: bool = False
    backends: dict[str, str] = field(default_factory=dict)
    precisions: dict[str, str] = field(default_factory=dict)
    # The onnxruntime session serving a task's fp32 whole-image restores; a task absent runs on PyTorch.
    runtimes: dict[str, "OnnxRuntimeRestorer"] = field(default_factory=dict)
    start_up_seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Set once every backend is settled (with `background=True`, when the export thread is done).
    prepared: threading.Event = field(default_factory=threading.Event)

    def summary(self) -> str:
        parts = [
            f"{task}: {backend} {self.precisions.get(task, 'fp32')} ({self.start_up_seconds.get(task, 0):.1f} s)"
            for task, backend in self.backends.items()
        ]
        return f"serving on {self.device}: " + ", ".join(parts) + "".join(f"; {note}" for note in self.notes)


TORCH_BACKEND = "torch channels-last"
ONNXRUNTIME_BACKEND = "onnxruntime"


@dataclass(frozen=True)
class BackendCandidate:
    """One way a model may serve whole-image restores: a backend (`TORCH_BACKEND`, or `ONNXRUNTIME_BACKEND` with the
    whole-image `runtime` it attaches) at a precision."""

    backend: str
    precision: str
    runtime: object | None = None

    @property
    def name(self) -> str:
        return f"{'torch' if self.runtime is None else self.backend} {self.precision}"


# The reference every other candidate must agree with, and what serves when none does.
TORCH_FP32 = BackendCandidate(TORCH_BACKEND, "fp32")


def backend_candidates(
    precision: str, restorer: "OnnxRuntimeRestorer | None" = None, native_bf16: bool | None = None
) -> list[BackendCandidate]:
    """What `backend="auto"` times for a precision request: "fp32" and "auto" get PyTorch fp32 and, with `restorer`,
    onnxruntime (fp32 graphs only); "auto" also PyTorch bf16 where the CPU runs bf16 natively (`cpu_has_native_bf16`,
    which `MPRNET_CPU_BF16` overrides, or `native_bf16` when given): emulated bf16 is slower than fp32. "bf16" asked
    for is PyTorch bf16 alone."""
    check_precision(precision)
    if precision in ("bf16", "fp16"):
        return [BackendCandidate(TORCH_BACKEND, precision)]
    candidates = [TORCH_FP32]
    if restorer is not None:
        candidates.append(BackendCandidate(ONNXRUNTIME_BACKEND, "fp32", restorer))
    if precision == AUTO_PRECISION and (cpu_has_native_bf16() if native_bf16 is None else native_bf16):
        candidates.append(BackendCandidate(TORCH_BACKEND, "bf16"))
    return candidates


def restore_with(model: MPRNetModel, candidate: BackendCandidate, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The stage images of a whole-image restore of `images` by `candidate`."""
    return restore_tensor(
        model,
        images,
        tile_size=None,
        precision=candidate.precision,
        return_stages=True,
        whole_image_runtime=candidate.runtime,
    )


def time_candidates(
    model: MPRNetModel, candidates: list[BackendCandidate], size: int = BACKEND_TRIAL_SIZE, rounds=BACKEND_TRIAL_ROUNDS
) -> dict[str, float]:
    """The best of `rounds` seconds of a whole-image restore of a `size`² image by each candidate, by name.
    The calls of each candidate run back to back, not in turns: each runtime's worker threads keep spinning for a
    while after a call, which would slow the other's next call, a cost that serving with one backend never pays. The
    best call rather than the median, because other work running beside (the app's start-up) only ever slows one
    down. Leaves `model` on PyTorch."""
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    best = {}
    for candidate in candidates:
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            restore_with(model, candidate, images)
            times.append(time.perf_counter() - started)
        best[candidate.name] = min(times)
    return best


@dataclass
class BackendChoice:
    """What `choose_serving_backend` found: the candidate that serves, the seconds of each candidate that agreed, and
    each other candidate's agreement with PyTorch fp32 on the probe image (dB)."""

    chosen: BackendCandidate
    seconds: dict[str, float]
    agreement_db: dict[str, float]
    agreement_threshold_db: float = AGREEMENT_THRESHOLD_DB
    size: int = BACKEND_TRIAL_SIZE

    def describe(self) -> str:
        timed = ", ".join(f"{seconds:.2f} s on {name}" for name, seconds in self.seconds.items())
        left_out = "".join(
            f"; {name} left out: it agreed with torch fp32 by {agreement:.1f} dB on the probe image, below the "
            f"{self.agreement_threshold_db:g} dB required"
            for name, agreement in self.agreement_db.items()
            if not agreement >= self.agreement_threshold_db
        )
        return f"{self.size}² restore in {timed}{left_out}; serving with {self.chosen.name}"


def choose_serving_backend(
    model: MPRNetModel,
    candidates: list[BackendCandidate],
    agreement_threshold_db: float = AGREEMENT_THRESHOLD_DB,
    size: int = BACKEND_TRIAL_SIZE,
    rounds: int = BACKEND_TRIAL_ROUNDS,
) -> BackendChoice:
    """The fastest of `candidates` among those whose restore of `probe_image()` agrees with PyTorch fp32's by at
    least `agreement_threshold_db` of PSNR (the check precision "auto" applies to bf16; PyTorch fp32 is the
    reference, and serves when no candidate agrees). Candidates that disagree are not timed."""
    probe = probe_image().to(next(model.parameters()).device)
    reference = restore_with(model, TORCH_FP32, probe)[-1]
    agreement, agreeing = {}, []
    for candidate in candidates:
        if candidate != TORCH_FP32:
            agreement[candidate.name] = psnr_db(restore_with(model, candidate, probe)[-1], reference)
            if not agreement[candidate.name] >= agreement_threshold_db:
                logger.warning(f"{candidate.name} disagrees with torch fp32 by {agreement[candidate.name]:.1f} dB")
                continue
        agreeing.append(candidate)
    seconds = time_candidates(model, agreeing or [TORCH_FP32], size, rounds)
    chosen = min(agreeing or [TORCH_FP32], key=lambda candidate: seconds[candidate.name])
    return BackendChoice(chosen, seconds, agreement, agreement_threshold_db, size)


def _warm_up(model: MPRNetModel, runtime: "OnnxRuntimeRestorer | None" = None) -> None:
    images = torch.rand(1, 3, WARM_UP_SIZE, WARM_UP_SIZE, generator=torch.Generator().manual_seed(0))
    restore_tensor(model, images.to(next(model.parameters()).device), return_stages=True, whole_image_runtime=runtime)


def _load_onnxruntime(task: str, model: MPRNetModel, cache_dir, report: ServingReport) -> OnnxRuntimeRestorer | None:
    """Exports `model` (or reuses its cached export) and warms an onnxruntime session up on it; None if that fails.
    The model keeps serving with PyTorch until `_settle_backend` decides."""
    started = time.perf_counter()
    try:
        restorer = OnnxRuntimeRestorer(exported_model_path(model, cache_dir))
        _warm_up(model, restorer)
    except Exception as error:  # an export or session failure must leave the PyTorch path serving
        report.notes.append(f"{task}: onnxruntime unavailable ({type(error).__name__}: {error}); serving with PyTorch")
        logger.warning(report.notes[-1])
        return None
    finally:
        report.start_up_seconds[task] = round(report.start_up_seconds.get(task, 0) + time.perf_counter() - started, 2)
    return restorer


def _serve_with(task: str, model: MPRNetModel, candidate: BackendCandidate, report: ServingReport) -> None:
    # The runtime first: a request reading the old precision between the two lines still gets a valid pair (the
    # runtime only serves fp32).
    if candidate.runtime is None:
        report.runtimes.pop(task, None)
    else:
        report.runtimes[task] = candidate.runtime
    report.backends[task] = candidate.backend
    report.precisions[task] = candidate.precision
    if candidate.runtime is not None:
        logger.info(f"{task}: whole-image restores now run on onnxruntime ({candidate.runtime.path})")


def _settle_backend(
    task: str, model: MPRNetModel, restorer: OnnxRuntimeRestorer | None, report, backend: str, precision: str
) -> None:
    started = time.perf_counter()
    if backend == "onnxruntime":
        if restorer is not None:
            _serve_with(task, model, BackendCandidate(ONNXRUNTIME_BACKEND, "fp32", restorer), report)
    else:
        candidates = backend_candidates(precision, restorer)
        if len(candidates) > 1:
            choice = choose_serving_backend(model, candidates, size=BACKEND_TRIAL_SIZE, rounds=BACKEND_TRIAL_ROUNDS)
            report.notes.append(f"{task}: {choice.describe()}")
            logger.info(report.notes[-1])
            _serve_with(task, model, choice.chosen, report)
    report.start_up_seconds[task] = round(report.start_up_seconds.get(task, 0) + time.perf_counter() - started, 2)


def prepare_for_serving(
    models: dict[str, MPRNetModel],
    device: torch.device | None = None,
    backend: str = "auto",
    cache_dir: str | Path | None = None,
    background: bool = False,
    allocator: bool = True,
    precision: str = "fp32",
) -> ServingReport:
    """Makes `models` (task -> model, as `serving.load_models` returns) fast to serve; call once at start-up.

    Args:
        device: where the models run (default: the first model's device). On CUDA only eval mode is set.
        backend: "auto" (every candidate of `backend_candidates` restores a 512² image and the fastest that agrees
            with PyTorch fp32 on the probe image serves; without onnxruntime and native bf16, PyTorch fp32),
            "onnxruntime" (always onnxruntime fp32 on CPU; a missing onnxruntime is an error) or "torch"
            (channels-last PyTorch only, at the precision `choose_precision` resolves). The report's notes give
            the timings and agreements of "auto".
        cache_dir: where ONNX exports are kept (`onnx_cache_dir()` by default). Each model is exported once per
            weights and library versions (docs/PERFORMANCE.md gives how long it takes).
        background: export and load the onnxruntime sessions, and run the trial of "auto", in a background thread;
            requests are served by the channels-last PyTorch path at the precision `choose_precision` resolves
            until each backend is settled. The returned report is updated as they are.
        allocator: apply the process-wide `fast.reuse_freed_memory()` on CPU.
        precision: the precision request the caller serves ("auto", "fp32", "bf16"; "fp16" on GPU only), which
            bounds the candidates of "auto": the report's `precisions` give what each task then restores with. The
            default, "fp32", keeps bf16 out (callers that restore with their own precision).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    check_precision(precision)
    if not models:
        raise ValueError("prepare_for_serving needs at least one model")
    device = torch.device(device) if device is not None else next(next(iter(models.values())).parameters()).device
    report = ServingReport(device=str(device))
    if device.type != "cpu":
        for task, model in models.items():
            model.eval()
            report.backends[task] = "torch (unchanged on GPU)"
            # As serving.serving_precisions: on ZeroGPU the models reach the GPU only inside a request.
            report.precisions[task] = "bf16" if precision == AUTO_PRECISION else precision
        report.prepared.set()
        return report
    if precision == "fp16":
        raise ValueError("precision fp16 needs a GPU; use auto, fp32 or bf16 on a CPU")
    if backend == "onnxruntime" and precision == "bf16":
        raise ValueError("backend='onnxruntime' runs fp32 graphs only; use precision auto or fp32, or backend='torch'")

    if allocator:
        report.reused_freed_memory = reuse_freed_memory()
    use_onnxruntime = backend != "torch" and precision != "bf16" and onnxruntime_available()
    if backend == "onnxruntime" and not use_onnxruntime:
        raise ValueError(
            "backend='onnxruntime' needs onnxruntime, onnx and onnxscript installed "
            "(pip install -r requirements-cpu.txt), or use backend='torch'"
        )
    to_export, to_settle = [], []
    for task, model in models.items():
        started = time.perf_counter()
        optimize_for_inference(model)
        _warm_up(model)
        report.backends[task] = TORCH_BACKEND
        # What serves until the backend is settled; for "auto" on a CPU with native bf16, its agreement check.
        report.precisions[task] = choose_precision(model, precision).precision
        report.start_up_seconds[task] = round(time.perf_counter() - started, 2)
        if backend != "torch":
            to_settle.append((task, model))
        if not use_onnxruntime:
            continue
        if model.config.local_attention_window:
            report.notes.append(f"{task}: test-time local statistics cannot be exported; serving with PyTorch")
            continue
        to_export.append((task, model))

    def export_all():
        # Every export and session first, then the timings: by then a serving process's own start-up (building its
        # interface, measuring its cost bounds) is over and no longer slows the calls being compared.
        try:
            restorers = {}
            for task, model in to_export:
                _raise_if_interpreter_exiting()
                restorers[task] = _load_onnxruntime(task, model, cache_dir, report)
            for task, model in to_settle:
                with stop_checks(_raise_if_interpreter_exiting):
                    _settle_backend(task, model, restorers.get(task), report, backend, precision)
        except _InterpreterExiting:
            report.notes.append("the interpreter exited before every backend was settled")
        finally:
            report.prepared.set()

    if background and to_settle:
        thread = threading.Thread(target=export_all, name="mprnet-onnx-export", daemon=True)
        _BACKGROUND_PREPARATIONS.append(thread)
        thread.start()
    else:
        export_all()
    return report


def serving_tile_size(
    model: MPRNetModel,
    width: int,
    height: int,
    requested_tile_size: int | None = DEFAULT_TILE_SIZE,
    available_bytes: int | None = None,
    concurrent_restores: int = 1,
) -> int | None:
    """The tile size a serving process restores a `width` x `height` photo with.

    On CUDA, `requested_tile_size` (the app's slider: GPU memory is the constraint the user can see). On CPU, the
    memory available decides (`inference.choose_tile_size`): None (whole, the fastest and exact path) whenever the
    photo fits, else as few tiles as fit; a fixed 512 would tile every 1-megapixel photo and double its cost with the
    statistics pass. A serving process owns its machine's memory, so each of its `concurrent_restores` restores may
    plan on an equal part of `SERVER_MEMORY_SHARE` of it, where a library call keeps to the smaller default share;
    and it estimates the higher peak of a process that reuses freed memory (`prepare_for_serving` applies that).
    """
    if isinstance(concurrent_restores, bool) or not isinstance(concurrent_restores, int) or concurrent_restores < 1:
        raise ValueError(f"concurrent_restores must be a whole number of at least 1, got {concurrent_restores!r}")
    device = next(model.parameters()).device
    if device.type == "cuda":
        return requested_tile_size
    if available_bytes is None:
        # The memory the last restores freed stays with this process (reuse_freed_memory) and is free for this one.
        available_bytes = free_memory_bytes(device) + heap_bytes_free_for_reuse()
    return choose_tile_size(
        model,
        height,
        width,
        device=device,
        available_bytes=available_bytes,
        memory_share=SERVER_MEMORY_SHARE / concurrent_restores,
        bytes_per_channel=PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY,
    )


__all__ = [
    "prepare_for_serving",
    "backend_candidates",
    "choose_serving_backend",
    "BackendCandidate",
    "BackendChoice",
    "serving_tile_size",
    "ServingReport",
    "OnnxRuntimeRestorer",
    "exported_model_path",
    "onnx_cache_dir",
    "onnxruntime_available",
]

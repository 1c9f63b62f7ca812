"""MPRNet photo restoration: a Gradio app for a Hugging Face Space on ZeroGPU (and for local use on CPU).

Only UI wiring lives here; accepting uploads, restoring, bounding the cost of a request and converting images are
`mprnet_hf` functions.

    python app.py        # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

API: `Client(url).predict(handle_file(path), "auto", 0, 64, api_name="/restore")` (or "deblur", "derain",
"denoise") returns
(restored PNG path, (before, after) slider image paths, stage gallery, status markdown); see docs/APP.md.
"""

import asyncio
import collections
import contextlib
import os
import tempfile
import threading
import time
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import pydantic
import spaces
import torch
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder
from PIL import Image

from mprnet_hf.auto import AUTO, JPEG_DENOISE_NOTE, ModelChoice, auto_message, detect, run_steps
from mprnet_hf.data.image_io import Photo, as_written, read_image, restore_photo, write_image
from mprnet_hf.detection import DegradationDetector
from mprnet_hf.models.mprnet.configuration_mprnet import TASKS
from mprnet_hf.models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from mprnet_hf.models.mprnet.inference import (
    DEFAULT_TILE_OVERLAP,
    DEFAULT_TILE_SIZE,
    PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY,
    estimated_peak_bytes,
    free_memory_bytes,
)
from mprnet_hf.serving import (
    MEMORY_LIMIT_VARIABLE,
    NO_IMAGE,
    UPLOAD_REFUSED,
    MemoryCeiling,
    check_costs,
    cpu_cost_bounds,
    default_device,
    environment_number,
    gpu_duration,
    heap_bytes_free,
    in_upload_words,
    load_models,
    max_megapixels,
    photo_bytes,
    serving_precisions,
    short_repr,
    uploaded_file,
    zerogpu_cost_bound,
)
from mprnet_hf.speed.fast import reuse_freed_memory
from mprnet_hf.speed.serving_speed import prepare_for_serving, serving_tile_size
from mprnet_hf.stopping import make_stoppable, stop_checks

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
# Gradio copies every returned file into its own cache, so our copies only need to outlive one response.
RESULT_LIFETIME_S = 300
PRUNE_EVERY_S = 60
# Stage previews are for a look at how the stages refine the image; the full-resolution result is the download.
STAGE_PREVIEW_SIDE = 512
# Gradio's upload cache is cleared of files older than an hour, every hour.
GRADIO_CACHE_CLEANUP = (3600, 3600)
# Within that hour, this app's files in Gradio's cache (uploads, restored or not, and Gradio's copies of the outputs)
# are held to MPRNET_CACHE_MB megabytes, oldest removed first: ten 50 MB uploads never followed by a restore would
# otherwise stay for the hour. The default holds a full queue (16 requests of 50 MB uploads) and their results.
DEFAULT_CACHE_MB = 2048

TASK_LABELS = {
    AUTO: "Auto (detect)",
    "deblur": "Deblur (motion or out-of-focus blur)",
    "derain": "Derain (rain streaks)",
    "denoise": "Denoise (sensor noise)",
}
# The API accepts the sliders' ranges only: a huge tile would hold a whole 16-megapixel photo in GPU memory at once.
# Tile size 0 (the default) means automatic: on a CPU the photo is restored whole when memory allows (the fastest
# and exact path), on a GPU in tiles of DEFAULT_TILE_SIZE.
AUTOMATIC_TILES = 0
TILE_SIZE_RANGE = (256, 1024)
TILE_OVERLAP_RANGE = (0, 96)

# On a CPU, glibc keeps freed memory for reuse and every thread allocates from its main heap: set before any other
# thread allocates, since a thread keeps the arena it first got, and a thread's own arena unmaps its freed feature
# maps, which a request's worker thread would re-fault on every restore (docs/PERFORMANCE.md).
if default_device().type == "cpu":
    reuse_freed_memory()
# ZeroGPU needs the weights loaded at import, outside any @spaces.GPU function; it moves them to the GPU per call.
# A photo restored whole is one forward pass of many seconds: every module checks whether its request was stopped
# (`mprnet_hf.stopping`), so that a cancel or a disconnect frees the CPU or GPU within a module, not at the end. The
# hooks go in now, before any other thread (the background export, requests) runs the models.
MODELS = {task: make_stoppable(model) for task, model in load_models().items()}
# Auto mode's detector: a small classifier that stays on the CPU (it reads a few crops, well under a second).
DETECTOR = DegradationDetector.from_pretrained()
ON_GPU = next(MODELS[TASKS[0]].parameters()).is_cuda
MAX_MEGAPIXELS = max_megapixels()
# What one request may cost: ZeroGPU seconds estimated from each model's FLOPs, or CPU seconds measured here once,
# now, before the serving preparation below starts exporting and timing its backends in the background, which would
# slow the calls down; models of one size share one rate, the fastest of all their calls (`serving.measured_rates`),
# so the bound is the same for every task and does not change while the app runs.
COST_BOUNDS = {task: zerogpu_cost_bound(model) for task, model in MODELS.items()} if ON_GPU else cpu_cost_bounds(MODELS)
# MPRNET_PRECISION (default auto): on a CPU with native bf16, bf16 for each model that passes its agreement check,
# run now (two small restores per model); fp32 on other CPUs; bf16 on a GPU.
PRECISIONS = serving_precisions(MODELS, ON_GPU)
print(f"MPRNet precision: {', '.join(f'{task}: {precision}' for task, precision in PRECISIONS.items())}", flush=True)
# Start-up, never inside a request: channels-last weights, a warm-up call, and on a CPU onnxruntime sessions for
# whole-photo restores (exported once in the background and cached on disk; requests are served by PyTorch
# meanwhile), then a 512² restore timed on both runtimes keeps the faster one ("auto"; which wins depends on the
# processor). On ZeroGPU only eval mode (bf16 autocast, no compile).
DEFAULT_BACKEND = "auto"
# "auto" also times PyTorch bf16 beside the fp32 backends where the CPU has native bf16 and MPRNET_PRECISION is auto;
# requests read SERVING.precisions, which the trial settles (PRECISIONS until then).
SERVING = prepare_for_serving(
    MODELS,
    backend=os.environ.get("MPRNET_BACKEND", DEFAULT_BACKEND),
    precision=os.environ.get("MPRNET_PRECISION", "").strip() or "auto",
    background=True,
)
print(f"MPRNet serving: {SERVING.summary()}", flush=True)


def _log_settled_backends():
    # The background export and the backend trial decide what serves; say what they decided, with their timings.
    SERVING.prepared.wait()
    print(f"MPRNet serving, every backend settled: {SERVING.summary()}", flush=True)


threading.Thread(target=_log_settled_backends, daemon=True, name="mprnet-serving-log").start()
# MPRNET_MEMORY_LIMIT_MB (default half the machine's memory): on a CPU, restores are planned (tiled, or refused) to
# stay under it beside what the app already holds, and freed memory goes back to the system after a request once the
# app holds more than half of it.
MEMORY = MemoryCeiling.from_environment()
if not ON_GPU and MEMORY.limit_bytes is not None and MEMORY.in_use_bytes() >= MEMORY.limit_bytes:
    raise ValueError(
        f"{MEMORY_LIMIT_VARIABLE} is {MEMORY.limit_bytes / 2**20:,.0f} MB, but the app already holds "
        f"{MEMORY.in_use_bytes() / 2**20:,.0f} MB with its models loaded: set it higher (a few GB), or to 'off'."
    )
# Two requests at once only split a small CPU between them (each takes twice as long); a GPU overlaps them.
QUEUE_OPTIONS = dict(
    default_concurrency_limit=int(os.environ.get("MPRNET_CONCURRENCY", "2" if ON_GPU else "1")),
    max_size=int(os.environ.get("MPRNET_QUEUE_SIZE", "16")),
)
LAUNCH_OPTIONS = dict(max_file_size="50mb", mcp_server=True)
PROCESSOR = MPRNetImageProcessor()


class RequestStopped(Exception):
    """The client cancelled or went away: the restore stops at the next tile, or within the model's next module."""


class ResultFolder:
    """A folder this app instance created for its result files, pruned on a timer of files it wrote itself."""

    def __init__(self, lifetime_s: float = RESULT_LIFETIME_S, every_s: float = PRUNE_EVERY_S):
        self.path = Path(tempfile.mkdtemp(prefix="mprnet-results-"))
        self.lifetime_s = lifetime_s
        self.written: dict[Path, float] = {}
        self.lock = threading.Lock()
        self.timer = threading.Thread(target=self._prune_forever, args=(every_s,), daemon=True, name="mprnet-prune")
        self.timer.start()

    def new_file(self, stem: str, task: str) -> Path:
        folder = Path(tempfile.mkdtemp(dir=self.path))
        path = folder / f"{stem[:80]}_{task}.png"
        with self.lock:
            self.written[path] = time.monotonic()
        return path

    def prune(self, now: float | None = None) -> int:
        """Removes the files (and their folders) written more than `lifetime_s` ago; returns how many."""
        now = time.monotonic() if now is None else now
        with self.lock:
            expired = [path for path, written in self.written.items() if now - written > self.lifetime_s]
            for path in expired:
                del self.written[path]
        for path in expired:
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()
        return len(expired)

    def _prune_forever(self, every_s: float):
        while True:
            time.sleep(every_s)
            self.prune()


RESULTS = ResultFolder()


class CacheBound:
    """Holds this app's files in Gradio's cache to `limit_bytes`, removing the oldest first.

    Only the files Gradio recorded as this app's (`Blocks.temp_file_sets`: its uploads and its copies of the outputs)
    are counted or removed: the shared cache folder (/tmp/gradio by default) may hold other processes' files. Files
    Gradio keeps on purpose (`keep_in_cache`, e.g. examples) and the uploads of requests being read are never removed.
    Runs after every upload (see `UploadsOnlyBlocks`) and at the start of every request; an upload is counted once it
    has arrived, so the cache may exceed the bound by the upload in flight (50 MB at most).
    """

    def __init__(self, limit_bytes: float):
        self.limit_bytes = limit_bytes
        self.lock = threading.Lock()
        self.in_use: collections.Counter[str] = collections.Counter()

    @contextlib.contextmanager
    def using(self, path: Path):
        """The upload at `path` is not removed within the block."""
        with self.lock:
            self.in_use[str(path)] += 1
        try:
            yield
        finally:
            with self.lock:
                self.in_use[str(path)] -= 1
                if self.in_use[str(path)] <= 0:
                    del self.in_use[str(path)]

    def app_files(self, blocks: gr.Blocks) -> list[tuple[float, int, str, set]]:
        """(arrival time, bytes, path, the Gradio set that records it) of every file of the app still on disk."""
        kept = set()
        for block in blocks.blocks.values():
            kept.update(getattr(block, "keep_in_cache", set()))
        files, seen = [], set()
        for recorded in blocks.temp_file_sets:
            for name in recorded.copy():  # a copy: Gradio adds to these sets from other threads
                if name in seen or name in kept:
                    continue
                seen.add(name)
                with contextlib.suppress(OSError):
                    status = os.lstat(name)
                    files.append((status.st_ctime, status.st_size, name, recorded))
        return sorted(files, key=lambda file: file[0])

    def prune(self, blocks: gr.Blocks) -> int:
        """Removes the app's oldest files until they add up to `limit_bytes` at most; returns how many it removed."""
        with self.lock:
            files = self.app_files(blocks)
            total, removed = sum(size for _, size, _, _ in files), 0
            in_use = {os.path.realpath(path) for path in self.in_use}
            for _, size, name, recorded in files:
                if total <= self.limit_bytes:
                    break
                if os.path.realpath(name) in in_use:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.remove(name)
                recorded.discard(name)
                total, removed = total - size, removed + 1
                with contextlib.suppress(OSError):
                    Path(name).parent.rmdir()  # the folder Gradio made for it, once empty
            return removed


CACHE = CacheBound(environment_number("MPRNET_CACHE_MB", DEFAULT_CACHE_MB) * 2**20)


class PruningSet(set):
    """Gradio's record of the uploads (`Blocks.upload_file_set`), which holds the cache to its bound after each."""

    def __init__(self, prune):
        super().__init__()
        self.prune = prune

    def update(self, *others):
        super().update(*others)
        self.prune()


def is_file_payload(payload) -> bool:
    return isinstance(payload, dict) and ("path" in payload or "url" in payload or "meta" in payload)


def as_local_upload(payload: dict) -> dict:
    """The payload naming its uploaded file by local path (an MCP client names it by the URL Gradio serves it at)."""
    path = uploaded_file(payload, upload_folders())
    return {**payload, "path": str(path), "url": None}


class UploadsOnlyBlocks(gr.Blocks):
    """Blocks whose events read no file but the uploads, and refuse every other payload with one message.

    Gradio itself refuses a file payload outside its upload folder, but with a blank error (`{"error": null}`) unlike
    its answer to a payload that is no file at all, and it downloads an http(s) URL sent as a file's path. Every file
    payload is checked here with `uploaded_file` before Gradio touches it (an upload named by its URL becomes its
    local path), and what Gradio still refuses gets the same message.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Gradio adds every upload's path with `upload_file_set.update(...)`: the cache bound runs right then.
        self.upload_file_set = PruningSet(lambda: CACHE.prune(self))
        self.temp_file_sets = [self.upload_file_set]

    # Gradio sets this when it starts the MCP server, which then answers through `answer_mcp_as_http`.
    @property
    def mcp_server_obj(self):
        return self.__dict__.get("_mcp_server_obj")

    @mcp_server_obj.setter
    def mcp_server_obj(self, server):
        if server is not None:
            answer_mcp_as_http(server)
        self.__dict__["_mcp_server_obj"] = server

    async def preprocess_data(self, block_fn, inputs, state, explicit_call=False):
        # A raw API call may stop before the optional arguments (gradio_client fills them in): they take their
        # components' defaults, as documented, and a missing image is None, which is answered "No image was uploaded".
        inputs = [*inputs, *(block.value for block in block_fn.inputs[len(inputs) :])]
        try:
            inputs = [as_local_upload(payload) if is_file_payload(payload) else payload for payload in inputs]
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except (InvalidPathError, pydantic.ValidationError, ValueError):
            refuse(UPLOAD_REFUSED)


# The most of a message an MCP client gets back (the app's own are shorter; the MCP layer's quote whole arguments).
MCP_MESSAGE_LIMIT = 400


def mcp_refusal(message: str, arguments: dict) -> str:
    """What an MCP client is told when its call failed with `message`: the HTTP API's answer to the same arguments
    where the MCP layer refused them before the app saw them (Gradio's "Invalid file data format ..." for a string
    that is no URL, the SDK's schema check), else `message` cut and with no HTML."""
    if message.startswith("Invalid file data format"):
        return UPLOAD_REFUSED
    if message.startswith("Input validation error"):
        try:
            checked_request(
                None,
                arguments.get("task", AUTO),
                arguments.get("tile_size", AUTOMATIC_TILES),
                arguments.get("tile_overlap", DEFAULT_TILE_OVERLAP),
            )
        except gr.Error as refusal:
            return refusal.message
        if arguments.get("image") is None:
            return NO_IMAGE
        if not isinstance(arguments["image"], str):
            return UPLOAD_REFUSED
    message = message.replace("<", "&lt;").replace(">", "&gt;")
    return message[:MCP_MESSAGE_LIMIT] + "…" if len(message) > MCP_MESSAGE_LIMIT else message


def answer_mcp_as_http(server) -> None:
    """Passes every failed tool call of Gradio's MCP `server` through `mcp_refusal`. The app's own refusals come
    through unchanged (short, escaped); the MCP layer's quote whole arguments, 100 KB and HTML included."""
    from mcp import types

    handlers = server.mcp_server.request_handlers
    call_tool = handlers[types.CallToolRequest]

    async def call_tool_answering_as_http(request):
        result = await call_tool(request)
        answer = result.root
        if isinstance(answer, types.CallToolResult) and answer.isError:
            message = " ".join(getattr(item, "text", "") for item in answer.content)
            refusal = mcp_refusal(message, request.params.arguments or {})
            answer.content = [types.TextContent(type="text", text=refusal)]
        return result

    handlers[types.CallToolRequest] = call_tool_answering_as_http


def upload_folders() -> list[str]:
    """Where files a client uploaded (and Gradio's copies of the examples) lie; nothing else may be read."""
    return [get_upload_folder()]


# Requests being restored, by id, each with the event that stops it at its next tile (an id, not the event itself,
# crosses into the ZeroGPU worker).
STOPS: dict[str, threading.Event] = {}


# (request id, tiles done, tiles in all) of the restores stopped because their client cancelled or went away.
STOPPED_REQUESTS: collections.deque[tuple[str, int, int]] = collections.deque(maxlen=100)
CLIENT_CHECK_EVERY_S = 0.5


def client_gone(request: gr.Request | None) -> bool:
    """Whether every queued event of this request's session has lost its client. Gradio cancels the handler when a
    client cancels a job, but when it disconnects Gradio only marks its events dead, so the handler looks."""
    jobs = getattr(getattr(demo, "_queue", None), "active_jobs", None) or []
    session = getattr(request, "session_hash", None)
    events = [event for job in jobs if job for event in job if event.session_hash == session]
    return bool(events) and not any(event.alive for event in events)


def tile_size_for(size: tuple[int, int], task: str, tile_size: int) -> int | None:
    """The tile size a request restores a photo of `size` (width, height) with: the one it asked for, or when
    automatic, the serving choice."""
    if tile_size != AUTOMATIC_TILES:
        return tile_size
    concurrent = QUEUE_OPTIONS["default_concurrency_limit"]
    return serving_tile_size(
        MODELS[task], *size, DEFAULT_TILE_SIZE, available_bytes=memory_for_restores(), concurrent_restores=concurrent
    )


def memory_for_restores() -> int | None:
    """On a CPU, the memory restores may plan on: the system's available memory and what glibc holds free for reuse,
    at most what the memory ceiling leaves (None on a GPU: its own memory decides)."""
    if ON_GPU:
        return None
    available = free_memory_bytes(torch.device("cpu")) + heap_bytes_free()
    under_ceiling = MEMORY.available_bytes()
    return available if under_ceiling is None else min(available, under_ceiling)


def check_memory(task: str, width: int, height: int, tile_size: int | None) -> None:
    """On a CPU, refuses a restore whose estimated peak (the model's feature maps for the photo or one tile, and the
    photo's own copies) would pass the memory ceiling."""
    if ON_GPU:
        return
    tile_width, tile_height = (width, height) if tile_size is None else (min(tile_size, width), min(tile_size, height))
    needed = photo_bytes(width, height) + estimated_peak_bytes(
        MODELS[task], tile_height, tile_width, PEAK_BYTES_PER_PIXEL_AND_CHANNEL_REUSING_FREED_MEMORY
    )
    tiles = "whole" if tile_size is None else f"in tiles of {tile_size}"
    MEMORY.check(needed, f"Restoring this {width}x{height} photo {tiles}")


def gpu_seconds(photo: Photo, key: str, tile_size: int, tile_overlap: int, request_id=None, progress=None) -> int:
    """ZeroGPU calls this with the arguments of `restore_on_gpu` to know how long a slot to reserve."""
    return gpu_duration(COST_BOUNDS[key], MODELS[key], *photo.size, tile_size_for(photo.size, key, tile_size))


@spaces.GPU(duration=gpu_seconds)
def restore_on_gpu(photo: Photo, key: str, tile_size: int, tile_overlap: int, request_id=None, progress=None):
    """Restores `photo` with the model under `key` in MODELS: a task, or the JPEG denoiser (`auto.ModelChoice`)."""
    stop = STOPS.get(request_id)
    tiles = [0, 1]  # done and in all, as last reported: a photo restored whole is one tile

    def stop_if_asked():
        # Called between tiles, before each module of the model (PyTorch) and by a watcher thread (onnxruntime).
        if stop is not None and stop.is_set():
            STOPPED_REQUESTS.append((request_id, *tiles))
            raise RequestStopped(f"stopped after {tiles[0]} of {tiles[1]} tiles")

    def report_tiles(done: int, total: int):
        tiles[:] = [done, total]
        stop_if_asked()
        if progress is not None and total > 1:
            progress((done, total), desc="Restoring tiles", unit="tiles")

    try:
        with stop_checks(stop_if_asked):
            return restore_photo(
                MODELS[key],
                photo,
                tile_size=tile_size_for(photo.size, key, tile_size),
                tile_overlap=tile_overlap,
                precision=SERVING.precisions[key],
                progress=report_tiles,
                whole_image_runtime=SERVING.runtimes.get(key),
            )
    except ValueError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except torch.OutOfMemoryError:
        raise gr.Error(
            f"Out of GPU memory at tile size {tile_size}: lower the tile size under Advanced.", print_exception=False
        ) from None


def refuse(message: str):
    raise gr.Error(message, print_exception=False)


def whole_number_in(value, bounds: tuple[int, int], name: str, also: int | None = None) -> int:
    low, high = bounds
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = None
    if number is None or not number.is_integer() or not (low <= number <= high or number == also):
        allowed = f"{also} (automatic) or " if also is not None else ""
        refuse(f"{name} must be {allowed}a whole number from {low} to {high}, got {short_repr(value)}.")
    return int(number)


def display_image(photo: Photo) -> Image.Image:
    """The photo as the model sees it (float, 16-bit, LAB, CMYK and the rest converted to 8-bit RGB(A)), for display
    only: the download keeps the photo's own mode and bit depth."""
    inputs = PROCESSOR(images=photo.pixels, return_tensors="pt")
    rgb = inputs["pixel_values"][0].permute(1, 2, 0).clamp(0, 1).numpy()
    return PROCESSOR.to_pil(rgb, "RGB", inputs["alpha_channels"][0])


def describe(photo: Photo) -> str:
    """The mode and bit depth a user knows the photo by, e.g. "RGB, 16 bits per channel" or "CMYK"."""
    if isinstance(photo.pixels, np.ndarray):
        mode = "RGBA" if photo.pixels.shape[-1] == 4 else "RGB"
    else:
        mode = {"I;16": "L", "I": "L", "F": "L (floating point)"}.get(photo.pixels.mode, photo.pixels.mode)
    return f"{mode}, {photo.bit_depth} bits per channel" if photo.bit_depth == 16 else mode


def stage_previews(stages: tuple[Photo, ...]) -> list[tuple[Image.Image, str]]:
    previews = []
    for number, stage in enumerate(stages, start=1):
        preview = display_image(stage)
        preview.thumbnail((STAGE_PREVIEW_SIDE, STAGE_PREVIEW_SIDE))
        previews.append((preview, f"Stage {number}" + (" (final)" if number == len(stages) else "")))
    return previews


def checked_request(image, task, tile_size, tile_overlap) -> tuple[Path | None, str, int, int]:
    if not isinstance(task, str) or (task not in TASKS and task != AUTO):
        refuse(f"Unknown task {short_repr(task)}: choose one of {AUTO}, {', '.join(TASKS)}.")
    tile_size = whole_number_in(tile_size, TILE_SIZE_RANGE, "Tile size", also=AUTOMATIC_TILES)
    tile_overlap = whole_number_in(tile_overlap, TILE_OVERLAP_RANGE, "Tile overlap")
    try:
        path = uploaded_file(image, upload_folders())
    except ValueError as error:
        refuse(str(error))
    return path, task, tile_size, tile_overlap


def step_previews(steps) -> list[tuple[Image.Image, str]]:
    """The result of every step of an auto restore, captioned with its task."""
    previews = []
    for number, (task, photo, _stages) in enumerate(steps, start=1):
        preview = display_image(photo)
        preview.thumbnail((STAGE_PREVIEW_SIDE, STAGE_PREVIEW_SIDE))
        previews.append((preview, f"Step {number}: {task}" + (" (final)" if number == len(steps) else "")))
    return previews


def worker_ended_after_its_request(worker: asyncio.Future) -> None:
    error = None if worker.cancelled() else worker.exception()
    if error is not None and not isinstance(error, (RequestStopped, gr.Error)):
        print(f"MPRNet: a cancelled request's restore failed: {type(error).__name__}: {error}", flush=True)


async def run_watched(work, request):
    """Runs `work(request_id)` in a worker thread and stops it (at its next tile, or within the model's next module)
    when the client goes away."""
    request_id, stop = uuid.uuid4().hex, threading.Event()
    STOPS[request_id] = stop
    running = asyncio.ensure_future(asyncio.to_thread(work, request_id))
    try:
        while not running.done():
            await asyncio.wait([running], timeout=CLIENT_CHECK_EVERY_S)
            if client_gone(request):
                stop.set()
        return running.result()
    except (asyncio.CancelledError, RequestStopped) as stopped:
        stop.set()  # the worker thread stops at its next tile and frees the CPU or GPU
        # Cancelled, nothing awaits the worker any more: its end (RequestStopped, as asked) is taken here, or asyncio
        # would log it as "Task exception was never retrieved" with a traceback.
        running.add_done_callback(worker_ended_after_its_request)
        if isinstance(stopped, RequestStopped):
            refuse("The request was stopped: its client went away.")
        raise
    finally:
        STOPS.pop(request_id, None)


def restore_auto(photo: Photo, tile_size: int, tile_overlap: int, request_id=None, progress=None):
    """Auto mode's steps (`auto.run_steps`), each restored in a GPU slot of its own; returns them, every detection
    and whether the JPEG denoiser ran."""
    choice = ModelChoice(MODELS, photo.pixels)
    steps, detections = run_steps(
        photo,
        lambda current, after: detect(current.pixels, DETECTOR, after),
        lambda task, current: restore_on_gpu(current, choice.key(task), tile_size, tile_overlap, request_id, progress),
    )
    return steps, detections, choice.jpeg_denoised


# Gradio takes each argument's description (the MCP tool's schema too) from its one docstring line, dropping any
# continuation line: keep each argument on one line.
async def restore(image, task, tile_size, tile_overlap, request: gr.Request, progress=gr.Progress()):
    """Restores one degraded photo (blurred, rainy or noisy) with MPRNet and returns it at full resolution.

    Args:
        image: the photo, uploaded (PNG, JPEG, WebP, BMP, TIFF, GIF or PPM; at most 16 megapixels).
        task: "auto" (detects blur, rain and noise and undoes what it finds), "deblur", "derain" or "denoise".
        tile_size: 0 for automatic (the default), or the side of square tiles (256 to 1024, a multiple of 8).
        tile_overlap: pixels over which neighbouring tiles overlap and cross-fade (0 to 96).

    Returns:
        The restored lossless PNG (size, mode, bit depth, ICC profile, EXIF of the upload), the before/after pair,
        small previews of the three stages, and a status text.
    """
    path, task, tile_size, tile_overlap = checked_request(image, task, tile_size, tile_overlap)

    try:

        def within_cost_bound(width: int, height: int):
            # Auto runs each step as its own call, each held to the bound of a request for that task (none with
            # MPRNET_MAX_SECONDS=off).
            steps = TASKS if task == AUTO else (task,)
            bounded = {name: (COST_BOUNDS[name], MODELS[name]) for name in steps if name in COST_BOUNDS}
            check_costs(
                bounded, width, height, lambda name, *size: tile_size_for(size, name, tile_size), "on this server"
            )
            for name in steps:
                check_memory(name, width, height, tile_size_for((width, height), name, tile_size))

        def read_upload() -> Photo:
            # The cache bound counts the previous requests' outputs now; this request's upload is kept while it is read.
            with CACHE.using(path) if path is not None else contextlib.nullcontext():
                CACHE.prune(demo)
                return read_image(path, MAX_MEGAPIXELS, within_cost_bound)

        try:
            # Decoding a large photo takes a while: off the event loop, and only once its header passed the bounds.
            photo = await asyncio.to_thread(read_upload)
        except ValueError as error:
            refuse(in_upload_words(error))
        for note in photo.notes:
            gr.Info(note)

        started = time.perf_counter()
        if task == AUTO:
            steps, detections, jpeg_denoised = await run_watched(
                lambda request_id: restore_auto(photo, tile_size, tile_overlap, request_id, progress), request
            )
            restored = steps[-1][1] if steps else photo
            previews = step_previews(steps) if len(steps) > 1 else stage_previews(steps[0][2]) if steps else []
            summary = f"**auto**: {auto_message(detections, tuple(done for done, *_ in steps), jpeg_denoised)}"
        else:
            # Reading the photo's JPEG grid takes a moment: in the worker, with the restore.
            choice = ModelChoice(MODELS, photo.pixels)
            restored, stages = await run_watched(
                lambda request_id: restore_on_gpu(
                    photo, choice.key(task), tile_size, tile_overlap, request_id, progress
                ),
                request,
            )
            previews = stage_previews(stages)
            summary = f"**{task}**:{JPEG_DENOISE_NOTE}" if choice.jpeg_denoised else f"**{task}**:"
        seconds = time.perf_counter() - started

        # The status describes the PNG as written (a CMYK photo comes back RGB: PNG holds no CMYK).
        restored = as_written(restored, "PNG")
        result_path = write_image(restored, RESULTS.new_file(Path(path).stem, task), "PNG")
        width, height = restored.size
        restored_word = "Restored" if summary.endswith(".") else "restored"  # after a sentence, or after "**task**:"
        status = "\n\n".join(
            [
                f"{summary} {restored_word} {width}×{height} ({describe(photo)} in, "
                f"{describe(restored)} out) in {seconds:.1f} s. Download the full-resolution PNG above.",
                *(f"Note: {note}" for note in photo.notes),
            ]
        )
        return str(result_path), (display_image(photo), str(result_path)), previews, status
    finally:
        # Large photos leave their freed feature maps with the process; above half the ceiling they go back now.
        await asyncio.to_thread(MEMORY.after_request)


def example_rows(task: str) -> list[list]:
    return [
        [str(path), task, AUTOMATIC_TILES, DEFAULT_TILE_OVERLAP] for path in sorted((EXAMPLES_DIR / task).glob("*.png"))
    ]


def build_demo() -> gr.Blocks:
    with UploadsOnlyBlocks(title="MPRNet photo restoration", delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(
            "# MPRNet photo restoration\n"
            "Upload a blurred, rainy or noisy photo (drag and drop, paste, or pick an example) and press **Restore**: "
            "**Auto** finds out what degrades it, or choose the task yourself. Drag the slider to compare before and "
            "after; the three stages of the multi-stage "
            "network are shown below it. The download is a lossless PNG at full resolution."
        )
        with gr.Row():
            with gr.Column():
                image_input = gr.Image(
                    type="filepath",
                    image_mode=None,
                    format="png",
                    sources=["upload", "clipboard"],
                    label="Degraded photo",
                    height=360,
                    elem_id="input-image",
                )
                task_input = gr.Radio(
                    choices=[(TASK_LABELS[task], task) for task in (AUTO, *TASKS)],
                    value=AUTO,
                    label="Task",
                    elem_id="task",
                    info="Auto detects blur, noise and rain (several at once too) and undoes them.",
                )
                with gr.Accordion("Advanced", open=False):
                    tile_size_input = gr.Slider(
                        AUTOMATIC_TILES,
                        TILE_SIZE_RANGE[1],
                        value=AUTOMATIC_TILES,
                        step=256,
                        label="Tile size",
                        elem_id="tile-size",
                        info="0: automatic (whole photo when memory allows). Large photos are restored tile by tile; "
                        "smaller tiles need less memory.",
                    )
                    tile_overlap_input = gr.Slider(
                        *TILE_OVERLAP_RANGE,
                        value=DEFAULT_TILE_OVERLAP,
                        step=8,
                        label="Tile overlap",
                        info="Neighbouring tiles overlap and cross-fade over this many pixels, hiding seams.",
                    )
                restore_button = gr.Button("Restore", variant="primary", elem_id="restore-button")
            with gr.Column():
                result_file = gr.File(label="Restored image (lossless PNG)", interactive=False, elem_id="result-file")
                comparison = gr.ImageSlider(
                    label="Before / after", format="png", type="filepath", interactive=False, elem_id="comparison"
                )
                status = gr.Markdown(label="Status", elem_id="status")
        stage_gallery = gr.Gallery(
            label="Stage outputs", columns=3, format="png", object_fit="contain", height=280, elem_id="stages"
        )
        inputs = [image_input, task_input, tile_size_input, tile_overlap_input]
        outputs = [result_file, comparison, stage_gallery, status]
        with gr.Row():
            for task in (AUTO, *TASKS):
                with gr.Column(min_width=200):
                    # Cached on first click, so a visitor clicking an example does not spend GPU time twice. Only
                    # the photo is shown, as a thumbnail (a table of task and tile columns scrolls sideways); the
                    # set's label says the task, and a click still loads every input.
                    gr.Examples(
                        example_rows(task),
                        inputs=inputs,
                        outputs=outputs,
                        fn=restore,
                        label=f"{task.capitalize()} examples",
                        visible_columns=[0],
                        elem_id=f"{task}-examples",
                        cache_examples=True,
                        cache_mode="lazy",
                        api_name=False,
                    )

        restore_button.click(
            restore,
            inputs=inputs,
            outputs=outputs,
            api_name="restore",
            # Gradio's own preprocessing opens the upload with PIL and fails on corrupt files and decompression
            # bombs with a generic error; `uploaded_file` and `open_image_file` check the payload and give the
            # user the reason instead.
            preprocess=False,
        )
    return demo.queue(**QUEUE_OPTIONS)


demo = build_demo()

if __name__ == "__main__":
    demo.launch(**LAUNCH_OPTIONS)

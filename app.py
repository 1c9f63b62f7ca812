"""MPRNet photo restoration: a Gradio app for a Hugging Face Space on ZeroGPU (and for local use on CPU).

Only UI wiring lives here; reading uploads, restoring and converting images are `mprnet_hf` functions.

    python app.py        # http://127.0.0.1:7860 (GRADIO_SERVER_NAME / GRADIO_SERVER_PORT override)

API: `Client(url).predict(handle_file(path), "deblur", 512, 64, api_name="/restore")` returns
(restored PNG path, (before, after) slider image paths, stage gallery, status markdown); see docs/APP.md.
"""

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import gradio as gr
import spaces
import torch
from PIL import Image, ImageOps

from mprnet_hf.configuration_mprnet import TASKS
from mprnet_hf.inference import DEFAULT_TILE_OVERLAP, DEFAULT_TILE_SIZE, passes_over_image, restore_image
from mprnet_hf.serving import gpu_duration, load_models, max_megapixels, open_image_file

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
RESULTS_DIR = Path(tempfile.gettempdir()) / "mprnet_results"
# Gradio copies every returned file into its own cache, so our copies only need to outlive one response.
RESULT_LIFETIME_S = 600
# Stage previews are for a look at how the stages refine the image; the full-resolution result is the download.
STAGE_PREVIEW_SIDE = 1024
# Modes a PNG (and so the browser) can show as they are; anything else (CMYK, YCbCr, float, ...) is shown as RGB(A).
PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}

TASK_LABELS = {
    "deblur": "Deblur (motion or out-of-focus blur)",
    "derain": "Derain (rain streaks)",
    "denoise": "Denoise (sensor noise)",
}
QUEUE_OPTIONS = dict(
    default_concurrency_limit=int(os.environ.get("MPRNET_CONCURRENCY", "2")),
    max_size=int(os.environ.get("MPRNET_QUEUE_SIZE", "64")),
)
LAUNCH_OPTIONS = dict(max_file_size="50mb")
# The API accepts the sliders' ranges only: a huge tile would hold a whole 16-megapixel photo in GPU memory at once.
TILE_SIZE_RANGE = (256, 1024)
TILE_OVERLAP_RANGE = (0, 96)

# ZeroGPU needs the weights loaded at import, outside any @spaces.GPU function; it moves them to the GPU per call.
MODELS = load_models()
MAX_MEGAPIXELS = max_megapixels()


def gpu_seconds(image: Image.Image, task: str, tile_size: int, tile_overlap: int, progress=None) -> int:
    """ZeroGPU calls this with the arguments of `restore_on_gpu` to know how long a slot to reserve."""
    width, height = image.size
    return gpu_duration(width, height, passes_over_image(MODELS[task], height, width, tile_size))


@spaces.GPU(duration=gpu_seconds)
def restore_on_gpu(image: Image.Image, task: str, tile_size: int, tile_overlap: int, progress=None):
    model = MODELS[task]
    on_gpu = next(model.parameters()).is_cuda

    def report_tiles(done: int, total: int):
        if progress is not None and total > 1:
            progress((done, total), desc="Restoring tiles", unit="tiles")

    try:
        return restore_image(
            model,
            image,
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            precision="bf16" if on_gpu else "fp32",
            max_megapixels=MAX_MEGAPIXELS,
            progress=report_tiles,
        )
    except ValueError as error:
        raise gr.Error(str(error), print_exception=False) from None
    except torch.OutOfMemoryError:
        raise gr.Error(
            f"Out of GPU memory at tile size {tile_size}: lower the tile size under Advanced.", print_exception=False
        ) from None


def uploaded_path(payload) -> str | None:
    """The file path in the raw image payload (the handler skips Gradio's preprocessing, see `build_demo`)."""
    if isinstance(payload, dict):
        return payload.get("path")
    return payload


def whole_number_in(value, bounds: tuple[int, int], name: str) -> int:
    low, high = bounds
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not number.is_integer() or not low <= number <= high:
        raise gr.Error(f"{name} must be a whole number from {low} to {high}, got {value!r}.", print_exception=False)
    return int(number)


def browser_viewable(image: Image.Image) -> Image.Image:
    if image.mode in PNG_MODES:
        return image
    return image.convert("RGBA" if "A" in image.getbands() else "RGB")


def fresh_result_path(stem: str, task: str) -> Path:
    now = time.time()
    if RESULTS_DIR.is_dir():
        for old in RESULTS_DIR.iterdir():
            try:
                expired = now - old.stat().st_mtime > RESULT_LIFETIME_S
            except FileNotFoundError:  # a concurrent request pruned it first
                continue
            if expired:
                shutil.rmtree(old, ignore_errors=True)
    folder = RESULTS_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return folder / f"{stem}_{task}.png"


def restore(image, task, tile_size, tile_overlap, progress=gr.Progress()):
    """Restores one uploaded photo; returns (PNG file, before/after pair, stage gallery, status)."""
    if task not in MODELS:
        raise gr.Error(f"Unknown task {task!r}: choose one of {', '.join(TASKS)}.", print_exception=False)
    tile_size = whole_number_in(tile_size, TILE_SIZE_RANGE, "Tile size")
    tile_overlap = whole_number_in(tile_overlap, TILE_OVERLAP_RANGE, "Tile overlap")
    path = uploaded_path(image)
    try:
        photo, notes = open_image_file(path, MAX_MEGAPIXELS)
    except ValueError as error:
        raise gr.Error(str(error), print_exception=False) from None
    for note in notes:
        gr.Info(note)

    started = time.perf_counter()
    restoration = restore_on_gpu(photo, task, tile_size, tile_overlap, progress)
    seconds = time.perf_counter() - started

    result_path = fresh_result_path(Path(path).stem, task)
    restoration.image.save(result_path, format="PNG")
    before = browser_viewable(ImageOps.exif_transpose(photo))
    stages = []
    for number, stage in enumerate(restoration.stages, start=1):
        preview = stage.copy()
        preview.thumbnail((STAGE_PREVIEW_SIDE, STAGE_PREVIEW_SIDE))
        stages.append((preview, f"Stage {number}" + (" (final)" if number == len(restoration.stages) else "")))
    width, height = restoration.image.size
    status = "\n\n".join(
        [
            f"**{task}**: restored {width}×{height} ({restoration.input_mode} in, {restoration.image.mode} out) "
            f"in {seconds:.1f} s. Download the full-resolution PNG above.",
            *(f"Note: {note}" for note in notes),
        ]
    )
    return str(result_path), (before, str(result_path)), stages, status


def example_rows(task: str) -> list[list[str]]:
    return [[str(path), task] for path in sorted((EXAMPLES_DIR / task).glob("*.png"))]


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="MPRNet photo restoration", delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            "# MPRNet photo restoration\n"
            "Upload a blurred, rainy or noisy photo (drag and drop, paste, or pick an example), choose the task and "
            "press **Restore**. Drag the slider to compare before and after; the three stages of the multi-stage "
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
                    choices=[(TASK_LABELS[task], task) for task in TASKS], value=TASKS[0], label="Task", elem_id="task"
                )
                with gr.Accordion("Advanced", open=False):
                    tile_size_input = gr.Slider(
                        *TILE_SIZE_RANGE, value=DEFAULT_TILE_SIZE, step=64, label="Tile size",
                        info="Large photos are restored tile by tile; smaller tiles need less GPU memory.",
                    )
                    tile_overlap_input = gr.Slider(
                        *TILE_OVERLAP_RANGE, value=DEFAULT_TILE_OVERLAP, step=8, label="Tile overlap",
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
        with gr.Row():
            for task in TASKS:
                with gr.Column(min_width=200):
                    gr.Examples(
                        example_rows(task), inputs=[image_input, task_input], label=f"{task.capitalize()} examples"
                    )

        restore_button.click(
            restore,
            inputs=[image_input, task_input, tile_size_input, tile_overlap_input],
            outputs=[result_file, comparison, stage_gallery, status],
            api_name="restore",
            # Gradio's own preprocessing opens the upload with PIL and fails on corrupt files and decompression
            # bombs with a generic error; `open_image_file` gives the user the reason instead.
            preprocess=False,
        )
    return demo.queue(**QUEUE_OPTIONS)


demo = build_demo()

if __name__ == "__main__":
    demo.launch(**LAUNCH_OPTIONS)

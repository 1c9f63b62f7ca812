"""The `image-restoration` pipeline: images in, restored images of the same size out."""

from transformers import AutoModel, Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY

from .inference import (
    AUTO_PRECISION,
    AUTOMATIC,
    DEFAULT_STATISTICS_PASSES,
    check_precision,
    restore_tensor,
)

TASK = "image-restoration"


class ImageRestorationPipeline(Pipeline):
    """Restores images with an MPRNet model.

    ```python
    restorer = pipeline(model="org/mprnet-deblur", trust_remote_code=True)  # the repo's copy of this code
    restored = restorer("blurry.png")                      # a PIL image of the input's size and mode
    restored = restorer("huge.png")                        # tiled only when memory requires (tile_size="auto")
    restored = restorer("huge.png", tile_size=512)         # tiled, bounded memory
    restored = restorer("huge.png", tile_size=512, statistics_passes=0)  # tile-local statistics: faster, less exact
    restored = restorer("photo.png", precision="fp32")     # exact fp32 (default "auto": bf16 where the hardware has it)
    ```

    `task="auto"` (detect blur, noise and rain and run what undoes them) needs the degradation detector and the other
    tasks' models, which a model folder does not carry: the installed `mprnet_hf` package's pipeline subclass adds it
    (`restore_auto`), this class refuses it.

    `precision="auto"` (the default) restores in bf16 on a GPU with bf16 or a CPU with native bf16 instructions
    (AVX512-BF16 or AMX) once the model agrees with fp32 on a probe image (`inference.choose_precision`), in fp32
    elsewhere; "fp32", "bf16" and "fp16" (GPU only) force one.

    A string input is a local path or an http(s) URL, read with transformers' `load_image` as every transformers
    pipeline does: the caller's own process reads or downloads it. A server must not pass strings a client sent; it
    opens uploads itself and passes PIL images (the app does, through `mprnet_hf.data.safe_open.open_image_file`).
    """

    _load_processor = False
    _load_image_processor = True
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False
    # Auto mode's restore, `restore_image_auto(model, image, processor=..., **options)`: set by a subclass that has one.
    restore_auto = None

    def _sanitize_parameters(
        self, tile_size=None, tile_overlap=None, precision=None, statistics_passes=None, task=None, **kwargs
    ):
        forward = {}
        if task is not None:
            if task == "auto" and self.restore_auto is None:
                raise ValueError(
                    "task='auto' needs the mprnet_hf package (pip install mprnet-hf; import mprnet_hf registers its "
                    "pipeline): a model folder carries no degradation detector"
                )
            if task != "auto" and task != self.model.config.task:
                raise ValueError(
                    f"task={task!r}: this pipeline restores {self.model.config.task!r}; pass task='auto' "
                    "to detect the degradation, or a model of that task"
                )
            forward["auto"] = task == "auto"
        if statistics_passes is not None:
            forward["statistics_passes"] = statistics_passes
        if tile_size is not None:
            forward["tile_size"] = tile_size
        if tile_overlap is not None:
            forward["tile_overlap"] = tile_overlap
        if precision is not None:
            check_precision(precision)  # refused when the call is made, before any image is read
            forward["precision"] = precision
        return {}, forward, {}

    def preprocess(self, image):
        image = load_image(image) if isinstance(image, str) else image
        inputs = self.image_processor(images=image, return_tensors="pt")
        inputs["image"] = image  # auto mode detects on the image itself
        return inputs

    def _forward(
        self,
        model_inputs,
        tile_size=AUTOMATIC,
        tile_overlap=None,
        precision=AUTO_PRECISION,
        statistics_passes=DEFAULT_STATISTICS_PASSES,
        auto=False,
    ):
        if auto:
            restored = self.restore_auto(
                self.model,
                model_inputs["image"],
                processor=self.image_processor,
                tile_size=tile_size,
                tile_overlap=tile_overlap,
                precision=precision,
                statistics_passes=statistics_passes,
            )
            return {"auto": restored}
        stages = restore_tensor(
            self.model,
            model_inputs["pixel_values"],
            tile_size=tile_size,
            tile_overlap=tile_overlap,
            precision=precision,
            return_stages=False,
            statistics_passes=statistics_passes,
        )
        return {"reconstruction": stages[-1], "inputs": model_inputs}

    def postprocess(self, model_outputs):
        if "auto" in model_outputs:
            return model_outputs["auto"].image
        images = self.image_processor.postprocess(model_outputs["reconstruction"], model_outputs["inputs"])
        return images[0]


def register_pipeline(pipeline_class: type[ImageRestorationPipeline] = ImageRestorationPipeline):
    # The auto class, not MPRNetModel: a saved folder's config.json names it, and transformers looks that name up
    # in its own namespace when the folder is loaded as remote code.
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=pipeline_class, pt_model=AutoModel, type="image")

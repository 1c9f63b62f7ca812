"""The `image-restoration` pipeline: images in, restored images of the same size out."""

from transformers import Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY

from .inference import DEFAULT_STATISTICS_PASSES, restore_tensor
from .modeling_mprnet import MPRNetModel

TASK = "image-restoration"


class ImageRestorationPipeline(Pipeline):
    """Restores images with an MPRNet model.

    ```python
    restorer = pipeline("image-restoration", model="org/mprnet-deblur")
    restored = restorer("blurry.png")                      # a PIL image of the input's size and mode
    restored = restorer("huge.png", tile_size=512)         # tiled, bounded memory
    restored = restorer("huge.png", tile_size=512, statistics_passes=0)  # tile-local statistics: faster, less exact
    restored = restorer("photo.png", precision="bf16")     # bf16 autocast (GPU; on CPU fast only with bf16 instructions)
    ```
    """

    _load_processor = False
    _load_image_processor = True
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, tile_size=None, tile_overlap=None, precision=None, statistics_passes=None,
                             **kwargs):
        forward = {}
        if statistics_passes is not None:
            forward["statistics_passes"] = statistics_passes
        if tile_size is not None:
            forward["tile_size"] = tile_size
        if tile_overlap is not None:
            forward["tile_overlap"] = tile_overlap
        if precision is not None:
            forward["precision"] = precision
        return {}, forward, {}

    def preprocess(self, image):
        image = load_image(image) if isinstance(image, str) else image
        return self.image_processor(images=image, return_tensors="pt")

    def _forward(self, model_inputs, tile_size=None, tile_overlap=None, precision="fp32",
                 statistics_passes=DEFAULT_STATISTICS_PASSES):
        stages = restore_tensor(self.model, model_inputs["pixel_values"], tile_size=tile_size, tile_overlap=tile_overlap,
                                precision=precision, return_stages=False,
                                statistics_passes=statistics_passes)
        return {"reconstruction": stages[-1], "inputs": model_inputs}

    def postprocess(self, model_outputs):
        images = self.image_processor.postprocess(model_outputs["reconstruction"], model_outputs["inputs"])
        return images[0]


def register_pipeline():
    PIPELINE_REGISTRY.register_pipeline(TASK, pipeline_class=ImageRestorationPipeline, pt_model=MPRNetModel, type="image")

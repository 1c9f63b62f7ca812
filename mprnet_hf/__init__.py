"""MPRNet (Multi-Stage Progressive Image Restoration) as a Hugging Face transformers model.

Importing this package registers MPRNet with `AutoConfig`, `AutoModel`, `AutoModelForImageToImage`,
`AutoImageProcessor` and the `image-restoration` pipeline task.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageToImage

from .models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from .models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from .models.mprnet.modeling_mprnet import MPRNetModel, MPRNetOutput, MPRNetPreTrainedModel
from .models.mprnet.pipeline_mprnet import ImageRestorationPipeline, register_pipeline

__version__ = "0.1.0"

AutoConfig.register(MPRNetConfig.model_type, MPRNetConfig, exist_ok=True)
AutoModel.register(MPRNetConfig, MPRNetModel, exist_ok=True)
AutoModelForImageToImage.register(MPRNetConfig, MPRNetModel, exist_ok=True)
AutoImageProcessor.register(MPRNetConfig, image_processor_classes={"pil": MPRNetImageProcessor}, exist_ok=True)
# Folders written by save_pretrained / push_to_hub carry the code, so they load with trust_remote_code=True
# where this package is not installed.
MPRNetConfig.register_for_auto_class()
MPRNetModel.register_for_auto_class("AutoModel")
MPRNetImageProcessor.register_for_auto_class("AutoImageProcessor")
register_pipeline()

__all__ = [
    "TASKS",
    "MPRNetConfig",
    "MPRNetModel",
    "MPRNetOutput",
    "MPRNetPreTrainedModel",
    "MPRNetImageProcessor",
    "ImageRestorationPipeline",
]

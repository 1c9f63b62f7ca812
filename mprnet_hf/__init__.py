"""MPRNet (Multi-Stage Progressive Image Restoration) as a Hugging Face transformers model.

Importing this package registers MPRNet with `AutoConfig`, `AutoModel`, `AutoModelForImageToImage`,
`AutoImageProcessor` and the `image-restoration` pipeline task (with auto mode, `task="auto"`).

    from mprnet_hf import MPRNetModel, read_image, restore_image, restore_photo, write_image
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageToImage
from transformers.utils import logging

from .auto import AutoImageRestorationPipeline, AutoRestoration, restore_image, restore_image_auto, restore_photo_auto
from .data.image_io import Photo, read_image, restore_photo, write_image
from .detection import DegradationDetector, Detection
from .models.mprnet.configuration_mprnet import TASKS, MPRNetConfig
from .models.mprnet.image_processing_mprnet import MPRNetImageProcessor
from .models.mprnet.inference import Restoration, restore_tensor
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
# The model folder's pipeline first: registering gives a class what its save_pretrained writes into config.json.
# Then the subclass with auto mode takes the task over, so `pipeline("image-restoration", ...)` builds it; the
# registry's warning that it replaces an entry would tell a user nothing.
register_pipeline()
_registry_logger = logging.get_logger("transformers.pipelines.base")
_level = _registry_logger.level
_registry_logger.setLevel(logging.ERROR)
try:
    register_pipeline(AutoImageRestorationPipeline)
finally:
    _registry_logger.setLevel(_level)

__all__ = [
    "TASKS",
    "MPRNetConfig",
    "MPRNetModel",
    "MPRNetOutput",
    "MPRNetPreTrainedModel",
    "MPRNetImageProcessor",
    "ImageRestorationPipeline",
    "AutoImageRestorationPipeline",
    "restore_image",
    "restore_image_auto",
    "restore_tensor",
    "Restoration",
    "AutoRestoration",
    "Photo",
    "read_image",
    "write_image",
    "restore_photo",
    "restore_photo_auto",
    "DegradationDetector",
    "Detection",
]

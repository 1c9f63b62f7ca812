"""Old path of `mprnet_hf.models.mprnet.image_processing_mprnet`, kept for old imports: it is the same module object."""

import sys

from .models.mprnet import image_processing_mprnet as _moved

sys.modules[__name__] = _moved

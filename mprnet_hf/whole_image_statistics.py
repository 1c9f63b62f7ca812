"""Old path of `mprnet_hf.models.mprnet.whole_image_statistics`, kept for old imports: it is the same module object."""

import sys

from .models.mprnet import whole_image_statistics as _moved

sys.modules[__name__] = _moved

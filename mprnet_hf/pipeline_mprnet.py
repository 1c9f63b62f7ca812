"""Old path of `mprnet_hf.models.mprnet.pipeline_mprnet`, kept for old imports: it is the same module object."""

import sys

from .models.mprnet import pipeline_mprnet as _moved

sys.modules[__name__] = _moved

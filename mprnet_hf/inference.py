"""Old path of `mprnet_hf.models.mprnet.inference`, kept for old imports: it is the same module object."""

import sys

from .models.mprnet import inference as _moved

sys.modules[__name__] = _moved

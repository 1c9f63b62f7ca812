"""Old path of `mprnet_hf.models.mprnet.losses`, kept for old imports: it is the same module object."""

import sys

from .models.mprnet import losses as _moved

sys.modules[__name__] = _moved

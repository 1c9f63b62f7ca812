"""Old path of `mprnet_hf.data.image_io`, kept for old imports: it is the same module object."""

import sys

from .data import image_io as _moved

sys.modules[__name__] = _moved

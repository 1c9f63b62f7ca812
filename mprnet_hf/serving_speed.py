"""Old path of `mprnet_hf.speed.serving_speed`, kept for old imports: it is the same module object."""

import sys

from .speed import serving_speed as _moved

sys.modules[__name__] = _moved

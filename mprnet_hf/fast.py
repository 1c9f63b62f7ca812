"""Old path of `mprnet_hf.speed.fast`, kept for old imports: it is the same module object."""

import sys

from .speed import fast as _moved

sys.modules[__name__] = _moved

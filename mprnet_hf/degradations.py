"""Old path of `mprnet_hf.data.degradations`, kept for old imports: it is the same module object."""

import sys

from .data import degradations as _moved

sys.modules[__name__] = _moved

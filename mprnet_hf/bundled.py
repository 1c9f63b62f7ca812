"""Old path of `mprnet_hf.hub.bundled`, kept for old imports: it is the same module object."""

import sys

from .hub import bundled as _moved

sys.modules[__name__] = _moved

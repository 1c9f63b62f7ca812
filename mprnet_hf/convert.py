"""Old path of `mprnet_hf.hub.convert`, kept for old imports: it is the same module object."""

import sys

from .hub import convert as _moved

if __name__ == "__main__":  # python -m mprnet_hf.convert
    _moved.main()
else:
    sys.modules[__name__] = _moved

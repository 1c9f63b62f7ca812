"""Old path of `mprnet_hf.hub.remote_code`, kept for old imports: it is the same module object."""

import sys

from .hub import remote_code as _moved

if __name__ == "__main__":  # python -m mprnet_hf.remote_code
    _moved.main()
else:
    sys.modules[__name__] = _moved

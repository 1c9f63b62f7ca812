"""Old path of `mprnet_hf.evaluation.evaluate`, kept for old imports: it is the same module object."""

import sys

from .evaluation import evaluate as _moved

if __name__ == "__main__":  # python -m mprnet_hf.evaluate
    _moved.main()
else:
    sys.modules[__name__] = _moved

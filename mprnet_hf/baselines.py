"""Old path of `mprnet_hf.evaluation.baselines`, kept for old imports: it is the same module object."""

import sys

from .evaluation import baselines as _moved

sys.modules[__name__] = _moved

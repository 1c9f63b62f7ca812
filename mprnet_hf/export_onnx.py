"""Old path of `mprnet_hf.speed.export_onnx`, kept for old imports: it is the same module object."""

import sys

from .speed import export_onnx as _moved

if __name__ == "__main__":  # python -m mprnet_hf.export_onnx
    _moved.main()
else:
    sys.modules[__name__] = _moved

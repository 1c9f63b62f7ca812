"""`python -m mprnet_hf.restore`: the same command as `mprnet-restore` (see mprnet_hf.cli), and the module a launcher
starts on many processes (`accelerate launch --multi_gpu --num_processes N -m mprnet_hf.restore ...`; see
mprnet_hf.collection)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

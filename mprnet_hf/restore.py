"""`python -m mprnet_hf.restore`: the same command as `mprnet-restore` (see mprnet_hf.cli)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

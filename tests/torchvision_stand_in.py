"""A stand-in for the few torchvision names that importing spandrel touches, for the spandrel test only.

Why it exists: importing spandrel imports every architecture it knows, and two of them (LaMa and RestoreFormer)
import `torchvision.transforms.functional` at module level. The package registries this project installs from hold
only CUDA builds of torchvision, which fail to import beside the CPU torch the project pins (`operator
torchvision::nms does not exist`); installing one would also break transformers, which imports torchvision whenever
it finds it installed. spandrel's MPRNet code (detection, loading, the forward pass) never calls torchvision, so the
test lends spandrel these names only while it imports, and nothing else. Every function here raises when called, so
no test can pass by running stand-in code in place of torchvision's.
"""

import enum
import importlib
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager

# What spandrel 0.4.2 imports from torchvision: LaMa takes InterpolationMode and rotate, RestoreFormer normalize.
CALLED_NAMES = ("rotate", "normalize")


class InterpolationMode(enum.Enum):
    """The values of torchvision's enum of the same name; LaMa reads BILINEAR when it runs (never in these tests)."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _not_provided(name: str):
    def refuse(*args, **kwargs):
        raise NotImplementedError(
            f"torchvision.transforms.functional.{name} was called, but only a test stand-in is loaded "
            "(tests/torchvision_stand_in.py): the code under test was expected never to use torchvision"
        )

    refuse.__name__ = name
    return refuse


def stand_in_modules() -> dict[str, types.ModuleType]:
    """`torchvision`, `torchvision.transforms` and `torchvision.transforms.functional`, linked as packages are."""
    functional = types.ModuleType(
        "torchvision.transforms.functional", "Test stand-in: see tests/torchvision_stand_in.py"
    )
    functional.InterpolationMode = InterpolationMode
    for name in CALLED_NAMES:
        setattr(functional, name, _not_provided(name))
    transforms = types.ModuleType("torchvision.transforms", functional.__doc__)
    transforms.functional = functional
    package = types.ModuleType("torchvision", functional.__doc__)
    package.transforms = transforms
    package.__version__ = "0+test-stand-in"
    return {
        "torchvision": package,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }


@contextmanager
def lent_while_importing() -> Iterator[None]:
    """Puts the stand-in into sys.modules for the duration of the block, then removes it, so that only the modules
    imported inside the block (which keep the names they took) ever see it."""
    if importlib.util.find_spec("torchvision") is not None:
        # A real torchvision is installed: use it (a broken one then fails the test, which is the truth).
        yield
        return
    modules = stand_in_modules()
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name in modules:
            sys.modules.pop(name, None)

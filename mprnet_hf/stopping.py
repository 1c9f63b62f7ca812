"""Stopping a restore part-way through one forward pass, for a server whose client cancelled or went away.

Between tiles a restore's progress callback can stop it, but a photo restored whole is a single forward pass of many
seconds. `make_stoppable(model)` gives every leaf module of the model (each convolution, activation, ...) a forward
pre-hook that calls the stop check of the calling thread, set with `stop_checks(check)`; the check raises to stop,
and the exception leaves the forward pass at the next module. Without a check set the hook does nothing, so the
model's outputs are unchanged (`model(**inputs)` is exactly what it was).

The hooks stay for the model's lifetime and read the check from a thread-local: installing or removing hooks while
other threads run the same model (a server's concurrent requests, its background warm-up and export) would change
the hook tables under them, and one thread's check must never stop another thread's request. An onnxruntime session
(`speed.serving_speed.OnnxRuntimeRestorer`) runs no Python between its nodes; it polls the same check from a watcher
thread and sets its run's terminate flag, which onnxruntime reads between nodes.

    make_stoppable(model)                     # once, before serving
    with stop_checks(raise_if_cancelled):     # around a restore, in the thread that runs it
        restore_photo(model, photo)
"""

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator

import torch

_CHECKS = threading.local()
_STOPPABLE: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()
_INSTALLING = threading.Lock()


def current_stop_check() -> Callable[[], None] | None:
    """The stop check the calling thread set with `stop_checks`, or None."""
    return getattr(_CHECKS, "check", None)


def check_for_stop() -> None:
    """Calls the calling thread's stop check, if any: it raises when the work is to stop."""
    check = current_stop_check()
    if check is not None:
        check()


def _check_before_module(_module, _inputs) -> None:
    check_for_stop()


def make_stoppable(model: torch.nn.Module) -> torch.nn.Module:
    """Installs, once per model, the pre-hooks that run the calling thread's stop check before every leaf module of
    `model`. Call it before other threads use the model (e.g. at start-up). Returns `model`."""
    with _INSTALLING:
        if model in _STOPPABLE:
            return model
        for module in model.modules():
            if next(module.children(), None) is None:
                module.register_forward_pre_hook(_check_before_module)
        _STOPPABLE.add(model)
    return model


def is_stoppable(model: torch.nn.Module) -> bool:
    return model in _STOPPABLE


@contextlib.contextmanager
def stop_checks(check: Callable[[], None]) -> Iterator[None]:
    """Within the block, the calling thread's forward passes of stoppable models (and onnxruntime runs) call `check`
    between modules; whatever it raises stops the pass and leaves the block."""
    previous = current_stop_check()
    _CHECKS.check = check
    try:
        yield
    finally:
        _CHECKS.check = previous


__all__ = ["make_stoppable", "is_stoppable", "stop_checks", "check_for_stop", "current_stop_check"]

"""Stopping a restore inside one forward pass: `mprnet_hf.stopping`'s hooks leave the outputs
exactly as they were, stop a pass between two modules when the calling thread's check raises, and never stop
another thread's pass. The app's cancel and disconnect are tested against a real server in test_app.py."""

import contextlib
import threading

import pytest
import torch

from conftest import TINY
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.inference import restore_tensor
from mprnet_hf.stopping import is_stoppable, make_stoppable, stop_checks

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Stopped(Exception):
    pass


def tiny_model() -> MPRNetModel:
    torch.manual_seed(0)
    return MPRNetModel(MPRNetConfig(**TINY)).eval()


def images(side: int = 48) -> torch.Tensor:
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(1))


def stopping_at_call(number: int):
    """A stop check that raises on its `number`-th call, and how many calls it had."""
    calls = [0]

    def check():
        calls[0] += 1
        if calls[0] >= number:
            raise Stopped

    return check, calls


def test_hooks_leave_the_outputs_exactly_as_they_were():
    model = tiny_model()
    with torch.inference_mode():
        before = model(images()).stage_reconstructions
        assert make_stoppable(model) is model and is_stoppable(model)
        make_stoppable(model)  # a second call installs nothing more
        after = model(images()).stage_reconstructions
        never = stopping_at_call(10**9)[0]
        with stop_checks(never):
            checked = model(images()).stage_reconstructions
    for expected, got, got_checked in zip(before, after, checked):
        assert torch.equal(expected, got) and torch.equal(expected, got_checked)


def test_a_whole_image_pass_stops_at_the_module_where_its_check_raises():
    model = make_stoppable(tiny_model())
    check, calls = stopping_at_call(10)
    with pytest.raises(Stopped), stop_checks(check):
        restore_tensor(model, images(), tile_size=None)
    # The tenth module of the pass, not the end of it: a check once per pass would have been called once.
    assert calls[0] == 10
    modules_in_a_pass = stopping_at_call(10**9)
    with stop_checks(modules_in_a_pass[0]):
        restore_tensor(model, images(), tile_size=None)
    assert modules_in_a_pass[1][0] > 100


def test_one_threads_check_never_stops_another_threads_pass():
    """The other thread runs its whole pass while the first is held inside its check, which raises only then: a check
    seen by every thread would be called by the other pass too, and stop it."""
    model = make_stoppable(tiny_model())
    inside, other_done, results = threading.Event(), threading.Event(), {}

    def check_until_the_other_is_done():
        inside.set()
        other_done.wait(60)
        raise Stopped

    def restore(name, check=None):
        try:
            with stop_checks(check) if check else contextlib.nullcontext():
                results[name] = restore_tensor(model, images(), tile_size=None)[-1]
        except Stopped:
            results[name] = "stopped"
        finally:
            if name == "other":
                other_done.set()

    stopped = threading.Thread(target=restore, args=("stopped", check_until_the_other_is_done))
    stopped.start()
    assert inside.wait(60)
    other = threading.Thread(target=restore, args=("other",))
    other.start()
    for thread in (other, stopped):
        thread.join()
    assert results["stopped"] == "stopped"
    assert torch.equal(results["other"], restore_tensor(tiny_model(), images(), tile_size=None)[-1])

"""ONNX export: dynamic batch, height and width, and the same results as PyTorch under onnxruntime."""

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TINY
from mprnet_hf import MPRNetConfig, MPRNetModel
from mprnet_hf.models.mprnet.modeling_mprnet import pad_to_multiple
from mprnet_hf.speed.export_onnx import ExportableMPRNet, mirror_indices

ONNX_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny random model saved like a checkpoint and exported through the command line."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(**TINY)).eval()
    model.save_pretrained(folder / "model")
    output = folder / "model.onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mprnet_hf.speed.export_onnx",
            "--model",
            str(folder / "model"),
            "--output",
            str(output),
            "--stages",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return model, output


@pytest.mark.parametrize("shape", [(1, 3, 40, 56), (2, 3, 37, 45), (1, 3, 5, 30)])
@pytest.mark.slow
def test_onnxruntime_matches_pytorch_at_several_sizes(exported, shape):
    onnxruntime = pytest.importorskip("onnxruntime")
    model, path = exported
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    reconstruction, stage1, stage2 = session.run(
        ["reconstruction", "stage1", "stage2"], {"pixel_values": images.numpy()}
    )
    with torch.no_grad():
        expected = model(images).stage_reconstructions
    for name, actual, reference in (
        ("stage1", stage1, expected[0]),
        ("stage2", stage2, expected[1]),
        ("reconstruction", reconstruction, expected[2]),
    ):
        assert actual.shape == tuple(shape), name
        error = np.abs(actual - reference.numpy()).max()
        assert error <= ONNX_TOLERANCE, f"{name} at {shape}: max error {error:.3g}"


@pytest.mark.slow
def test_an_onnxruntime_run_stops_when_its_threads_check_raises(exported):
    """onnxruntime runs no Python between nodes; the serving runner polls the calling thread's stop
    check from a watcher thread and terminates the run. The check raises on its second call (the watcher's first
    poll, 0.1 s in), long before a 1024² pass ends; the session serves the next run as before."""
    pytest.importorskip("onnxruntime")
    from mprnet_hf.speed.serving_speed import OnnxRuntimeRestorer
    from mprnet_hf.stopping import stop_checks

    class Stopped(Exception):
        pass

    model, path = exported
    restorer = OnnxRuntimeRestorer(path, threads=1)
    images = torch.rand(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    calls = []

    def check():
        calls.append(time.monotonic())
        if len(calls) >= 2:
            raise Stopped

    started = time.monotonic()
    with pytest.raises(Stopped), stop_checks(check):
        restorer(images)
    stopped = time.monotonic()
    # Stopped was raised, so the run was terminated: one that ends returns its outputs even after a check raised.
    assert len(calls) == 2
    print(f"onnxruntime: stopped {stopped - started:.2f} s in")
    # The session still restores after the stop (unchecked, on a small input: a whole 1024² pass proves no more).
    small = images[..., :64, :64]
    with torch.no_grad():
        expected = model(small).stage_reconstructions[-1]
    finished = restorer(small)[-1]
    assert finished.shape == small.shape
    assert np.abs(finished.numpy() - expected.numpy()).max() <= ONNX_TOLERANCE


@pytest.mark.slow
def test_exported_graph_declares_dynamic_batch_height_width(exported):
    onnx = pytest.importorskip("onnx")
    _, path = exported
    graph = onnx.load(str(path)).graph
    dims = [dim.dim_param or dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [output.name for output in graph.output] == ["reconstruction", "stage1", "stage2"]
    for output in graph.output:
        assert [dim.dim_param or dim.dim_value for dim in output.type.tensor_type.shape.dim] == dims


@pytest.mark.parametrize("length", range(1, 20))
def test_mirror_indices_reproduce_the_models_padding(length):
    rows = torch.arange(length, dtype=torch.float32).reshape(1, 1, length, 1)
    padded_length = -(-length // 8) * 8
    expected = pad_to_multiple(rows)[0, 0, :, 0].long()
    assert torch.equal(mirror_indices(length, padded_length, "cpu"), expected)


def test_exportable_module_matches_the_model_in_pytorch():
    torch.manual_seed(0)
    model = MPRNetModel(MPRNetConfig(**TINY)).eval()
    images = torch.rand(3, 3, 21, 34)
    with torch.no_grad():
        expected = model(images).stage_reconstructions
        reconstruction, stage1, stage2 = ExportableMPRNet(model, return_stages=True)(images)
    for actual, reference in zip((stage1, stage2, reconstruction), expected):
        assert torch.equal(actual, reference)


def test_tlc_models_are_refused_with_a_clear_message():
    model = MPRNetModel(MPRNetConfig(**TINY, local_attention_window=32))
    with pytest.raises(ValueError, match="local_attention_window"):
        ExportableMPRNet(model)

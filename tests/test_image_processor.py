"""The image processor: every input kind and mode in, the same kind of image back."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from mprnet_hf import MPRNetImageProcessor

processor = MPRNetImageProcessor()


def gradient(width=20, height=12) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    return (
        np.concatenate(
            [
                np.broadcast_to(x, (height, width, 1)),
                np.broadcast_to(y, (height, width, 1)),
                np.full((height, width, 1), 128.0),
            ],
            axis=2,
        )
        .round()
        .astype(np.uint8)
    )


def round_trip(image):
    inputs = processor(images=image, return_tensors="pt")
    return inputs, processor.postprocess(inputs["pixel_values"], inputs)[0]


def test_rgb_round_trip_is_lossless():
    rgb = gradient()
    inputs, restored = round_trip(Image.fromarray(rgb))
    assert inputs["pixel_values"].shape == (1, 3, 12, 20)
    assert inputs["pixel_values"].dtype == torch.float32
    assert inputs["pixel_values"].min() >= 0 and inputs["pixel_values"].max() <= 1
    assert inputs["original_sizes"].tolist() == [[12, 20]]
    assert restored.mode == "RGB" and np.array_equal(np.asarray(restored), rgb)


def test_rgba_keeps_alpha():
    rgba = np.dstack([gradient(), np.linspace(0, 255, 20 * 12).reshape(12, 20).astype(np.uint8)])
    inputs, restored = round_trip(Image.fromarray(rgba, "RGBA"))
    assert inputs["pixel_values"].shape[1] == 3
    assert restored.mode == "RGBA" and np.array_equal(np.asarray(restored), rgba)


@pytest.mark.parametrize("mode", ["L", "LA"])
def test_grayscale_stays_grayscale(mode):
    gray = Image.fromarray(gradient()[..., 0]).convert(mode)
    inputs, restored = round_trip(gray)
    pixels = inputs["pixel_values"][0]
    assert torch.equal(pixels[0], pixels[1]) and torch.equal(pixels[1], pixels[2])
    assert restored.mode == mode
    assert np.array_equal(np.asarray(restored), np.asarray(gray))


def test_sixteen_bit_keeps_precision():
    values = np.linspace(0, 65535, 30 * 10).reshape(10, 30).astype(np.uint16)
    image = Image.fromarray(values, mode="I;16")
    inputs, restored = round_trip(image)
    assert inputs["pixel_values"][0, 0, 0, 1].item() == pytest.approx(values[0, 1] / 65535, abs=1e-6)
    assert restored.mode == "I;16"
    assert np.abs(np.asarray(restored).astype(int) - values.astype(int)).max() <= 1


def test_palette_and_cmyk_come_back_rgb():
    palette = Image.fromarray(gradient()).convert("P")
    assert round_trip(palette)[1].mode == "RGB"
    cmyk = Image.fromarray(gradient()).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, format="JPEG")
    inputs, restored = round_trip(Image.open(buffer))
    assert restored.mode == "RGB" and restored.size == (20, 12)
    expected = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255
    assert np.allclose(inputs["pixel_values"][0].permute(1, 2, 0).numpy(), expected)


# Where each EXIF orientation puts the stored pixels, written from the EXIF specification's wording ("the 0th row
# is the visual right-hand side and the 0th column the visual top" for 6, ...): stored (H, W, C) -> upright.
UPRIGHT_FROM_STORED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # upside down
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # stored row 0 is the left column, stored column 0 the top row
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],  # stored row 0 is the right column, stored column 0 the top row
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],  # stored row 0 is the right column, stored column 0 the bottom row
    8: lambda a: a.transpose(1, 0, 2)[::-1],  # stored row 0 is the left column, stored column 0 the bottom row
}


@pytest.mark.parametrize("orientation", list(UPRIGHT_FROM_STORED))
def test_exif_orientation_puts_every_pixel_upright(orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (10, 30, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="PNG", exif=exif)  # lossless, so every pixel can be compared
    inputs, restored = round_trip(Image.open(buffer))
    upright = UPRIGHT_FROM_STORED[orientation](stored)
    assert inputs["original_sizes"].tolist() == [list(upright.shape[:2])]
    np.testing.assert_array_equal(np.asarray(restored), upright)
    np.testing.assert_allclose(inputs["pixel_values"][0].permute(1, 2, 0).numpy(), upright / 255, atol=1e-7)


def test_exif_orientation_can_be_ignored():
    stored = gradient(30, 10)
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, format="PNG", exif=exif)
    inputs = MPRNetImageProcessor(apply_exif_orientation=False)(images=Image.open(buffer))
    assert inputs["original_sizes"].tolist() == [[10, 30]]
    assert MPRNetImageProcessor()(images=Image.open(buffer))["original_sizes"].tolist() == [[30, 10]]  # the default


def test_numpy_and_torch_inputs():
    rgb = gradient()
    from_numpy = processor(images=rgb)["pixel_values"]
    from_uint16 = processor(images=rgb.astype(np.uint16) * 257)["pixel_values"]
    from_float = processor(images=rgb.astype(np.float32) / 255)["pixel_values"]
    from_tensor = processor(images=torch.from_numpy(rgb).permute(2, 0, 1))["pixel_values"]
    from_chw = processor(images=np.moveaxis(rgb, -1, 0))["pixel_values"]
    for other in (from_uint16, from_float, from_tensor, from_chw):
        assert torch.allclose(from_numpy, other, atol=1e-4)


def test_batch_of_different_sizes_is_cropped_back():
    images = [Image.fromarray(gradient(20, 12)), Image.fromarray(gradient(9, 31))]
    inputs = processor(images=images)
    assert inputs["pixel_values"].shape == (2, 3, 31, 20)
    outputs = processor.postprocess(inputs["pixel_values"], inputs)
    assert [image.size for image in outputs] == [(20, 12), (9, 31)]
    assert np.array_equal(np.asarray(outputs[1]), gradient(9, 31))


def test_postprocess_clamps_and_output_types():
    values = torch.tensor([-0.5, 0.25, 1.5]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    (array,) = processor.postprocess(values, torch.tensor([[2, 2]]), output_type="np")
    assert array.min() >= 0 and array.max() <= 1
    (image,) = processor.postprocess(values, [[2, 2]])
    assert np.asarray(image)[0, 0].tolist() == [0, 64, 255]  # 0.25 * 255 = 63.75 rounds to 64


def test_save_and_load(tmp_path):
    MPRNetImageProcessor(apply_exif_orientation=False).save_pretrained(tmp_path)
    assert MPRNetImageProcessor.from_pretrained(tmp_path).apply_exif_orientation is False


@pytest.mark.parametrize(
    "image,message",
    [
        (np.zeros((0, 5, 3), dtype=np.uint8), "empty"),
        (np.zeros((5, 5, 5), dtype=np.uint8), "Cannot interpret"),
        (np.full((4, 4, 3), 2.0, dtype=np.float32), r"\[0, 1\]"),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((4, 4, 3), dtype=np.int64), "Unsupported pixel type"),
        ("not an image", "Unsupported image type"),
        ([], "No images"),
    ],
)
def test_bad_inputs(image, message):
    with pytest.raises(ValueError, match=message):
        processor(images=image)


def test_only_pytorch_tensors():
    with pytest.raises(ValueError, match="return_tensors"):
        processor(images=gradient(), return_tensors="np")


def test_sixteen_bit_colour_arrays_keep_precision_and_alpha():
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 65536, (6, 9, 4), dtype=np.uint16)
    inputs = processor(images=rgba)
    assert inputs["original_modes"] == ["RGBA;16"] and inputs["pixel_values"].dtype == torch.float32
    np.testing.assert_allclose(inputs["pixel_values"][0].permute(1, 2, 0).numpy(), rgba[..., :3] / 65535, atol=1e-7)
    np.testing.assert_allclose(inputs["alpha_channels"][0], rgba[..., 3] / 65535, atol=1e-7)
    restored = processor.postprocess(inputs["pixel_values"], inputs)[0]
    # No 16-bit colour mode in PIL: it comes back as 8-bit RGBA, alpha included.
    assert restored.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(restored), np.round(rgba / 65535 * 255).astype(np.uint8))
    rgb_only = processor(images=rgba[..., :3])
    assert rgb_only["original_modes"] == ["RGB;16"] and rgb_only["alpha_channels"] == [None]


def test_thirty_two_bit_grayscale_is_clipped_to_the_sixteen_bit_range():
    values = np.array([[-5, 0, 32768, 65535, 70000]], dtype=np.int32)
    inputs = processor(images=Image.fromarray(values, mode="I"))
    assert inputs["pixel_values"].dtype == torch.float32
    np.testing.assert_allclose(inputs["pixel_values"][0, 0, 0].numpy(), [0, 0, 32768 / 65535, 1, 1], atol=1e-7)


def test_postprocess_without_sizes_keeps_the_whole_batch_at_its_size():
    values = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 1.4 - 0.2
    images = processor.postprocess(values)
    assert [image.size for image in images] == [(7, 5), (7, 5)] and {image.mode for image in images} == {"RGB"}
    tensors = processor.postprocess(values, output_type="pt")
    assert len(tensors) == 2 and all(torch.equal(tensor, value.clamp(0, 1)) for tensor, value in zip(tensors, values))
    arrays = processor.postprocess(values, [[5, 7], [3, 4]], output_type="np")
    assert [array.shape for array in arrays] == [(5, 7, 3), (3, 4, 3)]


@pytest.mark.parametrize(
    "reconstruction, sizes, output_type, message",
    [
        (
            torch.rand(1, 4, 2, 2),
            None,
            "pil",
            r"^reconstruction must be a tensor of shape \(batch, 3, height, width\)$",
        ),
        (torch.rand(3, 2, 2), None, "pil", r"^reconstruction must be a tensor of shape \(batch, 3, height, width\)$"),
        ([[0.5]], None, "pil", r"^reconstruction must be a tensor of shape \(batch, 3, height, width\)$"),
        (torch.rand(2, 3, 2, 2), [[2, 2]], "pil", r"^Got 1 sizes for 2 images$"),
        (torch.rand(1, 3, 2, 2), None, "jpg", r"^output_type must be 'pil', 'np' or 'pt', got 'jpg'$"),
    ],
)
def test_postprocess_refuses_what_it_cannot_convert(reconstruction, sizes, output_type, message):
    with pytest.raises(ValueError, match=message):
        processor.postprocess(reconstruction, sizes, output_type=output_type)


def test_to_pil_clips_out_of_range_values_and_alpha():
    rgb = np.array([[[-0.5] * 3, [0.5] * 3, [1.5] * 3]], dtype=np.float32)
    sixteen = MPRNetImageProcessor.to_pil(rgb, "I;16")
    assert sixteen.mode == "I;16" and np.asarray(sixteen).tolist() == [[0, 32768, 65535]]
    with_alpha = MPRNetImageProcessor.to_pil(rgb.clip(0, 1), "L", alpha=np.array([[-1.0, 0.5, 2.0]]))
    assert with_alpha.mode == "LA" and np.asarray(with_alpha)[..., 1].tolist() == [[0, 128, 255]]


def test_a_batch_of_one_and_a_single_row_are_images():
    """A (1, 3, H, W) tensor in a list is one image (a model's output fed back); a (1, W) array is one row of grey."""
    rgb = gradient()
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    inputs = processor(images=[chw[None], chw])
    assert inputs["pixel_values"].shape == (2, 3, 12, 20)
    assert torch.equal(inputs["pixel_values"][0], inputs["pixel_values"][1])
    row = processor(images=torch.arange(0, 250, 10, dtype=torch.uint8)[None])
    (grey,) = processor.postprocess(row["pixel_values"], row)
    assert grey.mode == "L" and grey.size == (25, 1)
    assert np.asarray(grey).reshape(-1).tolist() == list(range(0, 250, 10))

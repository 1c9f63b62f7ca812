"""The image processor: every input kind and mode in, the same kind of image back."""

import io
import re

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
    (alpha,) = inputs["alpha_channels"]
    assert alpha.dtype == np.float32 and np.array_equal(alpha, rgba[..., 3] / np.float32(255))
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
    assert inputs["pixel_values"].dtype == torch.float32
    np.testing.assert_allclose(inputs["pixel_values"][0].numpy(), np.stack([values / 65535] * 3), rtol=0, atol=1e-7)
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
        (np.zeros((0, 5, 3), dtype=np.uint8), "The image is empty (shape (0, 5, 3)); it needs at least one pixel"),
        (
            np.zeros((5, 5, 5), dtype=np.uint8),
            "Cannot interpret an array of shape (5, 5, 5) as an image: expected (H, W), (H, W, 3), (H, W, 4) "
            "or channels-first (3, H, W)",
        ),
        (
            np.full((4, 4, 3), 2.0, dtype=np.float32),
            "Float images must hold values in [0, 1], got [2, 2]; divide 8-bit data by 255 or pass it as uint8",
        ),
        (np.full((4, 4, 3), np.nan, dtype=np.float32), "The image contains NaN or infinite values"),
        (
            np.zeros((4, 4, 3), dtype=np.int64),
            "Unsupported pixel type int64: use uint8, uint16 or float in [0, 1]",
        ),
        ("not an image", "Unsupported image type str: pass a PIL image, a numpy array or a torch tensor"),
        ([], "No images given"),
        (Image.new("RGB", (0, 5)), "The image is empty (0x5 pixels)"),
        (Image.new("RGB", (5, 0)), "The image is empty (5x0 pixels)"),
    ],
)
def test_bad_inputs(image, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
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


def pixels(inputs, index=0) -> np.ndarray:
    """The processor's output for one image as a float (H, W, 3) array."""
    return inputs["pixel_values"][index].permute(1, 2, 0).numpy()


def as_rgb(hwc: np.ndarray) -> np.ndarray:
    """What the processor should make of a uint8 (H, W), (H, W, 3) or (H, W, 4) array: RGB in [0, 1]."""
    hwc = hwc[..., None].repeat(3, axis=2) if hwc.ndim == 2 else hwc[..., :3]
    return hwc / np.float32(255)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_tensors_are_channels_first_even_when_four_pixels_wide(channels):
    # (C, 5, 4): its last side could be taken for channels; a tensor's layout is always (C, H, W).
    chw = torch.from_numpy(np.random.default_rng(channels).integers(0, 256, (channels, 5, 4), dtype=np.uint8))
    inputs = processor(images=chw)
    hwc = chw.permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(pixels(inputs), as_rgb(hwc[..., 0] if channels == 1 else hwc))
    if channels == 4:
        np.testing.assert_array_equal(inputs["alpha_channels"][0], hwc[..., 3] / np.float32(255))


@pytest.mark.parametrize(
    "shape, channels_first",
    [
        ((1, 5, 6), True),
        ((3, 4, 5), True),
        ((4, 5, 6), True),
        ((3, 6, 1), False),  # one channel of grey, three rows high
        ((4, 6, 3), False),  # RGB four rows high
        ((3, 6, 4), False),  # RGBA three rows high
        ((3, 10), False),  # grey, three rows high
        ((5, 1), False),  # one column of grey
        ((1, 1), False),  # one pixel
    ],
)
def test_arrays_are_read_channels_last_unless_only_channels_first_fits(shape, channels_first):
    array = np.random.default_rng(len(shape)).integers(0, 256, shape, dtype=np.uint8)
    hwc = np.moveaxis(array, 0, -1) if channels_first else array
    if hwc.ndim == 3 and hwc.shape[-1] == 1:
        hwc = hwc[..., 0]
    inputs = processor(images=array)
    assert inputs["original_sizes"].tolist() == [list(hwc.shape[:2])]
    np.testing.assert_array_equal(pixels(inputs), as_rgb(hwc))
    if hwc.ndim == 3 and hwc.shape[-1] == 4:
        np.testing.assert_array_equal(inputs["alpha_channels"][0], hwc[..., 3] / np.float32(255))


def test_boolean_and_single_channel_float_and_sixteen_bit_arrays_are_grey():
    mask = np.array([[True, False, True], [False, False, True]])
    np.testing.assert_array_equal(pixels(processor(images=mask))[..., 0], mask.astype(np.float32))
    # Float data is kept to 16 bits: 0.25 is 16383.75 / 65535, read as 16384 / 65535.
    grey = np.array([[0.0, 0.25, 1.0], [1 / 65535, 0.5, 0.75]], dtype=np.float32)
    sixteen_bit = np.round(grey * 65535).astype(np.uint16)
    for array in (grey, sixteen_bit):
        inputs = processor(images=array)
        assert inputs["original_modes"] == ["I;16"]
        np.testing.assert_allclose(pixels(inputs), np.stack([sixteen_bit / 65535] * 3, axis=-1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_tensors_are_read_at_full_precision(dtype):
    # A model's fp16 or bf16 output fed back: numpy has no bfloat16, and 65535 overflows float16.
    values = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=dtype).reshape(1, 2, 2).expand(3, 2, 2)
    expected = np.array([[0, 16384], [32768, 65535]]) / 65535  # float data is kept to 16 bits
    np.testing.assert_allclose(pixels(processor(images=values)), np.stack([expected] * 3, axis=-1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("to_batch", [torch.stack, np.stack])
def test_four_dimensional_batches_are_split_into_images(to_batch):
    first, second = gradient(), gradient()[::-1].copy()
    if to_batch is torch.stack:
        batch = torch.stack([torch.from_numpy(first).permute(2, 0, 1), torch.from_numpy(second).permute(2, 0, 1)])
    else:
        batch = np.stack([first, second])
    inputs = processor(images=batch)
    assert inputs["pixel_values"].shape == (2, 3, 12, 20)
    np.testing.assert_array_equal(pixels(inputs, 0), as_rgb(first))
    np.testing.assert_array_equal(pixels(inputs, 1), as_rgb(second))


def test_one_pixel_wide_image_is_accepted():
    column = Image.fromarray(gradient(1, 5))
    inputs, restored = round_trip(column)
    assert inputs["pixel_values"].shape == (1, 3, 5, 1)
    np.testing.assert_array_equal(np.asarray(restored), np.asarray(column))


def test_float_grayscale_images_in_either_range_come_back_grey():
    # Mode F holds [0, 1] data, or 0-255 data when anything is brighter than 1 (clipped to that range).
    for values, expected in (
        ([0.0, 0.25, 1.0], [0.0, 0.25, 1.0]),
        ([0.0, 127.5, 255.0, 300.0, -3.0], [0.0, 0.5, 1.0, 1.0, 0.0]),
        ([0.0, 1.5], [0.0, 1.5 / 255]),
    ):
        image = Image.fromarray(np.array([values], dtype=np.float32), mode="F")
        inputs, restored = round_trip(image)
        assert inputs["pixel_values"].dtype == torch.float32
        np.testing.assert_allclose(pixels(inputs), np.array([[[value] * 3 for value in expected]]), atol=1e-7)
        assert restored.mode == "L" and np.asarray(restored).tolist() == [[round(v * 255) for v in expected]]
    message = (
        "The image has NaN or infinite pixel values (a floating-point image with missing data?). "
        "Replace them with numbers, or export the image as 8- or 16-bit, and try again."
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        processor(images=Image.fromarray(np.array([[0.5, np.inf]], dtype=np.float32), mode="F"))


def rgba_with_every_alpha() -> Image.Image:
    alpha = np.arange(0, 240, 2, dtype=np.uint8).reshape(6, 20)
    return Image.fromarray(np.dstack([gradient(20, 6), alpha]), "RGBA")


@pytest.mark.parametrize("mode, straight_mode, restored_mode", [("RGBa", "RGBA", "RGBA"), ("La", "LA", "LA")])
def test_premultiplied_alpha_is_read_straight(mode, straight_mode, restored_mode):
    image = rgba_with_every_alpha().convert("L" if mode == "La" else "RGB")
    image.putalpha(rgba_with_every_alpha().getchannel("A"))
    premultiplied = image.convert(mode)
    straight = np.asarray(premultiplied.convert(straight_mode))  # the colours divided back out by Pillow
    inputs, restored = round_trip(premultiplied)
    np.testing.assert_array_equal(pixels(inputs), as_rgb(straight[..., 0] if mode == "La" else straight))
    np.testing.assert_array_equal(inputs["alpha_channels"][0], straight[..., -1] / np.float32(255))
    assert restored.mode == restored_mode and np.array_equal(np.asarray(restored), straight)


def test_palette_transparency_and_palette_alpha_become_alpha():
    opaque, clear = (10, 200, 30), (250, 5, 90)
    indices = np.array([[0, 1, 1], [1, 0, 1]], dtype=np.uint8)
    palette = Image.fromarray(indices, "P")
    palette.putpalette([*clear, *opaque])
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG", transparency=0)  # a GIF or PNG whose colour 0 is transparent
    inputs, restored = round_trip(Image.open(buffer))
    np.testing.assert_array_equal(inputs["alpha_channels"][0], (indices == 1).astype(np.float32))
    expected_rgb = np.where(indices[..., None] == 1, opaque, clear).astype(np.uint8)
    np.testing.assert_array_equal(pixels(inputs), as_rgb(expected_rgb))
    assert restored.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(restored), np.dstack([expected_rgb, (indices == 1) * 255]))
    with_alpha = rgba_with_every_alpha().convert("PA")
    inputs, restored = round_trip(with_alpha)
    np.testing.assert_array_equal(inputs["alpha_channels"][0], np.asarray(with_alpha.getchannel("A")) / np.float32(255))
    assert restored.mode == "RGBA" and np.array_equal(np.asarray(restored), np.asarray(with_alpha.convert("RGBA")))


def test_outputs_survive_conversion_to_tensors():
    # BatchFeature.convert_to_tensors("pt") must leave the per-image modes and alpha channels alone.
    image = rgba_with_every_alpha()
    inputs = processor(images=image).convert_to_tensors("pt")
    assert inputs["original_modes"] == ["RGBA"] and isinstance(inputs["alpha_channels"][0], np.ndarray)
    assert np.array_equal(np.asarray(processor.postprocess(inputs["pixel_values"], inputs)[0]), np.asarray(image))


def test_lab_images_are_mapped_to_srgb_colours():
    # L* 50.2 (128 of 255) with a* = b* = 0 is the grey 0.468 in sRGB: ((66.2 / 116)^3)^(1 / 2.4) * 1.055 - 0.055.
    # a* = +72 is a magenta-red: (222, 34, 123) as LittleCMS maps D50 Lab to sRGB. Band "A" is a*, not alpha.
    lab = Image.new("LAB", (4, 2), (128, 128, 128))
    lab.paste((128, 200, 128), (2, 0, 4, 2))
    inputs, restored = round_trip(lab)
    expected = np.array([[119, 119, 119]] * 2 + [[222, 34, 123]] * 2)[None].repeat(2, axis=0) / 255
    np.testing.assert_allclose(pixels(inputs), expected, rtol=0, atol=2 / 255)
    assert inputs["alpha_channels"] == [None] and restored.mode == "RGB"

"""Image processor for MPRNet: any photo in, an RGB float batch for the model out, and back again.

PIL is the only imaging backend (no torchvision). The model pads internally, so the processor neither resizes nor pads
single images; a batch of differently sized images is padded to a common size and cropped back by `postprocess`.
"""

from collections.abc import Mapping
from functools import cache

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from .modeling_mprnet import mirror_pad

# Modes whose restored image is converted back to the input's mode; everything else comes back as RGB.
_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
_SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}


def _to_pil(image) -> Image.Image:
    """Converts a numpy array or torch tensor holding one image to PIL, keeping 16-bit and float data exact."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            tensor = tensor[0]
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3, 4):
            tensor = tensor.permute(1, 2, 0)
        image = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"Unsupported image type {type(image).__name__}: pass a PIL image, a numpy array or a torch tensor"
        )
    array = image
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = np.moveaxis(array, 0, -1)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"Cannot interpret an array of shape {array.shape} as an image: expected (H, W), (H, W, 3), (H, W, 4) "
            "or channels-first (3, H, W)"
        )
    if array.size == 0 or min(array.shape[:2]) == 0:
        raise ValueError(f"The image is empty (shape {array.shape}); it needs at least one pixel")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("The image contains NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Float images must hold values in [0, 1], got [{array.min():.3g}, {array.max():.3g}]; "
                "divide 8-bit data by 255 or pass it as uint8"
            )
        array = np.round(array * 65535).astype(np.uint16)
    if array.dtype == np.uint16:
        if array.ndim == 2:
            return Image.fromarray(array, mode="I;16")
        # PIL has no 16-bit RGB mode; keep the precision in a float image that `_to_float_rgb` understands.
        return _SixteenBitImage(array)
    if array.dtype != np.uint8:
        raise ValueError(f"Unsupported pixel type {array.dtype}: use uint8, uint16 or float in [0, 1]")
    return Image.fromarray(array)


class _SixteenBitImage:
    """A 16-bit colour image held as numpy, standing in for the PIL image that cannot hold it."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.mode = "RGBA;16" if array.shape[-1] == 4 else "RGB;16"
        self.size = (array.shape[1], array.shape[0])


@cache
def _lab_to_srgb():
    return ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")


def _split_alpha(image) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Returns RGB as float32 (H, W, 3) in [0, 1], the alpha channel as float32 (H, W) or None, and the input's mode."""
    mode = image.mode
    if isinstance(image, _SixteenBitImage):
        data = image.array.astype(np.float32) / 65535
        alpha = data[..., 3] if data.shape[-1] == 4 else None
        return data[..., :3], alpha, mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(image, dtype=np.float32)
        gray = np.clip(gray / 65535, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None, mode
    if mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        if not np.isfinite(gray).all():
            raise ValueError(
                "The image has NaN or infinite pixel values (a floating-point image with missing data?). "
                "Replace them with numbers, or export the image as 8- or 16-bit, and try again."
            )
        scale = 255.0 if gray.max(initial=0) > 1 else 1.0
        gray = np.clip(gray / scale, 0, 1)
        return np.repeat(gray[..., None], 3, axis=2), None, mode
    if mode == "LAB":
        # Pillow's plain convert() would copy the L, a, b bands into R, G, B; a colour transform maps them.
        image = ImageCms.applyTransform(image, _lab_to_srgb())
    if mode == "P":
        # Palette images may carry transparency in their palette.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in ("RGBa", "La"):
        # Premultiplied alpha: its band is named "a", and the colours are divided back out by converting.
        image = image.convert(mode.upper())
    alpha = None
    if image.mode in ("RGBA", "LA", "PA"):
        alpha = np.asarray(image.getchannel("A"), dtype=np.float32) / 255
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255
    return rgb, alpha, mode


class MPRNetImageProcessor(BaseImageProcessor):
    r"""
    Prepares images for [`MPRNetModel`] and turns its output back into images.

    Accepts PIL images (any mode: RGB, RGBA, L, LA, P, CMYK, 16-bit I;16, ...), numpy arrays (uint8, uint16, or float in
    [0, 1]; HxW, HxWx3, HxWx4 or 3xHxW) and torch tensors (CHW), alone or in a list. The EXIF orientation is applied, so
    rotated phone photos come out upright. Alpha is kept aside and re-attached by `postprocess`.

    Args:
        apply_exif_orientation (`bool`, *optional*, defaults to `True`):
            Rotate/flip PIL images as their EXIF orientation tag says before processing.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, apply_exif_orientation: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.apply_exif_orientation = apply_exif_orientation

    def preprocess(self, images, return_tensors: str | None = "pt", **kwargs) -> BatchFeature:
        """
        Returns a `BatchFeature` with:
            - `pixel_values`: float32 tensor (batch, 3, H, W) in [0, 1]; a batch of differing sizes is padded
              (reflect, bottom and right) to the largest;
            - `original_sizes`: int64 tensor (batch, 2) of (height, width) after EXIF orientation;
            - `original_modes`: the PIL mode of each input, so `postprocess` can return the same kind of image;
            - `alpha_channels`: per image, the alpha channel as a float32 (H, W) array, or None.
        """
        if return_tensors not in (None, "pt"):
            raise ValueError(
                f"MPRNetImageProcessor only returns PyTorch tensors (return_tensors='pt'), got {return_tensors!r}"
            )
        if isinstance(images, (torch.Tensor, np.ndarray)) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("No images given")

        rgbs, alphas, modes, sizes = [], [], [], []
        for image in images:
            image = _to_pil(image)
            if self.apply_exif_orientation and isinstance(image, Image.Image):
                image = ImageOps.exif_transpose(image)
            if image.size[0] < 1 or image.size[1] < 1:
                raise ValueError(f"The image is empty ({image.size[0]}x{image.size[1]} pixels)")
            rgb, alpha, mode = _split_alpha(image)
            rgbs.append(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))
            alphas.append(alpha)
            modes.append(mode)
            sizes.append(rgb.shape[:2])

        max_height = max(height for height, _ in sizes)
        max_width = max(width for _, width in sizes)
        batch = torch.stack([_pad_to(rgb, max_height, max_width) for rgb in rgbs])
        data = {
            "pixel_values": batch,
            "original_sizes": torch.tensor(sizes, dtype=torch.int64),
            "original_modes": modes,
            "alpha_channels": alphas,
        }
        return BatchFeature(data=data, skip_tensor_conversion=["original_modes", "alpha_channels"])

    def postprocess(self, reconstruction: torch.Tensor, original_sizes=None, output_type: str = "pil"):
        """
        Turns model output into images.

        Args:
            reconstruction (`torch.Tensor` of shape (batch, 3, H, W)):
                `MPRNetOutput.reconstruction` (or any stage output).
            original_sizes (tensor of shape (batch, 2), or the whole `BatchFeature` from `preprocess`):
                Crops each image back to its size. Pass the `BatchFeature` to also get each image back in its input's
                mode (grayscale stays grayscale, 16-bit stays 16-bit) with its alpha channel re-attached.
            output_type (`str`, *optional*, defaults to `"pil"`):
                `"pil"` for PIL images, `"np"` for float32 (H, W, 3) arrays in [0, 1], `"pt"` for (3, H, W) tensors.
        """
        if not isinstance(reconstruction, torch.Tensor) or reconstruction.ndim != 4 or reconstruction.shape[1] != 3:
            raise ValueError("reconstruction must be a tensor of shape (batch, 3, height, width)")
        modes = alphas = None
        if isinstance(original_sizes, Mapping):
            modes = original_sizes.get("original_modes")
            alphas = original_sizes.get("alpha_channels")
            original_sizes = original_sizes.get("original_sizes")
        batch = reconstruction.shape[0]
        if original_sizes is None:
            original_sizes = [reconstruction.shape[-2:]] * batch
        if len(original_sizes) != batch:
            raise ValueError(f"Got {len(original_sizes)} sizes for {batch} images")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")

        clamped = reconstruction.detach().float().clamp(0, 1).cpu()
        results = []
        for index in range(batch):
            height, width = (int(value) for value in original_sizes[index])
            image = clamped[index, :, :height, :width]
            if output_type == "pt":
                results.append(image)
                continue
            array = image.permute(1, 2, 0).numpy()
            if output_type == "np":
                results.append(array)
                continue
            mode = modes[index] if modes else "RGB"
            alpha = alphas[index] if alphas else None
            results.append(self.to_pil(array, mode, alpha))
        return results

    @staticmethod
    def to_pil(rgb: np.ndarray, mode: str = "RGB", alpha: np.ndarray | None = None) -> Image.Image:
        """Float (H, W, 3) in [0, 1] to a PIL image in (or close to) `mode`, with `alpha` re-attached if given."""
        if mode in _SIXTEEN_BIT_MODES:
            gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            return Image.fromarray(np.round(np.clip(gray, 0, 1) * 65535).astype(np.uint16), mode="I;16")
        # Round half to even, as skimage.img_as_ubyte does in the official scripts.
        image = Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB")
        if mode in _GRAYSCALE_MODES:
            image = image.convert("L")
        if alpha is not None:
            alpha_image = Image.fromarray(np.round(np.clip(alpha, 0, 1) * 255).astype(np.uint8), mode="L")
            image = image.convert("LA" if image.mode == "L" else "RGBA")
            image.putalpha(alpha_image)
        return image


def _pad_to(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return mirror_pad(image[None], height - image.shape[-2], width - image.shape[-1])[0]


__all__ = ["MPRNetImageProcessor"]

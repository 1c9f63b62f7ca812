"""Foreign validation sets: clean photos degraded by third-party libraries whose code never enters training.

Our own validation degrades photos with the same code that made the training data, so it cannot show whether a
model learned rain, blur and noise or only our generator of them. These sets can: albumentations, kornia and
imagecorruptions (ImageNet-C) each draw their degradations their own way. Their roles:

- foreign-dev (albumentations) may guide decisions, such as which checkpoint to bundle;
- foreign-test (kornia, imagecorruptions) guides nothing: it is only reported.

Parameters are drawn over each library's documented ranges (the transform's defaults, or the range its docs give),
with lengths in pixels scaled to the photo: the defaults are written for photos of a few hundred pixels
(`PHOTO_SCALE_REFERENCE`), and a 20-pixel motion blur on a 1024-pixel photo is a quarter of what it is on a
256-pixel one. Where a default range goes beyond what a restoration task covers it is narrowed, and the set's
description says how (e.g. albumentations' GaussNoise default of 20-44 % of the range).

Where a generator also changes the whole frame (albumentations' rain darkens the photo by 30 % and blurs it with
a 7x7 box), the set appears twice: as the library draws it, and with only what the task removes (`-streaks`: no
brightness change, no blur); the quality bars hold on the latter. The motion blurs of all three libraries also move
the photo: their kernels are one-sided or unevenly weighted, so the blurred photo's centre of light lies several
pixels from the clean photo's (imagecorruptions: about 11 px at its strongest, on any photo size). Which of the
positions along the motion path was "the" sharp photo cannot be told from the blurred one, and a restoration that
sharpens at the centre is scored against a photo several pixels away. Each motion-blur set therefore appears twice
too: as drawn, scored against the clean photo where it was, and `-centred`: the same blurred photo, scored against
the clean photo moved to the centre of the library's blur (`reference`).

Each degradation is seeded: `degrade(sample_index)` gives the same pixels every run. The libraries are optional
(the `eval` extra); `available(generator)` says whether one imports and, if not, why.
"""

import fnmatch
import functools
import importlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

ROLES = {"albumentations": "foreign-dev", "kornia": "foreign-test", "imagecorruptions": "foreign-test"}
GENERATORS = tuple(ROLES)
# The photo size the libraries' default pixel lengths are written for (their examples and tests use 100-256 px).
PHOTO_SCALE_REFERENCE = 256


@dataclass(frozen=True)
class ForeignDegradation:
    """One foreign set: `apply(clean_uint8, seed)` returns the degraded uint8 (H, W, 3) photo."""

    generator: str
    name: str
    task: str
    description: str
    apply: Callable[[np.ndarray, int], np.ndarray]
    # The library's draw also changes the whole frame (darkens or moves it): reported, not held to the bars.
    whole_frame: bool = False
    centred: bool = False  # scored against the clean photo moved to the centre of the blur (`reference`)

    @property
    def key(self) -> str:
        return f"{self.generator}/{self.name}"

    @property
    def role(self) -> str:
        return ROLES[self.generator]


@functools.cache
def available(generator: str) -> str | None:
    """None when `generator` imports, otherwise why not (the set is then skipped with that reason)."""
    if generator not in ROLES:
        raise ValueError(f"Unknown generator {generator!r}: expected one of {', '.join(GENERATORS)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module({"kornia": "kornia.augmentation"}.get(generator, generator))
    except Exception as error:  # noqa: BLE001 - any import failure (missing module, broken native library) skips it
        return f"{generator} does not import here ({type(error).__name__}: {error}); pip install -e '.[dev]'"
    return None


def photo_scale(image: np.ndarray) -> float:
    return max(image.shape[:2]) / PHOTO_SCALE_REFERENCE


def odd(value: float, minimum: int = 3) -> int:
    return max(minimum, 2 * int(round(value / 2)) + 1)


def motion_blur_pair(generator: str, name: str, description: str, apply) -> list[ForeignDegradation]:
    """A motion-blur set twice: as drawn (its blur moves the photo too) and centred (see the module docstring)."""
    return [
        ForeignDegradation(
            generator, name, "deblur", f"{description}; scored where the clean photo was", apply, whole_frame=True
        ),
        ForeignDegradation(
            generator,
            f"{name}-centred",
            "deblur",
            f"{description}; scored against the clean photo moved to the centre of the blur",
            apply,
            centred=True,
        ),
    ]


# ---------------------------------------------------------------------------------------------------- albumentations
def _albumentations(transforms: Callable[[np.ndarray], list]) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(image: np.ndarray, seed: int) -> np.ndarray:
        # The eval extra's libraries (albumentations, kornia, imagecorruptions) are imported where a set uses them:
        # the other sets, and the rest of the package, run without them.
        import albumentations

        pipeline = albumentations.Compose(transforms(image), seed=seed)
        return np.ascontiguousarray(pipeline(image=np.ascontiguousarray(image))["image"])

    return apply


def _albumentations_rain(rain_type: str, streaks_only: bool):
    def transforms(image):
        import albumentations

        # The defaults (drop length height / 8, 1-px drops of colour 200, slant -10..10) are already scaled to
        # the photo by the library; streaks only: no 7x7 box blur of the streaks, no 0.7 brightness.
        extra = {"blur_value": 1, "brightness_coefficient": 1.0} if streaks_only else {}
        return [albumentations.RandomRain(rain_type=rain_type, p=1.0, **extra)]

    return _albumentations(transforms)


def _albumentations_motion_blur(image):
    import albumentations

    scale = photo_scale(image)
    return [albumentations.MotionBlur(blur_limit=(odd(3 * scale), odd(7 * scale)), p=1.0)]


def _albumentations_defocus(image):
    import albumentations

    return [albumentations.Defocus(radius=(3, 10), alias_blur=(0.1, 0.5), p=1.0)]


def _albumentations_gauss_noise(image):
    import albumentations

    return [albumentations.GaussNoise(std_range=(0.04, 0.2), p=1.0)]


def _albumentations_iso_noise(image):
    import albumentations

    return [albumentations.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5), p=1.0)]


def _albumentations_noise_jpeg(image):
    import albumentations

    return [*_albumentations_gauss_noise(image), albumentations.ImageCompression(quality_range=(70, 95), p=1.0)]


def albumentations_sets() -> list[ForeignDegradation]:
    sets = []
    for rain_type, count in (
        ("drizzle", "height / 4"),
        ("default", "height / 3"),
        ("heavy", "height"),
        ("torrential", "2 x height"),
    ):
        sets.append(
            ForeignDegradation(
                "albumentations",
                f"rain-{rain_type}",
                "derain",
                f"RandomRain(rain_type={rain_type!r}): {count} 1-px streaks of length height / 8, added in grey 200, "
                "blurred 7x7, photo darkened to 0.7",
                _albumentations_rain(rain_type, streaks_only=False),
                whole_frame=True,
            )
        )
        sets.append(
            ForeignDegradation(
                "albumentations",
                f"rain-{rain_type}-streaks",
                "derain",
                f"RandomRain(rain_type={rain_type!r}, blur_value=1, brightness_coefficient=1): the streaks alone",
                _albumentations_rain(rain_type, streaks_only=True),
            )
        )
    sets += motion_blur_pair(
        "albumentations",
        "motion-blur",
        "MotionBlur(blur_limit=(3, 7) x photo size / 256): a straight motion path, random angle and direction, "
        "shifted off the centre",
        _albumentations(_albumentations_motion_blur),
    )
    sets += [
        ForeignDegradation(
            "albumentations",
            "defocus",
            "deblur",
            "Defocus(radius=(3, 10), alias_blur=(0.1, 0.5)): an out-of-focus disk",
            _albumentations(_albumentations_defocus),
        ),
        ForeignDegradation(
            "albumentations",
            "gauss-noise",
            "denoise",
            "GaussNoise(std_range=(0.04, 0.2)): sigma 10-51 per channel (the default 0.2-0.44 lies past sigma 50)",
            _albumentations(_albumentations_gauss_noise),
        ),
        ForeignDegradation(
            "albumentations",
            "iso-noise",
            "denoise",
            "ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5)): sensor noise in HLS",
            _albumentations(_albumentations_iso_noise),
        ),
        ForeignDegradation(
            "albumentations",
            "gauss-noise-jpeg",
            "denoise",
            "GaussNoise(std_range=(0.04, 0.2)), then ImageCompression(quality_range=(70, 95))",
            _albumentations(_albumentations_noise_jpeg),
        ),
    ]
    return sets


# ---------------------------------------------------------------------------------------------------- kornia
def _kornia(augmentations: Callable[[np.ndarray, np.random.Generator], list]) -> Callable:
    def apply(image: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        tensor = torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)[None]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for augmentation in augmentations(image, rng):
                tensor = augmentation(tensor)
        return np.round(tensor[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)

    return apply


def _kornia_rain(image, rng):
    from kornia.augmentation import RandomRain  # the eval extra, as albumentations above

    # The defaults (1000-2000 drops 5-20 px tall, -5..5 px across) are for photos of about 256 px.
    height, width = image.shape[:2]
    area = height * width / PHOTO_SCALE_REFERENCE**2
    scale = photo_scale(image)
    # Longer drops would cover more of the photo: the count grows with the area over the scale, so the covered
    # share stays the library's.
    drops = (int(1000 * area / scale), int(2000 * area / scale))
    tall = (max(1, int(5 * scale)), min(height - 1, int(20 * scale)))
    across = int(5 * scale)
    return [RandomRain(number_of_drops=drops, drop_height=tall, drop_width=(-across, across), p=1.0)]


def _kornia_motion_blur(image, rng):
    from kornia.augmentation import RandomMotionBlur

    # The docs' example kernel is 3-35 px wide for any photo; scaled: 3 to 35 x photo size / 512 (odd sizes).
    largest = odd(35 * max(image.shape[:2]) / 512)
    size = odd(rng.uniform(3, largest))
    return [
        RandomMotionBlur(kernel_size=size, angle=(-180.0, 180.0), direction=(-1.0, 1.0), border_type="reflect", p=1.0)
    ]


def _kornia_noise_sigma(rng) -> float:
    # RandomGaussianNoise takes one std; the default 1.0 buries the photo, so each photo draws sigma 10-50 (8-bit).
    return float(rng.uniform(10, 50) / 255)


def _kornia_gaussian_noise(image, rng):
    from kornia.augmentation import RandomGaussianNoise

    return [RandomGaussianNoise(std=_kornia_noise_sigma(rng), p=1.0)]


def _kornia_noise_jpeg(image, rng):
    from kornia.augmentation import RandomJPEG

    class Clamp:  # RandomJPEG expects [0, 1]; the noise leaves it
        def __call__(self, tensor):
            return tensor.clamp(0, 1)

    return [*_kornia_gaussian_noise(image, rng), Clamp(), RandomJPEG(jpeg_quality=(70.0, 95.0), p=1.0)]


def kornia_sets() -> list[ForeignDegradation]:
    return [
        ForeignDegradation(
            "kornia",
            "rain",
            "derain",
            "RandomRain: (1000-2000) x (area / 256^2) / (size / 256) drops, 5-20 px tall and -5..5 px across "
            "x size / 256, written opaque as 200/255",
            _kornia(_kornia_rain),
        ),
        *motion_blur_pair(
            "kornia",
            "motion-blur",
            "RandomMotionBlur: kernel 3 to 35 x size / 512 px, angle -180..180, direction -1..1 (weights ramped "
            "along the path), reflected borders",
            _kornia(_kornia_motion_blur),
        ),
        ForeignDegradation(
            "kornia",
            "gaussian-noise",
            "denoise",
            "RandomGaussianNoise: std drawn 10-50 (8-bit) per photo",
            _kornia(_kornia_gaussian_noise),
        ),
        ForeignDegradation(
            "kornia",
            "gaussian-noise-jpeg",
            "denoise",
            "RandomGaussianNoise (std 10-50), then RandomJPEG(jpeg_quality=(70, 95))",
            _kornia(_kornia_noise_jpeg),
        ),
    ]


# ---------------------------------------------------------------------------------------------------- imagecorruptions
def _corruption(name: str, severities: tuple[int, ...]) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(image: np.ndarray, seed: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from imagecorruptions import corrupt  # the eval extra, as albumentations above

        rng = np.random.default_rng(seed)
        severity = int(rng.choice(severities))
        # imagecorruptions draws from NumPy's global generator: seed it, and put its state back afterwards.
        state = np.random.get_state()
        try:
            np.random.seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                corrupted = corrupt(np.ascontiguousarray(image), corruption_name=name, severity=severity)
        finally:
            np.random.set_state(state)
        return np.ascontiguousarray(np.clip(corrupted, 0, 255).astype(np.uint8))[: image.shape[0], : image.shape[1]]

    return apply


def imagecorruptions_sets() -> list[ForeignDegradation]:
    # Noise severities 1-3 (sigma about 20-46 for gaussian_noise): 4 and 5 (66, 97) lie past sigma 50.
    return [
        ForeignDegradation(
            "imagecorruptions",
            "gaussian-noise",
            "denoise",
            "gaussian_noise, severity 1-3",
            _corruption("gaussian_noise", (1, 2, 3)),
        ),
        ForeignDegradation(
            "imagecorruptions",
            "shot-noise",
            "denoise",
            "shot_noise (Poisson), severity 1-3",
            _corruption("shot_noise", (1, 2, 3)),
        ),
        *motion_blur_pair(
            "imagecorruptions",
            "motion-blur",
            "motion_blur, severity 1-5: a one-sided path, weighted by a half Gaussian",
            _corruption("motion_blur", (1, 2, 3, 4, 5)),
        ),
        ForeignDegradation(
            "imagecorruptions",
            "defocus-blur",
            "deblur",
            "defocus_blur, severity 1-5",
            _corruption("defocus_blur", (1, 2, 3, 4, 5)),
        ),
    ]


# ---------------------------------------------------------------------------------------------------- registry
@functools.cache
def foreign_sets() -> dict[str, ForeignDegradation]:
    """Every foreign set by key ('generator/name'), foreign-dev first."""
    return {item.key: item for item in [*albumentations_sets(), *kornia_sets(), *imagecorruptions_sets()]}


def select(
    patterns: list[str] | None = None, task: str | None = None, role: str | None = None
) -> list[ForeignDegradation]:
    """The sets whose key matches any shell-style pattern (all when None), of `task` and `role` when given."""
    chosen = [
        item
        for key, item in foreign_sets().items()
        if (patterns is None or any(fnmatch.fnmatchcase(key, pattern) for pattern in patterns))
        and (task is None or item.task == task)
        and (role is None or item.role == role)
    ]
    if not chosen:
        raise ValueError(f"No foreign set matches {patterns}; the sets are: {', '.join(foreign_sets())}")
    return chosen


def get(key: str) -> ForeignDegradation:
    try:
        return foreign_sets()[key]
    except KeyError:
        raise ValueError(f"Unknown foreign set {key!r}; the sets are: {', '.join(foreign_sets())}") from None


def degrade(item: ForeignDegradation, clean: np.ndarray, seed: int) -> np.ndarray:
    """`clean` (uint8 (H, W, 3)) degraded by the foreign set `item` with `seed`; the library must be available."""
    reason = available(item.generator)
    if reason:
        raise ValueError(reason)
    if clean.dtype != np.uint8 or clean.ndim != 3 or clean.shape[2] != 3:
        raise ValueError(f"Foreign degradations take uint8 (H, W, 3) photos, got {clean.dtype} {clean.shape}")
    try:
        degraded = item.apply(clean, int(seed))
    # How the libraries refuse a photo: imagecorruptions raises AttributeError under 32 px, albumentations
    # ValueError, kornia (torch) RuntimeError. Other errors are bugs here and keep their traceback.
    except (AttributeError, ValueError, RuntimeError) as error:
        height, width = clean.shape[:2]
        raise ValueError(
            f"{item.generator} refused a {height}x{width} photo for {item.key} ({type(error).__name__}: {error}); "
            "give photos it accepts, or leave the set out"
        ) from error
    if degraded.shape != clean.shape or degraded.dtype != np.uint8:
        raise ValueError(f"{item.key} returned {degraded.dtype} {degraded.shape} for a {clean.shape} photo")
    return degraded


# The side of the white square whose blur locates a kernel's centre. The libraries return uint8, and imagecorruptions
# truncates: the faint tail of a small square's blur falls to 0 and pulls the measured centre back along the path
# (0.13 px with a 7 px square at its strongest blur). A square of 31 px carries 20 times that light.
CENTRE_PROBE_SIDE = 31


def blur_centre(item: ForeignDegradation, shape: tuple[int, ...], seed: int) -> tuple[float, float]:
    """(dy, dx): how far the set's blur with `seed` moves the light of a photo of `shape`, in pixels (down, right).

    The library draws its kernel from the seed and the photo size only, so blurring a black photo of the same size
    with a white square in the middle draws the same kernel; the centre of a blurred square is the square's centre
    moved by the kernel's centre."""
    height, width = shape[:2]
    top, left = max(0, (height - CENTRE_PROBE_SIDE) // 2), max(0, (width - CENTRE_PROBE_SIDE) // 2)
    probe = np.zeros((height, width, 3), dtype=np.uint8)
    probe[top : top + CENTRE_PROBE_SIDE, left : left + CENTRE_PROBE_SIDE] = 255
    blurred = degrade(item, probe, seed)
    edges = np.concatenate([blurred[0], blurred[-1], blurred[:, 0], blurred[:, -1]])
    if not blurred.any() or edges.any():
        raise ValueError(
            f"{item.key}: the centre of its blur on a {height}x{width} photo cannot be measured (the blurred square "
            "reaches the border); give larger photos"
        )
    dy, dx = np.subtract(ndimage.center_of_mass(blurred.sum(axis=-1)), ndimage.center_of_mass(probe.sum(axis=-1)))
    return float(dy), float(dx)


def reference(item: ForeignDegradation, clean: np.ndarray, seed: int) -> np.ndarray:
    """The photo the restoration of `degrade(item, clean, seed)` is scored against: `clean` itself, or for a centred
    set `clean` moved to the centre of the blur: each channel by a cubic spline, the border pixels repeated into the
    strip left behind. A shift by a fraction of a pixel smooths the moved photo a little: a bias against sharp
    restorations, not for them."""
    if not item.centred:
        return clean
    offset = blur_centre(item, clean.shape, seed)
    moved = np.stack(
        [
            ndimage.shift(channel, offset, order=3, mode="nearest")
            for channel in clean.astype(np.float64).transpose(2, 0, 1)
        ],
        axis=-1,
    )
    return np.round(np.clip(moved, 0, 255)).astype(np.uint8)


__all__ = [
    "ROLES",
    "GENERATORS",
    "ForeignDegradation",
    "available",
    "foreign_sets",
    "select",
    "get",
    "degrade",
    "blur_centre",
    "reference",
]

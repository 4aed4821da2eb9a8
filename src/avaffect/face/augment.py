"""Training-time augmentation of face crops for static fine-tuning (the SUN 2024 recipe): the paper's image
operations, each applied to each crop independently with one probability, drawn from a seeded generator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as F

OPERATIONS = ("padding", "grayscale", "brightness", "contrast", "saturation", "hue", "noise", "rotation", "crop",
              "posterize", "sharpness", "equalize", "flip")
"""Every operation, in the order they are applied."""
MAX_UINT8 = 255


@dataclass(frozen=True)
class CropAugmentation:
    probability: float  # of each operation, per crop
    operations: tuple[str, ...]
    padding_px: int  # the most padding added on each side before resizing back
    brightness: float  # factors drawn from [1 - x, 1 + x]
    contrast: float
    saturation: float
    hue: float  # hue shift drawn from [-x, x] (fraction of the colour circle, at most 0.5)
    noise_std: float  # Gaussian noise std as a fraction of the 0-255 range
    rotation_deg: float  # angle drawn from [-x, x]
    crop_fraction: float  # the smallest side kept by the random crop, as a fraction of the crop's side
    posterize_bits: int
    sharpness: float  # sharpness factor (1 leaves the crop as it is)

    @classmethod
    def from_config(cls, section: dict) -> CropAugmentation:
        """From config `static.augmentation`."""
        return cls(**(section | {"operations": tuple(section["operations"])}))

    def __post_init__(self):
        unknown = sorted(set(self.operations) - set(OPERATIONS))
        if unknown:
            raise ValueError(f"unknown crop augmentation(s) {unknown} (expected some of {list(OPERATIONS)})")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _factor(generator: torch.Generator, spread: float) -> float:
    return _uniform(generator, 1.0 - spread, 1.0 + spread)


def _padding(image: torch.Tensor, s: CropAugmentation, g: torch.Generator) -> torch.Tensor:
    pad = int(torch.randint(1, s.padding_px + 1, (), generator=g))
    return F.resize(F.pad(image, [pad]), list(image.shape[-2:]), antialias=True)


def _noise(image: torch.Tensor, s: CropAugmentation, g: torch.Generator) -> torch.Tensor:
    noise = torch.randn(image.shape, generator=g) * (s.noise_std * MAX_UINT8)
    return (image.float() + noise).round().clamp(0, MAX_UINT8).to(torch.uint8)


def _crop(image: torch.Tensor, s: CropAugmentation, g: torch.Generator) -> torch.Tensor:
    height, width = image.shape[-2:]
    fraction = _uniform(g, s.crop_fraction, 1.0)
    h, w = max(1, round(height * fraction)), max(1, round(width * fraction))
    top = int(torch.randint(0, height - h + 1, (), generator=g))
    left = int(torch.randint(0, width - w + 1, (), generator=g))
    return F.resized_crop(image, top, left, h, w, [height, width], antialias=True)


_APPLY: dict[str, Callable[[torch.Tensor, CropAugmentation, torch.Generator], torch.Tensor]] = {
    "padding": _padding,
    "grayscale": lambda image, s, g: F.rgb_to_grayscale(image, num_output_channels=3),
    "brightness": lambda image, s, g: F.adjust_brightness(image, _factor(g, s.brightness)),
    "contrast": lambda image, s, g: F.adjust_contrast(image, _factor(g, s.contrast)),
    "saturation": lambda image, s, g: F.adjust_saturation(image, _factor(g, s.saturation)),
    "hue": lambda image, s, g: F.adjust_hue(image, _uniform(g, -s.hue, s.hue)),
    "noise": _noise,
    "rotation": lambda image, s, g: F.rotate(image, _uniform(g, -s.rotation_deg, s.rotation_deg)),
    "crop": _crop,
    "posterize": lambda image, s, g: F.posterize(image, s.posterize_bits),
    "sharpness": lambda image, s, g: F.adjust_sharpness(image, s.sharpness),
    "equalize": lambda image, s, g: F.equalize(image),
    "flip": lambda image, s, g: F.horizontal_flip(image),
}


def augment_crops(images: torch.Tensor, settings: CropAugmentation, generator: torch.Generator) -> torch.Tensor:
    """A copy of a batch of uint8 crops (N, 3, H, W), same shape and dtype, each crop given each of
    `settings.operations` with `settings.probability`."""
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"crop augmentation expects uint8 crops (N, 3, H, W), got {images.dtype} "
                         f"{tuple(images.shape)}")
    out = []
    for image in images:
        for name in OPERATIONS:
            if name in settings.operations and float(torch.rand((), generator=generator)) < settings.probability:
                image = _APPLY[name](image, settings, generator)
        out.append(image)
    return torch.stack(out) if out else images.clone()

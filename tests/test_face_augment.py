from dataclasses import asdict, replace

import pytest
import torch
import yaml
from conftest import REPO

from avaffect.face.augment import OPERATIONS, CropAugmentation, augment_crops

SETTINGS = CropAugmentation(probability=0.05, operations=OPERATIONS, padding_px=8, brightness=0.3, contrast=0.3,
                            saturation=0.3, hue=0.1, noise_std=0.05, rotation_deg=15.0, crop_fraction=0.8,
                            posterize_bits=4, sharpness=2.0)


def crops(n: int = 3, size: int = 32) -> torch.Tensor:
    """Random colour crops with a bright block off centre, so that flips, crops and rotations show."""
    images = torch.randint(40, 160, (n, 3, size, size), generator=torch.Generator().manual_seed(1),
                           dtype=torch.uint8)
    images[:, :, 2:10, 2:14] = 250
    return images


def only(name: str) -> CropAugmentation:
    return replace(SETTINGS, probability=1.0, operations=(name,))


def test_probability_zero_is_the_identity():
    images = crops()
    out = augment_crops(images, replace(SETTINGS, probability=0.0), torch.Generator().manual_seed(0))
    assert torch.equal(out, images)


@pytest.mark.parametrize("name", OPERATIONS)
def test_each_operation_keeps_shape_and_dtype_and_changes_the_crop(name):
    images = crops()
    out = augment_crops(images, only(name), torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)


def test_operations_do_what_they_say():
    images = crops()
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(augment_crops(images, only("flip"), generator), images.flip(-1))
    gray = augment_crops(images, only("grayscale"), generator)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 1], gray[:, 2])
    equalized = augment_crops(images, only("equalize"), generator)
    assert (equalized.amax() - equalized.amin()) > (images[:, :, 12:, 12:].amax() - images[:, :, 12:, 12:].amin())
    assert equalized.float().std() > images.float().std()
    posterized = augment_crops(images, only("posterize"), generator)
    assert (posterized % 2 ** (8 - SETTINGS.posterize_bits) == 0).all()
    padded = augment_crops(images, only("padding"), generator)
    assert (padded[:, :, 0, :] < images[:, :, 0, :].amin()).all()  # a black border shrunk into the crop
    bright = augment_crops(images, replace(only("brightness"), brightness=0.0), generator)
    assert torch.equal(bright, images)  # a factor range of [1, 1] leaves the crop as it is


def test_same_seed_same_draws_and_fresh_draws_after():
    images = crops(8)
    settings = replace(SETTINGS, probability=0.5)
    first = augment_crops(images, settings, torch.Generator().manual_seed(3))
    assert torch.equal(first, augment_crops(images, settings, torch.Generator().manual_seed(3)))
    generator = torch.Generator().manual_seed(3)
    augment_crops(images, settings, generator)
    assert not torch.equal(first, augment_crops(images, settings, generator))


def test_unknown_operation_and_wrong_input_are_clear_errors():
    with pytest.raises(ValueError, match="unknown crop augmentation"):
        replace(SETTINGS, operations=("blur",))
    with pytest.raises(ValueError, match="uint8 crops"):
        augment_crops(crops().float(), SETTINGS, torch.Generator())


def test_from_config_reads_the_default_section():
    section = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["static"]["augmentation"]
    settings = CropAugmentation.from_config(section)
    assert settings.operations == OPERATIONS and settings.probability == 0.05
    assert asdict(settings) == section | {"operations": OPERATIONS}

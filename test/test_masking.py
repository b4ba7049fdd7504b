"""The webui's mask and resize-mode arithmetic, as pure functions: content, not only sizes."""

import numpy as np
import pytest
import torch
from PIL import Image

from modules import masking
from modules.resize_modes import resize_image


def two_tone(width=40, height=20):
    """Left half red, right half blue; top row white and bottom row black, to see which edge a fill stretches."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    image.paste((255, 255, 255), (0, 0, width, 1))
    image.paste((0, 0, 0), (0, height - 1, width, height))
    return image


def test_just_resize_stretches_the_whole_image():
    resized = np.array(resize_image(0, two_tone(), 20, 20))
    assert resized.shape == (20, 20, 3)
    assert tuple(resized[10, 2]) == (255, 0, 0) and tuple(resized[10, 17]) == (0, 0, 255)


def test_crop_and_resize_keeps_the_centre_and_crops_the_sides():
    """40x20 into 20x20: scaled to 40x20 (height fits), the middle 20 columns kept: red left of centre, blue right."""
    resized = np.array(resize_image(1, two_tone(), 20, 20))
    assert tuple(resized[10, 0]) == (255, 0, 0) and tuple(resized[10, 19]) == (0, 0, 255)
    assert tuple(resized[0, 5]) == (255, 255, 255)  # the white top row is still the top row


def test_resize_and_fill_stretches_the_edge_rows_over_the_empty_bands():
    """40x20 into 40x40: the image fits at 40x20 in the middle; the band above repeats its top (white) row, the band
    below its bottom (black) row."""
    resized = np.array(resize_image(2, two_tone(), 40, 40))
    assert tuple(resized[3, 5]) == (255, 255, 255) and tuple(resized[36, 30]) == (0, 0, 0)
    assert tuple(resized[20, 5]) == (255, 0, 0) and tuple(resized[20, 35]) == (0, 0, 255)


def test_binary_mask_uses_an_rgba_masks_transparency_and_rounds_at_128():
    rgba = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 129))
    rgba.putpixel((3, 0), (0, 0, 0, 128))
    assert np.array(masking.binary_mask(rgba)).ravel().tolist() == [0, 255, 255, 0]
    assert np.array(masking.binary_mask(rgba, round_mask=False)).ravel().tolist() == [0, 255, 129, 128]


def test_blur_uses_the_webuis_kernel_size_and_keeps_the_mask_symmetric():
    assert len(masking.gaussian_kernel(4)) == 2 * int(2.5 * 4 + 0.5) + 1 == 21
    mask = Image.new("L", (31, 9))
    mask.paste(255, (15, 0, 16, 9))
    blurred = np.array(masking.blur_mask(mask, 3, 0))
    row = blurred[4].astype(int)
    assert row[15] == row.max() and np.array_equal(row[:15], row[16:][::-1])  # spread evenly both ways
    assert (blurred == blurred[0]).all()  # blur_y 0: rows unchanged


def test_crop_region_is_the_padded_box_widened_to_the_output_aspect_inside_the_image():
    mask = Image.new("L", (64, 64))
    mask.paste(255, (20, 30, 30, 34))  # 10 x 4
    region = masking.crop_region(mask, padding=2)
    assert region == (18, 28, 32, 36)
    x1, y1, x2, y2 = masking.expand_crop_region(region, 32, 32, 64, 64)
    assert (x1, x2) == (18, 32) and y2 - y1 == x2 - x1 and y1 <= 28 and y2 >= 36  # square, like 32x32
    assert masking.crop_region(Image.new("L", (8, 8)), 4) is None


def test_fill_paints_the_masked_area_from_its_surroundings_and_keeps_the_rest():
    image = Image.new("RGB", (32, 32), (0, 0, 255))
    image.paste((255, 0, 0), (12, 12, 20, 20))
    mask = Image.new("L", (32, 32))
    mask.paste(255, (10, 10, 22, 22))
    filled = np.array(masking.fill(image, mask)).astype(int)
    assert np.abs(filled[16, 16] - [0, 0, 255]).max() <= 2  # the red square is gone: blue from around it
    assert (filled[:8] == [0, 0, 255]).all()


def test_overlay_restores_the_original_exactly_where_the_mask_is_black():
    original = two_tone(32, 32)
    overlay_mask = Image.new("L", (32, 32))
    overlay_mask.paste(255, (8, 8, 24, 24))
    overlay = masking.overlay_of(original, overlay_mask)
    generated = Image.new("RGB", (32, 32), (0, 255, 0))
    result = np.array(masking.apply_overlay(generated, overlay, None))
    outside = np.array(overlay_mask) == 0
    assert (result[outside] == np.array(original)[outside]).all()
    assert (result[~outside] == [0, 255, 0]).all()


def test_latent_masks_follow_the_mask_at_latent_size():
    mask = Image.new("L", (32, 32))
    mask.paste(255, (0, 0, 16, 32))
    keep, regenerate = masking.latent_masks(mask, (1, 4, 8, 8), True, "cpu", torch.float32)
    assert regenerate.shape == (1, 1, 8, 8)
    assert regenerate[0, 0, :, :3].eq(1).all() and regenerate[0, 0, :, 5:].eq(0).all()
    assert torch.equal(keep + regenerate, torch.ones_like(keep))


@pytest.mark.parametrize("fill, expected", [(masking.LATENT_NOTHING, 0.0), (masking.ORIGINAL, 1.0)])
def test_latent_fills_replace_only_the_masked_latents(fill, expected):
    latents = torch.ones(1, 4, 4, 4)
    regenerate = torch.zeros(1, 1, 4, 4)
    regenerate[..., :2] = 1
    filled = masking.fill_latents(latents, 1 - regenerate, regenerate, fill, [1])
    assert filled[..., :2].eq(expected).all() and filled[..., 2:].eq(1).all()
    noised = masking.fill_latents(latents, 1 - regenerate, regenerate, masking.LATENT_NOISE, [1])
    assert not noised[..., :2].eq(1).all() and noised[..., 2:].eq(1).all()

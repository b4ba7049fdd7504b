"""Inpainting with the webui's semantics: from a mask to what the engine needs, as small functions.

The steps, in the order the webui's img2img runs them: binarise the mask (`mask_round`), invert it ("Inpaint not
masked"), blur it (a Gaussian per axis, `mask_blur_x`/`mask_blur_y`), then either fit it to the output size with the
resize mode ("Whole picture") or crop the init images to the mask's padded bounding box, widened to the output's
aspect ratio ("Only masked", `inpaint_full_res`). The masked area of the image to encode is filled
(`inpainting_fill` 0 fill: blurred surroundings; 1 original; 2 latent noise; 3 latent nothing); during sampling the
latents outside the mask are kept to the init image's (`LatentBlend`); after decoding, the original is laid over
everything outside the (blurred) mask (`apply_overlay`).

One difference from the webui's samplers (k-diffusion, which blend their denoised prediction with the init latents):
diffusers' schedulers do not expose that prediction, so after each step the latents outside the mask are replaced by
the init latents noised to the next step's level, as diffusers' inpainting pipeline does for 4-channel UNets; the
last step blends with the init latents themselves, as the webui's `sample` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from modules import sd_samplers
from modules.resize_modes import resize_image

FILL, ORIGINAL, LATENT_NOISE, LATENT_NOTHING = 0, 1, 2, 3  # inpainting_fill (generation_fields.INPAINTING_FILLS)
BACKGROUND = (255, 255, 255)  # what transparent init pixels become (the webui's img2img_background_color)


def binary_mask(mask: Image.Image, round_mask: bool = True) -> Image.Image:
    """An L mask: the alpha channel of an RGBA mask that has transparency, else its grey levels; `round_mask` makes
    it black and white (above 128 is masked)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        mask = mask.split()[-1]
    mask = mask.convert("L")
    return mask.point(lambda level: 255 if level > 128 else 0) if round_mask else mask


def gaussian_kernel(sigma: float) -> np.ndarray:
    """The webui's kernel: size 2*int(2.5*sigma + 0.5) + 1, as OpenCV's getGaussianKernel makes it."""
    size = 2 * int(2.5 * sigma + 0.5) + 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def blur_axis(mask: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """Gaussian blur along one axis with mirrored borders (OpenCV's default, BORDER_REFLECT_101)."""
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) // 2
    padding = [(0, 0), (0, 0)]
    padding[axis] = (radius, radius)
    padded = np.pad(mask.astype(np.float64), padding, mode="reflect")
    length = mask.shape[axis]
    blurred = sum(weight * padded.take(range(i, i + length), axis=axis) for i, weight in enumerate(kernel))
    return np.clip(np.round(blurred), 0, 255).astype(np.uint8)


def blur_mask(mask: Image.Image, blur_x: int, blur_y: int) -> Image.Image:
    pixels = np.array(mask)
    if blur_x > 0:
        pixels = blur_axis(pixels, blur_x, axis=1)
    if blur_y > 0:
        pixels = blur_axis(pixels, blur_y, axis=0)
    return Image.fromarray(pixels)


def crop_region(mask: Image.Image, padding: int) -> tuple[int, int, int, int] | None:
    """The mask's bounding box grown by `padding` and kept inside the image; None for a mask that masks nothing."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def widen(low: int, high: int, wanted: float, limit: int) -> tuple[int, int]:
    """[low, high) grown evenly to about `wanted` pixels, shifted back inside [0, limit)."""
    grow = int(wanted - (high - low))
    low, high = low - grow // 2, high + grow - grow // 2
    if high >= limit:
        low, high = low - (high - limit), limit
    if low < 0:
        low, high = 0, high - low
    return low, min(high, limit)


def expand_crop_region(region, width: int, height: int, image_width: int, image_height: int):
    """The region widened (or heightened) to the output's aspect ratio, as far as the image allows."""
    x1, y1, x2, y2 = region
    output_ratio = width / height
    if (x2 - x1) / (y2 - y1) > output_ratio:
        y1, y2 = widen(y1, y2, (x2 - x1) / output_ratio, image_height)
    else:
        x1, x2 = widen(x1, x2, (y2 - y1) * output_ratio, image_width)
    return x1, y1, x2, y2


def fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """The masked area painted with ever less blurred copies of the unmasked surroundings ("fill")."""
    filled = Image.new("RGBA", image.size)
    surroundings = Image.new("RGBa", image.size)
    surroundings.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask.convert("L")))
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        blurred = surroundings.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            filled.alpha_composite(blurred)
    return filled.convert("RGB")


def flatten(image: Image.Image) -> Image.Image:
    """RGB, transparent pixels on the background colour."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, BACKGROUND)
        return Image.alpha_composite(background, image).convert("RGB")
    return image.convert("RGB")


@dataclass
class InpaintImages:
    """What the mask makes of a job's init images, once per job.

    images: what the VAE encodes, one per init image (output size). overlays: the original outside the mask, laid
    over the decoded images. latent_mask: decides which latents are regenerated (and where "fill" paints).
    image_mask: the mask at the output size (an inpainting UNet's conditioning). paste_to: (x, y, w, h) of the
    crop in the original image ("Only masked"), None for the whole picture.
    """

    images: list[Image.Image]
    overlays: list[Image.Image]
    latent_mask: Image.Image
    image_mask: Image.Image
    paste_to: tuple[int, int, int, int] | None


def prepare(
    init_images: list[Image.Image],
    mask: Image.Image,
    width: int,
    height: int,
    resize_mode: int,
    *,
    blur_x: int,
    blur_y: int,
    inpainting_fill: int,
    full_res: bool,
    padding: int,
    invert: bool,
    round_mask: bool,
    latent_mask: Image.Image | None = None,
) -> InpaintImages:
    """The webui's img2img preparation of init images under a mask."""
    mask = binary_mask(mask, round_mask)
    if invert:
        mask = ImageOps.invert(mask)
    mask = blur_mask(mask, blur_x, blur_y)
    region = None
    if full_res:
        first = init_images[0]
        if mask.size != first.size:  # the crop region is taken in the image's own pixels
            mask = mask.resize(first.size, Image.LANCZOS)
        region = crop_region(mask, padding)
    if region is not None:
        region = expand_crop_region(region, width, height, mask.width, mask.height)
        overlay_mask = mask
        image_mask = resize_image(2, mask.crop(region), width, height)
        x1, y1, x2, y2 = region
        paste_to = (x1, y1, x2 - x1, y2 - y1)
    else:  # whole picture (also "Only masked" with a mask that masks nothing)
        image_mask = resize_image(resize_mode, mask, width, height)
        doubled = np.clip(np.array(image_mask.convert("L"), dtype=np.float32) * 2, 0, 255)
        overlay_mask = Image.fromarray(doubled.astype(np.uint8))  # the webui keeps the original up to half strength
        paste_to = None
    latent_mask = latent_mask if latent_mask is not None else image_mask
    if latent_mask.size != image_mask.size:  # a latent_mask of another size than the job's (it crashed the fill)
        latent_mask = latent_mask.resize(image_mask.size, Image.LANCZOS)
    prepared, overlays = [], []
    for init_image in init_images:
        image = flatten(init_image)
        if region is None:
            image = resize_image(resize_mode, image, width, height)
        overlays.append(overlay_of(image, overlay_mask))
        if region is not None:
            image = resize_image(2, image.crop(region), width, height)
        if inpainting_fill != ORIGINAL:
            image = fill(image, latent_mask)
        prepared.append(image)
    return InpaintImages(prepared, overlays, latent_mask, image_mask, paste_to)


def overlay_of(image: Image.Image, overlay_mask: Image.Image) -> Image.Image:
    """The image where the mask is black, transparent where it is white (partly, where it is blurred)."""
    overlay = Image.new("RGBa", image.size)
    overlay.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
    return overlay.convert("RGBA")


def apply_overlay(image: Image.Image, overlay: Image.Image, paste_to) -> Image.Image:
    """The decoded image under the original's overlay; "Only masked" first puts it back into the full picture."""
    if paste_to is not None:
        x, y, w, h = paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(1, image, w, h), (x, y))
        image = canvas
    image = image.convert("RGBA")
    image.alpha_composite(overlay)
    return image.convert("RGB")


def latent_masks(latent_mask: Image.Image, shape, round_mask: bool, device, dtype):
    """(keep, regenerate): 1 where the init image's latents are kept, and its complement; (1, 1, h, w)."""
    height, width = shape[-2:]
    resized = latent_mask.convert("RGB").resize((width, height), Image.BICUBIC)
    regenerate = np.array(resized, dtype=np.float32)[..., 0] / 255
    if round_mask:
        regenerate = np.around(regenerate)
    regenerate = torch.from_numpy(regenerate)[None, None].to(device, dtype)
    return 1.0 - regenerate, regenerate


def fill_latents(init_latents, keep, regenerate, inpainting_fill: int, seeds: list[int]):
    """ "latent noise" puts each image's seed noise in the masked area, "latent nothing" zeros."""
    if inpainting_fill == LATENT_NOISE:
        from modules import rng

        noise = torch.stack([rng.randn(seed, tuple(init_latents.shape[1:])) for seed in seeds])
        return init_latents * keep + noise.to(init_latents) * regenerate
    if inpainting_fill == LATENT_NOTHING:
        return init_latents * keep
    return init_latents


@dataclass
class LatentBlend:
    """Keeps the latents outside the mask on the init image's path: after each step they are the init latents
    noised to the next step's level; after the last, the init latents themselves."""

    init_latents: torch.Tensor
    noise: torch.Tensor
    keep: torch.Tensor
    regenerate: torch.Tensor
    scheduler: object
    timesteps: torch.Tensor

    def __call__(self, latents: torch.Tensor, step: int) -> torch.Tensor:
        if step + 1 < len(self.timesteps):
            next_timestep = self.timesteps[step + 1 : step + 2].repeat(latents.shape[0])
            kept = sd_samplers.add_noise(self.scheduler, self.init_latents, self.noise, next_timestep)
        else:
            kept = self.init_latents
        return latents * self.regenerate + kept * self.keep


def inpainting_conditioning(
    encode: Callable[[torch.Tensor], torch.Tensor],
    pixels: torch.Tensor,
    image_mask: Image.Image | None,
    latent_size: tuple[int, int],
    weight: float,
    round_mask: bool,
) -> torch.Tensor:
    """A 9-channel UNet's extra input, as the webui makes it: the mask at latent size, then the latents of the image
    with the masked area greyed out (`weight` of the way: "Conditional mask weight"). `pixels` in -1..1."""
    if image_mask is None:
        mask = pixels.new_ones(1, 1, *pixels.shape[-2:])
    else:
        mask = torch.from_numpy(np.array(image_mask.convert("L"), dtype=np.float32) / 255)[None, None]
        mask = mask.to(pixels)
        if round_mask:
            mask = torch.round(mask)
    masked = torch.lerp(pixels, pixels * (1.0 - mask), weight)
    latents = encode(masked)
    mask = torch.nn.functional.interpolate(mask, size=latent_size).expand(latents.shape[0], -1, -1, -1)
    return torch.cat([mask, latents], dim=1)


def txt2img_conditioning(encode: Callable[[torch.Tensor], torch.Tensor], batch: int, height: int, width: int, like):
    """A 9-channel UNet's extra input without an image: a grey image's latents under a mask over everything."""
    latents = encode(like.new_zeros(batch, 3, height, width))
    return torch.nn.functional.pad(latents, (0, 0, 0, 0, 1, 0), value=1.0)

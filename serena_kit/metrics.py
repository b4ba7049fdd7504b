"""Metrics of generated images, for a sweep's analysis (`SweepResult.score`): each gives one number per image.

Built in, none of them downloading anything:
- "adherence": the default model's prompt-adherence scorer (modules.default_model.scoring) against each image's
  prompt: 1.0 when colour, background and shape all match, with "adherence_colour", "adherence_background" and
  "adherence_shape" as extra columns;
- "ssim", "psnr": structural similarity and peak signal-to-noise ratio (dB) against a reference image
  (scikit-image, the notebook extra);
- "brightness", "contrast", "saturation": simple image statistics;
- "clip": CLIP score (100 x the cosine of image and prompt embeddings, floored at 0, as torchmetrics defines it)
  with a local CLIP model folder (`transformers` CLIPModel + processor files), or a loaded (model, processor) pair.
Any function of a PIL image returning a number is a metric too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from modules.default_model import scoring
from serena_kit.extras import require


def brightness(image: Image.Image) -> float:
    """Mean luminance, 0..255."""
    return float(np.asarray(image.convert("L"), dtype=np.float64).mean())


def contrast(image: Image.Image) -> float:
    """Standard deviation of luminance, 0..~128."""
    return float(np.asarray(image.convert("L"), dtype=np.float64).std())


def saturation(image: Image.Image) -> float:
    """Mean HSV saturation, 0..255."""
    return float(np.asarray(image.convert("HSV"), dtype=np.float64)[..., 1].mean())


IMAGE_STATISTICS: dict[str, Callable[[Image.Image], float]] = {
    "brightness": brightness,
    "contrast": contrast,
    "saturation": saturation,
}
REFERENCE_METRICS = ("ssim", "psnr")
BUILT_IN = ("adherence", *REFERENCE_METRICS, *IMAGE_STATISTICS, "clip")


def metric_name(metric: str | Callable) -> str:
    return metric if isinstance(metric, str) else getattr(metric, "__name__", "metric")


def adherence(images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list[float]]:
    """The default model's scorer per image against its prompt: "adherence" (all three) and one column each."""
    scores = [scoring.prompt_adherence(image, prompt) for image, prompt in zip(images, prompts)]
    columns = {"adherence": [float(score["all"]) for score in scores]}
    for criterion in scoring.CRITERIA:
        columns[f"adherence_{criterion}"] = [float(score[criterion]) for score in scores]
    return columns


def _as_arrays(image: Image.Image, reference: Image.Image, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if image.size != reference.size:
        raise ValueError(f"reference: {metric} needs the reference's size, {reference.size}; an image is {image.size}")
    return np.asarray(image.convert("RGB")), np.asarray(reference.convert("RGB"))


def ssim(image: Image.Image, reference: Image.Image) -> float:
    """Structural similarity (1.0: identical), over RGB with a 7-pixel window (scikit-image's default)."""
    metrics = require("skimage.metrics", "SSIM (SweepResult.score('ssim'))")
    test, ref = _as_arrays(image, reference, "ssim")
    return float(metrics.structural_similarity(ref, test, channel_axis=-1, data_range=255))


def psnr(image: Image.Image, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB (inf: identical)."""
    metrics = require("skimage.metrics", "PSNR (SweepResult.score('psnr'))")
    test, ref = _as_arrays(image, reference, "psnr")
    with np.errstate(divide="ignore"):  # identical images: infinite dB, as it should be
        return float(metrics.peak_signal_noise_ratio(ref, test, data_range=255))


def load_clip(clip_model) -> tuple:
    """(model, processor) from a local folder, or as given when already a pair."""
    if isinstance(clip_model, (tuple, list)) and len(clip_model) == 2:
        return tuple(clip_model)
    if not isinstance(clip_model, (str, os.PathLike)):
        raise TypeError(f"clip_model: expected a local CLIP folder or a (model, processor) pair, got {clip_model!r}")
    if not os.path.isdir(clip_model):
        raise ValueError(f"clip_model: {os.fspath(clip_model)!r} is not a folder (CLIP scores need a local model)")
    import transformers

    model = transformers.CLIPModel.from_pretrained(clip_model, local_files_only=True).eval()
    processor = transformers.CLIPProcessor.from_pretrained(clip_model, local_files_only=True, use_fast=False)
    return model, processor


def clip_score(images: Sequence[Image.Image], prompts: Sequence[str], clip_model) -> list[float]:
    """100 x max(cosine(image embedding, prompt embedding), 0) per image."""
    import torch

    model, processor = load_clip(clip_model)
    inputs = processor(
        text=list(prompts),
        images=[image.convert("RGB") for image in images],
        return_tensors="pt",
        padding=True,
        truncation=True,
    )
    with torch.no_grad():
        outputs = model(**inputs)
    image_embeds = torch.nn.functional.normalize(outputs.image_embeds, dim=-1)
    text_embeds = torch.nn.functional.normalize(outputs.text_embeds, dim=-1)
    cosine = (image_embeds * text_embeds).sum(dim=-1)
    return [float(value) for value in (100 * cosine.clamp(min=0))]


def compute(
    metric: str | Callable,
    images: Sequence[Image.Image],
    prompts: Sequence[str],
    reference: Image.Image | None = None,
    clip_model=None,
) -> dict[str, list[float]]:
    """{column: one value per image} for `metric`: a built-in name or a function of the image."""
    if callable(metric):
        return {metric_name(metric): [float(metric(image)) for image in images]}
    if metric not in BUILT_IN:
        raise ValueError(f"metric: unknown metric {metric!r}; valid: {', '.join(BUILT_IN)}, or a function of the image")
    if metric in REFERENCE_METRICS and reference is None:
        raise ValueError(f"reference: {metric} compares against a reference; pass reference= a cell or an image")
    if metric == "clip" and clip_model is None:
        raise ValueError("clip_model: the CLIP score needs a local CLIP model folder (or a (model, processor) pair)")
    if metric == "adherence":
        return adherence(images, prompts)
    if metric == "ssim":
        return {"ssim": [ssim(image, reference) for image in images]}
    if metric == "psnr":
        return {"psnr": [psnr(image, reference) for image in images]}
    if metric == "clip":
        return {"clip": clip_score(images, prompts, clip_model)}
    return {metric: [IMAGE_STATISTICS[metric](image) for image in images]}

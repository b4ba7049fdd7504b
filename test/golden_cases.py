"""The golden images: fixed jobs whose PNG bytes are committed under test/golden/.

Regenerate them only when a change of pixels is intended (a new default model, a sampler fix):
    python test/golden_cases.py --write
and say why in the commit. They are made and compared with portable CPU kernels (modules.determinism), which the
import of `modules` sets before torch loads; SERENA_CPU_KERNELS is ignored here.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

GOLDEN_DIR = Path(__file__).parent / "golden"
PROMPT = "a yellow triangle on a purple background"


def init_image() -> Image.Image:
    """A drawn input for img2img: a green square on a red background."""
    image = Image.new("RGB", (32, 32), (220, 30, 30))
    ImageDraw.Draw(image).rectangle((8, 8, 23, 23), fill=(30, 200, 30))
    return image


def golden_jobs() -> dict:
    from modules.processing import StableDiffusionProcessingImg2Img, StableDiffusionProcessingTxt2Img

    common = dict(prompt=PROMPT, negative_prompt="", steps=12, do_not_save_samples=True, do_not_save_grid=True)
    return {
        "txt2img_euler_a": StableDiffusionProcessingTxt2Img(sampler_name="Euler a", seed=1, **common),
        "txt2img_dpmpp_2m_karras": StableDiffusionProcessingTxt2Img(
            sampler_name="DPM++ 2M", scheduler="Karras", seed=2, **common
        ),
        "txt2img_ddim": StableDiffusionProcessingTxt2Img(sampler_name="DDIM", seed=3, **common),
        "txt2img_variation_seed": StableDiffusionProcessingTxt2Img(
            sampler_name="Euler a", seed=5, subseed=6, subseed_strength=0.3, **common
        ),
        "img2img_euler": StableDiffusionProcessingImg2Img(
            init_images=[init_image()],
            denoising_strength=0.6,
            sampler_name="Euler",
            seed=4,
            **(common | {"prompt": "a green square on a red background"}),
        ),
    }


def generate(name: str) -> bytes:
    from modules.images import png_bytes
    from modules.processing import process_images

    image = process_images(golden_jobs()[name]).images[0]
    return png_bytes(image, image.info["parameters"])


if __name__ == "__main__" and "--write" in sys.argv:
    import os

    os.environ.pop("SERENA_CPU_KERNELS", None)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import modules  # noqa: F401  (portable kernels, before torch)

    # isort: split
    import torch

    torch.set_num_threads(1)
    GOLDEN_DIR.mkdir(exist_ok=True)
    for job_name in golden_jobs():
        (GOLDEN_DIR / f"{job_name}.png").write_bytes(generate(job_name))
        print("wrote", GOLDEN_DIR / f"{job_name}.png")

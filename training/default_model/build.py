"""Assemble and save the default model pipeline.

``python -m training.default_model.build --random`` writes an untrained pipeline with the final architecture to
``DEFAULT_MODEL_DIR`` (useful while developing the engine); ``train.py`` uses ``assemble_pipeline``/``save_pipeline``
to write the trained one.
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from modules.default_model import DEFAULT_MODEL_DIR
from training.default_model import architecture
from training.default_model.tokenizer import write_tokenizer
from training.default_model.vocabulary import WORDS

MAX_WEIGHTS_BYTES = 10 * 1024 * 1024


def build_tokenizer(words: tuple[str, ...] = WORDS) -> CLIPTokenizer:
    with tempfile.TemporaryDirectory() as directory:
        return write_tokenizer(directory, words)


def assemble_pipeline(
    vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer: CLIPTokenizer, unet: UNet2DConditionModel
) -> StableDiffusionPipeline:
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=architecture.build_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_random_pipeline() -> StableDiffusionPipeline:
    tokenizer = build_tokenizer()
    return assemble_pipeline(
        architecture.build_vae(), architecture.build_text_encoder(tokenizer), tokenizer, architecture.build_unet()
    )


def save_pipeline(
    pipeline: StableDiffusionPipeline,
    out_dir: str | Path = DEFAULT_MODEL_DIR,
    words: tuple[str, ...] = WORDS,
    max_weights_bytes: int = MAX_WEIGHTS_BYTES,
) -> Path:
    out_dir = Path(out_dir)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    # transformers 5 saves only tokenizer.json; SD-layout tools also expect vocab.json and merges.txt.
    saved_tokenizer = write_tokenizer(out_dir / "tokenizer", words)
    if saved_tokenizer.get_vocab() != pipeline.tokenizer.get_vocab():
        raise RuntimeError("pipeline tokenizer is not the model's own tokenizer")
    weights_bytes = sum(path.stat().st_size for path in out_dir.rglob("*.safetensors"))
    if weights_bytes > max_weights_bytes:
        raise RuntimeError(
            f"weights take {weights_bytes / 2**20:.1f} MiB, more than the {max_weights_bytes / 2**20:.0f} MiB budget"
        )
    return out_dir


def check_pipeline(model_dir: str | Path = DEFAULT_MODEL_DIR, steps: int = 20) -> float:
    """Load the saved pipeline offline and generate one image; returns the load time in seconds."""
    start = time.perf_counter()
    pipeline = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True)
    load_seconds = time.perf_counter() - start
    size = architecture.native_size(pipeline.unet, pipeline.vae)
    image = pipeline(
        "a red circle on a blue background",
        num_inference_steps=steps,
        height=size,
        width=size,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    if image.size != (size, size):
        raise RuntimeError(f"generated image has size {image.size}, expected {size}x{size}")
    return load_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--random", action="store_true", required=True, help="write seeded random weights")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="output folder")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    out_dir = save_pipeline(build_random_pipeline(), args.out)
    load_seconds = check_pipeline(out_dir)
    weights_bytes = sum(path.stat().st_size for path in out_dir.rglob("*.safetensors"))
    print(f"wrote {out_dir} ({weights_bytes / 2**20:.2f} MiB of weights, loads in {load_seconds:.2f} s)")


if __name__ == "__main__":
    main()

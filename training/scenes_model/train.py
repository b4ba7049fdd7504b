"""Train the scenes model: 64 px, one to four shapes with sizes and relations, GenEval-style captions.

    python -m training.scenes_model.train [--out DIR] [--threads 2] [--quick]

The default model's recipe (``training.default_model.train``) on scenes, with its three phases: the autoencoder
starts from the default model's (same palette and shapes, fully convolutional, so it reads 64 px images too) and is
fine-tuned on scenes; the UNet (16x16x4 latents) and the text encoder (its tokenizer knows the captions' words, plural
shapes and number words included) learn from scratch; then guidance calibration makes the webui's default CFG 7 act
as the trained model's CFG --teacher-cfg. The pre-calibration model is kept beside the output (``<out>-teacher``)
so calibration can be redone at another CFG without retraining.
"""

import time

import numpy as np
import torch
from diffusers import AutoencoderKL

from modules.default_model import DEFAULT_MODEL_DIR
from modules.scenes_model import SCENES_MODEL_DIR
from training.default_model import architecture as default_architecture
from training.default_model import train as recipe
from training.default_model.build import assemble_pipeline, build_tokenizer, save_pipeline
from training.default_model.vocabulary import WORDS as DEFAULT_WORDS
from training.scenes_model import dataset

# Every caption word is one token: the default model's words plus GenEval's template words.
WORDS = DEFAULT_WORDS + ("photo", "two", "three", "four", "to", "above", "below", "circles", "squares", "triangles")
MAX_WEIGHTS_BYTES = 15 * 1024 * 1024
UNET_CONFIG = default_architecture.UNET_CONFIG | dict(
    sample_size=dataset.IMAGE_SIZE // 4,
    # A wider bottom level for four objects' worth of layout.
    block_out_channels=(32, 64, 96),
    # Cross-attention on the 8x8 and 4x4 grids, as in the default model; none on the 16x16 one, where attention
    # took 43 % of a training step on CPU (self-attention over 256 tokens): 0.62 -> 0.38 s per step.
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)


def scene_batch(rng: np.random.Generator, count: int, device: torch.device) -> tuple[torch.Tensor, list[str]]:
    pixels, captions = dataset.batch(rng, count)
    return torch.from_numpy(pixels).to(device), captions


def build_unet(seed: int):
    from diffusers import UNet2DConditionModel

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    torch.random.set_rng_state(state)
    return unet


def main() -> None:
    parser = recipe.argument_parser(__doc__)
    parser.set_defaults(
        out=SCENES_MODEL_DIR,
        vae_steps=400,
        vae_batch_size=12,
        vae_lr=3e-4,
        unet_steps=9000,
        unet_lr=2e-3,
        batch_size=48,
        latent_pool_size=40000,
        calibration_steps=400,
        teacher_cfg=3.0,
    )
    args = recipe.parse_args(parser=parser)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()

    tokenizer = build_tokenizer(WORDS)
    vae = AutoencoderKL.from_pretrained(DEFAULT_MODEL_DIR / "vae", local_files_only=True).to(device)
    vae.register_to_config(sample_size=dataset.IMAGE_SIZE)
    unet = build_unet(args.seed + 1).to(device)
    text_encoder = default_architecture.build_text_encoder(tokenizer, args.seed + 2).to(device)
    print(f"unet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M parameters", flush=True)

    vae.requires_grad_(True)
    vae.register_to_config(scaling_factor=recipe.train_vae(vae, args, rng, device, scene_batch))
    pool = recipe.encode_latent_pool(vae, tokenizer, rng, args.latent_pool_size, device, scene_batch)
    recipe.train_denoiser(unet, text_encoder, tokenizer, pool, args, rng)
    teacher_dir = args.out.parent / f"{args.out.name}-teacher"
    save_pipeline(
        assemble_pipeline(vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu()), teacher_dir, WORDS, MAX_WEIGHTS_BYTES
    )
    print(f"wrote the uncalibrated model to {teacher_dir}", flush=True)
    unet.to(device)
    text_encoder.to(device)
    recipe.calibrate_guidance(unet, text_encoder, tokenizer, pool, args, rng)

    pipeline = assemble_pipeline(vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu())
    out_dir = save_pipeline(pipeline, args.out, WORDS, MAX_WEIGHTS_BYTES)
    print(f"wrote {out_dir}; total {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

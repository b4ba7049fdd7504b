"""Train the example ControlNet for the default model: a shape's silhouette says where the shape goes.

    python -m training.controlnet.train [--out DIR] [--threads 2] [--quick]

The control image is the shape's mask, white on black, at the place and size of the shape in the training image;
the caption still says the colours and the shape. diffusers' ``ControlNetModel.from_unet`` copies the default
model's encoder (so training starts from what the UNet already knows) with a conditioning embedding that downsamples
by 4, the default VAE's factor (SD's is 8). The UNet, text encoder and VAE stay frozen; only the ControlNet learns,
by the default model's own noise-prediction loss (min-SNR weighted, caption dropout 10 %, EMA). The weights are
written as float16 (as most shared ControlNets are) to stay under 2 MB; the engine loads them into float32.
The engine's evaluation is ``training.controlnet.evaluate``.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from PIL import Image
from transformers import CLIPTextModel

from modules.default_model import DEFAULT_MODEL_DIR, EXAMPLE_CONTROLNET_DIR
from modules.default_model.controls import silhouette
from training.default_model import architecture, dataset
from training.default_model import train as recipe
from training.default_model.build import build_tokenizer

MAX_WEIGHTS_BYTES = 2 * 2**20
# Three stages, two of them stride 2: 32 px control images become the UNet's 8 x 8 latent grid.
CONDITIONING_CHANNELS = (16, 32, 64)


def shape_mask(sample: dataset.Sample) -> Image.Image:
    """The sample's silhouette (the control image), drawn as users draw theirs (modules.default_model.controls)."""
    return silhouette(sample.shape, sample.left, sample.top, sample.size, dataset.IMAGE_SIZE)


@torch.no_grad()
def encode_pool(vae: AutoencoderKL, text_encoder: CLIPTextModel, tokenizer, rng, size: int, device):
    """Latent posteriors, caption states and control masks of ``size`` dataset images, made once up front."""
    means, stds, states, masks = [], [], [], []
    for first in range(0, size, 256):
        pixels, samples = dataset.batch(rng, min(256, size - first))
        posterior = vae.encode(torch.from_numpy(pixels).to(device)).latent_dist
        means.append(posterior.mean * vae.config.scaling_factor)
        stds.append(posterior.std * vae.config.scaling_factor)
        ids = recipe.tokenize(tokenizer, [sample.caption for sample in samples], device)
        states.append(text_encoder(ids).last_hidden_state)
        masks.append(torch.from_numpy(np.stack([np.asarray(shape_mask(sample))[..., 0] for sample in samples])))
    return torch.cat(means), torch.cat(stds), torch.cat(states), torch.cat(masks).to(device)


def train(args: argparse.Namespace) -> ControlNetModel:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()

    tokenizer = build_tokenizer()
    vae = AutoencoderKL.from_pretrained(DEFAULT_MODEL_DIR / "vae", local_files_only=True).to(device).eval()
    unet = UNet2DConditionModel.from_pretrained(DEFAULT_MODEL_DIR / "unet", local_files_only=True).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(DEFAULT_MODEL_DIR / "text_encoder", local_files_only=True)
    text_encoder = text_encoder.to(device).eval()
    for module in (vae, unet, text_encoder):
        module.requires_grad_(False)
    torch.manual_seed(args.seed + 1)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS).to(device)
    parameters = list(controlnet.parameters())
    print(f"controlnet {sum(p.numel() for p in parameters) / 1e6:.3f}M parameters", flush=True)

    means, stds, states, masks = encode_pool(vae, text_encoder, tokenizer, rng, args.pool_size, device)
    empty_state = text_encoder(recipe.tokenize(tokenizer, [""], device)).last_hidden_state[0]
    print(f"encoded {len(means)} images in {time.perf_counter() - start:.0f} s", flush=True)

    noise_scheduler = DDPMScheduler.from_config(architecture.SCHEDULER_CONFIG)
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(device)
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)
    ema = recipe.ExponentialMovingAverage(parameters, args.ema_decay)
    log = recipe.ProgressLog("controlnet", args.steps, args.log_every)
    controlnet.train()
    for step in range(1, args.steps + 1):
        index = torch.from_numpy(rng.integers(0, len(means), args.batch_size)).to(device)
        latents = means[index] + stds[index] * torch.randn_like(means[index])
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.batch_size,), device=device)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        dropped = torch.from_numpy(rng.random(args.batch_size) < args.caption_dropout).to(device)
        context = torch.where(dropped[:, None, None], empty_state, states[index])
        control = (masks[index].float() / 255.0)[:, None].expand(-1, 3, -1, -1)
        down, middle = controlnet(noisy, timesteps, context, controlnet_cond=control, return_dict=False)
        prediction = unet(
            noisy, timesteps, context, down_block_additional_residuals=down, mid_block_additional_residual=middle
        ).sample
        losses = F.mse_loss(prediction, noise, reduction="none").mean(dim=(1, 2, 3))
        loss = (losses * recipe.min_snr_weights(alphas_cumprod, timesteps, args.min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema.update()
        log.step(step, losses.mean().item(), lr=scheduler.get_last_lr()[0])
    ema.copy_to_parameters()
    print(
        f"[controlnet] done in {log.elapsed() / 60:.1f} min; total {(time.perf_counter() - start) / 60:.1f} min",
        flush=True,
    )
    return controlnet.cpu().eval()


def save(controlnet: ControlNetModel, out_dir: Path) -> None:
    controlnet.to(torch.float16).save_pretrained(out_dir, safe_serialization=True)
    weights_bytes = sum(path.stat().st_size for path in out_dir.rglob("*.safetensors"))
    if weights_bytes > MAX_WEIGHTS_BYTES:
        raise RuntimeError(f"weights take {weights_bytes / 2**20:.2f} MiB, more than {MAX_WEIGHTS_BYTES / 2**20:.0f}")
    print(f"wrote {out_dir} ({weights_bytes / 2**20:.2f} MiB of weights)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=EXAMPLE_CONTROLNET_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="short trial run: 60 steps, 1024 images")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=40000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.998)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--min-snr-gamma", type=float, default=5.0)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.pool_size, args.log_every, args.warmup_steps = 60, 1024, 20, 10
    save(train(args), args.out)


if __name__ == "__main__":
    main()

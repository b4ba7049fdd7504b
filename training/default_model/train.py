"""Train the default model from scratch on the procedural shapes dataset.

    python -m training.default_model.train [--out DIR] [--threads 2] [--quick]

Three phases, seeded and reproducible for a given thread count: the VAE alone (L1 + L2 reconstruction weighted up on
shape outlines, tiny KL); the UNet and text encoder together on frozen-VAE latents, with caption dropout so
classifier-free guidance works; then guidance calibration, which distils that model into one whose guided
prediction at the webui's default CFG 7 equals the first model's at the CFG where it works best (2.5).
The pipeline is written with EMA weights to DEFAULT_MODEL_DIR (or --out).
"""

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.optimization import get_cosine_schedule_with_warmup
from transformers import CLIPTextModel, CLIPTokenizer

from modules.default_model import DEFAULT_MODEL_DIR
from modules.processing import StableDiffusionProcessing
from training.default_model import architecture, dataset
from training.default_model.build import assemble_pipeline, build_tokenizer, save_pipeline


class ExponentialMovingAverage:
    def __init__(self, parameters: list[torch.nn.Parameter], decay: float):
        self.parameters = parameters
        self.shadow = [parameter.detach().clone() for parameter in parameters]
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        # Warm-up so the average is not dominated by the random initialisation in short runs.
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [parameter.detach() for parameter in self.parameters], 1 - decay)

    @torch.no_grad()
    def copy_to_parameters(self) -> None:
        for parameter, average in zip(self.parameters, self.shadow):
            parameter.copy_(average)


class ProgressLog:
    def __init__(self, phase: str, total_steps: int, every: int):
        self.phase, self.total_steps, self.every = phase, total_steps, every
        self.start = time.perf_counter()
        self.losses: list[float] = []

    def step(self, step: int, loss: float, **extra: float) -> None:
        self.losses.append(loss)
        if step % self.every and step != self.total_steps:
            return
        elapsed = time.perf_counter() - self.start
        remaining = elapsed / step * (self.total_steps - step)
        details = "".join(f" {name} {value:.3g}" for name, value in extra.items())
        print(
            f"[{self.phase}] step {step}/{self.total_steps} loss {np.mean(self.losses):.4f}{details}"
            f" | {elapsed / step:.3f} s/step, {elapsed / 60:.1f} min elapsed, ~{remaining / 60:.1f} min left",
            flush=True,
        )
        self.losses.clear()

    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def image_batch(rng: np.random.Generator, batch_size: int, device: torch.device) -> tuple[torch.Tensor, list[str]]:
    pixels, samples = dataset.batch(rng, batch_size)
    return torch.from_numpy(pixels).to(device), [sample.caption for sample in samples]


def edge_mask(pixels: torch.Tensor) -> torch.Tensor:
    """1 where the 3x3 neighbourhood is not flat: shape outlines, a small share of pixels that decide the shape."""
    local_range = F.max_pool2d(pixels, 3, 1, 1) + F.max_pool2d(-pixels, 3, 1, 1)
    return (local_range.amax(dim=1, keepdim=True) > 0.05).float()


# A training set: (rng, count, device) -> images in [-1, 1] as NCHW and their captions.
ImageBatches = Callable[[np.random.Generator, int, torch.device], tuple[torch.Tensor, list[str]]]


def train_vae(
    vae: AutoencoderKL,
    args: argparse.Namespace,
    rng: np.random.Generator,
    device: torch.device,
    image_batch: ImageBatches = image_batch,
) -> float:
    """Train the autoencoder; returns the latent scaling factor (1 / std of latents), as SD's 0.18215."""
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.vae_steps)
    log = ProgressLog("vae", args.vae_steps, args.log_every)
    vae.train()
    for step in range(1, args.vae_steps + 1):
        pixels, _ = image_batch(rng, args.vae_batch_size, device)
        posterior = vae.encode(pixels).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        error = (reconstruction - pixels).abs()
        weights = 1.0 + args.vae_edge_weight * edge_mask(pixels)
        reconstruction_loss = ((error + error.square()) * weights).mean()
        kl_loss = posterior.kl().mean() / pixels[0].numel()
        loss = reconstruction_loss + args.kl_weight * kl_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        log.step(step, reconstruction_loss.item(), kl=kl_loss.item())
    vae.eval()
    vae.requires_grad_(False)
    with torch.no_grad():
        pixels, _ = image_batch(rng, 512, device)
        latents = vae.encode(pixels).latent_dist.sample()
    scaling_factor = float(1.0 / latents.std())
    print(f"[vae] done in {log.elapsed() / 60:.1f} min, latent std {latents.std():.4f}", flush=True)
    return scaling_factor


def tokenize(tokenizer: CLIPTokenizer, captions: list[str], device: torch.device) -> torch.Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)


@dataclass
class LatentPool:
    """Scaled VAE posteriors of a fixed set of dataset images with their caption token ids."""

    mean: torch.Tensor
    std: torch.Tensor
    input_ids: torch.Tensor


@torch.no_grad()
def encode_latent_pool(
    vae: AutoencoderKL,
    tokenizer: CLIPTokenizer,
    rng: np.random.Generator,
    size: int,
    device: torch.device,
    image_batch: ImageBatches = image_batch,
) -> LatentPool:
    """Encoding once up front spares the denoiser's training loop a VAE encoder pass per step."""
    start = time.perf_counter()
    means, stds, captions = [], [], []
    for first in range(0, size, 256):
        pixels, batch_captions = image_batch(rng, min(256, size - first), device)
        posterior = vae.encode(pixels).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
        captions += batch_captions
    scale = vae.config.scaling_factor
    pool = LatentPool(torch.cat(means) * scale, torch.cat(stds) * scale, tokenize(tokenizer, captions, device))
    print(f"[unet] encoded {size} training images in {time.perf_counter() - start:.0f} s", flush=True)
    return pool


@dataclass
class NoisyBatch:
    noisy_latents: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor
    input_ids: torch.Tensor


def noisy_batch(
    pool: LatentPool, noise_scheduler: DDPMScheduler, batch_size: int, noise_offset: float, rng: np.random.Generator
) -> NoisyBatch:
    device = pool.mean.device
    index = torch.from_numpy(rng.integers(0, len(pool.mean), batch_size)).to(device)
    latents = pool.mean[index] + pool.std[index] * torch.randn_like(pool.mean[index])
    noise = torch.randn_like(latents)
    # Offset noise lets the model change the mean colour of an image, which plain noise barely reaches.
    noise += noise_offset * torch.randn(latents.shape[0], latents.shape[1], 1, 1, device=device)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=device)
    noisy_latents = noise_scheduler.add_noise(latents, noise, timesteps)
    return NoisyBatch(noisy_latents, noise, timesteps, pool.input_ids[index])


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR weighting: stops the nearly noise-free timesteps from dominating the gradient."""
    snr = alphas_cumprod[timesteps] / (1 - alphas_cumprod[timesteps])
    return torch.clamp(snr, max=gamma) / snr


def fit_denoiser(
    phase: str,
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    pool: LatentPool,
    args: argparse.Namespace,
    rng: np.random.Generator,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    per_sample_loss: Callable[[NoisyBatch], torch.Tensor],
) -> None:
    """The loop both denoiser phases share (AdamW, cosine schedule, min-SNR weights, EMA); each supplies its loss."""
    noise_scheduler = DDPMScheduler.from_config(architecture.SCHEDULER_CONFIG)
    alphas_cumprod = noise_scheduler.alphas_cumprod.to(pool.mean.device)
    parameters = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, steps)
    ema = ExponentialMovingAverage(parameters, args.ema_decay)
    log = ProgressLog(phase, steps, args.log_every)
    unet.train()
    text_encoder.train()
    for step in range(1, steps + 1):
        batch = noisy_batch(pool, noise_scheduler, batch_size, args.noise_offset, rng)
        losses = per_sample_loss(batch)
        loss = (losses * min_snr_weights(alphas_cumprod, batch.timesteps, args.min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema.update()
        log.step(step, losses.mean().item(), lr=scheduler.get_last_lr()[0])
    ema.copy_to_parameters()
    unet.eval()
    text_encoder.eval()
    print(f"[{phase}] done in {log.elapsed() / 60:.1f} min", flush=True)


def train_denoiser(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    pool: LatentPool,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> None:
    device = pool.mean.device
    empty_caption_ids = tokenize(tokenizer, [""], device)[0]

    def noise_prediction_loss(batch: NoisyBatch) -> torch.Tensor:
        # Empty captions teach the unconditional prediction that classifier-free guidance needs.
        dropped = torch.from_numpy(rng.random(args.batch_size) < args.caption_dropout).to(device)
        input_ids = torch.where(dropped[:, None], empty_caption_ids, batch.input_ids)
        encoder_hidden_states = text_encoder(input_ids).last_hidden_state
        prediction = unet(batch.noisy_latents, batch.timesteps, encoder_hidden_states).sample
        return F.mse_loss(prediction, batch.noise, reduction="none").mean(dim=(1, 2, 3))

    fit_denoiser(
        "unet",
        unet,
        text_encoder,
        pool,
        args,
        rng,
        steps=args.unet_steps,
        lr=args.unet_lr,
        batch_size=args.batch_size,
        per_sample_loss=noise_prediction_loss,
    )


def calibrate_guidance(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
    pool: LatentPool,
    args: argparse.Namespace,
    rng: np.random.Generator,
) -> None:
    """Distil the trained model (teacher) into one whose guidance at the webui's default CFG works best.

    Classifier-free guidance computes u + w (c - u). This teacher follows its captions best around CFG 2-3 and
    overshoots at the webui's default 7 (colours drift, backgrounds bleed). The student keeps the teacher's
    unconditional prediction u_T and learns a weaker caption direction, so that its guided prediction at CFG w
    (--calibrated-cfg, 7) equals the teacher's at CFG g (--teacher-cfg): u_S + w (c_S - u_S) = u_T + g (c_T - u_T).
    Then the default CFG lands where the teacher is best, and CFG 1 is visibly weaker, as with real checkpoints.
    """
    teacher_unet = copy.deepcopy(unet).requires_grad_(False)
    teacher_text_encoder = copy.deepcopy(text_encoder).requires_grad_(False)
    empty_caption_ids = tokenize(tokenizer, [""], pool.mean.device)[0].expand(args.calibration_batch_size, -1)

    def guided_prediction_loss(batch: NoisyBatch) -> torch.Tensor:
        input_ids = torch.cat([empty_caption_ids, batch.input_ids])
        noisy_latents = batch.noisy_latents.repeat(2, 1, 1, 1)
        timesteps = batch.timesteps.repeat(2)
        with torch.no_grad():
            teacher = teacher_unet(noisy_latents, timesteps, teacher_text_encoder(input_ids).last_hidden_state).sample
            teacher_unconditional, teacher_conditional = teacher.chunk(2)
            target = teacher_unconditional + args.teacher_cfg * (teacher_conditional - teacher_unconditional)
        unconditional, conditional = unet(
            noisy_latents, timesteps, text_encoder(input_ids).last_hidden_state
        ).sample.chunk(2)
        # The loss is on the guided prediction itself: an error in c_S - u_S is multiplied by w when sampling.
        guided = unconditional + args.calibrated_cfg * (conditional - unconditional)
        return (unconditional - teacher_unconditional).square().mean(dim=(1, 2, 3)) + (guided - target).square().mean(
            dim=(1, 2, 3)
        )

    fit_denoiser(
        "calibration",
        unet,
        text_encoder,
        pool,
        args,
        rng,
        steps=args.calibration_steps,
        lr=args.calibration_lr,
        batch_size=args.calibration_batch_size,
        per_sample_loss=guided_prediction_loss,
    )


QUICK_SETTINGS = {"vae_steps": 300, "unet_steps": 600, "calibration_steps": 200, "latent_pool_size": 5000}


def argument_parser(description: str = __doc__) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="output pipeline folder")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="torch device (the shipped model is trained on CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"short trial run: {QUICK_SETTINGS}")
    parser.add_argument("--vae-steps", type=int, default=2000)
    parser.add_argument("--vae-batch-size", type=int, default=32)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--kl-weight", type=float, default=1e-6)
    parser.add_argument("--vae-edge-weight", type=float, default=4.0, help="extra loss weight on shape outlines")
    parser.add_argument("--unet-steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--latent-pool-size", type=int, default=40000, help="distinct training images for the UNet")
    parser.add_argument("--unet-lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--noise-offset", type=float, default=0.1)
    parser.add_argument("--min-snr-gamma", type=float, default=5.0)
    parser.add_argument("--calibration-steps", type=int, default=1000)
    parser.add_argument("--calibration-batch-size", type=int, default=32, help="captions per step, each run twice")
    parser.add_argument("--calibration-lr", type=float, default=3e-4)
    parser.add_argument(
        "--calibrated-cfg",
        type=float,
        default=StableDiffusionProcessing.cfg_scale,
        help="CFG at which the final model reproduces the teacher at --teacher-cfg (default: the engine's default)",
    )
    parser.add_argument("--teacher-cfg", type=float, default=2.5, help="the CFG at which the teacher works best")
    parser.add_argument("--log-every", type=int, default=100)
    return parser


def parse_args(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    args = (parser or argument_parser()).parse_args(argv)
    if args.quick:
        for name, value in QUICK_SETTINGS.items():
            setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()

    tokenizer = build_tokenizer()
    vae = architecture.build_vae(args.seed).to(device)
    unet = architecture.build_unet(args.seed + 1).to(device)
    text_encoder = architecture.build_text_encoder(tokenizer, args.seed + 2).to(device)

    vae.register_to_config(scaling_factor=train_vae(vae, args, rng, device))
    pool = encode_latent_pool(vae, tokenizer, rng, args.latent_pool_size, device)
    train_denoiser(unet, text_encoder, tokenizer, pool, args, rng)
    calibrate_guidance(unet, text_encoder, tokenizer, pool, args, rng)

    pipeline = assemble_pipeline(vae.cpu(), text_encoder.cpu(), tokenizer, unet.cpu())
    out_dir = save_pipeline(pipeline, args.out)
    print(f"wrote {out_dir}; total {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

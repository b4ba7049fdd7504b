"""Train the example flow-matching transformer (SD 3 layout) on the default model's shapes.

    python -m training.flow_model.train [--out DIR] [--threads 2] [--quick]

An MMDiT (diffusers' ``SD3Transformer2DModel``, patch 1 over the 8x8x4 latents, RMS-normalised queries and keys as
in SD 3.5) and two small CLIP text encoders (the CLIP-L and CLIP-G slots; no T5) learn together from scratch by
rectified flow: x_t = (1 - t) x_0 + t noise, target noise - x_0, t drawn logit-normal as in SD 3. The autoencoder is
the default model's, frozen; its latents get a shift and a scale (SD 3's ``shift_factor``/``scaling_factor``)
measured on the training images. Captions are dropped 10 % of the time so classifier-free guidance works. The text
condition is the CLIP part alone (77 tokens, no zero T5 block), which is what Serena feeds a model without T5.
Ends with a check through diffusers' own pipeline; the engine's evaluation is ``training.flow_model.evaluate``.
"""

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from diffusers.optimization import get_cosine_schedule_with_warmup
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

from modules.default_model import DEFAULT_MODEL_DIR
from modules.flow_model import FLOW_MODEL_DIR
from training.default_model import architecture, dataset
from training.default_model import train as recipe
from training.default_model.build import MAX_WEIGHTS_BYTES, build_tokenizer
from training.default_model.tokenizer import write_tokenizer
from training.default_model.vocabulary import WORDS

TEXT_HIDDEN_SIZE = architecture.TEXT_HIDDEN_SIZE
TRANSFORMER_CONFIG = dict(
    sample_size=dataset.IMAGE_SIZE // 4,
    patch_size=1,
    in_channels=4,
    out_channels=4,
    num_layers=5,
    attention_head_dim=32,
    num_attention_heads=3,
    # The two CLIP encoders' penultimate states side by side (SD 3 pads them to T5's width; here they fill it).
    joint_attention_dim=2 * TEXT_HIDDEN_SIZE,
    caption_projection_dim=96,
    pooled_projection_dim=2 * TEXT_HIDDEN_SIZE,
    # Room for hires fix and larger sizes (up to 32 x 32 latent positions: 128 px).
    pos_embed_max_size=32,
    qk_norm="rms_norm",
)
# SD 3's schedule shift (3.0) is for 1024 px; these 8x8 latents keep the plain linear flow schedule.
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, shift=1.0)


def seeded(build, seed: int):
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    module = build()
    torch.random.set_rng_state(state)
    return module


def text_encoder_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """The default model's text encoder with one more layer: SD 3 reads the penultimate, so three leave two under it."""
    config = architecture.text_encoder_config(tokenizer)
    config.num_hidden_layers = 3
    return config


def encode_text(
    text_encoders: tuple[CLIPTextModelWithProjection, CLIPTextModelWithProjection], input_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SD 3's CLIP conditioning: penultimate hidden states side by side, projected pooled outputs side by side."""
    outputs = [encoder(input_ids, output_hidden_states=True) for encoder in text_encoders]
    context = torch.cat([output.hidden_states[-2] for output in outputs], dim=-1)
    pooled = torch.cat([output.text_embeds for output in outputs], dim=-1)
    return context, pooled


@torch.no_grad()
def encode_latents(
    vae: AutoencoderKL, tokenizer, rng, size: int, device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    means, stds, captions = [], [], []
    for first in range(0, size, 256):
        pixels, samples = dataset.batch(rng, min(256, size - first))
        posterior = vae.encode(torch.from_numpy(pixels).to(device)).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
        captions += [sample.caption for sample in samples]
    return torch.cat(means), torch.cat(stds), recipe.tokenize(tokenizer, captions, device)


def logit_normal_times(count: int, device) -> torch.Tensor:
    return torch.sigmoid(torch.randn(count, device=device))


def train(args: argparse.Namespace) -> StableDiffusion3Pipeline:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    start = time.perf_counter()

    tokenizer = build_tokenizer()
    vae = AutoencoderKL.from_pretrained(DEFAULT_MODEL_DIR / "vae", local_files_only=True).to(device)
    vae.requires_grad_(False).eval()
    transformer = seeded(lambda: SD3Transformer2DModel(**TRANSFORMER_CONFIG), args.seed + 1).to(device)
    text_encoders = tuple(
        seeded(lambda: CLIPTextModelWithProjection(text_encoder_config(tokenizer)), args.seed + 2 + index).to(device)
        for index in range(2)
    )
    print(f"transformer {sum(p.numel() for p in transformer.parameters()) / 1e6:.2f}M parameters", flush=True)

    means, stds, input_ids = encode_latents(vae, tokenizer, rng, args.latent_pool_size, device)
    shift_factor = float(means.mean())
    scaling_factor = float(1.0 / (means - shift_factor).std())
    vae.register_to_config(shift_factor=shift_factor, scaling_factor=scaling_factor)
    print(f"encoded {len(means)} images; latent shift {shift_factor:.4f}, scale {scaling_factor:.4f}", flush=True)
    empty_ids = recipe.tokenize(tokenizer, [""], device)[0]

    parameters = list(transformer.parameters()) + [p for encoder in text_encoders for p in encoder.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=1e-2)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.warmup_steps, args.steps)
    ema = recipe.ExponentialMovingAverage(parameters, args.ema_decay)
    log = recipe.ProgressLog("flow", args.steps, args.log_every)
    transformer.train()
    for encoder in text_encoders:
        encoder.train()
    for step in range(1, args.steps + 1):
        index = torch.from_numpy(rng.integers(0, len(means), args.batch_size)).to(device)
        clean = ((means[index] + stds[index] * torch.randn_like(means[index])) - shift_factor) * scaling_factor
        noise = torch.randn_like(clean)
        times = logit_normal_times(args.batch_size, device)
        noisy = (1 - times[:, None, None, None]) * clean + times[:, None, None, None] * noise
        dropped = torch.from_numpy(rng.random(args.batch_size) < args.caption_dropout).to(device)
        ids = torch.where(dropped[:, None], empty_ids, input_ids[index])
        context, pooled = encode_text(text_encoders, ids)
        prediction = transformer(
            noisy, encoder_hidden_states=context, pooled_projections=pooled, timestep=times * 1000
        ).sample
        loss = F.mse_loss(prediction, noise - clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        ema.update()
        log.step(step, loss.item(), lr=scheduler.get_last_lr()[0])
    ema.copy_to_parameters()
    print(
        f"[flow] done in {log.elapsed() / 60:.1f} min; total {(time.perf_counter() - start) / 60:.1f} min", flush=True
    )
    return StableDiffusion3Pipeline(
        transformer=transformer.cpu().eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG),
        vae=vae.cpu(),
        text_encoder=text_encoders[0].cpu().eval(),
        tokenizer=tokenizer,
        text_encoder_2=text_encoders[1].cpu().eval(),
        tokenizer_2=tokenizer,
        text_encoder_3=None,
        tokenizer_3=None,
    )


def save(pipeline: StableDiffusion3Pipeline, out_dir) -> None:
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    for folder in ("tokenizer", "tokenizer_2"):
        write_tokenizer(out_dir / folder, WORDS)
    weights_bytes = sum(path.stat().st_size for path in out_dir.rglob("*.safetensors"))
    if weights_bytes > MAX_WEIGHTS_BYTES:
        raise RuntimeError(f"weights take {weights_bytes / 2**20:.1f} MiB, more than {MAX_WEIGHTS_BYTES / 2**20:.0f}")
    print(f"wrote {out_dir} ({weights_bytes / 2**20:.2f} MiB of weights)", flush=True)


@torch.no_grad()
def diffusers_check(pipeline: StableDiffusion3Pipeline, guidance_scales=(3.0, 5.0, 7.0), steps: int = 20) -> None:
    """Adherence through diffusers' own pipeline, the CLIP-only condition passed as embeddings."""
    from modules.default_model.scoring import adherence, score_image
    from training.default_model.evaluate import evaluation_cases

    cases = evaluation_cases()
    tokenizer = pipeline.tokenizer
    encoders = (pipeline.text_encoder, pipeline.text_encoder_2)
    context, pooled = encode_text(encoders, recipe.tokenize(tokenizer, [case.prompt for case in cases], "cpu"))
    empty_context, empty_pooled = encode_text(encoders, recipe.tokenize(tokenizer, [""] * len(cases), "cpu"))
    for guidance_scale in guidance_scales:
        generators = [torch.Generator().manual_seed(case.seed) for case in cases]
        images = pipeline(
            prompt_embeds=context,
            pooled_prompt_embeds=pooled,
            negative_prompt_embeds=empty_context,
            negative_pooled_prompt_embeds=empty_pooled,
            guidance_scale=guidance_scale,
            num_inference_steps=steps,
            height=dataset.IMAGE_SIZE,
            width=dataset.IMAGE_SIZE,
            generator=generators,
        ).images
        totals = dict.fromkeys(("colour", "background", "shape"), 0)
        for case, image in zip(cases, images):
            for criterion, ok in adherence(score_image(image), case.shape, case.colour, case.background).items():
                totals[criterion] += ok
        shares = " ".join(f"{name} {count / len(cases):.1%}" for name, count in totals.items())
        print(f"[check] diffusers pipeline, CFG {guidance_scale:g}, {steps} steps, {len(cases)} images: {shares}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=lambda value: __import__("pathlib").Path(value), default=FLOW_MODEL_DIR)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="short trial run: 300 steps, 5000 images")
    parser.add_argument("--steps", type=int, default=4500)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--latent-pool-size", type=int, default=30000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--ema-decay", type=float, default=0.999)
    parser.add_argument("--caption-dropout", type=float, default=0.1)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    if args.quick:
        args.steps, args.latent_pool_size, args.log_every = 300, 5000, 50
    pipeline = train(args)
    save(pipeline, args.out)
    diffusers_check(pipeline)


if __name__ == "__main__":
    main()

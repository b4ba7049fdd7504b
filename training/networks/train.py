"""Train the default model's example networks: a LoRA that teaches it rings, an embedding for the word "violet".

    python -m training.networks.train lora [--steps 800] [--out FILE]
    python -m training.networks.train embedding [--steps 300] [--out FILE]

Both start from the committed default model, are seeded, and run in a few minutes on 2 CPU threads. The LoRA
(UNet attention, feed-forward and resnet convolutions; PEFT adapters added with diffusers' `add_adapter`) is
written in the kohya/webui key layout that `<lora:ring:1>` loads; the embedding as the webui's `.safetensors`
(`emb_params`, one vector; see EMBEDDING_VECTORS).

Both use the loss that calibrated the default model (``training.default_model.train.calibrate_guidance``): at the
engine's CFG 7 the guided prediction regresses to the one of a plain model at a lower "teacher" CFG (the base
model's 2.5 for the embedding, 4 for the LoRA, see DEFAULTS), so the networks work at the default CFG. The LoRA's
unconditional prediction keeps regressing to the noise; the embedding cannot change it (the empty caption does not
contain it).

Why "violet" and not a new colour such as pink: the default model's VAE decodes only its 8 palette colours (pink,
cyan, brown, grey all come back as a palette colour), so no text-side network can draw a new colour. "violet" is a
word the model does not know (it tokenizes through byte symbols and draws an arbitrary colour); the embedding
teaches it to mean the palette's purple.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from diffusers import DDPMScheduler, StableDiffusionPipeline
from diffusers.optimization import get_cosine_schedule_with_warmup
from diffusers.utils import convert_state_dict_to_kohya
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

from modules.default_model import DEFAULT_MODEL_DIR, EXAMPLE_EMBEDDINGS_DIR, EXAMPLE_LORA_DIR
from training.default_model import architecture, dataset
from training.default_model.train import ProgressLog, min_snr_weights, tokenize

LORA_NAME = "ring"
EMBEDDING_NAME = "violet"
EMBEDDING_COLOUR = "purple"  # the palette colour "violet" is taught to mean
# One vector: the default model reads its captions' words at fixed token positions, and every extra token moves
# "on a <colour> background" away from where it learned it (2 vectors: background right in 25 % of 24 prompts).
EMBEDDING_VECTORS = 1
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2"]
UNET_TARGETS += ["conv1", "conv2"]  # the resnets' convolutions: a new shape is spatial, not only attention
MAX_FILE_BYTES = 1 << 20


def load_base() -> StableDiffusionPipeline:
    pipeline = StableDiffusionPipeline.from_pretrained(
        DEFAULT_MODEL_DIR,
        local_files_only=True,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    for component in (pipeline.unet, pipeline.text_encoder, pipeline.vae):
        component.requires_grad_(False)
    return pipeline


@torch.no_grad()
def encode_samples(vae, samples: list[dataset.Sample]) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled VAE posterior means and stds of the rendered samples."""
    means, stds = [], []
    for first in range(0, len(samples), 256):
        chunk = samples[first : first + 256]
        pixels = np.stack([np.asarray(dataset.render(sample)) for sample in chunk]).astype(np.float32) / 127.5 - 1.0
        posterior = vae.encode(torch.from_numpy(pixels.transpose(0, 3, 1, 2))).latent_dist
        means.append(posterior.mean)
        stds.append(posterior.std)
    scale = vae.config.scaling_factor
    return torch.cat(means) * scale, torch.cat(stds) * scale


def ring_samples(rng: np.random.Generator, count: int, ring_share: float) -> list[dataset.Sample]:
    """Mostly rings; the old shapes stay in the mix so that the LoRA does not turn every shape into a ring."""
    return [
        dataset.random_sample(rng, shapes=dataset.NEW_SHAPES if rng.random() < ring_share else dataset.SHAPES)
        for _ in range(count)
    ]


def violet_samples(rng: np.random.Generator, count: int) -> list[dataset.Sample]:
    samples = []
    while len(samples) < count:
        sample = dataset.random_sample(rng)
        if sample.background != EMBEDDING_COLOUR:
            samples.append(dataset.Sample(**{**sample.__dict__, "colour": EMBEDDING_COLOUR}))
    return samples


def guided_loss(unet, text_encoder, input_ids, empty_ids, latents, noise, timesteps, args, train_unconditional):
    """Per-sample loss: the guided prediction at --calibrated-cfg matches a plain model's at --teacher-cfg."""
    with torch.set_grad_enabled(train_unconditional):
        unconditional = unet(latents, timesteps, text_encoder(empty_ids).last_hidden_state).sample
    conditional = unet(latents, timesteps, text_encoder(input_ids).last_hidden_state).sample
    anchor = unconditional.detach()
    target = anchor + args.teacher_cfg * (noise - anchor)
    guided = unconditional + args.calibrated_cfg * (conditional - unconditional)
    loss = (guided - target).square().mean(dim=(1, 2, 3))
    if train_unconditional:
        loss = loss + (unconditional - noise).square().mean(dim=(1, 2, 3))
    return loss


def fit(pipeline, parameters, samples, captions, args, rng, *, train_unconditional, after_backward=None) -> None:
    """The training loop both networks share: noisy latents of the samples, guided loss, AdamW with cosine decay."""
    unet, text_encoder, tokenizer = pipeline.unet, pipeline.text_encoder, pipeline.tokenizer
    means, stds = encode_samples(pipeline.vae, samples)
    input_ids = tokenize(tokenizer, captions, torch.device("cpu"))
    empty_ids = tokenize(tokenizer, [""], torch.device("cpu")).expand(args.batch_size, -1)
    noise_scheduler = DDPMScheduler.from_config(architecture.SCHEDULER_CONFIG)
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
    scheduler = get_cosine_schedule_with_warmup(optimizer, args.steps // 10, args.steps)
    log = ProgressLog(args.network, args.steps, args.log_every)
    for step in range(1, args.steps + 1):
        index = torch.from_numpy(rng.integers(0, len(means), args.batch_size))
        latents = means[index] + stds[index] * torch.randn_like(means[index])
        noise = torch.randn_like(latents) + args.noise_offset * torch.randn(args.batch_size, latents.shape[1], 1, 1)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (args.batch_size,))
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        losses = guided_loss(
            unet, text_encoder, input_ids[index], empty_ids, noisy, noise, timesteps, args, train_unconditional
        )
        loss = (losses * min_snr_weights(noise_scheduler.alphas_cumprod, timesteps, args.min_snr_gamma)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        scheduler.step()
        log.step(step, losses.mean().item(), lr=scheduler.get_last_lr()[0])
    print(f"[{args.network}] done in {log.elapsed() / 60:.1f} min", flush=True)


def train_lora(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    pipeline = load_base()
    unet = pipeline.unet
    # UNet only: transformers 5.24's PEFT integration (text-encoder adapters) asks for peft >= 0.22, not released.
    config = LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=UNET_TARGETS)
    unet.add_adapter(config)
    parameters = [p for p in unet.parameters() if p.requires_grad]
    samples = ring_samples(rng, args.pool_size, args.ring_share)
    unet.train()
    captions = [s.caption for s in samples]
    fit(pipeline, parameters, samples, captions, args, rng, train_unconditional=args.train_unconditional)
    layers = {f"unet.{key}": value for key, value in get_peft_model_state_dict(unet).items()}
    return {key: value.detach().contiguous() for key, value in convert_state_dict_to_kohya(layers).items()}


def train_embedding(args: argparse.Namespace, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    pipeline = load_base()
    tokenizer, text_encoder = pipeline.tokenizer, pipeline.text_encoder
    tokens = [EMBEDDING_NAME] + [f"{EMBEDDING_NAME}_{i}" for i in range(1, args.vectors)]
    tokenizer.add_tokens(tokens)
    token_ids = tokenizer.convert_tokens_to_ids(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer))
    table = text_encoder.get_input_embeddings().weight
    colour_ids = [tokenizer(word, add_special_tokens=False).input_ids[0] for word in dataset.PALETTE]
    with torch.no_grad():  # start from "some colour": the mean of the colour words, nudged apart per vector
        start = table[colour_ids].mean(dim=0)
        for token_id in token_ids:
            table[token_id] = start + 0.01 * torch.randn_like(start)
    table.requires_grad_(True)
    others = torch.ones(len(table), 1, dtype=torch.bool)
    others[token_ids] = False

    def train_new_rows_only() -> None:
        table.grad.masked_fill_(others, 0.0)  # Adam without weight decay then leaves the other rows untouched

    samples = violet_samples(rng, args.pool_size)
    captions = [s.caption.replace(EMBEDDING_COLOUR, " ".join(tokens)) for s in samples]
    fit(pipeline, [table], samples, captions, args, rng, train_unconditional=False, after_backward=train_new_rows_only)
    return {"emb_params": table[token_ids].detach().clone().contiguous()}


DEFAULTS = {
    # The LoRA's teacher CFG is 4, not the base model's 2.5: "ring" (three byte tokens) moves the colour words away
    # from the positions the model learned them at, and a plain model's prediction at 2.5 follows them too weakly
    # (800 steps: 88 % red, 75 % blue background of 24 seeds at 2.5; 96 % / 96 % at 4).
    "lora": {"steps": 800, "lr": 2e-3, "teacher_cfg": 4.0, "out": EXAMPLE_LORA_DIR / f"{LORA_NAME}.safetensors"},
    "embedding": {
        "steps": 300,
        "lr": 5e-3,
        "teacher_cfg": 2.5,
        "out": EXAMPLE_EMBEDDINGS_DIR / f"{EMBEDDING_NAME}.safetensors",
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("network", choices=tuple(DEFAULTS))
    parser.add_argument("--out", type=Path, help="output file (default: the committed example)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=4000, help="distinct training images")
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank")
    parser.add_argument("--vectors", type=int, default=EMBEDDING_VECTORS, help="embedding vectors")
    parser.add_argument("--ring-share", type=float, default=0.75, help="share of rings among the LoRA's images")
    parser.add_argument(
        "--frozen-unconditional",
        dest="train_unconditional",
        action="store_false",
        help="do not fit the unconditional prediction (faster, but it then drifts with the LoRA unchecked)",
    )
    parser.add_argument("--noise-offset", type=float, default=0.1)
    parser.add_argument("--min-snr-gamma", type=float, default=5.0)
    parser.add_argument("--calibrated-cfg", type=float, default=7.0)
    parser.add_argument("--teacher-cfg", type=float, help="the plain model's CFG the guided prediction matches")
    parser.add_argument("--log-every", type=int, default=50)
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.network].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    tensors = (train_lora if args.network == "lora" else train_embedding)(args, rng)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    safetensors.torch.save_file(
        tensors,
        partial,
        metadata={"format": "pt", "ss_network_module": "networks.lora"} if args.network == "lora" else None,
    )
    if partial.stat().st_size > MAX_FILE_BYTES:
        partial.unlink()
        raise RuntimeError(f"{args.network} file would exceed {MAX_FILE_BYTES} bytes")
    partial.replace(args.out)
    size = args.out.stat().st_size
    print(f"wrote {args.out} ({size / 1024:.0f} KiB) in {(time.perf_counter() - start) / 60:.1f} min", flush=True)


if __name__ == "__main__":
    main()

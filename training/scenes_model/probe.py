"""Try recipe variants of the scenes model side by side on a GPU and score each on the benchmark's prompts.

    python -m training.scenes_model.probe VARIANT --out DIR [--device cuda]

How the shipped recipe was chosen (the first CPU run of the plain recipe fell short, and one CPU run costs an hour):
each variant is ``train.py`` with some arguments or the text encoder's depth changed, trained on the GPU, then
scored with the scene scorer on every suite prompt (one seed): the calibrated model at CFG 7 and its uncalibrated
teacher at the teacher CFG. Diffusers' own pipeline generates here (a probe, not a face of Serena); the shipped
model's figures come from ``serena_kit.bench`` on CPU. Writes DIR/VARIANT.json.

Run one variant per call: five at once on one H100 (2026-12-05) time-shared it at 0.079 s per step each, and the
device budget stopped them before any was scored (what their logs showed: docs/serena.md, issue 30).
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from modules.scenes_model import SUITE_FILE
from modules.scenes_model.scoring import score_prompt
from training.default_model import architecture
from training.scenes_model import train

# name -> (train.py arguments, text encoder layers)
VARIANTS = {
    "base": ([], 2),
    "steps8k": (["--unet-steps", "8000"], 2),
    "steps16k": (["--unet-steps", "16000"], 2),
    "text4": ([], 4),
    "batch24-steps8k": (["--batch-size", "24", "--unet-steps", "8000"], 2),
    "lr2e-3": (["--unet-lr", "2e-3"], 2),
    # seconds on a CPU: checks this script, not a recipe
    "smoke": (["--vae-steps", "2", "--unet-steps", "2", "--calibration-steps", "2", "--latent-pool-size", "64"], 2),
}


def deeper_text_encoder(layers: int):
    build = architecture.build_text_encoder

    def build_with_layers(tokenizer, seed):
        config = architecture.text_encoder_config(tokenizer)
        config.num_hidden_layers = layers
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        from transformers import CLIPTextModel

        model = CLIPTextModel(config)
        torch.random.set_rng_state(state)
        return model

    return build if layers == 2 else build_with_layers


@torch.no_grad()
def score_model(
    model_dir: Path, cfg: float, device: str, limit: int | None = None, batch_size: int = 128
) -> dict[str, float]:
    from diffusers import EulerAncestralDiscreteScheduler, StableDiffusionPipeline

    pipeline = StableDiffusionPipeline.from_pretrained(model_dir, local_files_only=True).to(device)
    pipeline.scheduler = EulerAncestralDiscreteScheduler.from_config(pipeline.scheduler.config)
    pipeline.set_progress_bar_config(disable=True)
    prompts = [entry["prompt"] for entry in json.loads(SUITE_FILE.read_text())["prompts"]][:limit]
    correct: dict[str, list[bool]] = defaultdict(list)
    for first in range(0, len(prompts), batch_size):
        chunk = prompts[first : first + batch_size]
        generator = torch.Generator(device).manual_seed(first)
        images = pipeline(
            chunk, height=64, width=64, num_inference_steps=20, guidance_scale=cfg, generator=generator
        ).images
        for prompt, image in zip(chunk, images):
            verdict = score_prompt(image, prompt)
            correct[verdict["category"]].append(bool(verdict["correct"]))
    shares = {category: sum(values) / len(values) for category, values in correct.items()}
    shares["overall"] = sum(shares.values()) / len(shares)
    return {name: round(value, 3) for name, value in shares.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--prompts", type=int, help="score only the suite's first N prompts")
    args = parser.parse_args()
    train_arguments, text_layers = VARIANTS[args.variant]
    model_dir = args.out / args.variant / "weights"
    train.default_architecture.build_text_encoder = deeper_text_encoder(text_layers)
    sys.argv = ["train", "--device", args.device, "--out", str(model_dir), "--log-every", "1000", *train_arguments]
    start = time.perf_counter()
    train.main()
    minutes = (time.perf_counter() - start) / 60
    result = {
        "variant": args.variant,
        "train_arguments": train_arguments,
        "text_layers": text_layers,
        "train_minutes": round(minutes, 2),
        "calibrated_cfg7": score_model(model_dir, 7.0, args.device, args.prompts),
        "teacher_cfg3": score_model(model_dir.parent / "weights-teacher", 3.0, args.device, args.prompts),
    }
    print(json.dumps(result), flush=True)
    (args.out / f"{args.variant}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

"""Single-file SD 3 / 3.5 and FLUX.1 checkpoints in the original layouts, and their separate text encoders and VAEs.

What people share: Stability AI's files (`model.diffusion_model.joint_blocks.*`, the VAE under `first_stage_model.`,
the all-in-one ones with `text_encoders.clip_l|clip_g|t5xxl.transformer.*`), Black Forest Labs' transformer-only
files (`double_blocks.*` without a prefix) with `ae.safetensors` (the VAE in the LDM layout), all-in-one FLUX files
as ComfyUI and Forge save them (`model.diffusion_model.`, `vae.`, `text_encoders.`), and text encoders as separate
files in Hugging Face's layout (`clip_l.safetensors`, `clip_g.safetensors`, `t5xxl_fp16.safetensors`). Forge loads
the separate files as "additional modules" (`forge_additional_modules`); so does Serena (`additional_modules`).

Each component's architecture is the config whose weights' shapes the file's tensors fill exactly: the checkpoint's
sidecar folder `<stem>.config/` (a diffusers folder's configs and tokenizers) first, then the shipped configs of the
family (`modules/model_configs`). Keys: SD 3's transformer through diffusers' converter; FLUX's through the table
below, because diffusers' FLUX converter assumes FLUX.1's width (3072) and cannot read another. The CLIP tokenizers
are the shipped ones; T5's tokenizer (a SentencePiece model no package here carries) comes from the sidecar or
`<text encoder folder>/t5_tokenizer`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

MODEL_CONFIGS = Path(__file__).resolve().parent / "model_configs"
TRANSFORMER_PREFIX = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
TEXT_ENCODERS_PREFIX = "text_encoders."
SHIPPED = {"sd3": ("sd35_medium", "sd35_large", "sd3_medium"), "flux": ("flux1_dev", "flux1_schnell")}
T5_TOKENIZER_FOLDER = "t5_tokenizer"


@dataclass(frozen=True)
class TextEncoderSlot:
    component: str  # the pipeline's component ("text_encoder_2")
    tokenizer: str  # its tokenizer's component
    name: str  # the all-in-one files' name ("clip_g")
    label: str  # how messages name it


SLOTS = {
    "sd3": (
        TextEncoderSlot("text_encoder", "tokenizer", "clip_l", "CLIP-L"),
        TextEncoderSlot("text_encoder_2", "tokenizer_2", "clip_g", "CLIP-G"),
        TextEncoderSlot("text_encoder_3", "tokenizer_3", "t5xxl", "T5"),
    ),
    "flux": (
        TextEncoderSlot("text_encoder", "tokenizer", "clip_l", "CLIP-L"),
        TextEncoderSlot("text_encoder_2", "tokenizer_2", "t5xxl", "T5"),
    ),
}
OPTIONAL = {"text_encoder_3"}  # SD 3 runs without T5, as Stability AI allows


def text_encoder_dir() -> Path:
    return Path(os.environ.get("SERENA_TEXT_ENCODER_DIR", "models/text_encoder"))


# --------------------------------------------------------------------------------------------------------------------
# Key layouts. A rule: the original layout's module, the diffusers modules it holds (several: fused along the first
# dimension, in this order), and whether its two halves are (shift, scale) where diffusers has (scale, shift).


@dataclass(frozen=True)
class Rule:
    original: str
    diffusers: tuple[str, ...]
    swap_halves: bool = False


def _flux_rules(double_blocks: int, single_blocks: int) -> list[Rule]:
    rules = [
        Rule("time_in.in_layer", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("time_in.out_layer", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("vector_in.in_layer", ("time_text_embed.text_embedder.linear_1",)),
        Rule("vector_in.out_layer", ("time_text_embed.text_embedder.linear_2",)),
        Rule("guidance_in.in_layer", ("time_text_embed.guidance_embedder.linear_1",)),
        Rule("guidance_in.out_layer", ("time_text_embed.guidance_embedder.linear_2",)),
        Rule("txt_in", ("context_embedder",)),
        Rule("img_in", ("x_embedder",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), swap_halves=True),
    ]
    for i in range(double_blocks):
        ours, theirs = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for stream, prefix, attention in (("img", "", ("to_q", "to_k", "to_v")), ("txt", "_context", None)):
            names = attention or ("add_q_proj", "add_k_proj", "add_v_proj")
            norm = "" if stream == "img" else "added_"
            rules += [
                Rule(f"{theirs}{stream}_mod.lin", (f"{ours}norm1{prefix}.linear",)),
                Rule(f"{theirs}{stream}_attn.qkv", tuple(f"{ours}attn.{name}" for name in names)),
                Rule(f"{theirs}{stream}_attn.norm.query_norm", (f"{ours}attn.norm_{norm}q",)),
                Rule(f"{theirs}{stream}_attn.norm.key_norm", (f"{ours}attn.norm_{norm}k",)),
                Rule(f"{theirs}{stream}_attn.proj", (f"{ours}attn.{'to_out.0' if stream == 'img' else 'to_add_out'}",)),
                Rule(f"{theirs}{stream}_mlp.0", (f"{ours}ff{prefix}.net.0.proj",)),
                Rule(f"{theirs}{stream}_mlp.2", (f"{ours}ff{prefix}.net.2",)),
            ]
    for i in range(single_blocks):
        ours, theirs = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        rules += [
            Rule(f"{theirs}modulation.lin", (f"{ours}norm.linear",)),
            Rule(
                f"{theirs}linear1",
                tuple(f"{ours}{name}" for name in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")),
            ),
            Rule(f"{theirs}norm.query_norm", (f"{ours}attn.norm_q",)),
            Rule(f"{theirs}norm.key_norm", (f"{ours}attn.norm_k",)),
            Rule(f"{theirs}linear2", (f"{ours}proj_out",)),
        ]
    return rules


def _sd3_rules(blocks: int, dual_attention: set[int]) -> list[Rule]:
    rules = [
        Rule("x_embedder.proj", ("pos_embed.proj",)),
        Rule("t_embedder.mlp.0", ("time_text_embed.timestep_embedder.linear_1",)),
        Rule("t_embedder.mlp.2", ("time_text_embed.timestep_embedder.linear_2",)),
        Rule("y_embedder.mlp.0", ("time_text_embed.text_embedder.linear_1",)),
        Rule("y_embedder.mlp.2", ("time_text_embed.text_embedder.linear_2",)),
        Rule("context_embedder", ("context_embedder",)),
        Rule("final_layer.linear", ("proj_out",)),
        Rule("final_layer.adaLN_modulation.1", ("norm_out.linear",), swap_halves=True),
    ]
    for i in range(blocks):
        ours, x, context = f"transformer_blocks.{i}.", f"joint_blocks.{i}.x_block.", f"joint_blocks.{i}.context_block."
        last = i == blocks - 1  # the last block's text stream only feeds the attention (diffusers' context_pre_only)
        rules += [
            Rule(f"{x}attn.qkv", tuple(f"{ours}attn.to_{name}" for name in "qkv")),
            Rule(f"{context}attn.qkv", tuple(f"{ours}attn.add_{name}_proj" for name in "qkv")),
            Rule(f"{x}attn.ln_q", (f"{ours}attn.norm_q",)),
            Rule(f"{x}attn.ln_k", (f"{ours}attn.norm_k",)),
            Rule(f"{context}attn.ln_q", (f"{ours}attn.norm_added_q",)),
            Rule(f"{context}attn.ln_k", (f"{ours}attn.norm_added_k",)),
            Rule(f"{x}attn.proj", (f"{ours}attn.to_out.0",)),
            Rule(f"{x}adaLN_modulation.1", (f"{ours}norm1.linear",)),
            Rule(f"{context}adaLN_modulation.1", (f"{ours}norm1_context.linear",), swap_halves=last),
            Rule(f"{x}mlp.fc1", (f"{ours}ff.net.0.proj",)),
            Rule(f"{x}mlp.fc2", (f"{ours}ff.net.2",)),
        ]
        if not last:
            rules += [
                Rule(f"{context}attn.proj", (f"{ours}attn.to_add_out",)),
                Rule(f"{context}mlp.fc1", (f"{ours}ff_context.net.0.proj",)),
                Rule(f"{context}mlp.fc2", (f"{ours}ff_context.net.2",)),
            ]
        if i in dual_attention:
            rules += [
                Rule(f"{x}attn2.qkv", tuple(f"{ours}attn2.to_{name}" for name in "qkv")),
                Rule(f"{x}attn2.ln_q", (f"{ours}attn2.norm_q",)),
                Rule(f"{x}attn2.ln_k", (f"{ours}attn2.norm_k",)),
                Rule(f"{x}attn2.proj", (f"{ours}attn2.to_out.0",)),
            ]
    return rules


def _swap_halves(tensor: torch.Tensor) -> torch.Tensor:
    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _block_count(keys, prefix: str) -> int:
    indices = {int(key[len(prefix) :].split(".", 1)[0]) for key in keys if key.startswith(prefix)}
    return max(indices) + 1 if indices else 0


def flux_to_diffusers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BFL's FLUX transformer keys (prefix removed) as diffusers' `FluxTransformer2DModel` names them, at any width."""
    rules = _flux_rules(_block_count(state_dict, "double_blocks."), _block_count(state_dict, "single_blocks."))
    width = state_dict["img_in.weight"].shape[0]
    converted, used = {}, set()
    for rule in rules:
        for suffix in ("weight", "bias", "scale"):
            key = f"{rule.original}.{suffix}"
            if key not in state_dict:
                continue
            used.add(key)
            tensor = state_dict[key]
            if rule.swap_halves:
                tensor = _swap_halves(tensor)
            # The fused parts: q, k, v (width each), then the single blocks' MLP input (the rest).
            sizes = [tensor.shape[0]] if len(rule.diffusers) == 1 else [width] * 3
            sizes += [tensor.shape[0] - sum(sizes)] * (len(rule.diffusers) - len(sizes))
            for name, part in zip(rule.diffusers, tensor.split(sizes), strict=True):
                converted[f"{name}.{'weight' if suffix == 'scale' else suffix}"] = part
    unknown = sorted(set(state_dict) - used)
    if unknown:
        raise ValueError(
            f"{len(unknown)} FLUX transformer weights have no place in diffusers' layout, e.g. {unknown[:3]}"
        )
    return converted


def original_transformer_layout(transformer) -> dict[str, torch.Tensor]:
    """A diffusers SD 3 or FLUX transformer's weights in SAI's or BFL's layout (no prefix)."""
    from modules.sd_single_file import base_weights

    weights = base_weights(transformer)
    if type(transformer).__name__ == "FluxTransformer2DModel":
        rules = _flux_rules(transformer.config.num_layers, transformer.config.num_single_layers)
        original = {}
    else:
        rules = _sd3_rules(transformer.config.num_layers, set(transformer.config.dual_attention_layers or ()))
        original = {"pos_embed": weights.pop("pos_embed.pos_embed")}
    flux = type(transformer).__name__ == "FluxTransformer2DModel"
    for rule in rules:
        for suffix in ("weight", "bias"):
            parts = [weights.pop(f"{name}.{suffix}", None) for name in rule.diffusers]
            if parts[0] is None:
                continue
            tensor = torch.cat(parts)
            if rule.swap_halves:
                tensor = _swap_halves(tensor)
            norm = flux and rule.original.endswith("_norm")
            original[f"{rule.original}.{'scale' if norm else suffix}"] = tensor
    if weights:
        raise ValueError(f"{len(weights)} transformer weights have no original-layout name, e.g. {sorted(weights)[:3]}")
    return original


def save_all_in_one(pipe, path) -> None:
    """Write an SD 3 or FLUX pipeline to one all-in-one `.safetensors` file (`all_in_one_layout`)."""
    from modules.sd_single_file import save_tensors

    save_tensors(all_in_one_layout(pipe), path)


def all_in_one_layout(pipe) -> dict[str, torch.Tensor]:
    """An SD 3 or FLUX pipeline's weights as one all-in-one file holds them: the transformer under
    `model.diffusion_model.`, the VAE in the LDM layout (SD 3: `first_stage_model.`, FLUX: `vae.`, as ComfyUI saves
    them) and the text encoders under `text_encoders.<name>.transformer.` in Hugging Face's layout."""
    from modules.sd_single_file import base_weights, original_vae_layout

    flux = type(pipe.transformer).__name__ == "FluxTransformer2DModel"
    tensors = {TRANSFORMER_PREFIX + key: value for key, value in original_transformer_layout(pipe.transformer).items()}
    vae_prefix = "vae." if flux else "first_stage_model."
    tensors |= {vae_prefix + key: value for key, value in original_vae_layout(pipe.vae).items()}
    for slot in SLOTS["flux" if flux else "sd3"]:
        encoder = getattr(pipe, slot.component, None)
        if encoder is not None:
            prefix = f"{TEXT_ENCODERS_PREFIX}{slot.name}.transformer."
            weights = base_weights(encoder)
            weights.pop("encoder.embed_tokens.weight", None)  # T5's tied copy of `shared.weight`
            tensors |= {prefix + key: value for key, value in weights.items()}
    return tensors


# --------------------------------------------------------------------------------------------------------------------
# Loading

# Keys a file may carry that the model has no use for: CLIP-L's projection in FLUX (whose CLIP-L has none), CLIP's
# logit scale and position ids, T5's second copy of the tied embedding.
IGNORED_SUFFIXES = ("text_projection.weight", "logit_scale", "position_ids", "encoder.embed_tokens.weight")


def split_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A checkpoint's tensors by component: "transformer", "vae" and the text encoders by their all-in-one names
    ("clip_l", "clip_g", "t5xxl"), each under its own key names (prefixes removed)."""
    parts: dict[str, dict[str, torch.Tensor]] = {"transformer": {}, "vae": {}}
    for key, tensor in state_dict.items():
        vae_prefix = next((prefix for prefix in VAE_PREFIXES if key.startswith(prefix)), None)
        if vae_prefix:
            parts["vae"][key[len(vae_prefix) :]] = tensor
        elif key.startswith(TEXT_ENCODERS_PREFIX):
            name, rest = key[len(TEXT_ENCODERS_PREFIX) :].split(".", 1)
            parts.setdefault(name, {})[rest.removeprefix("transformer.")] = tensor
        else:
            parts["transformer"][key.removeprefix(TRANSFORMER_PREFIX)] = tensor
    return {name: part for name, part in parts.items() if part}


def module_kind(state_dict: dict[str, torch.Tensor]) -> tuple[str, dict[str, torch.Tensor]]:
    """ "vae", "t5" or "clip" for a separate module file, with its tensors under the model's own names."""
    parts = split_checkpoint(state_dict)
    if "vae" in parts or any(key.startswith(("encoder.down", "decoder.up")) for key in parts.get("transformer", {})):
        return "vae", parts.get("vae") or parts["transformer"]
    weights = next(iter(parts.values())) if len(parts) == 1 else {}
    if any(key.startswith("encoder.block.") for key in weights):
        return "t5", weights
    if any(".layers.0.self_attn.q_proj." in key for key in weights):
        return "clip", weights
    raise ValueError("neither a VAE nor a CLIP or T5 text encoder (by its key names)")


def _build(model_class, folder: Path, device=None):
    """`model_class` from `folder`'s config without weights: on the meta device (`device` "meta": fast, for a fit
    check), or with real buffers (computed position tables, ids) and empty parameters, ready to take weights."""
    from accelerate import init_empty_weights

    with torch.device("meta") if device == "meta" else init_empty_weights():
        if hasattr(model_class, "config_class"):  # transformers
            return model_class(model_class.config_class.from_pretrained(folder, local_files_only=True))
        return model_class.from_config(model_class.load_config(folder, local_files_only=True))


def _fits(model_class, folder: Path, weights: dict[str, torch.Tensor]) -> bool:
    """Whether `weights` fill the model `folder`'s config describes exactly (names and shapes)."""
    if not (folder / "config.json").is_file():
        return False
    model = _build(model_class, folder, "meta")
    expected = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    weights = _renamed(model, weights)
    tied = set(getattr(model, "_tied_weights_keys", None) or ())
    given = {key: tuple(tensor.shape) for key, tensor in weights.items() if not key.endswith(IGNORED_SUFFIXES)}
    needed = {key: shape for key, shape in expected.items() if key not in tied or key in weights}
    needed = {key: shape for key, shape in needed.items() if not key.endswith(IGNORED_SUFFIXES) or key in given}
    return given == needed


def _load_into(model, weights: dict[str, torch.Tensor], dtype: torch.dtype):
    weights = _renamed(model, weights)
    model.load_state_dict({k: v for k, v in weights.items() if k in model.state_dict()}, strict=False, assign=True)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    meta = [key for key, tensor in model.state_dict().items() if tensor.is_meta]
    if meta:
        raise ValueError(f"weights missing after loading, e.g. {meta[:3]}")
    if any(tensor.dtype != dtype for tensor in model.state_dict().values() if tensor.is_floating_point()):
        model = model.to(dtype)
    return model.eval()


def _renamed(model, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP's weights with or without the "text_model." level, as `model` names them (transformers' CLIP classes and
    versions differ; files carry either)."""
    if not any(".layers.0.self_attn.q_proj." in key for key in weights):
        return weights
    nested = any(key.startswith("text_model.") for key in model.state_dict())
    renamed = {}
    for key, value in weights.items():
        bare = key.removeprefix("text_model.")
        renamed[f"text_model.{bare}" if nested and not bare.startswith("text_projection") else bare] = value
    return renamed


def load_transformer_file_pipeline(path: Path, modules: tuple[Path, ...] = (), torch_dtype: torch.dtype | None = None):
    """An SD 3 or FLUX pipeline from an original-layout .safetensors file and the separate module files, offline."""
    import safetensors.torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from diffusers.loaders.single_file_utils import (
        convert_ldm_vae_checkpoint,
        convert_sd3_transformer_checkpoint_to_diffusers,
    )

    from modules.sd_single_file import transformer_family

    dtype = torch_dtype or torch.float32
    state_dict = safetensors.torch.load_file(str(path))
    family = transformer_family(state_dict)
    sidecar = path.parent / f"{path.stem}.config"
    candidates = ([sidecar] if sidecar.is_dir() else []) + [MODEL_CONFIGS / name for name in SHIPPED[family]]
    parts = split_checkpoint(state_dict)
    slots = SLOTS[family]
    text_weights = {slot.component: parts[slot.name] for slot in slots if slot.name in parts}
    vae_weights = _add_modules(modules, family, candidates, text_weights) or parts.get("vae")

    if family == "sd3":
        transformer_class = SD3Transformer2DModel
        transformer_weights = convert_sd3_transformer_checkpoint_to_diffusers(dict(parts.get("transformer", {})))
    else:
        transformer_class = FluxTransformer2DModel
        transformer_weights = flux_to_diffusers(parts.get("transformer", {}))
    home = _first_fit(transformer_class, candidates, "transformer", transformer_weights)
    if home is None:
        raise ValueError(f"{path.name}: its transformer's shapes fit none of the configs ({_names(candidates)})")
    missing = [slot.label for slot in slots if slot.component not in text_weights and slot.component not in OPTIONAL]
    if vae_weights is None:
        missing.append("VAE")
    if missing:
        raise ValueError(
            f"{path.name}: a single-file {family.upper()} checkpoint without its {', '.join(missing)}; add them as "
            f"additional_modules (Forge's forge_additional_modules): files in {text_encoder_dir()} and the VAE folder"
        )
    if any(key.startswith("encoder.down.") for key in vae_weights):  # the LDM layout (SAI's, BFL's ae.safetensors)
        vae_config_home = next(folder for folder in candidates if (folder / "vae" / "config.json").is_file())
        vae_weights = convert_ldm_vae_checkpoint(vae_weights, AutoencoderKL.load_config(vae_config_home / "vae"))
    vae_home = _first_fit(AutoencoderKL, candidates, "vae", vae_weights)
    if vae_home is None:
        raise ValueError(f"{path.name}: its VAE's shapes fit none of the configs ({_names(candidates)})")

    components = {
        "transformer": _load_into(_build(transformer_class, home / "transformer"), transformer_weights, dtype),
        "vae": _load_into(_build(AutoencoderKL, vae_home / "vae"), vae_weights, dtype),
        "scheduler": FlowMatchEulerDiscreteScheduler.from_pretrained(home / "scheduler", local_files_only=True),
    }
    for slot in slots:
        weights = text_weights.get(slot.component)
        if weights is None:  # SD 3 without T5
            components[slot.component] = components[slot.tokenizer] = None
            continue
        model_class = _text_encoder_class(slot, family)
        encoder_home = _first_fit(model_class, candidates, slot.component, weights)
        if encoder_home is None:
            raise ValueError(
                f"{path.name}: the {slot.label} text encoder's shapes fit none of the configs ({_names(candidates)})"
            )
        components[slot.component] = _load_into(_build(model_class, encoder_home / slot.component), weights, dtype)
        components[slot.tokenizer] = _tokenizer(slot, candidates)
    pipeline_class = StableDiffusion3Pipeline if family == "sd3" else FluxPipeline
    return pipeline_class(**components)


def _add_modules(modules: tuple[Path, ...], family: str, candidates: list[Path], text_weights: dict) -> dict | None:
    """Put each module file's text encoder into `text_weights` (by component); return a module VAE's weights."""
    import safetensors.torch

    vae_weights = None
    for module in modules:
        try:
            kind, weights = module_kind(safetensors.torch.load_file(str(module)))
        except Exception as error:  # noqa: BLE001 - safetensors' own errors: the message names the file
            raise ValueError(f"additional_modules: {module.name}: {' '.join(str(error).split())[:200]}") from error
        if kind == "vae":
            vae_weights = weights
            continue
        wanted = [
            slot
            for slot in SLOTS[family]
            if (slot.name == "t5xxl") == (kind == "t5") and slot.component not in text_weights
        ]
        if not wanted:
            raise ValueError(
                f"additional_modules: {module.name} is a {kind.upper()} text encoder this model already has"
            )
        slot = wanted[0]
        if len(wanted) > 1:  # two CLIP files (SD 3): each goes where its shapes fit, CLIP-L first
            fits = (
                option
                for option in wanted
                if _first_fit(_text_encoder_class(option, family), candidates, option.component, weights)
            )
            slot = next(fits, slot)
        text_weights[slot.component] = weights
    return vae_weights


def _first_fit(model_class, candidates: list[Path], component: str, weights) -> Path | None:
    """The first candidate folder whose `component` config the weights fill."""
    return next((folder for folder in candidates if _fits(model_class, folder / component, weights)), None)


def _text_encoder_class(slot: TextEncoderSlot, family: str):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel

    if slot.name == "t5xxl":
        return T5EncoderModel
    return CLIPTextModelWithProjection if family == "sd3" else CLIPTextModel


def _tokenizer(slot: TextEncoderSlot, candidates: list[Path]):
    from transformers import AutoTokenizer, CLIPTokenizer

    for folder in candidates:
        if (folder / slot.tokenizer).is_dir():
            return AutoTokenizer.from_pretrained(folder / slot.tokenizer, local_files_only=True)
    if slot.name != "t5xxl":  # CLIP-L's and CLIP-G's (padded with "!") vocabularies ship with the SDXL configs
        return CLIPTokenizer.from_pretrained(
            MODEL_CONFIGS / "sdxl" / ("tokenizer_2" if slot.name == "clip_g" else "tokenizer"), local_files_only=True
        )
    folder = text_encoder_dir() / T5_TOKENIZER_FOLDER
    if folder.is_dir():
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    raise ValueError(
        f"the T5 text encoder needs its tokenizer (google/t5-v1_1-xxl's spiece.model and tokenizer files), which "
        f"Serena cannot download: put them in {folder}/ or in the checkpoint's sidecar folder's {slot.tokenizer}/"
    )


def _names(folders: list[Path]) -> str:
    return ", ".join(folder.name for folder in folders)

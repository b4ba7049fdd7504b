"""Single-file Stable Diffusion checkpoints in the original (LDM/CompVis) key layout.

This is the layout of the webui's ``models/Stable-diffusion/*.safetensors``: ``model.diffusion_model.*`` (UNet),
``first_stage_model.*`` (VAE) and ``cond_stage_model.transformer.*`` (SD 1.x CLIP) or ``cond_stage_model.model.*``
(SD 2.x OpenCLIP); SDXL's ``conditioner.embedders.0.transformer.*`` (CLIP-L) and ``conditioner.embedders.1.model.*``
(OpenCLIP bigG). Loading never touches the network: the architecture comes from the checkpoint's tensor shapes,
matched against diffusers-format config folders shipped in ``modules/model_configs`` or given by the caller (an
SDXL file is read with the shipped SDXL config unless one is given; diffusers' single-file code converts the keys).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import diffusers
import safetensors
import safetensors.torch
import torch
import yaml
from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_diffusers_clip_model_from_ldm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from modules.default_model import DEFAULT_MODEL_DIR

SAFE_EXTENSIONS = (".safetensors",)
PICKLE_EXTENSIONS = (".ckpt", ".pt", ".pth", ".bin")
# The project's own default model is a shipped architecture too, so its single-file form loads without a sidecar.
SHIPPED_CONFIGS = MappingProxyType(
    {name: Path(__file__).resolve().parent / "model_configs" / name for name in ("sd15", "sd2")}
    | {"serena-default": DEFAULT_MODEL_DIR}
)

SDXL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs" / "sdxl"

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."
OPEN_CLIP_PREFIX = "cond_stage_model.model."
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

# Renames inside one block, diffusers name -> original name, applied to the part of the key after the block prefix.
UNET_RESNET_RENAMES = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("time_emb_proj.", "emb_layers.1."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("conv_shortcut.", "skip_connection."),
)
VAE_RESNET_RENAMES = (("conv_shortcut.", "nin_shortcut."),)
VAE_ATTENTION_RENAMES = (
    ("group_norm.", "norm."),
    ("to_q.", "q."),
    ("to_k.", "k."),
    ("to_v.", "v."),
    ("to_out.0.", "proj_out."),
)


# --------------------------------------------------------------------------------------------------------------------
# Loading


def load_single_file_pipeline(
    path: str | os.PathLike,
    *,
    config_dir: str | os.PathLike | None = None,
    allow_pickle: bool = False,
    torch_dtype: torch.dtype | None = None,
) -> StableDiffusionPipeline:
    """Load an original-layout SD checkpoint as a ``StableDiffusionPipeline``, fully offline.

    The config folder is, in order: ``config_dir``; a sidecar folder ``<checkpoint stem>.config/`` next to the
    checkpoint; else the shipped SD 1.x or SD 2.x config whose shapes match the checkpoint. A sidecar
    ``<checkpoint stem>.yaml`` with ``parameterization: "v"`` (as the webui reads it) switches the scheduler to
    v-prediction. With ``torch_dtype`` None the models are float32, whatever the checkpoint's precision.
    SD 3 and FLUX files (SAI's and BFL's layouts) load through ``modules.transformer_single_file``.
    """
    path = Path(path)
    state_dict = read_checkpoint(path, allow_pickle=allow_pickle)
    sidecar_config_dir = path.parent / f"{path.stem}.config"
    if config_dir is None and sidecar_config_dir.is_dir():
        config_dir = sidecar_config_dir
    if family := transformer_family(state_dict):  # a .safetensors one is dispatched before (modules.sd_models)
        raise ValueError(f"{path}: a single-file {family.upper()} checkpoint is read as .safetensors only; convert it")
    if any(key.startswith(SDXL_OPEN_CLIP_PREFIX) for key in state_dict):
        return _load_sdxl(path, state_dict, Path(config_dir or SDXL_CONFIG_DIR), torch_dtype)
    if any(key.startswith(SDXL_REFINER_OPEN_CLIP_PREFIX) for key in state_dict):
        raise ValueError(f"{path}: an SDXL refiner as a single file is not supported; use its diffusers folder")
    config_dir = str(detect_config_dir(state_dict, config_dir=config_dir))

    model_kwargs = {"config": config_dir, "local_files_only": True, "torch_dtype": torch_dtype}
    unet = UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **model_kwargs)
    vae = AutoencoderKL.from_single_file(state_dict, subfolder="vae", **model_kwargs)
    text_encoder = create_diffusers_clip_model_from_ldm(
        CLIPTextModel, state_dict, subfolder="text_encoder", **model_kwargs
    )
    for name, model in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder)):
        # diffusers builds models on the meta device: a weight missing from the checkpoint stays there silently.
        missing = [key for key, tensor in model.state_dict().items() if tensor.is_meta]
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {len(missing)} {name} weights, e.g. {missing[:5]}")

    scheduler_overrides = {}
    if _sidecar_parameterization(path) == "v":
        scheduler_overrides["prediction_type"] = "v_prediction"
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=CLIPTokenizer.from_pretrained(config_dir, subfolder="tokenizer", local_files_only=True),
        unet=unet,
        scheduler=_load_scheduler(Path(config_dir), **scheduler_overrides),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _load_sdxl(path: Path, state_dict, config_dir: Path, torch_dtype) -> StableDiffusionXLPipeline:
    model_kwargs = {"config": str(config_dir), "local_files_only": True, "torch_dtype": torch_dtype}
    models = {
        "unet": UNet2DConditionModel.from_single_file(state_dict, subfolder="unet", **model_kwargs),
        "vae": AutoencoderKL.from_single_file(state_dict, subfolder="vae", **model_kwargs),
        "text_encoder": create_diffusers_clip_model_from_ldm(
            CLIPTextModel, state_dict, subfolder="text_encoder", **model_kwargs
        ),
        "text_encoder_2": create_diffusers_clip_model_from_ldm(
            CLIPTextModelWithProjection, state_dict, subfolder="text_encoder_2", **model_kwargs
        ),
    }
    for name, model in models.items():
        missing = [key for key, tensor in model.state_dict().items() if tensor.is_meta]
        if missing:
            raise ValueError(f"{path}: checkpoint lacks {len(missing)} {name} weights, e.g. {missing[:5]}")
    tokenizers = {
        name: CLIPTokenizer.from_pretrained(config_dir, subfolder=name, local_files_only=True)
        for name in ("tokenizer", "tokenizer_2")
    }
    return StableDiffusionXLPipeline(**models, **tokenizers, scheduler=_load_scheduler(config_dir))


def file_architecture(path: str | os.PathLike) -> str:
    """ "sd1", "sd2", "sdxl", "sdxl-refiner", "sd3", "flux" from a checkpoint's key names (a safetensors header; a
    pickle file is not opened to list it: "unknown")."""
    path = Path(path)
    if path.suffix.lower() not in SAFE_EXTENSIONS:
        return "unknown"
    with safetensors.safe_open(path, framework="pt") as handle:
        keys = list(handle.keys())
    if transformer := transformer_family(keys):
        return transformer
    if any(key.startswith(SDXL_OPEN_CLIP_PREFIX) for key in keys):
        return "sdxl"
    if any(key.startswith(SDXL_REFINER_OPEN_CLIP_PREFIX) for key in keys):
        return "sdxl-refiner"
    if any(key.startswith(OPEN_CLIP_PREFIX) for key in keys):
        return "sd2"
    return "sd1" if any(key.startswith(CLIP_PREFIX) for key in keys) else "unknown"


def transformer_family(keys) -> str | None:
    """ "sd3" (SAI's MMDiT: `joint_blocks`) or "flux" (BFL's: `double_blocks`) from a file's keys, with or without
    the all-in-one files' `model.diffusion_model.` prefix; None for the UNet families."""
    for key in keys:
        name = key.removeprefix("model.diffusion_model.")
        if name.startswith("joint_blocks."):
            return "sd3"
        if name.startswith("double_blocks."):
            return "flux"
    return None


def read_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Read a checkpoint's tensors; pickle formats are refused unless ``allow_pickle`` is set."""
    path = Path(path)
    extension = path.suffix.lower()
    if extension in SAFE_EXTENSIONS:
        return safetensors.torch.load_file(path)
    if extension not in PICKLE_EXTENSIONS:
        allowed = ", ".join(SAFE_EXTENSIONS + PICKLE_EXTENSIONS)
        raise ValueError(f"{path}: unsupported checkpoint extension {extension!r}; allowed: {allowed}")
    if not allow_pickle:
        raise ValueError(
            f"{path} is a pickle checkpoint; pickle checkpoints need an explicit allow flag (allow_pickle=True, "
            "then read with torch.load(weights_only=True)), or convert the file to .safetensors"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    # Training checkpoints nest the weights under "state_dict", next to the step count and optimizer state.
    while isinstance(checkpoint, Mapping) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    return {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def detect_config_dir(state_dict: Mapping[str, torch.Tensor], *, config_dir: str | os.PathLike | None = None) -> Path:
    """The diffusers-format config folder whose architecture matches the checkpoint's tensor shapes.

    With ``config_dir`` given only that folder is checked; otherwise the shipped SD 1.x and SD 2.x configs are.
    """
    found = checkpoint_signature(state_dict)
    candidates = [Path(config_dir)] if config_dir is not None else list(SHIPPED_CONFIGS.values())
    for candidate in candidates:
        if config_signature(candidate) == found:
            return candidate
    supported = "\n".join(f"  {folder}: {config_signature(folder)}" for folder in candidates)
    raise ValueError(
        f"checkpoint architecture not supported; its shapes give\n  {found}\nbut the configs describe\n{supported}"
    )


def checkpoint_signature(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The architecture facts readable from an original-layout checkpoint; None where the weights are absent."""

    def shape(key: str) -> tuple[int, ...] | None:
        tensor = state_dict.get(key)
        return None if tensor is None else tuple(tensor.shape)

    def out_channels(key: str) -> int | None:
        return None if shape(key) is None else shape(key)[0]

    def first_shape(prefix: str, suffix: str) -> tuple[int, ...] | None:
        key = next((key for key in state_dict if key.startswith(prefix) and key.endswith(suffix)), None)
        return None if key is None else shape(key)

    signature: dict[str, Any] = dict.fromkeys(
        (
            "unet_in_channels",
            "unet_block_out_channels",
            "unet_layers_per_block",
            "unet_cross_attention_dim",
            "unet_use_linear_projection",
            "vae_block_out_channels",
            "text_hidden_size",
        )
    )
    conv_in = shape(f"{UNET_PREFIX}input_blocks.0.0.weight")
    if conv_in is not None:
        signature["unet_in_channels"] = conv_in[1]
        # Every level but the last ends in a downsampler; each up level holds layers_per_block + 1 output blocks.
        levels = 1 + sum(1 for key in state_dict if key.startswith(UNET_PREFIX) and key.endswith(".0.op.weight"))
        output_blocks = {key.split(".")[3] for key in state_dict if key.startswith(f"{UNET_PREFIX}output_blocks.")}
        layers_per_block = len(output_blocks) // levels - 1
        signature["unet_layers_per_block"] = layers_per_block
        signature["unet_block_out_channels"] = [
            out_channels(f"{UNET_PREFIX}input_blocks.{1 + level * (layers_per_block + 1)}.0.out_layers.3.weight")
            for level in range(levels)
        ]
        context = first_shape(UNET_PREFIX, ".attn2.to_k.weight")
        signature["unet_cross_attention_dim"] = None if context is None else context[1]
        proj_in = first_shape(UNET_PREFIX, ".proj_in.weight")
        signature["unet_use_linear_projection"] = None if proj_in is None else len(proj_in) == 2

    vae_levels = {key.split(".")[3] for key in state_dict if key.startswith(f"{VAE_PREFIX}encoder.down.")}
    if vae_levels:
        signature["vae_block_out_channels"] = [
            out_channels(f"{VAE_PREFIX}encoder.down.{level}.block.0.conv1.weight") for level in range(len(vae_levels))
        ]

    token_embedding = shape(f"{CLIP_PREFIX}text_model.embeddings.token_embedding.weight") or shape(
        f"{OPEN_CLIP_PREFIX}token_embedding.weight"
    )
    if token_embedding is not None:
        signature["text_hidden_size"] = token_embedding[1]
    return signature


def config_signature(config_dir: str | os.PathLike) -> dict[str, Any]:
    """The same facts as ``checkpoint_signature``, read from a diffusers-format config folder."""
    config_dir = Path(config_dir)
    for component in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        if not (config_dir / component).is_dir():
            raise ValueError(f"{config_dir} is not a diffusers-format StableDiffusionPipeline folder: no {component}/")
    unet = _config_with_defaults(UNet2DConditionModel, config_dir / "unet")
    vae = _config_with_defaults(AutoencoderKL, config_dir / "vae")
    text = CLIPTextConfig.from_pretrained(config_dir / "text_encoder", local_files_only=True)
    return {
        "unet_in_channels": unet["in_channels"],
        "unet_block_out_channels": list(unet["block_out_channels"]),
        "unet_layers_per_block": unet["layers_per_block"],
        "unet_cross_attention_dim": unet["cross_attention_dim"],
        "unet_use_linear_projection": unet["use_linear_projection"],
        "vae_block_out_channels": list(vae["block_out_channels"]),
        "text_hidden_size": text.hidden_size,
    }


def _config_with_defaults(model_class: type, folder: Path) -> dict[str, Any]:
    # Config files may omit arguments that keep their defaults; reading them needs no model instance.
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(model_class.__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, **json.loads((folder / "config.json").read_text())}


def _sidecar_parameterization(path: Path) -> str | None:
    sidecar = path.with_suffix(".yaml")
    if not sidecar.is_file():
        return None
    return _find_key(yaml.safe_load(sidecar.read_text()), "parameterization")


def _find_key(node: Any, key: str) -> Any:
    # The webui's yaml nests it under model.params; search the whole tree so flat sidecars work too.
    if isinstance(node, Mapping):
        if key in node:
            return node[key]
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find_key(child, key)
            if found is not None:
                return found
    return None


def _load_scheduler(config_dir: Path, **overrides: Any) -> diffusers.SchedulerMixin:
    config = json.loads((config_dir / "scheduler" / "scheduler_config.json").read_text())
    scheduler_class = getattr(diffusers, config["_class_name"])
    return scheduler_class.from_config(config, **overrides)


# --------------------------------------------------------------------------------------------------------------------
# Saving


def save_single_file(pipe: StableDiffusionPipeline, path: str | os.PathLike) -> None:
    """Write the pipeline's UNet, VAE and CLIP text encoder(s) to one original-layout ``.safetensors`` file (SDXL:
    both encoders, the second in OpenCLIP's layout, as the released SDXL files; SD 3 and FLUX:
    ``modules.transformer_single_file.save_all_in_one``).

    The text encoder is always written in the SD 1.x (Hugging Face CLIP) layout, which ``load_single_file_pipeline``
    reads back for SD 2.x too, but which the original SD 2.x code (OpenCLIP layout) does not.
    The file is written next to its destination and moved into place, so readers never see a partial file.
    """
    save_tensors(original_state_dict(pipe), path)


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write `tensors` to a ``.safetensors`` file next to its destination, then move it into place."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{path}: single-file checkpoints are written as .safetensors only")
    state_dict = {key: tensor.contiguous() for key, tensor in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        safetensors.torch.save_file(state_dict, temp_name, metadata={"format": "pt"})
        os.replace(temp_name, path)
    except BaseException:
        os.unlink(temp_name)
        raise


LORA_TENSOR = re.compile(r"\.lora_(A|B|embedding_A|embedding_B|magnitude_vector)\.")


def base_weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's own weights under their plain names: without the LoRA layers PEFT injected into it (LoRAs are
    applied per batch and stay loaded between jobs; they are not part of the model) and without `base_layer.`."""
    return {
        key.replace(".base_layer.", "."): tensor
        for key, tensor in module.state_dict().items()
        if not LORA_TENSOR.search(key)
    }


def base_text_encoder_weights(text_encoder, tokenizer) -> dict[str, torch.Tensor]:
    """A text encoder's base weights with the base vocabulary only: textual-inversion tokens stay loaded between
    jobs as extra token-embedding rows, and they are not part of the model either."""
    weights = base_weights(text_encoder)
    if tokenizer is not None:
        for key in [key for key in weights if key.endswith("embeddings.token_embedding.weight")]:
            weights[key] = weights[key][: tokenizer.vocab_size]
    return weights


def original_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """The pipeline's ``unet``, ``vae`` and ``text_encoder`` weights under original SD key names."""
    state_dict = {}
    unet_map = _unet_prefix_map(pipe.unet.config)
    for key, tensor in base_weights(pipe.unet).items():
        state_dict[UNET_PREFIX + _rename(key, unet_map, "unet")] = tensor
    for key, tensor in original_vae_layout(pipe.vae).items():
        state_dict[VAE_PREFIX + key] = tensor
    sdxl = getattr(pipe, "text_encoder_2", None) is not None
    for key, tensor in base_text_encoder_weights(pipe.text_encoder, getattr(pipe, "tokenizer", None)).items():
        # transformers >= 5.6 dropped the "text_model." level that the original layout keeps.
        state_dict[f"{SDXL_CLIP_PREFIX if sdxl else CLIP_PREFIX}text_model.{key.removeprefix('text_model.')}"] = tensor
    if sdxl:
        for key, tensor in open_clip_layout(pipe.text_encoder_2, getattr(pipe, "tokenizer_2", None)).items():
            state_dict[SDXL_OPEN_CLIP_PREFIX + key] = tensor
    return state_dict


def original_vae_layout(vae) -> dict[str, torch.Tensor]:
    """A diffusers VAE's weights in the LDM layout (no prefix), as SD's, SD 3's and FLUX's original files hold it."""
    vae_map = _vae_prefix_map(vae.config)
    layout = {}
    for key, tensor in vae.state_dict().items():
        original_key = _rename(key, vae_map, "vae")
        if ".mid.attn_1." in original_key and tensor.ndim == 2:
            # The original VAE attention uses 1x1 convolutions where diffusers uses linear layers.
            tensor = tensor.reshape(*tensor.shape, 1, 1)
        layout[original_key] = tensor
    return layout


OPEN_CLIP_RENAMES = (
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
    ("self_attn.out_proj.", "attn.out_proj."),
)


def open_clip_layout(text_encoder, tokenizer=None) -> dict[str, torch.Tensor]:
    """A CLIPTextModelWithProjection's weights in OpenCLIP's layout: q/k/v fused into in_proj, the projection a
    matrix applied from the right (the inverse of diffusers' `convert_open_clip_checkpoint`)."""
    weights = base_text_encoder_weights(text_encoder, tokenizer)
    weights = {key.removeprefix("text_model."): tensor for key, tensor in weights.items()}
    layout = {
        "token_embedding.weight": weights["embeddings.token_embedding.weight"],
        "positional_embedding": weights["embeddings.position_embedding.weight"],
        "ln_final.weight": weights["final_layer_norm.weight"],
        "ln_final.bias": weights["final_layer_norm.bias"],
        "text_projection": weights["text_projection.weight"].T,
    }
    for layer in range(text_encoder.config.num_hidden_layers):
        ours, theirs = f"encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for part in ("weight", "bias"):
            fused = [weights[f"{ours}self_attn.{name}_proj.{part}"] for name in "qkv"]
            layout[f"{theirs}attn.in_proj_{part}"] = torch.cat(fused)
            for name, original in OPEN_CLIP_RENAMES:
                layout[f"{theirs}{original}{part}"] = weights[f"{ours}{name}{part}"]
    return layout


def _rename(key: str, prefix_map: dict[str, tuple[str, tuple[tuple[str, str], ...]]], model_name: str) -> str:
    for prefix, (original_prefix, renames) in prefix_map.items():
        if key.startswith(prefix):
            rest = key[len(prefix) :]
            for name, original_name in renames:
                if rest.startswith(name):
                    rest = original_name + rest[len(name) :]
                    break
            return original_prefix + rest
    raise ValueError(f"{model_name} weight {key!r} has no place in the original Stable Diffusion layout")


def _unet_prefix_map(config: Any) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Diffusers UNet prefix -> (original prefix, renames inside the block)."""
    layers = _single_layer_count(config, "UNet")
    levels = len(config.block_out_channels)
    prefix_map = {
        "time_embedding.linear_1.": ("time_embed.0.", ()),
        "time_embedding.linear_2.": ("time_embed.2.", ()),
        "add_embedding.linear_1.": ("label_emb.0.0.", ()),  # SDXL's pooled-text and size embedding
        "add_embedding.linear_2.": ("label_emb.0.2.", ()),
        "conv_in.": ("input_blocks.0.0.", ()),
        "conv_norm_out.": ("out.0.", ()),
        "conv_out.": ("out.2.", ()),
        "mid_block.resnets.0.": ("middle_block.0.", UNET_RESNET_RENAMES),
        "mid_block.attentions.0.": ("middle_block.1.", ()),
        "mid_block.resnets.1.": ("middle_block.2.", UNET_RESNET_RENAMES),
    }
    for level in range(levels):
        # input_blocks: conv_in, then per level `layers` (resnet, attention) pairs and a downsampler.
        for layer in range(layers):
            input_block = level * (layers + 1) + layer + 1
            prefix_map[f"down_blocks.{level}.resnets.{layer}."] = (
                f"input_blocks.{input_block}.0.",
                UNET_RESNET_RENAMES,
            )
            prefix_map[f"down_blocks.{level}.attentions.{layer}."] = (f"input_blocks.{input_block}.1.", ())
        # output_blocks: per level `layers + 1` (resnet, attention) pairs, the last one also holding the upsampler.
        for layer in range(layers + 1):
            output_block = level * (layers + 1) + layer
            prefix_map[f"up_blocks.{level}.resnets.{layer}."] = (
                f"output_blocks.{output_block}.0.",
                UNET_RESNET_RENAMES,
            )
            prefix_map[f"up_blocks.{level}.attentions.{layer}."] = (f"output_blocks.{output_block}.1.", ())
        if level < levels - 1:
            downsampler_block = (level + 1) * (layers + 1)
            prefix_map[f"down_blocks.{level}.downsamplers.0.conv."] = (f"input_blocks.{downsampler_block}.0.op.", ())
            upsampler_slot = 2 if "CrossAttn" in config.up_block_types[level] else 1
            last_output_block = level * (layers + 1) + layers
            prefix_map[f"up_blocks.{level}.upsamplers.0."] = (
                f"output_blocks.{last_output_block}.{upsampler_slot}.",
                (),
            )
    return prefix_map


def _vae_prefix_map(config: Any) -> dict[str, tuple[str, tuple[tuple[str, str], ...]]]:
    """Diffusers VAE prefix -> (original prefix, renames inside the block)."""
    layers = _single_layer_count(config, "VAE")
    levels = len(config.block_out_channels)
    prefix_map = {
        "quant_conv.": ("quant_conv.", ()),
        "post_quant_conv.": ("post_quant_conv.", ()),
    }
    for part in ("encoder", "decoder"):
        prefix_map[f"{part}.conv_in."] = (f"{part}.conv_in.", ())
        prefix_map[f"{part}.conv_out."] = (f"{part}.conv_out.", ())
        prefix_map[f"{part}.conv_norm_out."] = (f"{part}.norm_out.", ())
        prefix_map[f"{part}.mid_block.resnets.0."] = (f"{part}.mid.block_1.", VAE_RESNET_RENAMES)
        prefix_map[f"{part}.mid_block.resnets.1."] = (f"{part}.mid.block_2.", VAE_RESNET_RENAMES)
        prefix_map[f"{part}.mid_block.attentions.0."] = (f"{part}.mid.attn_1.", VAE_ATTENTION_RENAMES)
    for level in range(levels):
        for layer in range(layers):
            prefix_map[f"encoder.down_blocks.{level}.resnets.{layer}."] = (
                f"encoder.down.{level}.block.{layer}.",
                VAE_RESNET_RENAMES,
            )
        # The original decoder numbers its levels from the lowest resolution up, diffusers from the top down.
        original_level = levels - 1 - level
        for layer in range(layers + 1):
            prefix_map[f"decoder.up_blocks.{level}.resnets.{layer}."] = (
                f"decoder.up.{original_level}.block.{layer}.",
                VAE_RESNET_RENAMES,
            )
        if level < levels - 1:
            prefix_map[f"encoder.down_blocks.{level}.downsamplers.0."] = (f"encoder.down.{level}.downsample.", ())
            prefix_map[f"decoder.up_blocks.{level}.upsamplers.0."] = (f"decoder.up.{original_level}.upsample.", ())
    return prefix_map


def _single_layer_count(config: Any, model_name: str) -> int:
    if isinstance(config.layers_per_block, int):
        return config.layers_per_block
    raise ValueError(f"{model_name} with per-level layers_per_block {config.layers_per_block} has no original layout")

"""ControlNet in Serena's sampling loop: the models on disk, their loading, and the residuals each step adds.

Models are found by name in `SERENA_CONTROLNET_DIR` (default `models/ControlNet`), then among the default model's
example networks; a model is a diffusers folder (config.json and weights) or one file (.safetensors, or a .pth /
.ckpt / .bin read with torch's weights-only loader) in the original layout (`control_model.input_blocks...`, as
lllyasviel's control_v11p_sd15_canny.pth) or diffusers' key layout. A single file has no config: it is built from
the config of the UNet it is applied to (a ControlNet is a copy of its encoder), with the conditioning embedding's
channels read from the weights; a file made for another family does not fit and is refused with the reason.
Titles carry the webui's short model hash ("control_v11p_sd15_canny [d14c016b]"), as the extension lists them.

In the loop, each unit's ControlNet sees the step's latents and text and adds its residuals (times its weight, or
the control mode's per-block scales) to the UNet's skip connections, in the fraction [guidance_start, guidance_end)
of the steps the pass runs: start = end turns a unit off, which the extension's closed interval would not.
Units with weight 0 are not run at all, so they give the base image's bytes. The UNet families only (SD 1.x/2.x,
SDXL); the refiner samples without control, as its UNet differs from the one the ControlNet was made for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from modules import control_preprocessors, control_units
from modules.control_units import NO_MODEL, SOFT_INJECTION_BASE, ControlNetUnit

SUFFIXES = (".safetensors", ".pth", ".ckpt", ".bin", ".pt")
HIRES_SOFT_MODULES = ("canny", "mlsd")  # the extension weights these down in the hires pass (fewer artifacts)
CACHE_SIZE = 4


def controlnet_dirs() -> list[Path]:
    from modules.default_model import EXAMPLE_CONTROLNET_ROOT

    return [Path(os.environ.get("SERENA_CONTROLNET_DIR", "models/ControlNet")), EXAMPLE_CONTROLNET_ROOT]


def legacy_hash(path: Path) -> str:
    """The webui's short model hash (sha256 of the 64 KiB at 1 MiB, 8 hex digits), which the extension shows."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        handle.seek(0x100000)
        digest.update(handle.read(0x10000))
    return digest.hexdigest()[:8]


@dataclass(frozen=True)
class ControlNetFile:
    """A ControlNet on disk: one file, or a diffusers folder."""

    name: str
    path: Path

    @property
    def is_folder(self) -> bool:
        return self.path.is_dir()

    @property
    def weights(self) -> Path:
        if not self.is_folder:
            return self.path
        return sorted(self.path.glob("*.safetensors"))[0]

    @cached_property
    def shorthash(self) -> str:
        return legacy_hash(self.weights)

    @property
    def title(self) -> str:
        return f"{self.name} [{self.shorthash}]"


def list_controlnets() -> dict[str, ControlNetFile]:
    """Every ControlNet by name; the user's folder wins on a name clash."""
    found: dict[str, ControlNetFile] = {}
    for folder in controlnet_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if path.is_dir() and (path / "config.json").is_file() and any(path.glob("*.safetensors")):
                found.setdefault(path.name, ControlNetFile(path.name, path.resolve()))
            elif path.is_file() and path.suffix.lower() in SUFFIXES:
                found.setdefault(path.stem, ControlNetFile(path.stem, path.resolve()))
    return found


def find_controlnet(name: str, field: str = "model", available: dict | None = None) -> ControlNetFile:
    """The ControlNet `name` names: its name, or its title with the hash ("name [hash]"); ValueError listing the
    ones here."""
    available = list_controlnets() if available is None else available
    bare = control_units.strip_hash(name)
    if bare in available:
        return available[bare]
    titles = ", ".join([NO_MODEL, *(file.title for file in available.values())])
    raise ValueError(f"{field}: no ControlNet model {name!r}; available: {titles}")


# Loading ---------------------------------------------------------------------------------------------------------


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
    return state.get("state_dict", state) if isinstance(state, dict) else state


def to_diffusers_layout(state: dict[str, torch.Tensor], layers_per_block: int) -> dict[str, torch.Tensor]:
    """The original layout's keys as diffusers' (its converter); a diffusers-layout file as it is. The converter
    knows the hint block of SD's ControlNets only (its last convolution at index 14): the hint block is mapped here
    for any depth (first convolution in, last out, those between the blocks)."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(state, {"layers_per_block": layers_per_block})
    if converted is state:
        return state
    hint = {key.split("input_hint_block.", 1)[1]: value for key, value in state.items() if ".input_hint_block." in
            f".{key}"}  # fmt: skip
    indices = sorted({int(key.split(".")[0]) for key in hint})
    names = {indices[0]: "conv_in", indices[-1]: "conv_out"} | {
        index: f"blocks.{position}" for position, index in enumerate(indices[1:-1])
    }
    converted = {key: value for key, value in converted.items() if not key.startswith("controlnet_cond_embedding.")}
    for key, value in hint.items():
        index, parameter = key.split(".", 1)
        converted[f"controlnet_cond_embedding.{names[int(index)]}.{parameter}"] = value
    for key, value in state.items():  # SDXL's size embedding, which the converter leaves out
        for original, diffusers_name in (("label_emb.0.0.", "add_embedding.linear_1."),
                                         ("label_emb.0.2.", "add_embedding.linear_2.")):  # fmt: skip
            if key.removeprefix("control_model.").startswith(original):
                converted[diffusers_name + key.rsplit(".", 1)[1]] = value
    return converted


def conditioning_channels_of(state: dict[str, torch.Tensor]) -> tuple[tuple[int, ...], int]:
    """(the conditioning embedding's block channels, the control image's channels), read from the weights."""
    conv_in = state["controlnet_cond_embedding.conv_in.weight"]
    channels = [conv_in.shape[0]]
    index = 1
    while f"controlnet_cond_embedding.blocks.{index}.weight" in state:
        channels.append(state[f"controlnet_cond_embedding.blocks.{index}.weight"].shape[0])
        index += 2
    return tuple(channels), conv_in.shape[1]


def from_single_file(path: Path, unet, field: str, dtype=torch.float32):
    """A ControlNet file for `unet`, its config made from the UNet's, its weights in `dtype`."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    state = to_diffusers_layout(read_weights(path), unet.config.layers_per_block)
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    if "controlnet_cond_embedding.conv_in.weight" not in state:
        raise ValueError(f"{field}: {path.name} is not a ControlNet (no conditioning embedding in its weights)")
    channels, image_channels = conditioning_channels_of(state)
    with init_empty_weights():
        net = ControlNetModel.from_unet(
            unet,
            conditioning_embedding_out_channels=channels,
            load_weights_from_unet=False,
            conditioning_channels=image_channels,
        )
    try:
        net.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        first = str(error).split("\n\t")[1] if "\n\t" in str(error) else str(error)
        raise ValueError(
            f"{field}: {path.name} does not fit this model's UNet (a ControlNet for another family?): {first}"
        ) from None
    return net


def check_fits(net, unet, name: str, field: str) -> None:
    ours = (tuple(unet.config.block_out_channels), unet.config.cross_attention_dim)
    theirs = (tuple(net.config.block_out_channels), net.config.cross_attention_dim)
    if ours != theirs:
        raise ValueError(
            f"{field}: ControlNet {name} is made for a UNet with blocks {theirs[0]} and text width {theirs[1]}, the "
            f"model's has {ours[0]} and {ours[1]} (a ControlNet for another family)"
        )


class ControlNetCache:
    """Loaded ControlNets by (path, device, dtype), the most recently used kept (CACHE_SIZE)."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self.loaded: OrderedDict = OrderedDict()

    def get(self, file: ControlNetFile, unet, device, dtype, field: str = "model"):
        stat = file.weights.stat()
        key = (str(file.path), stat.st_mtime_ns, tuple(unet.config.block_out_channels), str(device), dtype)
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key]
        if file.is_folder:
            from diffusers import ControlNetModel

            net = ControlNetModel.from_pretrained(file.path, local_files_only=True, torch_dtype=dtype)
        else:
            net = from_single_file(file.path, unet, field, dtype)
        check_fits(net, unet, file.name, field)
        net = net.to(device=device).eval().requires_grad_(False)  # the dtype is set when loading
        self.loaded[key] = net
        while len(self.loaded) > self.size:
            self.loaded.popitem(last=False)
        return net


controlnet_cache = ControlNetCache()


# The loop's side ---------------------------------------------------------------------------------------------------


@dataclass
class ControlInput:
    """One unit ready for one sampling pass."""

    net: torch.nn.Module
    image: torch.Tensor  # (1, channels, height, width) in 0..1
    scales: list[float]  # per residual: the encoder's, then the middle block's
    start: float
    end: float
    prompt_only: bool  # "ControlNet is more important": on the prompt's half of the CFG batch only

    def acts_at(self, step_index: int, steps: int) -> bool:
        return self.start <= step_index / steps < self.end


def residual_scales(unit: ControlNetUnit, count: int, soft: bool) -> list[float]:
    """The weight of each of the ControlNet's `count` residuals (the middle block's last): all `unit.weight`, or
    the extension's soft injection (weight x 0.825 ** (12 - i)), which its SDXL branch cuts to the first ten."""
    if not soft:
        return [unit.weight] * count
    return [unit.weight * SOFT_INJECTION_BASE ** float(12 - index) for index in range(count)]


def acts_in_pass(unit: ControlNetUnit, hires_pass: bool) -> bool:
    if not unit.active or unit.weight == 0 or unit.guidance_start >= unit.guidance_end:
        return False
    if hires_pass:
        return unit.hr_option != "Low res only"
    return unit.hr_option != "High res only"


def prepare(
    units: list[ControlNetUnit],
    model,
    width: int,
    height: int,
    hires_pass: bool = False,
    crop: tuple[int, int, int, int] | None = None,
    whole_size: tuple[int, int] | None = None,
    field: str = "controlnet_units",
) -> list[ControlInput]:
    """The units acting in this pass, with their control images at width x height. `crop` (x, y, w, h) of a
    `whole_size` picture: inpainting's "Only masked" area, which the control image is cut to as the init image is."""
    if not any(acts_in_pass(unit, hires_pass) for unit in units):
        return []
    unet = model.family.denoiser(model.pipeline)
    available = list_controlnets()
    inputs = []
    for index, unit in enumerate(units):
        if not acts_in_pass(unit, hires_pass):
            continue
        where = f"{field}[{index}].model"
        net = controlnet_cache.get(
            find_controlnet(unit.model, where, available), unet, model.device, model.dtype, where
        )
        factor = 2 ** (len(net.config.conditioning_embedding_out_channels) - 1)
        if factor != model.vae_scale_factor:
            raise ValueError(
                f"{where}: {unit.model} reads control images at 1/{factor} of their size, the model's latents are "
                f"1/{model.vae_scale_factor} of the image's (a ControlNet for another VAE)"
            )
        if crop is not None:
            x, y, w, h = crop
            image = control_preprocessors.control_image(unit, *whole_size).crop((x, y, x + w, y + h))
            image = image.resize((width, height))
        else:
            image = control_preprocessors.control_image(unit, width, height)
        pixels = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        if net.config.conditioning_channels == 1:
            pixels = pixels[..., :1]
        tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(model.device, model.dtype)
        if net.config.controlnet_conditioning_channel_order == "bgr":
            tensor = tensor.flip(1)
        count = len(net.controlnet_down_blocks) + 1
        soft = unit.control_mode != "Balanced" or (hires_pass and unit.module in HIRES_SOFT_MODULES)
        inputs.append(
            ControlInput(
                net,
                tensor,
                residual_scales(unit, count, soft),
                unit.guidance_start,
                unit.guidance_end,
                prompt_only=unit.control_mode == "ControlNet is more important",
            )
        )
    return inputs


def step_residuals(
    controls: list[ControlInput],
    step_index: int,
    steps: int,
    model_input: torch.Tensor,
    timestep,
    text: torch.Tensor,
    denoiser_kwargs: dict,
    prompt_half,
) -> dict:
    """The UNet's residual arguments for this step (rows: negatives, then prompts), summed over the acting units;
    {} when none acts. `prompt_half(text, kwargs)` gives the prompts' half of the text inputs."""
    total: list[torch.Tensor] | None = None
    for control in controls:
        if not control.acts_at(step_index, steps):
            continue
        rows, unit_text, unit_kwargs = model_input, text, denoiser_kwargs
        if control.prompt_only:
            rows = model_input.chunk(2)[1]
            unit_text, unit_kwargs = prompt_half(text, denoiser_kwargs)
        rows = rows[:, : control.net.config.in_channels]  # an inpainting UNet's extra channels are not its input
        down, middle = control.net(
            rows,
            timestep,
            encoder_hidden_states=unit_text,
            controlnet_cond=control.image.expand(rows.shape[0], -1, -1, -1),
            return_dict=False,
            **unit_kwargs,
        )
        outputs = [residual * scale for residual, scale in zip([*down, middle], control.scales)]
        if control.prompt_only:
            outputs = [torch.cat([torch.zeros_like(output), output]) for output in outputs]
        total = outputs if total is None else [sum_ + output for sum_, output in zip(total, outputs)]
    if total is None:
        return {}
    return {"down_block_additional_residuals": total[:-1], "mid_block_additional_residual": total[-1]}


def prompt_rows(residuals: dict) -> dict:
    """The prompts' half of the residual arguments (for a perturbed evaluation of the prompts alone)."""
    if not residuals:
        return {}
    return {
        "down_block_additional_residuals": [r.chunk(2)[1] for r in residuals["down_block_additional_residuals"]],
        "mid_block_additional_residual": residuals["mid_block_additional_residual"].chunk(2)[1],
    }


def titled(units: list[ControlNetUnit]) -> list[ControlNetUnit]:
    """The active units as the infotext records them: preprocessor parameters resolved, the model by its title."""
    if not any(unit.active for unit in units):
        return []
    available = list_controlnets()
    return [
        dataclasses.replace(unit.resolved(), model=find_controlnet(unit.model, available=available).title)
        for unit in units
        if unit.active
    ]

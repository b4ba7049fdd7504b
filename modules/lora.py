"""LoRAs applied to a loaded model for the images that ask for them, with diffusers' LoRA loading (PEFT backend).

A LoRA file (kohya/webui or diffusers/PEFT key layout, or the mix diffusers' training scripts save; diffusers'
converters bring each to PEFT's) is loaded once into the model as a named PEFT adapter and stays there, inactive,
for later jobs (up to MAX_LOADED_ADAPTERS, the least recently used one deleted beyond that). A batch runs with the
adapters' weights set (`set_weights_and_activate_adapters`) and the adapters disabled again afterwards: PEFT keeps
the base weights untouched (nothing is fused), so a job without LoRAs, or with weight 0, computes exactly what the
base model computes.

UNet layers go through diffusers' `load_lora_weights`. Text-encoder layers (kohya `lora_te_`, SDXL `lora_te1_` /
`lora_te2_`; diffusers `text_encoder.` / `text_encoder_2.`) cannot: diffusers hands them to transformers 5.24's
PEFT integration, which asks for peft >= 0.22, not yet released. So diffusers' `lora_state_dict` converts their keys
(and kohya alphas) to diffusers' naming, its `convert_state_dict_to_peft` to PEFT's, its `get_peft_kwargs` makes the
rank/alpha config, and peft's own `inject_adapter_in_model` + `set_peft_model_state_dict` put the layers into each
text encoder under the same adapter name as the UNet's. Switching, disabling, deleting and unloading then use
diffusers' functions that work on any module holding PEFT layers. While text-encoder LoRAs are applied,
`LoadedModel.text_encoder_loras` names them with their weights: the prompt cache keys on it.

On the flow-matching transformers (SD 3, FLUX) a file's transformer layers go to diffusers' own SD 3 / FLUX loaders,
which read the diffusers/PEFT layout and convert the kohya and BFL/ComfyUI ones themselves; their CLIP encoders'
layers (kohya `lora_te1_` / `lora_te2_`, diffusers `text_encoder.` / `text_encoder_2.`) go in as SDXL's do. Layers
for T5 are refused with a clear error.

A LoRA applies to a whole batch; `split_batches` cuts a batch into consecutive runs of images that ask for the same
LoRAs (a sweep over a LoRA weight thus never mixes weights in one UNet call).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

from modules import extra_networks
from modules.extra_networks import LoraTag, NetworkFile

MAX_LOADED_ADAPTERS = 8
_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "te_", "te1_", "te2_")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")  # the pipeline attributes, and the diffusers key prefixes
_COMPONENTS = ("unet", "transformer", *TEXT_ENCODERS)


@dataclass
class LoraLayers:
    """A LoRA file's layers in PEFT naming: the denoiser's (for `load_lora_weights`; a flow transformer's as the file
    has them, for diffusers to convert) and each text encoder's, with the file's alphas for those (PEFT module name
    -> alpha)."""

    denoiser: dict
    text_encoders: dict[str, tuple[dict, dict]] = field(default_factory=dict)


def adapter_name(network: NetworkFile) -> str:
    """PEFT adapter names are module attribute keys: word characters only; the hash tells two files apart."""
    return re.sub(r"\W", "_", network.name) + "_" + network.shorthash


def loaded_adapters(model) -> OrderedDict:
    """adapter name -> NetworkFile of the LoRAs loaded into `model` (a LoadedModel), least recently used first."""
    return model.networks.setdefault("lora_adapters", OrderedDict())


def read_state_dict(network: NetworkFile, pipeline, flow: bool = False) -> LoraLayers:
    import safetensors.torch
    from diffusers.utils import convert_unet_state_dict_to_peft

    state_dict = safetensors.torch.load_file(network.path)
    text_encoder_tensors = {key: value for key, value in state_dict.items() if key.startswith(_TEXT_ENCODER_PREFIXES)}
    unet_tensors = {key: value for key, value in state_dict.items() if key not in text_encoder_tensors}
    if flow:
        from diffusers import StableDiffusionXLPipeline

        # Their CLIP encoders are named as SDXL's (kohya lora_te1_/lora_te2_, diffusers text_encoder./text_encoder_2.):
        # SDXL's converter reads those layers; diffusers' SD 3 / FLUX converters read the transformer's.
        encoders = text_encoder_layers(network, pipeline, text_encoder_tensors, StableDiffusionXLPipeline)
        return LoraLayers(unet_tensors, encoders)
    # diffusers reads a whole file in the layout of its first key. Files saved as diffusers' training scripts do
    # (`convert_state_dict_to_diffusers`) rename only the attention projections (`to_q.lora.down`), and the keys in
    # the other layout were dropped without a word. So all keys to PEFT's first (kohya keys match no pattern).
    return LoraLayers(
        convert_unet_state_dict_to_peft(unet_tensors), text_encoder_layers(network, pipeline, text_encoder_tensors)
    )


def _to_peft_keys(state_dict: dict) -> dict:
    """diffusers' text-encoder LoRA names (old `to_q_lora.down`, `lora_linear_layer.down`, which its kohya converter
    mixes in one dict) to PEFT's. The types are given: diffusers' guess fails on a file without an `out_proj` layer."""
    from diffusers.utils import convert_state_dict_to_peft
    from diffusers.utils.state_dict_utils import StateDictType

    state_dict = convert_state_dict_to_peft(state_dict, original_type=StateDictType.DIFFUSERS_OLD)
    return convert_state_dict_to_peft(state_dict, original_type=StateDictType.DIFFUSERS)


def text_encoder_layers(network: NetworkFile, pipeline, tensors: dict, converter=None) -> dict[str, tuple[dict, dict]]:
    """text encoder attribute -> (PEFT state dict, PEFT module name -> alpha), by diffusers' converters (those of
    `converter`, a pipeline class; default: the pipeline's own)."""
    if not tensors:
        return {}
    import torch

    def refused(reason: str) -> ValueError:
        return ValueError(f"prompt: LoRA {network.name!r} ({network.path}): text-encoder layers {reason}")

    try:
        with _quiet_diffusers():
            converted, alphas = (converter or type(pipeline)).lora_state_dict(dict(tensors))[:2]
    except Exception as error:  # diffusers' converters raise assorted errors on layouts they do not know
        raise refused(f"in a key layout diffusers cannot convert ({next(iter(tensors))}, ...): {error}") from error
    alphas = alphas or {}
    unknown = [key for key in converted if not key.startswith(tuple(prefix + "." for prefix in TEXT_ENCODERS))]
    if unknown:
        raise refused(f"in an unknown key layout ({unknown[0]}, ...)")
    layers = {}
    for component in TEXT_ENCODERS:
        prefix = component + "."
        part = _to_peft_keys({key[len(prefix) :]: value for key, value in converted.items() if key.startswith(prefix)})
        if not part:
            continue
        encoder = getattr(pipeline, component, None)
        if encoder is None:
            raise refused(f"for {component}, which this model has not")
        if "CLIP" not in type(encoder).__name__:  # FLUX's text_encoder_2 is T5
            raise refused(f"for {component}, a {type(encoder).__name__}: LoRA layers apply to CLIP text encoders")
        # The alphas' keys name a LoRA layer's down weight in diffusers' naming: to PEFT's module names.
        module_alphas = {}
        for key, alpha in alphas.items():
            if key.startswith(prefix):
                peft_key = next(iter(_to_peft_keys({key[len(prefix) :].removesuffix(".alpha"): torch.empty(0)})))
                module_alphas[peft_key.split(".lora_A.")[0]] = alpha
        if not hasattr(encoder, "text_model"):  # transformers 5's CLIP text models are flat (no `text_model.`)
            part = {key.removeprefix("text_model."): value for key, value in part.items()}
            module_alphas = {key.removeprefix("text_model."): value for key, value in module_alphas.items()}
        odd = [key for key in part if not re.search(r"\.lora_[AB]\.weight$", key)]
        if odd:
            raise refused(f"in an unsupported layout ({odd[0]}, ...)")
        layers[component] = (part, module_alphas)
    return layers


def _inject_text_encoder(network: NetworkFile, encoder, name: str, state_dict: dict, alphas: dict) -> None:
    """PEFT LoRA layers into a text encoder without transformers' integration (peft's low-level API)."""
    from diffusers.utils.peft_utils import get_peft_kwargs
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    ranks = {key: value.shape[1] for key, value in state_dict.items() if key.endswith(".lora_B.weight")}
    # Alphas keyed `<module>.alpha` read as the UNet's (`is_unet`): a full module name per alpha that differs.
    network_alphas = {f"{module}.alpha": alpha for module, alpha in alphas.items()} or None
    config = LoraConfig(**get_peft_kwargs(ranks, network_alphas, state_dict, is_unet=True))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Already found a `peft_config` attribute": several adapters, as meant
            inject_adapter_in_model(config, encoder, adapter_name=name)
            result = set_peft_model_state_dict(encoder, state_dict, adapter_name=name)
    except (ValueError, RuntimeError, KeyError) as error:
        raise ValueError(
            f"prompt: LoRA {network.name!r} ({network.path}): its text-encoder layers do not fit this model: {error}"
        ) from error
    unexpected = [key for key in getattr(result, "unexpected_keys", []) if "lora_" in key]
    missing = [key for key in getattr(result, "missing_keys", []) if "lora_" in key and name in key]
    if unexpected or missing:
        raise ValueError(
            f"prompt: LoRA {network.name!r} ({network.path}): text-encoder layers that do not fit this model "
            f"({(unexpected or missing)[0]}, ...)"
        )


@contextlib.contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns that a UNet-only LoRA has no text-encoder keys; that is expected here."""
    from diffusers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _components(pipeline) -> list:
    """The pipeline's modules that hold PEFT LoRA layers (the UNet or transformer, text encoders)."""
    return [
        module
        for module in (getattr(pipeline, component, None) for component in _COMPONENTS)
        if module is not None and getattr(module, "peft_config", None)
    ]


def _delete_adapter(pipeline, name: str) -> None:
    """Remove one adapter's layers from every module that holds them."""
    from diffusers.utils.peft_utils import delete_adapter_layers

    for module in _components(pipeline):
        if name not in module.peft_config:
            continue
        if module is getattr(pipeline, "unet", None) or module is getattr(pipeline, "transformer", None):
            module.delete_adapters(name)
        else:
            delete_adapter_layers(module, name)
            module.peft_config.pop(name, None)  # diffusers does this only under transformers' integration
            if not module.peft_config:
                del module.peft_config


def _set_enabled(pipeline, enabled: bool) -> None:
    from diffusers.utils.peft_utils import set_adapter_layers

    for module in _components(pipeline):
        set_adapter_layers(module, enabled=enabled)


def ensure_loaded(model, network: NetworkFile) -> str:
    """Load `network` into the model's denoiser and text encoders (once) and return its adapter name."""
    adapters = loaded_adapters(model)
    name = adapter_name(network)
    if name in adapters:
        adapters.move_to_end(name)
        return name
    pipeline = model.pipeline
    layers = read_state_dict(network, pipeline, model.family.flow)
    try:
        for component, (state_dict, alphas) in layers.text_encoders.items():
            _inject_text_encoder(network, getattr(pipeline, component), name, state_dict, alphas)
        if layers.denoiser or not layers.text_encoders:  # a file with no layers at all gets diffusers' own error
            with _quiet_diffusers():
                pipeline.load_lora_weights(layers.denoiser, adapter_name=name)
    except BaseException:
        _delete_adapter(pipeline, name)  # nothing half-loaded stays behind
        raise
    finally:
        _set_enabled(pipeline, False)  # loaded, not applied: a batch enables what it asks for
    adapters[name] = network
    while len(adapters) > MAX_LOADED_ADAPTERS:
        oldest, _ = adapters.popitem(last=False)
        _delete_adapter(pipeline, oldest)
    return name


def has_text_encoder_layers(model, name: str) -> bool:
    pipeline = model.pipeline
    return any(name in getattr(getattr(pipeline, te, None), "peft_config", {}) for te in TEXT_ENCODERS)


def unload_all(model) -> None:
    """Remove every LoRA layer (diffusers' `unload_lora_weights`): the model's modules are the base ones again."""
    if loaded_adapters(model):
        model.pipeline.unload_lora_weights()
        loaded_adapters(model).clear()


@contextlib.contextmanager
def applied(model, tags: list[LoraTag], available: dict[str, NetworkFile]) -> Iterator[None]:
    """The model with these LoRAs at their weights for the duration of the block. Weight 0 applies nothing."""
    from diffusers.utils.peft_utils import set_weights_and_activate_adapters

    active = [(ensure_loaded(model, extra_networks.find_lora(tag.name, available)), tag.weight) for tag in tags]
    active = [(name, weight) for name, weight in active if weight != 0]
    if not active:
        yield
        return
    pipeline = model.pipeline
    names, weights = [name for name, _ in active], [weight for _, weight in active]
    for module in _components(pipeline):
        set_weights_and_activate_adapters(module, names, weights)
    _set_enabled(pipeline, True)
    model.text_encoder_loras = tuple((name, weight) for name, weight in active if has_text_encoder_layers(model, name))
    try:
        yield
    finally:
        model.text_encoder_loras = ()
        _set_enabled(pipeline, False)


def split_batches(batches: list[range], tags_of_image) -> list[tuple[list[int], list[LoraTag]]]:
    """Each batch cut into consecutive runs of images with the same LoRA tags: (indices, tags) per run."""
    runs = []
    for batch in batches:
        for index in batch:
            tags = tags_of_image(index)
            if runs and runs[-1][1] == tags and runs[-1][0][-1] == index - 1 and runs[-1][0][0] >= batch.start:
                runs[-1][0].append(index)
            else:
                runs.append(([index], tags))
    return runs

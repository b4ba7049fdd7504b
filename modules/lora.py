"""LoRAs applied to a loaded model for the images that ask for them, with diffusers' LoRA loading (PEFT backend).

A LoRA file (kohya/webui or diffusers/PEFT key layout, or the mix diffusers' training scripts save; diffusers'
converters bring each to PEFT's) is loaded once into the model's UNet as a named PEFT adapter and stays there,
inactive, for later jobs (up to MAX_LOADED_ADAPTERS, the least recently used one deleted beyond that). A batch runs
with `set_adapters(names, weights)` and the adapters disabled again afterwards: PEFT keeps the base weights untouched
(nothing is fused), so a job without LoRAs, or with weight 0, computes exactly what the base model computes.

A LoRA applies to a whole batch; `split_batches` cuts a batch into consecutive runs of images that ask for the same
LoRAs (a sweep over a LoRA weight thus never mixes weights in one UNet call).

Text-encoder LoRA layers are refused with a clear error: transformers 5.24's PEFT integration, which diffusers uses
for them, asks for peft >= 0.22, not yet released (UNet layers go through diffusers' own integration).
"""

from __future__ import annotations

import contextlib
import re
from collections import OrderedDict
from collections.abc import Iterator

from modules import extra_networks
from modules.extra_networks import LoraTag, NetworkFile

MAX_LOADED_ADAPTERS = 8
_TEXT_ENCODER_PREFIXES = ("lora_te", "text_encoder", "te_", "te1_", "te2_")


def adapter_name(network: NetworkFile) -> str:
    """PEFT adapter names are module attribute keys: word characters only; the hash tells two files apart."""
    return re.sub(r"\W", "_", network.name) + "_" + network.shorthash


def loaded_adapters(model) -> OrderedDict:
    """adapter name -> NetworkFile of the LoRAs loaded into `model` (a LoadedModel), least recently used first."""
    return model.networks.setdefault("lora_adapters", OrderedDict())


def read_state_dict(network: NetworkFile) -> dict:
    import safetensors.torch

    state_dict = safetensors.torch.load_file(network.path)
    text_encoder_keys = [key for key in state_dict if key.startswith(_TEXT_ENCODER_PREFIXES)]
    if text_encoder_keys:
        raise ValueError(
            f"prompt: LoRA {network.name!r} has text-encoder layers ({text_encoder_keys[0]}, ...); Serena applies "
            "UNet LoRA layers only (text-encoder LoRA in transformers 5.24 needs peft >= 0.22, not yet released)"
        )
    from diffusers.utils import convert_unet_state_dict_to_peft

    # diffusers reads a whole file in the layout of its first key. Files saved as diffusers' training scripts do
    # (`convert_state_dict_to_diffusers`) rename only the attention projections (`to_q.lora.down`), and the keys in
    # the other layout were dropped without a word. So all keys to PEFT's first (kohya keys match no pattern).
    return convert_unet_state_dict_to_peft(state_dict)


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


def ensure_loaded(model, network: NetworkFile) -> str:
    """Load `network` into the model's UNet (once) and return its adapter name."""
    adapters = loaded_adapters(model)
    name = adapter_name(network)
    if name in adapters:
        adapters.move_to_end(name)
        return name
    state_dict = read_state_dict(network)
    with _quiet_diffusers():
        model.pipeline.load_lora_weights(state_dict, adapter_name=name)
    model.pipeline.disable_lora()  # loaded, not applied: a batch enables what it asks for
    adapters[name] = network
    while len(adapters) > MAX_LOADED_ADAPTERS:
        oldest, _ = adapters.popitem(last=False)
        model.pipeline.delete_adapters(oldest)
    return name


def unload_all(model) -> None:
    """Remove every LoRA layer (diffusers' `unload_lora_weights`): the model's modules are the base ones again."""
    if loaded_adapters(model):
        model.pipeline.unload_lora_weights()
        loaded_adapters(model).clear()


@contextlib.contextmanager
def applied(model, tags: list[LoraTag], available: dict[str, NetworkFile]) -> Iterator[None]:
    """The model with these LoRAs at their weights for the duration of the block. Weight 0 applies nothing."""
    active = [(ensure_loaded(model, extra_networks.find_lora(tag.name, available)), tag.weight) for tag in tags]
    active = [(name, weight) for name, weight in active if weight != 0]
    if not active:
        yield
        return
    pipeline = model.pipeline
    pipeline.set_adapters([name for name, _ in active], adapter_weights=[weight for _, weight in active])
    pipeline.enable_lora()
    try:
        yield
    finally:
        pipeline.disable_lora()


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

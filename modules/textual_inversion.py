"""Textual-inversion embeddings: an embedding file's name written in a prompt stands for the file's vectors.

Files (webui formats): `.safetensors` with `emb_params` (or a flat `string_to_param.*`), or a single tensor; `.pt`
(`string_to_param: {"*": tensor}`) only with the explicit pickle allowance, SERENA_ALLOW_PICKLE_EMBEDDINGS=1, and
then read with `torch.load(weights_only=True)`. An embedding of n vectors takes n token positions.

Before a job's prompts are encoded, `prepare` loads the embeddings they mention into the model's tokenizer and text
encoder with diffusers' `load_textual_inversion` (added tokens `name`, `name_1`, ...; the base vocabulary's rows are
not touched); `expand`, the one hook in prompt encoding, writes a multi-vector name as its n tokens. Loaded
embeddings stay for later jobs; loading one clears the model's prompt cache, whose texts may now mean something else.
"""

from __future__ import annotations

import functools
import os
import re

from modules import extra_networks
from modules.extra_networks import NetworkFile

ALLOW_PICKLE_ENV = "SERENA_ALLOW_PICKLE_EMBEDDINGS"


def loaded_embeddings(model) -> dict[str, NetworkFile]:
    return model.networks.setdefault("embeddings", {})


def read_tensors(network: NetworkFile) -> dict:
    """The file's tensors. ValueError for a pickle file without the allowance."""
    import torch

    if network.is_pickle:
        if os.environ.get(ALLOW_PICKLE_ENV) != "1":
            raise ValueError(
                f"prompt: embedding {network.name!r} is a pickle file ({network.path.name}), which can run code when "
                f"loaded; set {ALLOW_PICKLE_ENV}=1 to allow it, or convert it to .safetensors"
            )
        data = torch.load(network.path, map_location="cpu", weights_only=True)
        return {"": data} if isinstance(data, torch.Tensor) else data
    import safetensors.torch

    return safetensors.torch.load_file(network.path)


def read_vectors(network: NetworkFile, encoder_key: str | None = None):
    """The embedding's vectors, (n, dim); `encoder_key` ("clip_l", "clip_g") picks an SDXL embedding's set.
    ValueError for a pickle file without the allowance or an unknown layout."""
    data = read_tensors(network)
    if encoder_key is not None and encoder_key in data:
        vectors = data[encoder_key]
    elif "emb_params" in data:
        vectors = data["emb_params"]
    elif isinstance(data.get("string_to_param"), dict):
        vectors = data["string_to_param"]["*"]
    elif "string_to_param.*" in data:
        vectors = data["string_to_param.*"]
    elif len(data) == 1:
        vectors = next(iter(data.values()))
    else:
        raise ValueError(
            f"prompt: embedding {network.name!r} ({network.path.name}) has none of the webui's keys "
            f"(emb_params, string_to_param{', ' + encoder_key if encoder_key else ''}); "
            f"keys: {', '.join(sorted(map(str, data)))}"
        )
    return vectors.reshape(-1, vectors.shape[-1]).float()


def encoder_slots(pipeline) -> list[tuple[str | None, object, object]]:
    """(SDXL vector key, tokenizer, text encoder) for each CLIP text encoder of the pipeline (SD 3's are SDXL's pair;
    FLUX's one is CLIP-L: an SDXL embedding's `clip_l` vectors, or an SD 1.x embedding's)."""
    second = getattr(pipeline, "text_encoder_2", None)
    if second is None or "CLIP" not in type(second).__name__:  # FLUX's second encoder is T5
        return [(None if second is None else "clip_l", pipeline.tokenizer, pipeline.text_encoder)]
    slots = [("clip_g", pipeline.tokenizer_2, pipeline.text_encoder_2)]
    if getattr(pipeline, "text_encoder", None) is not None:
        slots.insert(0, ("clip_l", pipeline.tokenizer, pipeline.text_encoder))
    return slots


def loader(pipeline):
    """The pipeline with diffusers' textual-inversion loader: its own, or (SD 3's pipeline has none; its CLIP
    encoders take embeddings as SDXL's) the loader's methods over it."""
    from diffusers.loaders import TextualInversionLoaderMixin

    if isinstance(pipeline, TextualInversionLoaderMixin):
        return pipeline
    return _loader_class(TextualInversionLoaderMixin)(pipeline)


@functools.cache
def _loader_class(mixin):
    class Loader(mixin):
        """diffusers' textual-inversion methods over a pipeline whose class lacks them."""

        def __init__(self, pipeline):
            self._pipeline = pipeline

        def __getattr__(self, name):  # only for what the loader itself has not
            return getattr(self._pipeline, name)

    return Loader


def vector_tokens(tokenizer, name: str) -> list[str]:
    return [t for t in tokenizer.added_tokens_encoder if t == name or re.fullmatch(re.escape(name) + r"_\d+", t)]


def prepare(model, prompts: list[str]) -> list[NetworkFile]:
    """Load the embeddings the prompts mention (once; again when the file changed) and return them."""
    pipeline = model.pipeline
    wanted = extra_networks.mentioned_embeddings(prompts, extra_networks.list_embeddings())
    loaded = loaded_embeddings(model)
    for network in wanted:
        current = loaded.get(network.name)
        if current is not None and current.sha256 == network.sha256:
            continue
        for key, tokenizer, text_encoder in encoder_slots(pipeline):
            vectors = read_vectors(network, key)
            width = text_encoder.get_input_embeddings().weight.shape[1]
            if vectors.shape[1] != width:
                raise ValueError(
                    f"prompt: embedding {network.name!r} has vectors of size {vectors.shape[1]}, this model's text "
                    f"encoder takes {width} (an embedding for another model)"
                )
            if current is not None:
                loader(pipeline).unload_textual_inversion(
                    vector_tokens(tokenizer, network.name), tokenizer=tokenizer, text_encoder=text_encoder
                )
            loader(pipeline).load_textual_inversion(
                vectors.to(model.dtype), token=network.name, tokenizer=tokenizer, text_encoder=text_encoder
            )
        loaded[network.name] = network
        model.prompt_cache.clear()
    return wanted


def expand(model, text: str, tokenizer=None) -> str:
    """A fragment's text with each loaded multi-vector embedding name written as its tokens (`name name_1 ...`)."""
    if not loaded_embeddings(model):
        return text
    return loader(model.pipeline).maybe_convert_prompt(text, tokenizer or encoder_slots(model.pipeline)[0][1])


def unload_all(model) -> None:
    """Drop every loaded embedding (the tokenizers and text encoders return to the base vocabulary)."""
    if loaded_embeddings(model):
        for _, tokenizer, text_encoder in encoder_slots(model.pipeline):
            loader(model.pipeline).unload_textual_inversion(tokenizer=tokenizer, text_encoder=text_encoder)
        loaded_embeddings(model).clear()
        model.prompt_cache.clear()


def describe(network: NetworkFile, width: int) -> tuple[bool, dict]:
    """(usable with a text encoder of this width, the webui's /sdapi/v1/embeddings item). A pickle file without the
    allowance is not read: not usable, shape and vectors 0."""
    try:
        vectors = read_vectors(network)
    except ValueError:
        return False, {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": 0, "vectors": 0}
    item = {
        "step": None,
        "sd_checkpoint": None,
        "sd_checkpoint_name": None,
        "shape": int(vectors.shape[1]),
        "vectors": int(vectors.shape[0]),
    }
    return vectors.shape[1] == width, item


def list_for_model(width: int) -> dict[str, dict]:
    """The webui's embeddings listing: {"loaded": {name: item}, "skipped": {name: item}} for a text encoder width."""
    listing = {"loaded": {}, "skipped": {}}
    for name, network in extra_networks.list_embeddings().items():
        usable, item = describe(network, width)
        listing["loaded" if usable else "skipped"][name] = item
    return listing

"""A prompt's text-encoder embedding with the webui's semantics (its `FrozenCLIPEmbedderWithCustomWords`).

A text is read into weighted fragments (modules.prompt_parser), each fragment tokenized on its own, and the tokens
laid out in chunks of 75: a chunk that would overflow ends at its last comma when that comma is among its last
`COMMA_BACKTRACK` tokens, and `BREAK` ends a chunk. Each chunk is encoded as its own 77-token sequence (start
token, 75 tokens padded with end tokens, end token), its weights applied to the encoder's output by the emphasis
mode (modules.emphasis), and the chunks' embeddings are concatenated: (1, 77 x chunks, dim).

A text without prompt syntax and up to 75 tokens is one chunk of exactly the token ids (and so the embedding)
that diffusers' `encode_prompt` gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from modules import emphasis, prompt_parser, textual_inversion
from modules.sd_models import LoadedModel

CHUNK_LENGTH = 75  # prompt tokens per chunk; with the start and end tokens a chunk is the encoder's 77
COMMA_BACKTRACK = 20  # the webui's default "comma_padding_backtrack"
PROMPT_CACHE_SIZE = 256


@dataclass
class Chunk:
    """Up to CHUNK_LENGTH prompt tokens and their weights (start and end tokens not included)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def tokenize_fragment(model: LoadedModel, text: str) -> list[int]:
    """The token ids of one fragment of prompt text, without start/end tokens. The one place text becomes tokens
    (textual-inversion embeddings expand their names here)."""
    text = textual_inversion.expand(model, text)  # a multi-vector embedding's name -> its tokens
    return model.pipeline.tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def comma_token(model: LoadedModel) -> int | None:
    return model.pipeline.tokenizer.get_vocab().get(",</w>")


def weighted_segments(text: str, emphasis_mode: str) -> list[list[prompt_parser.Fragment]]:
    if not prompt_parser.has_syntax(text) or not emphasis.parses_brackets(emphasis_mode):
        return [[prompt_parser.Fragment(text)]]
    return prompt_parser.parse_emphasis(text)


def chunk_tokens(
    segments: list[list[tuple[list[int], float]]], comma: int | None, backtrack: int = COMMA_BACKTRACK
) -> list[Chunk]:
    """Lay out the (tokens, weight) fragments of BREAK-separated segments in chunks, as the webui does."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    last_comma = -1  # position of the current chunk's last comma

    def close_chunk() -> None:
        nonlocal chunk, last_comma
        chunks.append(chunk)
        chunk, last_comma = Chunk(), -1

    for segment_number, segment in enumerate(segments):
        if segment_number:  # BREAK
            close_chunk()
        for tokens, weight in segment:
            for token in tokens:
                if token == comma:
                    last_comma = len(chunk.tokens)
                elif backtrack and len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1:
                    if len(chunk.tokens) - last_comma <= backtrack:  # move the words after the comma on
                        moved = Chunk(chunk.tokens[last_comma + 1 :], chunk.weights[last_comma + 1 :])
                        del chunk.tokens[last_comma + 1 :], chunk.weights[last_comma + 1 :]
                        close_chunk()
                        chunk = moved
                if len(chunk.tokens) == CHUNK_LENGTH:
                    close_chunk()
                chunk.tokens.append(token)
                chunk.weights.append(weight)
    if chunk.tokens or not chunks:
        close_chunk()
    return chunks


def prompt_chunks(model: LoadedModel, text: str, emphasis_mode: str) -> list[Chunk]:
    segments = [
        [(tokenize_fragment(model, fragment.text), fragment.weight) for fragment in segment]
        for segment in weighted_segments(text, emphasis_mode)
    ]
    return chunk_tokens(segments, comma_token(model))


def chunk_ids(model: LoadedModel, chunk: Chunk) -> tuple[list[int], int]:
    """The chunk's 77 token ids (start, tokens, end, padding) and how many of them are not padding."""
    tokenizer = model.pipeline.tokenizer
    ids = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id]
    return ids + [tokenizer.pad_token_id] * (CHUNK_LENGTH + 2 - len(ids)), len(ids)


def encode_ids(model: LoadedModel, ids: list[int], length: int, clip_skip: int) -> torch.Tensor:
    """The encoder's output (1, 77, dim) for one chunk, as diffusers' `encode_prompt` computes it.

    `clip_skip` counts like the webui: 1 is the last layer, 2 the one before it (then the final layer norm).
    """
    text_encoder = model.pipeline.text_encoder
    input_ids = torch.tensor([ids], device=model.device)
    attention_mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):  # absent from CLIP's config, as in diffusers
        attention_mask = (torch.arange(len(ids), device=model.device) < length).long().unsqueeze(0)
    if clip_skip == 1:
        return text_encoder(input_ids, attention_mask=attention_mask)[0]
    output = text_encoder(input_ids, attention_mask=attention_mask, output_hidden_states=True)
    # transformers 5's CLIPTextModel has the layer norm at the top level (older versions: under text_model).
    final_layer_norm = getattr(text_encoder, "text_model", text_encoder).final_layer_norm
    return final_layer_norm(output.hidden_states[-clip_skip])


def encode_chunk(model: LoadedModel, chunk: Chunk, clip_skip: int, emphasis_mode: str) -> torch.Tensor:
    ids, length = chunk_ids(model, chunk)
    z = encode_ids(model, ids, length, clip_skip)
    weights = [1.0, *chunk.weights] + [1.0] * (CHUNK_LENGTH + 1 - len(chunk.weights))
    if all(weight == 1.0 for weight in weights):  # every mode leaves unweighted chunks as they are
        return z
    return emphasis.MODES[emphasis_mode](z, torch.tensor(weights, device=z.device, dtype=z.dtype))


def encode_text(model: LoadedModel, text: str, clip_skip: int, emphasis_mode: str = emphasis.DEFAULT) -> torch.Tensor:
    """One plain text's embedding (1, 77 x chunks, dim), kept in the model's prompt cache: a sweep over seeds or
    CFG re-encodes nothing, and a text's embedding does not depend on the other texts of its batch."""
    key = (text, clip_skip, emphasis_mode)
    if key in model.prompt_cache:
        return model.prompt_cache[key]
    chunks = prompt_chunks(model, text, emphasis_mode)
    embedding = torch.cat([encode_chunk(model, chunk, clip_skip, emphasis_mode) for chunk in chunks], dim=1)
    embedding = embedding.to(dtype=model.dtype, device=model.device)
    if len(model.prompt_cache) >= PROMPT_CACHE_SIZE:
        model.prompt_cache.pop(next(iter(model.prompt_cache)))  # drop the oldest
    model.prompt_cache[key] = embedding
    return embedding


def pad_to_chunks(model: LoadedModel, embedding: torch.Tensor, tokens: int, clip_skip: int) -> torch.Tensor:
    """`embedding` lengthened to `tokens` with empty chunks (the encoding of ""), as the webui pads a prompt and
    its negative prompt to the same length."""
    missing = (tokens - embedding.shape[1]) // (CHUNK_LENGTH + 2)
    if missing == 0:
        return embedding
    empty = encode_text(model, "", clip_skip)
    return torch.cat([embedding, *[empty] * missing], dim=1)

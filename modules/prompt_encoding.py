"""A prompt's text-encoder embedding with the webui's semantics (its `FrozenCLIPEmbedderWithCustomWords`).

A text is read into weighted fragments (modules.prompt_parser), each fragment tokenized on its own, and the tokens
laid out in chunks of 75: a chunk that would overflow ends at its last comma when that comma is among its last
`COMMA_BACKTRACK` tokens, and `BREAK` ends a chunk. Each chunk is encoded as its own 77-token sequence (start
token, 75 tokens padded with end tokens, end token), its weights applied to the encoder's output by the emphasis
mode (modules.emphasis), and the chunks' embeddings are concatenated: (1, 77 x chunks, dim).

A text without prompt syntax and up to 75 tokens is one chunk of exactly the token ids (and so the embedding)
that diffusers' `encode_prompt` gives.

SDXL (the webui's `sd_models_xl` and diffusers' `StableDiffusionXLPipeline.encode_prompt`): each text encoder
tokenizes, chunks and weights the text on its own; each chunk's output is its penultimate layer's hidden states (no
final layer norm; Clip skip does not apply, as in the webui by default), the two encoders' outputs are concatenated
feature-wise, and the pooled embedding is the second encoder's projected output for the first chunk, untouched by
emphasis. The refiner has the second encoder only.

Other families take the CLIP part as their family says (`ModelFamily.text_context`, `pooled_embedding`): SD 3 pads
it to its transformer's width, appends T5's tokens after it and pools both CLIP encoders (modules.families.sd3).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from modules import emphasis, prompt_parser, textual_inversion
from modules.sd_models import LoadedModel

CHUNK_LENGTH = 75  # prompt tokens per chunk; with the start and end tokens a chunk is the encoder's 77
COMMA_BACKTRACK = 20  # the webui's default "comma_padding_backtrack"
PROMPT_CACHE_SIZE = 256


@dataclass(frozen=True)
class TextEncoding:
    """A text's embedding (1, 77 x chunks, dim), for SDXL and SD 3 its pooled embedding (1, pooled dim), and for a
    family with a T5 encoder the tokens that follow the CLIP chunks (`tail`, (1, tokens, dim))."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None
    tail: torch.Tensor | None = None

    @property
    def context(self) -> torch.Tensor:
        """What the denoiser attends to: the CLIP chunks, then the tail."""
        return self.hidden if self.tail is None else torch.cat([self.hidden, self.tail], dim=1)


@dataclass
class Chunk:
    """Up to CHUNK_LENGTH prompt tokens and their weights (start and end tokens not included)."""

    tokens: list[int] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)


def text_encoders(model: LoadedModel) -> list[tuple]:
    """The model's (tokenizer, CLIP text encoder) pairs in concatenation order (its family's `clip_encoders`)."""
    return model.family.clip_encoders(model.pipeline)


def tokenize_fragment(model: LoadedModel, text: str, tokenizer=None) -> list[int]:
    """The token ids of one fragment of prompt text, without start/end tokens. The one place text becomes tokens
    (textual-inversion embeddings expand their names here)."""
    tokenizer = tokenizer or text_encoders(model)[0][0]
    text = textual_inversion.expand(model, text, tokenizer)  # a multi-vector embedding's name -> its tokens
    return tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids


def comma_token(tokenizer) -> int | None:
    return tokenizer.get_vocab().get(",</w>")


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


def prompt_chunks(model: LoadedModel, text: str, emphasis_mode: str, tokenizer=None) -> list[Chunk]:
    tokenizer = tokenizer or text_encoders(model)[0][0]
    segments = [
        [(tokenize_fragment(model, fragment.text, tokenizer), fragment.weight) for fragment in segment]
        for segment in weighted_segments(text, emphasis_mode)
    ]
    return chunk_tokens(segments, comma_token(tokenizer))


def chunk_ids(tokenizer, chunk: Chunk) -> tuple[list[int], int]:
    """The chunk's 77 token ids (start, tokens, end, padding) and how many of them are not padding."""
    ids = [tokenizer.bos_token_id, *chunk.tokens, tokenizer.eos_token_id]
    return ids + [tokenizer.pad_token_id] * (CHUNK_LENGTH + 2 - len(ids)), len(ids)


def encode_ids(
    model: LoadedModel, text_encoder, ids: list[int], length: int, clip_skip: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The encoder's output (1, 77, dim) for one chunk, as diffusers' `encode_prompt` computes it, and its pooled
    output for SDXL's second encoder (None otherwise).

    `clip_skip` counts like the webui: 1 is the last layer, 2 the one before it (then the final layer norm).
    """
    input_ids = torch.tensor([ids], device=model.device)
    attention_mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):  # absent from CLIP's config, as in diffusers
        attention_mask = (torch.arange(len(ids), device=model.device) < length).long().unsqueeze(0)
    return model.family.encoder_output(text_encoder, input_ids, attention_mask, clip_skip)


def encode_chunk(
    model: LoadedModel, tokenizer, text_encoder, chunk: Chunk, clip_skip: int, emphasis_mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids, length = chunk_ids(tokenizer, chunk)
    z, pooled = encode_ids(model, text_encoder, ids, length, clip_skip)
    weights = [1.0, *chunk.weights] + [1.0] * (CHUNK_LENGTH + 1 - len(chunk.weights))
    if all(weight == 1.0 for weight in weights):  # every mode leaves unweighted chunks as they are
        return z, pooled
    return emphasis.MODES[emphasis_mode](z, torch.tensor(weights, device=z.device, dtype=z.dtype)), pooled


def encode_text(model: LoadedModel, text: str, clip_skip: int, emphasis_mode: str = emphasis.DEFAULT) -> torch.Tensor:
    """One plain text's embedding (1, 77 x chunks, dim); see `text_encoding`."""
    return text_encoding(model, text, clip_skip, emphasis_mode).hidden


def text_encoding(model: LoadedModel, text: str, clip_skip: int, emphasis_mode: str = emphasis.DEFAULT) -> TextEncoding:
    """One plain text's encoding, kept in the model's prompt cache: a sweep over seeds or CFG re-encodes nothing,
    and a text's embedding does not depend on the other texts of its batch. Text-encoder LoRAs change the
    encoding, so the ones applied now (with their weights) end the key when there are any."""
    key = (text, clip_skip, emphasis_mode) + ((model.text_encoder_loras,) if model.text_encoder_loras else ())
    if key in model.prompt_cache:
        return model.prompt_cache[key]
    hidden, pooled = [], []
    for tokenizer, text_encoder in text_encoders(model):
        chunks = prompt_chunks(model, text, emphasis_mode, tokenizer)
        encoded = [encode_chunk(model, tokenizer, text_encoder, chunk, clip_skip, emphasis_mode) for chunk in chunks]
        hidden.append(torch.cat([z for z, _ in encoded], dim=1))
        pooled.append(encoded[0][1])  # each encoder's first chunk
    if len({z.shape[1] for z in hidden}) > 1:  # only an embedding of unequal lengths for the two encoders does this
        raise ValueError(f"prompt: {text!r} makes a different number of chunks for the two text encoders")
    context, tail = model.family.text_context(model, torch.cat(hidden, dim=-1), text)
    pooled = model.family.pooled_embedding(pooled)
    encoding = TextEncoding(
        *(None if part is None else part.to(dtype=model.dtype, device=model.device) for part in (context, pooled, tail))
    )
    if len(model.prompt_cache) >= PROMPT_CACHE_SIZE:
        model.prompt_cache.pop(next(iter(model.prompt_cache)))  # drop the oldest
    model.prompt_cache[key] = encoding
    return encoding


def pad_to_chunks(model: LoadedModel, embedding: torch.Tensor, tokens: int, clip_skip: int) -> torch.Tensor:
    """`embedding` lengthened to `tokens` with empty chunks (the encoding of ""), as the webui pads a prompt and
    its negative prompt to the same length."""
    missing = (tokens - embedding.shape[1]) // (CHUNK_LENGTH + 2)
    if missing == 0:
        return embedding
    empty = encode_text(model, "", clip_skip)
    return torch.cat([embedding, *[empty] * missing], dim=1)

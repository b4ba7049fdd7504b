"""Per-token and per-word cross-attention maps of a generation, aggregated as DAAM does (Tang et al., 2023).

A capture wraps the UNet's cross-attention processors (SD 3's: its joint-attention processors) for one job. Each
wrapped processor computes its output with the processor it wraps, untouched, so the image's bytes do not change;
for the prompt half of the guided batch it also computes the attention probabilities from the same query and key,
averages them over heads, resizes them to the latent grid and adds them to a running sum per image. Memory stays
images x sequence x latent grid, whatever the number of steps and layers (per-step sums only with `keep_steps`).

In SD 3's joint attention the image's and the text's tokens attend to both together: a word's map is its CLIP
token's attention to the image's tokens (its query's softmax over every key, the image's columns kept), averaged
over heads. (The other reading, the image queries' attention to the word, localises the shape word less on the
embedded flow model: mean IoU 0.39 against 0.58.) Only the CLIP part of the sequence has word positions (T5's
tokens, after it, are not mapped). FLUX's double-stream blocks are read the same way, with its text first and the
rotary positions applied; its text is T5's alone, so its words are T5's (SentencePiece pieces, the prompt's words
without syntax); its single-stream blocks are not captured.

Defaults (DAAM's): every cross-attention layer of the UNet (every joint block of SD 3), every step, heads averaged,
maps upsampled bicubically to the image; each map is then scaled to [0, 1] by its minimum and maximum (DAAM divides
by the maximum only, which on small models leaves a baseline over the whole image: every token gets some of every
pixel's attention). A word's map is the sum of its tokens' maps (CLIP's byte-pair tokens; a token ending in "</w>"
ends a word). Only the first pass is captured (not a hires pass or a refiner's steps). No diffusers or community
class does this for Serena's own loop: diffusers has attention processors (used here) but no attention-map capture.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

END_OF_WORD = "</w>"
WORD_START = "\u2581"  # SentencePiece's word-start mark


@dataclass
class AttentionMaps:
    """One image's maps: `tokens` are the prompt's tokens in order (no start, end or padding), `positions` where each
    sits in the text encoder's sequence, `words` each word with the indices of its tokens."""

    prompt: str
    tokens: list[str]
    positions: list[int]
    words: list[tuple[str, list[int]]]
    sums: torch.Tensor  # (sequence, latent height, latent width): attention summed over layers and steps
    image_size: tuple[int, int]  # (width, height)
    per_step: list[torch.Tensor] = field(default_factory=list)  # with keep_steps: each step's (sequence, h, w)

    def token_map(self, index: int, sums: torch.Tensor | None = None) -> np.ndarray:
        """Token `index` (of `tokens`)'s map at the image's size, scaled to [0, 1]."""
        return self._upsampled((self.sums if sums is None else sums)[self.positions[index]])

    def word_map(self, word: str | int, steps: range | None = None) -> np.ndarray:
        """A word's map (its tokens' maps summed) at the image's size, scaled to [0, 1]; by the word or its index in
        `words` (the first match of a repeated word). `steps`: only those steps (needs keep_steps)."""
        indices = self._word_tokens(word)
        sums = self.sums if steps is None else self.steps_sum(steps)
        return self._upsampled(sum(sums[self.positions[index]] for index in indices))

    def word_maps(self, steps: range | None = None) -> dict[str, np.ndarray]:
        """Every word's map (a repeated word: its first occurrence)."""
        maps: dict[str, np.ndarray] = {}
        for word, _ in self.words:
            maps.setdefault(word, self.word_map(word, steps))
        return maps

    def steps_sum(self, steps: range) -> torch.Tensor:
        if not self.per_step:
            raise ValueError("steps: per-step maps were not kept; capture with AttentionCapture(keep_steps=True)")
        chosen = list(steps)
        if not chosen or min(chosen) < 0 or max(chosen) >= len(self.per_step):
            raise ValueError(f"steps: {steps!r} is not allowed; allowed step indices 0..{len(self.per_step) - 1}")
        return sum(self.per_step[step] for step in chosen)

    def _word_tokens(self, word: str | int) -> list[int]:
        if isinstance(word, int) and not isinstance(word, bool):
            if not 0 <= word < len(self.words):
                raise ValueError(f"word: {word} is not allowed; allowed word indices 0..{len(self.words) - 1}")
            return self.words[word][1]
        for text, indices in self.words:
            if text == word:
                return indices
        raise ValueError(f"word: {word!r} is not in the prompt; its words: {', '.join(w for w, _ in self.words)}")

    def _upsampled(self, latent_map: torch.Tensor) -> np.ndarray:
        width, height = self.image_size
        image = F.interpolate(latent_map[None, None].float(), size=(height, width), mode="bicubic", align_corners=False)
        image = image[0, 0]
        low, high = image.min(), image.max()
        return ((image - low) / (high - low) if high > low else torch.zeros_like(image)).numpy()


@dataclass
class AttentionCapture:
    """Ask a job for attention maps: `StableDiffusionProcessing(..., attention=AttentionCapture())`; the maps are
    then `Processed.attention_maps`, one AttentionMaps per image. `steps` keeps only steps whose index falls in
    [start, end) as fractions of the steps (DAAM: all); `layers` only the cross-attention layers whose name
    contains one of the given texts (e.g. ("up_blocks",)); `keep_steps` keeps each step's maps too."""

    steps: tuple[float, float] = (0.0, 1.0)
    layers: tuple[str, ...] = ()
    keep_steps: bool = False
    maps: dict[int, AttentionMaps] = field(default_factory=dict, repr=False)  # by image index in the job

    def __post_init__(self):
        start, end = self.steps
        if not 0 <= start < end <= 1:
            raise ValueError(f"steps: {self.steps!r} is not allowed; allowed (start, end) with 0 <= start < end <= 1")


class _Batch:
    """What a capture gathers during one batch's sampling."""

    def __init__(self, capture: AttentionCapture, state, latent_size, total_steps: int, images: int, prompt_only: bool):
        self.capture, self.state, self.latent_size, self.total_steps = capture, state, latent_size, total_steps
        # The guided batch is [negative prompts, prompts]; a flow model at CFG 1 evaluates the prompts alone. Either
        # way a perturbed evaluation (PAG, SLG: the prompts' rows alone beside a guided batch) is not recorded.
        self.images, self.rows = images, images if prompt_only else 2 * images
        self.sums: torch.Tensor | None = None
        self.per_step: list[torch.Tensor] = []

    def recording(self) -> bool:
        start, end = self.capture.steps
        return start * self.total_steps <= self.state.sampling_step < end * self.total_steps

    @torch.no_grad()
    def record(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor) -> None:
        half = hidden_states.shape[0] - self.images  # the prompts' rows come last
        query = attn.to_q(hidden_states[half:])
        context = encoder_hidden_states[half:]
        if attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        key = attn.to_k(context)
        batch, heads = query.shape[0], attn.heads
        head_dim = key.shape[-1] // heads
        query = query.view(batch, -1, heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        probabilities = (query.float() @ key.float().transpose(-1, -2) * attn.scale).softmax(dim=-1).mean(dim=1)
        self.add(probabilities)

    @torch.no_grad()
    def record_joint(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor) -> None:
        """SD 3's joint attention: each text token's probabilities over the image's and the text's keys, the image's
        columns, as (images, image positions, text tokens)."""
        half = hidden_states.shape[0] - self.images
        image, text = hidden_states[half:], encoder_hidden_states[half:]
        batch, heads = image.shape[0], attn.heads

        def split(projected: torch.Tensor) -> torch.Tensor:
            return projected.view(batch, -1, heads, projected.shape[-1] // heads).transpose(1, 2)

        key, text_query, text_key = split(attn.to_k(image)), split(attn.add_q_proj(text)), split(attn.add_k_proj(text))
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if attn.norm_added_q is not None:
            text_query, text_key = attn.norm_added_q(text_query), attn.norm_added_k(text_key)
        keys = torch.cat([key, text_key], dim=2).float()
        probabilities = (text_query.float() @ keys.transpose(-1, -2) * attn.scale).softmax(dim=-1).mean(dim=1)
        self.add(probabilities[..., : key.shape[2]].transpose(1, 2))

    @torch.no_grad()
    def record_flux(self, attn, hidden_states, encoder_hidden_states, image_rotary_emb) -> None:
        """FLUX's double-stream attention: as SD 3's, with the text's tokens first in the sequence and the rotary
        position embedding applied to queries and keys (the text's positions are zeros: unrotated)."""
        from diffusers.models.embeddings import apply_rotary_emb

        half = hidden_states.shape[0] - self.images
        image, text = hidden_states[half:], encoder_hidden_states[half:]
        key = attn.norm_k(attn.to_k(image).unflatten(-1, (-1, attn.head_dim)))
        text_query = attn.norm_added_q(attn.add_q_proj(text).unflatten(-1, (-1, attn.head_dim)))
        text_key = attn.norm_added_k(attn.add_k_proj(text).unflatten(-1, (-1, attn.head_dim)))
        keys = torch.cat([text_key, key], dim=1)
        if image_rotary_emb is not None:
            padded = torch.cat([text_query, torch.zeros_like(key)], dim=1)  # rotated with its positions, then cut
            text_query = apply_rotary_emb(padded, image_rotary_emb, sequence_dim=1)[:, : text.shape[1]]
            keys = apply_rotary_emb(keys, image_rotary_emb, sequence_dim=1)
        scale = attn.head_dim**-0.5
        scores = text_query.transpose(1, 2).float() @ keys.transpose(1, 2).float().transpose(-1, -2) * scale
        probabilities = scores.softmax(dim=-1).mean(dim=1)
        self.add(probabilities[..., text.shape[1] :].transpose(1, 2))

    def add(self, probabilities: torch.Tensor) -> None:
        """(images, latent positions, text tokens) probabilities, summed onto the latent grid per token."""
        batch = probabilities.shape[0]
        height, width = self.latent_size
        scale = round((height * width / probabilities.shape[1]) ** 0.5)  # this layer's grid is the latents' / scale
        grid = probabilities.transpose(1, 2).reshape(batch, -1, height // scale, width // scale)
        grid = F.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
        self.sums = grid if self.sums is None else self.sums + grid
        if self.capture.keep_steps:
            step = self.state.sampling_step
            while len(self.per_step) <= step:
                self.per_step.append(torch.zeros_like(grid))
            self.per_step[step] = self.per_step[step] + grid


class _RecordingProcessor:
    """Computes the attention exactly as the processor it wraps; records the maps on the side."""

    def __init__(self, inner, batch: _Batch, family: str):
        self.inner, self.batch, self.family = inner, batch, family

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        output = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        if encoder_hidden_states is not None and hidden_states.shape[0] == self.batch.rows and self.batch.recording():
            if self.family == "flux":
                self.batch.record_flux(attn, hidden_states, encoder_hidden_states, kwargs.get("image_rotary_emb"))
            elif self.family == "sd3":
                self.batch.record_joint(attn, hidden_states, encoder_hidden_states)
            else:
                self.batch.record(attn, hidden_states, encoder_hidden_states)
        return output


def prompt_tokens(model, prompt: str, emphasis_mode: str) -> tuple[list[str], list[int]]:
    """The prompt's tokens as text and their positions in the encoder's sequence (77 per chunk: start token, up to 75
    tokens, end token and padding), laid out as modules.prompt_encoding lays them out."""
    from modules import prompt_encoding

    if model.family.name == "flux":  # the sequence is T5's alone, read without the prompt's syntax
        from modules.families import flux, sd3

        tokenizer = model.pipeline.tokenizer_2
        ids = tokenizer(sd3.words_of(prompt), add_special_tokens=False).input_ids[: flux.T5_SEQUENCE_LENGTH - 1]
        tokens = tokenizer.convert_ids_to_tokens(ids)
        return tokens, list(range(len(tokens)))
    tokenizer = prompt_encoding.text_encoders(model)[0][0]
    tokens, positions = [], []
    for chunk_number, chunk in enumerate(prompt_encoding.prompt_chunks(model, prompt, emphasis_mode, tokenizer)):
        for offset, token in enumerate(chunk.tokens):
            tokens.append(tokenizer.convert_ids_to_tokens(token))
            positions.append(chunk_number * (prompt_encoding.CHUNK_LENGTH + 2) + 1 + offset)
    return tokens, positions


def words_of(tokens: list[str]) -> list[tuple[str, list[int]]]:
    """Tokens grouped into words: a word ends at a token ending in "</w>" (CLIP's byte-pair tokens) or, for
    SentencePiece tokens (T5's), starts at one beginning with "▁"."""
    if any(token.startswith(WORD_START) for token in tokens):
        starts = [index for index, token in enumerate(tokens) if index == 0 or token.startswith(WORD_START)]
        bounds = [*starts, len(tokens)]
        return [
            ("".join(tokens[start:end]).removeprefix(WORD_START), list(range(start, end)))
            for start, end in zip(bounds, bounds[1:])
        ]
    words, current = [], []
    for index, token in enumerate(tokens):
        current.append(index)
        if token.endswith(END_OF_WORD):
            words.append(("".join(tokens[i] for i in current).removesuffix(END_OF_WORD), current))
            current = []
    if current:
        words.append(("".join(tokens[i] for i in current), current))
    return words


@contextmanager
def recording(
    capture: AttentionCapture | None,
    model,
    indices,
    prompts: list[str],
    emphasis_mode: str,
    image_size: tuple[int, int],
    latent_size: tuple[int, int],
    state,
    total_steps: int,
    prompt_only: bool = False,
):
    """Around one batch's first-pass sampling: wraps the UNet's cross-attention processors, restores them after,
    and keeps each image's maps in `capture.maps`. Without a capture, nothing is touched. `prompt_only`: the pass
    evaluates the prompts alone (a flow model at CFG 1: modules.diffusion.samples_prompt_only)."""
    if capture is None:
        yield
        return
    family = model.family.name
    unet = model.family.denoiser(model.pipeline)
    # The attentions that read the text: SD 3's joint ones (its attn2 is the image's own, MMDiT-X), FLUX's
    # double-stream ones (transformer_blocks.N.attn; the single-stream blocks are not captured).
    text_attention = {"sd3": ".attn.processor", "flux": ".attn.processor"}.get(family, "attn2.processor")
    originals = dict(unet.attn_processors)
    batch = _Batch(capture, state, latent_size, total_steps, len(indices), prompt_only)
    wrapped = {
        name: _RecordingProcessor(processor, batch, family)
        if name.endswith(text_attention)
        and not name.startswith("single_transformer_blocks")
        and (not capture.layers or any(part in name for part in capture.layers))
        else processor
        for name, processor in originals.items()
    }
    unet.set_attn_processor(wrapped)
    try:
        yield
    finally:
        unet.set_attn_processor(originals)
    if batch.sums is None:
        return
    for position, (index, prompt) in enumerate(zip(indices, prompts)):
        tokens, token_positions = prompt_tokens(model, prompt, emphasis_mode)
        capture.maps[index] = AttentionMaps(
            prompt,
            tokens,
            token_positions,
            words_of(tokens),
            batch.sums[position].cpu(),
            image_size,
            [step[position].cpu() for step in batch.per_step],
        )


def word_map_images(maps: AttentionMaps) -> list[tuple[str, Image.Image]]:
    """Each word's map as a 0-255 grey image of the image's size, with a file-name-safe word."""
    return [
        (re.sub(r"[^A-Za-z0-9_-]", "_", word), Image.fromarray((maps.word_map(number) * 255).round().astype("uint8")))
        for number, (word, _) in enumerate(maps.words)
    ]


def save_beside_images(paths: list[str], all_maps: list[AttentionMaps]) -> list[str]:
    """Each saved sample's word maps beside it, as <image name>-attention-<word number>-<word>.png; the paths."""
    from modules import images

    written = []
    for path, maps in zip(paths, all_maps):  # a result's samples' paths come first, then the grid's
        image_path = Path(path)
        for number, (word, grey) in enumerate(word_map_images(maps)):
            target = image_path.with_name(f"{image_path.stem}-attention-{number:02d}-{word}.png")
            images.write_new_file(target, images.png_bytes(grey, None))
            written.append(str(target))
    return written

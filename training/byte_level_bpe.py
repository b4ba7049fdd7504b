"""Byte-level BPE vocabularies in OpenAI CLIP's layout, shared by the builders of Serena's tokenizer files.

A vocabulary is the 256 byte symbols (every byte mapped to a printable character, as GPT-2 and CLIP do), the same
symbols with the end-of-word marker, one token per merge in merge order, then the start and end tokens. Written as
`vocab.json` and `merges.txt`, it loads with transformers' `CLIPTokenizer`.
"""

from __future__ import annotations

import json
from pathlib import Path

START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"

Merge = tuple[str, str]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP mapping of every byte to a printable unicode symbol (in the order of CLIP's vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    byte_values, code_points = printable[:], printable[:]
    extra = 0
    for byte in range(256):
        if byte not in byte_values:
            byte_values.append(byte)
            code_points.append(256 + extra)
            extra += 1
    return dict(zip(byte_values, map(chr, code_points)))


def build_vocab(merges: list[Merge]) -> dict[str, int]:
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + END_OF_WORD for symbol in byte_symbols] + ["".join(pair) for pair in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_vocab_and_merges(directory: Path, vocab: dict[str, int], merges: list[Merge]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = ["#version: 0.2"] + [f"{left} {right}" for left, right in merges]
    (directory / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")

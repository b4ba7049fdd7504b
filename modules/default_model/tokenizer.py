"""The default model's own small CLIP tokenizer.

Vocabulary layout follows OpenAI CLIP: the 256 byte-level symbols, the same symbols with the ``</w>``
end-of-word marker, then one token per BPE merge, then ``<|startoftext|>`` and ``<|endoftext|>``. The merges
are learned from ``vocabulary.WORDS`` only, so every caption word is a single token while any other text still
tokenizes through the byte symbols.
"""

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from modules.default_model.vocabulary import WORDS

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
MODEL_MAX_LENGTH = 77


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP mapping from bytes to printable unicode characters (same order as CLIP's vocabulary)."""
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


def _word_symbols(word: str) -> tuple[str, ...]:
    byte_chars = bytes_to_unicode()
    chars = [byte_chars[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + END_OF_WORD,)


def learn_merges(words: tuple[str, ...] = WORDS) -> list[tuple[str, str]]:
    """Greedy BPE until every word is one symbol; ties broken lexicographically so the result is stable."""
    segmented = {word: _word_symbols(word) for word in sorted(set(words))}
    merges = []
    while True:
        pair_counts = Counter()
        for symbols in segmented.values():
            pair_counts.update(zip(symbols[:-1], symbols[1:]))
        if not pair_counts:
            return merges
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        for word, symbols in segmented.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            segmented[word] = tuple(merged)


def build_vocab(merges: list[tuple[str, str]]) -> dict[str, int]:
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [s + END_OF_WORD for s in byte_symbols] + ["".join(pair) for pair in merges]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer(directory: str | Path) -> CLIPTokenizer:
    """Write vocab.json/merges.txt plus the transformers configs, and return the tokenizer loaded back from disk."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    merges = learn_merges()
    vocab = build_vocab(merges)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = ["#version: 0.2"] + [f"{left} {right}" for left, right in merges]
    (directory / "merges.txt").write_text("\n".join(merge_lines) + "\n", encoding="utf-8")
    # transformers 5 ignores vocab_file/merges_file in the constructor; only from_pretrained reads the files.
    tokenizer = CLIPTokenizer.from_pretrained(
        directory, local_files_only=True, model_max_length=MODEL_MAX_LENGTH, pad_token=EOS_TOKEN
    )
    tokenizer.save_pretrained(directory)
    _tidy_config(directory)
    reloaded = CLIPTokenizer.from_pretrained(directory, local_files_only=True)
    _check(reloaded, vocab)
    return reloaded


def _tidy_config(directory: Path) -> None:
    """Drop load-time flags that save_pretrained records, and add the special_tokens_map.json older tools read."""
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special_tokens = {name: config[name] for name in ("bos_token", "eos_token", "pad_token", "unk_token")}
    (directory / "special_tokens_map.json").write_text(json.dumps(special_tokens, indent=2) + "\n", encoding="utf-8")


def _check(tokenizer: CLIPTokenizer, vocab: dict[str, int]) -> None:
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}")
    for word in WORDS:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if ids != [vocab[word + END_OF_WORD]]:
            raise RuntimeError(f"{word!r} does not tokenize to a single token: {ids}")
    if tokenizer.model_max_length != MODEL_MAX_LENGTH or tokenizer.pad_token != EOS_TOKEN:
        raise RuntimeError("tokenizer special settings were not saved")

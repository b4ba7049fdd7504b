"""The default model's own small CLIP tokenizer.

The vocabulary has OpenAI CLIP's byte-level layout (``training.byte_level_bpe``). Its merges are learned from
``vocabulary.WORDS`` only, so every caption word is a single token while any other text still tokenizes through the
byte symbols.
"""

import json
from collections import Counter
from pathlib import Path

from transformers import CLIPTokenizer

from training.byte_level_bpe import END_OF_WORD, END_TOKEN, Merge, build_vocab, bytes_to_unicode, write_vocab_and_merges
from training.default_model.vocabulary import WORDS

MODEL_MAX_LENGTH = 77


def _word_symbols(word: str) -> tuple[str, ...]:
    byte_chars = bytes_to_unicode()
    chars = [byte_chars[b] for b in word.encode("utf-8")]
    return tuple(chars[:-1]) + (chars[-1] + END_OF_WORD,)


def learn_merges(words: tuple[str, ...] = WORDS) -> list[Merge]:
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


def write_tokenizer(directory: str | Path, words: tuple[str, ...] = WORDS) -> CLIPTokenizer:
    """Write vocab.json/merges.txt plus the transformers configs, and return the tokenizer loaded back from disk."""
    directory = Path(directory)
    merges = learn_merges(words)
    vocab = build_vocab(merges)
    write_vocab_and_merges(directory, vocab, merges)
    # transformers 5 ignores vocab_file/merges_file in the constructor; only from_pretrained reads the files.
    tokenizer = CLIPTokenizer.from_pretrained(
        directory, local_files_only=True, model_max_length=MODEL_MAX_LENGTH, pad_token=END_TOKEN
    )
    tokenizer.save_pretrained(directory)
    _tidy_config(directory)
    reloaded = CLIPTokenizer.from_pretrained(directory, local_files_only=True)
    _check(reloaded, vocab, words)
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


def _check(tokenizer: CLIPTokenizer, vocab: dict[str, int], words: tuple[str, ...]) -> None:
    if len(tokenizer) != len(vocab):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, expected {len(vocab)}")
    for word in words:
        ids = tokenizer(word, add_special_tokens=False).input_ids
        if ids != [vocab[word + END_OF_WORD]]:
            raise RuntimeError(f"{word!r} does not tokenize to a single token: {ids}")
    if tokenizer.model_max_length != MODEL_MAX_LENGTH or tokenizer.pad_token != END_TOKEN:
        raise RuntimeError("tokenizer special settings were not saved")

"""The byte-level BPE helper rebuilds the shipped tokenizer files byte for byte (both builders write through it)."""

import json

from modules.default_model import DEFAULT_MODEL_DIR
from modules.sd_single_file import SHIPPED_CONFIGS
from training.byte_level_bpe import build_vocab, write_vocab_and_merges
from training.default_model.tokenizer import learn_merges
from training.make_clip_tokenizer import PAD_TOKENS

TOKENIZER_FILES = ("vocab.json", "merges.txt")


def read_merges(tokenizer_dir):
    lines = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split()) for line in lines[1:]]  # after the "#version" header


def test_clip_vocabularies_are_rebuilt_from_their_merges_byte_for_byte(tmp_path):
    for name in PAD_TOKENS:  # the configs whose tokenizer make_clip_tokenizer writes
        shipped = SHIPPED_CONFIGS[name] / "tokenizer"
        merges = read_merges(shipped)
        vocab = build_vocab(merges)
        assert len(vocab) == 49408, name
        write_vocab_and_merges(tmp_path / name, vocab, merges)
        for file in TOKENIZER_FILES:
            assert (tmp_path / name / file).read_bytes() == (shipped / file).read_bytes(), (name, file)


def test_default_model_vocabulary_is_rebuilt_from_its_words_byte_for_byte(tmp_path):
    merges = learn_merges()
    write_vocab_and_merges(tmp_path, build_vocab(merges), merges)
    for file in TOKENIZER_FILES:
        assert (tmp_path / file).read_bytes() == (DEFAULT_MODEL_DIR / "tokenizer" / file).read_bytes(), file
    assert json.loads((tmp_path / "vocab.json").read_text())["circle</w>"] > 511  # a merged word, past the bytes

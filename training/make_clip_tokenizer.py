"""Regenerate the CLIP BPE tokenizer files shipped in ``modules/model_configs/sd15/tokenizer`` and ``sd2/tokenizer``.

The Hugging Face hub is unreachable from this project's machines, but CLIP's BPE merge list ships inside the
``open-clip-torch`` wheel on PyPI. Fetch the wheel without installing it and point this script at it:

    pip download --no-deps open-clip-torch -d /tmp/oc
    python -m training.make_clip_tokenizer /tmp/oc/open_clip_torch-*.whl
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

from modules.sd_single_file import SHIPPED_CONFIGS
from training.byte_level_bpe import END_TOKEN, START_TOKEN, Merge, build_vocab, write_vocab_and_merges

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps only the first 49152 - 256 - 2 merges so that the vocabulary is exactly 49408 tokens.
NUM_MERGES = 49152 - 256 - 2
# SD 2.x (OpenCLIP) pads prompts with "!" (token 0) instead of the end token.
PAD_TOKENS = {"sd15": END_TOKEN, "sd2": "!"}


def read_merges(wheel_path: Path) -> list[Merge]:
    with zipfile.ZipFile(wheel_path) as wheel:
        text = gzip.decompress(wheel.read(BPE_MEMBER)).decode("utf-8")
    # The first line is a header, not a merge.
    return [tuple(line.split()) for line in text.split("\n")[1 : NUM_MERGES + 1]]


def write_tokenizer_dir(directory: Path, vocab: dict[str, int], merges: list[Merge], pad_token: str) -> None:
    write_vocab_and_merges(directory, vocab, merges)
    special_tokens = {
        "bos_token": START_TOKEN,
        "eos_token": END_TOKEN,
        "pad_token": pad_token,
        "unk_token": END_TOKEN,
    }
    tokenizer_config = {
        "tokenizer_class": "CLIPTokenizer",
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        **special_tokens,
    }
    for name, content in (("special_tokens_map.json", special_tokens), ("tokenizer_config.json", tokenizer_config)):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path, help="path to a downloaded open_clip_torch-*.whl")
    args = parser.parse_args()

    merges = read_merges(args.wheel)
    vocab = build_vocab(merges)
    if len(vocab) != 49408:
        raise SystemExit(f"expected 49408 tokens, built {len(vocab)}: is {args.wheel} a CLIP BPE wheel?")
    for config_name, pad_token in PAD_TOKENS.items():
        write_tokenizer_dir(SHIPPED_CONFIGS[config_name] / "tokenizer", vocab, merges, pad_token)
        print(f"wrote {SHIPPED_CONFIGS[config_name] / 'tokenizer'}")


if __name__ == "__main__":
    main()

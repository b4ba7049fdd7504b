"""Regenerate the CLIP BPE tokenizer files shipped in ``sd15/tokenizer`` and ``sd2/tokenizer``.

The Hugging Face hub is unreachable from this project's machines, but CLIP's BPE merge list ships inside the
``open-clip-torch`` wheel on PyPI. Fetch the wheel without installing it and point this script at it:

    pip download --no-deps open-clip-torch -d /tmp/oc
    python modules/model_configs/make_clip_tokenizer.py /tmp/oc/open_clip_torch-*.whl
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

BPE_MEMBER = "open_clip/bpe_simple_vocab_16e6.txt.gz"
# CLIP keeps only the first 49152 - 256 - 2 merges so that the vocabulary is exactly 49408 tokens.
NUM_MERGES = 49152 - 256 - 2
START_TOKEN = "<|startoftext|>"
END_TOKEN = "<|endoftext|>"
CONFIG_ROOT = Path(__file__).resolve().parent
# SD 2.x (OpenCLIP) pads prompts with "!" (token 0) instead of the end token.
PAD_TOKENS = {"sd15": END_TOKEN, "sd2": "!"}


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 mapping of every byte to a printable unicode symbol."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codepoints = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codepoints.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codepoints)))


def read_merges(wheel_path: Path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as wheel:
        text = gzip.decompress(wheel.read(BPE_MEMBER)).decode("utf-8")
    # The first line is a header, not a merge.
    return text.split("\n")[1 : NUM_MERGES + 1]


def build_vocab(merges: list[str]) -> dict[str, int]:
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    tokens += ["".join(merge.split()) for merge in merges]
    tokens += [START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer_dir(directory: Path, vocab: dict[str, int], merges: list[str], pad_token: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (directory / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n", encoding="utf-8")
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
        write_tokenizer_dir(CONFIG_ROOT / config_name / "tokenizer", vocab, merges, pad_token)
        print(f"wrote {CONFIG_ROOT / config_name / 'tokenizer'}")


if __name__ == "__main__":
    main()

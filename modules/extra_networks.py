"""Extra networks on disk and in prompts: LoRA files, textual-inversion embeddings, `<lora:name:weight>` tags. No torch.

As in the webui, extra-network tags are taken out of a prompt before it is parsed or encoded
(`<lora:ring:0.8>` -> LoRA "ring" at 0.8; `<lora:ring>` means weight 1); embeddings need no tag: an embedding's
file name written in the prompt activates it. Files are found by name (file name without suffix) in the user's folder
(SERENA_LORA_DIR, default `models/Lora`; SERENA_EMBEDDINGS_DIR, default `embeddings`) and then among the default
model's example networks (`modules/default_model/networks`); the user's file wins on a name clash.

Hashes are the webui's: a LoRA's is the sha256 of a .safetensors file's tensor data (its header left out, the
"addnet" hash), of the whole file otherwise; an embedding's is the sha256 of the file. Infotexts carry the first 12
hex digits (`Lora hashes: "ring: 0123456789ab"`, `TI hashes: "violet: ..."`).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

LORA_HASHES_KEY = "Lora hashes"
TI_HASHES_KEY = "TI hashes"
LORA_SUFFIXES = (".safetensors",)
EMBEDDING_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".ckpt", ".bin")
SHORT_HASH_LENGTH = 12
# The webui's extra-network tag: <type:args>, args split on ":".
_TAG = re.compile(r"<(\w+):([^>]+)>")


def lora_dirs() -> list[Path]:
    from modules.default_model import EXAMPLE_LORA_DIR

    return [Path(os.environ.get("SERENA_LORA_DIR", "models/Lora")), EXAMPLE_LORA_DIR]


def embedding_dirs() -> list[Path]:
    from modules.default_model import EXAMPLE_EMBEDDINGS_DIR

    return [Path(os.environ.get("SERENA_EMBEDDINGS_DIR", "embeddings")), EXAMPLE_EMBEDDINGS_DIR]


def _sha256(path: Path, skip_safetensors_header: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if skip_safetensors_header:
            handle.seek(8 + int.from_bytes(handle.read(8), "little"))
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


_hash_cache: dict[tuple[str, int, int, bool], str] = {}


@dataclass(frozen=True)
class NetworkFile:
    """A LoRA or embedding file; `name` is what prompts call it."""

    name: str
    path: Path
    kind: str  # "lora" or "embedding"

    @property
    def is_pickle(self) -> bool:
        return self.path.suffix.lower() in PICKLE_SUFFIXES

    @cached_property
    def sha256(self) -> str:
        addnet = self.kind == "lora" and self.path.suffix.lower() == ".safetensors"
        stat = self.path.stat()
        key = (str(self.path), stat.st_size, stat.st_mtime_ns, addnet)
        if key not in _hash_cache:
            _hash_cache[key] = _sha256(self.path, addnet)
        return _hash_cache[key]

    @property
    def shorthash(self) -> str:
        return self.sha256[:SHORT_HASH_LENGTH]


def safetensors_metadata(path: Path) -> dict:
    """The `__metadata__` strings of a .safetensors header (kohya's `ss_*` training notes), read without torch."""
    import json

    if path.suffix.lower() != ".safetensors":
        return {}
    with open(path, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return dict(header.get("__metadata__") or {})


def _list(folders: list[Path], suffixes: tuple[str, ...], kind: str) -> dict[str, NetworkFile]:
    found: dict[str, NetworkFile] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in suffixes and path.stem not in found:
                found[path.stem] = NetworkFile(path.stem, path.resolve(), kind)
    return found


def list_loras() -> dict[str, NetworkFile]:
    """Every LoRA file by name (.safetensors only: the webui's rare pickle LoRAs are not read)."""
    return _list(lora_dirs(), LORA_SUFFIXES, "lora")


def list_embeddings() -> dict[str, NetworkFile]:
    return _list(embedding_dirs(), EMBEDDING_SUFFIXES + PICKLE_SUFFIXES, "embedding")


def find_lora(name: str, available: dict[str, NetworkFile] | None = None) -> NetworkFile:
    available = list_loras() if available is None else available
    if name not in available:
        names = ", ".join(sorted(available)) or "none"
        folders = ", ".join(str(folder) for folder in lora_dirs())
        raise ValueError(f"prompt: no LoRA named {name!r}; available: {names} (folders: {folders})")
    return available[name]


@dataclass(frozen=True)
class LoraTag:
    name: str
    weight: float


def parse_lora_tags(prompt: str) -> tuple[str, list[LoraTag]]:
    """The prompt without its extra-network tags, and the LoRAs they ask for (in order; a name given twice counts
    once, with the weights added, as the webui applies the same network twice)."""
    tags: dict[str, float] = {}

    def take(match: re.Match) -> str:
        kind, args = match.group(1), match.group(2).split(":")
        if kind != "lora":
            raise ValueError(f"prompt: unknown extra network <{kind}:...>; supported: <lora:name:weight>")
        if len(args) > 2:
            raise ValueError(
                f"prompt: <lora:{match.group(2)}> has {len(args) - 1} weights; Serena's LoRAs take one "
                "(<lora:name:weight>, the UNet's)"
            )
        try:
            weight = float(args[1]) if len(args) == 2 else 1.0
        except ValueError:
            raise ValueError(f"prompt: <lora:{match.group(2)}>: the weight {args[1]!r} is not a number") from None
        tags[args[0]] = tags.get(args[0], 0.0) + weight
        return ""

    text = _TAG.sub(take, prompt)
    return text, [LoraTag(name, weight) for name, weight in tags.items()]


def strip_tags(prompt: str) -> str:
    return parse_lora_tags(prompt)[0]


def mentioned_embeddings(prompts: list[str], available: dict[str, NetworkFile]) -> list[NetworkFile]:
    """The embeddings whose names appear as words in the prompts (after tags are removed), in name order."""
    text = "\n".join(strip_tags(prompt) for prompt in prompts)
    words = set(re.findall(r"[\w\-]+", text))
    return [available[name] for name in sorted(available) if name in words]


def hashes_value(networks: list[NetworkFile]) -> str | None:
    """The infotext value the webui writes: "name: shorthash, name: shorthash"."""
    if not networks:
        return None
    return ", ".join(f"{network.name}: {network.shorthash}" for network in networks)


def parse_hashes_value(text: str) -> dict[str, str]:
    pairs = {}
    for part in text.split(","):
        name, _, short = part.strip().rpartition(":")
        if name:
            pairs[name.strip()] = short.strip()
    return pairs


def check_recorded_hashes(parameters: dict) -> None:
    """Refuse to replay an image whose LoRAs or embeddings are missing here or differ from the files it records.

    `parameters`: a parsed infotext. Raises ValueError naming the network, the recorded and the local hash.
    """
    for key, available, kind in (
        (LORA_HASHES_KEY, list_loras, "LoRA"),
        (TI_HASHES_KEY, list_embeddings, "embedding"),
    ):
        if not parameters.get(key):
            continue
        files = available()
        for name, recorded in parse_hashes_value(parameters[key]).items():
            if name not in files:
                names = ", ".join(sorted(files)) or "none"
                raise ValueError(f"infotext: {key}: the image used {kind} {name!r}, not found here; available: {names}")
            local = files[name].shorthash
            if not local.startswith(recorded.lower()) and not recorded.lower().startswith(local):
                raise ValueError(
                    f"infotext: {key}: {kind} {name!r} here ({files[name].path}) has hash {local}, the image was "
                    f"made with {recorded}: another file of the same name"
                )
